//! `cargo xtask bench net [--loops N] [--rounds N] [--accel A] [--smp N] [--mem M]`: Rhea's network next
//! to a Linux guest's, measured from the host through the same QEMU netdev in the same run.
//! With `--board pc-uefi`: the PC's NIC (the Intel 82574L on pc-uefi) next to virtio-net on
//! q35, both Rhea, the same way ([`bench_pc_nic`]).
//!
//! Both guests boot on QEMU x86_64 q35 with the same flags (machine, firmware, accelerator,
//! `-smp`; `-m` differs and is printed) and the same NIC: the `-netdev`/`-device` pair of the
//! appliance's QEMU machine on a tap this bench creates instead of user networking
//! (`qemu::machine_on_tap`, `net::Wire`, host 10.77.20.1, guest 10.77.20.2;
//! root needed) — the Linux guest gets the same NIC. In `--rounds` rounds
//! (default [`DEFAULT_ROUNDS`]), each booting both one after the other, Rhea first in odd
//! rounds and Linux first in even ones, so drift of the host between the two measurements
//! does not always favour the same guest; the report gives each round's TCP ratio and the
//! medians of every figure:
//!
//! 1. Rhea: the demo appliance (`apps/appliance`, echo on port 7) with `rhea.net.ip=<guest>/24
//!    appliance.allow_quit=1` (plus `--append`); ended with `GET /quit`.
//! 2. Linux: the guest of `linux_guest.rs` in `rhea.mode=net` (virtio-net modules loaded,
//!    eth0 configured, `xtask/guest/netecho.c` answering on port 7); ended with its quit
//!    datagram.
//!
//! Against each, from the host:
//!
//! - UDP round trip: [`WARMUP`] echoes not counted, then `--loops` (default
//!   [`DEFAULT_LOOPS`]) sequential 64-byte echoes; p50/p99/max. A lost datagram is sent again
//!   (and counted); [`MAX_CONSECUTIVE_LOSSES`] in a row end the run with an error.
//! - TCP stream: [`TCP_BYTES`] through the echo service, a sender and a receiver thread,
//!   every byte checked; MB/s of echoed payload (each byte crosses the NIC twice).
//! - Small-packet rate: 64-byte UDP echoes with at most [`RATE_WINDOW`] in flight for
//!   [`RATE_SECS`] s; echoes per second. After [`RATE_TIMEOUT`] without an echo, what is in
//!   flight counts as lost and the window is refilled (late echoes are then ignored).
//!
//! Timing is never judged: the bench fails only when a figure cannot be produced (a guest did
//! not come up, an echo never answered, data came back wrong).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddrV4, TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::qemu::{self, QemuEnd, Verdict};
use crate::test::net::{Guest, Wire};
use crate::{Options, Result, Workspace, bench, boards, fail, usage};

const BOARD: &str = "qemu-x86_64";
/// The machine both guests boot (the Linux guest's kernel has virtio-pci as a module; its
/// virtio-mmio NIC on microvm is not set up here).
const MACHINE: &str = "q35";
const APP: &str = "appliance";
/// The wire number: tap `rhea-net20`, 10.77.20.0/24 (the tests use 1 and 2).
const WIRE: u8 = 20;
const ECHO_PORT: u16 = 7;
/// Sequential UDP echoes measured by default.
const DEFAULT_LOOPS: u32 = 5_000;
/// Rounds of both guests by default: one round's ratio swung 0.54-1.04 over five runs on an
/// idle host (the two guests are measured one after the other, so host drift lands in it).
const DEFAULT_ROUNDS: u32 = 3;
/// UDP echoes before the measured ones (ARP, caches, the guests' first-use paths).
const WARMUP: u32 = 100;
/// Payload of the round-trip and rate datagrams, bytes.
const UDP_PAYLOAD: usize = 64;
/// How long one UDP echo may take before it counts as lost.
const UDP_TIMEOUT: Duration = Duration::from_millis(500);
/// Lost round-trip echoes in a row that end the run.
const MAX_CONSECUTIVE_LOSSES: u32 = 10;
/// The TCP stream, bytes.
const TCP_BYTES: usize = 32 << 20;
/// The sender's write size, bytes.
const TCP_CHUNK: usize = 64 << 10;
/// Datagrams in flight in the rate test.
const RATE_WINDOW: usize = 32;
/// Duration of the rate test.
const RATE_SECS: u64 = 3;
/// Silence after which the rate test counts what is in flight as lost.
const RATE_TIMEOUT: Duration = Duration::from_millis(200);
/// How long a guest may take to answer on port 7 (TCG: Linux needs ~5–10 s).
const READY_TIMEOUT: Duration = Duration::from_secs(180);
const RHEA_READY: &str = "appliance: ready";
/// Console lines shown when a guest fails.
const TAIL_LINES: usize = 25;

