//! Files: `rhea::fs`, in the shape of `std::fs`.
//!
//! The mount table, path resolution, the initramfs and tmpfs are `rhea-vfs` (hardware-free,
//! host-tested); this module binds them to the kernel: its sleeping mutex as their lock
//! ([`FsLock`]), the boot's initrd, and the first mounts.
//!
//! **What is mounted**, on the first file operation (so an app that never touches a file
//! links none of this):
//! - `/`: the initramfs the boot protocol carried (QEMU `-initrd`, the devicetree's
//!   `linux,initrd-*`, Xen's ramdisk module, LinuxU's `rhea.initrd=`), read-only, read in
//!   place; without one, or if it is refused (the reason is printed), an empty tmpfs;
//! - `/tmp`: a tmpfs of `rhea.tmp_kib` KiB (default a quarter of the heap free then, at most
//!   64 MiB).
//!
//! **Blocking**: every call may block the calling thread (a file system's lock, later a
//! transport) and none may be made with interrupts disabled: that is
//! [`ErrorKind::AtomicContext`], not a deadlock. Not for a path that must be bounded in
//! time.
#![allow(
    unsafe_code,
    reason = "binding the kernel's mutex to lock_api (one unsafe impl with its SAFETY note)"
)]

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::println;
use crate::selected::{A, Arch, B};
use crate::sync::{Mutex, RawMutex, SyncError};
use rhea_drivers::bus::BoardDevices;
pub use rhea_vfs::{
    CpioFs, DirEntry, Error, ErrorKind, FileSystem, FileType, Metadata, MountInfo, NewNode, NodeId,
    SeekFrom, Usage,
};

/// The kernel's sleeping mutex (priority inheritance) as `lock_api` wants it: the lock of
/// the mount table and of every tmpfs.
#[derive(Debug)]
pub struct FsLock(RawMutex);

// SAFETY: `RawMutex` gives mutual exclusion between threads: `lock` returns only when the
// calling thread holds it (an `Abandoned` mutex is held too: its last owner exited), and
// `unlock` is called by `lock_api` only from the holder's guard (`GuardNoSend` keeps the
// guard on the thread that locked).
unsafe impl lock_api::RawMutex for FsLock {
    #[allow(
        clippy::declare_interior_mutable_const,
        reason = "lock_api's initializer"
    )]
    const INIT: FsLock = FsLock(RawMutex::new());
    type GuardMarker = lock_api::GuardNoSend;

    fn lock(&self) {
        match self.0.lock() {
            Ok(()) | Err(SyncError::Abandoned) => {}
            // Every public entry refuses atomic context before locking; what is left is a
            // thread holding more mutexes than the scheduler tracks — a bug to report.
            Err(e) => panic!("rhea::fs: a file-system lock failed: {e}"),
        }
    }

    fn try_lock(&self) -> bool {
        matches!(self.0.try_lock(), Ok(()) | Err(SyncError::Abandoned))
    }

    unsafe fn unlock(&self) {
        // Only the holder unlocks (see the SAFETY note above), so this cannot fail.
        let _ = self.0.unlock();
    }
}

/// A tmpfs locked by the kernel's mutex.
pub type Tmpfs = rhea_vfs::Tmpfs<FsLock>;

static VFS: rhea_vfs::Vfs<FsLock> = rhea_vfs::Vfs::new();
static READY: AtomicBool = AtomicBool::new(false);
static SETUP: Mutex<()> = Mutex::new(());
static INITRD_AT: AtomicU64 = AtomicU64::new(0);
static INITRD_LEN: AtomicU64 = AtomicU64::new(0);

/// The most a default tmpfs takes.
const TMP_DEFAULT_MAX: u64 = 64 << 20;

/// Records the boot's initrd (the memory stays reserved for good).
pub(crate) fn set_initrd(at: u64, len: u64) {
    INITRD_AT.store(at, Ordering::Relaxed);
    INITRD_LEN.store(len, Ordering::Release);
}

/// The initrd's bytes as the boot loader left them, if there was one.
pub fn initrd() -> Option<&'static [u8]> {
    let len = INITRD_LEN.load(Ordering::Acquire);
    let at = INITRD_AT.load(Ordering::Relaxed);
    // SAFETY: the board gave this range as readable memory for the kernel's life (identity-
    // mapped RAM the frame allocator never hands out, or LinuxU's read-only file mapping);
    // nothing writes it.
    (len > 0).then(|| unsafe { core::slice::from_raw_parts(at as *const u8, len as usize) })
}

