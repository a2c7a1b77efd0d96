//! Secondary vCPUs through `VCPUOP` (`vcpu.h`): a PVH vCPU is given its whole initial state —
//! 64-bit mode, the kernel's page tables, a stack, RDI = its index, RSI = its per-CPU block —
//! with `VCPUOP_initialise` (a `vcpu_hvm_context`), then started with `VCPUOP_up`. No
//! trampoline, no INIT/SIPI. The vCPUs are counted with `VCPUOP_is_up` (`-ENOENT` past the
//! last), capped by `rhea.cpus=N` and by Rhea's 64.
#![allow(
    unsafe_code,
    reason = "the AP entry and its register state; each use has a SAFETY note"
)]

use crate::hypercall as hc;
use crate::machine::ConsoleWriter;
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use rhea_board_xen_common::abi;
use rhea_board_xen_common::evtchn::MAX_VCPUS;
use rhea_hal::StackSource;
use rhea_hal::cmdline::{Cmdline, keys};

/// The most vCPUs used: the scheduler's and the event-channel tables' limits.
const MAX_CPUS: usize = if rhea_arch::percpu::MAX_CPUS < MAX_VCPUS {
    rhea_arch::percpu::MAX_CPUS
} else {
    MAX_VCPUS
};
/// How long the boot vCPU waits for each vCPU to reach Rust.
const START_TIMEOUT_NS: u64 = 1_000_000_000;

static COUNT: AtomicUsize = AtomicUsize::new(1);
static IST_TOPS: [[AtomicU64; 4]; MAX_CPUS] =
    [const { [const { AtomicU64::new(0) }; 4] }; MAX_CPUS];
static STARTED: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
static ENTRY: AtomicUsize = AtomicUsize::new(0);

core::arch::global_asm!(
    r#"
    /* A secondary vCPU's first instruction, in 64-bit mode with the kernel's page tables and
     * its stack (VCPUOP_initialise): RDI = its index, RSI = its per-CPU block. */
    .section .text.rhea_xen_ap, "ax"
    .code64
    .global rhea_xen_ap_entry
rhea_xen_ap_entry:
    movl $0xc0000101, %ecx          /* IA32_GS_BASE: this CPU's per-CPU block */
    movq %rsi, %rax
    movq %rsi, %rdx
    shrq $32, %rdx
    wrmsr
    xorl %ebp, %ebp
    call rhea_xen_ap_main
    ud2
    "#,
    options(att_syntax)
);

unsafe extern "C" {
    fn rhea_xen_ap_entry();
}

/// Counts the domain's vCPUs (early init), applying `rhea.cpus=N` (last one wins).
pub(crate) fn discover(cmdline: &str) {
    let mut w = ConsoleWriter;
    let mut n = 1;
    while n < 4096 {
        let rc = hc::vcpu_op_plain(abi::vcpu::IS_UP, n);
        if rc < 0 {
            break;
        }
        n += 1;
    }
    // Early init runs before the runtime checks the whole command line: a bad `rhea.cpus`
    // caps nothing here and is refused there, before the machine runs.
    let asked = Cmdline::new(cmdline).number(&keys::CPUS).ok().flatten();
    let mut use_n = n;
    if let Some(a) = asked {
        use_n = use_n.min(a as usize);
    }
    if use_n > MAX_CPUS {
        let _ = writeln!(
            w,
            "rhea: smp: the domain has {n} vCPUs; using {MAX_CPUS} (Rhea's limit)"
        );
        use_n = MAX_CPUS;
    }
    let _ = writeln!(w, "rhea: smp: {n} vCPUs (VCPUOP_is_up), using {use_n}");
    COUNT.store(use_n, Ordering::Relaxed);
}

pub(crate) fn cpu_count() -> usize {
    COUNT.load(Ordering::Relaxed)
}

