//! The physical frame allocator: one bit per 4 KiB frame, 1 = in use.
//!
//! Allocation is first-fit from a rotating hint, so it is O(frames) in the worst case. It is
//! therefore **not** for real-time paths: stacks, page tables and the heap are taken from it at
//! spawn or boot time, never from an interrupt or the scheduler. Callers serialise access (the
//! runtime keeps it behind a lock that is never taken with interrupts disabled).

use core::fmt;
use rhea_hal::memmap::MemoryMap;
use rhea_hal::{PAGE_SIZE, PhysAddr};

/// Why a frame operation failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FrameError {
    /// No run of free frames of the requested length and alignment.
    OutOfMemory { frames: usize },
    /// The bitmap storage handed in is smaller than the map needs.
    StorageTooSmall { needed_words: usize },
    /// Freeing or reserving frames outside the managed range.
    OutOfRange { addr: u64 },
    /// Freeing a frame that is not allocated.
    DoubleFree { addr: u64 },
    /// An address or length that is not page aligned, or a zero count.
    BadRequest,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::OutOfMemory { frames } => write!(
                f,
                "out of physical memory ({frames} contiguous frames wanted)"
            ),
            Self::StorageTooSmall { needed_words } => {
                write!(f, "frame bitmap needs {needed_words} words")
            }
            Self::OutOfRange { addr } => write!(f, "frame {addr:#x} is outside managed memory"),
            Self::DoubleFree { addr } => write!(f, "frame {addr:#x} freed twice"),
            Self::BadRequest => write!(f, "unaligned or empty frame request"),
        }
    }
}

/// A bitmap allocator over every frame from 0 to the end of the highest usable region.
#[derive(Debug)]
pub struct FrameAllocator<'a> {
    bits: &'a mut [u64],
    frames: usize,
    free: usize,
    hint: usize,
}

const BITS: usize = 64;

/// Single frames for the paging code (the architecture contract's frame source).
impl rhea_hal::arch::FrameSource for FrameAllocator<'_> {
    fn alloc_frame(&mut self) -> Option<PhysAddr> {
        self.alloc(1, 1).ok()
    }

    fn free_frame(&mut self, frame: PhysAddr) -> bool {
        self.free(frame, 1).is_ok()
    }
}

impl<'a> FrameAllocator<'a> {
    /// Number of frames a map's allocator covers.
    pub fn frames_for(map: &MemoryMap) -> usize {
        let end = map.usable().map(|r| r.end().0).max().unwrap_or(0);
        (end / PAGE_SIZE) as usize
    }

    /// Number of `u64` words of bitmap storage a map's allocator needs.
    pub fn words_for(map: &MemoryMap) -> usize {
        Self::frames_for(map).div_ceil(BITS)
    }

