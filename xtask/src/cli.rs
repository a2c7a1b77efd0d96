//! The command line of `cargo xtask`: the commands ([`Cmd`]), the option table ([`OPTIONS`]),
//! the parser ([`parse`]) and the help text ([`usage_text`]).
//!
//! Every option is one row of [`OPTIONS`]: its name, its value's placeholder, its help line,
//! the commands taking it, and the function that checks the value and stores it in
//! [`Options`]. Adding an option is adding a row (and a field).
//!
//! `xen-dom0` has a table of its own ([`XEN_DOM0_OPTIONS`], the same rows storing into
//! [`XenDom0Args`]), and its help text ([`xen_dom0_usage`]) is made from it.
//!
//! The tokenizer ([`Args`]) and the number check ([`number_in`]) are shared by the commands
//! that take arguments of their own (`fuzz`, `xen-dom0`): `--key value` and `--key=value` both
//! work, a word not starting with `-` is positional, and a missing or out-of-range value is a
//! usage error (exit code 2) that says what was wanted.

use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use crate::hostfwd::HostPorts;
use crate::qemu::AccelChoice;
use crate::xen::dom0::{Arch, Check, DomainType, MAX_TIMEOUT};
use crate::{Error, Result, apps, boards, fuzz, usage};

/// The subcommand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cmd {
    Build,
    /// `image --board pc-uefi --app A [--append S]`: the bootable disk image.
    Image,
    Run,
    Test,
    Lint,
    /// `bench [NAME]`; `None` lists the benches.
    Bench(Option<String>),
    /// `xen-dom0 --kernel PATH|linux [options]`: Xen with a Linux dom0 creating a domU;
    /// `None` for `xen-dom0 --help`.
    XenDom0(Option<XenDom0Args>),
    /// `fuzz [TARGET] [--time S] [--verbose]`: libFuzzer on the parsers; `None` for
    /// `fuzz --help`.
    Fuzz(Option<FuzzArgs>),
    /// `trace [--board B] [--app A] [--cpus N] [--append S] [--out FILE]`, or
    /// `trace --from LOG [--out FILE]`: a trace dump converted for Perfetto.
    Trace,
    Help,
}

/// Every option, after parsing. Which ones a command accepts is in [`OPTIONS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Options {
    pub(crate) board: Option<String>,
    pub(crate) app: Option<String>,
    pub(crate) accel: AccelChoice,
    pub(crate) smp: u32,
    pub(crate) mem: String,
    pub(crate) machine: Option<String>,
    pub(crate) filter: Option<String>,
    pub(crate) no_host: bool,
    /// `--repeat`: boots of each case (`test`), for pass counts.
    pub(crate) repeat: u32,
    pub(crate) verbose: bool,
    /// `--loops`: iterations of the scheduler measurements (`bench sched`, `bench linux-sched`).
    pub(crate) loops: Option<u32>,
    /// `--periods`: periods per test of `bench rtos`.
    pub(crate) periods: Option<u32>,
    /// `--rounds`: rounds of `bench net`, each measuring Rhea and the Linux guest.
    pub(crate) rounds: Option<u32>,
    /// `--period-ms`: the period of `bench rtos`, in ms.
    pub(crate) period_ms: Option<u32>,
    /// `--append`: extra kernel command line (`run`, `bench`: all of it besides what a bench
    /// needs; `test`: after `rhea.checker=1` and the app's `cmdline`).
    pub(crate) append: Option<String>,
    /// `--http-port`, `--echo-port`: the host ports `run` forwards to the appliance.
    pub(crate) host_ports: HostPorts,
    /// `--out`: the Perfetto file `trace` writes.
    pub(crate) out: Option<PathBuf>,
    /// `--from`: the console log `trace` converts instead of booting.
    pub(crate) from: Option<PathBuf>,
    /// `--cpus`: the CPUs `trace` boots with.
    pub(crate) cpus: Option<u32>,
    /// `--initrd`: a folder packed as the initramfs (`build`, `run`).
    pub(crate) initrd: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            board: None,
            app: None,
            accel: AccelChoice::Auto,
            smp: 1,
            mem: "128M".to_string(),
            machine: None,
            filter: None,
            no_host: false,
            repeat: 1,
            verbose: false,
            loops: None,
            periods: None,
            rounds: None,
            period_ms: None,
            append: None,
            host_ports: HostPorts::DEFAULT,
            out: None,
            from: None,
            cpus: None,
            initrd: None,
        }
    }
}

impl Options {
    /// The selected board name (default `qemu-x86_64`).
    pub(crate) fn board_name(&self) -> &str {
        self.board.as_deref().unwrap_or(boards::DEFAULT_BOARD)
    }

    /// The selected app name (default `hello`).
    pub(crate) fn app_name(&self) -> &str {
        self.app.as_deref().unwrap_or(apps::DEFAULT_APP)
    }

    /// The `--append` text (empty if not given).
    pub(crate) fn append(&self) -> &str {
        self.append.as_deref().unwrap_or("")
    }
}

/// The arguments of `cargo xtask fuzz`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FuzzArgs {
    pub(crate) target: Option<String>,
    pub(crate) seconds: Option<u32>,
    pub(crate) verbose: bool,
}

/// The help of `cargo xtask fuzz --help`.
pub(crate) const FUZZ_USAGE: &str = "usage: cargo xtask fuzz [TARGET] [--time S] [--verbose]\n\n\
    Without TARGET every target runs for 60 s; --time S (1 to 86400) sets the seconds per target.\n\
    --verbose shows the build and libFuzzer's own output.\n";

/// The arguments of `cargo xtask xen-dom0`, as given; `xen/dom0.rs` turns them into a
/// `Dom0Spec` (where `--kernel linux` changes the defaults of `--mem` and `--type`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct XenDom0Args {
    pub(crate) arch: Arch,
    /// `--kernel`: the domU's kernel image, or `linux` (Debian's); never empty once parsed.
    pub(crate) kernel: String,
    pub(crate) ramdisk: Option<PathBuf>,
    /// `--append`: the domU's command line.
    pub(crate) append: String,
    /// `--net` (or `--checks`): give the domU a vif.
    pub(crate) net: bool,
    /// `--checks`: the checks to run (`None`: all of them, with `--net`).
    pub(crate) checks: Option<Vec<Check>>,
    pub(crate) ready: Option<String>,
    pub(crate) domain_type: Option<DomainType>,
    /// `--mem`, MiB.
    pub(crate) mem_mib: Option<u32>,
    pub(crate) vcpus: u32,
    pub(crate) timeout: Duration,
    pub(crate) ready_wait: Option<Duration>,
    pub(crate) end_wait: Option<Duration>,
    pub(crate) verbose: bool,
}

impl Default for XenDom0Args {
    fn default() -> XenDom0Args {
        XenDom0Args {
            arch: Arch::X86_64,
            kernel: String::new(),
            ramdisk: None,
            append: String::new(),
            net: false,
            checks: None,
            ready: None,
            domain_type: None,
            mem_mib: None,
            vcpus: 1,
            timeout: MAX_TIMEOUT,
            ready_wait: None,
            end_wait: None,
            verbose: false,
        }
    }
}

