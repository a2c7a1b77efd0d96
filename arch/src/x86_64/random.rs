//! The CPU's random-number instruction: RDRAND (through the `x86_64` crate).
//!
//! RDRAND returns the output of the CPU's CSPRNG, reseeded by its hardware entropy source;
//! RDSEED (the raw source) is not used: the `x86_64` crate does not wrap it, and a CSPRNG's
//! output is what a key exchange needs.

use x86_64::instructions::random::RdRand;

/// The instruction's name when this CPU has it (CPUID.01H:ECX[30]).
pub(crate) fn cpu_rng() -> Option<&'static str> {
    RdRand::new().map(|_| "RDRAND")
}

/// Fills `buf` from RDRAND; `false` when the CPU has none or it kept failing (Intel's
/// guidance: retry 10 times, then treat the source as broken).
pub(crate) fn cpu_rng_fill(buf: &mut [u8]) -> bool {
    let Some(rng) = RdRand::new() else {
        return false;
    };
    for chunk in buf.chunks_mut(8) {
        let Some(v) = (0..10).find_map(|_| rng.get_u64()) else {
            return false;
        };
        chunk.copy_from_slice(&v.to_le_bytes()[..chunk.len()]);
    }
    true
}
