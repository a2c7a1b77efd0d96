//! The dump: trace buffers as lines of text that survive a console shared with other output.
//!
//! Every line is one self-contained frame:
//!
//! ```text
//! ~rt <seq: 8 hex> <payload: base64> <crc: 8 hex>
//! ```
//!
//! `seq` counts the dump's frames from 0; `crc` is the CRC-32 (IEEE) of `seq` (4 bytes,
//! little-endian) followed by the payload. A frame is written as one line under the console's
//! lock, so other output can come between frames but never inside one; a reader finds the
//! `~rt ` marker anywhere in a line (output without a newline may precede it).
//!
//! Payloads (first byte the frame's type, integers little-endian):
//!
//! ```text
//! 'H' version u8 = 1, cpus u8, mode u8, categories u8, dump time u64, capacity per CPU u32
//! 'C' cpu u8, held u64, dropped u64, overwritten u64          (before that CPU's events)
//! 'E' cpu u8, index of the first record u32, then 1..=4 records of 32 bytes
//! 'T' a live thread: id u64, base priority u8, effective priority u8, name (rest, UTF-8)
//! 'S' an app string: id u16, text (rest, UTF-8)
//! 'Z' end: frames before this one u32
//! ```
//!
//! Because each frame stands alone, a lost or damaged line loses only its own records: the
//! parser ([`parse`]) reports where, from the sequence numbers and checksums, and keeps the rest.

use crate::event::{RECORD_BYTES, Record};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// The marker that starts a frame.
pub const MARKER: &str = "~rt ";

/// Records per `E` frame.
pub const RECORDS_PER_FRAME: usize = 4;

/// The largest payload: an `E` frame.
pub const MAX_PAYLOAD: usize = 6 + RECORDS_PER_FRAME * RECORD_BYTES;

/// A line's longest text: marker, seq, base64 of the largest payload, crc, newline.
pub const MAX_LINE: usize = MARKER.len() + 9 + MAX_PAYLOAD.div_ceil(3) * 4 + 10;

/// The dump format's version.
pub const VERSION: u8 = 1;

/// CRC-32 (IEEE 802.3, reflected, as zlib computes it). Bitwise: the dump is not a hot path
/// and a 1 KiB table would cost the image more than the loop.
pub fn crc32(init: u32, bytes: &[u8]) -> u32 {
    let mut crc = !init;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn b64_value(c: u8) -> Option<u32> {
    B64.iter().position(|&x| x == c).map(|i| i as u32)
}

/// Writes one frame's line into `out` (at least [`MAX_LINE`] bytes) and returns its length.
/// `payload` is at most [`MAX_PAYLOAD`] bytes.
pub fn encode_line(seq: u32, payload: &[u8], out: &mut [u8]) -> usize {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut n = 0;
    let mut put = |out: &mut [u8], b: u8| {
        out[n] = b;
        n += 1;
    };
    for &b in MARKER.as_bytes() {
        put(out, b);
    }
    for i in (0..8).rev() {
        put(out, HEX[(seq >> (i * 4)) as usize & 15]);
    }
    put(out, b' ');
    for chunk in payload.chunks(3) {
        let v = u32::from(chunk[0]) << 16
            | u32::from(*chunk.get(1).unwrap_or(&0)) << 8
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for k in 0..4 {
            if k <= chunk.len() {
                put(out, B64[(v >> (18 - 6 * k)) as usize & 63]);
            } else {
                put(out, b'=');
            }
        }
    }
    put(out, b' ');
    let crc = crc32(crc32(0, &seq.to_le_bytes()), payload);
    for i in (0..8).rev() {
        put(out, HEX[(crc >> (i * 4)) as usize & 15]);
    }
    put(out, b'\n');
    n
}

/// Why a line that carries the marker is not a frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LineError {
    /// Fields missing or not hex/base64.
    Malformed,
    /// The checksum does not match (a byte lost or changed).
    Checksum,
}

