//! The framebuffer console, checked on the screen itself (`pc-uefi/q35/tcg screen <app>`):
//! pc-uefi boots under OVMF with a VGA display, and what the display shows is read from a QEMU
//! screendump (`screendump.rs`) and compared with what it must show.
//!
//! - **With COM1** (`screen hello`, `screen fault-page`): the run has no `isa-debug-exit`
//!   device, so the kernel halts at its end (`rhea: halted (...)`) instead of leaving QEMU;
//!   then the monitor takes a screendump. What the screen must show is the console's own
//!   output replayed through the same console code (`rhea_drivers::fbcon` over host memory of
//!   the screen's size): every byte the kernel wrote to COM1 since it cleared the screen,
//!   with its wrapping and scrolling. The two must be identical, cell for cell — a fault
//!   report included, for a PC whose only output is a screen.
//! - **Without any serial port** (`screen-only hello`): QEMU has no COM1 at all. The kernel
//!   must find none and show everything on the screen: the screen is polled until it shows
//!   the halt line, and must hold the console line saying COM1 is absent, the app's output
//!   and the success status.
//! - **Without a display** (`no-screen hello`): no VGA, so the firmware has no GOP; the loader
//!   and the kernel must say there is no screen and boot on COM1 alone, to success.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::apps::{self, App};
use crate::boards;
use crate::qemu::{self, Accel};
use crate::screendump::{Image, screen_text};
use crate::{Workspace, image, setup};
use rhea_drivers::fbcon::{
    DEFAULT_BACKGROUND, DEFAULT_FOREGROUND, FbConsole, FramebufferInfo, PixelFormat,
};

/// Which consoles a screen case's PC has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Consoles {
    /// COM1 and a display: the screen must equal COM1's replay.
    Both,
    /// A display only.
    ScreenOnly,
    /// COM1 only (no GOP).
    SerialOnly,
}

/// The screen cases: (case name, app, consoles).
pub(crate) const CASES: &[(&str, &str, Consoles)] = &[
    ("pc-uefi/q35/tcg screen hello", "hello", Consoles::Both),
    (
        "pc-uefi/q35/tcg screen fault-page",
        "fault-page",
        Consoles::Both,
    ),
    (
        "pc-uefi/q35/tcg screen-only hello",
        "hello",
        Consoles::ScreenOnly,
    ),
    (
        "pc-uefi/q35/tcg no-screen hello",
        "hello",
        Consoles::SerialOnly,
    ),
];

/// The line the board prints at its end, on every console.
const HALTED: &str = "rhea: halted (";
/// Longest wait for a run to reach its end (OVMF takes about 3 s under TCG, the apps less).
const RUN_TIMEOUT: Duration = Duration::from_secs(90);

/// Runs one screen case.
pub(crate) fn run(
    ws: &Workspace,
    all_apps: &[App],
    app_name: &str,
    consoles: Consoles,
) -> Result<(), String> {
    let board = boards::find("pc-uefi").map_err(|e| e.to_string())?;
    let app = apps::find(all_apps, app_name).map_err(|e| e.to_string())?;
    setup::ensure_toolchain(ws, board).map_err(|e| e.to_string())?;
    let qemu = setup::ensure_qemu(board).map_err(|e| e.to_string())?;
    let image = image::build(ws, board, app).map_err(|e| e.to_string())?;
    let dir = ws.image_dir(board);
    let monitor = dir.join(format!("screen-{}.monitor", std::process::id()));
    let dump = dir.join(format!("screen-{}.ppm", std::process::id()));
    let _ = std::fs::remove_file(&monitor);
    let spec = qemu::Spec {
        board,
        machine: "q35",
        accel: Accel::Tcg,
        smp: 1,
        mem: "128M",
        kernel: &image.boot,
        serial: qemu::Serial::Captured,
        append: &app.cmdline,
    };
    let mut m = qemu::machine(&spec, None).map_err(|e| e.to_string())?;
    m.binary = qemu.binary;
    // No debug-exit device: the kernel's exit halts, and the screen stays for the dump.
    m.devices.retain(|d| !d.starts_with("isa-debug-exit"));
    match consoles {
        Consoles::Both => {}
        Consoles::ScreenOnly => m.serial = None,
        Consoles::SerialOnly => remove_display(&mut m.extra),
    }
    m.monitor = Some(format!("unix:{},server=on,wait=off", monitor.display()));
    let mut qemu = Running::spawn(m.command())?;
    let result = match consoles {
        Consoles::Both => compare_with_serial(&mut qemu, &monitor, &dump),
        Consoles::ScreenOnly => screen_only(&mut qemu, &monitor, &dump),
        Consoles::SerialOnly => serial_only(&mut qemu),
    };
    qemu.stop(&monitor);
    let _ = std::fs::remove_file(&dump);
    result
}

