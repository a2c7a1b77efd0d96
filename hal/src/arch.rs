//! The architecture contract: what the runtime needs from an instruction set.
//!
//! Each architecture in `rhea-arch` (x86_64, AArch64, and LinuxU's x86_64 user space) is one
//! zero-sized type implementing [`Arch`]; `rhea_arch::Selected` names the one being built,
//! and the runtime uses the architecture only through that type and this trait (checked by
//! `cargo xtask lint`). What a *board* needs from its architecture beyond this — I/O ports,
//! MSRs, PSCI calls, the generic timer, per-CPU blocks — stays in the architecture module as
//! ordinary functions, because boards are allowed to know their instruction set.
//!
//! Everything here is a signature: the contract has no behaviour of its own, so there is
//! nothing to test on the host; each implementation is exercised by every QEMU and LinuxU case.

use core::fmt;

use crate::image::KernelImage;
use crate::memmap::MemoryMap;
use crate::{CpuId, PhysAddr};

/// An instruction set, as the runtime uses it. All functions act on the calling CPU.
pub trait Arch {
    /// A fatal exception, borrowed from the trap frame the entry code saved.
    type Fault<'a>: Fault;
    /// A snapshot of the calling context's registers (for panics).
    type Registers: Registers;
    /// The kernel's page tables.
    type AddressSpace: AddressSpace;
    /// The CPU feature report printed at boot.
    type Features: fmt::Display;
    /// How vector (FP/SIMD) state is switched, for the boot report.
    type FpuMode: fmt::Display;
    /// Why vector state cannot be switched on this CPU.
    type FpuError: fmt::Debug;

    /// Whether a read-modify-write with interrupts disabled is cheaper than an atomic one for
    /// data only this CPU touches (true where masking is a plain memory operation: LinuxU).
    const CHEAP_IRQ_MASK: bool;
    /// Whether removing a kernel mapping needs other CPUs' TLBs flushed by IPI (false where
    /// the invalidation is broadcast by hardware, or there are no page tables to flush).
    const TLB_SHOOTDOWN_NEEDED: bool;

    /// Where fatal exceptions go. Call once, before anything can fault.
    fn set_fault_handler(handler: for<'a> fn(&Self::Fault<'a>) -> !);
    /// Where device interrupts go: `handler(vector)`, interrupts disabled, on the interrupted
    /// thread's stack.
    fn set_interrupt_handler(handler: fn(u8));
    /// The CPU features, read once.
    fn features() -> Self::Features;
    /// The CPU's own random-number source by name (RDRAND, `RNDR`; LinuxU: the host's
    /// `getrandom(2)`), `None` when it has none.
    fn cpu_rng() -> Option<&'static str>;
    /// Fills `buf` from [`Arch::cpu_rng`]; `false` when there is none or it kept failing.
    fn cpu_rng_fill(buf: &mut [u8]) -> bool;
    /// Makes vector state part of every switch on this CPU. Call once per CPU.
    fn init_fpu() -> Result<Self::FpuMode, Self::FpuError>;

    /// The calling CPU's logical index.
    fn cpu_id() -> CpuId;
    /// A free-running cycle counter; good for intervals on one CPU.
    fn read_cycle_counter() -> u64;

    /// Disables interrupts and returns whether they were enabled.
    fn irq_save() -> bool;
    /// Re-enables interrupts if `was_enabled` (what [`Arch::irq_save`] returned).
    fn irq_restore(was_enabled: bool);
    /// Enables interrupts.
    fn irq_enable();
    /// Whether interrupts are enabled.
    fn irq_enabled() -> bool;
    /// Enables interrupts and waits for one without a window in between, then disables them
    /// again: the idle loop's wait.
    fn wait_for_interrupt();
    /// Flushes this CPU's whole TLB, global entries included (a shootdown's receiving end).
    fn flush_tlb_all();
    /// Stops this CPU for good.
    fn halt_forever() -> !;

    /// Saves the running context's callee-saved state on its stack, stores its stack pointer
    /// in `*from_sp`, and resumes the context whose stack pointer is `to_sp`.
    ///
    /// # Safety
    /// Interrupts are disabled; `from_sp` is valid for a write; `to_sp` was stored by this
    /// function or made by [`Arch::init_stack`] and its stack is mapped and not running.
    #[allow(
        unsafe_code,
        reason = "declares the contract; implementations hold the unsafe code"
    )]
    unsafe fn switch(from_sp: *mut usize, to_sp: usize);
    /// Prepares a fresh stack ending at `top` so that switching to the returned stack pointer
    /// calls `entry(arg)` with interrupts disabled.
    ///
    /// # Safety
    /// `top` is 16-byte aligned and the top of a mapped, writable stack nothing else uses,
    /// with room for one switch frame.
    #[allow(
        unsafe_code,
        reason = "declares the contract; implementations hold the unsafe code"
    )]
    unsafe fn init_stack(top: u64, entry: extern "C" fn(usize) -> !, arg: usize) -> usize;
}

