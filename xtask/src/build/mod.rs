//! The build stage: what exists and how an image is made of it.
//!
//! - [`apps`]: the apps and test apps, from their manifests (`[package.metadata.rhea]`);
//! - [`boards`]: the boards, their machines and accelerators, targets and linker scripts;
//! - [`setup`]: the toolchain, targets and host packages each step needs, installed on demand;
//! - [`firmware`]: firmware and packages fetched from Debian (OVMF, the Pi's files, arm64 debs);
//! - [`image`]: `cargo build` for one app on one board, then the stripped and bootable files;
//! - [`symtab`]: the image's own function symbol table, filled in after linking.
//!
//! Every later stage (run, test, bench, xen) starts from here, through the short names the
//! crate root imports.

pub(crate) mod apps;
pub(crate) mod boards;
pub(crate) mod firmware;
pub(crate) mod image;
pub(crate) mod setup;
pub(crate) mod symtab;
