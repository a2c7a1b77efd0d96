//! `cargo xtask test`'s shell cases: `tests/shell-console` booted with its console on a pipe,
//! and driven as a user types — one command after each prompt, the answer read back and
//! checked against what the kernel must hold (a thread the app made, at the priority it
//! gave; the priority `prio` set, which the app then checks from its side after `done`).
//!
//! Besides the commands that work, each case types what a careless or hostile user would:
//! an unknown command, wrong argument counts and types, a line far past the editor's limit,
//! binary garbage and escape sequences of other terminals, Ctrl-C on a half-typed line and
//! on a running `top`, `prio` and `suspend` of kernel threads and of the shell itself. Each
//! must get a clear answer and leave the shell answering the next command.
//!
//! The first command is `reboot`: the case then waits for the second boot's prompt, so the
//! machine really started again (QEMU runs without `-no-reboot`; LinuxU's process runs its
//! program again).
//!
//! Case names: `<board>/<machine>/<accel> shell-console` (`--filter shell`).

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::apps::{self, App};
use crate::boards::{self, Runner};
use crate::build::image;
use crate::cli::Options;
use crate::{Workspace, qemu, setup};

/// The boards and machines booted.
pub(crate) const CASES: &[(&str, &str)] = &[
    ("linuxu", "realtime"),
    ("qemu-x86_64", "q35"),
    ("qemu-aarch64", "virt-gicv3"),
];

/// How long one answer may take. Measured: under 0.1 s on LinuxU and under TCG on an idle
/// host (the boot itself 1-3 s); 30 s leaves room for a host under full load.
pub(crate) const ANSWER: Duration = Duration::from_secs(30);

pub(crate) const PROMPT: &str = "rhea> ";

/// A case's name.
pub(crate) fn case_name(board: &str, machine: &str) -> String {
    super::special_case_name(board, machine, "shell-console")
}

/// A guest whose console is a pipe: what it printed so far, and its input.
pub(crate) struct Conversation {
    child: Child,
    stdin: ChildStdin,
    rx: mpsc::Receiver<Vec<u8>>,
    /// Everything printed, as text (lossy).
    seen: String,
    /// Where the next answer starts in `seen`.
    mark: usize,
}

impl Conversation {
    pub(crate) fn start(mut cmd: Command) -> Result<Conversation, String> {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
        let stdin = child.stdin.take().ok_or("no stdin pipe")?;
        let mut stdout = child.stdout.take().ok_or("no stdout pipe")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match stdout.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx.send(buf[..n].to_vec()).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        Ok(Conversation {
            child,
            stdin,
            rx,
            seen: String::new(),
            mark: 0,
        })
    }

    /// Waits until `needle` appears after the mark; returns the text from the mark to the
    /// needle's end and moves the mark there.
    pub(crate) fn expect(&mut self, needle: &str, within: Duration) -> Result<String, String> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(at) = self.seen[self.mark..].find(needle) {
                let end = self.mark + at + needle.len();
                let text = self.seen[self.mark..end].to_string();
                self.mark = end;
                return Ok(text);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "no {needle:?} within {} s; the console since the last answer:\n  | {}",
                    within.as_secs(),
                    self.seen[self.mark..].replace('\n', "\n  | ")
                ));
            }
            match self.rx.recv_timeout(left.min(Duration::from_millis(200))) {
                Ok(bytes) => self.seen.push_str(&String::from_utf8_lossy(&bytes)),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(format!(
                        "the guest ended before {needle:?}; its console:\n  | {}",
                        tail(&self.seen, 40)
                    ));
                }
            }
        }
    }

    pub(crate) fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.stdin
            .write_all(bytes)
            .and_then(|()| self.stdin.flush())
            .map_err(|e| format!("cannot type into the guest: {e}"))
    }

    /// Types `line` (and Enter) and returns what it answered, up to the next prompt (the
    /// echoed line and the prompt cut off).
    pub(crate) fn command(&mut self, line: &str) -> Result<String, String> {
        self.send(line.as_bytes())?;
        self.send(b"\r")?;
        let shown: String = line.chars().take(40).collect();
        let text = self
            .expect(PROMPT, ANSWER)
            .map_err(|e| format!("after typing {shown:?}: {e}"))?;
        let answer = text.strip_suffix(PROMPT).unwrap_or(&text);
        // The first line is the echo of what was typed.
        Ok(answer
            .split_once('\n')
            .map_or("", |(_, rest)| rest)
            .to_string())
    }

    /// Waits for the guest to end; its exit status.
    fn wait(&mut self, within: Duration) -> Result<std::process::ExitStatus, String> {
        let deadline = Instant::now() + within;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    while let Ok(bytes) = self.rx.try_recv() {
                        self.seen.push_str(&String::from_utf8_lossy(&bytes));
                    }
                    return Ok(status);
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Ok(None) => return Err(format!("still running {} s after done", within.as_secs())),
                Err(e) => return Err(format!("cannot wait for the guest: {e}")),
            }
        }
    }
}

