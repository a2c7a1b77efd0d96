//! # `rhea-svgplot` — inline SVG charts for a status page
//!
//! Pure functions that append an `<svg>` element to a `String`, for an HTML page served by a
//! Rhea app (the appliance's `/`): no scripts, no external assets, no floating point (core has
//! no `log10` without `std`; the log axes use [`log2_q8`], integer arithmetic). Each chart
//! draws its data in one of the [`colour`]s, which nothing else on a page uses, so that a
//! screenshot can be checked for them (`cargo xtask test`'s status-page case does).
//!
//! - [`lateness`]: a latency series (one bar per window: its maximum; a line: its mean) on a
//!   log axis from 1 µs, with the deadline as a reference line and the x axis in seconds ago;
//! - [`histogram`]: log2 buckets of microseconds as bars on a log count axis, each bar
//!   labelled with its bucket;
//! - [`share_bars`]: horizontal bars of a share in per mille (CPU load, per-thread CPU time).
//!
//! Text that comes from outside (a thread's name) goes through [`Escaped`]. Bars are drawn as
//! one `<path>` per series, so a 240-window series costs ~6 KiB of page, not 15.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::string::String;
use core::fmt::{self, Write};

/// An sRGB colour; displays as `#rrggbb`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rgb(pub u8, pub u8, pub u8);

impl fmt::Display for Rgb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{:02x}{:02x}{:02x}", self.0, self.1, self.2)
    }
}

/// The data colours: each chart's marks have their own, used nowhere else on the page.
pub mod colour {
    use super::Rgb;
    /// [`super::lateness`]: each window's maximum (bars).
    pub const LATE_MAX: Rgb = Rgb(0x1f, 0x6f, 0xeb);
    /// [`super::lateness`]: each window's mean (line).
    pub const LATE_MEAN: Rgb = Rgb(0xe8, 0x59, 0x0c);
    /// [`super::lateness`] and [`super::histogram`]: the deadline.
    pub const DEADLINE: Rgb = Rgb(0xd1, 0x24, 0x2f);
    /// [`super::histogram`]'s bars.
    pub const HISTOGRAM: Rgb = Rgb(0x2d, 0xa4, 0x4e);
    /// [`super::share_bars`] for CPU load.
    pub const CPU: Rgb = Rgb(0x82, 0x50, 0xdf);
    /// [`super::share_bars`] for threads.
    pub const THREAD: Rgb = Rgb(0xbf, 0x39, 0x89);
    /// Grid lines, tracks and axes (not data).
    pub const GRID: Rgb = Rgb(0xd0, 0xd7, 0xde);
    pub const AXIS: Rgb = Rgb(0x57, 0x60, 0x6a);
    pub const TRACK: Rgb = Rgb(0xee, 0xf1, 0xf4);
}

/// Text made safe for HTML and SVG, as element content or a quoted attribute: `&`, `<`, `>`,
/// `"` and `'` become character references.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(i) = rest.find(['&', '<', '>', '"', '\'']) {
            f.write_str(&rest[..i])?;
            f.write_str(match rest.as_bytes()[i] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[i + 1..];
        }
        f.write_str(rest)
    }
}

/// `log2(v)` in 1/256ths, rounded down (`v` of 0 counts as 1): the log axes' scale. Exact to
/// the 1/256 for every `u64` (the fractional bits by repeated squaring).
pub fn log2_q8(v: u64) -> u32 {
    let v = v.max(1);
    let k = v.ilog2();
    // The mantissa in [1, 2) as Q32.
    let mut m = (u128::from(v) << 32) >> k;
    let mut frac = 0u32;
    for _ in 0..8 {
        m = (m * m) >> 32;
        frac <<= 1;
        if m >= 2 << 32 {
            m >>= 1;
            frac |= 1;
        }
    }
    (k << 8) | frac
}

/// A log scale from `lo` to `hi` (both ≥ 1) onto `len` pixels: the offset of `v` from `lo`'s
/// end, clamped to the range.
#[derive(Debug, Clone, Copy)]
struct LogScale {
    lo: u32,
    hi: u32,
    len: u32,
}

