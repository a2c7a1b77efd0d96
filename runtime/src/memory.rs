//! Bringing memory up: frame allocator, kernel page tables, heap, guarded stacks.
//!
//! Lock: `MEMORY` holds the frame allocator, the address space and the stack table. It is a
//! spin lock with interrupts disabled while held (`IrqsOff`: a holder is never preempted, so a
//! more important thread spawning on its CPU cannot spin on it forever), and is never taken in
//! interrupt context (stacks and page tables are made at spawn and boot time only). What is
//! done under it is bounded: one mapping or unmapping, or one stack's scan for
//! [`stack_usage`]. Leaf lock, except that it is taken before the heap lock when a caller
//! allocates while holding it (it does not today).
//! The fault path reads the stack table with `try_lock` so a fault while it is held cannot
//! deadlock the report.
#![allow(
    unsafe_code,
    reason = "turning validated physical ranges into Rust memory; each use has a SAFETY note"
)]

use crate::selected::{A, Arch};
use crate::sync::{IrqGuard, IrqsOff, SpinLock};
use core::ops::Range;
use rhea_hal::arch::{AddressSpace as _, PagingError};

/// The architecture's kernel page tables.
type AddressSpace = <A as Arch>::AddressSpace;
/// Where thread stacks are mapped.
const STACK_REGION_BASE: u64 = <AddressSpace as rhea_hal::arch::AddressSpace>::STACK_REGION_BASE;
use rhea_hal::BootInfo;
use rhea_hal::{PAGE_SIZE, PhysAddr};
use rhea_mm::{FrameAllocator, FrameError, Heap};
use rhea_sync::Once;

#[global_allocator]
static HEAP: IrqSafeHeap = IrqSafeHeap(Heap::empty());

/// The kernel heap with interrupts off while its lock is held.
///
/// Why: the scheduler allocates and frees under its own lock (the checker's scratch list,
/// spawning, reaping), with interrupts off. If a thread could be preempted while holding the
/// heap lock, any CPU that then allocated under the scheduler lock would spin on the heap lock
/// forever, and the holder could never be scheduled again (the lock it needs is held by the
/// spinner): a deadlock seen on LinuxU with 3 vCPUs, and possible on one CPU. With interrupts
/// off, a heap-lock holder always runs to its unlock in bounded time.
struct IrqSafeHeap(Heap);

// SAFETY: every call is passed on to `Heap`'s `_local` methods, whose contract is
// `GlobalAlloc`'s (the caller's) plus: the CPU index is the caller's own with interrupts off
// for the call (masked here, read after masking so the thread cannot move), and every block
// goes through them (this is the only way into the global heap).
unsafe impl core::alloc::GlobalAlloc for IrqSafeHeap {
    #[inline]
    unsafe fn alloc(&self, layout: core::alloc::Layout) -> *mut u8 {
        let _irqs = IrqGuard::new();
        let cpu = A::cpu_id().0 as usize;
        // SAFETY: see the impl's note.
        unsafe { self.0.alloc_local(cpu, layout) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: core::alloc::Layout) {
        let _irqs = IrqGuard::new();
        let cpu = A::cpu_id().0 as usize;
        // SAFETY: see the impl's note.
        unsafe { self.0.dealloc_local(cpu, ptr, layout) };
    }
}

/// Virtual space per stack: the stack sits at the top of its slot, everything below it in the
/// slot stays unmapped and is the guard.
const STACK_SLOT_BYTES: u64 = 2 << 20;
/// At most this many stacks (the thread limit until the scheduler issue revisits it).
const MAX_STACKS: usize = 64;
/// Stack names are kept inline (no heap needed to report a fault).
const NAME_BYTES: usize = 32;

/// One mapped kernel stack.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StackInfo {
    name: [u8; NAME_BYTES],
    name_len: usize,
    /// `[bottom, top)` of the mapped stack.
    bottom: u64,
    top: u64,
}

impl StackInfo {
    pub(crate) fn name(&self) -> &str {
        core::str::from_utf8(&self.name[..self.name_len]).unwrap_or("?")
    }

    pub(crate) fn range(&self) -> Range<u64> {
        self.bottom..self.top
    }

    fn slot_base(&self) -> u64 {
        self.top - STACK_SLOT_BYTES
    }

