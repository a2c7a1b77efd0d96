//! The `xen-arm64` board's harness: Rhea booted as a domU by a real Xen 4.17 (Debian's
//! `xen-hypervisor-4.17-arm64`) inside `qemu-system-aarch64 -M virt,virtualization=on`.
//!
//! What a run is made of, all under `target/xen-arm64/`:
//!
//! * **Xen**: `/boot/xen-4.17-arm64` from Debian's package ([`hypervisor`]), fetched once
//!   into the shared arm64 `.deb` cache (`guest::debian`, through the private arm64 apt
//!   state of `firmware.rs`) and unpacked with `dpkg-deb` (a second run downloads nothing). QEMU boots it as the `-kernel` (it is an
//!   arm64 `Image` too), at EL2 (`virtualization=on`), on `-cpu max`.
//! * **The devicetree** Xen reads, with the "dom0less" nodes that make Xen build Rhea's domain
//!   itself at boot (Xen's `docs/misc/arm/device-tree/booting.txt`): QEMU's own tree for the
//!   same machine (`-M ...,dumpdtb=`, same `-m`/`-smp`/GIC), decompiled with `dtc`, and a
//!   second definition of `/chosen` appended to the source — dts merges it into the first —
//!   holding `xen,xen-bootargs` (Xen's console on the PL011, `guest_loglvl=all` so a domU's
//!   `console_io` lines are printed) and `domU1`: `compatible = "xen,domain"`, `memory` (KiB,
//!   from `--mem`), `cpus` (from `--smp`), `vpl011`, and the kernel module (`multiboot,kernel`)
//!   at [`IMAGE_ADDR`] with Rhea's command line as its `bootargs`. Then compiled back with `dtc`.
//!   `dtc` is chosen over writing the blob here: it is Debian's standard tool
//!   (`device-tree-compiler`, installed with apt-get when missing and root), it checks the
//!   result, and appending source leaves QEMU's tree untouched whatever it holds.
//! * **QEMU**: `-M virt,virtualization=on,gic-version=3` (machine `dom0less`; `gic-version=2`
//!   for `dom0less-gicv2`, where Xen gives the guest a GICv2) `-cpu max -m` [`HOST_MEM`] `-dtb`
//!   that tree, `-kernel` Xen, and Rhea's `Image` placed at [`IMAGE_ADDR`] by
//!   `-device loader`. No semihosting: the guest must end through Xen.
//!
//! How a run ends: Rhea's board prints `rhea: xen: SCHEDOP_shutdown reason=N (name)` through
//! `console_io`, then makes the hypercall. Xen 4.17 prints nothing when a domU shuts down, and
//! without a dom0 nobody reaps the domain: Xen idles and QEMU never exits by itself. So, shortly
//! after that line, the harness types Xen's debug key `q` on the serial input (`conswitch=ax`
//! keeps it with Xen) and reads Xen's domain dump: a domain that shut down has every vCPU
//! paused by Xen (`pause_count` >= 1; a vCPU merely waiting for an interrupt shows 0). Then it
//! stops QEMU — [`QemuEnd::DomainShutdown`]. Reason 0 (`poweroff`) with every vCPU paused is
//! success, 3 (`crash`) with every vCPU paused failure; a returned call (`SCHEDOP_shutdown
//! returned`), another reason, a vCPU still running or no dump within [`GRACE`] is described
//! as such. The reason is the one the guest announced immediately before the call: Xen
//! confirms that the domain stopped, but its dump does not show the shutdown code. A run that
//! never reaches the line is a timeout; a Xen panic ends QEMU (`-no-reboot`) with status 0,
//! which is no verdict either.

//!
//! **Board `xen-x86_64`** (machine `pvh-dom0`): Debian's `xen-hypervisor-4.17-amd64` (fetched
//! into the shared amd64 `.deb` cache, `xen-4.17-amd64.gz` gunzipped into `target/xen-x86_64/xen.elf`:
//! QEMU's `-kernel` takes the multiboot ELF) under `qemu-system-x86_64 -M pc -cpu max` (TCG:
//! Xen needs SVM, which TCG's `max` CPU has), with Rhea's PVH ELF as the first multiboot
//! module — Xen builds it as the hardware domain (`dom0=pvh`), the way Xen's own CI runs its
//! test kernels; the module's string after the path is Rhea's command line. No toolstack, so
//! a boot takes about a second of Xen. The domain's `console_io` output is printed raw by Xen.
//! When the hardware domain shuts down, Xen itself says so ("Hardware Dom0 halted" for a
//! power-off, "Hardware Dom0 crashed" for a crash) and halts: that line is the confirmation,
//! after which xtask stops QEMU.

pub(crate) mod dom0;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::guest::debian::{self, DebArch, Debs, Members};
use crate::qemu::{Captured, Machine, Qemu, QemuEnd, Spec};
use crate::{Context, Result, capture, describe, fail};

