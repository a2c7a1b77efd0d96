//! Randomness for LinuxU: the host kernel's `getrandom(2)`.

/// The source's name (every Linux since 3.17 has the call).
pub(crate) fn cpu_rng() -> Option<&'static str> {
    Some("host getrandom(2)")
}

/// Fills `buf` from the host; `false` if it refused.
pub(crate) fn cpu_rng_fill(buf: &mut [u8]) -> bool {
    super::sys::getrandom(buf)
}
