//! What xtask and the L1's `/init` (`xtask/guest/nested-l1-init.sh`) tell each other, as
//! files on the 9p shares and lines on the L1's console. Pure: written and parsed here,
//! host-tested.
//!
//! The job share (read-only in the L1, mounted at `/job`):
//!
//! ```text
//! list                  the job ids, one a line, in run order (`j001`, `j002`, ...)
//! jobs/<id>/args        the L2's QEMU command: the binary, then one argument a line
//! jobs/<id>/timeout     whole seconds; the L1 kills the L2's QEMU (SIGKILL) after them
//! jobs/<id>/stdin       optional: written to the L2's serial input ...
//! jobs/<id>/stdin-after optional: ... once its console holds this text (else at once)
//! jobs/<id>/interactive optional (`cargo xtask run --accel nested-kvm`): the L2 runs on the
//!                       L1's console (the terminal), without a timeout; nothing is captured
//! images/<file>         the images the L2s boot (`-kernel /job/images/<file>`)
//! ```
//!
//! The results share (read-write, `/results`): per job `<id>/console` (the L2's serial
//! output), `<id>/stderr` (its QEMU's) and `<id>/status`, `key=value` lines written once the
//! L2 ended: `rc=` the shell's status of the QEMU process (128+N: killed by signal N),
//! `start=` and `end=` the L1's uptime in seconds, `stdin-at=` when the feed was written.
//! While an L2 runs, `<id>/console.partial` is its console so far (copied every second,
//! removed at its end): what is left of an L2 whose L1 never finished it.
//!
//! The L1's console lines, each starting with [`MARK`]: `init` (first line of `/init`),
//! `modules N`, `no-kvm <why>` or `fail <why>` (then it powers off), `ready <uptime>` (KVM usable, the
//! shares mounted), `start <id>`, `end <id> rc=N secs=S`, `done` (before `poweroff -f`).

use std::time::Duration;

use crate::qemu::{QemuEnd, StdinFeed};

/// The prefix of every line the L1's `/init` prints for xtask.
pub(crate) const MARK: &str = "NESTED-L1 ";

/// The file whose presence makes a job interactive (see the module docs).
pub(crate) const INTERACTIVE: &str = "interactive";

/// The status the L1's shell reports for a QEMU its `timeout -s KILL` killed (128 + 9).
pub(crate) const KILLED_BY_TIMEOUT: i32 = 128 + 9;

/// The id of the job at `index` (0-based): `j001`, ...
pub(crate) fn job_id(index: usize) -> String {
    format!("j{:03}", index + 1)
}

/// The files of one job under `jobs/<id>/`, as (name, contents): `argv` is the L2's QEMU
/// binary and its arguments. An argument holding a newline or NUL cannot be written one a
/// line, nor a stdin marker holding a newline (it is matched within a line).
pub(crate) fn job_files(
    argv: &[String],
    timeout: Duration,
    stdin: Option<&StdinFeed>,
) -> Result<Vec<(&'static str, Vec<u8>)>, String> {
    if argv.is_empty() {
        return Err("a job needs a QEMU binary".to_string());
    }
    let mut args = String::new();
    for arg in argv {
        if arg.contains(['\n', '\0']) {
            return Err(format!(
                "QEMU argument {arg:?} holds a newline or NUL: not one line"
            ));
        }
        args.push_str(arg);
        args.push('\n');
    }
    let secs = timeout.as_secs().max(1);
    let mut files = vec![
        ("args", args.into_bytes()),
        ("timeout", format!("{secs}\n").into_bytes()),
    ];
    if let Some(feed) = stdin {
        files.push(("stdin", feed.text.clone().into_bytes()));
        if let Some(marker) = &feed.after {
            if marker.is_empty() || marker.contains(['\n', '\0']) {
                return Err(format!("stdin marker {marker:?} is empty or not one line"));
            }
            files.push(("stdin-after", marker.clone().into_bytes()));
        }
    }
    Ok(files)
}

/// The `list` file: the ids, one a line.
pub(crate) fn list_file(ids: &[String]) -> String {
    ids.iter().map(|id| format!("{id}\n")).collect()
}

/// One job's `status` file.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Status {
    /// The shell's status of the QEMU process.
    pub(crate) rc: i32,
    /// The L1's uptime at the start and end of the L2, seconds.
    pub(crate) start: f64,
    pub(crate) end: f64,
    /// When the stdin text was written (L1 uptime), if it was.
    pub(crate) stdin_at: Option<f64>,
}

impl Status {
    /// The L2's wall time as the L1 saw it.
    pub(crate) fn took(&self) -> Duration {
        Duration::from_secs_f64((self.end - self.start).max(0.0))
    }

