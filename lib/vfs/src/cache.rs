//! A sector cache in front of a [`BlockDevice`] ([`Cached`]): direct-mapped, write-through.
//!
//! Why: a FAT file system re-reads the same sectors all the time — the FAT sectors of a
//! chain, the directories of a path — and every read is a request to the device (under
//! virtio and TCG, tens of microseconds each, polled). Keeping the last sectors seen turns
//! most of those into copies.
//!
//! **Policy**: `slots` sectors, sector `n` in slot `n % slots` (direct-mapped: no list to
//! keep, a lookup is one compare). Reads fill the slots of every sector they read; writes go
//! to the device first and then update the slots of the sectors they wrote (write-through:
//! the device always holds everything written, so dropping the cache loses nothing and a
//! failed write leaves the slots as they were). A read of several sectors is served from the
//! cache only if every one of them is there; otherwise it is one request for the whole range.
//!
//! **Locking**: the slots are under the cache's own lock `R`, never held across a device
//! request; a read that raced with a write to the same sector may fill a slot with the old
//! bytes only if the caller itself does not serialize them — the file systems here hold
//! their own lock around every operation, so they do.

use alloc::vec;
use alloc::vec::Vec;
use lock_api::{Mutex, RawMutex};

use crate::block::{BlockDevice, BlockError, SECTOR};

/// Slots of [`Cached::new`]'s default: 256 sectors, 128 KiB.
pub const DEFAULT_SLOTS: usize = 256;

/// An empty slot's tag (no sector has this number on any disk we take).
const EMPTY: u64 = u64::MAX;

struct Slots {
    /// The sector each slot holds, or [`EMPTY`].
    tags: Vec<u64>,
    /// `tags.len()` sectors of bytes.
    data: Vec<u8>,
}

impl Slots {
    fn slot(&self, sector: u64) -> usize {
        (sector % self.tags.len() as u64) as usize
    }

    /// Copies sectors `sector..` into `buf` if all of them are cached.
    fn get(&self, sector: u64, buf: &mut [u8]) -> bool {
        let count = buf.len() / SECTOR;
        let all = (0..count as u64).all(|i| {
            let s = sector + i;
            self.tags[self.slot(s)] == s
        });
        if all {
            for (i, out) in buf.chunks_mut(SECTOR).enumerate() {
                let at = self.slot(sector + i as u64) * SECTOR;
                out.copy_from_slice(&self.data[at..at + SECTOR]);
            }
        }
        all
    }

    /// Keeps `buf`'s sectors, from `sector` on.
    fn put(&mut self, sector: u64, buf: &[u8]) {
        for (i, data) in buf.chunks(SECTOR).enumerate() {
            let s = sector + i as u64;
            let slot = self.slot(s);
            self.tags[slot] = s;
            self.data[slot * SECTOR..(slot + 1) * SECTOR].copy_from_slice(data);
        }
    }
}

/// `D` with a sector cache in front (see the module's documentation).
pub struct Cached<R: RawMutex, D: BlockDevice> {
    dev: D,
    slots: Mutex<R, Slots>,
}

impl<R: RawMutex, D: BlockDevice> core::fmt::Debug for Cached<R, D> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Cached").finish_non_exhaustive()
    }
}

impl<R: RawMutex, D: BlockDevice> Cached<R, D> {
    /// `dev` with a cache of [`DEFAULT_SLOTS`] sectors.
    pub fn new(dev: D) -> Self {
        Self::with_slots(dev, DEFAULT_SLOTS)
    }

    /// `dev` with a cache of `slots` sectors (at least 1).
    pub fn with_slots(dev: D, slots: usize) -> Self {
        let slots = slots.max(1);
        Cached {
            dev,
            slots: Mutex::new(Slots {
                tags: vec![EMPTY; slots],
                data: vec![0; slots * SECTOR],
            }),
        }
    }

    /// The device behind the cache.
    pub fn device(&self) -> &D {
        &self.dev
    }
}

impl<R: RawMutex + Send + Sync, D: BlockDevice> BlockDevice for Cached<R, D> {
    fn sectors(&self) -> u64 {
        self.dev.sectors()
    }

    fn read(&self, sector: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        crate::block::check_transfer(self.dev.sectors(), sector, buf.len())?;
        if self.slots.lock().get(sector, buf) {
            return Ok(());
        }
        self.dev.read(sector, buf)?;
        self.slots.lock().put(sector, buf);
        Ok(())
    }