    /// Whether `addr` is in this stack's guard area.
    pub(crate) fn guard_contains(&self, addr: u64) -> bool {
        (self.slot_base()..self.bottom).contains(&addr)
    }
}

struct Memory {
    frames: FrameAllocator<'static>,
    space: AddressSpace,
    stacks: [Option<StackInfo>; MAX_STACKS],
}

/// Lock: taken by threads only (stack mapping and unmapping, device mappings, statistics),
/// with interrupts disabled so that its holder cannot be preempted: a more important thread
/// on the same CPU would otherwise spin against it forever (`tests/lock-preempt` hung on every
/// board when it was a spin lock that left interrupts on). Held for a few page-table writes,
/// never across a TLB shootdown. Before the heap lock; a leaf otherwise.
static MEMORY: Once<SpinLock<Memory, IrqsOff>> = Once::new();

/// Proof that memory is up: frames, page tables, heap — with where the memory went, for the
/// boot report (`rhea: memory at boot: ...`, read by `cargo xtask bench boot`).
#[derive(Debug)]
pub(crate) struct MemoryReady {
    pub(crate) usable_bytes: u64,
    /// The image's text, rodata and data (with the symbol table and bss, which holds the boot
    /// stack, the exception stacks and the descriptor tables).
    pub(crate) image: [u64; 3],
    /// Usable RAM the board keeps from the frame allocator besides the image (low memory,
    /// boot data).
    pub(crate) reserved_bytes: u64,
    pub(crate) bitmap_bytes: u64,
    pub(crate) page_table_bytes: u64,
    pub(crate) heap_bytes: u64,
    /// What the heap had to be at least, and who said so.
    pub(crate) heap_need: HeapNeed,
    pub(crate) free_bytes: u64,
}

/// Who sized the heap: see [`init`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HeapSource {
    /// `rhea.heap_kib` on the command line: exactly this size.
    Cmdline,
    /// The app's `rhea::main!(main, heap_kib = N)`: at least this size.
    App,
    /// Neither: the runtime's own minimum ([`RUNTIME_HEAP_NEED`]).
    Runtime,
}

/// The heap size asked for, in bytes, and by whom.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HeapNeed {
    pub(crate) bytes: u64,
    pub(crate) source: HeapSource,
}

impl HeapSource {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Self::Cmdline => "rhea.heap_kib",
            Self::App => "the app's rhea::main! heap_kib",
            Self::Runtime => "the runtime's minimum",
        }
    }
}

/// The heap the runtime itself needs when the app declares nothing: thread records, the
/// device table, the scheduler's scratch lists, console buffers. `hello` uses under 16 KiB.
pub(crate) const RUNTIME_HEAP_NEED: u64 = 64 << 10;

/// Frames kept out of the heap for what boot itself maps next besides the app's main stack:
/// the console-input thread's stack, the page tables of the stack region and of device
/// registers. [`init`] adds the main stack's size ([`crate::boot::main_stack_bytes`]).
const BOOT_FRAME_RESERVE: u64 = 96 << 10;

/// The most runs of free frames the heap is built from (each is a region of its own to the
/// allocator; a block never spans two).
const MAX_HEAP_REGIONS: usize = 4;

/// The largest heap the default share gives (the old fixed rule's cap).
const HEAP_SHARE_MAX: u64 = 64 << 20;

/// Why memory bring-up failed: always fatal at boot.
#[derive(Debug)]
pub enum MemoryError {
    NoRoomForBitmap,
    Frames(FrameError),
    Paging(PagingError),
    /// The heap asked for does not fit beside what boot must map next.
    TooSmall {
        /// The heap asked for, in bytes, and who asked (see [`init`]).
        need: u64,
        asked_by: &'static str,
        /// Free after the image, the frame bitmap and the page tables.
        free: u64,
        /// Of which kept for boot's own stacks (the main stack and [`BOOT_FRAME_RESERVE`]).
        reserve: u64,
    },
    /// Enough free RAM for the heap, but not in [`MAX_HEAP_REGIONS`] runs.
    Fragmented {
        need: u64,
        asked_by: &'static str,
        /// What the runs held.
        placed: u64,
    },
}

