//! `cargo xtask test`'s file-system cases: `tests/fs` booted with an initramfs packed here.
//!
//! The fixture is a folder written by [`fixture`] — a web page, a 1 MiB file of pseudo-random
//! bytes with an odd length, 300 small files, a tree 40 directories deep, an empty file and
//! directory, relative, absolute and looping links — with a `MANIFEST` of every regular file
//! (`/path size fnv1a64`). It is packed by the same code as `--initrd DIR`
//! ([`crate::build::initrd::pack_dir`]) and given to the boot as each protocol carries it:
//! QEMU's `-initrd` (a PVH module on x86, the devicetree's `linux,initrd-*` on Arm) and
//! LinuxU's `rhea.initrd=`. The app checks every file against the manifest, copies the tree
//! through tmpfs, runs threads on both CPUs, and tries bad names and a full tmpfs
//! (`tests/fs/src/main.rs`). Here the counts it prints must equal what was packed.
//!
//! The `fs damaged initramfs` cases give the archive cut at 60%: the boot must say why it was
//! refused and the app find `/` an empty, working tmpfs.
//!
//! Case names: `<board>/<machine>/<accel> fs initramfs` and `... fs damaged initramfs`
//! (`--filter fs`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::apps::{self, App};
use crate::boards::{self, Runner};
use crate::build::{image, initrd};
use crate::qemu::{self, Accel, Verdict};
use crate::{Workspace, setup};

/// The boards and machines booted (every transport of an initrd there is so far).
pub(crate) const CASES: &[(&str, &str)] = &[
    ("linuxu", "realtime"),
    ("qemu-x86_64", "q35"),
    ("qemu-x86_64", "microvm"),
    ("qemu-aarch64", "virt-gicv3"),
    ("rpi4", "raspi4b"),
    ("pc-uefi", "q35"),
];

/// The damaged-archive cases (one per way of carrying it).
pub(crate) const DAMAGED_CASES: &[(&str, &str)] = &[
    ("linuxu", "realtime"),
    ("qemu-x86_64", "q35"),
    ("qemu-aarch64", "virt-gicv3"),
];

/// `/tmp`'s size: the copy of the fixture takes ~2.3 MiB (each small file a 4 KiB chunk).
const TMP_KIB: u32 = 6144;

/// The shared-directory cases: LinuxU's `rhea.fs.host`, QEMU's virtio-9p (PCI on q35, MMIO
/// on microvm and Arm virt).
pub(crate) const HOST_CASES: &[(&str, &str)] = &[
    ("linuxu", "realtime"),
    ("qemu-x86_64", "q35"),
    ("qemu-x86_64", "microvm"),
    ("qemu-aarch64", "virt-gicv3"),
];

/// A shared-directory case's name: `fs host directory` (LinuxU) or `fs 9p share`.
pub(crate) fn host_case_name(board: &str, machine: &str) -> String {
    let what = if board == "linuxu" {
        "fs host directory"
    } else {
        "fs 9p share"
    };
    super::special_case_name(board, machine, what)
}

/// A case's name.
pub(crate) fn case_name(board: &str, machine: &str) -> String {
    super::special_case_name(board, machine, "fs initramfs")
}

/// A damaged-archive case's name.
pub(crate) fn damaged_case_name(board: &str, machine: &str) -> String {
    super::special_case_name(board, machine, "fs damaged initramfs")
}

pub(super) fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `n` bytes of xorshift64 from `seed`: content no compression or pattern can fake.
pub(super) fn pseudo_random(mut x: u64, n: usize) -> Vec<u8> {
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Writes `files` (paths relative to `dir`) and their `MANIFEST` (`/path size fnv1a64`, the
/// format `tests/fs` reads) under `dir`.
fn write_tree(dir: &Path, files: &[(String, Vec<u8>)]) -> std::io::Result<()> {
    for (path, data) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().expect("a file has a folder"))?;
        std::fs::write(&p, data)?;
    }
    let manifest: String = files
        .iter()
        .map(|(p, d)| format!("/{p} {} {:016x}\n", d.len(), fnv1a(d)))
        .collect();
    std::fs::write(dir.join("MANIFEST"), manifest)
}

