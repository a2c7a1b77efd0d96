//! The appliance's network tests, driven from the host (`cargo xtask test` runs them as the
//! cases `<board>/<machine>/… appliance net`):
//!
//! 1. HTTP: `GET /` and `/status.json` answer 200 with the page and the figures (per-CPU load
//!    and steal, the threads' run times, the control loop's lateness); an unknown
//!    path is 404; a malformed request line is 400;
//! 2. ICMP echo (a raw socket) and ARP (implied: nothing else works without it);
//! 3. a 10 MB TCP echo, compared byte for byte (and by checksum) as it comes back;
//! 4. 10,000 UDP echoes, each answered (a lost datagram is retried at most twice, and counted);
//! 5. malformed traffic written straight onto the wire (an `AF_PACKET` socket on the tap):
//!    truncated frames, bad IPv4 header checksums, bad UDP checksums, non-IPv4 versions and
//!    random bytes — the appliance keeps answering and counts them (`net.malformed` in
//!    `/status.json` grows by at least the number sent);
//! 6. a UDP flood (two host threads sending as fast as they can for a few seconds): the
//!    control loop's deadline misses do not grow while it lasts;
//! 7. `GET /quit`: the appliance prints its counters and exits with success.
//!
//! The wire is a Linux tap the harness creates (root and `ip` needed; otherwise the cases are
//! reported as failures naming what is missing): LinuxU opens it itself (`rhea.net.tap=`).
//! Timing is never judged except the control loop's own deadline-miss count, which is what the
//! appliance promises.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The tap and addresses of a network test.
#[derive(Clone, Debug)]
pub(crate) struct Wire {
    pub(crate) tap: String,
    pub(crate) host: Ipv4Addr,
    pub(crate) guest: Ipv4Addr,
}

impl Wire {
    /// The tap for network test number `n` (a /24 of its own).
    pub(crate) fn new(n: u8) -> Wire {
        Wire {
            tap: format!("rhea-net{n}"),
            host: Ipv4Addr::new(10, 77, n, 1),
            guest: Ipv4Addr::new(10, 77, n, 2),
        }
    }

    /// Creates the tap (deleting a stale one) with the host's address, up, MTU 1500.
    pub(crate) fn create(&self) -> Result<(), String> {
        if !is_root() {
            return Err("the network tests need root (they create a tap interface)".into());
        }
        let _ = ip(&["link", "del", &self.tap]);
        ip(&["tuntap", "add", "dev", &self.tap, "mode", "tap"])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/24", self.host),
            "dev",
            &self.tap,
        ])?;
        ip(&["link", "set", &self.tap, "up"])?;
        Ok(())
    }

    /// Removes the tap.
    pub(crate) fn destroy(&self) {
        let _ = ip(&["link", "del", &self.tap]);
    }
}

