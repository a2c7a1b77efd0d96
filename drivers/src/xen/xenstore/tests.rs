//! The xenstore client against the simulated xenstored, well-behaved and not.

use super::*;
use crate::xen::XenHost;
use crate::xen::testhost::{SimStore, TestHost};
use std::string::ToString;
use std::vec;

fn setup() -> (Arc<TestHost>, Arc<XenStore>) {
    let host = TestHost::new();
    let xs = host.xenstore();
    (host, xs)
}

fn store_errno(r: Result<impl core::fmt::Debug, XenError>) -> XsErrno {
    match r {
        Err(XenError::Store { errno, .. }) => errno,
        other => panic!("expected a store error, got {other:?}"),
    }
}

#[test]
fn read_write_directory_mkdir_rm() {
    let (host, xs) = setup();
    xs.write(Tx::NONE, "data/greeting", "hello").unwrap();
    assert_eq!(
        host.store
            .lock()
            .unwrap()
            .get("/local/domain/1/data/greeting")
            .as_deref(),
        Some("hello")
    );
    assert_eq!(xs.read(Tx::NONE, "data/greeting").unwrap(), "hello");
    assert_eq!(
        xs.read(Tx::NONE, "/local/domain/1/data/greeting").unwrap(),
        "hello"
    );
    xs.write(Tx::NONE, "data/empty", "").unwrap();
    assert_eq!(xs.read(Tx::NONE, "data/empty").unwrap(), "");
    xs.mkdir(Tx::NONE, "data/dir").unwrap();
    assert_eq!(
        xs.directory(Tx::NONE, "data").unwrap(),
        vec!["dir", "empty", "greeting"]
    );
    assert_eq!(
        xs.directory(Tx::NONE, "data/dir").unwrap(),
        Vec::<String>::new()
    );
    xs.rm(Tx::NONE, "data").unwrap();
    assert_eq!(
        store_errno(xs.read(Tx::NONE, "data/greeting")),
        XsErrno::Enoent
    );
    assert_eq!(xs.read_opt(Tx::NONE, "data/greeting").unwrap(), None);
    assert_eq!(store_errno(xs.directory(Tx::NONE, "data")), XsErrno::Enoent);
    assert_eq!(store_errno(xs.rm(Tx::NONE, "data")), XsErrno::Enoent);
    assert_eq!(xs.get_domain_path(7).unwrap(), "/local/domain/7");
}

#[test]
fn errors_are_named_with_operation_and_path() {
    let (host, xs) = setup();
    host.store
        .lock()
        .unwrap()
        .readonly
        .push("/local/domain/0".into());
    let e = xs.write(Tx::NONE, "/local/domain/0/x", "1").unwrap_err();
    assert_eq!(
        e,
        XenError::Store {
            op: "write",
            path: "/local/domain/0/x".into(),
            errno: XsErrno::Eacces
        }
    );
    assert_eq!(
        e.to_string(),
        "xenstore write \"/local/domain/0/x\": EACCES"
    );
    assert_eq!(store_errno(xs.read(Tx::NONE, "bad//path")), XsErrno::Einval);
    // Refused before sending.
    assert!(matches!(xs.read(Tx::NONE, ""), Err(XenError::Invalid(_))));
    assert!(matches!(
        xs.read(Tx::NONE, "a\0b"),
        Err(XenError::Invalid(_))
    ));
    let huge = "x".repeat(PAYLOAD_MAX);
    assert!(matches!(
        xs.write(Tx::NONE, "data/big", &huge),
        Err(XenError::Invalid(_))
    ));
    assert_eq!(
        XsErrno::from_name("EWHATEVER"),
        XsErrno::Other("EWHATEVER".into())
    );
    assert_eq!(XsErrno::from_name("EAGAIN").name(), "EAGAIN");
}

#[test]
fn messages_larger_than_the_rings_go_in_pieces() {
    let (host, xs) = setup();
    let value: String = (0..4000).map(|i| (b'a' + (i % 26) as u8) as char).collect();
    // Replies come 64 bytes per xenstored step (the 4000-byte one in 63 steps).
    host.store.lock().unwrap().chunk = 64;
    xs.write(Tx::NONE, "data/big", &value).unwrap();
    assert_eq!(xs.read(Tx::NONE, "data/big").unwrap(), value);
    // Many round trips: the free-running indices keep going.
    for i in 0..50 {
        xs.write(Tx::NONE, "data/n", &i.to_string()).unwrap();
    }
    assert_eq!(xs.read(Tx::NONE, "data/n").unwrap(), "49");
}

