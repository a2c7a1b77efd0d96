//! Interrupts for the kernel, drivers and apps: the vector registry (`rhea-irq`), the
//! board's controller, dispatch from the trap path, and preemption on the way out.
//!
//! Interrupts **do not nest**: handlers run with interrupts disabled on the interrupted
//! thread's stack. The exit path signals end-of-interrupt *before* switching threads, so a
//! switch never leaves the controller waiting.
//!
//! Two kinds of handlers:
//! - **fast** ([`register_fast`]): run to completion in interrupt context; may give semaphores,
//!   set event flags, try-send on queues;
//! - **threaded** ([`register_threaded`]): a top half acknowledges the device in interrupt
//!   context and says whether there is work; the bottom half runs in its own kernel thread at
//!   the priority the driver chose, so an appliance decides whether its control loop or its
//!   device work comes first.

use crate::kthread;
use crate::selected::{A, Arch as _};
use crate::sync::Semaphore;
use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use rhea_hal::{InterruptController, IrqLine, RouteError, Trigger};
pub use rhea_irq::TopHalf;
use rhea_irq::{IrqHandler, IrqRegistry, IrqThreadWaker, Reschedule, Vector};
use rhea_sync::Once;

static REGISTRY: IrqRegistry = IrqRegistry::new();
static CONTROLLER: Once<&'static dyn InterruptController> = Once::new();

/// Why a registration failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum IrqError {
    /// The registry refused (vector taken, none free, reserved vector).
    Registry(rhea_irq::RegistryError),
    /// The controller refused the line.
    Route(RouteError),
    /// The bottom-half thread could not be started.
    Spawn,
    /// The event has no controller line (a vector or a polled event).
    NoLine,
}

impl core::fmt::Display for IrqError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Registry(e) => write!(f, "{e}"),
            Self::Route(e) => write!(f, "{e}"),
            Self::Spawn => f.write_str("cannot start the handler's thread"),
            Self::NoLine => f.write_str("the event has no interrupt line"),
        }
    }
}

/// Installs the controller and the interrupt entry; called once at boot, interrupts off.
pub(crate) fn init(controller: &'static dyn InterruptController, timer_vector: u8) {
    CONTROLLER.call_once(|| controller);
    REGISTRY
        .set_thread_waker(&WAKER)
        .expect("the waker is set once, here");
    TIMER_VECTOR.store(timer_vector, Ordering::Relaxed);
    let v = Vector::new(timer_vector).expect("the board's timer vector is a valid vector");
    REGISTRY
        .register(
            v,
            IrqHandler::Fast {
                handler: on_timer,
                ctx: 0,
            },
        )
        .expect("the timer vector is registered first");
    REGISTRY
        .register(
            rhea_irq::vectors::IPI_RESCHEDULE,
            IrqHandler::Fast {
                handler: on_reschedule,
                ctx: 0,
            },
        )
        .expect("the reschedule vector is free at boot");
    REGISTRY
        .register(
            rhea_irq::vectors::IPI_CALL,
            IrqHandler::Fast {
                handler: on_call,
                ctx: 0,
            },
        )
        .expect("the call vector is free at boot");
    A::set_interrupt_handler(on_interrupt);
}

fn on_reschedule(_: usize) -> Reschedule {
    kthread::request_resched();
    Reschedule::NotNeeded
}

fn on_call(_: usize) -> Reschedule {
    crate::smp::on_call_ipi();
    Reschedule::NotNeeded
}

/// Asks CPU `cpu` to reschedule (a reschedule IPI).
pub(crate) fn send_reschedule(cpu: usize) {
    crate::trace::ipi_sent(rhea_trace::IpiKind::Resched, cpu);
    send_ipi(cpu, rhea_irq::vectors::IPI_RESCHEDULE.get());
}

/// Raises `vector` on CPU `cpu`.
pub(crate) fn send_ipi(cpu: usize, vector: u8) {
    if let Some(c) = CONTROLLER.get() {
        c.send_ipi(rhea_hal::CpuId(cpu as u32), vector);
    }
}

fn on_timer(_: usize) -> Reschedule {
    crate::time::fired();
    kthread::on_timer();
    Reschedule::NotNeeded // kthread records the need itself
}

/// Per CPU, per vector: interrupts taken there (for reports: `rhea-shell`'s `irq`).
/// Allocated at boot for the CPUs there are (1 KiB each); a relaxed add on the CPU's own row.
static PER_CPU: Once<&'static [[AtomicU32; 256]]> = Once::new();
/// The timer's vector (for names in reports).
static TIMER_VECTOR: AtomicU8 = AtomicU8::new(0);
/// Names of threaded handlers' vectors (for reports), set when they register. Thread context
/// only (registration and reports), never from an interrupt: interrupts stay on; no other lock
/// is taken under it.
static NAMES: crate::sync::SpinLock<Vec<(u8, String)>, crate::sync::NothingOff> =
    crate::sync::SpinLock::new(Vec::new());

