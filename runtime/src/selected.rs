//! The one place the runtime names what it runs on: the architecture `A` and the board `B`,
//! both chosen at build time by the layers that own them (`rhea_arch::Selected` from the
//! target, `rhea_board::Selected` from the build's `rhea_board` cfg in `boards/select`). The
//! runtime uses them only through their contracts — [`rhea_hal::Arch`] for `A`;
//! [`rhea_hal::Board`] (boot, interrupts and time, console input, MSI) and
//! [`rhea_drivers::bus::BoardDevices`] (buses, NIC drivers) for `B` — which `cargo xtask lint`
//! checks: no other `rhea_arch::` path is used in `runtime/` except the lock family
//! (`rhea_arch::sync`) and the fault triggers the test apps re-export (`rhea_arch::testing`).

use rhea_hal::Board;

pub(crate) use rhea_hal::Arch;

/// The architecture this image is built for.
pub(crate) type A = rhea_arch::Selected;

/// The board this image is built for.
pub(crate) type B = rhea_board::Selected;

/// The board's services (console, CPUs, exit).
pub(crate) fn platform() -> &'static <B as Board>::Platform {
    B::platform()
}