impl core::fmt::Display for MemoryError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoRoomForBitmap => f.write_str("no usable RAM below 4 GiB for the frame bitmap"),
            Self::Frames(e) => write!(f, "{e}"),
            Self::Paging(e) => write!(f, "{e}"),
            Self::TooSmall {
                need,
                asked_by,
                free,
                reserve,
            } => write!(
                f,
                "not enough memory: a heap of {} KiB ({}) does not fit in the {} KiB free \
                 after the image, page tables and frame bitmap with {} KiB kept for the main \
                 thread's stack; give the machine at least {} KiB more",
                need >> 10,
                asked_by,
                free >> 10,
                reserve >> 10,
                (need + reserve).saturating_sub(*free).div_ceil(1024)
            ),
            Self::Fragmented {
                need,
                asked_by,
                placed,
            } => write!(
                f,
                "not enough memory: a heap of {} KiB ({}) does not fit in the {} longest runs \
                 of free RAM ({} KiB of it did); give the machine more memory",
                need >> 10,
                asked_by,
                MAX_HEAP_REGIONS,
                placed >> 10
            ),
        }
    }
}

/// Sets up the frame allocator over the board's memory map, builds and switches to the kernel
/// page tables, and gives the heap its memory.
///
/// # How big the heap is
/// The heap is made once, of one region (or a few, where RAM has holes): it cannot grow
/// later, and what it does not take stays in the frame allocator for stacks (every thread's,
/// made at spawn) and page tables. So its size is decided here, from what is asked, not from a fixed fraction:
///
/// - `rhea.heap_kib=N` on the command line: exactly N KiB (an operator sizing a machine);
/// - else the app's declared need (`rhea::main!(main, heap_kib = N)`), or the runtime's own
///   [`RUNTIME_HEAP_NEED`] when it declares none: at least that; and on top of the need the
///   heap takes a share of RAM as headroom — an eighth of usable RAM up to 64 MiB, the
///   figure the runtime always used — but only out of what is free beyond the need and
///   boot's reserve (the main stack and [`BOOT_FRAME_RESERVE`]), so a small machine gives the
///   heap exactly its need and the rest to stacks. The headroom matters: the network stack sizes its socket budget from the heap
///   free at start (`rhea_net`, half of it after the frame pool), so a big machine still gets
///   a big budget and the figures of existing configurations do not move.
///
/// A need that does not fit beside the reserve is [`MemoryError::TooSmall`], which boot
/// reports as "not enough memory" with the figures, not as an allocation panic later.
pub(crate) fn init(
    boot: &BootInfo,
    asked: HeapNeed,
    main_stack: u64,
) -> Result<MemoryReady, MemoryError> {
    let map = &boot.memory_map;
    let words = FrameAllocator::words_for(map);
    let bitmap_bytes = (words * 8) as u64;
    // The board's ranges and the initrd (`rhea::fs` reads it in place for good).
    let mut reserved = [(PhysAddr(0), 0); 5];
    reserved[..3].copy_from_slice(&boot.reserved);
    reserved[3] = boot.initrd.unwrap_or((PhysAddr(0), 0));
    let at = FrameAllocator::find_free_range(map, bitmap_bytes, &reserved[..4])
        .ok_or(MemoryError::NoRoomForBitmap)?;
    if at.0 + bitmap_bytes > 4 << 30 {
        return Err(MemoryError::NoRoomForBitmap);
    }
    // SAFETY: `[at, at + bitmap_bytes)` is usable RAM (find_free_range), below 4 GiB so the boot
    // identity map covers it, overlaps none of the reserved ranges (image, boot data, low
    // memory, the initrd), and is reserved in the allocator right below, so nothing else will
    // use it.
    let storage = unsafe { core::slice::from_raw_parts_mut(at.0 as *mut u64, words) };
    reserved[4] = (at, bitmap_bytes);
    let mut frames = FrameAllocator::new(map, storage, &reserved).map_err(MemoryError::Frames)?;

    let before_tables = frames.free_frames() as u64 * PAGE_SIZE;
    let space =
        AddressSpace::new_kernel(&mut frames, map, &boot.image).map_err(MemoryError::Paging)?;
    // SAFETY: the new tables map the kernel image (text, rodata, data, bss — hence the boot
    // stack we are on) and all RAM exactly as the boot tables did, minus page 0 and with
    // stricter permissions that the kernel honours.
    unsafe { space.activate() };
    let free = frames.free_frames() as u64 * PAGE_SIZE;
    let page_table_bytes = before_tables - free;

    let reserve = main_stack + BOOT_FRAME_RESERVE;
    let heap_bytes = heap_size(asked, map.usable_bytes(), free, reserve)?;
    // Out of the longest free runs, so that RAM with holes in it (the PC's 640 KiB below the
    // legacy hole beside what is left above the image) still holds a heap as big as its total.
    let mut left = (heap_bytes / PAGE_SIZE) as usize;
    let mut heap_regions = 0;
    while left > 0 && heap_regions < MAX_HEAP_REGIONS {
        let Some((at, n)) = frames.alloc_longest(left) else {
            break;
        };
        // SAFETY: the frames were just allocated for the heap alone (disjoint from its other
        // regions), are RAM identity-mapped writable, and are never freed.
        unsafe { HEAP.0.add_region(at.0 as *mut u8, n * PAGE_SIZE as usize) };
        left -= n;
        heap_regions += 1;
    }
    if left > 0 {
        return Err(MemoryError::Fragmented {
            need: asked.bytes,
            asked_by: asked.source.describe(),
            placed: heap_bytes - left as u64 * PAGE_SIZE,
        });
    }

    let len = |r: &Range<u64>| r.end - r.start;
    let image = [
        len(&boot.image.text),
        len(&boot.image.rodata),
        len(&boot.image.data),
    ];
    let ready = MemoryReady {
        usable_bytes: map.usable_bytes(),
        image,
        reserved_bytes: map
            .usable_bytes()
            .saturating_sub(before_tables + bitmap_bytes.next_multiple_of(PAGE_SIZE))
            .saturating_sub(image.iter().sum::<u64>()),
        bitmap_bytes,
        page_table_bytes,
        heap_bytes,
        heap_need: asked,
        free_bytes: frames.free_frames() as u64 * PAGE_SIZE,
    };
    MEMORY.call_once(|| {
        SpinLock::new(Memory {
            frames,
            space,
            stacks: [None; MAX_STACKS],
        })
    });
    Ok(ready)
}