/// The hypervisor's file in Debian's arm64 package (`/boot/...`).
const XEN_FILE: &str = "xen-4.17-arm64";
/// Host RAM given to QEMU: Xen's heap and the domU (`--mem`) must fit.
pub(crate) const HOST_MEM: &str = "1G";
/// The QEMU machine of a board machine: Xen emulates for the guest the GIC version it runs on.
pub(crate) fn qemu_machine(machine: &str) -> &'static str {
    match machine {
        "dom0less-gicv2" => "virt,virtualization=on,gic-version=2",
        _ => "virt,virtualization=on,gic-version=3",
    }
}
/// The CPU: Xen needs EL2; `max` has it under TCG.
const CPU: &str = "max";
/// Where QEMU's loader puts Rhea's `Image` for Xen to find (host physical, inside `HOST_MEM`
/// of RAM from 0x4000_0000, clear of Xen, which QEMU loads low and which moves itself to the
/// top of RAM, and of QEMU's devicetree).
pub(crate) const IMAGE_ADDR: u64 = 0x5000_0000;
/// Xen's command line: its console on QEMU's PL011 (the devicetree path QEMU gives it), and
/// every guest `console_io` line printed without rate limiting (Xen prints them at
/// `XENLOG_G_DEBUG`; `/all` lowers the rate-limited threshold too, else a chatty test loses
/// lines); `conswitch=ax` keeps the serial input with Xen (its debug keys) instead of handing
/// it to a dom0 that does not exist.
const XEN_BOOTARGS: &str =
    "console=dtuart dtuart=/pl011@9000000 loglvl=all/all guest_loglvl=all/all conswitch=ax";
/// The line the board prints before `SCHEDOP_shutdown` (`boards/xen-arm64/src/hypercall.rs`).
const SHUTDOWN_MARKER: &str = "rhea: xen: SCHEDOP_shutdown reason=";
/// The line it prints if the hypercall returned.
const REFUSED_MARKER: &str = "rhea: xen: SCHEDOP_shutdown returned ";
/// How long after the shutdown line xtask asks Xen for its domain dump.
const ASK_AFTER: Duration = Duration::from_millis(200);
/// How long xtask waits for the dump before it stops QEMU anyway.
pub(crate) const GRACE: Duration = Duration::from_secs(3);
/// Xen's debug key "dump domain (and guest debug) info".
const DUMP_KEY: &[u8] = b"q";
/// The domain Xen builds first in dom0less mode (no dom0).
const DOMU_ID: u32 = 1;
/// `SHUTDOWN_*` names (Xen's public/sched.h), for messages.
const SHUTDOWN_NAMES: [&str; 6] = [
    "poweroff",
    "reboot",
    "suspend",
    "crash",
    "watchdog",
    "soft_reset",
];

/// `target/xen-arm64/` of this workspace.
fn dir() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .unwrap_or(manifest_dir)
        .join("target")
        .join("xen-arm64")
}

/// The name of a `SHUTDOWN_*` reason.
pub(crate) fn shutdown_name(reason: u32) -> &'static str {
    SHUTDOWN_NAMES
        .get(reason as usize)
        .copied()
        .unwrap_or("unknown")
}

/// Debian's hypervisor package of an architecture.
fn xen_package(arch: DebArch) -> String {
    format!("xen-hypervisor-4.17-{}", arch.name())
}

/// Xen as QEMU boots it, fetched once for all its users (the Xen boards and `xen_dom0.rs`)
/// from Debian's `xen-hypervisor-4.17-<arch>` in the shared `.deb` cache (`guest::debian`):
/// arm64 `target/xen-arm64/xen-4.17-arm64` (an arm64 `Image`), amd64
/// `target/xen-x86_64/xen.elf` (`xen-4.17-amd64.gz` gunzipped: QEMU's `-kernel` takes the
/// multiboot ELF).
pub(crate) fn hypervisor(arch: DebArch) -> Result<PathBuf> {
    let (path, member) = match arch {
        DebArch::Arm64 => (dir().join(XEN_FILE), XEN_FILE),
        DebArch::Amd64 => (x86_dir().join("xen.elf"), X86_XEN_FILE),
    };
    if fs::metadata(&path).is_ok_and(|m| m.len() > 0) {
        return Ok(path);
    }
    let pkg = xen_package(arch);
    println!(
        "setup: fetching Xen ({pkg}, Debian's {} package)",
        arch.name()
    );
    let deb = Debs::open(arch)?.package(&pkg).map_err(|e| {
        crate::Error::Failed(format!(
            "{e}\n(without apt, unpack {pkg} by hand and copy its boot/{member} (gunzipped if \
             it ends in .gz) to {})",
            path.display()
        ))
    })?;
    let unpack = path.with_file_name("unpack");
    let _ = fs::remove_dir_all(&unpack);
    let pattern = format!("*/boot/{member}");
    debian::unpack(&deb, &unpack, Members::Matching(&[pattern.as_str()]))?;
    let found = unpack.join("boot").join(member);
    let bytes = match arch {
        DebArch::Arm64 => crate::guest::read(&found)?,
        DebArch::Amd64 => gunzip(&found)?,
    };
    if arch == DebArch::Amd64 && !bytes.starts_with(b"\x7fELF") {
        return fail(format!("{} does not hold a gzipped ELF", found.display()));
    }
    let tmp = path.with_extension("part");
    fs::write(&tmp, &bytes).context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, &path).context(|| format!("cannot write {}", path.display()))?;
    let _ = fs::remove_dir_all(&unpack);
    println!("setup: {} (from {})", path.display(), deb.display());
    Ok(path)
}

