//! Everything about QEMU: finding it and its version, choosing the accelerator, every QEMU
//! command line, running it (captured with a timeout, or attached to the terminal) and
//! mapping how it ended to a verdict.
//!
//! A command line is always made from a [`Machine`]: every setting of one QEMU virtual
//! machine, which [`Machine::args`] alone turns into arguments. [`machine`] makes the machine
//! of a board's run ([`Spec`]; the Xen boards' come from `xen/mod.rs`), [`machine_on_tap`] the
//! same with the app's NIC on a host tap (`test`'s appliance runs, `bench net`),
//! [`linux_machine`] that of the Linux baseline guest; `xen/dom0.rs` builds its own the same
//! way. Code elsewhere sets a machine's fields, never argument strings: the shapes that need
//! QEMU's syntax are made here (the generic loader [`Machine::load`], multiboot modules
//! [`Machine::multiboot_modules`], `-M ...,dumpdtb=` [`Machine::dumpdtb`], the NICs [`nic`],
//! the deterministic clock [`DETERMINISTIC_ICOUNT`]).
//!
//! A captured run may feed the guest's serial input: QEMU's stdin is the guest's serial port
//! (`-serial stdio`), and [`StdinFeed`] writes a text to it at once or once a console line
//! containing a marker has appeared. Without a feed, stdin is /dev/null.
//!
//! Exit convention: the kernel writes `v` to the `isa-debug-exit` port (0xf4) and QEMU exits
//! with `(v << 1) | 1`. The kernel writes 0x10 for success (status 33) and 0x11 for failure
//! (status 35). The Arm boards give the same two statuses through semihosting
//! `SYS_EXIT_EXTENDED` (`-semihosting-config enable=on,target=native`), so one table maps
//! both. Anything else (status 0 after a reset with `-no-reboot` or a PSCI power-off, QEMU
//! errors, signals, timeouts) is a failure that is described, not a kernel verdict.

use std::fs::OpenOptions;
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::boards::Board;
use crate::qmp::ShutdownCause;
use crate::{Context, Result, describe, fail, usage};

/// The oldest QEMU major version supported.
pub(crate) const MIN_MAJOR: u32 = 9;

/// Where Debian's `qemu-system-data` puts qboot, the minimal firmware used for q35.
const QBOOT_PATHS: &[&str] = &[
    "/usr/share/qemu/qboot.rom",
    "/usr/local/share/qemu/qboot.rom",
];

/// The QEMU status for a kernel-reported success (debug-exit value 0x10).
pub(crate) const STATUS_SUCCESS: i32 = (0x10 << 1) | 1;
/// The QEMU status for a kernel-reported failure (debug-exit value 0x11).
pub(crate) const STATUS_FAILURE: i32 = (0x11 << 1) | 1;

/// A QEMU version number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Version {
    pub(crate) major: u32,
    pub(crate) minor: u32,
    pub(crate) patch: u32,
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Parses `QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2)` (the first line of
/// `qemu-system-* --version`).
pub(crate) fn parse_version(text: &str) -> Option<Version> {
    let rest = text.split("version").nth(1)?;
    let word = rest.split_whitespace().next()?;
    let mut parts = word
        .split(|c: char| !c.is_ascii_digit())
        .take(3)
        .map(|p| p.parse::<u32>().ok());
    let major = parts.next()??;
    let minor = parts.next().flatten().unwrap_or(0);
    let patch = parts.next().flatten().unwrap_or(0);
    Some(Version {
        major,
        minor,
        patch,
    })
}

/// A usable QEMU binary.
#[derive(Debug, Clone)]
pub(crate) struct Qemu {
    pub(crate) binary: String,
    pub(crate) version: Version,
    /// The first line of `--version`.
    pub(crate) banner: String,
    /// qboot, if installed (used for q35; without it QEMU's default firmware is used).
    pub(crate) qboot: Option<PathBuf>,
}

impl Qemu {
    /// No QEMU: for boards whose images run as host processes.
    pub(crate) fn none() -> Qemu {
        Qemu {
            binary: String::new(),
            version: Version {
                major: 0,
                minor: 0,
                patch: 0,
            },
            banner: String::new(),
            qboot: None,
        }
    }
}

/// What looking for a QEMU binary found.
#[derive(Debug)]
pub(crate) enum Probe {
    Missing,
    TooOld(Qemu),
    Unparsable(String),
    Found(Qemu),
}

/// Runs `binary --version` and checks the version.
pub(crate) fn probe(binary: &str) -> Probe {
    let out = match Command::new(binary)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) => out,
        Err(_) => return Probe::Missing,
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let banner = text.lines().next().unwrap_or("").trim().to_string();
    let Some(version) = parse_version(&banner) else {
        return Probe::Unparsable(banner);
    };
    let qemu = Qemu {
        binary: binary.to_string(),
        version,
        banner,
        qboot: find_qboot(),
    };
    if version.major >= MIN_MAJOR {
        Probe::Found(qemu)
    } else {
        Probe::TooOld(qemu)
    }
}

/// qboot, if installed.
pub(crate) fn find_qboot() -> Option<PathBuf> {
    QBOOT_PATHS.iter().map(PathBuf::from).find(|p| p.is_file())
}

/// The `--accel` option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AccelChoice {
    Auto,
    Kvm,
    Tcg,
    /// `test` only: every case boots under a real Linux KVM one level down, inside a Linux
    /// guest (L1) that QEMU runs under TCG with emulated SVM (`nested/`); its cases are named
    /// `.../nested-kvm ...`.
    NestedKvm,
}

/// The accelerator label of the nested-KVM cases (`qemu-x86_64/q35/nested-kvm hello`).
pub(crate) const NESTED_KVM: &str = "nested-kvm";

/// The accelerator a QEMU run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// What opening `/dev/kvm` read-write gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KvmDevice {
    Missing,
    NoAccess(String),
    Opened,
}

/// Whether a `/proc/cpuinfo` text lists the `vmx` (Intel) or `svm` (AMD) flag.
pub(crate) fn cpu_has_virt(cpuinfo: &str) -> bool {
    cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .filter_map(|l| l.split_once(':'))
        .any(|(_, flags)| flags.split_whitespace().any(|f| f == "vmx" || f == "svm"))
}

/// Whether hardware KVM is usable; `Err` says why not.
pub(crate) fn hardware_kvm(device: &KvmDevice, cpuinfo: &str) -> Result<(), String> {
    match device {
        KvmDevice::Missing => Err("/dev/kvm not present".to_string()),
        KvmDevice::NoAccess(e) => Err(format!("/dev/kvm cannot be opened read-write: {e}")),
        KvmDevice::Opened if !cpu_has_virt(cpuinfo) => {
            Err("/dev/kvm present but CPU has no vmx/svm: software KVM, unusable".to_string())
        }
        KvmDevice::Opened => Ok(()),
    }
}

/// Checks this machine for hardware KVM.
pub(crate) fn probe_hardware_kvm() -> Result<(), String> {
    let device = match OpenOptions::new().read(true).write(true).open("/dev/kvm") {
        Ok(_) => KvmDevice::Opened,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => KvmDevice::Missing,
        Err(e) => KvmDevice::NoAccess(e.to_string()),
    };
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    hardware_kvm(&device, &cpuinfo)
}

/// The accelerator picked, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AccelDecision {
    pub(crate) accel: Accel,
    pub(crate) reason: String,
    /// Set when KVM was forced although the check failed.
    pub(crate) warning: Option<String>,
}

impl AccelDecision {
    /// Prints the one-line explanation (and the warning, if any).
    pub(crate) fn print(&self) {
        if let Some(w) = &self.warning {
            eprintln!("warning: {w}");
        }
        println!("accel: {} ({})", self.accel.name(), self.reason);
    }
}

/// Picks the accelerator from `--accel` and the hardware KVM check.
pub(crate) fn decide_accel(choice: AccelChoice, hw_kvm: &Result<(), String>) -> AccelDecision {
    match (choice, hw_kvm) {
        // The command line refuses it outside `test` (cli.rs); should it get here, TCG.
        (AccelChoice::NestedKvm, _) => AccelDecision {
            accel: Accel::Tcg,
            reason: "--accel nested-kvm is for `test` only".to_string(),
            warning: Some("--accel nested-kvm ignored: only `test` boots nested".to_string()),
        },
        (AccelChoice::Tcg, _) => AccelDecision {
            accel: Accel::Tcg,
            reason: "--accel tcg".to_string(),
            warning: None,
        },
        (AccelChoice::Kvm, Ok(())) => AccelDecision {
            accel: Accel::Kvm,
            reason: "--accel kvm; hardware KVM usable".to_string(),
            warning: None,
        },
        (AccelChoice::Kvm, Err(why)) => AccelDecision {
            accel: Accel::Kvm,
            reason: "--accel kvm".to_string(),
            warning: Some(format!("KVM forced by --accel kvm, but {why}")),
        },
        (AccelChoice::Auto, Ok(())) => AccelDecision {
            accel: Accel::Kvm,
            reason: "/dev/kvm opens read-write and CPU has vmx/svm".to_string(),
            warning: None,
        },
        (AccelChoice::Auto, Err(why)) => AccelDecision {
            accel: Accel::Tcg,
            reason: why.clone(),
            warning: None,
        },
    }
}

/// The accelerators `test` and `bench` cover: TCG always, KVM too when usable (or only the
/// one `--accel` names). None for `nested-kvm`: its boots are not direct (`nested/`).
pub(crate) fn accels_to_test(choice: AccelChoice, hw_kvm: &Result<(), String>) -> Vec<Accel> {
    match (choice, hw_kvm) {
        (AccelChoice::NestedKvm, _) => Vec::new(),
        (AccelChoice::Tcg, _) => vec![Accel::Tcg],
        (AccelChoice::Kvm, _) => vec![Accel::Kvm],
        (AccelChoice::Auto, Ok(())) => vec![Accel::Tcg, Accel::Kvm],
        (AccelChoice::Auto, Err(_)) => vec![Accel::Tcg],
    }
}

/// How the guest console is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Serial {
    /// `-serial stdio`, stdout piped to xtask, stdin from /dev/null or fed by xtask
    /// ([`StdinFeed`]) (test, bench).
    Captured,
    /// `-serial mon:stdio` on the terminal (run).
    Interactive,
}

/// One QEMU run of a board: what `test`, `run` and the benches ask for. [`machine`] turns it
/// into a [`Machine`].
#[derive(Debug, Clone)]
pub(crate) struct Spec<'a> {
    pub(crate) board: &'a Board,
    pub(crate) machine: &'a str,
    pub(crate) accel: Accel,
    pub(crate) smp: u32,
    pub(crate) mem: &'a str,
    pub(crate) kernel: &'a Path,
    pub(crate) serial: Serial,
    /// The kernel command line (`-append`, read by Rhea's PVH boot); empty: no `-append`.
    /// Always empty for a Linux guest, whose command line is [`LinuxBoot::append`].
    pub(crate) append: &'a str,
}

/// A QEMU virtual machine with every setting of its command line. [`Machine::args`] is the
/// one place that turns settings into QEMU arguments, always in this order: `-M`, `-bios`,
/// `-dtb`, `-accel`, `-cpu`, `-nodefaults -no-user-config -no-reboot -display none`, `-m`,
/// `-smp`, `-serial`, `-monitor`, `-kernel`, `-semihosting-config`, the `-device`s, the NICs
/// (`-netdev` then its `-device`), the 9p shares (`-fsdev` then its `-device`), `-initrd`,
/// `-append`, then [`Machine::extra`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Machine {
    /// The QEMU binary (`qemu-system-x86_64`, ...).
    pub(crate) binary: String,
    /// `-M`: the machine type with its properties.
    pub(crate) machine: String,
    /// `-M ...,dumpdtb=<path>`: QEMU writes the machine's devicetree there and exits.
    pub(crate) dumpdtb: Option<PathBuf>,
    /// `-bios`: the firmware (q35: qboot when installed).
    pub(crate) firmware: Option<PathBuf>,
    /// `-dtb`: the devicetree the guest is given.
    pub(crate) dtb: Option<PathBuf>,
    /// `-accel` (`kvm`, `tcg`, `tcg,thread=multi`, ...).
    pub(crate) accel: String,
    /// `-cpu`.
    pub(crate) cpu: Option<String>,
    /// `-m` (`None` for fixed machines: raspi4b).
    pub(crate) mem: Option<String>,
    /// `-smp`.
    pub(crate) smp: Option<u32>,
    /// `-serial` (`None`: no serial port at all, `-nodefaults` being given).
    pub(crate) serial: Option<String>,
    /// `-monitor`.
    pub(crate) monitor: Option<String>,
    /// `-kernel`.
    pub(crate) kernel: Option<PathBuf>,
    /// `-semihosting-config enable=on,target=native`: how the Arm boards report their exit
    /// status.
    pub(crate) semihosting: bool,
    /// `-device`s, in order (`isa-debug-exit`, `loader`, ...).
    pub(crate) devices: Vec<String>,
    /// The NICs, each a `-netdev` and the `-device` on it.
    pub(crate) nics: Vec<Nic>,
    /// Host directories shared with the guest over virtio-9p, each a `-fsdev` and the
    /// `-device` on it.
    pub(crate) shares: Vec<Share>,
    /// `-initrd` (on x86 Xen: the multiboot modules, `path args,path ...`).
    pub(crate) initrd: Option<String>,
    /// `-append`.
    pub(crate) append: Option<String>,
    /// Anything else, last (e.g. `-icount`).
    pub(crate) extra: Vec<String>,
}