#[test]
fn watches_queue_events() {
    let (host, xs) = setup();
    xs.write(Tx::NONE, "device/vif/0/state", "1").unwrap();
    xs.watch("device/vif/0", "tok").unwrap();
    // xenstored fires a new watch once.
    xs.read(Tx::NONE, "device/vif/0/state").unwrap();
    assert_eq!(
        xs.take_watch_event(),
        Some(WatchEvent {
            path: "device/vif/0".into(),
            token: "tok".into()
        })
    );
    assert_eq!(xs.take_watch_event(), None);
    // Another domain changes a node below: the event arrives while we do something else.
    host.store.lock().unwrap().set("device/vif/0/state", "4");
    host.step_store();
    xs.read(Tx::NONE, "device/vif/0/state").unwrap();
    assert_eq!(xs.take_watch_event().unwrap().path, "device/vif/0/state");
    // Or is polled for.
    host.store.lock().unwrap().set("device/vif/0/x", "1");
    host.step_store();
    assert_eq!(xs.poll_watch_events().unwrap(), 1);
    assert_eq!(xs.take_watch_event().unwrap().path, "device/vif/0/x");
    // Unrelated paths do not fire.
    host.store.lock().unwrap().set("device/vif/1/x", "1");
    host.step_store();
    assert_eq!(xs.poll_watch_events().unwrap(), 0);
    xs.unwatch("device/vif/0", "tok").unwrap();
    host.store.lock().unwrap().set("device/vif/0/x", "2");
    host.step_store();
    assert_eq!(xs.poll_watch_events().unwrap(), 0);
    assert_eq!(
        store_errno(xs.unwatch("device/vif/0", "tok")),
        XsErrno::Enoent
    );
}

#[test]
fn transactions_commit_abort_and_retry_on_eagain() {
    let (host, xs) = setup();
    let tx = xs.transaction_start().unwrap();
    xs.write(tx, "data/a", "1").unwrap();
    assert_eq!(xs.read(tx, "data/a").unwrap(), "1");
    assert_eq!(
        xs.read_opt(Tx::NONE, "data/a").unwrap(),
        None,
        "not visible before commit"
    );
    xs.transaction_end(tx, true).unwrap();
    assert_eq!(xs.read(Tx::NONE, "data/a").unwrap(), "1");

    let tx = xs.transaction_start().unwrap();
    xs.write(tx, "data/a", "2").unwrap();
    xs.transaction_end(tx, false).unwrap();
    assert_eq!(xs.read(Tx::NONE, "data/a").unwrap(), "1");

    // A conflicting change makes the commit fail with EAGAIN.
    let tx = xs.transaction_start().unwrap();
    xs.write(tx, "data/a", "3").unwrap();
    host.store.lock().unwrap().set("data/other", "x");
    assert_eq!(store_errno(xs.transaction_end(tx, true)), XsErrno::Eagain);
    assert_eq!(xs.read(Tx::NONE, "data/a").unwrap(), "1");

    // The helper runs the body again.
    host.store.lock().unwrap().force_eagain = 2;
    let mut runs = 0;
    let v = xs
        .transaction(5, |tx| {
            runs += 1;
            xs.write(tx, "data/a", "4")?;
            Ok(runs)
        })
        .unwrap();
    assert_eq!((v, runs), (3, 3));
    assert_eq!(xs.read(Tx::NONE, "data/a").unwrap(), "4");
    // ... but not forever.
    host.store.lock().unwrap().force_eagain = 10;
    let r = xs.transaction(3, |tx| xs.write(tx, "data/a", "5"));
    assert_eq!(store_errno(r), XsErrno::Eagain);
    host.store.lock().unwrap().force_eagain = 0;
    // A failing body aborts and returns its error.
    let r: Result<(), _> = xs.transaction(3, |tx| {
        xs.write(tx, "data/a", "6")?;
        xs.read(tx, "data/missing").map(drop)
    });
    assert_eq!(store_errno(r), XsErrno::Enoent);
    assert_eq!(xs.read(Tx::NONE, "data/a").unwrap(), "4");
}

