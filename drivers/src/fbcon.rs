//! A text console on a linear 32-bit-per-pixel framebuffer, as UEFI's Graphics Output Protocol
//! leaves one (UEFI 2.10 §12.9: `EFI_GRAPHICS_OUTPUT_MODE_INFORMATION` gives the resolution,
//! `PixelsPerScanLine` — the stride — and the pixel format; `FrameBufferBase` the memory).
//!
//! The screen is a grid of 8×16 character cells in the [`font`]'s glyphs, filling the
//! framebuffer from its top-left corner (pixels right of the last whole column and below the
//! last whole row are never touched). Bytes are drawn as they come:
//!
//! - printable ASCII: its glyph at the cursor, which moves right; writing past the last column
//!   wraps to the next line first (the wrap waits for the next glyph, as on a VT100, so a line
//!   exactly as wide as the screen followed by `\n` leaves no blank line);
//! - `\n` starts the next line (column 0: the console does what a terminal's `onlcr` does, as
//!   the UART driver sends `\r\n`); `\r` returns to column 0; `\t` writes spaces up to the next
//!   multiple of 8 or the end of the line; backspace (0x08) moves left one cell, not past
//!   column 0, erasing nothing (`"\x08 \x08"` erases);
//! - below the last line the screen scrolls: every pixel row of the text area moves up one
//!   line and the last line is cleared to the background;
//! - other control bytes and DEL are ignored (escape sequences are not interpreted);
//! - anything else shows the replacement glyph: once per UTF-8 sequence (a lead byte draws it
//!   and its continuation bytes draw nothing), once per stray byte.
//!
//! Pixels go through the [`Framebuffer`] trait, whose methods take `&self` (as the UARTs'
//! `Registers` do) so that [`FbConsole`] can be the board's [`Console`], which is written from
//! any context through a shared reference, with no `unsafe` here: the cursor lives in atomics.
//! `[AtomicU32]` and `[Cell<u32>]` are framebuffers (a `&mut [u32]` becomes the latter through
//! `Cell::from_mut(..).as_slice_of_cells()`); a board implements the trait on its mapping of
//! the GOP memory, or builds a `&'static [AtomicU32]` over it.
//!
//! Concurrent writers: a writer waits, boundedly, for the one before it to finish
//! (`BUSY_SPIN_LIMIT`), then writes regardless — the one before may be the code a fault
//! handler interrupted on this CPU, which will not finish first. Writers that overlap so can
//! misplace characters (the cursor is read and stored once per byte) but never write outside
//! the framebuffer: every cursor value is checked against the grid before it is used.
//!
//! Reading back: [`FbConsole::cell`] and [`FbConsole::text`] recover the characters on screen
//! from the pixels themselves (a cell whose pixels are exactly a glyph in the console's colours),
//! with no shadow copy to keep: what they report is what is shown. xtask's screendump decoder
//! reads a QEMU screendump the same way, so a test can compare the two.
//!
//! Work per byte is bounded (`// RT:` below): a glyph is 128 pixel writes, a tab at most 8
//! glyphs, and a line feed at most one scroll — a copy of the text area less one line and a
//! clear of one line. No allocation.

pub mod font;

use core::cell::Cell;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicUsize, Ordering};
use rhea_hal::Console;

/// A colour as 8-bit red, green and blue.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Rgb {
    /// Red.
    pub r: u8,
    /// Green.
    pub g: u8,
    /// Blue.
    pub b: u8,
}

impl Rgb {
    /// The colour `r`, `g`, `b`.
    pub const fn new(r: u8, g: u8, b: u8) -> Self {
        Self { r, g, b }
    }
}

/// The console's default text colour: the PC text mode's light grey.
pub const DEFAULT_FOREGROUND: Rgb = Rgb::new(0xaa, 0xaa, 0xaa);
/// The console's default background: black.
pub const DEFAULT_BACKGROUND: Rgb = Rgb::new(0, 0, 0);

/// How a 32-bit pixel holds a colour (UEFI 2.10 §12.9, `EFI_GRAPHICS_PIXEL_FORMAT`). A pixel is
/// four bytes in memory; the `u32` values here are those bytes read little-endian (as x86 and
/// Arm do), so byte 0 is bits 7:0. The fourth byte is reserved: written 0, ignored on reading.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PixelFormat {
    /// `PixelRedGreenBlueReserved8BitPerColor`: byte 0 red, 1 green, 2 blue.
    Rgb,
    /// `PixelBlueGreenRedReserved8BitPerColor`: byte 0 blue, 1 green, 2 red (`0x00RRGGBB`).
    Bgr,
}

