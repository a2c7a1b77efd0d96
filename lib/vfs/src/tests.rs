//! Host tests: the cpio reader against the writer and against every kind of damage, the
//! initramfs's archive rules, tmpfs's accounting and limits, and resolution through mounts,
//! links and `..` with every limit; a model test of file contents; threads at once.

use crate::cpio::{self, Reader, Why, Writer};
use crate::node::ErrorKind as K;
use crate::*;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use proptest::prelude::*;

type Raw = spin::mutex::SpinMutex<()>;
type TestVfs = Vfs<Raw>;

fn leak(v: Vec<u8>) -> &'static [u8] {
    Box::leak(v.into_boxed_slice())
}

fn sample() -> Vec<u8> {
    let mut w = Writer::new();
    w.dir(".", 0o755);
    w.dir("etc", 0o755);
    w.file("etc/motd", 0o644, b"hello\n");
    w.file("./www/index.html", 0o644, b"<h1>Rhea</h1>");
    w.file(
        "/www/big",
        0o644,
        &(0..10_000u32).map(|i| i as u8).collect::<Vec<_>>(),
    );
    w.symlink("www/home", "index.html");
    w.symlink("abs", "/etc/motd");
    w.finish()
}

fn kind(r: Result<impl core::fmt::Debug, Error>) -> K {
    r.expect_err("must fail").kind
}

fn mounted(initrd: Option<Vec<u8>>, tmp_limit: u64) -> TestVfs {
    let v = TestVfs::new();
    match initrd {
        Some(a) => v
            .mount("/", Arc::new(CpioFs::new(leak(a)).expect("valid archive")))
            .unwrap(),
        None => v.mount("/", Arc::new(Tmpfs::<Raw>::new(1 << 20))).unwrap(),
    }
    v.mount("/tmp", Arc::new(Tmpfs::<Raw>::new(tmp_limit)))
        .unwrap();
    v
}

// ---- cpio ----

#[test]
fn cpio_round_trip() {
    let a = sample();
    let names: Vec<&str> = Reader::new(&a).map(|e| e.unwrap().name).collect();
    assert_eq!(
        names,
        [
            ".",
            "etc",
            "etc/motd",
            "./www/index.html",
            "/www/big",
            "www/home",
            "abs"
        ]
    );
    let e = Reader::new(&a).nth(2).unwrap().unwrap();
    assert_eq!((e.mode, e.data), (cpio::S_IFREG | 0o644, &b"hello\n"[..]));
}

#[test]
fn cpio_every_truncation_is_an_error_never_a_panic() {
    let a = sample();
    for cut in 0..a.len() - 4 {
        let errs: Vec<_> = Reader::new(&a[..cut]).filter_map(Result::err).collect();
        assert_eq!(errs.len(), 1, "cut at {cut}");
        assert!(
            matches!(errs[0].why, Why::Truncated(_) | Why::NoTrailer),
            "cut at {cut}: {:?}",
            errs[0]
        );
        assert!(
            CpioFs::new(leak(a[..cut].to_vec())).is_err(),
            "cut at {cut}"
        );
    }
}

#[test]
fn cpio_damaged_headers_are_named() {
    let a = sample();
    let damage = |at: usize, b: &[u8]| {
        let mut x = a.clone();
        x[at..at + b.len()].copy_from_slice(b);
        Reader::new(&x).find_map(Result::err).map(|e| e.why)
    };
    assert_eq!(damage(0, b"070707"), Some(Why::BadMagic));
    assert_eq!(damage(6, b"0000000g"), Some(Why::BadField("ino")));
    assert_eq!(damage(6 + 8 * 11, b"00000000"), Some(Why::BadNameSize(0)));
    assert_eq!(
        damage(6 + 8 * 11, b"ffffffff"),
        Some(Why::BadNameSize(u32::MAX))
    );
    // A file size pointing far past the end.
    assert_eq!(damage(6 + 8 * 6, b"7fffffff"), Some(Why::Truncated("data")));
    // The name's NUL overwritten: "." then NUL at 111.
    assert_eq!(damage(111, b"x"), Some(Why::NameNotTerminated));
    let mut w = Writer::new();
    w.file("bad\u{fffd}", 0o644, b"");
    let mut x = w.finish();
    x[110 + 3..110 + 6].copy_from_slice(&[0xff, 0xfe, 0xfd]);
    assert_eq!(
        Reader::new(&x).find_map(Result::err).map(|e| e.why),
        Some(Why::NameNotUtf8)
    );
}

