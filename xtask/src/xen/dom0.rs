//! The Xen dom0 harness: a real Xen 4.17 (Debian's packages) with a Debian Linux dom0 running
//! Xen's toolstack (`xenstored`, `xenconsoled`, `xl`, netback), inside QEMU under TCG; dom0
//! creates a domU (Rhea, or Debian's Linux for validating the harness) with a network
//! interface and runs network checks against it from dom0.
//!
//! ```text
//! cargo xtask xen-dom0 --arch x86_64|aarch64 --kernel PATH|linux [--append "..."] [--net]
//!                      [--checks ping,udp,tcp,http] [--ready TEXT] [--ramdisk PATH]
//!                      [--type pvh|pv] [--mem MiB] [--vcpus N] [--timeout SECS] [--verbose]
//! ```
//!
//! [`run`] is the API for test runners: a [`Dom0Spec`] in, a [`Dom0Outcome`] out.
//!
//! What a run is made of, cached under `target/xen-dom0/<arch>/` (the packages in the shared
//! `.deb` cache of `guest::debian`, `target/debian/<amd64|arm64>/debs/`):
//!
//! * **Packages** ([`ensure_packages`]): the toolstack (`xen-utils-4.17`, `xen-utils-common`,
//!   `xenstore-utils`, the `libxen*` libraries, `libyajl2`), `busybox-static`, and Debian's
//!   current generic kernel `linux-image-<abi>-<arch>` (named by the metapackage
//!   `linux-image-<arch>`), fetched with `apt-get download` — x86_64 with the host's apt,
//!   aarch64 through the private arm64 apt state of `firmware.rs`, which also brings the C
//!   libraries the arm64 binaries need. A package already in the cache is not fetched again.
//!   They are unpacked into one tree, `root/` (from the kernel only `/boot/vmlinuz-*`, the
//!   Xen and Xen-network modules and `modules.builtin`). Xen itself is `xen/mod.rs`'s
//!   ([`crate::xen::hypervisor`]), the one the Xen boards boot.
//! * **The dom0 initramfs** ([`base_initramfs`]): a newc cpio (`guest::cpio`, uncompressed)
//!   with busybox, `xl`, `xenstored`, `xenconsoled`, `xen-init-dom0`, `xenconsole`,
//!   `xenstore` and its `xenstore-*` names, their shared libraries (x86_64: resolved with the
//!   host's `ldd` against the unpacked libraries; aarch64: the `DT_NEEDED` closure of
//!   `guest::elf` in the unpacked arm64 packages) plus `libgcc_s` (`pthread_cancel` loads
//!   it), the dom0 kernel modules (xen-evtchn, xen-privcmd, xenfs, xen-gntdev, xen-gntalloc,
//!   xen-netback, and what their `.modinfo` says they depend on, in load order by
//!   `guest::modules`; built-in ones skipped), `/init` (`xtask/xen-dom0/dom0-init.sh`) and
//!   the network hotplug script (`xtask/xen-dom0/vif-rhea`). It is rebuilt only when one of
//!   its inputs changed. Each run appends a second, small cpio (Linux unpacks concatenated
//!   archives) with the domU's kernel (and ramdisk), its `xl` configuration
//!   (`/etc/xen/domu.cfg`) and the run's settings (`/etc/rhea-dom0.conf`).
//! * **QEMU** ([`qemu_machine`], a `qemu::Machine`; one at a time: a lock file under
//!   `target/xen-dom0/`). x86_64: `-M pc -accel tcg -cpu max` (Xen needs SVM with nested
//!   paging) `-m 2048 -smp 2`, `-kernel` the gunzipped Xen ELF, `-append` Xen's command
//!   line, `-initrd "<vmlinuz> <dom0 args>,<initrd>"` (multiboot modules). aarch64: `-M virt,virtualization=on,gic-version=3 -cpu max`, Xen
//!   as `-kernel`, QEMU's own devicetree for the machine (`dumpdtb`) with `/chosen` extended
//!   through `dtc` by Xen's and dom0's command lines and the two modules (dom0's kernel and
//!   initramfs, `multiboot,kernel` / `multiboot,ramdisk`, Xen's
//!   `docs/misc/arm/device-tree/booting.txt`), placed in RAM by `-device loader`.
//!
//! What dom0 does (`dom0-init.sh`): mounts, loads the modules, starts `xenstored`,
//! `xen-init-dom0` and `xenconsoled` (logging each guest's PV console), `xl create`s the
//! domU (`on_poweroff`/`on_crash`/`on_reboot` = `preserve`, so that the way it ended stays
//! visible in `xl list -v`), waits for the ready text in the domU's console log or in Xen's
//! console ring (`xl dmesg`: where a guest's port 0xE9 / `console_io` lines go), runs the
//! checks, waits for the domU to end (or destroys it), prints the logs between markers and
//! powers off. Every step prints a `DOM0-...` line; xtask reads them from Xen's serial
//! console ([`parse_serial`]). The vif's hotplug script gives dom0's side the address
//! `DOM0_ADDR` (10.0.0.1/24) and writes `hotplug-status=connected` (netback waits for it).
//!
//! The checks, from dom0 with busybox, against the domU's address (from `rhea.net.ip=` in the
//! domU's command line, default 10.0.0.2): `ping` (3 echo requests), `udp` and `tcp` (a line
//! sent to port 7 with `nc` must come back), `http` (`wget` of `/status.json` on port 8080).
//! Each gives one `DOM0-CHECK name=<check> ok=<0|1> detail=<text>` line.
//!
//! Measured on a 2-core host (TCG, packages cached; QEMU's wall time): x86_64 dom0 with its
//! toolstack up in 9–12 s; Rhea's `hello` (board xen-x86_64) as a PVH domU, ready line found
//! in Xen's ring, powered off: 11 s for the whole run; with a vif and the four checks (which
//! fail until Rhea's netfront is in an app): 29 s; Debian's Linux as a PV domU with every
//! check passing: 55 s. aarch64: dom0 up in 6–9 s; Linux domU, every check passing: 25 s;
//! Rhea's `hello` (board xen-arm64) with a vif: 19 s, powered off (reason 0).
//!
//! Known limits of the setup: a Linux PVH domU dies early on x86_64 here (QEMU-TCG's nested
//! SVM reports CR2 = 0 on page faults), hence PV for `--kernel linux`; Xen refuses
//! `console_io` to a domU that `xl` created on release builds (only dom0 and dom0less
//! domains may print through it), so Rhea on arm64 shows nothing here until it uses the PV
//! console or the emulated PL011 (`vuart`, logged by xenconsoled and printed as such).

use std::fmt::Write as _;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::cli::XenDom0Args;
use crate::guest::cpio::Tree;
use crate::guest::debian::{self, DebArch, Debs, Members};
use crate::guest::{self, elf, mkdir, read};
use crate::qemu::{Machine, QemuEnd};
use crate::{Context, Error, Result, capture, describe, fail, usage};

/// dom0's `/init`.
const DOM0_INIT: &str = include_str!("../../xen-dom0/dom0-init.sh");
/// The vif hotplug script (`/etc/xen/scripts/vif-rhea`).
const VIF_SCRIPT: &str = include_str!("../../xen-dom0/vif-rhea");
/// `/init` of the Linux domU of `--kernel linux`.
const LINUX_DOMU_INIT: &str = include_str!("../../xen-dom0/linux-domu-init.sh");
/// The hotplug script's name in `xl`'s `vif = [ 'script=...' ]`.
const VIF_SCRIPT_NAME: &str = "vif-rhea";
/// dom0's side of the domU's interface.
pub(crate) const DOM0_ADDR: &str = "10.0.0.1/24";
/// The domU's address when its command line has no `rhea.net.ip=`.
pub(crate) const DEFAULT_DOMU_IP: &str = "10.0.0.2";
/// The Linux domU's ready line (`linux-domu-init.sh`).
pub(crate) const LINUX_READY: &str = "linux-domu: ready";
/// The domU's name in `xl`.
const DOMU_NAME: &str = "domu";
/// Host RAM given to QEMU, MiB.
const HOST_MEM_MIB: u32 = 2048;
/// dom0's RAM.
const DOM0_MEM: &str = "768M";
/// No run is allowed longer than this.
pub(crate) const MAX_TIMEOUT: Duration = Duration::from_secs(360);
/// After dom0's last line, how long QEMU has to power off before it is stopped.
const POWEROFF_GRACE: Duration = Duration::from_secs(5);
/// After a Xen or dom0 panic, how long the rest of the message is read.
const PANIC_GRACE: Duration = Duration::from_secs(3);
/// Serial lines shown when a run fails.
const TAIL_LINES: usize = 40;
/// Where QEMU's loader puts dom0's kernel and initramfs on aarch64 (RAM starts at 1 GiB).
const ARM_KERNEL_ADDR: u64 = 0x5000_0000;
const ARM_INITRD_ADDR: u64 = 0x5800_0000;
/// Bumped when the layout of the base initramfs changes (part of its cache key).
const BASE_LAYOUT: u32 = 1;

