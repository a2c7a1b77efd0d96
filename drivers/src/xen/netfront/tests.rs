//! The front end against a simulated netback on the same pages, resolving grants through the
//! test host's grant table.

use super::*;
use crate::bus::{Bus, Msi, Outcome, bind_all};
use crate::xen::grant::{GTF_PERMIT_ACCESS, GTF_READONLY, GTF_WRITING};
use crate::xen::ring::BackRing;
use crate::xen::testhost::{SimStore, TestHost};
use crate::xen::xenbus::{XenbusBus, read_device};
use std::collections::VecDeque;
use std::sync::Mutex;
use std::vec;

const BE: &str = "/local/domain/0/backend/vif/1/0";
const FE: &str = "/local/domain/1/device/vif/0";
const MAC: [u8; 6] = [0x00, 0x16, 0x3e, 0x12, 0x34, 0x56];

/// What the simulated back end does with the handshake.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Script {
    /// InitWait, then Connected once the front end is Connected (Linux's netback ignores a
    /// front end's Initialised and connects on its Connected).
    Normal,
    /// Reaches InitWait and stays there.
    StuckInInitWait,
    /// Goes Closed instead of Connected.
    Closes,
}

struct Netback {
    host: Arc<TestHost>,
    script: Script,
    tx: Option<BackRing<TxRequest, TxResponse>>,
    rx: Option<BackRing<RxRequest, RxResponse>>,
    /// Frames to deliver to the guest.
    to_guest: VecDeque<Vec<u8>>,
    /// Frames the guest sent.
    from_guest: Vec<Vec<u8>>,
    /// Do not process TX requests.
    tx_paused: bool,
    /// Notifications the back end's pushes asked for.
    notified: usize,
}

impl Netback {
    fn new(host: &Arc<TestHost>, script: Script) -> Arc<Mutex<Netback>> {
        let nb = Arc::new(Mutex::new(Netback {
            host: host.clone(),
            script,
            tx: None,
            rx: None,
            to_guest: VecDeque::new(),
            from_guest: Vec::new(),
            tx_paused: false,
            notified: 0,
        }));
        let hooked = nb.clone();
        host.add_hook(move |_| hooked.lock().unwrap().step());
        nb
    }

    fn store(&self) -> std::sync::MutexGuard<'_, SimStore> {
        self.host.store.lock().unwrap()
    }

    /// The page behind a grant, as Xen would resolve it for domain 0.
    fn map(&self, gref: u32, write: bool) -> SharedMem {
        let e = self.host.grant_table().entry(GrantRef(gref)).unwrap();
        assert!(
            e.flags & GTF_PERMIT_ACCESS != 0,
            "grant {gref} not permitted: {e:?}"
        );
        assert_eq!(e.domid, 0, "grant {gref} is for another domain");
        assert!(
            !write || e.flags & GTF_READONLY == 0,
            "grant {gref} is read-only"
        );
        self.host
            .lookup(e.frame as u64)
            .expect("granted frame is not a page of ours")
    }

    fn step(&mut self) {
        let be_state = self.store().get(&format!("{BE}/state"));
        let fe_state = self.store().get(&format!("{FE}/state"));
        match be_state.as_deref() {
            None | Some("1") => self.store().set(&format!("{BE}/state"), "2"),
            Some("2")
                if self.script != Script::StuckInInitWait && fe_state.as_deref() == Some("4") =>
            {
                if self.script == Script::Closes {
                    self.store().set(&format!("{BE}/state"), "6");
                    return;
                }
                let key = |k: &str| self.store().get(&format!("{FE}/{k}")).unwrap();
                assert_eq!(key("request-rx-copy"), "1");
                let tx = self.map(key("tx-ring-ref").parse().unwrap(), true);
                let rx = self.map(key("rx-ring-ref").parse().unwrap(), true);
                self.tx = Some(BackRing::attach(tx).unwrap());
                self.rx = Some(BackRing::attach(rx).unwrap());
                self.store().set(&format!("{BE}/state"), "4");
            }
            _ => {}
        }
        self.work();
    }

    /// Moves frames both ways.
    fn work(&mut self) {
        if self.tx.is_none() {
            return;
        }
        if !self.tx_paused {
            while let Some(req) = self.tx.as_mut().unwrap().take_request().unwrap() {
                let page = self.map(req.gref, false);
                let mut frame = vec![0; req.size as usize];
                page.read_bytes(req.offset as usize, &mut frame).unwrap();
                self.from_guest.push(frame);
                let rsp = TxResponse {
                    id: req.id,
                    status: status::OKAY,
                };
                self.tx.as_mut().unwrap().put_response(&rsp).unwrap();
            }
            if self.tx.as_mut().unwrap().push_responses().unwrap() {
                self.notified += 1;
            }
        }
        while !self.to_guest.is_empty() {
            let Some(req) = self.rx.as_mut().unwrap().take_request().unwrap() else {
                break;
            };
            let frame = self.to_guest.pop_front().unwrap();
            let page = self.map(req.gref, true);
            page.write_bytes(2, &frame).unwrap();
            let rsp = RxResponse {
                id: req.id,
                offset: 2,
                flags: rx_flags::DATA_VALIDATED,
                status: frame.len() as i16,
            };
            self.rx.as_mut().unwrap().put_response(&rsp).unwrap();
        }
        if self.rx.as_mut().unwrap().push_responses().unwrap() {
            self.notified += 1;
        }
    }

    /// Answers the next posted RX buffer with `rsp` (its id replaced by `id` if given).
    fn raw_rx(&mut self, mut rsp: RxResponse, id: Option<u16>) {
        let rx = self.rx.as_mut().unwrap();
        let req = rx.take_request().unwrap().expect("a posted buffer");
        rsp.id = id.unwrap_or(req.id);
        rx.put_response(&rsp).unwrap();
        rx.push_responses().unwrap();
    }
}