/// The contents of a gzip file.
fn gunzip(gz: &Path) -> Result<Vec<u8>> {
    let mut cmd = Command::new("gzip");
    cmd.arg("-dc").arg(gz);
    let out = cmd
        .output()
        .context(|| format!("cannot run `{}`", describe(&cmd)))?;
    if !out.status.success() {
        return fail(format!("`{}` failed ({})", describe(&cmd), out.status));
    }
    Ok(out.stdout)
}

/// Makes sure `dtc` runs, installing Debian's `device-tree-compiler` when missing and root.
fn ensure_dtc() -> Result<()> {
    let works = || {
        Command::new("dtc")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if works() {
        return Ok(());
    }
    let root = crate::test::net::is_root();
    if root {
        let mut install = Command::new("apt-get");
        install.args(["install", "-y", "device-tree-compiler"]);
        println!("setup: $ {}", describe(&install));
        let _ = capture(&mut install);
        if works() {
            return Ok(());
        }
    }
    fail(
        "dtc (the devicetree compiler) is missing: board xen-arm64 writes Xen's dom0less nodes \
         with it; install it with `apt-get install device-tree-compiler` (as root)"
            .to_string(),
    )
}

/// Board xen-x86_64: the hypervisor's file in Debian's amd64 package.
const X86_XEN_FILE: &str = "xen-4.17-amd64.gz";
/// Xen's command line on x86_64 (the hardware domain's memory and vCPUs are added): its
/// console on COM1; every guest line printed unthrottled; no reboot on a crash; the PVH
/// hardware domain without an IOMMU (QEMU's `pc` has none); no boot-time scrubbing and no
/// timer slop (Xen's 50 µs default would delay every one-shot timer of the guest).
const X86_XEN_ARGS: &str = "console=com1 com1=115200,8n1 loglvl=all/all guest_loglvl=all/all \
     noreboot dom0=pvh dom0-iommu=none bootscrub=0 timer_slop=0";
/// Memory QEMU gives Xen itself besides the hardware domain's `--mem`.
const X86_XEN_OVERHEAD_MIB: u64 = 384;

fn x86_dir() -> PathBuf {
    dir().with_file_name("xen-x86_64")
}

/// The machine of board xen-x86_64 (machine `pvh-dom0`): Xen as the `-kernel`, Rhea's image
/// and command line as the first multiboot module (commas doubled: QEMU separates modules
/// with single ones).
pub(crate) fn x86_machine(spec: &Spec<'_>) -> Result<Machine> {
    x86_machine_with(spec, hypervisor(DebArch::Amd64)?)
}

/// [`x86_machine`] with Xen at `xen`.
fn x86_machine_with(spec: &Spec<'_>, xen: PathBuf) -> Result<Machine> {
    let Some(dom0_kib) = mem_kib(spec.mem) else {
        return fail(format!("--mem {} is not a size (e.g. 128M)", spec.mem));
    };
    let dom0_mib = dom0_kib.div_ceil(1024);
    let smp = spec.smp.max(1);
    // One TCG thread for all vCPUs, even with several. Multi-threaded TCG's emulation of
    // nested SVM (Xen runs its dom0 in an SVM guest) mixes the two levels now and then: with
    // 2 vCPUs, thread-stress's dom0 triple-faulted 5 times in 40 boots (2026-12-06, QEMU
    // 10.0.2), right after an instruction Xen intercepts (rdtsc, mov from cr2), and once with
    // Xen's own CS:RIP (e008:ffff82d0...) in the guest's saved state. With one thread:
    // 0 in 20. It happened as often at d7acbee, before the timer advance. Rhea's own races
    // are still hunted with parallel vCPUs on q35, microvm and the Arm boards.
    let mut m = Machine::new(spec.board.qemu, "pc", "tcg,thread=single");
    m.cpu = Some("max".to_string());
    m.mem = Some(format!("{}M", dom0_mib + X86_XEN_OVERHEAD_MIB));
    m.smp = Some(smp);
    m.serial = Some(crate::qemu::serial_arg(spec.serial).to_string());
    m.kernel = Some(xen);
    m.append = Some(format!(
        "{X86_XEN_ARGS} dom0_mem={dom0_mib}M dom0_max_vcpus={smp}"
    ));
    m.multiboot_modules(&[(spec.kernel, spec.append)])?;
    Ok(m)
}

/// Xen's own line when the hardware domain ends (`xen/common/shutdown.c`): the reason it
/// names, or `None` for another line.
pub(crate) fn hardware_domain_end(line: &str) -> Option<u32> {
    if line.contains("Hardware Dom0 halted") {
        Some(0)
    } else if line.contains("Hardware Dom0 crashed") {
        Some(3)
    } else if line.contains("Hardware Dom0 shutdown") {
        Some(u32::MAX)
    } else {
        None
    }
}

/// `--mem` (`128M`, `1G`, `65536K`, or MiB without a suffix) in KiB.
pub(crate) fn mem_kib(mem: &str) -> Option<u64> {
    let mem = mem.trim();
    let (digits, unit) = match mem.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => mem.split_at(i),
        None => (mem, "M"),
    };
    let n: u64 = digits.parse().ok()?;
    let kib = match unit.to_ascii_uppercase().as_str() {
        "K" | "KB" | "KIB" => n,
        "M" | "MB" | "MIB" => n.checked_mul(1024)?,
        "G" | "GB" | "GIB" => n.checked_mul(1024 * 1024)?,
        _ => return None,
    };
    (kib > 0).then_some(kib)
}

