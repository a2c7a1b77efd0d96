//! Host tests: the record codec, categories, the buffer's modes, the dump round trip and a
//! damaged dump.

extern crate std;

use super::*;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::AtomicU64;
use frame::{Header, Writer, decode_line, parse};
use std::boxed::Box;

fn storage(records: usize) -> &'static [AtomicU64] {
    let v: Vec<AtomicU64> = (0..records * 4).map(|_| AtomicU64::new(0)).collect();
    Box::leak(v.into_boxed_slice())
}

#[test]
fn record_words_and_bytes_round_trip() {
    let r = Record::new(123_456_789, Kind::Prio, u64::MAX - 1, 7)
        .x(200)
        .y(0xbeef)
        .z(0xdead_0001);
    assert_eq!(Record::from_words(r.to_words()), r);
    assert_eq!(Record::from_bytes(&r.to_bytes()), r);
    assert_eq!(r.kind(), Some(Kind::Prio));
    assert_eq!(Record { kind: 99, ..r }.kind(), None);
}

#[test]
fn every_kind_code_round_trips_and_has_a_category() {
    let mut seen = 0;
    for code in 0..=255u8 {
        if let Some(k) = Kind::from_code(code) {
            assert_eq!(k as u8, code);
            assert!(CATEGORIES.contains(&k.category()));
            seen += 1;
        }
    }
    assert!(seen >= 20);
}

#[test]
fn categories_parse_strictly() {
    assert_eq!(parse_categories("sched"), Ok(Category::Sched as u32));
    assert_eq!(parse_categories("sched,irq,net,app"), Ok(ALL));
    assert_eq!(parse_categories("all"), Ok(ALL));
    assert_eq!(parse_categories("off"), Ok(0));
    let e = parse_categories("sched,disk").unwrap_err();
    assert_eq!(e.name, "disk");
    let msg = std::format!("{e}");
    assert!(
        msg.contains("'disk'") && msg.contains("sched, irq, net, app"),
        "{msg}"
    );
    assert!(parse_categories("").is_err());
    assert!(parse_categories("sched,").is_err());
}

#[test]
fn names_split_into_parts_on_character_boundaries() {
    let recs: Vec<Record> = name_records(5, 0x1_0000_0003, "net-rx-virtio0").collect();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].y, 14);
    assert_eq!(recs[0].z, 3);
    let long = "é".repeat(40); // 80 bytes: cut to 64 on a boundary
    let recs: Vec<Record> = name_records(5, 1, &long).collect();
    assert_eq!(recs.len(), 4);
    assert_eq!(recs[0].y, 64);
    let mut bytes = Vec::new();
    for r in &recs {
        bytes.extend_from_slice(&r.a.to_le_bytes());
        bytes.extend_from_slice(&r.b.to_le_bytes());
    }
    assert_eq!(core::str::from_utf8(&bytes[..64]).unwrap(), "é".repeat(32));
    assert_eq!(name_records(0, 1, "").count(), 1);
}

#[test]
fn until_full_keeps_the_first_and_counts_the_rest() {
    let b = CpuBuf::new(storage(3));
    for n in 0..5 {
        b.push(&Record::new(n, Kind::Instant, n, 0), Mode::UntilFull);
    }
    let c = b.counts(Mode::UntilFull);
    assert_eq!((c.held, c.dropped, c.overwritten), (3, 2, 0));
    let times: Vec<u64> = (0..c.held)
        .map(|i| b.get(Mode::UntilFull, i).time)
        .collect();
    assert_eq!(times, [0, 1, 2]);
}

#[test]
fn ring_keeps_the_newest_oldest_first() {
    let b = CpuBuf::new(storage(3));
    for n in 0..7 {
        b.push(&Record::new(n, Kind::Instant, n, 0), Mode::Ring);
    }
    let c = b.counts(Mode::Ring);
    assert_eq!((c.held, c.dropped, c.overwritten), (3, 0, 4));
    let times: Vec<u64> = (0..c.held).map(|i| b.get(Mode::Ring, i).time).collect();
    assert_eq!(times, [4, 5, 6]);
}

#[test]
fn freeze_keeps_what_led_up_to_it() {
    let b = CpuBuf::new(storage(4));
    for n in 0..6 {
        b.push(&Record::new(n, Kind::Instant, n, 0), Mode::Freeze);
    }
    b.freeze();
    assert!(b.is_frozen() && b.quiescent());
    for n in 6..9 {
        assert!(!b.push(&Record::new(n, Kind::Instant, n, 0), Mode::Freeze));
    }
    let c = b.counts(Mode::Freeze);
    assert_eq!((c.held, c.dropped, c.overwritten), (4, 3, 2));
    let times: Vec<u64> = (0..c.held).map(|i| b.get(Mode::Freeze, i).time).collect();
    assert_eq!(times, [2, 3, 4, 5]);
    b.clear();
    b.thaw();
    assert!(b.push(&Record::new(9, Kind::Instant, 9, 0), Mode::Freeze));
    assert_eq!(b.counts(Mode::Freeze).held, 1);
}

#[test]
fn modes_by_name() {
    assert_eq!(Mode::from_name("ring"), Some(Mode::Ring));
    assert_eq!(Mode::from_name("full"), Some(Mode::UntilFull));
    assert_eq!(Mode::from_name("freeze"), Some(Mode::Freeze));
    assert_eq!(Mode::from_name("circular"), None);
}

#[test]
fn crc32_is_zlibs() {
    assert_eq!(frame::crc32(0, b"123456789"), 0xcbf4_3926);
    assert_eq!(frame::crc32(0, b""), 0);
}