fn add_vif(host: &TestHost) {
    let mut s = host.store.lock().unwrap();
    s.set("device/vif/0/backend", BE);
    s.set("device/vif/0/backend-id", "0");
    s.set("device/vif/0/mac", "00:16:3e:12:34:56");
    s.set("device/vif/0/state", "1");
    s.set(&format!("{BE}/state"), "1");
}

fn small() -> NetfrontConfig {
    NetfrontConfig {
        rx_buffers: 8,
        tx_buffers: 4,
        connect_timeout_ns: 200_000_000,
    }
}

fn setup(
    script: Script,
    config: NetfrontConfig,
) -> (
    Arc<TestHost>,
    Arc<Mutex<Netback>>,
    Result<Netfront, XenError>,
) {
    let host = TestHost::new();
    add_vif(&host);
    let nb = Netback::new(&host, script);
    let xs = host.xenstore();
    let dev = read_device(&xs, "vif", 0).unwrap();
    let h: Arc<dyn XenHost> = host.clone();
    let nf = Netfront::connect(h, &xs, &dev, config);
    (host, nb, nf)
}

fn frame(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed))
        .collect()
}

struct NoCtx;
impl BindContext for NoCtx {
    fn map_mmio(&self, _: u64, _: u64) -> Option<u64> {
        None
    }
    fn alloc_msi(&self) -> Option<Msi> {
        None
    }
}

#[test]
fn binds_through_the_bus_and_exchanges_frames_both_ways() {
    let host = TestHost::new();
    add_vif(&host);
    let nb = Netback::new(&host, Script::Normal);
    let xs = host.xenstore();
    let h: Arc<dyn XenHost> = host.clone();
    let driver = XenNetDriver::new(h, xs.clone(), NetfrontConfig::default());
    let bus: Box<dyn Bus> = Box::new(XenbusBus::new(xs.clone()));
    let (mut bound, log) = bind_all(&mut [bus], &[&driver], &NoCtx);
    assert!(
        matches!(
            &log[0],
            Outcome::Bound {
                driver: "xen-netfront",
                ..
            }
        ),
        "{log:?}"
    );
    let Some(Bound::Net(mut dev, irq)) = bound.pop() else {
        panic!("netfront bound something else");
    };
    // The handshake's keys and states.
    let key = |k: &str| {
        host.store
            .lock()
            .unwrap()
            .get(&format!("{FE}/{k}"))
            .unwrap()
    };
    let port: u32 = key("event-channel").parse().unwrap();
    assert_eq!(irq, DeviceIrq::Line(IrqLine(port), Trigger::Edge));
    for (k, v) in [
        ("request-rx-copy", "1"),
        ("feature-rx-notify", "1"),
        ("feature-sg", "0"),
        ("feature-gso-tcpv4", "0"),
        ("feature-no-csum-offload", "1"),
        ("state", "4"),
    ] {
        assert_eq!(key(k), v, "{k}");
    }
    assert_eq!(
        host.store
            .lock()
            .unwrap()
            .get(&format!("{BE}/state"))
            .as_deref(),
        Some("4")
    );
    assert!(host.sent_to(port) >= 1, "the back end was kicked");
    assert_eq!(dev.mac(), MAC);
    assert_eq!(dev.name(), "xen-netfront device/vif/0");

    // Guest → back end.
    for i in 0..100u8 {
        dev.transmit(&frame(60 + i as usize * 10, i)).unwrap();
        nb.lock().unwrap().work();
        dev.handle_interrupt();
    }
    let sent = nb.lock().unwrap().from_guest.clone();
    assert_eq!(sent.len(), 100);
    for (i, f) in sent.iter().enumerate() {
        assert_eq!(*f, frame(60 + i * 10, i as u8));
    }
    // Back end → guest: more frames than buffers, so buffers are posted again.
    let mut buf = [0u8; MAX_FRAME];
    for round in 0..5u8 {
        for i in 0..50u8 {
            nb.lock()
                .unwrap()
                .to_guest
                .push_back(frame(14 + i as usize * 30, round ^ i));
        }
        nb.lock().unwrap().work();
        let mut got = 0;
        loop {
            while let Some(n) = dev.receive(&mut buf).unwrap() {
                assert_eq!(&buf[..n], &frame(14 + got * 30, round ^ got as u8)[..]);
                got += 1;
            }
            if !dev.rearm() {
                nb.lock().unwrap().work();
                if !dev.rearm() {
                    break;
                }
            }
        }
        assert_eq!(got, 50);
    }
    let st = dev.stats();
    assert_eq!((st.rx_frames, st.tx_frames, st.rx_dropped), (250, 100, 0));
    assert_eq!(st.interrupts, 100);
}

