//! Test app: files, driven by `cargo xtask test`'s fs cases (`xtask/src/test/fs.rs`), which
//! pack a tree into the initramfs with a `MANIFEST` of every regular file (`path size
//! fnv1a64`). The app:
//!
//! 1. finds `/` is the initramfs and `/tmp` a tmpfs (`rhea::fs::mounts`);
//! 2. reads every file of the manifest and checks its size and hash, and prints the count and
//!    bytes (xtask compares them with what it packed);
//! 3. follows the archive's links (relative, absolute, a loop: refused), finds it read-only;
//! 4. copies the whole tree into `/tmp`, checks it again, removes it, and finds the tmpfs's
//!    usage back where it started;
//! 5. runs one thread per CPU, pinned, each writing, reading back and removing its own files
//!    and its slice of a shared file while reading the big file from the initramfs;
//! 6. tries what a careless caller would: `..` above `/`, NUL, long names, a path too deep,
//!    filling a small tmpfs (clear `NoSpace`, nothing else hurt), a call with interrupts off.
//!
//! With `fs.expect=refused` on the command line (a damaged archive), it checks instead that
//! `/` is an empty tmpfs and files still work.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use rhea::fs::{self, ErrorKind, File, OpenOptions, SeekFrom};
use rhea::println;
use rhea::sync::{IrqsOff, SpinLock};
use rhea::thread::{Builder, CpuSet};

rhea::main!(main, heap_kib = 12288);

fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

type R<T> = Result<T, String>;

fn ctx<T>(r: Result<T, fs::Error>, what: &str) -> R<T> {
    r.map_err(|e| format!("{what}: {e}"))
}

fn expect_err<T: core::fmt::Debug>(r: Result<T, fs::Error>, want: ErrorKind, what: &str) -> R<()> {
    match r {
        Err(e) if e.kind == want => {
            println!("fs: refused as it must: {e}");
            Ok(())
        }
        other => Err(format!("{what}: expected {want:?}, got {other:?}")),
    }
}

struct Entry {
    path: String,
    size: u64,
    hash: u64,
}

/// The manifest at `path` (`/path size fnv1a64` lines), each path put under `under`.
fn manifest(path: &str, under: &str) -> R<Vec<Entry>> {
    let text = ctx(fs::read_to_string(path), path)?;
    let mut out = Vec::new();
    for line in text.lines() {
        let mut w = line.split(' ');
        let (Some(p), Some(s), Some(h), None) = (w.next(), w.next(), w.next(), w.next()) else {
            return Err(format!(
                "a manifest line that is not `path size hash`: {line:?}"
            ));
        };
        out.push(Entry {
            path: format!("{under}{p}"),
            size: s.parse().map_err(|_| format!("bad size in {line:?}"))?,
            hash: u64::from_str_radix(h, 16).map_err(|_| format!("bad hash in {line:?}"))?,
        });
    }
    Ok(out)
}

fn verify(root: &str, entries: &[Entry]) -> R<(usize, u64)> {
    let mut bytes = 0;
    for e in entries {
        let path = format!("{root}{}", e.path);
        let data = ctx(fs::read(&path), &path)?;
        if data.len() as u64 != e.size || fnv1a(&data) != e.hash {
            return Err(format!(
                "{path}: {} bytes, hash {:016x}; the manifest says {} bytes, {:016x}",
                data.len(),
                fnv1a(&data),
                e.size,
                e.hash
            ));
        }
        let meta = ctx(fs::metadata(&path), &path)?;
        if !meta.is_file() || meta.len != e.size {
            return Err(format!("{path}: metadata {meta:?}"));
        }
        bytes += e.size;
    }
    Ok((entries.len(), bytes))
}

fn tmp_used() -> R<u64> {
    let m = ctx(fs::mounts(), "mounts")?;
    m.iter()
        .find(|m| m.at == "/tmp")
        .map(|m| m.usage.used)
        .ok_or_else(|| String::from("no /tmp mount"))
}