/// Debian's toolstack packages (both architectures).
const TOOLSTACK_PKGS: &[&str] = &[
    "xen-utils-4.17",
    "xen-utils-common",
    "xenstore-utils",
    "busybox-static",
    "libxencall1",
    "libxenevtchn1",
    "libxenforeignmemory1",
    "libxengnttab1",
    "libxenmisc4.17",
    "libxenstore4",
    "libxentoollog1",
    "libxendevicemodel1",
    "libxenhypfs1",
    "libxentoolcore1",
    "libyajl2",
    // `nc.openbsd`: UDP (busybox's nc has no -u) and TCP half-close (-N) for the checks.
    "netcat-openbsd",
    "libbsd0",
    "libmd0",
];
/// The C libraries the arm64 toolstack needs besides (the x86_64 one takes the host's).
const ARM64_LIB_PKGS: &[&str] = &[
    "libc6",
    "libgcc-s1",
    "zlib1g",
    "liblzma5",
    "libzstd1",
    "libuuid1",
    "libext2fs2",
    "libcom-err2",
    "libfdt1",
    "libgnutls30",
    "libnl-3-200",
    "libnl-route-3-200",
];
/// The toolstack's binaries in `/usr/lib/xen-4.17/bin/` (each also linked from `/usr/sbin/`).
const XEN_BINARIES: &[&str] = &[
    "xl",
    "xenstored",
    "xenconsoled",
    "xen-init-dom0",
    "xenconsole",
    "xenstore-control",
];
/// The names `xenstore` answers to.
const XENSTORE_NAMES: &[&str] = &[
    "read", "write", "ls", "list", "rm", "exists", "watch", "chmod",
];
/// dom0's modules (file names; `-` and `_` are the same to the kernel).
const DOM0_MODULES: &[&str] = &[
    "xen-evtchn",
    "xen-privcmd",
    "xenfs",
    "xen-gntdev",
    "xen-gntalloc",
    "xen-netback",
];
/// The Linux domU's modules.
const DOMU_MODULES: &[&str] = &["xen-netfront"];
/// The kernel package's members extracted (tar wildcards).
const KERNEL_MEMBERS: &[&str] = &[
    "*/boot/vmlinuz-*",
    "*/modules.builtin",
    "*/kernel/drivers/xen/*",
    "*/kernel/drivers/net/xen-net*",
];

/// The machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arch {
    X86_64,
    Aarch64,
}

impl Arch {
    pub(crate) fn parse(s: &str) -> Option<Arch> {
        match s {
            "x86_64" | "amd64" | "x86" => Some(Arch::X86_64),
            "aarch64" | "arm64" => Some(Arch::Aarch64),
            _ => None,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }

    /// Debian's architecture.
    fn deb(self) -> DebArch {
        match self {
            Arch::X86_64 => DebArch::Amd64,
            Arch::Aarch64 => DebArch::Arm64,
        }
    }

    fn qemu(self) -> &'static str {
        match self {
            Arch::X86_64 => "qemu-system-x86_64",
            Arch::Aarch64 => "qemu-system-aarch64",
        }
    }
}

/// The domain type (`type =` of `xl`'s configuration; x86_64 only, arm64 domUs are all
/// alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DomainType {
    Pvh,
    Pv,
}

/// A check dom0 runs against the domU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// `ping -c 3`.
    Ping,
    /// A line to UDP port 7 comes back.
    UdpEcho,
    /// A line to TCP port 7 comes back.
    TcpEcho,
    /// `GET /status.json` on port 8080 answers.
    Http,
}

impl Check {
    pub(crate) const ALL: [Check; 4] = [Check::Ping, Check::UdpEcho, Check::TcpEcho, Check::Http];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Check::Ping => "ping",
            Check::UdpEcho => "udp",
            Check::TcpEcho => "tcp",
            Check::Http => "http",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Check> {
        Check::ALL.into_iter().find(|c| c.name() == s)
    }
}

/// The domU's kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DomUKernel {
    /// A kernel image (Rhea's PVH ELF or arm64 `Image`), with an optional ramdisk.
    Image {
        path: PathBuf,
        ramdisk: Option<PathBuf>,
    },
    /// Debian's kernel (the dom0's) with a small initramfs of busybox servers
    /// (`linux-domu-init.sh`): validates the harness and the checks.
    DebianLinux,
}

/// What to run.
#[derive(Debug, Clone)]
pub(crate) struct Dom0Spec {
    pub(crate) arch: Arch,
    pub(crate) kernel: DomUKernel,
    /// The domU's command line (`extra =`).
    pub(crate) cmdline: String,
    pub(crate) vcpus: u32,
    pub(crate) mem_mib: u32,
    /// x86_64: the domain type (Rhea's board is PVH).
    pub(crate) domain_type: DomainType,
    /// Give the domU a network interface (netback in dom0, `vif-rhea`).
    pub(crate) with_vif: bool,
    /// Run after the domU is ready (need `with_vif`).
    pub(crate) checks: Vec<Check>,
    /// A fixed text the domU prints when it is ready (in its PV console or as `(dN)` lines
    /// on Xen's console); `None`: the checks run right after `xl create`.
    pub(crate) ready: Option<String>,
    /// How long dom0 waits for `ready`.
    pub(crate) ready_wait: Duration,
    /// How long dom0 waits, after the checks, for the domU to end before destroying it.
    pub(crate) end_wait: Duration,
    /// The whole run, QEMU included (at most [`MAX_TIMEOUT`]).
    pub(crate) timeout: Duration,
    /// Echo the serial console live.
    pub(crate) echo: bool,
}

impl Dom0Spec {
    /// A spec with the defaults of the manual command.
    pub(crate) fn new(arch: Arch, kernel: DomUKernel) -> Dom0Spec {
        Dom0Spec {
            arch,
            kernel,
            cmdline: String::new(),
            vcpus: 1,
            mem_mib: 128,
            domain_type: DomainType::Pvh,
            with_vif: false,
            checks: Vec::new(),
            ready: None,
            ready_wait: Duration::from_secs(90),
            end_wait: Duration::from_secs(30),
            timeout: MAX_TIMEOUT,
            echo: false,
        }
    }

    /// The domU's address: `rhea.net.ip=A.B.C.D/N` of its command line, else the default.
    pub(crate) fn domu_ip(&self) -> String {
        self.cmdline
            .split_whitespace()
            .find_map(|a| a.strip_prefix("rhea.net.ip="))
            .map(|a| a.split('/').next().unwrap_or(a).to_string())
            .unwrap_or_else(|| DEFAULT_DOMU_IP.to_string())
    }
}

/// One check's result (`DOM0-CHECK` line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CheckResult {
    pub(crate) name: String,
    pub(crate) ok: bool,
    pub(crate) detail: String,
}

/// How the domU ended, as `xl list -v` showed it after the checks (and the wait).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DomUEnd {
    /// `xl create` failed (its messages are in `Dom0Outcome::notes`).
    NotCreated,
    /// It shut down with this `SHUTDOWN_*` reason (0 poweroff, 1 reboot, 3 crash, ...).
    Shutdown { reason: u32, state: String },
    /// Crashed (state flag `c`).
    Crashed { state: String },
    /// Still running after the wait; dom0 destroyed it.
    StillRunning { state: String, destroyed: bool },
    /// `xl` did not know it any more.
    Gone,
    /// dom0 never reported (the run failed before; see `Dom0Outcome::qemu_end`).
    Unknown,
}