#[test]
fn cpio_concatenated_archives_and_padding() {
    let mut a = sample();
    a.extend_from_slice(&[0; 512]);
    let mut w = Writer::new();
    w.file("etc/second", 0o644, b"2");
    a.extend(w.finish());
    a.extend_from_slice(&[0; 3]);
    assert!(Reader::new(&a).all(|e| e.is_ok()));
    let v = mounted(Some(a.clone()), 4096);
    assert_eq!(v.read("/etc/second").unwrap(), b"2");
    assert_eq!(v.read("/etc/motd").unwrap(), b"hello\n");
    a.extend_from_slice(b"junk");
    assert_eq!(
        Reader::new(&a).find_map(Result::err).map(|e| e.why),
        Some(Why::Garbage)
    );
}

// ---- the initramfs ----

#[test]
fn initramfs_reads_files_links_and_listings() {
    let v = mounted(Some(sample()), 4096);
    assert_eq!(v.read("/etc/motd").unwrap(), b"hello\n");
    assert_eq!(v.read("www/home").unwrap(), b"<h1>Rhea</h1>");
    assert_eq!(v.read("/abs").unwrap(), b"hello\n");
    assert_eq!(v.read_link("/abs").unwrap(), "/etc/motd");
    assert!(v.symlink_metadata("/abs").unwrap().is_symlink());
    let big = v.read("/www/big").unwrap();
    assert_eq!(big.len(), 10_000);
    assert!(big.iter().enumerate().all(|(i, &b)| b == i as u8));
    let mut f = v.open("/www/big", OpenOptions::new().read(true)).unwrap();
    f.seek(SeekFrom::Start(9_998)).unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(f.read(&mut buf).unwrap(), 2);
    assert_eq!(f.read(&mut buf).unwrap(), 0);
    let names: Vec<String> = v
        .read_dir("/")
        .unwrap()
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(names, ["abs", "etc", "tmp", "www"]);
    // Read-only, with the path in the error.
    let e = v.write("/etc/motd", b"x").unwrap_err();
    assert_eq!(e.kind, K::ReadOnly);
    assert_eq!(
        alloc::format!("{e}"),
        "\"/etc/motd\": read-only file system"
    );
    assert_eq!(kind(v.create_dir("/etc/new")), K::ReadOnly);
    assert_eq!(kind(v.remove_file("/etc/motd")), K::ReadOnly);
}

#[test]
fn initramfs_archive_rules() {
    let refused = |build: &dyn Fn(&mut Writer)| {
        let mut w = Writer::new();
        build(&mut w);
        match CpioFs::new(leak(w.finish())) {
            Err(CpioFsError::Entry { why, .. }) => why,
            other => panic!("accepted or other error: {other:?}"),
        }
    };
    assert!(refused(&|w| w.file("a/../../etc", 0o644, b"")).contains(".."));
    assert!(
        refused(&|w| {
            w.file("f", 0o644, b"");
            w.file("f/g", 0o644, b"");
        })
        .contains("not a directory")
    );
    assert!(
        refused(&|w| {
            w.file("d/x", 0o644, b"");
            w.file("d", 0o644, b"");
        })
        .contains("has entries")
    );
    let deep = "d/".repeat(65) + "f";
    assert!(refused(&|w| w.file(&deep, 0o644, b"")).contains("deep"));
    let long = "n".repeat(256);
    assert!(refused(&|w| w.file(&long, 0o644, b"")).contains("255"));

    // Accepted: a later entry replaces an earlier; parents are made; hard links share.
    let mut w = Writer::new();
    w.file("a/b/c", 0o644, b"old");
    w.file("a/b/c", 0o600, b"new");
    w.entry("h1", cpio::S_IFREG | 0o644, 2, (0, 0), b"");
    let mut a = w.finish();
    // Give h1 and a second link the same ino, the data on the second (GNU cpio's layout).
    let mut w2 = Writer::new();
    w2.entry("h2", cpio::S_IFREG | 0o644, 2, (0, 0), b"shared");
    let b = w2.finish();
    let set_ino = |x: &mut Vec<u8>, at: usize| x[at + 6..at + 14].copy_from_slice(b"00000077");
    let h1 = a.windows(3).position(|x| x == b"h1\0").unwrap() - 110;
    set_ino(&mut a, h1);
    let mut b = b;
    set_ino(&mut b, 0);
    a.extend(b);
    let v = mounted(Some(a), 4096);
    assert_eq!(v.read("/a/b/c").unwrap(), b"new");
    assert_eq!(v.metadata("/a/b/c").unwrap().perm, 0o600);
    assert!(v.metadata("/a/b").unwrap().is_dir());
    assert_eq!(v.read("/h1").unwrap(), b"shared");
    assert_eq!(v.read("/h2").unwrap(), b"shared");
}