/// Decodes one line: `None` if it carries no frame marker, else the frame's `(seq, payload)`
/// or why it is damaged.
pub fn decode_line(line: &str) -> Option<Result<(u32, Vec<u8>), LineError>> {
    let at = line.find(MARKER)?;
    let rest = line[at + MARKER.len()..].trim_end();
    let mut fields = rest.split(' ');
    let (Some(seq), Some(data), Some(crc), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Some(Err(LineError::Malformed));
    };
    let (Ok(seq), Ok(crc)) = (u32::from_str_radix(seq, 16), u32::from_str_radix(crc, 16)) else {
        return Some(Err(LineError::Malformed));
    };
    if !data.len().is_multiple_of(4) || data.is_empty() {
        return Some(Err(LineError::Malformed));
    }
    let mut payload = Vec::with_capacity(data.len() / 4 * 3);
    for quad in data.as_bytes().chunks(4) {
        let pad = quad.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 {
            return Some(Err(LineError::Malformed));
        }
        let mut v = 0u32;
        for &c in &quad[..4 - pad] {
            let Some(d) = b64_value(c) else {
                return Some(Err(LineError::Malformed));
            };
            v = v << 6 | d;
        }
        v <<= 6 * pad as u32;
        let bytes = [(v >> 16) as u8, (v >> 8) as u8, v as u8];
        payload.extend_from_slice(&bytes[..3 - pad]);
    }
    if crc32(crc32(0, &seq.to_le_bytes()), &payload) != crc {
        return Some(Err(LineError::Checksum));
    }
    Some(Ok((seq, payload)))
}

/// The dump's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Header {
    /// CPUs dumped.
    pub cpus: u8,
    /// The buffers' mode's code.
    pub mode: u8,
    /// The categories recorded.
    pub categories: u8,
    /// When the dump was taken (ns).
    pub time: u64,
    /// Records per CPU buffer.
    pub capacity: u32,
}

/// One CPU's part of a dump.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct CpuDump {
    /// The CPU.
    pub cpu: u8,
    /// Records the buffer held.
    pub held: u64,
    /// Events it did not record.
    pub dropped: u64,
    /// Events overwritten by newer ones.
    pub overwritten: u64,
    /// The records that arrived whole, oldest first.
    pub records: Vec<Record>,
}

/// A thread alive when the dump was taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveThread {
    /// Its raw id.
    pub id: u64,
    /// Base priority.
    pub base: u8,
    /// Effective priority.
    pub effective: u8,
    /// Its name.
    pub name: String,
}

/// A dump, parsed: what arrived whole, and what did not.
#[derive(Clone, Debug, Default)]
pub struct Dump {
    /// The header, if its frame arrived.
    pub header: Option<Header>,
    /// Per CPU, in the dump's order.
    pub cpus: Vec<CpuDump>,
    /// Threads alive at the dump.
    pub threads: Vec<LiveThread>,
    /// App strings: (id, text).
    pub strings: Vec<(u16, String)>,
    /// Whether the end frame arrived (and the frame count matched).
    pub complete: bool,
    /// What was lost or damaged, each naming where (input line, frame number).
    pub problems: Vec<String>,
}

fn take<const N: usize>(p: &[u8], at: usize) -> Option<[u8; N]> {
    p.get(at..at + N).map(|s| {
        let mut a = [0; N];
        a.copy_from_slice(s);
        a
    })
}