/// `screen <app>`: the screen, once the run has halted, against COM1's output replayed.
fn compare_with_serial(qemu: &mut Running, monitor: &Path, dump: &Path) -> Result<(), String> {
    let serial = qemu.wait_for(HALTED.as_bytes(), RUN_TIMEOUT)?;
    // The rest of the halt line.
    let serial = qemu.wait_for_after(b"\n", serial.len(), Duration::from_secs(5))?;
    let text = String::from_utf8_lossy(&serial).into_owned();
    let (width, height) = screen_size(&text)?;
    let expected = replay(kernel_output(&serial)?, width, height)?;
    let shown = dump_text(monitor, dump)?;
    if shown == expected {
        println!(
            "  screen: {width}x{height} pixels, {} rows of text identical to COM1's replay",
            shown.lines().filter(|l| !l.is_empty()).count()
        );
        Ok(())
    } else {
        Err(format!(
            "the screen differs from COM1's output replayed:\n{}",
            diff(&expected, &shown)
        ))
    }
}

/// `screen-only <app>`: no serial port; the screen alone must tell the story.
fn screen_only(qemu: &mut Running, monitor: &Path, dump: &Path) -> Result<(), String> {
    let start = Instant::now();
    let shown = loop {
        if start.elapsed() > RUN_TIMEOUT {
            return Err(format!(
                "the screen never showed `{HALTED}` in {} s",
                RUN_TIMEOUT.as_secs()
            ));
        }
        if qemu.exited() {
            return Err("QEMU ended before the screen was read".into());
        }
        std::thread::sleep(Duration::from_millis(500));
        match dump_text(monitor, dump) {
            Ok(text) if text.contains(HALTED) => break text,
            _ => {}
        }
    };
    let must = [
        "rhea: consoles: COM1 absent, screen ",
        "rhea: app main",
        "Hello from Rhea!",
        "rhea: app main returned (Success)",
        "rhea: halted (success)",
    ];
    match must.iter().find(|m| !shown.contains(*m)) {
        None => {
            println!("  screen: without COM1, the screen shows the boot, the app and its end");
            Ok(())
        }
        Some(m) => Err(format!("the screen lacks `{m}`; it shows:\n{shown}")),
    }
}

/// `no-screen <app>`: no display; COM1 must say so and the run must end in success.
fn serial_only(qemu: &mut Running) -> Result<(), String> {
    let serial = qemu.wait_for(HALTED.as_bytes(), RUN_TIMEOUT)?;
    let serial = qemu.wait_for_after(b"\n", serial.len(), Duration::from_secs(5))?;
    let text = String::from_utf8_lossy(&serial);
    let must = [
        "framebuffer none",
        "rhea: consoles: COM1 present, screen none",
        "rhea: app main returned (Success)",
        "rhea: halted (success)",
    ];
    match must.iter().find(|m| !text.contains(*m)) {
        None => {
            println!("  screen: without a display, the loader and kernel say so and boot on COM1");
            Ok(())
        }
        Some(m) => Err(format!("COM1 lacks `{m}`")),
    }
}

