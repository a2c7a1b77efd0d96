//! Xenbus: devices as xenstore directories, and the front-end side of the state handshake
//! (`io/xenbus.h`).
//!
//! A guest's PV devices are listed under its home path as `device/<kind>/<id>` (`vif` for
//! network, `vbd` for disks, …). Each such *front-end node* names its back end: `backend`
//! (the back end's xenstore path, e.g. `/local/domain/0/backend/vif/3/0`) and `backend-id`
//! (the back end's domain). Both ends publish a `state` key (a [`XenbusState`] as a decimal
//! number) and step through the handshake: the back end reaches `InitWait`, the front end
//! writes its rings and event channel and goes `Initialised`/`Connected`, the back end goes
//! `Connected`.
//!
//! [`XenbusBus`] is the [`Bus`] of these devices; [`wait_for_backend`] waits for the back end
//! to reach a state, failing fast with the state it went to instead (`Closing`, `Closed`, …)
//! and timing out with the last state it saw. Waits watch the back end's `state` key and read
//! it when the watch fires (plus a slow periodic read in case an event is lost), polling only
//! the client's reply ring in between (no xenstore traffic per
//! [`XenHost::relax`](super::XenHost::relax)); they happen while devices are bound.

use super::XenError;
use super::xenstore::{Tx, XenStore, XsErrno};
use crate::bus::{Bus, DeviceId, DeviceInfo};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;

/// The states of a xenbus device end (`enum xenbus_state`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, PartialOrd, Ord)]
pub enum XenbusState {
    /// No state written yet.
    Unknown = 0,
    /// Setting up.
    Initialising = 1,
    /// Back end: waiting for the front end's details (rings, event channel).
    InitWait = 2,
    /// Front end: details written.
    Initialised = 3,
    /// Working.
    Connected = 4,
    /// Shutting down.
    Closing = 5,
    /// Shut down.
    Closed = 6,
    /// Reconfiguring (rare: the back end's device changes).
    Reconfiguring = 7,
    /// Reconfigured.
    Reconfigured = 8,
}

impl XenbusState {
    const ALL: [XenbusState; 9] = [
        XenbusState::Unknown,
        XenbusState::Initialising,
        XenbusState::InitWait,
        XenbusState::Initialised,
        XenbusState::Connected,
        XenbusState::Closing,
        XenbusState::Closed,
        XenbusState::Reconfiguring,
        XenbusState::Reconfigured,
    ];

    /// The state numbered `v`, if there is one.
    pub fn from_u32(v: u32) -> Option<XenbusState> {
        Self::ALL.get(v as usize).copied()
    }

    /// Parses a `state` value (a decimal number 0–8).
    pub fn parse(s: &str) -> Option<XenbusState> {
        if s.is_empty() || s.len() > 3 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok().and_then(Self::from_u32)
    }

    /// The number written to xenstore.
    pub fn as_u32(self) -> u32 {
        self as u32
    }
}

impl core::fmt::Display for XenbusState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{self:?} ({})", *self as u32)
    }
}

/// Reads the state of the device end at `node` (its `state` key); a missing key is
/// [`XenbusState::Unknown`], a value that is not a state an error.
pub fn read_state(xs: &XenStore, node: &str) -> Result<XenbusState, XenError> {
    let path = format!("{node}/state");
    match xs.read_opt(Tx::NONE, &path)? {
        None => Ok(XenbusState::Unknown),
        Some(v) => XenbusState::parse(&v)
            .ok_or_else(|| XenError::Protocol(format!("{path} is {v:?}, not a xenbus state"))),
    }
}

/// Writes our state at `node` (in transaction `tx`, or none).
pub fn switch_state(xs: &XenStore, tx: Tx, node: &str, state: XenbusState) -> Result<(), XenError> {
    xs.write(tx, &format!("{node}/state"), &state.as_u32().to_string())
}

/// How often [`wait_for_backend`] reads the back end's state without a watch event (in case
/// one was lost, or the watch could not be set).
pub const STATE_RECHECK_NS: u64 = 100_000_000;