impl PixelFormat {
    /// The pixel value showing `c`.
    pub const fn encode(self, c: Rgb) -> u32 {
        let (lo, hi) = match self {
            PixelFormat::Rgb => (c.r, c.b),
            PixelFormat::Bgr => (c.b, c.r),
        };
        lo as u32 | (c.g as u32) << 8 | (hi as u32) << 16
    }

    /// The colour pixel value `px` shows.
    pub const fn decode(self, px: u32) -> Rgb {
        let (lo, g, hi) = (px as u8, (px >> 8) as u8, (px >> 16) as u8);
        match self {
            PixelFormat::Rgb => Rgb::new(lo, g, hi),
            PixelFormat::Bgr => Rgb::new(hi, g, lo),
        }
    }
}

/// The shape of a framebuffer, all in pixels: what GOP's mode information says.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FramebufferInfo {
    /// Visible pixels per row (`HorizontalResolution`).
    pub width: usize,
    /// Rows (`VerticalResolution`).
    pub height: usize,
    /// Pixels from the start of one row to the start of the next (`PixelsPerScanLine`), at
    /// least `width`.
    pub stride: usize,
    /// How a pixel holds a colour.
    pub format: PixelFormat,
}

/// Why [`FbConsole::new`] refused a framebuffer.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FbError {
    /// The width or the height is zero.
    Empty {
        /// The width given.
        width: usize,
        /// The height given.
        height: usize,
    },
    /// A row's stride is shorter than its visible width.
    StrideTooSmall {
        /// The stride given.
        stride: usize,
        /// The width given.
        width: usize,
    },
    /// Not even one 8×16 character cell fits.
    NoRoomForACell {
        /// The width given.
        width: usize,
        /// The height given.
        height: usize,
    },
    /// `stride × height` does not fit in a `usize`.
    SizeOverflows,
    /// The framebuffer holds fewer pixels than `stride × height`.
    BufferTooSmall {
        /// Pixels the geometry needs.
        needed: usize,
        /// Pixels the framebuffer has.
        len: usize,
    },
    /// Text and background are the same colour: nothing would show, nor read back.
    InvisibleText,
}

impl fmt::Display for FbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FbError::Empty { width, height } => {
                write!(f, "framebuffer of {width}x{height} pixels is empty")
            }
            FbError::StrideTooSmall { stride, width } => write!(
                f,
                "framebuffer stride of {stride} pixels is less than its width of {width}"
            ),
            FbError::NoRoomForACell { width, height } => write!(
                f,
                "framebuffer of {width}x{height} pixels has no room for one {}x{} character cell",
                font::WIDTH,
                font::HEIGHT
            ),
            FbError::SizeOverflows => f.write_str("framebuffer stride x height overflows"),
            FbError::BufferTooSmall { needed, len } => write!(
                f,
                "framebuffer of {len} pixels is smaller than stride x height = {needed}"
            ),
            FbError::InvisibleText => f.write_str("text and background are the same colour"),
        }
    }
}

/// Pixel memory, addressed by index (`y × stride + x`). Methods take `&self`: the memory is
/// shared with whatever shows it, and the console is written through shared references.
/// Indexes the console passes are below `stride × height`, which [`FbConsole::new`] checked
/// against [`len_pixels`](Framebuffer::len_pixels).
pub trait Framebuffer {
    /// How many pixels the memory holds.
    fn len_pixels(&self) -> usize;
    /// Reads the pixel at `index`.
    fn read_pixel(&self, index: usize) -> u32;
    /// Writes the pixel at `index`.
    fn write_pixel(&self, index: usize, value: u32);
    /// Sets `count` pixels from `start` to `value`.
    fn fill(&self, start: usize, count: usize, value: u32) {
        for i in start..start + count {
            self.write_pixel(i, value);
        }
    }
    /// Copies `count` pixels from `src` to `dest`, where `dest < src` (ranges may overlap: a
    /// forward copy). A board whose memory is slow to read may do better.
    fn copy_within(&self, src: usize, dest: usize, count: usize) {
        for i in 0..count {
            self.write_pixel(dest + i, self.read_pixel(src + i));
        }
    }
}