/// p50/p99/max of the UDP round trips, µs.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Latency {
    p50: f64,
    p99: f64,
    max: f64,
    samples: usize,
}

/// The nearest-rank percentile `q` (0 < q ≤ 1) of sorted values.
fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// The round-trip figures of samples in µs; `None` without samples.
fn latency_of(samples_us: &[f64]) -> Option<Latency> {
    let mut v = samples_us.to_vec();
    v.sort_by(f64::total_cmp);
    Some(Latency {
        p50: percentile(&v, 0.50)?,
        p99: percentile(&v, 0.99)?,
        max: *v.last()?,
        samples: v.len(),
    })
}

/// What one guest measured.
#[derive(Debug, Clone, Copy)]
struct Figures {
    rtt: Latency,
    rtt_lost: u32,
    tcp_mb_per_s: f64,
    rate_per_s: f64,
    rate_echoes: u64,
    rate_lost: u64,
}

/// A datagram of [`UDP_PAYLOAD`] bytes: `tag` (which run, which epoch) and `seq`, then filler.
fn datagram(tag: u32, seq: u32) -> [u8; UDP_PAYLOAD] {
    let mut d = [0x5a; UDP_PAYLOAD];
    d[..4].copy_from_slice(&tag.to_le_bytes());
    d[4..8].copy_from_slice(&seq.to_le_bytes());
    d
}

/// (tag, seq) of an echo, if it is one of ours.
fn parse_datagram(d: &[u8]) -> Option<(u32, u32)> {
    if d.len() != UDP_PAYLOAD || d[8..].iter().any(|&b| b != 0x5a) {
        return None;
    }
    let tag = u32::from_le_bytes(d[..4].try_into().ok()?);
    let seq = u32::from_le_bytes(d[4..8].try_into().ok()?);
    Some((tag, seq))
}

fn udp_socket(guest: Ipv4Addr, timeout: Duration) -> Result<UdpSocket, String> {
    let s = UdpSocket::bind("0.0.0.0:0").map_err(|e| format!("udp bind: {e}"))?;
    s.connect(SocketAddrV4::new(guest, ECHO_PORT))
        .map_err(|e| format!("udp connect: {e}"))?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| format!("udp timeout: {e}"))?;
    Ok(s)
}

/// `warmup` + `loops` sequential echoes; the round trips of the last `loops` in µs, and how
/// many datagrams were lost (and sent again).
fn udp_round_trips(guest: Ipv4Addr, warmup: u32, loops: u32) -> Result<(Vec<f64>, u32), String> {
    let s = udp_socket(guest, UDP_TIMEOUT)?;
    let mut samples = Vec::with_capacity(loops as usize);
    let mut lost = 0;
    let mut seq = 0u32;
    let mut buf = [0u8; 2048];
    for i in 0..warmup + loops {
        let mut in_a_row = 0;
        let rtt = loop {
            seq += 1;
            let d = datagram(1, seq);
            let start = Instant::now();
            s.send(&d).map_err(|e| format!("udp send: {e}"))?;
            let answered = loop {
                match s.recv(&mut buf) {
                    Ok(n) if parse_datagram(&buf[..n]) == Some((1, seq)) => break true,
                    Ok(_) => continue, // a late echo of a lost one
                    Err(_) => break false,
                }
            };
            if answered {
                break start.elapsed();
            }
            lost += 1;
            in_a_row += 1;
            if in_a_row >= MAX_CONSECUTIVE_LOSSES {
                return Err(format!(
                    "UDP echo {i} unanswered {in_a_row} times in a row ({} ms each)",
                    UDP_TIMEOUT.as_millis()
                ));
            }
        };
        if i >= warmup {
            samples.push(rtt.as_secs_f64() * 1e6);
        }
    }
    Ok((samples, lost))
}