/// Whether xtask runs as root (the network tests create taps; some checks need raw sockets).
pub(crate) fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip` (iproute2): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A running guest whose console is collected line by line.
pub(crate) struct Guest {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Guest {
    /// Starts `cmd` with stdout (and stderr) collected.
    pub(crate) fn spawn(mut cmd: Command) -> Result<Guest, String> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start the guest: {e}"))?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        for pipe in [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let lines = lines.clone();
            std::thread::spawn(move || {
                let mut r = std::io::BufReader::new(pipe);
                let mut line = Vec::new();
                loop {
                    line.clear();
                    match std::io::BufRead::read_until(&mut r, b'\n', &mut line) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => lines
                            .lock()
                            .expect("console lock")
                            .push(String::from_utf8_lossy(&line).trim_end().to_string()),
                    }
                }
            });
        }
        Ok(Guest { child, lines })
    }

    /// The console so far.
    pub(crate) fn console(&self) -> Vec<String> {
        self.lines.lock().expect("console lock").clone()
    }

    /// Waits until a console line contains `marker`.
    pub(crate) fn wait_for(&mut self, marker: &str, timeout: Duration) -> Result<(), String> {
        let start = Instant::now();
        loop {
            if self.console().iter().any(|l| l.contains(marker)) {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "the guest ended ({status}) before printing {marker:?}"
                ));
            }
            if start.elapsed() > timeout {
                return Err(format!("no {marker:?} on the console within {timeout:?}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the guest to end; kills it after `timeout`. Returns its exit status (`None`
    /// when killed).
    pub(crate) fn finish(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                // Let the readers drain.
                std::thread::sleep(Duration::from_millis(100));
                return Some(s);
            }
            if start.elapsed() > timeout {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One HTTP/1.1 request; returns (status code, body).
///
/// Waits up to 10 s for the connection and 15 s for each read: a segment lost at the end of a
/// flood (the device's queue overflows) comes back after TCP's retransmission timeout, which
/// doubles — one read under TCG waited over 5 s in ~40 runs of the flood case.
pub(crate) fn http(guest: Ipv4Addr, port: u16, request: &str) -> Result<(u16, String), String> {
    let addr = SocketAddrV4::new(guest, port);
    let mut s = TcpStream::connect_timeout(&addr.into(), Duration::from_secs(10))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(15))).ok();
    s.write_all(request.as_bytes())
        .map_err(|e| format!("send to {addr}: {e}"))?;
    let mut reply = Vec::new();
    s.read_to_end(&mut reply)
        .map_err(|e| format!("read from {addr}: {e}"))?;
    let text = String::from_utf8_lossy(&reply).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| format!("not an HTTP reply: {:?}", &text[..text.len().min(80)]))?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_string());
    Ok((status, body))
}

pub(crate) fn get(guest: Ipv4Addr, path: &str) -> Result<(u16, String), String> {
    get_at(guest, HTTP_PORT, path)
}

/// The appliance's status page and its echo service (TCP and UDP), on the guest.
pub(crate) const HTTP_PORT: u16 = 8080;
pub(crate) const ECHO_PORT: u16 = 7;

/// `GET path` from `guest`'s `port` (the appliance's 8080, or where it is forwarded to).
pub(crate) fn get_at(guest: Ipv4Addr, port: u16, path: &str) -> Result<(u16, String), String> {
    http(
        guest,
        port,
        &format!("GET {path} HTTP/1.1\r\nHost: rhea\r\nConnection: close\r\n\r\n"),
    )
}

/// A number field of the status JSON (`"key":N`, the first occurrence after `after`).
pub(crate) fn json_number(json: &str, after: &str, key: &str) -> Option<u64> {
    let from = json.find(after)?;
    let rest = &json[from..];
    let at = rest.find(&format!("\"{key}\":"))? + key.len() + 3;
    let digits: String = rest[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

pub(crate) fn status(guest: Ipv4Addr) -> Result<String, String> {
    match get(guest, "/status.json")? {
        (200, body) => Ok(body),
        (code, _) => Err(format!("/status.json answered {code}")),
    }
}

/// What the run measured, for the report line.
#[derive(Debug, Default)]
pub(crate) struct Figures {
    pub(crate) tcp_mb_per_s: f64,
    pub(crate) udp_echoes: u32,
    pub(crate) udp_retries: u32,
    pub(crate) malformed_sent: u64,
    pub(crate) malformed_counted: u64,
    pub(crate) flood_datagrams: u64,
    pub(crate) flood_periods: u64,
    pub(crate) flood_misses: u64,
}

/// Runs tests 1–6 against a guest answering on `wire`. `flood_pps` caps the flood's rate
/// (`None`: as fast as the host sends): an emulated guest (QEMU TCG) saturates at a rate far
/// below what would saturate the host CPUs its vCPU threads need, and a starved vCPU thread
/// shows up as guest lateness that is the host's, not Rhea's.
pub(crate) fn exercise(
    wire: &Wire,
    flood_pps: Option<u32>,
    www: Option<&std::path::Path>,
    log: &mut dyn FnMut(&str),
) -> Result<Figures, String> {
    let g = wire.guest;
    let mut f = Figures::default();

    // 1. HTTP.
    check_http(g)?;
    log("http: / and /status.json 200, unknown path 404, malformed request 400");
    if let Some(dir) = www {
        let n = check_files(g, dir)?;
        log(&format!(
            "files: {n} files of the initramfs's /www served byte for byte; `..`, `%` refused"
        ));
    }

    // 2. ICMP echo.
    ping(g)?;
    log("icmp: echo answered");

    // 3. TCP echo, 10 MB.
    let (mbps, checksum) = tcp_echo(g, 10 << 20)?;
    f.tcp_mb_per_s = mbps;
    log(&format!(
        "tcp: 10 MiB echoed intact (fnv {checksum:016x}), {mbps:.1} MB/s"
    ));

    // 4. UDP echoes.
    let (echoes, retries) = udp_echoes(g, 10_000)?;
    f.udp_echoes = echoes;
    f.udp_retries = retries;
    log(&format!("udp: {echoes} echoes, {retries} retried"));

    // 4b. A peer that vanishes.
    check_peer_reset(g)?;
    log("tcp: a connection reset mid-stream was absorbed; the next connection was served");

    // 5. Malformed traffic.
    check_malformed(wire, &mut f, log)?;

    // 6. Flood.
    check_flood(g, flood_pps, &mut f, log)?;
    Ok(f)
}

/// Step 1b: every file of `dir` (the initramfs's `www/`, as packed) is served at its path
/// with the same bytes; a path with `..` or `%` is refused (400), a missing file is 404, and
/// `/status.json` counts what was served. Returns the files checked.
fn check_files(g: Ipv4Addr, dir: &std::path::Path) -> Result<usize, String> {
    let mut n = 0;
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for e in entries {
        let path = e.map_err(|e| e.to_string())?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let want = std::fs::read_to_string(&path).map_err(|e| format!("{name}: {e}"))?;
        let (code, body) = get(g, &format!("/{name}"))?;
        if code != 200 || body != want {
            return Err(format!(
                "GET /{name} answered {code} with {} bytes; the file has {}",
                body.len(),
                want.len()
            ));
        }
        n += 1;
    }
    for (path, want) in [
        ("/../www/index.html", 400),
        ("/%2e%2e/MANIFEST", 400),
        ("/missing.html", 404),
    ] {
        let (code, _) = get(g, path)?;
        if code != want {
            return Err(format!("GET {path} answered {code}, not {want}"));
        }
    }
    let json = status(g)?;
    let served = json_number(&json, "", "files_served").unwrap_or(0);
    if served < n as u64 {
        return Err(format!(
            "/status.json counts {served} files served, not {n}"
        ));
    }
    Ok(n)
}

/// Step 1: `/` and `/status.json` (after the control loop's first period) answer 200 with
/// their content, an unknown path 404 and a malformed request 400.
fn check_http(g: Ipv4Addr) -> Result<(), String> {
    let (code, page) = get(g, "/")?;
    if code != 200 || !page.contains("Rhea appliance") {
        return Err(format!("GET / answered {code} without the page"));
    }
    // The control loop's first period may not have ended yet: wait (bounded) for one.
    let mut json = status(g)?;
    let waited = Instant::now();
    while json_number(&json, "\"control\"", "periods") == Some(0)
        && waited.elapsed() < Duration::from_secs(5)
    {
        std::thread::sleep(Duration::from_millis(50));
        json = status(g)?;
    }
    for key in ["uptime_ms", "periods", "rx_frames"] {
        json_number(&json, "", key).ok_or_else(|| format!("/status.json lacks {key}: {json}"))?;
    }
    if !json.contains("\"histogram_us\":[[") || !json.contains("\"busy_pct\":") {
        return Err(format!(
            "/status.json lacks the histogram or per-CPU load: {json}"
        ));
    }
    // Steal time per CPU (a number, or null where the machine keeps none), the threads' run
    // times (the control loop has run by now), and the lateness with its stolen part.
    if !json.contains("\"stolen_ms\":") || !json.contains("\"late_stolen_us\":") {
        return Err(format!("/status.json lacks the steal figures: {json}"));
    }
    json_number(&json, "\"name\":\"control\"", "run_ms")
        .ok_or_else(|| format!("/status.json lacks the control thread's run time: {json}"))?;
    json_number(&json, "\"control\":{", "late_us")
        .ok_or_else(|| format!("/status.json lacks the control loop's lateness: {json}"))?;
    let (code, _) = get(g, "/no-such-page")?;
    if code != 404 {
        return Err(format!("an unknown path answered {code}, not 404"));
    }
    let (code, _) = http(g, 8080, "BLAH\r\n\r\n")?;
    if code != 400 {
        return Err(format!("a malformed request answered {code}, not 400"));
    }
    Ok(())
}

/// Step 4b: a connection reset mid-stream (SO_LINGER 0 closes with RST) must end the
/// appliance's echo connection, not hang it — the next connection is served.
fn check_peer_reset(g: Ipv4Addr) -> Result<(), String> {
    peer_reset(g)?;
    let (e, _) = udp_echoes(g, 10)?;
    let (code, _) = get(g, "/status.json")?;
    if code != 200 || e != 10 {
        return Err("the appliance stopped answering after a connection reset".into());
    }
    Ok(())
}

/// Step 5: every malformed frame sent is counted, and the appliance still answers.
fn check_malformed(wire: &Wire, f: &mut Figures, log: &mut dyn FnMut(&str)) -> Result<(), String> {
    let g = wire.guest;
    let before = json_number(&status(g)?, "\"net\"", "malformed").unwrap_or(0);
    let sent = send_malformed(wire)?;
    std::thread::sleep(Duration::from_millis(300));
    let json = status(g)?;
    let after = json_number(&json, "\"net\"", "malformed").unwrap_or(0);
    f.malformed_sent = sent;
    f.malformed_counted = after - before;
    if after - before < sent {
        return Err(format!(
            "sent {sent} malformed frames but the appliance counted {} ({json})",
            after - before
        ));
    }
    // Still answering.
    let (e, _) = udp_echoes(g, 100)?;
    log(&format!(
        "malformed: {sent} frames sent, {} counted, still answering ({e} echoes after)",
        after - before
    ));
    Ok(())
}

/// What changed in `/status.json` over a flood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FloodDelta {
    /// The driver stopped for a full ring, or frames were dropped at a full ring or an
    /// empty pool.
    pressure_events: u64,
    /// UDP datagrams the appliance echoed.
    echoed: u64,
    /// Control-loop periods, and deadlines missed.
    periods: u64,
    misses: u64,
}

impl FloodDelta {
    /// The change from status `before` to status `after`.
    fn between(before: &str, after: &str) -> FloodDelta {
        let pressure = |j: &str| {
            [
                "rx_backpressure",
                "rx_ring_full",
                "tx_ring_full",
                "pool_empty",
            ]
            .iter()
            .map(|k| json_number(j, "\"net\"", k).unwrap_or(0))
            .sum::<u64>()
        };
        let delta = |section: &str, key: &str| {
            json_number(after, section, key).unwrap_or(0)
                - json_number(before, section, key).unwrap_or(0)
        };
        FloodDelta {
            pressure_events: pressure(after) - pressure(before),
            echoed: delta("\"echo\"", "udp_datagrams"),
            periods: delta("\"control\"", "periods"),
            misses: delta("\"control\"", "misses"),
        }
    }

    /// Judges a flood of `datagrams`: it must have saturated the network path (pressure
    /// events, or fewer datagrams echoed than sent: part of it dropped elsewhere, in the
    /// device's queue or a socket buffer), and the control loop must have run without a miss.
    /// `after` is the status quoted in messages.
    fn judge(&self, datagrams: u64, after: &str) -> Result<(), String> {
        let FloodDelta {
            pressure_events,
            echoed,
            periods,
            misses,
        } = *self;
        if pressure_events == 0 && echoed * 10 >= datagrams * 9 {
            return Err(format!(
                "the flood did not saturate the appliance (no backpressure or drops, {echoed} of {datagrams} echoed): {after}"
            ));
        }
        if periods == 0 {
            return Err("the control loop did not run during the flood".into());
        }
        if misses != 0 {
            return Err(format!(
                "the control loop missed {misses} deadlines during the flood: {after}"
            ));
        }
        Ok(())
    }
}

/// Step 6: a 3 s UDP flood (at `flood_pps`, or as fast as the host sends) saturates the
/// appliance's network path while its control loop keeps every deadline.
fn check_flood(
    g: Ipv4Addr,
    flood_pps: Option<u32>,
    f: &mut Figures,
    log: &mut dyn FnMut(&str),
) -> Result<(), String> {
    let before = status(g)?;
    let (datagrams, secs) = flood(g, Duration::from_secs(3), flood_pps)?;
    let after = status(g)?;
    let d = FloodDelta::between(&before, &after);
    f.flood_datagrams = datagrams;
    f.flood_periods = d.periods;
    f.flood_misses = d.misses;
    log(&format!(
        "flood: {datagrams} datagrams in {secs:.1} s ({:.0}/s), {} echoed, {} backpressure/drop events; control loop {} periods, {} deadline misses",
        datagrams as f64 / secs,
        d.echoed,
        d.pressure_events,
        d.periods,
        d.misses
    ));
    d.judge(datagrams, &after)
}

/// Asks the appliance to end.
pub(crate) fn quit(guest: Ipv4Addr) -> Result<(), String> {
    match get(guest, "/quit")? {
        (200, _) => Ok(()),
        (code, _) => Err(format!("/quit answered {code}")),
    }
}

fn fnv(hash: &mut u64, bytes: &[u8]) {
    for b in bytes {
        *hash = (*hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
}

/// Streams `total` pseudo-random bytes through the echo service; checks every byte.
pub(crate) fn tcp_echo(guest: Ipv4Addr, total: usize) -> Result<(f64, u64), String> {
    tcp_echo_at(SocketAddrV4::new(guest, ECHO_PORT), total)
}

/// [`tcp_echo`] through the echo service at `addr` (the guest's, or where it is forwarded to).
pub(crate) fn tcp_echo_at(addr: SocketAddrV4, total: usize) -> Result<(f64, u64), String> {
    let s = TcpStream::connect_timeout(&addr.into(), Duration::from_secs(5))
        .map_err(|e| format!("tcp echo connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok();
    s.set_nodelay(true).ok();
    let data: Arc<Vec<u8>> = Arc::new({
        let mut x = 0x1234_5678_9abc_def0u64;
        (0..total)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    });
    let mut expect = 0xcbf2_9ce4_8422_2325u64;
    fnv(&mut expect, &data);
    let start = Instant::now();
    let mut w = s.try_clone().map_err(|e| e.to_string())?;
    let wdata = data.clone();
    let writer = std::thread::spawn(move || -> Result<(), String> {
        for chunk in wdata.chunks(32 << 10) {
            w.write_all(chunk)
                .map_err(|e| format!("tcp echo send: {e}"))?;
        }
        Ok(())
    });
    let mut r = s;
    let mut got = 0usize;
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    let mut buf = vec![0u8; 64 << 10];
    while got < total {
        let n = r
            .read(&mut buf)
            .map_err(|e| format!("tcp echo read after {got} bytes: {e}"))?;
        if n == 0 {
            return Err(format!("tcp echo closed after {got} of {total} bytes"));
        }
        if buf[..n] != data[got..got + n] {
            return Err(format!("tcp echo corrupted data near byte {got}"));
        }
        fnv(&mut hash, &buf[..n]);
        got += n;
    }
    writer
        .join()
        .map_err(|_| "tcp writer panicked".to_string())??;
    let secs = start.elapsed().as_secs_f64();
    if hash != expect {
        return Err("tcp echo checksum differs".into());
    }
    Ok(((total as f64 / 1e6) / secs, hash))
}

/// Opens an echo connection, sends data, then resets it (RST) without reading the echo; then
/// checks a fresh connection still echoes.
fn peer_reset(guest: Ipv4Addr) -> Result<(), String> {
    let addr = SocketAddrV4::new(guest, 7);
    let s = TcpStream::connect_timeout(&addr.into(), Duration::from_secs(5))
        .map_err(|e| format!("reset test connect: {e}"))?;
    (&s).write_all(&[0x77; 64 << 10])
        .map_err(|e| format!("reset test send: {e}"))?;
    close_with_reset(s)?;
    std::thread::sleep(Duration::from_millis(200));
    let mut s = TcpStream::connect_timeout(&addr.into(), Duration::from_secs(5))
        .map_err(|e| format!("connect after the reset: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    s.write_all(b"after-reset")
        .map_err(|e| format!("send after the reset: {e}"))?;
    let mut buf = [0u8; 11];
    s.read_exact(&mut buf)
        .map_err(|e| format!("no echo after the reset: {e}"))?;
    if &buf != b"after-reset" {
        return Err("wrong echo after the reset".into());
    }
    Ok(())
}

/// Closes `s` with an RST (SO_LINGER 0) instead of a FIN.
pub(crate) fn close_with_reset(s: TcpStream) -> Result<(), String> {
    let s = socket2::Socket::from(s);
    s.set_linger(Some(Duration::ZERO))
        .map_err(|e| format!("SO_LINGER failed: {e}"))?;
    drop(s); // closes with RST
    Ok(())
}

/// `n` UDP echoes, one at a time; returns (echoes, retries).
pub(crate) fn udp_echoes(guest: Ipv4Addr, n: u32) -> Result<(u32, u32), String> {
    udp_echoes_at(
        SocketAddrV4::new(guest, ECHO_PORT),
        n,
        Duration::from_millis(300),
    )
}

/// [`udp_echoes`] through the echo service at `addr`, waiting `wait` for each answer before
/// sending again.
pub(crate) fn udp_echoes_at(
    addr: SocketAddrV4,
    n: u32,
    wait: Duration,
) -> Result<(u32, u32), String> {
    let s = UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
    s.connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(wait)).ok();
    let mut retries = 0;
    let mut buf = [0u8; 2048];
    for i in 0..n {
        let msg = format!("rhea-udp-{i:08}-{}", "x".repeat((i % 64) as usize));
        let mut ok = false;
        for attempt in 0..3 {
            if attempt > 0 {
                retries += 1;
            }
            s.send(msg.as_bytes())
                .map_err(|e| format!("udp send: {e}"))?;
            // Skip stale answers to earlier attempts.
            loop {
                match s.recv(&mut buf) {
                    Ok(k) if &buf[..k] == msg.as_bytes() => {
                        ok = true;
                        break;
                    }
                    Ok(_) => continue,
                    Err(_) => break,
                }
            }
            if ok {
                break;
            }
        }
        if !ok {
            return Err(format!("udp echo {i} unanswered after 3 attempts"));
        }
    }
    Ok((n, retries))
}

/// One ICMP echo through a raw socket.
pub(crate) fn ping(guest: Ipv4Addr) -> Result<(), String> {
    use socket2::{Domain, Protocol, Socket, Type};
    use std::io::Read;
    let sock = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))
        .map_err(|e| format!("cannot open a raw ICMP socket: {e}"))?;
    sock.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| format!("SO_RCVTIMEO: {e}"))?;
    let mut pkt = [0u8; 40];
    pkt[0] = 8; // echo request
    pkt[4..6].copy_from_slice(&0x5248u16.to_be_bytes());
    pkt[6..8].copy_from_slice(&1u16.to_be_bytes());
    pkt[8..].copy_from_slice(&[0x42; 32]);
    let sum = checksum(&pkt);
    pkt[2..4].copy_from_slice(&sum.to_be_bytes());
    let start = Instant::now();
    let to = std::net::SocketAddr::from((guest, 0));
    sock.send_to(&pkt, &to.into())
        .map_err(|e| format!("cannot send the ICMP echo: {e}"))?;
    let mut buf = [0u8; 256];
    while start.elapsed() < Duration::from_secs(2) {
        let n = match (&sock).read(&mut buf) {
            Ok(n) if n > 0 => n,
            _ => break,
        };
        let ihl = usize::from(buf[0] & 0xf) * 4;
        let from = Ipv4Addr::new(buf[12], buf[13], buf[14], buf[15]);
        if n >= ihl + 8 && from == guest && buf[ihl] == 0 && buf[ihl + 4..ihl + 6] == pkt[4..6] {
            return Ok(());
        }
    }
    Err("no ICMP echo reply within 2 s".to_string())
}

pub(crate) fn checksum(bytes: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in bytes.chunks(2) {
        let w = u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]);
        sum += u32::from(w);
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Writes malformed frames onto the tap from the host side; returns how many.
fn send_malformed(wire: &Wire) -> Result<u64, String> {
    let mac = guest_mac(wire)?;
    let host_mac = host_mac(&wire.tap)?;
    // A valid UDP/IPv4 frame to the guest's echo port, then broken copies.
    let good = udp_frame((host_mac, wire.host), (mac, wire.guest), b"malformed-test");
    let frames = malformed_frames(&good);
    let sent = inject(wire, &frames, Duration::from_micros(200))?;
    // Frames under 14 bytes carry no Ethernet header: the tap itself may drop them, and then
    // the appliance never sees them. Count what it can see.
    let visible = frames.iter().filter(|f| f.len() >= 14).count() as u64;
    Ok(sent.min(visible))
}

/// A valid Ethernet frame with a UDP/IPv4 datagram of `payload` (at most 247 bytes) from
/// port 40000 of `src` to port 9 of `dst`, each a MAC and an address.
fn udp_frame(src: ([u8; 6], Ipv4Addr), dst: ([u8; 6], Ipv4Addr), payload: &[u8]) -> Vec<u8> {
    let (src_mac, src_ip) = src;
    let (dst_mac, dst_ip) = dst;
    let mut f = Vec::new();
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&[0x08, 0x00]);
    let total = 20 + 8 + payload.len();
    let mut ip = vec![
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        1,
        0,
        0,
        64,
        17,
        0,
        0,
    ];
    ip.extend_from_slice(&src_ip.octets());
    ip.extend_from_slice(&dst_ip.octets());
    let c = checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut udp = vec![0x9c, 0x40, 0, 9, 0, (8 + payload.len()) as u8, 0, 0];
    udp.extend_from_slice(payload);
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&src_ip.octets());
    pseudo.extend_from_slice(&dst_ip.octets());
    pseudo.extend_from_slice(&[0, 17, 0, (8 + payload.len()) as u8]);
    pseudo.extend_from_slice(&udp);
    let c = checksum(&pseudo);
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&udp);
    f
}

/// Broken copies of the valid UDP/IPv4 frame `good` ([`udp_frame`]): truncated, bad IPv4
/// and UDP checksums, bad IPv4 versions and header lengths, a total length past the frame,
/// and random bytes after the Ethernet header (with a wrong IPv4 checksum).
fn malformed_frames(good: &[u8]) -> Vec<Vec<u8>> {
    let mut frames: Vec<Vec<u8>> = Vec::new();
    // Truncated: shorter than an Ethernet header... raw sockets pad nothing on a tap.
    for n in [1usize, 6, 13] {
        frames.push(good[..n].to_vec());
    }
    // Bad IPv4 header checksums.
    for i in 0..20u8 {
        let mut f = good.to_vec();
        f[14 + 10] ^= i + 1;
        frames.push(f);
    }
    // Bad UDP checksums (payload changed, checksum kept).
    for i in 0..20u8 {
        let mut f = good.to_vec();
        let n = f.len();
        f[n - 1] ^= i + 1;
        frames.push(f);
    }
    // IPv4 frames with version 6 / header length below 20.
    for first in [0x65u8, 0x44, 0x41] {
        let mut f = good.to_vec();
        f[14] = first;
        frames.push(f);
    }
    // IPv4 with a total length past the frame.
    let mut f = good.to_vec();
    f[14 + 2] = 0x05;
    f[14 + 3] = 0xdc;
    frames.push(f);
    // Random bytes after a valid Ethernet header with the IPv4 type.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for len in [20usize, 40, 100, 600, 1400] {
        let mut f = good[..14].to_vec();
        for _ in 0..len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            f.push(x as u8);
        }
        // Make sure the IPv4 header checksum is wrong (random bytes could sum right).
        f[14] = 0x45;
        let c = checksum(&f[14..34]);
        if c == 0 {
            f[24] ^= 1;
        }
        frames.push(f);
    }
    frames
}

/// Writes `frames` onto the tap from the host side (an `AF_PACKET` socket: as if from other
/// hosts on the wire), `gap` apart; returns how many were sent whole. Each frame carries its own
/// Ethernet header (or none, for the runt frames), exactly as given.
pub(crate) fn inject(wire: &Wire, frames: &[Vec<u8>], gap: Duration) -> Result<u64, String> {
    use pnet_datalink::Channel;
    let interface = pnet_datalink::interfaces()
        .into_iter()
        .find(|i| i.name == wire.tap)
        .ok_or_else(|| format!("no interface {}", wire.tap))?;
    let mut tx = match pnet_datalink::channel(&interface, pnet_datalink::Config::default()) {
        Ok(Channel::Ethernet(tx, _rx)) => tx,
        Ok(_) => return Err(format!("{}: not an Ethernet channel", wire.tap)),
        Err(e) => {
            return Err(format!(
                "cannot open an AF_PACKET socket on {}: {e}",
                wire.tap
            ));
        }
    };
    let mut sent = 0;
    for f in frames {
        if matches!(tx.send_to(f, None), Some(Ok(()))) {
            sent += 1;
        }
        if !gap.is_zero() {
            std::thread::sleep(gap);
        }
    }
    Ok(sent)
}

fn sysfs(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("{path}: {e}"))
}

fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let v: Vec<u8> = s
        .split(':')
        .filter_map(|h| u8::from_str_radix(h, 16).ok())
        .collect();
    v.try_into().map_err(|_| format!("bad MAC {s}"))
}

pub(crate) fn host_mac(tap: &str) -> Result<[u8; 6], String> {
    parse_mac(&sysfs(&format!("/sys/class/net/{tap}/address"))?)
}

/// The guest's MAC from the host's neighbour table (filled by the traffic before).
pub(crate) fn guest_mac(wire: &Wire) -> Result<[u8; 6], String> {
    let out = Command::new("ip")
        .args(["neigh", "show", &wire.guest.to_string(), "dev", &wire.tap])
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mac = text
        .split_whitespace()
        .skip_while(|w| *w != "lladdr")
        .nth(1)
        .ok_or_else(|| format!("no neighbour entry for {}: {text}", wire.guest))?;
    parse_mac(mac)
}

/// Two threads sending UDP datagrams to the echo port as fast as they can for `d`.
fn flood(guest: Ipv4Addr, d: Duration, pps: Option<u32>) -> Result<(u64, f64), String> {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let (stop, count) = (stop.clone(), count.clone());
            std::thread::spawn(move || {
                let Ok(s) = UdpSocket::bind("0.0.0.0:0") else {
                    return;
                };
                let _ = s.set_nonblocking(true);
                let payload = [0x5au8; 512];
                let to = SocketAddrV4::new(guest, 7);
                let mut sink = [0u8; 2048];
                // Each of the two threads sends half the rate, in bursts of 32 every tick.
                let tick = pps.map(|p| Duration::from_secs_f64(64.0 / f64::from(p.max(64))));
                let mut next = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    if let Some(tick) = tick {
                        let now = Instant::now();
                        if now < next {
                            std::thread::sleep(next - now);
                        }
                        next += tick;
                        for _ in 0..32 {
                            if s.send_to(&payload, to).is_ok() {
                                count.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    } else if s.send_to(&payload, to).is_ok() {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    // Drain echoes so the host's socket buffer does not fill.
                    while s.recv(&mut sink).is_ok() {}
                }
            })
        })
        .collect();
    std::thread::sleep(d);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    Ok((count.load(Ordering::Relaxed), start.elapsed().as_secs_f64()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_numbers_from_the_status_json() {
        let j = r#"{"uptime_ms":1526,"control":{"periods":1507,"misses":5},"net":{"rx_frames":9,"malformed":3}}"#;
        assert_eq!(json_number(j, "", "uptime_ms"), Some(1526));
        assert_eq!(json_number(j, "\"control\"", "misses"), Some(5));
        assert_eq!(json_number(j, "\"net\"", "malformed"), Some(3));
        assert_eq!(json_number(j, "", "nope"), None);
    }

    #[test]
    fn ones_complement_checksum() {
        // RFC 1071's example words sum to 0xddf2; the checksum is its complement.
        let words = [0x00u8, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(checksum(&words), !0xddf2);
    }

    #[test]
    fn frames_good_and_malformed() {
        let (host, guest) = (Ipv4Addr::new(10, 77, 1, 1), Ipv4Addr::new(10, 77, 1, 2));
        let good = udp_frame(([2; 6], host), ([4; 6], guest), b"abc");
        assert_eq!(good.len(), 14 + 20 + 8 + 3);
        assert_eq!((&good[..6], &good[6..12]), (&[4u8; 6][..], &[2u8; 6][..]));
        // Both checksums verify: the IPv4 header's and the UDP one over its pseudo-header.
        assert_eq!(checksum(&good[14..34]), 0);
        let mut pseudo = [host.octets(), guest.octets()].concat();
        pseudo.extend_from_slice(&[0, 17, 0, 11]);
        pseudo.extend_from_slice(&good[34..]);
        assert_eq!(checksum(&pseudo), 0);
        let bad = malformed_frames(&good);
        assert_eq!(bad.len(), 3 + 20 + 20 + 3 + 1 + 5);
        assert!(bad.iter().all(|f| *f != good));
        assert_eq!(bad.iter().filter(|f| f.len() < 14).count(), 3);
        // The random ones never carry a valid IPv4 header checksum.
        assert!(
            bad[bad.len() - 5..]
                .iter()
                .all(|f| checksum(&f[14..34]) != 0)
        );
    }

    #[test]
    fn floods_are_judged() {
        let status = |pressure: u64, echoed: u64, periods: u64, misses: u64| {
            format!(
                r#"{{"control":{{"periods":{periods},"misses":{misses}}},"net":{{"rx_backpressure":{pressure},"rx_ring_full":1,"tx_ring_full":0,"pool_empty":0}},"echo":{{"udp_datagrams":{echoed}}}}}"#
            )
        };
        let before = status(5, 100, 10, 1);
        let d = FloodDelta::between(&before, &status(7, 1100, 130, 1));
        assert_eq!(
            d,
            FloodDelta {
                pressure_events: 2,
                echoed: 1000,
                periods: 120,
                misses: 0
            }
        );
        assert_eq!(d.judge(1000, "after"), Ok(()));
        // No pressure, everything echoed: not saturated; 10 % lost is enough.
        let calm = FloodDelta::between(&before, &status(5, 1100, 130, 1));
        assert!(
            calm.judge(1000, "a")
                .unwrap_err()
                .starts_with("the flood did not saturate")
        );
        assert_eq!(calm.judge(1112, "a"), Ok(()));
        let stalled = FloodDelta::between(&before, &status(7, 1100, 10, 1));
        assert_eq!(
            stalled.judge(1000, "a"),
            Err("the control loop did not run during the flood".to_string())
        );
        let missed = FloodDelta::between(&before, &status(7, 1100, 130, 4));
        assert_eq!(
            missed.judge(1000, "a"),
            Err("the control loop missed 3 deadlines during the flood: a".to_string())
        );
    }
}
