//! Block devices: the contract a disk driver implements for the file systems on it
//! ([`BlockDevice`]), the ways a transfer fails ([`BlockError`]), and a disk in the heap
//! ([`MemDisk`]: a RAM disk, and the tests' and fuzzers' disk).
//!
//! A block device moves whole 512-byte sectors ([`SECTOR`]): a transfer is one or more of
//! them, starting at a sector number. Every method takes `&self` and a device is
//! `Send + Sync`: a driver serializes its requests itself (its own lock or queue), so a file
//! system may call it from any thread and hold no lock of the driver's across calls.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering};
use lock_api::{Mutex, RawMutex};

use crate::node::ErrorKind;

/// Bytes of a sector: every transfer is a whole number of them.
pub const SECTOR: usize = 512;

/// Why a transfer failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockError {
    /// A sector at or past the end of the device.
    OutOfRange,
    /// A buffer that is not a whole number of sectors (or is empty).
    Misaligned,
    /// The device failed the transfer: how (a driver's words).
    Io(&'static str),
    /// A write to a read-only device.
    ReadOnly,
    /// The device was removed or stopped answering.
    Gone,
}

impl fmt::Display for BlockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlockError::OutOfRange => f.write_str("a sector past the end of the disk"),
            BlockError::Misaligned => f.write_str("a transfer that is not whole 512-byte sectors"),
            BlockError::Io(why) => write!(f, "disk I/O error: {why}"),
            BlockError::ReadOnly => f.write_str("the disk is read-only"),
            BlockError::Gone => f.write_str("the disk is gone"),
        }
    }
}

impl core::error::Error for BlockError {}

impl From<BlockError> for ErrorKind {
    fn from(e: BlockError) -> ErrorKind {
        match e {
            BlockError::OutOfRange => ErrorKind::Io("a sector past the end of the disk"),
            BlockError::Misaligned => {
                ErrorKind::InvalidArgument("a transfer that is not whole 512-byte sectors")
            }
            BlockError::Io(why) => ErrorKind::Io(why),
            BlockError::ReadOnly => ErrorKind::ReadOnly,
            BlockError::Gone => ErrorKind::Io("the disk is gone"),
        }
    }
}

/// A disk of 512-byte sectors, as a driver (virtio-blk, AHCI, an SD card) offers it.
pub trait BlockDevice: Send + Sync {
    /// How many sectors it has.
    fn sectors(&self) -> u64;
    /// Reads `buf.len() / 512` sectors from `sector` on into `buf` (a whole number of
    /// sectors, not empty: else [`BlockError::Misaligned`]).
    fn read(&self, sector: u64, buf: &mut [u8]) -> Result<(), BlockError>;
    /// Writes `buf` (a whole number of sectors, not empty) to the sectors from `sector` on.
    fn write(&self, sector: u64, buf: &[u8]) -> Result<(), BlockError>;
    /// Waits until every write that returned is on the medium (a write cache flushed).
    fn flush(&self) -> Result<(), BlockError>;
    /// Whether writes are refused ([`BlockError::ReadOnly`]).
    fn read_only(&self) -> bool;
}

/// The check every transfer passes: `len` bytes are a whole, non-zero number of sectors, all
/// of them below `sectors`. For drivers, before they build a request.
pub fn check_transfer(sectors: u64, sector: u64, len: usize) -> Result<(), BlockError> {
    if len == 0 || !len.is_multiple_of(SECTOR) {
        return Err(BlockError::Misaligned);
    }
    let count = (len / SECTOR) as u64;
    match sector.checked_add(count) {
        Some(end) if end <= sectors => Ok(()),
        _ => Err(BlockError::OutOfRange),
    }
}

impl<T: BlockDevice + ?Sized> BlockDevice for &T {
    fn sectors(&self) -> u64 {
        (**self).sectors()
    }
    fn read(&self, sector: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        (**self).read(sector, buf)
    }
    fn write(&self, sector: u64, buf: &[u8]) -> Result<(), BlockError> {
        (**self).write(sector, buf)
    }
    fn flush(&self) -> Result<(), BlockError> {
        (**self).flush()
    }
    fn read_only(&self) -> bool {
        (**self).read_only()
    }
}