// ---- tmpfs and resolution ----

#[test]
fn tmpfs_files_offsets_append_truncate() {
    let v = mounted(None, 64 << 10);
    v.write("/tmp/a", b"hello world").unwrap();
    let mut f = v
        .open("/tmp/a", OpenOptions::new().read(true).write(true))
        .unwrap();
    f.seek(SeekFrom::Start(6)).unwrap();
    f.write_all(b"rhea!").unwrap();
    f.seek(SeekFrom::Current(-5)).unwrap();
    let mut buf = [0u8; 5];
    f.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"rhea!");
    assert_eq!(
        kind(f.seek(SeekFrom::Current(-100))),
        K::InvalidArgument("seek before the start")
    );
    let mut g = v.open("/tmp/a", OpenOptions::new().append(true)).unwrap();
    g.write_all(b"\n").unwrap();
    assert_eq!(kind(g.read(&mut buf)), K::BadMode("reading"));
    assert_eq!(v.read("/tmp/a").unwrap(), b"hello rhea!\n");
    // Sparse: a write far out leaves a hole of zeros that costs nothing.
    let before = v.mounts()[1].usage.used;
    let mut h = v
        .open(
            "/tmp/sparse",
            OpenOptions::new().write(true).create_new(true),
        )
        .unwrap();
    h.seek(SeekFrom::Start(40_000)).unwrap();
    h.write_all(b"end").unwrap();
    let used = v.mounts()[1].usage.used - before;
    assert_eq!(used, tmpfs::NODE_COST + 6 + 4096, "one node and one chunk");
    let data = v.read("/tmp/sparse").unwrap();
    assert_eq!(data.len(), 40_003);
    assert!(data[..40_000].iter().all(|&b| b == 0));
    h.set_len(10).unwrap();
    assert_eq!(v.metadata("/tmp/sparse").unwrap().len, 10);
    assert_eq!(v.mounts()[1].usage.used - before, tmpfs::NODE_COST + 6);
    assert_eq!(
        kind(v.open(
            "/tmp/sparse",
            OpenOptions::new().write(true).create_new(true)
        )),
        K::AlreadyExists
    );
    assert_eq!(
        kind(v.open("/tmp/none", OpenOptions::new().read(true))),
        K::NotFound
    );
    assert_eq!(
        kind(v.open("/tmp/x", OpenOptions::new().read(true).create(true))),
        K::InvalidArgument("create and truncate need write or append")
    );
    assert_eq!(
        kind(v.open("/tmp", OpenOptions::new().read(true))),
        K::IsADirectory
    );
}