impl Machine {
    /// A machine with no memory, CPU, console, kernel or device settings yet.
    pub(crate) fn new(
        binary: impl Into<String>,
        machine: impl Into<String>,
        accel: impl Into<String>,
    ) -> Machine {
        Machine {
            binary: binary.into(),
            machine: machine.into(),
            dumpdtb: None,
            firmware: None,
            dtb: None,
            accel: accel.into(),
            cpu: None,
            mem: None,
            smp: None,
            serial: None,
            monitor: None,
            kernel: None,
            semihosting: false,
            devices: Vec::new(),
            nics: Vec::new(),
            shares: Vec::new(),
            initrd: None,
            append: None,
            extra: Vec::new(),
        }
    }

    /// The QEMU arguments.
    pub(crate) fn args(&self) -> Vec<String> {
        let path = |p: &PathBuf| p.to_string_lossy().into_owned();
        let machine = match &self.dumpdtb {
            Some(dtb) => format!("{},dumpdtb={}", self.machine, path(dtb)),
            None => self.machine.clone(),
        };
        let mut a: Vec<String> = vec!["-M".into(), machine];
        let opt = |a: &mut Vec<String>, flag: &str, value: Option<String>| {
            if let Some(v) = value {
                a.extend([flag.to_string(), v]);
            }
        };
        opt(&mut a, "-bios", self.firmware.as_ref().map(path));
        opt(&mut a, "-dtb", self.dtb.as_ref().map(path));
        opt(&mut a, "-accel", Some(self.accel.clone()));
        opt(&mut a, "-cpu", self.cpu.clone());
        a.extend(
            [
                "-nodefaults",
                "-no-user-config",
                "-no-reboot",
                "-display",
                "none",
            ]
            .map(String::from),
        );
        opt(&mut a, "-m", self.mem.clone());
        opt(&mut a, "-smp", self.smp.map(|n| n.to_string()));
        opt(&mut a, "-serial", self.serial.clone());
        opt(&mut a, "-monitor", self.monitor.clone());
        opt(&mut a, "-kernel", self.kernel.as_ref().map(path));
        if self.semihosting {
            opt(&mut a, "-semihosting-config", Some(SEMIHOSTING.into()));
        }
        for device in &self.devices {
            opt(&mut a, "-device", Some(device.clone()));
        }
        for nic in &self.nics {
            a.extend(nic.args());
        }
        for (i, share) in self.shares.iter().enumerate() {
            a.extend(share.args(i));
        }
        opt(&mut a, "-initrd", self.initrd.clone());
        opt(&mut a, "-append", self.append.clone());
        a.extend(self.extra.iter().cloned());
        a
    }

    /// The QEMU command.
    pub(crate) fn command(&self) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.args(self.args());
        cmd
    }

    /// Adds QEMU's generic loader: `file` placed in guest memory at `addr`
    /// (`-device loader,file=<file>,addr=<addr>`).
    pub(crate) fn load(&mut self, file: &Path, addr: u64) {
        self.devices
            .push(format!("loader,file={},addr={addr:#x}", file.display()));
    }

    /// Sets `-initrd` to x86 multiboot modules, each a file and its command line
    /// (`<path> <args>,<path> <args>...`): a comma in a command line is doubled, as QEMU
    /// reads it; a path with a comma or space cannot be given, and is refused.
    pub(crate) fn multiboot_modules(&mut self, modules: &[(&Path, &str)]) -> Result<()> {
        let mut list = Vec::new();
        for (path, args) in modules {
            if path.to_string_lossy().contains([',', ' ']) {
                return fail(format!(
                    "{}: QEMU's multiboot -initrd cannot take a path with a comma or space",
                    path.display()
                ));
            }
            let module = format!("{} {}", path.display(), args.replace(',', ",,"));
            list.push(module.trim_end().to_string());
        }
        self.initrd = Some(list.join(","));
        Ok(())
    }
}

/// `-icount shift=0,sleep=off`: QEMU's virtual clock advances exactly 1 ns per executed
/// instruction and jumps over idle periods, so guest time is an instruction count that does
/// not depend on the host (`bench sched` on the Arm boards). For [`run_captured_with`].
pub(crate) const DETERMINISTIC_ICOUNT: &[&str] = &["-icount", "shift=0,sleep=off"];

/// The `-semihosting-config` value of the Arm boards.
const SEMIHOSTING: &str = "enable=on,target=native";

/// A network interface: a backend (`-netdev`) and the guest's device on it (`-device`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Nic {
    pub(crate) netdev: String,
    pub(crate) device: String,
}

impl Nic {
    /// `-netdev <netdev> -device <device>`.
    pub(crate) fn args(&self) -> [String; 4] {
        [
            "-netdev".into(),
            self.netdev.clone(),
            "-device".into(),
            self.device.clone(),
        ]
    }
}

/// A host directory the guest mounts over virtio-9p (`mount -t 9p -o trans=virtio <tag>`):
/// QEMU's `local` backend with `security_model=none` (files keep the host's owners; the
/// guest's root writes as the user QEMU runs as).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Share {
    /// The mount tag the guest names it by.
    pub(crate) tag: String,
    /// The host directory.
    pub(crate) path: PathBuf,
    pub(crate) readonly: bool,
    /// The virtio-9p device: `virtio-9p-pci` (q35, Arm's virt), `virtio-9p-device` (MMIO).
    pub(crate) device: &'static str,
}

impl Share {
    /// `-fsdev local,id=fs<index>,... -device <device>,fsdev=fs<index>,mount_tag=<tag>`.
    pub(crate) fn args(&self, index: usize) -> [String; 4] {
        let ro = if self.readonly { ",readonly=on" } else { "" };
        [
            "-fsdev".into(),
            format!(
                "local,id=fs{index},path={},security_model=none{ro}",
                self.path.to_string_lossy()
            ),
            "-device".into(),
            format!("{},fsdev=fs{index},mount_tag={}", self.device, self.tag),
        ]
    }
}

/// Where a NIC's frames go on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend<'a> {
    /// QEMU's user networking.
    User,
    /// User networking with the appliance's ports forwarded from the host's loopback
    /// ([`crate::hostfwd::HOST`]) at these ports.
    UserForwarded(crate::hostfwd::HostPorts),
    /// User networking with the appliance's ports (8080, and 7 over TCP and UDP) forwarded
    /// from the host's `bind` address (empty: every address) at ports `http` and `echo`.
    Forwarded { bind: &'a str, http: u16, echo: u16 },
    /// The host's tap interface of this name (created by xtask, no scripts).
    Tap(&'a str),
}

/// The NIC of an app's `net` key: a virtio-net device (id `n0`), over PCI on q35, over
/// virtio-mmio on microvm (QEMU then names it on the kernel command line,
/// `virtio_mmio.device=`) and on Arm's virt (GICv2 or v3; the transport is one of the
/// devicetree's 32 `virtio,mmio` nodes), on `backend`. [`Backend::UserForwarded`]: the host's
/// 127.0.0.1:8080 (by default) reaches the guest's 8080 and 127.0.0.1:7007 (TCP and UDP) its
/// port 7 — the appliance's status page and echo. Boards without a virtio-net driver yet (rpi4) get no NIC
/// (the app runs without a network).
pub(crate) fn nic(
    board: &str,
    machine: &str,
    net: crate::apps::Net,
    backend: Backend<'_>,
) -> Option<Nic> {
    use crate::apps::Net;
    let device = match (net, board, machine) {
        (Net::None, _, _) => return None,
        (Net::User, "qemu-x86_64", "q35") => "virtio-net-pci,netdev=n0",
        // A PC's NIC, not virtio: the Intel 82574L. No option ROM, so OVMF does not load a
        // network boot driver (seconds under TCG) for a disk boot.
        (Net::User, "pc-uefi", "q35") => "e1000e,netdev=n0,romfile=",
        (Net::User, "qemu-x86_64", "microvm") => "virtio-net-device,netdev=n0",
        (Net::User, "qemu-aarch64", "virt-gicv2" | "virt-gicv3") => "virtio-net-device,netdev=n0",
        (Net::User, _, _) => return None,
    };
    let netdev = match backend {
        Backend::User => "user,id=n0".to_string(),
        Backend::UserForwarded(crate::hostfwd::HostPorts { http, echo, ssh }) => {
            let host = crate::hostfwd::HOST;
            format!(
                "user,id=n0,hostfwd=tcp:{host}:{http}-:8080,hostfwd=tcp:{host}:{echo}-:7,\
                 hostfwd=udp:{host}:{echo}-:7,hostfwd=tcp:{host}:{ssh}-:22"
            )
        }
        Backend::Forwarded { bind, http, echo } => format!(
            "user,id=n0,hostfwd=tcp:{bind}:{http}-:8080,hostfwd=tcp:{bind}:{echo}-:7,\
             hostfwd=udp:{bind}:{echo}-:7"
        ),
        Backend::Tap(ifname) => format!("tap,id=n0,ifname={ifname},script=no,downscript=no"),
    };
    Some(Nic {
        netdev,
        device: device.to_string(),
    })
}

/// Which NIC model a machine's network device is: the board's virtio-net ([`nic`]), or the
/// Intel 82574L (QEMU's `e1000e`, PCI 8086:10d3) that Rhea also drives on q35.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NicModel {
    /// The board's own NIC (virtio-net; pc-uefi's is already an e1000e).
    Virtio,
    /// `-device e1000e` (q35 only: a PCI card).
    E1000e,
}

impl NicModel {
    /// `nic` (the board's, on `board`/`machine`) as this model: the same netdev, this
    /// model's device. e1000e on anything but qemu-x86_64 q35 is refused.
    pub(crate) fn apply(self, nic: Nic, board: &str, machine: &str) -> Result<Nic> {
        match (self, board, machine) {
            (NicModel::Virtio, _, _) => Ok(nic),
            (NicModel::E1000e, "qemu-x86_64" | "pc-uefi", "q35") => Ok(Nic {
                device: "e1000e,netdev=n0,romfile=".to_string(),
                ..nic
            }),
            (NicModel::E1000e, _, _) => usage(format!(
                "the e1000e NIC is a PCI card: q35 only (qemu-x86_64, pc-uefi), not {board} \
                 {machine}"
            )),
        }
    }
}

/// The machine of `spec` (an app with a NIC, [`machine`]) with that NIC on the host's tap
/// `tap` instead of user networking, and the NIC (for a Linux guest to get the same one).
/// An app or board without a NIC is refused.
pub(crate) fn machine_on_tap(
    spec: &Spec<'_>,
    qboot: Option<&Path>,
    tap: &str,
) -> Result<(Machine, Nic)> {
    let mut machine = machine(spec, qboot)?;
    let nic = nic(
        spec.board.name,
        spec.machine,
        crate::apps::Net::User,
        Backend::Tap(tap),
    );
    match nic {
        Some(nic) if !machine.nics.is_empty() => {
            machine.nics = vec![nic.clone()];
            Ok((machine, nic))
        }
        _ => fail(format!(
            "{} on board {} machine {} has no user-networking NIC to put on tap {tap}",
            spec.kernel.display(),
            spec.board.name,
            spec.machine
        )),
    }
}

/// The QEMU arguments for a run. `qboot` is the firmware used for q35 when present.
pub(crate) fn args(spec: &Spec<'_>, qboot: Option<&Path>) -> Result<Vec<String>> {
    Ok(machine(spec, qboot)?.args())
}

/// The machine of a Rhea run of `spec`. `qboot` is the firmware used for q35 when present.
pub(crate) fn machine(spec: &Spec<'_>, qboot: Option<&Path>) -> Result<Machine> {
    match spec.board.name {
        // Xen boots the image: as its PVH hardware domain (x86_64) or a dom0less domU (arm64).
        "xen-x86_64" => crate::xen::x86_machine(spec),
        "xen-arm64" => crate::xen::arm_machine(spec),
        "pc-uefi" => uefi_machine(spec),
        _ => board_machine(spec, qboot, None),
    }
}

/// Board pc-uefi: q35 as a PC with UEFI firmware (OVMF, [`crate::ovmf`]) booting
/// `spec.kernel`, the GPT disk image, as a disk — not `-kernel`. The command line is the disk's
/// `\rhea.cfg`: a run with one gets its own copy of the disk ([`disk_with_cmdline`]).
fn uefi_machine(spec: &Spec<'_>) -> Result<Machine> {
    let Some(ovmf) = crate::ovmf::find() else {
        return fail(
            "board pc-uefi needs OVMF (Debian's `ovmf` package): `cargo xtask test|run` installs \
             it where it can",
        );
    };
    let mut m = board_machine(spec, None, None)?;
    m.kernel = None;
    m.append = None;
    let disk = disk_with_cmdline(spec.kernel, spec.append)?;
    m.extra.splice(0..0, crate::ovmf::ovmf_args(&ovmf, &disk));
    Ok(m)
}