fn tmp_limit() -> u64 {
    let kib = crate::boot::CMDLINE
        .get()
        .and_then(|c| c.number(&rhea_hal::cmdline::keys::TMP_KIB).ok().flatten());
    match kib {
        Some(k) => k << 10,
        None => (crate::memory::stats().heap_free_bytes as u64 / 4).min(TMP_DEFAULT_MAX),
    }
}

/// The mount table, the first mounts made on first use; refused in atomic context.
fn vfs(path: &str) -> Result<&'static rhea_vfs::Vfs<FsLock>, Error> {
    if !A::irq_enabled() {
        return Err(Error::new(ErrorKind::AtomicContext, path));
    }
    if !READY.load(Ordering::Acquire) {
        let _g = SETUP
            .lock()
            .map_err(|_| Error::new(ErrorKind::AtomicContext, path))?;
        if !READY.load(Ordering::Acquire) {
            mount_first();
            READY.store(true, Ordering::Release);
        }
    }
    Ok(&VFS)
}

fn mount_first() {
    let limit = tmp_limit();
    let root: Option<Arc<dyn FileSystem>> = match initrd().map(CpioFs::new) {
        Some(Ok(fs)) => {
            println!(
                "rhea: fs: / is the initramfs: {} entries, {} bytes of files",
                fs.nodes() - 1,
                fs.file_bytes()
            );
            Some(Arc::new(fs))
        }
        Some(Err(e)) => {
            println!("rhea: fs: the initramfs is refused: {e}; / is an empty tmpfs");
            None
        }
        None => None,
    };
    let root = root.unwrap_or_else(|| Arc::new(Tmpfs::new(limit)));
    if let Err(e) = VFS.mount("/", root) {
        println!("rhea: fs: cannot mount /: {e}");
        return;
    }
    match VFS.mount("/tmp", Arc::new(Tmpfs::new(limit))) {
        Ok(()) => println!("rhea: fs: /tmp is a tmpfs of {} KiB", limit >> 10),
        Err(e) => println!("rhea: fs: cannot mount /tmp: {e}"),
    }
    #[cfg(feature = "p9")]
    mount_shares();
    #[cfg(feature = "blk")]
    mount_disks();
    // What the board's command line asks for: its error is the configuration's, and the run
    // ends (as for a device the command line names).
    for asked in <B as BoardDevices>::file_systems() {
        let mounted = asked.and_then(|(at, fs)| {
            let kind = fs.kind();
            VFS.mount(&at, fs)
                .map(|()| println!("rhea: fs: {at} is a {kind}"))
                .map_err(|e| alloc::format!("cannot mount at {at}: {e}"))
        });
        if let Err(e) = mounted {
            println!("rhea: fs: {e}; exiting with failure");
            crate::exit(crate::ExitStatus::Failure);
        }
    }
}

/// How long a 9P request may take before its share is given up: a server that went away.
/// Generous: a 64 KiB read under TCG takes milliseconds; a host under heavy load, seconds.
#[cfg(feature = "p9")]
const P9_PATIENCE: crate::time::Duration = crate::time::Duration::from_secs(30);

/// A virtio-9p channel as the 9P client's transport: one request at a time (the channel's
/// lock, the kernel's mutex), the caller yielding while the device works.
#[cfg(feature = "p9")]
struct Channel(Mutex<alloc::boxed::Box<dyn rhea_drivers::virtio::p9::P9Channel>>);

#[cfg(feature = "p9")]
impl rhea_vfs::p9::Transport for Channel {
    fn rpc(&self, request: &[u8], reply: &mut [u8]) -> Result<usize, ErrorKind> {
        let mut c = self.0.lock().map_err(|_| ErrorKind::AtomicContext)?;
        let deadline = crate::time::now().saturating_add(P9_PATIENCE);
        let mut wait = || {
            crate::thread::yield_now();
            crate::time::now() < deadline
        };
        c.rpc(request, reply, &mut wait).map_err(|e| {
            println!("rhea: fs: 9p: {e}");
            ErrorKind::Io("the 9P transport failed")
        })
    }
}

/// Every bound virtio-9p device mounted at `/<its tag>`.
#[cfg(feature = "p9")]
fn mount_shares() {
    for chan in crate::devices::take_p9() {
        let tag = String::from(chan.tag());
        let at = alloc::format!("/{tag}");
        let fs = rhea_vfs::p9::P9Fs::<FsLock, _>::mount(Channel(Mutex::new(chan)), &tag);
        match fs {
            Ok(fs) => {
                let msize = fs.msize();
                match VFS.mount(&at, Arc::new(fs)) {
                    Ok(()) => println!("rhea: fs: {at} is a 9p share (virtio-9p, msize {msize})"),
                    Err(e) => println!("rhea: fs: 9p share {tag:?}: {e}"),
                }
            }
            Err(e) => println!("rhea: fs: 9p share {tag:?}: {e}; not mounted"),
        }
    }
}

