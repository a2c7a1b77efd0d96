//! `cargo xtask test`'s SSH cases: the appliance on a tap with `rhea.ssh.*` keys, driven by
//! the real OpenSSH client (`ssh`, `ssh-keygen` from Debian's openssh-client, installed when
//! missing) from the host. Case names: `<board>/<machine>/<accel> appliance ssh`
//! (`--filter ssh`).
//!
//! What each case checks, in order:
//! 1. **key login and a command**: `ssh appliance threads` exits 0 and prints the kernel's
//!    thread table, in which the thread running the command is an `ssh-<n>` thread, running,
//!    at the shell's priority (`rhea.shell_prio=4` here); a command with a bad argument exits
//!    1 and says why; `mem` lists the network's pool of 256 frames; `version` echoes the
//!    command line; the host key the client was shown is the one the guest printed
//!    (`ssh-keygen -lf`);
//! 2. **a wrong key** is refused (`Permission denied (publickey)`, exit 255), and the guest logs the
//!    refusal with that key's fingerprint;
//! 3. **an interactive session** (`ssh -tt`): prompt, `prio ssh-<n> 9` on its own thread, a
//!    listing that shows 9/9, `exit` (ssh exits 0);
//! 4. **several sessions at once**: three `top`s stay connected together, each refreshing;
//!    a fourth connection meanwhile is turned away (`rhea.ssh.sessions=3`); then all three
//!    clients are killed mid-command, and a fresh session finds **nothing left behind**: no
//!    other `ssh-<n>` thread, one established connection on port 22 (its own);
//! 5. **bad input**: a client offering only a key exchange, a cipher or a host-key type the
//!    server lacks is refused with the reason logged; a connection that sends its banner and
//!    stops is closed after the login grace (`rhea.ssh.grace=5`); a command with a terminal
//!    escape is refused and logged with the escape as text; a connection sending garbage is
//!    closed at once; 12 connections opened together are each answered or reset, and a login
//!    afterwards works;
//! 6. **an idle shell** is closed after `rhea.ssh.idle=5`.
//!
//! Timing: each wait has a margin of many times what was measured (a login takes ~15 ms on
//! LinuxU; the idle and grace limits are checked to within +10 s).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::net::{Guest, Wire};
use crate::setup;

/// The boards and machines (board, machine, case name, wire, memory).
pub(crate) const CASES: [(&str, &str, &str, u8, &str); 2] = [
    (
        "linuxu",
        "realtime",
        "linuxu/realtime/native appliance ssh",
        14,
        "128M",
    ),
    (
        "qemu-x86_64",
        "q35",
        "qemu-x86_64/q35/tcg appliance ssh",
        15,
        "128M",
    ),
];

/// The key material of one run, made fresh in a directory of its own.
pub(crate) struct Keys {
    dir: PathBuf,
    /// Authorized.
    good: PathBuf,
    /// Not authorized.
    bad: PathBuf,
    /// The host key's seed (64 hex digits).
    host_seed: String,
}

impl Keys {
    pub(crate) fn new(dir: &Path) -> Result<Keys, String> {
        ensure_openssh()?;
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let good = dir.join("good");
        let bad = dir.join("bad");
        for k in [&good, &bad] {
            let out = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "rhea-test", "-f"])
                .arg(k)
                .output()
                .map_err(|e| format!("cannot run ssh-keygen: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "ssh-keygen failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        let host_seed = random_seed_hex()?;
        Ok(Keys {
            dir: dir.to_path_buf(),
            good,
            bad,
            host_seed,
        })
    }

    /// The base64 field of a public key file.
    fn public(key: &Path) -> Result<String, String> {
        let text = std::fs::read_to_string(key.with_extension("pub"))
            .map_err(|e| format!("{}.pub: {e}", key.display()))?;
        text.split_whitespace()
            .nth(1)
            .map(str::to_string)
            .ok_or_else(|| format!("{}.pub: no key", key.display()))
    }

    /// The appliance's command-line arguments for these keys.
    pub(crate) fn args(&self) -> Result<Vec<String>, String> {
        Ok(vec![
            format!("rhea.ssh.keys={}", Self::public(&self.good)?),
            format!("rhea.ssh.hostkey={}", self.host_seed),
            "rhea.ssh.sessions=3".into(),
            "rhea.ssh.idle=5".into(),
            "rhea.ssh.grace=5".into(),
            "rhea.shell_prio=4".into(),
        ])
    }
}

/// A fresh host key seed (`rhea.ssh.hostkey`): 32 bytes from `/dev/urandom`, as 64 hex
/// digits.
pub(crate) fn random_seed_hex() -> Result<String, String> {
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut seed))
        .map_err(|e| format!("/dev/urandom: {e}"))?;
    Ok(seed.iter().map(|b| format!("{b:02x}")).collect())
}

