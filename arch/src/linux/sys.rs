//! Raw Linux system calls (x86_64 ABI: number in RAX, arguments in RDI, RSI, RDX, R10, R8, R9;
//! RCX and R11 clobbered; result in RAX, `-errno` on failure).
//!
//! Why raw calls and not libc: a kernel thread can be preempted anywhere — including inside a
//! libc function holding a lock (malloc's arena lock, stdio's stream lock) — and the thread
//! switched to may call the same function and deadlock on that lock forever. Raw system calls
//! take no user-space locks. LinuxU uses libc only for process start-up (`_start` → `main`).

use core::arch::asm;

/// System call numbers (arch/x86/entry/syscalls/syscall_64.tbl).
pub mod nr {
    pub const READ: usize = 0;
    pub const WRITE: usize = 1;
    pub const CLOSE: usize = 3;
    pub const MMAP: usize = 9;
    pub const MUNMAP: usize = 11;
    pub const LSEEK: usize = 8;
    pub const PREAD64: usize = 17;
    pub const PWRITE64: usize = 18;
    pub const FTRUNCATE: usize = 77;
    pub const GETDENTS64: usize = 217;
    pub const MKDIRAT: usize = 258;
    pub const NEWFSTATAT: usize = 262;
    pub const UNLINKAT: usize = 263;
    pub const RENAMEAT: usize = 264;
    pub const SYMLINKAT: usize = 266;
    pub const READLINKAT: usize = 267;
    pub const RT_SIGACTION: usize = 13;
    pub const RT_SIGPROCMASK: usize = 14;
    pub const RT_SIGRETURN: usize = 15;
    pub const GETPID: usize = 39;
    pub const PAUSE: usize = 34;
    pub const IOCTL: usize = 16;
    pub const FCNTL: usize = 72;
    pub const OPENAT: usize = 257;
    pub const RT_SIGSUSPEND: usize = 130;
    pub const SIGALTSTACK: usize = 131;
    pub const GETTID: usize = 186;
    pub const TIMER_CREATE: usize = 222;
    pub const TIMER_SETTIME: usize = 223;
    pub const CLOCK_GETTIME: usize = 228;
    pub const EXIT_GROUP: usize = 231;
    pub const RT_TGSIGQUEUEINFO: usize = 297;
    pub const GETRANDOM: usize = 318;
    pub const EXECVE: usize = 59;
}