/// Drops the display device (`-device VGA`) from QEMU's extra arguments.
fn remove_display(extra: &mut Vec<String>) {
    if let Some(i) = extra
        .windows(2)
        .position(|w| w[0] == "-device" && w[1] == "VGA")
    {
        extra.drain(i..i + 2);
    }
}

/// The framebuffer's size from the board's console line (`..., screen 1280x800 pixels ...`).
fn screen_size(console: &str) -> Result<(usize, usize), String> {
    let line = console
        .lines()
        .find(|l| l.starts_with("rhea: consoles: "))
        .ok_or("the console has no `rhea: consoles:` line")?;
    let size = line
        .split("screen ")
        .nth(1)
        .and_then(|s| s.split(" pixels").next())
        .ok_or_else(|| format!("no screen size in `{line}`"))?;
    let (w, h) = size
        .split_once('x')
        .ok_or_else(|| format!("no screen size in `{line}`"))?;
    match (w.parse(), h.parse()) {
        (Ok(w), Ok(h)) => Ok((w, h)),
        _ => Err(format!("no screen size in `{line}`")),
    }
}

/// What the kernel wrote after clearing the screen: COM1's bytes from the first kernel line
/// after the loader's last one (`rhea-uefi: ...`, written through the firmware's console,
/// which the kernel's clear erases).
fn kernel_output(serial: &[u8]) -> Result<&[u8], String> {
    let loader = find_last(serial, b"rhea-uefi: ").ok_or("no `rhea-uefi:` line on COM1")?;
    let from = find(&serial[loader..], b"\nrhea: ")
        .map(|i| loader + i + 1)
        .ok_or("no kernel line after the loader's")?;
    Ok(&serial[from..])
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn find_last(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).rposition(|w| w == needle)
}

/// The text `bytes` leave on a `width`×`height` console of the kernel's own code.
fn replay(bytes: &[u8], width: usize, height: usize) -> Result<String, String> {
    let info = FramebufferInfo {
        width,
        height,
        stride: width,
        format: PixelFormat::Bgr,
    };
    let mem: Vec<AtomicU32> = (0..width * height).map(|_| AtomicU32::new(0)).collect();
    let console = FbConsole::new(&mem[..], info).map_err(|e| e.to_string())?;
    console.clear();
    console.write_bytes(bytes);
    Ok(console.text().to_string())
}

/// Takes a screendump through the monitor and reads its text.
fn dump_text(monitor: &Path, dump: &Path) -> Result<String, String> {
    let _ = std::fs::remove_file(dump);
    hmp(monitor, &format!("screendump {}", dump.display()))?;
    let bytes = std::fs::read(dump).map_err(|e| format!("no screendump: {e}"))?;
    let image = Image::from_ppm(&bytes).map_err(|e| e.to_string())?;
    Ok(screen_text(&image, DEFAULT_FOREGROUND, DEFAULT_BACKGROUND))
}

/// One human-monitor command, waiting for the prompt that follows it.
fn hmp(monitor: &Path, command: &str) -> Result<(), String> {
    let stream =
        UnixStream::connect(monitor).map_err(|e| format!("monitor {}: {e}", monitor.display()))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
    let mut writer = stream;
    read_prompt(&mut reader)?;
    writer
        .write_all(format!("{command}\n").as_bytes())
        .map_err(|e| format!("monitor: {e}"))?;
    read_prompt(&mut reader)
}

/// Reads up to the monitor's `(qemu) ` prompt.
fn read_prompt(reader: &mut impl BufRead) -> Result<(), String> {
    let mut seen = Vec::new();
    let mut byte = [0u8];
    while !seen.ends_with(b"(qemu) ") {
        match reader.read(&mut byte) {
            Ok(1) => seen.push(byte[0]),
            Ok(_) => return Err("the monitor closed".into()),
            Err(e) => return Err(format!("monitor: {e}")),
        }
    }
    Ok(())
}

