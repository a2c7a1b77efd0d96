//! `cargo xtask bench <name>`: benchmarks: `boot` and `sched` (below) and `linux-sched` (the
//! Linux guest baseline, in `linux_guest.rs`). `--append` is the whole extra kernel command
//! line of Rhea's boots (no `rhea.checker=1`, unlike `test`).
//!
//! `bench boot` builds `hello` for qemu-x86_64, reports its stripped image size, and boots it
//! [`RUNS`] times per machine and accelerator (TCG, plus KVM when usable), reporting the
//! median/min/max of:
//!
//! * the wall time from QEMU spawn until the console line containing `rhea: app main`
//!   appears (measured here with `Instant`), and
//! * the guest's own figure, from its line `rhea: boot entry->main <cycles> cycles, <ns> ns`
//!   (`<ns>` may be `unknown` when the TSC frequency is unknown).
//!
//! Reference anchors from earlier measurements are printed next to the figures, clearly
//! labelled as not measured in this run, with the Rhea/anchor ratios.
//!
//! It also says where the bytes and the memory go, for `hello` and the `appliance`:
//!
//! * **image**: the stripped size against the goals ([`GOAL_HELLO_BYTES`],
//!   [`GOAL_APPLIANCE_BYTES`]), each loaded section's size (text, rodata, data, the embedded
//!   symbol table, bss), and the bytes of sized symbols per crate — `cargo bloat`-style, from
//!   the unstripped ELF's symbol table (demangled; `<T as Trait>::f` counts for `T`'s crate;
//!   `#[no_mangle]` and assembly symbols under their own names) — with the largest symbols;
//! * **memory at boot**: the kernel's `rhea: memory at boot` line (image, reserved low memory,
//!   frame bitmap, page tables, heap and the need it was sized from, free frames) and `rhea:
//!   memory at main` (heap used, stacks mapped, frames free when the app starts), and for the
//!   appliance the network stack's frame pool and socket budget;
//! * **the smallest `-m`** that runs each (q35, TCG), by bisection over whole MiB: `hello`
//!   must end successfully, the appliance must print `appliance: ready` (it then serves until
//!   killed; static address, no DHCP). Goals: 2 MiB and 4 MiB.
//!
//! `bench sched [--machine q35|microvm] [--loops N] [--accel A] [--smp N]` builds
//! `apps/bench-sched` for qemu-x86_64 and boots it once with `-append "loops=N"` (plus
//! `--append`); it prints `RESULT <measure> key=value ...` lines ([`parse_sched_console`]) and
//! `RESULT done`, then returns from main. Then the Linux guest baseline runs with the same
//! machine, accelerator, vCPUs and loops (`linux_guest::run_sched_baseline`), and one table
//! gives, per measure, Rhea's figure, Linux's and the ratio Rhea/Linux (lower is better for
//! all), with the design goals next to the relevant lines. Without Linux's figures (no apt,
//! no network) Rhea's are still printed and the reason is given; the exit code says whether
//! Rhea's run succeeded.
//!
//! `bench sched --board linuxu [--loops N]` does the same for LinuxU against Linux itself:
//! bench-sched runs as a host process and `cyclictest` and the ping-pong run natively on the
//! same host, in the same run (`host_baseline.rs`).

pub(crate) mod arm;
pub(crate) mod host_baseline;
pub(crate) mod linux_guest;
pub(crate) mod nested_boot;
pub(crate) mod net;
pub(crate) mod queue;
pub(crate) mod rtos;
pub(crate) mod shell;
pub(crate) mod smp;
pub(crate) mod trace;
pub(crate) mod xen;

use std::fmt::Write as _;
use std::fs;
use std::time::Duration;

use crate::bench::linux_guest::{CyclicResult, LinuxSchedFigures};
use crate::qemu::{self, Accel, Verdict};
use crate::{Error, Options, Result, Workspace, apps, boards, capture, fail, image, setup, usage};

/// The available benches, with a description each.
const BENCHES: &[(&str, &str)] = &[
    (
        "boot",
        "hello on qemu-x86_64: stripped image size and boot time per machine/accel",
    ),
    (
        "sched",
        "bench-sched on qemu-x86_64 vs the Linux guest (q35 default), or with --board linuxu \
         on LinuxU vs Linux on the host: switches, latencies, ratios",
    ),
    (
        "smp",
        "bench-smp with 2 CPUs (LinuxU vs Linux on the host; --board qemu-x86_64: vs a Linux guest, same QEMU flags): same- and cross-CPU wake-up \
         latency, 1 -> 2 CPU speed-up",
    ),
    (
        "net",
        "the appliance on qemu-x86_64 q35 vs a Linux guest's echo server, same QEMU flags and \
         netdev (a tap; needs root): UDP round trip, TCP stream, small-packet rate, ratios",
    ),
    (
        "queue",
        "rhea-queue SPSC/MPMC vs std::sync::mpsc between two host threads: throughput, \
         one-way latency, ratios",
    ),
    (
        "rtos",
        "bench-rtos, Thread-Metric-style ops per period (switching, interrupts, messages, \
         semaphores, allocation, block pools): --board linuxu vs POSIX on the host; qemu-x86_64 (default) \
         or qemu-aarch64 vs POSIX in the Linux guest, same QEMU flags (TCG); ratios",
    ),
    (
        "trace",
        "bench-sched with tracing off, then on (rhea.trace=all, ring), in one run: each measure's \
         ratio on/off, and the cost of one event (--board qemu-x86_64, default, or linuxu)",
    ),
    (
        "shell",
        "the appliance's control loop lateness with the console shell idle, then running top \
         (200 ms refresh), in one run (--board linuxu, default, or qemu-x86_64); ratios",
    ),
    (
        "linux-sched",
        "Linux guest baseline: yield/semaphore switch and cyclictest latency (q35 default)",
    ),
    (
        "xen",
        "bench-sched under Xen (xen-x86_64 pvh-dom0, xen-arm64 dom0less; --board picks one) \
         next to plain QEMU (q35, virt-gicv3) in the same run, TCG: switches, interrupt and \
         timer wake-up latency, ratios Xen/plain",
    ),
];

/// Boots per machine and accelerator.
pub(crate) const RUNS: usize = 10;
const BOARD: &str = "qemu-x86_64";
const APP: &str = "hello";
const MAIN_MARKER: &str = "rhea: app main";
const BOOT_MARKER: &str = "rhea: boot entry->main ";
const TIMEOUT: Duration = Duration::from_secs(60);

/// Goals of issue 15: stripped image sizes on qemu-x86_64, bytes.
const GOAL_HELLO_BYTES: u64 = 150_000;
const GOAL_APPLIANCE_BYTES: u64 = 250_000;
/// Goals of issue 15: the smallest `-m` that runs them, MiB.
const GOAL_HELLO_MIB: u32 = 2;
const GOAL_APPLIANCE_MIB: u32 = 4;
/// The appliance is up (and serving) once it prints this.
const APPLIANCE_READY: &str = "appliance: ready";
/// Crates and symbols listed in the image breakdown.
const TOP_CRATES: usize = 16;
const TOP_SYMBOLS: usize = 12;

/// Reference anchor (not measured by this bench): Unikraft hello image size, bytes.
const ANCHOR_UNIKRAFT_IMAGE_BYTES: u64 = 246_536;
/// Reference anchor: Unikraft QEMU start → "Hello world!", TCG on q35, seconds (measured on
/// these machines earlier).
const ANCHOR_UNIKRAFT_BOOT_SECS: f64 = 0.34;
/// Reference anchor: Linux guest QEMU start → /init, TCG on q35, seconds (from notes).
const ANCHOR_LINUX_BOOT_SECS: f64 = 4.6;

/// What every QEMU benchmark of an app starts from: the app built for its board, QEMU, and
/// the accelerator `--accel` chose (said on the console).
pub(crate) struct Prepared {
    pub(crate) qemu: qemu::Qemu,
    pub(crate) image: image::Image,
    pub(crate) accel: Accel,
    /// How the accelerator was chosen, for the conditions a bench prints.
    pub(crate) decision: qemu::AccelDecision,
}

/// Builds app `app` for `board` (toolchain and QEMU installed on demand) and chooses the
/// accelerator: the common start of `bench sched`, `bench net` and `bench smp`.
pub(crate) fn prepare(
    ws: &Workspace,
    board: &'static boards::Board,
    app: &str,
    opts: &Options,
) -> Result<Prepared> {
    let all_apps = apps::discover(&ws.root)?;
    let app = apps::find(&all_apps, app)?;
    setup::ensure_toolchain(ws, board)?;
    let qemu = setup::ensure_qemu(board)?;
    let image = image::build(ws, board, app)?;
    let decision = qemu::decide_accel(opts.accel, &qemu::probe_hardware_kvm());
    decision.print();
    Ok(Prepared {
        qemu,
        image,
        accel: decision.accel,
        decision,
    })
}

