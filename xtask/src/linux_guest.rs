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
//! The guest, all of it cached under `target/linux-guest/` (a second run downloads nothing):
//!
//! * Kernel: Debian's `linux-image-cloud-amd64` flavour (virtio and the 8250 console built
//!   in), resolved with `apt-cache depends` to the versioned package.
//! * Initramfs: a cpio "newc" archive written here ([`Cpio`]) holding busybox
//!   (`busybox-static`), `cyclictest` (`rt-tests`) with the dynamic loader and the libraries
//!   its `PT_INTERP` and `DT_NEEDED` entries name, recursively (taken from the `lib*`
//!   packages `rt-tests` depends on, not from the host), `pingpong` (`xtask/guest/pingpong.c`, built with
//!   `gcc -O2 -static -pthread`) and `/init` (`xtask/guest/init.sh`); for `bench net`
//!   (`rhea.mode=net`, [`net_guest`]) also `netecho` (`xtask/guest/netecho.c`, built the same
//!   way) and the kernel's virtio-pci and virtio-net modules with their dependencies
//!   (`lib/modules/net/`, numbered in load order; the cloud kernel builds them as modules).
//!
//! Packages come from `apt-get download` (no root needed) and are unpacked with
//! `dpkg-deb -x`; on a host without them, put the `.deb` files into
//! `target/linux-guest/debs/` by hand.
//!
//! The guest prints `RESULT <key> <value>` lines, `NOTE` lines, and for each cyclictest run a
//! `BEGIN cyclictest period=.. hog=.. rc=..` … `END cyclictest` block with the non-zero
//! histogram buckets and cyclictest's `#` summary; min/avg/p99/max are computed here from the
//! histogram. It ends with `RESULT done` and `poweroff -f`.
//!
//! QEMU command line: that of a Rhea run with the same machine, accelerator and vCPU count
//! (`qemu::linux_args`), plus `-initrd` and `-append`. Two differences, reported with the
//! figures: `-m 256M` ([`LINUX_MEM`]), and on microvm `pit=on,pic=on,rtc=on` (without them
//! Linux cannot calibrate its TSC).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Component, Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use object::read::elf::{Dyn, ElfFile64, FileHeader, ProgramHeader};
use object::{Endianness, elf};

use crate::qemu::{self, Accel, LinuxBoot, Qemu, QemuEnd, Serial};
use crate::{Context, Error, Options, Result, Workspace, boards, capture, describe, fail, setup};

