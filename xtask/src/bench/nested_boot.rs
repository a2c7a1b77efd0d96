//! `cargo xtask bench boot --accel nested-kvm`: hello's boot under a real Linux KVM one level
//! down (`nested/`): [`RUNS`] boots per machine of `qemu-x86_64`, all run by one L1 Linux under
//! TCG, each its own L2 QEMU with `-accel kvm -cpu host`. It reports what the guest measured —
//! entry→main and, of that, the time spent writing the console (every 16550 access is a VM
//! exit to the L1's QEMU there) — and the L2's wall time. The L1 stores each L2's console whole,
//! so the wall time is the L2 QEMU's start to its exit, not to `main`.

use super::{APP, BOARD, BootRuns, BootSamples, RUNS, TIMEOUT, host_cpu_model};
use crate::qemu::{self, Accel};
use crate::{Error, Options, Result, Workspace, apps, boards, image, nested, setup};

pub(crate) fn bench(ws: &Workspace, opts: &Options) -> Result<()> {
    let board = boards::find(BOARD)?;
    let all_apps = apps::discover(&ws.root)?;
    let app = apps::find(&all_apps, APP)?;
    let machines = board.machines_to_test(opts.machine.as_deref())?;
    setup::ensure_toolchain(ws, board)?;
    let image = image::build(ws, board, app)?;
    let append = opts.append().to_string();
    let spec = |machine| qemu::Spec {
        board,
        machine,
        accel: Accel::Kvm,
        smp: opts.smp,
        mem: &opts.mem,
        kernel: &image.elf,
        serial: qemu::Serial::Captured,
        append: &append,
    };
    let boots: Vec<nested::Boot<'_>> = machines
        .iter()
        .flat_map(|&machine| {
            (0..RUNS).map(move |_| nested::Boot {
                spec: spec(machine),
                timeout: TIMEOUT,
                stdin: None,
                forward: None,
            })
        })
        .collect();

    println!();
    println!(
        "== bench boot --accel nested-kvm: app {APP}, board {BOARD}, {RUNS} runs per machine, \
         each under the KVM of one L1 Linux under TCG"
    );
    println!("conditions:");
    println!("  host CPU:   {}", host_cpu_model());
    println!(
        "  host nproc: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "  guest:      -accel kvm -cpu host -smp {} -m {} (in the L1)",
        opts.smp, opts.mem
    );
    let outcome = match nested::run(board, &boots, opts.verbose) {
        Ok(o) => o,
        Err(nested::NotRun(why)) => {
            eprintln!("bench boot: nested KVM cannot run here: {why}");
            return Err(Error::Quiet(1));
        }
    };
    for l1 in &outcome.l1s {
        match l1.ready {
            Some(t) => println!(
                "  L1 ({}):   ready {:.1} s after its QEMU started; {} L1 boot(s), {:.1} s in all",
                l1.machine,
                t.as_secs_f64(),
                l1.boots,
                l1.total.as_secs_f64()
            ),
            None => println!(
                "  L1 ({}):   never ready ({})",
                l1.machine,
                l1.end.describe()
            ),
        }
    }

    let mut runs = BootRuns::default();
    for (m, &machine) in machines.iter().enumerate() {
        println!();
        println!("{machine}/nested-kvm (machine {machine}, -accel kvm -cpu host in the L1):");
        let mut samples = BootSamples::default();
        for run in 0..RUNS {
            match outcome.boots.get(m * RUNS + run) {
                Some(Ok(captured)) => runs.take_run(run + 1, captured, &mut samples),
                Some(Err(why)) => {
                    runs.failures += 1;
                    println!("  run {}: FAILED: {why}", run + 1);
                }
                None => {
                    runs.failures += 1;
                    println!("  run {}: FAILED: no result", run + 1);
                }
            }
        }
        samples.print();
        println!("  (wall: the L2 QEMU's start to its exit; the L1 stores the console whole)");
    }
    if runs.failures > 0 {
        eprintln!("bench boot: {} run(s) failed", runs.failures);
        return Err(Error::Quiet(1));
    }
    Ok(())
}