fn main() -> Result<(), String> {
    let refused = rhea::cmdline_value("fs.expect") == Some("refused");
    let mounts = ctx(fs::mounts(), "mounts")?;
    for m in &mounts {
        println!(
            "fs: mount {} {} used {} limit {:?} nodes {}",
            m.at, m.kind, m.usage.used, m.usage.limit, m.usage.nodes
        );
    }
    let kinds: Vec<(&str, &str)> = mounts.iter().map(|m| (m.at.as_str(), m.kind)).collect();
    let want_root = if refused { "tmpfs" } else { "initramfs" };
    if kinds[..kinds.len().min(2)] != [("/", want_root), ("/tmp", "tmpfs")] {
        return Err(format!(
            "mounts {kinds:?}, expected / {want_root} and /tmp tmpfs"
        ));
    }
    if refused {
        if fs::initrd().is_none() {
            return Err(String::from("no initrd arrived at all"));
        }
        let listing = ctx(fs::read_dir("/"), "/")?;
        let names: Vec<&str> = listing.iter().map(|d| d.name.as_str()).collect();
        if names != ["tmp"] {
            return Err(format!(
                "/ holds {names:?}, expected only the mount point tmp"
            ));
        }
        ctx(fs::write("/note", b"root is writable"), "/note")?;
        if ctx(fs::read("/note"), "/note")? != b"root is writable" {
            return Err(String::from("/note read back wrong"));
        }
        println!("fs: the damaged initramfs was refused; / is an empty, working tmpfs");
        println!("fs: PASS");
        return Ok(());
    }

    // 2. Every file of the manifest.
    let entries = manifest("/MANIFEST", "")?;
    let (files, bytes) = verify("", &entries)?;
    println!("fs: initramfs: {files} files, {bytes} bytes verified against the manifest");

    // 3. Links, listings, read-only.
    let index = ctx(fs::read("/www/index.html"), "index")?;
    if ctx(fs::read("/links/rel"), "/links/rel")? != index {
        return Err(String::from("/links/rel does not read as /www/index.html"));
    }
    let big = ctx(fs::read("/data/big.bin"), "big")?;
    if ctx(fs::read("/links/abs"), "/links/abs")? != big {
        return Err(String::from("/links/abs does not read as /data/big.bin"));
    }
    if ctx(fs::read_link("/links/rel"), "readlink")? != "../www/index.html" {
        return Err(String::from("/links/rel's target"));
    }
    expect_err(
        fs::read("/links/loop1"),
        ErrorKind::TooManyLinks,
        "a link loop",
    )?;
    expect_err(
        fs::write("/www/index.html", b"x"),
        ErrorKind::ReadOnly,
        "writing the initramfs",
    )?;
    expect_err(
        fs::create_dir("/data/new"),
        ErrorKind::ReadOnly,
        "mkdir in the initramfs",
    )?;
    let many = ctx(fs::read_dir("/many"), "/many")?;
    let want_many = entries
        .iter()
        .filter(|e| e.path.starts_with("/many/"))
        .count();
    if many.len() != want_many {
        return Err(format!(
            "/many lists {} entries, {want_many} packed",
            many.len()
        ));
    }
    let mut f = ctx(File::open("/data/big.bin"), "big")?;
    ctx(f.seek(SeekFrom::End(-100)), "seek")?;
    let mut tail = [0u8; 200];
    let n = ctx(f.read(&mut tail), "read")?;
    if n != 100 || tail[..100] != big[big.len() - 100..] {
        return Err(format!(
            "the last 100 bytes of big.bin read as {n} bytes or wrong"
        ));
    }
    println!("fs: links, listings, seeks and read-only refusals as expected");

    // 4. The tree copied into tmpfs and back out.
    let start = tmp_used()?;
    for e in &entries {
        let to = format!("/tmp/copy{}", e.path);
        let dir = &to[..to.rfind('/').unwrap_or(0)];
        ctx(fs::create_dir_all(dir), dir)?;
        let mut src = ctx(File::open(&e.path), &e.path)?;
        let mut dst = ctx(File::create(&to), &to)?;
        let mut buf = [0u8; 1500];
        loop {
            let n = ctx(src.read(&mut buf), &e.path)?;
            if n == 0 {
                break;
            }
            ctx(dst.write_all(&buf[..n]), &to)?;
        }
    }
    let (copied, copied_bytes) = verify("/tmp/copy", &entries)?;
    let used = tmp_used()? - start;
    println!(
        "fs: tmpfs: {copied} files, {copied_bytes} bytes copied and verified ({used} bytes of tmpfs)"
    );
    remove_tree("/tmp/copy")?;
    throughput("/tmp/speed", &big)?;
    ctx(fs::remove_file("/tmp/speed"), "speed")?;
    // The initramfs read alone.
    let t0 = rhea::time::now();
    let again = ctx(fs::read("/data/big.bin"), "big")?;
    let ns = rhea::time::now().saturating_duration_since(t0).as_nanos() as u64;
    println!(
        "fs: throughput /data/big.bin (initramfs): read {} KB/s ({} bytes whole)",
        (again.len() as u64 * 1_000_000) / ns.max(1),
        again.len()
    );
    if tmp_used()? != start {
        return Err(format!(
            "tmpfs usage {} after removing the copy, {start} before",
            tmp_used()?
        ));
    }

    // 5. Threads on every CPU at once.
    threads(&big)?;

    // 6. What a careless caller does.
    if ctx(fs::read("/../../../www/index.html"), "`..` above /")? != index {
        return Err(String::from("`..` above / did not stay at /"));
    }
    expect_err(
        fs::write("/tmp/a\0b", b""),
        ErrorKind::InvalidName("contains NUL"),
        "NUL",
    )?;
    let long = format!("/tmp/{}", "n".repeat(256));
    expect_err(
        fs::write(&long, b""),
        ErrorKind::NameTooLong,
        "a 256-byte name",
    )?;
    let deep = format!("/tmp{}", "/d".repeat(64));
    expect_err(
        fs::create_dir_all(&deep),
        ErrorKind::TooDeep,
        "65 directories deep",
    )?;
    remove_tree("/tmp/d")?;
    expect_err(
        fs::remove_dir("/tmp"),
        ErrorKind::Busy,
        "removing a mount point",
    )?;
    expect_err(
        fs::rename("/www/index.html", "/tmp/x"),
        ErrorKind::CrossesMounts,
        "rename across",
    )?;
    full_tmpfs()?;
    static LOCK: SpinLock<u32, IrqsOff> = SpinLock::new(0);
    {
        let _held = LOCK.lock();
        expect_err(
            fs::read("/MANIFEST"),
            ErrorKind::AtomicContext,
            "a read with interrupts off",
        )?;
    }
    if tmp_used()? != start {
        return Err(format!(
            "tmpfs usage {} at the end, {start} at the start",
            tmp_used()?
        ));
    }
    if let Some(at) = rhea::cmdline_value("fs.host") {
        host_dir(at, &big)?;
    }
    if let Some(at) = rhea::cmdline_value("fs.disk") {
        disk(at, &big)?;
    }
    println!("fs: PASS");
    Ok(())
}

