//! Secondary CPUs: which ones a run uses, and starting them.
//!
//! The CPUs are the enabled nodes of the devicetree's `/cpus` ([`crate::platform::Cpus`]),
//! numbered with the boot CPU as 0 and the others in devicetree order. A run uses all of them,
//! at most [`MAX_CPUS`], at most 8 with a GICv2 (its SGI target list has 8 bits), and at most
//! `rhea.cpus=N` from the command line; every cut is printed.
//!
//! Early init ([`plan`], boot identity map still active) decides the count and sends the
//! spin-table CPUs the run does not use to a `wfi` loop for good and those it uses to the
//! secondary entry, where they wait (`wfe`) for their start block — their release addresses
//! often lie in page 0, which the kernel's own tables leave unmapped. [`start`] then starts
//! one CPU at a time: three guarded stacks from the runtime (idle, exception, nested
//! exception), the start block ([`rhea_arch::secondary`]), then PSCI `CPU_ON` (errors reported
//! by name) or, for a spin-table CPU, the block alone; and waits up to [`START_TIMEOUT_MS`] for
//! the CPU to report in from [`secondary_main`] after bringing up its side of the GIC. A CPU
//! that does not is reported and left out; the boot continues.
//!
//! Fault injection for tests: `rhea.smp.nostart=N` never starts CPU `N` (no `CPU_ON`; a
//! spin-table CPU is parked instead of released), so the timeout path runs as for a dead CPU.
#![allow(
    unsafe_code,
    reason = "PSCI calls, spin-table releases and the entry through a stored pointer; each use has a SAFETY note"
)]

use crate::machine::{ArmBoard, BOOT_MAP_END, ConsoleWriter, FACTS};
use crate::platform::{
    ArmPlatform, EnableMethod, Gic, MAX_CPUS, PsciConduit, cpus_from_cmdline, psci_error_name,
};
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use rhea_arch::secondary::{SecondaryStart, prepare_secondary, withdraw_secondary};
use rhea_arch::{SpinTableRelease, release_spin_table_cpu};
use rhea_hal::cmdline::{Cmdline, keys};
use rhea_hal::{PhysAddr, StackSource};

/// How long the boot CPU waits for each secondary to report in.
pub(crate) const START_TIMEOUT_MS: u64 = 1000;
/// A secondary's idle stack (the context it enters the scheduler with), like the boot stack.
const IDLE_STACK_BYTES: u64 = 64 * 1024;
/// Its exception stack (`SP_EL1`): fault reports run on it.
const EXCEPTION_STACK_BYTES: u64 = 16 * 1024;
/// Its stack for exceptions taken on the exception stack.
const NESTED_STACK_BYTES: u64 = 8 * 1024;
/// The most CPUs a GICv2 addresses (`GICD_SGIR`'s target list, `GICD_ITARGETSR` bytes).
const GICV2_MAX_CPUS: usize = 8;
/// PSCI `CPU_ON`, SMC64 function ID (DEN0022 §5.1.4): target MPIDR, entry point, context.
const PSCI_CPU_ON_64: u32 = 0xc400_0003;

/// How many CPUs the run uses (set by [`plan`]).
static CPU_COUNT: AtomicUsize = AtomicUsize::new(1);
/// Which secondary CPUs reported in.
static ONLINE: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// Which spin-table CPUs were released into the secondary entry.
static RELEASED: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// The CPU `rhea.smp.nostart=N` names (`usize::MAX`: none).
static NO_START: AtomicUsize = AtomicUsize::new(usize::MAX);
/// The runtime's entry for secondaries (`extern "C" fn(usize) -> !`), set by [`start`].
static ENTRY: AtomicUsize = AtomicUsize::new(0);

/// How many CPUs the run uses.
pub(crate) fn cpu_count() -> usize {
    CPU_COUNT.load(Ordering::Relaxed)
}

/// This CPU's MPIDR affinity.
fn this_mpidr() -> u64 {
    rhea_arch::generic_timer::mpidr() & rhea_arch::MPIDR_AFFINITY_MASK
}

/// Whether the spin table at `release` can be written: 8-byte aligned, inside the boot map and
/// a RAM region of the devicetree, outside the board's device range.
fn release_address_ok(board: &ArmBoard, platform: &ArmPlatform<'_>, release: u64) -> bool {
    release.is_multiple_of(8)
        && release
            .checked_add(8)
            .is_some_and(|end| end <= BOOT_MAP_END)
        && !board.device_range().contains(&release)
        && platform
            .memory_map
            .region_containing(PhysAddr(release), 8)
            .is_some()
}

