//! The block-storage cases (`fs virtio-blk FAT`): a disk image of one FAT volume, made and
//! filled here with the `fatfs` crate — a tree under `in/` with its `MANIFEST` — given to
//! `tests/fs` as a virtio-blk disk (PCI on q35, MMIO on microvm and Arm virt). Rhea mounts it
//! at `/disk0`, checks `in/` byte for byte, and writes `out/` (a big file, a deep tree, 100
//! files from threads on every CPU) with its own `MANIFEST`; after the run the image is opened
//! here again and every file Rhea wrote is checked against that manifest. FAT32 on the x86
//! machines, FAT16 on Arm: both layouts are read and written by the guest.

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use fatfs::{FatType, FileSystem, FormatVolumeOptions, FsOptions};

use super::fs::{boot, check_rheas_manifest, fixture, fnv1a, pseudo_random};
use crate::Workspace;
use crate::apps::App;

/// The boards and machines booted: every virtio-blk transport.
pub(crate) const CASES: &[(&str, &str)] = &[
    ("qemu-x86_64", "q35"),
    ("qemu-x86_64", "microvm"),
    ("qemu-aarch64", "virt-gicv3"),
];

/// The disk's size and cluster for each FAT type: room for the tree, Rhea's copy and its
/// throughput file; FAT32 needs at least 65525 clusters (4 KiB ones: 260 MiB, a sparse file
/// on the host), FAT16 at most 65524 (2 KiB ones: 64 MiB).
fn geometry(kind: FatType) -> (u64, u32) {
    if kind == FatType::Fat32 {
        (260 << 20, 4096)
    } else {
        (64 << 20, 2048)
    }
}

/// A case's name.
pub(crate) fn case_name(board: &str, machine: &str) -> String {
    super::special_case_name(board, machine, "fs virtio-blk FAT")
}

/// The files the host puts under `in/` (8.3 names: the guest's FAT driver and `fatfs` without
/// long names agree on them).
fn host_files() -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = vec![(
        "big.bin".into(),
        pseudo_random(0x5851_f42d_4c95_7f2d, 700_001),
    )];
    for i in 0..40 {
        files.push((
            format!("small/s{i:02}"),
            format!("{i} ").repeat(i * 9).into_bytes(),
        ));
    }
    let deep: String = (1..=16).map(|i| format!("d{i:02}/")).collect();
    files.push((format!("deep/{deep}leaf"), b"from the host\n".to_vec()));
    files
}

fn fat_err(what: &str, e: impl std::fmt::Display) -> String {
    format!("the disk image: {what}: {e}")
}

/// Writes a fresh image at `path`: one FAT volume of `kind` filling it, `files` under `in/`
/// with their `in/MANIFEST`.
fn make_image(path: &Path, kind: FatType, files: &[(String, Vec<u8>)]) -> Result<(), String> {
    let _ = fs::remove_file(path);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let (bytes, cluster) = geometry(kind);
    file.set_len(bytes)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut file = file;
    fatfs::format_volume(
        &mut file,
        FormatVolumeOptions::new()
            .fat_type(kind)
            .bytes_per_cluster(cluster)
            .volume_label(*b"RHEADISK   "),
    )
    .map_err(|e| fat_err("format", e))?;
    let fat = FileSystem::new(&mut file, FsOptions::new()).map_err(|e| fat_err("mount", e))?;
    {
        let root = fat.root_dir();
        let input = root.create_dir("in").map_err(|e| fat_err("in", e))?;
        let mut manifest = String::new();
        for (p, data) in files {
            let (dirs, name) = p.rsplit_once('/').unwrap_or(("", p));
            let mut dir = input.clone();
            for d in dirs.split('/').filter(|d| !d.is_empty()) {
                dir = match dir.open_dir(d) {
                    Ok(found) => found,
                    Err(_) => dir.create_dir(d).map_err(|e| fat_err(d, e))?,
                };
            }
            dir.create_file(name)
                .and_then(|mut f| f.write_all(data))
                .map_err(|e| fat_err(p, e))?;
            manifest.push_str(&format!("/{p} {} {:016x}\n", data.len(), fnv1a(data)));
        }
        input
            .create_file("MANIFEST")
            .and_then(|mut f| f.write_all(manifest.as_bytes()))
            .map_err(|e| fat_err("in/MANIFEST", e))?;
    }
    fat.unmount().map_err(|e| fat_err("unmount", e))
}

/// Reads `path` (`/`-separated, under the root) from the image at `image`.
fn read_back(fat: &FileSystem<&mut fs::File>, path: &str) -> Result<Vec<u8>, String> {
    let mut f = fat
        .root_dir()
        .open_file(path)
        .map_err(|e| format!("{path}, which Rhea wrote: {e}"))?;
    let mut data = Vec::new();
    f.read_to_end(&mut data)
        .map_err(|e| format!("{path}, which Rhea wrote: {e}"))?;
    Ok(data)
}

/// One case: the image made, the guest booted on it, what it wrote checked in the image.
pub(crate) fn run(
    ws: &Workspace,
    all_apps: &[App],
    board: &str,
    machine: &str,
) -> Result<Duration, String> {
    let start = Instant::now();
    let packed = fixture(ws)?;
    let image = ws.root.join(format!("target/fs/disk-{machine}.img"));
    let kind = if board == "qemu-aarch64" {
        FatType::Fat16
    } else {
        FatType::Fat32
    };
    let files = host_files();
    make_image(&image, kind, &files)?;
    let device = if machine == "q35" {
        "virtio-blk-pci"
    } else {
        "virtio-blk-device"
    };
    let drive = format!(
        "if=none,id=blk0,format=raw,file={}",
        image.display().to_string().replace(',', ",,")
    );
    let extra = vec![
        "-drive".to_string(),
        drive,
        "-device".to_string(),
        format!("{device},drive=blk0"),
    ];
    let console = boot(
        ws,
        all_apps,
        board,
        machine,
        &packed.archive,
        "fs.disk=/disk0",
        &extra,
    )?;
    let read = format!(
        "fs: disk: {} files, {} bytes written by the host verified",
        files.len(),
        files.iter().map(|(_, d)| d.len() as u64).sum::<u64>()
    );
    for line in [
        "rhea: fs: /disk0 is a fat",
        read.as_str(),
        "fs: refused as it must: ",
        "fs: disk: 102 files written for the host to check",
    ] {
        if !console.contains(line) {
            return Err(format!("the console lacks {line:?}"));
        }
    }
    // What Rhea wrote, checked here byte for byte, and the volume still consistent enough
    // for another FAT implementation to open.
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&image)
        .map_err(|e| format!("{}: {e}", image.display()))?;
    let fat = FileSystem::new(&mut file, FsOptions::new()).map_err(|e| fat_err("mount", e))?;
    let text = String::from_utf8(read_back(&fat, "out/MANIFEST")?)
        .map_err(|_| "Rhea's manifest is not UTF-8".to_string())?;
    let checked = check_rheas_manifest(&text, |p| read_back(&fat, &format!("out{p}")))?;
    for gone in ["out/gone", "out/speed"] {
        if fat.root_dir().open_file(gone).is_ok() {
            return Err(format!("{gone}, which Rhea removed, is still in the image"));
        }
    }
    let stats = fat.stats().map_err(|e| fat_err("stats", e))?;
    println!(
        "  disk: {checked} files Rhea wrote verified in the image ({:?}, {} of {} clusters free)",
        fat.fat_type(),
        stats.free_clusters(),
        stats.total_clusters()
    );
    Ok(start.elapsed())
}
