//! The appliance's network case under nested KVM (`<board>/<machine>/nested-kvm appliance
//! net`): the appliance runs as an L2 under the L1's real KVM — virtio-net over PCI with MSI-X
//! and KVM's in-kernel irqchip on q35, over virtio-mmio on Arm's virt — and the host talks to
//! it through two hops of QEMU port forwarding ([`nested::Forward`]: the host's loopback →
//! the L1 → the L2).
//!
//! Once the L2's console (the L1 copies it to the results share every second) says
//! `appliance: ready`, the host checks, in order: `GET /` (200, the page), `GET /status.json`
//! (200; per-CPU steal a number where the hypervisor keeps steal time — KVM on x86 — and the
//! threads' run times), 1 MiB through the TCP echo intact, 200 UDP echoes each answered (a
//! datagram lost on the way is sent again at most twice), and `GET /quit`; then the L2 must
//! end with success and print its counters. The tap-based cases' raw-frame checks (ICMP,
//! malformed frames, floods) need a wire to the guest, which port forwarding is not: they run
//! under TCG only.

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::net::{get_at, tcp_echo_at, udp_echoes_at};
use super::{TEST_CMDLINE, judge};
use crate::apps::{self, App, Expect};
use crate::boards::Board;
use crate::qemu::{self, Accel};
use crate::{Options, Workspace, image, nested, setup};

/// The machines whose nested network case runs, per board.
pub(crate) const CASES: &[(&str, &str)] = &[("qemu-x86_64", "q35"), ("qemu-aarch64", "virt-gicv3")];

/// The case's name.
pub(crate) fn case_name(board: &str, machine: &str) -> String {
    format!("{board}/{machine}/{} appliance net", qemu::NESTED_KVM)
}

/// How long the appliance may take to say it is ready (the L1's boot included).
const READY_WITHIN: Duration = Duration::from_secs(180);
/// The L2's own limit, from its start in the L1.
const L2_TIMEOUT: Duration = Duration::from_secs(240);
const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;
const TCP_BYTES: usize = 1 << 20;
const UDP_ECHOES: u32 = 200;
/// How long an echo may take before it is sent again: two hops of user networking, one
/// through an L1 under TCG, take tens of ms per round trip (the tap cases wait 300 ms).
const UDP_WAIT: Duration = Duration::from_secs(2);

/// Why the case did not pass.
#[derive(Debug)]
pub(crate) enum Failure {
    /// It ran and failed, for this reason.
    Failed(String),
    /// The host lacks the means for nested KVM (`nested::NotRun`): neither passed nor failed.
    NotRun(String),
}

impl From<String> for Failure {
    fn from(why: String) -> Failure {
        Failure::Failed(why)
    }
}

/// Runs the case; `Ok` with what was measured.
pub(crate) fn run(
    ws: &Workspace,
    all_apps: &[App],
    board: &'static Board,
    machine: &'static str,
    opts: &Options,
) -> Result<String, Failure> {
    let app = apps::find(all_apps, "appliance").map_err(|e| e.to_string())?;
    setup::ensure_toolchain(ws, board).map_err(|e| format!("setup failed: {e}"))?;
    let image = image::build(ws, board, app).map_err(|e| format!("build failed: {e}"))?;
    let forward = free_ports()?;
    let append = format!(
        "{TEST_CMDLINE} rhea.net.ip=10.0.2.15/24 rhea.net.gw=10.0.2.2 appliance.allow_quit=1"
    );
    let boot = nested::Boot {
        spec: qemu::Spec {
            board,
            machine,
            accel: Accel::Kvm,
            smp: opts.smp,
            mem: &opts.mem,
            kernel: &image.boot,
            serial: qemu::Serial::Captured,
            append: &append,
        },
        timeout: L2_TIMEOUT,
        stdin: None,
        forward: Some(forward),
    };
    let console = nested::live_console(board, machine, 0).map_err(|e| e.to_string())?;
    let stop = Arc::new(AtomicBool::new(false));
    let steal_expected = super::steal_reported(board.name, board.arch(), Accel::Kvm);
    let checker = {
        let stop = stop.clone();
        std::thread::spawn(move || check(&console, forward, steal_expected, &stop))
    };
    let outcome = nested::run(board, std::slice::from_ref(&boot), opts.verbose);
    stop.store(true, Ordering::Relaxed);
    let checked = checker
        .join()
        .map_err(|_| "the host's checks panicked".to_string())?;
    let outcome = outcome.map_err(|nested::NotRun(why)| Failure::NotRun(why))?;
    let captured = match outcome.boots.into_iter().next() {
        Some(Ok(c)) => c,
        Some(Err(why)) => return Err(why.into()),
        None => return Err("the L1 ran no boot".to_string().into()),
    };
    let figures = checked?;
    let served = ["appliance: served".to_string()];
    judge(
        Expect::Success,
        &qemu::classify(&captured.end),
        &captured.console(),
        &served,
    )?;
    Ok(figures)
}