/// What the host wrote under `{at}/in/`, read against its manifest (the count and bytes
/// printed under `label`), and `in/small` listed (a 9P server's cookies are its telldir's,
/// unordered; a FAT directory's order is its slots').
fn check_in(at: &str, label: &str) -> R<()> {
    let entries = manifest(&format!("{at}/in/MANIFEST"), "/in")?;
    let (n, bytes) = verify(at, &entries)?;
    println!("fs: {label}: {n} files, {bytes} bytes written by the host verified");
    let small = ctx(fs::read_dir(&format!("{at}/in/small")), "in/small")?;
    let want = entries
        .iter()
        .filter(|e| e.path.starts_with("/in/small/"))
        .count();
    if small.len() != want || small.iter().any(|d| d.kind != fs::FileType::File) {
        return Err(format!(
            "in/small lists {} entries; the host wrote {want} files",
            small.len()
        ));
    }
    Ok(())
}

/// A host directory mounted at `at` (LinuxU's `rhea.fs.host`): what the host wrote under
/// `in/` is read against its manifest; a tree is written under `out/` with a manifest the
/// host checks; links cannot leave Rhea's namespace.
fn host_dir(at: &str, big: &[u8]) -> R<()> {
    check_in(at, "host directory")?;
    // Links on the host resolve in Rhea's namespace, never the host's.
    expect_err(
        fs::read(&format!("{at}/in/escape")),
        ErrorKind::NotFound,
        "an absolute host link",
    )?;
    let up = ctx(fs::read(&format!("{at}/in/up/www/index.html")), "in/up")?;
    if up != ctx(fs::read("/www/index.html"), "index")? {
        return Err(String::from(
            "a relative link up and out did not land on Rhea's /",
        ));
    }
    // Written by Rhea, checked by the host: a big file, many files from threads on every CPU
    // at once, a deep tree.
    let out = format!("{at}/out");
    let _ = remove_tree(&out);
    ctx(fs::create_dir(&out), &out)?;
    let manifest = write_out(&out, big, 30, "host")?;
    // Rename and remove on the host's file system; no rename out of it.
    ctx(fs::write(&format!("{out}/gone"), b"x"), "gone")?;
    ctx(
        fs::rename(&format!("{out}/gone"), &format!("{out}/renamed")),
        "rename",
    )?;
    ctx(fs::remove_file(&format!("{out}/renamed")), "remove")?;
    expect_err(
        fs::rename(&format!("{out}/big.bin"), "/tmp/big.bin"),
        ErrorKind::CrossesMounts,
        "a rename from the host directory to tmpfs",
    )?;
    ctx(
        fs::write(&format!("{out}/MANIFEST"), manifest.as_bytes()),
        "out/MANIFEST",
    )?;
    println!("fs: host directory: 102 files written for the host to check");
    throughput(&format!("{out}/speed"), big)?;
    ctx(fs::remove_file(&format!("{out}/speed")), "speed")?;
    Ok(())
}

