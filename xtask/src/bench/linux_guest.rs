//! The Linux guest baseline: Rhea's scheduler measures taken from a Debian Linux guest under
//! the same QEMU flags, in the same run, so Rhea's figures can be given as ratios to Linux's
//! (TCG costs differ from hardware; only the ratio means something).
//!
//! ```text
//! cargo xtask bench linux-sched [--machine q35|microvm] [--accel A] [--smp N] [--loops N]
//! ```
//!
//! runs it alone and prints the conditions and figures; [`run_sched_baseline`] is the entry
//! point for other benches (e.g. `bench sched`). `bench sched --board linuxu`
//! (`host_baseline.rs`) runs the same cyclictest and pingpong on the host instead
//! ([`unpack_cyclictest`], [`pingpong`]).
//!
//! The guest, all of it cached under `target/linux-guest/` (a second run downloads nothing),
//! its packages in the amd64 `.deb` cache shared with the other Debian guests
//! (`guest::debian`, `target/debian/amd64/debs/`):
//!
//! * Kernel: Debian's `linux-image-cloud-amd64` flavour (virtio and the 8250 console built
//!   in), resolved with `apt-cache depends` to the versioned package.
//! * Initramfs: a cpio "newc" archive (`guest::cpio`) holding busybox
//!   (`busybox-static`), `cyclictest` (`rt-tests`) with the dynamic loader and the libraries
//!   its `PT_INTERP` and `DT_NEEDED` entries name, recursively (`guest::elf`, taken from the
//!   `lib*` packages `rt-tests` depends on, not from the host), `pingpong` (`xtask/guest/pingpong.c`, built with
//!   `gcc -O2 -static -pthread`) and `/init` (`xtask/guest/init.sh`); for `bench net`
//!   (`rhea.mode=net`, [`net_guest`]) also `netecho` (`xtask/guest/netecho.c`, built the same
//!   way) and the kernel's virtio-pci and virtio-net modules with their dependencies
//!   (`lib/modules/net/`, numbered in load order by `guest::modules`; the cloud kernel builds
//!   them as modules).
//!
//! Packages come from `apt-get download` (no root needed) and are unpacked with `dpkg-deb`;
//! on a host without them, put the `.deb` files into `target/debian/amd64/debs/` by hand.
//!
//! The guest prints `RESULT <key> <value>` lines, `NOTE` lines, and for each cyclictest run a
//! `BEGIN cyclictest period=.. hog=.. rc=..` … `END cyclictest` block with the non-zero
//! histogram buckets and cyclictest's `#` summary; min/avg/p99/max are computed here from the
//! histogram. It ends with `RESULT done` and `poweroff -f`.
//!
//! QEMU command line: that of a Rhea run with the same machine, accelerator and vCPU count
//! (`qemu::linux_machine`), plus `-initrd` and `-append`. Two differences, reported with the
//! figures: `-m 256M` ([`LINUX_MEM`]), and on microvm `pit=on,pic=on,rtc=on` (without them
//! Linux cannot calibrate its TSC).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::guest::cpio::Tree;
use crate::guest::debian::{self, DebArch, Debs, Members};
use crate::guest::{self, elf};
use crate::qemu::{self, Accel, LinuxBoot, Qemu, QemuEnd, Serial};
use crate::{Context, Error, Options, Result, Workspace, boards, capture, describe, fail, setup};

/// Guest RAM for Linux (Rhea runs use `--mem`, default 128M; Linux needs more).
pub(crate) const LINUX_MEM: &str = "256M";
/// Default cyclictest loops and pingpong round trips.
pub(crate) const DEFAULT_LOOPS: u32 = 10_000;
/// The board whose QEMU flags the Linux guest shares.
const BOARD: &str = "qemu-x86_64";
/// The kernel flavour (`linux-image-<flavour>` names the current versioned kernel package).
const KERNEL_FLAVOUR: &str = "cloud-amd64";
/// What is unpacked from a kernel package: the kernel alone.
const KERNEL_MEMBERS: Members<'static> = Members::Matching(&["*/boot/vmlinuz-*"]);
const BUSYBOX_PKG: &str = "busybox-static";
const RT_TESTS_PKG: &str = "rt-tests";
/// cyclictest's histogram size, µs (latencies above it count as overflows).
pub(crate) const HIST_US: u32 = 20_000;
/// The cyclictest periods `init.sh` runs, µs (each idle and with the hog).
const PERIODS_US: [u32; 2] = [200, 1000];
/// The guest's `/init`.
const INIT_SCRIPT: &str = include_str!("../../guest/init.sh");
/// The ping-pong program, relative to the workspace root.
const PINGPONG_SRC: &str = "xtask/guest/pingpong.c";
/// The cross-CPU wake-up program (`bench smp`), relative to the workspace root.
const XCPU_SRC: &str = "xtask/guest/xcpu_wake.c";
/// The echo server of `bench net` (`rhea.mode=net`), relative to the workspace root.
const NETECHO_SRC: &str = "xtask/guest/netecho.c";
/// The POSIX side of `bench rtos` (`rhea.mode=rtos`), relative to the workspace root.
const RTOS_SRC: &str = "xtask/guest/rtos.c";
/// The modules `rhea.mode=net` loads (the cloud kernel has virtio-net and virtio-pci as
/// modules), with the modules they depend on.
const NET_MODULES: [&str; 2] = ["virtio_pci", "virtio_net"];
/// Where the initramfs holds them, numbered in load order (`init.sh` loads `*.ko` sorted).
const GUEST_NET_MODULE_DIR: &str = "lib/modules/net";
/// The first console line of `/init`.
const INIT_MARKER: &str = "NOTE /init started";
/// The multiarch triple of the x86_64 guest's libraries (`lib/<triple>/` in the guest).
pub(crate) const TRIPLE: &str = "x86_64-linux-gnu";
/// Console lines shown when the guest fails.
const TAIL_LINES: usize = 40;

/// One cyclictest run, from its histogram (1 µs buckets).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CyclicResult {
    pub(crate) period_us: u32,
    /// Whether the nice-19 CPU hog ran on the measured CPU.
    pub(crate) hog: bool,
    pub(crate) min_us: f64,
    pub(crate) avg_us: f64,
    /// `None` when the 99th percentile lies above the histogram (> 1% overflows).
    pub(crate) p99_us: Option<f64>,
    pub(crate) max_us: f64,
    /// All samples, overflows included.
    pub(crate) samples: u64,
    /// Samples above the histogram range ([`HIST_US`]).
    pub(crate) overflows: u64,
}

impl CyclicResult {
    /// `RESULT cyclictest period=200 hog=0 min=9 avg=63.12 p99=143 max=1567 samples=10000`.
    pub(crate) fn result_line(&self) -> String {
        let p99 = match self.p99_us {
            Some(p) => format!("{p}"),
            None => format!(">{HIST_US}"),
        };
        format!(
            "RESULT cyclictest period={} hog={} min={} avg={:.2} p99={p99} max={} samples={}",
            self.period_us,
            u8::from(self.hog),
            self.min_us,
            self.avg_us,
            self.max_us,
            self.samples
        )
    }
}

