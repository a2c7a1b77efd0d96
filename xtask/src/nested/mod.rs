//! Nested KVM: Rhea booted under a real Linux KVM one level down (`cargo xtask test --accel
//! nested-kvm`), on a host whose own `/dev/kvm` cannot be used (kvm-pvm here, or none), or
//! whose instruction set is not the board's (arm64 on this x86_64 host).
//!
//! QEMU under TCG emulates a CPU with hardware virtualisation (x86_64: AMD SVM with nested
//! paging, `-cpu max`; arm64: EL2 with VHE, `-M virt,virtualization=on -cpu max`), so a Linux
//! booted in it (the L1) runs a real KVM; Rhea then runs as that KVM's guest (an L2), started
//! by a QEMU of the L1's architecture from inside the L1. One L1 runs every L2 of its machine
//! one after another and powers off; xtask then reads each L2's console and exit status and
//! hands them back as if it had booted them itself ([`qemu::Captured`]), so `test` judges
//! them exactly as it judges a TCG boot. x86_64 needs one L1 (q35) for q35 and microvm L2s;
//! arm64 one per GIC version (`qemu::nested_l1_type`), because KVM on Arm gives a guest only
//! the GIC its host has: a GICv3 L1 refuses a GICv2 L2 ("KVM does not support GICv2
//! emulation": QEMU's emulated GICv3 has no GICv2-compatible CPU interface), and a GICv2 L1
//! (QEMU's GICv2 with its virtualization extensions) has no vGICv3. Both run, one after the
//! other.
//!
//! The L1 ([`L1Kind`]), cached under `target/nested-kvm/<arch>/` (its packages in the shared
//! `.deb` cache of `guest::debian`):
//!
//! * Kernel: Debian's generic `linux-image-amd64` / `linux-image-arm64` flavour (the
//!   versioned package it names), booted as the Linux-guest machine of the board
//!   (`qemu::nested_l1_machine`: `-accel tcg -smp 1 -m 1024M`; x86_64 q35 with qboot and
//!   `console=ttyS0 ... tsc=reliable`; arm64 virt with EL2 and the L2s' GIC, `-cpu
//!   max,pauth-impdef=on`, `console=ttyAMA0`).
//! * Initramfs (`guest::cpio`): `busybox-static` of its architecture, `/init`
//!   (`xtask/guest/nested-l1-init.sh`), the modules KVM and the 9p shares need, numbered in
//!   load order (`guest::modules`: x86_64 kvm-amd with kvm, irqbypass, ccp, then virtio-pci;
//!   arm64 has KVM built in, then virtio-mmio; 9pnet-virtio, 9p with theirs), and `/lib`,
//!   `/lib64` leading into `/usr`.
//! * Shares (virtio-9p, on PCI for x86_64, on virtio-mmio for arm64): a `/usr` read-only
//!   ([`L1Usr`]), a job directory (read-only) with the images and the job list, a results
//!   directory. Their files and the L1's console lines are [`jobs`]'. x86_64's `/usr` is the
//!   host's (the L1 runs the host's QEMU binary, its libraries, firmware at their own paths:
//!   nothing is copied). arm64's cannot be (the host's is amd64): it is Debian's arm64 QEMU of
//!   the host's line (`qemu-system-arm` from bookworm-backports, 10.0.2) with the `lib*`
//!   packages of its dependencies, recursively (~50 packages), unpacked once into the
//!   merged-`/usr` tree `target/nested-kvm/aarch64/sysroot` ([`prepare_usr`]), whose `usr/`
//!   is shared; the QEMU's loader and every library it needs are checked to be there first.
//!
//! Each L2's command line is `qemu::nested_l2_machine`'s: the KVM line of the same board,
//! machine, vCPUs and memory (`-accel kvm -cpu host`; on arm64 without semihosting), with the
//! image as the L1 sees it. An L2's exit status ([`L2Status`]) is its QEMU's on x86_64
//! (`isa-debug-exit`); on arm64 KVM serves no semihosting, QEMU exits 0 after PSCI
//! `SYSTEM_OFF` whatever happened, and the status is Rhea's console line instead
//! (`qemu::arm_kvm_end`): `rhea: exit status=33 (success)` or `35 (failure)`, and Rhea must
//! also have said `rhea: hypervisor: KVM` (its SMCCC discovery found KVM's UID). A missing,
//! malformed or conflicting status line, or no KVM line, fails the case.
//!
//! Failures: a host without the means (QEMU, a merged `/usr`, the packages) gives
//! [`NotRun`] with the reason, and no case runs. An L1 that does not come up, has no
//! `/dev/kvm` or ends early fails each boot it did not finish, with the reason and the L1's
//! console tail; never a pass. A watchdog stops an L1 that is not ready in time or whose L2
//! outlives its timeout by [`L2_SLACK`] (the L1 itself stalled); a fresh L1 runs the boots
//! left, the stalled one among them once more (said on the console: an L2 cannot stop its
//! L1's own processes, so this is a fault of the emulated hypervisor below Rhea). A second
//! stall on the same boot fails it with what it printed so far.
//!
//! One run at a time: a lock file under `target/nested-kvm/`. Within a run, one L1 per (L1
//! machine, L2 machine) — x86_64: a q35 L1 for the microvm L2s and one for the q35 L2s;
//! arm64: a GICv2 and a GICv3 L1 — two at a time ([`L1_LANES`]), each in its own folder
//! `run-<l1>-<l2>`: an L1 is one TCG vCPU, so one alone left the second core idle (CI,
//! 2026-12-07: the nested step took 628 s with the L1s one after the other).
//!
//! Measured on the 2-core host (2026-12-07, packages cached), x86_64: the L1 is `ready`
//! 5.3-5.8 s after its QEMU starts and powers off ~3 s after its last L2; an L2 of a one-CPU
//! test takes 1.8-2.4 s on microvm and 0.9-1.5 s on q35 (QEMU's start in the L1 included),
//! `smp-stress` 20-27 s per case. Every `test = true` app's case on qemu-x86_64 (68 boots) is
//! ~245 s of L2 time. Rhea sees `hypervisor=KVM`, TSC-deadline and x2APIC there. Known limit:
//! in 4 of 13 `smp-stress` boots (smp2 and smp4, microvm and q35) the whole L1 stopped (its
//! own `timeout` of the L2 never fired, its console copier stopped), each time in the same
//! phase: after "cross-CPU calls ran where aimed", while a thread is moved between CPUs
//! thousands of times; 1 in 18 after the TLB shootdowns of a preempted vCPU were left to KVM
//! (`KVM_FEATURE_PV_TLB_FLUSH`) — so not (only) a shootdown waiting for a vCPU the L1 does not
//! run. The watchdog (kill the L1 when an L2 outlives its timeout, boot a fresh L1 for the
//! rest, the stalled boot again once) keeps a single stall from failing the suite; CI
//! (2026-12-07) met two in a row on microvm smp2, so `smp-stress` carries `skip-on` for both
//! x86 machines under nested KVM (its Arm nested cases run).
//!
//! arm64 (same day and host, QEMU under `nice -n 10`): the first run downloads and unpacks the
//! arm64 QEMU closure (~60 `apt-get download`s, ~1 min); then each L1 (GICv2 and GICv3 alike)
//! is `ready` 2.0-2.4 s after its QEMU starts (a `quiet` kernel, nothing to load but three
//! modules). An L2 of a one-CPU test takes 1.2-2.2 s (QEMU's start in the L1 included; `hello`
//! 1.2 s), `irq-mask smp2` 5.7 s, `net-virtio-smoke` 6.4 s, `lock-preempt` 17 s,
//! `smp-stress` 25-57 s (smp4 faster than smp2). Every `test = true` app's case on
//! qemu-aarch64 (38 boots per GIC, 76 in all) passed in one run: 164 s in the GICv2 L1 and
//! 189 s in the GICv3 L1, from their QEMU's start to their power-off. Rhea sees `-cpu host` as
//! TCG's `max` (MIDR 0x000f0510, LSE, 52-bit PA), a 1 GHz counter, and finds KVM by its UID.