/// The command name in [`XEN_DOM0_OPTIONS`] and its messages.
const XEN_DOM0: &str = "xen-dom0";

/// The head of `cargo xtask xen-dom0 --help`; the options follow, from [`XEN_DOM0_OPTIONS`].
const XEN_DOM0_HEAD: &str =
    "usage: cargo xtask xen-dom0 --arch x86_64|aarch64 --kernel PATH|linux [options]

Boots Xen 4.17 with a Debian Linux dom0 in QEMU (TCG); dom0 creates the domU with `xl` and
runs network checks against it. `--kernel linux`: Debian's kernel as the domU, with busybox
servers (validates the harness).

options:
";

/// The help of `cargo xtask xen-dom0 --help`.
pub(crate) fn xen_dom0_usage() -> String {
    let mut s = String::from(XEN_DOM0_HEAD);
    for opt in XEN_DOM0_OPTIONS {
        let head = match opt.value {
            Some(v) => format!("{} {v}", opt.name),
            None => opt.name.to_string(),
        };
        s.push_str(&format!("  {head:<19} {}\n", opt.help));
    }
    s
}

/// Seconds from 1 to `max` for option `flag`, as a duration.
fn seconds(flag: &str, value: &str, max: Duration) -> Result<Duration> {
    let max = u32::try_from(max.as_secs()).unwrap_or(u32::MAX);
    let n = number_in(flag, value, 1..=max, "seconds")?;
    Ok(Duration::from_secs(u64::from(n)))
}

/// The longest `--ready-wait` and `--end-wait`.
const MAX_WAIT: Duration = Duration::from_secs(300);

/// Every option of `xen-dom0`, in help order.
// A flat table: one row per option, read top to bottom; splitting it would only scatter it.
pub(crate) const XEN_DOM0_OPTIONS: &[OptSpec<XenDom0Args>] = &[
    OptSpec {
        name: "--arch",
        value: Some("A"),
        help: "x86_64 or aarch64 (default x86_64)",
        commands: &[XEN_DOM0],
        apply: |a, v| {
            a.arch = Arch::parse(&v)
                .ok_or_else(|| Error::Usage(format!("unknown --arch `{v}`: x86_64 or aarch64")))?;
            Ok(())
        },
    },
    OptSpec {
        name: "--kernel",
        value: Some("PATH"),
        help: "the domU's kernel (Rhea's image), or `linux`",
        commands: &[XEN_DOM0],
        apply: |a, v| {
            if v.is_empty() {
                return usage("--kernel wants a path or `linux`, got ``".to_string());
            }
            a.kernel = v;
            Ok(())
        },
    },
    OptSpec {
        name: "--ramdisk",
        value: Some("PATH"),
        help: "the domU's ramdisk",
        commands: &[XEN_DOM0],
        apply: |a, v| {
            a.ramdisk = Some(PathBuf::from(v));
            Ok(())
        },
    },
    OptSpec {
        name: "--append",
        value: Some("STR"),
        help: "the domU's command line (e.g. rhea.net.ip=10.0.0.2/24)",
        commands: &[XEN_DOM0],
        apply: |a, v| {
            a.append = v;
            Ok(())
        },
    },
    OptSpec {
        name: "--net",
        value: None,
        help: "give the domU a vif and run every check (ping, udp, tcp, http)",
        commands: &[XEN_DOM0],
        apply: |a, _| {
            a.net = true;
            Ok(())
        },
    },
    OptSpec {
        name: "--checks",
        value: Some("LIST"),
        help: "the checks to run, comma-separated (implies --net)",
        commands: &[XEN_DOM0],
        apply: |a, v| {
            let mut list = Vec::new();
            for name in v.split(',').filter(|s| !s.is_empty()) {
                list.push(Check::parse(name).ok_or_else(|| {
                    Error::Usage(format!("unknown check `{name}`: ping, udp, tcp, http"))
                })?);
            }
            a.checks = Some(list);
            a.net = true;
            Ok(())
        },
    },
    OptSpec {
        name: "--ready",
        value: Some("TEXT"),
        help: "the domU's ready line (default: none; `linux`: linux-domu: ready)",
        commands: &[XEN_DOM0],
        apply: |a, v| {
            a.ready = Some(v);
            Ok(())
        },
    },
    OptSpec {
        name: "--type",
        value: Some("pvh|pv"),
        help: "x86_64 domain type (default pvh; `linux`: pv)",
        commands: &[XEN_DOM0],
        apply: |a, v| {
            a.domain_type = Some(match v.as_str() {
                "pvh" => DomainType::Pvh,
                "pv" => DomainType::Pv,
                other => return usage(format!("unknown --type `{other}`: pvh or pv")),
            });
            Ok(())
        },
    },
    OptSpec {
        name: "--mem",
        value: Some("MiB"),
        help: "the domU's memory (default 128; `linux`: 256)",
        commands: &[XEN_DOM0],
        apply: |a, v| {
            a.mem_mib = Some(number_in("--mem", &v, 16..=1024, "MiB")?);
            Ok(())
        },
    },
    OptSpec {
        name: "--vcpus",
        value: Some("N"),
        help: "the domU's vCPUs (default 1)",
        commands: &[XEN_DOM0],
        apply: |a, v| {
            a.vcpus = match v.parse::<u32>() {
                Ok(n @ 1..=2) => n,
                _ => return usage(format!("--vcpus wants 1 or 2, got `{v}`")),
            };
            Ok(())
        },
    },
    OptSpec {
        name: "--timeout",
        value: Some("SECS"),
        help: "the whole run (default and at most 360)",
        commands: &[XEN_DOM0],
        apply: |a, v| {
            a.timeout = seconds("--timeout", &v, MAX_TIMEOUT)?;
            Ok(())
        },
    },
    OptSpec {
        name: "--ready-wait",
        value: Some("SECS"),
        help: "how long dom0 waits for the ready line (default 90)",
        commands: &[XEN_DOM0],
        apply: |a, v| {
            a.ready_wait = Some(seconds("--ready-wait", &v, MAX_WAIT)?);
            Ok(())
        },
    },
    OptSpec {
        name: "--end-wait",
        value: Some("SECS"),
        help: "how long dom0 waits for the domU to end after the checks (default 30)",
        commands: &[XEN_DOM0],
        apply: |a, v| {
            a.end_wait = Some(seconds("--end-wait", &v, MAX_WAIT)?);
            Ok(())
        },
    },
    OptSpec {
        name: "--verbose",
        value: None,
        help: "echo the serial console live",
        commands: &[XEN_DOM0],
        apply: |a, _| {
            a.verbose = true;
            Ok(())
        },
    },
];

/// One option: its name, whether it takes a value, its help line, the commands taking it, and
/// how its value is checked and stored in `T` ([`Options`], or a command's own arguments).
pub(crate) struct OptSpec<T: 'static = Options> {
    pub(crate) name: &'static str,
    /// The value's placeholder in the help (`--smp N`); `None` for a flag without a value.
    pub(crate) value: Option<&'static str>,
    pub(crate) help: &'static str,
    pub(crate) commands: &'static [&'static str],
    /// Checks the value (empty for a flag without one) and stores it; a usage error says
    /// what was wanted.
    apply: fn(&mut T, String) -> Result<()>,
}

