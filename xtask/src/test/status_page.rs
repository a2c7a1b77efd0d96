//! The appliance's status page, looked at by a real browser (`qemu-x86_64/q35/tcg appliance
//! status-page chromium`): the appliance boots on q35 (TCG, two vCPUs) with its HTTP port
//! forwarded to a free port of the host's loopback; once its control loop has filled a few
//! windows of its lateness series and the first per-CPU load sample is taken (and
//! `/status.json` shows each thread's accounts: switches, wake-ups, blocked time), headless
//! Chromium (Debian's, `build/chromium.rs`) screenshots `/` at 1200×1600, and the PNG must
//! show each chart drawn: pixels of each chart's own data colour (`rhea_svgplot::colour`,
//! used for nothing else on the page), in the order the page stacks them, the lateness bars
//! ending at the plot's right edge (the newest window). A page whose SVG is missing or
//! broken shows none of those colours and fails. Then `/quit`; the appliance must end in
//! success with a clean scheduler checker. The screenshot is kept
//! (`target/images/qemu-x86_64/status-page.png`) for a person to look at.

use std::io::BufReader;
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::ops::Range;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rhea_svgplot::{Rgb, colour};

use super::net::{Guest, get_at};
use super::{TEST_CMDLINE, check_appliance_end};
use crate::apps::{self, App};
use crate::qemu::{self, Accel};
use crate::{boards, chromium, image, setup};

/// The case's name.
pub(crate) const CASE: &str = "qemu-x86_64/q35/tcg appliance status-page chromium";

/// Windows of the lateness series wanted before the screenshot (250 ms each: 3 s).
const WINDOWS_WANTED: usize = 12;
/// The longest wait for them after `appliance: ready`.
const SERIES_WITHIN: Duration = Duration::from_secs(60);
/// The longest Chromium may take for its screenshot.
const CHROMIUM_WITHIN: Duration = Duration::from_secs(90);
/// The screenshot's size (CSS pixels; device scale 1).
const WIDTH: u32 = 1200;
const HEIGHT: u32 = 1600;

/// Runs the case; `Ok` with what the screenshot showed.
pub(crate) fn run(ws: &crate::Workspace, all_apps: &[App]) -> Result<String, String> {
    let board = boards::find("qemu-x86_64").map_err(|e| e.to_string())?;
    let app = apps::find(all_apps, "appliance").map_err(|e| e.to_string())?;
    setup::ensure_toolchain(ws, board).map_err(|e| e.to_string())?;
    let qemu = setup::ensure_qemu(board).map_err(|e| e.to_string())?;
    let chromium = chromium::ensure_chromium().map_err(|e| e.to_string())?;
    let image = image::build(ws, board, app).map_err(|e| e.to_string())?;
    let (http, echo) = free_ports()?;
    let append = format!("{TEST_CMDLINE} appliance.allow_quit=1");
    let spec = qemu::Spec {
        board,
        machine: "q35",
        accel: Accel::Tcg,
        smp: 2,
        mem: "128M",
        kernel: &image.boot,
        serial: qemu::Serial::Captured,
        append: &append,
    };
    let mut m = qemu::machine(&spec, qemu.qboot.as_deref()).map_err(|e| e.to_string())?;
    m.binary = qemu.binary;
    m.nics = qemu::nic(
        board.name,
        spec.machine,
        apps::Net::User,
        qemu::Backend::Forwarded {
            bind: "127.0.0.1",
            http,
            echo,
        },
    )
    .into_iter()
    .collect();
    let shot = ws.image_dir(board).join("status-page.png");
    let mut guest = Guest::spawn(m.command())?;
    let looked = guest
        .wait_for("appliance: ready", Duration::from_secs(60))
        .and_then(|()| wait_for_series(http))
        .and_then(|windows| {
            screenshot(&chromium, http, &shot)?;
            let seen = check_png(&shot)?;
            Ok(format!(
                "{windows} windows of lateness served; screenshot {}: {seen}",
                shot.display()
            ))
        });
    let quit = match get_at(Ipv4Addr::LOCALHOST, http, "/quit") {
        Ok((200, _)) => Ok(()),
        Ok((code, _)) => Err(format!("/quit answered {code}")),
        Err(e) => Err(e),
    };
    let status = guest.finish(Duration::from_secs(30));
    let console = guest.console();
    let looked = looked.and_then(|seen| quit.map(|()| seen));
    let summary = looked.as_ref().ok().cloned().unwrap_or_default();
    check_appliance_end(board, looked, status, &console)?;
    Ok(summary)
}