/// Allocates the per-CPU counts for `ncpus` CPUs (boot, after the heap).
pub(crate) fn init_counts(ncpus: usize) {
    let rows: Vec<[AtomicU32; 256]> = (0..ncpus)
        .map(|_| [const { AtomicU32::new(0) }; 256])
        .collect();
    PER_CPU.call_once(|| Box::leak(rows.into_boxed_slice()));
}

fn count_here(vector: u8) {
    if let Some(row) = PER_CPU.get().and_then(|t| t.get(kthread::cpu())) {
        row[usize::from(vector)].fetch_add(1, Ordering::Relaxed);
    }
}

/// Interrupts of `vector` CPU `cpu` has taken (wraps at 2^32).
pub fn count_on(cpu: usize, vector: u8) -> u64 {
    PER_CPU.get().and_then(|t| t.get(cpu)).map_or(0, |row| {
        u64::from(row[usize::from(vector)].load(Ordering::Relaxed))
    })
}

/// What `vector` is, for reports: `timer`, `ipi resched`, `ipi call`, a threaded handler's
/// name, and the controller line routed to it (`line 4`); empty when nothing is known.
pub fn describe(vector: u8) -> String {
    let mut what = String::new();
    if vector == TIMER_VECTOR.load(Ordering::Relaxed) {
        what.push_str("timer");
    } else if vector == rhea_irq::vectors::IPI_RESCHEDULE.get() {
        what.push_str("ipi resched");
    } else if vector == rhea_irq::vectors::IPI_CALL.get() {
        what.push_str("ipi call");
    } else if let Some((_, name)) = NAMES.lock().iter().find(|(v, _)| *v == vector) {
        what.push_str(name);
    }
    if let Some(line) = line_of(vector) {
        if !what.is_empty() {
            what.push(' ');
        }
        what.push_str(&alloc::format!("(line {})", line.0));
    }
    what
}

/// Every interrupt vector lands here (from the architecture's trap entry). The controller
/// may turn one CPU vector into several (Xen's event-channel upcall): each is dispatched, then
/// the CPU vector is completed, then the CPU may switch threads once.
fn on_interrupt(raw: u8) {
    kthread::enter_irq(raw);
    let mut resched = false;
    match CONTROLLER.get() {
        Some(c) => {
            c.demux(raw, &mut |vector| {
                kthread::dispatching(vector);
                count_here(vector);
                resched |= REGISTRY.dispatch(vector).reschedule() == Reschedule::Needed;
            });
            c.end_of_interrupt(raw);
        }
        None => {
            count_here(raw);
            resched = REGISTRY.dispatch(raw).reschedule() == Reschedule::Needed;
        }
    }
    let needed = kthread::leave_irq();
    if needed || resched {
        kthread::preempt();
    }
}

/// Makes `line` interrupt CPU `cpu` from now on, where the controller can move lines (Xen's
/// event channels: `EVTCHNOP_bind_vcpu`); an offline CPU or a fixed line is an error.
pub fn set_affinity(line: IrqLine, cpu: usize) -> Result<(), IrqError> {
    if !crate::thread::online_cpus().contains(cpu) {
        return Err(IrqError::Route(RouteError::NoSuchCpu(cpu as u32)));
    }
    let c = CONTROLLER
        .get()
        .ok_or(IrqError::Route(RouteError::Fixed(line.0)))?;
    c.set_affinity(line, rhea_hal::CpuId(cpu as u32))
        .map_err(IrqError::Route)
}

/// App and driver fast handlers: the registry's handlers return a reschedule request, which
/// ours need not (waking a thread records it), so each is called through a trampoline whose
/// context is its slot here.
const MAX_FAST: usize = 64;
/// A fast handler and its context.
type FastHandler = (fn(usize), usize);
static FAST: [Once<FastHandler>; MAX_FAST] = [const { Once::new() }; MAX_FAST];
static FAST_USED: AtomicUsize = AtomicUsize::new(0);

fn fast_trampoline(slot: usize) -> Reschedule {
    if let Some(&(handler, ctx)) = FAST.get(slot).and_then(Once::get) {
        handler(ctx);
    }
    Reschedule::NotNeeded
}

