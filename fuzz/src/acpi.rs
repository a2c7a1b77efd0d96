//! `acpi`: the MADT and MCFG as firmware hands them over (`kernel/smp/src/madt.rs`,
//! `kernel/smp/src/mcfg.rs`). The input is the table's bytes; the harness puts it behind a valid
//! RSDP (v2) and XSDT in one buffer — the fuzzer's table is the one found — gives it the right
//! signature, keeps its `length` inside the buffer (a length past readable memory is the
//! documented panic of the mapping hook, not a parser defect), and by default fixes its
//! checksum so the walk behind the `acpi` crate's checks is what gets fuzzed. Then
//! [`madt::read`] (with the boot CPU, x2APIC mode and CPU limit from the input) or
//! [`mcfg::read`], and [`mcfg::parse`] on the raw bytes. Invariant: an error, never a panic.
//!
//! Input: `[flags, boot APIC id, CPU limit, table...]`; flags bit 0: MCFG instead of MADT,
//! bit 1: keep the table's checksum byte as given, bit 2: x2APIC mode.

use crate::Input;
use rhea_board_common_x86::madt::{self, Rsdp, Window};
use rhea_board_common_x86::mcfg;

const XSDT_AT: usize = 64;
const TABLE_AT: usize = 128;
/// Largest table tried.
const MAX_TABLE: usize = 8192;

fn checksum(bytes: &[u8]) -> u8 {
    bytes
        .iter()
        .fold(0u8, |s, b| s.wrapping_add(*b))
        .wrapping_neg()
}

fn sdt_header(signature: &[u8; 4], length: u32) -> Vec<u8> {
    let mut h = Vec::with_capacity(36);
    h.extend_from_slice(signature);
    h.extend_from_slice(&length.to_le_bytes());
    h.push(1); // revision
    h.push(0); // checksum
    h.extend_from_slice(b"RHEA  ");
    h.extend_from_slice(b"RHEAFUZZ");
    h.extend_from_slice(&1u32.to_le_bytes());
    h.extend_from_slice(b"RHEA");
    h.extend_from_slice(&1u32.to_le_bytes());
    h
}

/// RSDP at 0, XSDT at 64 naming the table at 128, the table (fixed up as described).
fn firmware(table: &[u8], signature: &[u8; 4], keep_checksum: bool) -> Vec<u8> {
    // Readable memory goes on after the table, as firmware's does: a table shorter than its
    // structure is then refused by its length rather than hitting the window's end (the
    // documented panic of the mapping hook).
    let mut buf = vec![0u8; TABLE_AT + table.len().max(36) + 64];
    let base = buf.as_ptr() as usize;
    let t = &mut buf[TABLE_AT..];
    t[..table.len()].copy_from_slice(table);
    t[..4].copy_from_slice(signature);
    let available = (table.len().max(36)) as u32;
    let stated = u32::from_le_bytes([t[4], t[5], t[6], t[7]]);
    let length = if stated > available {
        available
    } else {
        stated
    };
    t[4..8].copy_from_slice(&length.to_le_bytes());
    if !keep_checksum {
        let n = (length as usize).max(10);
        t[9] = 0;
        t[9] = checksum(&t[..n]);
    }
    let mut xsdt = sdt_header(b"XSDT", 44);
    xsdt.extend_from_slice(&((base + TABLE_AT) as u64).to_le_bytes());
    xsdt[9] = checksum(&xsdt);
    buf[XSDT_AT..XSDT_AT + 44].copy_from_slice(&xsdt);
    let mut rsdp = Vec::with_capacity(36);
    rsdp.extend_from_slice(b"RSD PTR ");
    rsdp.push(0);
    rsdp.extend_from_slice(b"RHEA  ");
    rsdp.push(2);
    rsdp.extend_from_slice(&0u32.to_le_bytes());
    rsdp.extend_from_slice(&36u32.to_le_bytes());
    rsdp.extend_from_slice(&((base + XSDT_AT) as u64).to_le_bytes());
    rsdp.extend_from_slice(&[0, 0, 0, 0]);
    rsdp[8] = checksum(&rsdp[..20]);
    rsdp[32] = checksum(&rsdp);
    buf[..36].copy_from_slice(&rsdp);
    buf
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let flags = input.u8();
    let boot_apic_id = u32::from(input.u8());
    let limit = usize::from(input.u8() % 70);
    let table = input.take(MAX_TABLE);
    let _ = mcfg::parse(table);
    let is_mcfg = flags & 1 != 0;
    let signature = if is_mcfg { b"MCFG" } else { b"APIC" };
    let fw = firmware(table, signature, flags & 2 != 0);
    let base = fw.as_ptr() as usize;
    let window = Window {
        start: base,
        end: base + fw.len(),
    };
    if is_mcfg {
        // SAFETY: the window is `fw`, alive and unchanged for the whole call.
        let _ = unsafe { mcfg::read(Rsdp::At(base), window) };
    } else {
        let x2apic = flags & 4 != 0;
        // SAFETY: as above.
        let read = unsafe { madt::read(Rsdp::At(base), window, boot_apic_id, x2apic, limit) };
        if let Ok(info) = read {
            let _ = (
                info.io_apics().len(),
                info.overrides().len(),
                info.cpus.len(),
            );
        }
    }
}