impl Framebuffer for [AtomicU32] {
    fn len_pixels(&self) -> usize {
        self.len()
    }
    fn read_pixel(&self, index: usize) -> u32 {
        self.get(index).map_or(0, |p| p.load(Ordering::Relaxed))
    }
    fn write_pixel(&self, index: usize, value: u32) {
        if let Some(p) = self.get(index) {
            p.store(value, Ordering::Relaxed);
        }
    }
}

impl Framebuffer for [Cell<u32>] {
    fn len_pixels(&self) -> usize {
        self.len()
    }
    fn read_pixel(&self, index: usize) -> u32 {
        self.get(index).map_or(0, Cell::get)
    }
    fn write_pixel(&self, index: usize, value: u32) {
        if let Some(p) = self.get(index) {
            p.set(value);
        }
    }
}

impl<T: Framebuffer + ?Sized> Framebuffer for &T {
    fn len_pixels(&self) -> usize {
        (**self).len_pixels()
    }
    fn read_pixel(&self, index: usize) -> u32 {
        (**self).read_pixel(index)
    }
    fn write_pixel(&self, index: usize, value: u32) {
        (**self).write_pixel(index, value);
    }
    fn fill(&self, start: usize, count: usize, value: u32) {
        (**self).fill(start, count, value);
    }
    fn copy_within(&self, src: usize, dest: usize, count: usize) {
        (**self).copy_within(src, dest, count);
    }
}

/// Where the next character goes: a row, and a column that may equal the column count (the
/// line is full; the next glyph wraps first).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Cursor {
    /// From 0 at the top.
    pub row: usize,
    /// From 0 at the left, at most the column count.
    pub col: usize,
}

/// Cells per tab stop.
const TAB: usize = 8;

/// How many times a writer looks for the one before it to finish before writing anyway: long
/// enough for another CPU to scroll a large screen, short enough that a fault report written
/// over an interrupted line is not held up noticeably.
const BUSY_SPIN_LIMIT: u32 = 1 << 20;

/// A text console on a framebuffer. See the module documentation.
pub struct FbConsole<F> {
    fb: F,
    info: FramebufferInfo,
    cols: usize,
    rows: usize,
    fg: u32,
    bg: u32,
    row: AtomicUsize,
    col: AtomicUsize,
    /// UTF-8 continuation bytes still to swallow (their sequence's glyph is already drawn).
    utf8_pending: AtomicU8,
    /// A writer is between its first and last byte.
    busy: AtomicBool,
    /// [`BUSY_SPIN_LIMIT`], lifted by tests whose host may preempt a writer for long.
    busy_spin_limit: u32,
}

impl<F> fmt::Debug for FbConsole<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FbConsole")
            .field("info", &self.info)
            .field("cols", &self.cols)
            .field("rows", &self.rows)
            .field("cursor", &self.cursor())
            .finish_non_exhaustive()
    }
}

impl<F> FbConsole<F> {
    /// The geometry the console was made with.
    pub fn info(&self) -> FramebufferInfo {
        self.info
    }

    /// Character cells across.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Character cells down.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Where the next character goes.
    pub fn cursor(&self) -> Cursor {
        let (row, col) = self.load_cursor();
        Cursor { row, col }
    }

    /// Claims the console for one writer: waits boundedly for the one before, then goes ahead
    /// regardless (see the module documentation). Returns whether it claimed it.
    fn enter(&self) -> bool {
        // RT: bounded by BUSY_SPIN_LIMIT.
        for _ in 0..self.busy_spin_limit {
            if self
                .busy
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return true;
            }
            core::hint::spin_loop();
        }
        false
    }

    fn leave(&self, owned: bool) {
        if owned {
            self.busy.store(false, Ordering::Release);
        }
    }

    /// The cursor, made safe to use: a row on the grid, a column at most the column count
    /// (overlapping writers could have stored anything in between).
    fn load_cursor(&self) -> (usize, usize) {
        let row = self.row.load(Ordering::Relaxed).min(self.rows - 1);
        let col = self.col.load(Ordering::Relaxed).min(self.cols);
        (row, col)
    }

    fn store_cursor(&self, row: usize, col: usize) {
        self.row.store(row, Ordering::Relaxed);
        self.col.store(col, Ordering::Relaxed);
    }

    /// The index of the top-left pixel of cell `(row, col)`.
    fn origin(&self, row: usize, col: usize) -> usize {
        row * font::HEIGHT * self.info.stride + col * font::WIDTH
    }
}