impl LogScale {
    fn new(lo: u64, hi: u64, len: u32) -> LogScale {
        let (lo, hi) = (log2_q8(lo), log2_q8(hi));
        LogScale {
            lo,
            hi: hi.max(lo + 1),
            len,
        }
    }

    fn at(&self, v: u64) -> u32 {
        let l = log2_q8(v).clamp(self.lo, self.hi);
        (u64::from(l - self.lo) * u64::from(self.len) / u64::from(self.hi - self.lo)) as u32
    }
}

/// The smallest power of ten that is ≥ `at_least` and ≥ `v + 1`.
fn decade_above(v: u64, at_least: u64) -> u64 {
    let mut d = at_least.max(1);
    while d <= v {
        d = d.saturating_mul(10);
        if d == u64::MAX {
            break;
        }
    }
    d
}

/// A duration of nanoseconds as a short axis label: `1 µs`, `250 µs`, `10 ms`, `1.5 s`.
pub struct Nanos(pub u64);

impl fmt::Display for Nanos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = self.0;
        let (unit, scale) = match ns {
            0..1_000 => return write!(f, "{ns} ns"),
            1_000..1_000_000 => ("µs", 1_000),
            1_000_000..1_000_000_000 => ("ms", 1_000_000),
            _ => ("s", 1_000_000_000),
        };
        let tenths = u128::from(ns) * 10 / scale;
        if tenths % 10 == 0 || tenths >= 100 {
            write!(f, "{} {unit}", tenths / 10)
        } else {
            write!(f, "{}.{} {unit}", tenths / 10, tenths % 10)
        }
    }
}

impl fmt::Debug for Nanos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The top of [`lateness`]'s axis at most (100 s).
const TOP_NS: u64 = 100_000_000_000;

/// The text style every chart uses.
const FONT: &str = "font-family=\"sans-serif\" font-size=\"12\"";

/// One window of a latency series.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    /// The largest lateness in the window.
    pub max_ns: u64,
    /// The mean lateness over the window.
    pub mean_ns: u64,
}

/// What [`lateness`] draws.
#[derive(Debug, Clone, Copy)]
pub struct Lateness<'a> {
    /// The windows, oldest first; the last ended most recently.
    pub windows: &'a [Window],
    /// How many windows the x axis has room for (the series' bound); the newest is at the
    /// right, and a series shorter than this leaves the left empty.
    pub capacity: usize,
    /// Each window's length.
    pub window_ns: u64,
    /// The deadline (the period): a reference line.
    pub deadline_ns: u64,
}