#[test]
fn rearm_reports_work_that_raced_with_it_and_asks_for_notifications() {
    let (_host, nb, nf) = setup(Script::Normal, small());
    let mut nf = nf.unwrap();
    let mut buf = [0u8; MAX_FRAME];
    assert_eq!(nf.receive(&mut buf).unwrap(), None);
    assert!(!nf.rearm(), "nothing pending");
    // Re-armed: the back end's next response asks for a notification.
    let before = nb.lock().unwrap().notified;
    nb.lock().unwrap().to_guest.push_back(frame(64, 1));
    nb.lock().unwrap().work();
    assert_eq!(nb.lock().unwrap().notified, before + 1);
    // A frame that arrives before rearm is reported by it.
    assert!(nf.rearm());
    assert_eq!(nf.receive(&mut buf).unwrap(), Some(64));
    assert!(!nf.rearm());
}

#[test]
fn a_full_transmit_pool_or_ring_is_busy_until_responses_come() {
    for tx_buffers in [4, 256] {
        let (host, nb, nf) = setup(
            Script::Normal,
            NetfrontConfig {
                tx_buffers,
                ..small()
            },
        );
        let mut nf = nf.unwrap();
        nb.lock().unwrap().tx_paused = true;
        for i in 0..tx_buffers {
            nf.transmit(&frame(100, i as u8)).unwrap();
        }
        assert_eq!(nf.transmit(&frame(100, 0)), Err(NetError::Busy));
        assert_eq!(nf.tx_free(), 0);
        // Notifications were suppressed after the first: the back end had not re-armed.
        let port = nf.port();
        assert!(host.sent_to(port) < tx_buffers.min(10) + 2);
        nb.lock().unwrap().tx_paused = false;
        nb.lock().unwrap().work();
        nf.handle_interrupt();
        assert_eq!(nf.tx_free(), tx_buffers);
        nf.transmit(&frame(100, 9)).unwrap();
        assert_eq!(nb.lock().unwrap().from_guest.len(), tx_buffers);
        assert_eq!(nf.stats().tx_frames, tx_buffers as u64 + 1);
    }
}

#[test]
fn oversized_and_runt_frames() {
    let (_host, nb, nf) = setup(Script::Normal, small());
    let mut nf = nf.unwrap();
    assert_eq!(
        nf.transmit(&frame(MAX_FRAME + 1, 0)),
        Err(NetError::TooLarge)
    );
    assert_eq!(nf.xen_stats().tx_too_large, 1);
    assert!(matches!(
        nf.transmit(&frame(13, 0)),
        Err(NetError::Device(_))
    ));
    nf.transmit(&frame(MAX_FRAME, 0)).unwrap();
    // A frame longer than the caller's buffer is dropped and counted; the next one passes.
    nb.lock().unwrap().to_guest.push_back(frame(1000, 1));
    nb.lock().unwrap().to_guest.push_back(frame(100, 2));
    nb.lock().unwrap().work();
    let mut small_buf = [0u8; 500];
    assert_eq!(nf.receive(&mut small_buf).unwrap(), Some(100));
    assert_eq!(&small_buf[..100], &frame(100, 2)[..]);
    assert_eq!(nf.xen_stats().rx_too_large, 1);
    assert_eq!(nf.stats().rx_dropped, 1);
    // Longer than MAX_FRAME, in a buffer that would hold it.
    nb.lock().unwrap().to_guest.push_back(frame(2000, 3));
    nb.lock().unwrap().work();
    let mut big = [0u8; 4096];
    assert_eq!(nf.receive(&mut big).unwrap(), None);
    assert_eq!(nf.xen_stats().rx_too_large, 2);
}