/// Guest RAM for Linux (Rhea runs use `--mem`, default 128M; Linux needs more).
pub(crate) const LINUX_MEM: &str = "256M";
/// Default cyclictest loops and pingpong round trips.
pub(crate) const DEFAULT_LOOPS: u32 = 10_000;
/// The board whose QEMU flags the Linux guest shares.
const BOARD: &str = "qemu-x86_64";
/// The kernel flavour (a metapackage naming the current versioned kernel package).
const KERNEL_META: &str = "linux-image-cloud-amd64";
const BUSYBOX_PKG: &str = "busybox-static";
const RT_TESTS_PKG: &str = "rt-tests";
/// cyclictest's histogram size, µs (latencies above it count as overflows).
pub(crate) const HIST_US: u32 = 20_000;
/// The cyclictest periods `init.sh` runs, µs (each idle and with the hog).
const PERIODS_US: [u32; 2] = [200, 1000];
/// The guest's `/init`.
const INIT_SCRIPT: &str = include_str!("../guest/init.sh");
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
/// Where the guest gets its libraries: a directory Debian's dynamic loader searches without
/// an `ld.so.cache`.
const GUEST_LIB_DIR: &str = "lib/x86_64-linux-gnu";
/// Where libraries are looked for in the unpacked packages.
pub(crate) const LIB_DIRS: &[&str] = &[
    "lib/x86_64-linux-gnu",
    "usr/lib/x86_64-linux-gnu",
    "lib64",
    "usr/lib64",
    "lib",
    "usr/lib",
];
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
    let board = boards::find(BOARD)?;
    let machine = board.machine(Some(machine))?;
    let guest = prepare(ws)?;
    let append = format!("console=ttyS0 quiet panic=-1 rhea.loops={loops} rhea.hist={HIST_US}");
    let spec = qemu::Spec {
        board,
        machine,
        accel,
        smp,
        mem: LINUX_MEM,
        kernel: &guest.vmlinuz,
        serial: Serial::Captured,
        append: "",
    };
    let linux = LinuxBoot {
        initrd: &guest.initrd,
        append: &append,
    };
    let mut shown = Command::new(&qemu.binary);
    shown.args(qemu::linux_args(&spec, qemu.qboot.as_deref(), &linux)?);
    let timeout = timeout_for(loops);
    let captured = qemu::run_linux_captured(qemu, &spec, &linux, timeout, verbose)?;
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
    let mut notes = report.notes.clone();
    if let Some(wait) = report.get("settle_wait_s") {
        notes.insert(
            0,
            format!("/init waited {wait} s for the final clocksource and high-resolution timers"),
        );
    }
    if captured.end != QemuEnd::Exited(0) {
        notes.push(format!(
            "QEMU ended with {} after `RESULT done` (expected status 0 from poweroff)",
            captured.end.describe()
        ));
    }
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
    let float = |key: &str| report.get(key).and_then(|v| v.parse::<f64>().ok());
    let text = |key: &str| report.get(key).unwrap_or("unknown").to_string();
    Ok(LinuxSchedFigures {
        yield_switch_ns: float("yield_switch_ns"),
        sem_pingpong_ns: float("sem_pingpong_ns"),
        cyclic,
        kernel_version: text("kernel"),
        kernel_package: guest.kernel_package,
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
    let board = boards::find(BOARD)?;
    let machine = board.machine(Some(machine))?;
    let guest = prepare(ws)?;
    let append = format!("console=ttyS0 quiet panic=-1 rhea.mode=xcpu rhea.loops={loops}");
    let spec = qemu::Spec {
        board,
        machine,
        accel,
        smp,
        mem: LINUX_MEM,
        kernel: &guest.vmlinuz,
        serial: Serial::Captured,
        append: "",
    };
    let linux = LinuxBoot {
        initrd: &guest.initrd,
        append: &append,
    };
    let timeout = Duration::from_secs(300 + u64::from(loops) / 50);
    let captured = qemu::run_linux_captured(qemu, &spec, &linux, timeout, verbose)?;
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
    /// QEMU with all its arguments.
    pub(crate) command: Command,
    /// e.g. `linux-image-6.1.0-56-cloud-amd64 6.1.192-2`.
    pub(crate) kernel_package: String,
    /// Guest RAM (`-m`).
    pub(crate) mem: &'static str,
}

/// The QEMU command of the Linux guest in `rhea.mode=net`: the flags of a Rhea run with the
/// same `machine`, `accel` and `smp` (`-m` [`LINUX_MEM`]), plus `nic`, the NIC arguments of
/// the Rhea run it is compared with (`-netdev ... -device ...`, verbatim), and eth0 given
/// the address `ip` (`A.B.C.D/N`). It prints [`NET_READY`] once its echo server answers on
/// port 7 and powers off after [`NET_QUIT`].
pub(crate) fn net_guest(
    ws: &Workspace,
    qemu: &Qemu,
    machine: &str,
    accel: Accel,
    smp: u32,
    nic: &[String],
    ip: &str,
) -> Result<NetGuest> {
    let board = boards::find(BOARD)?;
    let machine = board.machine(Some(machine))?;
    let guest = prepare(ws)?;
    let append = format!("console=ttyS0 quiet panic=-1 rhea.mode=net rhea.net.ip={ip}");
    let spec = qemu::Spec {
        board,
        machine,
        accel,
        smp,
        mem: LINUX_MEM,
        kernel: &guest.vmlinuz,
        serial: Serial::Captured,
        append: "",
    };
    let linux = LinuxBoot {
        initrd: &guest.initrd,
        append: &append,
    };
    let mut command = Command::new(&qemu.binary);
    command
        .args(qemu::linux_args(&spec, qemu.qboot.as_deref(), &linux)?)
        .args(nic);
    Ok(NetGuest {
        command,
        kernel_package: guest.kernel_package,
        mem: LINUX_MEM,
    })
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

/// The arm64 guest's cache, under `target/linux-guest/`: its own `debs/`, `unpacked/`, the
/// cross-built `rtos` and `initrd.cpio`.
const ARM64_DIR: &str = "arm64";
/// The metapackage naming Debian's current arm64 kernel (the generic flavour: PL011 console
/// and virtio built in, boots on `-M virt`).
const ARM64_KERNEL_META: &str = "linux-image-arm64";
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
        let mut shown = Command::new(&qemu.binary);
        shown.args(qemu::linux_args(&spec, qemu.qboot.as_deref(), &linux)?);
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

/// Whether a `.deb` file name is a versioned generic arm64 kernel, e.g.
/// `linux-image-6.1.0-57-arm64_6.1.192-3_arm64.deb` (not the metapackage, not `-rt-`,
/// `-cloud-` or `-dbg`).
fn is_arm64_kernel_deb(file_name: &str) -> bool {
    let pkg = file_name.split('_').next().unwrap_or_default();
    pkg.strip_prefix("linux-image-")
        .and_then(|rest| rest.strip_suffix("-arm64"))
        .is_some_and(|abi| {
            abi.starts_with(|c: char| c.is_ascii_digit())
                && abi
                    .chars()
                    .all(|c| c.is_ascii_digit() || c == '.' || c == '-')
        })
        && file_name.ends_with("_arm64.deb")
}

/// The arm64 kernel `.deb`: cached here, else the one `xen-dom0` fetched (linked, not fetched
/// again), else the current one named by [`ARM64_KERNEL_META`], downloaded through the
/// private arm64 apt state of `firmware.rs`.
fn ensure_arm64_kernel_deb(ws: &Workspace, debs: &Path) -> Result<PathBuf> {
    if let Some(deb) = cached_deb(debs, is_arm64_kernel_deb)? {
        return Ok(deb);
    }
    let xen_debs = ws.root.join("target/xen-dom0/aarch64/debs");
    if xen_debs.is_dir()
        && let Some(found) = cached_deb(&xen_debs, is_arm64_kernel_deb)?
    {
        let to = debs.join(found.file_name().unwrap_or_default());
        if fs::hard_link(&found, &to).is_ok() || fs::copy(&found, &to).is_ok() {
            return Ok(to);
        }
    }
    let meta = crate::firmware::download_arm64_deb(ARM64_KERNEL_META, debs)?;
    let depends = capture(Command::new("dpkg-deb").arg("-f").arg(&meta).arg("Depends"))?;
    let Some(pkg) = depends
        .split(',')
        .map(|d| d.split_whitespace().next().unwrap_or_default())
        .find(|p| p.starts_with("linux-image-"))
    else {
        return fail(format!(
            "{} depends on no linux-image-* package: {depends}",
            meta.display()
        ));
    };
    crate::firmware::download_arm64_deb(pkg, debs)
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
    let (top, _, _) = cache_dirs(ws)?;
    let dir = top.join(ARM64_DIR);
    let debs = dir.join("debs");
    let unpacked = dir.join("unpacked");
    for d in [&debs, &unpacked] {
        fs::create_dir_all(d).context(|| format!("cannot create {}", d.display()))?;
    }
    let kernel_deb = ensure_arm64_kernel_deb(ws, &debs)?;
    // The modules (and the devicetrees under usr/lib) are not needed: -M virt makes its own.
    let kernel_root = unpack(&kernel_deb, &unpacked, &["lib/modules", "usr/lib"])?;
    let vmlinuz = find_vmlinuz(&kernel_root)?;
    let busybox_deb = match cached_deb(&debs, |n| is_deb_of(n, BUSYBOX_PKG))? {
        Some(deb) => deb,
        None => crate::firmware::download_arm64_deb(BUSYBOX_PKG, &debs)?,
    };
    let busybox_root = unpack(&busybox_deb, &unpacked, &[])?;
    ensure_arm64_gcc()?;
    let rtos = build_static(ws, &dir, RTOS_SRC, "rtos", ARM64_GCC)?;

    let mut cpio = Cpio::new();
    for d in ["bin", "dev", "proc", "sys", "tmp"] {
        cpio.dir(d);
    }
    cpio.char_device("dev/console", 0o600, 5, 1);
    cpio.file("init", 0o755, INIT_SCRIPT.as_bytes());
    cpio.file(
        "bin/busybox",
        0o755,
        &read(&busybox_root.join("bin/busybox"))?,
    );
    cpio.file("bin/rtos", 0o755, &read(&rtos)?);
    finish_guest(&dir, cpio, vmlinuz, &kernel_deb, "arm64 kernel")
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

/// The cache directory `target/linux-guest/` and its `debs/` and `unpacked/`, created.
fn cache_dirs(ws: &Workspace) -> Result<(PathBuf, PathBuf, PathBuf)> {
    let dir = ws.root.join("target").join("linux-guest");
    let debs = dir.join("debs");
    let unpacked = dir.join("unpacked");
    for d in [&debs, &unpacked] {
        fs::create_dir_all(d).context(|| format!("cannot create {}", d.display()))?;
    }
    Ok((dir, debs, unpacked))
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
    let (_, debs, unpacked) = cache_dirs(ws)?;
    let rt_tests_deb = ensure_deb(&debs, RT_TESTS_PKG)?;
    let rt_tests_root = unpack(&rt_tests_deb, &unpacked, &[])?;
    let depends = capture(
        Command::new("dpkg-deb")
            .args(["-f"])
            .arg(&rt_tests_deb)
            .arg("Depends"),
    )?;
    let mut lib_roots = Vec::new();
    for pkg in library_packages(&depends) {
        lib_roots.push(unpack(&ensure_deb(&debs, &pkg)?, &unpacked, &[])?);
    }
    Ok(Cyclictest {
        binary: rt_tests_root.join("usr/bin/cyclictest"),
        lib_roots,
        package: deb_package_and_version(&rt_tests_deb),
    })
}

/// `pingpong` (`xtask/guest/pingpong.c`, static), built when missing or out of date; also
/// run on the host by `host_baseline.rs`.
pub(crate) fn pingpong(ws: &Workspace) -> Result<PathBuf> {
    let (dir, _, _) = cache_dirs(ws)?;
    ensure_pingpong(ws, &dir)
}

/// Downloads and unpacks what is missing, builds pingpong if needed, writes the initramfs.
fn prepare(ws: &Workspace) -> Result<Guest> {
    let (dir, debs, unpacked) = cache_dirs(ws)?;
    let kernel_deb = ensure_kernel_deb(&debs)?;
    let kernel_root = unpack(&kernel_deb, &unpacked, &["lib/modules"])?;
    let vmlinuz = find_vmlinuz(&kernel_root)?;
    let busybox_root = unpack(&ensure_deb(&debs, BUSYBOX_PKG)?, &unpacked, &[])?;
    let Cyclictest {
        binary: cyclictest,
        lib_roots,
        ..
    } = unpack_cyclictest(ws)?;
    let pingpong = ensure_pingpong(ws, &dir)?;
    let xcpu_wake = ensure_static(ws, &dir, XCPU_SRC, "xcpu_wake")?;
    let netecho = ensure_static(ws, &dir, NETECHO_SRC, "netecho")?;
    let rtos = ensure_static(ws, &dir, RTOS_SRC, "rtos")?;
    let net_modules = net_modules(&kernel_deb, &unpacked)?;

    let busybox = busybox_root.join("bin/busybox");
    let libs = library_closure(&cyclictest, &lib_roots)?;

    let mut files: Vec<(String, PathBuf)> = vec![
        ("bin/busybox".to_string(), busybox),
        ("bin/pingpong".to_string(), pingpong),
        ("bin/xcpu_wake".to_string(), xcpu_wake),
        ("bin/netecho".to_string(), netecho),
        ("bin/rtos".to_string(), rtos),
        ("usr/bin/cyclictest".to_string(), cyclictest),
    ];
    for (i, (name, path)) in net_modules.into_iter().enumerate() {
        files.push((
            format!("{GUEST_NET_MODULE_DIR}/{:02}-{name}.ko", i + 1),
            path,
        ));
    }
    files.extend(libs.files);
    let mut cpio = Cpio::new();
    let mut dirs: BTreeSet<PathBuf> = ["dev", "proc", "sys", "tmp"].map(PathBuf::from).into();
    for path in files
        .iter()
        .map(|f| &f.0)
        .chain(libs.links.iter().map(|l| &l.0))
    {
        dirs.extend(Path::new(path).ancestors().skip(1).map(Path::to_path_buf));
    }
    // Sorted, so every parent comes before its children.
    for dir in dirs.iter().filter(|d| !d.as_os_str().is_empty()) {
        cpio.dir(&dir.to_string_lossy());
    }
    cpio.char_device("dev/console", 0o600, 5, 1);
    cpio.file("init", 0o755, INIT_SCRIPT.as_bytes());
    for (guest_path, host_path) in &files {
        cpio.file(guest_path, 0o755, &read(host_path)?);
    }
    for (guest_path, target) in &libs.links {
        cpio.symlink(guest_path, target);
    }
    finish_guest(&dir, cpio, vmlinuz, &kernel_deb, "kernel")
}

fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).context(|| format!("cannot read {}", path.display()))
}

/// The `.deb` in `debs` whose file name satisfies `matches`; the newest if several.
fn cached_deb(debs: &Path, matches: impl Fn(&str) -> bool) -> Result<Option<PathBuf>> {
    let entries = fs::read_dir(debs).context(|| format!("cannot list {}", debs.display()))?;
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.ends_with(".deb") && matches(&name)
        })
        .map(|e| {
            let mtime = e
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            (mtime, e.path())
        })
        .collect();
    found.sort();
    Ok(found.pop().map(|(_, p)| p))
}