/// Appends a chart of a latency series: per window a bar up to its maximum and a line through
/// the means, on a log axis from 1 µs to the decade above the largest value and the deadline,
/// with the deadline dashed across; the x axis in seconds ago.
pub fn lateness(out: &mut String, l: &Lateness<'_>) {
    let cap = l.capacity.max(l.windows.len()).max(1);
    let windows = &l.windows[l.windows.len().saturating_sub(cap)..];
    let slot = (960 / cap).clamp(1, 16) as u32;
    let (x0, top, ph) = (70u32, 30u32, 200u32);
    let pw = slot * cap as u32;
    let (x1, bottom) = (x0 + pw, top + ph);
    // Room for the caption and the legend however few windows there are.
    let (width, height) = ((x1 + 80).max(x0 + 560), bottom + 44);
    let lo = 1_000;
    let largest = windows.iter().map(|w| w.max_ns.max(w.mean_ns)).max();
    // At most 100 s: anything later is drawn at the top.
    let hi = decade_above(largest.unwrap_or(0).max(l.deadline_ns), 10_000).min(TOP_NS);
    let scale = LogScale::new(lo, hi, ph);
    let y = |v: u64| bottom - scale.at(v);
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" {FONT} role=\"img\" aria-label=\"control loop \
         lateness over time\"><rect x=\"{x0}\" y=\"{top}\" width=\"{pw}\" height=\"{ph}\" \
         fill=\"white\" stroke=\"{}\"/>",
        colour::AXIS
    );
    // Decades: grid lines and labels.
    let mut d = lo;
    while d <= hi {
        let yd = y(d);
        let _ = write!(
            out,
            "<line x1=\"{x0}\" y1=\"{yd}\" x2=\"{x1}\" y2=\"{yd}\" stroke=\"{}\"/>\
             <text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            colour::GRID,
            x0 - 6,
            yd + 4,
            Nanos(d)
        );
        let Some(next) = d.checked_mul(10) else { break };
        d = next;
    }
    // Seconds ago: ticks at a round step, about six of them.
    let span_s = (cap as u64 * l.window_ns / 1_000_000_000).max(1);
    let step = [1u64, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600]
        .into_iter()
        .find(|s| span_s / s <= 6)
        .unwrap_or(3600);
    let mut t = 0;
    while t <= span_s {
        let back = (t * 1_000_000_000 / l.window_ns.max(1)) * u64::from(slot);
        if back > u64::from(pw) {
            break;
        }
        let xt = x1 - back as u32;
        let _ = write!(
            out,
            "<line x1=\"{xt}\" y1=\"{bottom}\" x2=\"{xt}\" y2=\"{}\" stroke=\"{}\"/>\
             <text x=\"{xt}\" y=\"{}\" text-anchor=\"middle\">{t}</text>",
            bottom + 5,
            colour::AXIS,
            bottom + 18
        );
        t += step;
    }
    let _ = write!(
        out,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">seconds ago (one bar per {} window, \
         {} windows)</text><text x=\"{x0}\" y=\"{}\">late by (log scale)</text>",
        (x0 + x1) / 2,
        bottom + 36,
        Nanos(l.window_ns),
        windows.len(),
        top - 10
    );
    // Legend, top right.
    let mut lx = x0 + 150;
    for (c, what) in [
        (colour::LATE_MAX, "max per window"),
        (colour::LATE_MEAN, "mean"),
        (colour::DEADLINE, "deadline"),
    ] {
        let _ = write!(
            out,
            "<rect x=\"{lx}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{c}\"/>\
             <text x=\"{}\" y=\"{}\">{what}</text>",
            top - 19,
            lx + 14,
            top - 10
        );
        lx += 130;
    }
    if windows.is_empty() {
        let _ = write!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">no windows yet</text>",
            (x0 + x1) / 2,
            top + ph / 2
        );
    }
    let first = cap - windows.len();
    let bar = slot.saturating_sub(1).max(1);
    // The maxima: one path of bars.
    let _ = write!(
        out,
        "<path fill=\"{}\" shape-rendering=\"crispEdges\" d=\"",
        colour::LATE_MAX
    );
    for (i, w) in windows.iter().enumerate() {
        let h = scale.at(w.max_ns);
        if h > 0 {
            let x = x0 + (first + i) as u32 * slot;
            let _ = write!(out, "M{x} {}h{bar}v{h}h-{bar}z", bottom - h);
        }
    }
    out.push_str("\"/>");
    // The means: one line.
    if !windows.is_empty() {
        let _ = write!(
            out,
            "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"",
            colour::LATE_MEAN
        );
        for (i, w) in windows.iter().enumerate() {
            let x = x0 + (first + i) as u32 * slot + slot / 2;
            let _ = write!(out, "{x},{} ", y(w.mean_ns));
        }
        out.push_str("\"/>");
    }
    // The deadline across the plot, named in the margin to its right.
    let yd = y(l.deadline_ns);
    let _ = write!(
        out,
        "<line x1=\"{x0}\" y1=\"{yd}\" x2=\"{x1}\" y2=\"{yd}\" stroke=\"{c}\" stroke-width=\"2\" \
         stroke-dasharray=\"8 4\"/><text x=\"{}\" y=\"{}\" fill=\"{c}\">deadline</text>\
         <text x=\"{}\" y=\"{}\" fill=\"{c}\">{}</text></svg>",
        x1 + 6,
        yd,
        x1 + 6,
        yd + 14,
        Nanos(l.deadline_ns),
        c = colour::DEADLINE
    );
}