impl Drop for Conversation {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n  | ")
}

/// The row of `threads` output naming `name`.
fn row<'a>(answer: &'a str, name: &str) -> Result<&'a str, String> {
    answer
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(name))
        .ok_or_else(|| {
            format!(
                "no thread {name:?} in:\n  | {}",
                answer.replace('\n', "\n  | ")
            )
        })
}

fn check(cond: bool, what: &str, answer: &str) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(format!(
            "{what}; the answer was:\n  | {}",
            answer.replace('\n', "\n  | ")
        ))
    }
}

/// The command that boots `app` on `board` with its console on pipes (TCG, `smp` CPUs, its
/// test command line and `extra`).
pub(crate) fn command(
    ws: &Workspace,
    board: &'static boards::Board,
    machine: &'static str,
    app: &App,
    smp: u32,
    extra: &str,
) -> Result<Command, String> {
    let opts = Options {
        smp,
        append: Some(format!("{} {extra}", app.cmdline).trim().to_string()),
        ..Options::default()
    };
    let append = boards::run_cmdline(board, machine, &opts).map_err(|e| e.to_string())?;
    setup::ensure_toolchain(ws, board).map_err(|e| e.to_string())?;
    let image = image::build(ws, board, app).map_err(|e| e.to_string())?;
    if board.runner == Runner::Process {
        let mut cmd = Command::new(&image.elf);
        cmd.args(append.split_whitespace());
        return Ok(cmd);
    }
    let q = setup::ensure_qemu(board).map_err(|e| e.to_string())?;
    let spec = qemu::Spec {
        board,
        machine,
        accel: qemu::Accel::Tcg,
        smp,
        mem: &opts.mem,
        kernel: &image.boot,
        serial: qemu::Serial::Captured,
        append: &append,
    };
    let mut m = qemu::machine(&spec, q.qboot.as_deref()).map_err(|e| e.to_string())?;
    m.binary = q.binary;
    // A reset boots again (the case types `reboot`); the run still ends by the debug-exit
    // device or PSCI SYSTEM_OFF.
    let mut cmd = Command::new(&m.binary);
    cmd.args(m.args().into_iter().filter(|a| a != "-no-reboot"));
    Ok(cmd)
}

/// Boots the case and talks to it: how long it took, or why it failed.
pub(crate) fn run(
    ws: &Workspace,
    all_apps: &[App],
    board: &str,
    machine: &str,
) -> Result<Duration, String> {
    let start = Instant::now();
    let board = boards::find(board).map_err(|e| e.to_string())?;
    let machine = board.machine(Some(machine)).map_err(|e| e.to_string())?;
    let app = apps::find(all_apps, "shell-console").map_err(|e| e.to_string())?;
    let cmd = command(ws, board, machine, app, 2, "")?;
    let mut c = Conversation::start(cmd)?;
    c.expect("shell-console: ready", Duration::from_secs(120))?;
    c.expect(PROMPT, ANSWER)?;
    // `reboot` first: the machine starts again (QEMU runs without `-no-reboot` here; LinuxU
    // runs its program again), and the conversation goes on with the new boot's shell.
    c.send(b"reboot\r")?;
    c.expect("rhea: rebooting", ANSWER)?;
    c.expect("rhea: booting on", Duration::from_secs(120))?;
    c.expect("shell-console: ready", Duration::from_secs(120))?;
    c.expect(PROMPT, ANSWER)?;
    talk(&mut c)?;
    // `done` ended the session; the app checks what the commands did, then exits.
    let status = c.wait(ANSWER)?;
    let ok = match (board.runner, status.code()) {
        (Runner::Process, Some(0)) => true,
        (Runner::Qemu, Some(code)) => {
            qemu::classify(&qemu::QemuEnd::Exited(code)) == qemu::Verdict::Success
        }
        _ => false,
    };
    if !ok || !c.seen.contains("shell-console: PASS") {
        return Err(format!(
            "the app ended with {status}, without its PASS:\n  | {}",
            tail(&c.seen, 40)
        ));
    }
    Ok(start.elapsed())
}

