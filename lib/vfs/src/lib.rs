//! # `rhea-vfs` — layer 2: files, hardware-free
//!
//! - [`cpio`]: the newc archive (Linux's initramfs format): a reader that checks every field
//!   and a writer (xtask packs `--initrd` folders with it);
//! - [`path`]: the limits on paths and names, and their checks;
//! - [`node`]: the contract a file system implements ([`FileSystem`]), its handles, metadata
//!   and errors;
//! - [`cpiofs`]: the initramfs, read-only, read in place;
//! - [`tmpfs`]: a writable RAM file system with a size limit;
//! - [`p9`]: a 9P2000.L client over any transport (virtio-9p, Xen's 9pfs);
//! - [`block`]: the contract of a disk of 512-byte sectors ([`BlockDevice`]) and a disk in
//!   the heap ([`MemDisk`]);
//! - [`fat`]: FAT16/FAT32 on a block device ([`FatFs`], over `embedded-sdmmc`);
//! - [`vfs`]: the mount table, path resolution (symbolic links, `..`, limits) and open files
//!   in the shape of `std::fs`, with `embedded-io`'s `Read`/`Write`/`Seek`.
//!
//! Generic over the lock (`lock_api::RawMutex`): the kernel gives its sleeping mutex
//! (`rhea::fs`), the host tests a spin lock. No hardware, no `unsafe`: host-tested and fuzzed
//! (`cargo xtask fuzz cpio`, `p9`, `fat`).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod block;
pub mod cache;
pub mod cpio;
pub mod cpiofs;
pub mod fat;
pub mod node;
pub mod p9;
pub mod path;
pub mod tmpfs;
pub mod vfs;

pub use block::{BlockDevice, BlockError, MemDisk};
pub use cache::Cached;
pub use cpiofs::{CpioFs, CpioFsError};
pub use fat::FatFs;
pub use node::{Error, ErrorKind, FileSystem, FileType, Metadata, NewNode, NodeId, Usage};
pub use tmpfs::Tmpfs;
pub use vfs::{DirEntry, File, MountInfo, OpenOptions, SeekFrom, Vfs};

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_fat;
#[cfg(test)]
mod tests_p9;