/// A free TCP port on the host's loopback for HTTP, and one free for both TCP and UDP for
/// the echo service (forwarded too, unused).
fn free_ports() -> Result<(u16, u16), String> {
    let port = |l: TcpListener| l.local_addr().map(|a| a.port()).map_err(|e| e.to_string());
    for _ in 0..20 {
        let http = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| e.to_string())?;
        let echo = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| e.to_string())?;
        let (h, e) = (port(http)?, port(echo)?);
        if UdpSocket::bind((Ipv4Addr::LOCALHOST, e)).is_ok() {
            return Ok((h, e));
        }
    }
    Err("no free pair of loopback ports".to_string())
}

/// Polls `/status.json` until its lateness series has [`WINDOWS_WANTED`] windows and a
/// per-CPU load sample exists; returns the windows served.
fn wait_for_series(http: u16) -> Result<usize, String> {
    let start = Instant::now();
    loop {
        let (code, json) = get_at(Ipv4Addr::LOCALHOST, http, "/status.json")?;
        if code != 200 {
            return Err(format!("/status.json answered {code}"));
        }
        let windows = series_len(&json)
            .ok_or_else(|| format!("/status.json has no lateness_series_us: {json}"))?;
        if let Some(key) = THREAD_KEYS.iter().find(|k| !json.contains(*k)) {
            return Err(format!("/status.json's threads lack {key}: {json}"));
        }
        let sampled =
            super::net::json_number(&json, "{", "recent_window_ms").is_some_and(|ms| ms > 0);
        if windows >= WINDOWS_WANTED && sampled {
            return Ok(windows);
        }
        if start.elapsed() > SERIES_WITHIN {
            return Err(format!(
                "after {} s the lateness series has {windows} windows (want {WINDOWS_WANTED}), \
                 load sampled: {sampled}",
                SERIES_WITHIN.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// What each thread's object in `/status.json` holds besides its times: its accounts.
const THREAD_KEYS: [&str; 5] = [
    "\"switches_in\":",
    "\"switches_out\":",
    "\"wakeups\":",
    "\"max_wake_latency_us\":",
    "\"blocked_us\":{\"mutex\":",
];

/// The number of `[max,mean]` pairs in the status JSON's `lateness_series_us`.
fn series_len(json: &str) -> Option<usize> {
    let key = "\"lateness_series_us\":[";
    let rest = &json[json.find(key)? + key.len()..];
    let (mut depth, mut pairs) = (1, 0);
    for c in rest.chars() {
        match c {
            '[' => {
                depth += 1;
                pairs += 1;
            }
            ']' if depth == 1 => return Some(pairs),
            ']' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// Headless Chromium's screenshot of the page at `http`, into `file`; a profile of its own
/// (removed after) so it neither reads nor writes the user's.
fn screenshot(chromium: &Path, http: u16, file: &Path) -> Result<(), String> {
    let _ = std::fs::remove_file(file);
    let profile = file.with_extension(format!("profile-{}", std::process::id()));
    let mut cmd = Command::new(chromium);
    cmd.args([
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .arg(format!("--screenshot={}", file.display()))
    .arg(format!("--window-size={WIDTH},{HEIGHT}"))
    .arg(format!("http://127.0.0.1:{http}/"))
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", chromium.display()))?;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break Some(status);
        }
        if start.elapsed() > CHROMIUM_WITHIN {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stderr = child
        .stderr
        .take()
        .and_then(|mut e| {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut e, &mut s).ok()?;
            Some(s)
        })
        .unwrap_or_default();
    let _ = std::fs::remove_dir_all(&profile);
    match status {
        Some(s) if s.success() && file.is_file() => Ok(()),
        Some(s) => Err(format!(
            "chromium ended with {s} without a screenshot; its stderr:\n{stderr}"
        )),
        None => Err(format!(
            "chromium took over {} s for the screenshot",
            CHROMIUM_WITHIN.as_secs()
        )),
    }
}

/// An 8-bit RGB image.
#[derive(Debug)]
struct Rgb8 {
    width: u32,
    height: u32,
    /// Row-major, 3 bytes a pixel.
    pixels: Vec<u8>,
}

/// Decodes a PNG into [`Rgb8`] (alpha and 16-bit depths dropped, palettes expanded).
fn decode_png(file: &Path) -> Result<Rgb8, String> {
    let f = std::fs::File::open(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let mut decoder = png::Decoder::new(BufReader::new(f));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder
        .read_info()
        .map_err(|e| format!("{}: not a PNG: {e}", file.display()))?;
    let size = reader
        .output_buffer_size()
        .ok_or("the PNG is too large to decode")?;
    let mut buf = vec![0; size];
    let info = reader
        .next_frame(&mut buf)
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let channels = match info.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Indexed => return Err("an indexed PNG after expansion".into()),
    };
    let mut pixels = Vec::with_capacity(info.width as usize * info.height as usize * 3);
    for row in buf.chunks(info.line_size).take(info.height as usize) {
        for px in row.chunks(channels).take(info.width as usize) {
            match channels {
                1 | 2 => pixels.extend([px[0]; 3]),
                _ => pixels.extend(&px[..3]),
            }
        }
    }
    Ok(Rgb8 {
        width: info.width,
        height: info.height,
        pixels,
    })
}

/// Where pixels of one colour are: how many, and their bounding box.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Found {
    count: u32,
    left: u32,
    top: u32,
    right: u32,
    bottom: u32,
}

/// The pixels of `img` within 3 of `c` in each channel (antialiased edges differ; a fill's
/// inside is exact), in the columns `xs`.
fn find_colour(img: &Rgb8, c: Rgb, xs: Range<u32>) -> Option<Found> {
    let want = [c.0, c.1, c.2];
    let mut found: Option<Found> = None;
    for (i, px) in img.pixels.chunks_exact(3).enumerate() {
        let (x, y) = (i as u32 % img.width, i as u32 / img.width);
        if !xs.contains(&x) || !px.iter().zip(want).all(|(&a, b)| a.abs_diff(b) <= 3) {
            continue;
        }
        found = Some(match found {
            None => Found {
                count: 1,
                left: x,
                top: y,
                right: x,
                bottom: y,
            },
            Some(f) => Found {
                count: f.count + 1,
                left: f.left.min(x),
                top: f.top.min(y),
                right: f.right.max(x),
                bottom: f.bottom.max(y),
            },
        });
    }
    found
}

/// The columns of the lateness plot's newest ten windows (the plot ends at x = 8 px of page
/// margin + 70 + 960 = 1038; 4 px a window): only its bars and line are there, not the
/// legend's swatches of the same colours.
const NEWEST: Range<u32> = 998..1040;
/// Every column.
const ALL: Range<u32> = 0..u32::MAX;

/// The charts a screenshot must show: (what, colour, pixels at least, in which columns).
/// The counts are well under what a working page draws at 1200 px (ten windows of 3-px bars
/// at least a decade, ~40 px, tall: ~1200; their mean line: ~60; one histogram bar ~500; an
/// idle thread's bar ~9000; one CPU's bar at 0.1 %: 16).
const CHARTS: [(&str, Rgb, u32, Range<u32>); 6] = [
    ("lateness maxima (bars)", colour::LATE_MAX, 150, NEWEST),
    ("lateness means (line)", colour::LATE_MEAN, 20, NEWEST),
    ("deadline (dashed lines)", colour::DEADLINE, 100, ALL),
    ("lateness histogram (bars)", colour::HISTOGRAM, 300, ALL),
    ("CPU load (bars)", colour::CPU, 16, ALL),
    ("thread CPU share (bars)", colour::THREAD, 300, ALL),
];

/// Checks a screenshot of the status page: see [`check_image`].
fn check_png(file: &Path) -> Result<String, String> {
    let img = decode_png(file)?;
    if (img.width, img.height) != (WIDTH, HEIGHT) {
        return Err(format!(
            "the screenshot is {}x{}, not {WIDTH}x{HEIGHT}",
            img.width, img.height
        ));
    }
    check_image(&img)
}

/// Every chart of [`CHARTS`] drawn, stacked in the page's order (lateness over time, the
/// histogram, CPU load, threads), the lateness bars reaching the plot's right end (the
/// newest window). Returns what was seen.
fn check_image(img: &Rgb8) -> Result<String, String> {
    let mut seen = Vec::new();
    let mut found = Vec::new();
    for (what, c, least, xs) in CHARTS {
        let at = if xs == ALL {
            String::new()
        } else {
            format!(" in x {}-{}", xs.start, xs.end - 1)
        };
        match find_colour(img, c, xs) {
            Some(f) if f.count >= least => {
                seen.push(format!(
                    "{what} {c}: {} px in x {}-{} y {}-{}",
                    f.count, f.left, f.right, f.top, f.bottom
                ));
                found.push(f);
            }
            Some(f) => {
                return Err(format!(
                    "the screenshot has {} pixels of {c} ({what}){at}, fewer than {least}: is \
                     the chart drawn?",
                    f.count
                ));
            }
            None => {
                return Err(format!(
                    "the screenshot has no pixels of {c} ({what}){at}: the chart is not drawn"
                ));
            }
        }
    }
    let [late, _, _, hist, cpu, threads] = found[..] else {
        unreachable!("one per chart");
    };
    let order = [
        ("the lateness bars", late),
        ("the histogram", hist),
        ("the CPU bars", cpu),
        ("the thread bars", threads),
    ];
    for pair in order.windows(2) {
        let ((a, fa), (b, fb)) = (pair[0], pair[1]);
        if fa.bottom >= fb.top {
            return Err(format!(
                "{a} (y {}-{}) are not above {b} (y {}-{})",
                fa.top, fa.bottom, fb.top, fb.bottom
            ));
        }
    }
    // The newest window's bar: the plot's last 4 px slot, 1034-1036.
    if late.right < 1032 {
        return Err(format!(
            "the lateness bars end at x {}, short of the plot's right edge (1036): no bar \
             for the newest window",
            late.right
        ));
    }
    Ok(seen.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blank() -> Rgb8 {
        Rgb8 {
            width: WIDTH,
            height: HEIGHT,
            pixels: vec![255; (WIDTH * HEIGHT * 3) as usize],
        }
    }

    fn fill(img: &mut Rgb8, c: Rgb, (x0, y0, w, h): (u32, u32, u32, u32)) {
        for y in y0..y0 + h {
            for x in x0..x0 + w {
                let i = ((y * img.width + x) * 3) as usize;
                img.pixels[i..i + 3].copy_from_slice(&[c.0, c.1, c.2]);
            }
        }
    }

    /// A page as the appliance draws it, in outline.
    fn page() -> Rgb8 {
        let mut img = blank();
        fill(&mut img, colour::LATE_MAX, (990, 100, 48, 100));
        fill(&mut img, colour::LATE_MEAN, (990, 210, 48, 2));
        fill(&mut img, colour::DEADLINE, (78, 150, 960, 2));
        fill(&mut img, colour::HISTOGRAM, (100, 400, 40, 100));
        fill(&mut img, colour::CPU, (190, 700, 3, 16));
        fill(&mut img, colour::THREAD, (190, 800, 600, 16));
        img
    }

    #[test]
    fn a_drawn_page_passes() {
        let seen = check_image(&page()).unwrap();
        assert!(seen.contains("lateness maxima (bars) #1f6feb: 3920 px in x 998-1037 y 100-199"));
    }

    #[test]
    fn a_missing_chart_fails() {
        assert!(
            check_image(&blank())
                .unwrap_err()
                .contains("no pixels of #1f6feb")
        );
        let mut img = page();
        fill(&mut img, Rgb(255, 255, 255), (100, 400, 40, 100));
        assert!(
            check_image(&img)
                .unwrap_err()
                .contains("(lateness histogram (bars))")
        );
        // Antialiased edges only (a broken fill): too few.
        let mut img = page();
        fill(&mut img, Rgb(255, 255, 255), (190, 800, 600, 16));
        fill(&mut img, colour::THREAD, (190, 800, 10, 1));
        assert!(check_image(&img).unwrap_err().contains("fewer than 300"));
    }

    #[test]
    fn charts_out_of_place_fail() {
        // The histogram above the lateness plot.
        let mut img = page();
        fill(&mut img, colour::HISTOGRAM, (100, 50, 40, 10));
        assert!(
            check_image(&img)
                .unwrap_err()
                .contains("the lateness bars (y 100-199) are not above the histogram")
        );
        // The newest window not at the right; the legend's swatches do not count.
        let mut img = page();
        fill(&mut img, Rgb(255, 255, 255), (990, 100, 48, 100));
        fill(&mut img, colour::LATE_MAX, (100, 100, 48, 100));
        assert!(
            check_image(&img)
                .unwrap_err()
                .contains("no pixels of #1f6feb (lateness maxima (bars)) in x 998-1039")
        );
        let mut img = page();
        fill(&mut img, Rgb(255, 255, 255), (990, 210, 48, 2));
        fill(&mut img, colour::LATE_MEAN, (300, 20, 10, 10));
        assert!(check_image(&img).unwrap_err().contains("#e8590c"));
        let mut img = page();
        fill(&mut img, Rgb(255, 255, 255), (1030, 100, 8, 100));
        assert!(check_image(&img).unwrap_err().contains("end at x 1029"));
    }

    #[test]
    fn near_colours_count_far_ones_do_not() {
        let mut img = blank();
        fill(&mut img, Rgb(0x1f + 3, 0x6f - 3, 0xeb), (0, 0, 2, 1));
        fill(&mut img, Rgb(0x1f + 4, 0x6f, 0xeb), (5, 5, 1, 1));
        assert_eq!(find_colour(&img, colour::LATE_MAX, 2..10), None);
        let f = find_colour(&img, colour::LATE_MAX, ALL).unwrap();
        assert_eq!(
            f,
            Found {
                count: 2,
                left: 0,
                top: 0,
                right: 1,
                bottom: 0
            }
        );
    }

    #[test]
    fn series_length() {
        let j = r#"{"control":{"histogram_us":[[8,3]],"window_ms":250,"lateness_series_us":[[12,3],[40,5],[7,2]]},"memory":{}}"#;
        assert_eq!(series_len(j), Some(3));
        let j = r#"{"control":{"lateness_series_us":[]},"memory":{}}"#;
        assert_eq!(series_len(j), Some(0));
        assert_eq!(series_len(r#"{"control":{}}"#), None);
        assert_eq!(series_len(r#"{"lateness_series_us":[[1,2]"#), None);
    }

    #[test]
    fn png_round_trip() {
        let dir = std::env::temp_dir().join(format!("xtask-png-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("t.png");
        let mut w = png::Encoder::new(std::fs::File::create(&file).unwrap(), 2, 2);
        w.set_color(png::ColorType::Rgba);
        w.set_depth(png::BitDepth::Eight);
        let mut w = w.write_header().unwrap();
        w.write_image_data(&[1, 2, 3, 255, 4, 5, 6, 255, 7, 8, 9, 0, 10, 11, 12, 255])
            .unwrap();
        drop(w);
        let img = decode_png(&file).unwrap();
        assert_eq!((img.width, img.height), (2, 2));
        assert_eq!(img.pixels, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