/// Makes a system call with up to six arguments.
///
/// # Safety
/// The arguments must be valid for the call: pointers point to memory of the right size and
/// lifetime, and the call must not break invariants Rust relies on (unmapping live memory,
/// changing signal dispositions the kernel depends on).
#[inline]
pub unsafe fn syscall6(n: usize, a: [usize; 6]) -> isize {
    let ret: isize;
    // SAFETY: forwarded to the caller; the asm follows the kernel's calling convention.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") n as isize => ret,
            in("rdi") a[0], in("rsi") a[1], in("rdx") a[2], in("r10") a[3], in("r8") a[4], in("r9") a[5],
            lateout("rcx") _, lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// `write(fd, buf)`, retried until everything is written or an error occurs.
pub fn write_all(fd: i32, mut buf: &[u8]) {
    while !buf.is_empty() {
        // SAFETY: `buf` is a valid readable slice for the duration of the call.
        let n = unsafe {
            syscall6(
                nr::WRITE,
                [fd as usize, buf.as_ptr() as usize, buf.len(), 0, 0, 0],
            )
        };
        if n <= 0 {
            if n == -4 {
                continue; // EINTR: a signal arrived; try again.
            }
            return;
        }
        buf = &buf[n as usize..];
    }
}

/// `exit_group(code)`: ends the process.
pub fn exit_group(code: i32) -> ! {
    loop {
        // SAFETY: ends the process; nothing after it runs.
        unsafe { syscall6(nr::EXIT_GROUP, [code as usize, 0, 0, 0, 0, 0]) };
    }
}

/// `clock_gettime(CLOCK_MONOTONIC)` in nanoseconds: through the vDSO once found
/// ([`super::vdso`]), else the system call.
#[inline]
pub fn monotonic_ns() -> u64 {
    match super::vdso::monotonic_ns() {
        Some(ns) => ns,
        None => monotonic_ns_syscall(),
    }
}

fn monotonic_ns_syscall() -> u64 {
    let mut ts = [0i64; 2];
    // SAFETY: `ts` is a valid `struct timespec` (two longs) for the kernel to fill.
    unsafe {
        syscall6(
            nr::CLOCK_GETTIME,
            [CLOCK_MONOTONIC, ts.as_mut_ptr() as usize, 0, 0, 0, 0],
        )
    };
    ts[0] as u64 * 1_000_000_000 + ts[1] as u64
}

/// `CLOCK_MONOTONIC`.
pub const CLOCK_MONOTONIC: usize = 1;

/// The calling thread's id.
pub fn gettid() -> i32 {
    // SAFETY: no arguments, no side effects.
    unsafe { syscall6(nr::GETTID, [0; 6]) as i32 }
}

/// The process id.
pub fn getpid() -> i32 {
    // SAFETY: no arguments, no side effects.
    unsafe { syscall6(nr::GETPID, [0; 6]) as i32 }
}

/// Anonymous private memory at exactly `addr` (`MAP_FIXED_NOREPLACE`: fails rather than
/// replacing an existing mapping). Returns whether it worked.
pub fn map_fixed(addr: u64, len: u64, writable: bool) -> bool {
    const PROT_READ: usize = 1;
    const PROT_WRITE: usize = 2;
    const MAP_PRIVATE: usize = 0x02;
    const MAP_ANONYMOUS: usize = 0x20;
    const MAP_FIXED_NOREPLACE: usize = 0x10_0000;
    let prot = if writable { PROT_READ | PROT_WRITE } else { 0 };
    // SAFETY: NOREPLACE never touches an existing mapping, so no Rust object is affected.
    let r = unsafe {
        syscall6(
            nr::MMAP,
            [
                addr as usize,
                len as usize,
                prot,
                MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
                usize::MAX,
                0,
            ],
        )
    };
    r as u64 == addr
}

/// Fresh anonymous private read-write memory of `len` bytes wherever the kernel puts it;
/// `None` if it cannot.
pub fn map_anonymous(len: u64) -> Option<u64> {
    const PROT_READ: usize = 1;
    const PROT_WRITE: usize = 2;
    const MAP_PRIVATE: usize = 0x02;
    const MAP_ANONYMOUS: usize = 0x20;
    // SAFETY: without MAP_FIXED the kernel picks an unused range, so no Rust object is
    // affected.
    let r = unsafe {
        syscall6(
            nr::MMAP,
            [
                0,
                len as usize,
                PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS,
                usize::MAX,
                0,
            ],
        )
    };
    // Errors are -4095..=-1; user-space addresses are below 2^47, so positive.
    (r > 0).then_some(r as u64)
}

/// Unmaps `[addr, addr + len)`.
///
/// # Safety
/// Nothing uses the range any more.
pub unsafe fn unmap(addr: u64, len: u64) {
    // SAFETY: forwarded to the caller.
    unsafe { syscall6(nr::MUNMAP, [addr as usize, len as usize, 0, 0, 0, 0]) };
}

/// `read(fd, buf)`; `None` on error (including `EAGAIN`).
pub fn read(fd: i32, buf: &mut [u8]) -> Option<usize> {
    // SAFETY: `buf` is a valid writable slice for the duration of the call.
    let n = unsafe {
        syscall6(
            nr::READ,
            [fd as usize, buf.as_mut_ptr() as usize, buf.len(), 0, 0, 0],
        )
    };
    (n >= 0).then_some(n as usize)
}

/// `fcntl(fd, cmd, arg)`.
pub fn fcntl(fd: i32, cmd: usize, arg: usize) -> isize {
    // SAFETY: the commands used (F_GETFL, F_SETFL, F_SETSIG, F_SETOWN_EX with a valid pointer)
    // only change how the descriptor signals.
    unsafe { syscall6(nr::FCNTL, [fd as usize, cmd, arg, 0, 0, 0]) }
}

/// `read(fd, buf)` returning the kernel's answer: bytes read, or `-errno`.
pub fn read_raw(fd: i32, buf: &mut [u8]) -> isize {
    // SAFETY: `buf` is a valid writable slice for the duration of the call.
    unsafe {
        syscall6(
            nr::READ,
            [fd as usize, buf.as_mut_ptr() as usize, buf.len(), 0, 0, 0],
        )
    }
}

/// One `write(fd, buf)`: bytes written, or `-errno`.
pub fn write_raw(fd: i32, buf: &[u8]) -> isize {
    // SAFETY: `buf` is a valid readable slice for the duration of the call.
    unsafe {
        syscall6(
            nr::WRITE,
            [fd as usize, buf.as_ptr() as usize, buf.len(), 0, 0, 0],
        )
    }
}

/// `openat(AT_FDCWD, path, flags, mode)`: a descriptor, or `-errno`.
fn openat(path: &core::ffi::CStr, flags: usize, mode: usize) -> isize {
    const AT_FDCWD: isize = -100;
    // SAFETY: `path` is NUL-terminated and outlives the call.
    unsafe {
        syscall6(
            nr::OPENAT,
            [AT_FDCWD as usize, path.as_ptr() as usize, flags, mode, 0, 0],
        )
    }
}

const O_RDONLY: usize = 0;
const O_WRONLY: usize = 1;
const O_RDWR: usize = 2;
const O_CREAT: usize = 0o100;
const O_TRUNC: usize = 0o1000;
const O_NONBLOCK: usize = 0o4000;
const O_CLOEXEC: usize = 0o2000000;

/// `openat(AT_FDCWD, path, O_RDWR | O_NONBLOCK | O_CLOEXEC)`: a descriptor, or `-errno`.
pub fn open_rdwr_nonblock(path: &core::ffi::CStr) -> isize {
    openat(path, O_RDWR | O_NONBLOCK | O_CLOEXEC, 0)
}

/// `openat(AT_FDCWD, path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)`: a descriptor
/// of the file, created or emptied, or `-errno`.
pub fn create_file(path: &core::ffi::CStr) -> isize {
    openat(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
}

/// Reads up to `buf.len()` bytes of the file at `path` (one `read`, enough for sysfs
/// attributes): the count, or `-errno` (`-2`: no such file).
pub fn read_small_file(path: &core::ffi::CStr, buf: &mut [u8]) -> isize {
    let fd = openat(path, O_RDONLY | O_CLOEXEC, 0);
    if fd < 0 {
        return fd;
    }
    let n = read_raw(fd as i32, buf);
    // SAFETY: closing a descriptor this function opened and nothing else uses.
    unsafe { syscall6(nr::CLOSE, [fd as usize, 0, 0, 0, 0, 0]) };
    n
}

/// The whole file at `path` mapped read-only, private (`mmap` of the open file, closed
/// after): its address and length, or `-errno`. An empty file is `-EINVAL` (22): nothing
/// to map.
pub fn map_file_readonly(path: &core::ffi::CStr) -> Result<(u64, u64), isize> {
    const PROT_READ: usize = 1;
    const MAP_PRIVATE: usize = 0x02;
    const SEEK_END: usize = 2;
    let fd = openat(path, O_RDONLY | O_CLOEXEC, 0);
    if fd < 0 {
        return Err(fd);
    }
    // SAFETY: `fd` is the descriptor just opened; lseek only moves its offset.
    let len = unsafe { syscall6(nr::LSEEK, [fd as usize, 0, SEEK_END, 0, 0, 0]) };
    let mapped = if len <= 0 {
        Err(if len == 0 { -22 } else { len })
    } else {
        // SAFETY: without MAP_FIXED the kernel picks an unused range, so no Rust object is
        // affected; the mapping is read-only and outlives the descriptor.
        let at = unsafe {
            syscall6(
                nr::MMAP,
                [0, len as usize, PROT_READ, MAP_PRIVATE, fd as usize, 0],
            )
        };
        if at > 0 {
            Ok((at as u64, len as u64))
        } else {
            Err(at)
        }
    };
    // SAFETY: closing a descriptor this function opened and nothing else uses.
    unsafe { syscall6(nr::CLOSE, [fd as usize, 0, 0, 0, 0, 0]) };
    mapped
}

/// Host files through descriptors: the `*at` calls relative to a directory descriptor, with
/// names copied into a NUL-terminated buffer here (a name with NUL, or over 4095 bytes, is
/// `-EINVAL`/`-ENAMETOOLONG` without a call). Every call returns its result or `-errno`, and
/// is repeated when a signal interrupted it (`EINTR`): Rhea's interrupts are signals.
pub mod files {
    use super::{nr, syscall6};

    /// `EINTR`.
    const EINTR: isize = -4;

    /// `O_*` flags.
    pub const O_RDONLY: usize = 0;
    /// Read and write.
    pub const O_RDWR: usize = 2;
    /// Create if missing.
    pub const O_CREAT: usize = 0o100;
    /// With `O_CREAT`: fail if it exists.
    pub const O_EXCL: usize = 0o200;
    /// Must be a directory.
    pub const O_DIRECTORY: usize = 0o200000;
    /// Do not follow a link as the last component.
    pub const O_NOFOLLOW: usize = 0o400000;
    /// Closed on exec.
    pub const O_CLOEXEC: usize = 0o2000000;
    /// A handle for `*at` calls and `fstat` only.
    pub const O_PATH: usize = 0o10000000;
    /// `unlinkat`: remove a directory.
    pub const AT_REMOVEDIR: usize = 0x200;
    /// `fstatat`: the descriptor itself.
    pub const AT_EMPTY_PATH: usize = 0x1000;
    /// `fstatat`: do not follow a link.
    pub const AT_SYMLINK_NOFOLLOW: usize = 0x100;

    fn retry(mut f: impl FnMut() -> isize) -> isize {
        loop {
            let r = f();
            if r != EINTR {
                return r;
            }
        }
    }

    /// `name` NUL-terminated in `buf`.
    fn c_name<'b>(name: &str, buf: &'b mut [u8; 4096]) -> Result<&'b [u8], isize> {
        if name.contains('\0') {
            return Err(-22);
        }
        if name.len() >= buf.len() {
            return Err(-36);
        }
        buf[..name.len()].copy_from_slice(name.as_bytes());
        buf[name.len()] = 0;
        Ok(&buf[..=name.len()])
    }

    /// `openat(dir, name, flags, mode)`.
    pub fn open_at(dir: i32, name: &str, flags: usize, mode: u32) -> isize {
        let mut b = [0u8; 4096];
        let n = match c_name(name, &mut b) {
            Ok(n) => n.as_ptr() as usize,
            Err(e) => return e,
        };
        // SAFETY: `n` is a NUL-terminated name alive for the call.
        retry(|| unsafe { syscall6(nr::OPENAT, [dir as usize, n, flags, mode as usize, 0, 0]) })
    }

    /// `close(fd)`.
    pub fn close(fd: i32) {
        // SAFETY: the caller owns `fd` and gives it up; no memory is involved.
        unsafe { syscall6(nr::CLOSE, [fd as usize, 0, 0, 0, 0, 0]) };
    }

    /// `pread64(fd, buf, offset)`.
    pub fn pread(fd: i32, buf: &mut [u8], offset: u64) -> isize {
        // SAFETY: `buf` is writable for its length for the call.
        retry(|| unsafe {
            syscall6(
                nr::PREAD64,
                [
                    fd as usize,
                    buf.as_mut_ptr() as usize,
                    buf.len(),
                    offset as usize,
                    0,
                    0,
                ],
            )
        })
    }

    /// `pwrite64(fd, buf, offset)`.
    pub fn pwrite(fd: i32, buf: &[u8], offset: u64) -> isize {
        // SAFETY: `buf` is readable for its length for the call.
        retry(|| unsafe {
            syscall6(
                nr::PWRITE64,
                [
                    fd as usize,
                    buf.as_ptr() as usize,
                    buf.len(),
                    offset as usize,
                    0,
                    0,
                ],
            )
        })
    }

    /// `ftruncate(fd, len)`.
    pub fn ftruncate(fd: i32, len: u64) -> isize {
        // SAFETY: no memory is involved.
        retry(|| unsafe { syscall6(nr::FTRUNCATE, [fd as usize, len as usize, 0, 0, 0, 0]) })
    }

    /// `lseek(fd, 0, SEEK_SET)`: back to a directory's first entry.
    pub fn rewind(fd: i32) -> isize {
        // SAFETY: no memory is involved.
        unsafe { syscall6(nr::LSEEK, [fd as usize, 0, 0, 0, 0, 0]) }
    }

    /// `getdents64(fd, buf)`: bytes of `linux_dirent64` records, 0 at the end.
    pub fn getdents(fd: i32, buf: &mut [u8]) -> isize {
        // SAFETY: `buf` is writable for its length for the call.
        retry(|| unsafe {
            syscall6(
                nr::GETDENTS64,
                [fd as usize, buf.as_mut_ptr() as usize, buf.len(), 0, 0, 0],
            )
        })
    }

    /// `newfstatat(dir, name, flags)` into `st` (x86_64's 144-byte `struct stat`).
    pub fn stat_at(dir: i32, name: &str, flags: usize, st: &mut [u8; 144]) -> isize {
        let mut b = [0u8; 4096];
        let n = match c_name(name, &mut b) {
            Ok(n) => n.as_ptr() as usize,
            Err(e) => return e,
        };
        // SAFETY: `n` is a NUL-terminated name and `st` 144 writable bytes, for the call.
        retry(|| unsafe {
            syscall6(
                nr::NEWFSTATAT,
                [dir as usize, n, st.as_mut_ptr() as usize, flags, 0, 0],
            )
        })
    }

    /// `mkdirat(dir, name, mode)`.
    pub fn mkdir_at(dir: i32, name: &str, mode: u32) -> isize {
        let mut b = [0u8; 4096];
        let n = match c_name(name, &mut b) {
            Ok(n) => n.as_ptr() as usize,
            Err(e) => return e,
        };
        // SAFETY: `n` is a NUL-terminated name alive for the call.
        retry(|| unsafe { syscall6(nr::MKDIRAT, [dir as usize, n, mode as usize, 0, 0, 0]) })
    }

    /// `unlinkat(dir, name, flags)`.
    pub fn unlink_at(dir: i32, name: &str, flags: usize) -> isize {
        let mut b = [0u8; 4096];
        let n = match c_name(name, &mut b) {
            Ok(n) => n.as_ptr() as usize,
            Err(e) => return e,
        };
        // SAFETY: `n` is a NUL-terminated name alive for the call.
        retry(|| unsafe { syscall6(nr::UNLINKAT, [dir as usize, n, flags, 0, 0, 0]) })
    }

    /// `renameat(from_dir, from, to_dir, to)`.
    pub fn rename_at(from_dir: i32, from: &str, to_dir: i32, to: &str) -> isize {
        let (mut b1, mut b2) = ([0u8; 4096], [0u8; 4096]);
        let (f, t) = match (c_name(from, &mut b1), c_name(to, &mut b2)) {
            (Ok(f), Ok(t)) => (f.as_ptr() as usize, t.as_ptr() as usize),
            (Err(e), _) | (_, Err(e)) => return e,
        };
        // SAFETY: both names are NUL-terminated and alive for the call.
        retry(|| unsafe {
            syscall6(
                nr::RENAMEAT,
                [from_dir as usize, f, to_dir as usize, t, 0, 0],
            )
        })
    }

    /// `symlinkat(target, dir, name)`.
    pub fn symlink_at(target: &str, dir: i32, name: &str) -> isize {
        let (mut b1, mut b2) = ([0u8; 4096], [0u8; 4096]);
        let (t, n) = match (c_name(target, &mut b1), c_name(name, &mut b2)) {
            (Ok(t), Ok(n)) => (t.as_ptr() as usize, n.as_ptr() as usize),
            (Err(e), _) | (_, Err(e)) => return e,
        };
        // SAFETY: both names are NUL-terminated and alive for the call.
        retry(|| unsafe { syscall6(nr::SYMLINKAT, [t, dir as usize, n, 0, 0, 0]) })
    }

    /// `readlinkat(fd, "", buf)`: the target of the link `fd` (an `O_PATH` handle) names.
    pub fn read_link(fd: i32, buf: &mut [u8]) -> isize {
        // SAFETY: the empty name is NUL-terminated; `buf` is writable for its length.
        retry(|| unsafe {
            syscall6(
                nr::READLINKAT,
                [
                    fd as usize,
                    c"".as_ptr() as usize,
                    buf.as_mut_ptr() as usize,
                    buf.len(),
                    0,
                    0,
                ],
            )
        })
    }
}

