//! # `rhea-board` — the board this image is built for
//!
//! The one place that maps the build's `rhea_board` cfg (set by `cargo xtask build --board B`)
//! to a board crate, whose items it re-exports. The runtime uses the board only through this
//! crate (`runtime/src/boards.rs` states what it must export), so no crate outside `boards/`
//! names a board.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(rhea_board = "qemu-x86_64")]
pub use rhea_board_qemu_x86_64::*;

#[cfg(rhea_board = "linuxu")]
pub use rhea_board_linuxu::*;

#[cfg(rhea_board = "qemu-aarch64")]
pub use rhea_board_qemu_aarch64::*;

#[cfg(rhea_board = "rpi4")]
pub use rhea_board_rpi4::*;

#[cfg(rhea_board = "xen-arm64")]
pub use rhea_board_xen_arm64::*;

#[cfg(rhea_board = "xen-x86_64")]
pub use rhea_board_xen_x86_64::*;

#[cfg(not(any(
    rhea_board = "qemu-x86_64",
    rhea_board = "linuxu",
    rhea_board = "qemu-aarch64",
    rhea_board = "rpi4",
    rhea_board = "xen-arm64",
    rhea_board = "xen-x86_64"
)))]
compile_error!("no board selected: build with `cargo xtask build --board <board> --app <app>`");
