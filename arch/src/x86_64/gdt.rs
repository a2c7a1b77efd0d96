//! The GDT and TSS (SDM Vol. 3A §3.4, §7.7): flat 64-bit code and data segments and a TSS whose
//! Interrupt Stack Table gives the faults that must work on a broken stack their own stacks.
//!
//! IST use (each a separate stack so one fault cannot clobber another's frame):
//! - IST1: double fault — the last resort when delivering any other exception failed;
//! - IST2: NMI — may arrive at any instruction, including with a bad RSP;
//! - IST3: machine check;
//! - IST4: page fault — all page faults are fatal in Rhea (no demand paging), and the typical
//!   one is a stack overflow into a guard page, where the faulting stack cannot take a frame.
//!   With its own stack the report keeps the exact RIP (a #DF frame's RIP is undefined).

use super::percpu::MAX_CPUS;
use rhea_sync::Once;
use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, DS, ES, SS, Segment};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;

pub(super) const IST_DOUBLE_FAULT: u16 = 0;
pub(super) const IST_NMI: u16 = 1;
pub(super) const IST_MACHINE_CHECK: u16 = 2;
pub(super) const IST_PAGE_FAULT: u16 = 3;
pub(super) const IST_COUNT: usize = 4;
const IST_STACK_BYTES: usize = 16 * 1024;

#[repr(C, align(16))]
struct IstStack([u8; IST_STACK_BYTES]);

/// The boot CPU's IST stacks. `static mut` because the CPU, not Rust, writes them; Rust only
/// takes their addresses.
static mut IST_STACKS: [IstStack; IST_COUNT] =
    [const { IstStack([0; IST_STACK_BYTES]) }; IST_COUNT];

struct Tables {
    gdt: GlobalDescriptorTable,
    code: SegmentSelector,
    data: SegmentSelector,
    tss: SegmentSelector,
}

/// Per CPU: its TSS (IST pointers) and its GDT (whose TSS descriptor is that CPU's: a TSS
/// descriptor is marked busy when loaded, so CPUs cannot share one).
static TSS: [Once<TaskStateSegment>; MAX_CPUS] = [const { Once::new() }; MAX_CPUS];
static GDT: [Once<Tables>; MAX_CPUS] = [const { Once::new() }; MAX_CPUS];

/// The IST stack tops of the boot CPU (static stacks: it has no allocator yet).
fn boot_ist_tops() -> [u64; IST_COUNT] {
    let mut tops = [0; IST_COUNT];
    for (i, top) in tops.iter_mut().enumerate() {
        // Only the address is taken; no reference to the `static mut` is formed.
        let base = core::ptr::addr_of!(IST_STACKS) as u64 + (i * IST_STACK_BYTES) as u64;
        *top = base + IST_STACK_BYTES as u64;
    }
    tops
}

pub(super) fn load_boot_cpu() {
    load(0, boot_ist_tops());
}

/// Loads CPU `cpu`'s GDT and TSS with `ist_tops` as its IST1–IST4 stacks (double fault, NMI,
/// machine check, page fault). Once per CPU, on that CPU.
pub(super) fn load(cpu: usize, ist_tops: [u64; IST_COUNT]) {
    let tss = TSS[cpu].call_once(|| {
        let mut tss = TaskStateSegment::new();
        // The TSS is packed: copy the table out, fill it, copy it back.
        let mut ist = tss.interrupt_stack_table;
        for (slot, top) in ist.iter_mut().zip(ist_tops) {
            *slot = VirtAddr::new(top & !15);
        }
        tss.interrupt_stack_table = ist;
        tss
    });
    let t = GDT[cpu].call_once(|| {
        let mut gdt = GlobalDescriptorTable::new();
        let code = gdt.append(Descriptor::kernel_code_segment());
        let data = gdt.append(Descriptor::kernel_data_segment());
        let tss = gdt.append(Descriptor::tss_segment(tss));
        Tables {
            gdt,
            code,
            data,
            tss,
        }
    });
    t.gdt.load();
    // SAFETY: the selectors index descriptors of the GDT just loaded, which lives in a static
    // for the rest of the run; the TSS descriptor is this CPU's alone.
    unsafe {
        CS::set_reg(t.code);
        DS::set_reg(t.data);
        ES::set_reg(t.data);
        SS::set_reg(t.data);
        load_tss(t.tss);
    }
}