/// Parses every dump frame in `text` (other lines are ignored). Damaged and missing frames
/// are listed in [`Dump::problems`]; everything whole is kept. When `text` holds several
/// dumps, the last one (the last header onwards) is returned.
pub fn parse(text: &str) -> Dump {
    let mut d = Dump::default();
    let mut expect: u32 = 0;
    for (lineno, line) in text.lines().enumerate() {
        let lineno = lineno + 1;
        let Some(frame) = decode_line(line) else {
            continue;
        };
        let (seq, p) = match frame {
            Ok(f) => f,
            Err(e) => {
                let after = match expect {
                    0 => String::from("before the first whole frame"),
                    n => format!("after frame #{}", n - 1),
                };
                d.problems.push(format!(
                    "line {lineno}: a frame {after} is damaged ({}): its records are lost",
                    match e {
                        LineError::Malformed => "malformed",
                        LineError::Checksum => "checksum mismatch",
                    }
                ));
                continue;
            }
        };
        if p.first() == Some(&b'H') && seq == 0 {
            // A new dump starts: forget an earlier one.
            d = Dump {
                problems: d.problems,
                ..Dump::default()
            };
            expect = 0;
        }
        if seq != expect {
            if seq > expect {
                d.problems.push(format!(
                    "line {lineno}: frames #{expect}..#{} missing",
                    seq - 1
                ));
            } else {
                d.problems.push(format!(
                    "line {lineno}: frame #{seq} out of order (expected #{expect})"
                ));
            }
        }
        expect = seq.wrapping_add(1);
        if !apply(&mut d, seq, &p) {
            d.problems.push(format!(
                "line {lineno}: frame #{seq} has a malformed payload"
            ));
        }
    }
    if !d.complete {
        d.problems.push(match expect {
            0 => String::from("the dump is cut off: no whole frame"),
            n => format!("the dump is cut off: no end frame after frame #{}", n - 1),
        });
    }
    for c in &d.cpus {
        let arrived = c.records.len() as u64;
        if c.held > arrived {
            d.problems.push(format!(
                "cpu{}: {} of its {} records lost with the frames above",
                c.cpu,
                c.held - arrived,
                c.held
            ));
        }
    }
    d
}

fn apply(d: &mut Dump, seq: u32, p: &[u8]) -> bool {
    match p.first() {
        Some(b'H') => {
            let (Some([v, cpus, mode, cats]), Some(time), Some(cap)) =
                (take::<4>(p, 1), take::<8>(p, 5), take::<4>(p, 13))
            else {
                return false;
            };
            if v != VERSION {
                return false;
            }
            d.header = Some(Header {
                cpus,
                mode,
                categories: cats,
                time: u64::from_le_bytes(time),
                capacity: u32::from_le_bytes(cap),
            });
        }
        Some(b'C') => {
            let (Some([cpu]), Some(held), Some(dropped), Some(over)) = (
                take::<1>(p, 1),
                take::<8>(p, 2),
                take::<8>(p, 10),
                take::<8>(p, 18),
            ) else {
                return false;
            };
            d.cpus.push(CpuDump {
                cpu,
                held: u64::from_le_bytes(held),
                dropped: u64::from_le_bytes(dropped),
                overwritten: u64::from_le_bytes(over),
                records: Vec::new(),
            });
        }
        Some(b'E') => {
            let Some([cpu]) = take::<1>(p, 1) else {
                return false;
            };
            let body = &p[6.min(p.len())..];
            if p.len() < 6 || body.is_empty() || !body.len().is_multiple_of(RECORD_BYTES) {
                return false;
            }
            let Some(first) = take::<4>(p, 2).map(u32::from_le_bytes) else {
                return false;
            };
            let Some(c) = d.cpus.iter_mut().rev().find(|c| c.cpu == cpu) else {
                return false;
            };
            // Records go in the order they were held; a gap (a lost frame) is counted at the end.
            if u64::from(first) < c.records.len() as u64 {
                return false;
            }
            for r in body.chunks(RECORD_BYTES) {
                let mut a = [0; RECORD_BYTES];
                a.copy_from_slice(r);
                c.records.push(Record::from_bytes(&a));
            }
        }
        Some(b'T') => {
            let (Some(id), Some([base, eff])) = (take::<8>(p, 1), take::<2>(p, 9)) else {
                return false;
            };
            let Ok(name) = core::str::from_utf8(&p[11.min(p.len())..]) else {
                return false;
            };
            d.threads.push(LiveThread {
                id: u64::from_le_bytes(id),
                base,
                effective: eff,
                name: String::from(name),
            });
        }
        Some(b'S') => {
            let Some(id) = take::<2>(p, 1) else {
                return false;
            };
            let Ok(text) = core::str::from_utf8(&p[3.min(p.len())..]) else {
                return false;
            };
            d.strings.push((u16::from_le_bytes(id), String::from(text)));
        }
        Some(b'Z') => {
            let Some(n) = take::<4>(p, 1) else {
                return false;
            };
            d.complete = u32::from_le_bytes(n) == seq;
            if !d.complete {
                d.problems.push(format!(
                    "the end frame counts {} frames before it, but it is frame #{seq}",
                    u32::from_le_bytes(n)
                ));
            }
        }
        _ => return false,
    }
    true
}