/// Every option of the common commands, in help order.
// A flat table: one row per option, read top to bottom; splitting it would only scatter it.
pub(crate) const OPTIONS: &[OptSpec] = &[
    OptSpec {
        name: "--board",
        value: Some("B"),
        help: "board (default qemu-x86_64; `test`: all boards; `lint`: all boards; `bench`: sched only, qemu-x86_64, linuxu, \
               qemu-aarch64 or rpi4; xen: xen-x86_64 or xen-arm64, default both)",
        commands: &["build", "image", "run", "test", "lint", "bench", "trace"],
        apply: |o, v| {
            o.board = Some(v);
            Ok(())
        },
    },
    OptSpec {
        name: "--app",
        value: Some("A"),
        help: "app under apps/ or tests/ (default appliance; `test`: all apps; `trace`: trace-pi)",
        commands: &["build", "image", "run", "test", "trace"],
        apply: |o, v| {
            o.app = Some(v);
            Ok(())
        },
    },
    OptSpec {
        name: "--accel",
        value: Some("kvm|tcg|auto|nested-kvm"),
        help: "accelerator (default auto: KVM only when hardware KVM is usable; run, test and \
               bench boot: nested-kvm boots under a Linux KVM inside a Linux guest under TCG)",
        commands: &["run", "test", "bench", "trace"],
        apply: |o, v| {
            o.accel = match v.as_str() {
                "kvm" => AccelChoice::Kvm,
                "tcg" => AccelChoice::Tcg,
                "auto" => AccelChoice::Auto,
                "nested-kvm" => AccelChoice::NestedKvm,
                other => {
                    return usage(format!(
                        "unknown accel `{other}`; valid: kvm, tcg, auto, nested-kvm"
                    ));
                }
            };
            Ok(())
        },
    },
    OptSpec {
        name: "--smp",
        value: Some("N"),
        help: "number of vCPUs (default 1)",
        commands: &["run", "test", "bench"],
        apply: |o, v| {
            o.smp = number_in("--smp", &v, 1..=255, "a number")?;
            Ok(())
        },
    },
    OptSpec {
        name: "--mem",
        value: Some("SIZE"),
        help: "guest memory, passed to QEMU -m (default 128M)",
        commands: &["run", "test", "bench", "trace"],
        apply: |o, v| {
            if !valid_mem(&v) {
                return usage(format!("--mem wants a size such as 128M or 1G, got `{v}`"));
            }
            o.mem = v;
            Ok(())
        },
    },
    OptSpec {
        name: "--machine",
        value: Some("M"),
        help: "QEMU machine of the board, e.g. microvm|q35 (default: q35 for run and bench \
               sched/linux-sched; all for test and bench boot)",
        commands: &["run", "test", "bench", "trace"],
        apply: |o, v| {
            o.machine = Some(v);
            Ok(())
        },
    },
    OptSpec {
        name: "--filter",
        value: Some("SUBSTR"),
        help: "only run cases whose `board/machine/accel app` (or `host unit tests`) contains SUBSTR",
        commands: &["test"],
        apply: |o, v| {
            o.filter = Some(v);
            Ok(())
        },
    },
    OptSpec {
        name: "--repeat",
        value: Some("N"),
        help: "boot each case N times (1-1000) and print each one's pass count (timing margins under load)",
        commands: &["test"],
        apply: |o, v| {
            o.repeat = number_in("--repeat", &v, 1..=1000, "a number")?;
            Ok(())
        },
    },
    OptSpec {
        name: "--no-host",
        value: None,
        help: "skip the host unit tests",
        commands: &["test"],
        apply: |o, _| {
            o.no_host = true;
            Ok(())
        },
    },
    OptSpec {
        name: "--loops",
        value: Some("N"),
        help: "iterations of each scheduler measure, Rhea's and Linux's (default 10000)",
        commands: &["bench"],
        apply: |o, v| {
            o.loops = Some(number_in("--loops", &v, 100..=10_000_000, "a number")?);
            Ok(())
        },
    },
    OptSpec {
        name: "--periods",
        value: Some("N"),
        help: "bench rtos: periods counted per test, Rhea's and POSIX's (default 5)",
        commands: &["bench"],
        apply: |o, v| {
            o.periods = Some(number_in("--periods", &v, 1..=1000, "")?);
            Ok(())
        },
    },
    OptSpec {
        name: "--rounds",
        value: Some("N"),
        help: "bench net: rounds of Rhea and Linux, alternating which runs first, medians reported (default 3)",
        commands: &["bench"],
        apply: |o, v| {
            o.rounds = Some(number_in("--rounds", &v, 1..=20, "")?);
            Ok(())
        },
    },
    OptSpec {
        name: "--period-ms",
        value: Some("M"),
        help: "bench rtos: the length of a period in ms (default 200)",
        commands: &["bench"],
        apply: |o, v| {
            o.period_ms = Some(number_in("--period-ms", &v, 1..=60_000, "")?);
            Ok(())
        },
    },
    OptSpec {
        name: "--append",
        value: Some("STR"),
        help: "extra kernel command line (run, bench: all of it, after bench sched's loops=N; \
               test: added to every boot after rhea.checker=1 and the app's cmdline; \
               build: put in the QEMU line printed; image: written to the disk's \\rhea.cfg; \
               trace: after rhea.trace=all and the app's cmdline)",
        commands: &["build", "image", "run", "test", "bench", "trace"],
        apply: |o, v| {
            if v.contains(['\n', '\r', '\0']) {
                return usage("--append wants one line without NUL".to_string());
            }
            o.append = Some(v.trim().to_string());
            Ok(())
        },
    },
    OptSpec {
        name: "--http-port",
        value: Some("N"),
        help: "the host port (on 127.0.0.1) forwarded to the appliance's HTTP status page \
               (default 8080)",
        commands: &["run"],
        apply: |o, v| {
            o.host_ports.http = port("--http-port", &v)?;
            Ok(())
        },
    },
    OptSpec {
        name: "--echo-port",
        value: Some("N"),
        help: "the host port (on 127.0.0.1) forwarded to the appliance's TCP and UDP echo \
               (default 7007)",
        commands: &["run"],
        apply: |o, v| {
            o.host_ports.echo = port("--echo-port", &v)?;
            Ok(())
        },
    },
    OptSpec {
        name: "--ssh-port",
        value: Some("N"),
        help: "the host port (on 127.0.0.1) forwarded to the appliance's SSH server \
               (default 2222; your ~/.ssh/id_ed25519.pub is its authorized key)",
        commands: &["run"],
        apply: |o, v| {
            o.host_ports.ssh = port("--ssh-port", &v)?;
            Ok(())
        },
    },
    OptSpec {
        name: "--verbose",
        value: None,
        help: "echo the guest console live and show QEMU command lines",
        commands: &["run", "test", "bench", "trace"],
        apply: |o, _| {
            o.verbose = true;
            Ok(())
        },
    },
    OptSpec {
        name: "--cpus",
        value: Some("N"),
        help: "CPUs to boot with (default 2)",
        commands: &["trace"],
        apply: |o, v| {
            o.cpus = Some(number_in("--cpus", &v, 1..=64, "a number")?);
            Ok(())
        },
    },
    OptSpec {
        name: "--initrd",
        value: Some("DIR"),
        help: "pack the folder DIR into a cpio archive, the initramfs Rhea mounts at / \
               (run: booted with it, QEMU's -initrd or LinuxU's rhea.initrd=; build: written \
               next to the image)",
        commands: &["build", "run"],
        apply: |o, v| {
            if v.is_empty() {
                return usage("--initrd wants a folder".to_string());
            }
            o.initrd = Some(PathBuf::from(v));
            Ok(())
        },
    },
    OptSpec {
        name: "--out",
        value: Some("FILE"),
        help: "the Perfetto trace to write (default target/trace/<board>-<app>.perfetto-trace; \
               the report goes next to it as .txt)",
        commands: &["trace"],
        apply: |o, v| {
            if v.is_empty() {
                return usage("--out wants a file name".to_string());
            }
            o.out = Some(PathBuf::from(v));
            Ok(())
        },
    },
    OptSpec {
        name: "--from",
        value: Some("LOG"),
        help: "convert the dump in this console log (or fetched /trace) instead of booting",
        commands: &["trace"],
        apply: |o, v| {
            if v.is_empty() {
                return usage("--from wants a file name".to_string());
            }
            o.from = Some(PathBuf::from(v));
            Ok(())
        },
    },
];