/// The byte at `i` of the TCP stream.
fn stream_byte(i: usize) -> u8 {
    (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes()[7]
}

/// `total` bytes through the TCP echo service (a sender and a receiver thread), checked; MB/s.
fn tcp_stream(guest: Ipv4Addr, total: usize) -> Result<f64, String> {
    let addr = SocketAddrV4::new(guest, ECHO_PORT);
    let s = TcpStream::connect_timeout(&addr.into(), Duration::from_secs(10))
        .map_err(|e| format!("tcp connect {addr}: {e}"))?;
    s.set_nodelay(true).ok();
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let data: Arc<Vec<u8>> = Arc::new((0..total).map(stream_byte).collect());
    let mut w = s.try_clone().map_err(|e| format!("tcp clone: {e}"))?;
    let wdata = data.clone();
    let start = Instant::now();
    let writer = std::thread::spawn(move || -> Result<(), String> {
        for chunk in wdata.chunks(TCP_CHUNK) {
            w.write_all(chunk).map_err(|e| format!("tcp send: {e}"))?;
        }
        Ok(())
    });
    let mut r = s;
    let mut got = 0;
    let mut buf = vec![0u8; 256 << 10];
    let result = (|| {
        while got < total {
            let n = r
                .read(&mut buf)
                .map_err(|e| format!("tcp read after {got} of {total} bytes: {e}"))?;
            if n == 0 {
                return Err(format!("tcp echo closed after {got} of {total} bytes"));
            }
            if n > total - got || buf[..n] != data[got..got + n] {
                return Err(format!("tcp echo returned wrong data near byte {got}"));
            }
            got += n;
        }
        Ok(start.elapsed())
    })();
    if result.is_err() {
        // Unblock the sender.
        let _ = r.shutdown(Shutdown::Both);
    }
    let sent = writer
        .join()
        .map_err(|_| "tcp sender panicked".to_string())?;
    let elapsed = result?;
    sent?;
    Ok(total as f64 / 1e6 / elapsed.as_secs_f64())
}

/// 64-byte echoes with at most `window` in flight for `duration`: (echoes per second,
/// echoes, lost).
fn udp_rate(guest: Ipv4Addr, window: usize, duration: Duration) -> Result<(f64, u64, u64), String> {
    let s = udp_socket(guest, RATE_TIMEOUT)?;
    let mut buf = [0u8; 2048];
    // The tag is the epoch: 2, 3, ... (1 is the round-trip test's).
    let mut epoch = 2u32;
    let mut seq = 0u32;
    let mut in_flight = 0usize;
    let (mut echoes, mut lost) = (0u64, 0u64);
    let mut send = |in_flight: &mut usize, epoch: u32| -> Result<(), String> {
        seq += 1;
        s.send(&datagram(epoch, seq))
            .map_err(|e| format!("udp send: {e}"))?;
        *in_flight += 1;
        Ok(())
    };
    let start = Instant::now();
    while start.elapsed() < duration {
        while in_flight < window {
            send(&mut in_flight, epoch)?;
        }
        match s.recv(&mut buf) {
            Ok(n) => {
                if parse_datagram(&buf[..n]).is_some_and(|(tag, _)| tag == epoch) {
                    echoes += 1;
                    in_flight -= 1;
                }
            }
            Err(_) => {
                lost += in_flight as u64;
                in_flight = 0;
                epoch += 1;
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    // What is still in flight is lost only if it never comes back (not counted in the rate).
    while in_flight > 0 {
        match s.recv(&mut buf) {
            Ok(n) if parse_datagram(&buf[..n]).is_some_and(|(tag, _)| tag == epoch) => {
                in_flight -= 1;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    lost += in_flight as u64;
    if echoes == 0 {
        return Err(format!(
            "no small-packet UDP echo answered in {secs:.1} s ({lost} lost)"
        ));
    }
    Ok((echoes as f64 / secs, echoes, lost))
}

/// The three measures against a guest answering on `guest`:7.
fn measure(guest: Ipv4Addr, loops: u32, who: &str) -> Result<Figures, String> {
    let (samples, rtt_lost) =
        udp_round_trips(guest, WARMUP, loops).map_err(|e| format!("UDP round trip: {e}"))?;
    let rtt = latency_of(&samples).ok_or("UDP round trip: no samples (--loops 0?)")?;
    println!(
        "  {who}: UDP round trip p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs ({} echoes, {rtt_lost} lost and resent)",
        rtt.p50, rtt.p99, rtt.max, rtt.samples
    );
    // Rhea's own counters around the stream (its status page; the Linux guest has none).
    let before = (who == "Rhea").then(|| rhea_counters(guest)).flatten();
    let tcp_mb_per_s = tcp_stream(guest, TCP_BYTES).map_err(|e| format!("TCP stream: {e}"))?;
    println!(
        "  {who}: TCP echo stream {} MiB: {tcp_mb_per_s:.2} MB/s",
        TCP_BYTES >> 20
    );
    if let (Some(b), Some(a)) = (before, before.and_then(|_| rhea_counters(guest))) {
        let per_mib = |i: usize| a[i].saturating_sub(b[i]) as f64 / (TCP_BYTES >> 20) as f64;
        let secs = a[0].saturating_sub(b[0]) as f64 / 1e3;
        let busy = 100.0 - a[1].saturating_sub(b[1]) as f64 / 1e3 / secs.max(1e-3) * 100.0;
        println!(
            "  {who}: per MiB echoed: rx {:.0} tx {:.0} frames, {:.0} polls, {:.0} interrupts, \
             {:.0} kicks, {:.0} switches; cpu0 {busy:.0}% busy over {secs:.1} s",
            per_mib(2),
            per_mib(3),
            per_mib(4),
            per_mib(5),
            per_mib(6),
            per_mib(7)
        );
    }
    let (rate_per_s, rate_echoes, rate_lost) =
        udp_rate(guest, RATE_WINDOW, Duration::from_secs(RATE_SECS))
            .map_err(|e| format!("small-packet rate: {e}"))?;
    println!(
        "  {who}: {UDP_PAYLOAD}-byte UDP echoes, window {RATE_WINDOW}: {rate_per_s:.0}/s ({rate_echoes} in {RATE_SECS} s, {rate_lost} lost)"
    );
    Ok(Figures {
        rtt,
        rtt_lost,
        tcp_mb_per_s,
        rate_per_s,
        rate_echoes,
        rate_lost,
    })
}

/// The appliance's counters that explain a stream: uptime and cpu0 idle (ms), rx and tx
/// frames, polls, interrupts, kicks, context switches (of cpu0); `None` if the status page
/// does not answer.
fn rhea_counters(guest: Ipv4Addr) -> Option<[u64; 8]> {
    let j = crate::test::net::status(guest).ok()?;
    let n = |after: &str, key: &str| crate::test::net::json_number(&j, after, key);
    Some([
        n("", "uptime_ms")?,
        n("\"cpus\"", "idle_ms")?,
        n("\"net\"", "rx_frames")?,
        n("\"net\"", "tx_frames")?,
        n("\"net\"", "polls")?,
        n("\"net\"", "interrupts")?,
        n("\"net\"", "kicks")?,
        n("\"cpus\"", "switches")?,
    ])
}

/// The last console lines of a guest, indented.
fn tail(guest: &Guest) -> String {
    let console = guest.console();
    let from = console.len().saturating_sub(TAIL_LINES);
    console[from..]
        .iter()
        .map(|l| format!("  | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Starts a guest, waits for `ready`, measures, ends it with `quit`; the figures and a note
/// on how it ended.
fn run_guest(
    who: &str,
    cmd: std::process::Command,
    ready: &str,
    wire: &Wire,
    loops: u32,
    quit: impl FnOnce() -> Result<(), String>,
) -> Result<(Figures, Option<i32>, Duration)> {
    let start = Instant::now();
    let mut guest =
        Guest::spawn(cmd).or_else(|e| fail(format!("{who}: cannot start QEMU: {e}")))?;
    if let Err(e) = guest.wait_for(ready, READY_TIMEOUT) {
        return fail(format!(
            "{who} did not come up ({e}); last console lines:\n{}",
            tail(&guest)
        ));
    }
    let up = start.elapsed();
    println!(
        "  {who}: answering on {}:{ECHO_PORT} {:.1} s after QEMU started",
        wire.guest,
        up.as_secs_f64()
    );
    let figures = match measure(wire.guest, loops, who) {
        Ok(f) => f,
        Err(e) => {
            return fail(format!("{who}: {e}; last console lines:\n{}", tail(&guest)));
        }
    };
    if let Err(e) = quit() {
        println!("  {who}: could not ask it to end ({e}); QEMU is killed");
    }
    let status = guest.finish(Duration::from_secs(30));
    // What the guest says of its own counters as it ends (the appliance's `net:` lines, and
    // how deep its threads went into their stacks).
    for line in guest.console() {
        if line.contains(": net: ") || line.contains(": stacks (") {
            println!("  {who}: {}", line.trim());
        }
    }
    Ok((figures, status.and_then(|s| s.code()), up))
}

/// One guest's figures, exit code and time to answer.
type Run = (Figures, Option<i32>, Duration);

/// The median of some values (the upper middle one for an even count; 0 for none).
fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    percentile(&v, 0.5).unwrap_or(0.0)
}

/// The figures of several rounds: each measure's median; losses and echoes summed.
fn summarize(runs: &[Run]) -> Figures {
    let m = |f: fn(&Figures) -> f64| median(&runs.iter().map(|r| f(&r.0)).collect::<Vec<_>>());
    Figures {
        rtt: Latency {
            p50: m(|f| f.rtt.p50),
            p99: m(|f| f.rtt.p99),
            max: m(|f| f.rtt.max),
            samples: runs.iter().map(|r| r.0.rtt.samples).sum(),
        },
        rtt_lost: runs.iter().map(|r| r.0.rtt_lost).sum(),
        tcp_mb_per_s: m(|f| f.tcp_mb_per_s),
        rate_per_s: m(|f| f.rate_per_s),
        rate_echoes: runs.iter().map(|r| r.0.rate_echoes).sum(),
        rate_lost: runs.iter().map(|r| r.0.rate_lost).sum(),
    }
}

/// `cargo xtask bench net`.
pub(crate) fn bench(ws: &Workspace, opts: &Options) -> Result<()> {
    if opts.board_name() == PC_BOARD {
        return bench_pc_nic(ws, opts);
    }
    let (loops, rounds) = check_options(opts)?;
    let board = boards::find(BOARD)?;
    let machine = board.machine(Some(MACHINE))?;
    let super::Prepared {
        qemu,
        image,
        accel,
        decision,
    } = super::prepare(ws, board, APP, opts)?;
    let wire = Wire::new(WIRE);

    let rhea_cmdline = format!(
        "rhea.net.ip={}/24 appliance.allow_quit=1 {}",
        wire.guest,
        opts.append()
    )
    .trim()
    .to_string();
    let spec = qemu::Spec {
        board,
        machine,
        accel,
        smp: opts.smp,
        mem: &opts.mem,
        kernel: &image.boot,
        serial: qemu::Serial::Captured,
        append: &rhea_cmdline,
    };
    let (mut rhea, nic) = qemu::machine_on_tap(&spec, qemu.qboot.as_deref(), &wire.tap)?;
    rhea.binary = qemu.binary.clone();
    let linux = bench::linux_guest::net_guest(
        ws,
        &qemu,
        machine,
        accel,
        opts.smp,
        &nic,
        &format!("{}/24", wire.guest),
    )?;
    print_conditions(&Conditions {
        opts,
        qemu: &qemu,
        decision: &decision,
        machine,
        linux: &linux,
        nic: &nic,
        wire: &wire,
        rhea_cmdline: &rhea_cmdline,
        loops,
        rounds,
    });
    wire.create()
        .or_else(|e| fail(format!("cannot create tap {}: {e}", wire.tap)))?;
    let result = run_rounds(&rhea, &linux.machine, &wire, loops, rounds);
    wire.destroy();
    let (rhea_runs, linux_runs) = result?;
    print_figures(&rhea_runs, &linux_runs, rounds, accel);
    Ok(())
}

/// The board whose NIC `bench net --board pc-uefi` measures: the PC's Intel 82574L.
const PC_BOARD: &str = "pc-uefi";

/// `bench net --board pc-uefi`: the appliance on pc-uefi (OVMF, the Intel 82574L, `e1000e`)
/// next to the same appliance on qemu-x86_64 q35 (virtio-net-pci), both under TCG with
/// `-smp` and `-m` alike, on the same tap, in alternating rounds — the baseline for the PC's
/// NIC is Rhea's own virtio-net on the same host in the same run (the Linux guest's cloud
/// kernel has no e1000e driver, so it cannot be the baseline here).
fn bench_pc_nic(ws: &Workspace, opts: &Options) -> Result<()> {
    if !crate::test::net::is_root() {
        return fail("`bench net` needs root: it creates a tap interface for the guests' NIC");
    }
    let loops = opts.loops.unwrap_or(DEFAULT_LOOPS);
    if loops == 0 {
        return usage("--loops must be at least 1");
    }
    let rounds = opts.rounds.unwrap_or(DEFAULT_ROUNDS);
    let wire = Wire::new(WIRE);
    let cmdline = format!(
        "rhea.net.ip={}/24 appliance.allow_quit=1 {}",
        wire.guest,
        opts.append()
    )
    .trim()
    .to_string();
    let mut machines = Vec::new();
    for board_name in [PC_BOARD, BOARD] {
        let board = boards::find(board_name)?;
        let super::Prepared { qemu, image, .. } = super::prepare(ws, board, APP, opts)?;
        let spec = qemu::Spec {
            board,
            machine: MACHINE,
            accel: qemu::Accel::Tcg,
            smp: opts.smp,
            mem: &opts.mem,
            kernel: &image.boot,
            serial: qemu::Serial::Captured,
            append: &cmdline,
        };
        let (mut m, nic) = qemu::machine_on_tap(&spec, qemu.qboot.as_deref(), &wire.tap)?;
        m.binary = qemu.binary.clone();
        println!("  {board_name}: NIC {}", nic.device);
        machines.push(m);
    }
    println!(
        "== bench net --board pc-uefi: the PC's NIC (e1000e) vs virtio-net, both Rhea's \
         appliance under TCG, -smp {} -m {}, {rounds} round(s), {loops} round trips",
        opts.smp, opts.mem
    );
    wire.create()
        .or_else(|e| fail(format!("cannot create tap {}: {e}", wire.tap)))?;
    let guest_ip = wire.guest;
    let run = |label: &str, m: &qemu::Machine, round: u32| {
        println!("== round {round}/{rounds}: {label}");
        run_guest(label, m.command(), RHEA_READY, &wire, loops, || {
            crate::test::net::quit(guest_ip)
        })
    };
    let (e, v) = ("e1000e (pc-uefi)", "virtio-net (q35)");
    let mut result = Ok((Vec::new(), Vec::new()));
    for round in 1..=rounds {
        let step = (|| -> Result<(Run, Run)> {
            if round % 2 == 1 {
                let a = run(e, &machines[0], round)?;
                Ok((a, run(v, &machines[1], round)?))
            } else {
                let b = run(v, &machines[1], round)?;
                Ok((run(e, &machines[0], round)?, b))
            }
        })();
        match (step, &mut result) {
            (Ok((a, b)), Ok((ea, vb))) => {
                ea.push(a);
                vb.push(b);
            }
            (Err(err), _) => {
                result = Err(err);
                break;
            }
            _ => {}
        }
    }
    wire.destroy();
    let (e_runs, v_runs) = result?;
    println!();
    println!("figures, median of {rounds} round(s) ({e} | {v} | ratio):");
    for row in median_rows(&summarize(&e_runs), &summarize(&v_runs)) {
        println!("{}", row.render());
    }
    println!("  note: under TCG both NICs are emulated by QEMU; compare the ratios within one run");
    Ok(())
}

/// `--loops` and `--rounds`, once the options are checked (board, machine, root).
fn check_options(opts: &Options) -> Result<(u32, u32)> {
    if opts.board_name() != BOARD {
        return usage(format!(
            "`bench net` runs on board {BOARD} (or {PC_BOARD}: its NIC against virtio-net), \
             not {}",
            opts.board_name()
        ));
    }
    if opts.machine.as_deref().is_some_and(|m| m != MACHINE) {
        return usage(format!("`bench net` runs on machine {MACHINE}"));
    }
    if !crate::test::net::is_root() {
        return fail(
            "`bench net` needs root: it creates a tap interface (ip tuntap) for the guests' \
             NIC; run it as root (e.g. sudo -E cargo xtask bench net)",
        );
    }
    let loops = opts.loops.unwrap_or(DEFAULT_LOOPS);
    if loops == 0 {
        return usage("--loops must be at least 1");
    }
    Ok((loops, opts.rounds.unwrap_or(DEFAULT_ROUNDS)))
}

/// What the report's conditions name.
struct Conditions<'a> {
    opts: &'a Options,
    qemu: &'a qemu::Qemu,
    decision: &'a qemu::AccelDecision,
    machine: &'a str,
    linux: &'a bench::linux_guest::NetGuest,
    nic: &'a qemu::Nic,
    wire: &'a Wire,
    rhea_cmdline: &'a str,
    loops: u32,
    rounds: u32,
}

/// Prints the conditions of the measurement.
fn print_conditions(c: &Conditions<'_>) {
    let Conditions {
        opts,
        qemu,
        decision,
        machine,
        linux,
        nic,
        wire,
        rhea_cmdline,
        loops,
        rounds,
    } = *c;
    let accel = decision.accel;
    let nproc = std::thread::available_parallelism().map_or(0, usize::from);
    println!();
    println!("== bench net: Rhea's appliance vs a Linux guest, measured from the host");
    println!("conditions:");
    println!("  QEMU:        {}", qemu.banner);
    println!(
        "  host:        {nproc} CPUs ({}); the host side runs on the same CPUs",
        bench::host_cpu_model()
    );
    println!("  accel:       {} ({})", accel.name(), decision.reason);
    println!(
        "  machine:     {machine} (same -M and firmware for both), -smp {} (both)",
        opts.smp
    );
    println!(
        "  RAM:         Rhea -m {}, Linux -m {}",
        opts.mem, linux.mem
    );
    println!(
        "  netdev:      {} (both; tap {} host {} guest {}, no vhost)",
        nic.args().join(" "),
        wire.tap,
        wire.host,
        wire.guest
    );
    println!("  Rhea:        app {APP}, command line {rhea_cmdline:?}");
    println!(
        "  Linux:       {}, netecho (xtask/guest/netecho.c) in rhea.mode=net",
        linux.kernel_package
    );
    println!(
        "  measures:    UDP round trip {loops} x {UDP_PAYLOAD} B sequential (after {WARMUP} \
         warm-up); TCP echo {} MiB; {UDP_PAYLOAD} B UDP echoes, window {RATE_WINDOW}, {RATE_SECS} s",
        TCP_BYTES >> 20
    );

    println!(
        "  rounds:      {rounds}, each measuring both guests, alternating which goes first \
         (host drift between the two lands in both directions); figures are medians"
    );
}

/// Boots both guests `rounds` times, Rhea first in odd rounds, and measures each.
fn run_rounds(
    rhea: &qemu::Machine,
    linux: &qemu::Machine,
    wire: &Wire,
    loops: u32,
    rounds: u32,
) -> Result<(Vec<Run>, Vec<Run>)> {
    let guest_ip = wire.guest;
    let run_rhea = |round: u32| {
        println!("== round {round}/{rounds}: Rhea (appliance)");
        run_guest("Rhea", rhea.command(), RHEA_READY, wire, loops, || {
            crate::test::net::quit(guest_ip)
        })
    };
    let run_linux = |round: u32| {
        println!("== round {round}/{rounds}: Linux guest (netecho)");
        run_guest(
            "Linux",
            linux.command(),
            bench::linux_guest::NET_READY,
            wire,
            loops,
            || {
                let s = udp_socket(guest_ip, UDP_TIMEOUT)?;
                s.send(bench::linux_guest::NET_QUIT)
                    .map(|_| ())
                    .map_err(|e| format!("udp send: {e}"))
            },
        )
    };
    let (mut rhea_runs, mut linux_runs) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        if round % 2 == 1 {
            rhea_runs.push(run_rhea(round)?);
            linux_runs.push(run_linux(round)?);
        } else {
            linux_runs.push(run_linux(round)?);
            rhea_runs.push(run_rhea(round)?);
        }
    }
    Ok((rhea_runs, linux_runs))
}

/// Prints each round's TCP ratio, the medians of every figure and how the guests ended.
fn print_figures(rhea_runs: &[Run], linux_runs: &[Run], rounds: u32, accel: qemu::Accel) {
    let rhea = summarize(rhea_runs);
    let linux_fig = summarize(linux_runs);
    println!();
    println!("TCP echo stream per round (Rhea / Linux MB/s = ratio):");
    for (i, (r, l)) in rhea_runs.iter().zip(linux_runs).enumerate() {
        println!(
            "  round {}: {:.2} / {:.2} = {:.2}",
            i + 1,
            r.0.tcp_mb_per_s,
            l.0.tcp_mb_per_s,
            r.0.tcp_mb_per_s / l.0.tcp_mb_per_s
        );
    }
    println!();
    println!("figures, median of {rounds} round(s) (Rhea | Linux guest | Rhea/Linux):");
    for row in median_rows(&rhea, &linux_fig) {
        println!("{}", row.render());
    }
    println!(
        "  lost datagrams, all rounds: round trip (resent) Rhea {} Linux {}; rate Rhea {} Linux {} (echoes: Rhea {}, Linux {})",
        rhea.rtt_lost,
        linux_fig.rtt_lost,
        rhea.rate_lost,
        linux_fig.rate_lost,
        rhea.rate_echoes,
        linux_fig.rate_echoes
    );
    let up = |runs: &[Run]| median(&runs.iter().map(|r| r.2.as_secs_f64()).collect::<Vec<_>>());
    println!(
        "  QEMU start -> answering on port {ECHO_PORT} (median): Rhea {:.1} s, Linux {:.1} s",
        up(rhea_runs),
        up(linux_runs)
    );
    print_run_notes(rhea_runs, linux_runs, accel);
}

/// One line of the medians table: a measure, Rhea's and Linux's figure, their decimals, and
/// which way is better.
#[derive(Debug, Clone, PartialEq)]
struct MedianRow {
    what: String,
    rhea: f64,
    linux: f64,
    decimals: usize,
    better: &'static str,
}

impl MedianRow {
    /// The row as printed, with the ratio Rhea/Linux.
    fn render(&self) -> String {
        let MedianRow {
            ref what,
            rhea: r,
            linux: l,
            decimals,
            better,
        } = *self;
        format!(
            "  {what:<34} {r:>12.decimals$} {l:>12.decimals$}   {:>6.2}  ({better} is better)",
            r / l
        )
    }
}

/// The medians table of Rhea's figures `r` and the Linux guest's `l`: round-trip latency,
/// TCP stream rate, UDP echo rate.
fn median_rows(r: &Figures, l: &Figures) -> Vec<MedianRow> {
    let row =
        |what: String, rhea: f64, linux: f64, decimals: usize, better: &'static str| MedianRow {
            what,
            rhea,
            linux,
            decimals,
            better,
        };
    vec![
        row(
            "UDP round trip p50, µs".into(),
            r.rtt.p50,
            l.rtt.p50,
            1,
            "lower",
        ),
        row(
            "UDP round trip p99, µs".into(),
            r.rtt.p99,
            l.rtt.p99,
            1,
            "lower",
        ),
        row(
            "UDP round trip max, µs".into(),
            r.rtt.max,
            l.rtt.max,
            1,
            "lower",
        ),
        row(
            format!("TCP echo stream {} MiB, MB/s", TCP_BYTES >> 20),
            r.tcp_mb_per_s,
            l.tcp_mb_per_s,
            2,
            "higher",
        ),
        row(
            format!("{UDP_PAYLOAD} B UDP echoes/s, window {RATE_WINDOW}"),
            r.rate_per_s,
            l.rate_per_s,
            0,
            "higher",
        ),
    ]
}

/// The notes after the figures: the first unclean end of each guest, if any, and TCG's
/// caveat.
fn print_run_notes(rhea_runs: &[Run], linux_runs: &[Run], accel: qemu::Accel) {
    let rhea_unclean = rhea_runs
        .iter()
        .map(|r| r.1)
        .find(|c| !c.is_some_and(|c| qemu::classify(&QemuEnd::Exited(c)) == Verdict::Success));
    if let Some(code) = rhea_unclean {
        println!("  note: the appliance did not end cleanly after /quit (exit {code:?})");
    }
    if let Some(code) = linux_runs.iter().map(|r| r.1).find(|&c| c != Some(0)) {
        println!("  note: the Linux guest did not power off cleanly (exit {code:?})");
    }
    if accel == qemu::Accel::Tcg {
        println!(
            "  note: under TCG both guests run emulated; absolute figures mean little, compare \
             the ratios within one run on a quiet host"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_rows_as_printed() {
        let figures = |scale: f64| Figures {
            rtt: Latency {
                p50: 100.0 * scale,
                p99: 250.0 * scale,
                max: 900.0 * scale,
                samples: 1000,
            },
            rtt_lost: 0,
            tcp_mb_per_s: 40.0 / scale,
            rate_per_s: 20_000.0 / scale,
            rate_echoes: 1,
            rate_lost: 0,
        };
        let rows: Vec<String> = median_rows(&figures(1.0), &figures(2.0))
            .iter()
            .map(MedianRow::render)
            .collect();
        assert_eq!(
            rows,
            [
                "  UDP round trip p50, µs                    100.0        200.0     0.50  (lower is better)",
                "  UDP round trip p99, µs                    250.0        500.0     0.50  (lower is better)",
                "  UDP round trip max, µs                    900.0       1800.0     0.50  (lower is better)",
                "  TCP echo stream 32 MiB, MB/s              40.00        20.00     2.00  (higher is better)",
                "  64 B UDP echoes/s, window 32              20000        10000     2.00  (higher is better)",
            ]
        );
    }

    #[test]
    fn percentiles_and_latency() {
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(percentile(&[7.0], 0.99), Some(7.0));
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.50), Some(50.0));
        assert_eq!(percentile(&v, 0.99), Some(99.0));
        assert_eq!(percentile(&v, 1.0), Some(100.0));
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        // Unsorted input, an outlier.
        let l = latency_of(&[30.0, 10.0, 20.0, 1000.0, 15.0]).unwrap();
        assert_eq!(
            l,
            Latency {
                p50: 20.0,
                p99: 1000.0,
                max: 1000.0,
                samples: 5
            }
        );
        assert_eq!(latency_of(&[]), None);
    }

    #[test]
    fn datagrams_round_trip() {
        let d = datagram(3, 0x0102_0304);
        assert_eq!(d.len(), UDP_PAYLOAD);
        assert_eq!(parse_datagram(&d), Some((3, 0x0102_0304)));
        assert_eq!(parse_datagram(&d[..UDP_PAYLOAD - 1]), None);
        let mut bad = d;
        bad[40] = 0;
        assert_eq!(parse_datagram(&bad), None);
        let stream: Vec<u8> = (0..256).map(stream_byte).collect();
        assert!(stream.windows(2).filter(|w| w[0] == w[1]).count() < 16);
    }
}