pub(crate) mod jobs;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::guest::cpio::Tree;
use crate::guest::debian::{self, DebArch, Debs, Members};
use crate::guest::{self, modules};
use crate::qemu::{self, Captured, LinuxBoot, QemuEnd, StdinFeed};
use crate::{Context, Error, Result, boards::Board, setup};

/// What an L1 of one architecture is made of.
#[derive(Debug)]
struct L1Kind {
    /// The Debian architecture of its kernel and busybox.
    deb_arch: DebArch,
    /// The kernel flavour (`linux-image-<flavour>` names the versioned package).
    flavour: &'static str,
    /// The modules it loads, with those they depend on (`guest::modules`).
    modules: &'static [&'static str],
    /// What is unpacked from the kernel package besides [`COMMON_KERNEL_MEMBERS`]: the
    /// directories its own modules are in (`*` within one path component).
    kernel_members: &'static [&'static str],
    /// The L1's kernel command line.
    append: &'static str,
    /// Where the L1's `/usr`, with the QEMU that runs the L2s, comes from.
    usr: L1Usr,
    /// How an L2 reports its exit status.
    l2_status: L2Status,
    /// The L1's NIC (`-device`), given one when an L2 serves the host ([`Forward`]).
    nic_device: &'static str,
}

/// The L1's `/usr`, shared read-only over 9p.
#[derive(Debug)]
enum L1Usr {
    /// The host's own: the L1 runs the host's QEMU binary (an x86_64 host on x86_64).
    Host,
    /// Debian's packages of the L1's architecture unpacked into a merged-`/usr` tree under the
    /// L1's directory ([`prepare_usr`]): `qemu` (`<pkg>/<release>`) with the libraries it
    /// needs, directly or not; the L2s run its `binary`.
    Debian {
        qemu: &'static str,
        binary: &'static str,
    },
}

/// How an L2's exit status reaches xtask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum L2Status {
    /// As QEMU's exit status (`isa-debug-exit` on x86).
    QemuExit,
    /// As Rhea's console line (`qemu::console_exit_status`): KVM on Arm serves no semihosting,
    /// and QEMU exits 0 after PSCI `SYSTEM_OFF` whatever the status.
    ConsoleLine,
}

/// What every L1 unpacks from its kernel package besides its own: the kernel, the builtin
/// list, virtio and 9p over it (the shares), virtio-net (the NIC of a forwarded L2).
const COMMON_KERNEL_MEMBERS: &[&str] = &[
    "./boot/vmlinuz-*",
    "./lib/modules/*/modules.builtin",
    "./lib/modules/*/kernel/drivers/virtio/*.ko",
    "./lib/modules/*/kernel/fs/9p/*.ko",
    "./lib/modules/*/kernel/fs/netfs/*.ko",
    "./lib/modules/*/kernel/fs/fscache/*.ko",
    "./lib/modules/*/kernel/net/9p/*.ko",
    "./lib/modules/*/kernel/drivers/net/virtio_net.ko",
    "./lib/modules/*/kernel/drivers/net/net_failover.ko",
    "./lib/modules/*/kernel/net/core/failover.ko",
];

/// x86_64: Debian's generic kernel (KVM as modules); KVM for AMD SVM (what TCG emulates), the
/// virtio-pci transport and 9p over it; the host's `/usr`.
const X86_64_L1: L1Kind = L1Kind {
    deb_arch: DebArch::Amd64,
    flavour: "amd64",
    modules: &["kvm_amd", "virtio_pci", "9pnet_virtio", "9p", "virtio_net"],
    kernel_members: &[
        "./lib/modules/*/kernel/arch/x86/kvm/*.ko",
        "./lib/modules/*/kernel/virt/lib/*.ko",
        "./lib/modules/*/kernel/drivers/crypto/ccp/*.ko",
    ],
    append: "console=ttyS0 panic=-1 quiet tsc=reliable",
    usr: L1Usr::Host,
    l2_status: L2Status::QemuExit,
    nic_device: "virtio-net-pci",
};

/// arm64: Debian's arm64 kernel (KVM built in, VHE on TCG's `-cpu max`), the virtio-mmio
/// transport and 9p over it; the host's `/usr` is amd64, so the L1's is Debian's arm64 QEMU
/// of the host's line (10.0 from bookworm-backports) with its libraries.
const ARM64_L1: L1Kind = L1Kind {
    deb_arch: DebArch::Arm64,
    flavour: "arm64",
    modules: &["virtio_mmio", "9pnet_virtio", "9p", "virtio_net"],
    // KVM is built in: nothing of its own.
    kernel_members: &[],
    append: "console=ttyAMA0 panic=-1 quiet",
    usr: L1Usr::Debian {
        qemu: "qemu-system-arm/bookworm-backports",
        binary: "/usr/bin/qemu-system-aarch64",
    },
    l2_status: L2Status::ConsoleLine,
    nic_device: "virtio-net-device",
};