/// Whether a `.deb` file name is of package `pkg` (`<pkg>_<version>_<arch>.deb`).
pub(crate) fn is_deb_of(file_name: &str, pkg: &str) -> bool {
    file_name
        .strip_prefix(pkg)
        .is_some_and(|rest| rest.starts_with('_'))
}

/// The cached `.deb` of `pkg`, downloaded with `apt-get download` when missing.
fn ensure_deb(debs: &Path, pkg: &str) -> Result<PathBuf> {
    if let Some(deb) = cached_deb(debs, |name| is_deb_of(name, pkg))? {
        return Ok(deb);
    }
    println!("linux-guest: downloading {pkg}");
    let mut cmd = Command::new("apt-get");
    cmd.current_dir(debs).args(["download", pkg]);
    capture(&mut cmd).map_err(|e| {
        Error::Failed(format!(
            "{e}\n(the Linux guest needs Debian 12 packages; without apt-get, put {pkg}_*.deb \
             into {} by hand)",
            debs.display()
        ))
    })?;
    match cached_deb(debs, |name| is_deb_of(name, pkg))? {
        Some(deb) => Ok(deb),
        None => fail(format!(
            "`{}` left no {pkg}_*.deb in {}",
            describe(&cmd),
            debs.display()
        )),
    }
}