/// Waits until the back end at `backend` reaches `want`, for `device` (named in errors).
///
/// States before `want` in the normal progression (`Unknown` → `Initialising` → `InitWait`
/// → `Initialised` → `Connected`) keep the wait going; any other state ends it at once with
/// [`XenError::Handshake`] naming it (a back end going `Closing`/`Closed` while we wait for
/// `Connected` will not come back by itself). After `timeout_ns`: [`XenError::Timeout`]
/// naming the device and the last state seen.
///
/// Event-driven: the wait sets a xenstore watch on `<backend>/state` (with a token of its
/// own), reads the state, and reads it again only when that watch fires, every
/// [`STATE_RECHECK_NS`] (a safety net for a lost event) and at the deadline. In between it
/// only looks at the client's reply ring. Other watches' events stay queued. The watch is
/// removed however the wait ends. If xenstored refuses the watch, the state is read every
/// [`STATE_RECHECK_NS`] / 10 instead.
pub fn wait_for_backend(
    xs: &XenStore,
    device: &str,
    backend: &str,
    want: XenbusState,
    timeout_ns: u64,
) -> Result<XenbusState, XenError> {
    let host = xs.host().clone();
    let path = format!("{backend}/state");
    let token = xs.unique_token("rhea-xenbus-state-");
    let deadline = host.now_ns().saturating_add(timeout_ns);
    let mut last = None;
    let r = match xs.watch(&path, &token) {
        Ok(()) => {
            let r = watch_state(xs, backend, &token, deadline, STATE_RECHECK_NS, |s| {
                check_state(device, backend, want, s, &mut last)
            });
            // Best effort: the outcome is the wait's (a failed unwatch leaves at most a few
            // events for a token nobody takes).
            let _ = xs.unwatch(&path, &token);
            r
        }
        Err(XenError::Store { .. }) => {
            watch_state(xs, backend, &token, deadline, STATE_RECHECK_NS / 10, |s| {
                check_state(device, backend, want, s, &mut last)
            })
        }
        Err(e) => Err(e),
    };
    match r {
        Err(XenError::Timeout(_)) => Err(XenError::Timeout(format!(
            "{device}: back end {backend} did not reach state {want} within {} ms; last state {}",
            timeout_ns / 1_000_000,
            last.map_or("never read".to_string(), |s| s.to_string())
        ))),
        r => r,
    }
}

/// Whether state `s` ends the wait for `want` (remembered in `last`): `Some` if it is `want`,
/// `None` while it is on the way, an error otherwise.
fn check_state(
    device: &str,
    backend: &str,
    want: XenbusState,
    s: XenbusState,
    last: &mut Option<XenbusState>,
) -> Result<Option<XenbusState>, XenError> {
    *last = Some(s);
    if s == want {
        return Ok(Some(s));
    }
    let on_the_way = s < want && s <= XenbusState::Connected;
    if !on_the_way {
        return Err(XenError::Handshake(format!(
            "{device}: back end {backend} went to state {s} while we waited for {want}"
        )));
    }
    Ok(None)
}

/// Reads the state of `node` and gives it to `check` until `check` ends the wait: at once,
/// when an event for `token` is queued, every `recheck_ns` and at `deadline` (then
/// `Err(Timeout)` if `check` did not end it).
fn watch_state<T>(
    xs: &XenStore,
    node: &str,
    token: &str,
    deadline: u64,
    recheck_ns: u64,
    mut check: impl FnMut(XenbusState) -> Result<Option<T>, XenError>,
) -> Result<T, XenError> {
    let host = xs.host().clone();
    let mut fired = true;
    let mut next_read = 0;
    loop {
        let now = host.now_ns();
        if fired || now >= next_read || now >= deadline {
            // Events already queued are about changes before this read: take them now so they
            // do not cause another read. (One still in the ring causes at most one more.)
            xs.poll_watch_events()?;
            while xs.take_watch_event_for(token).is_some() {}
            if let Some(t) = check(read_state(xs, node)?)? {
                return Ok(t);
            }
            if now >= deadline {
                return Err(XenError::Timeout(String::new()));
            }
            next_read = host.now_ns().saturating_add(recheck_ns);
        }
        host.relax();
        xs.poll_watch_events()?;
        fired = xs.take_watch_event_for(token).is_some();
    }
}

/// What the bus knows about a front-end node.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct XenbusDevice {
    /// `vif`, `vbd`, ….
    pub kind: String,
    /// The device's number under its kind.
    pub id: u32,
    /// The front-end node, relative to the domain's home (`device/vif/0`).
    pub node: String,
    /// The back end's node (`backend`).
    pub backend: String,
    /// The back end's domain (`backend-id`).
    pub backend_id: u16,
}