/// The folder of the L1 of machine `l1_type` that runs the L2s of machine `l2_machine`
/// (under `target/nested-kvm/<arch>/`).
fn run_dir_name(l1_type: &str, l2_machine: &str) -> String {
    format!("run-{l1_type}-{l2_machine}")
}

/// Where the L1 copies the console of boot `index` (0-based, among the run's boots on
/// `machine`) of a run on `board` while that L2 runs (every second; removed when it ends, the
/// whole console then in `console`).
pub(crate) fn live_console(board: &Board, machine: &str, index: usize) -> Result<PathBuf> {
    let l1_type = qemu::nested_l1_type(board, machine)?;
    Ok(guest::target_dir()
        .join("nested-kvm")
        .join(board.arch())
        .join(run_dir_name(l1_type, machine))
        .join("results")
        .join(jobs::job_id(index))
        .join("console.partial"))
}

/// Whether `board` has a nested-KVM L1; `Err` says which boards do.
pub(crate) fn has_l1(board: &Board) -> Result<(), NotRun> {
    l1_kind(board).map(|_| ())
}

/// The L1 of `board`, if it has one.
fn l1_kind(board: &Board) -> Result<&'static L1Kind, NotRun> {
    match board.name {
        "qemu-x86_64" => Ok(&X86_64_L1),
        "qemu-aarch64" => Ok(&ARM64_L1),
        other => Err(NotRun(format!(
            "no nested-KVM L1 for board {other} (qemu-x86_64 and qemu-aarch64 only)"
        ))),
    }
}

const BUSYBOX_PKG: &str = "busybox-static";
/// The L1's `/init`.
const INIT_SCRIPT: &str = include_str!("../../guest/nested-l1-init.sh");
/// Where the initramfs holds the modules (`/init` loads `*.ko` sorted).
const GUEST_MODULE_DIR: &str = "modules";
/// Where the L1 mounts the job share; the images are under its `images/`.
const L1_JOB_DIR: &str = "/job";
/// The 9p tags, as `/init` mounts them.
const TAG_USR: &str = "hostusr";
const TAG_JOB: &str = "job";
const TAG_RESULTS: &str = "results";
/// How long the L1 may take from QEMU's start to `ready` (measured ~12 s on an idle 2-core
/// host; generous for a loaded one).
const L1_BOOT_BUDGET: Duration = Duration::from_secs(240);
/// Per L2, on top of its own timeout: starting QEMU in the L1 (~1-1.4 s), copying results.
const L2_SLACK: Duration = Duration::from_secs(20);
/// How many L1s run at once (see `run`): the host's two cores.
const L1_LANES: usize = 2;
/// L1 console lines quoted when a boot fails for want of the L1.
const TAIL_LINES: usize = 25;

/// One L2 boot asked for: the spec of a KVM run (its `kernel` the image on the host).
#[derive(Debug, Clone)]
pub(crate) struct Boot<'a> {
    pub(crate) spec: qemu::Spec<'a>,
    pub(crate) timeout: Duration,
    pub(crate) stdin: Option<&'a StdinFeed>,
    /// The host ports the appliance's are forwarded from (through the L1), if the host
    /// talks to this L2.
    pub(crate) forward: Option<Forward>,
}

/// Host ports (on 127.0.0.1) that reach an L2's appliance: `http` its status page (8080),
/// `echo` its echo service (7, TCP and UDP). The L1 gets a NIC on QEMU's user networking that
/// forwards them to the L1's ports 8080 and 7007, where the L2's QEMU (user networking
/// again) forwards them on to the L2: two hops of port forwarding, no bridge, no root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Forward {
    pub(crate) http: u16,
    pub(crate) echo: u16,
}

/// The L1's user network, its address there (as `/init` sets it) and the ports its L2's QEMU
/// forwards to the L2's appliance. Not QEMU's default 10.0.2.0/24: that is the L2's network
/// too, and the L2's QEMU sends anything addressed inside its own network to the L1's
/// loopback — the L2's UDP replies to the L1's gateway (10.0.2.2) never left the L1.
const L1_NET: &str = "10.0.3.0/24";
const L1_ADDR: &str = "10.0.3.15";
const L1_HTTP: u16 = 8080;
const L1_ECHO: u16 = 7007;

/// The L1's NIC for `forward`.
fn l1_nic(kind: &L1Kind, f: Forward) -> qemu::Nic {
    qemu::Nic {
        netdev: format!(
            "user,id=l1n,net={L1_NET},hostfwd=tcp:127.0.0.1:{}-{L1_ADDR}:{L1_HTTP},\
             hostfwd=tcp:127.0.0.1:{}-{L1_ADDR}:{L1_ECHO},\
             hostfwd=udp:127.0.0.1:{}-{L1_ADDR}:{L1_ECHO}",
            f.http, f.echo, f.echo
        ),
        device: format!("{},netdev=l1n", kind.nic_device),
    }
}

/// Why nothing could run: the host lacks the means (QEMU, a merged `/usr`, a package).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NotRun(pub(crate) String);

/// What one run gave.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// Per boot, in the order asked: its capture (console, end, the L2's wall time in the
    /// L1), or why it has none (the L1 failed), with the L1's console tail.
    pub(crate) boots: Vec<Result<Captured, String>>,
    /// Each L1 machine's runs, in the order first asked for.
    pub(crate) l1s: Vec<L1Summary>,
}

/// The runs of one L1 machine (`qemu::nested_l1_type`).
#[derive(Debug)]
pub(crate) struct L1Summary {
    /// Its machine (`q35`, `virt-gicv3`, ...).
    pub(crate) machine: &'static str,
    /// How many L2 boots it was given.
    pub(crate) l2_boots: usize,
    /// From the L1's QEMU spawn to its `ready` line, if it came.
    pub(crate) ready: Option<Duration>,
    /// The L1 runs, all of them.
    pub(crate) total: Duration,
    /// How the last L1's QEMU ended.
    pub(crate) end: QemuEnd,
    /// How many L1s were booted (more than one when an L1 stalled and was replaced).
    pub(crate) boots: usize,
}

