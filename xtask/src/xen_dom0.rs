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
//! What a run is made of, all cached under `target/xen-dom0/<arch>/`:
//!
//! * **Packages** ([`ensure_packages`]): the hypervisor (`xen-hypervisor-4.17-<arch>`), the
//!   toolstack (`xen-utils-4.17`, `xen-utils-common`, `xenstore-utils`, the `libxen*`
//!   libraries, `libyajl2`), `busybox-static`, and Debian's current kernel
//!   `linux-image-<abi>-<arch>` (the ABI from `apt-cache depends linux-image-amd64`), fetched
//!   with `apt-get download` into `debs/` — x86_64 with the host's apt, aarch64 through the
//!   private arm64 apt state of `firmware.rs`, which also brings the C libraries the arm64
//!   binaries need. A package already in `debs/` is not fetched again. They are unpacked
//!   with `dpkg-deb -x` into one tree, `root/` (from the kernel only `/boot/vmlinuz-*`, the
//!   Xen and Xen-network modules and `modules.builtin`).
//! * **The dom0 initramfs** ([`base_initramfs`]): a newc cpio (`linux_guest::Cpio`,
//!   uncompressed) with busybox, `xl`, `xenstored`, `xenconsoled`, `xen-init-dom0`,
//!   `xenconsole`, `xenstore` and its `xenstore-*` names, their shared libraries (x86_64:
//!   resolved with the host's `ldd` against the unpacked libraries; aarch64: the `DT_NEEDED`
//!   closure found in the unpacked arm64 packages) plus `libgcc_s` (`pthread_cancel` loads
//!   it), the dom0 kernel modules (xen-evtchn, xen-privcmd, xenfs, xen-gntdev, xen-gntalloc,
//!   xen-netback, and what their `.modinfo` says they depend on, in load order; built-in ones
//!   skipped), `/init` (`xtask/xen-dom0/dom0-init.sh`) and the network hotplug script
//!   (`xtask/xen-dom0/vif-rhea`). It is rebuilt only when one of its inputs changed. Each run
//!   appends a second, small cpio (Linux unpacks concatenated archives) with the domU's
//!   kernel (and ramdisk), its `xl` configuration (`/etc/xen/domu.cfg`) and the run's
//!   settings (`/etc/rhea-dom0.conf`).
//! * **QEMU** (one at a time: a lock file under `target/xen-dom0/`). x86_64: `-accel tcg
//!   -cpu max` (Xen needs SVM with nested paging) `-m 2048 -smp 2`, `-kernel` the gunzipped
//!   Xen ELF, `-append` Xen's command line, `-initrd "<vmlinuz> <dom0 args>,<initrd>"`
//!   (multiboot modules). aarch64: `-M virt,virtualization=on,gic-version=3 -cpu max`, Xen
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

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use object::read::elf::{Dyn, ElfFile64, FileHeader, ProgramHeader};
use object::{Endianness, elf};

use crate::linux_guest::{Cpio, is_deb_of};
use crate::qemu::QemuEnd;
use crate::{Context, Error, Result, capture, describe, fail, usage};

/// dom0's `/init`.
const DOM0_INIT: &str = include_str!("../xen-dom0/dom0-init.sh");
/// The vif hotplug script (`/etc/xen/scripts/vif-rhea`).
const VIF_SCRIPT: &str = include_str!("../xen-dom0/vif-rhea");
/// `/init` of the Linux domU of `--kernel linux`.
const LINUX_DOMU_INIT: &str = include_str!("../xen-dom0/linux-domu-init.sh");
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

    /// Debian's name.
    fn deb(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::Aarch64 => "arm64",
        }
    }

    /// The multiarch triple of library directories.
    fn triple(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64-linux-gnu",
            Arch::Aarch64 => "aarch64-linux-gnu",
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
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .unwrap_or(manifest_dir)
        .join("target")
        .join("xen-dom0")
        .join(arch.name())
}

fn mkdir(path: &Path) -> Result<()> {
    fs::create_dir_all(path).context(|| format!("cannot create {}", path.display()))
}

fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).context(|| format!("cannot read {}", path.display()))
}

/// The `.deb` of `pkg` in `debs`, if there is one (the newest by name).
fn cached_deb(debs: &Path, pkg: &str) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(debs)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .is_some_and(|n| n.ends_with(".deb") && is_deb_of(&n, pkg))
        })
        .collect();
    found.sort();
    found.pop()
}

/// Whether a `.deb` file name is a versioned kernel of the generic flavour of `deb_arch`,
/// e.g. `linux-image-6.1.0-56-amd64_6.1.192-2_amd64.deb` (not `-cloud-`, not the
/// metapackage).
fn is_kernel_deb(file_name: &str, deb_arch: &str) -> bool {
    let Some(pkg) = file_name.split('_').next() else {
        return false;
    };
    pkg.strip_prefix("linux-image-")
        .and_then(|r| r.strip_suffix(&format!("-{deb_arch}")))
        .is_some_and(|abi| {
            abi.starts_with(|c: char| c.is_ascii_digit())
                && abi
                    .chars()
                    .all(|c| c.is_ascii_digit() || c == '.' || c == '-')
        })
        && file_name.ends_with(".deb")
}