#[test]
fn a_silent_xenstored_is_a_timeout_naming_the_operation() {
    let (host, xs) = setup();
    host.store.lock().unwrap().silent = true;
    let e = xs.read(Tx::NONE, "device/vif/0/mac").unwrap_err();
    let XenError::Timeout(msg) = &e else {
        panic!("{e:?}")
    };
    assert!(
        msg.contains("read") && msg.contains("device/vif/0/mac") && msg.contains("no reply"),
        "{msg}"
    );
    assert!(host.now_ns() >= 100_000_000);
    // The late reply of the abandoned request is dropped; the next request works.
    host.store.lock().unwrap().silent = false;
    host.store.lock().unwrap().send(msg::READ, 1, 0, b"late");
    xs.write(Tx::NONE, "data/x", "y").unwrap();
    assert_eq!(xs.read(Tx::NONE, "data/x").unwrap(), "y");

    host.store.lock().unwrap().frozen = true;
    let big = "z".repeat(3000);
    let e = xs.write(Tx::NONE, "data/big", &big).unwrap_err();
    assert!(
        matches!(&e, XenError::Timeout(m) if m.contains("not consuming")),
        "{e:?}"
    );
    // The rest of the request goes out with the next one; its reply is dropped.
    host.store.lock().unwrap().frozen = false;
    assert_eq!(xs.read(Tx::NONE, "data/x").unwrap(), "y");
    assert_eq!(xs.read(Tx::NONE, "data/big").unwrap(), big);
}

/// A client whose xenstored only says what the test scripts.
fn scripted() -> (Arc<TestHost>, Arc<XenStore>) {
    let (host, xs) = setup();
    host.store.lock().unwrap().silent = true;
    (host, xs)
}

fn protocol_error(r: Result<impl core::fmt::Debug, XenError>) -> String {
    match r {
        Err(XenError::Protocol(m)) => m,
        other => panic!("expected a protocol error, got {other:?}"),
    }
}

#[test]
fn a_reply_longer_than_the_payload_limit_breaks_the_connection() {
    let (host, xs) = scripted();
    let h = Header {
        ty: msg::READ,
        req_id: 1,
        tx_id: 0,
        len: 4097,
    };
    host.store.lock().unwrap().out.extend(h.to_bytes());
    let m = protocol_error(xs.read(Tx::NONE, "x"));
    assert!(m.contains("4097"), "{m}");
    let m = protocol_error(xs.read(Tx::NONE, "x"));
    assert!(m.contains("unusable"), "{m}");
    assert!(xs.poll_watch_events().is_err());
}

#[test]
fn unknown_types_unknown_ids_and_wrong_types_are_errors() {
    let (host, xs) = scripted();
    host.store.lock().unwrap().send(20, 1, 0, b"");
    assert!(protocol_error(xs.read(Tx::NONE, "x")).contains("unknown type 20"));
    host.store.lock().unwrap().send(0xffff, 2, 0, b"abc");
    assert!(protocol_error(xs.read(Tx::NONE, "x")).contains("unknown type"));
    host.store.lock().unwrap().send(msg::READ, 77, 0, b"v");
    assert!(protocol_error(xs.read(Tx::NONE, "x")).contains("unknown req_id 77"));
    host.store.lock().unwrap().send(msg::WRITE, 4, 0, b"OK\0");
    assert!(protocol_error(xs.read(Tx::NONE, "x")).contains("type 11"));
    host.store
        .lock()
        .unwrap()
        .send(msg::WATCH_EVENT, 0, 0, b"no-token");
    assert!(protocol_error(xs.read(Tx::NONE, "x")).contains("watch event"));
    // None of these lost the stream: a proper reply still works.
    host.store.lock().unwrap().send(msg::READ, 6, 0, b"fine");
    assert_eq!(xs.read(Tx::NONE, "x").unwrap(), "fine");
    // Malformed payloads.
    host.store
        .lock()
        .unwrap()
        .send(msg::DIRECTORY, 7, 0, b"a\0b");
    assert!(protocol_error(xs.directory(Tx::NONE, "d")).contains("NUL"));
    host.store
        .lock()
        .unwrap()
        .send(msg::DIRECTORY, 8, 0, b"a\0\xff\0");
    assert!(protocol_error(xs.directory(Tx::NONE, "d")).contains("UTF-8"));
    host.store
        .lock()
        .unwrap()
        .send(msg::DIRECTORY, 9, 0, b"a\0\0");
    assert!(protocol_error(xs.directory(Tx::NONE, "d")).contains("empty"));
    host.store.lock().unwrap().send(msg::READ, 10, 0, b"\xc3");
    assert!(protocol_error(xs.read(Tx::NONE, "x")).contains("UTF-8"));
    host.store
        .lock()
        .unwrap()
        .send(msg::TRANSACTION_START, 11, 0, b"abc\0");
    assert!(protocol_error(xs.transaction_start()).contains("transaction id"));
    host.store
        .lock()
        .unwrap()
        .send(msg::ERROR, 12, 0, b"EQUOTA\0");
    assert_eq!(
        store_errno(xs.read(Tx::NONE, "x")),
        XsErrno::Other("EQUOTA".into())
    );
    assert_eq!(parse_directory(b"a\0bc\0").unwrap(), vec!["a", "bc"]);
}

