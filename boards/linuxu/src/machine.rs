//! The LinuxU machine: entry, console, memory, clock, timer and the signal "interrupt
//! controller".
#![allow(
    unsafe_code,
    reason = "process entry, argument vectors and system calls; each use has a SAFETY note"
)]

use core::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use rhea_arch::paging::KernelImage;
use rhea_arch::signals;
use rhea_arch::sys::{self, nr, syscall6};
use rhea_hal::cmdline::{Cmdline, keys};
use rhea_hal::{
    Clock, Console, ExitStatus, Instant, InterruptController, IrqLine, OneShotTimer, PAGE_SIZE,
    PhysAddr, Platform, RouteError, TimeAndIrq, Trigger,
};
use rhea_mm::{MemoryMap, RegionKind};

unsafe extern "C" {
    /// The kernel's entry (runtime/src/boot.rs).
    fn rhea_entry(boot_arg: usize) -> !;
}

// libc, for process start-up only (`_start` → `__libc_start_main` → `main`); a `no_std`
// binary does not link it by default.
#[link(name = "c")]
unsafe extern "C" {}

/// The precompiled `core` for this target carries unwind tables that name the personality
/// routine; with `panic = "abort"` nothing ever unwinds, so it is never called.
#[unsafe(no_mangle)]
extern "C" fn rust_eh_personality() {}

/// Likewise named by the precompiled `alloc`'s landing pads, which `panic = "abort"` never
/// reaches.
#[unsafe(no_mangle)]
extern "C" fn _Unwind_Resume() -> ! {
    sys::exit_group(134)
}

static ARGC: AtomicI32 = AtomicI32::new(0);
static ARGV: AtomicU64 = AtomicU64::new(0);
static BOOT_CYCLES: AtomicU64 = AtomicU64::new(0);
static BOOT_SP: AtomicU64 = AtomicU64::new(0);

/// The process entry, called by libc's start-up code.
#[unsafe(no_mangle)]
#[expect(
    clippy::not_unsafe_ptr_arg_deref,
    reason = "only libc's start-up calls it, with the process's own argc/argv"
)]
pub extern "C" fn main(argc: i32, argv: *const *const u8) -> i32 {
    BOOT_CYCLES.store(rhea_arch::read_cycle_counter(), Ordering::Relaxed);
    // This thread is vCPU 0: per-CPU data through GS before any kernel code asks.
    rhea_arch::vcpu::become_cpu(0);
    // Interrupts start disabled, as on hardware; the interrupt signals are also blocked until
    // their handlers exist (a SIGIO's default action would end the process).
    signals::hold_until_handlers();
    // The clock through the vDSO (no system call per read), if the process has one.
    // SAFETY: `argc`/`argv` are the process's own, as libc's start-up passed them.
    unsafe { rhea_arch::vdso::init(argc.max(0) as usize, argv) };
    let marker = 0u8;
    BOOT_SP.store(core::ptr::addr_of!(marker) as u64, Ordering::Relaxed);
    ARGC.store(argc, Ordering::Relaxed);
    ARGV.store(argv as u64, Ordering::Relaxed);
    // SAFETY: the kernel's entry takes over the process for good.
    unsafe { rhea_entry(0) }
}

/// Standard output as the console.
#[derive(Debug)]
pub struct LinuxU;

/// The board's services.
pub static PLATFORM: LinuxU = LinuxU;

impl Console for LinuxU {
    fn write_bytes(&self, bytes: &[u8]) {
        sys::write_all(1, bytes);
    }
}

/// The trace dump's file (`rhea.trace_to=file`), in the working directory.
struct TraceFile(i32);

impl Console for TraceFile {
    fn write_bytes(&self, bytes: &[u8]) {
        sys::write_all(self.0, bytes);
    }
}

/// Its descriptor, once created.
static TRACE_FILE: rhea_sync::Once<Option<TraceFile>> = rhea_sync::Once::new();