    /// Finds a page-aligned place in usable RAM for `len_bytes` that overlaps none of
    /// `reserved` (each `(start, len_bytes)`). Used to place the bitmap itself.
    pub fn find_free_range(
        map: &MemoryMap,
        len_bytes: u64,
        reserved: &[(PhysAddr, u64)],
    ) -> Option<PhysAddr> {
        let len = len_bytes.div_ceil(PAGE_SIZE) * PAGE_SIZE;
        for region in map.usable() {
            let mut start = region.start.align_up(PAGE_SIZE)?.0;
            let end = region.end().align_down(PAGE_SIZE).0;
            // RT: at most one restart per reserved range, so this loop is bounded.
            'candidate: while start.checked_add(len)? <= end {
                for &(r, rlen) in reserved {
                    let rend = r.0.saturating_add(rlen);
                    if start < rend && r.0 < start + len {
                        start = PhysAddr(rend).align_up(PAGE_SIZE)?.0;
                        continue 'candidate;
                    }
                }
                return Some(PhysAddr(start));
            }
        }
        None
    }

    /// Builds the allocator: every frame starts used, the whole pages of usable regions are
    /// freed, then every range in `reserved` is taken again (kernel image, boot data, the bitmap
    /// itself, low memory).
    pub fn new(
        map: &MemoryMap,
        storage: &'a mut [u64],
        reserved: &[(PhysAddr, u64)],
    ) -> Result<Self, FrameError> {
        let frames = Self::frames_for(map);
        let words = frames.div_ceil(BITS);
        if storage.len() < words {
            return Err(FrameError::StorageTooSmall {
                needed_words: words,
            });
        }
        let bits = &mut storage[..words];
        bits.fill(u64::MAX);
        let mut this = Self {
            bits,
            frames,
            free: 0,
            hint: 0,
        };
        for region in map.usable() {
            let first = region.start.align_up(PAGE_SIZE).map_or(u64::MAX, |a| a.0) / PAGE_SIZE;
            let last = region.end().align_down(PAGE_SIZE).0 / PAGE_SIZE;
            for frame in first..last {
                this.clear(frame as usize);
            }
        }
        for &(start, len) in reserved {
            this.reserve(start, len);
        }
        Ok(this)
    }

    /// Marks every frame touching `[start, start + len_bytes)` used. Frames outside the managed
    /// range are ignored (they are never handed out anyway).
    pub fn reserve(&mut self, start: PhysAddr, len_bytes: u64) {
        let first = start.0 / PAGE_SIZE;
        let last = start
            .0
            .saturating_add(len_bytes)
            .div_ceil(PAGE_SIZE)
            .min(self.frames as u64);
        for frame in first..last {
            self.set(frame as usize);
        }
    }

    /// Allocates `count` contiguous frames whose first frame number is a multiple of
    /// `align_frames` (a power of two). The frames are not zeroed.
    pub fn alloc(&mut self, count: usize, align_frames: usize) -> Result<PhysAddr, FrameError> {
        if count == 0 || !align_frames.is_power_of_two() {
            return Err(FrameError::BadRequest);
        }
        if count <= self.free {
            // Two passes: from the hint to the end, then from the start.
            for (from, to) in [(self.hint, self.frames), (0, self.hint.min(self.frames))] {
                if let Some(first) = self.find_run(from, to, count, align_frames) {
                    for f in first..first + count {
                        self.set(f);
                    }
                    self.hint = first + count;
                    return Ok(PhysAddr(first as u64 * PAGE_SIZE));
                }
            }
        }
        Err(FrameError::OutOfMemory { frames: count })
    }

    /// Returns `count` frames starting at `addr` that were allocated before.
    pub fn free(&mut self, addr: PhysAddr, count: usize) -> Result<(), FrameError> {
        if count == 0 || !addr.is_aligned(PAGE_SIZE) {
            return Err(FrameError::BadRequest);
        }
        let first = (addr.0 / PAGE_SIZE) as usize;
        if first.checked_add(count).is_none_or(|end| end > self.frames) {
            return Err(FrameError::OutOfRange { addr: addr.0 });
        }
        // Check everything before changing anything, so a bad call changes nothing.
        if let Some(f) = (first..first + count).find(|&f| !self.is_used(f)) {
            return Err(FrameError::DoubleFree {
                addr: f as u64 * PAGE_SIZE,
            });
        }
        for f in first..first + count {
            self.clear(f);
        }
        Ok(())
    }

    /// Frames currently free.
    pub fn free_frames(&self) -> usize {
        self.free
    }

    /// Allocates the longest run of free frames, at most `max` of them (the first such run
    /// when several are as long): `(start, frames)`, or `None` if no frame is free. O(frames):
    /// for boot, which builds the heap out of the fewest runs when RAM has holes in it.
    pub fn alloc_longest(&mut self, max: usize) -> Option<(PhysAddr, usize)> {
        let (mut best, mut run_start, mut run) = ((0, 0), 0, 0);
        for f in 0..=self.frames {
            if f < self.frames && !self.is_used(f) {
                if run == 0 {
                    run_start = f;
                }
                run += 1;
                continue;
            }
            if run > best.1 {
                best = (run_start, run);
            }
            run = 0;
        }
        let (first, len) = best;
        let count = len.min(max);
        if count == 0 {
            return None;
        }
        for f in first..first + count {
            self.set(f);
        }
        Some((PhysAddr(first as u64 * PAGE_SIZE), count))
    }

    fn find_run(&self, from: usize, to: usize, count: usize, align: usize) -> Option<usize> {
        let mut start = from.next_multiple_of(align);
        while start + count <= to {
            match (start..start + count).rev().find(|&f| self.is_used(f)) {
                // Skip past the used frame: no run containing it can succeed.
                Some(used) => start = (used + 1).next_multiple_of(align),
                None => return Some(start),
            }
        }
        None
    }

    fn is_used(&self, frame: usize) -> bool {
        self.bits[frame / BITS] & (1 << (frame % BITS)) != 0
    }

    fn set(&mut self, frame: usize) {
        if !self.is_used(frame) {
            self.bits[frame / BITS] |= 1 << (frame % BITS);
            self.free -= 1;
        }
    }

    fn clear(&mut self, frame: usize) {
        if self.is_used(frame) {
            self.bits[frame / BITS] &= !(1 << (frame % BITS));
            self.free += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rhea_hal::memmap::RegionKind;

    fn map() -> MemoryMap {
        let mut m = MemoryMap::new();
        m.push(0, 0x9_fc00, RegionKind::Usable).unwrap();
        m.push(0x10_0000, 0x30_0000, RegionKind::Usable).unwrap(); // 1 MiB .. 4 MiB
        m.push(0xf000_0000, 0x1000, RegionKind::Reserved).unwrap();
        m.finish().unwrap()
    }

    #[test]
    fn only_usable_unreserved_frames_are_free() {
        let m = map();
        let mut storage = vec![0u64; FrameAllocator::words_for(&m)];
        let fa = FrameAllocator::new(
            &m,
            &mut storage,
            &[(PhysAddr(0), 0x10_0000), (PhysAddr(0x10_0000), 0x2000)],
        )
        .unwrap();
        // 1..4 MiB is 768 frames, minus the two reserved ones; low memory is reserved whole.
        assert_eq!(fa.free_frames(), 768 - 2);
        assert_eq!(FrameAllocator::frames_for(&m), 1024);
    }

    #[test]
    fn frame_source_hands_out_single_frames_and_refuses_a_double_free() {
        use rhea_hal::arch::FrameSource;
        let m = map();
        let mut storage = vec![0u64; FrameAllocator::words_for(&m)];
        let mut fa = FrameAllocator::new(&m, &mut storage, &[(PhysAddr(0), 0x10_0000)]).unwrap();
        let before = fa.free_frames();
        let a = fa.alloc_frame().unwrap();
        let b = fa.alloc_frame().unwrap();
        assert_ne!(a, b);
        assert!(a.is_aligned(PAGE_SIZE) && b.is_aligned(PAGE_SIZE));
        assert_eq!(fa.free_frames(), before - 2);
        assert!(fa.free_frame(a));
        assert!(
            !fa.free_frame(a),
            "a second free of the same frame is refused"
        );
        assert!(
            !fa.free_frame(PhysAddr(0x1234)),
            "an unaligned frame is refused"
        );
        assert_eq!(fa.free_frames(), before - 1);
        // Exhaustion is `None`, not a panic.
        while fa.alloc_frame().is_some() {}
        assert_eq!(fa.free_frames(), 0);
        assert!(fa.alloc_frame().is_none());
    }

    #[test]
    fn alloc_free_roundtrip_and_alignment() {
        let m = map();
        let mut storage = vec![0u64; FrameAllocator::words_for(&m)];
        let mut fa = FrameAllocator::new(&m, &mut storage, &[(PhysAddr(0), 0x10_0000)]).unwrap();
        let before = fa.free_frames();
        let a = fa.alloc(1, 1).unwrap();
        let b = fa.alloc(512, 512).unwrap();
        assert!(b.is_aligned(2 << 20), "2 MiB aligned: {b:?}");
        assert_ne!(a, b);
        assert_eq!(fa.free_frames(), before - 513);
        fa.free(b, 512).unwrap();
        fa.free(a, 1).unwrap();
        assert_eq!(fa.free_frames(), before);
    }

    #[test]
    fn double_free_and_out_of_range_are_errors_that_change_nothing() {
        let m = map();
        let mut storage = vec![0u64; FrameAllocator::words_for(&m)];
        let mut fa = FrameAllocator::new(&m, &mut storage, &[(PhysAddr(0), 0x10_0000)]).unwrap();
        let a = fa.alloc(2, 1).unwrap();
        fa.free(a, 1).unwrap();
        let free = fa.free_frames();
        assert_eq!(fa.free(a, 2), Err(FrameError::DoubleFree { addr: a.0 }));
        assert_eq!(fa.free_frames(), free);
        assert_eq!(
            fa.free(PhysAddr(0x4000_0000), 1),
            Err(FrameError::OutOfRange { addr: 0x4000_0000 })
        );
        assert_eq!(fa.free(PhysAddr(0x1001), 1), Err(FrameError::BadRequest));
    }

    #[test]
    fn alloc_longest_takes_the_longest_run_then_the_next() {
        let m = map();
        let mut storage = vec![0u64; FrameAllocator::words_for(&m)];
        // Low memory free except page 0: 158 frames; 1..4 MiB: 768 frames.
        let mut fa = FrameAllocator::new(&m, &mut storage, &[(PhysAddr(0), 0x1000)]).unwrap();
        let free = fa.free_frames();
        assert_eq!(free, 158 + 768);
        assert_eq!(fa.alloc_longest(800), Some((PhysAddr(0x10_0000), 768)));
        assert_eq!(fa.alloc_longest(10), Some((PhysAddr(0x1000), 10)));
        assert_eq!(fa.free_frames(), free - 778);
        assert_eq!(fa.alloc_longest(usize::MAX), Some((PhysAddr(0xb000), 148)));
        assert_eq!(fa.alloc_longest(1), None);
        assert_eq!(fa.alloc_longest(0), None);
        fa.free(PhysAddr(0x10_0000), 768).unwrap();
        assert_eq!(fa.free_frames(), 768);
    }

    #[test]
    fn exhaustion_is_reported_and_recovers() {
        let m = map();
        let mut storage = vec![0u64; FrameAllocator::words_for(&m)];
        let mut fa = FrameAllocator::new(&m, &mut storage, &[(PhysAddr(0), 0x10_0000)]).unwrap();
        let all = fa.free_frames();
        let run = fa.alloc(all, 1).unwrap();
        assert_eq!(fa.alloc(1, 1), Err(FrameError::OutOfMemory { frames: 1 }));
        fa.free(run, all).unwrap();
        assert_eq!(
            fa.alloc(all + 1, 1),
            Err(FrameError::OutOfMemory { frames: all + 1 })
        );
        assert!(fa.alloc(all, 1).is_ok());
    }

    #[test]
    fn random_operations_never_hand_out_a_frame_twice() {
        let m = map();
        let mut storage = vec![0u64; FrameAllocator::words_for(&m)];
        let mut fa = FrameAllocator::new(&m, &mut storage, &[(PhysAddr(0), 0x10_0000)]).unwrap();
        let mut owner = vec![false; FrameAllocator::frames_for(&m)];
        let mut live: Vec<(PhysAddr, usize)> = Vec::new();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..5000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            if !seed.is_multiple_of(3) || live.is_empty() {
                let count = 1 + (seed >> 8) as usize % 40;
                let align = 1 << ((seed >> 20) % 4);
                if let Ok(a) = fa.alloc(count, align) {
                    let first = (a.0 / PAGE_SIZE) as usize;
                    assert_eq!(first % align, 0);
                    assert!(first >= 256, "low memory handed out");
                    for (f, owned) in owner.iter_mut().enumerate().skip(first).take(count) {
                        assert!(!*owned, "frame {f} handed out twice");
                        *owned = true;
                    }
                    live.push((a, count));
                }
            } else {
                let (a, count) = live.swap_remove((seed >> 8) as usize % live.len());
                fa.free(a, count).unwrap();
                let first = (a.0 / PAGE_SIZE) as usize;
                owner[first..first + count].fill(false);
            }
            assert_eq!(fa.free_frames(), 768 - owner.iter().filter(|&&o| o).count());
        }
    }

    #[test]
    fn find_free_range_avoids_reserved() {
        let m = map();
        let at = FrameAllocator::find_free_range(
            &m,
            0x3000,
            &[(PhysAddr(0), 0x10_0000), (PhysAddr(0x10_0000), 0x1800)],
        )
        .unwrap();
        assert_eq!(at, PhysAddr(0x10_2000));
        assert!(FrameAllocator::find_free_range(&m, 0x100_0000, &[]).is_none());
    }
}