/// The lower bound of log2 bucket `i` in µs (bucket 0: under 1 µs, bucket `i`: `[2^(i-1),
/// 2^i)` µs).
fn bucket_lo_us(i: usize) -> u64 {
    if i == 0 { 0 } else { 1u64 << (i - 1).min(62) }
}

/// Appends a histogram of log2 buckets of microseconds (`counts[0]`: under 1 µs;
/// `counts[i]`: `[2^(i-1), 2^i)` µs), from bucket 0 to the last non-empty one or the
/// deadline's, whichever is later: bars on a log count axis, each labelled below with its
/// lower bound and above with its count; the deadline's bucket boundary dashed.
pub fn histogram(out: &mut String, counts: &[u64], deadline_us: u64) {
    let deadline_bucket = if deadline_us == 0 {
        0
    } else {
        deadline_us.ilog2() as usize + 1
    };
    let last = counts.iter().rposition(|&n| n > 0).unwrap_or(0);
    let n = (last.max(deadline_bucket) + 1).clamp(1, counts.len().max(1));
    let slot = (960 / n as u32).min(48);
    let (x0, top, ph) = (70u32, 20u32, 160u32);
    let pw = slot * n as u32;
    let (x1, bottom) = (x0 + pw, top + ph);
    let (width, height) = (x1 + 20, bottom + 44);
    let most = counts.iter().copied().max().unwrap_or(0);
    let hi = decade_above(most, 10);
    // Counts from 1: a bucket of one period is a short bar, an empty one none.
    let scale = LogScale::new(1, hi, ph - 12);
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" {FONT} role=\"img\" aria-label=\"lateness \
         histogram\"><rect x=\"{x0}\" y=\"{top}\" width=\"{pw}\" height=\"{ph}\" fill=\"white\" \
         stroke=\"{}\"/>",
        colour::AXIS
    );
    let mut d = 1;
    while d <= hi {
        let yd = bottom - scale.at(d).max(2);
        let _ = write!(
            out,
            "<line x1=\"{x0}\" y1=\"{yd}\" x2=\"{x1}\" y2=\"{yd}\" stroke=\"{}\"/>\
             <text x=\"{}\" y=\"{}\" text-anchor=\"end\">{d}</text>",
            colour::GRID,
            x0 - 6,
            yd + 4
        );
        let Some(next) = d.checked_mul(10) else { break };
        d = next;
    }
    let bar = slot.saturating_sub(4).max(1);
    let _ = write!(
        out,
        "<path fill=\"{}\" shape-rendering=\"crispEdges\" d=\"",
        colour::HISTOGRAM
    );
    for (i, &c) in counts.iter().take(n).enumerate() {
        if c > 0 {
            let h = scale.at(c).max(2);
            let x = x0 + i as u32 * slot + 2;
            let _ = write!(out, "M{x} {}h{bar}v{h}h-{bar}z", bottom - h);
        }
    }
    out.push_str("\"/>");
    for (i, &c) in counts.iter().take(n).enumerate() {
        let xc = x0 + i as u32 * slot + slot / 2;
        let label = if i == 0 {
            String::from("<1µs")
        } else {
            let mut s = String::new();
            let _ = write!(s, "{}", Nanos(bucket_lo_us(i) * 1000));
            s.replace(' ', "")
        };
        let _ = write!(
            out,
            "<text x=\"{xc}\" y=\"{}\" text-anchor=\"middle\" font-size=\"10\">{}</text>",
            bottom + 14,
            Escaped(&label)
        );
        if c > 0 {
            let _ = write!(
                out,
                "<text x=\"{xc}\" y=\"{}\" text-anchor=\"middle\" font-size=\"10\">{c}</text>",
                bottom - scale.at(c).max(2) - 3
            );
        }
    }
    // Where in its bucket the deadline falls (linearly between the bucket's bounds).
    let (blo, bhi) = (
        bucket_lo_us(deadline_bucket),
        bucket_lo_us(deadline_bucket + 1),
    );
    let within = (deadline_us.saturating_sub(blo) * u64::from(slot))
        .checked_div(bhi - blo)
        .unwrap_or(0);
    let xd = x0 + (deadline_bucket as u32 * slot + within as u32).min(pw);
    let _ = write!(
        out,
        "<line x1=\"{xd}\" y1=\"{top}\" x2=\"{xd}\" y2=\"{bottom}\" stroke=\"{c}\" \
         stroke-width=\"2\" stroke-dasharray=\"6 3\"/><text x=\"{}\" y=\"{}\" fill=\"{c}\">\
         deadline</text><text x=\"{}\" y=\"{}\" text-anchor=\"middle\">late by (each bar: \
         from its label to the next one's); periods on a log scale</text></svg>",
        xd + 4,
        top + 12,
        (x0 + x1) / 2,
        bottom + 34,
        c = colour::DEADLINE
    );
}