/// `disk` itself when its `\rhea.cfg` already holds `cmdline` (built images hold an empty
/// one), else a copy next to it whose `\rhea.cfg` does, named by a hash of the command line:
/// written under a temporary name and renamed, so runs with one command line share one copy
/// and a concurrent run never sees a half-written one.
pub(crate) fn disk_with_cmdline(disk: &Path, cmdline: &str) -> Result<PathBuf> {
    let wanted = crate::uefi_disk::config_bytes(cmdline)?;
    if crate::uefi_disk::read_file(disk, crate::uefi_disk::CONFIG_PATH)? == wanted {
        return Ok(disk.to_path_buf());
    }
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    cmdline.hash(&mut h);
    let stem = disk.file_name().unwrap_or_default().to_string_lossy();
    let copy = disk.with_file_name(format!("{stem}.{:016x}.img", h.finish()));
    let fresh = match (std::fs::metadata(disk), std::fs::metadata(&copy)) {
        (Ok(d), Ok(c)) => c.modified().ok() >= d.modified().ok(),
        _ => false,
    };
    if !fresh {
        let tmp = disk.with_file_name(format!(
            "{stem}.{:016x}.{}.tmp",
            h.finish(),
            std::process::id()
        ));
        std::fs::copy(disk, &tmp)
            .map_err(|e| crate::Error::Failed(format!("cannot copy {}: {e}", disk.display())))?;
        crate::uefi_disk::set_cmdline(&tmp, cmdline)?;
        std::fs::rename(&tmp, &copy)
            .map_err(|e| crate::Error::Failed(format!("cannot rename {}: {e}", tmp.display())))?;
    }
    Ok(copy)
}

/// What a Linux guest (the baseline of `linux_guest.rs`) needs on top of a Rhea run: its
/// initramfs and kernel command line. `Spec::kernel` is then the Linux `vmlinuz`.
#[derive(Debug, Clone)]
pub(crate) struct LinuxBoot<'a> {
    pub(crate) initrd: &'a Path,
    pub(crate) append: &'a str,
}

/// The machine of a Linux guest: exactly that of a Rhea run of the same spec, without the
/// app's NIC, plus `-initrd` and `-append`. One difference: on microvm Linux needs the
/// legacy PIT, PIC and RTC (`pit=on,pic=on,rtc=on`; without them it cannot calibrate the
/// TSC), whereas Rhea's microvm line has `rtc=off` and leaves PIT and PIC at the default.
pub(crate) fn linux_machine(
    spec: &Spec<'_>,
    qboot: Option<&Path>,
    linux: &LinuxBoot<'_>,
) -> Result<Machine> {
    if spec.board.name.starts_with("xen-") {
        return fail(format!("no Linux guest on board {}", spec.board.name));
    }
    board_machine(spec, qboot, Some(linux))
}

/// The machine of the nested-KVM L1 that runs an L2 of `board` on `l2_machine`: q35 for
/// qemu-x86_64; on qemu-aarch64 the L2's own, for KVM on Arm gives a guest only the GIC the
/// L1 has: a GICv3 L1 cannot run a GICv2 guest (QEMU's GICv3 has no GICv2-compatible CPU
/// interface: "KVM does not support GICv2 emulation"), a GICv2 L1 no GICv3 guest.
pub(crate) fn nested_l1_type(board: &Board, l2_machine: &str) -> Result<&'static str> {
    match (board.name, l2_machine) {
        ("qemu-x86_64", "q35" | "microvm") => Ok("q35"),
        ("qemu-aarch64", "virt-gicv2") => Ok("virt-gicv2"),
        ("qemu-aarch64", "virt-gicv3") => Ok("virt-gicv3"),
        (board, machine) => fail(format!(
            "no nested-KVM L1 for board {board} machine {machine} (qemu-x86_64 and \
             qemu-aarch64 only)"
        )),
    }
}

/// Guest RAM of the nested-KVM L1 (its L2 guests take theirs from it).
pub(crate) const NESTED_L1_MEM: &str = "1024M";

/// The machine of the nested-KVM L1 of `board` (`--accel nested-kvm`): a Linux guest under
/// TCG whose emulated CPU has hardware virtualisation, so the Linux in it runs a real KVM.
/// x86_64: the Linux-guest machine of q35 (`-accel tcg -cpu max`: AMD SVM with nested
/// paging), one vCPU (two were 4-5x slower on a 2-core host), [`NESTED_L1_MEM`], with
/// `shares` on virtio-9p-pci. `qboot` is the host's. aarch64: the Linux-guest machine of
/// `l1_type` ([`nested_l1_type`]: virt-gicv2 or virt-gicv3) with EL2 (`virtualization=on`,
/// `-cpu max,pauth-impdef=on`: VHE), one vCPU, the same memory, the shares on
/// virtio-9p-device (virtio-mmio).
pub(crate) fn nested_l1_machine(
    board: &Board,
    l1_type: &str,
    qboot: Option<&Path>,
    linux: &LinuxBoot<'_>,
    kernel: &Path,
    shares: &[(String, PathBuf, bool)],
) -> Result<Machine> {
    let (machine, device, arm_machine) = match (board.name, l1_type) {
        ("qemu-x86_64", "q35") => ("q35", "virtio-9p-pci", None),
        ("qemu-aarch64", "virt-gicv2") => (
            "virt-gicv2",
            "virtio-9p-device",
            Some("virt,virtualization=on,gic-version=2"),
        ),
        ("qemu-aarch64", "virt-gicv3") => (
            "virt-gicv3",
            "virtio-9p-device",
            Some("virt,virtualization=on,gic-version=3"),
        ),
        (board, machine) => {
            return fail(format!(
                "no nested-KVM L1 for board {board} on {machine} (qemu-x86_64 on q35, \
                 qemu-aarch64 on virt-gicv2 or virt-gicv3)"
            ));
        }
    };
    let spec = Spec {
        board,
        machine,
        accel: Accel::Tcg,
        smp: 1,
        mem: NESTED_L1_MEM,
        kernel,
        serial: Serial::Captured,
        append: "",
    };
    let mut m = linux_machine(&spec, qboot, linux)?;
    if let Some(arm_machine) = arm_machine {
        // EL2 for the L1's KVM (VHE), the GIC with its virtualization interface; `-cpu max`
        // with the cheaper implementation-defined pointer authentication (the architected
        // QARMA is slow under TCG); no semihosting for Linux.
        m.machine = arm_machine.to_string();
        m.cpu = Some("max,pauth-impdef=on".to_string());
        m.semihosting = false;
    }
    m.shares = shares
        .iter()
        .map(|(tag, path, readonly)| Share {
            tag: tag.clone(),
            path: path.clone(),
            readonly: *readonly,
            device,
        })
        .collect();
    Ok(m)
}

/// The machine of a Rhea run of `spec` as an L2 of the nested-KVM L1 (run by the L1's QEMU,
/// which is the host's, from the host's `/usr` shared at `/usr`): exactly the KVM run of the
/// same spec (`-accel kvm -cpu host`). `spec.kernel` and `qboot` are paths as the L1 sees
/// them; `spec.accel` must be KVM.
pub(crate) fn nested_l2_machine(spec: &Spec<'_>, qboot: Option<&Path>) -> Result<Machine> {
    if spec.accel != Accel::Kvm {
        return fail(format!(
            "a nested-KVM L2 runs under KVM, not {}",
            spec.accel.name()
        ));
    }
    let mut m = machine(spec, qboot)?;
    if spec.board.arch() == "aarch64" {
        // A direct Arm run is TCG's (the host is x86_64): here the L1's KVM and CPU. KVM
        // serves no semihosting; the kernel writes its exit status on the console instead
        // ([`EXIT_STATUS_LINE`], read back with [`arm_kvm_end`]) and powers off with PSCI.
        m.accel = "kvm".to_string();
        m.cpu = Some("host".to_string());
        m.semihosting = false;
    }
    Ok(m)
}

/// The `-M` value of a Rhea run on microvm.
const MICROVM_RHEA: &str = "microvm,rtc=off,isa-serial=on";
/// The `-M` value of a Linux guest on microvm (see [`linux_machine`]).
const MICROVM_LINUX: &str = "microvm,pit=on,pic=on,rtc=on,isa-serial=on";

/// The `-serial` value of a console connection.
pub(crate) fn serial_arg(serial: Serial) -> &'static str {
    match serial {
        Serial::Captured => "stdio",
        Serial::Interactive => "mon:stdio",
    }
}

/// The machine of a board QEMU emulates itself (not a Xen board): Rhea's, or with `linux`
/// a Linux guest's.
fn board_machine(
    spec: &Spec<'_>,
    qboot: Option<&Path>,
    linux: Option<&LinuxBoot<'_>>,
) -> Result<Machine> {
    let mut m = machine_type(spec, qboot, linux.is_some())?;
    let arm = spec.board.arch() == "aarch64";
    m.accel = match (spec.accel, spec.smp, arm) {
        // The Arm machines named their CPU; on an x86_64 host they only run under TCG.
        (_, 1, true) | (Accel::Tcg, 1, false) => "tcg",
        (_, _, true) | (Accel::Tcg, _, false) => "tcg,thread=multi",
        (Accel::Kvm, _, false) => "kvm",
    }
    .to_string();
    if !arm {
        let cpu = if spec.accel == Accel::Kvm {
            "host"
        } else {
            "max"
        };
        m.cpu = Some(cpu.to_string());
    }
    if spec.machine != "raspi4b" {
        // raspi4b is a fixed machine: 2 GiB and 4 CPUs, and QEMU refuses anything else.
        m.mem = Some(spec.mem.to_string());
        m.smp = Some(spec.smp);
    }
    m.serial = Some(serial_arg(spec.serial).to_string());
    m.kernel = Some(spec.kernel.to_path_buf());
    if arm {
        // The kernel ends the run with semihosting SYS_EXIT_EXTENDED and the statuses above.
        m.semihosting = true;
    } else {
        m.devices
            .push("isa-debug-exit,iobase=0xf4,iosize=4".to_string());
    }
    match linux {
        Some(_) if !spec.append.is_empty() => {
            return fail(format!(
                "a Linux guest takes its command line from LinuxBoot, not Spec (`{}`)",
                spec.append
            ));
        }
        Some(linux) => {
            m.initrd = Some(linux.initrd.to_string_lossy().into_owned());
            m.append = Some(linux.append.to_string());
        }
        None => {
            let net = crate::apps::net_of_image(spec.kernel);
            // An interactive run forwards the appliance's ports to the host's loopback (at the
            // default ports; `run` sets its own, [`interactive_machine`]).
            let backend = match spec.serial {
                Serial::Interactive => Backend::UserForwarded(crate::hostfwd::HostPorts::DEFAULT),
                Serial::Captured => Backend::User,
            };
            m.nics
                .extend(nic(spec.board.name, spec.machine, net, backend));
            m.append = (!spec.append.is_empty()).then(|| spec.append.to_string());
        }
    }
    Ok(m)
}

/// `-M` with what comes with it (firmware, devicetree, an Arm board's CPU) for a board's
/// machine.
fn machine_type(spec: &Spec<'_>, qboot: Option<&Path>, linux: bool) -> Result<Machine> {
    let new = |machine: &str| Machine::new(spec.board.qemu, machine, "");
    let mut m = match (spec.board.name, spec.machine) {
        // No `x-option-roms=off`: QEMU boots a `-kernel` ELF (PVH note or multiboot) through
        // an option ROM (pvh.bin / multiboot.bin); without it nothing runs.
        ("qemu-x86_64", "microvm") if linux => new(MICROVM_LINUX),
        ("qemu-x86_64", "microvm") => new(MICROVM_RHEA),
        ("qemu-x86_64", "q35") => {
            let mut m = new("q35");
            m.firmware = qboot.map(Path::to_path_buf);
            m
        }
        // OVMF is the firmware, as flash (uefi_machine), not -bios.
        ("pc-uefi", "q35") => new("q35"),
        ("qemu-aarch64", "virt-gicv2") => new("virt,gic-version=2"),
        ("qemu-aarch64", "virt-gicv3") => new("virt,gic-version=3"),
        ("rpi4", "raspi4b") => {
            // QEMU makes no devicetree for the raspi machines: the Pi's own, as its firmware
            // would pass it (fetched by `setup::ensure_qemu`, see firmware.rs).
            let dtb = crate::firmware::rpi4_dtb_path();
            if !dtb.is_file() {
                return fail(format!(
                    "{} is missing: -M raspi4b needs the Raspberry Pi 4 devicetree ({})",
                    dtb.display(),
                    crate::firmware::RPI4_DTB_HOWTO
                ));
            }
            let mut m = new("raspi4b");
            m.dtb = Some(dtb);
            m
        }
        (board, machine) => {
            return fail(format!(
                "qemu.rs has no command line for board {board} machine {machine}"
            ));
        }
    };
    if spec.board.name == "qemu-aarch64" {
        m.cpu = Some("cortex-a72".to_string());
    }
    Ok(m)
}

/// How a QEMU process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QemuEnd {
    Exited(i32),
    Signaled(i32),
    Timeout(Duration),
    /// Board xen-arm64: the domU announced `SCHEDOP_shutdown` with this `SHUTDOWN_*` reason
    /// and xtask stopped QEMU (Xen stays up after its last domU; see xen.rs); `refused`: the
    /// hypercall returned this value instead; `paused`: (vCPUs paused, vCPUs) of the domain in
    /// Xen's own domain dump afterwards (debug key `q`), `None` if no dump came.
    DomainShutdown {
        reason: u32,
        refused: Option<i64>,
        paused: Option<(usize, usize)>,
    },
    /// Board qemu-aarch64 under KVM (nested): QEMU exited 0 after PSCI `SYSTEM_OFF`, and the
    /// console says no usable status ([`arm_kvm_end`]).
    NoConsoleStatus(ConsoleStatus),
    /// QEMU exited 0 after shutting the machine down for this cause, as its QMP `SHUTDOWN`
    /// event said ([`run_interactive`] watches QMP; [`with_shutdown_cause`]).
    Shutdown(ShutdownCause),
}