/// The trace file's name.
const TRACE_FILE_NAME: &core::ffi::CStr = c"rhea-trace.txt";

impl Platform for LinuxU {
    fn name(&self) -> &'static str {
        "linuxu"
    }

    fn trace_file(&self) -> Option<(&dyn Console, &'static str)> {
        let file = TRACE_FILE.call_once(|| {
            let fd = sys::create_file(TRACE_FILE_NAME);
            (fd >= 0).then_some(TraceFile(fd as i32))
        });
        let name = TRACE_FILE_NAME.to_str().unwrap_or("rhea-trace.txt");
        file.as_ref().map(|f| (f as &dyn Console, name))
    }

    fn console(&self) -> &dyn Console {
        self
    }

    fn exit(&self, status: ExitStatus) -> ! {
        sys::exit_group(match status {
            ExitStatus::Success => 0,
            ExitStatus::Failure => 1,
        })
    }

    /// The process runs its program again from the start (`execve`, same arguments): every
    /// vCPU thread, mapping and timer goes; descriptors opened close-on-exec (the tap, the
    /// trace file) are released for the new boot to open.
    fn reboot(&self) -> &'static str {
        let argc = ARGC.load(Ordering::Relaxed).max(0) as usize;
        let argv = ARGV.load(Ordering::Relaxed) as *const *const u8;
        if argv.is_null() {
            return "the process's arguments are unknown";
        }
        // SAFETY: `argc`/`argv` are the process's own, stored by `main` from libc's start-up,
        // which keeps them (and the environment after them) for the life of the process.
        unsafe { sys::restart_process(argc, argv) };
        "execve of /proc/self/exe failed"
    }

    /// `rhea.cpus=N` (default 1); the simulation mode is single-vCPU (its determinism rests
    /// on one thread of execution). Called after boot checked the command line.
    fn cpu_count(&self) -> usize {
        let line = Cmdline::new(cmdline_str());
        let n = line.number(&keys::CPUS).ok().flatten().unwrap_or(1);
        if line.flag(&keys::SIM) == Ok(true) {
            if n > 1 {
                use core::fmt::Write;
                let _ = writeln!(
                    ConsoleWriter,
                    "rhea: smp: the simulation mode runs one vCPU; rhea.cpus={n} applies in real time only"
                );
            }
            return 1;
        }
        // `keys::CPUS` allows at most MAX_VCPUS (64), so nothing is cut here.
        (n as usize).min(rhea_arch::vcpu::MAX_VCPUS)
    }

    fn start_secondary_cpus(
        &self,
        entry: extern "C" fn(usize) -> !,
        _stacks: &dyn rhea_hal::StackSource,
    ) -> usize {
        crate::smp::start(self.cpu_count(), entry)
    }
}

pub use rhea_hal::BootInfo;

/// Where the RAM mapping goes: low enough for code that keeps early structures below 4 GiB,
/// clear of the executable (at 4 MiB) and its heap.
const RAM_BASE: u64 = 0x2000_0000;
const DEFAULT_RAM_MIB: u64 = 64;

/// The command line: the arguments after the program name joined by single spaces, in a
/// mapping of exactly their size (any length Linux passes is kept whole; nothing is cut).
/// Written once by `early_init` before anything reads it.
static CMDLINE_ADDR: AtomicU64 = AtomicU64::new(0);
static CMDLINE_LEN: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// The command line `early_init` recorded (empty before).
pub(crate) fn cmdline_str() -> &'static str {
    let (addr, n) = (
        CMDLINE_ADDR.load(Ordering::Acquire),
        CMDLINE_LEN.load(Ordering::Acquire),
    );
    if addr == 0 || n == 0 {
        return "";
    }
    // SAFETY: `cmdline` filled these `n` bytes of a mapping that lives for the process and
    // published them (Release) before storing the address; nothing writes them afterwards.
    let bytes = unsafe { core::slice::from_raw_parts(addr as *const u8, n) };
    core::str::from_utf8(bytes).unwrap_or("")
}

