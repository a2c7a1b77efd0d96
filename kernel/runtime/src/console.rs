//! Kernel and app output: [`print!`](crate::print) and [`println!`](crate::println).
//!
//! Lock: `CONSOLE_LOCK` serialises whole messages so lines from different threads do not
//! interleave. It is a spin lock that does not disable interrupts; it must not be taken from
//! interrupt context (the IRQ layer will make it IRQ-safe when interrupt handlers print). It is
//! a leaf lock. The fault and panic reports never take it — a fault may have interrupted its
//! holder — and write through [`raw_writer`] instead.

use crate::boards::board;
use core::fmt::{self, Write};
use rhea_hal::Platform;
use spin::Mutex;

static CONSOLE_LOCK: Mutex<()> = Mutex::new(());

/// Writes straight to the board console.
pub(crate) struct RawWriter;

impl Write for RawWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        board::PLATFORM.console().write_bytes(s.as_bytes());
        Ok(())
    }
}

/// A writer that takes no lock (for fault reports).
pub(crate) fn raw_writer() -> RawWriter {
    RawWriter
}

#[doc(hidden)]
pub fn _print(args: fmt::Arguments<'_>) {
    let _guard = CONSOLE_LOCK.lock();
    let _ = RawWriter.write_fmt(args);
}

/// Prints to the console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::_print(format_args!($($arg)*)) };
}

/// Prints to the console, with a newline.
#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => { $crate::console::_print(format_args!("{}\n", format_args!($($arg)*))) };
}