/// Boots the L1s of `board` and every boot of `boots` in one of them: one L1 per machine the
/// L2s need (`qemu::nested_l1_type`: on Arm the L1's GIC is the L2's), one after another.
pub(crate) fn run(board: &Board, boots: &[Boot<'_>], verbose: bool) -> Result<Outcome, NotRun> {
    let not_run = |e: Error| NotRun(e.to_string());
    let kind = l1_kind(board)?;
    let host_qemu = setup::ensure_qemu(board).map_err(not_run)?;
    if let L1Usr::Host = kind.usr {
        check_merged_usr()?;
    }
    let top = guest::target_dir().join("nested-kvm");
    guest::mkdir(&top).map_err(not_run)?;
    let _lock = lock(&top).map_err(not_run)?;
    let dir = top.join(board.arch());
    let l1 = prepare_l1(kind, &dir).map_err(not_run)?;
    // The L1's /usr on the host, the L2s' QEMU and q35's firmware as the L1 sees them.
    let (usr, binary, qboot) = match kind.usr {
        L1Usr::Host => (
            PathBuf::from("/usr"),
            host_binary_in_usr(&host_qemu.binary)?,
            // qboot is the host's, under /usr: the same path in the L1.
            host_qemu.qboot.clone().filter(|p| p.starts_with("/usr/")),
        ),
        L1Usr::Debian { qemu, binary } => {
            let usr = prepare_usr(kind.deb_arch, qemu, binary, &dir).map_err(not_run)?;
            (usr, binary.to_string(), None)
        }
    };
    // One L1 per (L1 machine, L2 machine): the L1s run two at a time, one per host core (an
    // L1 is one TCG vCPU: one alone leaves the other core idle). Measured on CI (2026-12-07):
    // the nested step took 628 s with the L1s one after the other.
    let mut keys = Vec::new();
    for boot in boots {
        let t = qemu::nested_l1_type(board, boot.spec.machine).map_err(not_run)?;
        keys.push((t, boot.spec.machine));
    }
    let mut order: Vec<(&'static str, &str)> = Vec::new();
    for k in &keys {
        if !order.contains(k) {
            order.push(*k);
        }
    }
    type GroupResult = Result<(Vec<Result<Captured, String>>, L1Summary), NotRun>;
    let done: std::sync::Mutex<Vec<Option<GroupResult>>> =
        std::sync::Mutex::new(order.iter().map(|_| None).collect());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let lane = || {
        loop {
            let g = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(&(l1_type, l2_machine)) = order.get(g) else {
                return;
            };
            let members: Vec<usize> = (0..boots.len()).filter(|&i| keys[i] == order[g]).collect();
            let group: Vec<Boot<'_>> = members.iter().map(|&i| boots[i].clone()).collect();
            let setup = L1Setup {
                kind,
                board,
                l1_type,
                l1: &l1,
                host_qemu: &host_qemu,
                usr: &usr,
                binary: &binary,
                qboot: qboot.as_deref(),
                dir: &dir,
                run: run_dir_name(l1_type, l2_machine),
            };
            let r = run_type(&setup, &group, verbose);
            done.lock().unwrap_or_else(|e| e.into_inner())[g] = Some(r);
        }
    };
    thread::scope(|sc| {
        for _ in 0..L1_LANES.min(order.len()) {
            sc.spawn(lane);
        }
    });
    let mut results: Vec<Option<Result<Captured, String>>> = boots.iter().map(|_| None).collect();
    let mut l1s = Vec::new();
    let done = done.into_inner().unwrap_or_else(|e| e.into_inner());
    for (g, r) in done.into_iter().enumerate() {
        let (captures, summary) = r.ok_or_else(|| NotRun("an L1 lane ended early".into()))??;
        let members = (0..boots.len()).filter(|&i| keys[i] == order[g]);
        for (i, c) in members.zip(captures) {
            results[i] = Some(c);
        }
        l1s.push(summary);
    }
    let boots = results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err("not run by any L1".to_string())))
        .collect();
    Ok(Outcome { boots, l1s })
}

/// What every L1 of one run shares.
struct L1Setup<'a> {
    kind: &'static L1Kind,
    board: &'a Board,
    /// The L1's machine (`qemu::nested_l1_type`).
    l1_type: &'static str,
    l1: &'a L1,
    host_qemu: &'a qemu::Qemu,
    /// The L1's `/usr` on the host.
    usr: &'a Path,
    /// The L2s' QEMU and q35's firmware, as the L1 sees them.
    binary: &'a str,
    qboot: Option<&'a Path>,
    dir: &'a Path,
    /// This L1's own folder under `dir` (its job list and results).
    run: String,
}