/// Whether a `.deb` file name is a versioned kernel of the flavour, e.g.
/// `linux-image-6.1.0-56-cloud-amd64_6.1.192-2_amd64.deb` (not the metapackage).
fn is_kernel_deb(file_name: &str) -> bool {
    let flavour = KERNEL_META.trim_start_matches("linux-image-");
    file_name
        .strip_prefix("linux-image-")
        .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        && file_name.contains(&format!("-{flavour}_"))
}

/// The package a metapackage depends on, from `apt-cache depends <meta>`.
fn parse_depends_target(apt_cache_depends: &str) -> Option<String> {
    apt_cache_depends.lines().find_map(|l| {
        let pkg = l.trim().strip_prefix("Depends:")?.trim();
        (!pkg.is_empty() && !pkg.starts_with('<')).then(|| pkg.to_string())
    })
}

/// The cached kernel `.deb`, or the current one of the flavour, downloaded.
fn ensure_kernel_deb(debs: &Path) -> Result<PathBuf> {
    if let Some(deb) = cached_deb(debs, is_kernel_deb)? {
        return Ok(deb);
    }
    let depends = capture(Command::new("apt-cache").args(["depends", KERNEL_META]))?;
    let Some(pkg) = parse_depends_target(&depends) else {
        return fail(format!(
            "`apt-cache depends {KERNEL_META}` names no kernel package (is this Debian 12 with \
             up-to-date package lists?):\n{depends}"
        ));
    };
    ensure_deb(debs, &pkg)
}
/// Writes the guest's initramfs (only if its bytes changed, so its timestamp means something)
/// and reports it.
fn finish_guest(
    dir: &Path,
    cpio: Cpio,
    vmlinuz: PathBuf,
    kernel_deb: &Path,
    label: &str,
) -> Result<Guest> {
    let bytes = cpio.finish();
    let initrd = dir.join("initrd.cpio");
    if fs::read(&initrd).ok().as_deref() != Some(&bytes[..]) {
        fs::write(&initrd, &bytes).context(|| format!("cannot write {}", initrd.display()))?;
    }
    let kernel_package = deb_package_and_version(kernel_deb);
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

/// `linux-image-6.1.0-56-cloud-amd64 6.1.192-2` from the `.deb` file name.
fn deb_package_and_version(deb: &Path) -> String {
    let name = deb
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut parts = name.trim_end_matches(".deb").split('_');
    let pkg = parts.next().unwrap_or_default();
    let version = parts.next().unwrap_or_default().replace("%3a", ":");
    format!("{pkg} {version}")
}

/// Unpacks a `.deb` (once) under `unpacked/<file stem>/`, then deletes the `prune`
/// subdirectories (e.g. the kernel's modules, 120 MB the guest does not use); returns the
/// directory.
fn unpack(deb: &Path, unpacked: &Path, prune: &[&str]) -> Result<PathBuf> {
    let stem = deb
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let root = unpacked.join(stem);
    let done = root.join(".unpacked");
    if done.is_file() {
        return Ok(root);
    }
    if root.exists() {
        fs::remove_dir_all(&root).context(|| format!("cannot remove {}", root.display()))?;
    }
    fs::create_dir_all(&root).context(|| format!("cannot create {}", root.display()))?;
    crate::run_checked(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&root))?;
    for dir in prune {
        let dir = root.join(dir);
        if dir.exists() {
            fs::remove_dir_all(&dir).context(|| format!("cannot remove {}", dir.display()))?;
        }
    }
    fs::write(&done, b"").context(|| format!("cannot write {}", done.display()))?;
    Ok(root)
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

/// The `lib*` packages of a `Depends:` field (first alternative of each, no version).
fn library_packages(depends: &str) -> Vec<String> {
    depends
        .split(',')
        .filter_map(|dep| {
            let first = dep.split('|').next()?.trim();
            let name = first
                .split(|c: char| c.is_whitespace() || c == '(' || c == ':')
                .next()?;
            name.starts_with("lib").then(|| name.to_string())
        })
        .collect()
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
/// (the kernel's own unpacked tree has no modules: [`prepare`] prunes them), their
/// dependencies read from each module's `.modinfo` (`depends=`), as `depmod` would.
fn net_modules(kernel_deb: &Path, unpacked: &Path) -> Result<Vec<(String, PathBuf)>> {
    let stem = kernel_deb
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let root = unpacked.join(format!("{stem}.net-modules"));
    let done = root.join(".unpacked");
    if !done.is_file() {
        if root.exists() {
            fs::remove_dir_all(&root).context(|| format!("cannot remove {}", root.display()))?;
        }
        fs::create_dir_all(&root).context(|| format!("cannot create {}", root.display()))?;
        let mut dpkg = Command::new("dpkg-deb");
        dpkg.arg("--fsys-tarfile")
            .arg(kernel_deb)
            .stdout(std::process::Stdio::piped());
        let mut dpkg_child = dpkg
            .spawn()
            .context(|| format!("cannot run `{}`", describe(&dpkg)))?;
        let mut tar = Command::new("tar");
        tar.arg("-x")
            .arg("-C")
            .arg(&root)
            .args(["--wildcards", "--no-wildcards-match-slash"])
            .args(NET_MODULE_PATTERNS);
        if let Some(out) = dpkg_child.stdout.take() {
            tar.stdin(out);
        }
        let tar_status = tar
            .status()
            .context(|| format!("cannot run `{}`", describe(&tar)))?;
        let dpkg_status = dpkg_child
            .wait()
            .context(|| format!("`{}` did not end", describe(&dpkg)))?;
        if !tar_status.success() || !dpkg_status.success() {
            return fail(format!(
                "`{} | {}` failed ({dpkg_status}, {tar_status})",
                describe(&dpkg),
                describe(&tar)
            ));
        }
        fs::write(&done, b"").context(|| format!("cannot write {}", done.display()))?;
    }
    let mut files = Vec::new();
    find_files(&root, "ko", &mut files)?;
    let mut modules = std::collections::BTreeMap::new();
    for file in files {
        let name = file
            .file_stem()
            .map(|s| s.to_string_lossy().replace('-', "_"))
            .unwrap_or_default();
        let depends = modinfo_depends(&read(&file)?)
            .map_err(|e| Error::Failed(format!("{}: {e}", file.display())))?;
        modules.insert(name, (file, depends));
    }
    let deps: std::collections::BTreeMap<String, Vec<String>> = modules
        .iter()
        .map(|(name, (_, depends))| (name.clone(), depends.clone()))
        .collect();
    let order = module_load_order(&NET_MODULES, &deps).map_err(|e| {
        Error::Failed(format!(
            "{e} (among the modules extracted into {})",
            root.display()
        ))
    })?;
    Ok(order
        .into_iter()
        .map(|name| {
            let file = modules[&name].0.clone();
            (name, file)
        })
        .collect())
}

/// Every file under `dir` whose name ends in `.<ext>`, recursively.
fn find_files(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in fs::read_dir(dir).context(|| format!("cannot list {}", dir.display()))? {
        let path = entry
            .context(|| format!("cannot list {}", dir.display()))?
            .path();
        if path.is_dir() {
            find_files(&path, ext, out)?;
        } else if path.extension().is_some_and(|e| e == ext) {
            out.push(path);
        }
    }
    Ok(())
}

/// The `depends=` list of a kernel module (a relocatable ELF whose `.modinfo` section holds
/// NUL-terminated `key=value` strings); empty when it depends on nothing.
fn modinfo_depends(ko: &[u8]) -> Result<Vec<String>, String> {
    use object::{Object, ObjectSection};
    let file = ElfFile64::<Endianness>::parse(ko).map_err(|e| format!("not a module: {e}"))?;
    let section = file
        .section_by_name(".modinfo")
        .ok_or("no .modinfo section")?;
    let data = section.data().map_err(|e| e.to_string())?;
    Ok(parse_modinfo_depends(data))
}

/// The `depends=` entry of a `.modinfo` section's contents.
fn parse_modinfo_depends(modinfo: &[u8]) -> Vec<String> {
    modinfo
        .split(|&b| b == 0)
        .filter_map(|entry| entry.strip_prefix(b"depends="))
        .flat_map(|list| {
            String::from_utf8_lossy(list)
                .split(',')
                .map(|d| d.trim().replace('-', "_"))
                .filter(|d| !d.is_empty())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The modules to load for `roots`, every one after those it depends on (`deps`: each
/// module's dependencies), each once. `Err` names a missing module or a cycle.
fn module_load_order(
    roots: &[&str],
    deps: &std::collections::BTreeMap<String, Vec<String>>,
) -> Result<Vec<String>, String> {
    fn visit(
        name: &str,
        deps: &std::collections::BTreeMap<String, Vec<String>>,
        path: &mut Vec<String>,
        order: &mut Vec<String>,
    ) -> Result<(), String> {
        if order.iter().any(|m| m == name) {
            return Ok(());
        }
        if path.iter().any(|m| m == name) {
            return Err(format!(
                "module dependency cycle: {} -> {name}",
                path.join(" -> ")
            ));
        }
        let Some(needs) = deps.get(name) else {
            return Err(match path.last() {
                Some(by) => format!("module {name} (needed by {by}) not found"),
                None => format!("module {name} not found"),
            });
        };
        path.push(name.to_string());
        for dep in needs {
            visit(dep, deps, path, order)?;
        }
        path.pop();
        order.push(name.to_string());
        Ok(())
    }
    let mut order = Vec::new();
    for root in roots {
        visit(root, deps, &mut Vec::new(), &mut order)?;
    }
    Ok(order)
}

// ---------------------------------------------------------------------------------------
// Dynamic libraries.

/// The `PT_INTERP` path and the `DT_NEEDED` names of a 64-bit ELF (none for a static one).
fn elf_deps(bytes: &[u8]) -> Result<(Option<String>, Vec<String>), String> {
    let file =
        ElfFile64::<Endianness>::parse(bytes).map_err(|e| format!("not a 64-bit ELF file: {e}"))?;
    let endian = file.elf_header().endian().map_err(|e| e.to_string())?;
    let mut interp = None;
    for ph in file.elf_program_headers() {
        if let Some(path) = ph.interpreter(endian, bytes).map_err(|e| e.to_string())? {
            interp = Some(String::from_utf8_lossy(path).into_owned());
        }
    }
    let mut needed = Vec::new();
    let sections = file.elf_section_table();
    if let Some((dyns, link)) = sections.dynamic(endian, bytes).map_err(|e| e.to_string())? {
        let strings = sections
            .strings(endian, bytes, link)
            .map_err(|e| e.to_string())?;
        for d in dyns {
            if d.tag32(endian) == Some(elf::DT_NEEDED) {
                let name = d.string(endian, strings).map_err(|e| e.to_string())?;
                needed.push(String::from_utf8_lossy(name).into_owned());
            }
        }
    }
    Ok((interp, needed))
}

/// Drops `.` and resolves `..` lexically (never above the start).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// The regular file that `path` (absolute in the guest's view) names inside the unpacked
/// package `root`, following symlinks with absolute targets inside `root` too.
fn resolve_in(root: &Path, path: &str) -> Option<PathBuf> {
    let mut rel = normalize(Path::new(path));
    for _ in 0..16 {
        let full = root.join(&rel);
        let meta = fs::symlink_metadata(&full).ok()?;
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&full).ok()?;
            rel = if target.is_absolute() {
                normalize(&target)
            } else {
                normalize(&rel.parent().unwrap_or(Path::new("")).join(target))
            };
        } else if meta.is_file() {
            return Some(full);
        } else {
            return None;
        }
    }
    None
}

/// The dynamic loader and libraries a binary needs, as guest paths (no leading `/`).
#[derive(Debug, Default)]
struct Libraries {
    /// (guest path, host file), all in [`GUEST_LIB_DIR`].
    files: Vec<(String, PathBuf)>,
    /// (guest path, absolute target): the `PT_INTERP` path when it is not in
    /// [`GUEST_LIB_DIR`] (Debian's `/lib64/ld-linux-x86-64.so.2`).
    links: Vec<(String, String)>,
}

/// The dynamic loader and every library `binary` needs, directly or not, found in the
/// unpacked library packages `roots` (never on the host).
fn library_closure(binary: &Path, roots: &[PathBuf]) -> Result<Libraries> {
    let mut libs = Libraries::default();
    let mut seen = BTreeSet::new();
    let mut queue = vec![binary.to_path_buf()];
    let missing = |file: &Path, what: String| {
        fail(format!(
            "{}: {what} not found in the unpacked packages {} (add its package to the ones \
             linux_guest.rs unpacks)",
            file.display(),
            describe_roots(roots)
        ))
    };
    while let Some(file) = queue.pop() {
        let (interp, needed) = elf_deps(&read(&file)?)
            .map_err(|e| Error::Failed(format!("{}: {e}", file.display())))?;
        if let Some(interp) = interp {
            let name = Path::new(&interp)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let guest = format!("{GUEST_LIB_DIR}/{name}");
            let link = normalize(Path::new(&interp)).to_string_lossy().into_owned();
            if seen.insert(guest.clone()) {
                let Some(host) = roots.iter().find_map(|r| resolve_in(r, &interp)) else {
                    return missing(&file, format!("dynamic loader {interp}"));
                };
                libs.files.push((guest.clone(), host));
            }
            if link != guest && seen.insert(link.clone()) {
                libs.links.push((link, format!("/{guest}")));
            }
        }
        for name in needed {
            let guest = format!("{GUEST_LIB_DIR}/{name}");
            if !seen.insert(guest.clone()) {
                continue;
            }
            let host = roots.iter().find_map(|r| {
                LIB_DIRS
                    .iter()
                    .find_map(|d| resolve_in(r, &format!("/{d}/{name}")))
            });
            let Some(host) = host else {
                return missing(&file, format!("library {name}"));
            };
            queue.push(host.clone());
            libs.files.push((guest, host));
        }
    }
    Ok(libs)
}

fn describe_roots(roots: &[PathBuf]) -> String {
    roots
        .iter()
        .filter_map(|r| r.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------------------
// The initramfs.

/// A cpio archive in the "newc" format (the one the Linux initramfs unpacker reads): per
/// entry a 110-byte ASCII header (`070701`, then 13 eight-digit hex fields: ino, mode, uid,
/// gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor, namesize with the
/// NUL, check), the NUL-terminated name padded to 4 bytes, the data padded to 4 bytes; last
/// an entry named `TRAILER!!!`. Owners are root, mtimes 0, so the output is reproducible.
pub(crate) struct Cpio {
    out: Vec<u8>,
    next_ino: u32,
}

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;

impl Cpio {
    pub(crate) fn new() -> Cpio {
        Cpio {
            out: Vec::new(),
            next_ino: 1,
        }
    }

    fn entry(&mut self, name: &str, mode: u32, nlink: u32, rdev: (u32, u32), data: &[u8]) {
        let ino = if name == "TRAILER!!!" {
            0
        } else {
            self.next_ino += 1;
            self.next_ino - 1
        };
        let fields = [
            ino,
            mode,
            0,
            0,
            nlink,
            0,
            u32::try_from(data.len()).expect("cpio newc holds files below 4 GiB"),
            0,
            0,
            rdev.0,
            rdev.1,
            u32::try_from(name.len() + 1).expect("short name"),
            0,
        ];
        self.out.extend_from_slice(b"070701");
        for f in fields {
            self.out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }

    /// A directory (`name` without a leading `/`; parents must come first).
    pub(crate) fn dir(&mut self, name: &str) {
        self.entry(name, S_IFDIR | 0o755, 2, (0, 0), &[]);
    }

    /// A regular file with permission bits `perm`.
    pub(crate) fn file(&mut self, name: &str, perm: u32, data: &[u8]) {
        self.entry(name, S_IFREG | perm, 1, (0, 0), data);
    }

    /// A symbolic link to `target`.
    pub(crate) fn symlink(&mut self, name: &str, target: &str) {
        self.entry(name, S_IFLNK | 0o777, 1, (0, 0), target.as_bytes());
    }

    /// A character device node.
    pub(crate) fn char_device(&mut self, name: &str, perm: u32, major: u32, minor: u32) {
        self.entry(name, S_IFCHR | perm, 1, (major, minor), &[]);
    }

    /// Appends the trailer and returns the archive.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, 1, (0, 0), &[]);
        self.out
    }
}

// ---------------------------------------------------------------------------------------
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

    /// (name, mode, (rdevmajor, rdevminor), data) of one archive entry.
    type Entry = (String, u32, (u32, u32), Vec<u8>);

    /// Reads a newc archive back, trailer excluded.
    fn read_cpio(mut b: &[u8]) -> Vec<Entry> {
        let mut out = Vec::new();
        let mut offset = 0;
        loop {
            assert_eq!(&b[..6], b"070701", "magic at offset {offset}");
            let field = |i: usize| {
                let s = std::str::from_utf8(&b[6 + 8 * i..14 + 8 * i]).unwrap();
                u32::from_str_radix(s, 16).unwrap()
            };
            let (mode, size, rdev, namesize) = (
                field(1),
                field(6) as usize,
                (field(9), field(10)),
                field(11) as usize,
            );
            let name = std::str::from_utf8(&b[110..110 + namesize - 1])
                .unwrap()
                .to_string();
            assert_eq!(b[110 + namesize - 1], 0);
            let data_at = (110 + namesize).next_multiple_of(4);
            let end = (data_at + size).next_multiple_of(4);
            if name == "TRAILER!!!" {
                assert_eq!(b.len(), end, "nothing after the trailer");
                return out;
            }
            out.push((name, mode, rdev, b[data_at..data_at + size].to_vec()));
            offset += end;
            b = &b[end..];
        }
    }

    #[test]
    fn cpio_known_bytes() {
        let mut c = Cpio::new();
        c.dir("a");
        c.file("a/f", 0o644, b"xyz");
        let bytes = c.finish();
        // Fields: ino mode uid gid nlink mtime filesize devmaj devmin rdevmaj rdevmin namesize
        // check; then the name with its NUL, padded to 4, and the data, padded to 4.
        let z = "00000000";
        let dir = [
            "070701", "00000001", "000041ed", z, z, "00000002", z, z, z, z, z, z, "00000002", z,
            "a\0",
        ]
        .concat();
        let file = [
            "070701", "00000002", "000081a4", z, z, "00000001", z, "00000003", z, z, z, z,
            "00000004", z, "a/f\0", "\0\0", "xyz\0",
        ]
        .concat();
        let trailer = [
            "070701",
            z,
            z,
            z,
            z,
            "00000001",
            z,
            z,
            z,
            z,
            z,
            z,
            "0000000b",
            z,
            "TRAILER!!!\0",
            "\0\0\0",
        ]
        .concat();
        assert_eq!(dir.len(), 112);
        assert_eq!(file.len(), 120);
        assert_eq!(trailer.len(), 124);
        let expected = [dir, file, trailer].concat();
        assert_eq!(String::from_utf8_lossy(&bytes), expected);
    }

    #[test]
    fn cpio_round_trip() {
        let mut c = Cpio::new();
        c.dir("bin");
        c.dir("dev");
        c.char_device("dev/console", 0o600, 5, 1);
        c.file("init", 0o755, b"#!/bin/sh\n");
        c.symlink("bin/sh", "busybox");
        let data: Vec<u8> = (0..1001u32).map(|i| i as u8).collect();
        c.file("bin/busybox", 0o755, &data);
        c.file("empty", 0o644, b"");
        let entries = read_cpio(&c.finish());
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "bin",
                "dev",
                "dev/console",
                "init",
                "bin/sh",
                "bin/busybox",
                "empty"
            ]
        );
        assert_eq!(entries[0].1, 0o040755);
        assert_eq!((entries[2].1, entries[2].2), (0o020600, (5, 1)));
        assert_eq!(
            (entries[3].1, entries[3].3.as_slice()),
            (0o100755, &b"#!/bin/sh\n"[..])
        );
        assert_eq!(
            (entries[4].1, entries[4].3.as_slice()),
            (0o120777, &b"busybox"[..])
        );
        assert_eq!(entries[5].3, data);
        assert!(entries[6].3.is_empty());
    }

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
    fn package_names() {
        assert!(is_kernel_deb(
            "linux-image-6.1.0-56-cloud-amd64_6.1.192-2_amd64.deb"
        ));
        assert!(!is_kernel_deb(
            "linux-image-cloud-amd64_6.1.192-2_amd64.deb"
        ));
        assert!(!is_kernel_deb(
            "linux-image-6.1.0-56-amd64_6.1.192-2_amd64.deb"
        ));
        assert!(is_deb_of("rt-tests_2.4-1_amd64.deb", "rt-tests"));
        assert!(!is_deb_of("rt-tests-extra_2.4-1_amd64.deb", "rt-tests"));
        assert_eq!(
            parse_depends_target(
                "linux-image-cloud-amd64\n  Depends: linux-image-6.1.0-56-cloud-amd64\n"
            )
            .as_deref(),
            Some("linux-image-6.1.0-56-cloud-amd64")
        );
        assert_eq!(parse_depends_target("x\n  Depends: <virtual>\n"), None);
        assert_eq!(
            library_packages("libc6 (>= 2.33), libnuma1 (>= 2.0.11), python3"),
            ["libc6", "libnuma1"]
        );
        assert_eq!(library_packages("libfoo1:any | libbar2, perl"), ["libfoo1"]);
        assert_eq!(
            deb_package_and_version(Path::new(
                "/x/busybox-static_1%3a1.35.0-4+deb12u1+b1_amd64.deb"
            )),
            "busybox-static 1:1.35.0-4+deb12u1+b1"
        );
    }

    #[test]
    fn paths_inside_a_root() {
        assert_eq!(
            normalize(Path::new("/lib/../lib64/./x")),
            Path::new("lib64/x")
        );
        assert_eq!(normalize(Path::new("../../a")), Path::new("a"));
        let root = std::env::temp_dir().join(format!("xtask-lg-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("lib/x86_64-linux-gnu")).unwrap();
        fs::create_dir_all(root.join("lib64")).unwrap();
        fs::write(root.join("lib/x86_64-linux-gnu/ld.so"), b"ld").unwrap();
        fs::write(root.join("lib/x86_64-linux-gnu/libz.so.1.2"), b"z").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::symlink;
            // An absolute target must stay inside the root, not reach the host's /lib.
            symlink("/lib/x86_64-linux-gnu/ld.so", root.join("lib64/ld.so")).unwrap();
            symlink("libz.so.1.2", root.join("lib/x86_64-linux-gnu/libz.so.1")).unwrap();
            assert_eq!(
                resolve_in(&root, "/lib64/ld.so"),
                Some(root.join("lib/x86_64-linux-gnu/ld.so"))
            );
            assert_eq!(
                resolve_in(&root, "/lib/x86_64-linux-gnu/libz.so.1"),
                Some(root.join("lib/x86_64-linux-gnu/libz.so.1.2"))
            );
            symlink("loop", root.join("loop")).unwrap();
            assert_eq!(resolve_in(&root, "/loop"), None);
        }
        assert_eq!(resolve_in(&root, "/lib64"), None);
        assert_eq!(resolve_in(&root, "/missing"), None);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn elf_dependencies() {
        assert!(elf_deps(b"not an ELF").is_err());
        // The test binary itself is a dynamically linked ELF on GNU/Linux hosts.
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        {
            let exe = fs::read(std::env::current_exe().unwrap()).unwrap();
            let (interp, needed) = elf_deps(&exe).unwrap();
            assert!(interp.is_some_and(|i| i.contains("ld-linux")));
            assert!(
                needed.iter().any(|n| n.starts_with("libc.so")),
                "{needed:?}"
            );
        }
    }

    #[test]
    fn module_dependencies() {
        let modinfo = b"license=GPL\0depends=virtio,virtio_ring,net-failover\0name=virtio_net\0";
        assert_eq!(
            parse_modinfo_depends(modinfo),
            ["virtio", "virtio_ring", "net_failover"]
        );
        assert!(parse_modinfo_depends(b"depends=\0name=virtio\0").is_empty());
        assert!(parse_modinfo_depends(b"").is_empty());
        assert!(modinfo_depends(b"not an ELF").is_err());

        let deps: std::collections::BTreeMap<String, Vec<String>> = [
            ("virtio_net", &["net_failover", "virtio", "virtio_ring"][..]),
            ("net_failover", &["failover"][..]),
            ("failover", &[][..]),
            ("virtio", &[][..]),
            ("virtio_ring", &[][..]),
            (
                "virtio_pci",
                &["virtio_pci_modern_dev", "virtio", "virtio_ring"][..],
            ),
            ("virtio_pci_modern_dev", &[][..]),
        ]
        .into_iter()
        .map(|(m, d)| (m.to_string(), d.iter().map(|s| s.to_string()).collect()))
        .collect();
        assert_eq!(
            module_load_order(&NET_MODULES, &deps).unwrap(),
            [
                "virtio_pci_modern_dev",
                "virtio",
                "virtio_ring",
                "virtio_pci",
                "failover",
                "net_failover",
                "virtio_net"
            ]
        );
        let mut broken = deps.clone();
        broken.remove("failover");
        assert_eq!(
            module_load_order(&["virtio_net"], &broken).unwrap_err(),
            "module failover (needed by net_failover) not found"
        );
        broken.insert("failover".into(), vec!["virtio_net".into()]);
        assert!(
            module_load_order(&["virtio_net"], &broken)
                .unwrap_err()
                .starts_with("module dependency cycle: virtio_net -> net_failover -> failover")
        );
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
    fn rtos_mode_and_arm64_kernels() {
        assert!(INIT_SCRIPT.contains("if [ \"$mode\" = rtos ]; then"));
        assert!(INIT_SCRIPT.contains("rhea.periods=*"));
        assert!(INIT_SCRIPT.contains("rhea.period_ms=*"));
        assert!(INIT_SCRIPT.contains("/bin/rtos \"periods=$periods\" \"period_ms=$period_ms\""));
        assert!(is_arm64_kernel_deb(
            "linux-image-6.1.0-57-arm64_6.1.192-3_arm64.deb"
        ));
        for not in [
            "linux-image-arm64_6.1.192-3_arm64.deb",
            "linux-image-6.1.0-57-rt-arm64_6.1.192-3_arm64.deb",
            "linux-image-6.1.0-57-cloud-arm64_6.1.192-3_arm64.deb",
            "linux-image-6.1.0-57-arm64-dbg_6.1.192-3_arm64.deb",
            "linux-image-6.1.0-57-arm64-unsigned_6.1.192-3_arm64.deb",
            "linux-image-6.1.0-57-cloud-amd64_6.1.192-3_amd64.deb",
        ] {
            assert!(!is_arm64_kernel_deb(not), "{not}");
        }
    }
}