/// The commands and their help lines, in help order.
pub(crate) const COMMANDS: &[(&str, &str)] = &[
    ("build", "build an app image for a board"),
    (
        "image",
        "pc-uefi: write the bootable GPT disk image (USB stick) for an app; --append is its \
         command line",
    ),
    (
        "run",
        "build and boot an app in QEMU with the terminal attached",
    ),
    (
        "test",
        "host unit tests, then boot every app and test on every board/machine/accel",
    ),
    (
        "lint",
        "clippy with -D warnings for the host crates and every board",
    ),
    (
        "bench",
        "benchmarks: `bench boot`, `bench sched`, `bench smp`, `bench net`, `bench queue`, \
         `bench rtos`, `bench linux-sched`, `bench xen` (`bench` alone lists them all)",
    ),
    (
        "trace",
        "boot an app with event tracing (default trace-pi) and write a Perfetto trace and a \
         report; `--from LOG` converts a console log",
    ),
    (
        "xen-dom0",
        "Xen with a Linux dom0 that creates a domU and checks its network (--help)",
    ),
    (
        "fuzz",
        "`fuzz [TARGET] [--time S]`: coverage-guided fuzzing of the parsers (--help)",
    ),
];

/// The text of `cargo xtask help`.
pub(crate) fn usage_text() -> String {
    let mut s = String::from("usage: cargo xtask <command> [options]\n\ncommands:\n");
    for (name, help) in COMMANDS {
        s.push_str(&format!("  {name:<7} {help}\n"));
    }
    s.push_str("\noptions:\n");
    for opt in OPTIONS {
        let head = match opt.value {
            Some(v) => format!("{} {v}", opt.name),
            None => opt.name.to_string(),
        };
        s.push_str(&format!(
            "  {head:<22} {} [{}]\n",
            opt.help,
            opt.commands.join(", ")
        ));
    }
    s
}

/// The options of `table` that `command` takes, for error messages: `--board, --app,
/// --append`.
fn valid_options<T>(table: &[OptSpec<T>], command: &str) -> String {
    table
        .iter()
        .filter(|o| o.commands.contains(&command))
        .map(|o| o.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks `--mem` loosely: digits with an optional K/M/G/T suffix, as QEMU's `-m` takes.
pub(crate) fn valid_mem(mem: &str) -> bool {
    let digits = mem.trim_end_matches(['K', 'M', 'G', 'T', 'k', 'm', 'g', 't']);
    let suffix_len = mem.len() - digits.len();
    !digits.is_empty() && suffix_len <= 1 && digits.bytes().all(|b| b.is_ascii_digit())
}

/// A TCP/UDP port number, 1 to 65535.
fn port(flag: &str, value: &str) -> Result<u16> {
    let n = number_in(flag, value, 1..=u32::from(u16::MAX), "a port number")?;
    Ok(u16::try_from(n).unwrap_or(u16::MAX))
}

/// Parses `value` as a whole number within `range`, for option `flag`; otherwise a usage
/// error: "`flag` wants `unit` from LO to HI, got `value`" (just "LO to HI" with no unit).
pub(crate) fn number_in(
    flag: &str,
    value: &str,
    range: RangeInclusive<u32>,
    unit: &str,
) -> Result<u32> {
    match value.parse::<u32>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => {
            let (lo, hi) = (range.start(), range.end());
            let wanted = if unit.is_empty() {
                format!("{lo} to {hi}")
            } else {
                format!("{unit} from {lo} to {hi}")
            };
            usage(format!("{flag} wants {wanted}, got `{value}`"))
        }
    }
}

/// One command-line argument, as [`Args`] reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arg<'a> {
    /// An argument not starting with `-` (a bench name, a fuzz target).
    Word(&'a str),
    /// `--key` or `--key=value` (`inline` is the part after the first `=`); `raw` is the
    /// argument as given, for messages.
    Flag {
        key: &'a str,
        inline: Option<&'a str>,
        raw: &'a str,
    },
}

/// The arguments of a command, read one at a time; an option's value is either inline
/// (`--key=value`) or the next argument ([`Args::value`]).
pub(crate) struct Args<'a> {
    rest: std::slice::Iter<'a, String>,
}

impl<'a> Args<'a> {
    pub(crate) fn new(args: &'a [String]) -> Args<'a> {
        Args { rest: args.iter() }
    }

    /// The next argument, or `None` at the end.
    pub(crate) fn next_arg(&mut self) -> Option<Arg<'a>> {
        let raw = self.rest.next()?.as_str();
        if !raw.starts_with('-') {
            return Some(Arg::Word(raw));
        }
        Some(match raw.split_once('=') {
            Some((key, value)) => Arg::Flag {
                key,
                inline: Some(value),
                raw,
            },
            None => Arg::Flag {
                key: raw,
                inline: None,
                raw,
            },
        })
    }

    /// The value of option `key`: `inline` if given, else the next argument; a usage error
    /// naming the placeholder `meta` (`--board B`) when there is none.
    pub(crate) fn value(&mut self, key: &str, meta: &str, inline: Option<&str>) -> Result<String> {
        match inline.or_else(|| self.rest.next().map(String::as_str)) {
            Some(v) => Ok(v.to_string()),
            None => usage(format!("option `{key}` needs a value ({key} {meta})")),
        }
    }
}

