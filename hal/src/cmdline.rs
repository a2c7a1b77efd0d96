//! The kernel command line, strictly: every `rhea.*` argument is a known key with a valid
//! value, or the line is refused with an error naming the argument, its value and what is
//! allowed. No value is ever replaced by a default or clamped into range.
//!
//! Grammar: arguments are separated by ASCII whitespace; an argument is `key=value` (split at
//! the first `=`) or a bare flag `key`. There is no quoting. Arguments outside the `rhea.`
//! namespace belong to the app (`rhea::cmdline_value`) and are not checked here; those under
//! `rhea.net.` are the network stack's (`rhea_net::Config::with_cmdline` checks them), those
//! under `rhea.ssh.` the SSH server's (`rhea_ssh::Config::from_cmdline`).
//!
//! Duplicates: **the last occurrence wins**, as with Linux's command line, so a later
//! `--append` overrides what a test harness put first (`rhea.cpus=4 ... rhea.cpus=3` uses 3).
//! Every occurrence must still be valid: `rhea.cpus=abc rhea.cpus=2` is refused.
//!
//! Entry points: [`parse`] checks a whole line (what boot does, and what a fuzzer drives);
//! [`Cmdline::flag`], [`Cmdline::number`] and [`Cmdline::choice`] read one key with its type,
//! also strictly, so a board can read a key before the whole line has been checked. Pure: no
//! allocation, no hardware; host-tested below.

use core::fmt;

/// What values a key takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `0` or `1`.
    Flag,
    /// A decimal whole number from `min` to `max` (no sign, no `0x`, no separators).
    Number {
        /// The smallest value allowed.
        min: u64,
        /// The largest value allowed.
        max: u64,
    },
    /// One of a few words.
    Choice(&'static [&'static str]),
    /// Some of a few words, comma-separated (`a,c`): at least one, each known; the value is
    /// the set of their indices as a bit mask (at most 64 words).
    Set(&'static [&'static str]),
    /// An absolute path on the host (LinuxU): starts with `/`, at most 4096 bytes, no control
    /// characters.
    HostPath,
}

/// One known `rhea.*` key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key {
    /// The full name, e.g. `rhea.cpus`.
    pub name: &'static str,
    /// Its values.
    pub kind: Kind,
}

/// The known keys. A key added here is documented in README.md's command-line table (and what
/// it does in its doc comment: the kernel image carries only the names and the values).
pub mod keys {
    use super::{Key, Kind};

    /// Largest CPU count (`rhea_sched::MAX_CPUS`, LinuxU's `MAX_VCPUS`, the boards' tables).
    pub const MAX_CPUS: u64 = 64;

