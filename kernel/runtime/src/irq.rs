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
use crate::sync::Semaphore;
use core::sync::atomic::{AtomicUsize, Ordering};
use rhea_hal::{InterruptController, IrqLine, RouteError, Trigger};
pub use rhea_irq::TopHalf;
use rhea_irq::{IrqHandler, IrqRegistry, IrqThreadWaker, Reschedule, Vector};
use spin::Once;

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
}

impl core::fmt::Display for IrqError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Registry(e) => write!(f, "{e}"),
            Self::Route(e) => write!(f, "{e}"),
            Self::Spawn => f.write_str("cannot start the handler's thread"),
        }
    }
}

/// Installs the controller and the interrupt entry; called once at boot, interrupts off.
pub(crate) fn init(controller: &'static dyn InterruptController, timer_vector: u8) {
    CONTROLLER.call_once(|| controller);
    REGISTRY
        .set_thread_waker(&WAKER)
        .expect("the waker is set once, here");
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
    rhea_arch::set_interrupt_handler(on_interrupt);
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

/// Every interrupt vector lands here (from the architecture's trap entry).
fn on_interrupt(vector: u8) {
    kthread::enter_irq();
    let d = REGISTRY.dispatch(vector);
    if let Some(c) = CONTROLLER.get() {
        c.end_of_interrupt(vector);
    }
    let needed = kthread::leave_irq();
    if needed || d.reschedule() == Reschedule::Needed {
        kthread::preempt();
    }
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
        .map_err(IrqError::Route)
}

/// Lets `line` interrupt.
pub fn unmask(line: IrqLine) -> Result<(), IrqError> {
    CONTROLLER
        .get()
        .ok_or(IrqError::Route(RouteError::NoSuchLine(line.0)))?
        .unmask(line)
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
    Ok(v.get())
}

/// Handled interrupts per vector so far (statistics).
pub fn count(vector: u8) -> u64 {
    Vector::new(vector).map_or(0, |v| REGISTRY.stats(v).handled)
}