/// What one Linux guest run measured, and under which conditions.
#[derive(Debug, Clone)]
pub(crate) struct LinuxSchedFigures {
    /// `sched_yield` hand-off between two equal-priority threads on CPU 0, ns one way.
    pub(crate) yield_switch_ns: Option<f64>,
    /// POSIX semaphore hand-off between two threads on CPU 0, ns one way.
    pub(crate) sem_pingpong_ns: Option<f64>,
    /// cyclictest, per period (200, 1000 µs), idle then with the hog.
    pub(crate) cyclic: Vec<CyclicResult>,
    /// `uname -r` and `uname -v` of the guest.
    pub(crate) kernel_version: String,
    /// The Debian package and version the kernel came from.
    pub(crate) kernel_package: String,
    /// `fifo`, or `other` when the guest refused SCHED_FIFO to pingpong.
    pub(crate) sched_policy: String,
    /// `/sys/kernel/debug/sched/preempt` (the mode in parentheses is active).
    pub(crate) preempt: String,
    pub(crate) clocksource: String,
    /// Guest RAM (`-m`).
    pub(crate) mem: &'static str,
    pub(crate) loops: u32,
    /// The whole QEMU command line.
    pub(crate) qemu_command: String,
    /// Wall time from QEMU spawn to the first line of `/init`.
    pub(crate) wall_to_init: Option<Duration>,
    /// Wall time of the whole run.
    pub(crate) wall_total: Duration,
    /// The guest's `NOTE` lines (fallbacks, cyclictest warnings, ...).
    pub(crate) notes: Vec<String>,
}

impl LinuxSchedFigures {
    /// Prints the figures as `RESULT` lines, indented.
    pub(crate) fn print_figures(&self) {
        let ns = |v: Option<f64>| v.map_or("missing".to_string(), |v| format!("{v:.1}"));
        println!(
            "  RESULT yield_switch_ns {}   (sched_yield hand-off, 2 threads SCHED_{} on CPU 0, ns one way)",
            ns(self.yield_switch_ns),
            self.sched_policy.to_uppercase()
        );
        println!(
            "  RESULT sem_pingpong_ns {}   (POSIX semaphore hand-off, 2 threads on CPU 0, ns one way)",
            ns(self.sem_pingpong_ns)
        );
        for c in &self.cyclic {
            println!("  {}", c.result_line());
        }
    }
}

/// Runs the Linux guest baseline once: the kernel and initramfs are prepared (downloaded and
/// built on first use), then booted with the QEMU flags of a Rhea run with the same
/// `machine` (`q35` or `microvm`), `accel` and `smp`, except `-m` [`LINUX_MEM`].
/// `loops` is the number of cyclictest loops and pingpong round trips.
pub(crate) fn run_sched_baseline(
    ws: &Workspace,
    qemu: &Qemu,
    machine: &str,
    accel: Accel,
    smp: u32,
    loops: u32,
    verbose: bool,
) -> Result<LinuxSchedFigures> {
    let append = format!("console=ttyS0 quiet panic=-1 rhea.loops={loops} rhea.hist={HIST_US}");
    let shape = GuestShape {
        machine,
        accel,
        smp,
    };
    with_guest(ws, shape, &append, |guest, spec, linux| {
        sched_baseline_run(qemu, guest, spec, linux, loops, verbose)
    })
}

/// [`run_sched_baseline`] once the guest and its machine are known.
fn sched_baseline_run(
    qemu: &Qemu,
    guest: &Guest,
    spec: &qemu::Spec<'_>,
    linux: &LinuxBoot<'_>,
    loops: u32,
    verbose: bool,
) -> Result<LinuxSchedFigures> {
    let shown = qemu::linux_machine(spec, qemu.qboot.as_deref(), linux)?.command();
    let timeout = timeout_for(loops);
    let captured = qemu::run_linux_captured(qemu, spec, linux, timeout, verbose)?;
    let lines: Vec<&str> = captured.lines.iter().map(|(_, l)| l.as_str()).collect();
    let report = parse_console(&lines);
    let tail = || {
        let from = lines.len().saturating_sub(TAIL_LINES);
        let mut s = lines[from..].join("\n");
        if !captured.stderr.trim().is_empty() {
            s.push_str(&format!("\nQEMU stderr: {}", captured.stderr.trim()));
        }
        s
    };
    if !report.done {
        return fail(format!(
            "the Linux guest did not finish ({}; no `RESULT done` line); last console lines:\n{}",
            captured.end.describe(),
            tail()
        ));
    }
    let mut notes = baseline_notes(&report, &captured.end);
    let cyclic = cyclic_results(&report, &mut notes);
    let float = |key: &str| report.get(key).and_then(|v| v.parse::<f64>().ok());
    let text = |key: &str| report.get(key).unwrap_or("unknown").to_string();
    Ok(LinuxSchedFigures {
        yield_switch_ns: float("yield_switch_ns"),
        sem_pingpong_ns: float("sem_pingpong_ns"),
        cyclic,
        kernel_version: text("kernel"),
        kernel_package: guest.kernel_package.clone(),
        sched_policy: text("sched_policy"),
        preempt: text("preempt"),
        clocksource: text("clocksource"),
        mem: LINUX_MEM,
        loops,
        qemu_command: describe(&shown),
        wall_to_init: captured.time_of(INIT_MARKER),
        wall_total: captured.elapsed,
        notes,
    })
}

/// The Linux guest's same- and cross-CPU futex wake-ups (`xcpu_wake` in `rhea.mode=xcpu`),
/// booted like [`run_sched_baseline`] with `smp` vCPUs. Returns the `key=value` fields of its
/// `RESULT xcpu_same` and `RESULT xcpu_cross` lines.
pub(crate) fn run_xcpu_baseline(
    ws: &Workspace,
    qemu: &Qemu,
    machine: &str,
    accel: Accel,
    smp: u32,
    loops: u32,
    verbose: bool,
) -> Result<(String, String)> {
    let append = format!("console=ttyS0 quiet panic=-1 rhea.mode=xcpu rhea.loops={loops}");
    let shape = GuestShape {
        machine,
        accel,
        smp,
    };
    let timeout = Duration::from_secs(300 + u64::from(loops) / 50);
    let captured = with_guest(ws, shape, &append, |_, spec, linux| {
        qemu::run_linux_captured(qemu, spec, linux, timeout, verbose)
    })?;
    let lines: Vec<&str> = captured.lines.iter().map(|(_, l)| l.as_str()).collect();
    let report = parse_console(&lines);
    match (
        report.done,
        report.get("xcpu_same"),
        report.get("xcpu_cross"),
    ) {
        (true, Some(same), Some(cross)) => Ok((same.to_string(), cross.to_string())),
        _ => {
            let from = lines.len().saturating_sub(TAIL_LINES);
            fail(format!(
                "the Linux guest printed no xcpu_wake figures ({}); last console lines:\n{}",
                captured.end.describe(),
                lines[from..].join("\n")
            ))
        }
    }
}

