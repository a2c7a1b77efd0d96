//! The vDSO's `clock_gettime` (LinuxU): the clock read without a system call.
//!
//! The scheduler reads the clock on every switch; as a system call that is ~0.1–0.3 µs, through
//! the vDSO Linux maps into every process ~20 ns. Found without libc: the auxiliary vector
//! (after the environment on the initial stack) gives the vDSO's ELF header
//! (`AT_SYSINFO_EHDR`), whose dynamic symbols name `__vdso_clock_gettime` (the interface
//! `Documentation/ABI/stable/vdso` describes, parsed here with every offset bounds-checked
//! against the image's own size; anything unexpected leaves the system call in use).
#![allow(
    unsafe_code,
    reason = "reading the auxiliary vector and the vDSO image the kernel mapped; each use has a SAFETY note"
)]

use core::sync::atomic::{AtomicUsize, Ordering};

/// `AT_SYSINFO_EHDR`: the vDSO's address in the auxiliary vector.
const AT_SYSINFO_EHDR: usize = 33;
/// ELF constants (System V gABI).
const PT_LOAD: u32 = 1;
const SYMBOL: &[u8] = b"__vdso_clock_gettime";

/// The function, once found (0: use the system call).
static CLOCK_GETTIME: AtomicUsize = AtomicUsize::new(0);

type ClockGettime = unsafe extern "C" fn(clock: i32, ts: *mut [i64; 2]) -> i32;

/// Reads `CLOCK_MONOTONIC` through the vDSO if it was found: `None` if not.
#[inline]
pub(super) fn monotonic_ns() -> Option<u64> {
    let f = CLOCK_GETTIME.load(Ordering::Relaxed);
    if f == 0 {
        return None;
    }
    // SAFETY: `f` is the address of the vDSO's `__vdso_clock_gettime` (found by `init`), which
    // has this C signature; the vDSO stays mapped for the process's life.
    let f: ClockGettime = unsafe { core::mem::transmute(f) };
    let mut ts = [0i64; 2];
    // SAFETY: `ts` is a valid `struct timespec` for the call to fill.
    let rc = unsafe { f(super::sys::CLOCK_MONOTONIC as i32, &mut ts) };
    (rc == 0).then(|| ts[0] as u64 * 1_000_000_000 + ts[1] as u64)
}

/// Whether the clock is read through the vDSO.
pub fn is_used() -> bool {
    CLOCK_GETTIME.load(Ordering::Relaxed) != 0
}

/// Finds the vDSO from the process's initial `argc`/`argv` (the auxiliary vector follows the
/// environment). Returns whether it was found.
///
/// # Safety
/// `argv` is the `argv` the process started with (`argc` entries and a null), followed in
/// memory by the environment and the auxiliary vector, as Linux lays them out.
pub unsafe fn init(argc: usize, argv: *const *const u8) -> bool {
    // SAFETY: the caller's promise: the initial stack's layout.
    let base = unsafe { auxv_value(argc, argv, AT_SYSINFO_EHDR) };
    let Some(base) = base.filter(|&b| b != 0) else {
        return false;
    };
    // SAFETY: Linux maps the vDSO image at `base` for the process's life.
    match unsafe { find_symbol(base) } {
        Some(addr) => {
            CLOCK_GETTIME.store(addr, Ordering::Relaxed);
            // Used only if it works.
            if monotonic_ns().is_none() {
                CLOCK_GETTIME.store(0, Ordering::Relaxed);
                return false;
            }
            true
        }
        None => false,
    }
}

/// # Safety
/// As for [`init`].
unsafe fn auxv_value(argc: usize, argv: *const *const u8, key: usize) -> Option<usize> {
    // SAFETY: (all reads below) within the initial stack's argv/envp/auxv arrays, each ended
    // by a null (auxv by AT_NULL), as the caller promises.
    unsafe {
        let mut p = argv.add(argc + 1) as *const usize;
        while *p != 0 {
            p = p.add(1);
        }
        p = p.add(1);
        loop {
            let (k, v) = (*p, *p.add(1));
            if k == 0 {
                return None;
            }
            if k == key {
                return Some(v);
            }
            p = p.add(2);
        }
    }
}

/// Reads a `T` at `off` of the image `[base, base + len)`, if it fits.
///
/// # Safety
/// `[base, base + len)` is mapped and readable.
unsafe fn read<T: Copy>(base: usize, len: usize, off: usize) -> Option<T> {
    let end = off.checked_add(size_of::<T>())?;
    if end > len {
        return None;
    }
    // SAFETY: inside the readable image (checked above); unaligned reads are allowed.
    Some(unsafe { core::ptr::read_unaligned((base + off) as *const T) })
}

