//! An independent reader of Perfetto trace files: a generic protobuf wire-format decoder
//! (varints, fixed64/32, length-delimited → field numbers and values) and a reading of the
//! track descriptors and track events by Perfetto's field numbers, written out here on their
//! own. It shares nothing with the encoder (`perfetto.rs`): the host tests and the tracing
//! boot cases check what the encoder wrote through it. Structural problems panic (the callers
//! are tests; the boot cases catch the panic and report it).

use std::collections::HashMap;

// ---------------------------------------------------------------------------------------
// An independent protobuf wire-format decoder.
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum V {
    Varint(u64),
    I64(u64),
    Len(Vec<u8>),
    I32(u32),
}

pub(crate) type Fields = Vec<(u64, V)>;

pub(crate) fn read_varint(b: &[u8], at: &mut usize) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..70).step_by(7) {
        let byte = *b.get(*at).ok_or("varint runs past the end")?;
        *at += 1;
        if shift == 63 && byte > 1 {
            return Err("varint too long".into());
        }
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("varint too long".into())
}

pub(crate) fn decode(b: &[u8]) -> Result<Fields, String> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < b.len() {
        let key = read_varint(b, &mut at)?;
        let (field, wire) = (key >> 3, key & 7);
        if field == 0 {
            return Err(format!("field number 0 at byte {at}"));
        }
        let v = match wire {
            0 => V::Varint(read_varint(b, &mut at)?),
            1 => {
                let s = b.get(at..at + 8).ok_or("fixed64 runs past the end")?;
                at += 8;
                V::I64(u64::from_le_bytes(s.try_into().map_err(|_| "fixed64")?))
            }
            2 => {
                let n = read_varint(b, &mut at)? as usize;
                let s = b.get(at..at + n).ok_or("length runs past the end")?;
                at += n;
                V::Len(s.to_vec())
            }
            5 => {
                let s = b.get(at..at + 4).ok_or("fixed32 runs past the end")?;
                at += 4;
                V::I32(u32::from_le_bytes(s.try_into().map_err(|_| "fixed32")?))
            }
            w => return Err(format!("wire type {w} at byte {at}")),
        };
        out.push((field, v));
    }
    Ok(out)
}

pub(crate) fn all(f: &Fields, n: u64) -> Vec<&V> {
    f.iter().filter(|(k, _)| *k == n).map(|(_, v)| v).collect()
}

pub(crate) fn uint(f: &Fields, n: u64) -> Option<u64> {
    all(f, n).last().map(|v| match v {
        V::Varint(x) | V::I64(x) => *x,
        other => panic!("field {n} is not a number: {other:?}"),
    })
}

pub(crate) fn sub(f: &Fields, n: u64) -> Option<Fields> {
    all(f, n).last().map(|v| match v {
        V::Len(b) => decode(b).unwrap(),
        other => panic!("field {n} is not a message: {other:?}"),
    })
}

pub(crate) fn text(f: &Fields, n: u64) -> Option<String> {
    all(f, n).last().map(|v| match v {
        V::Len(b) => String::from_utf8(b.clone()).unwrap(),
        other => panic!("field {n} is not a string: {other:?}"),
    })
}

pub(crate) fn fixed_all(f: &Fields, n: u64) -> Vec<u64> {
    all(f, n)
        .into_iter()
        .map(|v| match v {
            V::I64(x) => *x,
            other => panic!("field {n} is not fixed64: {other:?}"),
        })
        .collect()
}

/// A track event as read back: Perfetto's field numbers, written out here on their own
/// (trace_packet.proto: timestamp 8, trusted_packet_sequence_id 10, track_event 11,
/// track_descriptor 60; track_event.proto: type 9, track_uuid 11, name 23, debug_annotations
/// 4, counter_value 30, flow_ids 47, terminating_flow_ids 48).
#[derive(Debug, Clone)]
pub(crate) struct Ev {
    pub(crate) ts: u64,
    pub(crate) track: u64,
    pub(crate) kind: u64,
    pub(crate) name: Option<String>,
    pub(crate) counter: Option<i64>,
    pub(crate) flows: Vec<u64>,
    pub(crate) ends_flows: Vec<u64>,
    pub(crate) args: HashMap<String, V>,
}