/// The package `apt-cache depends <meta>` names first.
fn depends_target(apt_cache_depends: &str) -> Option<String> {
    apt_cache_depends.lines().find_map(|l| {
        let pkg = l.trim().strip_prefix("Depends:")?.trim();
        (!pkg.is_empty() && !pkg.starts_with('<')).then(|| pkg.to_string())
    })
}

/// Downloads the packages of `pkgs` not in `debs` yet.
fn download(arch: Arch, debs: &Path, pkgs: &[String]) -> Result<()> {
    let missing: Vec<&String> = pkgs
        .iter()
        .filter(|p| cached_deb(debs, p).is_none())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    mkdir(debs)?;
    let how = |pkg: &str, e: &Error| {
        Error::Failed(format!(
            "cannot download Debian's {} package {pkg}: {e}\n(xen-dom0 needs Debian 12 \
             (bookworm) package lists{}; or put {pkg}_*.deb into {} by hand)",
            arch.deb(),
            if arch == Arch::Aarch64 {
                ", fetched into target/firmware/apt"
            } else {
                ": run `apt-get update`"
            },
            debs.display()
        ))
    };
    match arch {
        Arch::X86_64 => {
            let mut cmd = Command::new("apt-get");
            cmd.current_dir(debs).arg("download").args(&missing);
            println!("xen-dom0: $ {}", describe(&cmd));
            if let Err(e) = capture(&mut cmd) {
                // Name the package that is not there.
                for pkg in &missing {
                    let mut one = Command::new("apt-get");
                    one.current_dir(debs).args(["download", pkg.as_str()]);
                    capture(&mut one).map_err(|e| how(pkg, &e))?;
                }
                return Err(how(
                    &missing
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(" "),
                    &e,
                ));
            }
        }
        Arch::Aarch64 => {
            for pkg in missing.iter() {
                crate::firmware::download_arm64_deb(pkg, debs).map_err(|e| how(pkg, &e))?;
            }
        }
    }
    for pkg in missing {
        if cached_deb(debs, pkg).is_none() {
            return fail(format!(
                "`apt-get download {pkg}` left no {pkg}_*.deb in {}",
                debs.display()
            ));
        }
    }
    Ok(())
}

/// The kernel package: the cached one, else the one `linux-image-<arch>` depends on.
fn kernel_package(arch: Arch, debs: &Path) -> Result<String> {
    if let Some(name) = fs::read_dir(debs).ok().and_then(|entries| {
        let mut names: Vec<String> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| is_kernel_deb(n, arch.deb()))
            .collect();
        names.sort();
        names.pop()
    }) {
        return Ok(name.split('_').next().unwrap_or_default().to_string());
    }
    // The ABI is the same on both architectures: resolved with the host's (amd64) lists.
    let meta = "linux-image-amd64";
    let depends = capture(Command::new("apt-cache").args(["depends", meta])).map_err(|e| {
        Error::Failed(format!(
            "{e}\n(xen-dom0 resolves Debian's kernel with `apt-cache depends {meta}`)"
        ))
    })?;
    let Some(pkg) = depends_target(&depends) else {
        return fail(format!(
            "`apt-cache depends {meta}` names no kernel package (Debian 12 with up-to-date \
             package lists?):\n{depends}"
        ));
    };
    Ok(match arch {
        Arch::X86_64 => pkg,
        Arch::Aarch64 => format!("{}-arm64", pkg.trim_end_matches("-amd64")),
    })
}