/// Starts vCPUs `1..cpu_count()`, one at a time; returns how many are online.
pub(crate) fn start(entry: extern "C" fn(usize) -> !, stacks: &dyn StackSource) -> usize {
    let mut w = ConsoleWriter;
    let n = cpu_count();
    ENTRY.store(entry as usize, Ordering::Release);
    let (cr3, _) = x86_64::registers::control::Cr3::read_raw();
    let mut online = 1;
    for cpu in 1..n {
        let Some((stack_top, ist)) = rhea_board_common_x86::ap_stacks(cpu, stacks) else {
            let _ = writeln!(
                w,
                "rhea: smp: no memory for cpu{cpu}'s stacks; continuing without it"
            );
            continue;
        };
        for (slot, top) in IST_TOPS[cpu].iter().zip(ist) {
            slot.store(top, Ordering::Relaxed);
        }
        let percpu = &rhea_arch::percpu::rhea_percpu[cpu] as *const _ as u64;
        let mut ctx = abi::VcpuHvmContext64 {
            mode: abi::VCPU_HVM_MODE_64B,
            ..Default::default()
        };
        // rax rcx rdx rbx rsp rbp rsi rdi rip rflags
        ctx.gprs[4] = stack_top;
        ctx.gprs[6] = percpu;
        ctx.gprs[7] = cpu as u64;
        ctx.gprs[8] = rhea_xen_ap_entry as *const () as u64;
        ctx.gprs[9] = 0x2; // reserved bit 1; interrupts off
        ctx.cr0 = 0x8001_0033; // PG, WP, NE, ET, MP, PE
        ctx.cr3 = cr3.start_address().as_u64();
        ctx.cr4 = 0x20; // PAE (the rest is set by the per-CPU init)
        ctx.efer = 0xd00; // NXE, LMA, LME
        // SAFETY: the context starts the vCPU in 64-bit mode at `rhea_xen_ap_entry` on the
        // kernel's page tables and a fresh stack of its own, with its index and per-CPU block.
        let rc = unsafe { hc::vcpu_initialise(cpu, &mut ctx) };
        if rc < 0 {
            let _ = writeln!(
                w,
                "rhea: smp: VCPUOP_initialise(cpu{cpu}) failed: {rc} ({}); continuing without it",
                abi::errno_name(rc)
            );
            continue;
        }
        let rc = hc::vcpu_op_plain(abi::vcpu::UP, cpu);
        if rc < 0 {
            let _ = writeln!(
                w,
                "rhea: smp: VCPUOP_up(cpu{cpu}) failed: {rc} ({}); continuing without it",
                abi::errno_name(rc)
            );
            continue;
        }
        let t0 = rhea_arch::read_cycle_counter();
        let hz = crate::interrupts::tsc_hz().max(1);
        let limit = u128::from(START_TIMEOUT_NS) * u128::from(hz) / 1_000_000_000;
        loop {
            if STARTED[cpu].load(Ordering::Acquire) {
                online += 1;
                break;
            }
            if u128::from(rhea_arch::read_cycle_counter().wrapping_sub(t0)) > limit {
                let _ = writeln!(
                    w,
                    "rhea: smp: cpu{cpu} did not start within 1 s; continuing without it"
                );
                break;
            }
            core::hint::spin_loop();
        }
    }
    online
}

/// A secondary vCPU's first Rust: its descriptor tables, its Xen event channels, then the
/// runtime.
#[unsafe(no_mangle)]
extern "C" fn rhea_xen_ap_main(cpu: usize) -> ! {
    let tops = IST_TOPS[cpu].each_ref().map(|t| t.load(Ordering::Relaxed));
    rhea_arch::init_secondary_cpu(cpu, tops);
    if let Err(e) = crate::interrupts::init_this_cpu(cpu) {
        panic!("cpu{cpu}: event channels: {e}");
    }
    STARTED[cpu].store(true, Ordering::Release);
    let entry = ENTRY.load(Ordering::Acquire);
    // SAFETY: `start` stored a valid `extern "C" fn(usize) -> !` before starting any vCPU.
    let entry: extern "C" fn(usize) -> ! = unsafe { core::mem::transmute(entry) };
    entry(cpu)
}