/// How long a disk request may take before the disk is given up: a device that stopped.
#[cfg(feature = "blk")]
const DISK_PATIENCE: crate::time::Duration = crate::time::Duration::from_secs(30);

/// A virtio-blk device as a block device: one request at a time (the kernel's mutex), the
/// caller yielding while the device works.
#[cfg(feature = "blk")]
struct Disk {
    chan: Mutex<alloc::boxed::Box<dyn rhea_drivers::virtio::blk::BlockChannel>>,
    /// The device's size and whether it is read-only, as it said when bound.
    sectors: u64,
    read_only: bool,
}

#[cfg(feature = "blk")]
impl Disk {
    fn with<T>(
        &self,
        op: impl FnOnce(
            &mut dyn rhea_drivers::virtio::blk::BlockChannel,
            &mut dyn FnMut() -> bool,
        ) -> Result<T, String>,
    ) -> Result<T, rhea_vfs::block::BlockError> {
        use rhea_vfs::block::BlockError;
        let mut d = self
            .chan
            .lock()
            .map_err(|_| BlockError::Io("called with interrupts off"))?;
        let deadline = crate::time::now().saturating_add(DISK_PATIENCE);
        let mut wait = || {
            crate::thread::yield_now();
            crate::time::now() < deadline
        };
        op(&mut **d, &mut wait).map_err(|e| {
            println!("rhea: fs: disk: {e}");
            BlockError::Io("the disk failed the request (the console says why)")
        })
    }
}

#[cfg(feature = "blk")]
impl rhea_vfs::block::BlockDevice for Disk {
    fn sectors(&self) -> u64 {
        self.sectors
    }
    fn read(&self, sector: u64, buf: &mut [u8]) -> Result<(), rhea_vfs::block::BlockError> {
        rhea_vfs::block::check_transfer(self.sectors(), sector, buf.len())?;
        self.with(|d, wait| d.read(sector, buf, wait))
    }
    fn write(&self, sector: u64, buf: &[u8]) -> Result<(), rhea_vfs::block::BlockError> {
        if self.read_only() {
            return Err(rhea_vfs::block::BlockError::ReadOnly);
        }
        rhea_vfs::block::check_transfer(self.sectors(), sector, buf.len())?;
        self.with(|d, wait| d.write(sector, buf, wait))
    }
    fn flush(&self) -> Result<(), rhea_vfs::block::BlockError> {
        self.with(|d, wait| d.flush(wait))
    }
    fn read_only(&self) -> bool {
        self.read_only
    }
}

/// Every bound virtio-blk device with a FAT file system mounted at `/disk0`, `/disk1`, ... in
/// the order the buses found them, behind a 128 KiB sector cache (`rhea_vfs::cache`: FAT
/// re-reads its table and directories all the time); a disk without one is said and left
/// alone.
#[cfg(feature = "blk")]
fn mount_disks() {
    for (i, chan) in crate::devices::take_blk().into_iter().enumerate() {
        let at = alloc::format!("/disk{i}");
        let name = String::from(chan.name());
        let (sectors, ro) = (chan.sectors(), chan.read_only());
        let disk = Disk {
            chan: Mutex::new(chan),
            sectors,
            read_only: ro,
        };
        let disk = rhea_vfs::Cached::<FsLock, _>::new(disk);
        match rhea_vfs::fat::FatFs::<FsLock, _>::mount(disk) {
            Ok(fs) => match VFS.mount(&at, Arc::new(fs)) {
                Ok(()) => println!(
                    "rhea: fs: {at} is a fat ({name}, {} MiB{})",
                    sectors >> 11,
                    if ro { ", read-only" } else { "" }
                ),
                Err(e) => println!("rhea: fs: {name}: {e}"),
            },
            Err(e) => println!("rhea: fs: {name}: no FAT file system mounted: {e}"),
        }
    }
}

/// The whole of file `path`.
pub fn read(path: &str) -> Result<Vec<u8>, Error> {
    vfs(path)?.read(path)
}

/// The whole of file `path` as UTF-8 ([`ErrorKind::InvalidArgument`] if it is not).
pub fn read_to_string(path: &str) -> Result<String, Error> {
    String::from_utf8(read(path)?)
        .map_err(|_| Error::new(ErrorKind::InvalidArgument("not UTF-8"), path))
}

/// Writes `data` as the whole of file `path`, creating it if missing.
pub fn write(path: &str, data: impl AsRef<[u8]>) -> Result<(), Error> {
    vfs(path)?.write(path, data.as_ref())
}