/// The arguments, one by one.
fn argv() -> impl Iterator<Item = &'static [u8]> {
    let argv = ARGV.load(Ordering::Relaxed) as *const *const u8;
    (1..ARGC.load(Ordering::Relaxed).max(1) as usize).map(move |i| {
        // SAFETY: `argv` has `argc` valid entries, NUL-terminated strings that live for the
        // process.
        unsafe { core::ffi::CStr::from_ptr(*argv.add(i) as *const core::ffi::c_char) }.to_bytes()
    })
}

fn cmdline() -> &'static str {
    let total = argv().map(|a| a.len() + 1).sum::<usize>();
    if total <= 1 {
        return "";
    }
    let Some(addr) = sys::map_anonymous(total as u64) else {
        fatal("rhea: cannot map memory for the command line");
    };
    // SAFETY: a fresh private mapping of `total` bytes that nothing else refers to yet.
    let buf = unsafe { core::slice::from_raw_parts_mut(addr as *mut u8, total) };
    let mut n = 0;
    for arg in argv() {
        if n > 0 {
            buf[n] = b' ';
            n += 1;
        }
        buf[n..n + arg.len()].copy_from_slice(arg);
        n += arg.len();
    }
    if core::str::from_utf8(&buf[..n]).is_err() {
        fatal("rhea: the command line (the arguments) is not UTF-8");
    }
    CMDLINE_LEN.store(n, Ordering::Release);
    CMDLINE_ADDR.store(addr, Ordering::Release);
    cmdline_str()
}

/// Start-up: fault signal handlers, the command line, the RAM mapping.
pub(crate) fn early_init(_arg: usize) -> BootInfo {
    rhea_arch::init_boot_cpu();
    let cmdline = cmdline();
    // A bad `rhea.mem_mib` maps the default for the moment only: the runtime checks the whole
    // command line right after this returns and ends the run before the RAM is used.
    let mib = Cmdline::new(cmdline)
        .number(&keys::MEM_MIB)
        .ok()
        .flatten()
        .unwrap_or(DEFAULT_RAM_MIB);
    let len = mib << 20;
    if !sys::map_fixed(RAM_BASE, len, true) {
        panic!("cannot map {mib} MiB of RAM at {RAM_BASE:#x} (something else is mapped there)");
    }
    let mut map = MemoryMap::new();
    map.push(RAM_BASE, len, RegionKind::Usable)
        .expect("a single region is valid");
    BootInfo {
        memory_map: map.finish().expect("the region holds usable RAM"),
        cmdline,
        image: KernelImage::new(0..0, 0..0, 0..0),
        reserved: [(PhysAddr(0), 0); 3],
        boot_cycles: BOOT_CYCLES.load(Ordering::Relaxed),
        initrd: initrd(cmdline),
    }
}

/// The host file `rhea.initrd` names, mapped read-only for the life of the process (outside
/// the RAM region). A file that cannot be opened or mapped ends the boot, naming it and the
/// error: the operator asked for it. (What it holds is checked when `rhea::fs` mounts it.)
fn initrd(cmdline: &str) -> Option<(PhysAddr, u64)> {
    // A bad value is reported by the runtime's check of the whole line, before it is used.
    let path = Cmdline::new(cmdline).host_path(&keys::INITRD).ok()??;
    let mut c = [0u8; 4097];
    let n = path.len().min(4096);
    c[..n].copy_from_slice(&path.as_bytes()[..n]);
    let cpath = core::ffi::CStr::from_bytes_until_nul(&c).expect("NUL-terminated above");
    match sys::map_file_readonly(cpath) {
        Ok((at, len)) => Some((PhysAddr(at), len)),
        Err(errno) => panic!(
            "rhea.initrd={path}: cannot map the file (errno {}{})",
            -errno,
            match -errno {
                2 => ": no such file",
                13 => ": permission denied",
                19 | 21 => ": not a regular file",
                22 => ": empty",
                _ => "",
            }
        ),
    }
}