/// A FAT disk mounted at `at` (virtio-blk): what the host put under `in/` read against its
/// manifest; a tree written under `out/` (8.3 names: the FAT driver writes short names only)
/// by threads on every CPU at once, with a manifest the host checks in the image afterwards.
fn disk(at: &str, big: &[u8]) -> R<()> {
    check_in(at, "disk")?;
    let out = format!("{at}/out");
    ctx(fs::create_dir(&out), &out)?;
    let manifest = write_out(&out, big, 20, "disk")?;
    // A file rewritten shorter, then removed: nothing of it may stay behind.
    ctx(fs::write(&format!("{out}/gone"), big), "gone")?;
    ctx(fs::write(&format!("{out}/gone"), b"x"), "gone, shorter")?;
    if ctx(fs::read(&format!("{out}/gone")), "gone")? != b"x" {
        return Err(String::from("out/gone rewritten shorter reads wrong"));
    }
    ctx(fs::remove_file(&format!("{out}/gone")), "remove")?;
    expect_err(
        fs::read(&format!("{out}/gone")),
        ErrorKind::NotFound,
        "a removed file",
    )?;
    expect_err(
        fs::rename(&format!("{out}/big.bin"), "/tmp/big.bin"),
        ErrorKind::CrossesMounts,
        "a rename from the disk to tmpfs",
    )?;
    ctx(
        fs::write(&format!("{out}/MANIFEST"), manifest.as_bytes()),
        "out/MANIFEST",
    )?;
    println!("fs: disk: 102 files written for the host to check");
    throughput(&format!("{out}/speed"), big)?;
    ctx(fs::remove_file(&format!("{out}/speed")), "speed")?;
    Ok(())
}

/// The content of `out/many/f{i}` (`label` names who wrote it).
fn out_file(label: &str, i: usize) -> String {
    format!("{label} file {i}\n").repeat(i + 1)
}