fn sample_dump() -> (String, Vec<Record>) {
    let recs: Vec<Record> = (0..10)
        .map(|n| Record::new(1000 + n, Kind::Switch, n, n + 1).x(1).y(0x0203))
        .collect();
    let mut text = String::new();
    let mut w = Writer::new(|line: &str| text.push_str(line));
    w.header(&Header {
        cpus: 2,
        mode: Mode::Ring as u8,
        categories: ALL as u8,
        time: 5000,
        capacity: 64,
    });
    w.cpu(0, 10, 1, 2);
    for (i, chunk) in recs.chunks(frame::RECORDS_PER_FRAME).enumerate() {
        w.records(0, (i * frame::RECORDS_PER_FRAME) as u32, chunk);
    }
    w.cpu(1, 0, 0, 0);
    w.thread(0x1_0000_0002, 10, 30, "control <loop>");
    w.string(1, "deadline-miss");
    w.end();
    (text, recs)
}

#[test]
fn dump_round_trips_through_text_with_other_output_between_frames() {
    let (text, recs) = sample_dump();
    let mut mixed = String::from("rhea: booting\n");
    for (i, line) in text.lines().enumerate() {
        if i % 2 == 1 {
            mixed.push_str("partial output without newline");
        }
        mixed.push_str(line);
        mixed.push('\n');
        mixed.push_str("appliance: some other line\n");
    }
    let d = parse(&mixed);
    assert!(d.complete, "{:?}", d.problems);
    assert!(d.problems.is_empty(), "{:?}", d.problems);
    let h = d.header.unwrap();
    assert_eq!((h.cpus, h.time, h.capacity), (2, 5000, 64));
    assert_eq!(d.cpus.len(), 2);
    assert_eq!(d.cpus[0].records, recs);
    assert_eq!((d.cpus[0].dropped, d.cpus[0].overwritten), (1, 2));
    assert_eq!(d.threads[0].name, "control <loop>");
    assert_eq!((d.threads[0].base, d.threads[0].effective), (10, 30));
    assert_eq!(d.strings, [(1, String::from("deadline-miss"))]);
}

#[test]
fn a_lost_byte_loses_one_frame_and_says_where() {
    let (text, recs) = sample_dump();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    // Line 4 (frame #3, records 4..8): one byte of its base64 lost on the wire.
    lines[3].remove(20);
    let d = parse(&lines.join("\n"));
    assert!(d.complete);
    assert_eq!(d.problems.len(), 3, "{:?}", d.problems);
    assert!(
        d.problems[0].starts_with("line 4: a frame after frame #2 is damaged"),
        "{:?}",
        d.problems
    );
    assert!(d.problems[1].contains("#3..#3 missing"), "{:?}", d.problems);
    assert_eq!(
        d.problems[2],
        "cpu0: 4 of its 10 records lost with the frames above"
    );
    let mut kept = recs[..4].to_vec();
    kept.extend_from_slice(&recs[8..]);
    assert_eq!(d.cpus[0].records, kept);
}

#[test]
fn a_flipped_bit_fails_the_checksum() {
    let (text, _) = sample_dump();
    let line = text.lines().nth(2).unwrap();
    let mut bytes = line.as_bytes().to_vec();
    bytes[25] = if bytes[25] == b'A' { b'B' } else { b'A' };
    let damaged = String::from_utf8(bytes).unwrap();
    assert_eq!(decode_line(&damaged), Some(Err(frame::LineError::Checksum)));
    assert!(decode_line(line).unwrap().is_ok());
    assert_eq!(decode_line("no marker here"), None);
    assert_eq!(
        decode_line("~rt zz"),
        Some(Err(frame::LineError::Malformed))
    );
}

#[test]
fn a_cut_off_dump_keeps_what_arrived() {
    let (text, recs) = sample_dump();
    let cut: String = text
        .lines()
        .take(4)
        .map(|l| std::format!("{l}\n"))
        .collect();
    // And the last kept line cut in the middle, as when QEMU is killed mid-line.
    let cut = std::format!("{cut}{}", &text.lines().nth(4).unwrap()[..30]);
    let d = parse(&cut);
    assert!(!d.complete);
    assert_eq!(d.cpus[0].records, recs[..8]);
    assert!(
        d.problems
            .iter()
            .any(|p| p.contains("cut off") && p.contains("#3")),
        "{:?}",
        d.problems
    );
    assert_eq!(
        d.problems.last().unwrap(),
        "cpu0: 2 of its 10 records lost with the frames above"
    );
}

#[test]
fn of_two_dumps_the_last_is_kept() {
    let (text, _) = sample_dump();
    let both = std::format!("{text}{text}");
    let d = parse(&both);
    assert!(d.complete && d.problems.is_empty(), "{:?}", d.problems);
    assert_eq!(d.cpus.len(), 2);
    assert_eq!(d.cpus[0].records.len(), 10);
}

#[test]
fn the_longest_frame_fits_a_line() {
    let recs = [Record::new(u64::MAX, Kind::Switch, u64::MAX, u64::MAX); 4];
    let mut out = std::vec![0u8; frame::MAX_LINE];
    let mut w = Writer::new(|l: &str| {
        assert!(l.len() <= frame::MAX_LINE);
        out[..l.len()].copy_from_slice(l.as_bytes());
    });
    w.records(7, 0, &recs);
    w.thread(1, 2, 3, &"x".repeat(500));
}

#[test]
fn a_damaged_first_line_is_placed_before_the_first_frame() {
    let (text, _) = sample_dump();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    lines[0].remove(20);
    let d = parse(&lines.join("\n"));
    assert!(
        d.problems[0].starts_with("line 1: a frame before the first whole frame is damaged"),
        "{:?}",
        d.problems
    );
    assert!(d.header.is_none());
}
