//! The intrusive lists and trees the scheduler threads `Arc<Thread>`s on, and the one
//! operation they cannot make safe: removing a known element from the middle.

use crate::thread::Thread;
use alloc::sync::Arc;
use intrusive_collections::{KeyAdapter, LinkedList, RBTree, intrusive_adapter};

intrusive_adapter!(pub(crate) RunAdapter = Arc<Thread>: Thread { run_link: intrusive_collections::LinkedListAtomicLink });
intrusive_adapter!(pub(crate) SleepAdapter = Arc<Thread>: Thread { sleep_link: intrusive_collections::RBTreeAtomicLink });

impl<'a> KeyAdapter<'a> for SleepAdapter {
    /// Deadline first, then the id, so equal deadlines are ordered and keys are unique.
    type Key = (u64, u64);
    fn get_key(&self, t: &'a Thread) -> (u64, u64) {
        (
            t.sleep_deadline.load(core::sync::atomic::Ordering::Relaxed),
            t.id().as_u64(),
        )
    }
}

pub(crate) type ThreadList = LinkedList<RunAdapter>;
pub(crate) type SleepTree = RBTree<SleepAdapter>;

/// Removes `thread` from `list`, which the caller knows it is on.
///
/// The caller's knowledge comes from the thread's scheduling state (`Ready` on this CPU at
/// this level, or `Blocked` on this object), kept in step with list membership by every
/// operation of [`crate::Sched`]; the checker verifies that correspondence in tests.
pub(crate) fn remove_from_list(list: &mut ThreadList, thread: &Thread) -> Option<Arc<Thread>> {
    if !thread.run_link.is_linked() {
        return None;
    }
    #[allow(
        unsafe_code,
        reason = "intrusive removal by pointer; see the SAFETY note"
    )]
    // SAFETY: the thread is linked (checked above), and a thread's `run_link` is on at most one
    // list, which the scheduling state names; callers pass that list.
    let mut cursor = unsafe { list.cursor_mut_from_ptr(thread) };
    cursor.remove()
}

/// Removes `thread` from `tree`, which the caller knows it is on.
pub(crate) fn remove_from_tree(tree: &mut SleepTree, thread: &Thread) -> Option<Arc<Thread>> {
    if !thread.sleep_link.is_linked() {
        return None;
    }
    #[allow(
        unsafe_code,
        reason = "intrusive removal by pointer; see the SAFETY note"
    )]
    // SAFETY: the thread is linked, and its `sleep_link` is only ever on the sleep tree of the
    // CPU its scheduling state names, which callers pass.
    let mut cursor = unsafe { tree.cursor_mut_from_ptr(thread) };
    cursor.remove()
}