#[test]
fn ring_indices_out_of_range_are_errors() {
    // The reply producer jumps more than the ring ahead.
    let (host, xs) = scripted();
    host.store_page.write_u32(page::RSP_PROD, 2000).unwrap();
    assert!(protocol_error(xs.read(Tx::NONE, "x")).contains("reply producer"));
    // The reply producer moves backwards.
    let (host, xs) = scripted();
    host.store.lock().unwrap().frozen = true;
    host.store_page
        .write_bytes(page::RSP, &[2, 0, 0, 0, 1, 0, 0, 0])
        .unwrap();
    host.store_page.write_u32(page::RSP_PROD, 8).unwrap();
    let e = xs.read(Tx::NONE, "x").unwrap_err();
    assert!(
        matches!(e, XenError::Timeout(_)),
        "half a header then silence: {e:?}"
    );
    host.store_page.write_u32(page::RSP_PROD, 4).unwrap();
    assert!(protocol_error(xs.read(Tx::NONE, "x")).contains("backwards"));
    // The request consumer runs past the producer.
    let (host, xs) = scripted();
    host.store.lock().unwrap().frozen = true;
    host.store_page.write_u32(page::REQ_CONS, 500).unwrap();
    assert!(protocol_error(xs.read(Tx::NONE, "x")).contains("request consumer"));
    // Inconsistent indices at start.
    let host = TestHost::new();
    host.store_page.write_u32(page::RSP_PROD, 5000).unwrap();
    let h: Arc<dyn XenHost> = host.clone();
    assert!(XenStore::new(h.clone(), host.store_page.clone(), 1).is_err());
    assert!(XenStore::new(h, SharedMem::alloc(1).unwrap().sub(0, 2048).unwrap(), 1).is_err());
}

#[test]
fn the_client_picks_up_indices_where_they_are() {
    let host = TestHost::new();
    for off in [
        page::REQ_CONS,
        page::REQ_PROD,
        page::RSP_CONS,
        page::RSP_PROD,
    ] {
        host.store_page.write_u32(off, u32::MAX - 10).unwrap();
    }
    let xs = host.xenstore();
    for i in 0..20 {
        xs.write(Tx::NONE, "data/i", &i.to_string()).unwrap();
    }
    assert_eq!(xs.read(Tx::NONE, "data/i").unwrap(), "19");
    assert!(
        host.store_page.read_u32(page::REQ_PROD).unwrap() < 10_000,
        "wrapped"
    );
}