/// Early init, on the boot CPU with the boot map active: decides how many CPUs the run uses
/// (printing every cut) and releases the spin-table CPUs (see the module documentation).
pub(crate) fn plan(board: &ArmBoard, platform: &ArmPlatform<'_>) {
    let mut w = ConsoleWriter(board);
    let me = this_mpidr();
    let cpus = &platform.cpus;
    if cpus.listed() > MAX_CPUS {
        let _ = writeln!(
            w,
            "rhea: smp: the devicetree lists {} CPUs; using the first {MAX_CPUS}, the most Rhea supports",
            cpus.listed()
        );
    }
    if !cpus.as_slice().is_empty() && cpus.find(me).is_none() {
        let _ = writeln!(
            w,
            "rhea: smp: the boot CPU (MPIDR {me:#x}) is not among the devicetree's CPUs; counting it as cpu0"
        );
    }
    let mut n = cpus.count(me).min(MAX_CPUS);
    if matches!(platform.gic, Gic::V2 { .. }) && n > GICV2_MAX_CPUS {
        let _ = writeln!(
            w,
            "rhea: smp: {n} CPUs, but a GICv2 addresses at most {GICV2_MAX_CPUS}; using {GICV2_MAX_CPUS}"
        );
        n = GICV2_MAX_CPUS;
    }
    // Early init runs before the runtime checks the whole command line: a bad value is not
    // applied here, and the runtime refuses it before the machine runs.
    if let Ok(Some(limit)) = cpus_from_cmdline(platform.bootargs)
        && limit < n
    {
        let _ = writeln!(
            w,
            "rhea: smp: using {limit} of {n} CPUs (rhea.cpus={limit})"
        );
        n = limit;
    }
    CPU_COUNT.store(n, Ordering::Relaxed);
    let no_start = Cmdline::new(platform.bootargs)
        .number(&keys::SMP_NOSTART)
        .ok()
        .flatten()
        .map(|c| c as usize);
    if let Some(c) = no_start {
        let _ = writeln!(
            w,
            "rhea: smp: rhea.smp.nostart={c}: cpu{c} will not be started (fault injection)"
        );
        NO_START.store(c, Ordering::Relaxed);
    }
    for (cpu, c) in cpus.numbered(me).enumerate().skip(1) {
        let EnableMethod::SpinTable { release_addr } = c.enable else {
            continue;
        };
        if !release_address_ok(board, platform, release_addr) {
            let _ = writeln!(
                w,
                "rhea: smp: MPIDR {:#x}: cpu-release-addr {release_addr:#x} is not in RAM below 4 GiB; not using it",
                c.mpidr
            );
            continue;
        }
        let to = if cpu < n && no_start != Some(cpu) {
            SpinTableRelease::Start
        } else {
            SpinTableRelease::Park
        };
        // SAFETY: the release address is the devicetree's, checked above to be 8-aligned RAM
        // in the boot map (active now), and reserved for this protocol (the firmware's
        // `/memreserve/` keeps it out of the frame allocator).
        unsafe { release_spin_table_cpu(release_addr, to) };
        if cpu < n {
            // Also for a parked `nostart` CPU: its start is attempted, and times out.
            RELEASED[cpu].store(true, Ordering::Relaxed);
        }
    }
}