/// One bar of [`share_bars`].
#[derive(Debug, Clone, Copy)]
pub struct Bar<'a> {
    /// Shown left of the bar (escaped).
    pub label: &'a str,
    /// The share, in per mille (clamped to 1000).
    pub permille: u32,
    /// Shown right of the bar after the percentage (escaped).
    pub note: &'a str,
}

/// Characters of a [`Bar`]'s label shown (the rest in a tooltip).
const LABEL_CHARS: usize = 22;

/// Appends horizontal bars, one row per [`Bar`]: label, a track of 0-100 % filled in
/// `fill`, then the percentage and the note.
pub fn share_bars(out: &mut String, bars: &[Bar<'_>], fill: Rgb, what: &str) {
    let (x0, track, row) = (180u32, 600u32, 22u32);
    let height = row * bars.len() as u32 + 8;
    let width = x0 + track + 280;
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" {FONT} role=\"img\" aria-label=\"{}\">",
        Escaped(what)
    );
    for (i, b) in bars.iter().enumerate() {
        let y = 4 + row * i as u32;
        // A long label is cut to fit the column, whole in its tooltip.
        let cut = b
            .label
            .char_indices()
            .nth(LABEL_CHARS)
            .map(|(at, _)| &b.label[..at]);
        let permille = b.permille.min(1000);
        let w = match permille * track / 1000 {
            0 if permille > 0 => 1,
            w => w,
        };
        let _ = write!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">",
            x0 - 8,
            y + 13
        );
        match cut {
            Some(cut) => {
                let _ = write!(out, "<title>{}</title>{}…", Escaped(b.label), Escaped(cut));
            }
            None => {
                let _ = write!(out, "{}", Escaped(b.label));
            }
        }
        let _ = write!(
            out,
            "</text><rect x=\"{x0}\" y=\"{y}\" width=\"{track}\" height=\"16\" fill=\"{}\"/>\
             <rect x=\"{x0}\" y=\"{y}\" width=\"{w}\" height=\"16\" fill=\"{fill}\" \
             shape-rendering=\"crispEdges\"/>\
             <text x=\"{}\" y=\"{}\">{}.{}% {}</text>",
            colour::TRACK,
            x0 + track + 8,
            y + 13,
            permille / 10,
            permille % 10,
            Escaped(b.note)
        );
    }
    out.push_str("</svg>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(
            Escaped("a<b>&\"c'").to_string(),
            "a&lt;b&gt;&amp;&quot;c&#39;"
        );
        assert_eq!(Escaped("plain-name_1").to_string(), "plain-name_1");
        assert_eq!(Escaped("").to_string(), "");
        assert_eq!(Escaped("ü<").to_string(), "ü&lt;");
    }

    #[test]
    fn log2_in_256ths() {
        assert_eq!(log2_q8(0), 0);
        assert_eq!(log2_q8(1), 0);
        assert_eq!(log2_q8(2), 256);
        assert_eq!(log2_q8(1024), 10 * 256);
        assert_eq!(log2_q8(u64::MAX), 64 * 256 - 1);
        for v in [3u64, 10, 1000, 12345, 1 << 40, 999_999_999_999] {
            let exact = (v as f64).log2() * 256.0;
            let got = f64::from(log2_q8(v));
            assert!(
                got <= exact && exact - got < 1.0,
                "log2_q8({v}) = {got}, exact {exact}"
            );
        }
        // Monotonic.
        let mut last = 0;
        for v in 1..5000u64 {
            assert!(log2_q8(v) >= last);
            last = log2_q8(v);
        }
    }

    #[test]
    fn durations_as_labels() {
        let s = |ns| Nanos(ns).to_string();
        assert_eq!(s(500), "500 ns");
        assert_eq!(s(1_000), "1 µs");
        assert_eq!(s(1_500), "1.5 µs");
        assert_eq!(s(250_000), "250 µs");
        assert_eq!(s(1_000_000), "1 ms");
        assert_eq!(s(25_000_000), "25 ms");
        assert_eq!(s(1_500_000_000), "1.5 s");
    }

    #[test]
    fn decades() {
        assert_eq!(decade_above(0, 10_000), 10_000);
        assert_eq!(decade_above(9_999, 10_000), 10_000);
        assert_eq!(decade_above(10_000, 10_000), 100_000);
        assert_eq!(decade_above(1_000_000, 10_000), 10_000_000);
        assert!(decade_above(u64::MAX, 1) >= 10_000_000_000_000_000_000);
    }

    /// The `d` of the `<path>` whose fill is `c`.
    fn path_of(svg: &str, c: Rgb) -> &str {
        let at = svg
            .find(&format!("<path fill=\"{c}\""))
            .expect("the path is there");
        let d = &svg[at..];
        let d = &d[d.find(" d=\"").unwrap() + 4..];
        &d[..d.find('"').unwrap()]
    }

    fn balanced(svg: &str) {
        assert!(svg.starts_with("<svg "), "{svg}");
        assert!(svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<svg").count(), 1);
        assert_eq!(svg.matches('<').count(), svg.matches('>').count());
    }

    #[test]
    fn a_lateness_series_is_bars_a_line_and_the_deadline() {
        let windows: Vec<Window> = (0..10)
            .map(|i| Window {
                max_ns: 10_000 * (i + 1),
                mean_ns: 2_000,
            })
            .collect();
        let mut svg = String::new();
        lateness(
            &mut svg,
            &Lateness {
                windows: &windows,
                capacity: 240,
                window_ns: 250_000_000,
                deadline_ns: 1_000_000,
            },
        );
        balanced(&svg);
        // One bar per window, at the right end (slots of 4 px from x=70).
        let d = path_of(&svg, colour::LATE_MAX);
        assert_eq!(d.matches('M').count(), 10);
        assert!(d.starts_with(&format!("M{} ", 70 + 230 * 4)), "{d}");
        // Larger maxima, taller bars.
        let heights: Vec<u32> = d
            .split('M')
            .skip(1)
            .map(|b| b.split('v').nth(1).unwrap().split('h').next().unwrap())
            .map(|h| h.parse().unwrap())
            .collect();
        assert!(heights.windows(2).all(|w| w[0] < w[1]), "{heights:?}");
        // 1 µs to 10 ms (the decade above the deadline): four decades in 200 px; 1 ms is 150
        // px up, at y = 230 - 150.
        assert!(svg.contains("<line x1=\"70\" y1=\"80\" x2=\"1030\" y2=\"80\" stroke=\"#d1242f\""));
        assert!(
            svg.contains(">deadline</text><text x=\"1036\" y=\"94\" fill=\"#d1242f\">1 ms</text>")
        );
        assert!(svg.contains(">10 ms</text>") && svg.contains(">1 µs</text>"));
        // A minute, ticked every 10 s.
        assert!(svg.contains(">60</text>") && svg.contains(">0</text>"));
        assert!(svg.contains("one bar per 250 ms window, 10 windows"));
        assert_eq!(svg.matches(&colour::LATE_MEAN.to_string()).count(), 2);
    }

    #[test]
    fn an_empty_series_says_so_and_a_long_one_is_cut_to_its_newest() {
        let mut svg = String::new();
        let l = Lateness {
            windows: &[],
            capacity: 240,
            window_ns: 250_000_000,
            deadline_ns: 1_000_000,
        };
        lateness(&mut svg, &l);
        balanced(&svg);
        assert!(svg.contains("no windows yet"));
        assert_eq!(path_of(&svg, colour::LATE_MAX), "");
        let windows = [Window {
            max_ns: 5_000,
            mean_ns: 1_000,
        }; 300];
        let mut svg = String::new();
        lateness(
            &mut svg,
            &Lateness {
                windows: &windows,
                capacity: 0,
                window_ns: 0,
                deadline_ns: 0,
            },
        );
        balanced(&svg);
        assert_eq!(path_of(&svg, colour::LATE_MAX).matches('M').count(), 300);
    }

    #[test]
    fn values_beyond_the_axis_are_clamped() {
        let windows = [Window {
            max_ns: u64::MAX,
            mean_ns: 0,
        }];
        let mut svg = String::new();
        lateness(
            &mut svg,
            &Lateness {
                windows: &windows,
                capacity: 4,
                window_ns: 1_000_000_000,
                deadline_ns: 100_000,
            },
        );
        balanced(&svg);
        // The bar reaches the top of the plot (y = 30), not above it.
        assert!(path_of(&svg, colour::LATE_MAX).contains(" 30h"), "{svg}");
    }

    #[test]
    fn a_histogram_labels_its_buckets_up_to_the_deadline() {
        let mut counts = [0u64; 24];
        counts[0] = 3;
        counts[5] = 1000;
        counts[6] = 1;
        let mut svg = String::new();
        histogram(&mut svg, &counts, 1000);
        balanced(&svg);
        // 1000 µs is in bucket 10 ([512, 1024) µs): buckets 0-10 are drawn.
        assert!(svg.contains(">&lt;1µs</text>"));
        assert!(svg.contains(">16µs</text>"));
        assert!(svg.contains(">512µs</text>"));
        assert!(!svg.contains(">1ms</text>"));
        assert_eq!(path_of(&svg, colour::HISTOGRAM).matches('M').count(), 3);
        assert!(svg.contains(">1000</text>") && svg.contains(">3</text>"));
        // A bucket of one period still shows.
        assert!(path_of(&svg, colour::HISTOGRAM).contains("v2h"));
        // Past the deadline: drawn to the last non-empty bucket.
        counts[14] = 2;
        let mut svg = String::new();
        histogram(&mut svg, &counts, 1000);
        assert!(svg.contains(">8.1ms</text>") && !svg.contains(">16ms</text>"));
        let mut svg = String::new();
        histogram(&mut svg, &[], 0);
        balanced(&svg);
    }

    #[test]
    fn share_bars_escape_and_scale() {
        let mut svg = String::new();
        share_bars(
            &mut svg,
            &[
                Bar {
                    label: "<evil & co>",
                    permille: 500,
                    note: "1 ms",
                },
                Bar {
                    label: "idle",
                    permille: 2000,
                    note: "",
                },
                Bar {
                    label: "tiny",
                    permille: 1,
                    note: "",
                },
            ],
            colour::THREAD,
            "threads",
        );
        balanced(&svg);
        assert!(svg.contains("&lt;evil &amp; co&gt;"));
        assert!(!svg.contains("<evil"));
        assert!(svg.contains("width=\"300\" height=\"16\" fill=\"#bf3989\""));
        assert!(svg.contains("width=\"600\" height=\"16\" fill=\"#bf3989\""));
        assert!(svg.contains("width=\"1\" height=\"16\" fill=\"#bf3989\""));
        assert!(svg.contains("50.0% 1 ms") && svg.contains("100.0% "));
        let mut svg = String::new();
        let long = "net-driver virtio-net 0000:00:01.0 MSI-X";
        let bar = Bar {
            label: long,
            permille: 0,
            note: "",
        };
        share_bars(&mut svg, &[bar], colour::CPU, "cpus");
        balanced(&svg);
        assert!(svg.contains(&format!(
            "<title>{long}</title>net-driver virtio-net …</text>"
        )));
    }
}
