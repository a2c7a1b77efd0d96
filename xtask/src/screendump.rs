//! The text on a framebuffer console's screen, read from a QEMU screendump.
//!
//! QEMU's monitor command `screendump FILE` writes the guest's display as a binary PPM
//! (netpbm P6, 8-bit samples). A board's framebuffer console (`rhea_drivers::fbcon`) draws
//! 8×16 glyphs of its font from the top-left corner; [`screen_text`] cuts the image into the
//! same cells and names each cell's character with the same font, giving exactly what the
//! guest's `FbConsole::text()` reports for that screen: each row with trailing spaces dropped,
//! then `\n`; [`font::REPLACEMENT`] for the replacement glyph, [`font::UNRECOGNISED`] for a
//! cell that is not exactly one glyph in the two colours. A test can so check what the screen
//! shows against what the console must show, or against the guest's own read-back.

use crate::{Result, fail};
use rhea_drivers::fbcon::{Rgb, font};

/// An image of 8-bit RGB pixels, row after row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Image {
    pub(crate) width: usize,
    pub(crate) height: usize,
    /// `width × height × 3` bytes: red, green, blue per pixel.
    rgb: Vec<u8>,
}

impl Image {
    /// An image of `width × height` pixels; `pixel(x, y)` gives each one's colour.
    #[cfg(test)]
    pub(crate) fn from_fn(
        width: usize,
        height: usize,
        pixel: impl Fn(usize, usize) -> Rgb,
    ) -> Self {
        let mut rgb = Vec::with_capacity(width * height * 3);
        for y in 0..height {
            for x in 0..width {
                let c = pixel(x, y);
                rgb.extend_from_slice(&[c.r, c.g, c.b]);
            }
        }
        Self { width, height, rgb }
    }

    /// The colour at `(x, y)`, which must be inside the image.
    pub(crate) fn pixel(&self, x: usize, y: usize) -> Rgb {
        let i = (y * self.width + x) * 3;
        Rgb::new(self.rgb[i], self.rgb[i + 1], self.rgb[i + 2])
    }

    /// Parses a binary PPM (netpbm's `ppm(5)`: `P6`, width, height and maxval in ASCII
    /// decimal separated by whitespace, `#` comments to the end of a line among them, one
    /// whitespace byte, then the raster). Only maxval 255 — one byte a sample, what QEMU
    /// writes — is read. Bytes after the raster (a further image) are ignored.
    pub(crate) fn from_ppm(bytes: &[u8]) -> Result<Self> {
        if !bytes.starts_with(b"P6") {
            return fail("not a binary PPM: it does not start with P6");
        }
        let mut at = 2;
        let mut fields = [0usize; 3];
        for (field, name) in fields.iter_mut().zip(["width", "height", "maxval"]) {
            // Whitespace and comments before each number.
            loop {
                match bytes.get(at) {
                    Some(b) if b.is_ascii_whitespace() => at += 1,
                    Some(b'#') => {
                        while bytes.get(at).is_some_and(|&b| b != b'\n' && b != b'\r') {
                            at += 1;
                        }
                    }
                    _ => break,
                }
            }
            let start = at;
            while bytes.get(at).is_some_and(u8::is_ascii_digit) {
                at += 1;
            }
            let digits = std::str::from_utf8(&bytes[start..at]).unwrap_or_default();
            *field = match digits.parse() {
                Ok(n) => n,
                Err(_) if digits.is_empty() => {
                    return fail(format!("PPM header: no {name} at byte {start}"));
                }
                Err(_) => return fail(format!("PPM header: {name} {digits} is too large")),
            };
        }
        let [width, height, maxval] = fields;
        if maxval != 255 {
            return fail(format!(
                "PPM maxval {maxval}: only 255 (one byte per sample, as QEMU writes) is read"
            ));
        }
        if width == 0 || height == 0 {
            return fail(format!("PPM of {width}x{height} pixels is empty"));
        }
        if !bytes.get(at).is_some_and(u8::is_ascii_whitespace) {
            return fail(format!(
                "PPM header: no whitespace after maxval at byte {at}"
            ));
        }
        at += 1;
        let Some(len) = width.checked_mul(height).and_then(|n| n.checked_mul(3)) else {
            return fail(format!("PPM of {width}x{height} pixels: size overflows"));
        };
        let raster = &bytes[at..];
        if raster.len() < len {
            return fail(format!(
                "PPM of {width}x{height} pixels is truncated: {} of {len} raster bytes",
                raster.len()
            ));
        }
        Ok(Self {
            width,
            height,
            rgb: raster[..len].to_vec(),
        })
    }

    /// The image as a binary PPM, as QEMU's `screendump` writes it.
    #[cfg(test)]
    pub(crate) fn to_ppm(&self) -> Vec<u8> {
        let mut out = format!("P6\n{} {}\n255\n", self.width, self.height).into_bytes();
        out.extend_from_slice(&self.rgb);
        out
    }
}

/// The text of the character grid in `image` drawn as `fg` on `bg` (for the console's own
/// colours: `rhea_drivers::fbcon::DEFAULT_FOREGROUND` and `DEFAULT_BACKGROUND`): as many rows
/// and columns as whole cells fit, each row with its trailing spaces dropped and then `\n` —
/// the format of `FbConsole::text()`.
pub(crate) fn screen_text(image: &Image, fg: Rgb, bg: Rgb) -> String {
    let (cols, rows) = (image.width / font::WIDTH, image.height / font::HEIGHT);
    let mut text = String::new();
    for row in 0..rows {
        let mut line = String::new();
        for col in 0..cols {
            line.push(cell(image, row, col, fg, bg).unwrap_or(font::UNRECOGNISED));
        }
        text.push_str(line.trim_end_matches(' '));
        text.push('\n');
    }
    text
}

