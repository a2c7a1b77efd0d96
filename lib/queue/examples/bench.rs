//! Host throughput and latency of the queues between two threads, next to `std::sync::mpsc`
//! measured in the same run. Run through `cargo xtask bench queue` (release build). Figures
//! only: nothing here passes or fails on timing.
//!
//! - throughput: one producer thread sends `ITEMS` `u64`s to one consumer thread (and, for
//!   the MPMC queue, two producers to one consumer); rhea's queues retry a full push and an
//!   empty pop by spinning (`spin_loop`, yielding after a while, as a polling driver thread
//!   would); `std::sync::mpsc::sync_channel` of the same capacity uses its blocking
//!   `send`/`recv`.
//! - one-way latency: a ping-pong between two threads over two capacity-1/2 queues, half the
//!   round trip per iteration (median and 99th percentile); for std both the blocking `recv`
//!   and a spinning `try_recv` are shown.

#[cfg(loom)]
fn main() {}

#[cfg(not(loom))]
fn main() {
    host::main();
}

#[cfg(not(loom))]
mod host {
    use std::hint::spin_loop;
    use std::sync::Arc;
    use std::sync::mpsc::{self, TryRecvError};
    use std::thread;
    use std::time::{Duration, Instant};

    use rhea_queue::{Full, mpmc, spsc};

    const ITEMS: u64 = 4_000_000;
    const CAPACITY: usize = 1024;
    const PINGS: usize = 100_000;

    fn wait(spins: &mut u32) {
        *spins += 1;
        if *spins < 1000 {
            spin_loop();
        } else {
            thread::yield_now();
        }
    }

    /// Items per second, with the checksum checked.
    fn rate(items: u64, took: Duration, sum: u64, want: u64) -> f64 {
        assert_eq!(sum, want, "checksum");
        items as f64 / took.as_secs_f64()
    }

    fn spsc_throughput() -> f64 {
        let (mut tx, mut rx) = spsc::ring::<u64>(CAPACITY);
        let start = Instant::now();
        let producer = thread::spawn(move || {
            for i in 0..ITEMS {
                let (mut item, mut spins) = (i, 0);
                while let Err(Full(back)) = tx.push(item) {
                    item = back;
                    wait(&mut spins);
                }
            }
        });
        let (mut n, mut sum, mut spins) = (0, 0u64, 0);
        while n < ITEMS {
            let got = rx.pop_batch(256, |v| sum = sum.wrapping_add(v));
            if got == 0 {
                wait(&mut spins);
            } else {
                spins = 0;
                n += got as u64;
            }
        }
        producer.join().unwrap();
        rate(ITEMS, start.elapsed(), sum, ITEMS * (ITEMS - 1) / 2)
    }

    fn mpmc_throughput(producers: u64) -> f64 {
        let q = Arc::new(mpmc::Queue::<u64>::new(CAPACITY));
        let per = ITEMS / producers;
        let start = Instant::now();
        let handles: Vec<_> = (0..producers)
            .map(|_| {
                let q = q.clone();
                thread::spawn(move || {
                    for i in 0..per {
                        let (mut item, mut spins) = (i, 0);
                        while let Err(Full(back)) = q.push(item) {
                            item = back;
                            wait(&mut spins);
                        }
                    }
                })
            })
            .collect();
        let (mut n, mut sum, mut spins) = (0, 0u64, 0);
        while n < per * producers {
            match q.pop() {
                Some(v) => {
                    sum = sum.wrapping_add(v);
                    n += 1;
                    spins = 0;
                }
                None => wait(&mut spins),
            }
        }
        for h in handles {
            h.join().unwrap();
        }
        rate(n, start.elapsed(), sum, producers * per * (per - 1) / 2)
    }

    fn std_throughput(producers: u64) -> f64 {
        let (tx, rx) = mpsc::sync_channel::<u64>(CAPACITY);
        let per = ITEMS / producers;
        let start = Instant::now();
        let handles: Vec<_> = (0..producers)
            .map(|_| {
                let tx = tx.clone();
                thread::spawn(move || {
                    for i in 0..per {
                        tx.send(i).unwrap();
                    }
                })
            })
            .collect();
        drop(tx);
        let (mut n, mut sum) = (0, 0u64);
        for v in rx {
            sum = sum.wrapping_add(v);
            n += 1;
        }
        for h in handles {
            h.join().unwrap();
        }
        rate(n, start.elapsed(), sum, producers * per * (per - 1) / 2)
    }

    /// Half of each round trip, in nanoseconds, sorted.
    fn ping_pong(
        mut send_a: impl FnMut(u64) + Send + 'static,
        mut recv_a: impl FnMut() -> u64 + Send + 'static,
        mut send_b: impl FnMut(u64) + Send + 'static,
        mut recv_b: impl FnMut() -> u64 + Send + 'static,
    ) -> Vec<f64> {
        let echo = thread::spawn(move || {
            for _ in 0..PINGS {
                let v = recv_b();
                send_b(v);
            }
        });
        let mut one_way = Vec::with_capacity(PINGS);
        for i in 0..PINGS as u64 {
            let start = Instant::now();
            send_a(i);
            assert_eq!(recv_a(), i);
            one_way.push(start.elapsed().as_nanos() as f64 / 2.0);
        }
        echo.join().unwrap();
        one_way.sort_by(f64::total_cmp);
        one_way
    }

