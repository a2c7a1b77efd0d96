//! Random operation sequences on one thread against a `VecDeque` of the same capacity: every
//! push, pop, batch and length answer must match the model's.
#![cfg(not(loom))]

use std::collections::VecDeque;

use proptest::prelude::*;
use rhea_queue::{Full, mpmc, spsc};

#[derive(Debug, Clone)]
enum Op {
    Push(u16),
    Pop,
    PopBatch(usize),
    PushIter(Vec<u16>),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => any::<u16>().prop_map(Op::Push),
        3 => Just(Op::Pop),
        1 => (0usize..10).prop_map(Op::PopBatch),
        1 => proptest::collection::vec(any::<u16>(), 0..10).prop_map(Op::PushIter),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn spsc_matches_vecdeque(
        log2_capacity in 0u32..5,
        ops in proptest::collection::vec(op(), 0..200),
    ) {
        let capacity = 1usize << log2_capacity;
        let (mut tx, mut rx) = spsc::ring::<u16>(capacity);
        let mut model = VecDeque::new();
        for op in ops {
            match op {
                Op::Push(v) => {
                    let expected = if model.len() < capacity {
                        model.push_back(v);
                        Ok(())
                    } else {
                        Err(Full(v))
                    };
                    prop_assert_eq!(tx.push(v), expected);
                }
                Op::Pop => prop_assert_eq!(rx.pop(), model.pop_front()),
                Op::PopBatch(max) => {
                    let mut got = Vec::new();
                    let n = rx.pop_batch(max, |v| got.push(v));
                    let want: Vec<u16> = model.drain(..max.min(model.len())).collect();
                    prop_assert_eq!(n, want.len());
                    prop_assert_eq!(got, want);
                }
                Op::PushIter(items) => {
                    let room = capacity - model.len();
                    let mut iter = items.iter().copied();
                    let n = tx.push_iter(&mut iter);
                    prop_assert_eq!(n, room.min(items.len()));
                    model.extend(&items[..n]);
                    prop_assert_eq!(iter.next(), items.get(n).copied());
                }
            }
            prop_assert_eq!(tx.len(), model.len());
            prop_assert_eq!(rx.len(), model.len());
            prop_assert_eq!(rx.is_empty(), model.is_empty());
            prop_assert_eq!(tx.is_full(), model.len() == capacity);
            prop_assert_eq!(tx.free(), capacity - model.len());
        }
    }

    #[test]
    fn mpmc_matches_vecdeque(
        log2_capacity in 1u32..5,
        ops in proptest::collection::vec(op(), 0..200),
    ) {
        let capacity = 1usize << log2_capacity;
        let q = mpmc::Queue::<u16>::new(capacity);
        let mut model = VecDeque::new();
        for op in ops {
            match op {
                Op::Push(v) => {
                    let expected = if model.len() < capacity {
                        model.push_back(v);
                        Ok(())
                    } else {
                        Err(Full(v))
                    };
                    prop_assert_eq!(q.push(v), expected);
                }
                Op::Pop | Op::PopBatch(_) => prop_assert_eq!(q.pop(), model.pop_front()),
                Op::PushIter(items) => {
                    for v in items {
                        let expected = model.len() < capacity;
                        if expected {
                            model.push_back(v);
                        }
                        prop_assert_eq!(q.push(v).is_ok(), expected);
                    }
                }
            }
            prop_assert_eq!(q.len(), model.len());
            prop_assert_eq!(q.is_empty(), model.is_empty());
        }
    }
}