/// A string as a double-quoted literal with `"` and `\` escaped and control characters
/// blanked: the form both dts and `xl` configuration files take.
pub(crate) fn quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The dts text appended to QEMU's tree: Xen's command line and the domU.
pub(crate) fn chosen_overlay(image_bytes: u64, domu_kib: u64, cpus: u32, bootargs: &str) -> String {
    format!(
        "\n/ {{\n\tchosen {{\n\
         \t\txen,xen-bootargs = {xen};\n\
         \t\tdomU1 {{\n\
         \t\t\tcompatible = \"xen,domain\";\n\
         \t\t\t#address-cells = <2>;\n\
         \t\t\t#size-cells = <2>;\n\
         \t\t\tmemory = <0x0 {domu_kib:#x}>;\n\
         \t\t\tcpus = <{cpus}>;\n\
         \t\t\tvpl011;\n\
         \t\t\tmodule@{IMAGE_ADDR:x} {{\n\
         \t\t\t\tcompatible = \"multiboot,kernel\", \"multiboot,module\";\n\
         \t\t\t\treg = <0x0 {IMAGE_ADDR:#x} 0x0 {image_bytes:#x}>;\n\
         \t\t\t\tbootargs = {args};\n\
         \t\t\t}};\n\
         \t\t}};\n\
         \t}};\n}};\n",
        xen = quoted(XEN_BOOTARGS),
        args = quoted(bootargs),
    )
}

/// What a run needs besides QEMU's usual arguments.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    /// Xen, QEMU's `-kernel`.
    pub(crate) xen: PathBuf,
    /// The devicetree with the dom0less nodes, QEMU's `-dtb`.
    pub(crate) dtb: PathBuf,
}

/// Prepares a run of `spec` (its `kernel` is Rhea's `Image`, its `append` the domU's command
/// line): Xen fetched if needed, the devicetree written.
pub(crate) fn prepare(spec: &Spec<'_>) -> Result<Prepared> {
    let xen = hypervisor(DebArch::Arm64)?;
    ensure_dtc()?;
    let Some(domu_kib) = mem_kib(spec.mem) else {
        return fail(format!("--mem {} is not a size (e.g. 128M)", spec.mem));
    };
    let image_bytes = fs::metadata(spec.kernel)
        .context(|| format!("cannot read {}", spec.kernel.display()))?
        .len();
    let run = dir().join("run");
    fs::create_dir_all(&run).context(|| format!("cannot create {}", run.display()))?;
    let smp = spec.smp.max(1);
    let qemu_machine = qemu_machine(spec.machine);
    let base = run.join(format!("{}-smp{smp}.dtb", spec.machine));
    let mut dump = Machine::new(spec.board.qemu, qemu_machine, "tcg");
    dump.dumpdtb = Some(base.clone());
    dump.cpu = Some(CPU.to_string());
    dump.mem = Some(HOST_MEM.to_string());
    dump.smp = Some(smp);
    capture(&mut dump.command())?;
    let dts = capture(
        Command::new("dtc")
            .args(["-q", "-I", "dtb", "-O", "dts"])
            .arg(&base),
    )?;
    let stem = spec
        .kernel
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.split('.').next())
        .unwrap_or("image");
    let source = run.join(format!("{stem}-{}-smp{smp}.dts", spec.machine));
    let dtb = run.join(format!("{stem}-{}-smp{smp}.dtb", spec.machine));
    let text = dts + &chosen_overlay(image_bytes, domu_kib, smp, spec.append);
    fs::write(&source, text).context(|| format!("cannot write {}", source.display()))?;
    capture(
        Command::new("dtc")
            .args(["-q", "-I", "dts", "-O", "dtb", "-o"])
            .arg(&dtb)
            .arg(&source),
    )?;
    Ok(Prepared { xen, dtb })
}