/// How QEMU ended, given the cause of its last `SHUTDOWN` event: an exit with status 0 after
/// such an event is [`QemuEnd::Shutdown`]; anything else (the kernel's `isa-debug-exit` or
/// semihosting status, which end QEMU without one) is `end` unchanged.
pub(crate) fn with_shutdown_cause(end: QemuEnd, cause: Option<ShutdownCause>) -> QemuEnd {
    match (end, cause) {
        (QemuEnd::Exited(0), Some(cause)) => QemuEnd::Shutdown(cause),
        _ => end,
    }
}

impl QemuEnd {
    pub(crate) fn from_status(status: ExitStatus) -> QemuEnd {
        if let Some(code) = status.code() {
            return QemuEnd::Exited(code);
        }
        #[cfg(unix)]
        {
            use std::os::unix::process::ExitStatusExt;
            if let Some(sig) = status.signal() {
                return QemuEnd::Signaled(sig);
            }
        }
        QemuEnd::Exited(-1)
    }

    pub(crate) fn describe(&self) -> String {
        match self {
            QemuEnd::Exited(code) => format!("exit status {code}"),
            QemuEnd::Signaled(sig) => format!("killed by signal {sig}"),
            QemuEnd::Timeout(t) => format!("TIMEOUT after {}s", t.as_secs()),
            QemuEnd::DomainShutdown {
                reason,
                refused: None,
                paused,
            } => format!(
                "domU shut down (SCHEDOP_shutdown reason {reason}, {}; Xen's dump: {}); QEMU \
                 stopped by xtask",
                crate::xen::shutdown_name(*reason),
                match paused {
                    Some((p, n)) => format!("{p} of {n} vCPUs paused"),
                    None => "none".to_string(),
                }
            ),
            QemuEnd::DomainShutdown {
                reason,
                refused: Some(rc),
                ..
            } => format!("SCHEDOP_shutdown reason {reason} returned {rc}; QEMU stopped by xtask"),
            QemuEnd::NoConsoleStatus(why) => format!(
                "QEMU exited with status 0 (PSCI SYSTEM_OFF) and {}",
                why.describe()
            ),
            QemuEnd::Shutdown(ShutdownCause::Quit) => "quit (Ctrl-a x)".to_string(),
            QemuEnd::Shutdown(ShutdownCause::Signal) => "exit status 0 on a signal".to_string(),
            QemuEnd::Shutdown(ShutdownCause::GuestReset) => {
                "exit status 0 on a guest reset".to_string()
            }
            QemuEnd::Shutdown(ShutdownCause::GuestShutdown) => {
                "exit status 0 on a guest power-off".to_string()
            }
            QemuEnd::Shutdown(ShutdownCause::GuestPanic) => {
                "exit status 0 on a guest panic".to_string()
            }
            QemuEnd::Shutdown(ShutdownCause::Other) => "exit status 0 on a shutdown".to_string(),
        }
    }
}

/// The console line Rhea's Arm boards end with where semihosting cannot carry the exit status
/// (under KVM): this, the status ([`STATUS_SUCCESS`] or [`STATUS_FAILURE`]), then
/// ` (success)` or ` (failure)`. Written by `boards/common-arm` (`EXIT_STATUS_LINE`); keep the
/// two in step.
pub(crate) const EXIT_STATUS_LINE: &str = "rhea: exit status=";
/// The console line Rhea's Arm boards print when SMCCC discovery finds KVM (`boards/common-arm`,
/// `report_hypervisor`).
pub(crate) const ARM_KVM_LINE: &str = "rhea: hypervisor: KVM";

/// Why a console gives no usable exit status ([`console_exit_status`], [`arm_kvm_end`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConsoleStatus {
    /// No status line.
    Missing,
    /// A status line that is not `<code> (success|failure)` with the code its word says.
    Malformed,
    /// Status lines that disagree.
    Conflicting,
    /// A status that is neither success nor failure.
    Unknown(i32),
    /// A status, but Rhea never said it found KVM (the boot was not what it claims).
    NoKvm,
}

impl ConsoleStatus {
    pub(crate) fn describe(&self) -> String {
        match self {
            ConsoleStatus::Missing => format!("the console has no `{EXIT_STATUS_LINE}` line"),
            ConsoleStatus::Malformed => format!(
                "the console's `{EXIT_STATUS_LINE}` line is malformed (want \
                 `{EXIT_STATUS_LINE}{STATUS_SUCCESS} (success)` or `...{STATUS_FAILURE} (failure)`)"
            ),
            ConsoleStatus::Conflicting => {
                format!("the console's `{EXIT_STATUS_LINE}` lines disagree")
            }
            ConsoleStatus::Unknown(code) => format!(
                "the console's exit status {code} is neither {STATUS_SUCCESS} (success) nor \
                 {STATUS_FAILURE} (failure)"
            ),
            ConsoleStatus::NoKvm => format!(
                "the console has an exit status but no `{ARM_KVM_LINE}` line: Rhea did not \
                 find KVM"
            ),
        }
    }
}

/// The exit status Rhea wrote on the console as [`EXIT_STATUS_LINE`] (text printed in front
/// of it on the same line is ignored: another CPU's output). Every such line must be well
/// formed and agree.
pub(crate) fn console_exit_status<'a>(
    lines: impl IntoIterator<Item = &'a str>,
) -> Result<i32, ConsoleStatus> {
    let mut found = None;
    for line in lines {
        let Some((_, rest)) = line.trim_end_matches('\r').split_once(EXIT_STATUS_LINE) else {
            continue;
        };
        let code = match rest.trim_end().split_once(' ') {
            Some((code, "(success)")) if code == STATUS_SUCCESS.to_string() => STATUS_SUCCESS,
            Some((code, "(failure)")) if code == STATUS_FAILURE.to_string() => STATUS_FAILURE,
            Some((code, _)) => match code.parse::<i32>() {
                Ok(n) if n != STATUS_SUCCESS && n != STATUS_FAILURE => {
                    return Err(ConsoleStatus::Unknown(n));
                }
                _ => return Err(ConsoleStatus::Malformed),
            },
            None => return Err(ConsoleStatus::Malformed),
        };
        match found {
            Some(earlier) if earlier != code => return Err(ConsoleStatus::Conflicting),
            _ => found = Some(code),
        }
    }
    found.ok_or(ConsoleStatus::Missing)
}

/// How a Rhea run on board qemu-aarch64 under KVM ended, from QEMU's end and the console: KVM
/// serves no semihosting, so QEMU exits 0 after PSCI `SYSTEM_OFF` whatever the status, which
/// is then the console's ([`console_exit_status`], with [`ARM_KVM_LINE`] required) as the
/// `Exited` status a semihosting exit would have given; any other end stays as it is.
pub(crate) fn arm_kvm_end<'a>(end: QemuEnd, lines: impl IntoIterator<Item = &'a str>) -> QemuEnd {
    if end != QemuEnd::Exited(0) {
        return end;
    }
    let lines: Vec<&str> = lines.into_iter().collect();
    match console_exit_status(lines.iter().copied()) {
        Ok(_) if !lines.iter().any(|l| l.contains(ARM_KVM_LINE)) => {
            QemuEnd::NoConsoleStatus(ConsoleStatus::NoKvm)
        }
        Ok(code) => QemuEnd::Exited(code),
        Err(why) => QemuEnd::NoConsoleStatus(why),
    }
}

/// What a QEMU end means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The kernel reported success (status 33).
    Success,
    /// The kernel reported failure (status 35).
    KernelFailure,
    /// Anything else, described.
    Other(String),
}

impl Verdict {
    pub(crate) fn describe(&self) -> String {
        match self {
            Verdict::Success => "kernel reported success".to_string(),
            Verdict::KernelFailure => "kernel reported failure".to_string(),
            Verdict::Other(why) => why.clone(),
        }
    }
}

/// Maps how QEMU ended to a verdict.
pub(crate) fn classify(end: &QemuEnd) -> Verdict {
    match *end {
        QemuEnd::Exited(STATUS_SUCCESS) => Verdict::Success,
        QemuEnd::Exited(STATUS_FAILURE) => Verdict::KernelFailure,
        QemuEnd::Exited(0) => Verdict::Other(
            "QEMU exited with status 0: the guest reset or powered off (triple fault? PSCI \
             SYSTEM_OFF without semihosting?) without writing the debug-exit port or a \
             semihosting exit status"
                .to_string(),
        ),
        QemuEnd::Exited(1) => Verdict::Other(
            "QEMU exited with status 1: QEMU error (see its stderr) or debug-exit value 0"
                .to_string(),
        ),
        QemuEnd::Exited(code) if code > 0 && code % 2 == 1 => Verdict::Other(format!(
            "QEMU exited with status {code}: unexpected debug-exit value {:#x} \
             (0x10 = success, 0x11 = failure)",
            code >> 1
        )),
        QemuEnd::Exited(code) => Verdict::Other(format!("QEMU exited with status {code}")),
        QemuEnd::Signaled(sig) => Verdict::Other(format!("QEMU killed by signal {sig}")),
        QemuEnd::Timeout(t) => Verdict::Other(format!("TIMEOUT after {}s", t.as_secs())),
        // Xen's SHUTDOWN_poweroff is the kernel's success, SHUTDOWN_crash its failure, once
        // Xen's own dump shows every vCPU of the domain paused (as shutdown leaves them).
        QemuEnd::DomainShutdown {
            reason,
            refused: None,
            paused: Some((paused, vcpus)),
        } if paused == vcpus && vcpus > 0 && (reason == 0 || reason == 3) => {
            if reason == 0 {
                Verdict::Success
            } else {
                Verdict::KernelFailure
            }
        }
        QemuEnd::DomainShutdown { .. } | QemuEnd::NoConsoleStatus(_) => {
            Verdict::Other(end.describe())
        }
        QemuEnd::Shutdown(cause) => Verdict::Other(
            match cause {
                ShutdownCause::Quit => {
                    "QEMU was quit by its user (Ctrl-a x) before the kernel reported a status"
                }
                ShutdownCause::Signal => {
                    "QEMU was stopped by a signal (Ctrl-c on its terminal, or kill) before the \
                     kernel reported a status"
                }
                ShutdownCause::GuestReset => {
                    "a triple fault, or a reset the kernel asked for, before it wrote the \
                     debug-exit port (-no-reboot makes a reset end QEMU)"
                }
                ShutdownCause::GuestShutdown => {
                    "the guest powered off (ACPI, PSCI SYSTEM_OFF) without writing the \
                     debug-exit port or a semihosting exit status"
                }
                ShutdownCause::GuestPanic => "the guest reported a panic to QEMU (pvpanic)",
                ShutdownCause::Other => {
                    "QEMU shut the machine down (a QMP SHUTDOWN cause xtask does not know) \
                     without a status from the kernel"
                }
            }
            .to_string(),
        ),
    }
}

/// Text written to the guest's serial input (QEMU's stdin) during a captured run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StdinFeed {
    /// The bytes written, as given.
    pub(crate) text: String,
    /// Written once console output containing this appears (a complete line, or the line
    /// being printed, so a prompt without a newline counts); `None`: at once.
    pub(crate) after: Option<String>,
}

impl StdinFeed {
    /// Says when the text is written, for messages.
    pub(crate) fn describe(&self) -> String {
        match &self.after {
            Some(marker) => format!("{:?} after {marker:?}", self.text),
            None => format!("{:?} at once", self.text),
        }
    }
}

/// The output of a captured run.
#[derive(Debug, Clone)]
pub(crate) struct Captured {
    /// Console lines with the time since spawn at which each was complete.
    pub(crate) lines: Vec<(Duration, String)>,
    /// QEMU's own stderr.
    pub(crate) stderr: String,
    pub(crate) end: QemuEnd,
    /// Time from spawn to exit (or kill).
    pub(crate) elapsed: Duration,
    /// When the [`StdinFeed`] text was written (time since spawn); `None` if there was no
    /// feed or it was never written.
    pub(crate) stdin_written: Option<Duration>,
}

impl Captured {
    /// All console output as one string.
    pub(crate) fn console(&self) -> String {
        let mut s = String::new();
        for (_, line) in &self.lines {
            s.push_str(line);
            s.push('\n');
        }
        s
    }

    /// When the first console line containing `needle` appeared (time since spawn).
    pub(crate) fn time_of(&self, needle: &str) -> Option<Duration> {
        self.lines
            .iter()
            .find(|(_, l)| l.contains(needle))
            .map(|(t, _)| *t)
    }
}

/// Cuts console output, as it arrives in chunks, into lines (without `\n` or `\r\n`), and
/// spots a marker in them, the unfinished last line included.
#[derive(Debug, Default)]
pub(crate) struct LineSplitter {
    /// The unfinished line.
    partial: Vec<u8>,
    /// The marker still looked for; `None` once seen (or if there is none).
    marker: Option<String>,
}

impl LineSplitter {
    pub(crate) fn new(marker: Option<&str>) -> LineSplitter {
        LineSplitter {
            partial: Vec::new(),
            marker: marker.map(str::to_string),
        }
    }

    /// Takes a chunk; returns the lines it completed and whether the marker was seen now
    /// (true at most once per splitter).
    pub(crate) fn push(&mut self, chunk: &[u8]) -> (Vec<String>, bool) {
        let mut lines = Vec::new();
        let mut seen = false;
        self.partial.extend_from_slice(chunk);
        while let Some(at) = self.partial.iter().position(|&b| b == b'\n') {
            let rest = self.partial.split_off(at + 1);
            let raw = std::mem::replace(&mut self.partial, rest);
            let line = String::from_utf8_lossy(&raw)
                .trim_end_matches(['\n', '\r'])
                .to_string();
            seen |= self.spot(&line);
            lines.push(line);
        }
        if self.marker.is_some() && !self.partial.is_empty() {
            let partial = String::from_utf8_lossy(&self.partial).into_owned();
            seen |= self.spot(&partial);
        }
        (lines, seen)
    }