/// Reads a front-end node's `backend` and `backend-id`.
pub fn read_device(xs: &XenStore, kind: &str, id: u32) -> Result<XenbusDevice, XenError> {
    let node = format!("device/{kind}/{id}");
    let backend = xs.read(Tx::NONE, &format!("{node}/backend"))?;
    if !backend.starts_with('/') {
        return Err(XenError::Protocol(format!(
            "{node}/backend is {backend:?}, not an absolute path"
        )));
    }
    let raw = xs.read(Tx::NONE, &format!("{node}/backend-id"))?;
    let backend_id = parse_number::<u16>(&raw)
        .filter(|&d| d < 0x7ff0)
        .ok_or_else(|| {
            XenError::Protocol(format!("{node}/backend-id is {raw:?}, not a domain id"))
        })?;
    Ok(XenbusDevice {
        kind: kind.to_string(),
        id,
        node,
        backend,
        backend_id,
    })
}

/// Parses a plain decimal number (no sign, no spaces).
pub fn parse_number<T: core::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl XenbusDevice {
    /// The device as the device model sees it.
    pub fn info(&self) -> DeviceInfo {
        DeviceInfo {
            location: self.node.clone(),
            id: DeviceId::Xenbus {
                kind: self.kind.clone(),
                id: self.id,
                backend: self.backend.clone(),
                backend_id: self.backend_id,
            },
        }
    }
}

/// The Xenbus: every `device/<kind>/<id>` of this domain.
#[derive(Debug)]
pub struct XenbusBus {
    xs: Arc<XenStore>,
    problems: Vec<String>,
}

impl XenbusBus {
    /// A bus reading the domain's devices through `xs`.
    pub fn new(xs: Arc<XenStore>) -> XenbusBus {
        XenbusBus {
            xs,
            problems: Vec::new(),
        }
    }

    /// Every device, and the nodes that could not be read (with the reason).
    pub fn scan(&self) -> (Vec<XenbusDevice>, Vec<String>) {
        let mut devices = Vec::new();
        let mut problems = Vec::new();
        let kinds = match self.xs.directory(Tx::NONE, "device") {
            Ok(k) => k,
            Err(XenError::Store {
                errno: XsErrno::Enoent,
                ..
            }) => Vec::new(),
            Err(e) => {
                problems.push(format!("device: {e}"));
                Vec::new()
            }
        };
        for kind in kinds {
            let ids = match self.xs.directory(Tx::NONE, &format!("device/{kind}")) {
                Ok(ids) => ids,
                Err(e) => {
                    problems.push(format!("device/{kind}: {e}"));
                    continue;
                }
            };
            for id in ids {
                let Some(n) = parse_number::<u32>(&id) else {
                    problems.push(format!("device/{kind}/{id}: not a device number"));
                    continue;
                };
                match read_device(&self.xs, &kind, n) {
                    Ok(d) => devices.push(d),
                    Err(e) => problems.push(format!("device/{kind}/{id}: {e}")),
                }
            }
        }
        (devices, problems)
    }

    /// Nodes the last [`devices`](Bus::devices) call skipped, with the reason (for the boot
    /// log).
    pub fn problems(&self) -> &[String] {
        &self.problems
    }
}

