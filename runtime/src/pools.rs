//! What every named memory pool holds, for reports (`rhea-shell`'s `mem`): the kernel's
//! [`BlockPool`](crate::sync::BlockPool)s made with a name, and pools other crates keep (the
//! network's frame buffers) that register a [`PoolUsage`].
//!
//! The registry keeps weak references: a pool that is dropped leaves it by itself (the entry
//! is pruned at the next listing). Thread context only (registration, listing); never taken
//! in an interrupt handler, nothing taken under it.

use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;

use crate::sync::{NothingOff, SpinLock};

/// One pool's use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolInfo {
    /// Its name (`net frames`, an app's name for its pool).
    pub name: &'static str,
    /// Its blocks.
    pub blocks: usize,
    /// Each block's size in bytes.
    pub block_bytes: usize,
    /// Blocks out now.
    pub in_use: usize,
    /// The most blocks out at once so far.
    pub peak: usize,
}

/// A pool that reports its use.
pub trait PoolUsage: Send + Sync {
    /// Its use now.
    fn usage(&self) -> PoolInfo;
}

/// The registered pools, at most [`MAX_POOLS`].
static POOLS: SpinLock<Vec<Weak<dyn PoolUsage>>, NothingOff> = SpinLock::new(Vec::new());

/// Pools registered at once, at most (a report lists them all; more are not listed).
pub const MAX_POOLS: usize = 64;

/// Lists `pool` in [`pools`] for as long as it lives. `false` when [`MAX_POOLS`] live pools
/// are listed already (or the heap has no room for the entry): it is then not listed.
pub fn register(pool: &Arc<dyn PoolUsage>) -> bool {
    let mut list = POOLS.lock();
    list.retain(|w| w.strong_count() > 0);
    if list.len() >= MAX_POOLS || list.try_reserve(1).is_err() {
        return false;
    }
    list.push(Arc::downgrade(pool));
    true
}

/// Every live registered pool's use, in the order they were registered.
pub fn pools() -> Vec<PoolInfo> {
    let live: Vec<Arc<dyn PoolUsage>> = {
        let mut list = POOLS.lock();
        list.retain(|w| w.strong_count() > 0);
        list.iter().filter_map(Weak::upgrade).collect()
    };
    // Asked outside the lock: a pool's report may take its own.
    live.iter().map(|p| p.usage()).collect()
}