#[test]
fn tmpfs_limit_refuses_whole_writes_and_gives_space_back() {
    let v = mounted(None, 5 * 4096);
    let start = v.mounts()[1].usage.used;
    let mut f = v
        .open("/tmp/f", OpenOptions::new().write(true).create(true))
        .unwrap();
    f.write_all(&[1; 4 * 4096]).unwrap();
    let full = v.mounts()[1].usage.used;
    // A write needing a new chunk past the limit changes nothing.
    assert_eq!(kind(f.write(&[2; 4096])), K::NoSpace);
    assert_eq!(v.mounts()[1].usage.used, full);
    assert_eq!(v.metadata("/tmp/f").unwrap().len, 4 * 4096);
    // Even a tiny new file cannot fit once the chunks are spent...
    assert_eq!(kind(v.write("/tmp/g", &[0; 4096])), K::NoSpace);
    // ... and a huge offset is refused before any table is made.
    f.seek(SeekFrom::Start(u64::MAX - 2)).unwrap();
    assert!(matches!(
        kind(f.write(b"abc")),
        K::NoSpace | K::InvalidArgument(_)
    ));
    drop(f);
    v.remove_file("/tmp/f").unwrap();
    let _ = v.remove_file("/tmp/g");
    assert_eq!(v.mounts()[1].usage.used, start, "all of it back");
}

#[test]
fn tmpfs_removed_file_lives_while_open() {
    let v = mounted(None, 1 << 20);
    let start = v.mounts()[1].usage;
    v.write("/tmp/f", b"kept").unwrap();
    let mut f = v
        .open("/tmp/f", OpenOptions::new().read(true).write(true))
        .unwrap();
    v.remove_file("/tmp/f").unwrap();
    assert_eq!(kind(v.metadata("/tmp/f")), K::NotFound);
    let mut buf = [0u8; 4];
    f.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"kept");
    f.write_all(b"more").unwrap();
    assert_eq!(v.mounts()[1].usage.nodes, start.nodes + 1);
    drop(f);
    assert_eq!(v.mounts()[1].usage, start);
    // A handle to a freed node is stale, and a new node in its slot is not confused with it.
    let fs = Tmpfs::<Raw>::new(1 << 20);
    let a = fs.create(0, "a", NewNode::File { perm: 0o644 }).unwrap();
    fs.remove(0, "a", false).unwrap();
    fs.release(a);
    let b = fs.create(0, "b", NewNode::File { perm: 0o644 }).unwrap();
    assert_ne!(a, b);
    assert_eq!(fs.metadata(a), Err(K::Stale));
    assert_eq!(fs.write(a, 0, b"x"), Err(K::Stale));
    assert_eq!(fs.metadata(12345 << 32 | 999), Err(K::Stale));
}

#[test]
fn directories_remove_and_rename_rules() {
    let v = mounted(None, 1 << 20);
    v.create_dir_all("/tmp/a/b/c").unwrap();
    v.write("/tmp/a/b/c/f", b"1").unwrap();
    v.write("/tmp/g", b"2").unwrap();
    assert_eq!(kind(v.create_dir("/tmp/a")), K::AlreadyExists);
    assert_eq!(kind(v.create_dir("/tmp/none/x")), K::NotFound);
    assert_eq!(kind(v.create_dir("/tmp/g/x")), K::NotADirectory);
    assert_eq!(kind(v.remove_dir("/tmp/a")), K::DirectoryNotEmpty);
    assert_eq!(kind(v.remove_file("/tmp/a")), K::IsADirectory);
    assert_eq!(kind(v.remove_dir("/tmp/g")), K::NotADirectory);
    assert_eq!(kind(v.rename("/tmp/a", "/tmp/a/b/c/inside")), K::IntoItself);
    v.create_dir("/tmp/empty").unwrap();
    assert_eq!(kind(v.rename("/tmp/empty", "/tmp/a")), K::DirectoryNotEmpty);
    assert_eq!(kind(v.rename("/tmp/g", "/tmp/a")), K::IsADirectory);
    // A file replaces a file; a directory an empty directory.
    v.write("/tmp/h", b"3").unwrap();
    v.rename("/tmp/g", "/tmp/h").unwrap();
    assert_eq!(v.read("/tmp/h").unwrap(), b"2");
    assert_eq!(kind(v.metadata("/tmp/g")), K::NotFound);
    v.rename("/tmp/a/b", "/tmp/empty").unwrap();
    assert_eq!(v.read("/tmp/empty/c/f").unwrap(), b"1");
    // Mount points and the root stay.
    assert_eq!(kind(v.remove_dir("/tmp")), K::Busy);
    assert_eq!(kind(v.rename("/tmp", "/x")), K::Busy);
    assert_eq!(kind(v.remove_dir("/")), K::Busy);
    // Across file systems.
    v.write("/top", b"t").unwrap();
    assert_eq!(kind(v.rename("/top", "/tmp/top")), K::CrossesMounts);
    let names: Vec<String> = v
        .read_dir("/tmp")
        .unwrap()
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(names, ["a", "empty", "h"]);
}