/// The console line `netecho` prints once it answers (`rhea.mode=net`).
pub(crate) const NET_READY: &str = "RESULT netecho_ready";
/// The UDP datagram that ends `netecho` (and then the guest: `/init` powers off).
pub(crate) const NET_QUIT: &[u8] = b"QUIT netecho";

/// A Linux guest in `rhea.mode=net` (`bench net`), not yet started.
#[derive(Debug)]
pub(crate) struct NetGuest {
    /// Its QEMU machine.
    pub(crate) machine: qemu::Machine,
    /// e.g. `linux-image-6.1.0-56-cloud-amd64 6.1.192-2`.
    pub(crate) kernel_package: String,
    /// Guest RAM (`-m`).
    pub(crate) mem: &'static str,
}

/// The QEMU machine of the Linux guest in `rhea.mode=net`: that of a Rhea run with the same
/// `machine`, `accel` and `smp` (`-m` [`LINUX_MEM`]), with `nic`, the NIC of the Rhea run it
/// is compared with, and eth0 given the address `ip` (`A.B.C.D/N`). It prints [`NET_READY`] once its echo server answers on
/// port 7 and powers off after [`NET_QUIT`].
pub(crate) fn net_guest(
    ws: &Workspace,
    qemu: &Qemu,
    machine: &str,
    accel: Accel,
    smp: u32,
    nic: &qemu::Nic,
    ip: &str,
) -> Result<NetGuest> {
    let append = format!("console=ttyS0 quiet panic=-1 rhea.mode=net rhea.net.ip={ip}");
    let shape = GuestShape {
        machine,
        accel,
        smp,
    };
    with_guest(ws, shape, &append, |guest, spec, linux| {
        let mut machine = qemu::linux_machine(spec, qemu.qboot.as_deref(), linux)?;
        machine.binary = qemu.binary.clone();
        machine.nics = vec![nic.clone()];
        Ok(NetGuest {
            machine,
            kernel_package: guest.kernel_package.clone(),
            mem: LINUX_MEM,
        })
    })
}

/// The QEMU machine type, accelerator and vCPUs of the Rhea run a Linux guest is compared with.
#[derive(Clone, Copy)]
struct GuestShape<'a> {
    machine: &'a str,
    accel: Accel,
    smp: u32,
}

/// Prepares the Linux guest (downloaded and built on first use) and calls `f` with it, the
/// QEMU spec of a Rhea run of the same `shape` (with `-m` [`LINUX_MEM`]) and the guest's
/// initramfs and command line `append`: the one place both baselines set the guest up.
fn with_guest<R>(
    ws: &Workspace,
    shape: GuestShape<'_>,
    append: &str,
    f: impl FnOnce(&Guest, &qemu::Spec<'_>, &LinuxBoot<'_>) -> Result<R>,
) -> Result<R> {
    let board = boards::find(BOARD)?;
    let machine = board.machine(Some(shape.machine))?;
    let guest = prepare(ws)?;
    let spec = qemu::Spec {
        board,
        machine,
        accel: shape.accel,
        smp: shape.smp,
        mem: LINUX_MEM,
        kernel: &guest.vmlinuz,
        serial: Serial::Captured,
        append: "",
    };
    let linux = LinuxBoot {
        initrd: &guest.initrd,
        append,
    };
    f(&guest, &spec, &linux)
}

/// The QEMU timeout: generous, as TCG is slow (Linux needs ~5 s to reach `/init`) and the
/// cyclictest runs alone take `loops` × (200 + 1000) µs × 2 of guest time.
fn timeout_for(loops: u32) -> Duration {
    let period_sum: u64 = PERIODS_US.iter().map(|&p| u64::from(p)).sum();
    let cyclic = Duration::from_micros(u64::from(loops) * period_sum * 2);
    Duration::from_secs(300).max(Duration::from_secs(120) + cyclic * 4)
}

