//! `uefi`: what pc-uefi's loader and kernel read from the firmware and from each other
//! (`boards/common-x86/src/uefi.rs`): the hand-off page and the raw UEFI memory map in memory
//! the fuzzer fills ([`Handoff::decode`], [`e820_from_uefi`] with any descriptor stride and
//! length), the kernel ELF the loader carries ([`plan_load`]), and the command line from load
//! options or `\rhea.cfg` ([`choose_cmdline`]). Invariant: an error, never a panic, an
//! overflow or a hang.
//!
//! Input: `[base selector, mode, descriptor size u32, map bytes u64, address u64, memory...]`;
//! the ELF and command-line parsers take the memory bytes themselves.

use crate::Input;
use crate::pvh::{BASES, Memory};
use rhea_board_common_x86::pvh::MAX_CMDLINE;
use rhea_board_common_x86::uefi::{Handoff, choose_cmdline, e820_from_uefi, plan_load};

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let base = BASES[usize::from(input.u8() % 8)];
    let mode = input.u8();
    let desc_size = input.u32();
    let map_bytes = input.u64();
    let raw_addr = input.u64();
    let addr = if mode & 1 == 0 {
        base.wrapping_add(raw_addr % 0x1_0000)
    } else {
        raw_addr
    };
    let bytes = input.rest();
    let mem = Memory { base, bytes };
    match mode % 4 {
        0 => {
            if let Ok(h) = Handoff::decode(&mem, addr) {
                let _ = e820_from_uefi(&mem, h.memmap, h.memmap_bytes, h.desc_size);
            }
        }
        1 => {
            // The map straight from the input: strides from tiny to huge, any length.
            let bytes = map_bytes % 0x1_0000;
            if let Ok(map) = e820_from_uefi(&mem, addr, bytes, desc_size % 256) {
                let _ = map.entries().len();
            }
        }
        2 => {
            let _ = plan_load(bytes);
        }
        _ => {
            let wide: Vec<u16> = bytes
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect();
            let split = usize::try_from(map_bytes % 4096).unwrap_or(0).min(wide.len());
            let config = (mode & 4 != 0).then_some(&bytes[bytes.len() / 2..]);
            let mut out = [0u8; MAX_CMDLINE];
            let _ = choose_cmdline(&wide[..split], config, &mut out);
        }
    }
}