impl<F: Framebuffer> FbConsole<F> {
    /// A console over `fb` shaped as `info`, light grey on black, cursor at the top left.
    /// Checks the geometry against the memory and refuses what would write outside it; draws
    /// nothing (call [`clear`](Self::clear) to start from a blank screen).
    pub fn new(fb: F, info: FramebufferInfo) -> Result<Self, FbError> {
        let FramebufferInfo {
            width,
            height,
            stride,
            ..
        } = info;
        if width == 0 || height == 0 {
            return Err(FbError::Empty { width, height });
        }
        if stride < width {
            return Err(FbError::StrideTooSmall { stride, width });
        }
        if width < font::WIDTH || height < font::HEIGHT {
            return Err(FbError::NoRoomForACell { width, height });
        }
        let needed = stride.checked_mul(height).ok_or(FbError::SizeOverflows)?;
        let len = fb.len_pixels();
        if len < needed {
            return Err(FbError::BufferTooSmall { needed, len });
        }
        Ok(Self {
            fb,
            info,
            cols: width / font::WIDTH,
            rows: height / font::HEIGHT,
            fg: info.format.encode(DEFAULT_FOREGROUND),
            bg: info.format.encode(DEFAULT_BACKGROUND),
            row: AtomicUsize::new(0),
            col: AtomicUsize::new(0),
            utf8_pending: AtomicU8::new(0),
            busy: AtomicBool::new(false),
            busy_spin_limit: BUSY_SPIN_LIMIT,
        })
    }

    /// The same console drawing `fg` on `bg`; refused if they are the same colour.
    pub fn with_colors(mut self, fg: Rgb, bg: Rgb) -> Result<Self, FbError> {
        if fg == bg {
            return Err(FbError::InvisibleText);
        }
        self.fg = self.info.format.encode(fg);
        self.bg = self.info.format.encode(bg);
        Ok(self)
    }

    /// Paints the text area with the background and puts the cursor at the top left.
    pub fn clear(&self) {
        let owned = self.enter();
        // RT: one pass over the text area.
        for y in 0..self.rows * font::HEIGHT {
            self.fb
                .fill(y * self.info.stride, self.cols * font::WIDTH, self.bg);
        }
        self.store_cursor(0, 0);
        self.utf8_pending.store(0, Ordering::Relaxed);
        self.leave(owned);
    }

    /// Draws `bytes` (see the module documentation for what each byte does).
    pub fn write_bytes(&self, bytes: &[u8]) {
        let owned = self.enter();
        // RT: bounded by bytes.len(), each byte bounded as `put` says.
        for &b in bytes {
            self.put(b);
        }
        self.leave(owned);
    }

    /// The character cell `(row, col)` shows: printable ASCII, [`font::REPLACEMENT`], or
    /// `None` when its pixels are not exactly one glyph in the console's colours, or it is
    /// off the grid. Reads 128 pixels.
    pub fn cell(&self, row: usize, col: usize) -> Option<char> {
        if row >= self.rows || col >= self.cols {
            return None;
        }
        let base = self.origin(row, col);
        let mut bitmap = [0u8; font::HEIGHT];
        for (y, bits) in bitmap.iter_mut().enumerate() {
            for x in 0..font::WIDTH {
                let px = self.fb.read_pixel(base + y * self.info.stride + x);
                if px == self.fg {
                    *bits |= 0x80 >> x;
                } else if px != self.bg {
                    return None;
                }
            }
        }
        font::recognise(&bitmap)
    }