pub(crate) fn run(ws: &Workspace, name: Option<&str>, opts: &Options) -> Result<()> {
    match name {
        None => {
            println!("available benches:");
            for (name, what) in BENCHES {
                println!("  cargo xtask bench {name:<11} {what}");
            }
            Ok(())
        }
        Some("boot" | "linux-sched") if opts.board.is_some() => {
            usage("--board applies to `bench sched` only")
        }
        Some("boot") if opts.accel == qemu::AccelChoice::NestedKvm => nested_boot::bench(ws, opts),
        Some("boot") => boot(ws, opts),
        Some("smp") => smp::bench(ws, opts),
        Some("queue") => queue::bench(ws, opts),
        Some("net") => net::bench(ws, opts),
        Some("xen") => xen::bench(ws, opts),
        Some("trace") => trace::bench(ws, opts),
        Some("shell") => shell::bench(ws, opts),
        Some("rtos") => rtos::bench(ws, opts),
        Some("sched") if opts.board_name() == host_baseline::BOARD => {
            host_baseline::bench_sched(ws, opts)
        }
        Some("sched") if opts.board_name() == BOARD => sched(ws, opts),
        Some("sched") if boards::find(opts.board_name()).is_ok_and(|b| b.arch() == "aarch64") => {
            arm::sched(ws, opts)
        }
        Some("sched") => usage(format!(
            "`bench sched` runs on boards {BOARD}, {}, qemu-aarch64 and rpi4, not {}",
            host_baseline::BOARD,
            opts.board_name()
        )),
        Some("linux-sched") if opts.append.is_some() => {
            usage("--append is Rhea's kernel command line; `bench linux-sched` boots only Linux")
        }
        Some("linux-sched") => linux_guest::bench(ws, opts),
        Some(other) => {
            let names: Vec<&str> = BENCHES.iter().map(|(n, _)| *n).collect();
            usage(format!(
                "unknown bench `{other}`; available benches: {}",
                names.join(", ")
            ))
        }
    }
}

/// The kernel's boot report: `rhea: boot entry->main <cycles> cycles, <ns>|unknown ns[; console
/// <bytes> bytes, <ns>|<cycles> ns|cycles]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BootLine {
    /// Cycles from the board's first instruction to the app's main.
    pub(crate) cycles: u64,
    /// The same in ns, when the kernel knew its cycle counter's rate.
    pub(crate) ns: Option<u64>,
    /// Console output until then: bytes, and the ns the writes took (when stated in ns).
    pub(crate) console: Option<(u64, Option<u64>)>,
}

/// Parses the kernel's boot report (see [`BootLine`]).
pub(crate) fn parse_boot_line(line: &str) -> Option<BootLine> {
    let rest = line.split_once(BOOT_MARKER)?.1;
    let (head, console) = match rest.split_once(';') {
        Some((head, tail)) => (head, Some(tail)),
        None => (rest, None),
    };
    let mut words = head.split_whitespace();
    let cycles = words.next()?.parse().ok()?;
    if words.next()?.trim_end_matches(',') != "cycles" {
        return None;
    }
    let ns = match words.next()? {
        "unknown" => None,
        n => Some(n.parse().ok()?),
    };
    let console = console.and_then(|tail| {
        let w: Vec<&str> = tail.split_whitespace().collect();
        match w.as_slice() {
            ["console", bytes, "bytes,", n, unit] => {
                let bytes = bytes.parse().ok()?;
                let ns = (*unit == "ns").then(|| n.parse().ok()).flatten();
                Some((bytes, ns))
            }
            _ => None,
        }
    });
    Some(BootLine {
        cycles,
        ns,
        console,
    })
}

/// Median, min and max (the median of an even count is the mean of the middle two).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Stats {
    pub(crate) median: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
}

pub(crate) fn stats(values: &[f64]) -> Option<Stats> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some(Stats {
        median,
        min: v[0],
        max: v[n - 1],
    })
}

/// `246536` -> `246,536`.
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The host CPU model from `/proc/cpuinfo`.
pub(crate) fn host_cpu_model() -> String {
    fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".to_string())
}

/// How long an appliance probe of [`boot`]'s `-m` search may take to print
/// [`APPLIANCE_READY`] (it then serves until killed, so a successful probe lasts this long).
const APPLIANCE_PROBE: Duration = Duration::from_secs(8);

/// How long a `hello` probe of the `-m` search may take (it ends in well under a second).
const HELLO_PROBE: Duration = Duration::from_secs(15);

/// The smallest whole MiB in `lo..=hi` for which `runs` holds, assuming it holds for every
/// size above the smallest (bisection); `None` if it does not hold at `hi`.
fn smallest_mib(
    lo: u32,
    hi: u32,
    mut runs: impl FnMut(u32) -> Result<bool>,
) -> Result<Option<u32>> {
    if !runs(hi)? {
        return Ok(None);
    }
    let (mut bad, mut good) = (lo.saturating_sub(1), hi);
    while good - bad > 1 {
        let mid = bad + (good - bad) / 2;
        if mid >= lo && runs(mid)? {
            good = mid;
        } else {
            bad = mid;
        }
    }
    Ok(Some(good))
}

/// The console lines saying where memory went: the kernel's `rhea: memory at ...` lines, the
/// network stack's budget, and any refusal for lack of memory.
fn memory_report(lines: &[(Duration, String)]) -> Vec<String> {
    lines
        .iter()
        .map(|(_, l)| l)
        .filter(|l| {
            l.contains("rhea: memory at ")
                || l.contains("rhea-net: socket budget")
                || l.contains("not enough memory")
                || l.contains("no memory")
        })
        .cloned()
        .collect()
}

/// The sizes of an image's parts, from the ELF's section headers and symbol table.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Breakdown {
    /// Allocated sections in address order: name, bytes (bss: memory, not file).
    pub(crate) sections: Vec<(String, u64)>,
    /// Per crate: (crate, code bytes, data bytes: rodata, data and bss objects), largest first.
    pub(crate) crates: Vec<(String, u64, u64)>,
    /// The largest symbols: (demangled name without hash, bytes), largest first.
    pub(crate) largest: Vec<(String, u64)>,
}

/// The crate a demangled symbol belongs to: the first path segment of the item, of the
/// implementing type for `<T as Trait>::f`; primitives are `core`'s; a symbol without a path
/// (`#[no_mangle]`, assembly) is shown as `(name)`.
pub(crate) fn crate_of(name: &str) -> String {
    let mut s = name.trim_start_matches(['<', '&', '*']);
    for prefix in ["mut ", "const ", "dyn "] {
        s = s.strip_prefix(prefix).unwrap_or(s);
    }
    if s.starts_with(['[', '(']) {
        return "core".to_string();
    }
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    let first = &s[..end];
    let primitive = matches!(
        first,
        "u8" | "u16"
            | "u32"
            | "u64"
            | "u128"
            | "usize"
            | "i8"
            | "i16"
            | "i32"
            | "i64"
            | "i128"
            | "isize"
            | "f32"
            | "f64"
            | "bool"
            | "char"
            | "str"
    );
    if primitive {
        "core".to_string()
    } else if first.len() == 1 && first.chars().all(|c| c.is_ascii_uppercase()) {
        // `<&T as core::fmt::Debug>::fmt`: a generic impl, its instances demangle alike.
        "(generic impls)".to_string()
    } else if !name.contains("::") {
        format!("({name})")
    } else {
        first.to_string()
    }
}

/// Reads an (unstripped) ELF image's [`Breakdown`].
pub(crate) fn image_breakdown(elf: &[u8]) -> std::result::Result<Breakdown, String> {
    use object::{Object, ObjectSection, ObjectSymbol, SectionFlags, SymbolKind};
    let file = object::File::parse(elf).map_err(|e| format!("not an ELF file: {e}"))?;
    let mut out = Breakdown::default();
    let mut sections: Vec<(u64, String, u64)> = Vec::new();
    for section in file.sections() {
        let alloc = match section.flags() {
            SectionFlags::Elf { sh_flags } => sh_flags & u64::from(object::elf::SHF_ALLOC) != 0,
            _ => false,
        };
        if alloc && section.size() > 0 {
            let name = section.name().unwrap_or("?").to_string();
            sections.push((section.address(), name, section.size()));
        }
    }
    sections.sort();
    out.sections = sections.into_iter().map(|(_, n, s)| (n, s)).collect();
    let mut crates: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    let mut largest = Vec::new();
    for sym in file.symbols() {
        let size = sym.size();
        if size == 0 || !sym.is_definition() {
            continue;
        }
        let code = match sym.kind() {
            SymbolKind::Text => true,
            SymbolKind::Data => false,
            _ => continue,
        };
        let Ok(raw) = sym.name() else { continue };
        let name = format!("{:#}", rustc_demangle::demangle(raw));
        let entry = crates.entry(crate_of(&name)).or_default();
        if code {
            entry.0 += size;
        } else {
            entry.1 += size;
        }
        largest.push((name, size));
    }
    let mut crates: Vec<(String, u64, u64)> =
        crates.into_iter().map(|(c, (t, d))| (c, t, d)).collect();
    crates.sort_by(|a, b| (b.1 + b.2).cmp(&(a.1 + a.2)).then_with(|| a.0.cmp(&b.0)));
    out.crates = crates;
    largest.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    largest.truncate(TOP_SYMBOLS);
    out.largest = largest;
    Ok(out)
}

