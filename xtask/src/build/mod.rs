//! The build stage: what exists and how an image is made of it.
//!
//! - [`apps`]: the apps and test apps, from their manifests (`[package.metadata.rhea]`);
//! - [`boards`]: the boards, their machines and accelerators, targets and linker scripts;
//! - [`setup`]: the toolchain, targets and host packages each step needs, installed on demand;
//! - [`firmware`]: firmware and packages fetched from Debian (the Pi's files, arm64 debs);
//! - [`chromium`]: headless Chromium from Debian's package (the status-page screenshot);
//! - [`ovmf`]: OVMF (UEFI for QEMU's PCs) from Debian's package, and the QEMU arguments that
//!   boot a UEFI disk with it;
//! - [`initrd`]: a folder packed into a cpio archive (`--initrd DIR`);
//! - [`image`]: `cargo build` for one app on one board, then the stripped and bootable files;
//! - [`symtab`]: the image's own function symbol table, filled in after linking;
//! - [`uefi_disk`]: the pc-uefi board's boot disk (GPT, a FAT ESP with `BOOTX64.EFI` and the
//!   command line), written, read back and its command line replaced in place.
//!
//! Every later stage (run, test, bench, xen) starts from here, through the short names the
//! crate root imports.

pub(crate) mod apps;
pub(crate) mod boards;
pub(crate) mod chromium;
pub(crate) mod firmware;
pub(crate) mod image;
pub(crate) mod initrd;
pub(crate) mod ovmf;
pub(crate) mod setup;
pub(crate) mod symtab;
pub(crate) mod uefi_disk;