/// The machine of board xen-arm64 (machines `dom0less`, `dom0less-gicv2`): Xen as the
/// `-kernel` with the devicetree [`prepare`] wrote, Rhea's `Image` placed at [`IMAGE_ADDR`]
/// by QEMU's loader. The domU gets `--mem` (its devicetree node); the machine holds Xen and it
/// ([`HOST_MEM`]). No semihosting and no `-append`: the domU ends through Xen and takes its
/// command line from the devicetree.
pub(crate) fn arm_machine(spec: &Spec<'_>) -> Result<Machine> {
    if !matches!(spec.machine, "dom0less" | "dom0less-gicv2") {
        return fail(format!(
            "qemu.rs has no command line for board {} machine {}",
            spec.board.name, spec.machine
        ));
    }
    Ok(arm_machine_with(spec, prepare(spec)?))
}

/// [`arm_machine`] of a run prepared as `p`.
fn arm_machine_with(spec: &Spec<'_>, p: Prepared) -> Machine {
    let accel = if spec.smp == 1 {
        "tcg"
    } else {
        "tcg,thread=multi"
    };
    let mut m = Machine::new(spec.board.qemu, qemu_machine(spec.machine), accel);
    m.cpu = Some(CPU.to_string());
    m.dtb = Some(p.dtb);
    m.load(spec.kernel, IMAGE_ADDR);
    m.mem = Some(HOST_MEM.to_string());
    m.smp = Some(spec.smp);
    m.serial = Some(crate::qemu::serial_arg(spec.serial).to_string());
    m.kernel = Some(p.xen);
    m
}

/// What a console line says about the domain's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EndLine {
    /// `SCHEDOP_shutdown reason=N` is about to be called.
    Shutdown(u32),
    /// The call returned this value.
    Refused(i64),
}

/// Parses a console line (Xen prefixes a domU's lines with `(d1) `).
pub(crate) fn end_line(line: &str) -> Option<EndLine> {
    let number = |rest: &str| rest.split_whitespace().next().map(str::to_string);
    if let Some(at) = line.find(SHUTDOWN_MARKER) {
        let n = number(&line[at + SHUTDOWN_MARKER.len()..])?;
        return n.parse().ok().map(EndLine::Shutdown);
    }
    if let Some(at) = line.find(REFUSED_MARKER) {
        let n = number(&line[at + REFUSED_MARKER.len()..])?;
        return n.parse().ok().map(EndLine::Refused);
    }
    None
}

/// What Xen's domain dump (debug key `q`) says about the domU's vCPUs: for each, its
/// `pause_count`. A vCPU that shut down is paused by Xen (`paused_for_shutdown`: count >= 1);
/// one that merely waits for an interrupt is blocked with count 0.
#[derive(Debug, Default)]
pub(crate) struct DomainDump {
    started: bool,
    in_domu: bool,
    pause_counts: Vec<u32>,
    /// The dump is over (Xen went on to notify the guests).
    pub(crate) done: bool,
}

impl DomainDump {
    /// Takes one console line.
    pub(crate) fn push(&mut self, line: &str) {
        if self.done {
            return;
        }
        if line.contains("pressed -> dumping domain info") {
            self.started = true;
            return;
        }
        if !self.started {
            return;
        }
        if let Some(at) = line.find("General information for domain ") {
            let id = line[at + "General information for domain ".len()..].trim_end_matches(':');
            self.in_domu = id.trim().parse() == Ok(DOMU_ID);
        } else if line.contains("Notifying guest") {
            self.done = true;
        } else if self.in_domu
            && line.contains("pause_flags=")
            && let Some(at) = line.find("pause_count=")
            && let Some(n) = line[at + "pause_count=".len()..]
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
        {
            self.pause_counts.push(n);
        }
    }

    /// (vCPUs paused, vCPUs) of the domU, once the dump is complete.
    pub(crate) fn paused(&self) -> Option<(usize, usize)> {
        (self.done && !self.pause_counts.is_empty()).then(|| {
            (
                self.pause_counts.iter().filter(|&&n| n > 0).count(),
                self.pause_counts.len(),
            )
        })
    }
}

