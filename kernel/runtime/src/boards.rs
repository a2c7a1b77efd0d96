//! The one place that maps the build's `rhea_board` cfg to a board crate.
//!
//! Every board crate exports the same items, which the boot sequence uses: `early_init(arg)
//! -> BootInfo`, `boot_stack()`, `BootInfo` (memory map, command line, image sections, reserved ranges, boot
//! stack, boot cycle count) and `PLATFORM` (a `rhea_hal::Platform`).

#[cfg(rhea_board = "qemu-x86_64")]
pub(crate) use rhea_board_qemu_x86_64 as board;

#[cfg(not(any(rhea_board = "qemu-x86_64")))]
compile_error!("no board selected: build with `cargo xtask build --board <board> --app <app>`");
