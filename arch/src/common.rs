//! What every architecture shares, written once: the register-dump layout, and the frame-pointer walk (x86_64 and AArch64 both keep
//! `[fp] = caller's fp, [fp + 8] = return address`).
#![allow(
    unsafe_code,
    reason = "the frame walk reads stack words; it has a SAFETY note"
)]

use core::fmt;
use core::ops::Range;

pub use rhea_hal::arch::PagingError;
pub use rhea_hal::image::{KernelImage, Section};

/// Prints `name value` pairs four to a line (the register dumps of fault reports).
pub(crate) fn dump(f: &mut fmt::Formatter<'_>, regs: &[(&str, u64)]) -> fmt::Result {
    for line in regs.chunks(4) {
        f.write_str("  ")?;
        for (name, value) in line {
            write!(f, " {name:>6} {value:#018x}")?;
        }
        f.write_str("\n")?;
    }
    Ok(())
}

/// Walks the frame-pointer chain from `fp`, calling `f` with each return address, as long as
/// every frame lies inside `stack` (so a corrupt chain cannot make it read unmapped memory).
/// Stops after 64 frames. Needs `-C force-frame-pointers=yes`, which xtask sets.
pub fn backtrace(mut fp: u64, stack: Range<u64>, mut f: impl FnMut(u64)) {
    // RT: bounded by 64 frames.
    for _ in 0..64 {
        if !fp.is_multiple_of(8) || fp < stack.start || fp.saturating_add(16) > stack.end {
            return;
        }
        // SAFETY: `[fp, fp + 16)` is inside `stack`, which the caller vouches is mapped.
        let (next, ret) = unsafe {
            (
                core::ptr::read(fp as *const u64),
                core::ptr::read((fp + 8) as *const u64),
            )
        };
        if ret == 0 {
            return;
        }
        f(ret);
        // Frames move towards higher addresses as we unwind; anything else is corruption.
        if next <= fp {
            return;
        }
        fp = next;
    }
}