#[derive(Debug, Default)]
pub(crate) struct Read {
    /// uuid → (name, parent, thread name, is a counter)
    pub(crate) tracks: HashMap<u64, (String, Option<u64>, Option<String>, bool)>,
    pub(crate) events: Vec<Ev>,
}

impl Read {
    pub(crate) fn track(&self, name: &str) -> u64 {
        let found: Vec<u64> = self
            .tracks
            .iter()
            .filter(|(_, t)| t.0 == name)
            .map(|(u, _)| *u)
            .collect();
        assert_eq!(found.len(), 1, "tracks named {name:?}: {:?}", self.tracks);
        found[0]
    }

    pub(crate) fn on(&self, track: u64) -> Vec<&Ev> {
        self.events.iter().filter(|e| e.track == track).collect()
    }
}

pub(crate) fn read(bytes: &[u8]) -> Read {
    let trace = decode(bytes).expect("the trace decodes");
    let mut r = Read::default();
    let mut last_ts = 0;
    for (n, v) in &trace {
        assert_eq!(*n, 1, "a Trace holds only packets (field 1)");
        let V::Len(b) = v else {
            panic!("a packet is length-delimited")
        };
        let p = decode(b).unwrap();
        assert_eq!(uint(&p, 10), Some(1), "trusted_packet_sequence_id on {p:?}");
        if let Some(d) = sub(&p, 60) {
            let uuid = uint(&d, 1).expect("uuid");
            let thread = sub(&d, 4).map(|t| {
                assert_eq!(uint(&t, 1), Some(1), "pid");
                assert!(uint(&t, 2).is_some(), "tid");
                text(&t, 5).expect("thread_name")
            });
            let name = text(&d, 2).unwrap_or_default();
            let counter = sub(&d, 8).is_some();
            assert!(
                r.tracks
                    .insert(uuid, (name, uint(&d, 5), thread, counter))
                    .is_none(),
                "track {uuid} described twice"
            );
        }
        if let Some(e) = sub(&p, 11) {
            let ts = uint(&p, 8).expect("an event has a timestamp");
            assert!(ts >= last_ts, "events sorted by time: {ts} after {last_ts}");
            last_ts = ts;
            let mut args = HashMap::new();
            for a in all(&e, 4) {
                let V::Len(b) = a else { panic!("annotation") };
                let a = decode(b).unwrap();
                let name = text(&a, 10).expect("annotation name");
                let value = a
                    .iter()
                    .find(|(k, _)| *k != 10)
                    .map(|(_, v)| v.clone())
                    .unwrap();
                args.insert(name, value);
            }
            r.events.push(Ev {
                ts,
                track: uint(&e, 11).expect("track_uuid"),
                kind: uint(&e, 9).expect("type"),
                name: text(&e, 23),
                counter: uint(&e, 30).map(|v| v as i64),
                flows: fixed_all(&e, 47),
                ends_flows: fixed_all(&e, 48),
                args,
            });
        }
    }
    for (uuid, t) in &r.tracks {
        if let Some(parent) = t.1 {
            assert!(r.tracks.contains_key(&parent), "track {uuid}'s parent");
        }
    }
    for e in &r.events {
        assert!(
            r.tracks.contains_key(&e.track),
            "event on undescribed track {}",
            e.track
        );
    }
    r
}

/// The slices of a track as (begin ts, name, end ts), checking begins and ends pair up.
pub(crate) fn slices(r: &Read, track: u64) -> Vec<(u64, String, u64)> {
    let mut open: Vec<(u64, String)> = Vec::new();
    let mut out = Vec::new();
    for e in r.on(track) {
        match e.kind {
            1 => open.push((e.ts, e.name.clone().expect("a slice has a name"))),
            2 => {
                let (ts, name) = open.pop().expect("an end has a begin");
                assert!(e.ts >= ts);
                out.push((ts, name, e.ts));
            }
            _ => {}
        }
    }
    assert!(open.is_empty(), "unended slices on {track}: {open:?}");
    out.sort();
    out
}