/// Starts CPUs `1..cpu_count()` (see the module documentation); returns how many are online.
pub(crate) fn start(
    board: &ArmBoard,
    entry: extern "C" fn(usize) -> !,
    stacks: &dyn StackSource,
) -> usize {
    let Some(facts) = FACTS.get() else {
        return 1;
    };
    let p = &facts.platform;
    ENTRY.store(entry as usize, Ordering::Release);
    let mut w = ConsoleWriter(board);
    let hz = match rhea_arch::generic_timer::frequency_hz() {
        0 => p.timer_hz.map_or(1_000_000_000, u64::from),
        hz => hz,
    };
    let timeout = hz / 1000 * START_TIMEOUT_MS;
    let mut online = 1;
    for (cpu, c) in p
        .cpus
        .numbered(this_mpidr())
        .enumerate()
        .take(cpu_count())
        .skip(1)
    {
        let mut left_out = |why: core::fmt::Arguments<'_>| {
            let _ = writeln!(
                w,
                "rhea: smp: cpu{cpu} (MPIDR {:#x}): {why}; continuing without it",
                c.mpidr
            );
        };
        match c.enable {
            EnableMethod::None => {
                left_out(format_args!("the devicetree gives it no enable-method"));
                continue;
            }
            EnableMethod::SpinTable { .. } if !RELEASED[cpu].load(Ordering::Relaxed) => {
                left_out(format_args!("its spin table could not be used"));
                continue;
            }
            EnableMethod::Psci if p.psci.is_none() => {
                left_out(format_args!("enable-method psci without PSCI"));
                continue;
            }
            _ => {}
        }
        let (Some(stack), Some(exception_stack), Some(nested_stack)) = (
            stacks.stack(cpu, "idle", IDLE_STACK_BYTES),
            stacks.stack(cpu, "exception", EXCEPTION_STACK_BYTES),
            stacks.stack(cpu, "nested", NESTED_STACK_BYTES),
        ) else {
            left_out(format_args!("no memory for its stacks"));
            continue;
        };
        let start = SecondaryStart {
            cpu,
            mpidr: c.mpidr,
            stack,
            exception_stack,
            nested_stack,
            main: secondary_main,
        };
        // SAFETY: one CPU at a time (the previous one reported in or was withdrawn below); the
        // stacks are fresh, guarded and mapped; `cpu` < MAX_CPUS and not running; the kernel's
        // tables are active (the runtime starts CPUs after memory bring-up).
        let entry_point = unsafe { prepare_secondary(&start) };
        if c.enable == EnableMethod::Psci && NO_START.load(Ordering::Relaxed) != cpu {
            // SAFETY: CPU_ON starts the CPU with this affinity at the secondary entry, which
            // needs nothing but the block just written; the conduit is the devicetree's.
            let ret = unsafe {
                rhea_arch::psci_call(
                    p.psci == Some(PsciConduit::Smc),
                    PSCI_CPU_ON_64,
                    c.mpidr,
                    entry_point,
                    0,
                )
            } as i64 as i32;
            if ret != 0 {
                withdraw_secondary();
                left_out(format_args!(
                    "PSCI CPU_ON failed: {} ({ret})",
                    psci_error_name(ret)
                ));
                continue;
            }
        }
        let t0 = rhea_arch::read_cycle_counter();
        // RT: bounded by the timeout.
        while !ONLINE[cpu].load(Ordering::Acquire)
            && rhea_arch::read_cycle_counter().wrapping_sub(t0) < timeout
        {
            core::hint::spin_loop();
        }
        if ONLINE[cpu].load(Ordering::Acquire) {
            online += 1;
        } else {
            withdraw_secondary();
            left_out(format_args!("did not start within {START_TIMEOUT_MS} ms"));
        }
    }
    online
}

/// A secondary CPU's first Rust code (from `rhea_aarch64_secondary_entry`: MMU on with the
/// kernel's tables, on its idle stack, vectors and `TPIDR_EL1` set, IRQs masked): its side of
/// the GIC, then it reports in and enters the runtime.
extern "C" fn secondary_main(cpu: usize) -> ! {
    if let Err(e) = crate::interrupts::init_secondary_cpu(cpu) {
        // Not reporting in: the boot CPU says it is left out. This CPU stops.
        if let Some(board) = crate::machine::board() {
            let _ = writeln!(ConsoleWriter(board), "rhea: smp: cpu{cpu}: {e}");
        }
        rhea_arch::halt_forever();
    }
    // The board's interrupt layer on this CPU (xen-arm64: its vcpu_info and IPI port), before
    // it reports in: from then on other CPUs may send it IPIs.
    if let Some(board) = crate::machine::board()
        && let Some(layer) = board.interrupt_layer()
        && let Err(e) = (layer.init_cpu)(cpu)
    {
        let _ = writeln!(ConsoleWriter(board), "rhea: smp: cpu{cpu}: {e}");
        rhea_arch::halt_forever();
    }
    ONLINE[cpu].store(true, Ordering::Release);
    let entry = ENTRY.load(Ordering::Acquire);
    // SAFETY: `start` stored a valid `extern "C" fn(usize) -> !` before starting any CPU.
    let entry: extern "C" fn(usize) -> ! = unsafe { core::mem::transmute(entry) };
    entry(cpu)
}