/// `ssh` and `ssh-keygen`, from Debian's openssh-client when missing.
fn ensure_openssh() -> Result<(), String> {
    let have = |p: &str| {
        Command::new(p)
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success() || !o.stderr.is_empty())
    };
    if have("ssh") {
        return Ok(());
    }
    if setup::running_as_root() && setup::host_os().is_debian_like() {
        setup::apt(&["install", "-y", "--no-install-recommends", "openssh-client"]);
    }
    if have("ssh") {
        Ok(())
    } else {
        Err("the SSH cases need OpenSSH's client: apt-get install openssh-client".into())
    }
}

/// An `ssh` command to the guest with `key`, never asking anything, host key recorded in the
/// run's own file.
fn ssh(keys: &Keys, key: &Path, guest: Ipv4Addr, opts: &[&str], cmd: &[&str]) -> Command {
    let mut c = Command::new("ssh");
    c.arg("-i")
        .arg(key)
        .args([
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "StrictHostKeyChecking=accept-new",
            "-o",
            "ConnectTimeout=20",
            "-o",
            "LogLevel=ERROR",
        ])
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            keys.dir.join("known_hosts").display()
        ))
        .args(opts)
        .arg(format!("operator@{guest}"))
        .args(cmd);
    c.stdin(Stdio::null());
    c
}

/// Runs `cmd` to its end (killed after `limit`): (exit code, stdout, stderr).
fn status_output(
    mut cmd: Command,
    limit: Duration,
) -> Result<(Option<i32>, String, String), String> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().map_err(|e| format!("cannot run ssh: {e}"))?;
    wait_status_output(child, limit)
}

fn wait_status_output(
    mut child: Child,
    limit: Duration,
) -> Result<(Option<i32>, String, String), String> {
    let start = Instant::now();
    loop {
        if child.try_wait().map_err(|e| e.to_string())?.is_some() {
            break;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = child.wait_with_output().map_err(|e| e.to_string())?;
    Ok((
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    ))
}

/// The row of `threads`' table for the thread named `prefix…`, split in columns.
fn rows<'a>(table: &'a str, prefix: &str) -> Vec<Vec<&'a str>> {
    table
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|c| c.len() > 3 && c[1].starts_with(prefix))
        .collect()
}

