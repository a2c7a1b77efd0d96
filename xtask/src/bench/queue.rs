//! `cargo xtask bench queue`: `rhea-queue`'s SPSC ring and MPMC queue between two host
//! threads, next to `std::sync::mpsc` measured in the same run: throughput and one-way
//! latency, with ratios and the conditions (host CPU, cores, load). The measuring program is
//! `lib/queue/examples/bench.rs`, built with the workspace's release profile. Figures only:
//! it never passes or fails on timing.

use crate::{Options, Result, Workspace, describe, fail};

pub(crate) fn bench(ws: &Workspace, _opts: &Options) -> Result<()> {
    let mut cmd = ws.cargo();
    cmd.args(["run", "--release", "-p", "rhea-queue", "--example", "bench"]);
    println!("== {}", describe(&cmd));
    match cmd.status() {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => fail(format!("queue bench: {s}")),
        Err(e) => fail(format!("cannot run cargo: {e}")),
    }
}