/// Prints the size of `image` against `goal` and its [`Breakdown`].
fn print_image_breakdown(app: &str, image: &image::Image, goal: u64) -> Result<()> {
    let bytes = fs::read(&image.elf)
        .map_err(|e| Error::Failed(format!("cannot read {}: {e}", image.elf.display())))?;
    let b = image_breakdown(&bytes)
        .map_err(|e| Error::Failed(format!("{}: {e}", image.elf.display())))?;
    println!(
        "image {app}: {} B stripped (goal {} B, {:+} B)",
        thousands(image.stripped_size),
        thousands(goal),
        image.stripped_size as i64 - goal as i64
    );
    let sections: Vec<String> = b
        .sections
        .iter()
        .map(|(n, s)| format!("{n} {}", thousands(*s)))
        .collect();
    println!("  sections (B): {}", sections.join(", "));
    let (code, data): (u64, u64) = b.crates.iter().fold((0, 0), |a, c| (a.0 + c.1, a.1 + c.2));
    println!(
        "  sized symbols: {} B code, {} B data; by crate (code + data, B):",
        thousands(code),
        thousands(data)
    );
    for (name, c, d) in b.crates.iter().take(TOP_CRATES) {
        println!("    {:>8} + {:>7}  {name}", thousands(*c), thousands(*d));
    }
    if b.crates.len() > TOP_CRATES {
        let (c, d) = b.crates[TOP_CRATES..]
            .iter()
            .fold((0, 0), |a, x| (a.0 + x.1, a.1 + x.2));
        println!(
            "    {:>8} + {:>7}  ({} more)",
            thousands(c),
            thousands(d),
            b.crates.len() - TOP_CRATES
        );
    }
    println!("  largest symbols (B):");
    for (name, size) in &b.largest {
        let short: String = name.chars().take(100).collect();
        println!("    {:>8}  {short}", thousands(*size));
    }
    Ok(())
}

/// One machine/accel row of results.
#[derive(Debug)]
struct Row {
    board: &'static str,
    machine: &'static str,
    accel: Accel,
    wall: Option<Stats>,
}

/// `bench boot`: the conditions and image sizes, then [`RUNS`] boots of hello per
/// machine/accel, the memory report, the smallest `-m` of hello and the appliance, and the
/// comparison with the reference anchors.
fn boot(ws: &Workspace, opts: &Options) -> Result<()> {
    let board = boards::find(BOARD)?;
    let all_apps = apps::discover(&ws.root)?;
    let app = apps::find(&all_apps, APP)?;
    let machines = board.machines_to_test(opts.machine.as_deref())?;
    setup::ensure_toolchain(ws, board)?;
    let qemu = setup::ensure_qemu(board)?;
    let image = image::build(ws, board, app)?;
    let hw_kvm = qemu::probe_hardware_kvm();
    let accels = qemu::accels_to_test(opts.accel, &hw_kvm);

    print_boot_conditions(&qemu, opts, &hw_kvm, &image);
    let appliance = apps::find(&all_apps, "appliance")?;
    let appliance_image = image::build(ws, board, appliance)?;
    println!();
    print_image_breakdown(APP, &image, GOAL_HELLO_BYTES)?;
    print_image_breakdown("appliance", &appliance_image, GOAL_APPLIANCE_BYTES)?;

    let mut runs = BootRuns::default();
    let mut rows = Vec::new();
    for &machine in &machines {
        for &accel in &accels {
            rows.push(runs.measure(&qemu, board, machine, accel, &image, opts)?);
        }
    }
    // A PC booted by UEFI firmware from its disk: OVMF from QEMU's start, the UEFI loader,
    // then the same kernel (TCG: OVMF does not run under this host's KVM).
    if opts.machine.is_none() && accels.contains(&Accel::Tcg) {
        let pc = boards::find("pc-uefi")?;
        setup::ensure_toolchain(ws, pc)?;
        let pc_qemu = setup::ensure_qemu(pc)?;
        let pc_image = image::build(ws, pc, app)?;
        let efi = pc_image.boot.with_file_name(format!("{APP}.efi"));
        println!();
        println!(
            "pc-uefi images: {APP}.efi (UEFI loader + stripped kernel) {} B, GPT disk {} B",
            thousands(fs::metadata(&efi).map(|m| m.len()).unwrap_or(0)),
            thousands(fs::metadata(&pc_image.boot).map(|m| m.len()).unwrap_or(0))
        );
        rows.push(runs.measure(&pc_qemu, pc, "q35", Accel::Tcg, &pc_image, opts)?);
    }

    println!();
    println!("memory at boot, {APP} (-m {}):", opts.mem);
    for l in &runs.memory_lines {
        println!("  {l}");
    }
    let probe = MemoryProbe {
        qemu: &qemu,
        board,
        opts,
    };
    probe.smallest(app, &image.elf, GOAL_HELLO_MIB)?;
    probe.smallest(appliance, &appliance_image.elf, GOAL_APPLIANCE_MIB)?;
    print_boot_anchors(&image, &rows);
    if runs.failures > 0 {
        eprintln!("bench boot: {} run(s) failed", runs.failures);
        return Err(Error::Quiet(1));
    }
    Ok(())
}

/// `bench boot`'s header: the QEMU, host and guest it measures on, and hello's image size.
fn print_boot_conditions(
    qemu: &qemu::Qemu,
    opts: &Options,
    hw_kvm: &Result<(), String>,
    image: &image::Image,
) {
    println!();
    println!("== bench boot: app {APP}, board {BOARD}, {RUNS} runs per machine/accel");
    println!("conditions:");
    println!("  QEMU:       {}", qemu.banner);
    println!("  host CPU:   {}", host_cpu_model());
    println!(
        "  host nproc: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("  guest:      -smp {} -m {}", opts.smp, opts.mem);
    match hw_kvm {
        Ok(()) => println!("  KVM:        hardware KVM usable"),
        Err(why) => println!("  KVM:        not used ({why})"),
    }
    println!(
        "image size (stripped): {} B  ({})",
        thousands(image.stripped_size),
        image.stripped.display()
    );
}

/// What `bench boot`'s timed boots found across machines: the memory report of the first
/// good boot, and the number of failed runs.
#[derive(Default)]
struct BootRuns {
    memory_lines: Vec<String>,
    failures: usize,
}

/// The samples of one machine/accel's runs.
#[derive(Default)]
struct BootSamples {
    /// Seconds from QEMU's spawn to [`MAIN_MARKER`].
    wall: Vec<f64>,
    /// Guest cycles from entry to main.
    cycles: Vec<f64>,
    /// Guest nanoseconds from entry to main, when the guest knows its TSC frequency.
    nanos: Vec<f64>,
    /// Runs whose guest did not know its TSC frequency.
    ns_unknown: usize,
    /// Guest nanoseconds of those spent writing the console.
    console_ns: Vec<f64>,
    /// Bytes the guest wrote to its console by main (the last run's).
    console_bytes: u64,
}

impl BootRuns {
    /// [`RUNS`] boots of hello on `machine` under `accel`, printed, as a result row.
    fn measure(
        &mut self,
        qemu: &qemu::Qemu,
        board: &'static boards::Board,
        machine: &'static str,
        accel: Accel,
        image: &image::Image,
        opts: &Options,
    ) -> Result<Row> {
        let cpu = match accel {
            Accel::Kvm => "host",
            Accel::Tcg => "max",
        };
        println!();
        println!(
            "{} {machine}/{} (machine {machine}, accel {}, -cpu {cpu}):",
            board.name,
            accel.name(),
            accel.name()
        );
        let spec = qemu::Spec {
            board,
            machine,
            accel,
            smp: opts.smp,
            mem: &opts.mem,
            kernel: &image.boot,
            serial: qemu::Serial::Captured,
            append: opts.append(),
        };
        let mut samples = BootSamples::default();
        for run in 1..=RUNS {
            let captured = qemu::run_captured(qemu, &spec, None, TIMEOUT, opts.verbose)?;
            self.take_run(run, &captured, &mut samples);
        }
        let wall = samples.print();
        Ok(Row {
            board: board.name,
            machine,
            accel,
            wall,
        })
    }

    /// Adds one run's figures to `samples`, or counts and prints its failure.
    fn take_run(&mut self, run: usize, captured: &qemu::Captured, samples: &mut BootSamples) {
        let verdict = qemu::classify(&captured.end);
        let problem = match (&verdict, captured.time_of(MAIN_MARKER)) {
            (Verdict::Success, Some(t)) => {
                samples.wall.push(t.as_secs_f64());
                None
            }
            (Verdict::Success, None) => Some(format!("no console line containing {MAIN_MARKER:?}")),
            (other, _) => Some(other.describe()),
        };
        if let Some(problem) = problem {
            self.failures += 1;
            println!("  run {run}: FAILED: {problem}");
            return;
        }
        if self.memory_lines.is_empty() {
            self.memory_lines = memory_report(&captured.lines);
        }
        match captured.lines.iter().find_map(|(_, l)| parse_boot_line(l)) {
            Some(b) => {
                samples.cycles.push(b.cycles as f64);
                match b.ns {
                    Some(ns) => samples.nanos.push(ns as f64),
                    None => samples.ns_unknown += 1,
                }
                if let Some((bytes, Some(ns))) = b.console {
                    samples.console_ns.push(ns as f64);
                    samples.console_bytes = bytes;
                }
            }
            None => println!("  run {run}: no `{}` line", BOOT_MARKER.trim_end()),
        }
    }
}

impl BootSamples {
    /// Prints the medians and ranges; returns the wall-clock statistics.
    fn print(&self) -> Option<Stats> {
        let wall_stats = stats(&self.wall);
        match wall_stats {
            Some(s) => println!(
                "  wall, QEMU spawn -> {MAIN_MARKER:?}: median {:.3} s, min {:.3} s, max {:.3} s ({} runs)",
                s.median,
                s.min,
                s.max,
                self.wall.len()
            ),
            None => println!("  wall: no successful run"),
        }
        if let Some(s) = stats(&self.cycles) {
            println!(
                "  guest entry->main: median {:.0} cycles, min {:.0}, max {:.0}",
                s.median, s.min, s.max
            );
        }
        match stats(&self.nanos) {
            Some(s) => {
                println!(
                    "  guest entry->main: median {:.3} ms, min {:.3} ms, max {:.3} ms",
                    s.median / 1e6,
                    s.min / 1e6,
                    s.max / 1e6
                );
                if let Some(c) = stats(&self.console_ns) {
                    println!(
                        "    of which writing the console ({} bytes): median {:.3} ms, min {:.3} ms, max {:.3} ms",
                        self.console_bytes,
                        c.median / 1e6,
                        c.min / 1e6,
                        c.max / 1e6
                    );
                }
            }
            None if self.ns_unknown > 0 => {
                println!(
                    "  guest entry->main time: unknown (guest does not know its TSC frequency)"
                );
            }
            None => {}
        }
        wall_stats
    }
}

/// Boots of hello or the appliance on q35 under TCG with less and less memory.
struct MemoryProbe<'a> {
    qemu: &'a qemu::Qemu,
    board: &'static boards::Board,
    opts: &'a Options,
}