/// The boot (later idle) context's stack: the process's main stack around `main`'s frame.
pub(crate) fn boot_stack() -> core::ops::Range<u64> {
    let sp = BOOT_SP.load(Ordering::Relaxed) & !(PAGE_SIZE - 1);
    sp.saturating_sub(1 << 20)..sp + 64 * 1024
}

/// The clock: `CLOCK_MONOTONIC` since start-up.
#[derive(Debug)]
struct Monotonic {
    origin_ns: AtomicU64,
}

impl Clock for Monotonic {
    fn now(&self) -> Instant {
        Instant::from_nanos(
            sys::monotonic_ns().saturating_sub(self.origin_ns.load(Ordering::Relaxed)),
        )
    }
}

static CLOCK: Monotonic = Monotonic {
    origin_ns: AtomicU64::new(0),
};

/// Each vCPU's POSIX timer (one per vCPU thread, delivering SIGALRM to that thread).
#[derive(Debug)]
struct PosixTimer {
    ids: [AtomicI32; rhea_arch::vcpu::MAX_VCPUS],
}

static TIMER: PosixTimer = PosixTimer {
    ids: [const { AtomicI32::new(-1) }; rhea_arch::vcpu::MAX_VCPUS],
};

const TIMER_ABSTIME: usize = 1;
const SIGEV_THREAD_ID: i32 = 4;

impl PosixTimer {
    fn set(&self, absolute_ns: u64) {
        let spec: [i64; 4] = [
            0,
            0,
            (absolute_ns / 1_000_000_000) as i64,
            (absolute_ns % 1_000_000_000) as i64,
        ];
        let id = self.ids[rhea_arch::vcpu::current()].load(Ordering::Relaxed);
        // SAFETY: a valid `struct itimerspec`; the timer id is this vCPU's.
        unsafe {
            syscall6(
                nr::TIMER_SETTIME,
                [id as usize, TIMER_ABSTIME, spec.as_ptr() as usize, 0, 0, 0],
            )
        };
    }
}

/// Creates the calling vCPU thread's timer, which signals that thread.
pub(crate) fn create_timer(cpu: usize) -> Result<(), InitError> {
    let mut sigev = [0u8; 64];
    sigev[8..12].copy_from_slice(&(signals::TIMER_SIGNAL as i32).to_le_bytes());
    sigev[12..16].copy_from_slice(&SIGEV_THREAD_ID.to_le_bytes());
    sigev[16..20].copy_from_slice(&sys::gettid().to_le_bytes());
    let mut id: i32 = -1;
    // SAFETY: valid `struct sigevent` and `timer_t` pointers.
    let r = unsafe {
        syscall6(
            nr::TIMER_CREATE,
            [
                sys::CLOCK_MONOTONIC,
                sigev.as_ptr() as usize,
                &mut id as *mut i32 as usize,
                0,
                0,
                0,
            ],
        )
    };
    if r < 0 {
        return Err(InitError::Timer(r));
    }
    TIMER.ids[cpu].store(id, Ordering::Relaxed);
    Ok(())
}

impl OneShotTimer for PosixTimer {
    fn arm(&self, deadline: Instant) {
        // An absolute time already passed fires at once; 0 would disarm, so at least 1 ns.
        self.set(
            CLOCK
                .origin_ns
                .load(Ordering::Relaxed)
                .saturating_add(deadline.as_nanos())
                .max(1),
        );
    }

    fn disarm(&self) {
        self.set(0);
    }
}

/// Signals as an interrupt controller: lines are file descriptors.
#[derive(Debug)]
struct Signals;

static CONTROLLER: Signals = Signals;

const F_GETFL: usize = 3;
const F_SETFL: usize = 4;
const F_SETSIG: usize = 10;
const F_SETOWN_EX: usize = 15;
const O_ASYNC: usize = 0x2000;