    fn spsc_latency() -> Vec<f64> {
        let (mut to_b, mut at_b) = spsc::ring::<u64>(2);
        let (mut to_a, mut at_a) = spsc::ring::<u64>(2);
        ping_pong(
            move |v| to_b.push(v).unwrap(),
            move || spin_pop(|| at_a.pop()),
            move |v| to_a.push(v).unwrap(),
            move || spin_pop(|| at_b.pop()),
        )
    }

    fn mpmc_latency() -> Vec<f64> {
        let ab = Arc::new(mpmc::Queue::<u64>::new(2));
        let ba = Arc::new(mpmc::Queue::<u64>::new(2));
        let (ab2, ba2) = (ab.clone(), ba.clone());
        ping_pong(
            move |v| ab.push(v).unwrap(),
            move || spin_pop(|| ba.pop()),
            move |v| ba2.push(v).unwrap(),
            move || spin_pop(|| ab2.pop()),
        )
    }

    fn std_latency(spin: bool) -> Vec<f64> {
        let (to_b, at_b) = mpsc::sync_channel::<u64>(1);
        let (to_a, at_a) = mpsc::sync_channel::<u64>(1);
        let recv = move |rx: &mpsc::Receiver<u64>| {
            if !spin {
                return rx.recv().unwrap();
            }
            spin_pop(|| match rx.try_recv() {
                Ok(v) => Some(v),
                Err(TryRecvError::Empty) => None,
                Err(TryRecvError::Disconnected) => panic!("disconnected"),
            })
        };
        ping_pong(
            move |v| to_b.send(v).unwrap(),
            move || recv(&at_a),
            move |v| to_a.send(v).unwrap(),
            move || recv(&at_b),
        )
    }

    fn spin_pop(mut pop: impl FnMut() -> Option<u64>) -> u64 {
        let mut spins = 0;
        loop {
            if let Some(v) = pop() {
                return v;
            }
            wait(&mut spins);
        }
    }

    fn percentile(sorted: &[f64], p: f64) -> f64 {
        sorted[((sorted.len() - 1) as f64 * p) as usize]
    }

    fn conditions() {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, m)| m.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        println!("conditions:");
        println!("  host CPU:    {cpu}");
        println!(
            "  host cores:  {} (available_parallelism)",
            thread::available_parallelism().map_or(0, |n| n.get())
        );
        println!(
            "  load avg:    {}",
            load.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        );
        println!("  build:       release profile of the workspace; threads not pinned");
        println!(
            "  throughput:  {ITEMS} u64 items, capacity {CAPACITY}; latency: {PINGS} ping-pongs"
        );
    }

    pub(super) fn main() {
        println!("== bench queue: rhea-queue vs std::sync::mpsc, two host threads");
        conditions();

        let std1 = std_throughput(1);
        let std2 = std_throughput(2);
        let rows = [
            ("spsc ring, 1 -> 1", spsc_throughput(), std1),
            ("mpmc queue, 1 -> 1", mpmc_throughput(1), std1),
            ("mpmc queue, 2 -> 1", mpmc_throughput(2), std2),
        ];
        println!();
        println!(
            "{:<22} {:>12} {:>22} {:>8}",
            "throughput", "rhea Mitem/s", "std sync_channel", "ratio"
        );
        for (name, rhea, std) in rows {
            println!(
                "{name:<22} {:>12.1} {:>22.1} {:>7.1}x",
                rhea / 1e6,
                std / 1e6,
                rhea / std
            );
        }

        let std_block = std_latency(false);
        let std_spin = std_latency(true);
        let rows = [
            ("spsc ring", spsc_latency()),
            ("mpmc queue", mpmc_latency()),
        ];
        println!();
        println!(
            "{:<22} {:>16} {:>22} {:>22}",
            "one-way latency (ns)", "rhea p50 / p99", "std recv p50 / p99", "std try_recv p50/p99"
        );
        for (name, l) in &rows {
            println!(
                "{name:<22} {:>7.0} / {:>6.0} {:>13.0} / {:>6.0} {:>13.0} / {:>6.0}",
                percentile(l, 0.5),
                percentile(l, 0.99),
                percentile(&std_block, 0.5),
                percentile(&std_block, 0.99),
                percentile(&std_spin, 0.5),
                percentile(&std_spin, 0.99),
            );
        }
        println!(
            "ratios (p50, rhea spsc / std): {:.2} vs blocking recv, {:.2} vs spinning try_recv",
            percentile(&rows[0].1, 0.5) / percentile(&std_block, 0.5),
            percentile(&rows[0].1, 0.5) / percentile(&std_spin, 0.5)
        );
    }
}