    /// When the stdin text was written, since the L2 started.
    pub(crate) fn stdin_written(&self) -> Option<Duration> {
        self.stdin_at
            .map(|at| Duration::from_secs_f64((at - self.start).max(0.0)))
    }
}

/// Parses a `status` file; `Err` says what is missing or malformed.
pub(crate) fn parse_status(text: &str) -> Result<Status, String> {
    let (mut rc, mut start, mut end, mut stdin_at) = (None, None, None, None);
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("status line {line:?} is not key=value"));
        };
        let secs = || {
            value
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| format!("status {key}={value:?} is not a time in seconds"))
        };
        match key {
            "rc" => {
                rc = Some(
                    value
                        .parse::<i32>()
                        .map_err(|_| format!("status rc={value:?} is not a number"))?,
                )
            }
            "start" => start = Some(secs()?),
            "end" => end = Some(secs()?),
            "stdin-at" => stdin_at = Some(secs()?),
            _ => {} // later additions are ignored
        }
    }
    match (rc, start, end) {
        (Some(rc), Some(start), Some(end)) => Ok(Status {
            rc,
            start,
            end,
            stdin_at,
        }),
        _ => Err(format!(
            "status lacks {}",
            [
                ("rc", rc.is_none()),
                ("start", start.is_none()),
                ("end", end.is_none())
            ]
            .iter()
            .filter(|(_, missing)| *missing)
            .map(|(k, _)| *k)
            .collect::<Vec<_>>()
            .join(", ")
        )),
    }
}

/// How an L2's QEMU ended, from its status (`timeout`: the job's): killed by the L1's
/// `timeout` is [`QemuEnd::Timeout`]; `Err` when QEMU did not start at all (126: not
/// executable, 127: not found, as the shell reports them).
pub(crate) fn l2_end(status: &Status, timeout: Duration) -> Result<QemuEnd, String> {
    match status.rc {
        126 | 127 => Err(format!(
            "the L1 could not start the L2's QEMU (shell status {})",
            status.rc
        )),
        KILLED_BY_TIMEOUT if status.took() + Duration::from_secs(1) >= timeout => {
            Ok(QemuEnd::Timeout(timeout))
        }
        rc if rc > 128 => Ok(QemuEnd::Signaled(rc - 128)),
        rc => Ok(QemuEnd::Exited(rc)),
    }
}

/// What the L1's console said, from its [`MARK`] lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct L1Report {
    /// `/init` ran.
    pub(crate) init: bool,
    /// The modules it loaded.
    pub(crate) modules: Option<usize>,
    /// KVM usable and the shares mounted.
    pub(crate) ready: bool,
    /// Why KVM is not usable (`no-kvm ...`), if it said so.
    pub(crate) no_kvm: Option<String>,
    /// Another setup failure (`fail ...`: a share that does not mount), if any.
    pub(crate) failed: Option<String>,
    /// Jobs started, and ended, in order.
    pub(crate) started: Vec<String>,
    pub(crate) ended: Vec<String>,
    /// `done` seen: every job ran.
    pub(crate) done: bool,
}