/// What [`fixture`] packed: regular files (the manifest's lines) and their bytes.
pub(super) struct Packed {
    pub(super) archive: PathBuf,
    files: usize,
    bytes: u64,
}

/// Writes the fixture folder under `target/fs/tree` and packs it; the archive and its counts.
pub(super) fn fixture(ws: &Workspace) -> Result<Packed, String> {
    let base = ws.root.join("target/fs");
    let tree = base.join("tree");
    let _ = std::fs::remove_dir_all(&tree);
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    files.push((
        "www/index.html".into(),
        b"<h1>Rhea</h1>\n<p>served from the initramfs</p>\n".to_vec(),
    ));
    let big = pseudo_random(0x9e37_79b9_7f4a_7c15, (1 << 20) + 123);
    files.push(("data/big.bin".into(), big));
    for i in 0..300 {
        files.push((
            format!("many/f{i:03}"),
            format!("file {i}\n").repeat(i % 17 + 1).into_bytes(),
        ));
    }
    let deep: String = (1..=40).map(|i| format!("d{i:02}/")).collect();
    files.push((format!("deep/{deep}leaf.txt"), b"deep\n".to_vec()));
    files.push(("empty".into(), Vec::new()));
    let io = |e: std::io::Error| format!("writing the fixture under {}: {e}", tree.display());
    write_tree(&tree, &files).map_err(io)?;
    std::fs::create_dir_all(tree.join("emptydir")).map_err(io)?;
    std::fs::create_dir_all(tree.join("links")).map_err(io)?;
    for (link, target) in [
        ("rel", "../www/index.html"),
        ("abs", "/data/big.bin"),
        ("loop1", "loop2"),
        ("loop2", "loop1"),
    ] {
        std::os::unix::fs::symlink(target, tree.join("links").join(link)).map_err(io)?;
    }
    let archive = initrd::pack_dir(&tree).map_err(|e| e.to_string())?;
    let path = base.join("initrd.cpio");
    std::fs::write(&path, &archive).map_err(io)?;
    Ok(Packed {
        archive: path,
        files: files.len(),
        bytes: files.iter().map(|(_, d)| d.len() as u64).sum(),
    })
}

/// Boots `tests/fs` on (board, machine) with `archive` as its initrd and `append` on its
/// command line; the console.
pub(super) fn boot(
    ws: &Workspace,
    all_apps: &[App],
    board: &str,
    machine: &str,
    archive: &Path,
    append: &str,
    qemu_extra: &[String],
) -> Result<String, String> {
    let board = boards::find(board).map_err(|e| e.to_string())?;
    let app = apps::find(all_apps, "fs").map_err(|e| e.to_string())?;
    setup::ensure_toolchain(ws, board).map_err(|e| e.to_string())?;
    let image = image::build(ws, board, app).map_err(|e| e.to_string())?;
    // pc-uefi's loader reads the archive off the disk it boots from (`\\initrd.img`).
    let (boot, archive_arg) = match board.image {
        boards::ImageFormat::UefiDisk => (
            crate::uefi_disk::with_initrd(&image.boot, archive).map_err(|e| e.to_string())?,
            None,
        ),
        _ => (image.boot.clone(), Some(archive)),
    };
    let archive = archive.to_string_lossy();
    let captured = if board.runner == Runner::Process {
        let line = format!(
            "rhea.checker=1 rhea.cpus=2 rhea.tmp_kib={TMP_KIB} rhea.initrd={archive} {append}"
        );
        let line = super::process_cmdline(machine, 1, &line);
        qemu::run_process_captured(&image.elf, &line, None, app.timeout, false, None)
            .map_err(|e| e.to_string())?
    } else {
        let qemu = setup::ensure_qemu(board).map_err(|e| e.to_string())?;
        let line = format!("rhea.checker=1 rhea.tmp_kib={TMP_KIB} {append}");
        let spec = qemu::Spec {
            board,
            machine,
            accel: Accel::Tcg,
            smp: 2,
            mem: "128M",
            kernel: &boot,
            serial: qemu::Serial::Captured,
            append: &line,
        };
        let mut extra: Vec<&str> = Vec::new();
        if archive_arg.is_some() {
            extra.extend(["-initrd", &*archive]);
        }
        extra.extend(qemu_extra.iter().map(String::as_str));
        qemu::run_captured_with(&qemu, &spec, &extra, app.timeout, false)
            .map_err(|e| e.to_string())?
    };
    let console = captured.console();
    for l in console.lines().filter(|l| l.starts_with("fs: throughput")) {
        println!("  {}", l.trim_end());
    }
    let verdict = match board.runner {
        Runner::Process => qemu::classify_process(&captured.end),
        _ => qemu::classify(&captured.end),
    };
    if verdict != Verdict::Success || !console.contains("fs: PASS") {
        let lines: Vec<&str> = console.lines().collect();
        let from = lines.len().saturating_sub(30);
        return Err(format!(
            "{}; the console's end:\n{}",
            captured.end.describe(),
            lines[from..].join("\n")
        ));
    }
    Ok(console)
}