/// The rows that differ, numbered.
fn diff(expected: &str, shown: &str) -> String {
    let (e, s): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), shown.lines().collect());
    (0..e.len().max(s.len()))
        .filter(|&i| e.get(i) != s.get(i))
        .take(12)
        .map(|i| {
            format!(
                "  row {i}: expected `{}`\n  row {i}: shown    `{}`",
                e.get(i).unwrap_or(&""),
                s.get(i).unwrap_or(&"")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A QEMU whose stdout (COM1) is collected as it comes.
struct Running {
    child: Child,
    out: Arc<Mutex<Vec<u8>>>,
}

impl Running {
    fn spawn(mut cmd: Command) -> Result<Running, String> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start QEMU: {e}"))?;
        let out = Arc::new(Mutex::new(Vec::new()));
        let mut stdout = child.stdout.take().ok_or("no QEMU stdout")?;
        let sink = Arc::clone(&out);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend_from_slice(&buf[..n]);
            }
        });
        Ok(Running { child, out })
    }

    fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Everything up to and including the first `needle`.
    fn wait_for(&mut self, needle: &[u8], timeout: Duration) -> Result<Vec<u8>, String> {
        self.wait_for_after(needle, 0, timeout)
    }

    /// Everything up to and including the first `needle` at or after byte `from`.
    fn wait_for_after(
        &mut self,
        needle: &[u8],
        from: usize,
        timeout: Duration,
    ) -> Result<Vec<u8>, String> {
        let start = Instant::now();
        loop {
            {
                let out = self.out.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(i) = out.get(from..).and_then(|tail| find(tail, needle)) {
                    return Ok(out[..from + i + needle.len()].to_vec());
                }
            }
            let ended = self.exited();
            if ended || start.elapsed() > timeout {
                let out = self.out.lock().unwrap_or_else(|p| p.into_inner());
                let tail =
                    String::from_utf8_lossy(&out[out.len().saturating_sub(2000)..]).into_owned();
                return Err(format!(
                    "COM1 never showed `{}` ({}); its end:\n{tail}",
                    String::from_utf8_lossy(needle).escape_debug(),
                    if ended { "QEMU ended" } else { "timed out" }
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Ends QEMU (through the monitor, else by killing it) and removes the monitor socket.
    fn stop(&mut self, monitor: &Path) {
        let _ = UnixStream::connect(monitor).and_then(|mut s| s.write_all(b"quit\n"));
        let start = Instant::now();
        while !self.exited() && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(monitor);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_output_starts_after_the_loader() {
        let serial = b"\x1b[2JBdsDxe: loading\r\nrhea-uefi: loading\r\nrhea-uefi: kernel at\r\nrhea: smp: x\r\nrhea: y\r\n";
        assert_eq!(
            kernel_output(serial).unwrap(),
            b"rhea: smp: x\r\nrhea: y\r\n"
        );
        assert!(kernel_output(b"rhea: no loader\n").is_err());
        assert!(kernel_output(b"rhea-uefi: cannot boot\n").is_err());
    }

    #[test]
    fn the_display_is_removed() {
        let mut extra: Vec<String> = ["-drive", "x", "-device", "VGA", "-device", "ide-hd"]
            .map(String::from)
            .to_vec();
        remove_display(&mut extra);
        assert_eq!(extra, ["-drive", "x", "-device", "ide-hd"]);
    }

    #[test]
    fn the_screen_size_comes_from_the_console_line() {
        let c = "x\nrhea: consoles: COM1 present, screen 1280x800 pixels (160x50 characters)\n";
        assert_eq!(screen_size(c), Ok((1280, 800)));
        assert!(screen_size("rhea: consoles: COM1 present, screen none\n").is_err());
        assert!(screen_size("nothing\n").is_err());
    }

    #[test]
    fn a_replay_wraps_and_scrolls_like_the_console() {
        // 4 columns, 2 rows: "abcdef" wraps, the third line scrolls the first away.
        assert_eq!(replay(b"abcdef\r\nxy", 32, 32).unwrap(), "ef\nxy\n");
        assert_eq!(replay(b"abcdef\r\nxy\r\n", 32, 32).unwrap(), "xy\n\n");
        assert!(diff("a\nb\n", "a\nc\n").contains("row 1"));
    }
}