/// Waits until a console line holds `what`.
fn console_has(guest: &Guest, what: &str, limit: Duration) -> Result<String, String> {
    let start = Instant::now();
    loop {
        if let Some(l) = guest.console().iter().find(|l| l.contains(what)) {
            return Ok(l.clone());
        }
        if start.elapsed() > limit {
            return Err(format!("no console line with {what:?} within {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What a case measured.
#[derive(Debug, Default)]
pub(crate) struct Figures {
    /// `ssh appliance uptime`, wall time from the host, best of 5 (ms).
    pub(crate) login_ms: f64,
}

const LIMIT: Duration = Duration::from_secs(60);

/// Runs the checks above against the appliance on `wire`.
pub(crate) fn run(wire: &Wire, guest: &Guest, keys: &Keys) -> Result<Figures, String> {
    let g = wire.guest;
    let mut f = Figures::default();
    console_has(guest, "ssh: listening on port 22", LIMIT)?;

    // 1. Key login and a command.
    let (code, out, err) = status_output(ssh(keys, &keys.good, g, &[], &["threads"]), LIMIT)?;
    if code != Some(0) {
        return Err(format!("`ssh threads` exited {code:?}: {err}"));
    }
    let mine = rows(&out, "ssh-");
    if mine.len() != 1 || mine[0][3] != "running" || mine[0][4] != "4/4" {
        return Err(format!(
            "`ssh threads`: expected one ssh-<n> thread, running at 4/4; got {mine:?}\n{out}{err}"
        ));
    }
    if rows(&out, "control").is_empty() {
        return Err(format!("`ssh threads` lists no control thread:\n{out}"));
    }
    let (code, out, _) =
        status_output(ssh(keys, &keys.good, g, &[], &["prio", "ssh", "x"]), LIMIT)?;
    if code != Some(1) || !out.contains("prio") {
        return Err(format!(
            "`ssh prio ssh x` (bad argument): exit {code:?}, {out:?}"
        ));
    }
    let (_, out, _) = status_output(ssh(keys, &keys.good, g, &[], &["mem"]), LIMIT)?;
    let frames = rows(&out, "frames");
    if !out.contains("net frames") || frames.iter().all(|r| r.get(2) != Some(&"256")) {
        return Err(format!(
            "`ssh mem` does not list the network's 256 frames:\n{out}"
        ));
    }
    let (_, out, _) = status_output(ssh(keys, &keys.good, g, &[], &["version"]), LIMIT)?;
    if !out.contains("rhea.ssh.sessions=3") {
        return Err(format!(
            "`ssh version` does not show the command line:\n{out}"
        ));
    }
    let printed = console_has(guest, "host key SHA256:", LIMIT)?;
    let known = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(keys.dir.join("known_hosts"))
        .output()
        .map_err(|e| e.to_string())?;
    let known = String::from_utf8_lossy(&known.stdout);
    let fp = known.split_whitespace().nth(1).unwrap_or("(none)");
    if !printed.contains(fp) {
        return Err(format!(
            "the client was shown host key {fp}; the guest printed: {printed}"
        ));
    }
    for _ in 0..5 {
        let t = Instant::now();
        let (_, out, _) = status_output(ssh(keys, &keys.good, g, &[], &["uptime"]), LIMIT)?;
        if !out.starts_with("up ") {
            return Err(format!("`ssh uptime`: {out:?}"));
        }
        let ms = t.elapsed().as_secs_f64() * 1e3;
        if f.login_ms == 0.0 || ms < f.login_ms {
            f.login_ms = ms;
        }
    }

    // 2. A wrong key.
    let (code, out, err) = status_output(ssh(keys, &keys.bad, g, &[], &["threads"]), LIMIT)?;
    if code != Some(255) || !err.contains("Permission denied (publickey)") || !out.is_empty() {
        return Err(format!("a wrong key was not refused: {out}{err}"));
    }
    let bad_fp = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(keys.bad.with_extension("pub"))
        .output()
        .map_err(|e| e.to_string())?;
    let bad_fp = String::from_utf8_lossy(&bad_fp.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap_or("?")
        .to_string();
    console_has(
        guest,
        &format!("refused: {bad_fp} is not authorized"),
        LIMIT,
    )?;

    // 3. An interactive session.
    interactive(keys, g)?;

    // 4. Several sessions at once, then dropped mid-command. (First, the sessions above
    // have ended on the guest too: each waits for its client's close.)
    settled(keys, g)?;
    several(keys, g)?;

    // 5. Bad input.
    bad_input(keys, guest, g)?;

    // 6. An idle shell is closed.
    let mut c = ssh(keys, &keys.good, g, &["-tt"], &[]);
    c.stdin(Stdio::piped());
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = c.spawn().map_err(|e| e.to_string())?;
    let t = Instant::now();
    let (_, out, _) = wait_status_output(child, Duration::from_secs(25))?;
    let took = t.elapsed();
    if !out.contains("idle too long") || took > Duration::from_secs(20) {
        return Err(format!(
            "an idle session was not closed after 5 s (ended after {took:?}): {out:?}"
        ));
    }
    Ok(f)
}

/// `ssh -tt`, typing one line after each prompt; returns what the terminal showed.
fn interactive(keys: &Keys, g: Ipv4Addr) -> Result<(), String> {
    let mut c = ssh(keys, &keys.good, g, &["-tt"], &[]);
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().map_err(|e| e.to_string())?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut b = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut b) {
            if n == 0 || tx.send(b[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut seen = String::new();
    let mut prompts = 0;
    let expect_prompt = |seen: &mut String, prompts: &mut usize| -> Result<(), String> {
        let start = Instant::now();
        while seen.matches("rhea> ").count() <= *prompts {
            let left = LIMIT.saturating_sub(start.elapsed());
            match rx.recv_timeout(left) {
                Ok(b) => seen.push_str(&String::from_utf8_lossy(&b)),
                Err(_) => return Err(format!("no prompt; the terminal showed: {seen:?}")),
            }
        }
        *prompts += 1;
        Ok(())
    };
    expect_prompt(&mut seen, &mut prompts)?;
    stdin.write_all(b"threads\r").map_err(|e| e.to_string())?;
    expect_prompt(&mut seen, &mut prompts)?;
    let me = rows(&seen, "ssh-")
        .first()
        .map(|r| r[1].to_string())
        .ok_or_else(|| format!("no ssh-<n> thread listed: {seen}"))?;
    stdin
        .write_all(format!("prio {me} 9\r").as_bytes())
        .map_err(|e| e.to_string())?;
    expect_prompt(&mut seen, &mut prompts)?;
    let mark = seen.len();
    stdin.write_all(b"threads\r").map_err(|e| e.to_string())?;
    expect_prompt(&mut seen, &mut prompts)?;
    let now = rows(&seen[mark..], &me);
    if now.first().map(|r| r[4]) != Some("9/9") {
        return Err(format!("after `prio {me} 9` the listing shows {now:?}"));
    }
    stdin.write_all(b"exit\r").map_err(|e| e.to_string())?;
    let (code, _, err) = wait_status_output(child, LIMIT)?;
    if code != Some(0) {
        return Err(format!(
            "`exit` in an interactive session: ssh exited {code:?}: {err}"
        ));
    }
    Ok(())
}

/// Three `top`s at once, a fourth turned away, then all dropped mid-command.
fn several(keys: &Keys, g: Ipv4Addr) -> Result<(), String> {
    // Each `top` must show two frames (it stays connected and refreshing). One may be
    // turned away if a session before it has not quite ended on the guest yet (its thread
    // waits for its client's close): then it is tried again, up to 5 times.
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let mut c = ssh(keys, &keys.good, g, &[], &["top"]);
            c.stdout(Stdio::piped()).stderr(Stdio::null());
            std::thread::spawn(move || {
                for _ in 0..5 {
                    let Ok(mut child) = c.spawn() else {
                        return None;
                    };
                    let mut out = child.stdout.take()?;
                    let mut seen = Vec::new();
                    let mut b = [0u8; 4096];
                    let start = Instant::now();
                    while start.elapsed() < LIMIT {
                        match out.read(&mut b) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => seen.extend_from_slice(&b[..n]),
                        }
                        if String::from_utf8_lossy(&seen).matches("top: every").count() >= 2 {
                            return Some(child);
                        }
                    }
                    let _ = child.kill();
                    let _ = child.wait();
                    std::thread::sleep(Duration::from_millis(500));
                }
                None
            })
        })
        .collect();
    let mut tops: Vec<Child> = threads
        .into_iter()
        .filter_map(|t| t.join().ok().flatten())
        .collect();
    let refreshing = tops.len();
    // A fourth while three are live: turned away.
    let (_, out, err) = status_output(ssh(keys, &keys.good, g, &[], &["uptime"]), LIMIT)?;
    for t in &mut tops {
        let _ = t.kill();
        let _ = t.wait();
    }
    if refreshing != 3 {
        return Err(format!(
            "{refreshing} of 3 concurrent `top`s kept refreshing"
        ));
    }
    if out.starts_with("up ") {
        return Err(format!(
            "a fourth session was let in with rhea.ssh.sessions=3: {out}{err}"
        ));
    }
    // Nothing left behind: the killed sessions' threads and connections are gone (each
    // notices at its next refresh, within a second; allowed: 20 s).
    settled(keys, g)
}

/// Waits (20 s at most) until a new session is the only one: one `ssh-<n>` thread, one
/// established connection on port 22.
fn settled(keys: &Keys, g: Ipv4Addr) -> Result<(), String> {
    let start = Instant::now();
    loop {
        let (_, out, _) = status_output(ssh(keys, &keys.good, g, &[], &["threads"]), LIMIT)?;
        let (_, net, _) = status_output(ssh(keys, &keys.good, g, &[], &["net"]), LIMIT)?;
        let threads = rows(&out, "ssh-").len();
        let established = net
            .lines()
            .filter(|l| l.contains(":22 ") && l.contains("ESTABLISHED"))
            .count();
        if threads == 1 && established == 1 {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(20) {
            return Err(format!(
                "after 20 s: {threads} ssh threads, {established} established connections \
                 on 22 (expected 1 and 1)\n{out}{net}"
            ));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Unsupported algorithms, a half-finished handshake, garbage, a burst of connections.
fn bad_input(keys: &Keys, guest: &Guest, g: Ipv4Addr) -> Result<(), String> {
    for (opt, log) in [
        (
            "KexAlgorithms=diffie-hellman-group14-sha256",
            "No matching kex",
        ),
        ("Ciphers=aes128-cbc", "No matching encryption"),
        ("HostKeyAlgorithms=rsa-sha2-256", "No matching hostkey"),
    ] {
        let (_, out, err) =
            status_output(ssh(keys, &keys.good, g, &["-o", opt], &["uptime"]), LIMIT)?;
        if out.starts_with("up ") {
            return Err(format!("a client with only {opt} got in: {err}"));
        }
        console_has(guest, log, LIMIT)?;
    }
    // A command carrying a terminal escape: refused, and logged with the escape shown as
    // text, so a peer cannot drive the operator's console.
    let (code, _, _) = status_output(ssh(keys, &keys.good, g, &[], &["nosuch\x1b[2J"]), LIMIT)?;
    if code != Some(1) {
        return Err(format!("an unknown command with an escape exited {code:?}"));
    }
    console_has(guest, "runs `nosuch\\u{1b}[2J`", LIMIT)?;
    let addr = SocketAddrV4::new(g, 22);
    // Half a handshake: the banner, then silence. Closed after the grace (5 s).
    let mut half = TcpStream::connect_timeout(&addr.into(), LIMIT).map_err(|e| e.to_string())?;
    half.write_all(b"SSH-2.0-half\r\n")
        .map_err(|e| e.to_string())?;
    half.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let t = Instant::now();
    let mut b = [0u8; 4096];
    while let Ok(n) = half.read(&mut b) {
        if n == 0 {
            break;
        }
    }
    let took = t.elapsed();
    if !(Duration::from_secs(4)..Duration::from_secs(20)).contains(&took) {
        return Err(format!(
            "a half-finished handshake was closed after {took:?} (grace 5 s)"
        ));
    }
    console_has(guest, "no login in time", LIMIT)?;
    // Garbage after the banner: closed at once.
    let mut junk = TcpStream::connect_timeout(&addr.into(), LIMIT).map_err(|e| e.to_string())?;
    junk.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let bytes: Vec<u8> = (0..3000u32).map(|i| (i * 7919 % 251) as u8).collect();
    let _ = junk.write_all(&bytes);
    let t = Instant::now();
    while let Ok(n) = junk.read(&mut b) {
        if n == 0 {
            break;
        }
    }
    if t.elapsed() > Duration::from_secs(20) {
        return Err("a connection sending garbage was kept open".into());
    }
    // A burst: 12 connections at once; each gets the banner or a reset, none hangs.
    let burst: Vec<_> = (0..12)
        .map(|_| {
            std::thread::spawn(move || {
                let Ok(mut s) = TcpStream::connect_timeout(&addr.into(), LIMIT) else {
                    return true;
                };
                let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
                let mut b = [0u8; 64];
                // A banner, an EOF or a reset: an answer. A timeout: a hang.
                !matches!(s.read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut)
            })
        })
        .collect();
    let answered = burst
        .into_iter()
        .map(|h| h.join().unwrap_or(false))
        .filter(|&a| a)
        .count();
    if answered != 12 {
        return Err(format!("{} of 12 burst connections hung", 12 - answered));
    }
    // And a login afterwards (the burst's connections close meanwhile; allow for that).
    let start = Instant::now();
    loop {
        let (_, out, err) = status_output(ssh(keys, &keys.good, g, &[], &["uptime"]), LIMIT)?;
        if out.starts_with("up ") {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(30) {
            return Err(format!("no login after the burst: {err}"));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
