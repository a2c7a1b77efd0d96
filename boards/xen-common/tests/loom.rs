//! Model checks of the 2-level event-channel demux ([`EventChannels::demux`]) racing, on other
//! vCPUs, Xen raising ports, the guest masking and unmasking them, moving a port to another
//! vCPU ([`EventChannels::set_affinity`]) and raising software vectors (IPIs). Every
//! interleaving of the small scenarios below is explored, within the stated preemption bound.
//!
//! The contract modelled: an event is delivered exactly once — not lost, not twice, and on the
//! vCPU that owns its port (an event raised while its port is masked is delivered after the
//! unmask; an event pending when its port moves is delivered on the old vCPU or the new one);
//! software vectors coalesce like a local APIC's IRR — each raise is followed by a delivery
//! that sees what the raiser wrote before it, and a vector is delivered at most once per raise.
//!
//! Xen is simulated from xen/common/event_2l.c and event_channel.c (Xen 4.17):
//! `evtchn_2l_set_pending` and `evtchn_2l_unmask` with their bit operations in Xen's order
//! (sequentially consistent, as Xen's locked bit operations are), `vcpu_mark_events_pending`
//! as setting `upcall_pending`, and `EVTCHNOP_bind_vcpu` changing the vCPU Xen notifies. Each
//! Xen operation on a channel runs under one lock, so Xen's own steps do not interleave with
//! each other — the guest's code does interleave with every one of them. A vCPU "takes its
//! upcall" at a few points by running the demux when it sees `upcall_pending` set; after the
//! join, every vCPU with `upcall_pending` set runs the demux until it is clear (the upcalls
//! Xen still owes), and only then are deliveries counted.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p rhea-board-xen-common --release`
//! (`cargo xtask test` does, into `target/loom`). `LOOM_MAX_PREEMPTIONS=N` overrides the
//! bounds for a deeper run.
#![cfg(loom)]

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::{Arc, Mutex};
use loom::thread;
use rhea_board_xen_common::evtchn::{EventChannels, EvtchnOps};
use rhea_board_xen_common::shared::SharedInfo;

/// Ports the models use are below this (one bitmap word).
const PORTS: usize = 64;

/// The guest's tables and the shared page, plus Xen's side of each port.
struct World {
    shared: SharedInfo,
    events: EventChannels,
    /// Per port: the vCPU Xen notifies (`notify_vcpu_id`), under Xen's channel lock.
    notify: Mutex<[usize; PORTS]>,
}

impl World {
    fn new() -> Arc<World> {
        Arc::new(World {
            shared: SharedInfo::new(),
            events: EventChannels::new(),
            notify: Mutex::new([0; PORTS]),
        })
    }

    /// Binds `port` to `vector` on `cpu`, at Xen and in the guest's tables (set-up, before
    /// the threads start).
    fn bind(&self, port: u32, vector: u8, cpu: usize) {
        self.notify.lock().unwrap()[port as usize] = cpu;
        self.events.bind(port, vector, cpu).unwrap();
    }

    /// Xen's `vcpu_mark_events_pending`: sets `upcall_pending` (and would kick the vCPU).
    fn mark_events_pending(&self, cpu: usize) {
        self.shared.vcpu_info[cpu]
            .upcall_pending
            .swap(1, Ordering::SeqCst);
    }

    /// `EVTCHNOP_send` / a device or backend raising `port`: `evtchn_2l_set_pending` on the
    /// vCPU Xen notifies.
    fn send(&self, port: u32) {
        let notify = self.notify.lock().unwrap();
        let cpu = notify[port as usize];
        let (w, bit) = (port as usize / 64, 1u64 << (port % 64));
        if self.shared.evtchn_pending[w].fetch_or(bit, Ordering::SeqCst) & bit != 0 {
            return;
        }
        if self.shared.evtchn_mask[w].load(Ordering::SeqCst) & bit == 0
            && self.shared.vcpu_info[cpu]
                .pending_sel
                .fetch_or(1 << w, Ordering::SeqCst)
                & (1 << w)
                == 0
        {
            self.mark_events_pending(cpu);
        }
        drop(notify);
    }

    /// vCPU `cpu` takes its upcall if Xen marked one: runs the demux, collecting vectors.
    fn take_upcall(&self, cpu: usize, got: &mut Vec<u8>) {
        let vi = &self.shared.vcpu_info[cpu];
        if vi.upcall_pending.load(Ordering::SeqCst) != 0 {
            self.events
                .demux(&self.shared, vi, cpu, &mut |v| got.push(v));
        }
    }

    /// After the join: every upcall Xen still owes is taken. Returns each vCPU's vectors.
    fn drain(&self, cpus: usize) -> Vec<Vec<u8>> {
        (0..cpus)
            .map(|cpu| {
                let mut got = Vec::new();
                // RT: one pass per upcall; the models raise a handful of events.
                for _ in 0..4 {
                    self.take_upcall(cpu, &mut got);
                }
                assert_eq!(
                    self.shared.vcpu_info[cpu]
                        .upcall_pending
                        .load(Ordering::SeqCst),
                    0,
                    "vCPU {cpu} still has an upcall pending"
                );
                got
            })
            .collect()
    }
}