    /// Run the scheduler's invariant checker at every scheduling decision.
    pub const CHECKER: Key = Key {
        name: "rhea.checker",
        kind: Kind::Flag,
    };
    /// Event tracing: the categories recorded from boot (`all`: every one; `off`: none, but
    /// the buffers are set up so an app can turn tracing on). The buffers are dumped on the
    /// console when main returns, and the scheduling-trace hash is printed.
    pub const TRACE: Key = Key {
        name: "rhea.trace",
        kind: Kind::Set(&["sched", "irq", "net", "app", "all", "off"]),
    };
    /// Event tracing: what a full buffer does (default `ring`, a flight recorder; `full`: keep
    /// the first events; `freeze`: a ring until the app freezes it on a trigger).
    pub const TRACE_MODE: Key = Key {
        name: "rhea.trace_mode",
        kind: Kind::Choice(&["full", "ring", "freeze"]),
    };
    /// The shell (`rhea-shell`, in apps that link it): `console` starts it on the serial
    /// console, `off` keeps it off even where the app would start it.
    pub const SHELL: Key = Key {
        name: "rhea.shell",
        kind: Kind::Choice(&["console", "off"]),
    };
    /// The shell's thread priority (default 5: below the app's usual work, above idle).
    pub const SHELL_PRIO: Key = Key {
        name: "rhea.shell_prio",
        kind: Kind::Number { min: 1, max: 63 },
    };
    /// Event tracing: where the dump at the end goes (default `console`; `file`: LinuxU's
    /// `rhea-trace.txt` in the working directory, elsewhere the console).
    pub const TRACE_TO: Key = Key {
        name: "rhea.trace_to",
        kind: Kind::Choice(&["console", "file"]),
    };
    /// Event tracing: each CPU's buffer in KiB (default 256; 32 bytes an event).
    pub const TRACE_KIB: Key = Key {
        name: "rhea.trace_kib",
        kind: Kind::Number { min: 4, max: 65536 },
    };
    /// x86 PC boards: cross-check the TSC's frequency against the best other source (a CPUID-stated
    /// frequency, else the HPET, the ACPI PM timer or the PIT) and print the disagreement in ppm.
    pub const TSC_CHECK: Key = Key {
        name: "rhea.tsc_check",
        kind: Kind::Flag,
    };
    /// x86 PC boards: take the TSC's frequency from this source only (default: the first that
    /// works, in this order); one the machine lacks, or that fails, ends the boot.
    pub const TSC_REF: Key = Key {
        name: "rhea.tsc_ref",
        kind: Kind::Choice(&["cpuid", "hpet", "pmtimer", "pit"]),
    };
    /// LinuxU: deterministic simulation mode (virtual time, one vCPU).
    pub const SIM: Key = Key {
        name: "rhea.sim",
        kind: Kind::Flag,
    };
    /// LinuxU simulation: the timer-jitter seed (0: no jitter); seeded test apps read it too.
    pub const SEED: Key = Key {
        name: "rhea.seed",
        kind: Kind::Number {
            min: 0,
            max: u64::MAX,
        },
    };
    /// LinuxU: the initramfs, a cpio (newc) archive in a host file, mounted at `/` (the QEMU
    /// and Xen boards take it from the boot protocol instead).
    pub const INITRD: Key = Key {
        name: "rhea.initrd",
        kind: Kind::HostPath,
    };
    /// LinuxU: a host directory mounted in Rhea, `HOST:GUEST` (both absolute; the guest
    /// point's directory must exist), through raw system calls.
    pub const FS_HOST: Key = Key {
        name: "rhea.fs.host",
        kind: Kind::HostPath,
    };
    /// The size limit of the tmpfs at `/tmp` (and at `/` when there is no initramfs), in KiB
    /// (default: a quarter of the heap free when it is mounted, at most 64 MiB).
    pub const TMP_KIB: Key = Key {
        name: "rhea.tmp_kib",
        kind: Kind::Number {
            min: 4,
            max: 16 << 20,
        },
    };
    /// LinuxU: RAM in MiB (default 64).
    pub const MEM_MIB: Key = Key {
        name: "rhea.mem_mib",
        kind: Kind::Number { min: 4, max: 4096 },
    };
    /// The kernel heap in KiB, exactly (default: the app's need plus a share of RAM).
    pub const HEAP_KIB: Key = Key {
        name: "rhea.heap_kib",
        kind: Kind::Number {
            min: 16,
            max: 4 << 20,
        },
    };
    /// The most the timer may fire ahead of a deadline, learnt from how late its interrupts come,
    /// then spun off with interrupts disabled (default 100; 0: off).
    pub const TIMER_ADVANCE_US: Key = Key {
        name: "rhea.timer_advance_us",
        kind: Kind::Number { min: 0, max: 1000 },
    };
    /// Use at most N CPUs (LinuxU: start N vCPUs, default 1).
    pub const CPUS: Key = Key {
        name: "rhea.cpus",
        kind: Kind::Number {
            min: 1,
            max: MAX_CPUS,
        },
    };
    /// Qemu-x86_64 fault injection: CPU N gets its INIT but no start-up IPI.
    pub const SMP_NOSIPI: Key = Key {
        name: "rhea.smp.nosipi",
        kind: Kind::Number {
            min: 1,
            max: MAX_CPUS - 1,
        },
    };
    /// Arm fault injection: CPU N is never started.
    pub const SMP_NOSTART: Key = Key {
        name: "rhea.smp.nostart",
        kind: Kind::Number {
            min: 1,
            max: MAX_CPUS - 1,
        },
    };
    /// x86 PC boards: let PCI NICs use MSI-X (default on); `off`: MSI where the device has it
    /// (see [`PCI_MSI`]), else INTx.
    pub const PCI_MSIX: Key = Key {
        name: "rhea.pci.msix",
        kind: Kind::Choice(&["on", "off"]),
    };
    /// x86 PC boards: let PCI NICs that do not use MSI-X use MSI (default on); with
    /// `rhea.pci.msix=off` too: INTx.
    pub const PCI_MSI: Key = Key {
        name: "rhea.pci.msi",
        kind: Kind::Choice(&["on", "off"]),
    };