    /// The unfinished last line at the end of the output, if any.
    pub(crate) fn finish(self) -> Option<String> {
        (!self.partial.is_empty()).then(|| {
            String::from_utf8_lossy(&self.partial)
                .trim_end_matches('\r')
                .to_string()
        })
    }

    fn spot(&mut self, text: &str) -> bool {
        match &self.marker {
            Some(m) if text.contains(m.as_str()) => {
                self.marker = None;
                true
            }
            _ => false,
        }
    }
}

/// The QEMU command of a Rhea run of `spec` ([`machine`]) with `qemu`.
pub(crate) fn command(qemu: &Qemu, spec: &Spec<'_>) -> Result<Command> {
    let mut m = machine(spec, qemu.qboot.as_deref())?;
    m.binary = qemu.binary.clone();
    Ok(m.command())
}

/// Runs QEMU with the console captured, killing it after `timeout`, writing `feed` (if any)
/// to the guest's serial input. With `echo`, prints the command line and every console line
/// as it arrives.
pub(crate) fn run_captured(
    qemu: &Qemu,
    spec: &Spec<'_>,
    feed: Option<&StdinFeed>,
    timeout: Duration,
    echo: bool,
) -> Result<Captured> {
    if spec.board.name.starts_with("xen-") {
        // Xen outlives its domU (and halts, not exits, after its hardware domain): the run
        // ends on the domain's shutdown line and Xen's confirmation (no input yet).
        return crate::xen::run_captured(qemu, spec, feed, timeout, echo);
    }
    run_command_captured(command(qemu, spec)?, feed, timeout, echo)
}

/// [`run_captured`] with extra QEMU arguments after the usual ones (e.g. `-icount` for
/// deterministic instruction counts).
pub(crate) fn run_captured_with(
    qemu: &Qemu,
    spec: &Spec<'_>,
    extra: &[&str],
    timeout: Duration,
    echo: bool,
) -> Result<Captured> {
    let mut m = machine(spec, qemu.qboot.as_deref())?;
    m.binary = qemu.binary.clone();
    m.extra.extend(extra.iter().map(|s| s.to_string()));
    run_command_captured(m.command(), None, timeout, echo)
}

/// [`run_captured`] with `properties` added to the machine's `-M` value (`hpet=off` on q35,
/// `pit=off` on microvm: the machine without a device the board would otherwise find).
pub(crate) fn run_captured_with_properties(
    qemu: &Qemu,
    spec: &Spec<'_>,
    properties: &str,
    timeout: Duration,
    echo: bool,
) -> Result<Captured> {
    let mut m = machine(spec, qemu.qboot.as_deref())?;
    m.binary = qemu.binary.clone();
    if !properties.is_empty() {
        m.machine = format!("{},{properties}", m.machine);
    }
    run_command_captured(m.command(), None, timeout, echo)
}

/// Runs a LinuxU image as a host process with the kernel command line as its arguments, like
/// [`run_captured`].
pub(crate) fn run_process_captured(
    binary: &Path,
    cmdline: &str,
    feed: Option<&StdinFeed>,
    timeout: Duration,
    echo: bool,
    storm_per_sec: Option<u32>,
) -> Result<Captured> {
    let mut cmd = Command::new(binary);
    cmd.args(cmdline.split_whitespace());
    run_command_captured_storm(cmd, feed, timeout, echo, storm_per_sec)
}

/// How a LinuxU process ended: it exits 0 on success and 1 when the kernel reports failure.
pub(crate) fn classify_process(end: &QemuEnd) -> Verdict {
    match *end {
        QemuEnd::Exited(0) => Verdict::Success,
        QemuEnd::Exited(1) => Verdict::KernelFailure,
        QemuEnd::Exited(code) => Verdict::Other(format!("the process exited with status {code}")),
        QemuEnd::Signaled(sig) => Verdict::Other(format!("the process was killed by signal {sig}")),
        QemuEnd::Timeout(d) => Verdict::Other(format!("TIMEOUT after {}s", d.as_secs())),
        QemuEnd::DomainShutdown { .. } | QemuEnd::NoConsoleStatus(_) | QemuEnd::Shutdown(_) => {
            Verdict::Other(end.describe())
        }
    }
}

/// [`run_captured`] for a Linux guest ([`linux_machine`]; no stdin feed).
pub(crate) fn run_linux_captured(
    qemu: &Qemu,
    spec: &Spec<'_>,
    linux: &LinuxBoot<'_>,
    timeout: Duration,
    echo: bool,
) -> Result<Captured> {
    let mut m = linux_machine(spec, qemu.qboot.as_deref(), linux)?;
    m.binary = qemu.binary.clone();
    run_command_captured(m.command(), None, timeout, echo)
}

/// Writes `text` to QEMU's stdin on a thread of its own (a guest slow to take its input
/// must not stall the console reader), reports it on `tx`, and hands the pipe back so that
/// stdin stays open until the reader joins it.
fn spawn_writer(
    text: Vec<u8>,
    mut pipe: ChildStdin,
    start: Instant,
    tx: mpsc::Sender<Event>,
) -> thread::JoinHandle<ChildStdin> {
    thread::spawn(move || {
        let at = start.elapsed();
        let result = pipe.write_all(&text).and_then(|()| pipe.flush());
        let _ = tx.send(Event::Fed(at, result.map_err(|e| e.to_string())));
        pipe
    })
}

/// What the stdout reader thread and the stdin writer report.
enum Event {
    Line(Duration, String),
    /// The feed text was written, starting at this time (`Err`: writing failed).
    Fed(Duration, Result<(), String>),
}

fn run_command_captured(
    cmd: Command,
    feed: Option<&StdinFeed>,
    timeout: Duration,
    echo: bool,
) -> Result<Captured> {
    run_command_captured_storm(cmd, feed, timeout, echo, None)
}

/// Once `go` is set (the kernel printed `rhea: app main`, so it is up), sends `per_sec` SIGIO
/// signals a second to process `pid` until `stop` is set (the LinuxU signal-storm test): the
/// kernel must neither overflow a stack nor lose its timer.
fn signal_storm(
    pid: u32,
    per_sec: u32,
    go: &std::sync::atomic::AtomicBool,
    stop: &std::sync::atomic::AtomicBool,
) -> u64 {
    use std::sync::atomic::Ordering;
    while !go.load(Ordering::Relaxed) {
        if stop.load(Ordering::Relaxed) {
            return 0;
        }
        thread::sleep(Duration::from_millis(1));
    }
    let start = Instant::now();
    let mut sent = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let due = (start.elapsed().as_secs_f64() * f64::from(per_sec)) as u64;
        while sent < due {
            let target = nix::unistd::Pid::from_raw(pid as i32);
            if nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGIO).is_err() {
                return sent;
            }
            sent += 1;
        }
        thread::sleep(Duration::from_micros(100));
    }
    sent
}

/// The signal storm of a LinuxU run ([`signal_storm`] on a thread of its own).
struct Storm {
    go: std::sync::Arc<std::sync::atomic::AtomicBool>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: thread::JoinHandle<u64>,
}

impl Storm {
    /// Starts the thread; the storm begins at [`Storm::go`].
    fn start(pid: u32, per_sec: u32) -> Storm {
        use std::sync::{Arc, atomic::AtomicBool};
        let go = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (g, s) = (go.clone(), stop.clone());
        let thread = thread::spawn(move || signal_storm(pid, per_sec, &g, &s));
        Storm { go, stop, thread }
    }

    fn go(&self) {
        self.go.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Stops the storm; the number of signals sent.
    fn finish(self) -> Option<u64> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().ok()
    }
}

/// Reads QEMU's stdout into lines on a thread of its own, sending them on `tx`, and starts
/// the stdin writer of `pending` at once (`at_once`) or when `splitter` sees its marker.
fn spawn_console_reader(
    mut stdout: ChildStdout,
    mut pending: Option<(Vec<u8>, ChildStdin)>,
    at_once: bool,
    mut splitter: LineSplitter,
    start: Instant,
    tx: mpsc::Sender<Event>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut writer = None;
        if at_once && let Some((text, pipe)) = pending.take() {
            writer = Some(spawn_writer(text, pipe, start, tx.clone()));
        }
        let mut chunk = [0u8; 4096];
        loop {
            let n = match stdout.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let at = start.elapsed();
            let (lines, seen) = splitter.push(&chunk[..n]);
            for line in lines {
                if tx.send(Event::Line(at, line)).is_err() {
                    return;
                }
            }
            if seen && let Some((text, pipe)) = pending.take() {
                writer = Some(spawn_writer(text, pipe, start, tx.clone()));
            }
        }
        if let Some(line) = splitter.finish() {
            let _ = tx.send(Event::Line(start.elapsed(), line));
        }
        // QEMU closed its stdout (it has ended): only now may its stdin close.
        drop(writer.map(thread::JoinHandle::join));
    })
}

/// Reads a child's whole stderr on a thread of its own.
fn spawn_stderr_reader(mut stderr: ChildStderr) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stderr.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// What a captured run collects from the reader and writer threads.
#[derive(Default)]
struct Collected {
    lines: Vec<(Duration, String)>,
    stdin_written: Option<Duration>,
    feed_error: Option<String>,
}

impl Collected {
    /// Takes one event (echoing it with `echo`); the storm starts once the app is up.
    fn take(&mut self, event: Event, echo: bool, storm: Option<&Storm>) {
        match event {
            Event::Line(at, line) => {
                if echo {
                    println!("{line}");
                }
                if line.contains("rhea: app main") {
                    storm.map(Storm::go);
                }
                self.lines.push((at, line));
            }
            Event::Fed(at, Ok(())) => {
                if echo {
                    println!("(xtask: wrote the stdin text at {:.2} s)", at.as_secs_f64());
                }
                self.stdin_written = Some(at);
            }
            Event::Fed(_, Err(e)) => self.feed_error = Some(e),
        }
    }
}

/// Spawns `cmd` with stdout and stderr piped (stdin too for a `feed`), echoing the command
/// line with `echo`.
fn spawn_captured(mut cmd: Command, feed: Option<&StdinFeed>, echo: bool) -> Result<Child> {
    let stdin = if feed.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    };
    cmd.stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if echo {
        println!("$ {}", describe(&cmd));
        if let Some(feed) = feed {
            println!("(stdin: {})", feed.describe());
        }
    }
    cmd.spawn()
        .context(|| format!("cannot start `{}`", describe(&cmd)))
}