/// Two ports free on the host's loopback: one for HTTP (TCP), one for the echo (TCP and UDP).
fn free_ports() -> Result<nested::Forward, String> {
    for _ in 0..20 {
        let http = TcpListener::bind((LOOPBACK, 0)).map_err(|e| e.to_string())?;
        let echo = TcpListener::bind((LOOPBACK, 0)).map_err(|e| e.to_string())?;
        let (h, e) = (
            http.local_addr().map_err(|e| e.to_string())?.port(),
            echo.local_addr().map_err(|e| e.to_string())?.port(),
        );
        if UdpSocket::bind((LOOPBACK, e)).is_ok() {
            return Ok(nested::Forward { http: h, echo: e });
        }
    }
    Err("no free pair of loopback ports".to_string())
}

/// Waits for the appliance to be ready (its console in the L1's copy), then talks to it; gives
/// up when `stop` is set (the L1 ended) or after [`READY_WITHIN`].
fn check(
    console: &std::path::Path,
    f: nested::Forward,
    steal_expected: bool,
    stop: &AtomicBool,
) -> Result<String, String> {
    let start = Instant::now();
    let since = std::time::SystemTime::now();
    loop {
        // Only this run's copy: an earlier run's may still be there until the L1 starts.
        let fresh = std::fs::metadata(console)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t >= since);
        let text = if fresh {
            std::fs::read_to_string(console).unwrap_or_default()
        } else {
            String::new()
        };
        if text.contains("appliance: ready") {
            break;
        }
        if stop.load(Ordering::Relaxed) {
            return Err("the L1 ended before the appliance said it was ready".to_string());
        }
        if start.elapsed() > READY_WITHIN {
            return Err(format!(
                "the appliance was not ready within {} s",
                READY_WITHIN.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let talk = || -> Result<String, String> {
        let (code, page) = get_at(LOOPBACK, f.http, "/")?;
        if code != 200 || !page.contains("Rhea appliance") {
            return Err(format!("GET / answered {code} without the page"));
        }
        let (code, json) = get_at(LOOPBACK, f.http, "/status.json")?;
        if code != 200 || !json.contains("\"threads\":[") {
            return Err(format!("/status.json answered {code}: {json}"));
        }
        let steal_number = json
            .split("\"stolen_ms\":")
            .nth(1)
            .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()));
        if steal_number != steal_expected {
            return Err(format!(
                "/status.json's stolen_ms is {} where the hypervisor {} steal time: {json}",
                if steal_number {
                    "a number"
                } else {
                    "not a number"
                },
                if steal_expected { "keeps" } else { "keeps no" }
            ));
        }
        let t = Instant::now();
        let (echoes, retries) =
            udp_echoes_at(SocketAddrV4::new(LOOPBACK, f.echo), UDP_ECHOES, UDP_WAIT)?;
        let udp_secs = t.elapsed().as_secs_f64();
        let (mbps, _) = tcp_echo_at(SocketAddrV4::new(LOOPBACK, f.echo), TCP_BYTES)?;
        match get_at(LOOPBACK, f.http, "/quit")? {
            (200, _) => {}
            (code, _) => return Err(format!("/quit answered {code}")),
        }
        Ok(format!(
            "http / and /status.json 200; {echoes} udp echoes in {udp_secs:.1} s ({retries} \
             resent); tcp 1 MiB echoed intact ({mbps:.2} MB/s); /quit"
        ))
    };
    let result = talk();
    if result.is_err() {
        // Let the L1 end rather than wait for the L2's timeout: ask the appliance to quit.
        let _ = get_at(LOOPBACK, f.http, "/quit");
    }
    result
}