impl MemoryProbe<'_> {
    /// Whether `app` (hello or the appliance) runs in `mib` MiB, and its memory report.
    fn run(&self, app: &apps::App, elf: &std::path::Path, mib: u32) -> Result<(bool, Vec<String>)> {
        let mem = format!("{mib}M");
        let (append, timeout) = if app.name == APP {
            (self.opts.append().to_string(), HELLO_PROBE)
        } else {
            (
                "rhea.net.ip=10.0.2.15/24 rhea.net.gw=10.0.2.2".to_string(),
                APPLIANCE_PROBE,
            )
        };
        let spec = qemu::Spec {
            board: self.board,
            machine: "q35",
            accel: Accel::Tcg,
            smp: 1,
            mem: &mem,
            kernel: elf,
            serial: qemu::Serial::Captured,
            append: &append,
        };
        // The app's NIC (`net = "user"`) comes with the QEMU arguments of its image.
        let captured = qemu::run_captured(self.qemu, &spec, None, timeout, self.opts.verbose)?;
        let ok = if app.name == APP {
            qemu::classify(&captured.end) == Verdict::Success
        } else {
            captured.time_of(APPLIANCE_READY).is_some()
        };
        Ok((ok, memory_report(&captured.lines)))
    }

    /// Finds and prints the smallest `-m` that runs `app` (and, for the appliance, what its
    /// memory went to there).
    fn smallest(&self, app: &apps::App, elf: &std::path::Path, goal: u32) -> Result<()> {
        // From 2 MiB: QEMU loads the image at 1 MiB, so `-m 1M` cannot hold it (and hangs).
        let found = smallest_mib(2, 32, |mib| self.run(app, elf, mib).map(|(ok, _)| ok))?;
        match found {
            Some(mib) => {
                println!(
                    "smallest -m that runs {} (q35, tcg): {mib} MiB (goal {goal} MiB)",
                    app.name
                );
                if app.name != APP {
                    // What the appliance's memory went to, at its smallest.
                    for l in self.run(app, elf, mib)?.1 {
                        println!("  {l}");
                    }
                }
            }
            None => println!("smallest -m that runs {}: none up to 32 MiB", app.name),
        }
        Ok(())
    }
}

/// The reference anchors (figures recorded earlier) and this run's ratios to them.
fn print_boot_anchors(image: &image::Image, rows: &[Row]) {
    println!();
    println!(
        "reference anchors (NOT measured in this run; figures recorded earlier, for comparison only):"
    );
    println!(
        "  Unikraft hello image size:                        {:>9} B  (measured on these machines earlier)",
        thousands(ANCHOR_UNIKRAFT_IMAGE_BYTES)
    );
    println!(
        "  Unikraft QEMU start -> \"Hello world!\" (TCG, q35): {ANCHOR_UNIKRAFT_BOOT_SECS:>9} s  \
         (measured on these machines earlier)"
    );
    println!(
        "  Linux guest QEMU start -> /init (TCG, q35):       {ANCHOR_LINUX_BOOT_SECS:>9} s  (from notes)"
    );
    println!("ratios, Rhea (this run) / anchor:");
    println!(
        "  image size: {} B / {} B = {:.3}",
        thousands(image.stripped_size),
        thousands(ANCHOR_UNIKRAFT_IMAGE_BYTES),
        image.stripped_size as f64 / ANCHOR_UNIKRAFT_IMAGE_BYTES as f64
    );
    for row in rows {
        if let Some(s) = row.wall {
            println!(
                "  boot {} {}/{}: median {:.3} s / Unikraft {ANCHOR_UNIKRAFT_BOOT_SECS} s = {:.2}, \
                 / Linux {ANCHOR_LINUX_BOOT_SECS} s = {:.3}",
                row.board,
                row.machine,
                row.accel.name(),
                s.median,
                s.median / ANCHOR_UNIKRAFT_BOOT_SECS,
                s.median / ANCHOR_LINUX_BOOT_SECS
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// `bench sched`: Rhea's scheduler measures against the Linux guest's.

/// The app `bench sched` boots.
pub(crate) const SCHED_APP: &str = "bench-sched";
/// The design goal for a switch (yield or semaphore hand-off, one way), cycles on KVM.
const GOAL_SWITCH_CYCLES: f64 = 300.0;
/// The design goal for cyclictest at 200 µs: p99 and max at most this fraction of Linux's.
const GOAL_CYCLIC_FRACTION: f64 = 0.5;
/// The cyclictest period the latency goal is about, µs.
const GOAL_CYCLIC_PERIOD_US: u32 = 200;
/// The cyclictest runs of both guests: (period µs, hog), in print order.
pub(crate) const CYCLIC_RUNS: [(u32, bool); 4] =
    [(200, false), (200, true), (1000, false), (1000, true)];

/// One switch measure of bench-sched: one way, in TSC cycles and ns.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Switch {
    pub(crate) cycles: f64,
    pub(crate) ns: f64,
}

/// bench-sched's interrupt→thread latency, ns.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct IrqLatency {
    pub(crate) min_ns: f64,
    pub(crate) avg_ns: f64,
    /// `None` from a bench-sched that does not print `p50_ns`.
    pub(crate) p50_ns: Option<f64>,
    pub(crate) p99_ns: f64,
    pub(crate) max_ns: f64,
    pub(crate) samples: u64,
}

/// What bench-sched printed.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct RheaSched {
    pub(crate) tsc_hz: Option<u64>,
    pub(crate) loops: Option<u64>,
    pub(crate) yield_switch: Option<Switch>,
    pub(crate) sem_pingpong: Option<Switch>,
    pub(crate) irq_to_thread: Option<IrqLatency>,
    /// cyclictest runs, µs (`overflows` always 0, `p99_us` always set).
    pub(crate) cyclic: Vec<CyclicResult>,
    /// The cyclictest medians, µs, by (period µs, hog), when printed (`p50=`).
    pub(crate) cyclic_p50: Vec<(u32, bool, f64)>,
    /// One app trace event's cost, ns, and whether app tracing was on (`trace_event`).
    pub(crate) trace_event: Option<(f64, bool)>,
    /// `RESULT done` was seen.
    pub(crate) done: bool,
    /// `RESULT` lines not understood (unknown measure or malformed).
    pub(crate) unparsed: Vec<String>,
}

impl RheaSched {
    /// The cyclictest run of one period, idle or with the hog.
    pub(crate) fn cyclic_run(&self, period_us: u32, hog: bool) -> Option<&CyclicResult> {
        find_cyclic(&self.cyclic, period_us, hog)
    }

    /// The median lateness of a cyclictest run, µs, if bench-sched printed it.
    pub(crate) fn cyclic_p50(&self, period_us: u32, hog: bool) -> Option<f64> {
        self.cyclic_p50
            .iter()
            .rev()
            .find(|(p, h, _)| *p == period_us && *h == hog)
            .map(|(_, _, v)| *v)
    }

    /// The names of the measures missing from the output.
    pub(crate) fn missing(&self) -> Vec<String> {
        let mut missing = Vec::new();
        let mut check = |present: bool, name: &str| {
            if !present {
                missing.push(name.to_string());
            }
        };
        check(self.tsc_hz.is_some(), "conditions");
        check(self.yield_switch.is_some(), "yield_switch");
        check(self.sem_pingpong.is_some(), "sem_pingpong");
        check(self.irq_to_thread.is_some(), "irq_to_thread");
        for (period, hog) in CYCLIC_RUNS {
            check(
                self.cyclic_run(period, hog).is_some(),
                &format!("cyclictest period={period} hog={}", u8::from(hog)),
            );
        }
        check(self.done, "done");
        missing
    }
}

fn find_cyclic(runs: &[CyclicResult], period_us: u32, hog: bool) -> Option<&CyclicResult> {
    runs.iter()
        .rev()
        .find(|c| c.period_us == period_us && c.hog == hog)
}

/// The `key=value` words of a `RESULT` line, after its measure name.
pub(crate) struct Fields<'a>(Vec<(&'a str, &'a str)>);

impl<'a> Fields<'a> {
    /// `None` if a word is not `key=value`.
    pub(crate) fn parse(text: &'a str) -> Option<Fields<'a>> {
        text.split_whitespace()
            .map(|w| w.split_once('='))
            .collect::<Option<Vec<_>>>()
            .map(Fields)
    }

    pub(crate) fn get<T: std::str::FromStr>(&self, key: &str) -> Option<T> {
        self.0
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| v.parse().ok())
    }
}

/// Reads one `RESULT` line of bench-sched into `out`; `false` if it is not understood.
fn parse_sched_result(name: &str, fields: &Fields<'_>, out: &mut RheaSched) -> bool {
    let switch = || {
        Some(Switch {
            cycles: fields.get("cycles")?,
            ns: fields.get("ns")?,
        })
    };
    match name {
        "conditions" => {
            out.tsc_hz = fields.get("tsc_hz");
            out.loops = fields.get("loops");
            out.tsc_hz.is_some()
        }
        "yield_switch" => {
            out.yield_switch = switch();
            out.yield_switch.is_some()
        }
        "sem_pingpong" => {
            out.sem_pingpong = switch();
            out.sem_pingpong.is_some()
        }
        "irq_to_thread" => {
            out.irq_to_thread = (|| {
                Some(IrqLatency {
                    min_ns: fields.get("min_ns")?,
                    avg_ns: fields.get("avg_ns")?,
                    p50_ns: fields.get("p50_ns"),
                    p99_ns: fields.get("p99_ns")?,
                    max_ns: fields.get("max_ns")?,
                    samples: fields.get("samples")?,
                })
            })();
            out.irq_to_thread.is_some()
        }
        "cyclictest" => {
            let run = (|| {
                let hog = match fields.get::<u8>("hog")? {
                    0 => false,
                    1 => true,
                    _ => return None,
                };
                Some(CyclicResult {
                    period_us: fields.get("period")?,
                    hog,
                    min_us: fields.get("min")?,
                    avg_us: fields.get("avg")?,
                    p99_us: Some(fields.get("p99")?),
                    max_us: fields.get("max")?,
                    samples: fields.get("samples")?,
                    overflows: 0,
                })
            })();
            match run {
                Some(run) => {
                    if let Some(p50) = fields.get("p50") {
                        out.cyclic_p50.push((run.period_us, run.hog, p50));
                    }
                    out.cyclic.push(run);
                    true
                }
                None => false,
            }
        }
        "trace_event" => {
            out.trace_event = (|| Some((fields.get("ns")?, fields.get::<u8>("on")? == 1)))();
            out.trace_event.is_some()
        }
        "done" => {
            out.done = true;
            true
        }
        _ => false,
    }
}

/// Parses bench-sched's console: every line containing `RESULT <measure> key=value ...`
/// (text before `RESULT` is ignored); other lines are ignored too.
pub(crate) fn parse_sched_console<'a>(lines: impl IntoIterator<Item = &'a str>) -> RheaSched {
    let mut out = RheaSched::default();
    for line in lines {
        let Some(at) = line.find("RESULT ") else {
            continue;
        };
        let rest = line[at + "RESULT ".len()..].trim();
        let (name, fields) = rest.split_once(' ').unwrap_or((rest, ""));
        let understood = match Fields::parse(fields) {
            Some(fields) => parse_sched_result(name, &fields, &mut out),
            None => false,
        };
        if !understood {
            out.unparsed.push(line.trim().to_string());
        }
    }
    out
}