    /// The text on screen, read back from the pixels: [`fmt::Display`] writes each row, trailing
    /// spaces dropped, followed by `\n`; a cell [`cell`](Self::cell) cannot read shows as
    /// [`font::UNRECOGNISED`].
    pub fn text(&self) -> ScreenText<'_, F> {
        ScreenText(self)
    }

    /// One byte. RT: at most `TAB` glyphs and one scroll.
    fn put(&self, b: u8) {
        let pending = self.utf8_pending.load(Ordering::Relaxed);
        if pending > 0 {
            self.utf8_pending.store(0, Ordering::Relaxed);
            if b & 0xc0 == 0x80 {
                // A continuation byte of the sequence whose replacement glyph is drawn.
                self.utf8_pending.store(pending - 1, Ordering::Relaxed);
                return;
            }
            // The sequence ended early; this byte stands on its own.
        }
        match b {
            b' '..=b'~' => self.glyph(char::from(b)),
            b'\n' => {
                let (row, _) = self.load_cursor();
                self.line_feed(row);
            }
            b'\r' => {
                let (row, _) = self.load_cursor();
                self.store_cursor(row, 0);
            }
            b'\t' => {
                let (_, col) = self.load_cursor();
                if col < self.cols {
                    let stop = ((col / TAB + 1) * TAB).min(self.cols);
                    // RT: at most TAB cells.
                    for _ in col..stop {
                        self.glyph(' ');
                    }
                }
            }
            0x08 => {
                let (row, col) = self.load_cursor();
                self.store_cursor(row, col.saturating_sub(1));
            }
            0x00..=0x1f | 0x7f => {}
            _ => {
                // UTF-8 (RFC 3629): a lead byte says how many continuation bytes follow. C0,
                // C1 and F5–FF are never valid, and a stray continuation byte has no lead.
                let following = match b {
                    0xc2..=0xdf => 1,
                    0xe0..=0xef => 2,
                    0xf0..=0xf4 => 3,
                    _ => 0,
                };
                self.glyph(font::REPLACEMENT);
                self.utf8_pending.store(following, Ordering::Relaxed);
            }
        }
    }

    /// Draws `c`'s glyph at the cursor (wrapping first if the line is full) and moves right.
    fn glyph(&self, c: char) {
        let (mut row, mut col) = self.load_cursor();
        if col >= self.cols {
            row = self.line_feed(row);
            col = 0;
        }
        let base = self.origin(row, col);
        let glyph = font::glyph(c);
        // RT: 8×16 pixel writes.
        for (y, &bits) in glyph.iter().enumerate() {
            let line = base + y * self.info.stride;
            for x in 0..font::WIDTH {
                let px = if bits & (0x80 >> x) != 0 {
                    self.fg
                } else {
                    self.bg
                };
                self.fb.write_pixel(line + x, px);
            }
        }
        self.store_cursor(row, col + 1);
    }

    /// Moves the cursor to the start of the line below `row`, scrolling if `row` is the last;
    /// returns the new row.
    fn line_feed(&self, row: usize) -> usize {
        let next = if row + 1 < self.rows {
            row + 1
        } else {
            self.scroll();
            self.rows - 1
        };
        self.store_cursor(next, 0);
        next
    }

    /// Moves every pixel row of the text area up one line of cells and clears the last line.
    fn scroll(&self) {
        let stride = self.info.stride;
        let span = self.cols * font::WIDTH;
        let text_height = self.rows * font::HEIGHT;
        // RT: (rows − 1) × 16 row copies and 16 row fills of `span` pixels each.
        for y in 0..text_height - font::HEIGHT {
            self.fb
                .copy_within((y + font::HEIGHT) * stride, y * stride, span);
        }
        for y in text_height - font::HEIGHT..text_height {
            self.fb.fill(y * stride, span, self.bg);
        }
    }
}

impl<F: Framebuffer + Sync> Console for FbConsole<F> {
    fn write_bytes(&self, bytes: &[u8]) {
        FbConsole::write_bytes(self, bytes);
    }
}

impl<F: Framebuffer> fmt::Write for FbConsole<F> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        FbConsole::write_bytes(self, s.as_bytes());
        Ok(())
    }
}

/// The text on a console's screen; see [`FbConsole::text`].
pub struct ScreenText<'a, F>(&'a FbConsole<F>);

impl<F> fmt::Debug for ScreenText<'_, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ScreenText").field(self.0).finish()
    }
}

impl<F: Framebuffer> fmt::Display for ScreenText<'_, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write as _;
        for row in 0..self.0.rows {
            // Spaces are written only once something follows them on the row.
            let mut spaces = 0;
            for col in 0..self.0.cols {
                match self.0.cell(row, col).unwrap_or(font::UNRECOGNISED) {
                    ' ' => spaces += 1,
                    c => {
                        for _ in 0..spaces {
                            f.write_char(' ')?;
                        }
                        spaces = 0;
                        f.write_char(c)?;
                    }
                }
            }
            f.write_char('\n')?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