/// The heap's size in bytes (whole pages) for `asked`, with `usable` bytes of RAM of which
/// `free` are still free and `reserve` must stay free for boot's stacks: see [`init`].
fn heap_size(asked: HeapNeed, usable: u64, free: u64, reserve: u64) -> Result<u64, MemoryError> {
    let need = asked.bytes.next_multiple_of(PAGE_SIZE);
    let room = free.saturating_sub(reserve);
    if need > room {
        return Err(MemoryError::TooSmall {
            need: asked.bytes,
            asked_by: asked.source.describe(),
            free,
            reserve,
        });
    }
    Ok(match asked.source {
        HeapSource::Cmdline => need,
        HeapSource::App | HeapSource::Runtime => {
            let share = (usable / 8).min(HEAP_SHARE_MAX) / PAGE_SIZE * PAGE_SIZE;
            need.max(share.min(room / PAGE_SIZE * PAGE_SIZE))
        }
    })
}

/// The largest kernel stack [`new_stack`] maps: a slot minus one guard page.
pub(crate) const MAX_STACK_BYTES: u64 = STACK_SLOT_BYTES - PAGE_SIZE;

/// Maps a new kernel stack of `bytes` (rounded up to pages, at most [`MAX_STACK_BYTES`]) with
/// unmapped guard pages below it, and records its name for fault reports.
pub(crate) fn new_stack(name: &str, bytes: u64) -> Result<StackInfo, MemoryError> {
    let pages = bytes
        .div_ceil(PAGE_SIZE)
        .clamp(1, MAX_STACK_BYTES / PAGE_SIZE);
    let mut mem = MEMORY
        .get()
        .expect("memory::init ran before any stack is made")
        .lock();
    let slot = mem
        .stacks
        .iter()
        .position(Option::is_none)
        .ok_or(MemoryError::Frames(FrameError::OutOfMemory {
            frames: pages as usize,
        }))?;
    let top = STACK_REGION_BASE + (slot as u64 + 1) * STACK_SLOT_BYTES;
    let m = &mut *mem;
    m.space
        .map_stack(&mut m.frames, top, pages)
        .map_err(MemoryError::Paging)?;
    let mut info = StackInfo {
        name: [0; NAME_BYTES],
        name_len: 0,
        bottom: top - pages * PAGE_SIZE,
        top,
    };
    let n = floor_char_boundary(name, NAME_BYTES);
    info.name[..n].copy_from_slice(&name.as_bytes()[..n]);
    info.name_len = n;
    m.stacks[slot] = Some(info);
    drop(mem);
    let words = (info.top - info.bottom) / 8;
    // SAFETY: `[bottom, top)` was just mapped writable for this stack alone, and nothing runs
    // on it yet (the caller builds its first frame after this returns).
    unsafe {
        core::slice::from_raw_parts_mut(info.bottom as *mut u64, words as usize).fill(STACK_PAINT)
    };
    Ok(info)
}