/// Registers a fast handler on a free device vector and returns the vector.
pub fn register_fast(handler: fn(usize), ctx: usize) -> Result<u8, IrqError> {
    let slot = FAST_USED.fetch_add(1, Ordering::Relaxed);
    if slot >= MAX_FAST {
        return Err(IrqError::Registry(rhea_irq::RegistryError::NoFreeVector));
    }
    // The slot is filled before the vector exists, so dispatch never finds it empty.
    FAST[slot].call_once(|| (handler, ctx));
    let v = REGISTRY
        .register_device(IrqHandler::Fast {
            handler: fast_trampoline,
            ctx: slot,
        })
        .map_err(IrqError::Registry)?;
    Ok(v.get())
}

/// Raises `vector` on this CPU (a self-IPI): for tests and benchmarks of the interrupt path.
pub fn raise_self(vector: u8) {
    if let Some(c) = CONTROLLER.get() {
        c.raise_self(vector);
    }
}

/// Routes device line `line` to `vector` (masked), for a driver about to unmask it.
pub fn route(line: IrqLine, vector: u8, trigger: Trigger) -> Result<(), IrqError> {
    CONTROLLER
        .get()
        .ok_or(IrqError::Route(RouteError::NoSuchLine(line.0)))?
        .route(line, vector, trigger)
        .map_err(IrqError::Route)?;
    LINE_OF_VECTOR[usize::from(vector)].store(u64::from(line.0) + 1, Ordering::Relaxed);
    Ok(())
}

/// The controller line last routed to each vector, plus one (0: none), for reports.
static LINE_OF_VECTOR: [AtomicU64; 256] = [const { AtomicU64::new(0) }; 256];

/// The line routed to `vector`, if one was (fault and panic reports; no lock).
pub(crate) fn line_of(vector: u8) -> Option<IrqLine> {
    match LINE_OF_VECTOR[usize::from(vector)].load(Ordering::Relaxed) {
        0 => None,
        n => Some(IrqLine((n - 1) as u32)),
    }
}

/// Lets `line` interrupt.
pub fn unmask(line: IrqLine) -> Result<(), IrqError> {
    CONTROLLER
        .get()
        .ok_or(IrqError::Route(RouteError::NoSuchLine(line.0)))?
        .unmask(line)
        .map_err(IrqError::Route)
}

/// Stops `line` from interrupting (interrupt-safe: a handler may quiet a level-triggered line
/// its thread will serve, then [`unmask`] it).
pub fn mask(line: IrqLine) -> Result<(), IrqError> {
    CONTROLLER
        .get()
        .ok_or(IrqError::Route(RouteError::NoSuchLine(line.0)))?
        .mask(line)
        .map_err(IrqError::Route)
}

/// Threaded handlers' bottom halves: one semaphore each, indexed by the wake token.
const MAX_THREADED: usize = 32;
static BOTTOM: [Semaphore; MAX_THREADED] = [const { Semaphore::new(0, 1) }; MAX_THREADED];
static BOTTOM_USED: AtomicUsize = AtomicUsize::new(0);

struct Waker;
static WAKER: Waker = Waker;

impl IrqThreadWaker for Waker {
    fn wake(&self, token: usize) -> Reschedule {
        if let Some(s) = BOTTOM.get(token) {
            // Full (already woken, not yet run) is fine: one pending wake covers both.
            let _ = s.give();
        }
        Reschedule::NotNeeded
    }
}

/// Registers a threaded handler on a free device vector: `top_half(ctx)` runs in interrupt
/// context and acknowledges the device; when it returns `true`, a kernel thread at `priority`
/// runs `bottom_half(ctx)`. Returns the vector.
pub fn register_threaded(
    name: &str,
    priority: rhea_hal::Priority,
    top_half: fn(usize) -> TopHalf,
    bottom_half: fn(usize),
    ctx: usize,
) -> Result<u8, IrqError> {
    let token = BOTTOM_USED.fetch_add(1, Ordering::Relaxed);
    if token >= MAX_THREADED {
        return Err(IrqError::Registry(rhea_irq::RegistryError::NoFreeVector));
    }
    let handle = crate::thread::Builder::new()
        .name(name)
        .priority(priority)
        .kernel()
        .spawn(move || {
            loop {
                if BOTTOM[token].take().is_ok() {
                    bottom_half(ctx);
                }
            }
        })
        .map_err(|_| IrqError::Spawn)?;
    drop(handle);
    let v = REGISTRY
        .register_device(IrqHandler::Threaded {
            top_half,
            ctx,
            wake_token: token,
        })
        .map_err(IrqError::Registry)?;
    NAMES.lock().push((v.get(), String::from(name)));
    Ok(v.get())
}

/// Handled interrupts per vector so far (statistics).
pub fn count(vector: u8) -> u64 {
    Vector::new(vector).map_or(0, |v| REGISTRY.stats(v).handled)
}