/// Writes under the folder `out` what the host checks afterwards: `big` as `big.bin`, a leaf
/// `depth` folders deep, and 100 files under `many/` from threads on every CPU at once (each
/// read back); their manifest (`/path size fnv1a64` lines, relative to `out`).
fn write_out(out: &str, big: &[u8], depth: usize, label: &str) -> R<String> {
    let mut manifest = String::new();
    ctx(fs::write(&format!("{out}/big.bin"), big), "out/big.bin")?;
    manifest.push_str(&format!("/big.bin {} {:016x}\n", big.len(), fnv1a(big)));
    let deep: String = (1..=depth).map(|i| format!("/d{i:02}")).collect();
    ctx(fs::create_dir_all(&format!("{out}/deep{deep}")), "out/deep")?;
    let leaf = b"written by rhea\n";
    ctx(fs::write(&format!("{out}/deep{deep}/leaf"), leaf), "leaf")?;
    manifest.push_str(&format!(
        "/deep{deep}/leaf {} {:016x}\n",
        leaf.len(),
        fnv1a(leaf)
    ));
    ctx(fs::create_dir(&format!("{out}/many")), "out/many")?;
    let cpus = rhea::thread::online_cpus();
    let workers: Vec<usize> = (0..64).filter(|&c| cpus.contains(c)).collect();
    let step = workers.len();
    let errors: Arc<SpinLock<Vec<String>, IrqsOff>> = Arc::new(SpinLock::new(Vec::new()));
    let mut handles = Vec::new();
    for (t, &cpu) in workers.iter().enumerate() {
        let out = String::from(out);
        let label = String::from(label);
        let errors = errors.clone();
        let h = Builder::new()
            .name("fs-out")
            .stack_size(32 * 1024)
            .affinity(CpuSet::single(cpu))
            .spawn(move || {
                for i in (t..100).step_by(step) {
                    let data = out_file(&label, i);
                    let p = format!("{out}/many/f{i:03}");
                    if let Err(e) = fs::write(&p, data.as_bytes()) {
                        errors.lock().push(format!("worker {t}: {e}"));
                        return;
                    }
                }
            })
            .map_err(|e| format!("spawn: {e:?}"))?;
        handles.push(h);
    }
    for h in handles {
        h.join().map_err(|e| format!("join: {e:?}"))?;
    }
    if let Some(e) = errors.lock().first() {
        return Err(e.clone());
    }
    for i in 0..100 {
        let data = out_file(label, i);
        let p = format!("{out}/many/f{i:03}");
        if ctx(fs::read(&p), &p)? != data.as_bytes() {
            return Err(format!("{p} read back wrong"));
        }
        manifest.push_str(&format!(
            "/many/f{i:03} {} {:016x}\n",
            data.len(),
            fnv1a(data.as_bytes())
        ));
    }
    Ok(manifest)
}

/// Prints how fast `big` is written to `path` and read back (64 KiB at a time), in KB/s: a
/// figure for the report, not a check.
fn throughput(path: &str, big: &[u8]) -> R<()> {
    let t0 = rhea::time::now();
    let mut f = ctx(File::create(path), path)?;
    for piece in big.chunks(64 << 10) {
        ctx(f.write_all(piece), path)?;
    }
    drop(f);
    let t1 = rhea::time::now();
    let mut f = ctx(File::open(path), path)?;
    let mut buf = alloc::vec![0u8; 64 << 10];
    let mut n = 0;
    loop {
        let got = ctx(f.read(&mut buf), path)?;
        if got == 0 {
            break;
        }
        n += got;
    }
    let t2 = rhea::time::now();
    if n != big.len() {
        return Err(format!("{path}: read back {n} bytes of {}", big.len()));
    }
    let kbs = |ns: u64| (big.len() as u64 * 1_000_000) / ns.max(1);
    println!(
        "fs: throughput {path}: write {} KB/s, read {} KB/s ({} bytes, 64 KiB at a time)",
        kbs(t1.saturating_duration_since(t0).as_nanos() as u64),
        kbs(t2.saturating_duration_since(t1).as_nanos() as u64),
        big.len()
    );
    Ok(())
}

fn remove_tree(path: &str) -> R<()> {
    for e in ctx(fs::read_dir(path), path)? {
        let p = format!("{path}/{}", e.name);
        match e.kind {
            fs::FileType::Dir => remove_tree(&p)?,
            _ => ctx(fs::remove_file(&p), &p)?,
        }
    }
    ctx(fs::remove_dir(path), path)
}