/// `cargo xtask bench linux-sched`.
pub(crate) fn bench(ws: &Workspace, opts: &Options) -> Result<()> {
    let board = boards::find(BOARD)?;
    let machine = board.machine(opts.machine.as_deref())?;
    let loops = opts.loops.unwrap_or(DEFAULT_LOOPS);
    let qemu = setup::ensure_qemu(board)?;
    let decision = qemu::decide_accel(opts.accel, &qemu::probe_hardware_kvm());
    decision.print();
    let accel = decision.accel;
    let cpu = match accel {
        Accel::Kvm => "host",
        Accel::Tcg => "max",
    };

    let figures = run_sched_baseline(ws, &qemu, machine, accel, opts.smp, loops, opts.verbose)?;

    println!();
    println!(
        "== bench linux-sched: Linux guest baseline, machine {machine}, accel {accel}",
        accel = accel.name()
    );
    println!("conditions:");
    println!("  QEMU:        {}", qemu.banner);
    println!("  accel/cpu:   {}, -cpu {cpu}", accel.name());
    match machine {
        "microvm" => println!(
            "  machine:     microvm with pit=on,pic=on,rtc=on (Linux needs them; Rhea runs use rtc=off)"
        ),
        m => println!("  machine:     {m} (same -M/-bios as Rhea runs)"),
    }
    println!(
        "  guest:       -smp {} -m {} (Rhea runs: -m {}; Linux needs more RAM)",
        opts.smp, figures.mem, opts.mem
    );
    println!("  kernel:      {}", figures.kernel_version);
    println!("  package:     {}", figures.kernel_package);
    println!("  preempt:     {}", figures.preempt);
    println!("  clocksource: {}", figures.clocksource);
    println!(
        "  loops:       {} (cyclictest loops and pingpong round trips; cyclictest -m -p 90 -a 0 -h {HIST_US})",
        figures.loops
    );
    println!("  QEMU line:   {}", figures.qemu_command);
    match figures.wall_to_init {
        Some(t) => println!(
            "  wall:        QEMU spawn -> /init {:.2} s, whole run {:.1} s",
            t.as_secs_f64(),
            figures.wall_total.as_secs_f64()
        ),
        None => println!(
            "  wall:        whole run {:.1} s",
            figures.wall_total.as_secs_f64()
        ),
    }
    if !figures.notes.is_empty() {
        println!("guest notes:");
        for note in &figures.notes {
            println!("  {note}");
        }
    }
    println!("figures (Linux guest, this run; cyclictest in µs):");
    figures.print_figures();
    if loops < DEFAULT_LOOPS {
        println!("note: --loops {loops} is below {DEFAULT_LOOPS}: a quick check, not a baseline");
    }
    let complete = figures.yield_switch_ns.is_some()
        && figures.sem_pingpong_ns.is_some()
        && figures.cyclic.len() == PERIODS_US.len() * 2;
    if !complete {
        eprintln!("bench linux-sched: some figures are missing (see the notes above)");
        return Err(Error::Quiet(1));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// `bench rtos`: `xtask/guest/rtos.c` in the guest (`rhea.mode=rtos`), on q35/microvm and on
// Arm's virt.

/// The arm64 guest's cache, under `target/linux-guest/`: its own `unpacked/`, the
/// cross-built `rtos` and `initrd.cpio` (its packages are in the arm64 `.deb` cache).
const ARM64_DIR: &str = "arm64";
/// Debian's arm64 kernel flavour (the generic one: PL011 console and virtio built in, boots on
/// `-M virt`).
const ARM64_KERNEL_FLAVOUR: &str = "arm64";
/// The C cross compiler for the arm64 guest's static binaries.
pub(crate) const ARM64_GCC: &str = "aarch64-linux-gnu-gcc";
/// What the arm64 guest adds to its command line: with KASLR on, Debian's arm64 kernel forces
/// kernel page-table isolation (KPTI; a Cortex-A72 has no E0PD), and under TCG every kernel
/// entry and exit then flushes QEMU's TLB (measured: `sched_yield` 4× slower). The x86_64
/// guest boots without page-table isolation, so this keeps the two guests alike.
pub(crate) const ARM64_RTOS_APPEND: &str = "nokaslr";
/// Its Debian packages (the compiler and the static C library).
const ARM64_GCC_PKGS: [&str; 2] = ["gcc-aarch64-linux-gnu", "libc6-dev-arm64-cross"];

/// The Linux guest of `bench rtos`, prepared (kernel, initramfs with `rtos`), not yet booted.
#[derive(Debug, Clone)]
pub(crate) struct RtosGuest {
    guest: Guest,
    /// The board whose QEMU flags it shares (`qemu-x86_64` or `qemu-aarch64`).
    board: &'static boards::Board,
    /// e.g. `gcc -O2 -static -pthread (12.2.0)`.
    pub(crate) compiler: String,
}

/// One run of the `bench rtos` guest: its console and conditions.
#[derive(Debug, Clone)]
pub(crate) struct RtosRun {
    /// The console lines (`RESULT conditions ...`, `RESULT rtos ...` and `RESULT done` of
    /// `rtos`, among `/init`'s and the kernel's).
    pub(crate) lines: Vec<String>,
    /// How QEMU ended.
    pub(crate) end: QemuEnd,
    /// `uname -r` and `uname -v`.
    pub(crate) kernel_version: String,
    /// e.g. `linux-image-6.1.0-56-cloud-amd64 6.1.192-2`.
    pub(crate) kernel_package: String,
    /// `/sys/kernel/debug/sched/preempt` (the active mode in parentheses).
    pub(crate) preempt: String,
    pub(crate) clocksource: String,
    /// The whole QEMU command line.
    pub(crate) qemu_command: String,
    /// Wall time from QEMU spawn to `/init`'s first line, and of the whole run.
    pub(crate) wall_to_init: Option<Duration>,
    pub(crate) wall_total: Duration,
    /// QEMU's standard error.
    pub(crate) stderr: String,
}

/// Prepares the Linux guest of `bench rtos` for `board` (`qemu-x86_64`: the guest of `bench
/// sched`, which carries `rtos`; `qemu-aarch64`: Debian's arm64 kernel with busybox and a
/// cross-built `rtos`), downloading and building what is missing.
pub(crate) fn rtos_guest(ws: &Workspace, board: &'static boards::Board) -> Result<RtosGuest> {
    let (guest, gcc) = match board.arch() {
        "x86_64" => (prepare(ws)?, "gcc"),
        "aarch64" => (prepare_arm64(ws)?, ARM64_GCC),
        other => return fail(format!("no Linux guest for architecture {other}")),
    };
    let version = capture(Command::new(gcc).arg("-dumpfullversion"))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|_| "version unknown".to_string());
    Ok(RtosGuest {
        guest,
        board,
        compiler: format!("{gcc} {version}, -O2 -static -pthread"),
    })
}

impl RtosGuest {
    /// Boots the guest with the QEMU flags of a Rhea run on the same machine, TCG, one vCPU
    /// and `-m mem`; `/init` runs `rtos periods=N period_ms=M` and powers off.
    pub(crate) fn run(
        &self,
        qemu: &Qemu,
        machine: &str,
        mem: &str,
        (periods, period_ms): (u32, u32),
        timeout: Duration,
        verbose: bool,
    ) -> Result<RtosRun> {
        let machine = self.board.machine(Some(machine))?;
        let (console, extra) = match self.board.arch() {
            "aarch64" => ("ttyAMA0", format!(" {ARM64_RTOS_APPEND}")),
            _ => ("ttyS0", String::new()),
        };
        let append = format!(
            "console={console} quiet panic=-1{extra} rhea.mode=rtos rhea.periods={periods} \
             rhea.period_ms={period_ms}"
        );
        let spec = qemu::Spec {
            board: self.board,
            machine,
            accel: Accel::Tcg,
            smp: 1,
            mem,
            kernel: &self.guest.vmlinuz,
            serial: Serial::Captured,
            append: "",
        };
        let linux = LinuxBoot {
            initrd: &self.guest.initrd,
            append: &append,
        };
        let shown = qemu::linux_machine(&spec, qemu.qboot.as_deref(), &linux)?.command();
        let captured = qemu::run_linux_captured(qemu, &spec, &linux, timeout, verbose)?;
        let lines: Vec<String> = captured
            .lines
            .iter()
            .map(|(_, l)| l.trim_end_matches('\r').to_string())
            .collect();
        let report = parse_console(&lines.iter().map(String::as_str).collect::<Vec<_>>());
        let text = |key: &str| report.get(key).unwrap_or("unknown").to_string();
        Ok(RtosRun {
            kernel_version: text("kernel"),
            kernel_package: self.guest.kernel_package.clone(),
            preempt: text("preempt"),
            clocksource: text("clocksource"),
            qemu_command: describe(&shown),
            wall_to_init: captured.time_of(INIT_MARKER),
            wall_total: captured.elapsed,
            end: captured.end,
            stderr: captured.stderr,
            lines,
        })
    }
}

/// Whether this process runs as root (effective uid 0).
fn is_root() -> bool {
    fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|u| u.split_whitespace().nth(1).map(|e| e == "0"))
            .unwrap_or(false)
    })
}

