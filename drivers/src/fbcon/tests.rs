//! The console against in-memory framebuffers: exact pixels, the text read back, geometry.

use super::*;
use std::string::{String, ToString};
use std::vec::Vec;

/// What memory holds before the console draws: any pixel still this was never written.
const UNTOUCHED: u32 = 0xdead_beef;

fn memory(pixels: usize) -> Vec<AtomicU32> {
    (0..pixels).map(|_| AtomicU32::new(UNTOUCHED)).collect()
}

fn info(width: usize, height: usize, stride: usize, format: PixelFormat) -> FramebufferInfo {
    FramebufferInfo {
        width,
        height,
        stride,
        format,
    }
}

/// A cleared console of `cols` × `rows` cells with no margins, BGR, stride = width.
fn grid(mem: &[AtomicU32], cols: usize, rows: usize) -> FbConsole<&[AtomicU32]> {
    let (w, h) = (cols * 8, rows * 16);
    let con = FbConsole::new(mem, info(w, h, w, PixelFormat::Bgr)).unwrap();
    con.clear();
    con
}

fn text<F: Framebuffer>(con: &FbConsole<F>) -> String {
    con.text().to_string()
}

/// Cell `(row, col)`'s pixels as art: `#` foreground, `.` background, `?` anything else.
fn cell_art<F: Framebuffer>(con: &FbConsole<F>, row: usize, col: usize) -> Vec<String> {
    let base = con.origin(row, col);
    (0..16)
        .map(|y| {
            (0..8)
                .map(
                    |x| match con.fb.read_pixel(base + y * con.info.stride + x) {
                        p if p == con.fg => '#',
                        p if p == con.bg => '.',
                        _ => '?',
                    },
                )
                .collect()
        })
        .collect()
}

/// The letter A as the font draws it, written out again here so a changed glyph is noticed.
#[rustfmt::skip]
const A: [&str; 16] = [
    "........", "........",
    "...#....", "..###...", ".##.##..", "##...##.", "##...##.",
    "#######.", "##...##.", "##...##.", "##...##.", "##...##.",
    "........", "........", "........", "........",
];

const BLANK: [&str; 16] = ["........"; 16];

#[test]
fn a_glyph_is_exact_pixels_in_the_console_colours_and_nothing_else_is_written() {
    let (w, h) = (24, 32); // 3 × 2 cells
    let mem = memory(w * h);
    let con = FbConsole::new(&mem[..], info(w, h, w, PixelFormat::Bgr)).unwrap();
    con.write_bytes(b"A");
    for y in 0..h {
        for x in 0..w {
            let px = mem[y * w + x].load(Ordering::Relaxed);
            if x < 8 && y < 16 {
                let lit = A[y].as_bytes()[x] == b'#';
                let want = if lit { 0x00aa_aaaa } else { 0 };
                assert_eq!(px, want, "pixel ({x}, {y})");
            } else {
                assert_eq!(px, UNTOUCHED, "pixel ({x}, {y}) outside the cell");
            }
        }
    }
    assert_eq!(con.cursor(), Cursor { row: 0, col: 1 });
}

#[test]
fn both_pixel_formats_encode_as_uefi_says() {
    let c = Rgb::new(0x11, 0x22, 0x33);
    assert_eq!(PixelFormat::Rgb.encode(c), 0x0033_2211, "byte 0 red");
    assert_eq!(PixelFormat::Bgr.encode(c), 0x0011_2233, "byte 0 blue");
    for format in [PixelFormat::Rgb, PixelFormat::Bgr] {
        assert_eq!(format.decode(format.encode(c)), c);
        assert_eq!(
            format.decode(0xff00_0000 | format.encode(c)),
            c,
            "reserved byte"
        );
        let mem = memory(8 * 16);
        let fg = Rgb::new(0xff, 0x80, 0x01);
        let bg = Rgb::new(0x00, 0x10, 0x20);
        let con = FbConsole::new(&mem[..], info(8, 16, 8, format))
            .unwrap()
            .with_colors(fg, bg)
            .unwrap();
        con.write_bytes(b"A");
        for (y, row) in A.iter().enumerate() {
            for (x, &p) in row.as_bytes().iter().enumerate() {
                let want = if p == b'#' { fg } else { bg };
                let px = mem[y * 8 + x].load(Ordering::Relaxed);
                assert_eq!(format.decode(px), want, "{format:?} ({x}, {y})");
                assert_eq!(px >> 24, 0, "reserved byte written 0");
            }
        }
        assert_eq!(text(&con), "A\n");
    }
}