impl InterruptController for Signals {
    fn end_of_interrupt(&self, _vector: u8) {}

    fn route(&self, line: IrqLine, vector: u8, _trigger: Trigger) -> Result<(), RouteError> {
        if vector < 32 {
            return Err(RouteError::BadVector(vector));
        }
        let fd = line.0 as i32;
        if !signals::bind_fd(fd, vector) {
            return Err(RouteError::NoSuchLine(line.0));
        }
        // Deliver the descriptor's readiness to this vCPU thread, with `si_fd` filled.
        let owner: [i32; 2] = [0 /* F_OWNER_TID */, sys::gettid()];
        if sys::fcntl(fd, F_SETOWN_EX, owner.as_ptr() as usize) < 0
            || sys::fcntl(fd, F_SETSIG, signals::IO_SIGNAL) < 0
        {
            return Err(RouteError::NoSuchLine(line.0));
        }
        Ok(())
    }

    fn unmask(&self, line: IrqLine) -> Result<(), RouteError> {
        let fd = line.0 as i32;
        let flags = sys::fcntl(fd, F_GETFL, 0);
        if flags < 0 || sys::fcntl(fd, F_SETFL, flags as usize | O_ASYNC) < 0 {
            return Err(RouteError::NoSuchLine(line.0));
        }
        Ok(())
    }

    fn mask(&self, line: IrqLine) -> Result<(), RouteError> {
        let fd = line.0 as i32;
        let flags = sys::fcntl(fd, F_GETFL, 0);
        if flags < 0 || sys::fcntl(fd, F_SETFL, flags as usize & !O_ASYNC) < 0 {
            return Err(RouteError::NoSuchLine(line.0));
        }
        Ok(())
    }

    fn raise_self(&self, vector: u8) {
        signals::raise_self(vector);
    }

    fn send_ipi(&self, cpu: rhea_hal::CpuId, vector: u8) {
        rhea_arch::vcpu::send_ipi(cpu.0 as usize, vector);
    }
}

/// The timer's vector (the same number as on the x86 boards).
const TIMER_VECTOR: u8 = 0xef;

/// Why interrupt and time bring-up failed.
#[derive(Debug)]
pub enum InitError {
    /// `timer_create` failed (errno).
    Timer(isize),
}

impl core::fmt::Display for InitError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Timer(e) => write!(f, "timer_create failed (errno {})", -e),
        }
    }
}

/// Ends the process with a message (no unwinding, no kernel state needed).
pub(crate) fn fatal(msg: &str) -> ! {
    sys::write_all(1, msg.as_bytes());
    sys::write_all(1, b"\n");
    sys::exit_group(1)
}