/// A fatal exception.
pub trait Fault: fmt::Display {
    /// The decoded syndrome or error code.
    type Detail: fmt::Display;

    /// The exception's name ("page fault", "synchronous abort, data abort", ...).
    fn name(&self) -> &'static str;
    /// Where it happened.
    fn pc(&self) -> u64;
    /// Whether [`Fault::pc`] is the faulting instruction (false for an instruction fetch
    /// from a bad address, where it is that address).
    fn is_pc_valid(&self) -> bool;
    /// The faulting data or instruction address, for faults that have one.
    fn address(&self) -> Option<u64>;
    /// The frame pointer at the fault, for the backtrace.
    fn frame_pointer(&self) -> u64;
    /// The stack pointer at the fault.
    fn stack_pointer(&self) -> u64;
    /// A one-line decoding of the architecture's syndrome, if it has more to say.
    fn detail(&self) -> Option<Self::Detail>;
}

/// A register snapshot taken where a panic happened.
pub trait Registers: fmt::Display {
    /// How this architecture names the program counter in reports (`rip`, `pc`).
    const PC_NAME: &'static str;
    /// Captures the caller's registers.
    fn capture() -> Self;
    /// The captured program counter.
    fn pc(&self) -> u64;
    /// The captured frame pointer.
    fn frame_pointer(&self) -> u64;
    /// The captured stack pointer.
    fn stack_pointer(&self) -> u64;
}

/// Single 4 KiB frames for page tables and stacks: what the paging code needs from the frame
/// allocator (which lives above this layer).
pub trait FrameSource {
    /// One frame (not zeroed), or `None` when physical memory is exhausted.
    fn alloc_frame(&mut self) -> Option<PhysAddr>;
    /// Gives back a frame [`FrameSource::alloc_frame`] returned; `false` (and nothing
    /// changes) if it was not allocated.
    fn free_frame(&mut self, frame: PhysAddr) -> bool;
}

/// Why a mapping failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PagingError {
    /// No frame (LinuxU: no memory from the host) for a page table or a page.
    OutOfFrames,
    /// The virtual page was already mapped.
    AlreadyMapped {
        /// The page's address.
        virt: u64,
    },
    /// An address that is not page-aligned or beyond the architecture's virtual address
    /// width, or a range that wraps.
    BadRange,
}

impl fmt::Display for PagingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::OutOfFrames => f.write_str("out of physical frames for page tables or pages"),
            Self::AlreadyMapped { virt } => write!(f, "virtual page {virt:#x} is already mapped"),
            Self::BadRange => f.write_str("unaligned, out-of-range or wrapping address range"),
        }
    }
}

/// The kernel's address space: RAM mapped with the image's W^X permissions, plus guarded
/// thread stacks in their own region and device windows.
pub trait AddressSpace: Sized {
    /// Where the thread-stack region begins (above everything [`AddressSpace::new_kernel`]
    /// maps).
    const STACK_REGION_BASE: u64;

    /// Builds the kernel address space for `map` and `image`. Does not switch to it.
    fn new_kernel(
        frames: &mut impl FrameSource,
        map: &MemoryMap,
        image: &KernelImage,
    ) -> Result<Self, PagingError>;
    /// Switches this CPU to these page tables.
    ///
    /// # Safety
    /// Everything the CPU touches next — running code, its stack, its data — is mapped here.
    #[allow(
        unsafe_code,
        reason = "declares the contract; implementations hold the unsafe code"
    )]
    unsafe fn activate(&self);
    /// Maps `pages` fresh frames, writable and not executable, ending at `top` (exclusive);
    /// the caller keeps the pages below unmapped as the guard.
    fn map_stack(
        &mut self,
        frames: &mut impl FrameSource,
        top: u64,
        pages: u64,
    ) -> Result<(), PagingError>;
    /// Unmaps the `pages` pages ending at `top` (a stack mapped by
    /// [`AddressSpace::map_stack`]) and returns their frames. The caller flushes other CPUs'
    /// TLBs where [`Arch::TLB_SHOOTDOWN_NEEDED`].
    fn unmap_stack(
        &mut self,
        frames: &mut impl FrameSource,
        top: u64,
        pages: u64,
    ) -> Result<(), PagingError>;
    /// Identity-maps the device registers `[phys, phys + len_bytes)` uncached, writable,
    /// never executable. Pages already mapped are left as they are.
    fn map_mmio(
        &mut self,
        frames: &mut impl FrameSource,
        phys: u64,
        len_bytes: u64,
    ) -> Result<(), PagingError>;
}