impl<T: BlockDevice + ?Sized> BlockDevice for Arc<T> {
    fn sectors(&self) -> u64 {
        (**self).sectors()
    }
    fn read(&self, sector: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        (**self).read(sector, buf)
    }
    fn write(&self, sector: u64, buf: &[u8]) -> Result<(), BlockError> {
        (**self).write(sector, buf)
    }
    fn flush(&self) -> Result<(), BlockError> {
        (**self).flush()
    }
    fn read_only(&self) -> bool {
        (**self).read_only()
    }
}

/// A disk held in the heap, locked by `R`: a RAM disk, or a disk image for tests and
/// fuzzing. It can be made read-only, and made to fail every transfer as a removed disk
/// would ([`MemDisk::set_gone`]).
pub struct MemDisk<R: RawMutex> {
    bytes: Mutex<R, Vec<u8>>,
    read_only: bool,
    gone: AtomicBool,
}

impl<R: RawMutex> fmt::Debug for MemDisk<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemDisk")
            .field("bytes", &self.bytes.lock().len())
            .field("read_only", &self.read_only)
            .finish()
    }
}

impl<R: RawMutex> MemDisk<R> {
    /// A disk of `sectors` zeroed sectors; [`ErrorKind::OutOfMemory`] if the heap cannot
    /// hold it.
    pub fn zeroed(sectors: u64) -> Result<Self, ErrorKind> {
        let len = usize::try_from(sectors)
            .ok()
            .and_then(|s| s.checked_mul(SECTOR))
            .ok_or(ErrorKind::OutOfMemory)?;
        let mut v = Vec::new();
        v.try_reserve_exact(len)
            .map_err(|_| ErrorKind::OutOfMemory)?;
        v.resize(len, 0);
        Ok(Self::from_bytes(v))
    }

    /// A disk holding `image` (zero-padded to a whole sector).
    pub fn from_bytes(mut image: Vec<u8>) -> Self {
        let pad = image.len().next_multiple_of(SECTOR) - image.len();
        image.resize(image.len() + pad, 0);
        Self {
            bytes: Mutex::new(image),
            read_only: false,
            gone: AtomicBool::new(false),
        }
    }

    /// The same disk, refusing writes.
    pub fn into_read_only(mut self) -> Self {
        self.read_only = true;
        self
    }

    /// Makes every later transfer fail with [`BlockError::Gone`] (`true`), or work again.
    pub fn set_gone(&self, gone: bool) {
        self.gone.store(gone, Ordering::Relaxed);
    }

    /// A copy of the disk's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.bytes.lock().clone()
    }

    /// The disk's bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes.into_inner()
    }

    fn check(&self, len_bytes: usize, sector: u64, buf: usize) -> Result<usize, BlockError> {
        if self.gone.load(Ordering::Relaxed) {
            return Err(BlockError::Gone);
        }
        check_transfer((len_bytes / SECTOR) as u64, sector, buf)?;
        // In range of a Vec's length, so it fits a usize.
        Ok(sector as usize * SECTOR)
    }
}

impl<R: RawMutex + Send + Sync> BlockDevice for MemDisk<R> {
    fn sectors(&self) -> u64 {
        (self.bytes.lock().len() / SECTOR) as u64
    }

    fn read(&self, sector: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        let bytes = self.bytes.lock();
        let at = self.check(bytes.len(), sector, buf.len())?;
        buf.copy_from_slice(&bytes[at..at + buf.len()]);
        Ok(())
    }

    fn write(&self, sector: u64, buf: &[u8]) -> Result<(), BlockError> {
        if self.read_only {
            return Err(BlockError::ReadOnly);
        }
        let mut bytes = self.bytes.lock();
        let at = self.check(bytes.len(), sector, buf.len())?;
        bytes[at..at + buf.len()].copy_from_slice(buf);
        Ok(())
    }

    fn flush(&self) -> Result<(), BlockError> {
        if self.gone.load(Ordering::Relaxed) {
            return Err(BlockError::Gone);
        }
        Ok(())
    }

    fn read_only(&self) -> bool {
        self.read_only
    }
}