    /// Every known key, sorted by name.
    pub const ALL: &[&Key] = &[
        &CHECKER,
        &CPUS,
        &FS_HOST,
        &HEAP_KIB,
        &INITRD,
        &MEM_MIB,
        &PCI_MSI,
        &PCI_MSIX,
        &SEED,
        &SHELL,
        &SHELL_PRIO,
        &SIM,
        &SMP_NOSIPI,
        &SMP_NOSTART,
        &TIMER_ADVANCE_US,
        &TMP_KIB,
        &TRACE,
        &TRACE_KIB,
        &TRACE_MODE,
        &TRACE_TO,
        &TSC_CHECK,
        &TSC_REF,
    ];

    /// Keys under this prefix are the network stack's to check (`rhea_net`).
    pub const NET_PREFIX: &str = "rhea.net.";
    /// Keys under this prefix are the SSH server's to check (`rhea_ssh::Config`): key
    /// material a kernel-wide table should not have to know the shape of.
    pub const SSH_PREFIX: &str = "rhea.ssh.";
}

/// The namespace this module checks.
pub const PREFIX: &str = "rhea.";

/// One argument of the line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arg<'a> {
    /// The text before the first `=` (the whole argument for a bare flag).
    pub key: &'a str,
    /// The text after the first `=`; `None` for a bare flag.
    pub value: Option<&'a str>,
}

impl<'a> Arg<'a> {
    fn split(word: &'a str) -> Self {
        match word.split_once('=') {
            Some((key, value)) => Arg {
                key,
                value: Some(value),
            },
            None => Arg {
                key: word,
                value: None,
            },
        }
    }
}

/// What is wrong with an argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Problem {
    /// A `rhea.*` key that is not in [`keys::ALL`] (and not under `rhea.net.`).
    UnknownKey,
    /// A known key given without `=value`.
    MissingValue(&'static Key),
    /// A known key whose value is not one it takes.
    BadValue(&'static Key),
}

/// A refused argument: which one, and why. Its `Display` is the message boot prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CmdlineError<'a> {
    /// The argument's key as written.
    pub key: &'a str,
    /// Its value as written (`None`: a bare flag).
    pub value: Option<&'a str>,
    /// Why it was refused.
    pub problem: Problem,
}

impl fmt::Display for Kind {
    /// What is allowed, e.g. "a whole number from 1 to 64".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Kind::Flag => f.write_str("0 or 1"),
            Kind::HostPath => f.write_str("an absolute path on the host"),
            Kind::Number { min, max } => write!(f, "a whole number from {min} to {max}"),
            Kind::Choice(words) | Kind::Set(words) => {
                if matches!(self, Kind::Set(_)) {
                    f.write_str("a comma-separated list of ")?;
                }
                for (i, w) in words.iter().enumerate() {
                    let sep = match i {
                        0 => "",
                        _ if i + 1 == words.len() => " or ",
                        _ => ", ",
                    };
                    write!(f, "{sep}{w}")?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for CmdlineError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.value {
            Some(v) => write!(f, "{}={v}: ", self.key)?,
            None => write!(f, "{}: ", self.key)?,
        }
        match self.problem {
            Problem::UnknownKey => {
                f.write_str("unknown key; known keys: ")?;
                for (i, k) in keys::ALL.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    f.write_str(k.name)?;
                }
                write!(
                    f,
                    " (and {}*, the network's; {}*, the SSH server's)",
                    keys::NET_PREFIX,
                    keys::SSH_PREFIX
                )
            }
            Problem::MissingValue(k) => write!(f, "needs a value: {}=<{}>", k.name, k.kind),
            Problem::BadValue(k) => write!(f, "expected {}", k.kind),
        }
    }
}

/// A command line. [`parse`] gives one whose every `rhea.*` argument was checked;
/// [`Cmdline::new`] wraps a line unchecked, for reading single keys strictly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cmdline<'a> {
    line: &'a str,
}

/// Checks every `rhea.*` argument of `line` (known key, valid value; `rhea.net.*` excepted).
/// The first bad one, left to right, is the error.
pub fn parse(line: &str) -> Result<Cmdline<'_>, CmdlineError<'_>> {
    let c = Cmdline::new(line);
    for arg in c.args() {
        if !arg.key.starts_with(PREFIX)
            || arg.key.starts_with(keys::NET_PREFIX)
            || arg.key.starts_with(keys::SSH_PREFIX)
        {
            continue;
        }
        let Some(key) = keys::ALL.iter().copied().find(|k| k.name == arg.key) else {
            return Err(CmdlineError {
                key: arg.key,
                value: arg.value,
                problem: Problem::UnknownKey,
            });
        };
        check(key, arg)?;
    }
    Ok(c)
}

