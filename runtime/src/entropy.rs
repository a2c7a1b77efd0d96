//! Entropy for keys and key exchanges: the CPU's random-number instruction (RDRAND on x86,
//! `RNDR` on Arm where FEAT_RNG is present) or, on LinuxU, the host's `getrandom(2)`.
//!
//! Nothing here stretches or mixes a weak source into a strong-looking one: a machine
//! without one of these has no entropy, the boot says so plainly, and [`fill`] fails, so
//! whatever needs keys (the SSH server) refuses to start rather than run on guessable ones.
//! Not yet used as sources: virtio-rng and the hypervisors' (Xen has none to offer).
//!
//! This is also the `getrandom` crate's backend for kernel images (built with
//! `--cfg getrandom_backend="custom"`), so crates that draw through `getrandom` (`sunset`,
//! `ed25519-dalek`) draw from here.

use crate::selected::{A, Arch as _};

/// The machine has no entropy source this kernel can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoEntropy;

impl core::fmt::Display for NoEntropy {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("no entropy source (no RDRAND, no RNDR, no host getrandom)")
    }
}

/// The source [`fill`] draws from, by name; `None` when the machine has none.
pub fn source() -> Option<&'static str> {
    A::cpu_rng()
}

/// Fills `buf` with random bytes from [`source`].
pub fn fill(buf: &mut [u8]) -> Result<(), NoEntropy> {
    if A::cpu_rng_fill(buf) {
        Ok(())
    } else {
        buf.fill(0);
        Err(NoEntropy)
    }
}

/// `getrandom`'s custom backend (see the module's text).
///
/// The runtime's one `unsafe` item: `getrandom` finds its backend by this unmangled name
/// and hands it a raw buffer, so the hook cannot be safe code; it only forwards to [`fill`].
///
/// # Safety
/// `dest` must be valid for writes of `len` bytes (getrandom's contract).
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
unsafe extern "Rust" fn __getrandom_v03_custom(
    dest: *mut u8,
    len: usize,
) -> Result<(), getrandom::Error> {
    // SAFETY: getrandom passes a buffer valid for `len` bytes, borrowed for this call only.
    let buf = unsafe { core::slice::from_raw_parts_mut(dest, len) };
    fill(buf).map_err(|NoEntropy| getrandom::Error::UNSUPPORTED)
}