impl DomUEnd {
    pub(crate) fn describe(&self) -> String {
        match self {
            DomUEnd::NotCreated => "not created (xl create failed)".to_string(),
            DomUEnd::Shutdown { reason, state } => format!(
                "shut down, reason {reason} ({}), xl state {state}",
                crate::xen::shutdown_name(*reason)
            ),
            DomUEnd::Crashed { state } => format!("crashed, xl state {state}"),
            DomUEnd::StillRunning { state, destroyed } => format!(
                "still running (xl state {state}){}",
                if *destroyed {
                    ", destroyed by dom0"
                } else {
                    ", destroy FAILED"
                }
            ),
            DomUEnd::Gone => "gone (xl no longer lists it)".to_string(),
            DomUEnd::Unknown => "unknown (dom0 did not report)".to_string(),
        }
    }
}

/// What a run found.
#[derive(Debug, Clone)]
pub(crate) struct Dom0Outcome {
    /// How QEMU ended (`Exited` after dom0's poweroff, `Timeout`, ...).
    pub(crate) qemu_end: QemuEnd,
    /// dom0 printed `DOM0-FINISHED`: every step ran.
    pub(crate) finished: bool,
    /// A Xen or dom0 kernel panic line, if one was seen.
    pub(crate) panic: Option<String>,
    /// Time from QEMU's start to the toolstack running in dom0 (`DOM0-UP`).
    pub(crate) dom0_up: Option<Duration>,
    /// `xl create` succeeded (`None`: not reached).
    pub(crate) created: Option<bool>,
    /// The ready text was seen (`None`: not reached), and where (`console`, `xen`, `-`).
    pub(crate) ready: Option<(bool, String)>,
    /// Time from QEMU's start to the ready report.
    pub(crate) ready_at: Option<Duration>,
    /// dom0's side of the vif: its name and address (`DOM0-VIF`).
    pub(crate) vif: Option<String>,
    pub(crate) checks: Vec<CheckResult>,
    pub(crate) domu_end: DomUEnd,
    /// The domU's PV console, as xenconsoled logged it.
    pub(crate) console: String,
    /// The domU's emulated UART (arm64 `vuart = "sbsa_uart"`), as xenconsoled logged it.
    pub(crate) vuart: String,
    /// The domU's lines on Xen's console (`(dN) ...`: port 0xE9, `console_io`), without the
    /// prefix.
    pub(crate) xen_console: String,
    /// The tail of `xl`'s log of the domain, and the hotplug script's log.
    pub(crate) xl_log: String,
    pub(crate) hotplug_log: String,
    /// `DOM0-NOTE` lines (failed `insmod`, `xl create`'s messages, ...).
    pub(crate) notes: Vec<String>,
    /// Everything on the serial console with its time since QEMU's start.
    pub(crate) serial: Vec<(Duration, String)>,
    /// QEMU's stderr.
    pub(crate) stderr: String,
    /// Wall time of the whole run (QEMU only; preparing is not counted).
    pub(crate) elapsed: Duration,
}

impl Dom0Outcome {
    /// The last `n` serial lines, for error messages.
    pub(crate) fn tail(&self, n: usize) -> String {
        let from = self.serial.len().saturating_sub(n);
        let mut s = String::new();
        for (_, line) in &self.serial[from..] {
            s.push_str(line);
            s.push('\n');
        }
        s
    }

    /// Prints the outcome (the manual command's report).
    pub(crate) fn print(&self) {
        let secs = |d: Option<Duration>| match d {
            Some(d) => format!("{:.1} s", d.as_secs_f64()),
            None => "-".to_string(),
        };
        if !self.xen_console.is_empty() {
            println!("===== domU on Xen's console =====");
            print!("{}", self.xen_console);
        }
        println!("===== domU PV console (xenconsoled) =====");
        print!("{}", self.console);
        if !self.vuart.is_empty() {
            println!("===== domU vuart (xenconsoled) =====");
            print!("{}", self.vuart);
        }
        if !self.xl_log.trim().is_empty() {
            println!("===== xl log (tail) =====");
            print!("{}", self.xl_log);
        }
        if !self.hotplug_log.trim().is_empty() {
            println!("===== hotplug log =====");
            print!("{}", self.hotplug_log);
        }
        println!("===== outcome =====");
        for note in &self.notes {
            println!("dom0 note: {note}");
        }
        if let Some(p) = &self.panic {
            println!("panic: {p}");
        }
        println!("dom0 up:   {}", secs(self.dom0_up));
        println!(
            "created:   {}",
            match self.created {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "-",
            }
        );
        match &self.ready {
            Some((ok, at)) => println!(
                "ready:     {} ({at}) at {}",
                if *ok { "yes" } else { "NO" },
                secs(self.ready_at)
            ),
            None => println!("ready:     -"),
        }
        if let Some(vif) = &self.vif {
            println!("vif:       {vif}");
        }
        for c in &self.checks {
            println!(
                "check {:<5} {}  {}",
                c.name,
                if c.ok { "ok  " } else { "FAIL" },
                c.detail
            );
        }
        println!("domU:      {}", self.domu_end.describe());
        println!(
            "QEMU:      {}; {:.1} s{}",
            self.qemu_end.describe(),
            self.elapsed.as_secs_f64(),
            if self.finished {
                ""
            } else {
                " (dom0 did not finish)"
            }
        );
    }
}

// ---------------------------------------------------------------------------------------
// Paths and packages.

/// `target/xen-dom0/<arch>/` of this workspace.
fn dir(arch: Arch) -> PathBuf {
    guest::target_dir().join("xen-dom0").join(arch.name())
}

/// What the packages give a run.
#[derive(Debug, Clone)]
struct Unpacked {
    /// The merged tree of every package.
    root: PathBuf,
    /// Xen as QEMU boots it (x86_64: the gunzipped ELF).
    xen: PathBuf,
    /// Debian's kernel (dom0's, and the Linux domU's).
    vmlinuz: PathBuf,
    /// `lib/modules/<abi>` in `root`.
    modules: PathBuf,
}

/// Fetches (if missing) and unpacks everything a run of `arch` needs into `root/`; Xen
/// comes from `xen/mod.rs`, which fetches it for the Xen boards too.
fn ensure_packages(arch: Arch) -> Result<Unpacked> {
    let root = dir(arch).join("root");
    mkdir(&root)?;
    let debs = Debs::open(arch.deb())?;
    let kernel_deb = debs.kernel(arch.deb().name())?;
    debian::unpack(&kernel_deb, &root, Members::Matching(KERNEL_MEMBERS))?;
    let mut pkgs: Vec<String> = TOOLSTACK_PKGS.iter().map(|s| s.to_string()).collect();
    if arch == Arch::Aarch64 {
        pkgs.extend(ARM64_LIB_PKGS.iter().map(|s| s.to_string()));
    }
    for deb in debs.packages(&pkgs)? {
        debian::unpack(&deb, &root, Members::All)?;
    }
    let kernel = debian::package_name(&kernel_deb);
    let abi = kernel.trim_start_matches("linux-image-");
    let vmlinuz = root.join("boot").join(format!("vmlinuz-{abi}"));
    if !vmlinuz.is_file() {
        return fail(format!("{kernel} gave no {}", vmlinuz.display()));
    }
    let modules = root.join("lib/modules").join(abi);
    let xen = crate::xen::hypervisor(arch.deb())?;
    Ok(Unpacked {
        root,
        xen,
        vmlinuz,
        modules,
    })
}

// ---------------------------------------------------------------------------------------
// Libraries and modules.