impl EvtchnOps for World {
    fn bind_vcpu(&self, port: u32, cpu: u32) -> Result<(), i64> {
        self.notify.lock().unwrap()[port as usize] = cpu as usize;
        Ok(())
    }

    /// `evtchn_2l_unmask`: re-raises only if the mask bit was set (test-and-clear).
    fn unmask(&self, port: u32) -> Result<(), i64> {
        let notify = self.notify.lock().unwrap();
        let cpu = notify[port as usize];
        let (w, bit) = (port as usize / 64, 1u64 << (port % 64));
        if self.shared.evtchn_mask[w].fetch_and(!bit, Ordering::SeqCst) & bit != 0
            && self.shared.evtchn_pending[w].load(Ordering::SeqCst) & bit != 0
            && self.shared.vcpu_info[cpu]
                .pending_sel
                .fetch_or(1 << w, Ordering::SeqCst)
                & (1 << w)
                == 0
        {
            self.mark_events_pending(cpu);
        }
        drop(notify);
        Ok(())
    }
}

/// Runs `f` as a model, bounded so it finishes in seconds. `f` runs on a loom thread with a
/// 1 MiB stack: the tables (4,096 ports) are built on the stack before they move into an
/// `Arc`, which overflows the model's own 32 KiB coroutine stack.
fn bounded(preemptions: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(preemptions);
    }
    let f = std::sync::Arc::new(f);
    builder.check(move || {
        let f = std::sync::Arc::clone(&f);
        thread::Builder::new()
            .stack_size(1 << 20)
            .spawn(move || f())
            .unwrap()
            .join()
            .unwrap();
    });
}

/// Spawns a loom thread playing vCPU `cpu`: runs `f`, then takes its upcall `upcalls` times;
/// returns the vectors it got.
fn vcpu(
    world: &Arc<World>,
    cpu: usize,
    upcalls: usize,
    f: impl FnOnce(&World) + Send + 'static,
) -> thread::JoinHandle<Vec<u8>> {
    let world = Arc::clone(world);
    thread::spawn(move || {
        f(&world);
        let mut got = Vec::new();
        for _ in 0..upcalls {
            world.take_upcall(cpu, &mut got);
        }
        got
    })
}

/// Spawns a loom thread playing a device or a backend domain: Xen raises `port`.
fn device(world: &Arc<World>, port: u32) -> thread::JoinHandle<()> {
    let world = Arc::clone(world);
    thread::spawn(move || world.send(port))
}

/// How often `vector` was delivered, per vCPU: what the threads got plus the final drain.
fn deliveries(world: &World, during: Vec<Vec<u8>>, vector: u8) -> Vec<usize> {
    let after = world.drain(during.len());
    during
        .iter()
        .zip(&after)
        .map(|(a, b)| a.iter().chain(b).filter(|&&v| v == vector).count())
        .collect()
}

const PORT: u32 = 3;
const VECTOR: u8 = 0x41;

/// A port masked by the guest fires; another vCPU unmasks it (`EVTCHNOP_unmask`) while its own
/// vCPU takes upcalls: the event is delivered once, on its vCPU, after the unmask at the
/// latest. Three threads, preemption bound 3.
#[test]
fn event_raised_while_masked_is_delivered_after_unmask() {
    bounded(3, || {
        let world = World::new();
        world.bind(PORT, VECTOR, 0);
        assert!(!EventChannels::mask(&world.shared, PORT).unwrap());
        let xen = device(&world, PORT);
        let owner = vcpu(&world, 0, 2, |_| {});
        let other = vcpu(&world, 1, 0, |w| w.unmask(PORT).unwrap());
        xen.join().unwrap();
        let during = vec![owner.join().unwrap(), other.join().unwrap()];
        assert_eq!(deliveries(&world, during, VECTOR), [1, 0]);
    });
}

/// Another vCPU masks and unmasks a port while it fires and its vCPU takes upcalls: delivered
/// once (before the mask, or after the unmask). Three threads, preemption bound 3.
#[test]
fn mask_and_unmask_race_an_event() {
    bounded(3, || {
        let world = World::new();
        world.bind(PORT, VECTOR, 0);
        let xen = device(&world, PORT);
        let owner = vcpu(&world, 0, 2, |_| {});
        let other = vcpu(&world, 1, 0, |w| {
            assert!(!EventChannels::mask(&w.shared, PORT).unwrap());
            w.unmask(PORT).unwrap();
        });
        xen.join().unwrap();
        let during = vec![owner.join().unwrap(), other.join().unwrap()];
        assert_eq!(deliveries(&world, during, VECTOR), [1, 0]);
    });
}