/// Boots the L1 of machine `s.l1_type` and every boot of `boots` in it (a fresh L1 for those
/// left when one stalls); the captures in the order of `boots`.
fn run_type(
    s: &L1Setup<'_>,
    boots: &[Boot<'_>],
    verbose: bool,
) -> Result<(Vec<Result<Captured, String>>, L1Summary), NotRun> {
    let not_run = |e: Error| NotRun(e.to_string());
    let kind = s.kind;
    let run_dir = s.dir.join(&s.run);
    let (job_dir, results_dir) = (run_dir.join("job"), run_dir.join("results"));
    let ids = write_jobs(&job_dir, &results_dir, boots, s.binary, s.qboot).map_err(not_run)?;

    let shares = [
        (TAG_USR.to_string(), s.usr.to_path_buf(), true),
        (TAG_JOB.to_string(), job_dir.clone(), true),
        (TAG_RESULTS.to_string(), results_dir.clone(), false),
    ];
    let linux = LinuxBoot {
        initrd: &s.l1.initrd,
        append: kind.append,
    };
    let mut machine = qemu::nested_l1_machine(
        s.board,
        s.l1_type,
        s.host_qemu.qboot.as_deref(),
        &linux,
        &s.l1.vmlinuz,
        &shares,
    )
    .map_err(not_run)?;
    machine.binary = s.host_qemu.binary.clone();
    let forwards: Vec<Forward> = boots.iter().filter_map(|b| b.forward).collect();
    if let Some(&f) = forwards.first() {
        if forwards.iter().any(|&g| g != f) {
            return Err(NotRun(
                "the L2s of one L1 ask for different forwarded ports".to_string(),
            ));
        }
        machine.nics.push(l1_nic(kind, f));
    }
    println!(
        "nested-kvm: L1 {} on {} under TCG, {} L2 boot(s) on {}",
        s.l1.kernel_package,
        s.l1_type,
        boots.len(),
        boots.first().map_or("-", |b| b.spec.machine)
    );
    let mut results: Vec<Option<Result<Captured, String>>> = boots.iter().map(|_| None).collect();
    let mut pending: Vec<usize> = (0..boots.len()).collect();
    let (mut l1_ready, mut l1_total, mut l1_end) = (None, Duration::ZERO, QemuEnd::Exited(0));
    let mut l1_boots = 0;
    // The L1's console tail goes with the first boot that failed for want of the L1.
    let mut tail_shown = false;
    // The boots already run again after an L1 stalled on them.
    let mut retried = std::collections::HashSet::new();
    while !pending.is_empty() {
        let limits: Vec<(String, Duration)> = pending
            .iter()
            .map(|&i| (ids[i].clone(), boots[i].timeout + L2_SLACK))
            .collect();
        let pending_ids: Vec<String> = limits.iter().map(|(id, _)| id.clone()).collect();
        let list = job_dir.join("list");
        fs::write(&list, jobs::list_file(&pending_ids))
            .context(|| format!("cannot write {}", list.display()))
            .map_err(not_run)?;
        let interactive = boots
            .iter()
            .any(|b| b.spec.serial == qemu::Serial::Interactive);
        let run = if interactive {
            run_l1_attached(&machine, verbose)
        } else {
            run_l1(&machine, &limits, verbose)
        }
        .map_err(not_run)?;
        l1_boots += 1;
        let captured = &run.captured;
        let report = jobs::parse_l1_console(captured.lines.iter().map(|(_, l)| l.as_str()));
        if l1_ready.is_none() {
            l1_ready = captured
                .lines
                .iter()
                .find(|(_, l)| l.contains(&format!("{}ready", jobs::MARK)))
                .map(|(t, _)| *t);
        }
        l1_total += captured.elapsed;
        l1_end = captured.end;
        let mut next = Vec::new();
        for &i in &pending {
            let id = &ids[i];
            let collected = collect(&results_dir, id, boots[i].timeout);
            if matches!(collected, Err(Missing::Result)) {
                let first_stall = !retried.contains(&i);
                let started = report.started.contains(id);
                match no_result(
                    id,
                    run.stalled.as_deref(),
                    report.ready,
                    started,
                    first_stall,
                ) {
                    NoResult::RunAgain => {
                        next.push(i);
                        continue;
                    }
                    NoResult::Retry => {
                        println!(
                            "nested-kvm: the L1 stalled while {} (-smp {}, {}) ran; it runs once more in a fresh L1",
                            boots[i]
                                .spec
                                .kernel
                                .file_name()
                                .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
                            boots[i].spec.smp,
                            boots[i].spec.machine
                        );
                        retried.insert(i);
                        next.push(i);
                        continue;
                    }
                    NoResult::Fail => {}
                }
            }
            let result = match collected {
                // An interactive L2's console went to the terminal: nothing to read back.
                Ok(c) if kind.l2_status == L2Status::ConsoleLine && !interactive => {
                    Ok(status_from_console(c))
                }
                Ok(c) => Ok(c),
                Err(Missing::Broken(why)) => Err(why),
                Err(Missing::Result) => {
                    let mut why = match &run.stalled {
                        Some(s) if s == id => format!(
                            "the L1 stalled while this L2 ran, again in a fresh L1: no end {} s \
                             after its start (the L1 kills it after {} s); xtask stopped the L1",
                            limits
                                .iter()
                                .find(|(j, _)| j == id)
                                .map_or(0, |(_, l)| l.as_secs()),
                            boots[i].timeout.as_secs()
                        ),
                        _ => l1_failure(id, &report, captured),
                    };
                    if tail_shown {
                        why.push_str(" (the L1's console tail is shown with the first such case)");
                    } else {
                        tail_shown = true;
                        why.push_str(&l1_tail(captured));
                    }
                    why.push_str(&partial_tail(&results_dir, id));
                    Err(why)
                }
            };
            results[i] = Some(result);
        }
        if !next.is_empty() {
            println!(
                "nested-kvm: the L1 stalled and was stopped; a fresh L1 runs the {} L2 boot(s) left (a stalled one again, once)",
                next.len()
            );
        }
        pending = next;
    }
    let captures = results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err("not run by any L1".to_string())))
        .collect();
    let summary = L1Summary {
        machine: s.l1_type,
        l2_boots: boots.len(),
        ready: l1_ready,
        total: l1_total,
        end: l1_end,
        boots: l1_boots,
    };
    Ok((captures, summary))
}

/// What becomes of a boot the L1 left without a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NoResult {
    /// The L1 stalled on another boot before this one started: a fresh L1 runs it.
    RunAgain,
    /// The L1 stalled while this one ran, for the first time: a fresh L1 runs it once more.
    Retry,
    /// It fails (the L1 never came up, ended early, or stalled on it a second time).
    Fail,
}

/// Decides [`NoResult`] for boot `id`: `stalled_on` the boot the watchdog stopped the L1 on,
/// `l1_ready` whether the L1 came up, `started` whether it started this boot, `first_stall`
/// whether this boot has not been run again for a stall yet.
fn no_result(
    id: &str,
    stalled_on: Option<&str>,
    l1_ready: bool,
    started: bool,
    first_stall: bool,
) -> NoResult {
    match stalled_on {
        Some(s) if s == id && first_stall => NoResult::Retry,
        Some(_) if l1_ready && !started => NoResult::RunAgain,
        _ => NoResult::Fail,
    }
}

/// One boot of the L1: its console, and the job it stalled on, if xtask stopped it for that.
struct L1Run {
    captured: Captured,
    stalled: Option<String>,
}

