//! The grant table, version 1 (`grant_table.h`): how this domain lets another map or copy one
//! of its pages.
//!
//! The table is an array of 8-byte entries in frames the board mapped: `flags: u16`,
//! `domid: u16`, `frame: u32`. Granting writes the frame and the domain, then (after a write
//! barrier, so Xen never sees the flag with a stale frame) `GTF_permit_access` (with
//! `GTF_readonly` for read-only grants). Ending access clears the flags with a compare-and-swap
//! that fails while Xen has set `GTF_reading`/`GTF_writing` (the other domain has the page
//! mapped or a copy is running); only then is the reference free to reuse.
//!
//! Allocation is lock-free (a bitmap of atomic words, claimed with compare-and-swap), so the
//! table is shared by every driver through [`XenHost::grant_table`](super::XenHost::grant_table)
//! without a lock and may be used from any thread. The first [`RESERVED`] references are
//! never handed out (Xen's tools use them: the console and xenstore pages).

use super::{SharedMem, XenError};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// The other domain may access the frame.
pub const GTF_PERMIT_ACCESS: u16 = 1;
/// ... read-only.
pub const GTF_READONLY: u16 = 4;
/// Set by Xen while the other domain has the frame mapped (or copies from it).
pub const GTF_READING: u16 = 8;
/// Set by Xen while the other domain has the frame mapped writable (or copies to it).
pub const GTF_WRITING: u16 = 16;
/// References reserved for the toolstack (`GNTTAB_NR_RESERVED_ENTRIES`).
pub const RESERVED: u32 = 8;
/// Bytes of a v1 entry.
pub const ENTRY_SIZE: usize = 8;

/// A grant reference: an index in the grant table, what the other domain is told.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, PartialOrd, Ord)]
pub struct GrantRef(pub u32);

/// One v1 entry as read from the table.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct GrantEntry {
    /// `GTF_*` flags.
    pub flags: u16,
    /// The domain granted access.
    pub domid: u16,
    /// The granted frame.
    pub frame: u32,
}

/// The grant table (v1) over the board's mapped frames.
pub struct GrantTable {
    mem: SharedMem,
    entries: u32,
    /// Bit set = reference in use (reserved ones always set).
    used: Vec<AtomicU64>,
    /// Where the next search starts (next-fit, so freed references are not reused at once).
    hint: AtomicUsize,
}

impl core::fmt::Debug for GrantTable {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "GrantTable({} entries, {} in use)",
            self.entries,
            self.in_use()
        )
    }
}

impl GrantTable {
    /// A table over `mem` (the mapped grant frames; its length decides the number of entries,
    /// at most 2^32). Entries are not cleared: the board maps a fresh table.
    pub fn new(mem: SharedMem) -> GrantTable {
        let entries = (mem.len() / ENTRY_SIZE).min(u32::MAX as usize) as u32;
        let words = (entries as usize).div_ceil(64);
        let used: Vec<AtomicU64> = (0..words).map(|_| AtomicU64::new(0)).collect();
        for r in 0..RESERVED.min(entries) {
            used[r as usize / 64].fetch_or(1 << (r % 64), Ordering::Relaxed);
        }
        // Bits past the end count as used.
        if !entries.is_multiple_of(64) {
            used[words - 1].fetch_or(!0u64 << (entries % 64), Ordering::Relaxed);
        }
        GrantTable {
            mem,
            entries,
            used,
            hint: AtomicUsize::new(0),
        }
    }

    /// References the table can hand out (entries minus the reserved ones).
    pub fn capacity(&self) -> usize {
        self.entries.saturating_sub(RESERVED) as usize
    }

    /// References handed out and not yet ended.
    pub fn in_use(&self) -> usize {
        let all: u32 = self
            .used
            .iter()
            .map(|w| w.load(Ordering::Relaxed).count_ones())
            .sum();
        let padding = (self.used.len() * 64) as u32 - self.entries;
        (all - padding - RESERVED.min(self.entries)) as usize
    }