#[test]
fn text_reads_back_what_was_written() {
    let mem = memory(10 * 8 * 3 * 16);
    let con = grid(&mem, 10, 3);
    con.write_bytes(b"Hello,\nRhea! ~{}|\n");
    assert_eq!(text(&con), "Hello,\nRhea! ~{}|\n\n");
    assert_eq!(con.cell(0, 0), Some('H'));
    assert_eq!(con.cell(0, 6), Some(' '));
    assert_eq!(con.cell(3, 0), None, "off the grid");
    assert_eq!(con.cell(0, 10), None, "off the grid");
    assert_eq!(con.cursor(), Cursor { row: 2, col: 0 });
    // Every printable character reads back as itself.
    let all: Vec<u8> = (0x20..0x7f).collect();
    let mem = memory(95 * 8 * 16);
    let con = grid(&mem, 95, 1);
    con.write_bytes(&all);
    assert_eq!(text(&con), String::from_utf8(all).unwrap() + "\n");
}

#[test]
fn a_cell_with_foreign_pixels_reads_as_unrecognised() {
    let mem = memory(4 * 8 * 16);
    let con = grid(&mem, 4, 1);
    con.write_bytes(b"ab c");
    mem[8 + 3].store(0x0012_3456, Ordering::Relaxed); // one pixel of 'b'
    assert_eq!(con.cell(0, 1), None);
    assert_eq!(text(&con), "a\u{2592} c\n");
}

#[test]
fn the_screen_scrolls_after_the_last_row() {
    let (cols, rows) = (4, 3);
    let mem = memory(cols * 8 * rows * 16);
    let con = grid(&mem, cols, rows);
    con.write_bytes(b"A\nb\nc");
    assert_eq!(text(&con), "A\nb\nc\n");
    con.write_bytes(b"\nd");
    assert_eq!(text(&con), "b\nc\nd\n");
    assert_eq!(con.cursor(), Cursor { row: 2, col: 1 });
    con.write_bytes(b"\n");
    assert_eq!(text(&con), "c\nd\n\n", "the new last line is blank");
    for col in 0..cols {
        assert_eq!(cell_art(&con, 2, col), BLANK, "cleared to the background");
    }
    con.write_bytes(b"A\n\n");
    assert_eq!(text(&con), "A\n\n\n");
    assert_eq!(cell_art(&con, 0, 0), A, "moved up pixel for pixel");
    // Many screens' worth.
    for i in 0..100u8 {
        con.write_bytes(&[b'0' + i % 10, b'\n']);
    }
    assert_eq!(text(&con), "8\n9\n\n");
}

#[test]
fn long_lines_wrap_at_the_right_edge() {
    let mem = memory(4 * 8 * 3 * 16);
    let con = grid(&mem, 4, 3);
    con.write_bytes(b"abcdef");
    assert_eq!(text(&con), "abcd\nef\n\n");
    // A line exactly as wide as the screen, then a newline: no blank line between.
    con.clear();
    con.write_bytes(b"abcd");
    assert_eq!(con.cursor(), Cursor { row: 0, col: 4 }, "the wrap waits");
    con.write_bytes(b"\nx");
    assert_eq!(text(&con), "abcd\nx\n\n");
    // Wrapping off the last row scrolls.
    con.clear();
    con.write_bytes(b"0123456789abcdefgh");
    assert_eq!(text(&con), "89ab\ncdef\ngh\n");
}

#[test]
fn carriage_return_tab_and_backspace() {
    let mem = memory(20 * 8 * 3 * 16);
    let con = grid(&mem, 20, 3);
    con.write_bytes(b"abc\rX");
    assert_eq!(text(&con), "Xbc\n\n\n");
    assert_eq!(con.cursor(), Cursor { row: 0, col: 1 });

    con.clear();
    con.write_bytes(b"a\tb\tc");
    assert_eq!(con.cell(0, 8), Some('b'));
    assert_eq!(con.cell(0, 16), Some('c'));
    con.write_bytes(b"\tX");
    assert_eq!(
        con.cursor(),
        Cursor { row: 1, col: 1 },
        "a tab stops at the line's end"
    );
    assert_eq!(text(&con), "a       b       c\nX\n\n");
    // A tab erases the cells it passes.
    con.write_bytes(b"\rabcdefghij\r\t");
    assert_eq!(text(&con), "a       b       c\n        ij\n\n");

    con.clear();
    con.write_bytes(b"ab\x08X");
    assert_eq!(text(&con), "aX\n\n\n", "backspace moves without erasing");
    con.write_bytes(b"\x08\x08\x08\x08Y");
    assert_eq!(text(&con), "YX\n\n\n", "not past column 0");
    con.write_bytes(b"\x08 \x08");
    assert_eq!(text(&con), " X\n\n\n", "backspace, space, backspace erases");
    assert_eq!(con.cursor(), Cursor { row: 0, col: 0 });
    // Backspace on a full line steps back onto its last cell.
    con.write_bytes(b"0123456789abcdefghij\x08Z");
    assert_eq!(text(&con), "0123456789abcdefghiZ\n\n\n");
}