fn threads(big: &[u8]) -> R<()> {
    let cpus = rhea::thread::online_cpus();
    let n = (0..64).filter(|&c| cpus.contains(c)).count();
    const SLICE: usize = 4096;
    ctx(
        fs::write("/tmp/shared", alloc::vec![0u8; SLICE * n]),
        "shared",
    )?;
    let big_hash = fnv1a(big);
    let errors: Arc<SpinLock<Vec<String>, IrqsOff>> = Arc::new(SpinLock::new(Vec::new()));
    let mut handles = Vec::new();
    for (t, cpu) in (0..64).filter(|&c| cpus.contains(c)).enumerate() {
        let errors = errors.clone();
        let h = Builder::new()
            .name("fs-worker")
            .stack_size(32 * 1024)
            .affinity(CpuSet::single(cpu))
            .spawn(move || {
                if let Err(e) = worker(t, big_hash) {
                    errors.lock().push(format!("worker {t} on CPU {cpu}: {e}"));
                }
            })
            .map_err(|e| format!("spawn: {e:?}"))?;
        handles.push(h);
    }
    for h in handles {
        h.join().map_err(|e| format!("join: {e:?}"))?;
    }
    if let Some(e) = errors.lock().first() {
        return Err(e.clone());
    }
    let shared = ctx(fs::read("/tmp/shared"), "shared")?;
    for t in 0..n {
        if shared[t * SLICE..(t + 1) * SLICE]
            .iter()
            .any(|&b| b != t as u8 + 1)
        {
            return Err(format!("slice {t} of the shared file is not worker {t}'s"));
        }
    }
    ctx(fs::remove_file("/tmp/shared"), "shared")?;
    println!("fs: {n} threads on {n} CPUs: files written, read back, removed; shared file intact");
    Ok(())
}

fn worker(t: usize, big_hash: u64) -> R<()> {
    const SLICE: usize = 4096;
    for round in 0..40u32 {
        let p = format!("/tmp/w{t}-{}", round % 4);
        let data: Vec<u8> = (0..(1000 + round * 97))
            .map(|i| (i as u8) ^ (t as u8) ^ (round as u8))
            .collect();
        ctx(fs::write(&p, &data), &p)?;
        if ctx(fs::read(&p), &p)? != data {
            return Err(format!("{p} read back wrong"));
        }
        let mut f = ctx(
            OpenOptions::new()
                .read(true)
                .write(true)
                .open("/tmp/shared"),
            "shared",
        )?;
        ctx(f.seek(SeekFrom::Start((t * SLICE) as u64)), "seek")?;
        ctx(f.write_all(&[t as u8 + 1; SLICE]), "shared write")?;
        if round % 8 == 0 && fnv1a(&ctx(fs::read("/data/big.bin"), "big")?) != big_hash {
            return Err(String::from("big.bin read differently under load"));
        }
        if round % 3 == 0 {
            ctx(fs::remove_file(&p), &p)?;
        }
    }
    for i in 0..4 {
        let _ = fs::remove_file(&format!("/tmp/w{t}-{i}"));
    }
    Ok(())
}

fn full_tmpfs() -> R<()> {
    ctx(fs::create_dir("/tmp/small"), "/tmp/small")?;
    ctx(
        fs::mount("/tmp/small", Arc::new(fs::Tmpfs::new(64 * 1024))),
        "mount",
    )?;
    ctx(fs::write("/tmp/small/keep", b"intact"), "keep")?;
    let mut f = ctx(File::create("/tmp/small/fill"), "fill")?;
    let mut written = 0;
    let err = loop {
        match f.write_all(&[0x5a; 4096]) {
            Ok(()) => written += 4096,
            Err(e) => break e,
        }
        if written > 1 << 20 {
            return Err(String::from("a 64 KiB tmpfs took over 1 MiB"));
        }
    };
    if err.kind != ErrorKind::NoSpace {
        return Err(format!("filling the tmpfs: {err}"));
    }
    println!("fs: a 64 KiB tmpfs filled after {written} bytes: {err}");
    if ctx(fs::read("/tmp/small/keep"), "keep")? != b"intact" {
        return Err(String::from("a full tmpfs hurt another file"));
    }
    let len = ctx(f.metadata(), "fill")?.len;
    if len != written {
        return Err(format!(
            "the refused write left the file at {len}, not {written}"
        ));
    }
    drop(f);
    expect_err(
        fs::unmount("/tmp"),
        ErrorKind::Busy,
        "unmounting /tmp with a mount below",
    )?;
    ctx(fs::remove_file("/tmp/small/fill"), "fill")?;
    ctx(fs::write("/tmp/small/again", [1u8; 8192]), "after freeing")?;
    ctx(fs::remove_file("/tmp/small/again"), "again")?;
    ctx(fs::remove_file("/tmp/small/keep"), "keep")?;
    ctx(fs::unmount("/tmp/small"), "unmount")?;
    ctx(fs::remove_dir("/tmp/small"), "/tmp/small")?;
    Ok(())
}