/// Parses the arguments after `cargo xtask`.
pub(crate) fn parse(args: &[String]) -> Result<(Cmd, Options)> {
    let opts = Options::default();
    let Some(first) = args.first() else {
        return Ok((Cmd::Help, opts));
    };
    let cmd = match first.as_str() {
        "build" => Cmd::Build,
        "image" => Cmd::Image,
        "run" => Cmd::Run,
        "test" => Cmd::Test,
        "lint" => Cmd::Lint,
        "bench" => Cmd::Bench(None),
        "trace" => Cmd::Trace,
        "xen-dom0" => return Ok((Cmd::XenDom0(parse_xen_dom0(&args[1..])?), opts)),
        "fuzz" => return Ok((Cmd::Fuzz(parse_fuzz(&args[1..])?), opts)),
        "help" | "-h" | "--help" => return Ok((Cmd::Help, opts)),
        other => {
            let names: Vec<&str> = COMMANDS.iter().map(|(n, _)| *n).collect();
            return usage(format!(
                "unknown command `{other}`; valid commands: {}",
                names.join(", ")
            ));
        }
    };
    parse_options(first, cmd, &args[1..])
}

/// Parses the options of the common commands (the rows of [`OPTIONS`] naming `name`), and
/// `bench`'s one positional name.
fn parse_options(name: &str, mut cmd: Cmd, args: &[String]) -> Result<(Cmd, Options)> {
    let mut opts = Options::default();
    let mut args = Args::new(args);
    while let Some(arg) = args.next_arg() {
        let (key, inline) = match arg {
            Arg::Flag {
                key: "-h" | "--help",
                inline: None,
                ..
            } => return Ok((Cmd::Help, opts)),
            Arg::Flag { key, inline, .. } => (key, inline),
            Arg::Word(word) => match &mut cmd {
                Cmd::Bench(bench @ None) => {
                    *bench = Some(word.to_string());
                    continue;
                }
                _ => return unexpected(OPTIONS, name, word),
            },
        };
        apply_option(OPTIONS, name, &mut opts, &mut args, key, inline)?;
    }
    let nested_ok =
        matches!(&cmd, Cmd::Test | Cmd::Run) || matches!(&cmd, Cmd::Bench(Some(b)) if b == "boot");
    if opts.accel == AccelChoice::NestedKvm && !nested_ok {
        return usage(format!(
            "--accel nested-kvm is for `run`, `test` and `bench boot` only; `{name}` takes kvm, tcg or auto"
        ));
    }
    Ok((cmd, opts))
}

/// Finds option `key` of command `name` in `table`, takes its value (`inline`, or the next
/// argument of `args`) and stores it in `target`; a usage error for an option `name` does not
/// take, a missing value, or a value given to a flag.
fn apply_option<T>(
    table: &[OptSpec<T>],
    name: &str,
    target: &mut T,
    args: &mut Args<'_>,
    key: &str,
    inline: Option<&str>,
) -> Result<()> {
    let Some(spec) = table
        .iter()
        .find(|o| o.name == key && o.commands.contains(&name))
    else {
        return usage(format!(
            "unknown option `{key}` for `{name}`; valid options: {}",
            valid_options(table, name)
        ));
    };
    let value = match (spec.value, inline) {
        (None, None) => String::new(),
        (None, Some(_)) => return usage(format!("option `{key}` takes no value")),
        (Some(meta), inline) => args.value(key, meta, inline)?,
    };
    (spec.apply)(target, value)
}

/// The usage error for a word command `name` takes no place for.
fn unexpected<T, U>(table: &[OptSpec<T>], name: &str, word: &str) -> Result<U> {
    usage(format!(
        "unexpected argument `{word}` for `{name}`; valid options: {}",
        valid_options(table, name)
    ))
}

/// Parses `fuzz`'s `[TARGET] [--time S] [--verbose]`; `Ok(None)` for `--help`.
pub(crate) fn parse_fuzz(args: &[String]) -> Result<Option<FuzzArgs>> {
    let mut out = FuzzArgs::default();
    let mut args = Args::new(args);
    while let Some(arg) = args.next_arg() {
        match arg {
            Arg::Flag {
                key: "-h" | "--help",
                ..
            } => return Ok(None),
            Arg::Flag {
                key: "--verbose",
                inline: None,
                ..
            } => out.verbose = true,
            Arg::Flag {
                key: "--time",
                inline,
                ..
            } => {
                let value = args.value("--time", "S", inline)?;
                out.seconds = Some(number_in("--time", &value, 1..=86_400, "seconds")?);
            }
            Arg::Word(target) if out.target.is_none() => {
                fuzz::check_target(target)?;
                out.target = Some(target.to_string());
            }
            Arg::Word(raw) | Arg::Flag { raw, .. } => {
                return usage(format!(
                    "unexpected argument `{raw}` for `fuzz`; {}",
                    FUZZ_USAGE.lines().next().unwrap_or_default()
                ));
            }
        }
    }
    Ok(Some(out))
}