/// The QEMU timeout of the bench-sched boot: 120 s, plus 2.5 ms per loop for each of the
/// four cyclictest runs (200 and 1000 µs periods, idle and with the hog, 2.4 ms of guest
/// time per loop together), plus half of that again as a margin for slow TCG hosts.
pub(crate) fn sched_timeout(loops: u32) -> Duration {
    let cyclic = Duration::from_micros(2_500) * 4 * loops;
    Duration::from_secs(120) + cyclic + cyclic / 2
}

/// Rhea's kernel command line for bench-sched: `loops=N`, then `--append`.
pub(crate) fn sched_cmdline(loops: u32, append: &str) -> String {
    let append = append.trim();
    if append.is_empty() {
        format!("loops={loops}")
    } else {
        format!("loops={loops} {append}")
    }
}

/// A figure for the table; `unknown` when not finite (e.g. the guest knew no TSC frequency).
pub(crate) fn figure(value: f64, decimals: usize) -> String {
    if value.is_finite() {
        format!("{value:.decimals$}")
    } else {
        "unknown".to_string()
    }
}

/// Rhea/Linux, if both are known and Linux's is positive.
pub(crate) fn ratio_of(rhea: Option<f64>, linux: Option<f64>) -> Option<f64> {
    match (rhea, linux) {
        (Some(r), Some(l)) if r.is_finite() && l.is_finite() && l > 0.0 => Some(r / l),
        _ => None,
    }
}

pub(crate) fn show_ratio(ratio: Option<f64>) -> String {
    ratio.map_or_else(|| "-".to_string(), |r| format!("{r:.2}"))
}

/// The statistics of a latency measure, in table order.
const STATS: [&str; 4] = ["min", "avg", "p99", "max"];

/// One line of the comparison table.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TableLine {
    /// A measure: its name, Rhea's figure, Linux's, the ratio.
    Row(String, String, String, String),
    /// The title of the rows after it.
    Heading(String),
    /// A remark under the rows before it (a goal, the cycle count).
    Note(String),
}

fn row(measure: impl Into<String>, rhea: String, linux: String, ratio: String) -> TableLine {
    TableLine::Row(measure.into(), rhea, linux, ratio)
}

/// Linux's column when it has no figures: why, in one word or two.
const LINUX_MISSING: &str = "missing";

/// Linux's figures a table compares Rhea's with: the guest's or the host's.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Baseline<'a> {
    pub(crate) yield_switch_ns: Option<f64>,
    pub(crate) sem_pingpong_ns: Option<f64>,
    pub(crate) cyclic: &'a [CyclicResult],
}

/// Where Rhea's figures come from: decides whether the switch goal is judged and how the
/// interrupt is raised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Platform {
    /// A QEMU guest with this accelerator.
    Qemu(Accel),
    /// LinuxU: a Linux process on the host.
    LinuxU,
}

/// The comparison table against the Linux guest. `linux` is `None` when the baseline did not
/// run.
pub(crate) fn sched_table(
    rhea: &RheaSched,
    linux: Option<&LinuxSchedFigures>,
    accel: Accel,
) -> Vec<TableLine> {
    let linux = linux.map(|l| Baseline {
        yield_switch_ns: l.yield_switch_ns,
        sem_pingpong_ns: l.sem_pingpong_ns,
        cyclic: &l.cyclic,
    });
    comparison_table(rhea, linux, Platform::Qemu(accel))
}

/// The comparison table of Rhea's figures on `platform` against Linux's (`None` when the
/// baseline did not run).
pub(crate) fn comparison_table(
    rhea: &RheaSched,
    linux: Option<Baseline<'_>>,
    platform: Platform,
) -> Vec<TableLine> {
    let mut t = Vec::new();
    switch_lines(&mut t, rhea, linux, platform);
    for (period, hog) in CYCLIC_RUNS {
        cyclic_lines(&mut t, rhea, linux, period, hog);
    }
    irq_lines(&mut t, rhea, platform);
    t
}

/// A figure with `decimals` decimals, or [`LINUX_MISSING`].
fn figure_or_missing(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| LINUX_MISSING.to_string(), |v| figure(v, decimals))
}

/// The comparison's switch rows (yield, semaphore ping-pong), each with its cycles goal.
fn switch_lines(
    t: &mut Vec<TableLine>,
    rhea: &RheaSched,
    linux: Option<Baseline<'_>>,
    platform: Platform,
) {
    let switches = [
        (
            "yield switch, ns one way",
            rhea.yield_switch,
            linux.and_then(|l| l.yield_switch_ns),
        ),
        (
            "semaphore ping-pong, ns one way",
            rhea.sem_pingpong,
            linux.and_then(|l| l.sem_pingpong_ns),
        ),
    ];
    for (name, r, l) in switches {
        let rhea_ns = r.map(|s| s.ns);
        t.push(row(
            name,
            figure_or_missing(rhea_ns, 1),
            figure_or_missing(l, 1),
            show_ratio(ratio_of(rhea_ns, l)),
        ));
        let verdict = match (r, platform) {
            (None, _) => "Rhea's figure missing".to_string(),
            (Some(s), Platform::Qemu(Accel::Kvm)) if s.cycles <= GOAL_SWITCH_CYCLES => {
                "met".to_string()
            }
            (Some(_), Platform::Qemu(Accel::Kvm)) => "not met".to_string(),
            (Some(_), Platform::Qemu(Accel::Tcg)) => "not judged: this run is TCG".to_string(),
            (Some(_), Platform::LinuxU) => {
                "not judged: LinuxU switches inside a Linux process".to_string()
            }
        };
        let cycles = figure_or_missing(r.map(|s| s.cycles), 0);
        t.push(TableLine::Note(format!(
            "Rhea {cycles} cycles; goal: ≤ {GOAL_SWITCH_CYCLES} cycles on KVM ({verdict})"
        )));
    }
}