/// Makes sure [`ARM64_GCC`] runs: installs [`ARM64_GCC_PKGS`] with apt-get when root, else
/// says how.
fn ensure_arm64_gcc() -> Result<()> {
    let runs = || Command::new(ARM64_GCC).arg("--version").output().is_ok();
    if runs() {
        return Ok(());
    }
    let how = format!(
        "apt-get install -y --no-install-recommends {}",
        ARM64_GCC_PKGS.join(" ")
    );
    if !is_root() {
        return fail(format!(
            "{ARM64_GCC} is missing: the arm64 Linux guest's programs are cross-built with it; \
             run `sudo {how}`"
        ));
    }
    println!("linux-guest: $ {how}");
    let mut cmd = Command::new("apt-get");
    cmd.env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "--no-install-recommends"])
        .args(ARM64_GCC_PKGS);
    crate::run_checked(&mut cmd)?;
    if !runs() {
        return fail(format!("{ARM64_GCC} still does not run after `{how}`"));
    }
    Ok(())
}

/// The arm64 guest: Debian's arm64 kernel, `busybox-static` (arm64) and `rtos` cross-built
/// statically, with `/init`, all under `target/linux-guest/arm64/`.
fn prepare_arm64(ws: &Workspace) -> Result<Guest> {
    let (top, _) = cache_dirs(ws)?;
    let dir = top.join(ARM64_DIR);
    let unpacked = dir.join("unpacked");
    guest::mkdir(&unpacked)?;
    let debs = Debs::open(DebArch::Arm64)?;
    let kernel_deb = debs.kernel(ARM64_KERNEL_FLAVOUR)?;
    // Only the kernel: neither its modules nor its devicetrees (-M virt makes its own).
    let kernel_root = debian::unpack_own(&kernel_deb, &unpacked, KERNEL_MEMBERS)?;
    let vmlinuz = find_vmlinuz(&kernel_root)?;
    let busybox_root = debian::unpack_own(&debs.package(BUSYBOX_PKG)?, &unpacked, Members::All)?;
    ensure_arm64_gcc()?;
    let rtos = build_static(ws, &dir, RTOS_SRC, "rtos", ARM64_GCC)?;

    let mut tree = Tree::default();
    tree.dirs
        .extend(["bin", "proc", "sys", "tmp"].map(String::from));
    tree.console = true;
    tree.text("init", 0o755, INIT_SCRIPT.as_bytes());
    tree.files
        .insert("bin/busybox".into(), busybox_root.join("bin/busybox"));
    tree.files.insert("bin/rtos".into(), rtos);
    finish_guest(&dir, &tree, vmlinuz, &kernel_deb, "arm64 kernel")
}

// ---------------------------------------------------------------------------------------
// Preparing the guest: packages, pingpong, initramfs.

/// The files QEMU boots.
#[derive(Debug, Clone)]
struct Guest {
    vmlinuz: PathBuf,
    initrd: PathBuf,
    /// e.g. `linux-image-6.1.0-56-cloud-amd64 6.1.192-2`.
    kernel_package: String,
}

/// The cache directory `target/linux-guest/` and its `unpacked/`, created.
fn cache_dirs(ws: &Workspace) -> Result<(PathBuf, PathBuf)> {
    let dir = ws.root.join("target").join("linux-guest");
    let unpacked = dir.join("unpacked");
    guest::mkdir(&unpacked)?;
    Ok((dir, unpacked))
}

/// cyclictest unpacked from Debian's `rt-tests`, with the library packages it depends on.
#[derive(Debug, Clone)]
pub(crate) struct Cyclictest {
    pub(crate) binary: PathBuf,
    /// The unpacked `lib*` packages of rt-tests' `Depends:` (libc6, libnuma1, ...).
    pub(crate) lib_roots: Vec<PathBuf>,
    /// e.g. `rt-tests 2.4-1`.
    pub(crate) package: String,
}

/// Downloads (on first use) and unpacks `rt-tests` and its library packages; also used by
/// the host baseline (`host_baseline.rs`), which runs this cyclictest on the host.
pub(crate) fn unpack_cyclictest(ws: &Workspace) -> Result<Cyclictest> {
    let (_, unpacked) = cache_dirs(ws)?;
    let debs = Debs::open(DebArch::Amd64)?;
    let rt_tests_deb = debs.package(RT_TESTS_PKG)?;
    let rt_tests_root = debian::unpack_own(&rt_tests_deb, &unpacked, Members::All)?;
    let depends = debian::control_field(&rt_tests_deb, "Depends")?;
    let mut lib_roots = Vec::new();
    for deb in debs.packages(&debian::library_packages(&depends))? {
        lib_roots.push(debian::unpack_own(&deb, &unpacked, Members::All)?);
    }
    Ok(Cyclictest {
        binary: rt_tests_root.join("usr/bin/cyclictest"),
        lib_roots,
        package: debian::package_and_version(&rt_tests_deb),
    })
}

/// `pingpong` (`xtask/guest/pingpong.c`, static), built when missing or out of date; also
/// run on the host by `host_baseline.rs`.
pub(crate) fn pingpong(ws: &Workspace) -> Result<PathBuf> {
    let (dir, _) = cache_dirs(ws)?;
    ensure_pingpong(ws, &dir)
}

/// Downloads and unpacks what is missing, builds pingpong if needed, writes the initramfs.
fn prepare(ws: &Workspace) -> Result<Guest> {
    let (dir, unpacked) = cache_dirs(ws)?;
    let debs = Debs::open(DebArch::Amd64)?;
    let kernel_deb = debs.kernel(KERNEL_FLAVOUR)?;
    let kernel_root = debian::unpack_own(&kernel_deb, &unpacked, KERNEL_MEMBERS)?;
    let vmlinuz = find_vmlinuz(&kernel_root)?;
    let busybox_root = debian::unpack_own(&debs.package(BUSYBOX_PKG)?, &unpacked, Members::All)?;
    let Cyclictest {
        binary: cyclictest,
        lib_roots,
        ..
    } = unpack_cyclictest(ws)?;

    let mut tree = Tree::default();
    tree.dirs.extend(["proc", "sys", "tmp"].map(String::from));
    tree.console = true;
    tree.text("init", 0o755, INIT_SCRIPT.as_bytes());
    let programs = [
        ("bin/busybox", busybox_root.join("bin/busybox")),
        ("bin/pingpong", ensure_pingpong(ws, &dir)?),
        (
            "bin/xcpu_wake",
            ensure_static(ws, &dir, XCPU_SRC, "xcpu_wake")?,
        ),
        (
            "bin/netecho",
            ensure_static(ws, &dir, NETECHO_SRC, "netecho")?,
        ),
        ("bin/rtos", ensure_static(ws, &dir, RTOS_SRC, "rtos")?),
        ("usr/bin/cyclictest", cyclictest.clone()),
    ];
    tree.files
        .extend(programs.map(|(guest, host)| (guest.to_string(), host)));
    for (i, (name, path)) in net_modules(&kernel_deb, &unpacked)?.into_iter().enumerate() {
        let guest = format!("{GUEST_NET_MODULE_DIR}/{:02}-{name}.ko", i + 1);
        tree.files.insert(guest, path);
    }
    elf::add_libraries(&mut tree, &[cyclictest], &lib_roots, TRIPLE, &[])?;
    finish_guest(&dir, &tree, vmlinuz, &kernel_deb, "kernel")
}