/// `ioctl(fd, request, arg)`.
///
/// # Safety
/// `arg` is what `request` expects (for pointer arguments: valid for the kernel to read and
/// write the request's structure for the duration of the call).
pub unsafe fn ioctl(fd: i32, request: usize, arg: usize) -> isize {
    // SAFETY: forwarded to the caller.
    unsafe { syscall6(nr::IOCTL, [fd as usize, request, arg, 0, 0, 0]) }
}

/// Fills `buf` from the host kernel's CSPRNG (`getrandom(buf, len, 0)`), retrying after a
/// signal (this process's interrupts) cut a call short; `false` if the host refused.
pub fn getrandom(buf: &mut [u8]) -> bool {
    const EINTR: isize = 4;
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        // SAFETY: `rest` is a valid writable slice for the duration of the call.
        let n = unsafe {
            syscall6(
                nr::GETRANDOM,
                [rest.as_mut_ptr() as usize, rest.len(), 0, 0, 0, 0],
            )
        };
        match n {
            n if n > 0 => done += n as usize,
            n if n == -EINTR => {}
            _ => return false,
        }
    }
    true
}

/// Runs this program again from the start, as a new boot: `execve("/proc/self/exe")` with
/// the arguments and environment it was started with. The interrupt signals are blocked
/// first, as the new image expects at entry (a SIGIO before its handler would end it; the
/// mask survives `execve`). Returns only on failure, with `-errno`.
///
/// # Safety
/// `argv` is the process's own: `argc` pointers, a null, then the environment's pointers
/// and a null (the layout libc's start-up passed to `main`), all still valid.
pub unsafe fn restart_process(argc: usize, argv: *const *const u8) -> isize {
    super::signals::block();
    // SAFETY: per the caller, the environment starts after argv's terminating null.
    let envp = unsafe { argv.add(argc + 1) };
    // SAFETY: a NUL-terminated path; argv and envp are null-terminated arrays of C strings.
    unsafe {
        syscall6(
            nr::EXECVE,
            [
                c"/proc/self/exe".as_ptr() as usize,
                argv as usize,
                envp as usize,
                0,
                0,
                0,
            ],
        )
    }
}