/// Runs a prepared command line with the console captured (echoed with `echo`). After the
/// domain's shutdown line it types Xen's debug key `q` and stops QEMU once Xen's domain dump
/// is complete (at most [`GRACE`] later), or at `timeout`.
pub(crate) fn run_captured(
    qemu: &Qemu,
    spec: &Spec<'_>,
    feed: Option<&crate::qemu::StdinFeed>,
    timeout: Duration,
    echo: bool,
) -> Result<Captured> {
    let mut cmd = crate::qemu::command(qemu, spec)?;
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if echo {
        println!("$ {}", describe(&cmd));
    }
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .context(|| format!("cannot start `{}`", describe(&cmd)))?;
    // Xen's serial input (`conswitch=ax` leaves it with Xen): the debug key of the dump.
    let stdin = child.stdin.take();
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let readers = crate::qemu::LineReaders::spawn(stdout, stderr, start);
    let mut watch = Watch::new(spec, feed, stdin, start);
    let mut lines = Vec::new();
    let end = loop {
        while let Ok((at, line)) = readers.lines.try_recv() {
            if echo {
                println!("{line}");
            }
            watch.line(&line, echo);
            lines.push((at, line));
        }
        if let Some(status) = child
            .try_wait()
            .context(|| "waiting for QEMU".to_string())?
        {
            break QemuEnd::from_status(status);
        }
        if let Some(end) = watch.end(&mut child) {
            break end;
        }
        if let Some(end) = crate::qemu::ended(&mut child, start, timeout)? {
            break end;
        }
        thread::sleep(Duration::from_millis(5));
    };
    let stdin_written = watch.stdin_written;
    drop(watch);
    let elapsed = start.elapsed();
    let stderr = readers.finish(&mut lines, echo);
    if echo && !stderr.trim().is_empty() {
        eprint!("{stderr}");
    }
    Ok(Captured {
        lines,
        stderr,
        end,
        elapsed,
        stdin_written,
    })
}

/// What [`run_captured`] has seen of a Xen run, line by line, and the guest's serial input.
struct Watch {
    /// Board xen-x86_64: Rhea is the hardware domain; Xen's own line confirms its end.
    hardware_domain: bool,
    /// vCPUs of the domain.
    smp: usize,
    /// The serial input (xen-x86_64: Xen hands it to the hardware domain).
    stdin: Option<ChildStdin>,
    start: Instant,
    /// The feed's text and marker, until written.
    to_feed: Option<(String, Option<String>)>,
    stdin_written: Option<Duration>,
    /// The reason announced, and when.
    shutdown: Option<(u32, Instant)>,
    refused: Option<i64>,
    /// When the dump was asked for.
    asked: Option<Instant>,
    dump: DomainDump,
    /// What Xen's hardware-domain line said.
    xen_says: Option<u32>,
}

impl Watch {
    fn new(
        spec: &Spec<'_>,
        feed: Option<&crate::qemu::StdinFeed>,
        stdin: Option<ChildStdin>,
        start: Instant,
    ) -> Watch {
        Watch {
            hardware_domain: spec.board.name == "xen-x86_64",
            smp: spec.smp.max(1) as usize,
            stdin,
            start,
            to_feed: feed.map(|f| (f.text.clone(), f.after.clone())),
            stdin_written: None,
            shutdown: None,
            refused: None,
            asked: None,
            dump: DomainDump::default(),
            xen_says: None,
        }
    }

    /// Takes one console line.
    fn line(&mut self, line: &str, echo: bool) {
        match end_line(line) {
            Some(EndLine::Shutdown(reason)) if self.shutdown.is_none() => {
                self.shutdown = Some((reason, Instant::now()));
            }
            Some(EndLine::Refused(rc)) => self.refused = Some(rc),
            _ => {}
        }
        if self.asked.is_some() {
            self.dump.push(line);
        }
        if self.hardware_domain && self.xen_says.is_none() {
            self.xen_says = hardware_domain_end(line);
        }
        let due = self
            .to_feed
            .as_ref()
            .is_some_and(|(_, after)| after.as_ref().is_none_or(|a| line.contains(a.as_str())));
        if due
            && let Some((text, _)) = self.to_feed.take()
            && self.write(text.as_bytes())
        {
            self.stdin_written = Some(self.start.elapsed());
            if echo {
                println!("(xtask: wrote the stdin text)");
            }
        }
    }

    /// Writes to the serial input; whether it worked.
    fn write(&mut self, bytes: &[u8]) -> bool {
        use std::io::Write;
        self.stdin
            .as_mut()
            .is_some_and(|pipe| pipe.write_all(bytes).and_then(|()| pipe.flush()).is_ok())
    }