/// What a new stack is filled with, so the deepest point a thread reached can be found later
/// ([`stack_usage`]): the first word from the bottom that differs was written by it.
const STACK_PAINT: u64 = 0x5aa5_c33c_5aa5_c33c;

/// One mapped stack's name, size and the most of it ever used, from [`stack_usage`].
#[derive(Clone, Copy, Debug)]
pub struct StackUsage {
    info: StackInfo,
    /// Bytes from the top down to the deepest word written.
    pub peak_bytes: u64,
}

impl StackUsage {
    /// The thread or CPU purpose the stack was made for (`cpu<N> <purpose>` for CPUs' own).
    pub fn name(&self) -> &str {
        self.info.name()
    }

    /// The stack's size in bytes (mapped pages; the guard not counted).
    pub fn bytes(&self) -> u64 {
        self.info.top - self.info.bottom
    }
}

/// Every mapped stack (threads' and CPUs', not the boot stack) with the most of it used so far:
/// the figure to size `Builder::stack_size` and `rhea::main!`'s `stack_kib` from. A stack is
/// painted when it is made and scanned from its bottom up to the first word written, so the
/// peak is exact unless a thread wrote the paint value itself there (a deeper use then reads
/// as shallower by those words). O(stack bytes not used) per stack; the memory lock (and so
/// interrupts on this CPU) is held for one stack's scan at a time.
pub fn stack_usage() -> alloc::vec::Vec<StackUsage> {
    let mut out = alloc::vec::Vec::with_capacity(MAX_STACKS);
    let Some(mem) = MEMORY.get() else {
        return out;
    };
    for slot in 0..MAX_STACKS {
        // Scanned under the lock, which a stack must be unmapped under, so it cannot go
        // mid-scan; nothing is allocated while it is held (`out` has room for every slot).
        let mem = mem.lock();
        if let Some(info) = &mem.stacks[slot] {
            out.push(scan(info));
        }
    }
    out
}

/// [`stack_usage`] of the calling thread's own stack (`None` on the boot stack). The lock is
/// held only to find the record: the caller's stack stays mapped while it runs on it.
pub fn stack_usage_here() -> Option<StackUsage> {
    let here = 0u8;
    let addr = core::ptr::addr_of!(here) as u64;
    let info = MEMORY
        .get()?
        .lock()
        .stacks
        .iter()
        .flatten()
        .find(|s| s.range().contains(&addr))
        .copied()?;
    Some(scan(&info))
}

/// A recorded stack's peak use. The stack must stay mapped for the call: the caller holds the
/// memory lock, or runs on that stack.
fn scan(info: &StackInfo) -> StackUsage {
    let mut at = info.bottom;
    // SAFETY: `[bottom, top)` stays mapped for the call (the caller's condition); the words
    // are read as plain integers, racing only with their owner's writes (a torn or stale read
    // misplaces the peak by a word at most).
    while at < info.top && unsafe { core::ptr::read_volatile(at as *const u64) } == STACK_PAINT {
        at += 8;
    }
    StackUsage {
        info: *info,
        peak_bytes: info.top - at,
    }
}

/// The stacks boards take for the CPUs they start ([`rhea_hal::StackSource`]): guarded like
/// thread stacks, named `cpu<N> <purpose>` for fault reports, never freed.
#[derive(Debug)]
pub(crate) struct CpuStacks;

impl rhea_hal::StackSource for CpuStacks {
    fn stack(&self, cpu: usize, purpose: &'static str, bytes: u64) -> Option<Range<u64>> {
        use core::fmt::Write;
        let mut name = NameBuf::default();
        let _ = write!(name, "cpu{cpu} {purpose}");
        new_stack(name.as_str(), bytes).ok().map(|s| s.range())
    }
}