/// The comparison's rows of one cyclictest run (`period` µs, idle or with a hog), and the
/// goal at [`GOAL_CYCLIC_PERIOD_US`].
fn cyclic_lines(
    t: &mut Vec<TableLine>,
    rhea: &RheaSched,
    linux: Option<Baseline<'_>>,
    period: u32,
    hog: bool,
) {
    let r = rhea.cyclic_run(period, hog);
    let l = linux.and_then(|l| find_cyclic(l.cyclic, period, hog));
    let load = if hog { "hog" } else { "idle" };
    let samples = |c: Option<&CyclicResult>| {
        c.map_or_else(|| LINUX_MISSING.to_string(), |c| c.samples.to_string())
    };
    t.push(TableLine::Heading(format!(
        "cyclictest {period} µs, {load} (samples: Rhea {}, Linux {})",
        samples(r),
        samples(l)
    )));
    let values = |c: Option<&CyclicResult>| match c {
        Some(c) => [Some(c.min_us), Some(c.avg_us), c.p99_us, Some(c.max_us)],
        None => [None; 4],
    };
    let mut ratios = Vec::new();
    for ((stat, rv), lv) in STATS.into_iter().zip(values(r)).zip(values(l)) {
        let linux_text = match (l, lv) {
            (Some(_), None) => "beyond histogram".to_string(),
            _ => figure_or_missing(lv, 2),
        };
        let ratio = ratio_of(rv, lv);
        ratios.push((stat, ratio));
        // No ratio for the minimum: it says little about latency.
        let ratio_text = if stat == "min" {
            "-".to_string()
        } else {
            show_ratio(ratio)
        };
        t.push(row(
            format!("  {stat}, µs"),
            figure_or_missing(rv, 2),
            linux_text,
            ratio_text,
        ));
    }
    if period != GOAL_CYCLIC_PERIOD_US {
        return;
    }
    let get = |stat: &str| {
        ratios
            .iter()
            .find(|(s, _)| *s == stat)
            .and_then(|(_, r)| *r)
    };
    let verdict = match (get("p99"), get("max")) {
        (Some(p99), Some(max)) => format!(
            "p99 {p99:.2}, max {max:.2} of Linux's: {}",
            if p99 <= GOAL_CYCLIC_FRACTION && max <= GOAL_CYCLIC_FRACTION {
                "met"
            } else {
                "not met"
            }
        ),
        _ => "not judged: a figure is missing".to_string(),
    };
    t.push(TableLine::Note(format!(
        "goal: p99 and max ≤ ½ Linux's ({verdict})"
    )));
}

/// The comparison's interrupt-to-thread rows (Rhea only).
fn irq_lines(t: &mut Vec<TableLine>, rhea: &RheaSched, platform: Platform) {
    let irq = rhea.irq_to_thread;
    let raised = match platform {
        Platform::Qemu(_) => "self-IPI",
        Platform::LinuxU => "self-raised vector (synchronous: no signal)",
    };
    t.push(TableLine::Heading(format!(
        "interrupt→thread, {raised} to the woken thread running (samples: Rhea {})",
        irq.map_or_else(|| LINUX_MISSING.to_string(), |i| i.samples.to_string())
    )));
    let irq_values = irq.map(|i| [i.min_ns, i.avg_ns, i.p99_ns, i.max_ns]);
    for (k, stat) in STATS.into_iter().enumerate() {
        t.push(row(
            format!("  {stat}, ns"),
            figure_or_missing(irq_values.map(|v| v[k]), 0),
            "not measured".to_string(),
            "-".to_string(),
        ));
    }
}

/// Renders the table with aligned columns, under a header line.
pub(crate) fn render_table(lines: &[TableLine]) -> String {
    render_table_headed(lines, "Linux guest")
}

/// [`render_table`] with `linux` as the title of Linux's column.
pub(crate) fn render_table_headed(lines: &[TableLine], linux: &str) -> String {
    render_table_columns(lines, ["measure", "Rhea", linux, "Rhea/Linux"])
}