/// Clock, per-vCPU timer and signal handlers; virtual ones in simulation mode.
pub(crate) fn init_interrupts_and_time(
    boot: &BootInfo,
    _cross_check: bool,
    _map_mmio: &dyn Fn(u64, u64) -> bool,
) -> Result<TimeAndIrq, InitError> {
    // Boot checked the command line before this stage: the reads cannot fail.
    let line = Cmdline::new(boot.cmdline);
    if line.flag(&keys::SIM) == Ok(true) {
        let seed = line.number(&keys::SEED).ok().flatten().unwrap_or(0);
        crate::sim::SIM.start(seed, TIMER_VECTOR);
        signals::init_interrupts(TIMER_VECTOR);
        use core::fmt::Write;
        let _ = writeln!(
            ConsoleWriter,
            "rhea: time: simulated (virtual clock, seed {seed}, timer jitter up to {} us)",
            crate::sim::JITTER_NS / 1000
        );
        // Cycle figures stay real; a nominal rate keeps conversions defined.
        return Ok(TimeAndIrq {
            clock: &crate::sim::SIM,
            timer: &crate::sim::SIM,
            controller: &CONTROLLER,
            timer_vector: TIMER_VECTOR,
            cycles_per_second: 1_000_000_000,
        });
    }
    // The clock counts from start-up; the cycle counter's rate is measured against it.
    let start_ns = sys::monotonic_ns();
    let start_cycles = rhea_arch::read_cycle_counter();
    let since_main = start_cycles.saturating_sub(BOOT_CYCLES.load(Ordering::Relaxed));
    while sys::monotonic_ns() - start_ns < 5_000_000 {
        core::hint::spin_loop();
    }
    let (end_ns, end_cycles) = (sys::monotonic_ns(), rhea_arch::read_cycle_counter());
    let hz = (u128::from(end_cycles - start_cycles) * 1_000_000_000
        / u128::from((end_ns - start_ns).max(1))) as u64;
    // Instants count from `main`, like the boards' boot timestamps.
    let since_main_ns = (u128::from(since_main) * 1_000_000_000 / u128::from(hz.max(1))) as u64;
    CLOCK
        .origin_ns
        .store(start_ns.saturating_sub(since_main_ns), Ordering::Relaxed);

    create_timer(0)?;
    signals::init_interrupts(TIMER_VECTOR);

    use core::fmt::Write;
    let mut w = ConsoleWriter;
    let _ = writeln!(
        w,
        "rhea: time: CLOCK_MONOTONIC ({}); cycle counter {} kHz (measured over 5 ms)",
        if rhea_arch::vdso::is_used() {
            "vDSO"
        } else {
            "system call: no vDSO found"
        },
        hz / 1000
    );
    let _ = writeln!(
        w,
        "rhea: irq: signals (SIGALRM timer from a per-vCPU POSIX timer, SIGIO devices, signal 40 raised vectors and IPIs)"
    );
    Ok(TimeAndIrq {
        clock: &CLOCK,
        timer: &TIMER,
        controller: &CONTROLLER,
        timer_vector: TIMER_VECTOR,
        cycles_per_second: hz,
    })
}

pub(crate) struct ConsoleWriter;

impl core::fmt::Write for ConsoleWriter {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        sys::write_all(1, s.as_bytes());
        Ok(())
    }
}

/// Console input is standard input.
pub(crate) fn console_rx_line() -> IrqLine {
    IrqLine(0)
}

/// Nothing beyond routing and unmasking the descriptor.
pub(crate) fn console_rx_enable() {}

static CONSOLE_READERS: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// How many threads wait for console input (the runtime says so as they come and go).
pub(crate) fn console_rx_readers(readers: usize) {
    CONSOLE_READERS.store(readers, Ordering::Relaxed);
}

pub(crate) fn console_readers() -> usize {
    CONSOLE_READERS.load(Ordering::Relaxed)
}

/// What standard input can still bring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stdin {
    /// Bytes are ready to read.
    Ready,
    /// Open, nothing yet: bytes may come (a terminal, a pipe whose writer is open).
    Open,
    /// At end of file, hung up, closed or in error: nothing will ever come.
    Ended,
}

/// Asks `poll` (without waiting) and `FIONREAD` what standard input can still bring.
pub(crate) fn stdin_state() -> Stdin {
    const POLL: usize = 7;
    const POLLIN: i16 = 0x1;
    // struct pollfd { int fd; short events; short revents; }
    let mut pfd = [0u8; 8];
    pfd[4..6].copy_from_slice(&POLLIN.to_le_bytes());
    // SAFETY: one valid `struct pollfd`; timeout 0 never blocks.
    let r = unsafe { syscall6(POLL, [pfd.as_mut_ptr() as usize, 1, 0, 0, 0, 0]) };
    if r < 0 {
        return Stdin::Ended;
    }
    let revents = i16::from_le_bytes([pfd[6], pfd[7]]);
    if revents == 0 {
        return Stdin::Open;
    }
    // POLLIN with no bytes (or with HUP, ERR, NVAL): end of file (/dev/null, a regular file,
    // a pipe whose writer closed).
    let mut avail: i32 = 0;
    // SAFETY: FIONREAD writes one int.
    let r = unsafe {
        syscall6(
            16, /* ioctl */
            [0, FIONREAD, &mut avail as *mut i32 as usize, 0, 0, 0],
        )
    };
    if revents & POLLIN != 0 && r >= 0 && avail > 0 {
        Stdin::Ready
    } else {
        Stdin::Ended
    }
}