#[test]
fn corrupt_responses_are_counted_never_followed() {
    let (_host, nb, nf) = setup(Script::Normal, small());
    let mut nf = nf.unwrap();
    let mut buf = [0u8; MAX_FRAME];
    let ok = |status| RxResponse {
        id: 0,
        offset: 0,
        flags: 0,
        status,
    };
    {
        let mut b = nb.lock().unwrap();
        b.raw_rx(ok(60), Some(200)); // id out of range
        b.raw_rx(ok(-1), None); // error status
        b.raw_rx(
            RxResponse {
                offset: 4000,
                ..ok(200)
            },
            None,
        ); // leaves the page
        b.raw_rx(
            RxResponse {
                flags: rx_flags::MORE_DATA,
                ..ok(60)
            },
            None,
        ); // scatter-gather we refused...
        b.raw_rx(ok(60), None); // ... and its continuation
        b.raw_rx(ok(60), None); // a good one at last
    }
    assert_eq!(nf.receive(&mut buf).unwrap(), Some(60));
    let x = nf.xen_stats();
    assert_eq!((x.rx_bad_responses, x.rx_errors), (4, 1));
    assert_eq!(nf.stats().rx_dropped, 5);
    // TX: a response for an id never sent is ignored; a failed one frees its buffer.
    nb.lock().unwrap().tx_paused = true;
    nf.transmit(&frame(60, 0)).unwrap();
    {
        let mut b = nb.lock().unwrap();
        let tx = b.tx.as_mut().unwrap();
        let req = tx.take_request().unwrap().unwrap();
        tx.put_response(&TxResponse {
            id: req.id + 1,
            status: status::OKAY,
        })
        .unwrap();
        tx.push_responses().unwrap();
    }
    nf.handle_interrupt();
    assert_eq!(nf.xen_stats().tx_bad_responses, 1);
    assert_eq!(nf.tx_free(), 3);
    nf.transmit(&frame(60, 0)).unwrap();
    {
        let mut b = nb.lock().unwrap();
        let tx = b.tx.as_mut().unwrap();
        let req = tx.take_request().unwrap().unwrap();
        tx.put_response(&TxResponse {
            id: req.id,
            status: status::DROPPED,
        })
        .unwrap();
        tx.push_responses().unwrap();
    }
    nf.handle_interrupt();
    assert_eq!(nf.xen_stats().tx_errors, 1);
    assert_eq!(nf.tx_free(), 3);
}

#[test]
fn a_back_end_overrunning_a_ring_breaks_the_device() {
    let (_host, nb, nf) = setup(Script::Normal, small());
    let mut nf = nf.unwrap();
    let page = nb.lock().unwrap().rx.as_ref().unwrap().memory().clone();
    // 100 responses claimed for 8 posted buffers.
    page.write_u32(8, 100).unwrap();
    let mut buf = [0u8; MAX_FRAME];
    assert!(matches!(nf.receive(&mut buf), Err(NetError::Device(m)) if m.contains("RX ring")));
    assert!(nf.receive(&mut buf).is_err());
    assert!(nf.transmit(&frame(60, 0)).is_err());
    assert!(!nf.rearm());
}

#[test]
fn grant_exhaustion_fails_cleanly() {
    let host = TestHost::new();
    add_vif(&host);
    let _nb = Netback::new(&host, Script::Normal);
    // Leave 10 grants: the rings take 2, 8 RX buffers the rest, the TX pool finds none.
    let mut hogs = vec![];
    while host.grant_table().capacity() - host.grant_table().in_use() > 10 {
        hogs.push(host.grant_table().grant(5, 1, true).unwrap());
    }
    let xs = host.xenstore();
    let dev = read_device(&xs, "vif", 0).unwrap();
    let h: Arc<dyn XenHost> = host.clone();
    let e = Netfront::connect(h, &xs, &dev, small()).unwrap_err();
    assert!(
        matches!(e, XenError::GrantsExhausted { capacity: 504 }),
        "{e:?}"
    );
    // Everything given back.
    assert_eq!(host.grant_table().in_use(), hogs.len());
    assert_eq!(host.pages_allocated(), 0);
    assert_eq!(host.closed.lock().unwrap().len(), 1);
}