/// A port fires while another vCPU moves it to itself (`set_affinity`: Xen's bind_vcpu, the
/// owner table, the re-raise) and the old vCPU takes upcalls: the event is delivered exactly
/// once, on the old vCPU or the new one, and the port ends up owned by the new one. Three
/// threads, preemption bound 3.
#[test]
fn set_affinity_races_the_old_vcpus_upcall() {
    bounded(3, || {
        let world = World::new();
        world.bind(PORT, VECTOR, 0);
        let xen = device(&world, PORT);
        let old = vcpu(&world, 0, 2, |_| {});
        let new = vcpu(&world, 1, 0, |w| {
            w.events.set_affinity(&w.shared, PORT, 1, w).unwrap();
        });
        xen.join().unwrap();
        let during = vec![old.join().unwrap(), new.join().unwrap()];
        let got = deliveries(&world, during, VECTOR);
        assert_eq!(
            got.iter().sum::<usize>(),
            1,
            "delivered {got:?} times per vCPU"
        );
        assert_eq!(world.events.owner(PORT), Some(1));
    });
}

/// Two ports in one bitmap word, owned by different vCPUs, fire at once while both vCPUs take
/// upcalls: each is delivered once, on its own vCPU (each demux scans the whole word and must
/// leave the other vCPU's port alone). Three threads, preemption bound 3.
#[test]
fn ports_sharing_a_word_go_to_their_own_vcpus() {
    bounded(3, || {
        let world = World::new();
        world.bind(5, 0x42, 0);
        world.bind(6, 0x43, 1);
        let xen = {
            let world = Arc::clone(&world);
            thread::spawn(move || {
                world.send(5);
                world.send(6);
            })
        };
        let cpus: Vec<_> = (0..2).map(|cpu| vcpu(&world, cpu, 2, |_| {})).collect();
        xen.join().unwrap();
        let during: Vec<_> = cpus.into_iter().map(|c| c.join().unwrap()).collect();
        let after = world.drain(2);
        let all: Vec<Vec<u8>> = during
            .iter()
            .zip(&after)
            .map(|(a, b)| a.iter().chain(b).copied().collect())
            .collect();
        assert_eq!(all, [vec![0x42], vec![0x43]]);
    });
}

const IPI_PORT: u32 = 9;
const IPI_VECTOR: u8 = 0xfc;

loom::lazy_static! {
    /// Per raising vCPU: what it wrote before raising the IPI (1 once written).
    static ref MESSAGE: [AtomicUsize; 2] = core::array::from_fn(|_| AtomicUsize::new(0));
}

/// vCPUs 0 and 1 raise one software vector for vCPU 2 at once (`raise`, then `EVTCHNOP_send`
/// on its IPI port when `raise` asks for it) while vCPU 2 takes upcalls: the vector is
/// delivered once or twice (raises coalesce), never more, every raise is followed by a
/// delivery that sees the raiser's message, and no bit is left behind. Three threads,
/// preemption bound 2.
#[test]
fn ipis_from_two_vcpus_coalesce_but_are_not_lost() {
    bounded(2, || {
        let world = World::new();
        world.notify.lock().unwrap()[IPI_PORT as usize] = 2;
        world.events.bind_ipi(IPI_PORT, 2).unwrap();
        let senders: Vec<_> = (0..2)
            .map(|cpu| {
                vcpu(&world, cpu, 0, move |w| {
                    MESSAGE[cpu].store(1, Ordering::Relaxed);
                    if let Some(port) = w.events.raise(2, IPI_VECTOR) {
                        w.send(port);
                    }
                })
            })
            .collect();
        // Each delivery records which messages it saw.
        let mut seen = [false; 2];
        let mut delivered = 0;
        let mut on_delivery = |v: u8| {
            assert_eq!(v, IPI_VECTOR);
            delivered += 1;
            for (s, m) in seen.iter_mut().zip(MESSAGE.iter()) {
                *s |= m.load(Ordering::Relaxed) == 1;
            }
        };
        let vi = &world.shared.vcpu_info[2];
        for _ in 0..2 {
            if vi.upcall_pending.load(Ordering::SeqCst) != 0 {
                world.events.demux(&world.shared, vi, 2, &mut on_delivery);
            }
        }
        for s in senders {
            s.join().unwrap();
        }
        // The upcalls Xen still owes.
        for _ in 0..4 {
            if vi.upcall_pending.load(Ordering::SeqCst) != 0 {
                world.events.demux(&world.shared, vi, 2, &mut on_delivery);
            }
        }
        assert!(
            (1..=2).contains(&delivered),
            "delivered {delivered} times for 2 raises"
        );
        assert_eq!(seen, [true; 2], "a raise no delivery followed");
        assert_eq!(vi.upcall_pending.load(Ordering::SeqCst), 0);
        assert_eq!(
            world.shared.evtchn_pending[0].load(Ordering::SeqCst),
            0,
            "IPI port left pending"
        );
    });
}