/// Builds a dump's frames in order, handing each finished line to `emit`.
#[allow(missing_debug_implementations)] // it holds a closure
pub struct Writer<F: FnMut(&str)> {
    seq: u32,
    emit: F,
}

impl<F: FnMut(&str)> Writer<F> {
    /// A dump whose lines go to `emit` (one call per line, newline included).
    pub fn new(emit: F) -> Self {
        Self { seq: 0, emit }
    }

    fn frame(&mut self, payload: &[u8]) {
        let mut line = [0u8; MAX_LINE];
        let n = encode_line(self.seq, payload, &mut line);
        self.seq += 1;
        // The line is ASCII by construction.
        (self.emit)(core::str::from_utf8(&line[..n]).unwrap_or(""));
    }

    /// The header (first).
    pub fn header(&mut self, h: &Header) {
        let mut p = [0u8; 17];
        p[0] = b'H';
        p[1] = VERSION;
        p[2] = h.cpus;
        p[3] = h.mode;
        p[4] = h.categories;
        p[5..13].copy_from_slice(&h.time.to_le_bytes());
        p[13..17].copy_from_slice(&h.capacity.to_le_bytes());
        self.frame(&p);
    }

    /// A CPU's counts, before its records.
    pub fn cpu(&mut self, cpu: u8, held: u64, dropped: u64, overwritten: u64) {
        let mut p = [0u8; 26];
        p[0] = b'C';
        p[1] = cpu;
        p[2..10].copy_from_slice(&held.to_le_bytes());
        p[10..18].copy_from_slice(&dropped.to_le_bytes());
        p[18..26].copy_from_slice(&overwritten.to_le_bytes());
        self.frame(&p);
    }

    /// Up to [`RECORDS_PER_FRAME`] of a CPU's records, the first being its `first`th.
    pub fn records(&mut self, cpu: u8, first: u32, recs: &[Record]) {
        let mut p = [0u8; MAX_PAYLOAD];
        p[0] = b'E';
        p[1] = cpu;
        p[2..6].copy_from_slice(&first.to_le_bytes());
        let n = recs.len().min(RECORDS_PER_FRAME);
        for (i, r) in recs[..n].iter().enumerate() {
            p[6 + i * RECORD_BYTES..6 + (i + 1) * RECORD_BYTES].copy_from_slice(&r.to_bytes());
        }
        self.frame(&p[..6 + n * RECORD_BYTES]);
    }

    /// A live thread (its name cut to fit one frame).
    pub fn thread(&mut self, id: u64, base: u8, effective: u8, name: &str) {
        let mut p = [0u8; MAX_PAYLOAD];
        p[0] = b'T';
        p[1..9].copy_from_slice(&id.to_le_bytes());
        p[9] = base;
        p[10] = effective;
        let n = cut(name, MAX_PAYLOAD - 11);
        p[11..11 + n].copy_from_slice(&name.as_bytes()[..n]);
        self.frame(&p[..11 + n]);
    }

    /// An app string.
    pub fn string(&mut self, id: u16, text: &str) {
        let mut p = [0u8; MAX_PAYLOAD];
        p[0] = b'S';
        p[1..3].copy_from_slice(&id.to_le_bytes());
        let n = cut(text, MAX_PAYLOAD - 3);
        p[3..3 + n].copy_from_slice(&text.as_bytes()[..n]);
        self.frame(&p[..3 + n]);
    }

    /// The end (last).
    pub fn end(&mut self) {
        let mut p = [0u8; 5];
        p[0] = b'Z';
        p[1..5].copy_from_slice(&self.seq.to_le_bytes());
        self.frame(&p);
    }
}

/// The longest prefix of `s` of at most `max` bytes ending on a character boundary.
fn cut(s: &str, max: usize) -> usize {
    let mut n = s.len().min(max);
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    n
}