/// Writes the guest's initramfs (only if its bytes changed, so its timestamp means something)
/// and reports it.
fn finish_guest(
    dir: &Path,
    tree: &Tree,
    vmlinuz: PathBuf,
    kernel_deb: &Path,
    label: &str,
) -> Result<Guest> {
    let bytes = tree.cpio()?;
    let initrd = dir.join("initrd.cpio");
    guest::write_if_changed(&initrd, &bytes)?;
    let kernel_package = debian::package_and_version(kernel_deb);
    println!(
        "linux-guest: {label} {kernel_package}; initramfs {} B ({})",
        crate::bench::thousands(bytes.len() as u64),
        initrd.display()
    );
    Ok(Guest {
        vmlinuz,
        initrd,
        kernel_package,
    })
}

fn find_vmlinuz(kernel_root: &Path) -> Result<PathBuf> {
    let boot = kernel_root.join("boot");
    let found = fs::read_dir(&boot)
        .context(|| format!("cannot list {}", boot.display()))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        });
    match found {
        Some(p) => Ok(p),
        None => fail(format!("no vmlinuz-* in {}", boot.display())),
    }
}

/// Builds `pingpong` when missing or older than its source.
fn ensure_pingpong(ws: &Workspace, dir: &Path) -> Result<PathBuf> {
    ensure_static(ws, dir, PINGPONG_SRC, "pingpong")
}

/// Builds `src` (relative to the workspace) into `dir/name` as a static binary for the guest,
/// unless it is up to date.
fn ensure_static(ws: &Workspace, dir: &Path, src: &str, name: &str) -> Result<PathBuf> {
    build_static(ws, dir, src, name, "gcc")
}

/// [`ensure_static`] with the C compiler `gcc` (e.g. a cross compiler for the arm64 guest).
fn build_static(ws: &Workspace, dir: &Path, src: &str, name: &str, gcc: &str) -> Result<PathBuf> {
    let src = ws.root.join(src);
    let out = dir.join(name);
    let mtime = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
    let src_time =
        mtime(&src).ok_or_else(|| Error::Failed(format!("{} missing", src.display())))?;
    if mtime(&out).is_some_and(|t| t >= src_time) {
        return Ok(out);
    }
    let tmp = dir.join(format!("{name}.tmp"));
    let mut cmd = Command::new(gcc);
    cmd.args(["-O2", "-static", "-pthread", "-Wall", "-Wextra", "-o"])
        .arg(&tmp)
        .arg(&src);
    println!("linux-guest: $ {}", describe(&cmd));
    capture(&mut cmd).map_err(|e| {
        Error::Failed(format!(
            "{e}\n({name} needs gcc and the static C library: apt-get install gcc libc6-dev)"
        ))
    })?;
    fs::rename(&tmp, &out).context(|| format!("cannot rename to {}", out.display()))?;
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Kernel modules (`rhea.mode=net`).

/// What `tar` extracts from the kernel package for [`net_modules`]: the modules that
/// [`NET_MODULES`] and their dependencies can be among.
const NET_MODULE_PATTERNS: [&str; 3] = [
    "./lib/modules/*/kernel/drivers/virtio/*.ko",
    "./lib/modules/*/kernel/drivers/net/*.ko",
    "./lib/modules/*/kernel/net/core/*.ko",
];

/// The modules of [`NET_MODULES`] with those they depend on, in load order, as (module
/// name, file): extracted once from the kernel package into `unpacked/<stem>.net-modules/`
/// (the kernel's own unpacked tree has only `vmlinuz`), ordered by `guest::modules`.
fn net_modules(kernel_deb: &Path, unpacked: &Path) -> Result<Vec<(String, PathBuf)>> {
    let stem = kernel_deb
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let root = unpacked.join(format!("{stem}.net-modules"));
    debian::unpack(
        kernel_deb,
        &root,
        Members::MatchingInDir(&NET_MODULE_PATTERNS),
    )?;
    guest::modules::in_order(&root, &NET_MODULES)
}

// ---------------------------------------------------------------------------------------
/// The notes of a finished baseline run: the guest's own, after how long `/init` waited for
/// the clock to settle (first), and how QEMU ended when not by the guest's poweroff (last).
fn baseline_notes(report: &Report, end: &QemuEnd) -> Vec<String> {
    let mut notes = report.notes.clone();
    if let Some(wait) = report.get("settle_wait_s") {
        notes.insert(
            0,
            format!("/init waited {wait} s for the final clocksource and high-resolution timers"),
        );
    }
    if *end != QemuEnd::Exited(0) {
        notes.push(format!(
            "QEMU ended with {} after `RESULT done` (expected status 0 from poweroff)",
            end.describe()
        ));
    }
    notes
}

/// The figures of each cyclictest block of `report`; a block that failed or whose histogram
/// is unreadable adds a note to `notes`.
fn cyclic_results(report: &Report, notes: &mut Vec<String>) -> Vec<CyclicResult> {
    let mut cyclic = Vec::new();
    for block in &report.cyclic {
        if block.rc != 0 {
            notes.push(format!(
                "cyclictest period={} hog={} exited with status {}",
                block.period_us,
                u8::from(block.hog),
                block.rc
            ));
        }
        match parse_histogram(&block.lines) {
            Ok(hist) => cyclic.push(cyclic_result(block.period_us, block.hog, &hist)),
            Err(why) => notes.push(format!(
                "cyclictest period={} hog={}: {why}",
                block.period_us,
                u8::from(block.hog)
            )),
        }
    }
    cyclic
}

// The guest's console output.

/// One `BEGIN cyclictest` … `END cyclictest` block.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CyclicBlock {
    period_us: u32,
    hog: bool,
    rc: i32,
    lines: Vec<String>,
}

/// Everything the guest reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Report {
    /// `RESULT <key> <value>` pairs, in order.
    results: Vec<(String, String)>,
    notes: Vec<String>,
    cyclic: Vec<CyclicBlock>,
    /// `RESULT done` was seen.
    done: bool,
}