    fn write(&self, sector: u64, buf: &[u8]) -> Result<(), BlockError> {
        self.dev.write(sector, buf)?;
        self.slots.lock().put(sector, buf);
        Ok(())
    }

    fn flush(&self) -> Result<(), BlockError> {
        self.dev.flush()
    }

    fn read_only(&self) -> bool {
        self.dev.read_only()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::MemDisk;
    use core::sync::atomic::{AtomicUsize, Ordering};

    type Lock = spin::mutex::SpinMutex<()>;

    /// A disk that counts the reads reaching it.
    struct Counting {
        disk: MemDisk<Lock>,
        reads: AtomicUsize,
    }

    impl BlockDevice for Counting {
        fn sectors(&self) -> u64 {
            self.disk.sectors()
        }
        fn read(&self, sector: u64, buf: &mut [u8]) -> Result<(), BlockError> {
            self.reads.fetch_add(1, Ordering::Relaxed);
            self.disk.read(sector, buf)
        }
        fn write(&self, sector: u64, buf: &[u8]) -> Result<(), BlockError> {
            self.disk.write(sector, buf)
        }
        fn flush(&self) -> Result<(), BlockError> {
            self.disk.flush()
        }
        fn read_only(&self) -> bool {
            self.disk.read_only()
        }
    }

    fn sector_of(n: u8) -> Vec<u8> {
        vec![n; SECTOR]
    }

    fn counting(sectors: usize) -> Counting {
        let disk = MemDisk::<Lock>::zeroed(sectors as u64).unwrap();
        for s in 0..sectors {
            disk.write(s as u64, &sector_of(s as u8)).unwrap();
        }
        Counting {
            disk,
            reads: AtomicUsize::new(0),
        }
    }

    #[test]
    fn repeated_reads_come_from_the_cache_and_writes_go_through() {
        let c: Cached<Lock, _> = Cached::with_slots(counting(64), 8);
        let mut buf = vec![0u8; SECTOR];
        c.read(3, &mut buf).unwrap();
        c.read(3, &mut buf).unwrap();
        assert_eq!(buf, sector_of(3));
        assert_eq!(
            c.device().reads.load(Ordering::Relaxed),
            1,
            "the second from the cache"
        );
        // A write reaches the device and the cache.
        c.write(3, &sector_of(99)).unwrap();
        c.read(3, &mut buf).unwrap();
        assert_eq!(buf, sector_of(99));
        assert_eq!(c.device().reads.load(Ordering::Relaxed), 1);
        let mut direct = vec![0u8; SECTOR];
        c.device().disk.read(3, &mut direct).unwrap();
        assert_eq!(direct, sector_of(99), "write-through");
        // Sector 11 shares 3's slot: it evicts it, and 3 is read again from the device.
        c.read(11, &mut buf).unwrap();
        assert_eq!(buf, sector_of(11));
        c.read(3, &mut buf).unwrap();
        assert_eq!(buf, sector_of(99));
        assert_eq!(c.device().reads.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn ranges_are_served_whole_or_read_whole() {
        let c: Cached<Lock, _> = Cached::with_slots(counting(64), 16);
        let mut four = vec![0u8; 4 * SECTOR];
        c.read(4, &mut four).unwrap();
        let mut two = vec![0u8; 2 * SECTOR];
        c.read(5, &mut two).unwrap();
        assert_eq!(&two[..SECTOR], &sector_of(5)[..]);
        assert_eq!(&two[SECTOR..], &sector_of(6)[..]);
        assert_eq!(c.device().reads.load(Ordering::Relaxed), 1);
        // 7 cached, 8 not: one request for both.
        c.read(7, &mut two).unwrap();
        assert_eq!(&two[SECTOR..], &sector_of(8)[..]);
        assert_eq!(c.device().reads.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn bad_transfers_and_failed_writes_change_nothing() {
        let c: Cached<Lock, _> = Cached::with_slots(counting(8), 4);
        let mut buf = vec![0u8; SECTOR];
        assert_eq!(c.read(8, &mut buf), Err(BlockError::OutOfRange));
        assert_eq!(c.read(0, &mut buf[..100]), Err(BlockError::Misaligned));
        assert_eq!(c.write(8, &buf), Err(BlockError::OutOfRange));
        c.read(1, &mut buf).unwrap();
        assert_eq!(
            buf,
            sector_of(1),
            "the cache was not filled by the refused calls"
        );
    }
}