/// One case: the fixture packed, booted, the app's counts compared with it.
pub(crate) fn run(
    ws: &Workspace,
    all_apps: &[App],
    board: &str,
    machine: &str,
) -> Result<Duration, String> {
    let start = Instant::now();
    let packed = fixture(ws)?;
    let console = boot(ws, all_apps, board, machine, &packed.archive, "", &[])?;
    let want = format!(
        "fs: initramfs: {} files, {} bytes verified against the manifest",
        packed.files, packed.bytes
    );
    let copied = format!(
        "fs: tmpfs: {} files, {} bytes copied and verified",
        packed.files, packed.bytes
    );
    for line in [
        "rhea: initrd: ",
        "rhea: fs: / is the initramfs: ",
        want.as_str(),
        copied.as_str(),
        " CPUs: files written, read back, removed; shared file intact",
        "fs: a 64 KiB tmpfs filled after ",
        "\"/tmp/small/fill\": no space left",
        "fs: PASS",
    ] {
        if !console.contains(line) {
            return Err(format!("the console lacks {line:?}"));
        }
    }
    // Every CPU took part (raspi4b has 4 whatever is asked, the others 2).
    let threads = console
        .lines()
        .find_map(|l| {
            l.strip_prefix("fs: ")?
                .split_once(" threads on ")?
                .0
                .parse::<u32>()
                .ok()
        })
        .unwrap_or(0);
    if threads < 2 {
        return Err(format!(
            "{threads} worker threads ran; at least 2 CPUs were wanted"
        ));
    }
    Ok(start.elapsed())
}

/// One damaged-archive case: the fixture cut at 60%.
pub(crate) fn run_damaged(
    ws: &Workspace,
    all_apps: &[App],
    board: &str,
    machine: &str,
) -> Result<Duration, String> {
    let start = Instant::now();
    let packed = fixture(ws)?;
    let whole = std::fs::read(&packed.archive).map_err(|e| e.to_string())?;
    let cut = ws.root.join("target/fs/damaged.cpio");
    std::fs::write(&cut, &whole[..whole.len() * 3 / 5]).map_err(|e| e.to_string())?;
    let console = boot(ws, all_apps, board, machine, &cut, "fs.expect=refused", &[])?;
    let refused = "rhea: fs: the initramfs is refused: cpio entry at byte ";
    if !console.contains(refused) || !console.contains("ends inside the entry's") {
        return Err(format!(
            "the console does not say why the archive was refused ({refused:?})"
        ));
    }
    Ok(start.elapsed())
}

/// Checks every file of the manifest Rhea wrote (`text`: `/path size fnv1a64` lines) as
/// `read` gives it back here, byte for byte by size and hash; there must be 102 (what
/// `tests/fs` writes under `out/`). The count.
pub(super) fn check_rheas_manifest(
    text: &str,
    read: impl Fn(&str) -> Result<Vec<u8>, String>,
) -> Result<usize, String> {
    let mut checked = 0;
    for line in text.lines() {
        let mut w = line.split(' ');
        let (Some(p), Some(size), Some(hash)) = (w.next(), w.next(), w.next()) else {
            return Err(format!("Rhea's manifest has a bad line {line:?}"));
        };
        let data = read(p)?;
        let want = format!("{} {:016x}", data.len(), fnv1a(&data));
        if want != format!("{size} {hash}") {
            return Err(format!(
                "{p}: the host reads {want}, Rhea wrote {size} {hash}"
            ));
        }
        checked += 1;
    }
    if checked != 102 {
        return Err(format!("Rhea's manifest lists {checked} files, not 102"));
    }
    Ok(checked)
}