/// Device events: how a device's interrupt reaches the thread that serves it (a driver
/// thread). The handler is a fast one: it masks a level-triggered line (the device keeps it
/// asserted until the thread acknowledges it) and sets the event; the thread waits on the
/// event, serves the device, then [`DeviceEvent::rearm`]s the line.
const MAX_DEVICE_EVENTS: usize = 16;

struct EventSlot {
    flags: crate::sync::EventFlags,
    /// The line, and whether it is level-triggered (masked by the handler).
    line: Once<(IrqLine, bool)>,
}

static EVENTS: [EventSlot; MAX_DEVICE_EVENTS] = [const {
    EventSlot {
        flags: crate::sync::EventFlags::new(),
        line: Once::new(),
    }
}; MAX_DEVICE_EVENTS];
static EVENTS_USED: AtomicUsize = AtomicUsize::new(0);
/// Which event slot a vector sets (for message-signalled interrupts allocated before the
/// device is bound); `usize::MAX` when none.
static VECTOR_EVENT: [AtomicUsize; 256] = [const { AtomicUsize::new(usize::MAX) }; 256];

const EVENT_BIT: u32 = 1;

/// A device's interrupt as something a thread waits for. Cheap to copy.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct DeviceEvent(usize);

fn on_device_event(slot: usize) {
    let s = &EVENTS[slot];
    if let (Some(&(line, true)), Some(c)) = (s.line.get(), CONTROLLER.get()) {
        let _ = c.mask(line);
    }
    s.flags.set(EVENT_BIT);
}

impl DeviceEvent {
    fn alloc() -> Result<DeviceEvent, IrqError> {
        let slot = EVENTS_USED.fetch_add(1, Ordering::Relaxed);
        if slot >= MAX_DEVICE_EVENTS {
            return Err(IrqError::Registry(rhea_irq::RegistryError::NoFreeVector));
        }
        // Create the flags' scheduler object now, in thread context, not in the handler.
        EVENTS[slot].flags.clear(EVENT_BIT);
        Ok(DeviceEvent(slot))
    }

    /// An event for a controller line: routed to a new vector and unmasked.
    pub fn for_line(line: IrqLine, trigger: Trigger) -> Result<DeviceEvent, IrqError> {
        let e = Self::alloc()?;
        let level = matches!(trigger, Trigger::LevelLow);
        EVENTS[e.0].line.call_once(|| (line, level));
        let v = register_fast(on_device_event, e.0)?;
        route(line, v, trigger)?;
        unmask(line)?;
        Ok(e)
    }

    /// An event for a vector handed out by [`alloc_msi_vector`].
    pub fn for_vector(vector: u8) -> Option<DeviceEvent> {
        match VECTOR_EVENT[usize::from(vector)].load(Ordering::Acquire) {
            usize::MAX => None,
            slot => Some(DeviceEvent(slot)),
        }
    }

    /// An event no interrupt sets (for polled devices: [`signal`](Self::signal) and timeouts
    /// only).
    pub fn polled() -> Result<DeviceEvent, IrqError> {
        Self::alloc()
    }

    /// Waits until the interrupt (or [`signal`](Self::signal)) happened since the last wait,
    /// or `timeout` passed; returns whether it happened.
    pub fn wait(&self, timeout: Option<crate::time::Duration>) -> bool {
        EVENTS[self.0]
            .flags
            .wait(EVENT_BIT, crate::sync::WaitMode::Any, true, timeout)
            .is_ok()
    }

    /// Sets the event from software (another thread has work for the waiter).
    pub fn signal(&self) {
        EVENTS[self.0].flags.set(EVENT_BIT);
    }

    /// Makes the event's interrupt line interrupt CPU `cpu` (see [`set_affinity`]).
    pub fn set_affinity(&self, cpu: usize) -> Result<(), IrqError> {
        let &(line, _) = EVENTS[self.0].line.get().ok_or(IrqError::NoLine)?;
        set_affinity(line, cpu)
    }

    /// Unmasks a level-triggered line the handler masked, once the device is acknowledged.
    pub fn rearm(&self) {
        if let Some(&(line, true)) = EVENTS[self.0].line.get() {
            let _ = unmask(line);
        }
    }
}

/// Allocates a vector for a message-signalled interrupt: its handler sets a new
/// [`DeviceEvent`] ([`DeviceEvent::for_vector`]). Returns the vector.
pub fn alloc_msi_vector() -> Result<u8, IrqError> {
    let e = DeviceEvent::alloc()?;
    let v = register_fast(on_device_event, e.0)?;
    VECTOR_EVENT[usize::from(v)].store(e.0, Ordering::Release);
    Ok(v)
}