#[test]
fn resolution_links_dotdot_and_limits() {
    let v = mounted(None, 1 << 20);
    v.create_dir_all("/tmp/d/e").unwrap();
    v.write("/tmp/d/e/f", b"x").unwrap();
    v.symlink("d/e", "/tmp/rel").unwrap();
    v.symlink("/tmp/d", "/tmp/abs").unwrap();
    v.symlink("loop2", "/tmp/loop1").unwrap();
    v.symlink("loop1", "/tmp/loop2").unwrap();
    v.symlink("nowhere", "/tmp/dangling").unwrap();
    assert_eq!(v.read("/tmp/rel/f").unwrap(), b"x");
    assert_eq!(v.read("/tmp/abs/e/f").unwrap(), b"x");
    assert_eq!(v.read("/tmp/abs/e/../e/./f").unwrap(), b"x");
    // `..` out of a mount goes to the directory above the mount point; never above `/`.
    v.write("/top", b"t").unwrap();
    assert_eq!(v.read("/tmp/../top").unwrap(), b"t");
    assert_eq!(v.read("/../../../top").unwrap(), b"t");
    assert_eq!(v.read("top").unwrap(), b"t", "relative paths start at /");
    assert_eq!(kind(v.read("/tmp/loop1")), K::TooManyLinks);
    assert_eq!(kind(v.read("/tmp/dangling")), K::NotFound);
    // Creating through a dangling link creates its target.
    v.write("/tmp/dangling", b"made").unwrap();
    assert_eq!(v.read("/tmp/nowhere").unwrap(), b"made");
    assert_eq!(kind(v.read("/tmp/d/e/f/g")), K::NotADirectory);
    // Limits.
    let long = "n".repeat(256);
    assert_eq!(
        kind(v.write(&alloc::format!("/tmp/{long}"), b"")),
        K::NameTooLong
    );
    let huge = "/a".repeat(2049);
    assert_eq!(kind(v.metadata(&huge)), K::PathTooLong);
    assert_eq!(
        kind(v.write("/tmp/a\0b", b"")),
        K::InvalidName("contains NUL")
    );
    assert_eq!(kind(v.metadata("")), K::InvalidName("empty path"));
    let mut deep = String::from("/tmp");
    for _ in 0..63 {
        deep.push_str("/d");
    }
    v.create_dir_all(&deep).unwrap();
    assert_eq!(kind(v.create_dir(&(deep + "/x"))), K::TooDeep);
    // Errors name the path as given.
    let e = v.read("/tmp/rel/missing").unwrap_err();
    assert_eq!(e.path, "/tmp/rel/missing");
}

#[test]
fn mounts_and_unmount() {
    let v = mounted(Some(sample()), 4096);
    assert_eq!(
        kind(v.mount("/tmp", Arc::new(Tmpfs::<Raw>::new(1)))),
        K::Busy
    );
    assert_eq!(
        kind(v.mount("rel", Arc::new(Tmpfs::<Raw>::new(1)))),
        K::InvalidName("a mount point must be absolute")
    );
    // The mount point's directory must exist; the point itself need not, and shows in its
    // parent's listing.
    assert_eq!(
        kind(v.mount("/mnt/deep", Arc::new(Tmpfs::<Raw>::new(1)))),
        K::NotFound
    );
    assert_eq!(
        kind(v.mount("/etc/motd/x", Arc::new(Tmpfs::<Raw>::new(1)))),
        K::NotADirectory
    );
    v.create_dir("/tmp/mnt").unwrap();
    v.mount("/tmp/mnt/deep", Arc::new(Tmpfs::<Raw>::new(1 << 16)))
        .unwrap();
    let names: Vec<String> = v
        .read_dir("/tmp/mnt")
        .unwrap()
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(names, ["deep"]);
    assert_eq!(kind(v.remove_dir("/tmp/mnt")), K::Busy);
    assert_eq!(kind(v.rename("/tmp/mnt", "/tmp/moved")), K::Busy);
    v.write("/tmp/mnt/deep/f", b"1").unwrap();
    let f = v
        .open("/tmp/mnt/deep/f", OpenOptions::new().read(true))
        .unwrap();
    assert_eq!(kind(v.unmount("/tmp/mnt/deep")), K::Busy);
    drop(f);
    v.unmount("/tmp/mnt/deep").unwrap();
    assert_eq!(kind(v.read("/tmp/mnt/deep/f")), K::NotFound);
    v.remove_dir("/tmp/mnt").unwrap();
    let m = v.mounts();
    assert_eq!((m[0].at.as_str(), m[0].kind), ("/", "initramfs"));
    assert_eq!((m[1].at.as_str(), m[1].kind), ("/tmp", "tmpfs"));
}