/// xorshift64*: a deterministic stream for the fuzz test.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn random_and_corrupt_replies_never_hang_or_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut outcomes = [0usize; 3];
    for _ in 0..300 {
        let (host, xs) = scripted();
        {
            let mut s = host.store.lock().unwrap();
            s.chunk = 1 + rng.below(64) as usize;
            for _ in 0..1 + rng.below(3) {
                match rng.below(4) {
                    // Plausible header, random fields.
                    0 => {
                        let ty = [
                            msg::READ,
                            msg::ERROR,
                            msg::WATCH_EVENT,
                            msg::DIRECTORY,
                            rng.below(40) as u32,
                        ][rng.below(5) as usize];
                        let len = rng.below(64) as usize;
                        let payload: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                        s.send(ty, rng.below(3) as u32, 0, &payload);
                    }
                    // Random bytes.
                    1 => {
                        for _ in 0..rng.below(80) {
                            s.out.push_back(rng.next() as u8);
                        }
                    }
                    // A header with a random length.
                    2 => {
                        let h = Header {
                            ty: msg::READ,
                            req_id: 1,
                            tx_id: 0,
                            len: rng.next() as u32,
                        };
                        s.out.extend(h.to_bytes());
                    }
                    // A valid reply.
                    _ => s.send(msg::READ, 1, 0, b"ok"),
                }
            }
        }
        if rng.below(8) == 0 {
            host.store_page
                .write_u32(page::RSP_PROD, rng.next() as u32)
                .unwrap();
        }
        for _ in 0..3 {
            let before = host.now_ns();
            let r = if rng.below(2) == 0 {
                xs.read(Tx::NONE, "x").map(drop)
            } else {
                xs.directory(Tx::NONE, "x").map(drop)
            };
            // Every call ends by the deadline (plus the relax that crossed it).
            assert!(host.now_ns() - before <= 101_000_000);
            outcomes[match r {
                Ok(()) => 0,
                Err(XenError::Timeout(_)) => 1,
                Err(_) => 2,
            }] += 1;
        }
    }
    // The stream exercised every outcome.
    assert!(outcomes.iter().all(|&n| n > 0), "{outcomes:?}");
}

#[test]
fn relative_and_absolute_watch_paths_are_reported_as_given() {
    let (host, xs) = setup();
    xs.watch("/local/domain/1/data", "abs").unwrap();
    xs.watch("data", "rel").unwrap();
    host.store.lock().unwrap().set("data/k", "v");
    host.step_store();
    xs.poll_watch_events().unwrap();
    let mut evs = vec![];
    while let Some(e) = xs.take_watch_event() {
        evs.push((e.path, e.token));
    }
    assert!(
        evs.contains(&("/local/domain/1/data/k".into(), "abs".into())),
        "{evs:?}"
    );
    assert!(evs.contains(&("data/k".into(), "rel".into())), "{evs:?}");
    assert_eq!(SimStore::abs("x"), "/local/domain/1/x");
}

#[test]
fn events_are_taken_per_token_and_unwatch_drops_its_own() {
    let (host, xs) = setup();
    let (a, b) = (xs.unique_token("t-"), xs.unique_token("t-"));
    assert_ne!(a, b);
    xs.watch("data/a", &a).unwrap();
    xs.watch("data/b", &b).unwrap();
    // xenstored refuses the same watch twice.
    assert_eq!(store_errno(xs.watch("data/a", &a)), XsErrno::Eexist);
    {
        let mut s = host.store.lock().unwrap();
        s.set("data/a/x", "1");
        s.set("data/b/x", "1");
        s.set("data/a/y", "1");
    }
    host.step_store();
    assert_eq!(xs.poll_watch_events().unwrap(), 3);
    let ev = |path: &str, token: &str| WatchEvent {
        path: path.into(),
        token: token.into(),
    };
    // The initial events came with the replies; b's stay queued while a's are taken.
    assert_eq!(xs.take_watch_event_for(&a), Some(ev("data/a", &a)));
    assert_eq!(xs.take_watch_event_for(&a), Some(ev("data/a/x", &a)));
    assert_eq!(xs.take_watch_event_for(&a), Some(ev("data/a/y", &a)));
    assert_eq!(xs.take_watch_event_for(&a), None);
    assert_eq!(xs.take_watch_event_for("nobody"), None);
    // Unwatching a drops a's queued events and no others.
    host.store.lock().unwrap().set("data/a/z", "1");
    host.step_store();
    xs.poll_watch_events().unwrap();
    xs.unwatch("data/a", &a).unwrap();
    assert_eq!(xs.take_watch_event_for(&a), None);
    assert_eq!(xs.take_watch_event(), Some(ev("data/b", &b)));
    assert_eq!(xs.take_watch_event(), Some(ev("data/b/x", &b)));
    assert_eq!(xs.take_watch_event(), None);
    // Even when xenstored no longer has the watch.
    host.store.lock().unwrap().set("data/b/x", "2");
    host.step_store();
    xs.poll_watch_events().unwrap();
    host.store.lock().unwrap().remove("data");
    host.step_store();
    xs.unwatch("data/b", &b).unwrap();
    assert_eq!(xs.take_watch_event(), None);
    assert_eq!(store_errno(xs.unwatch("data/b", &b)), XsErrno::Enoent);
}