impl Bus for XenbusBus {
    fn name(&self) -> &'static str {
        "xenbus"
    }

    fn devices(&mut self) -> Vec<DeviceInfo> {
        let (devices, problems) = self.scan();
        self.problems = problems;
        devices.iter().map(XenbusDevice::info).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xen::XenHost;
    use crate::xen::testhost::TestHost;
    use alloc::vec;

    #[test]
    fn states_parse_strictly() {
        for (i, s) in XenbusState::ALL.iter().enumerate() {
            assert_eq!(XenbusState::parse(&i.to_string()), Some(*s));
            assert_eq!(s.as_u32(), i as u32);
        }
        for bad in ["9", "-1", "", " 4", "4 ", "04x", "99999999999", "Connected"] {
            assert_eq!(XenbusState::parse(bad), None, "{bad:?}");
        }
        assert_eq!(XenbusState::Closed.to_string(), "Closed (6)");
    }

    fn add_vif(host: &TestHost, id: u32, backend_state: Option<&str>) {
        let mut s = host.store.lock().unwrap();
        let be = format!("/local/domain/0/backend/vif/1/{id}");
        s.set(&format!("device/vif/{id}/backend"), &be);
        s.set(&format!("device/vif/{id}/backend-id"), "0");
        s.set(&format!("device/vif/{id}/state"), "1");
        if let Some(st) = backend_state {
            s.set(&format!("{be}/state"), st);
        }
    }

    #[test]
    fn the_bus_lists_devices_with_their_back_ends() {
        let host = TestHost::new();
        let mut bus = XenbusBus::new(host.xenstore());
        assert_eq!(bus.devices(), vec![], "no device directory: no devices");
        add_vif(&host, 0, None);
        add_vif(&host, 3, None);
        {
            let mut s = host.store.lock().unwrap();
            s.set(
                "device/vbd/768/backend",
                "/local/domain/0/backend/vbd/1/768",
            );
            s.set("device/vbd/768/backend-id", "0");
            s.set("device/vif/junk/backend", "x");
            s.set("device/vif/7/backend", "relative/path");
            s.set("device/vif/7/backend-id", "0");
            s.set("device/vif/8/backend", "/b");
            s.set("device/vif/8/backend-id", "65535");
            s.set("device/vif/9/backend-id", "0");
        }
        let devs = bus.devices();
        assert_eq!(devs.len(), 3);
        assert_eq!(
            devs[0],
            DeviceInfo {
                location: "device/vbd/768".into(),
                id: DeviceId::Xenbus {
                    kind: "vbd".into(),
                    id: 768,
                    backend: "/local/domain/0/backend/vbd/1/768".into(),
                    backend_id: 0
                }
            }
        );
        assert_eq!(devs[1].location, "device/vif/0");
        assert!(
            matches!(&devs[2].id, DeviceId::Xenbus { id: 3, backend, .. } if backend == "/local/domain/0/backend/vif/1/3")
        );
        let p = bus.problems();
        assert_eq!(p.len(), 4, "{p:?}");
        assert!(
            p.iter()
                .any(|m| m.contains("vif/junk") && m.contains("not a device number"))
        );
        assert!(
            p.iter()
                .any(|m| m.contains("vif/7") && m.contains("absolute"))
        );
        assert!(
            p.iter()
                .any(|m| m.contains("vif/8") && m.contains("domain id"))
        );
        assert!(
            p.iter()
                .any(|m| m.contains("vif/9") && m.contains("ENOENT"))
        );
        // A device that goes away is no longer listed.
        host.store.lock().unwrap().remove("device/vbd");
        assert_eq!(bus.devices().len(), 2);
    }

    #[test]
    fn states_are_read_and_written() {
        let host = TestHost::new();
        let xs = host.xenstore();
        assert_eq!(
            read_state(&xs, "device/vif/0").unwrap(),
            XenbusState::Unknown
        );
        switch_state(&xs, Tx::NONE, "device/vif/0", XenbusState::Initialised).unwrap();
        assert_eq!(
            host.store
                .lock()
                .unwrap()
                .get("device/vif/0/state")
                .as_deref(),
            Some("3")
        );
        assert_eq!(
            read_state(&xs, "device/vif/0").unwrap(),
            XenbusState::Initialised
        );
        host.store.lock().unwrap().set("device/vif/0/state", "42");
        let e = read_state(&xs, "device/vif/0").unwrap_err();
        assert!(
            matches!(&e, XenError::Protocol(m) if m.contains("\"42\"")),
            "{e:?}"
        );
    }

    const BE: &str = "/local/domain/0/backend/vif/1/0";

    #[test]
    fn waiting_succeeds_when_the_back_end_gets_there() {
        let host = TestHost::new();
        let xs = host.xenstore();
        add_vif(&host, 0, Some("1"));
        let mut n = 0;
        host.add_hook(move |h| {
            n += 1;
            if n == 5 {
                h.store.lock().unwrap().set(&format!("{BE}/state"), "2");
            }
            if n == 10 {
                h.store.lock().unwrap().set(&format!("{BE}/state"), "4");
            }
        });
        assert_eq!(
            wait_for_backend(&xs, "vif0", BE, XenbusState::Connected, 1_000_000_000).unwrap(),
            XenbusState::Connected
        );
        assert!(host.now_ns() >= 10_000_000);
    }

    #[test]
    fn a_back_end_stuck_in_initwait_times_out_naming_its_state() {
        let host = TestHost::new();
        let xs = host.xenstore();
        add_vif(&host, 0, Some("2"));
        let e = wait_for_backend(
            &xs,
            "xen-netfront device/vif/0",
            BE,
            XenbusState::Connected,
            50_000_000,
        )
        .unwrap_err();
        let XenError::Timeout(m) = &e else {
            panic!("{e:?}")
        };
        assert!(
            m.contains("device/vif/0") && m.contains("InitWait (2)") && m.contains("Connected"),
            "{m}"
        );
        // A back end that never wrote a state.
        let e = wait_for_backend(
            &xs,
            "d",
            "/local/domain/0/backend/none",
            XenbusState::InitWait,
            20_000_000,
        )
        .unwrap_err();
        assert!(
            matches!(&e, XenError::Timeout(m) if m.contains("Unknown (0)")),
            "{e:?}"
        );
    }

    #[test]
    fn a_back_end_jumping_to_closed_fails_fast() {
        let host = TestHost::new();
        let xs = host.xenstore();
        add_vif(&host, 0, Some("2"));
        let mut n = 0;
        host.add_hook(move |h| {
            n += 1;
            if n == 3 {
                h.store.lock().unwrap().set(&format!("{BE}/state"), "6");
            }
        });
        let e =
            wait_for_backend(&xs, "vif0", BE, XenbusState::Connected, 10_000_000_000).unwrap_err();
        let XenError::Handshake(m) = &e else {
            panic!("{e:?}")
        };
        assert!(m.contains("Closed (6)") && m.contains("vif0"), "{m}");
        assert!(host.now_ns() < 100_000_000, "failed fast");
        // Already past the state waited for (Connected while we wait for InitWait).
        host.store.lock().unwrap().set(&format!("{BE}/state"), "4");
        assert!(matches!(
            wait_for_backend(&xs, "vif0", BE, XenbusState::InitWait, 1_000_000_000),
            Err(XenError::Handshake(_))
        ));
        // A garbage state is an error too.
        host.store.lock().unwrap().set(&format!("{BE}/state"), "x");
        assert!(matches!(
            wait_for_backend(&xs, "vif0", BE, XenbusState::Connected, 1_000_000_000),
            Err(XenError::Protocol(_))
        ));
    }

    use crate::xen::xenstore::msg;

    /// Reads of the back end's state and watches left, from xenstored's side.
    fn state_reads(host: &TestHost) -> usize {
        host.store
            .lock()
            .unwrap()
            .requests(msg::READ, &format!("{BE}/state"))
    }

    fn watches_left(host: &TestHost) -> Vec<(String, String)> {
        host.store.lock().unwrap().watches()
    }

    /// Sets the back end's state at the `at`th relax.
    fn set_state_at(host: &TestHost, steps: &'static [(u32, &'static str)]) {
        let mut n = 0;
        host.add_hook(move |h| {
            n += 1;
            for &(at, st) in steps {
                if n == at {
                    h.store.lock().unwrap().set(&format!("{BE}/state"), st);
                }
            }
        });
    }

    #[test]
    fn the_wait_wakes_on_the_watch_instead_of_polling() {
        let host = TestHost::new();
        let xs = host.xenstore();
        add_vif(&host, 0, Some("1"));
        // InitWait after ~50 ms, Connected after ~700 ms (one relax is 1 ms).
        set_state_at(&host, &[(50, "2"), (700, "4")]);
        assert_eq!(
            wait_for_backend(&xs, "vif0", BE, XenbusState::Connected, 5_000_000_000).unwrap(),
            XenbusState::Connected
        );
        // Woken by the event, not by the periodic read: within a few relaxes of the write.
        let t = host.now_ns();
        assert!((700_000_000..705_000_000).contains(&t), "{t}");
        // One read at the start, one per change, and the periodic ones (every 100 ms): not
        // one per relax (~700).
        let reads = state_reads(&host);
        assert!((3..=3 + 7).contains(&reads), "{reads} reads");
        let s = host.store.lock().unwrap();
        assert_eq!(s.requests(msg::WATCH, &format!("{BE}/state")), 1);
        assert_eq!(s.requests(msg::UNWATCH, &format!("{BE}/state")), 1);
        drop(s);
        assert_eq!(watches_left(&host), vec![]);
        // Its events do not linger in the client's queue.
        assert_eq!(xs.poll_watch_events().unwrap(), 0);
        assert_eq!(xs.take_watch_event(), None);
    }

    #[test]
    fn a_lost_event_is_caught_by_the_periodic_read() {
        let host = TestHost::new();
        let xs = host.xenstore();
        add_vif(&host, 0, Some("2"));
        host.store.lock().unwrap().lose_events = true;
        set_state_at(&host, &[(30, "4")]);
        assert_eq!(
            wait_for_backend(&xs, "vif0", BE, XenbusState::Connected, 5_000_000_000).unwrap(),
            XenbusState::Connected
        );
        let t = host.now_ns();
        assert!(
            (STATE_RECHECK_NS..STATE_RECHECK_NS + 5_000_000).contains(&t),
            "{t}"
        );
        assert_eq!(state_reads(&host), 2);
        // The initial event and the write's were lost.
        assert_eq!(host.store.lock().unwrap().events_lost, 2);
        assert_eq!(watches_left(&host), vec![]);
    }

    #[test]
    fn the_watch_is_removed_however_the_wait_ends() {
        let host = TestHost::new();
        let xs = host.xenstore();
        add_vif(&host, 0, Some("2"));
        let unwatches = |h: &TestHost| {
            h.store
                .lock()
                .unwrap()
                .requests(msg::UNWATCH, &format!("{BE}/state"))
        };
        // Timeout: a read at the start, one per 100 ms and one at the deadline.
        let e = wait_for_backend(&xs, "vif0", BE, XenbusState::Connected, 350_000_000).unwrap_err();
        assert!(
            matches!(&e, XenError::Timeout(m) if m.contains("InitWait (2)") && m.contains("350 ms")),
            "{e:?}"
        );
        assert!(
            (4..=6).contains(&state_reads(&host)),
            "{}",
            state_reads(&host)
        );
        assert_eq!((watches_left(&host), unwatches(&host)), (vec![], 1));
        // Failing fast.
        set_state_at(&host, &[(20, "5")]);
        let e =
            wait_for_backend(&xs, "vif0", BE, XenbusState::Connected, 5_000_000_000).unwrap_err();
        assert!(
            matches!(&e, XenError::Handshake(m) if m.contains("Closing (5)")),
            "{e:?}"
        );
        assert_eq!((watches_left(&host), unwatches(&host)), (vec![], 2));
        // A garbage state.
        host.store.lock().unwrap().set(&format!("{BE}/state"), "x");
        assert!(matches!(
            wait_for_backend(&xs, "vif0", BE, XenbusState::Connected, 1_000_000_000),
            Err(XenError::Protocol(_))
        ));
        assert_eq!((watches_left(&host), unwatches(&host)), (vec![], 3));
        assert_eq!(xs.take_watch_event(), None);
    }

    #[test]
    fn other_watches_keep_their_events() {
        let host = TestHost::new();
        let xs = host.xenstore();
        add_vif(&host, 0, Some("1"));
        xs.watch("device/vif/0", "mine").unwrap();
        let mut n = 0;
        host.add_hook(move |h| {
            n += 1;
            let mut s = h.store.lock().unwrap();
            match n {
                10 => s.set("device/vif/0/a", "1"),
                20 => s.set(&format!("{BE}/state"), "2"),
                30 => s.set("device/vif/0/b", "1"),
                40 => s.set(&format!("{BE}/state"), "4"),
                _ => {}
            }
        });
        wait_for_backend(&xs, "vif0", BE, XenbusState::Connected, 5_000_000_000).unwrap();
        xs.poll_watch_events().unwrap();
        let mut evs = vec![];
        while let Some(e) = xs.take_watch_event() {
            evs.push((e.path, e.token));
        }
        let mine = |p: &str| (p.to_string(), "mine".to_string());
        assert_eq!(
            evs,
            vec![
                mine("device/vif/0"),
                mine("device/vif/0/a"),
                mine("device/vif/0/b")
            ]
        );
    }

    #[test]
    fn a_refused_watch_falls_back_to_periodic_reads() {
        let host = TestHost::new();
        let xs = host.xenstore();
        add_vif(&host, 0, Some("1"));
        host.store.lock().unwrap().max_watches = 0;
        set_state_at(&host, &[(55, "4")]);
        assert_eq!(
            wait_for_backend(&xs, "vif0", BE, XenbusState::Connected, 5_000_000_000).unwrap(),
            XenbusState::Connected
        );
        let t = host.now_ns();
        assert!((55_000_000..70_000_000).contains(&t), "{t}");
        let reads = state_reads(&host);
        assert!((4..=8).contains(&reads), "{reads} reads");
        assert_eq!(watches_left(&host), vec![]);
    }
}