/// Reads the [`MARK`] lines of the L1's console.
pub(crate) fn parse_l1_console<'a>(lines: impl IntoIterator<Item = &'a str>) -> L1Report {
    let mut r = L1Report::default();
    for line in lines {
        let Some(rest) = line.trim_end_matches('\r').split(MARK).nth(1) else {
            continue;
        };
        let (word, tail) = rest.split_once(' ').unwrap_or((rest, ""));
        let first = || {
            tail.split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string()
        };
        match word {
            "init" => r.init = true,
            "modules" => r.modules = tail.trim().parse().ok(),
            "no-kvm" => r.no_kvm = Some(tail.trim().to_string()),
            "fail" => r.failed = Some(tail.trim().to_string()),
            "ready" => r.ready = true,
            "start" => r.started.push(first()),
            "end" => r.ended.push(first()),
            "done" => r.done = true,
            _ => {}
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn job_ids_and_list() {
        assert_eq!(job_id(0), "j001");
        assert_eq!(job_id(41), "j042");
        assert_eq!(list_file(&strings(&["j001", "j002"])), "j001\nj002\n");
        assert_eq!(list_file(&[]), "");
    }

    #[test]
    fn job_file_contents() {
        let argv = strings(&[
            "qemu-system-x86_64",
            "-M",
            "q35",
            "-append",
            "rhea.checker=1 loops=5",
        ]);
        let files = job_files(&argv, Duration::from_secs(60), None).unwrap();
        assert_eq!(
            files,
            [
                (
                    "args",
                    b"qemu-system-x86_64\n-M\nq35\n-append\nrhea.checker=1 loops=5\n".to_vec()
                ),
                ("timeout", b"60\n".to_vec()),
            ]
        );
        // A sub-second timeout is still one second; stdin with and without a marker.
        let feed = StdinFeed {
            text: "hello rhea\nsecond line\n".to_string(),
            after: Some("echo: ready".to_string()),
        };
        let files = job_files(&argv, Duration::from_millis(10), Some(&feed)).unwrap();
        let names: Vec<&str> = files.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["args", "timeout", "stdin", "stdin-after"]);
        assert_eq!(files[1].1, b"1\n");
        assert_eq!(files[2].1, b"hello rhea\nsecond line\n");
        assert_eq!(files[3].1, b"echo: ready");
        let at_once = StdinFeed {
            text: "x".to_string(),
            after: None,
        };
        let files = job_files(&argv, Duration::from_secs(5), Some(&at_once)).unwrap();
        assert_eq!(files.len(), 3);
        // What cannot be one line is refused.
        assert!(job_files(&strings(&["q", "-append", "a\nb"]), Duration::ZERO, None).is_err());
        assert!(job_files(&strings(&["q", "a\0b"]), Duration::ZERO, None).is_err());
        assert!(job_files(&[], Duration::ZERO, None).is_err());
        let bad = StdinFeed {
            text: "x".to_string(),
            after: Some("a\nb".to_string()),
        };
        assert!(job_files(&argv, Duration::ZERO, Some(&bad)).is_err());
    }

    #[test]
    fn status_files() {
        let s = parse_status("rc=33\nstart=14.52\nend=18.01\n").unwrap();
        assert_eq!(
            s,
            Status {
                rc: 33,
                start: 14.52,
                end: 18.01,
                stdin_at: None
            }
        );
        assert_eq!(s.took().as_millis(), 3490);
        assert_eq!(s.stdin_written(), None);
        let s = parse_status("start=1.00\nrc=137\nstdin-at=1.50\nend=2\nnew=1\n").unwrap();
        assert_eq!(
            (s.rc, s.stdin_written()),
            (137, Some(Duration::from_millis(500)))
        );
        assert_eq!(
            parse_status("rc=33\n").unwrap_err(),
            "status lacks start, end"
        );
        assert!(parse_status("").unwrap_err().contains("rc, start, end"));
        assert!(parse_status("rc=x\nstart=1\nend=2").is_err());
        assert!(parse_status("rc=1\nstart=-1\nend=2").is_err());
        assert!(parse_status("rc 1").is_err());
    }

    #[test]
    fn l2_ends() {
        let status = |rc, secs: f64| Status {
            rc,
            start: 10.0,
            end: 10.0 + secs,
            stdin_at: None,
        };
        let t = Duration::from_secs(60);
        assert_eq!(l2_end(&status(33, 3.0), t), Ok(QemuEnd::Exited(33)));
        assert_eq!(l2_end(&status(1, 1.0), t), Ok(QemuEnd::Exited(1)));
        assert_eq!(l2_end(&status(137, 60.2), t), Ok(QemuEnd::Timeout(t)));
        // Killed early: not the timeout.
        assert_eq!(l2_end(&status(137, 5.0), t), Ok(QemuEnd::Signaled(9)));
        assert_eq!(l2_end(&status(134, 5.0), t), Ok(QemuEnd::Signaled(6)));
        assert!(l2_end(&status(127, 0.0), t).unwrap_err().contains("127"));
        assert!(l2_end(&status(126, 0.0), t).is_err());
    }

    #[test]
    fn l1_console() {
        let console = [
            "[    0.000000] Linux version 6.1.0",
            "NESTED-L1 init",
            "NESTED-L1 modules 14",
            "NESTED-L1 ready 11.93",
            "NESTED-L1 start j001",
            "NESTED-L1 end j001 rc=33 secs=3.41",
            "NESTED-L1 start j002\r",
        ];
        let r = parse_l1_console(console);
        assert!(r.init && r.ready && !r.done);
        assert_eq!(r.modules, Some(14));
        assert_eq!(r.started, ["j001", "j002"]);
        assert_eq!(r.ended, ["j001"]);
        assert_eq!(r.no_kvm, None);
        let r = parse_l1_console([
            "NESTED-L1 init",
            "NESTED-L1 no-kvm /dev/kvm missing; dmesg: kvm: no hardware support",
        ]);
        assert!(!r.ready);
        assert_eq!(
            r.no_kvm.as_deref(),
            Some("/dev/kvm missing; dmesg: kvm: no hardware support")
        );
        // Kernel messages interleaved in front of a marker still count.
        let r = parse_l1_console(["[   12.1] random: crng initNESTED-L1 done"]);
        assert!(r.done);
        assert_eq!(parse_l1_console(["nothing here"]), L1Report::default());
        let r = parse_l1_console(["NESTED-L1 fail cannot mount the job share (9p tag job)"]);
        assert_eq!(
            r.failed.as_deref(),
            Some("cannot mount the job share (9p tag job)")
        );
    }
}