fn run_command_captured_storm(
    cmd: Command,
    feed: Option<&StdinFeed>,
    timeout: Duration,
    echo: bool,
    storm_per_sec: Option<u32>,
) -> Result<Captured> {
    let start = Instant::now();
    let mut child = spawn_captured(cmd, feed, echo)?;
    let storm = storm_per_sec.map(|rate| Storm::start(child.id(), rate));
    // The text and the pipe it goes to; the reader thread starts the writer.
    let pending = feed
        .map(|f| f.text.clone().into_bytes())
        .zip(child.stdin.take());
    let at_once = feed.is_some_and(|f| f.after.is_none());
    let splitter = LineSplitter::new(feed.and_then(|f| f.after.as_deref()));
    let (tx, rx) = mpsc::channel::<Event>();
    let stdout = child.stdout.take().expect("stdout is piped");
    let out_reader = spawn_console_reader(stdout, pending, at_once, splitter, start, tx);
    let err_reader = spawn_stderr_reader(child.stderr.take().expect("stderr is piped"));

    let mut got = Collected::default();
    let end = loop {
        match rx.recv_timeout(Duration::from_millis(5)) {
            Ok(event) => {
                got.take(event, echo, storm.as_ref());
                continue;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            // stdout closed but QEMU may still be running: keep polling without spinning.
            Err(mpsc::RecvTimeoutError::Disconnected) => thread::sleep(Duration::from_millis(5)),
        }
        if let Some(end) = ended(&mut child, start, timeout)? {
            break end;
        }
    };
    let elapsed = start.elapsed();
    let _ = out_reader.join();
    for event in rx.try_iter() {
        got.take(event, echo, storm.as_ref());
    }
    let mut stderr = err_reader.join().unwrap_or_default();
    if let Some(e) = got.feed_error {
        stderr.push_str(&format!(
            "\n(xtask: writing the stdin text to QEMU failed: {e})\n"
        ));
    }
    if echo && !stderr.trim().is_empty() {
        eprint!("{stderr}");
    }
    if let Some(sent) = storm.and_then(Storm::finish) {
        let note = format!("(signal storm: {sent} SIGIO sent)\n");
        if echo {
            print!("{note}");
        }
        stderr.push_str(&note);
    }
    Ok(Captured {
        lines: got.lines,
        stderr,
        end,
        elapsed,
        stdin_written: got.stdin_written,
    })
}

/// How `child` ended, if it has: by itself, or killed at `timeout` after `start`.
pub(crate) fn ended(
    child: &mut Child,
    start: Instant,
    timeout: Duration,
) -> Result<Option<QemuEnd>> {
    if let Some(status) = child
        .try_wait()
        .context(|| "waiting for QEMU".to_string())?
    {
        return Ok(Some(QemuEnd::from_status(status)));
    }
    if start.elapsed() >= timeout {
        let _ = child.kill();
        let _ = child.wait();
        return Ok(Some(QemuEnd::Timeout(timeout)));
    }
    Ok(None)
}

/// The machine of an interactive run: [`machine`], with the app's NIC (if any) forwarding
/// `ports` from the host's loopback.
pub(crate) fn interactive_machine(
    qemu: &Qemu,
    spec: &Spec<'_>,
    ports: crate::hostfwd::HostPorts,
) -> Result<Machine> {
    let mut m = machine(spec, qemu.qboot.as_deref())?;
    m.binary = qemu.binary.clone();
    if !m.nics.is_empty() {
        let net = crate::apps::net_of_image(spec.kernel);
        let backend = Backend::UserForwarded(ports);
        m.nics = nic(spec.board.name, spec.machine, net, backend)
            .into_iter()
            .collect();
    }
    Ok(m)
}

/// Runs QEMU with the terminal attached (`run`), the app's ports forwarded from the host's
/// `ports`: a port that is taken is named, with the option that moves it, before QEMU starts
/// (and if QEMU still cannot forward it, in place of QEMU's message).
pub(crate) fn run_interactive(
    qemu: &Qemu,
    spec: &Spec<'_>,
    ports: crate::hostfwd::HostPorts,
    verbose: bool,
    initrd: Option<&Path>,
) -> Result<QemuEnd> {
    if spec.board.name.starts_with("xen-") {
        // Xen stays up after the domU shuts down, so the console is followed here and QEMU
        // stopped then (Ctrl-C stops it earlier); the domU has no console input yet.
        println!(
            "{}: Xen's console follows; the run ends when the domain shuts down",
            spec.board.name
        );
        return crate::xen::run_captured(qemu, spec, None, Duration::from_secs(24 * 3600), true)
            .map(|c| c.end);
    }
    let mut machine = interactive_machine(qemu, spec, ports)?;
    if let Some(path) = initrd {
        machine.initrd = Some(path.to_string_lossy().into_owned());
    }
    if !machine.nics.is_empty() {
        crate::hostfwd::check_free(ports).or_else(fail)?;
    }
    let mut cmd = machine.command();
    // QEMU's stderr passes through xtask to map its message about a port forward.
    cmd.stderr(Stdio::piped());
    // QEMU's exit status is 0 for Ctrl-a x and for a triple fault alike: its QMP `SHUTDOWN`
    // event tells them apart (qmp.rs says why this way).
    let qmp = crate::qmp::Listener::new()?;
    cmd.args(qmp.qemu_args());
    if verbose {
        println!("$ {}", describe(&cmd));
    }
    println!("Ctrl-A X quits QEMU");
    let mut child = cmd
        .spawn()
        .context(|| format!("cannot start `{}`", describe(&cmd)))?;
    let stderr = child.stderr.take().map(|e| pass_stderr(e, ports));
    let (status, cause) = match qmp.start(&mut child) {
        Ok(crate::qmp::Started::Running(events)) => {
            let status = child.wait().context(|| "waiting for QEMU".to_string())?;
            (status, events.shutdown_cause())
        }
        Ok(crate::qmp::Started::Exited(status)) => (status, None),
        Err(e) => {
            let _ = stderr.map(thread::JoinHandle::join);
            return Err(e);
        }
    };
    let forward_failed = stderr.and_then(|h| h.join().ok().flatten());
    let end = with_shutdown_cause(QemuEnd::from_status(status), cause);
    match forward_failed {
        Some(msg) if end == QemuEnd::Exited(1) => fail(msg),
        _ => Ok(end),
    }
}

/// Copies QEMU's stderr to xtask's, line by line, but for a complaint that it could not
/// forward one of `ports` ([`crate::hostfwd::qemu_message`]), which the thread returns in the
/// words of the port check instead.
fn pass_stderr(
    stderr: ChildStderr,
    ports: crate::hostfwd::HostPorts,
) -> thread::JoinHandle<Option<String>> {
    thread::spawn(move || {
        let mut found = None;
        let mut out = std::io::stderr();
        for line in std::io::BufReader::new(stderr).split(b'\n') {
            let Ok(mut line) = line else { break };
            match crate::hostfwd::qemu_message(&String::from_utf8_lossy(&line), ports) {
                Some(msg) if found.is_none() => found = Some(msg),
                _ => {
                    line.push(b'\n');
                    let _ = out.write_all(&line);
                    let _ = out.flush();
                }
            }
        }
        found
    })
}

/// A child's console read on two threads: its stdout as lines (each with the time since
/// `start` at which it was complete), its stderr whole.
pub(crate) struct LineReaders {
    /// The lines, as they come.
    pub(crate) lines: mpsc::Receiver<(Duration, String)>,
    out: thread::JoinHandle<()>,
    err: thread::JoinHandle<String>,
}

impl LineReaders {
    /// Starts reading.
    pub(crate) fn spawn(mut stdout: ChildStdout, mut stderr: ChildStderr, start: Instant) -> Self {
        let (tx, lines) = mpsc::channel::<(Duration, String)>();
        let out = thread::spawn(move || {
            let mut splitter = LineSplitter::new(None);
            let mut chunk = [0u8; 8192];
            loop {
                let n = match stdout.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let at = start.elapsed();
                for line in splitter.push(&chunk[..n]).0 {
                    if tx.send((at, line)).is_err() {
                        return;
                    }
                }
            }
            if let Some(line) = splitter.finish() {
                let _ = tx.send((start.elapsed(), line));
            }
        });
        let err = thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = stderr.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        });
        LineReaders { lines, out, err }
    }

    /// Once the child has ended: the lines not yet taken (appended to `lines`, echoed with
    /// `echo`) and the whole stderr.
    pub(crate) fn finish(self, lines: &mut Vec<(Duration, String)>, echo: bool) -> String {
        let _ = self.out.join();
        for (at, line) in self.lines.try_iter() {
            if echo {
                println!("{line}");
            }
            lines.push((at, line));
        }
        self.err.join().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boards;

    #[test]
    fn versions() {
        let v = |s| parse_version(s).unwrap();
        assert_eq!(
            v("QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)"),
            Version {
                major: 10,
                minor: 0,
                patch: 2
            }
        );
        assert_eq!(
            v("QEMU emulator version 7.2.15 (Debian 1:7.2+dfsg-7+deb12u12)").major,
            7
        );
        assert_eq!(v("QEMU emulator version 9.1.0").minor, 1);
        assert_eq!(
            v("QEMU emulator version 8.2.2 (Debian 1:8.2.2+ds-0ubuntu1)").patch,
            2
        );
        assert_eq!(
            v("QEMU emulator version 9.0.50 (v9.0.0-1-gdeadbeef)"),
            Version {
                major: 9,
                minor: 0,
                patch: 50
            }
        );
        assert_eq!(v("QEMU emulator version 9").minor, 0);
        assert!(parse_version("").is_none());
        assert!(parse_version("qemu: command not found").is_none());
        assert!(parse_version("QEMU emulator version x.y").is_none());
        assert!(v("QEMU emulator version 9.0.0") > v("QEMU emulator version 8.2.9"));
    }

    const CPU_VMX: &str = "processor\t: 0\nflags\t\t: fpu vme de pse vmx sse2\nbogomips\t: 1\n";
    const CPU_SVM: &str = "flags\t\t: fpu svm lm\n";
    const CPU_NONE: &str =
        "processor\t: 0\nflags\t\t: fpu vme de pse sse2 hypervisor\nvmx flags\t: ept\n";

    #[test]
    fn cpu_flags() {
        assert!(cpu_has_virt(CPU_VMX));
        assert!(cpu_has_virt(CPU_SVM));
        // "vmx flags" lines and substrings like "vmxe" do not count.
        assert!(!cpu_has_virt(CPU_NONE));
        assert!(!cpu_has_virt("flags\t: vmxe svmx\n"));
        assert!(!cpu_has_virt(""));
    }

    #[test]
    fn accel_decisions() {
        let usable = hardware_kvm(&KvmDevice::Opened, CPU_VMX);
        assert_eq!(usable, Ok(()));
        let software = hardware_kvm(&KvmDevice::Opened, CPU_NONE);
        assert_eq!(
            software,
            Err("/dev/kvm present but CPU has no vmx/svm: software KVM, unusable".to_string())
        );
        let missing = hardware_kvm(&KvmDevice::Missing, CPU_VMX);
        assert!(missing.as_ref().unwrap_err().contains("not present"));
        let denied = hardware_kvm(&KvmDevice::NoAccess("Permission denied".into()), CPU_VMX);
        assert!(denied.as_ref().unwrap_err().contains("Permission denied"));

        let d = decide_accel(AccelChoice::Auto, &usable);
        assert_eq!((d.accel, d.warning.is_none()), (Accel::Kvm, true));
        let d = decide_accel(AccelChoice::Auto, &software);
        assert_eq!(d.accel, Accel::Tcg);
        assert!(d.reason.contains("software KVM"));
        let d = decide_accel(AccelChoice::Kvm, &software);
        assert_eq!(d.accel, Accel::Kvm);
        assert!(d.warning.unwrap().contains("software KVM"));
        let d = decide_accel(AccelChoice::Tcg, &usable);
        assert_eq!((d.accel, d.warning), (Accel::Tcg, None));

        assert_eq!(
            accels_to_test(AccelChoice::Auto, &usable),
            [Accel::Tcg, Accel::Kvm]
        );
        assert_eq!(accels_to_test(AccelChoice::Auto, &missing), [Accel::Tcg]);
        assert_eq!(accels_to_test(AccelChoice::Kvm, &missing), [Accel::Kvm]);
        assert_eq!(accels_to_test(AccelChoice::Tcg, &usable), [Accel::Tcg]);
    }

    fn spec<'a>(machine: &'a str, accel: Accel, smp: u32, serial: Serial) -> Spec<'a> {
        Spec {
            board: boards::find("qemu-x86_64").unwrap(),
            machine,
            accel,
            smp,
            mem: "128M",
            kernel: Path::new("/img/hello.elf"),
            serial,
            append: "",
        }
    }

    /// The NIC arguments of [`nic`] with user networking, forwarded or not.
    fn nic_args(
        board: &str,
        machine: &str,
        net: crate::apps::Net,
        forward: bool,
    ) -> Result<Vec<String>> {
        let backend = if forward {
            Backend::UserForwarded(crate::hostfwd::HostPorts::DEFAULT)
        } else {
            Backend::User
        };
        Ok(nic(board, machine, net, backend)
            .map(|n| n.args().to_vec())
            .unwrap_or_default())
    }

    // A flat table of cases (one NIC shape each, read top to bottom): long, but not to split.
    #[test]
    fn nic_lines() {
        use crate::apps::Net;
        assert!(
            nic_args("qemu-x86_64", "q35", Net::None, false)
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            nic_args("qemu-x86_64", "q35", Net::User, false)
                .unwrap()
                .join(" "),
            "-netdev user,id=n0 -device virtio-net-pci,netdev=n0"
        );
        assert!(
            nic_args("qemu-x86_64", "q35", Net::User, true)
                .unwrap()
                .join(" ")
                .contains("hostfwd=tcp:127.0.0.1:8080-:8080")
        );
        assert_eq!(
            nic_args("qemu-x86_64", "microvm", Net::User, false)
                .unwrap()
                .join(" "),
            "-netdev user,id=n0 -device virtio-net-device,netdev=n0"
        );
        for machine in ["virt-gicv2", "virt-gicv3"] {
            assert_eq!(
                nic_args("qemu-aarch64", machine, Net::User, false)
                    .unwrap()
                    .join(" "),
                "-netdev user,id=n0 -device virtio-net-device,netdev=n0"
            );
            let fwd = nic_args("qemu-aarch64", machine, Net::User, true)
                .unwrap()
                .join(" ");
            assert!(
                fwd.starts_with("-netdev user,id=n0,hostfwd=tcp:127.0.0.1:8080-:8080,")
                    && fwd.ends_with(" -device virtio-net-device,netdev=n0"),
                "{fwd}"
            );
            assert!(
                nic_args("qemu-aarch64", machine, Net::None, true)
                    .unwrap()
                    .is_empty()
            );
        }
        // Boards without a virtio-net driver get no NIC.
        assert!(
            nic_args("rpi4", "raspi4b", Net::User, false)
                .unwrap()
                .is_empty()
        );
        // A run of the app with `net = "user"` gets them, after the debug-exit device.
        let q35 = spec("q35", Accel::Tcg, 1, Serial::Captured);
        let kernel = PathBuf::from("/img/net-virtio-smoke.elf");
        let with_net = Spec {
            kernel: &kernel,
            ..q35.clone()
        };
        let line = args(&with_net, None).unwrap().join(" ");
        assert!(
            line.contains(
                "-device isa-debug-exit,iobase=0xf4,iosize=4 -netdev user,id=n0 -device virtio-net-pci,netdev=n0"
            ),
            "{line}"
        );
        let micro = Spec {
            kernel: &kernel,
            ..spec("microvm", Accel::Tcg, 1, Serial::Captured)
        };
        let line = args(&micro, None).unwrap().join(" ");
        assert!(
            line.contains("-device virtio-net-device,netdev=n0"),
            "{line}"
        );
        // Other apps do not; nor does a Linux guest of the same spec.
        assert!(!args(&q35, None).unwrap().join(" ").contains("netdev"));
        let linux = LinuxBoot {
            initrd: Path::new("/img/initrd"),
            append: "console=ttyS0",
        };
        assert!(
            !linux_machine(&with_net, None, &linux)
                .unwrap()
                .args()
                .join(" ")
                .contains("netdev")
        );
    }

    #[test]
    fn nic_on_a_tap() {
        let mut appliance = spec("q35", Accel::Tcg, 1, Serial::Captured);
        appliance.kernel = Path::new("/img/appliance.elf");
        appliance.append = "rhea.net.ip=10.77.20.2/24";
        let (m, nic) = machine_on_tap(&appliance, None, "rhea-net20").unwrap();
        assert_eq!(
            nic.args().join(" "),
            "-netdev tap,id=n0,ifname=rhea-net20,script=no,downscript=no \
             -device virtio-net-pci,netdev=n0"
        );
        assert_eq!(m.nics, [nic]);
        // Everything else is the machine of the same spec.
        let mut user = machine(&appliance, None).unwrap();
        user.nics = m.nics.clone();
        assert_eq!(m, user);
        let line = m.args().join(" ");
        assert!(!line.contains("user,"), "{line}");
        assert!(
            line.ends_with(
                "-device isa-debug-exit,iobase=0xf4,iosize=4 -netdev tap,id=n0,\
                 ifname=rhea-net20,script=no,downscript=no -device virtio-net-pci,netdev=n0 \
                 -append rhea.net.ip=10.77.20.2/24"
            ),
            "{line}"
        );
        // On microvm the device is virtio-mmio's.
        let mut micro = appliance.clone();
        micro.machine = "microvm";
        let (_, nic) = machine_on_tap(&micro, None, "t").unwrap();
        assert_eq!(nic.device, "virtio-net-device,netdev=n0");
        // An app without a NIC cannot be put on a tap.
        let err = machine_on_tap(&spec("q35", Accel::Tcg, 1, Serial::Captured), None, "t")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "/img/hello.elf on board qemu-x86_64 machine q35 has no user-networking NIC to put \
             on tap t"
        );
    }

    #[test]
    fn an_e1000e_nic_on_q35_only() {
        let mut appliance = spec("q35", Accel::Tcg, 1, Serial::Captured);
        appliance.kernel = Path::new("/img/appliance.elf");
        let (_, virtio) = machine_on_tap(&appliance, None, "rhea-net8").unwrap();
        let e = NicModel::E1000e
            .apply(virtio.clone(), "qemu-x86_64", "q35")
            .unwrap();
        assert_eq!(
            e.args().join(" "),
            "-netdev tap,id=n0,ifname=rhea-net8,script=no,downscript=no -device e1000e,netdev=n0,romfile="
        );
        assert_eq!(
            NicModel::Virtio
                .apply(virtio.clone(), "qemu-x86_64", "q35")
                .unwrap(),
            virtio
        );
        let err = NicModel::E1000e
            .apply(virtio, "qemu-x86_64", "microvm")
            .unwrap_err()
            .to_string();
        assert!(err.contains("q35 only"), "{err}");
    }

    #[test]
    fn loaders_and_dumpdtb() {
        let mut m = Machine::new("qemu-system-aarch64", "virt,gic-version=3", "tcg");
        m.load(Path::new("/r/vmlinuz"), 0x5000_0000);
        m.load(Path::new("/r/initrd.cpio"), 0x5800_0000);
        assert_eq!(
            m.args().join(" "),
            "-M virt,gic-version=3 -accel tcg -nodefaults -no-user-config -no-reboot \
             -display none -device loader,file=/r/vmlinuz,addr=0x50000000 \
             -device loader,file=/r/initrd.cpio,addr=0x58000000"
        );
        let mut dump = Machine::new("qemu-system-aarch64", "virt,virtualization=on", "tcg");
        dump.dumpdtb = Some("/r/virt.dtb".into());
        assert_eq!(
            dump.args()[..2],
            ["-M", "virt,virtualization=on,dumpdtb=/r/virt.dtb"]
        );
    }

    #[test]
    fn multiboot_module_lists() {
        let mut m = Machine::new("qemu-system-x86_64", "pc", "tcg");
        m.multiboot_modules(&[
            (Path::new("/r/vmlinuz"), "console=hvc0 a=1,2"),
            (Path::new("/r/initrd.cpio"), ""),
        ])
        .unwrap();
        assert_eq!(
            m.initrd.as_deref(),
            Some("/r/vmlinuz console=hvc0 a=1,,2,/r/initrd.cpio")
        );
        assert_eq!(
            m.args()[m.args().len() - 2..],
            ["-initrd", "/r/vmlinuz console=hvc0 a=1,,2,/r/initrd.cpio"]
        );
        for bad in ["/r,1/initrd", "/r 1/initrd"] {
            let err = m
                .multiboot_modules(&[(Path::new(bad), "")])
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("cannot take a path with a comma or space"),
                "{err}"
            );
        }
    }

    #[test]
    fn deterministic_icount_goes_last() {
        let mut m = Machine::new("qemu-system-aarch64", "virt", "tcg");
        m.extra
            .extend(DETERMINISTIC_ICOUNT.iter().map(|s| s.to_string()));
        let a = m.args();
        assert_eq!(a[a.len() - 2..], ["-icount", "shift=0,sleep=off"]);
    }

    #[test]
    fn command_lines() {
        let qboot = Path::new("/usr/share/qemu/qboot.rom");
        let line = |s: &Spec<'_>, rom| args(s, rom).unwrap().join(" ");
        assert_eq!(
            line(&spec("q35", Accel::Tcg, 1, Serial::Captured), Some(qboot)),
            "-M q35 -bios /usr/share/qemu/qboot.rom -accel tcg -cpu max -nodefaults \
             -no-user-config -no-reboot -display none -m 128M -smp 1 -serial stdio \
             -kernel /img/hello.elf -device isa-debug-exit,iobase=0xf4,iosize=4"
        );
        assert_eq!(
            line(&spec("q35", Accel::Kvm, 2, Serial::Interactive), None),
            "-M q35 -accel kvm -cpu host -nodefaults -no-user-config -no-reboot -display none \
             -m 128M -smp 2 -serial mon:stdio -kernel /img/hello.elf \
             -device isa-debug-exit,iobase=0xf4,iosize=4"
        );
        let microvm = line(
            &spec("microvm", Accel::Tcg, 4, Serial::Captured),
            Some(qboot),
        );
        assert!(
            microvm
                .starts_with("-M microvm,rtc=off,isa-serial=on -accel tcg,thread=multi -cpu max "),
            "{microvm}"
        );
        assert!(!microvm.contains("-bios"));
        assert!(args(&spec("pc", Accel::Tcg, 1, Serial::Captured), None).is_err());
        // A kernel command line goes last, as one argument.
        let mut with_append = spec("q35", Accel::Tcg, 1, Serial::Captured);
        with_append.append = "rhea.checker=1 loops=5";
        let a = args(&with_append, None).unwrap();
        assert_eq!(a[a.len() - 2..], ["-append", "rhea.checker=1 loops=5"]);
        assert_eq!(
            a[..a.len() - 2],
            args(&spec("q35", Accel::Tcg, 1, Serial::Captured), None).unwrap()[..]
        );
    }

    #[test]
    fn arm_command_lines() {
        let arm = |board: &str, machine: &'static str| Spec {
            board: boards::find(board).unwrap(),
            machine,
            accel: Accel::Tcg,
            smp: 1,
            mem: "128M",
            kernel: Path::new("/img/hello.img"),
            serial: Serial::Captured,
            append: "rhea.checker=1",
        };
        assert_eq!(
            args(&arm("qemu-aarch64", "virt-gicv2"), None)
                .unwrap()
                .join(" "),
            "-M virt,gic-version=2 -accel tcg -cpu cortex-a72 -nodefaults -no-user-config \
             -no-reboot -display none -m 128M -smp 1 -serial stdio -kernel /img/hello.img \
             -semihosting-config enable=on,target=native -append rhea.checker=1"
        );
        let v3 = args(&arm("qemu-aarch64", "virt-gicv3"), None).unwrap();
        assert_eq!(
            v3[..6],
            [
                "-M",
                "virt,gic-version=3",
                "-accel",
                "tcg",
                "-cpu",
                "cortex-a72"
            ]
        );
        // KVM is never used for an Arm machine on this host: TCG whatever --accel said.
        let mut kvm = arm("qemu-aarch64", "virt-gicv3");
        kvm.accel = Accel::Kvm;
        assert!(args(&kvm, None).unwrap().join(" ").contains("-accel tcg "));
        // raspi4b: the Pi's devicetree, no -m/-smp (a fixed machine).
        let pi = args(&arm("rpi4", "raspi4b"), None);
        if crate::firmware::rpi4_dtb_path().is_file() {
            let line = pi.unwrap().join(" ");
            assert!(line.starts_with("-M raspi4b -dtb "), "{line}");
            assert!(!line.contains("-smp") && !line.contains(" -m "), "{line}");
        } else {
            assert!(pi.unwrap_err().to_string().contains("bcm2711-rpi-4-b.dtb"));
        }
    }

    #[test]
    fn linux_command_lines() {
        let qboot = Path::new("/usr/share/qemu/qboot.rom");
        let linux = LinuxBoot {
            initrd: Path::new("/lg/initrd.cpio"),
            append: "console=ttyS0 quiet",
        };
        for (machine, rom) in [
            ("q35", Some(qboot)),
            ("microvm", Some(qboot)),
            ("q35", None),
        ] {
            let s = spec(machine, Accel::Tcg, 1, Serial::Captured);
            let rhea = args(&s, rom).unwrap();
            let lin = linux_machine(&s, rom, &linux).unwrap().args();
            // Rhea's flags, then -initrd and -append; only microvm's -M value differs.
            assert_eq!(lin.len(), rhea.len() + 4);
            assert_eq!(
                lin[rhea.len()..],
                [
                    "-initrd",
                    "/lg/initrd.cpio",
                    "-append",
                    "console=ttyS0 quiet"
                ]
            );
            for (i, (l, r)) in lin.iter().zip(&rhea).enumerate() {
                if machine == "microvm" && i == 1 {
                    assert_eq!(l, "microvm,pit=on,pic=on,rtc=on,isa-serial=on");
                } else {
                    assert_eq!(l, r);
                }
            }
        }
    }

    #[test]
    fn nested_kvm_machines() {
        let qboot = Path::new("/usr/share/qemu/qboot.rom");
        // The L2: the KVM line of the same spec, image and firmware as the L1 sees them.
        let kernel = PathBuf::from("/job/images/hello.elf");
        let l2 = Spec {
            kernel: &kernel,
            append: "rhea.checker=1",
            ..spec("q35", Accel::Kvm, 1, Serial::Captured)
        };
        assert_eq!(
            nested_l2_machine(&l2, Some(qboot))
                .unwrap()
                .args()
                .join(" "),
            "-M q35 -bios /usr/share/qemu/qboot.rom -accel kvm -cpu host -nodefaults \
             -no-user-config -no-reboot -display none -m 128M -smp 1 -serial stdio \
             -kernel /job/images/hello.elf -device isa-debug-exit,iobase=0xf4,iosize=4 \
             -append rhea.checker=1"
        );
        let micro = Spec {
            kernel: &kernel,
            ..spec("microvm", Accel::Kvm, 2, Serial::Captured)
        };
        let line = nested_l2_machine(&micro, Some(qboot))
            .unwrap()
            .args()
            .join(" ");
        assert!(
            line.starts_with("-M microvm,rtc=off,isa-serial=on -accel kvm -cpu host ")
                && line.contains(" -smp 2 "),
            "{line}"
        );
        assert!(nested_l2_machine(&spec("q35", Accel::Tcg, 1, Serial::Captured), None).is_err());

        // The L1: the Linux guest of q35 under TCG, 1 vCPU, 1 GiB, then the 9p shares.
        let linux = LinuxBoot {
            initrd: Path::new("/n/initrd.cpio"),
            append: "console=ttyS0 quiet",
        };
        let board = boards::find("qemu-x86_64").unwrap();
        let shares = [
            ("hostusr".to_string(), PathBuf::from("/usr"), true),
            (
                "results".to_string(),
                PathBuf::from("/n/run/results"),
                false,
            ),
        ];
        assert_eq!(nested_l1_type(board, "microvm").unwrap(), "q35");
        let l1 = nested_l1_machine(
            board,
            "q35",
            Some(qboot),
            &linux,
            Path::new("/n/vmlinuz"),
            &shares,
        )
        .unwrap()
        .args()
        .join(" ");
        assert_eq!(
            l1,
            "-M q35 -bios /usr/share/qemu/qboot.rom -accel tcg -cpu max -nodefaults \
             -no-user-config -no-reboot -display none -m 1024M -smp 1 -serial stdio \
             -kernel /n/vmlinuz -device isa-debug-exit,iobase=0xf4,iosize=4 \
             -fsdev local,id=fs0,path=/usr,security_model=none,readonly=on \
             -device virtio-9p-pci,fsdev=fs0,mount_tag=hostusr \
             -fsdev local,id=fs1,path=/n/run/results,security_model=none \
             -device virtio-9p-pci,fsdev=fs1,mount_tag=results \
             -initrd /n/initrd.cpio -append console=ttyS0 quiet"
        );
        // No L1 for a board or machine without one.
        let rpi = boards::find("rpi4").unwrap();
        assert!(nested_l1_type(rpi, "raspi4b").is_err());
        assert!(nested_l1_machine(rpi, "raspi4b", None, &linux, Path::new("/x"), &[]).is_err());
    }

    #[test]
    fn nested_kvm_arm_machines() {
        let arm = boards::find("qemu-aarch64").unwrap();
        // Each L2's GIC is its L1's.
        assert_eq!(nested_l1_type(arm, "virt-gicv2").unwrap(), "virt-gicv2");
        assert_eq!(nested_l1_type(arm, "virt-gicv3").unwrap(), "virt-gicv3");
        assert!(nested_l1_type(arm, "q35").is_err());
        // The L2: KVM with the L1's CPU, no semihosting (the status is the console's).
        let kernel = PathBuf::from("/job/images/hello.img");
        let l2 = Spec {
            board: arm,
            machine: "virt-gicv2",
            accel: Accel::Kvm,
            smp: 2,
            mem: "128M",
            kernel: &kernel,
            serial: Serial::Captured,
            append: "rhea.checker=1",
        };
        assert_eq!(
            nested_l2_machine(&l2, None).unwrap().args().join(" "),
            "-M virt,gic-version=2 -accel kvm -cpu host -nodefaults -no-user-config \
             -no-reboot -display none -m 128M -smp 2 -serial stdio \
             -kernel /job/images/hello.img -append rhea.checker=1"
        );
        // A direct Arm run (TCG on this host) keeps its CPU and semihosting, even when KVM
        // was asked for.
        let direct = machine(&l2, None).unwrap().args().join(" ");
        assert!(
            direct.contains("-accel tcg,thread=multi -cpu cortex-a72 ")
                && direct.contains(" -semihosting-config enable=on,target=native"),
            "{direct}"
        );
        // The L1: virt with EL2 and the L2's GIC, -cpu max, the shares on virtio-mmio.
        let linux = LinuxBoot {
            initrd: Path::new("/n/initrd.cpio"),
            append: "console=ttyAMA0",
        };
        let shares = [("job".to_string(), PathBuf::from("/n/run/job"), true)];
        let l1 = |t| {
            nested_l1_machine(arm, t, None, &linux, Path::new("/n/vmlinuz"), &shares)
                .unwrap()
                .args()
                .join(" ")
        };
        assert_eq!(
            l1("virt-gicv3"),
            "-M virt,virtualization=on,gic-version=3 -accel tcg -cpu max,pauth-impdef=on \
             -nodefaults -no-user-config -no-reboot -display none -m 1024M -smp 1 \
             -serial stdio -kernel /n/vmlinuz \
             -fsdev local,id=fs0,path=/n/run/job,security_model=none,readonly=on \
             -device virtio-9p-device,fsdev=fs0,mount_tag=job \
             -initrd /n/initrd.cpio -append console=ttyAMA0"
        );
        assert!(l1("virt-gicv2").starts_with("-M virt,virtualization=on,gic-version=2 "));
        assert!(nested_l1_machine(arm, "q35", None, &linux, Path::new("/x"), &[]).is_err());
    }

    #[test]
    fn console_exit_statuses() {
        let kvm = "rhea: hypervisor: KVM (SMCCC vendor hypervisor UID); exit status on the console";
        assert_eq!(
            console_exit_status(["rhea: app main", "", "rhea: exit status=33 (success)"]),
            Ok(33)
        );
        assert_eq!(
            console_exit_status(["rhea: exit status=35 (failure)\r"]),
            Ok(35)
        );
        // Another CPU's text in front of it on the line.
        assert_eq!(
            console_exit_status(["worker 3 donerhea: exit status=33 (success)"]),
            Ok(33)
        );
        assert_eq!(
            console_exit_status(["rhea: app main returned (Success)"]),
            Err(ConsoleStatus::Missing)
        );
        assert_eq!(console_exit_status([]), Err(ConsoleStatus::Missing));
        for bad in [
            "rhea: exit status=33 (failure)",
            "rhea: exit status=35 (success)",
            "rhea: exit status=33",
            "rhea: exit status=",
            "rhea: exit status=x (success)",
            "rhea: exit status=33 (success) and more",
        ] {
            assert_eq!(
                console_exit_status([bad]),
                Err(ConsoleStatus::Malformed),
                "{bad}"
            );
        }
        assert_eq!(
            console_exit_status(["rhea: exit status=0 (success)"]),
            Err(ConsoleStatus::Unknown(0))
        );
        assert_eq!(
            console_exit_status([
                "rhea: exit status=33 (success)",
                "rhea: exit status=35 (failure)"
            ]),
            Err(ConsoleStatus::Conflicting)
        );
        // Under KVM: QEMU's 0 becomes the console's status; the KVM line is required; any
        // other end stays.
        let ok = ["rhea: booting", kvm, "rhea: exit status=33 (success)"];
        assert_eq!(arm_kvm_end(QemuEnd::Exited(0), ok), QemuEnd::Exited(33));
        assert_eq!(
            classify(&arm_kvm_end(QemuEnd::Exited(0), ok)),
            Verdict::Success
        );
        let failed = [kvm, "panicked", "rhea: exit status=35 (failure)"];
        assert_eq!(
            classify(&arm_kvm_end(QemuEnd::Exited(0), failed)),
            Verdict::KernelFailure
        );
        let end = arm_kvm_end(QemuEnd::Exited(0), [kvm, "Hello"]);
        assert_eq!(end, QemuEnd::NoConsoleStatus(ConsoleStatus::Missing));
        match classify(&end) {
            Verdict::Other(why) => {
                assert!(why.contains("no `rhea: exit status=` line"), "{why}")
            }
            v => panic!("{v:?}"),
        }
        assert_eq!(
            arm_kvm_end(QemuEnd::Exited(0), ["rhea: exit status=33 (success)"]),
            QemuEnd::NoConsoleStatus(ConsoleStatus::NoKvm)
        );
        let timeout = QemuEnd::Timeout(Duration::from_secs(60));
        assert_eq!(arm_kvm_end(timeout, ok), timeout);
        assert_eq!(arm_kvm_end(QemuEnd::Exited(1), ok), QemuEnd::Exited(1));
        for why in [
            ConsoleStatus::Malformed,
            ConsoleStatus::Conflicting,
            ConsoleStatus::Unknown(7),
            ConsoleStatus::NoKvm,
        ] {
            let end = QemuEnd::NoConsoleStatus(why);
            assert!(matches!(classify(&end), Verdict::Other(_)), "{why:?}");
            assert!(
                end.describe().starts_with("QEMU exited with status 0"),
                "{why:?}"
            );
        }
    }

    #[test]
    fn linux_spec_has_no_rhea_append() {
        let linux = LinuxBoot {
            initrd: Path::new("/lg/initrd.cpio"),
            append: "console=ttyS0",
        };
        let mut s = spec("q35", Accel::Tcg, 1, Serial::Captured);
        s.append = "loops=5";
        assert!(linux_machine(&s, None, &linux).is_err());
    }

    #[test]
    fn splitting_lines() {
        let mut sp = LineSplitter::new(None);
        assert_eq!(sp.push(b"hel"), (vec![], false));
        assert_eq!(sp.push(b"lo\r\nwor"), (vec!["hello".to_string()], false));
        assert_eq!(
            sp.push(b"ld\n\nlast"),
            (vec!["world".to_string(), String::new()], false)
        );
        assert_eq!(sp.finish().as_deref(), Some("last"));
        let mut sp = LineSplitter::new(None);
        sp.push(b"done\n");
        assert_eq!(sp.finish(), None);
        // Invalid UTF-8 is replaced, not fatal.
        let mut sp = LineSplitter::new(None);
        assert_eq!(sp.push(b"a\xffb\n").0, ["a\u{fffd}b"]);
    }

    #[test]
    fn spotting_the_marker() {
        // In a complete line, once.
        let mut sp = LineSplitter::new(Some("ready>"));
        assert_eq!(sp.push(b"boot\n"), (vec!["boot".to_string()], false));
        assert_eq!(
            sp.push(b"x ready> y\n"),
            (vec!["x ready> y".to_string()], true)
        );
        assert!(!sp.push(b"ready>\n").1);
        // In a prompt without a newline, split across chunks.
        let mut sp = LineSplitter::new(Some("login: "));
        assert!(!sp.push(b"host log").1);
        assert!(sp.push(b"in: ").1);
        assert_eq!(
            sp.push(b"root\n"),
            (vec!["host login: root".to_string()], false)
        );
        // Not across lines.
        let mut sp = LineSplitter::new(Some("ab"));
        assert!(!sp.push(b"a\nb\n").1);
        let feed = StdinFeed {
            text: "go\n".to_string(),
            after: Some("ready".to_string()),
        };
        assert_eq!(feed.describe(), "\"go\\n\" after \"ready\"");
    }

    /// A stand-in for QEMU: a shell script on a pipe, run through the captured-run machinery.
    fn shell(script: &str, feed: Option<&StdinFeed>) -> Captured {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        run_command_captured(cmd, feed, Duration::from_secs(20), false).unwrap()
    }

    #[test]
    fn feeding_stdin() {
        let after = StdinFeed {
            text: "hello there\n".to_string(),
            after: Some("ready>".to_string()),
        };
        // Written only after the prompt (no newline), then echoed back.
        let c = shell(
            "echo booting; printf 'ready> '; read x; echo; echo \"got [$x]\"; exit 3",
            Some(&after),
        );
        let lines: Vec<&str> = c.lines.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(lines, ["booting", "ready> ", "got [hello there]"]);
        assert_eq!(c.end, QemuEnd::Exited(3));
        assert!(c.stdin_written.is_some());
        // At once.
        let now = StdinFeed {
            text: "abc\n".to_string(),
            after: None,
        };
        let c = shell("read x; echo \"got [$x]\"", Some(&now));
        assert_eq!(c.console(), "got [abc]\n");
        // The marker never appears: nothing is written (and stdin stays open, no EOF).
        let c = shell(
            "echo other; timeout 1 head -c 1; echo \"rc $?\"",
            Some(&after),
        );
        assert_eq!(c.stdin_written, None);
        assert_eq!(c.console(), "other\nrc 124\n");
        // A text larger than a pipe holds, taken slowly, while the console keeps flowing.
        let big = StdinFeed {
            text: "x".repeat(200_000),
            after: Some("go".to_string()),
        };
        let c = shell(
            "echo go; sleep 0.2; echo still here; head -c 200000 | wc -c",
            Some(&big),
        );
        let lines: Vec<&str> = c.lines.iter().map(|(_, l)| l.trim()).collect();
        assert_eq!(lines, ["go", "still here", "200000"]);
        // Without a feed stdin is /dev/null: `read` sees end of file at once.
        let c = shell("read x; echo \"rc $?\"", None);
        assert_eq!(c.console(), "rc 1\n");
        assert_eq!(c.stdin_written, None);
    }

    #[test]
    fn exit_statuses() {
        assert_eq!(STATUS_SUCCESS, 33);
        assert_eq!(STATUS_FAILURE, 35);
        assert_eq!(classify(&QemuEnd::Exited(33)), Verdict::Success);
        assert_eq!(classify(&QemuEnd::Exited(35)), Verdict::KernelFailure);
        let other = |end| match classify(&end) {
            Verdict::Other(why) => why,
            v => panic!("{v:?}"),
        };
        assert!(other(QemuEnd::Exited(0)).contains("status 0"));
        assert!(other(QemuEnd::Exited(1)).contains("QEMU error"));
        assert!(other(QemuEnd::Exited(7)).contains("0x3"));
        assert!(other(QemuEnd::Exited(2)).contains("status 2"));
        assert!(other(QemuEnd::Signaled(9)).contains("signal 9"));
        assert_eq!(
            other(QemuEnd::Timeout(Duration::from_secs(60))),
            "TIMEOUT after 60s"
        );
        assert_eq!(
            QemuEnd::Timeout(Duration::from_secs(5)).describe(),
            "TIMEOUT after 5s"
        );
    }

    /// `run`: QEMU exits 0 for Ctrl-a x and for a triple fault under -no-reboot; the cause
    /// of its QMP SHUTDOWN event tells them apart, and the kernel's own statuses (which end
    /// QEMU with no such event) stay as they are.
    #[test]
    fn a_quit_is_not_a_triple_fault() {
        let quit = with_shutdown_cause(QemuEnd::Exited(0), Some(ShutdownCause::Quit));
        assert_eq!(quit, QemuEnd::Shutdown(ShutdownCause::Quit));
        assert_eq!(quit.describe(), "quit (Ctrl-a x)");
        let reset = with_shutdown_cause(QemuEnd::Exited(0), Some(ShutdownCause::GuestReset));
        match classify(&reset) {
            Verdict::Other(why) => assert!(why.contains("triple fault"), "{why}"),
            v => panic!("{v:?}"),
        }
        assert!(!reset.describe().contains("Ctrl-a"), "{}", reset.describe());
        match classify(&with_shutdown_cause(
            QemuEnd::Exited(0),
            Some(ShutdownCause::Signal),
        )) {
            Verdict::Other(why) => assert!(why.contains("signal"), "{why}"),
            v => panic!("{v:?}"),
        }
        // No event: as before.
        assert_eq!(
            with_shutdown_cause(QemuEnd::Exited(0), None),
            QemuEnd::Exited(0)
        );
        // The kernel's statuses and QEMU's errors win over any event.
        for code in [STATUS_SUCCESS, STATUS_FAILURE, 1] {
            assert_eq!(
                with_shutdown_cause(QemuEnd::Exited(code), Some(ShutdownCause::Quit)),
                QemuEnd::Exited(code)
            );
        }
        assert_eq!(
            with_shutdown_cause(QemuEnd::Signaled(9), Some(ShutdownCause::Signal)),
            QemuEnd::Signaled(9)
        );
    }
}