/// The libraries of `binaries` with the host's `ldd`, the unpacked packages' libraries
/// first on the search path (x86_64: the host's C libraries are amd64 too).
fn libraries_ldd(u: &Unpacked, binaries: &[PathBuf], out: &mut Tree) -> Result<()> {
    let t = Arch::X86_64.deb().triple();
    let path = format!(
        "{}:{}",
        u.root.join("usr/lib").join(t).display(),
        u.root.join("lib").join(t).display()
    );
    for bin in binaries {
        let mut ldd = Command::new("ldd");
        ldd.arg(bin).env("LD_LIBRARY_PATH", &path);
        let text = capture(&mut ldd)?;
        for line in text.lines() {
            let line = line.trim();
            if line.contains("not found") {
                return fail(format!(
                    "{}: `{line}` (ldd with LD_LIBRARY_PATH={path}): add its package to \
                     xen_dom0.rs's TOOLSTACK_PKGS",
                    bin.display()
                ));
            }
            if let Some((guest, host)) = ldd_line(line, t) {
                out.files.insert(guest, host);
            }
        }
    }
    let gcc = ["/lib", "/usr/lib"]
        .iter()
        .map(|d| Path::new(d).join(t).join("libgcc_s.so.1"))
        .find(|p| p.is_file());
    match gcc {
        Some(p) => {
            out.files.insert(format!("lib/{t}/libgcc_s.so.1"), p);
            Ok(())
        }
        None => fail(format!(
            "libgcc_s.so.1 not found in /lib/{t} (package libgcc-s1): dom0's toolstack loads it"
        )),
    }
}

/// The (guest path, host file) of one line of `ldd`'s output: the loader where `PT_INTERP`
/// names it, a library in `lib/<triple>/` by the name the binary asks for; `None` for the
/// vDSO.
fn ldd_line(line: &str, triple: &str) -> Option<(String, PathBuf)> {
    let host = match line.split_once("=>") {
        Some((_, rest)) => rest.split_whitespace().next(),
        None if line.starts_with('/') => line.split_whitespace().next(),
        None => None,
    };
    let host = host.filter(|h| h.starts_with('/'))?;
    let name = Path::new(host)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name.starts_with("ld-linux") {
        return Some((
            host.trim_start_matches('/').to_string(),
            PathBuf::from(host),
        ));
    }
    let soname = line.split_whitespace().next().unwrap_or(&name);
    Some((format!("lib/{triple}/{soname}"), PathBuf::from(host)))
}

/// The libraries of `binaries`, the way the architecture finds them: x86_64 with the host's
/// `ldd`; aarch64 (the host has no arm64 libraries) the `DT_NEEDED` closure in the unpacked
/// arm64 packages, with `libgcc_s` (`pthread_cancel` loads it).
fn libraries(u: &Unpacked, arch: Arch, binaries: &[PathBuf], out: &mut Tree) -> Result<()> {
    match arch {
        Arch::X86_64 => libraries_ldd(u, binaries, out),
        Arch::Aarch64 => elf::add_libraries(
            out,
            binaries,
            std::slice::from_ref(&u.root),
            arch.deb().triple(),
            &["libgcc_s.so.1"],
        ),
    }
}