/// Boots the L1 for the jobs `limits` names (in the list file already), each with the time it
/// may run from its `start` line to its `end` line. A watchdog stops the L1 when it is not
/// `ready` within [`L1_BOOT_BUDGET`] or a job outlives its limit (the L1 itself stalled: its
/// own `timeout` of the L2 did not end it); the whole run ends at the sum of both.
fn run_l1(machine: &qemu::Machine, limits: &[(String, Duration)], verbose: bool) -> Result<L1Run> {
    let overall = limits.iter().fold(L1_BOOT_BUDGET, |t, (_, l)| t + *l);
    let mut cmd = machine.command();
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if verbose {
        println!("$ {}", crate::describe(&cmd));
    }
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .context(|| format!("cannot start `{}`", crate::describe(&cmd)))?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return crate::fail("the L1's QEMU has no stdout or stderr pipe");
    };
    let readers = qemu::LineReaders::spawn(stdout, stderr, start);
    let mut lines = Vec::new();
    let mut ready = false;
    let mut running: Option<(String, Duration)> = None;
    let mut stalled = None;
    let end = loop {
        match readers.lines.recv_timeout(Duration::from_millis(100)) {
            Ok((at, line)) => {
                if verbose {
                    println!("{line}");
                }
                let seen = jobs::parse_l1_console([line.as_str()]);
                ready |= seen.ready;
                if let Some(id) = seen.started.first() {
                    running = Some((id.clone(), at));
                }
                if !seen.ended.is_empty() {
                    running = None;
                }
                lines.push((at, line));
                continue;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => thread::sleep(Duration::from_millis(100)),
        }
        let now = start.elapsed();
        let overdue = match &running {
            Some((id, since)) => limits
                .iter()
                .find(|(j, _)| j == id)
                .is_some_and(|(_, limit)| now > *since + *limit),
            None => !ready && now > L1_BOOT_BUDGET,
        };
        if overdue {
            stalled = running.as_ref().map(|(id, _)| id.clone());
            let _ = child.kill();
            let _ = child.wait();
            break QemuEnd::Timeout(now);
        }
        if let Some(end) = qemu::ended(&mut child, start, overall)? {
            break end;
        }
    };
    let stderr = readers.finish(&mut lines, verbose);
    Ok(L1Run {
        captured: Captured {
            lines,
            stderr,
            end,
            elapsed: start.elapsed(),
            stdin_written: None,
        },
        stalled,
    })
}

/// Boots the L1 with the terminal attached (`cargo xtask run --accel nested-kvm`): its console
/// is the terminal, and the one interactive job's L2 runs on it (`mon:stdio`: Ctrl-A X quits
/// the L2, then the L1 powers off). No watchdog: the user ends it.
fn run_l1_attached(machine: &qemu::Machine, verbose: bool) -> Result<L1Run> {
    let mut cmd = machine.command();
    if verbose {
        println!("$ {}", crate::describe(&cmd));
    }
    println!("nested-kvm: the L1 boots (a few seconds), then Rhea; Ctrl-A X quits Rhea's QEMU");
    let start = Instant::now();
    let status = cmd
        .status()
        .context(|| format!("cannot start `{}`", crate::describe(&cmd)))?;
    Ok(L1Run {
        captured: Captured {
            lines: Vec::new(),
            stderr: String::new(),
            end: QemuEnd::from_status(status),
            elapsed: start.elapsed(),
            stdin_written: None,
        },
        stalled: None,
    })
}

/// The host's QEMU binary by its absolute path, which must be under `/usr` (the L1 sees only
/// the host's `/usr`).
fn host_binary_in_usr(binary: &str) -> Result<String, NotRun> {
    let path = if binary.contains('/') {
        PathBuf::from(binary)
    } else {
        std::env::var_os("PATH")
            .iter()
            .flat_map(std::env::split_paths)
            .map(|d| d.join(binary))
            .find(|p| p.is_file())
            .ok_or_else(|| NotRun(format!("{binary} not found on PATH")))?
    };
    let real = fs::canonicalize(&path).unwrap_or(path);
    if real.starts_with("/usr/") {
        Ok(real.to_string_lossy().into_owned())
    } else {
        Err(NotRun(format!(
            "{} is not under /usr: the nested-KVM L1 sees only the host's /usr",
            real.display()
        )))
    }
}

/// The L1 reaches the host's libraries only through `/usr`: `/lib64` (the dynamic loader's
/// directory) must lead there, as on a merged-`/usr` system (Debian 12).
fn check_merged_usr() -> Result<(), NotRun> {
    match fs::read_link("/lib64") {
        Ok(target) if target.to_string_lossy().trim_start_matches('/') == "usr/lib64" => Ok(()),
        _ => Err(NotRun(
            "the host's /lib64 is not a link to usr/lib64 (no merged /usr): the nested-KVM L1 \
             sees only the host's /usr and could not load its QEMU"
                .to_string(),
        )),
    }
}