/// What `path` names, links followed.
pub fn metadata(path: &str) -> Result<Metadata, Error> {
    vfs(path)?.metadata(path)
}

/// What `path` names, a link as its last component not followed.
pub fn symlink_metadata(path: &str) -> Result<Metadata, Error> {
    vfs(path)?.symlink_metadata(path)
}

/// The entries of directory `path`, sorted by name.
pub fn read_dir(path: &str) -> Result<Vec<DirEntry>, Error> {
    vfs(path)?.read_dir(path)
}

/// Creates directory `path`.
pub fn create_dir(path: &str) -> Result<(), Error> {
    vfs(path)?.create_dir(path)
}

/// Creates directory `path` and its missing parents.
pub fn create_dir_all(path: &str) -> Result<(), Error> {
    vfs(path)?.create_dir_all(path)
}

/// Removes file or link `path`.
pub fn remove_file(path: &str) -> Result<(), Error> {
    vfs(path)?.remove_file(path)
}

/// Removes empty directory `path`.
pub fn remove_dir(path: &str) -> Result<(), Error> {
    vfs(path)?.remove_dir(path)
}

/// Moves `from` to `to` within one file system.
pub fn rename(from: &str, to: &str) -> Result<(), Error> {
    vfs(from)?.rename(from, to)
}

/// The target of link `path`.
pub fn read_link(path: &str) -> Result<String, Error> {
    vfs(path)?.read_link(path)
}

/// Makes `link` a symbolic link to `target`.
pub fn symlink(target: &str, link: &str) -> Result<(), Error> {
    vfs(link)?.symlink(target, link)
}

/// Mounts `fs` at `at` (its directory must exist).
pub fn mount(at: &str, fs: Arc<dyn FileSystem>) -> Result<(), Error> {
    vfs(at)?.mount(at, fs)
}

/// Unmounts `at` (refused while its files are open).
pub fn unmount(at: &str) -> Result<(), Error> {
    vfs(at)?.unmount(at)
}

/// Every mount.
pub fn mounts() -> Result<Vec<MountInfo>, Error> {
    Ok(vfs("/")?.mounts())
}

/// An open file: `Read`/`Write`/`Seek` (inherent, and `embedded-io`'s), its offset its own.
#[derive(Debug)]
pub struct File(rhea_vfs::File);

impl File {
    /// Opens `path` for reading.
    pub fn open(path: &str) -> Result<File, Error> {
        OpenOptions::new().read(true).open(path)
    }

    /// Opens `path` for writing, created or emptied.
    pub fn create(path: &str) -> Result<File, Error> {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
    }

    /// Options to open with.
    pub fn options() -> OpenOptions {
        OpenOptions::new()
    }
}

impl Deref for File {
    type Target = rhea_vfs::File;
    fn deref(&self) -> &rhea_vfs::File {
        &self.0
    }
}

impl DerefMut for File {
    fn deref_mut(&mut self) -> &mut rhea_vfs::File {
        &mut self.0
    }
}

impl embedded_io::ErrorType for File {
    type Error = Error;
}

impl embedded_io::Read for File {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        self.0.read(buf)
    }
}

impl embedded_io::Write for File {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Error> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> Result<(), Error> {
        Ok(())
    }
}

impl embedded_io::Seek for File {
    fn seek(&mut self, pos: embedded_io::SeekFrom) -> Result<u64, Error> {
        embedded_io::Seek::seek(&mut self.0, pos)
    }
}

/// How to open a file, as `std::fs::OpenOptions`.
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenOptions(rhea_vfs::OpenOptions);

impl OpenOptions {
    /// Nothing set.
    pub fn new() -> Self {
        Self::default()
    }
    /// Open for reading.
    pub fn read(&mut self, on: bool) -> &mut Self {
        self.0.read(on);
        self
    }
    /// Open for writing.
    pub fn write(&mut self, on: bool) -> &mut Self {
        self.0.write(on);
        self
    }
    /// Every write goes to the end.
    pub fn append(&mut self, on: bool) -> &mut Self {
        self.0.append(on);
        self
    }
    /// Cut to 0 bytes on opening.
    pub fn truncate(&mut self, on: bool) -> &mut Self {
        self.0.truncate(on);
        self
    }
    /// Create if missing.
    pub fn create(&mut self, on: bool) -> &mut Self {
        self.0.create(on);
        self
    }
    /// Create, failing if it exists.
    pub fn create_new(&mut self, on: bool) -> &mut Self {
        self.0.create_new(on);
        self
    }
    /// Opens `path`.
    pub fn open(&self, path: &str) -> Result<File, Error> {
        vfs(path)?.open(path, &self.0).map(File)
    }
}
