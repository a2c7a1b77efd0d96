//! # `rhea-board` — the board this image is built for
//!
//! The one place that maps the build's `rhea_board` cfg (set by `cargo xtask build --board B`)
//! to a board: [`Selected`], the board crate's type implementing `rhea_hal::Board` and
//! `rhea_drivers::bus::BoardDevices`. The runtime uses the board only through it and those
//! traits, so no crate outside `boards/` names a board. A new board is one line here and one in
//! `Cargo.toml`.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(rhea_board = "qemu-x86_64")]
pub use rhea_board_qemu_x86_64::QemuX86_64 as Selected;

#[cfg(rhea_board = "pc-uefi")]
pub use rhea_board_pc_uefi::PcUefi as Selected;

#[cfg(rhea_board = "linuxu")]
pub use rhea_board_linuxu::LinuxU as Selected;

#[cfg(rhea_board = "qemu-aarch64")]
pub use rhea_board_qemu_aarch64::QemuAarch64 as Selected;

#[cfg(rhea_board = "rpi4")]
pub use rhea_board_rpi4::Rpi4 as Selected;

#[cfg(rhea_board = "xen-arm64")]
pub use rhea_board_xen_arm64::XenArm64 as Selected;

#[cfg(rhea_board = "xen-x86_64")]
pub use rhea_board_xen_x86_64::XenX86_64 as Selected;

#[cfg(not(any(
    rhea_board = "qemu-x86_64",
    rhea_board = "pc-uefi",
    rhea_board = "linuxu",
    rhea_board = "qemu-aarch64",
    rhea_board = "rpi4",
    rhea_board = "xen-arm64",
    rhea_board = "xen-x86_64"
)))]
compile_error!("no board selected: build with `cargo xtask build --board <board> --app <app>`");