impl Report {
    /// The last value of a `RESULT` key.
    fn get(&self, key: &str) -> Option<&str> {
        self.results
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// `RESULT <key> <value...>` → (key, value); the value may be empty (`RESULT done`).
pub(crate) fn parse_result_line(line: &str) -> Option<(&str, &str)> {
    let rest = line.trim().strip_prefix("RESULT ")?;
    let (key, value) = rest.split_once(' ').unwrap_or((rest, ""));
    (!key.is_empty()).then(|| (key, value.trim()))
}

/// `key=value` words of a `BEGIN cyclictest` line.
fn parse_begin_line(line: &str) -> Option<(u32, bool, i32)> {
    let rest = line.trim().strip_prefix("BEGIN cyclictest")?;
    let (mut period, mut hog, mut rc) = (None, None, None);
    for word in rest.split_whitespace() {
        match word.split_once('=')? {
            ("period", v) => period = v.parse().ok(),
            ("hog", "0") => hog = Some(false),
            ("hog", "1") => hog = Some(true),
            ("rc", v) => rc = v.parse().ok(),
            _ => {}
        }
    }
    Some((period?, hog?, rc.unwrap_or(0)))
}

fn parse_console(lines: &[&str]) -> Report {
    let mut report = Report::default();
    let mut block: Option<CyclicBlock> = None;
    for raw in lines {
        let line = raw.trim_end_matches('\r');
        if let Some(b) = &mut block {
            if line.trim() == "END cyclictest" {
                report.cyclic.push(block.take().expect("in a block"));
            } else if let Some(note) = line.trim().strip_prefix("NOTE ") {
                report.notes.push(note.to_string());
            } else {
                b.lines.push(line.to_string());
            }
            continue;
        }
        if let Some((period_us, hog, rc)) = parse_begin_line(line) {
            block = Some(CyclicBlock {
                period_us,
                hog,
                rc,
                lines: Vec::new(),
            });
        } else if let Some((key, value)) = parse_result_line(line) {
            if key == "done" {
                report.done = true;
            } else {
                report.results.push((key.to_string(), value.to_string()));
            }
        } else if let Some(note) = line.trim().strip_prefix("NOTE ")
            && !line.contains(INIT_MARKER)
        {
            report.notes.push(note.to_string());
        }
    }
    report
}

/// cyclictest's histogram output (`-h`, one thread), zero buckets possibly left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Histogram {
    /// (latency µs, count), ascending.
    buckets: Vec<(u64, u64)>,
    overflows: u64,
    /// From the `# Min/Avg/Max Latencies:` lines (avg truncated to whole µs by cyclictest).
    min: Option<u64>,
    avg: Option<u64>,
    max: Option<u64>,
}

/// The first number after `prefix` on a `# ...:` summary line.
fn summary_value(line: &str, prefix: &str) -> Option<u64> {
    line.strip_prefix(prefix)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn parse_histogram(lines: &[String]) -> Result<Histogram, String> {
    let mut h = Histogram::default();
    for line in lines {
        let line = line.trim();
        if line.starts_with('#') {
            if let Some(v) = summary_value(line, "# Min Latencies:") {
                h.min = Some(v);
            } else if let Some(v) = summary_value(line, "# Avg Latencies:") {
                h.avg = Some(v);
            } else if let Some(v) = summary_value(line, "# Max Latencies:") {
                h.max = Some(v);
            } else if let Some(v) = summary_value(line, "# Histogram Overflows:") {
                h.overflows = v;
            }
            continue;
        }
        let mut words = line.split_whitespace();
        let (Some(bucket), Some(count)) = (words.next(), words.next()) else {
            continue;
        };
        if let (Ok(bucket), Ok(count)) = (bucket.parse::<u64>(), count.parse::<u64>())
            && count > 0
        {
            h.buckets.push((bucket, count));
        }
    }
    h.buckets.sort_unstable();
    if h.buckets.is_empty() && h.overflows == 0 {
        return Err("no histogram samples in cyclictest's output".to_string());
    }
    Ok(h)
}

/// The smallest latency `v` such that at least `q` of all `total` samples (overflows, which
/// lie above every bucket, included) are ≤ `v`; `None` when that falls among the overflows.
fn percentile(buckets: &[(u64, u64)], total: u64, q: f64) -> Option<u64> {
    let rank = ((q * total as f64).ceil() as u64).max(1);
    let mut seen = 0;
    for &(value, count) in buckets {
        seen += count;
        if seen >= rank {
            return Some(value);
        }
    }
    None
}

/// The figures of one cyclictest run from its `-h` output (stdout lines); also used by the
/// host baseline.
pub(crate) fn cyclic_from_output(
    period_us: u32,
    hog: bool,
    lines: &[String],
) -> Result<CyclicResult, String> {
    parse_histogram(lines).map(|h| cyclic_result(period_us, hog, &h))
}

fn cyclic_result(period_us: u32, hog: bool, h: &Histogram) -> CyclicResult {
    let in_range: u64 = h.buckets.iter().map(|&(_, c)| c).sum();
    let samples = in_range + h.overflows;
    let weighted: u64 = h.buckets.iter().map(|&(v, c)| v * c).sum();
    // Without overflows the histogram average is exact (to the µs bucket) and finer than
    // cyclictest's truncated one; with them only cyclictest's covers every sample.
    let avg_us = if h.overflows == 0 && in_range > 0 {
        weighted as f64 / in_range as f64
    } else {
        h.avg.unwrap_or(0) as f64
    };
    let first = h.buckets.first().map(|&(v, _)| v);
    let last = h.buckets.last().map(|&(v, _)| v);
    CyclicResult {
        period_us,
        hog,
        min_us: h.min.or(first).unwrap_or(0) as f64,
        avg_us,
        p99_us: percentile(&h.buckets, samples, 0.99).map(|v| v as f64),
        max_us: h.max.or(last).unwrap_or(0) as f64,
        samples,
        overflows: h.overflows,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONSOLE: &str = "\
NOTE /init started
[    0.28] PCI: Fatal: No config space access function found
RESULT kernel 6.1.0-56-cloud-amd64 #1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (2026-11-16)\r
RESULT sched_policy fifo
NOTE yield_switch ns per hand-off, 5 rounds: min 2502.4 median 2600.4 max 2647.3
RESULT yield_switch_ns 2600.4
RESULT sem_pingpong_ns 5646.2
BEGIN cyclictest period=200 hog=0 rc=0
# /dev/cpu_dma_latency set to 0us
# Histogram
000009 000001
000060 000097
000150 000002
# Total: 000000100
# Min Latencies: 00009
# Avg Latencies: 00063
# Max Latencies: 00150
# Histogram Overflows: 00000
# Histogram Overflow at cycle number:
# Thread 0:

NOTE cyclictest: WARN: High resolution timers not available
END cyclictest
NOTE hog pid 120 nice 19
BEGIN cyclictest period=1000 hog=1 rc=1
END cyclictest
RESULT clocksource tsc
RESULT done
[   27.45] reboot: Power down";

    #[test]
    fn console_parsing() {
        let lines: Vec<&str> = CONSOLE.lines().collect();
        let r = parse_console(&lines);
        assert!(r.done);
        assert_eq!(
            r.get("kernel"),
            Some("6.1.0-56-cloud-amd64 #1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (2026-11-16)")
        );
        assert_eq!(r.get("yield_switch_ns"), Some("2600.4"));
        assert_eq!(r.get("sem_pingpong_ns"), Some("5646.2"));
        assert_eq!(r.get("clocksource"), Some("tsc"));
        assert_eq!(r.get("missing"), None);
        assert_eq!(r.cyclic.len(), 2);
        assert_eq!(
            (r.cyclic[0].period_us, r.cyclic[0].hog, r.cyclic[0].rc),
            (200, false, 0)
        );
        assert_eq!(
            (r.cyclic[1].period_us, r.cyclic[1].hog, r.cyclic[1].rc),
            (1000, true, 1)
        );
        assert!(r.cyclic[1].lines.is_empty());
        assert_eq!(
            r.notes,
            [
                "yield_switch ns per hand-off, 5 rounds: min 2502.4 median 2600.4 max 2647.3",
                "cyclictest: WARN: High resolution timers not available",
                "hog pid 120 nice 19",
            ]
        );

        let h = parse_histogram(&r.cyclic[0].lines).unwrap();
        assert_eq!(h.buckets, [(9, 1), (60, 97), (150, 2)]);
        assert_eq!(
            (h.min, h.avg, h.max, h.overflows),
            (Some(9), Some(63), Some(150), 0)
        );
        let c = cyclic_result(200, false, &h);
        assert_eq!(c.samples, 100);
        assert_eq!((c.min_us, c.max_us), (9.0, 150.0));
        assert_eq!(c.p99_us, Some(150.0));
        assert!((c.avg_us - (9.0 + 60.0 * 97.0 + 300.0) / 100.0).abs() < 1e-9);
        assert_eq!(
            c.result_line(),
            "RESULT cyclictest period=200 hog=0 min=9 avg=61.29 p99=150 max=150 samples=100"
        );
        assert!(parse_histogram(&r.cyclic[1].lines).is_err());
    }

    #[test]
    fn baseline_notes_and_cyclic_results() {
        let lines: Vec<&str> = CONSOLE.lines().collect();
        let mut r = parse_console(&lines);
        let mut notes = baseline_notes(&r, &QemuEnd::Exited(0));
        assert_eq!(notes, r.notes);
        let cyclic = cyclic_results(&r, &mut notes);
        assert_eq!(cyclic.len(), 1);
        assert_eq!((cyclic[0].period_us, cyclic[0].samples), (200, 100));
        // The second block exited with 1 and has no histogram: two notes.
        assert_eq!(notes.len(), r.notes.len() + 2, "{notes:?}");
        assert_eq!(
            notes[notes.len() - 2],
            "cyclictest period=1000 hog=1 exited with status 1"
        );
        assert!(notes[notes.len() - 1].starts_with("cyclictest period=1000 hog=1: "));
        r.results.push(("settle_wait_s".into(), "2".into()));
        let notes = baseline_notes(&r, &QemuEnd::Exited(1));
        assert_eq!(
            notes[0],
            "/init waited 2 s for the final clocksource and high-resolution timers"
        );
        assert!(notes[notes.len() - 1].starts_with("QEMU ended with "));
        assert!(
            notes[notes.len() - 1]
                .ends_with(" after `RESULT done` (expected status 0 from poweroff)")
        );
    }

    #[test]
    fn result_and_begin_lines() {
        assert_eq!(parse_result_line("RESULT done"), Some(("done", "")));
        assert_eq!(parse_result_line(" RESULT a  b c "), Some(("a", "b c")));
        assert_eq!(parse_result_line("RESULTS a b"), None);
        assert_eq!(parse_result_line("NOTE RESULT a b"), None);
        assert_eq!(
            parse_begin_line("BEGIN cyclictest period=200 hog=1 rc=0"),
            Some((200, true, 0))
        );
        assert_eq!(parse_begin_line("BEGIN cyclictest period=200 hog=2"), None);
        assert_eq!(parse_begin_line("BEGIN cyclictest hog=0"), None);
    }

    #[test]
    fn percentiles() {
        // 1000 samples: 990 at 10 µs, 9 at 20 µs, 1 at 30 µs.
        let b = [(10, 990), (20, 9), (30, 1)];
        assert_eq!(percentile(&b, 1000, 0.99), Some(10));
        assert_eq!(percentile(&b, 1000, 0.995), Some(20));
        assert_eq!(percentile(&b, 1000, 1.0), Some(30));
        assert_eq!(percentile(&b, 1000, 0.0), Some(10));
        // 100 samples, 98 in range: p99 (rank 99) is an overflow.
        assert_eq!(percentile(&[(5, 98)], 100, 0.99), None);
        assert_eq!(percentile(&[(5, 99)], 100, 0.99), Some(5));
        assert_eq!(percentile(&[], 0, 0.99), None);
        let h = Histogram {
            buckets: vec![(5, 98)],
            overflows: 2,
            min: Some(5),
            avg: Some(400),
            max: Some(30_000),
        };
        let c = cyclic_result(1000, true, &h);
        assert_eq!((c.samples, c.overflows, c.p99_us), (100, 2, None));
        assert_eq!((c.avg_us, c.max_us), (400.0, 30_000.0));
        assert!(c.result_line().contains("p99=>20000 max=30000 samples=100"));
    }

    #[test]
    fn timeouts() {
        assert_eq!(timeout_for(10_000), Duration::from_secs(300));
        // 100k loops: 240 s of cyclictest guest time, x4, + 120 s.
        assert_eq!(timeout_for(100_000), Duration::from_secs(1080));
    }

    #[test]
    fn init_script_matches_the_parser() {
        assert!(INIT_SCRIPT.starts_with("#!/bin/busybox sh\n"));
        assert!(INIT_SCRIPT.contains(&format!("echo \"{INIT_MARKER}\"")));
        assert!(INIT_SCRIPT.contains("echo \"RESULT done\""));
        assert!(INIT_SCRIPT.contains("echo \"BEGIN cyclictest period=$period hog=$hog rc=$rc\""));
        assert!(INIT_SCRIPT.contains("echo \"END cyclictest\""));
        assert!(INIT_SCRIPT.contains("rhea.loops=*"));
        assert!(INIT_SCRIPT.contains("rhea.hist=*"));
        assert!(INIT_SCRIPT.contains("rhea.net.ip=*"));
        assert!(INIT_SCRIPT.contains(&format!("/{GUEST_NET_MODULE_DIR}/*.ko")));
        assert!(INIT_SCRIPT.contains("/bin/netecho 7"));
        let periods: Vec<String> = PERIODS_US.iter().map(u32::to_string).collect();
        assert!(INIT_SCRIPT.contains(&format!("for period in {}; do", periods.join(" "))));
    }

    #[test]
    fn rtos_mode() {
        assert!(INIT_SCRIPT.contains("if [ \"$mode\" = rtos ]; then"));
        assert!(INIT_SCRIPT.contains("rhea.periods=*"));
        assert!(INIT_SCRIPT.contains("rhea.period_ms=*"));
        assert!(INIT_SCRIPT.contains("/bin/rtos \"periods=$periods\" \"period_ms=$period_ms\""));
    }
}