const FIONREAD: usize = 0x541b;

/// Reads what standard input has ready, at most `max` bytes (never blocks: only the bytes
/// `FIONREAD` reports).
pub(crate) fn console_rx_drain(max: usize, mut sink: impl FnMut(u8)) -> (usize, usize) {
    let mut avail: i32 = 0;
    // SAFETY: FIONREAD writes one int.
    let r = unsafe {
        syscall6(
            16, /* ioctl */
            [0, FIONREAD, &mut avail as *mut i32 as usize, 0, 0, 0],
        )
    };
    if r < 0 || avail <= 0 {
        return (0, 0);
    }
    let mut buf = [0u8; 256];
    let want = (avail as usize).min(buf.len()).min(max);
    if want == 0 {
        return (0, 0);
    }
    match sys::read(0, &mut buf[..want]) {
        Some(n) => {
            for &b in &buf[..n] {
                sink(b);
            }
            (n, 0)
        }
        None => (0, 1),
    }
}

/// The board contract, over the functions above and `devices.rs`.
impl rhea_hal::Board for LinuxU {
    type Platform = Self;
    type InitError = InitError;

    fn platform() -> &'static Self {
        &PLATFORM
    }

    fn early_init(arg: usize) -> BootInfo {
        early_init(arg)
    }

    fn boot_stack() -> core::ops::Range<u64> {
        boot_stack()
    }

    fn init_interrupts_and_time(
        boot: &BootInfo,
        cross_check: bool,
        map_mmio: &dyn Fn(u64, u64) -> bool,
    ) -> Result<TimeAndIrq, InitError> {
        init_interrupts_and_time(boot, cross_check, map_mmio)
    }

    fn console_rx_line() -> IrqLine {
        console_rx_line()
    }

    fn console_rx_enable() {
        console_rx_enable();
    }

    fn console_rx_readers(readers: usize) {
        console_rx_readers(readers);
    }

    fn console_rx_drain(max: usize, sink: &mut dyn FnMut(u8)) -> (usize, usize) {
        console_rx_drain(max, sink)
    }
}

impl rhea_drivers::bus::BoardDevices for LinuxU {
    fn buses() -> alloc::vec::Vec<alloc::boxed::Box<dyn rhea_drivers::bus::Bus>> {
        crate::devices::buses()
    }

    fn net_drivers() -> alloc::vec::Vec<&'static dyn rhea_drivers::bus::Driver> {
        crate::devices::net_drivers()
    }

    fn file_systems() -> alloc::vec::Vec<Result<rhea_drivers::bus::Mount, alloc::string::String>> {
        host_file_system().into_iter().collect()
    }
}

/// `rhea.fs.host=HOST:GUEST`: the host directory to mount, or why it cannot be.
fn host_file_system() -> Option<Result<rhea_drivers::bus::Mount, alloc::string::String>> {
    use alloc::format;
    let value = Cmdline::new(cmdline()).host_path(&keys::FS_HOST).ok()??;
    let key = keys::FS_HOST.name;
    Some((|| {
        let Some((host, guest)) = value.rsplit_once(':') else {
            return Err(format!(
                "{key}={value}: expected HOST:GUEST, two absolute paths"
            ));
        };
        if !host.starts_with('/') || !guest.starts_with('/') {
            return Err(format!("{key}={value}: both paths must be absolute"));
        }
        let fs = crate::hostfs::HostFs::new(host).map_err(|e| {
            format!(
                "{key}={value}: cannot open the host directory {host} (errno {})",
                -e
            )
        })?;
        Ok((
            alloc::string::String::from(guest),
            alloc::sync::Arc::new(fs) as _,
        ))
    })())
}