/// The character cell `(row, col)` shows, if its pixels are exactly one glyph in `fg` on
/// `bg`.
fn cell(image: &Image, row: usize, col: usize, fg: Rgb, bg: Rgb) -> Option<char> {
    let mut bitmap = [0u8; font::HEIGHT];
    for (y, bits) in bitmap.iter_mut().enumerate() {
        for x in 0..font::WIDTH {
            let c = image.pixel(col * font::WIDTH + x, row * font::HEIGHT + y);
            if c == fg {
                *bits |= 0x80 >> x;
            } else if c != bg {
                return None;
            }
        }
    }
    font::recognise(&bitmap)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rhea_drivers::fbcon::{
        DEFAULT_BACKGROUND, DEFAULT_FOREGROUND, FbConsole, FramebufferInfo, PixelFormat,
    };
    use std::sync::atomic::{AtomicU32, Ordering};

    /// What QEMU would dump of `mem`: the visible pixels, decoded as `info` says.
    fn screendump(mem: &[AtomicU32], info: FramebufferInfo) -> Vec<u8> {
        Image::from_fn(info.width, info.height, |x, y| {
            info.format
                .decode(mem[y * info.stride + x].load(Ordering::Relaxed))
        })
        .to_ppm()
    }

    #[test]
    fn the_text_of_a_rendered_screen_is_recovered_from_its_ppm() {
        // Both pixel formats, a stride wider than the width, margins right and below, colours
        // of one's own, and every printable character.
        let (fg, bg) = (Rgb::new(0x20, 0xff, 0x40), Rgb::new(0, 0, 0x60));
        for format in [PixelFormat::Rgb, PixelFormat::Bgr] {
            let info = FramebufferInfo {
                width: 8 * 40 + 5,
                height: 16 * 6 + 9,
                stride: 8 * 40 + 11,
                format,
            };
            let mem: Vec<AtomicU32> = (0..info.stride * info.height)
                .map(|_| AtomicU32::new(0))
                .collect();
            let con = FbConsole::new(&mem[..], info)
                .unwrap()
                .with_colors(fg, bg)
                .unwrap();
            con.clear();
            let all: String = (0x20u8..0x7f).map(char::from).collect();
            con.write_bytes(b"this line scrolls away\n");
            con.write_bytes(format!("rhea: fbcon\n{all}\n\tx\u{2014}y\n").as_bytes());
            // Six rows: the first line has scrolled off the top, the last is blank.
            let want = format!(
                "rhea: fbcon\n{}\n{}\n{}\n        x\u{FFFD}y\n\n",
                &all[..40],
                &all[40..80],
                &all[80..]
            );
            let ppm = screendump(&mem, info);
            let image = Image::from_ppm(&ppm).unwrap();
            assert_eq!((image.width, image.height), (info.width, info.height));
            let text = screen_text(&image, fg, bg);
            assert_eq!(text, want, "{format:?}");
            assert_eq!(
                text,
                con.text().to_string(),
                "{format:?}: the guest's read-back"
            );
        }
    }

    #[test]
    fn a_cell_in_other_colours_is_unrecognised_and_default_colours_work() {
        let info = FramebufferInfo {
            width: 24,
            height: 16,
            stride: 24,
            format: PixelFormat::Bgr,
        };
        let mem: Vec<AtomicU32> = (0..24 * 16).map(|_| AtomicU32::new(0)).collect();
        let con = FbConsole::new(&mem[..], info).unwrap();
        con.clear();
        con.write_bytes(b"ok!");
        mem[8 * 24 + 16 + 1].store(0x00ff_0000, Ordering::Relaxed); // a red pixel in '!'
        let image = Image::from_ppm(&screendump(&mem, info)).unwrap();
        let text = screen_text(&image, DEFAULT_FOREGROUND, DEFAULT_BACKGROUND);
        assert_eq!(text, "ok\u{2592}\n");
        assert_eq!(text, con.text().to_string());
    }

    #[test]
    fn ppm_headers_with_comments_and_any_whitespace_parse() {
        let ppm = b"P6 # made by hand\n2\t# width\n1\r\n255\n\x01\x02\x03\x04\x05\x06trailing";
        let image = Image::from_ppm(ppm).unwrap();
        assert_eq!((image.width, image.height), (2, 1));
        assert_eq!(image.pixel(1, 0), Rgb::new(4, 5, 6));
        assert_eq!(Image::from_ppm(&image.to_ppm()).unwrap(), image);
    }

    #[test]
    fn bad_ppms_are_refused_with_the_reason() {
        let err = |bytes: &[u8]| Image::from_ppm(bytes).unwrap_err().to_string();
        assert!(err(b"P3\n1 1\n255\n1 2 3").contains("does not start with P6"));
        assert!(err(b"P6\n1 1\n65535\n").contains("maxval 65535"));
        assert!(err(b"P6\n1\n").contains("no height"));
        assert!(err(b"P6\n0 5\n255\n").contains("empty"));
        assert!(err(b"P6\n2 2\n255\n\x00\x00\x00").contains("truncated: 3 of 12"));
        assert!(err(b"P6\n1 1\n255").contains("no whitespace after maxval"));
        assert!(err(b"P6\n99999999999999999999999 1\n255\n").contains("too large"));
        let huge = format!("P6\n{} {}\n255\n", usize::MAX / 2, 3);
        assert!(err(huge.as_bytes()).contains("overflows"));
    }
}