    /// The end of the run once the domain's end is known (QEMU then stopped); asks Xen for
    /// its domain dump on the way (xen-arm64).
    fn end(&mut self, child: &mut Child) -> Option<QemuEnd> {
        let end = if self.hardware_domain {
            self.hardware_domain_end()
        } else {
            self.domu_end()
        };
        if end.is_some() {
            if self.hardware_domain {
                thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        end
    }

    /// xen-x86_64: Xen halts the machine after the hardware domain's end: its line confirms
    /// the announced reason (every vCPU stopped), or names an end nobody announced.
    fn hardware_domain_end(&self) -> Option<QemuEnd> {
        let waited = self
            .shutdown
            .is_some_and(|(_, seen)| seen.elapsed() >= GRACE);
        if self.xen_says.is_none() && self.refused.is_none() && !waited {
            return None;
        }
        if self.xen_says.is_none() && self.shutdown.is_none() {
            return None;
        }
        let (refused, smp) = (self.refused, self.smp);
        Some(match (self.shutdown, self.xen_says) {
            (Some((reason, _)), x) => QemuEnd::DomainShutdown {
                reason,
                refused,
                paused: (x == Some(reason)).then_some((smp, smp)),
            },
            (None, x) => QemuEnd::DomainShutdown {
                reason: x.unwrap_or(u32::MAX),
                refused,
                paused: None,
            },
        })
    }

    /// xen-arm64: shortly after the shutdown line (the hypercall follows it at once), asks
    /// Xen for its domain dump; ends when it is complete, when the call returned, or after
    /// [`GRACE`].
    fn domu_end(&mut self) -> Option<QemuEnd> {
        let (reason, seen) = self.shutdown?;
        if self.asked.is_none() && self.refused.is_none() && seen.elapsed() >= ASK_AFTER {
            self.write(DUMP_KEY);
            self.asked = Some(Instant::now());
        }
        let waited = self.asked.is_some_and(|t| t.elapsed() >= GRACE);
        (self.refused.is_some() || self.dump.done || waited).then(|| QemuEnd::DomainShutdown {
            reason,
            refused: self.refused,
            paused: self.dump.paused(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(mem_kib("128M"), Some(128 * 1024));
        assert_eq!(mem_kib("1G"), Some(1024 * 1024));
        assert_eq!(mem_kib("65536K"), Some(65536));
        assert_eq!(mem_kib("256"), Some(256 * 1024));
        assert_eq!(mem_kib("0M"), None);
        assert_eq!(mem_kib("12X"), None);
        assert_eq!(mem_kib(""), None);
    }

    #[test]
    fn end_lines() {
        assert_eq!(
            end_line("(d1) rhea: xen: SCHEDOP_shutdown reason=0 (poweroff)"),
            Some(EndLine::Shutdown(0))
        );
        assert_eq!(
            end_line("(XEN) (d1) rhea: xen: SCHEDOP_shutdown reason=3 (crash)"),
            Some(EndLine::Shutdown(3))
        );
        assert_eq!(
            end_line("(d1) rhea: xen: SCHEDOP_shutdown returned -22"),
            Some(EndLine::Refused(-22))
        );
        assert_eq!(end_line("(d1) rhea: app main"), None);
        assert_eq!(end_line("rhea: xen: SCHEDOP_shutdown reason=x"), None);
        assert_eq!(shutdown_name(3), "crash");
        assert_eq!(shutdown_name(9), "unknown");
    }

    #[test]
    fn verdicts() {
        use crate::qemu::{Verdict, classify};
        let end = |reason, refused, paused| QemuEnd::DomainShutdown {
            reason,
            refused,
            paused,
        };
        assert_eq!(classify(&end(0, None, Some((2, 2)))), Verdict::Success);
        assert_eq!(
            classify(&end(3, None, Some((1, 1)))),
            Verdict::KernelFailure
        );
        for (e, says) in [
            (end(1, None, Some((1, 1))), "reason 1, reboot"),
            (end(0, Some(-22), None), "returned -22"),
            (end(0, None, Some((1, 2))), "1 of 2 vCPUs paused"),
            (end(0, None, None), "dump: none"),
        ] {
            match classify(&e) {
                Verdict::Other(why) => assert!(why.contains(says), "{why}"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn hardware_domain_ends() {
        assert_eq!(
            hardware_domain_end("(XEN) Hardware Dom0 halted: halting machine"),
            Some(0)
        );
        assert_eq!(
            hardware_domain_end("(XEN) Hardware Dom0 crashed: 'noreboot' set - not rebooting."),
            Some(3)
        );
        assert_eq!(
            hardware_domain_end("(XEN) Hardware Dom0 shutdown: rebooting machine"),
            Some(u32::MAX)
        );
        assert_eq!(hardware_domain_end("(d0) rhea: app main"), None);
    }

    #[test]
    fn domain_dumps() {
        let text = "(XEN) 'q' pressed -> dumping domain info (now = 3906945867)
(XEN) General information for domain 1:
(XEN)     refcnt=3 dying=0 pause_count=0
(XEN)     VCPU0: CPU0 [has=F] poll=0 upcall_pend=00 upcall_mask=00
(XEN)     pause_count=1 pause_flags=0
(XEN)     VCPU1: CPU1 [has=F] poll=0 upcall_pend=00 upcall_mask=00
(XEN)     pause_count=0 pause_flags=1
(XEN) Notifying guest 1:0 (virq 1, port 0)";
        let mut dump = DomainDump::default();
        for line in text.lines() {
            assert_eq!(dump.paused(), None);
            dump.push(line);
        }
        assert_eq!(dump.paused(), Some((1, 2)));
        // Lines before the dump count for nothing.
        let mut early = DomainDump::default();
        early.push("(XEN)     pause_count=1 pause_flags=0");
        early.push("(XEN) Notifying guest 1:0 (virq 1, port 0)");
        assert_eq!(early.paused(), None);
    }

    fn spec<'a>(board: &str, machine: &'a str, smp: u32) -> Spec<'a> {
        Spec {
            board: crate::boards::find(board).unwrap(),
            machine,
            accel: crate::qemu::Accel::Tcg,
            smp,
            mem: "128M",
            kernel: Path::new("/img/appliance.elf"),
            serial: crate::qemu::Serial::Captured,
            append: "rhea.net.ip=10.0.0.2/24,x",
        }
    }

    #[test]
    fn x86_command_line() {
        let m = x86_machine_with(&spec("xen-x86_64", "pvh-dom0", 2), "/x/xen.elf".into()).unwrap();
        assert_eq!(m.binary, "qemu-system-x86_64");
        assert_eq!(
            m.args(),
            [
                "-M",
                "pc",
                "-accel",
                "tcg,thread=single",
                "-cpu",
                "max",
                "-nodefaults",
                "-no-user-config",
                "-no-reboot",
                "-display",
                "none",
                "-m",
                "512M",
                "-smp",
                "2",
                "-serial",
                "stdio",
                "-kernel",
                "/x/xen.elf",
                "-initrd",
                "/img/appliance.elf rhea.net.ip=10.0.0.2/24,,x",
                "-append",
                &format!("{X86_XEN_ARGS} dom0_mem=128M dom0_max_vcpus=2"),
            ]
        );
        let mut bad = spec("xen-x86_64", "pvh-dom0", 1);
        bad.mem = "lots";
        assert!(x86_machine_with(&bad, "/x/xen.elf".into()).is_err());
    }

    #[test]
    fn arm_command_line() {
        let p = Prepared {
            xen: "/x/xen-4.17-arm64".into(),
            dtb: "/x/run/appliance.dtb".into(),
        };
        let m = arm_machine_with(&spec("xen-arm64", "dom0less-gicv2", 2), p.clone());
        assert_eq!(m.binary, "qemu-system-aarch64");
        assert_eq!(
            m.args().join(" "),
            "-M virt,virtualization=on,gic-version=2 -dtb /x/run/appliance.dtb \
             -accel tcg,thread=multi -cpu max -nodefaults -no-user-config -no-reboot \
             -display none -m 1G -smp 2 -serial stdio -kernel /x/xen-4.17-arm64 \
             -device loader,file=/img/appliance.elf,addr=0x50000000"
        );
        // One vCPU: single-threaded TCG, GICv3 for machine dom0less; never -append (the
        // command line is in the devicetree) nor semihosting (the guest ends through Xen).
        let one = arm_machine_with(&spec("xen-arm64", "dom0less", 1), p).args();
        assert_eq!(
            one[1..6],
            [
                "virt,virtualization=on,gic-version=3",
                "-dtb",
                "/x/run/appliance.dtb",
                "-accel",
                "tcg"
            ]
        );
        assert!(
            !one.iter()
                .any(|a| a == "-append" || a.starts_with("-semihosting"))
        );
        assert!(arm_machine(&spec("xen-arm64", "virt-gicv3", 1)).is_err());
    }

    #[test]
    fn overlay() {
        let o = chosen_overlay(0x1234, 131_072, 2, "rhea.checker=1 a=\"b\"");
        assert!(o.contains("memory = <0x0 0x20000>;"), "{o}");
        assert!(o.contains("cpus = <2>;"), "{o}");
        assert!(o.contains("module@50000000 {"), "{o}");
        assert!(o.contains("reg = <0x0 0x50000000 0x0 0x1234>;"), "{o}");
        assert!(o.contains(r#"bootargs = "rhea.checker=1 a=\"b\"";"#), "{o}");
        assert!(o.contains("guest_loglvl=all"), "{o}");
    }
}