/// The value of `arg` as `key` takes it, as a number (flags: 0 or 1; choices: the index).
fn check<'a>(key: &'static Key, arg: Arg<'a>) -> Result<u64, CmdlineError<'a>> {
    let err = |problem| CmdlineError {
        key: arg.key,
        value: arg.value,
        problem,
    };
    let Some(value) = arg.value else {
        return Err(err(Problem::MissingValue(key)));
    };
    let parsed = match key.kind {
        Kind::Flag => match value {
            "0" => Some(0),
            "1" => Some(1),
            _ => None,
        },
        Kind::Number { min, max } => whole_number(value).filter(|n| (min..=max).contains(n)),
        Kind::Choice(words) => words.iter().position(|w| *w == value).map(|i| i as u64),
        Kind::Set(words) => value.split(',').try_fold(0u64, |mask, item| {
            let i = words.iter().position(|w| *w == item)?;
            Some(mask | 1 << i)
        }),
        Kind::HostPath => {
            (value.starts_with('/') && value.len() <= 4096 && !value.chars().any(char::is_control))
                .then_some(0)
        }
    };
    parsed.ok_or(err(Problem::BadValue(key)))
}

/// A plain decimal number: digits only (no sign, no prefix), no overflow.
fn whole_number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.bytes().try_fold(0u64, |n, b| {
        n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

impl<'a> Cmdline<'a> {
    /// Wraps `line` without checking it.
    pub const fn new(line: &'a str) -> Self {
        Cmdline { line }
    }

    /// The whole line as given.
    pub const fn as_str(&self) -> &'a str {
        self.line
    }

    /// Every argument, left to right.
    pub fn args(&self) -> impl DoubleEndedIterator<Item = Arg<'a>> + 'a {
        self.line.split_ascii_whitespace().map(Arg::split)
    }

    /// The raw value of the last `key=value` argument (any namespace); `None` if absent or
    /// given only as a bare flag.
    pub fn value(&self, key: &str) -> Option<&'a str> {
        self.args()
            .rev()
            .find(|a| a.key == key && a.value.is_some())?
            .value
    }

    /// Every occurrence of `key` checked; the last one's value.
    fn last(&self, key: &'static Key) -> Result<Option<u64>, CmdlineError<'a>> {
        let mut last = None;
        for arg in self.args().filter(|a| a.key == key.name) {
            last = Some(check(key, arg)?);
        }
        Ok(last)
    }

    /// A [`Kind::Flag`] key: `false` when absent.
    pub fn flag(&self, key: &'static Key) -> Result<bool, CmdlineError<'a>> {
        debug_assert!(key.kind == Kind::Flag, "{} is not a flag", key.name);
        Ok(self.last(key)? == Some(1))
    }

    /// A [`Kind::Number`] key: `None` when absent.
    pub fn number(&self, key: &'static Key) -> Result<Option<u64>, CmdlineError<'a>> {
        debug_assert!(
            matches!(key.kind, Kind::Number { .. }),
            "{} is not a number",
            key.name
        );
        self.last(key)
    }

    /// A [`Kind::HostPath`] key: the path given, `None` when absent.
    pub fn host_path(&self, key: &'static Key) -> Result<Option<&'a str>, CmdlineError<'a>> {
        debug_assert!(key.kind == Kind::HostPath, "{} is not a path", key.name);
        self.last(key)?;
        Ok(self.value(key.name))
    }

    /// A [`Kind::Set`] key: the words given as a mask of their indices, `None` when absent.
    pub fn set(&self, key: &'static Key) -> Result<Option<u64>, CmdlineError<'a>> {
        debug_assert!(
            matches!(key.kind, Kind::Set(_)),
            "{} is not a set",
            key.name
        );
        self.last(key)
    }

    /// A [`Kind::Choice`] key: the word given, `None` when absent.
    pub fn choice(&self, key: &'static Key) -> Result<Option<&'static str>, CmdlineError<'a>> {
        let Kind::Choice(words) = key.kind else {
            debug_assert!(false, "{} is not a choice", key.name);
            return Ok(None);
        };
        Ok(self.last(key)?.map(|i| words[i as usize]))
    }
}

#[cfg(test)]
mod tests;