    fn alloc(&self) -> Result<GrantRef, XenError> {
        let words = self.used.len();
        let start = self.hint.load(Ordering::Relaxed) % words.max(1);
        for i in 0..words {
            let w = (start + i) % words;
            let word = &self.used[w];
            let mut cur = word.load(Ordering::Relaxed);
            while cur != u64::MAX {
                let bit = (!cur).trailing_zeros();
                match word.compare_exchange_weak(
                    cur,
                    cur | 1 << bit,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        self.hint.store(w, Ordering::Relaxed);
                        return Ok(GrantRef(w as u32 * 64 + bit));
                    }
                    Err(now) => cur = now,
                }
            }
        }
        Err(XenError::GrantsExhausted {
            capacity: self.capacity(),
        })
    }

    fn is_allocated(&self, r: GrantRef) -> bool {
        r.0 >= RESERVED
            && r.0 < self.entries
            && self.used[r.0 as usize / 64].load(Ordering::Relaxed) & 1 << (r.0 % 64) != 0
    }

    fn free(&self, r: GrantRef) {
        self.used[r.0 as usize / 64].fetch_and(!(1 << (r.0 % 64)), Ordering::Release);
    }

    /// Lets domain `domid` access frame `gfn` (read-only if `readonly`); returns the reference
    /// to tell it. Fails when the table is full or `gfn` does not fit v1's 32-bit frame field.
    pub fn grant(&self, domid: u16, gfn: u64, readonly: bool) -> Result<GrantRef, XenError> {
        let frame = u32::try_from(gfn).map_err(|_| {
            XenError::Invalid(alloc::format!(
                "frame {gfn:#x} does not fit a v1 grant entry"
            ))
        })?;
        let r = self.alloc()?;
        let at = r.0 as usize * ENTRY_SIZE;
        let written = self
            .mem
            .write_u16(at + 2, domid)
            .and_then(|()| self.mem.write_u32(at + 4, frame));
        if let Err(e) = written {
            self.free(r);
            return Err(e);
        }
        // Xen must see the frame and domain before the flag that makes them valid.
        super::shared::wmb();
        let flags = GTF_PERMIT_ACCESS | if readonly { GTF_READONLY } else { 0 };
        self.mem.write_u16(at, flags)?;
        Ok(r)
    }

    /// Ends access through `r` and frees it. Refused with [`XenError::GrantInUse`] (the
    /// reference stays allocated and granted; try again later) while the other domain has the
    /// page mapped or a copy is in progress.
    pub fn end_access(&self, r: GrantRef) -> Result<(), XenError> {
        if !self.is_allocated(r) {
            return Err(XenError::BadGrant(r.0));
        }
        let at = r.0 as usize * ENTRY_SIZE;
        // Xen only ever adds or removes GTF_reading/GTF_writing, so this settles quickly; the
        // bound keeps a misbehaving table from holding us forever.
        for _ in 0..1000 {
            let flags = self.mem.read_u16(at)?;
            if flags & (GTF_READING | GTF_WRITING) != 0 {
                return Err(XenError::GrantInUse(r));
            }
            if self.mem.compare_exchange_u16(at, flags, 0)?.is_ok() {
                self.free(r);
                return Ok(());
            }
        }
        Err(XenError::GrantInUse(r))
    }

    /// Reads entry `r` (what the other side, or Xen, sees).
    pub fn entry(&self, r: GrantRef) -> Result<GrantEntry, XenError> {
        if r.0 >= self.entries {
            return Err(XenError::BadGrant(r.0));
        }
        let at = r.0 as usize * ENTRY_SIZE;
        Ok(GrantEntry {
            flags: self.mem.read_u16(at)?,
            domid: self.mem.read_u16(at + 2)?,
            frame: self.mem.read_u32(at + 4)?,
        })
    }

    /// The table's memory (for a simulated hypervisor setting `GTF_reading`/`GTF_writing`).
    pub fn memory(&self) -> &SharedMem {
        &self.mem
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn table(pages: usize) -> GrantTable {
        GrantTable::new(SharedMem::alloc(pages).unwrap())
    }

    #[test]
    fn grant_writes_the_entry_and_skips_reserved_refs() {
        let t = table(1);
        assert_eq!(t.capacity(), 512 - 8);
        let r = t.grant(0, 0x1234, false).unwrap();
        assert!(r.0 >= RESERVED);
        assert_eq!(
            t.entry(r).unwrap(),
            GrantEntry {
                flags: GTF_PERMIT_ACCESS,
                domid: 0,
                frame: 0x1234
            }
        );
        let ro = t.grant(7, 0x99, true).unwrap();
        assert_ne!(ro, r);
        assert_eq!(t.entry(ro).unwrap().flags, GTF_PERMIT_ACCESS | GTF_READONLY);
        assert_eq!(t.entry(ro).unwrap().domid, 7);
        assert_eq!(t.in_use(), 2);
        assert!(matches!(
            t.grant(0, 1 << 32, false),
            Err(XenError::Invalid(_))
        ));
        assert_eq!(t.in_use(), 2);
    }

    #[test]
    fn end_access_refuses_while_mapped_then_frees() {
        let t = table(1);
        let r = t.grant(0, 5, false).unwrap();
        let at = r.0 as usize * ENTRY_SIZE;
        for busy in [GTF_READING, GTF_WRITING] {
            t.memory().write_u16(at, GTF_PERMIT_ACCESS | busy).unwrap();
            assert_eq!(t.end_access(r), Err(XenError::GrantInUse(r)));
            assert_eq!(t.in_use(), 1);
        }
        t.memory().write_u16(at, GTF_PERMIT_ACCESS).unwrap();
        t.end_access(r).unwrap();
        assert_eq!(t.entry(r).unwrap().flags, 0);
        assert_eq!(t.in_use(), 0);
        assert_eq!(t.end_access(r), Err(XenError::BadGrant(r.0)));
        assert_eq!(t.end_access(GrantRef(3)), Err(XenError::BadGrant(3)));
        assert_eq!(
            t.end_access(GrantRef(100_000)),
            Err(XenError::BadGrant(100_000))
        );
    }

    #[test]
    fn exhaustion_is_an_error_and_freed_refs_are_reused() {
        let t = table(1);
        let mut refs = vec![];
        for i in 0..t.capacity() {
            refs.push(t.grant(1, i as u64, true).unwrap());
        }
        let mut sorted = refs.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 504);
        assert_eq!(sorted[0], GrantRef(RESERVED));
        assert_eq!(*sorted.last().unwrap(), GrantRef(511));
        assert_eq!(
            t.grant(1, 0, true),
            Err(XenError::GrantsExhausted { capacity: 504 })
        );
        t.end_access(refs[100]).unwrap();
        assert_eq!(t.grant(1, 0, true).unwrap(), refs[100]);
        assert!(t.grant(1, 0, true).is_err());
    }

    #[test]
    fn a_table_not_a_multiple_of_64_entries() {
        // 100 entries: the padding bits of the last bitmap word are never handed out.
        let t = GrantTable::new(SharedMem::alloc(1).unwrap().sub(0, 800).unwrap());
        assert_eq!(t.capacity(), 92);
        let mut n = 0;
        while let Ok(r) = t.grant(0, 0, false) {
            assert!((RESERVED..100).contains(&r.0));
            n += 1;
        }
        assert_eq!(n, 92);
        assert_eq!(t.in_use(), 92);
    }
}