#[test]
fn a_back_end_that_never_connects_times_out() {
    let (host, _nb, nf) = setup(Script::StuckInInitWait, small());
    let e = nf.unwrap_err();
    let XenError::Timeout(m) = &e else {
        panic!("{e:?}")
    };
    assert!(
        m.contains("device/vif/0") && m.contains("InitWait (2)") && m.contains("Connected"),
        "{m}"
    );
    assert_eq!(host.grant_table().in_use(), 0);
    assert_eq!(host.pages_allocated(), 0);
    assert_eq!(
        host.store
            .lock()
            .unwrap()
            .get(&format!("{FE}/state"))
            .as_deref(),
        Some("6")
    );
}

#[test]
fn a_back_end_that_closes_fails_fast() {
    let (host, _nb, nf) = setup(Script::Closes, small());
    let e = nf.unwrap_err();
    assert!(
        matches!(&e, XenError::Handshake(m) if m.contains("Closed (6)")),
        "{e:?}"
    );
    assert!(host.now_ns() < 50_000_000);
    assert_eq!(host.closed.lock().unwrap().len(), 1);
}

#[test]
fn setup_refusals() {
    // A bad MAC.
    let host = TestHost::new();
    add_vif(&host);
    host.store
        .lock()
        .unwrap()
        .set("device/vif/0/mac", "01:16:3e:12:34:56");
    let xs = host.xenstore();
    let dev = read_device(&xs, "vif", 0).unwrap();
    let h: Arc<dyn XenHost> = host.clone();
    let e = Netfront::connect(h.clone(), &xs, &dev, small()).unwrap_err();
    assert!(
        matches!(&e, XenError::Protocol(m) if m.contains("mac")),
        "{e:?}"
    );
    // Bad sizes.
    let bad = NetfrontConfig {
        rx_buffers: 257,
        ..small()
    };
    assert!(matches!(
        Netfront::connect(h.clone(), &xs, &dev, bad),
        Err(XenError::Invalid(_))
    ));
    // No event channel.
    host.store
        .lock()
        .unwrap()
        .set("device/vif/0/mac", "00:16:3e:12:34:56");
    let _nb = Netback::new(&host, Script::Normal);
    host.evtchn_fails
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let e = Netfront::connect(h.clone(), &xs, &dev, small()).unwrap_err();
    assert!(matches!(e, XenError::Hypercall { .. }), "{e:?}");
    assert_eq!(host.grant_table().in_use(), 0);
    // No memory.
    host.evtchn_fails
        .store(false, std::sync::atomic::Ordering::Relaxed);
    *host.page_budget.lock().unwrap() = Some(5);
    let e = Netfront::connect(h, &xs, &dev, small()).unwrap_err();
    assert_eq!(e, XenError::NoMemory("RX buffers"));
    assert_eq!(host.pages_allocated(), 0);
}

#[test]
fn macs_parse_strictly() {
    assert_eq!(parse_mac("00:16:3e:12:34:56"), Some(MAC));
    assert_eq!(
        parse_mac("00:16:3E:12:34:5f"),
        Some([0, 0x16, 0x3e, 0x12, 0x34, 0x5f])
    );
    for bad in [
        "",
        "00:16:3e:12:34",
        "00:16:3e:12:34:56:78",
        "0:16:3e:12:34:56",
        "00-16-3e-12-34-56",
        "00:16:3e:12:34:5g",
        "ff:ff:ff:ff:ff:ff",
        "00:00:00:00:00:00",
        "+0:16:3e:12:34:56",
    ] {
        assert_eq!(parse_mac(bad), None, "{bad}");
    }
}

#[test]
fn dropping_the_device_returns_what_it_can_and_leaks_what_is_mapped() {
    let (host, nb, nf) = setup(Script::Normal, small());
    let nf = nf.unwrap();
    let pages_before = host.pages_allocated();
    assert_eq!(pages_before, 2 + 8 + 4);
    // The back end still has the RX ring page mapped.
    let rx_ref: u32 = host
        .store
        .lock()
        .unwrap()
        .get(&format!("{FE}/rx-ring-ref"))
        .unwrap()
        .parse()
        .unwrap();
    let at = rx_ref as usize * 8;
    host.grant_table()
        .memory()
        .write_u16(at, GTF_PERMIT_ACCESS | GTF_WRITING)
        .unwrap();
    let port = nf.port();
    drop(nf);
    drop(nb);
    assert_eq!(host.closed.lock().unwrap().as_slice(), &[port]);
    assert_eq!(
        host.grant_table().in_use(),
        1,
        "only the mapped grant remains"
    );
    assert_eq!(host.pages_allocated(), 1, "its page is not returned");
}