/// Parses `xen-dom0`'s options (the rows of [`XEN_DOM0_OPTIONS`]); `Ok(None)` for `--help`.
/// `--kernel` is required; whether its file exists is checked when the command runs.
pub(crate) fn parse_xen_dom0(args: &[String]) -> Result<Option<XenDom0Args>> {
    let mut out = XenDom0Args::default();
    let mut args = Args::new(args);
    while let Some(arg) = args.next_arg() {
        match arg {
            Arg::Flag {
                key: "-h" | "--help",
                ..
            } => return Ok(None),
            Arg::Flag { key, inline, .. } => {
                apply_option(XEN_DOM0_OPTIONS, XEN_DOM0, &mut out, &mut args, key, inline)?;
            }
            Arg::Word(word) => return unexpected(XEN_DOM0_OPTIONS, XEN_DOM0, word),
        }
    }
    if out.kernel.is_empty() {
        return usage(format!(
            "xen-dom0 needs --kernel PATH or --kernel linux\n\n{}",
            xen_dom0_usage()
        ));
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;
    use std::fmt;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    fn parse_strs(args: &[&str]) -> Result<(Cmd, Options)> {
        parse(&strings(args))
    }

    fn is_usage<T: fmt::Debug>(r: Result<T>) -> String {
        match r {
            Err(Error::Usage(msg)) => msg,
            other => panic!("expected a usage error, got {other:?}"),
        }
    }

    #[test]
    fn no_args_is_help() {
        assert_eq!(parse_strs(&[]).unwrap().0, Cmd::Help);
        assert_eq!(parse_strs(&["build", "--help"]).unwrap().0, Cmd::Help);
        assert_eq!(parse_strs(&["help"]).unwrap().0, Cmd::Help);
        assert_eq!(parse_strs(&["run", "-h"]).unwrap().0, Cmd::Help);
    }

    #[test]
    fn defaults() {
        let (cmd, opts) = parse_strs(&["run"]).unwrap();
        assert_eq!(cmd, Cmd::Run);
        assert_eq!(opts, Options::default());
        assert_eq!(opts.board_name(), "qemu-x86_64");
        assert_eq!(opts.app_name(), "appliance");
        assert_eq!(opts.mem, "128M");
        assert_eq!(opts.smp, 1);
        assert_eq!(opts.accel, AccelChoice::Auto);
    }

    #[test]
    fn all_run_options() {
        let (_, opts) = parse_strs(&[
            "run",
            "--board",
            "qemu-x86_64",
            "--app=panic",
            "--accel",
            "tcg",
            "--smp",
            "4",
            "--mem=1G",
            "--machine",
            "microvm",
            "--verbose",
        ])
        .unwrap();
        assert_eq!(opts.board.as_deref(), Some("qemu-x86_64"));
        assert_eq!(opts.app.as_deref(), Some("panic"));
        assert_eq!(opts.accel, AccelChoice::Tcg);
        assert_eq!(opts.smp, 4);
        assert_eq!(opts.mem, "1G");
        assert_eq!(opts.machine.as_deref(), Some("microvm"));
        assert!(opts.verbose);
    }

    #[test]
    fn test_options() {
        let (cmd, opts) = parse_strs(&["test", "--filter", "q35/tcg", "--no-host"]).unwrap();
        assert_eq!(cmd, Cmd::Test);
        assert_eq!(opts.filter.as_deref(), Some("q35/tcg"));
        assert!(opts.no_host);
        // A value may itself contain `=`; only the first one splits.
        let (_, opts) = parse_strs(&["test", "--filter=a=b"]).unwrap();
        assert_eq!(opts.filter.as_deref(), Some("a=b"));
        assert_eq!(parse_strs(&["test"]).unwrap().1.repeat, 1);
        assert_eq!(
            parse_strs(&["test", "--repeat", "20"]).unwrap().1.repeat,
            20
        );
        for bad in ["0", "1001", "x"] {
            is_usage(parse_strs(&["test", "--repeat", bad]));
        }
        is_usage(parse_strs(&["run", "--repeat", "2"]));
    }

    #[test]
    fn nested_kvm_is_for_run_test_and_bench_boot_only() {
        let (cmd, opts) =
            parse_strs(&["test", "--accel", "nested-kvm", "--board", "qemu-x86_64"]).unwrap();
        assert_eq!((cmd, opts.accel), (Cmd::Test, AccelChoice::NestedKvm));
        let (cmd, opts) = parse_strs(&["bench", "boot", "--accel", "nested-kvm"]).unwrap();
        assert_eq!(
            (cmd, opts.accel),
            (Cmd::Bench(Some("boot".into())), AccelChoice::NestedKvm)
        );
        let (cmd, _) = parse_strs(&["run", "--accel", "nested-kvm"]).unwrap();
        assert_eq!(cmd, Cmd::Run);
        for other in [&["bench"][..], &["bench", "sched"], &["bench", "net"]] {
            let mut args = other.to_vec();
            args.push("--accel=nested-kvm");
            let msg = is_usage(parse_strs(&args));
            assert!(
                msg.contains("for `run`, `test` and `bench boot` only"),
                "{msg}"
            );
        }
    }

    #[test]
    fn bench_names() {
        assert_eq!(parse_strs(&["bench"]).unwrap().0, Cmd::Bench(None));
        assert_eq!(
            parse_strs(&["bench", "boot", "--verbose"]).unwrap().0,
            Cmd::Bench(Some("boot".into()))
        );
        // Only one bench name.
        is_usage(parse_strs(&["bench", "boot", "boot"]));
        let (cmd, opts) = parse_strs(&["bench", "linux-sched", "--loops", "2000"]).unwrap();
        assert_eq!(cmd, Cmd::Bench(Some("linux-sched".into())));
        assert_eq!(opts.loops, Some(2000));
        is_usage(parse_strs(&["bench", "--loops", "10"]));
        let (cmd, opts) = parse_strs(&[
            "bench",
            "rtos",
            "--board",
            "linuxu",
            "--periods",
            "3",
            "--period-ms=50",
        ])
        .unwrap();
        assert_eq!(cmd, Cmd::Bench(Some("rtos".to_string())));
        assert_eq!((opts.periods, opts.period_ms), (Some(3), Some(50)));
        is_usage(parse_strs(&["bench", "rtos", "--periods", "0"]));
        is_usage(parse_strs(&["run", "--period-ms", "10"]));
        is_usage(parse_strs(&["run", "--loops", "1000"]));
        let (cmd, opts) =
            parse_strs(&["bench", "sched", "--board", "linuxu", "--loops=500"]).unwrap();
        assert_eq!(cmd, Cmd::Bench(Some("sched".into())));
        assert_eq!((opts.board_name(), opts.loops), ("linuxu", Some(500)));
        let (cmd, opts) =
            parse_strs(&["bench", "sched", "--machine=microvm", "--append", "a=1"]).unwrap();
        assert_eq!(cmd, Cmd::Bench(Some("sched".into())));
        assert_eq!(opts.machine.as_deref(), Some("microvm"));
        assert_eq!(opts.append(), "a=1");
        let (_, opts) = parse_strs(&["bench", "net", "--rounds", "20"]).unwrap();
        assert_eq!(opts.rounds, Some(20));
    }

    #[test]
    fn append_option() {
        assert_eq!(parse_strs(&["run"]).unwrap().1.append(), "");
        for cmd in ["build", "run", "test", "bench"] {
            let (_, opts) = parse_strs(&[cmd, "--append", "loops=5 x=y"]).unwrap();
            assert_eq!(opts.append.as_deref(), Some("loops=5 x=y"));
        }
        let (_, opts) = parse_strs(&["test", "--append=rhea.trace=1"]).unwrap();
        assert_eq!(opts.append(), "rhea.trace=1");
        let (_, opts) = parse_strs(&["run", "--append", "  a=1  "]).unwrap();
        assert_eq!(opts.append(), "a=1");
        is_usage(parse_strs(&["lint", "--append", "x"]));
        is_usage(parse_strs(&["run", "--append"]));
        is_usage(parse_strs(&["run", "--append", "a\nb"]));
        is_usage(parse_strs(&["run", "--append", "a\0b"]));
    }

    #[test]
    fn usage_errors_list_valid_choices() {
        let msg = is_usage(parse_strs(&["frobnicate"]));
        assert!(
            msg.contains("build, image, run, test, lint, bench"),
            "{msg}"
        );
        let msg = is_usage(parse_strs(&["build", "--smp", "2"]));
        assert!(
            msg.ends_with("valid options: --board, --app, --append, --initrd"),
            "{msg}"
        );
        let msg = is_usage(parse_strs(&["run", "--accel", "hvf"]));
        assert!(msg.contains("kvm, tcg, auto, nested-kvm"), "{msg}");
        is_usage(parse_strs(&["run", "--smp", "0"]));
        is_usage(parse_strs(&["run", "--smp", "x"]));
        is_usage(parse_strs(&["run", "--mem", "lots"]));
        is_usage(parse_strs(&["run", "--board"]));
        is_usage(parse_strs(&["test", "--no-host=yes"]));
        is_usage(parse_strs(&["run", "extra"]));
    }

    #[test]
    fn run_takes_its_host_ports() {
        let (_, opts) = parse_strs(&["run"]).unwrap();
        assert_eq!(
            opts.host_ports,
            HostPorts {
                http: 8080,
                echo: 7007,
                ssh: 2222
            }
        );
        let (cmd, opts) = parse_strs(&[
            "run",
            "--http-port",
            "18080",
            "--echo-port=17007",
            "--ssh-port",
            "2022",
        ])
        .unwrap();
        assert_eq!(cmd, Cmd::Run);
        assert_eq!(
            opts.host_ports,
            HostPorts {
                http: 18080,
                echo: 17007,
                ssh: 2022
            }
        );
        assert_eq!(
            is_usage(parse_strs(&["run", "--http-port", "0"])),
            "--http-port wants a port number from 1 to 65535, got `0`"
        );
        is_usage(parse_strs(&["run", "--echo-port", "65536"]));
        is_usage(parse_strs(&["run", "--echo-port", "x"]));
        is_usage(parse_strs(&["run", "--http-port"]));
        // `run` only: the other commands forward no ports.
        let msg = is_usage(parse_strs(&["test", "--http-port", "18080"]));
        assert!(
            msg.starts_with("unknown option `--http-port` for `test`"),
            "{msg}"
        );
    }

    #[test]
    fn unknown_options_are_named() {
        let msg = is_usage(parse_strs(&["run", "--bogus"]));
        assert_eq!(
            msg,
            "unknown option `--bogus` for `run`; valid options: --board, --app, --accel, \
             --smp, --mem, --machine, --append, --http-port, --echo-port, --ssh-port, --verbose, \
             --initrd"
        );
        // The key, not the whole `--key=value`, is named.
        let msg = is_usage(parse_strs(&["test", "--bogus=1"]));
        assert!(
            msg.starts_with("unknown option `--bogus` for `test`"),
            "{msg}"
        );
        // `--help` with a value is not help.
        let msg = is_usage(parse_strs(&["run", "--help=x"]));
        assert!(msg.starts_with("unknown option `--help`"), "{msg}");
        // A single dash is an option too, and unknown.
        is_usage(parse_strs(&["run", "-"]));
        is_usage(parse_strs(&["lint", "--verbose"]));
    }

    #[test]
    fn missing_values_name_the_placeholder() {
        assert_eq!(
            is_usage(parse_strs(&["run", "--board"])),
            "option `--board` needs a value (--board B)"
        );
        assert_eq!(
            is_usage(parse_strs(&["bench", "--loops"])),
            "option `--loops` needs a value (--loops N)"
        );
        assert_eq!(
            is_usage(parse_strs(&["test", "--verbose", "--filter"])),
            "option `--filter` needs a value (--filter SUBSTR)"
        );
        assert_eq!(
            is_usage(parse_strs(&["test", "--no-host=1"])),
            "option `--no-host` takes no value"
        );
        // An empty inline value is a value (an empty filter matches everything).
        let (_, opts) = parse_strs(&["test", "--filter="]).unwrap();
        assert_eq!(opts.filter.as_deref(), Some(""));
    }

    #[test]
    fn out_of_range_numbers_say_the_range() {
        let cases: &[(&[&str], &str)] = &[
            (
                &["run", "--smp", "256"],
                "--smp wants a number from 1 to 255, got `256`",
            ),
            (
                &["run", "--smp=-1"],
                "--smp wants a number from 1 to 255, got `-1`",
            ),
            (
                &["bench", "--loops", "99"],
                "--loops wants a number from 100 to 10000000, got `99`",
            ),
            (
                &["bench", "--loops", "10000001"],
                "--loops wants a number from 100 to 10000000, got `10000001`",
            ),
            (
                &["bench", "--periods", "1001"],
                "--periods wants 1 to 1000, got `1001`",
            ),
            (
                &["bench", "--rounds", "21"],
                "--rounds wants 1 to 20, got `21`",
            ),
            (
                &["bench", "--period-ms", "0"],
                "--period-ms wants 1 to 60000, got `0`",
            ),
            (
                &["bench", "--period-ms", "99999999999"],
                "--period-ms wants 1 to 60000, got `99999999999`",
            ),
            (
                &["run", "--mem", "1.5G"],
                "--mem wants a size such as 128M or 1G, got `1.5G`",
            ),
        ];
        for (args, want) in cases {
            assert_eq!(is_usage(parse_strs(args)), *want, "{args:?}");
        }
        // The ends of each range are accepted.
        let (_, opts) = parse_strs(&["run", "--smp", "255"]).unwrap();
        assert_eq!(opts.smp, 255);
        let (_, opts) =
            parse_strs(&["bench", "--loops", "10000000", "--period-ms", "60000"]).unwrap();
        assert_eq!(
            (opts.loops, opts.period_ms),
            (Some(10_000_000), Some(60_000))
        );
    }

    #[test]
    fn mem_sizes() {
        assert!(valid_mem("128M"));
        assert!(valid_mem("1G"));
        assert!(valid_mem("512"));
        assert!(!valid_mem("M"));
        assert!(!valid_mem("12MM"));
        assert!(!valid_mem("1.5G"));
        assert!(!valid_mem(""));
    }

    #[test]
    fn usage_text_mentions_every_command_and_option() {
        let text = usage_text();
        for (name, _) in COMMANDS {
            assert!(text.contains(name));
        }
        for opt in OPTIONS {
            assert!(text.contains(opt.name));
        }
        assert!(
            text.contains("  --accel kvm|tcg|auto|nested-kvm accelerator"),
            "{text}"
        );
    }

    #[test]
    fn every_option_is_taken_by_some_command() {
        let names: Vec<&str> = COMMANDS.iter().map(|(n, _)| *n).collect();
        for opt in OPTIONS {
            assert!(!opt.commands.is_empty(), "{}", opt.name);
            for c in opt.commands {
                assert!(names.contains(c), "{} names unknown command {c}", opt.name);
            }
        }
    }

    #[test]
    fn fuzz_arguments() {
        let parse = |a: &[&str]| parse_fuzz(&strings(a));
        assert_eq!(parse(&[]).unwrap(), Some(FuzzArgs::default()));
        let a = parse(&["fdt", "--time", "30"]).unwrap().unwrap();
        assert_eq!((a.target.as_deref(), a.seconds), (Some("fdt"), Some(30)));
        let a = parse(&["--time=5", "--verbose"]).unwrap().unwrap();
        assert_eq!((a.target, a.seconds, a.verbose), (None, Some(5), true));
        assert_eq!(parse(&["--help"]).unwrap(), None);
        assert_eq!(parse(&["fdt", "-h"]).unwrap(), None);
        for bad in [
            &["nope"][..],
            &["fdt", "pvh"],
            &["--time"],
            &["--time", "0"],
            &["--x"],
            &["--verbose=1"],
        ] {
            assert!(matches!(parse(bad), Err(Error::Usage(_))), "{bad:?}");
        }
        assert_eq!(
            is_usage(parse(&["--time", "86401"])),
            "--time wants seconds from 1 to 86400, got `86401`"
        );
        assert_eq!(
            is_usage(parse(&["--time"])),
            "option `--time` needs a value (--time S)"
        );
        assert_eq!(
            is_usage(parse(&["fdt", "--x"])),
            "unexpected argument `--x` for `fuzz`; usage: cargo xtask fuzz [TARGET] [--time S] [--verbose]"
        );
        // Through the main parser too.
        assert_eq!(
            parse_strs(&["fuzz", "pvh"]).unwrap().0,
            Cmd::Fuzz(Some(FuzzArgs {
                target: Some("pvh".into()),
                ..FuzzArgs::default()
            }))
        );
        is_usage(parse_strs(&["fuzz", "nope"]));
    }

    #[test]
    fn xen_dom0_arguments() {
        let parse = |a: &[&str]| parse_xen_dom0(&strings(a));
        let a = parse(&["--kernel", "linux"]).unwrap().unwrap();
        assert_eq!(
            a,
            XenDom0Args {
                kernel: "linux".into(),
                ..XenDom0Args::default()
            }
        );
        assert_eq!((a.arch, a.vcpus, a.timeout), (Arch::X86_64, 1, MAX_TIMEOUT));
        let a = parse(&[
            "--arch=arm64",
            "--kernel",
            "/img/hello",
            "--ramdisk",
            "/img/rd",
            "--append",
            "rhea.net.ip=10.0.0.9/24 x=1",
            "--checks=ping,http",
            "--ready",
            "rhea: ready",
            "--type",
            "pv",
            "--mem",
            "1024",
            "--vcpus=2",
            "--timeout",
            "360",
            "--ready-wait",
            "1",
            "--end-wait=300",
            "--verbose",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            a,
            XenDom0Args {
                arch: Arch::Aarch64,
                kernel: "/img/hello".into(),
                ramdisk: Some("/img/rd".into()),
                append: "rhea.net.ip=10.0.0.9/24 x=1".into(),
                net: true,
                checks: Some(vec![Check::Ping, Check::Http]),
                ready: Some("rhea: ready".into()),
                domain_type: Some(DomainType::Pv),
                mem_mib: Some(1024),
                vcpus: 2,
                timeout: Duration::from_secs(360),
                ready_wait: Some(Duration::from_secs(1)),
                end_wait: Some(Duration::from_secs(300)),
                verbose: true,
            }
        );
        let a = parse(&["--net", "--kernel=k", "--type=pvh"])
            .unwrap()
            .unwrap();
        assert!(a.net && a.checks.is_none());
        assert_eq!(a.domain_type, Some(DomainType::Pvh));
        // `--help` anywhere wins; through the main parser too.
        assert_eq!(parse(&["--help"]).unwrap(), None);
        assert_eq!(parse(&["--kernel", "linux", "-h"]).unwrap(), None);
        assert_eq!(
            parse_strs(&["xen-dom0", "--help"]).unwrap().0,
            Cmd::XenDom0(None)
        );
        assert_eq!(
            parse_strs(&["xen-dom0", "--kernel", "linux", "--net"])
                .unwrap()
                .0,
            Cmd::XenDom0(Some(XenDom0Args {
                kernel: "linux".into(),
                net: true,
                ..XenDom0Args::default()
            }))
        );
    }

    #[test]
    fn bad_xen_dom0_arguments_say_what_was_wrong() {
        let parse = |a: &[&str]| parse_xen_dom0(&strings(a));
        let cases: &[(&[&str], &str)] = &[
            (
                &["--kernel", "linux", "--bogus"],
                "unknown option `--bogus` for `xen-dom0`; valid options: --arch, --kernel, \
                 --ramdisk, --append, --net, --checks, --ready, --type, --mem, --vcpus, \
                 --timeout, --ready-wait, --end-wait, --verbose",
            ),
            (
                &["--kernel", "linux", "extra"],
                "unexpected argument `extra` for `xen-dom0`; valid options: --arch, --kernel, \
                 --ramdisk, --append, --net, --checks, --ready, --type, --mem, --vcpus, \
                 --timeout, --ready-wait, --end-wait, --verbose",
            ),
            (
                &["--kernel"],
                "option `--kernel` needs a value (--kernel PATH)",
            ),
            (&["--kernel="], "--kernel wants a path or `linux`, got ``"),
            (&["--net=1"], "option `--net` takes no value"),
            (
                &["--arch", "riscv"],
                "unknown --arch `riscv`: x86_64 or aarch64",
            ),
            (
                &["--checks", "ping,dns"],
                "unknown check `dns`: ping, udp, tcp, http",
            ),
            (&["--type", "hvm"], "unknown --type `hvm`: pvh or pv"),
            (
                &["--mem", "15"],
                "--mem wants MiB from 16 to 1024, got `15`",
            ),
            (&["--vcpus", "3"], "--vcpus wants 1 or 2, got `3`"),
            (
                &["--timeout", "361"],
                "--timeout wants seconds from 1 to 360, got `361`",
            ),
            (
                &["--ready-wait", "0"],
                "--ready-wait wants seconds from 1 to 300, got `0`",
            ),
            (
                &["--end-wait", "x"],
                "--end-wait wants seconds from 1 to 300, got `x`",
            ),
        ];
        for (args, want) in cases {
            assert_eq!(is_usage(parse(args)), *want, "{args:?}");
        }
        // No kernel: the message says so and shows the help.
        let msg = is_usage(parse(&["--net"]));
        assert!(
            msg.starts_with("xen-dom0 needs --kernel PATH or --kernel linux\n\nusage:"),
            "{msg}"
        );
        is_usage(parse_strs(&["xen-dom0", "--kernel", "linux", "--x"]));
    }

    #[test]
    fn xen_dom0_help_lists_every_option() {
        let text = xen_dom0_usage();
        assert!(
            text.starts_with("usage: cargo xtask xen-dom0 --arch"),
            "{text}"
        );
        for opt in XEN_DOM0_OPTIONS {
            assert!(text.contains(&format!("\n  {} ", opt.name)), "{}", opt.name);
        }
        assert!(
            text.contains("\n  --ready-wait SECS   how long dom0 waits for the ready line"),
            "{text}"
        );
        assert!(text.ends_with("  --verbose           echo the serial console live\n"));
    }

    #[test]
    fn tokenizer() {
        let raw = strings(&["w", "--k=v=w", "--f", "x", "-"]);
        let mut args = Args::new(&raw);
        assert_eq!(args.next_arg(), Some(Arg::Word("w")));
        assert_eq!(
            args.next_arg(),
            Some(Arg::Flag {
                key: "--k",
                inline: Some("v=w"),
                raw: "--k=v=w"
            })
        );
        assert!(matches!(
            args.next_arg(),
            Some(Arg::Flag { key: "--f", .. })
        ));
        assert_eq!(args.value("--f", "X", None).unwrap(), "x");
        assert!(matches!(args.next_arg(), Some(Arg::Flag { key: "-", .. })));
        assert_eq!(args.next_arg(), None);
        assert!(args.value("--f", "X", None).is_err());
    }
}
