//! Test app: a producer and a consumer at different priorities pass 1000 items through a
//! 4-slot buffer guarded by a mutex and two condition variables; then through a blocking
//! message queue; then the queue's timeouts fire on a full and an empty queue.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::collections::VecDeque;
use alloc::sync::Arc;
use rhea::sync::{Condvar, MessageQueue, Mutex, SyncError};
use rhea::thread::{Builder, Priority};
use rhea::time::Duration;

rhea::main!(main);

const ITEMS: u64 = 1000;
const SLOTS: usize = 4;

struct Buffer {
    items: Mutex<VecDeque<u64>>,
    not_empty: Condvar,
    not_full: Condvar,
}

fn main() -> Result<(), SyncError> {
    let b = Arc::new(Buffer {
        items: Mutex::new(VecDeque::new()),
        not_empty: Condvar::new(),
        not_full: Condvar::new(),
    });
    let p = b.clone();
    let producer = Builder::new()
        .name("producer")
        .priority(Priority::new(20).unwrap())
        .spawn(move || {
            for i in 0..ITEMS {
                let mut g = p.items.lock().expect("lock");
                while g.len() == SLOTS {
                    g = p.not_full.wait(g);
                }
                g.push_back(i);
                drop(g);
                p.not_empty.notify_one();
            }
        })
        .expect("spawn");
    let c = b.clone();
    let consumer = Builder::new()
        .name("consumer")
        .priority(Priority::new(10).unwrap())
        .spawn(move || {
            let mut sum = 0;
            for _ in 0..ITEMS {
                let mut g = c.items.lock().expect("lock");
                while g.is_empty() {
                    g = c.not_empty.wait(g);
                }
                sum += g.pop_front().expect("non-empty");
                drop(g);
                c.not_full.notify_one();
            }
            rhea::println!("condvar: {ITEMS} items through a bounded buffer, sum {sum}");
            assert_eq!(sum, ITEMS * (ITEMS - 1) / 2);
        })
        .expect("spawn");
    producer.join()?;
    consumer.join()?;

    let q = Arc::new(MessageQueue::<u64, 8>::new());
    let qp = q.clone();
    let sender = Builder::new()
        .name("sender")
        .priority(Priority::new(12).unwrap())
        .spawn(move || {
            for i in 0..ITEMS {
                qp.send(i).map_err(|(_, e)| e).expect("send");
            }
        })
        .expect("spawn");
    let mut sum = 0;
    for _ in 0..ITEMS {
        sum += q.recv()?;
    }
    sender.join()?;
    for i in 0..8 {
        q.try_send(i).map_err(|(_, e)| e)?;
    }
    let full = q
        .send_timeout(99, Duration::from_millis(2))
        .map_err(|(_, e)| e)
        .unwrap_err();
    for _ in 0..8 {
        q.try_recv()?;
    }
    let empty = q.recv_timeout(Duration::from_millis(2)).unwrap_err();
    rhea::println!(
        "queue: {ITEMS} messages, sum {sum}, send timeout on a full queue -> {full}, recv timeout on an empty one -> {empty}"
    );
    if sum != ITEMS * (ITEMS - 1) / 2 || full != SyncError::Timeout || empty != SyncError::Timeout {
        return Err(SyncError::WouldBlock);
    }
    rhea::println!("condvar: PASS");
    Ok(())
}
