//! The board: `rhea_board::Selected` (`boards/select` maps the build's `rhea_board` cfg to it),
//! used only through its contract — [`rhea_hal::Board`] (boot, interrupts and time, console
//! input, MSI) and [`rhea_drivers::bus::BoardDevices`] (buses, NIC drivers).

use rhea_hal::Board;

/// The board this image is built for.
pub(crate) type B = rhea_board::Selected;

/// The board's services (console, CPUs, exit).
pub(crate) fn platform() -> &'static <B as Board>::Platform {
    B::platform()
}