/// Adds the modules `wanted` and those they depend on to `tree`, numbered in load order
/// under `lib/modules/` (modules built into the kernel are left out).
fn add_modules(tree: &mut Tree, u: &Unpacked, wanted: &[&str]) -> Result<()> {
    for (i, (name, file)) in guest::modules::in_order(&u.modules, wanted)?
        .into_iter()
        .enumerate()
    {
        tree.files
            .insert(format!("lib/modules/{:02}-{name}.ko", i + 1), file);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Initramfs.

/// The directories of dom0's tree besides the parents of its files.
const DOM0_DIRS: &[&str] = &[
    "bin",
    "sbin",
    "dev",
    "proc",
    "sys",
    "run",
    "tmp",
    "root",
    "boot",
    "var/lib/xen",
    "var/lib/xenstored",
    "var/log/xen",
    "var/lock",
    "etc/xen",
];

/// A file of an unpacked package, or an error naming the package.
fn packaged(u: &Unpacked, path: &str, pkg: &str) -> Result<PathBuf> {
    let host = u.root.join(path);
    if host.is_file() {
        Ok(host)
    } else {
        fail(format!("{pkg} gave no {}", host.display()))
    }
}

/// dom0's tree: busybox, the toolstack with its libraries, `nc.openbsd`, the modules,
/// `/init`, the hotplug script and `xl.conf`.
fn dom0_tree(arch: Arch, u: &Unpacked) -> Result<Tree> {
    let mut f = Tree::default();
    let mut binaries = Vec::new();
    for b in XEN_BINARIES {
        let guest = format!("usr/lib/xen-4.17/bin/{b}");
        let host = packaged(u, &guest, "xen-utils-4.17")?;
        f.files.insert(guest.clone(), host.clone());
        f.links.insert(format!("usr/sbin/{b}"), format!("/{guest}"));
        binaries.push(host);
    }
    let xenstore = packaged(u, "usr/bin/xenstore", "xenstore-utils")?;
    f.files.insert("usr/bin/xenstore".into(), xenstore.clone());
    for n in XENSTORE_NAMES {
        f.links
            .insert(format!("usr/bin/xenstore-{n}"), "xenstore".into());
    }
    binaries.push(xenstore);
    let nc = packaged(u, "bin/nc.openbsd", "netcat-openbsd")?;
    f.files.insert("usr/bin/nc.openbsd".into(), nc.clone());
    binaries.push(nc);
    let busybox = packaged(u, "bin/busybox", "busybox-static")?;
    f.files.insert("bin/busybox".into(), busybox);
    libraries(u, arch, &binaries, &mut f)?;
    add_modules(&mut f, u, DOM0_MODULES)?;
    f.links.insert("var/run".into(), "../run".into());
    f.text("init", 0o755, DOM0_INIT.as_bytes());
    f.text("etc/xen/scripts/vif-rhea", 0o755, VIF_SCRIPT.as_bytes());
    f.text("etc/xen/xl.conf", 0o644, b"autoballoon=\"off\"\n");
    f.dirs.extend(DOM0_DIRS.iter().map(|d| d.to_string()));
    f.console = true;
    Ok(f)
}

/// The cache key of a tree: every input's path, size and mtime, and the texts.
fn tree_key(f: &Tree) -> Result<String> {
    let mut key = format!("layout {BASE_LAYOUT}\n");
    for (guest, host) in &f.files {
        let m = fs::metadata(host).context(|| format!("cannot stat {}", host.display()))?;
        let mtime = m
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let _ = writeln!(key, "{guest} {} {} {mtime}", host.display(), m.len());
    }
    for (guest, target) in &f.links {
        let _ = writeln!(key, "{guest} -> {target}");
    }
    for (name, (perm, data)) in &f.texts {
        let _ = writeln!(key, "{name} {perm:o} {}", fnv(data));
    }
    Ok(key)
}

/// The dom0 base initramfs, rebuilt only when an input changed; returns its path.
fn base_initramfs(arch: Arch, u: &Unpacked) -> Result<PathBuf> {
    let f = dom0_tree(arch, u)?;
    let key = tree_key(&f)?;
    let out = dir(arch).join("dom0-base.cpio");
    let key_file = dir(arch).join("dom0-base.key");
    if out.is_file() && fs::read_to_string(&key_file).ok().as_deref() == Some(key.as_str()) {
        return Ok(out);
    }
    let bytes = f.cpio()?;
    fs::write(&out, &bytes).context(|| format!("cannot write {}", out.display()))?;
    fs::write(&key_file, &key).context(|| format!("cannot write {}", key_file.display()))?;
    println!(
        "xen-dom0: dom0 initramfs {} ({} files, {:.1} MB)",
        out.display(),
        f.files.len() + f.texts.len(),
        bytes.len() as f64 / 1e6
    );
    Ok(out)
}

/// FNV-1a, for cache keys.
fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The Linux domU's initramfs (`--kernel linux`): busybox, xen-netfront, its `/init`.
fn linux_domu_initramfs(arch: Arch, u: &Unpacked) -> Result<PathBuf> {
    let mut f = Tree::default();
    f.files
        .insert("bin/busybox".into(), u.root.join("bin/busybox"));
    let nc = packaged(u, "bin/nc.openbsd", "netcat-openbsd")?;
    f.files.insert("bin/nc.openbsd".into(), nc.clone());
    libraries(u, arch, &[nc], &mut f)?;
    add_modules(&mut f, u, DOMU_MODULES)?;
    f.text("init", 0o755, LINUX_DOMU_INIT.as_bytes());
    f.dirs
        .extend(["proc", "sys", "tmp", "sbin"].map(String::from));
    f.console = true;
    let out = dir(arch).join("linux-domu.cpio");
    guest::write_if_changed(&out, &f.cpio()?)?;
    Ok(out)
}

/// `/etc/xen/domu.cfg`.
pub(crate) fn xl_config(spec: &Dom0Spec, has_ramdisk: bool, cmdline: &str) -> String {
    let mut c = format!("name = \"{DOMU_NAME}\"\n");
    if spec.arch == Arch::X86_64 {
        let t = match spec.domain_type {
            DomainType::Pvh => "pvh",
            DomainType::Pv => "pv",
        };
        let _ = writeln!(c, "type = \"{t}\"");
    }
    c.push_str("kernel = \"/boot/domu-kernel\"\n");
    if has_ramdisk {
        c.push_str("ramdisk = \"/boot/domu-ramdisk\"\n");
    }
    let _ = writeln!(c, "extra = {}", crate::xen::quoted(cmdline));
    let _ = writeln!(c, "memory = {}", spec.mem_mib);
    let _ = writeln!(c, "vcpus = {}", spec.vcpus.max(1));
    if spec.with_vif {
        let _ = writeln!(
            c,
            "vif = [ 'mac=00:16:3e:52:48:01,script={VIF_SCRIPT_NAME}' ]"
        );
    }
    if spec.arch == Arch::Aarch64 {
        // The emulated PL011 Rhea's entry code writes its first messages to.
        c.push_str("vuart = \"sbsa_uart\"\n");
    }
    c.push_str("on_poweroff = \"preserve\"\non_crash = \"preserve\"\non_reboot = \"preserve\"\n");
    c
}

/// `/etc/rhea-dom0.conf` (sourced by `dom0-init.sh` and `vif-rhea`).
fn run_conf(spec: &Dom0Spec, ready: Option<&str>) -> String {
    let checks: Vec<&str> = if spec.with_vif {
        spec.checks.iter().map(|c| c.name()).collect()
    } else {
        Vec::new()
    };
    let quote = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
    format!(
        "DOMU_IP={}\nDOM0_ADDR={}\nCHECKS={}\nREADY={}\nREADY_WAIT={}\nEND_WAIT={}\n",
        quote(&spec.domu_ip()),
        quote(DOM0_ADDR),
        quote(&checks.join(" ")),
        quote(ready.unwrap_or("")),
        spec.ready_wait.as_secs().max(1),
        spec.end_wait.as_secs(),
    )
}

// ---------------------------------------------------------------------------------------
// The serial console.

/// Parses dom0's `DOM0-...` lines and the domU's `(dN)` lines into an outcome (the QEMU
/// fields are filled in by the caller).
pub(crate) fn parse_serial(lines: &[(Duration, String)]) -> Dom0Outcome {
    let mut o = Dom0Outcome::of_serial(lines);
    // The log being copied between `DOM0-BEGIN <name>` and `DOM0-END <name>`.
    let mut block: Option<String> = None;
    for (at, raw) in lines {
        if let Some(name) = &block {
            if raw.contains(&format!("DOM0-END {name}")) {
                block = None;
            } else {
                let text = o.log_mut(name);
                text.push_str(raw);
                text.push('\n');
            }
            continue;
        }
        if let Some(d) = domu_line(raw) {
            o.xen_console.push_str(d);
            o.xen_console.push('\n');
            continue;
        }
        if o.panic.is_none() && is_panic(raw) {
            o.panic = Some(raw.trim().to_string());
        }
        if let Some(i) = raw.find("DOM0-") {
            block = o.take_report(*at, &raw[i..]);
        }
    }
    o
}

/// The value of `key=value` among the words of `s`.
fn field(s: &str, key: &str) -> Option<String> {
    s.split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
        .map(str::to_string)
}

impl Dom0Outcome {
    /// An outcome with nothing found yet, holding the serial `lines`.
    fn of_serial(lines: &[(Duration, String)]) -> Dom0Outcome {
        Dom0Outcome {
            qemu_end: QemuEnd::Exited(0),
            finished: false,
            panic: None,
            dom0_up: None,
            created: None,
            ready: None,
            ready_at: None,
            vif: None,
            checks: Vec::new(),
            domu_end: DomUEnd::Unknown,
            console: String::new(),
            vuart: String::new(),
            xen_console: String::new(),
            xl_log: String::new(),
            hotplug_log: String::new(),
            notes: Vec::new(),
            serial: lines.to_vec(),
            stderr: String::new(),
            elapsed: Duration::ZERO,
        }
    }

    /// The text a `DOM0-BEGIN <name>` block goes to (`console`, `vuart`, `xl`, else the
    /// hotplug log).
    fn log_mut(&mut self, name: &str) -> &mut String {
        match name {
            "console" => &mut self.console,
            "vuart" => &mut self.vuart,
            "xl" => &mut self.xl_log,
            _ => &mut self.hotplug_log,
        }
    }

    /// Takes one `DOM0-<TAG> ...` report seen at `at`; returns the name of the log block a
    /// `DOM0-BEGIN` opens.
    fn take_report(&mut self, at: Duration, line: &str) -> Option<String> {
        let (tag, rest) = line.split_once(' ').unwrap_or((line, ""));
        match tag {
            "DOM0-UP" => self.dom0_up = Some(at),
            "DOM0-CREATE" => {
                self.created = Some(field(rest, "ok").as_deref() == Some("1"));
                if self.created == Some(false) {
                    self.domu_end = DomUEnd::NotCreated;
                }
            }
            "DOM0-READY" => {
                self.ready = Some((
                    field(rest, "ok").as_deref() == Some("1"),
                    field(rest, "where").unwrap_or_default(),
                ));
                self.ready_at = Some(at);
            }
            "DOM0-VIF" => self.vif = Some(rest.trim().to_string()),
            "DOM0-CHECK" => self.checks.push(CheckResult {
                name: field(rest, "name").unwrap_or_default(),
                ok: field(rest, "ok").as_deref() == Some("1"),
                detail: rest
                    .split_once("detail=")
                    .map(|(_, d)| d.trim().to_string())
                    .unwrap_or_default(),
            }),
            "DOM0-STATE" => self.domu_end = domu_end(rest),
            "DOM0-NOTE" => self.notes.push(rest.trim().to_string()),
            // `DOM0-BEGIN <name> [<file>]`.
            "DOM0-BEGIN" => return rest.split_whitespace().next().map(str::to_string),
            "DOM0-FINISHED" => self.finished = true,
            _ => {}
        }
        None
    }
}

/// The domU's text of a Xen console line `(dN) text` (N > 0), if it is one.
fn domu_line(line: &str) -> Option<&str> {
    let rest = line.trim_start().strip_prefix("(d")?;
    let (id, text) = rest.split_once(')')?;
    let id: u32 = id.parse().ok()?;
    (id > 0).then(|| text.strip_prefix(' ').unwrap_or(text))
}

fn is_panic(line: &str) -> bool {
    line.contains("Panic on CPU") || line.contains("Kernel panic - not syncing")
}

/// `DOM0-STATE state=<flags> reason=<code|-> waited=<s> destroyed=<0|1>`.
fn domu_end(rest: &str) -> DomUEnd {
    let field = |key: &str| {
        rest.split_whitespace()
            .find_map(|w| w.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
            .unwrap_or("")
            .to_string()
    };
    let state = field("state");
    let reason = field("reason");
    let destroyed = field("destroyed") == "1";
    if state == "gone" || state.is_empty() {
        return DomUEnd::Gone;
    }
    if state.contains('c') {
        return DomUEnd::Crashed { state };
    }
    if state.contains('s')
        && let Ok(reason) = reason.parse()
    {
        return DomUEnd::Shutdown { reason, state };
    }
    DomUEnd::StillRunning { state, destroyed }
}

// ---------------------------------------------------------------------------------------
// QEMU.

/// Holds `target/xen-dom0/qemu.lock` (one dom0 QEMU at a time on the machine).
struct RunLock(fs::File);

impl RunLock {
    fn take(wait: Duration) -> Result<RunLock> {
        let path = dir(Arch::X86_64)
            .parent()
            .map(|p| p.join("qemu.lock"))
            .unwrap_or_else(|| PathBuf::from("qemu.lock"));
        if let Some(p) = path.parent() {
            mkdir(p)?;
        }
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .context(|| format!("cannot open {}", path.display()))?;
        let start = Instant::now();
        loop {
            // flock(2) LOCK_EX | LOCK_NB.
            if file.try_lock().is_ok() {
                return Ok(RunLock(file));
            }
            if start.elapsed() >= wait {
                return fail(format!(
                    "another xen-dom0 run holds {} for more than {} s",
                    path.display(),
                    wait.as_secs()
                ));
            }
            thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

/// Xen's command line (both architectures share all but the console).
fn xen_args(arch: Arch) -> String {
    let console = match arch {
        Arch::X86_64 => "console=com1 com1=115200,8n1",
        Arch::Aarch64 => "console=dtuart dtuart=/pl011@9000000",
    };
    // dom0 gets one vCPU, so the domU has the other QEMU CPU to itself; a large console
    // ring, so that `xl dmesg` still holds the domU's early lines.
    format!(
        "{console} loglvl=all guest_loglvl=all dom0_mem={DOM0_MEM},max:{DOM0_MEM} \
         dom0_max_vcpus=1 conring_size=4M noreboot"
    )
}

/// dom0 Linux's command line.
fn dom0_args(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "console=hvc0 earlyprintk=xen loglevel=5",
        Arch::Aarch64 => "console=hvc0 earlycon=xenboot loglevel=5",
    }
}

/// The devicetree source appended to QEMU's on aarch64: Xen's and dom0's command lines and
/// the two modules.
fn arm_chosen(kernel_bytes: u64, initrd_bytes: u64) -> String {
    let s = crate::xen::quoted;
    format!(
        "\n/ {{\n\tchosen {{\n\
         \t\t#address-cells = <2>;\n\
         \t\t#size-cells = <2>;\n\
         \t\txen,xen-bootargs = {xen};\n\
         \t\txen,dom0-bootargs = {dom0};\n\
         \t\tmodule@{ARM_KERNEL_ADDR:x} {{\n\
         \t\t\tcompatible = \"multiboot,kernel\", \"multiboot,module\";\n\
         \t\t\treg = <0x0 {ARM_KERNEL_ADDR:#x} 0x0 {kernel_bytes:#x}>;\n\
         \t\t}};\n\
         \t\tmodule@{ARM_INITRD_ADDR:x} {{\n\
         \t\t\tcompatible = \"multiboot,ramdisk\", \"multiboot,module\";\n\
         \t\t\treg = <0x0 {ARM_INITRD_ADDR:#x} 0x0 {initrd_bytes:#x}>;\n\
         \t\t}};\n\
         \t}};\n}};\n",
        xen = s(&xen_args(Arch::Aarch64)),
        dom0 = s(dom0_args(Arch::Aarch64)),
    )
}

const ARM_MACHINE: &str = "virt,virtualization=on,gic-version=3";
/// `max` has EL2 under TCG; the implementation-defined pointer authentication is much
/// cheaper to emulate than QARMA.
const ARM_CPU: &str = "max,pauth-impdef=on";

/// The QEMU machine: Xen as the `-kernel`, dom0's kernel and initramfs as its modules
/// (x86_64: multiboot modules in `-initrd`; aarch64: placed in RAM by `-device loader` and
/// named in the devicetree), QEMU's serial port on stdio, no monitor.
fn qemu_machine(arch: Arch, u: &Unpacked, initrd: &Path, run_dir: &Path) -> Result<Machine> {
    let mut m = match arch {
        Arch::X86_64 => {
            let mut m = Machine::new(arch.qemu(), "pc", "tcg");
            m.cpu = Some("max".to_string());
            m.append = Some(xen_args(arch));
            m.multiboot_modules(&[(&u.vmlinuz, dom0_args(arch)), (initrd, "")])?;
            m
        }
        Arch::Aarch64 => arm_machine(u, initrd, run_dir)?,
    };
    m.mem = Some(HOST_MEM_MIB.to_string());
    m.smp = Some(2);
    m.serial = Some("stdio".to_string());
    m.monitor = Some("none".to_string());
    m.kernel = Some(u.xen.clone());
    Ok(m)
}

/// The aarch64 machine's own settings: `-M`, `-cpu`, the devicetree and the two loaders.
fn arm_machine(u: &Unpacked, initrd: &Path, run_dir: &Path) -> Result<Machine> {
    let kernel_bytes = fs::metadata(&u.vmlinuz)
        .context(|| format!("cannot read {}", u.vmlinuz.display()))?
        .len();
    let initrd_bytes = fs::metadata(initrd)
        .context(|| format!("cannot read {}", initrd.display()))?
        .len();
    if ARM_KERNEL_ADDR + kernel_bytes > ARM_INITRD_ADDR {
        return fail(format!(
            "{} ({kernel_bytes} bytes) does not fit below the initramfs at {ARM_INITRD_ADDR:#x}",
            u.vmlinuz.display()
        ));
    }
    let mut m = Machine::new(Arch::Aarch64.qemu(), ARM_MACHINE, "tcg");
    m.cpu = Some(ARM_CPU.to_string());
    m.dtb = Some(arm_devicetree(run_dir, kernel_bytes, initrd_bytes)?);
    m.load(&u.vmlinuz, ARM_KERNEL_ADDR);
    m.load(initrd, ARM_INITRD_ADDR);
    Ok(m)
}

/// QEMU's devicetree of the machine with [`arm_chosen`] merged in (with `dtc`).
fn arm_devicetree(run_dir: &Path, kernel_bytes: u64, initrd_bytes: u64) -> Result<PathBuf> {
    let base = run_dir.join("virt.dtb");
    let mut dump = Machine::new(Arch::Aarch64.qemu(), ARM_MACHINE, "tcg");
    dump.dumpdtb = Some(base.clone());
    dump.cpu = Some(ARM_CPU.to_string());
    dump.mem = Some(HOST_MEM_MIB.to_string());
    dump.smp = Some(2);
    capture(&mut dump.command())?;
    let dts = capture(
        Command::new("dtc")
            .args(["-q", "-I", "dtb", "-O", "dts"])
            .arg(&base),
    )
    .map_err(|e| {
        Error::Failed(format!(
            "{e}\n(dtc comes with Debian's device-tree-compiler package)"
        ))
    })?;
    let source = run_dir.join("xen-dom0.dts");
    let dtb = run_dir.join("xen-dom0.dtb");
    fs::write(&source, dts + &arm_chosen(kernel_bytes, initrd_bytes))
        .context(|| format!("cannot write {}", source.display()))?;
    capture(
        Command::new("dtc")
            .args(["-q", "-I", "dts", "-O", "dtb", "-o"])
            .arg(&dtb)
            .arg(&source),
    )?;
    Ok(dtb)
}

/// What [`run_qemu`] saw: the serial lines, QEMU's stderr, its end, the wall time.
struct QemuRun {
    lines: Vec<(Duration, String)>,
    stderr: String,
    end: QemuEnd,
    elapsed: Duration,
}

/// Runs QEMU until dom0 finished (and QEMU powered off, or [`POWEROFF_GRACE`] later), a
/// panic, QEMU's exit or `timeout`.
fn run_qemu(mut cmd: Command, timeout: Duration, echo: bool) -> Result<QemuRun> {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    println!("xen-dom0: $ {}", describe(&cmd));
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|e| {
        Error::Failed(format!(
            "cannot start {}: {e} (install QEMU: qemu-system-x86 / qemu-system-arm)",
            cmd.get_program().to_string_lossy()
        ))
    })?;
    // Kept open (and unused): QEMU's serial input.
    let stdin = child.stdin.take();
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let readers = crate::qemu::LineReaders::spawn(stdout, stderr, start);
    let mut lines = Vec::new();
    let mut stop_at: Option<Instant> = None;
    let end = loop {
        while let Ok((at, line)) = readers.lines.try_recv() {
            if echo {
                println!("{line}");
                let _ = std::io::stdout().flush();
            }
            if stop_at.is_none() {
                if line.contains("DOM0-FINISHED") {
                    stop_at = Some(Instant::now() + POWEROFF_GRACE);
                } else if is_panic(&line) {
                    stop_at = Some(Instant::now() + PANIC_GRACE);
                }
            }
            lines.push((at, line));
        }
        if let Some(status) = child.try_wait().context(|| "waiting for QEMU".into())? {
            break QemuEnd::from_status(status);
        }
        if stop_at.is_some_and(|t| Instant::now() >= t) {
            let _ = child.kill();
            let _ = child.wait();
            break QemuEnd::Signaled(nix::sys::signal::Signal::SIGKILL as i32);
        }
        if start.elapsed() >= timeout {
            let _ = child.kill();
            let _ = child.wait();
            break QemuEnd::Timeout(timeout);
        }
        thread::sleep(Duration::from_millis(20));
    };
    let elapsed = start.elapsed();
    drop(stdin);
    let stderr = readers.finish(&mut lines, echo);
    Ok(QemuRun {
        lines,
        stderr,
        end,
        elapsed,
    })
}

// ---------------------------------------------------------------------------------------
// The API.

/// Runs `spec`: fetches and builds what is missing, boots Xen and dom0 in QEMU, lets dom0
/// create the domU and run the checks. `Err` only when the run could not start (a missing
/// package, tool or file); a run that went wrong (timeout, panic, failed checks) is an
/// outcome, described by its fields.
pub(crate) fn run(spec: &Dom0Spec) -> Result<Dom0Outcome> {
    check(spec)?;
    let arch = spec.arch;
    let u = ensure_packages(arch)?;
    let base = base_initramfs(arch, &u)?;
    let run_dir = dir(arch).join("run");
    mkdir(&run_dir)?;
    let domu = domu(spec, arch, &u)?;
    let (per_run, cfg) = run_initramfs(spec, &domu)?;
    let mut initrd_bytes = read(&base)?;
    initrd_bytes.extend(per_run);
    let initrd = run_dir.join("initrd.cpio");
    // The run directory is shared by every run of this architecture: hold the run lock before
    // writing into it, or a second run could boot the first one's domU image.
    let _lock = RunLock::take(Duration::from_secs(60))?;
    fs::write(&initrd, &initrd_bytes).context(|| format!("cannot write {}", initrd.display()))?;
    println!(
        "xen-dom0: {}: Xen 4.17 + dom0 {} + domU {} ({}){}",
        arch.name(),
        u.vmlinuz
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        domu.kernel.display(),
        domu.cmdline,
        if spec.with_vif { ", vif" } else { "" }
    );
    if spec.echo {
        print!("xen-dom0: /etc/xen/domu.cfg:\n{cfg}");
    }
    let machine = qemu_machine(arch, &u, &initrd, &run_dir)?;
    let q = run_qemu(machine.command(), spec.timeout, spec.echo)?;
    let mut o = parse_serial(&q.lines);
    o.qemu_end = q.end;
    o.stderr = q.stderr;
    o.elapsed = q.elapsed;
    Ok(o)
}

/// Refuses a spec no run can satisfy, and a missing QEMU.
fn check(spec: &Dom0Spec) -> Result<()> {
    if spec.timeout > MAX_TIMEOUT {
        return usage(format!(
            "a xen-dom0 run may take at most {} s",
            MAX_TIMEOUT.as_secs()
        ));
    }
    if !spec.checks.is_empty() && !spec.with_vif {
        return usage("network checks need the domU's vif (with_vif / --net)".to_string());
    }
    let arch = spec.arch;
    if let crate::qemu::Probe::Missing = crate::qemu::probe(arch.qemu()) {
        return fail(format!(
            "{} not found: install Debian's {} package",
            arch.qemu(),
            match arch {
                Arch::X86_64 => "qemu-system-x86",
                Arch::Aarch64 => "qemu-system-arm",
            }
        ));
    }
    Ok(())
}

/// The domU of a run: its kernel, ramdisk, ready line and command line.
#[derive(Debug, Clone)]
struct DomU {
    kernel: PathBuf,
    ramdisk: Option<PathBuf>,
    ready: Option<String>,
    cmdline: String,
}

/// The domU `spec` names; Debian's Linux gets its initramfs built and a command line with
/// its address.
fn domu(spec: &Dom0Spec, arch: Arch, u: &Unpacked) -> Result<DomU> {
    Ok(match &spec.kernel {
        DomUKernel::Image { path, ramdisk } => DomU {
            kernel: path.clone(),
            ramdisk: ramdisk.clone(),
            ready: spec.ready.clone(),
            cmdline: spec.cmdline.clone(),
        },
        DomUKernel::DebianLinux => {
            let mut cmdline = String::from("console=hvc0 loglevel=4 rhea.linger=8");
            if !spec.cmdline.contains("rhea.net.ip=") {
                let _ = write!(cmdline, " rhea.net.ip={DEFAULT_DOMU_IP}/24");
            }
            if !spec.cmdline.is_empty() {
                cmdline.push(' ');
                cmdline.push_str(&spec.cmdline);
            }
            DomU {
                kernel: u.vmlinuz.clone(),
                ramdisk: Some(linux_domu_initramfs(arch, u)?),
                ready: Some(
                    spec.ready
                        .clone()
                        .unwrap_or_else(|| LINUX_READY.to_string()),
                ),
                cmdline,
            }
        }
    })
}

/// The per-run cpio appended to the base initramfs (the domU's kernel and ramdisk, its `xl`
/// configuration, the run's settings), and that configuration.
fn run_initramfs(spec: &Dom0Spec, domu: &DomU) -> Result<(Vec<u8>, String)> {
    let mut run_spec = spec.clone();
    run_spec.cmdline = domu.cmdline.clone();
    let mut tree = Tree::default();
    tree.files
        .insert("boot/domu-kernel".into(), domu.kernel.clone());
    if let Some(r) = &domu.ramdisk {
        tree.files.insert("boot/domu-ramdisk".into(), r.clone());
    }
    let cfg = xl_config(&run_spec, domu.ramdisk.is_some(), &domu.cmdline);
    let conf = run_conf(&run_spec, domu.ready.as_deref());
    tree.text("etc/xen/domu.cfg", 0o644, cfg.as_bytes());
    tree.text("etc/rhea-dom0.conf", 0o644, conf.as_bytes());
    Ok((tree.cpio()?, cfg))
}

// ---------------------------------------------------------------------------------------
// The manual command.

/// `cargo xtask xen-dom0 ...` (its arguments parsed by `cli::parse_xen_dom0`): runs the spec
/// they make and prints what the run found; exit code 1 unless dom0 finished, the domU was
/// created and every check passed.
pub(crate) fn command(args: XenDom0Args) -> Result<()> {
    let spec = spec_of(args)?;
    let o = run(&spec)?;
    o.print();
    report(&spec, &o)
}

/// The domU's kernel of `--kernel`/`--ramdisk`: Debian's for `linux`, else the files given,
/// which must exist.
fn domu_kernel(kernel: &str, ramdisk: Option<PathBuf>) -> Result<DomUKernel> {
    if kernel == "linux" {
        return Ok(DomUKernel::DebianLinux);
    }
    let path = PathBuf::from(kernel);
    if !path.is_file() {
        return fail(format!("--kernel {kernel}: no such file"));
    }
    if let Some(r) = &ramdisk
        && !r.is_file()
    {
        return fail(format!("--ramdisk {}: no such file", r.display()));
    }
    Ok(DomUKernel::Image { path, ramdisk })
}

/// The spec of the command's arguments: the defaults of [`Dom0Spec::new`], except that
/// Debian's Linux gets 256 MiB and is PV, and `--net` alone runs every check.
fn spec_of(args: XenDom0Args) -> Result<Dom0Spec> {
    let is_linux = args.kernel == "linux";
    let kernel = domu_kernel(&args.kernel, args.ramdisk)?;
    let mut spec = Dom0Spec::new(args.arch, kernel);
    spec.cmdline = args.append;
    spec.vcpus = args.vcpus;
    spec.mem_mib = args.mem_mib.unwrap_or(if is_linux { 256 } else { 128 });
    // Debian's Linux dies early as a PVH domU here (QEMU-TCG's nested SVM reports CR2 = 0
    // on its page faults): PV by default.
    spec.domain_type = args.domain_type.unwrap_or(if is_linux {
        DomainType::Pv
    } else {
        DomainType::Pvh
    });
    spec.with_vif = args.net;
    spec.checks = if args.net {
        args.checks.unwrap_or_else(|| Check::ALL.to_vec())
    } else {
        Vec::new()
    };
    spec.ready = args.ready;
    if let Some(w) = args.ready_wait {
        spec.ready_wait = w;
    }
    if let Some(w) = args.end_wait {
        spec.end_wait = w;
    }
    spec.timeout = args.timeout;
    spec.echo = args.verbose;
    Ok(spec)
}

/// The command's verdict on outcome `o` of `spec`: `Ok` when dom0 finished, the domU was
/// created and every check passed; otherwise, for a run that did not finish, its last serial
/// lines and QEMU's stderr.
fn report(spec: &Dom0Spec, o: &Dom0Outcome) -> Result<()> {
    let checks_ok = o.checks.iter().all(|c| c.ok) && o.checks.len() == spec.checks.len();
    if o.finished && o.created == Some(true) && checks_ok {
        return Ok(());
    }
    if !o.finished {
        println!(
            "xen-dom0: the run did not finish ({}); last serial lines:\n{}",
            o.qemu_end.describe(),
            o.tail(TAIL_LINES)
        );
        if !o.stderr.trim().is_empty() {
            println!("QEMU stderr:\n{}", o.stderr.trim());
        }
    }
    Err(Error::Quiet(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x86_qemu_machine() {
        let u = Unpacked {
            root: "/r".into(),
            xen: "/c/xen.elf".into(),
            vmlinuz: "/r/boot/vmlinuz-6.1.0-56-amd64".into(),
            modules: "/r/lib/modules/6.1.0-56-amd64".into(),
        };
        let initrd = Path::new("/c/run/initrd.cpio");
        let m = qemu_machine(Arch::X86_64, &u, initrd, Path::new("/c/run")).unwrap();
        assert_eq!(m.binary, "qemu-system-x86_64");
        let args = m.args();
        assert_eq!(
            args[..args.len() - 1].join(" "),
            "-M pc -accel tcg -cpu max -nodefaults -no-user-config -no-reboot -display none \
             -m 2048 -smp 2 -serial stdio -monitor none -kernel /c/xen.elf \
             -initrd /r/boot/vmlinuz-6.1.0-56-amd64 console=hvc0 earlyprintk=xen loglevel=5,\
             /c/run/initrd.cpio -append"
        );
        assert_eq!(args[args.len() - 1], xen_args(Arch::X86_64));
        assert!(xen_args(Arch::X86_64).starts_with("console=com1 "));
        // QEMU's multiboot module list cannot hold a path with a comma.
        let comma = Path::new("/c/run,1/initrd.cpio");
        assert!(qemu_machine(Arch::X86_64, &u, comma, Path::new("/c")).is_err());
    }

    #[test]
    fn ldd_lines() {
        let t = "x86_64-linux-gnu";
        assert_eq!(ldd_line("linux-vdso.so.1 (0x00007ffd)", t), None);
        assert_eq!(
            ldd_line(
                "libyajl.so.2 => /r/usr/lib/x86_64-linux-gnu/libyajl.so.2.1.0 (0x7f)",
                t
            ),
            Some((
                "lib/x86_64-linux-gnu/libyajl.so.2".to_string(),
                PathBuf::from("/r/usr/lib/x86_64-linux-gnu/libyajl.so.2.1.0")
            ))
        );
        assert_eq!(
            ldd_line("/lib64/ld-linux-x86-64.so.2 (0x7f)", t),
            Some((
                "lib64/ld-linux-x86-64.so.2".to_string(),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2")
            ))
        );
    }

    #[test]
    fn serial_parsing() {
        let t = |s: &str| (Duration::from_secs(1), s.to_string());
        let lines = vec![
            t("(XEN) Xen version 4.17"),
            t("DOM0-UP uptime=3.1 xen=4.17.7"),
            t("DOM0-CREATE ok=1 domid=1 uptime=4.0"),
            t("(d1) rhea: hello"),
            t("DOM0-READY ok=1 after=2.5 where=xen"),
            t("DOM0-VIF name=vif1.0 addr=10.0.0.1/24 state=up"),
            t("DOM0-CHECK name=ping ok=1 detail=3 packets transmitted, 3 packets received"),
            t("[   12.3] xyz DOM0-CHECK name=udp ok=0 detail=sent=a got="),
            t("DOM0-STATE state=---s-- reason=0 waited=1.0 destroyed=1"),
            t("DOM0-BEGIN console"),
            t("linux-domu: ready"),
            t("DOM0-END console"),
            t("DOM0-BEGIN vuart /var/log/xen/console/guest-domu-vuart0.log"),
            t("early"),
            t("DOM0-END vuart"),
            t("DOM0-BEGIN xl"),
            t("xl line"),
            t("DOM0-END xl"),
            t("DOM0-FINISHED uptime=9"),
        ];
        let o = parse_serial(&lines);
        assert!(o.finished);
        assert_eq!(o.created, Some(true));
        assert_eq!(o.ready, Some((true, "xen".to_string())));
        assert_eq!(o.checks.len(), 2);
        assert!(o.checks[0].ok && !o.checks[1].ok);
        assert_eq!(o.checks[1].detail, "sent=a got=");
        assert_eq!(
            o.domu_end,
            DomUEnd::Shutdown {
                reason: 0,
                state: "---s--".into()
            }
        );
        assert_eq!(o.console, "linux-domu: ready\n");
        assert_eq!(o.xl_log, "xl line\n");
        assert_eq!(o.vuart, "early\n");
        assert_eq!(o.xen_console, "rhea: hello\n");
        assert!(o.vif.unwrap().starts_with("name=vif1.0"));
        assert_eq!(
            domu_end("state=-b---- reason=- waited=30 destroyed=1"),
            DomUEnd::StillRunning {
                state: "-b----".into(),
                destroyed: true
            }
        );
        assert_eq!(domu_end("state=gone reason=-"), DomUEnd::Gone);
        assert!(matches!(
            domu_end("state=---sc- reason=3"),
            DomUEnd::Crashed { .. }
        ));
        assert_eq!(domu_line("(d0) x"), None);
        assert_eq!(domu_line("(d12) a b"), Some("a b"));
    }

    #[test]
    fn configs() {
        let mut spec = Dom0Spec::new(
            Arch::X86_64,
            DomUKernel::Image {
                path: "x".into(),
                ramdisk: None,
            },
        );
        spec.with_vif = true;
        spec.checks = vec![Check::Ping, Check::Http];
        spec.cmdline = "rhea.net.ip=10.0.0.7/24 a=\"b\"".into();
        assert_eq!(spec.domu_ip(), "10.0.0.7");
        let cfg = xl_config(&spec, false, &spec.cmdline);
        assert!(cfg.contains("type = \"pvh\"\n"), "{cfg}");
        assert!(
            cfg.contains(r#"extra = "rhea.net.ip=10.0.0.7/24 a=\"b\"""#),
            "{cfg}"
        );
        assert!(cfg.contains("script=vif-rhea"), "{cfg}");
        assert!(!cfg.contains("ramdisk"), "{cfg}");
        let conf = run_conf(&spec, Some("it's ready"));
        assert!(conf.contains("CHECKS='ping http'\n"), "{conf}");
        assert!(conf.contains("READY='it'\\''s ready'\n"), "{conf}");
        assert!(conf.contains("DOMU_IP='10.0.0.7'\n"), "{conf}");
        let o = arm_chosen(0x100, 0x200);
        assert!(o.contains("reg = <0x0 0x50000000 0x0 0x100>;"), "{o}");
        assert!(o.contains("multiboot,ramdisk"), "{o}");
    }
}