#[test]
fn threads_at_once() {
    let v = Arc::new(mounted(None, 8 << 20));
    v.write("/tmp/shared", &[0u8; 8 * 1024]).unwrap();
    let threads: Vec<_> = (0..8u8)
        .map(|t| {
            let v = v.clone();
            std::thread::spawn(move || {
                for round in 0..50u32 {
                    let p = alloc::format!("/tmp/t{t}-{}", round % 5);
                    let data: Vec<u8> = (0..3000u32).map(|i| (i as u8) ^ t ^ round as u8).collect();
                    v.write(&p, &data).unwrap();
                    assert_eq!(v.read(&p).unwrap(), data);
                    // Each thread owns a 1 KiB slice of the shared file.
                    let mut f = v
                        .open("/tmp/shared", OpenOptions::new().read(true).write(true))
                        .unwrap();
                    f.seek(SeekFrom::Start(u64::from(t) * 1024)).unwrap();
                    f.write_all(&[t + 1; 1024]).unwrap();
                    if round % 7 == 0 {
                        v.remove_file(&p).unwrap();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let shared = v.read("/tmp/shared").unwrap();
    for t in 0..8u8 {
        assert!(
            shared[t as usize * 1024..][..1024]
                .iter()
                .all(|&b| b == t + 1)
        );
    }
}

#[derive(Clone, Debug)]
enum Op {
    Write(u32, Vec<u8>),
    SetLen(u32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (
            0u32..20_000,
            proptest::collection::vec(any::<u8>(), 0..6000)
        )
            .prop_map(|(o, d)| Op::Write(o, d)),
        (0u32..30_000).prop_map(Op::SetLen),
    ]
}

proptest! {
    /// A tmpfs file holds what a plain byte vector would, and its cost is exactly its
    /// allocated chunks.
    #[test]
    fn tmpfs_matches_a_byte_vector(ops in proptest::collection::vec(op(), 1..40)) {
        let fs = Tmpfs::<Raw>::new(1 << 20);
        let base = fs.usage().used;
        let f = fs.create(0, "f", NewNode::File { perm: 0o644 }).unwrap();
        let mut model: Vec<u8> = Vec::new();
        for op in ops {
            match op {
                Op::Write(o, d) => {
                    prop_assert_eq!(fs.write(f, u64::from(o), &d).unwrap(), d.len());
                    if !d.is_empty() {
                        let end = o as usize + d.len();
                        if model.len() < end { model.resize(end, 0); }
                        model[o as usize..end].copy_from_slice(&d);
                    }
                }
                Op::SetLen(n) => {
                    fs.set_len(f, u64::from(n)).unwrap();
                    model.resize(n as usize, 0);
                }
            }
        }
        let mut out = vec![0u8; model.len() + 10];
        let n = fs.read(f, 0, &mut out).unwrap();
        prop_assert_eq!(&out[..n], &model[..]);
        let used = fs.usage().used - base - tmpfs::NODE_COST - 1;
        prop_assert!(used.is_multiple_of(tmpfs::CHUNK as u64));
        prop_assert!(used <= (model.len() as u64).div_ceil(tmpfs::CHUNK as u64) * tmpfs::CHUNK as u64);
        fs.remove(0, "f", false).unwrap();
        fs.release(f);
        prop_assert_eq!(fs.usage().used, base);
    }
}