#[test]
fn other_controls_are_ignored() {
    let mem = memory(10 * 8 * 16);
    let con = grid(&mem, 10, 1);
    con.write_bytes(b"a\0\x07\x1b[1mb\x7fc");
    assert_eq!(text(&con), "a[1mbc\n");
}

#[test]
fn bytes_outside_ascii_show_one_replacement_glyph_per_sequence() {
    let mem = memory(20 * 8 * 16);
    let con = grid(&mem, 20, 1);
    con.write_bytes("é–😀|".as_bytes()); // 2-, 3- and 4-byte sequences
    assert_eq!(text(&con), "\u{FFFD}\u{FFFD}\u{FFFD}|\n");
    con.clear();
    // A stray continuation byte, invalid bytes, a sequence cut short by ASCII, and a sequence
    // split across two writes.
    con.write_bytes(b"\x80\xc0\xff\xe2x");
    con.write_bytes(b"\xe2\x80");
    con.write_bytes(b"\x94y");
    assert_eq!(text(&con), "\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}x\u{FFFD}y\n");
    assert_eq!(cell_art(&con, 0, 0), cell_art(&con, 0, 3), "the same glyph");
}

#[test]
fn stride_wider_than_the_width_and_margins_are_never_touched() {
    // 33 × 50 visible in rows of 40: 4 × 3 cells, a 1-pixel right margin, a 2-row bottom one.
    let (w, h, stride) = (33, 50, 40);
    for format in [PixelFormat::Rgb, PixelFormat::Bgr] {
        let mem = memory(stride * h);
        let con = FbConsole::new(&mem[..], info(w, h, stride, format)).unwrap();
        assert_eq!((con.cols(), con.rows()), (4, 3));
        con.clear();
        con.write_bytes(b"abcdefghijklmnopqrstuvwxyz\n\tA\x08B");
        // The tab fills the line, so `A` wraps (scrolling); `B` overwrites it.
        assert_eq!(text(&con), "yz\n\nB\n", "{format:?}");
        for y in 0..h {
            for x in 0..stride {
                let touched = mem[y * stride + x].load(Ordering::Relaxed) != UNTOUCHED;
                assert_eq!(touched, x < 32 && y < 48, "{format:?} pixel ({x}, {y})");
            }
        }
    }
}

#[test]
fn absurd_geometry_is_refused_at_construction() {
    let mem = memory(1000);
    let bgr = PixelFormat::Bgr;
    let refused = |w, h, stride| FbConsole::new(&mem[..], info(w, h, stride, bgr)).unwrap_err();
    assert_eq!(
        refused(0, 16, 8),
        FbError::Empty {
            width: 0,
            height: 16
        }
    );
    assert_eq!(
        refused(8, 0, 8),
        FbError::Empty {
            width: 8,
            height: 0
        }
    );
    assert_eq!(
        refused(16, 16, 8),
        FbError::StrideTooSmall {
            stride: 8,
            width: 16
        }
    );
    assert_eq!(
        refused(7, 100, 8),
        FbError::NoRoomForACell {
            width: 7,
            height: 100
        }
    );
    assert_eq!(
        refused(100, 15, 100),
        FbError::NoRoomForACell {
            width: 100,
            height: 15
        }
    );
    assert_eq!(refused(8, 16, usize::MAX), FbError::SizeOverflows);
    assert_eq!(refused(8, usize::MAX, 8), FbError::SizeOverflows);
    assert_eq!(
        refused(10, 101, 10),
        FbError::BufferTooSmall {
            needed: 1010,
            len: 1000
        }
    );
    assert_eq!(
        refused(8, 16, 63),
        FbError::BufferTooSmall {
            needed: 1008,
            len: 1000
        }
    );
    let empty: &[AtomicU32] = &[];
    assert_eq!(
        FbConsole::new(empty, info(8, 16, 8, bgr)).unwrap_err(),
        FbError::BufferTooSmall {
            needed: 128,
            len: 0
        }
    );
    let con = FbConsole::new(&mem[..], info(10, 100, 10, bgr)).unwrap();
    let same = Rgb::new(1, 2, 3);
    assert_eq!(
        con.with_colors(same, same).unwrap_err(),
        FbError::InvisibleText
    );
    // Each error says what is wrong in words.
    assert_eq!(
        FbError::BufferTooSmall {
            needed: 1010,
            len: 1000
        }
        .to_string(),
        "framebuffer of 1000 pixels is smaller than stride x height = 1010"
    );
    assert_eq!(
        FbError::NoRoomForACell {
            width: 7,
            height: 100
        }
        .to_string(),
        "framebuffer of 7x100 pixels has no room for one 8x16 character cell"
    );
}

