//! `xenstore`: the xenstore client (`drivers/src/xen/xenstore.rs`) and what xenbus builds on
//! it (`xenbus.rs`: device scan, `backend-id` and state parsing, the back-end wait), against
//! a xenstored ([`crate::xen::Server`]) that lies as the input says — replies of the wrong type,
//! id or length, raw bytes, stray watch events, ring indices moved anywhere, stalls — then
//! turns honest. The interface page's indices at connection are from the input too.
//! Invariant: every call returns (the fake clock bounds every wait), with a value or an
//! error; no panic.
//!
//! Input: `[4 ring indices (u32 each), then operations and the server's actions, interleaved
//! from one stream]`.

use crate::xen::{Host, STORE_PORT, Script, Server};
use rhea_drivers::xen::xenbus::{
    self, XenbusBus, XenbusState, parse_number, read_device, read_state, wait_for_backend,
};
use rhea_drivers::xen::xenstore::{Tx, XenStore, page};
use rhea_drivers::xen::{XenHost, XsErrno};
use std::sync::Arc;

/// Operations per input at most.
const MAX_OPS: usize = 24;

fn next_op(host: &Host) -> Option<(u8, String, String)> {
    let mut server = host.server.lock().ok()?;
    let script = server.script.as_mut()?;
    if script.is_done() {
        return None;
    }
    let op = script.u8();
    let (a, b) = (script.string(), script.string());
    Some((op, a, b))
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut script = Script::new(data);
    let indices = [script.u32(), script.u32(), script.u32(), script.u32()];
    let mut server = Server::default();
    for (path, value) in [
        ("device/vif/0/backend", "/local/domain/0/backend/vif/1/0"),
        ("device/vif/0/backend-id", "0"),
        ("device/vif/0/mac", "00:16:3e:12:34:56"),
        ("device/vif/0/state", "1"),
        ("/local/domain/0/backend/vif/1/0/state", "2"),
    ] {
        server.set(path, value);
    }
    server.script = Some(script);
    let host = Arc::new(Host::new(server));
    // Indices as a previous user (or a hostile xenstored) left them: near each other most of
    // the time, so the client accepts the page.
    let mem = &host.store_page;
    let base = indices[0];
    let _ = mem.write_u32(page::REQ_CONS, base);
    let _ = mem.write_u32(page::REQ_PROD, base.wrapping_add(indices[1] % 1100));
    let _ = mem.write_u32(page::RSP_CONS, indices[2]);
    let _ = mem.write_u32(page::RSP_PROD, indices[2].wrapping_add(indices[3] % 1100));
    let dyn_host: Arc<dyn XenHost> = host.clone();
    let Ok(xs) = XenStore::new(dyn_host, host.store_page.clone(), STORE_PORT) else {
        return;
    };
    let xs = Arc::new(xs.with_timeout_ns(20_000_000));

    for _ in 0..MAX_OPS {
        let Some((op, a, b)) = next_op(&host) else {
            break;
        };
        match op % 16 {
            0 => drop(xs.read(Tx::NONE, &a)),
            1 => drop(xs.read_opt(Tx::NONE, "device/vif/0/mac")),
            2 => drop(xs.write(Tx::NONE, &a, &b)),
            3 => drop(xs.directory(Tx::NONE, &a)),
            4 => drop(xs.mkdir(Tx::NONE, &a).and_then(|()| xs.rm(Tx::NONE, &a))),
            5 => drop(xs.watch(&a, &b)),
            6 => drop(xs.unwatch(&a, &b)),
            7 => drop(xs.transaction(3, |t| xs.write(t, "device/vif/0/x", &a))),
            8 => drop(xs.get_domain_path(u16::from(op))),
            9 => {
                let _ = xs.poll_watch_events();
                let _ = xs.take_watch_event_for(&b);
                let _ = xs.take_watch_event();
                let _ = xs.watch_events_dropped();
            }
            10 => drop(XenbusBus::new(xs.clone()).scan()),
            11 => drop(read_state(&xs, "device/vif/0")),
            12 => drop(wait_for_backend(
                &xs,
                "fuzz",
                "/local/domain/0/backend/vif/1/0",
                XenbusState::Connected,
                300_000_000,
            )),
            13 => drop(read_device(&xs, "vif", 0)),
            14 => drop(xenbus::switch_state(
                &xs,
                Tx::NONE,
                "device/vif/0",
                XenbusState::Connected,
            )),
            _ => {
                let _ = XenbusState::parse(&a);
                let _ = parse_number::<u16>(&a);
                let _ = parse_number::<u32>(&b);
                let _ = XsErrno::from_name(&b).name().len();
                let _ = rhea_drivers::xen::xenstore::parse_directory(a.as_bytes());
                let _ = rhea_drivers::xen::netfront::parse_mac(&b);
            }
        }
    }
}