/// The conversation itself.
fn talk(c: &mut Conversation) -> Result<(), String> {
    // The threads: the app's worker at its priority, the shell at rhea.shell_prio=4, and
    // kernel threads marked.
    let a = c.command("threads")?;
    let worker = row(&a, "worker")?;
    check(
        worker.contains(" 7/7 "),
        "the worker is not at priority 7/7",
        &a,
    )?;
    let shell = row(&a, "shell")?;
    check(
        shell.contains(" 4/4 ") && shell.contains("running"),
        "the shell is not running at 4/4",
        &a,
    )?;
    let idle = row(&a, "idle")?;
    check(
        idle.trim_end().ends_with(" k"),
        "idle is not marked a kernel thread",
        &a,
    )?;
    check(
        !worker.trim_end().ends_with(" k"),
        "the worker is marked a kernel thread",
        &a,
    )?;

    // Change the worker's priority; the next listing shows it.
    let a = c.command("prio worker 9")?;
    check(
        a.contains("'worker': priority 9 (effective 9)"),
        "prio did not answer",
        &a,
    )?;
    let a = c.command("ps")?;
    check(
        row(&a, "worker")?.contains(" 9/9 "),
        "the worker is not at 9/9 after prio",
        &a,
    )?;

    // Refusals with reasons.
    let a = c.command("prio idle 3")?;
    check(
        a.contains("2 threads are named \"idle\": name one by its id"),
        "an ambiguous name was not refused",
        &a,
    )?;
    let a = c.command("prio T0.0 3")?;
    check(
        a.contains("'idle' is a kernel thread"),
        "prio of idle was not refused",
        &a,
    )?;
    let a = c.command("suspend console-rx")?;
    check(
        a.contains("is a kernel thread"),
        "suspending an interrupt thread was not refused",
        &a,
    )?;
    let a = c.command("suspend shell")?;
    check(
        a.contains("this shell's own thread"),
        "suspend of the shell was not refused",
        &a,
    )?;
    let a = c.command("prio worker 99")?;
    check(
        a.contains("outside 1..=63"),
        "priority 99 was not refused",
        &a,
    )?;
    let a = c.command("prio worker high")?;
    check(
        a.contains("\"high\" is not a number"),
        "a word for a priority was not refused",
        &a,
    )?;
    let a = c.command("prio worker")?;
    check(
        a.contains("expects 2 arguments (<thread> <priority>), got 1"),
        "a missing argument was not explained",
        &a,
    )?;
    let a = c.command("prio nobody 5")?;
    check(
        a.contains("no thread \"nobody\""),
        "an unknown thread was not named",
        &a,
    )?;
    let a = c.command("frobnicate now")?;
    check(
        a.contains("frobnicate: unknown command"),
        "an unknown command was not refused",
        &a,
    )?;
    let a = c.command("affinity worker 7-3")?;
    check(
        a.contains("backwards"),
        "a backwards CPU range was not refused",
        &a,
    )?;

    // Suspend and resume the worker: its state follows.
    let a = c.command("suspend worker")?;
    check(a.contains("suspended"), "suspend did not answer", &a)?;
    let a = c.command("threads")?;
    // Suspended, or (asleep when it came) to be parked when its sleep ends.
    let w = row(&a, "worker")?;
    check(
        w.contains("suspended") || w.contains("+susp"),
        "the worker is not suspended",
        &a,
    )?;
    let a = c.command("resume worker")?;
    check(a.contains("resumed"), "resume did not answer", &a)?;
    let a = c.command("threads")?;
    check(
        !row(&a, "worker")?.contains("susp"),
        "the worker is still suspended",
        &a,
    )?;

    // The app's own command, with a good and a bad argument.
    let a = c.command("answer 42")?;
    check(
        a.contains("answer: 42 it is"),
        "the app's command did not run",
        &a,
    )?;
    let a = c.command("answer 7")?;
    check(
        a.contains("answer: 7 is not the answer"),
        "the app's command's error was not shown",
        &a,
    )?;

    // A line far past the editor's limit, pasted at once (faster than the guest takes it):
    // one bell for every byte past the limit — none lost, the Enter at its end included —
    // then a clean refusal. Three times, as a paste that outruns the input path's buffers
    // lost bytes 1 run in 4 (the Enter among them: no prompt came).
    for _ in 0..3 {
        c.send(&[b'x'; 600])?;
        c.send(b"\r")?;
        let text = c
            .expect(PROMPT, ANSWER)
            .map_err(|e| format!("after pasting 600 bytes: {e}"))?;
        let bells = text.bytes().filter(|&b| b == 0x07).count();
        check(
            bells == 600 - 256 && text.contains(": unknown command"),
            &format!("600 bytes against a 256-byte line: {bells} bells, not 344, or no refusal"),
            &text.replace('\x07', ""),
        )?;
    }
    // Binary garbage and escape sequences of other terminals, then Ctrl-U: nothing typed.
    c.send(b"\x00\x7f\xff\xfe\x80\x1b[999;999X\x1b[200~\x1bOQ\x1b[<0;3;4M\x15")?;
    let a = c.command("uptime")?;
    check(
        a.contains("up 0d"),
        "uptime after garbage did not answer",
        &a,
    )?;

    // Files: no initramfs here, so `/` and `/tmp` are tmpfs.
    let a = c.command("df")?;
    check(
        a.lines()
            .any(|l| l.starts_with("/ ") && l.contains(" tmpfs "))
            && a.lines()
                .any(|l| l.starts_with("/tmp ") && l.contains(" tmpfs ")),
        "df did not list / and /tmp as tmpfs",
        &a,
    )?;
    let a = c.command("ls /")?;
    check(
        a.lines()
            .any(|l| l.starts_with("d ") && l.trim_end().ends_with(" tmp"))
            && a.contains("1 entries"),
        "ls / did not list the tmp mount point alone",
        &a,
    )?;
    let a = c.command("cat /etc/passwd")?;
    check(
        a.contains("\"/etc/passwd\": no such file or directory"),
        "cat of a missing file did not say so",
        &a,
    )?;
    // Tab completes a command name; Up recalls the last line.
    c.send(b"vers\t")?;
    let a = c.command("")?;
    check(
        a.contains("Rhea ") && a.contains("command line:"),
        "Tab did not complete version",
        &a,
    )?;
    c.send(b"\x1b[A")?;
    let a = c.command("")?;
    check(
        a.contains("command line:"),
        "Up did not recall the last line",
        &a,
    )?;

    // Ctrl-C abandons a half-typed line (nothing runs), then a running `top`.
    c.send(b"suspend work\x03")?;
    c.expect("^C", ANSWER)?;
    c.expect(PROMPT, ANSWER)?;
    let a = c.command("threads")?;
    check(
        !row(&a, "worker")?.contains("susp"),
        "a cancelled line ran",
        &a,
    )?;
    c.send(b"top 200\r")?;
    c.expect("top: every 200 ms", ANSWER)?;
    c.expect("top: every 200 ms", ANSWER)?;
    c.send(b"\x03")?;
    c.expect(PROMPT, ANSWER)?;
    // Any key ends top too.
    c.send(b"top\r")?;
    c.expect("top: every 1000 ms", ANSWER)?;
    c.send(b"q")?;
    c.expect(PROMPT, ANSWER)?;

    // The other read-only commands answer.
    for (cmd, wanted) in [
        ("cpus", "BUSY%"),
        ("mem", "heap: "),
        // The app's pool: 8 blocks of 64 bytes, 3 out, at most 3.
        (
            "mem",
            "test-pool                  8      64       3       3",
        ),
        ("irq", "VECTOR"),
        // Not linked in an app without a network (rhea-shell's `net` feature).
        ("net", "net: unknown command"),
        ("trace", "tracing: categories"),
        ("help prio", "prio <thread> <priority>"),
    ] {
        let a = c.command(cmd)?;
        check(
            a.contains(wanted),
            &format!("{cmd} did not answer with {wanted:?}"),
            &a,
        )?;
    }
    c.send(b"done\r")?;
    Ok(())
}