#[test]
fn the_smallest_screen_one_cell_takes_anything() {
    let mem = memory(8 * 16);
    let con = FbConsole::new(&mem[..], info(8, 16, 8, PixelFormat::Rgb)).unwrap();
    con.clear();
    let every_byte: Vec<u8> = (0..=255).collect();
    for _ in 0..3 {
        con.write_bytes(&every_byte);
    }
    con.write_bytes(b"\tq\x08\x08\n\rz");
    assert_eq!(text(&con), "z\n");
}

#[test]
fn a_mut_u32_slice_is_a_framebuffer_through_cells() {
    let mut pixels = [UNTOUCHED; 8 * 16 * 2];
    {
        let cells = Cell::from_mut(&mut pixels[..]).as_slice_of_cells();
        let con = FbConsole::new(cells, info(16, 16, 16, PixelFormat::Bgr)).unwrap();
        con.clear();
        con.write_bytes(b"Ab");
        assert_eq!(text(&con), "Ab\n");
    }
    assert_eq!(pixels[0], 0);
    assert_eq!(pixels[2 * 16 + 3], 0x00aa_aaaa, "the tip of the A");
}

#[test]
fn the_console_is_a_hal_console_and_a_fmt_writer() {
    let mem = memory(12 * 8 * 2 * 16);
    let mut con = grid(&mem, 12, 2);
    {
        let dyn_console: &dyn Console = &con;
        dyn_console.write_bytes(b"hal ");
    }
    fmt::Write::write_fmt(&mut con, format_args!("{}+{}\n", 1, 2)).unwrap();
    assert_eq!(text(&con), "hal 1+2\n\n");
}

#[test]
fn concurrent_writers_do_not_tear_glyphs() {
    let mem = memory(16 * 8 * 8 * 16);
    let mut con = grid(&mem, 16, 8);
    con.busy_spin_limit = u32::MAX; // the test host may preempt a writer for long
    let con = con;
    std::thread::scope(|s| {
        for t in 0..4u8 {
            let con = &con;
            s.spawn(move || {
                for i in 0..200u8 {
                    con.write_bytes(&[b'a' + t, b'0' + i % 10, b' ', b'z' - t, b'\n']);
                }
            });
        }
    });
    let screen = text(&con);
    assert!(!screen.contains(font::UNRECOGNISED), "{screen}");
    // Each line is one writer's whole message: the writers took turns.
    for line in screen.lines().filter(|l| !l.is_empty()) {
        let b = line.as_bytes();
        assert_eq!(b.len(), 4, "{line:?} in\n{screen}");
        assert_eq!(b[0] - b'a', b'z' - b[3], "{line:?} in\n{screen}");
    }
}

#[test]
fn a_writer_that_never_finishes_holds_up_the_next_only_boundedly() {
    // As when a fault handler prints over the line it interrupted on the same CPU.
    let mem = memory(4 * 8 * 16);
    let mut con = grid(&mem, 4, 1);
    con.busy_spin_limit = 1000;
    con.busy.store(true, Ordering::Relaxed);
    con.write_bytes(b"ok");
    assert_eq!(text(&con), "ok\n");
    assert!(con.busy.load(Ordering::Relaxed), "still the other writer's");
}

#[test]
fn debug_shows_geometry_and_cursor() {
    let mem = memory(8 * 16);
    let con = grid(&mem, 1, 1);
    let s = std::format!("{con:?}");
    assert!(
        s.contains("cols: 1") && s.contains("cursor: Cursor { row: 0, col: 0 }"),
        "{s}"
    );
}