/// [`render_table`] under the column titles `header`.
pub(crate) fn render_table_columns(lines: &[TableLine], header: [&str; 4]) -> String {
    let mut widths = header.map(|h| h.chars().count());
    for line in lines {
        if let TableLine::Row(a, b, c, d) = line {
            for (w, cell) in widths.iter_mut().zip([a, b, c, d]) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let [w0, w1, w2, _] = widths;
    let put = |out: &mut String, cells: [&str; 4]| {
        let _ = writeln!(
            out,
            "  {:<w0$}  {:>w1$}  {:>w2$}  {}",
            cells[0], cells[1], cells[2], cells[3]
        );
    };
    let mut out = String::new();
    put(&mut out, header);
    for line in lines {
        match line {
            TableLine::Row(a, b, c, d) => put(&mut out, [a, b, c, d]),
            TableLine::Heading(text) => {
                let _ = writeln!(out, "  {text}");
            }
            TableLine::Note(text) => {
                let _ = writeln!(out, "    ↳ {text}");
            }
        }
    }
    out.lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// Rhea's version and git revision, e.g. `0.1.0 (git 69d617c-dirty)`.
pub(crate) fn rhea_version(ws: &Workspace) -> String {
    let version = env!("CARGO_PKG_VERSION");
    let mut git = ws.command("git");
    git.args(["describe", "--always", "--dirty", "--abbrev=10"]);
    match capture(&mut git) {
        Ok(rev) => format!("{version} (git {})", rev.trim()),
        Err(_) => version.to_string(),
    }
}

/// `bench sched`: the scheduler measures of [`SCHED_APP`] on Rhea, then the same on the Linux
/// guest (same machine, accel, -smp, loops), then the conditions and the table of ratios.
fn sched(ws: &Workspace, opts: &Options) -> Result<()> {
    let board = boards::find(BOARD)?;
    let machine = board.machine(opts.machine.as_deref())?;
    let loops = opts.loops.unwrap_or(linux_guest::DEFAULT_LOOPS);
    let Prepared {
        qemu,
        image,
        accel,
        decision,
    } = prepare(ws, board, SCHED_APP, opts)?;

    let cmdline = sched_cmdline(loops, opts.append());
    let (rhea, rhea_wall) = sched_rhea(&qemu, board, machine, accel, &image, &cmdline, opts)?;

    println!(
        "== Linux guest baseline: same machine, accel, -smp and loops (downloads nothing once cached)"
    );
    let linux =
        linux_guest::run_sched_baseline(ws, &qemu, machine, accel, opts.smp, loops, opts.verbose);

    let report = SchedReport {
        ws,
        opts,
        qemu: &qemu,
        machine,
        decision: &decision,
        loops,
        cmdline: &cmdline,
        rhea: &rhea,
        rhea_wall,
        linux: &linux,
    };
    report.print_conditions();
    report.print_figures()
}

/// Boots [`SCHED_APP`] with `cmdline`: its measures and the run's wall time, or (after its
/// console's tail) why it did not finish.
pub(crate) fn sched_rhea(
    qemu: &qemu::Qemu,
    board: &'static boards::Board,
    machine: &'static str,
    accel: Accel,
    image: &image::Image,
    cmdline: &str,
    opts: &Options,
) -> Result<(RheaSched, Duration)> {
    let spec = qemu::Spec {
        board,
        machine,
        accel,
        smp: opts.smp,
        mem: &opts.mem,
        kernel: &image.elf,
        serial: qemu::Serial::Captured,
        append: cmdline,
    };
    let loops = opts.loops.unwrap_or(linux_guest::DEFAULT_LOOPS);
    let timeout = sched_timeout(loops);
    println!(
        "== Rhea: {SCHED_APP} on {machine}/{}, -append {cmdline:?} (timeout {} s)",
        accel.name(),
        timeout.as_secs()
    );
    let captured = qemu::run_captured(qemu, &spec, None, timeout, opts.verbose)?;
    let rhea = parse_sched_console(captured.lines.iter().map(|(_, l)| l.as_str()));
    let verdict = qemu::classify(&captured.end);
    if verdict != Verdict::Success || !rhea.done {
        let from = captured.lines.len().saturating_sub(40);
        println!(
            "--- console (last {} lines) ---",
            captured.lines.len() - from
        );
        for (_, line) in &captured.lines[from..] {
            println!("| {line}");
        }
        if !captured.stderr.trim().is_empty() {
            println!("--- QEMU stderr ---\n{}", captured.stderr.trim_end());
        }
        let why = match verdict {
            Verdict::Success => "no `RESULT done` line".to_string(),
            other => other.describe(),
        };
        return fail(format!(
            "{SCHED_APP} did not finish ({why}); Rhea's figures are incomplete, \
             the Linux baseline was not run"
        ));
    }
    println!("Rhea done in {:.1} s", captured.elapsed.as_secs_f64());
    Ok((rhea, captured.elapsed))
}

/// What `bench sched` measured, and where, for its report.
struct SchedReport<'a> {
    ws: &'a Workspace,
    opts: &'a Options,
    qemu: &'a qemu::Qemu,
    machine: &'static str,
    decision: &'a qemu::AccelDecision,
    loops: u32,
    /// Rhea's kernel command line.
    cmdline: &'a str,
    rhea: &'a RheaSched,
    rhea_wall: Duration,
    linux: &'a Result<LinuxSchedFigures>,
}

impl SchedReport<'_> {
    /// The header and the conditions of both runs.
    fn print_conditions(&self) {
        let (opts, machine, loops) = (self.opts, self.machine, self.loops);
        let accel = self.decision.accel;
        let cpu = match accel {
            Accel::Kvm => "host",
            Accel::Tcg => "max",
        };
        println!();
        println!(
            "== bench sched: Rhea vs Linux guest, machine {machine}, accel {}, -smp {}, loops {loops}",
            accel.name(),
            opts.smp
        );
        println!("conditions:");
        println!("  QEMU:        {}", self.qemu.banner);
        println!("  accel:       {} ({})", accel.name(), self.decision.reason);
        println!(
            "  guest CPU:   -cpu {cpu} (both); host CPU {}",
            host_cpu_model()
        );
        match machine {
            "microvm" => println!(
                "  machine:     microvm (Rhea rtc=off; Linux pit=on,pic=on,rtc=on, which it needs)"
            ),
            m => println!(
                "  machine:     {m} (same -M and firmware for both: {})",
                self.qemu
                    .qboot
                    .as_ref()
                    .map_or("QEMU's default".to_string(), |p| p.display().to_string())
            ),
        }
        println!(
            "  RAM:         Rhea -m {}, Linux -m {}",
            opts.mem,
            linux_guest::LINUX_MEM
        );
        println!("  vCPUs:       -smp {} (both)", opts.smp);
        println!(
            "  Rhea:        {}, {SCHED_APP}, command line {:?}, TSC {} Hz",
            rhea_version(self.ws),
            self.cmdline,
            self.rhea
                .tsc_hz
                .map_or("unknown".to_string(), |hz| hz.to_string())
        );
        self.print_linux_conditions();
    }

    /// The Linux guest's conditions, the loops, the wall times and the notes.
    fn print_linux_conditions(&self) {
        let loops = self.loops;
        match self.linux {
            Ok(l) => {
                println!("  Linux:       {} ({})", l.kernel_version, l.kernel_package);
                println!(
                    "               preempt {}, clocksource {}, ping-pong threads SCHED_{}",
                    l.preempt,
                    l.clocksource,
                    l.sched_policy.to_uppercase()
                );
            }
            Err(_) => println!("  Linux:       unknown (the baseline did not run; see below)"),
        }
        let rhea_loops = self
            .rhea
            .loops
            .map_or("unknown".to_string(), |n| n.to_string());
        println!(
            "  loops:       {loops} per measure (Rhea reported loops={rhea_loops}; cyclictest loops \
             and ping-pong round trips of Linux)"
        );
        println!(
            "  host nproc:  {}",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        match self.linux {
            Ok(l) => println!(
                "  wall:        Rhea run {:.1} s, Linux run {:.1} s",
                self.rhea_wall.as_secs_f64(),
                l.wall_total.as_secs_f64()
            ),
            Err(_) => println!(
                "  wall:        Rhea run {:.1} s",
                self.rhea_wall.as_secs_f64()
            ),
        }
        if self.decision.accel == Accel::Tcg {
            println!(
                "  note:        under TCG guest timings are emulated (no hardware virtualization; \
                 absolute figures mean little): compare the ratios"
            );
        }
        if loops < linux_guest::DEFAULT_LOOPS {
            println!(
                "  note:        --loops {loops} is below {}: a quick check, not a baseline",
                linux_guest::DEFAULT_LOOPS
            );
        }
        if let Ok(l) = self.linux
            && !l.notes.is_empty()
        {
            println!("Linux guest notes:");
            for note in &l.notes {
                println!("  {note}");
            }
        }
    }

    /// The table of figures; an error if Rhea left a measure out.
    fn print_figures(&self) -> Result<()> {
        println!();
        println!("figures (ratio Rhea/Linux: lower is better for every measure):");
        print!(
            "{}",
            render_table(&sched_table(
                self.rhea,
                self.linux.as_ref().ok(),
                self.decision.accel
            ))
        );
        if let Err(e) = self.linux {
            println!();
            println!("Linux guest figures missing: the baseline failed:");
            for line in e.to_string().lines() {
                println!("  {line}");
            }
        }
        let missing = self.rhea.missing();
        if !self.rhea.unparsed.is_empty() {
            println!("RESULT lines of {SCHED_APP} not understood:");
            for line in &self.rhea.unparsed {
                println!("  {line}");
            }
        }
        if !missing.is_empty() {
            return fail(format!(
                "{SCHED_APP} did not print every measure; missing: {}",
                missing.join(", ")
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_lines() {
        let line = |cycles, ns, console| BootLine {
            cycles,
            ns,
            console,
        };
        assert_eq!(
            parse_boot_line("rhea: boot entry->main 123456 cycles, 51234 ns"),
            Some(line(123_456, Some(51_234), None))
        );
        assert_eq!(
            parse_boot_line("[0.1] rhea: boot entry->main 99 cycles, unknown ns"),
            Some(line(99, None, None))
        );
        assert_eq!(
            parse_boot_line(
                "rhea: boot entry->main 800 cycles, 300 ns; console 2048 bytes, 250 ns"
            ),
            Some(line(800, Some(300), Some((2048, Some(250)))))
        );
        assert_eq!(
            parse_boot_line(
                "rhea: boot entry->main 800 cycles, unknown ns; console 12 bytes, 77 cycles"
            ),
            Some(line(800, None, Some((12, None))))
        );
        // A console part that does not parse leaves the rest intact.
        assert_eq!(
            parse_boot_line("rhea: boot entry->main 8 cycles, 3 ns; console lots"),
            Some(line(8, Some(3), None))
        );
        assert_eq!(parse_boot_line("rhea: app main"), None);
        assert_eq!(
            parse_boot_line("rhea: boot entry->main x cycles, 1 ns"),
            None
        );
        assert_eq!(
            parse_boot_line("rhea: boot entry->main 5 ticks, 1 ns"),
            None
        );
        assert_eq!(parse_boot_line("rhea: boot entry->main 5 cycles,"), None);
    }

    #[test]
    fn crates_of_symbols() {
        assert_eq!(crate_of("rhea::kthread::spawn"), "rhea");
        assert_eq!(
            crate_of("<rhea_drivers::pci::PciBus as rhea_drivers::bus::Bus>::enumerate"),
            "rhea_drivers"
        );
        assert_eq!(
            crate_of("<&mut T as core::fmt::Write>::write_str"),
            "(generic impls)"
        );
        assert_eq!(crate_of("<u128 as core::fmt::Display>::fmt"), "core");
        assert_eq!(crate_of("<str as core::fmt::Debug>::fmt"), "core");
        assert_eq!(crate_of("<[T] as core::fmt::Debug>::fmt"), "core");
        assert_eq!(crate_of("rhea_entry"), "(rhea_entry)");
        assert_eq!(crate_of("spin::once::Once<T>::call_once"), "spin");
    }

    #[test]
    fn smallest_mib_bisects() {
        let mut tried = Vec::new();
        let found = smallest_mib(1, 32, |m| {
            tried.push(m);
            Ok(m >= 6)
        })
        .unwrap();
        assert_eq!(found, Some(6));
        assert!(tried.len() <= 7, "{tried:?}");
        assert_eq!(smallest_mib(1, 32, |_| Ok(true)).unwrap(), Some(1));
        assert_eq!(smallest_mib(1, 32, |_| Ok(false)).unwrap(), None);
        assert_eq!(smallest_mib(2, 32, |m| Ok(m >= 1)).unwrap(), Some(2));
    }

    #[test]
    fn breakdown_of_this_binary() {
        // The test binary itself is an ELF with sized symbols.
        let exe = fs::read(std::env::current_exe().unwrap()).unwrap();
        let b = image_breakdown(&exe).unwrap();
        assert!(b.sections.iter().any(|(n, s)| n == ".text" && *s > 0));
        assert!(b.crates.iter().any(|(c, _, _)| c == "xtask"));
        assert!(!b.largest.is_empty());
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(246_536), "246,536");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn median_min_max() {
        assert_eq!(stats(&[]), None);
        let s = stats(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        let s = stats(&[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.5, 1.0, 4.0));
    }

    /// What bench-sched prints (with a console prefix on one line and noise around).
    const SCHED_CONSOLE: &str = "\
rhea: app main
RESULT conditions tsc_hz=2400000000 loops=2000
RESULT yield_switch cycles=1850.5 ns=771.0
[cpu0] RESULT sem_pingpong cycles=2900.0 ns=1208.3
RESULT irq_to_thread min_ns=900 avg_ns=1500 p50_ns=1200 p99_ns=4000 max_ns=9000 samples=2000
RESULT cyclictest period=200 hog=0 min=1.50 avg=3.25 p99=8.00 max=20.00 samples=2000
RESULT cyclictest period=200 hog=1 min=1.75 avg=3.50 p50=3.25 p99=9.00 max=30.00 samples=2000
RESULT cyclictest period=1000 hog=0 min=1.25 avg=3.00 p99=7.00 max=15.00 samples=2000
RESULT cyclictest period=1000 hog=1 min=1.00 avg=2.75 p99=6.50 max=12.00 samples=2000
RESULT done
rhea: app main returned
";

    fn linux_figures(cyclic: Vec<CyclicResult>) -> LinuxSchedFigures {
        LinuxSchedFigures {
            yield_switch_ns: Some(1542.0),
            sem_pingpong_ns: None,
            cyclic,
            kernel_version: "6.1.0-1-cloud-amd64".to_string(),
            kernel_package: "linux-image-6.1.0-1-cloud-amd64 6.1.1-1".to_string(),
            sched_policy: "fifo".to_string(),
            preempt: "none (voluntary) full".to_string(),
            clocksource: "tsc".to_string(),
            mem: "256M",
            loops: 2000,
            qemu_command: "qemu-system-x86_64 ...".to_string(),
            wall_to_init: None,
            wall_total: Duration::from_secs(60),
            notes: Vec::new(),
        }
    }

    fn cyc(period_us: u32, hog: bool, p99: Option<f64>, max: f64) -> CyclicResult {
        CyclicResult {
            period_us,
            hog,
            min_us: 5.0,
            avg_us: 10.0,
            p99_us: p99,
            max_us: max,
            samples: 2000,
            overflows: 0,
        }
    }

    #[test]
    fn sched_console() {
        let r = parse_sched_console(SCHED_CONSOLE.lines());
        assert_eq!(r.tsc_hz, Some(2_400_000_000));
        assert_eq!(r.loops, Some(2000));
        assert_eq!(
            r.yield_switch,
            Some(Switch {
                cycles: 1850.5,
                ns: 771.0
            })
        );
        assert_eq!(r.sem_pingpong.unwrap().ns, 1208.3);
        assert_eq!(
            r.irq_to_thread,
            Some(IrqLatency {
                min_ns: 900.0,
                avg_ns: 1500.0,
                p50_ns: Some(1200.0),
                p99_ns: 4000.0,
                max_ns: 9000.0,
                samples: 2000
            })
        );
        assert_eq!(r.cyclic.len(), 4);
        let c = r.cyclic_run(200, true).unwrap();
        assert_eq!(
            (c.min_us, c.avg_us, c.p99_us, c.max_us, c.samples),
            (1.75, 3.5, Some(9.0), 30.0, 2000)
        );
        assert_eq!(r.cyclic_run(1000, false).unwrap().max_us, 15.0);
        assert_eq!(r.cyclic_p50(200, true), Some(3.25));
        assert_eq!(r.cyclic_p50(200, false), None);
        assert!(r.cyclic_run(500, false).is_none());
        assert!(r.done);
        assert!(r.unparsed.is_empty(), "{:?}", r.unparsed);
        assert!(r.missing().is_empty(), "{:?}", r.missing());
    }

    #[test]
    fn sched_console_problems() {
        let r = parse_sched_console([
            "RESULT conditions tsc_hz=0 loops=100",
            "RESULT yield_switch cycles=12 ns=inf",
            "RESULT sem_pingpong cycles=x ns=1",
            "RESULT cyclictest period=200 hog=2 min=1 avg=1 p99=1 max=1 samples=1",
            "RESULT cyclictest period=200 hog=0 min=1 avg=1 max=1 samples=1",
            "RESULT frobnicate a=1",
            "RESULT irq_to_thread garbage",
            "no result here",
        ]);
        assert_eq!(r.tsc_hz, Some(0));
        assert!(r.yield_switch.unwrap().ns.is_infinite());
        assert_eq!(r.sem_pingpong, None);
        assert!(r.cyclic.is_empty());
        assert!(!r.done);
        assert_eq!(r.unparsed.len(), 5, "{:?}", r.unparsed);
        assert_eq!(r.unparsed[0], "RESULT sem_pingpong cycles=x ns=1");
        let missing = r.missing();
        assert!(missing.contains(&"sem_pingpong".to_string()), "{missing:?}");
        assert!(missing.contains(&"cyclictest period=1000 hog=1".to_string()));
        assert!(missing.contains(&"done".to_string()));
        assert!(!missing.contains(&"yield_switch".to_string()));
        assert_eq!(parse_sched_console(["RESULT done"]).missing().len(), 8);
    }

    #[test]
    fn sched_boot_parameters() {
        assert_eq!(sched_cmdline(2000, ""), "loops=2000");
        assert_eq!(sched_cmdline(10, " rhea.x=1 "), "loops=10 rhea.x=1");
        // 120 s + 2000 × 10 ms × 1.5.
        assert_eq!(sched_timeout(2000), Duration::from_secs(150));
        assert_eq!(sched_timeout(10_000), Duration::from_secs(270));
    }

    fn rows(table: &[TableLine]) -> Vec<(String, String, String, String)> {
        table
            .iter()
            .filter_map(|l| match l {
                TableLine::Row(a, b, c, d) => Some((a.clone(), b.clone(), c.clone(), d.clone())),
                _ => None,
            })
            .collect()
    }

    fn notes(table: &[TableLine]) -> Vec<String> {
        table
            .iter()
            .filter_map(|l| match l {
                TableLine::Note(n) | TableLine::Heading(n) => Some(n.clone()),
                TableLine::Row(..) => None,
            })
            .collect()
    }

    #[test]
    fn sched_comparison() {
        let rhea = parse_sched_console(SCHED_CONSOLE.lines());
        let linux = linux_figures(vec![
            cyc(200, false, Some(20.0), 50.0),
            cyc(200, true, Some(10.0), 50.0),
            cyc(1000, false, None, 40.0),
        ]);
        let table = sched_table(&rhea, Some(&linux), Accel::Tcg);
        let rows = rows(&table);
        let all_notes = notes(&table);
        let get = |i: usize| {
            let r = &rows[i];
            (r.0.as_str(), r.1.as_str(), r.2.as_str(), r.3.as_str())
        };
        assert_eq!(
            get(0),
            ("yield switch, ns one way", "771.0", "1542.0", "0.50")
        );
        assert_eq!(
            get(1),
            ("semaphore ping-pong, ns one way", "1208.3", "missing", "-")
        );
        // 200 µs idle: min has no ratio; avg 3.25/10, p99 8/20, max 20/50.
        assert_eq!(get(2), ("  min, µs", "1.50", "5.00", "-"));
        assert_eq!(get(3), ("  avg, µs", "3.25", "10.00", "0.33"));
        assert_eq!(get(4), ("  p99, µs", "8.00", "20.00", "0.40"));
        assert_eq!(get(5), ("  max, µs", "20.00", "50.00", "0.40"));
        // 1000 µs idle: Linux's p99 is beyond its histogram; 1000 µs hog: Linux has none.
        assert_eq!(get(12), ("  p99, µs", "7.00", "beyond histogram", "-"));
        assert_eq!(get(17), ("  max, µs", "12.00", "missing", "-"));
        // Interrupt to thread: Rhea only.
        assert_eq!(get(18), ("  min, ns", "900", "not measured", "-"));
        assert_eq!(get(21), ("  max, ns", "9000", "not measured", "-"));
        assert_eq!(rows.len(), 22);

        assert!(
            all_notes[0].starts_with("Rhea 1850 cycles; goal: ≤ 300 cycles on KVM (not judged")
        );
        assert!(all_notes[1].starts_with("Rhea 2900 cycles"));
        let goals: Vec<&String> = all_notes
            .iter()
            .filter(|n| n.starts_with("goal: p99"))
            .collect();
        assert_eq!(goals.len(), 2, "{all_notes:?}");
        assert_eq!(
            goals[0],
            "goal: p99 and max ≤ ½ Linux's (p99 0.40, max 0.40 of Linux's: met)"
        );
        assert_eq!(
            goals[1],
            "goal: p99 and max ≤ ½ Linux's (p99 0.90, max 0.60 of Linux's: not met)"
        );
        assert!(
            all_notes
                .iter()
                .any(|n| n.contains("cyclictest 1000 µs, hog (samples: Rhea 2000, Linux missing)"))
        );

        // On KVM the switch goal is judged.
        let table = sched_table(&rhea, Some(&linux), Accel::Kvm);
        assert!(notes(&table)[0].ends_with("(not met)"));
        let mut fast = rhea.clone();
        fast.yield_switch = Some(Switch {
            cycles: 280.0,
            ns: 100.0,
        });
        assert!(notes(&sched_table(&fast, None, Accel::Kvm))[0].ends_with("(met)"));
    }

    #[test]
    fn sched_comparison_without_linux() {
        let rhea = parse_sched_console(SCHED_CONSOLE.lines());
        let table = sched_table(&rhea, None, Accel::Tcg);
        for (measure, r, l, ratio) in rows(&table) {
            assert!(!r.is_empty() && r != "missing", "{measure}");
            assert!(l == "missing" || l == "not measured", "{measure}: {l}");
            assert_eq!(ratio, "-");
        }
        assert!(
            notes(&table)
                .iter()
                .any(|n| n.contains("not judged: a figure is missing"))
        );
        // Rhea's figures missing too (never printed: the run fails first, but no panic).
        let table = sched_table(&RheaSched::default(), None, Accel::Kvm);
        assert!(notes(&table)[0].contains("Rhea's figure missing"));
    }

    #[test]
    fn table_rendering() {
        let text = render_table(&[
            TableLine::Row("a".into(), "1.0".into(), "22.0".into(), "0.05".into()),
            TableLine::Note("note".into()),
            TableLine::Heading("title".into()),
            TableLine::Row("  µs".into(), "100.00".into(), "-".into(), "-".into()),
        ]);
        assert_eq!(
            text,
            "  measure    Rhea  Linux guest  Rhea/Linux\n\
             \x20 a           1.0         22.0  0.05\n\
             \x20   ↳ note\n\
             \x20 title\n\
             \x20   µs     100.00            -  -\n"
        );
    }

    #[test]
    fn figures_and_ratios() {
        assert_eq!(figure(1.234, 1), "1.2");
        assert_eq!(figure(f64::INFINITY, 1), "unknown");
        assert_eq!(figure(f64::NAN, 0), "unknown");
        assert_eq!(ratio_of(Some(1.0), Some(4.0)), Some(0.25));
        assert_eq!(ratio_of(Some(1.0), Some(0.0)), None);
        assert_eq!(ratio_of(None, Some(1.0)), None);
        assert_eq!(ratio_of(Some(f64::INFINITY), Some(1.0)), None);
        assert_eq!(show_ratio(Some(0.456)), "0.46");
        assert_eq!(show_ratio(None), "-");
    }
}