/// The L1's `/usr` for [`L1Usr::Debian`]: the `qemu` package and every package it needs at
/// run time, directly or not (the `lib*` packages of their `Pre-Depends` and `Depends`,
/// [`debian::library_packages`]), unpacked into one merged-`/usr` tree `dir/sysroot`, its
/// `usr/` returned. The L2s' QEMU, `binary`, is checked to find its dynamic loader and every
/// library there (`guest::elf`), so a package that is missing is named before any L1 boots.
fn prepare_usr(arch: DebArch, qemu: &str, binary: &str, dir: &Path) -> Result<PathBuf> {
    let root = dir.join("sysroot");
    let debs = Debs::open(arch)?;
    let qemu_deb = debs.package(qemu)?;
    // The closure was unpacked and checked once for this QEMU package.
    let done = root.join(format!(
        ".closure-of-{}",
        qemu_deb
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    if done.is_file() {
        return Ok(root.join("usr"));
    }
    println!(
        "nested-kvm: unpacking {} and its libraries into {}",
        debian::package_and_version(&qemu_deb),
        root.display()
    );
    let mut wanted = vec![qemu.to_string()];
    let mut seen = std::collections::BTreeSet::new();
    while let Some(pkg) = wanted.pop() {
        if !seen.insert(debian::package_base(&pkg).to_string()) {
            continue;
        }
        let deb = debs.package(&pkg)?;
        for field in ["Pre-Depends", "Depends"] {
            wanted.extend(debian::library_packages(&debian::control_field(
                &deb, field,
            )?));
        }
        debian::unpack(&deb, &root, Members::AllMergedUsr)?;
    }
    let program = root.join(binary.trim_start_matches('/'));
    let mut scratch = Tree::default();
    guest::elf::add_libraries(
        &mut scratch,
        std::slice::from_ref(&program),
        std::slice::from_ref(&root),
        arch.triple(),
        &[],
    )?;
    fs::write(&done, b"").context(|| format!("cannot write {}", done.display()))?;
    Ok(root.join("usr"))
}

/// Holds `target/nested-kvm/lock` while a run uses the shared directories.
fn lock(top: &Path) -> Result<fs::File> {
    let path = top.join("lock");
    let file = fs::File::create(&path).context(|| format!("cannot create {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(e) => crate::fail(format!(
            "another nested-KVM run holds {} ({e}); one L1 at a time",
            path.display()
        )),
    }
}

/// The L1's kernel and initramfs.
#[derive(Debug, Clone)]
struct L1 {
    vmlinuz: PathBuf,
    initrd: PathBuf,
    /// e.g. `linux-image-6.1.0-57-amd64 6.1.192-3`.
    kernel_package: String,
}

/// Downloads (on first use) and unpacks the kernel and busybox, writes the initramfs (only
/// when its bytes changed).
fn prepare_l1(kind: &L1Kind, dir: &Path) -> Result<L1> {
    let unpacked = dir.join("unpacked");
    guest::mkdir(&unpacked)?;
    let debs = Debs::open(kind.deb_arch)?;
    let kernel_deb = debs.kernel(kind.flavour)?;
    let members: Vec<&str> = COMMON_KERNEL_MEMBERS
        .iter()
        .chain(kind.kernel_members)
        .copied()
        .collect();
    let kernel_root = debian::unpack_own(&kernel_deb, &unpacked, Members::MatchingInDir(&members))?;
    let vmlinuz = only_entry(&kernel_root.join("boot"), "vmlinuz-")?;
    let module_dir = only_entry(&kernel_root.join("lib/modules"), "")?;
    let busybox_root = debian::unpack_own(&debs.package(BUSYBOX_PKG)?, &unpacked, Members::All)?;

    let modules = modules::in_order(&module_dir, kind.modules)?;
    let tree = l1_tree(busybox_root.join("bin/busybox"), modules);
    let bytes = tree.cpio()?;
    let initrd = dir.join("initrd.cpio");
    guest::write_if_changed(&initrd, &bytes)?;
    Ok(L1 {
        vmlinuz,
        initrd,
        kernel_package: debian::package_and_version(&kernel_deb),
    })
}

/// The L1's initramfs: busybox, `/init`, the modules numbered in load order
/// (`modules/01-irqbypass.ko`, ...), `/lib` and `/lib64` leading into the shared `/usr`, and
/// the mount points.
fn l1_tree(busybox: PathBuf, modules: Vec<(String, PathBuf)>) -> Tree {
    let mut tree = Tree::default();
    tree.dirs
        .extend(["proc", "sys", "tmp", "usr", "job", "results"].map(String::from));
    tree.console = true;
    tree.text("init", 0o755, INIT_SCRIPT.as_bytes());
    tree.files.insert("bin/busybox".into(), busybox);
    for link in ["lib", "lib64"] {
        tree.links.insert(link.into(), format!("usr/{link}"));
    }
    for (i, (name, path)) in modules.into_iter().enumerate() {
        let guest = format!("{GUEST_MODULE_DIR}/{:02}-{name}.ko", i + 1);
        tree.files.insert(guest, path);
    }
    tree
}

/// The one entry of `dir` whose name starts with `prefix`.
fn only_entry(dir: &Path, prefix: &str) -> Result<PathBuf> {
    let found: Vec<PathBuf> = fs::read_dir(dir)
        .context(|| format!("cannot list {}", dir.display()))?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .map(|e| e.path())
        .collect();
    match found.as_slice() {
        [one] => Ok(one.clone()),
        _ => crate::fail(format!(
            "expected one {prefix}* in {}, found {}",
            dir.display(),
            found.len()
        )),
    }
}

/// Writes the job share afresh (the images, each job's files, the list) and empties the
/// results directory; returns the job ids, in the order of `boots`.
fn write_jobs(
    job_dir: &Path,
    results_dir: &Path,
    boots: &[Boot<'_>],
    binary: &str,
    qboot: Option<&Path>,
) -> Result<Vec<String>> {
    for d in [job_dir, results_dir] {
        if d.exists() {
            fs::remove_dir_all(d).context(|| format!("cannot remove {}", d.display()))?;
        }
        guest::mkdir(d)?;
    }
    let images = job_dir.join("images");
    guest::mkdir(&images)?;
    let mut ids = Vec::new();
    for (i, boot) in boots.iter().enumerate() {
        let id = jobs::job_id(i);
        let file = boot.spec.kernel.file_name().ok_or_else(|| {
            Error::Failed(format!("{} names no file", boot.spec.kernel.display()))
        })?;
        let copy = images.join(file);
        if !copy.exists() {
            fs::copy(boot.spec.kernel, &copy).context(|| {
                format!(
                    "cannot copy {} to {}",
                    boot.spec.kernel.display(),
                    copy.display()
                )
            })?;
        }
        let in_l1 = Path::new(L1_JOB_DIR).join("images").join(file);
        let spec = qemu::Spec {
            kernel: &in_l1,
            ..boot.spec.clone()
        };
        let mut machine = qemu::nested_l2_machine(&spec, qboot)?;
        machine.binary = binary.to_string();
        if boot.forward.is_some() {
            // The appliance's ports from every address of the L1 (its NIC is where the host's
            // forwarded connections arrive).
            machine.nics = qemu::nic(
                spec.board.name,
                spec.machine,
                crate::apps::Net::User,
                qemu::Backend::Forwarded {
                    bind: "",
                    http: L1_HTTP,
                    echo: L1_ECHO,
                },
            )
            .into_iter()
            .collect();
        }
        let mut argv = vec![machine.binary.clone()];
        argv.extend(machine.args());
        let mut files = jobs::job_files(&argv, boot.timeout, boot.stdin).map_err(Error::Failed)?;
        if boot.spec.serial == qemu::Serial::Interactive {
            files.push((jobs::INTERACTIVE, b"1\n".to_vec()));
        }
        let d = job_dir.join("jobs").join(&id);
        guest::mkdir(&d)?;
        for (name, bytes) in files {
            let path = d.join(name);
            fs::write(&path, bytes).context(|| format!("cannot write {}", path.display()))?;
        }
        ids.push(id);
    }
    let list = job_dir.join("list");
    fs::write(&list, jobs::list_file(&ids))
        .context(|| format!("cannot write {}", list.display()))?;
    Ok(ids)
}

/// Why a job has no capture.
enum Missing {
    /// No `status` file: the L1 never finished the job.
    Result,
    /// The job's files are there but unusable, or its QEMU did not start.
    Broken(String),
}

/// The capture of job `id` from the results share, or why there is none.
fn collect(results_dir: &Path, id: &str, timeout: Duration) -> Result<Captured, Missing> {
    let dir = results_dir.join(id);
    let status = match fs::read_to_string(dir.join("status")) {
        Ok(text) => {
            jobs::parse_status(&text).map_err(|e| Missing::Broken(format!("job {id}: {e}")))?
        }
        Err(_) => return Err(Missing::Result),
    };
    let read = |name: &str| {
        fs::read(dir.join(name))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    };
    let end = jobs::l2_end(&status, timeout)
        .map_err(|e| Missing::Broken(format!("{e}: {}", read("stderr").trim())))?;
    let took = status.took();
    Ok(Captured {
        // The L1 stores the console whole: each line carries the L2's end time.
        lines: read("console")
            .lines()
            .map(|l| (took, l.trim_end_matches('\r').to_string()))
            .collect(),
        stderr: read("stderr"),
        end,
        elapsed: took,
        stdin_written: status.stdin_written(),
    })
}

/// An L2 whose exit status is its console's ([`L2Status::ConsoleLine`]): QEMU's end read
/// with the console (`qemu::arm_kvm_end`).
fn status_from_console(captured: Captured) -> Captured {
    let end = qemu::arm_kvm_end(captured.end, captured.lines.iter().map(|(_, l)| l.as_str()));
    Captured { end, ..captured }
}

/// Why job `id` has no result: what the L1's console says of it and how the L1 ended.
fn l1_failure(id: &str, report: &jobs::L1Report, l1: &Captured) -> String {
    let end = l1.end.describe();
    if let Some(why) = &report.no_kvm {
        return format!("no KVM in the L1: {why} (L1 QEMU: {end})");
    }
    if let Some(why) = &report.failed {
        return format!("the L1 failed: {why} (L1 QEMU: {end})");
    }
    if !report.init {
        return format!("the L1 never ran /init (L1 QEMU: {end})");
    }
    if !report.ready {
        return format!("the L1 never got ready: KVM and the shares (L1 QEMU: {end})");
    }
    if report.started.iter().any(|s| s == id) {
        return format!("the L1 ended while this L2 ran (L1 QEMU: {end})");
    }
    format!("the L1 ended before this L2 ran (L1 QEMU: {end})")
}

/// The last lines of what an unfinished L2 printed (`console.partial`), indented; empty if
/// there is none.
fn partial_tail(results_dir: &Path, id: &str) -> String {
    let Ok(bytes) = fs::read(results_dir.join(id).join("console.partial")) else {
        return String::new();
    };
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(TAIL_LINES);
    let mut s = format!(
        "\n    --- this L2's console until the L1 stopped copying it (last {} of {} lines) ---",
        lines.len() - from,
        lines.len()
    );
    for line in &lines[from..] {
        s.push_str(&format!("\n    | {}", line.trim_end_matches('\r')));
    }
    s
}

/// The last lines of the L1's console and its QEMU's stderr, indented, for a failure.
fn l1_tail(l1: &Captured) -> String {
    let from = l1.lines.len().saturating_sub(TAIL_LINES);
    let mut s = format!(
        "\n    --- L1 console (last {} of {} lines) ---",
        l1.lines.len() - from,
        l1.lines.len()
    );
    for (_, line) in &l1.lines[from..] {
        s.push_str(&format!("\n    | {line}"));
    }
    if !l1.stderr.trim().is_empty() {
        s.push_str("\n    --- L1 QEMU stderr ---");
        for line in l1.stderr.lines() {
            s.push_str(&format!("\n    | {line}"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stall_reruns_the_stalled_boot_once_and_the_unstarted_ones() {
        // The L1 stalled on j002: it runs once more; j003 (never started) runs in the fresh L1.
        assert_eq!(
            no_result("j002", Some("j002"), true, true, true),
            NoResult::Retry
        );
        assert_eq!(
            no_result("j003", Some("j002"), true, false, true),
            NoResult::RunAgain
        );
        // Stalled on it a second time: it fails.
        assert_eq!(
            no_result("j002", Some("j002"), true, true, false),
            NoResult::Fail
        );
        // No stall: an L1 that ended early or never came up fails what it did not finish.
        assert_eq!(no_result("j003", None, true, false, true), NoResult::Fail);
        assert_eq!(no_result("j001", None, false, false, true), NoResult::Fail);
        // A boot the stalled L1 had started and finished without a result file: a failure.
        assert_eq!(
            no_result("j001", Some("j002"), true, true, true),
            NoResult::Fail
        );
    }

    #[test]
    fn l1_initramfs_layout() {
        let modules = vec![
            ("irqbypass".to_string(), PathBuf::from("/k/irqbypass.ko")),
            ("kvm".to_string(), PathBuf::from("/k/kvm.ko")),
        ];
        let tree = l1_tree(PathBuf::from("/bb/busybox"), modules);
        assert_eq!(tree.files["bin/busybox"], Path::new("/bb/busybox"));
        assert_eq!(
            tree.files["modules/01-irqbypass.ko"],
            Path::new("/k/irqbypass.ko")
        );
        assert_eq!(tree.files["modules/02-kvm.ko"], Path::new("/k/kvm.ko"));
        assert_eq!(tree.links["lib"], "usr/lib");
        assert_eq!(tree.links["lib64"], "usr/lib64");
        assert_eq!(tree.texts["init"].0, 0o755);
        assert!(tree.console);
        for mount in ["usr", "job", "results", "proc", "sys", "tmp"] {
            assert!(tree.dirs.contains(mount), "{mount}");
        }
    }

    #[test]
    fn init_script_speaks_the_protocol() {
        // Every console word and file the parser reads is one the script writes.
        for needle in [
            "M=\"NESTED-L1\"",
            "$M init",
            "$M modules $n",
            "no-kvm ",
            "\"fail cannot mount",
            "$M ready ",
            "$M start $id",
            "$M end $id rc=$rc",
            "$M done",
            "/job/list",
            "$d/args",
            "$d/timeout",
            "$d/stdin-after",
            "echo \"rc=$rc\"",
            "echo \"start=$start\"",
            "echo \"end=$end\"",
            "stdin-at=",
            "timeout -s KILL",
            "mount -t 9p",
        ] {
            assert!(INIT_SCRIPT.contains(needle), "{needle}");
        }
        assert_eq!(jobs::MARK, "NESTED-L1 ");
        for tag in [TAG_USR, TAG_JOB, TAG_RESULTS] {
            assert!(INIT_SCRIPT.contains(&format!(" {tag} /")), "{tag}");
        }
        assert_eq!(jobs::KILLED_BY_TIMEOUT, 137);
    }
}
