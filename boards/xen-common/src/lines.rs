//! Interrupt lines on a Xen board whose event channels share the line numbers with another
//! interrupt controller (xen-arm64: the GIC, which still carries the timer's PPI, the
//! event-channel PPI itself and any SPI the domain is given). Event-channel ports keep their
//! own numbers — the Xen drivers' contract is `IrqLine(port)` — and the other controller's
//! line `n` is `FOREIGN_LINES + n`. Port 0 is never allocated by Xen; numbers between the
//! last port and [`FOREIGN_LINES`] are no line.

use crate::shared::NR_PORTS;

/// The first line number of the other controller: its line `n` is `FOREIGN_LINES + n`.
pub const FOREIGN_LINES: u32 = 0x1_0000;

/// What a line number names.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Line {
    /// An event-channel port (1..4096, the 2-level ABI).
    Port(u32),
    /// The other controller's line `n` (a GIC INTID).
    Foreign(u32),
}

/// Decodes a line number; `None` for numbers that name nothing.
pub fn classify(line: u32) -> Option<Line> {
    if line >= FOREIGN_LINES {
        Some(Line::Foreign(line - FOREIGN_LINES))
    } else if line != 0 && (line as usize) < NR_PORTS {
        Some(Line::Port(line))
    } else {
        None
    }
}

/// The line number of the other controller's line `n` (saturating: a huge `n` names nothing
/// that controller has).
pub fn foreign(n: u32) -> u32 {
    FOREIGN_LINES.saturating_add(n)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn ports_and_foreign_lines_do_not_overlap() {
        assert_eq!(classify(0), None, "Xen never allocates port 0");
        assert_eq!(classify(1), Some(Line::Port(1)));
        assert_eq!(classify(4095), Some(Line::Port(4095)));
        assert_eq!(classify(4096), None, "beyond the 2-level ABI");
        assert_eq!(classify(FOREIGN_LINES - 1), None);
        assert_eq!(classify(foreign(0)), Some(Line::Foreign(0)));
        assert_eq!(classify(foreign(27)), Some(Line::Foreign(27)));
        assert_eq!(classify(foreign(1019)), Some(Line::Foreign(1019)));
        assert_eq!(
            classify(u32::MAX),
            Some(Line::Foreign(u32::MAX - FOREIGN_LINES))
        );
        assert_eq!(foreign(u32::MAX), u32::MAX);
        // Every port number decodes as itself.
        for p in 1..NR_PORTS as u32 {
            assert_eq!(classify(p), Some(Line::Port(p)));
        }
    }
}