/// Unpacks `deb` into `root` once (a stamp per package under `root/.unpacked/`); with
/// `members`, only those (tar wildcards).
fn unpack(deb: &Path, root: &Path, members: &[&str]) -> Result<()> {
    let name = deb
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stamps = root.join(".unpacked");
    let stamp = stamps.join(&name);
    if stamp.is_file() {
        return Ok(());
    }
    mkdir(&stamps)?;
    if members.is_empty() {
        crate::run_checked(Command::new("dpkg-deb").arg("-x").arg(deb).arg(root))?;
    } else {
        let mut script = format!(
            "dpkg-deb --fsys-tarfile '{}' | tar -x -C '{}' --wildcards",
            deb.display(),
            root.display()
        );
        for m in members {
            let _ = write!(script, " '{m}'");
        }
        crate::run_checked(Command::new("sh").args(["-c", &script]))?;
    }
    fs::write(&stamp, b"").context(|| format!("cannot write {}", stamp.display()))
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

/// Fetches (if missing) and unpacks everything a run of `arch` needs.
fn ensure_packages(arch: Arch) -> Result<Unpacked> {
    let base = dir(arch);
    let debs = base.join("debs");
    let root = base.join("root");
    mkdir(&debs)?;
    mkdir(&root)?;
    let kernel = kernel_package(arch, &debs)?;
    let xen_pkg = format!("xen-hypervisor-4.17-{}", arch.deb());
    let mut pkgs: Vec<String> = vec![xen_pkg.clone(), kernel.clone()];
    pkgs.extend(TOOLSTACK_PKGS.iter().map(|s| s.to_string()));
    if arch == Arch::Aarch64 {
        pkgs.extend(ARM64_LIB_PKGS.iter().map(|s| s.to_string()));
    }
    download(arch, &debs, &pkgs)?;
    for pkg in &pkgs {
        let deb = cached_deb(&debs, pkg).expect("downloaded above");
        let members: &[&str] = if *pkg == kernel { KERNEL_MEMBERS } else { &[] };
        unpack(&deb, &root, members)?;
    }
    let abi = kernel.trim_start_matches("linux-image-");
    let vmlinuz = root.join("boot").join(format!("vmlinuz-{abi}"));
    if !vmlinuz.is_file() {
        return fail(format!("{kernel} gave no {}", vmlinuz.display()));
    }
    let modules = root.join("lib/modules").join(abi);
    let xen = match arch {
        Arch::X86_64 => {
            let gz = root.join("boot/xen-4.17-amd64.gz");
            let elf = base.join("xen.elf");
            if !elf.is_file() {
                let mut gunzip = Command::new("gzip");
                gunzip.arg("-dc").arg(&gz);
                let out = gunzip
                    .output()
                    .context(|| format!("cannot run `{}`", describe(&gunzip)))?;
                if !out.status.success() || out.stdout.len() < 4 || &out.stdout[..4] != b"\x7fELF" {
                    return fail(format!(
                        "`{}` gave no ELF ({xen_pkg} unpacked into {})",
                        describe(&gunzip),
                        root.display()
                    ));
                }
                fs::write(&elf, &out.stdout)
                    .context(|| format!("cannot write {}", elf.display()))?;
            }
            elf
        }
        Arch::Aarch64 => root.join("boot/xen-4.17-arm64"),
    };
    if !xen.is_file() {
        return fail(format!("{xen_pkg} gave no {}", xen.display()));
    }
    Ok(Unpacked {
        root,
        xen,
        vmlinuz,
        modules,
    })
}

// ---------------------------------------------------------------------------------------
// Libraries and modules.

/// (guest path, host file) pairs and (guest path, link target) pairs.
#[derive(Debug, Default)]
struct Files {
    files: BTreeMap<String, PathBuf>,
    links: BTreeMap<String, String>,
}

/// The libraries of `binaries` with the host's `ldd`, the unpacked packages' libraries
/// first on the search path (x86_64).
fn libraries_ldd(u: &Unpacked, arch: Arch, binaries: &[PathBuf], out: &mut Files) -> Result<()> {
    let t = arch.triple();
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
            let host = match line.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next(),
                None if line.starts_with('/') => line.split_whitespace().next(),
                None => None,
            };
            let Some(host) = host.filter(|h| h.starts_with('/')) else {
                continue; // linux-vdso
            };
            let name = Path::new(host)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name.starts_with("ld-linux") {
                // The loader where PT_INTERP names it.
                let guest = host.trim_start_matches('/').to_string();
                out.files.insert(guest, PathBuf::from(host));
            } else {
                // By the name the binary asks for (the part before `=>`).
                let soname = line.split_whitespace().next().unwrap_or(&name).to_string();
                out.files
                    .insert(format!("lib/{t}/{soname}"), PathBuf::from(host));
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

/// `PT_INTERP` and `DT_NEEDED` of a 64-bit ELF.
fn elf_needs(bytes: &[u8]) -> Result<(Option<String>, Vec<String>), String> {
    let file = ElfFile64::<Endianness>::parse(bytes).map_err(|e| format!("not an ELF64: {e}"))?;
    let endian = file.elf_header().endian().map_err(|e| e.to_string())?;
    let mut interp = None;
    for ph in file.elf_program_headers() {
        if let Some(p) = ph.interpreter(endian, bytes).map_err(|e| e.to_string())? {
            interp = Some(String::from_utf8_lossy(p).into_owned());
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

/// The libraries of `binaries` found in the unpacked packages by their `DT_NEEDED` entries,
/// recursively (aarch64: the host has no arm64 libraries).
fn libraries_needed(u: &Unpacked, arch: Arch, binaries: &[PathBuf], out: &mut Files) -> Result<()> {
    let t = arch.triple();
    let lib_dirs = [u.root.join("lib").join(t), u.root.join("usr/lib").join(t)];
    let find = |name: &str| lib_dirs.iter().map(|d| d.join(name)).find(|p| p.exists());
    let mut queue: Vec<PathBuf> = binaries.to_vec();
    let mut seen = BTreeSet::new();
    while let Some(file) = queue.pop() {
        let (interp, needed) = elf_needs(&read(&file)?)
            .map_err(|e| Error::Failed(format!("{}: {e}", file.display())))?;
        if let Some(interp) = interp {
            let name = Path::new(&interp)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let Some(host) = find(&name) else {
                return fail(format!(
                    "{}: dynamic loader {interp} not in the unpacked packages (libc6:{})",
                    file.display(),
                    arch.deb()
                ));
            };
            out.files
                .insert(interp.trim_start_matches('/').to_string(), host);
        }
        for name in needed.into_iter().chain(
            // pthread_cancel loads it.
            seen.is_empty().then(|| "libgcc_s.so.1".to_string()),
        ) {
            if !seen.insert(name.clone()) {
                continue;
            }
            let Some(host) = find(&name) else {
                return fail(format!(
                    "{}: library {name} not in the unpacked {} packages under {}: add its \
                     package to xen_dom0.rs's ARM64_LIB_PKGS",
                    file.display(),
                    arch.deb(),
                    u.root.display()
                ));
            };
            queue.push(host.clone());
            out.files.insert(format!("lib/{t}/{name}"), host);
        }
    }
    Ok(())
}

/// The `depends=` of a module's `.modinfo`.
fn modinfo_depends(ko: &[u8]) -> Result<Vec<String>, String> {
    use object::{Object, ObjectSection};
    let file = ElfFile64::<Endianness>::parse(ko).map_err(|e| format!("not a module: {e}"))?;
    let section = file
        .section_by_name(".modinfo")
        .ok_or("no .modinfo section")?;
    let data = section.data().map_err(|e| e.to_string())?;
    Ok(data
        .split(|&b| b == 0)
        .filter_map(|entry| entry.strip_prefix(b"depends="))
        .flat_map(|list| {
            String::from_utf8_lossy(list)
                .split(',')
                .map(|d| d.trim().replace('-', "_"))
                .filter(|d| !d.is_empty())
                .collect::<Vec<_>>()
        })
        .collect())
}

fn module_name(file: &str) -> String {
    file.trim_end_matches(".ko").replace('-', "_")
}

/// Every `.ko` under `dir`.
fn ko_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.is_dir() {
            ko_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "ko") {
            out.push(p);
        }
    }
}

/// The modules `wanted` and those they depend on, in load order, as files (modules built
/// into the kernel, per `modules.builtin`, are left out).
fn modules_in_order(modules: &Path, wanted: &[&str]) -> Result<Vec<(String, PathBuf)>> {
    let builtin: BTreeSet<String> = fs::read_to_string(modules.join("modules.builtin"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.rsplit('/').next())
        .map(module_name)
        .collect();
    let mut files = Vec::new();
    ko_files(modules, &mut files);
    let mut found: BTreeMap<String, PathBuf> = BTreeMap::new();
    for f in files {
        let name = f
            .file_name()
            .map(|n| module_name(&n.to_string_lossy()))
            .unwrap_or_default();
        found.insert(name, f);
    }
    fn visit(
        name: &str,
        by: Option<&str>,
        found: &BTreeMap<String, PathBuf>,
        builtin: &BTreeSet<String>,
        order: &mut Vec<(String, PathBuf)>,
        depth: usize,
    ) -> Result<()> {
        if order.iter().any(|(n, _)| n == name) || builtin.contains(name) {
            return Ok(());
        }
        if depth > 16 {
            return fail(format!("module dependency cycle at {name}"));
        }
        let Some(file) = found.get(name) else {
            return fail(format!(
                "kernel module {name}{} is neither in the extracted part of the kernel package \
                 nor built in (xen_dom0.rs's KERNEL_MEMBERS)",
                by.map(|b| format!(" (needed by {b})")).unwrap_or_default()
            ));
        };
        let deps = modinfo_depends(&read(file)?)
            .map_err(|e| Error::Failed(format!("{}: {e}", file.display())))?;
        for d in deps {
            visit(&d, Some(name), found, builtin, order, depth + 1)?;
        }
        order.push((name.to_string(), file.clone()));
        Ok(())
    }
    let mut order = Vec::new();
    for w in wanted {
        visit(&module_name(w), None, &found, &builtin, &mut order, 0)?;
    }
    Ok(order)
}

// ---------------------------------------------------------------------------------------
// Initramfs.

/// Adds `files` and `links` to a cpio with every parent directory first; `extra_dirs` too.
fn write_cpio(files: &Files, extra_dirs: &[&str], texts: &[(&str, u32, &[u8])]) -> Result<Vec<u8>> {
    let mut dirs: BTreeSet<String> = extra_dirs.iter().map(|s| s.to_string()).collect();
    let names = files
        .files
        .keys()
        .chain(files.links.keys())
        .map(String::as_str)
        .chain(texts.iter().map(|t| t.0));
    for name in names {
        let mut p = Path::new(name).parent();
        while let Some(d) = p.filter(|d| !d.as_os_str().is_empty()) {
            dirs.insert(d.to_string_lossy().into_owned());
            p = d.parent();
        }
    }
    let mut cpio = Cpio::new();
    // Sorted: parents first.
    let mut all: Vec<&String> = dirs.iter().collect();
    all.sort_by_key(|d| (d.matches('/').count(), d.as_str()));
    for d in all {
        cpio.dir(d);
    }
    for (name, perm, data) in texts {
        cpio.file(name, *perm, data);
    }
    for (guest, host) in &files.files {
        cpio.file(guest, 0o755, &read(host)?);
    }
    for (guest, target) in &files.links {
        cpio.symlink(guest, target);
    }
    Ok(cpio.finish())
}

/// The dom0 base initramfs, rebuilt only when an input changed; returns its path.
fn base_initramfs(arch: Arch, u: &Unpacked) -> Result<PathBuf> {
    let xb = u.root.join("usr/lib/xen-4.17/bin");
    let mut f = Files::default();
    let mut binaries = Vec::new();
    for b in XEN_BINARIES {
        let host = xb.join(b);
        if !host.is_file() {
            return fail(format!("xen-utils-4.17 gave no {}", host.display()));
        }
        f.files
            .insert(format!("usr/lib/xen-4.17/bin/{b}"), host.clone());
        f.links.insert(
            format!("usr/sbin/{b}"),
            format!("/usr/lib/xen-4.17/bin/{b}"),
        );
        binaries.push(host);
    }
    let xenstore = u.root.join("usr/bin/xenstore");
    if !xenstore.is_file() {
        return fail(format!("xenstore-utils gave no {}", xenstore.display()));
    }
    f.files.insert("usr/bin/xenstore".into(), xenstore.clone());
    for n in XENSTORE_NAMES {
        f.links
            .insert(format!("usr/bin/xenstore-{n}"), "xenstore".into());
    }
    binaries.push(xenstore);
    let nc = nc_openbsd(u)?;
    f.files.insert("usr/bin/nc.openbsd".into(), nc.clone());
    binaries.push(nc);
    let busybox = u.root.join("bin/busybox");
    if !busybox.is_file() {
        return fail(format!("busybox-static gave no {}", busybox.display()));
    }
    f.files.insert("bin/busybox".into(), busybox);
    libraries(u, arch, &binaries, &mut f)?;
    for (i, (name, file)) in modules_in_order(&u.modules, DOM0_MODULES)?
        .into_iter()
        .enumerate()
    {
        f.files
            .insert(format!("lib/modules/{:02}-{name}.ko", i + 1), file);
    }
    f.links.insert("var/run".into(), "../run".into());
    let xl_conf = b"autoballoon=\"off\"\n";
    let texts: [(&str, u32, &[u8]); 3] = [
        ("init", 0o755, DOM0_INIT.as_bytes()),
        ("etc/xen/scripts/vif-rhea", 0o755, VIF_SCRIPT.as_bytes()),
        ("etc/xen/xl.conf", 0o644, xl_conf),
    ];
    let dirs = [
        "bin",
        "sbin",
        "usr",
        "usr/bin",
        "usr/sbin",
        "dev",
        "proc",
        "sys",
        "run",
        "tmp",
        "root",
        "boot",
        "var",
        "var/lib",
        "var/lib/xen",
        "var/lib/xenstored",
        "var/log",
        "var/log/xen",
        "var/lock",
        "etc",
        "etc/xen",
    ];
    // The cache key: every input's path, size and mtime, and the texts.
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
    for (name, perm, data) in &texts {
        let _ = writeln!(key, "{name} {perm:o} {}", fnv(data));
    }
    let out = dir(arch).join("dom0-base.cpio");
    let key_file = dir(arch).join("dom0-base.key");
    if out.is_file() && fs::read_to_string(&key_file).ok().as_deref() == Some(key.as_str()) {
        return Ok(out);
    }
    let mut bytes = write_cpio(&f, &dirs, &texts)?;
    // /dev/console before devtmpfs is mounted (the kernel opens it for init).
    let mut dev = Cpio::new();
    dev.char_device("dev/console", 0o600, 5, 1);
    bytes.extend(dev.finish());
    fs::write(&out, &bytes).context(|| format!("cannot write {}", out.display()))?;
    fs::write(&key_file, &key).context(|| format!("cannot write {}", key_file.display()))?;
    println!(
        "xen-dom0: dom0 initramfs {} ({} files, {:.1} MB)",
        out.display(),
        f.files.len() + texts.len(),
        bytes.len() as f64 / 1e6
    );
    Ok(out)
}

/// `nc.openbsd` of netcat-openbsd.
fn nc_openbsd(u: &Unpacked) -> Result<PathBuf> {
    let nc = u.root.join("bin/nc.openbsd");
    if nc.is_file() {
        Ok(nc)
    } else {
        fail(format!("netcat-openbsd gave no {}", nc.display()))
    }
}

/// The libraries of `binaries`, the way the architecture finds them.
fn libraries(u: &Unpacked, arch: Arch, binaries: &[PathBuf], out: &mut Files) -> Result<()> {
    match arch {
        Arch::X86_64 => libraries_ldd(u, arch, binaries, out),
        Arch::Aarch64 => libraries_needed(u, arch, binaries, out),
    }
}

/// FNV-1a, for cache keys.
fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The Linux domU's initramfs (`--kernel linux`): busybox, xen-netfront, its `/init`.
fn linux_domu_initramfs(arch: Arch, u: &Unpacked) -> Result<PathBuf> {
    let mut f = Files::default();
    f.files
        .insert("bin/busybox".into(), u.root.join("bin/busybox"));
    let nc = nc_openbsd(u)?;
    f.files.insert("bin/nc.openbsd".into(), nc.clone());
    libraries(u, arch, &[nc], &mut f)?;
    for (i, (name, file)) in modules_in_order(&u.modules, DOMU_MODULES)?
        .into_iter()
        .enumerate()
    {
        f.files
            .insert(format!("lib/modules/{:02}-{name}.ko", i + 1), file);
    }
    let texts: [(&str, u32, &[u8]); 1] = [("init", 0o755, LINUX_DOMU_INIT.as_bytes())];
    let mut bytes = write_cpio(&f, &["dev", "proc", "sys", "tmp", "sbin"], &texts)?;
    let mut dev = Cpio::new();
    dev.char_device("dev/console", 0o600, 5, 1);
    bytes.extend(dev.finish());
    let out = dir(arch).join("linux-domu.cpio");
    if fs::read(&out).ok().as_deref() != Some(&bytes[..]) {
        fs::write(&out, &bytes).context(|| format!("cannot write {}", out.display()))?;
    }
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
    let mut o = Dom0Outcome {
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
    };
    let field = |s: &str, key: &str| -> Option<String> {
        s.split_whitespace()
            .find_map(|w| w.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
            .map(str::to_string)
    };
    let mut block: Option<String> = None;
    for (at, raw) in lines {
        if let Some(name) = &block {
            if raw.contains(&format!("DOM0-END {name}")) {
                block = None;
                continue;
            }
            let text = match name.as_str() {
                "console" => &mut o.console,
                "vuart" => &mut o.vuart,
                "xl" => &mut o.xl_log,
                _ => &mut o.hotplug_log,
            };
            text.push_str(raw);
            text.push('\n');
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
        let Some(i) = raw.find("DOM0-") else {
            continue;
        };
        let line = &raw[i..];
        let (tag, rest) = line.split_once(' ').unwrap_or((line, ""));
        match tag {
            "DOM0-UP" => o.dom0_up = Some(*at),
            "DOM0-CREATE" => {
                o.created = Some(field(rest, "ok").as_deref() == Some("1"));
                if o.created == Some(false) {
                    o.domu_end = DomUEnd::NotCreated;
                }
            }
            "DOM0-READY" => {
                o.ready = Some((
                    field(rest, "ok").as_deref() == Some("1"),
                    field(rest, "where").unwrap_or_default(),
                ));
                o.ready_at = Some(*at);
            }
            "DOM0-VIF" => o.vif = Some(rest.trim().to_string()),
            "DOM0-CHECK" => o.checks.push(CheckResult {
                name: field(rest, "name").unwrap_or_default(),
                ok: field(rest, "ok").as_deref() == Some("1"),
                detail: rest
                    .split_once("detail=")
                    .map(|(_, d)| d.trim().to_string())
                    .unwrap_or_default(),
            }),
            "DOM0-STATE" => o.domu_end = domu_end(rest),
            "DOM0-NOTE" => o.notes.push(rest.trim().to_string()),
            // `DOM0-BEGIN <name> [<file>]`.
            "DOM0-BEGIN" => block = rest.split_whitespace().next().map(str::to_string),
            "DOM0-FINISHED" => o.finished = true,
            _ => {}
        }
    }
    o
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

/// QEMU's command line.
fn qemu_command(arch: Arch, u: &Unpacked, initrd: &Path, run_dir: &Path) -> Result<Command> {
    let mut cmd = Command::new(arch.qemu());
    let mem = HOST_MEM_MIB.to_string();
    let common = [
        "-m",
        mem.as_str(),
        "-smp",
        "2",
        "-nodefaults",
        "-display",
        "none",
        "-serial",
        "stdio",
        "-monitor",
        "none",
        "-no-reboot",
    ];
    match arch {
        Arch::X86_64 => {
            for p in [&u.xen, &u.vmlinuz, initrd] {
                if p.to_string_lossy().contains([',', ' ']) {
                    return fail(format!(
                        "{}: QEMU's multiboot -initrd cannot take a path with a comma or space",
                        p.display()
                    ));
                }
            }
            cmd.args(["-accel", "tcg", "-cpu", "max"])
                .args(common)
                .arg("-kernel")
                .arg(&u.xen)
                .arg("-append")
                .arg(xen_args(arch))
                .arg("-initrd")
                .arg(format!(
                    "{} {},{}",
                    u.vmlinuz.display(),
                    dom0_args(arch),
                    initrd.display()
                ));
        }
        Arch::Aarch64 => {
            let kernel_bytes = fs::metadata(&u.vmlinuz)
                .context(|| format!("cannot read {}", u.vmlinuz.display()))?
                .len();
            let initrd_bytes = fs::metadata(initrd)
                .context(|| format!("cannot read {}", initrd.display()))?
                .len();
            if ARM_KERNEL_ADDR + kernel_bytes > ARM_INITRD_ADDR {
                return fail(format!(
                    "{} ({kernel_bytes} bytes) does not fit below the initramfs at \
                     {ARM_INITRD_ADDR:#x}",
                    u.vmlinuz.display()
                ));
            }
            let dtb = arm_devicetree(run_dir, kernel_bytes, initrd_bytes)?;
            cmd.args(["-M", ARM_MACHINE, "-cpu", ARM_CPU])
                .args(common)
                .arg("-dtb")
                .arg(&dtb)
                .arg("-kernel")
                .arg(&u.xen)
                .arg("-device")
                .arg(format!(
                    "loader,file={},addr={ARM_KERNEL_ADDR:#x}",
                    u.vmlinuz.display()
                ))
                .arg("-device")
                .arg(format!(
                    "loader,file={},addr={ARM_INITRD_ADDR:#x}",
                    initrd.display()
                ));
        }
    }
    Ok(cmd)
}

/// QEMU's devicetree of the machine with [`arm_chosen`] merged in (with `dtc`).
fn arm_devicetree(run_dir: &Path, kernel_bytes: u64, initrd_bytes: u64) -> Result<PathBuf> {
    let base = run_dir.join("virt.dtb");
    let mut dump = Command::new(Arch::Aarch64.qemu());
    dump.args([
        "-M",
        &format!("{ARM_MACHINE},dumpdtb={}", base.display()),
        "-cpu",
        ARM_CPU,
        "-m",
        &HOST_MEM_MIB.to_string(),
        "-smp",
        "2",
        "-nodefaults",
        "-display",
        "none",
    ]);
    capture(&mut dump)?;
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
    let u = ensure_packages(arch)?;
    let base = base_initramfs(arch, &u)?;
    let run_dir = dir(arch).join("run");
    mkdir(&run_dir)?;

    // The domU.
    let (kernel, ramdisk, ready, cmdline) = match &spec.kernel {
        DomUKernel::Image { path, ramdisk } => (
            path.clone(),
            ramdisk.clone(),
            spec.ready.clone(),
            spec.cmdline.clone(),
        ),
        DomUKernel::DebianLinux => {
            let mut cmdline = String::from("console=hvc0 loglevel=4 rhea.linger=8");
            if !spec.cmdline.contains("rhea.net.ip=") {
                let _ = write!(cmdline, " rhea.net.ip={DEFAULT_DOMU_IP}/24");
            }
            if !spec.cmdline.is_empty() {
                cmdline.push(' ');
                cmdline.push_str(&spec.cmdline);
            }
            (
                u.vmlinuz.clone(),
                Some(linux_domu_initramfs(arch, &u)?),
                Some(
                    spec.ready
                        .clone()
                        .unwrap_or_else(|| LINUX_READY.to_string()),
                ),
                cmdline,
            )
        }
    };
    let mut run_spec = spec.clone();
    run_spec.cmdline = cmdline.clone();
    let mut files = Files::default();
    files
        .files
        .insert("boot/domu-kernel".into(), kernel.clone());
    if let Some(r) = &ramdisk {
        files.files.insert("boot/domu-ramdisk".into(), r.clone());
    }
    let cfg = xl_config(&run_spec, ramdisk.is_some(), &cmdline);
    let conf = run_conf(&run_spec, ready.as_deref());
    let texts: [(&str, u32, &[u8]); 2] = [
        ("etc/xen/domu.cfg", 0o644, cfg.as_bytes()),
        ("etc/rhea-dom0.conf", 0o644, conf.as_bytes()),
    ];
    let per_run = write_cpio(&files, &["boot", "etc", "etc/xen"], &texts)?;
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
        kernel.display(),
        cmdline,
        if spec.with_vif { ", vif" } else { "" }
    );
    if spec.echo {
        print!("xen-dom0: /etc/xen/domu.cfg:\n{cfg}");
    }

    let cmd = qemu_command(arch, &u, &initrd, &run_dir)?;
    let q = run_qemu(cmd, spec.timeout, spec.echo)?;
    let mut o = parse_serial(&q.lines);
    o.qemu_end = q.end;
    o.stderr = q.stderr;
    o.elapsed = q.elapsed;
    Ok(o)
}

// ---------------------------------------------------------------------------------------
// The manual command.

const HELP: &str = "usage: cargo xtask xen-dom0 --arch x86_64|aarch64 --kernel PATH|linux [options]

Boots Xen 4.17 with a Debian Linux dom0 in QEMU (TCG); dom0 creates the domU with `xl` and
runs network checks against it. `--kernel linux`: Debian's kernel as the domU, with busybox
servers (validates the harness).

options:
  --arch A            x86_64 or aarch64 (default x86_64)
  --kernel PATH       the domU's kernel (Rhea's image), or `linux`
  --ramdisk PATH      the domU's ramdisk
  --append STR        the domU's command line (e.g. rhea.net.ip=10.0.0.2/24)
  --net               give the domU a vif and run every check (ping, udp, tcp, http)
  --checks LIST       the checks to run, comma-separated (implies --net)
  --ready TEXT        the domU's ready line (default: none; `linux`: linux-domu: ready)
  --type pvh|pv       x86_64 domain type (default pvh; `linux`: pv)
  --mem MiB           the domU's memory (default 128; `linux`: 256)
  --vcpus N           the domU's vCPUs (default 1)
  --timeout SECS      the whole run (default and at most 360)
  --ready-wait SECS   how long dom0 waits for the ready line (default 90)
  --end-wait SECS     how long dom0 waits for the domU to end after the checks (default 30)
  --verbose           echo the serial console live
";

/// `cargo xtask xen-dom0 ...`.
pub(crate) fn command(args: &[String]) -> Result<()> {
    let mut arch = Arch::X86_64;
    let mut kernel: Option<String> = None;
    let mut ramdisk: Option<PathBuf> = None;
    let mut append = String::new();
    let mut net = false;
    let mut checks: Option<Vec<Check>> = None;
    let mut ready: Option<String> = None;
    let mut dtype: Option<DomainType> = None;
    let mut mem: Option<u32> = None;
    let mut vcpus = 1;
    let mut timeout = MAX_TIMEOUT;
    let mut ready_wait: Option<Duration> = None;
    let mut end_wait: Option<Duration> = None;
    let mut verbose = false;
    let mut it = args.iter();
    let secs = |v: &str, what: &str, max: u64| -> Result<Duration> {
        match v.parse::<u64>() {
            Ok(n) if (1..=max).contains(&n) => Ok(Duration::from_secs(n)),
            _ => usage(format!("{what} wants seconds from 1 to {max}, got `{v}`")),
        }
    };
    while let Some(arg) = it.next() {
        let (key, inline) = match arg.split_once('=') {
            Some((k, v)) if k.starts_with("--") => (k, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = || -> Result<String> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => it
                    .next()
                    .cloned()
                    .ok_or_else(|| Error::Usage(format!("{key} needs a value"))),
            }
        };
        match key {
            "-h" | "--help" => {
                print!("{HELP}");
                return Ok(());
            }
            "--arch" => {
                let v = value()?;
                arch = Arch::parse(&v).ok_or_else(|| {
                    Error::Usage(format!("unknown --arch `{v}`: x86_64 or aarch64"))
                })?;
            }
            "--kernel" => kernel = Some(value()?),
            "--ramdisk" => ramdisk = Some(PathBuf::from(value()?)),
            "--append" => append = value()?,
            "--net" => net = true,
            "--checks" => {
                let v = value()?;
                let mut list = Vec::new();
                for name in v.split(',').filter(|s| !s.is_empty()) {
                    list.push(Check::parse(name).ok_or_else(|| {
                        Error::Usage(format!("unknown check `{name}`: ping, udp, tcp, http"))
                    })?);
                }
                checks = Some(list);
                net = true;
            }
            "--ready" => ready = Some(value()?),
            "--type" => {
                dtype = match value()?.as_str() {
                    "pvh" => Some(DomainType::Pvh),
                    "pv" => Some(DomainType::Pv),
                    other => return usage(format!("unknown --type `{other}`: pvh or pv")),
                }
            }
            "--mem" => {
                let v = value()?;
                mem = Some(match v.parse::<u32>() {
                    Ok(n) if (16..=1024).contains(&n) => n,
                    _ => return usage(format!("--mem wants MiB from 16 to 1024, got `{v}`")),
                });
            }
            "--vcpus" => {
                let v = value()?;
                vcpus = match v.parse::<u32>() {
                    Ok(n) if (1..=2).contains(&n) => n,
                    _ => return usage(format!("--vcpus wants 1 or 2, got `{v}`")),
                };
            }
            "--timeout" => timeout = secs(&value()?, "--timeout", MAX_TIMEOUT.as_secs())?,
            "--ready-wait" => ready_wait = Some(secs(&value()?, "--ready-wait", 300)?),
            "--end-wait" => end_wait = Some(secs(&value()?, "--end-wait", 300)?),
            "--verbose" => verbose = true,
            other => {
                return usage(format!(
                    "unknown argument `{other}` for xen-dom0 (see `cargo xtask xen-dom0 --help`)"
                ));
            }
        }
    }
    let Some(kernel) = kernel else {
        return usage(format!(
            "xen-dom0 needs --kernel PATH or --kernel linux\n\n{HELP}"
        ));
    };
    let is_linux = kernel == "linux";
    let kernel = if is_linux {
        DomUKernel::DebianLinux
    } else {
        let path = PathBuf::from(&kernel);
        if !path.is_file() {
            return fail(format!("--kernel {kernel}: no such file"));
        }
        if let Some(r) = &ramdisk
            && !r.is_file()
        {
            return fail(format!("--ramdisk {}: no such file", r.display()));
        }
        DomUKernel::Image {
            path,
            ramdisk: ramdisk.clone(),
        }
    };
    let mut spec = Dom0Spec::new(arch, kernel);
    spec.cmdline = append;
    spec.vcpus = vcpus;
    spec.mem_mib = mem.unwrap_or(if is_linux { 256 } else { 128 });
    // Debian's Linux dies early as a PVH domU here (QEMU-TCG's nested SVM reports CR2 = 0
    // on its page faults): PV by default.
    spec.domain_type = dtype.unwrap_or(if is_linux {
        DomainType::Pv
    } else {
        DomainType::Pvh
    });
    spec.with_vif = net;
    spec.checks = if net {
        checks.unwrap_or_else(|| Check::ALL.to_vec())
    } else {
        Vec::new()
    };
    spec.ready = ready;
    if let Some(w) = ready_wait {
        spec.ready_wait = w;
    }
    if let Some(w) = end_wait {
        spec.end_wait = w;
    }
    spec.timeout = timeout;
    spec.echo = verbose;
    let o = run(&spec)?;
    o.print();
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
    fn kernel_debs() {
        assert!(is_kernel_deb(
            "linux-image-6.1.0-56-amd64_6.1.192-2_amd64.deb",
            "amd64"
        ));
        assert!(!is_kernel_deb(
            "linux-image-6.1.0-56-cloud-amd64_6.1.192-2_amd64.deb",
            "amd64"
        ));
        assert!(!is_kernel_deb(
            "linux-image-amd64_6.1.192-2_amd64.deb",
            "amd64"
        ));
        assert!(is_kernel_deb(
            "linux-image-6.1.0-56-arm64_6.1.192-2_arm64.deb",
            "arm64"
        ));
        assert_eq!(
            depends_target("linux-image-amd64\n  Depends: linux-image-6.1.0-56-amd64\n").as_deref(),
            Some("linux-image-6.1.0-56-amd64")
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