/// One host-directory case: files written here read by Rhea under `/mnt/in`, files Rhea writes
/// under `/mnt/out` checked here against the manifest it writes; links that point out of the
/// folder (`/etc/hostname`, `../../..`) must not reach the host's files.
pub(crate) fn run_host(
    ws: &Workspace,
    all_apps: &[App],
    board: &str,
    machine: &str,
) -> Result<Duration, String> {
    let start = Instant::now();
    let packed = fixture(ws)?;
    let host = ws.root.join("target/fs/host");
    let _ = std::fs::remove_dir_all(&host);
    let io = |e: std::io::Error| format!("writing {}: {e}", host.display());
    let input = host.join("in");
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    files.push((
        "big.bin".into(),
        pseudo_random(0x2545_f491_4f6c_dd1d, 777_777),
    ));
    for i in 0..50 {
        files.push((
            format!("small/s{i:02}"),
            format!("{i} ").repeat(i * 7).into_bytes(),
        ));
    }
    let deep: String = (1..=30).map(|i| format!("d{i:02}/")).collect();
    files.push((format!("deep/{deep}leaf"), b"from the host\n".to_vec()));
    write_tree(&input, &files).map_err(io)?;
    std::os::unix::fs::symlink("/etc/hostname", input.join("escape")).map_err(io)?;
    std::os::unix::fs::symlink("../../..", input.join("up")).map_err(io)?;
    // LinuxU mounts the folder itself; QEMU exports it over virtio-9p, tag `share`.
    let (append, qemu_extra, mounted) = if board == "linuxu" {
        (
            format!("rhea.fs.host={}:/mnt fs.host=/mnt", host.display()),
            Vec::new(),
            "rhea: fs: /mnt is a hostfs",
        )
    } else {
        let device = if machine == "q35" {
            "virtio-9p-pci"
        } else {
            "virtio-9p-device"
        };
        let share = qemu::Share {
            tag: "share".into(),
            path: host.clone(),
            readonly: false,
            device,
        };
        (
            "fs.host=/share".to_string(),
            share.args(0).to_vec(),
            "rhea: fs: /share is a 9p share (virtio-9p",
        )
    };
    let console = boot(
        ws,
        all_apps,
        board,
        machine,
        &packed.archive,
        &append,
        &qemu_extra,
    )?;
    let read = format!(
        "fs: host directory: {} files, {} bytes written by the host verified",
        files.len(),
        files.iter().map(|(_, d)| d.len() as u64).sum::<u64>()
    );
    let escape = if board == "linuxu" {
        "fs: refused as it must: \"/mnt/in/escape\": no such file"
    } else {
        "fs: refused as it must: \"/share/in/escape\": no such file"
    };
    for line in [
        mounted,
        read.as_str(),
        escape,
        "fs: host directory: 102 files written for the host to check",
    ] {
        if !console.contains(line) {
            return Err(format!("the console lacks {line:?}"));
        }
    }
    // What Rhea wrote, checked here byte for byte.
    let out = host.join("out");
    let text = std::fs::read_to_string(out.join("MANIFEST"))
        .map_err(|e| format!("Rhea's manifest: {e}"))?;
    let checked = check_rheas_manifest(&text, |p| {
        std::fs::read(out.join(p.trim_start_matches('/')))
            .map_err(|e| format!("{p}, which Rhea wrote: {e}"))
    })?;
    for gone in ["gone", "renamed"] {
        if out.join(gone).exists() {
            return Err(format!("out/{gone} is still on the host"));
        }
    }
    println!("  host directory: {checked} files Rhea wrote verified on the host");
    Ok(start.elapsed())
}