/// The address of [`SYMBOL`] in the vDSO at `base`, found through its dynamic section (as
/// Linux's own `tools/testing/selftests/vDSO/parse_vdso.c` does: the section headers lie outside
/// the loaded segment).
///
/// # Safety
/// A vDSO image is mapped at `base`.
unsafe fn find_symbol(base: usize) -> Option<usize> {
    // The ELF header and program headers sit in the first page.
    const PAGE: usize = 4096;
    const PT_DYNAMIC: u32 = 2;
    const DT_NULL: i64 = 0;
    const DT_HASH: i64 = 4;
    const DT_STRTAB: i64 = 5;
    const DT_SYMTAB: i64 = 6;
    const DT_STRSZ: i64 = 10;
    const SYM_BYTES: usize = 24;
    // SAFETY: (this function's reads) each goes through `read`, bounded by `len`: first the
    // header page, then the loaded segment's size rounded up to pages (mapped whole).
    unsafe {
        let magic: [u8; 4] = read(base, PAGE, 0)?;
        let class: u8 = read(base, PAGE, 4)?;
        if magic != *b"\x7fELF" || class != 2 {
            return None;
        }
        let phoff: u64 = read(base, PAGE, 0x20)?;
        let phentsize: u16 = read(base, PAGE, 0x36)?;
        let phnum: u16 = read(base, PAGE, 0x38)?;
        // The first PT_LOAD: symbol values and dynamic addresses are relative to its vaddr;
        // its size bounds every read. PT_DYNAMIC: where the tables are.
        let (mut load, mut dynamic) = (None, None);
        for i in 0..usize::from(phnum) {
            let ph = (phoff as usize).checked_add(i * usize::from(phentsize))?;
            let kind: u32 = read(base, PAGE, ph)?;
            let vaddr: u64 = read(base, PAGE, ph + 0x10)?;
            let filesz: u64 = read(base, PAGE, ph + 0x20)?;
            match kind {
                PT_LOAD if load.is_none() => {
                    let len = (filesz as usize).checked_next_multiple_of(PAGE)?;
                    load = Some((vaddr as usize, len.clamp(PAGE, 1 << 20)));
                }
                PT_DYNAMIC => dynamic = Some((vaddr as usize, filesz as usize)),
                _ => {}
            }
        }
        let (load_vaddr, len) = load?;
        let (dyn_vaddr, dyn_len) = dynamic?;
        let dyn_off = dyn_vaddr.checked_sub(load_vaddr)?;
        let (mut hash, mut strtab, mut symtab, mut strsz) = (None, None, None, None);
        for i in 0..dyn_len / 16 {
            let tag: i64 = read(base, len, dyn_off + i * 16)?;
            let val: u64 = read(base, len, dyn_off + i * 16 + 8)?;
            let off = (val as usize).checked_sub(load_vaddr);
            match tag {
                DT_NULL => break,
                DT_HASH => hash = off,
                DT_STRTAB => strtab = off,
                DT_SYMTAB => symtab = off,
                DT_STRSZ => strsz = Some(val as usize),
                _ => {}
            }
        }
        let (strtab, symtab, strsz) = (strtab?, symtab?, strsz?);
        // The symbol count: DT_HASH's nchain; without it, the symbols up to the string table
        // (the linker places .dynstr right after .dynsym).
        let count = match hash {
            Some(h) => read::<u32>(base, len, h + 4)? as usize,
            None if strtab > symtab => (strtab - symtab) / SYM_BYTES,
            None => return None,
        };
        for s in 0..count {
            let sym = symtab.checked_add(s.checked_mul(SYM_BYTES)?)?;
            let name: u32 = read(base, len, sym)?;
            let value: u64 = read(base, len, sym + 8)?;
            if value == 0 || name as usize + SYMBOL.len() >= strsz {
                continue;
            }
            let bytes: [u8; SYMBOL.len() + 1] = read(base, len, strtab + name as usize)?;
            if &bytes[..SYMBOL.len()] == SYMBOL && bytes[SYMBOL.len()] == 0 {
                let off = (value as usize).checked_sub(load_vaddr)?;
                return (off < len).then_some(base + off);
            }
        }
        None
    }
}