/// A stack name formatted without allocating (truncated to what a stack record keeps).
#[derive(Default)]
struct NameBuf {
    bytes: [u8; NAME_BYTES],
    len: usize,
}

impl NameBuf {
    fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("cpu")
    }
}

impl core::fmt::Write for NameBuf {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let room = NAME_BYTES - self.len;
        let n = floor_char_boundary(s, room);
        self.bytes[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// Memory in use, for apps watching for leaks.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct MemoryStats {
    /// Heap bytes allocated.
    pub heap_used_bytes: usize,
    /// Heap bytes free.
    pub heap_free_bytes: usize,
    /// Physical memory not yet handed out, in bytes.
    pub free_frame_bytes: u64,
    /// Kernel stacks mapped (one per live or unreaped thread, and the CPUs' own).
    pub stacks: usize,
    /// Bytes of those stacks (mapped pages, guards not counted).
    pub stack_bytes: u64,
}

/// The current [`MemoryStats`].
pub fn stats() -> MemoryStats {
    let (heap_used_bytes, heap_free_bytes) = HEAP.0.usage();
    let (free_frame_bytes, stacks, stack_bytes) = MEMORY.get().map_or((0, 0, 0), |m| {
        let m = m.lock();
        (
            m.frames.free_frames() as u64 * PAGE_SIZE,
            m.stacks.iter().flatten().count(),
            m.stacks.iter().flatten().map(|s| s.top - s.bottom).sum(),
        )
    });
    MemoryStats {
        heap_used_bytes,
        heap_free_bytes,
        free_frame_bytes,
        stacks,
        stack_bytes,
    }
}

/// Unmaps a stack made by [`new_stack`] and frees its frames and slot. The thread that used it
/// must be gone (reaped).
pub(crate) fn free_stack(stack: StackInfo) {
    free_stack_at(stack.top);
}

/// [`free_stack`] by the stack's top address. The slot stays taken until every CPU has flushed
/// its TLB — the caller's own included, since the caller may have moved to another CPU since
/// the unmap (a CPU that last ran the dead thread may still cache its translations, and the
/// next stack in this slot would be reached through them: `smp-stress`'s migrating reaper);
/// the frames are free at once, since nothing reaches them through the dead thread's
/// addresses.
pub(crate) fn free_stack_at(top: u64) {
    let Some(mem) = MEMORY.get() else { return };
    let found = {
        let mut mem = mem.lock();
        let m = &mut *mem;
        match m.stacks.iter().flatten().find(|s| s.top == top).copied() {
            Some(info) => {
                let _ = m.space.unmap_stack(
                    &mut m.frames,
                    info.top,
                    (info.top - info.bottom) / PAGE_SIZE,
                );
                true
            }
            None => false,
        }
    };
    if !found {
        return;
    }
    crate::smp::tlb_shootdown();
    let mut mem = mem.lock();
    if let Some(slot) = mem
        .stacks
        .iter_mut()
        .find(|s| s.is_some_and(|s| s.top == top))
    {
        *slot = None;
    }
}

/// Maps device registers at `[phys, phys + len_bytes)` (identity, uncached) and returns the
/// address to use for them.
pub(crate) fn map_mmio(phys: u64, len_bytes: u64) -> Result<u64, MemoryError> {
    let mut mem = MEMORY
        .get()
        .expect("memory::init ran before any driver maps registers")
        .lock();
    let m = &mut *mem;
    m.space
        .map_mmio(&mut m.frames, phys, len_bytes)
        .map_err(MemoryError::Paging)?;
    Ok(phys)
}

fn floor_char_boundary(s: &str, max: usize) -> usize {
    (0..=max.min(s.len()))
        .rev()
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(0)
}

/// The recorded stack whose mapped range or guard contains `addr`, for fault reports. Does not
/// wait for the memory lock.
pub(crate) fn stack_at(addr: u64) -> Option<StackInfo> {
    let mem = MEMORY.get()?.try_lock()?;
    mem.stacks
        .iter()
        .flatten()
        .find(|s| s.range().contains(&addr) || s.guard_contains(addr))
        .copied()
}
