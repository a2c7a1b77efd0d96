//! The built-in commands, over the kernel's public API only (`rhea::thread`, `rhea::memory`,
//! `rhea::irq`, `rhea::trace`, `rhea_net`): what an operator of a running appliance asks.
//!
//! Commands that change a thread (`prio`, `affinity`, `suspend`, `resume`) refuse kernel
//! service threads — idle, interrupt, driver and network threads — with the reason: their
//! priorities and CPUs are part of how the kernel keeps its promises, and a suspended one
//! stops a device or a CPU. `suspend` also refuses the shell's own thread (nothing could
//! resume it).

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt::Write;

use rhea::thread::{CpuSet, Priority, RunState, ThreadId, ThreadInfo};
use rhea::time::Duration;

use crate::{Args, Command, CommandResult, Session};

/// `net`: the interface, its address, counters, drops and sockets (feature `net`). Not among
/// [`COMMANDS`]: apps with a network add it ([`crate::Shell::add`]); an app without one does
/// not link the network stack through the shell.
#[cfg(feature = "net")]
pub static NET: Command = cmd(
    "net",
    "",
    "the interface, its address, counters, drops and sockets",
    net,
);

/// `ls`, `cat`, `df`: files (`rhea::fs`). Not among [`COMMANDS`]: apps that use files add
/// them ([`crate::Shell::add`]); an app without files does not link the file system through
/// the shell (about 80 KiB).
pub static FILES: [Command; 3] = [
    cmd(
        "ls",
        "[path]",
        "a directory's entries (or a file's line): kind, size, name",
        ls,
    ),
    cmd("cat", "<path>", "a file's text (at most 64 KiB shown)", cat),
    cmd(
        "df",
        "",
        "the mounted file systems: kind, use, limit, nodes",
        df,
    ),
];

/// Every built-in command but [`NET`] and [`FILES`], by name.
pub static COMMANDS: &[Command] = &[
    cmd(
        "affinity",
        "<thread> <cpus>",
        "set the CPUs a thread may run on (0,2-3 or all)",
        affinity,
    ),
    cmd(
        "cpus",
        "",
        "CPUs online, their load, idle and stolen time, switches",
        cpus,
    ),
    cmd("exit", "", "end this session", exit),
    cmd(
        "help",
        "[command]",
        "list the commands, or say what one does",
        help,
    ),
    cmd(
        "irq",
        "",
        "interrupts per vector and per CPU, with what each vector is",
        irq,
    ),
    cmd("mem", "", "heap, free frames, stacks, named pools", mem),
    cmd("poweroff", "", "end the kernel (success)", poweroff),
    cmd(
        "prio",
        "<thread> <priority>",
        "set a thread's base priority (1-63)",
        prio,
    ),
    cmd("ps", "", "the threads (as threads)", threads),
    cmd(
        "reboot",
        "",
        "restart the machine, where the board can",
        reboot,
    ),
    cmd(
        "resume",
        "<thread>",
        "let a suspended thread run again",
        resume,
    ),
    cmd(
        "suspend",
        "<thread>",
        "stop a thread until it is resumed",
        suspend,
    ),
    cmd(
        "threads",
        "",
        "id, name, CPU, state, base/effective priority, affinity, run time, switches",
        threads,
    ),
    cmd(
        "top",
        "[interval-ms]",
        "threads by CPU use, refreshed until a key",
        top,
    ),
    cmd(
        "trace",
        "[what] [arg]",
        "status | on [cats] | off | mode ring|full|freeze | freeze | thaw | clear | dump",
        trace,
    ),
    cmd("uptime", "", "time since boot", uptime),
    cmd(
        "version",
        "",
        "the kernel's version and command line",
        version,
    ),
];

const fn cmd(
    name: &'static str,
    usage: &'static str,
    help: &'static str,
    run: fn(&mut Session, &Args<'_>) -> CommandResult,
) -> Command {
    Command {
        name,
        usage,
        help,
        run,
    }
}

/// Writes to the session (its output cannot fail: a gone peer is noticed by the session).
macro_rules! out {
    ($s:expr, $($arg:tt)*) => {
        let _ = writeln!($s, $($arg)*);
    };
}

fn help(s: &mut Session, a: &Args<'_>) -> CommandResult {
    let commands = s.commands.clone();
    match a.get(0) {
        Some(name) => {
            let Some((name, usage, help)) = commands.iter().find(|c| c.0 == name) else {
                return Err(format!("{name:?}: no such command"));
            };
            out!(s, "{name} {usage}\n  {help}");
        }
        None => {
            for (name, usage, help) in &commands {
                let head = format!("{name} {usage}");
                out!(s, "{head:<28} {help}");
            }
        }
    }
    Ok(())
}

fn exit(s: &mut Session, _: &Args<'_>) -> CommandResult {
    s.end = true;
    Ok(())
}

/// A thread named by its id (`T3.0`), its slot number (`3`) or its name (if one thread has it).
fn find_thread(arg: &str) -> Result<ThreadInfo, String> {
    let all = rhea::thread::threads();
    let by_id = |t: &&ThreadInfo| format!("{:?}", t.times.id) == arg;
    if let Some(t) = all.iter().find(by_id) {
        return Ok(t.clone());
    }
    if let Ok(slot) = arg.parse::<u64>() {
        return all
            .iter()
            .find(|t| t.times.id.as_u64() & 0xffff_ffff == slot)
            .cloned()
            .ok_or_else(|| format!("no thread in slot {slot}"));
    }
    let named: Vec<&ThreadInfo> = all.iter().filter(|t| t.times.name == arg).collect();
    match named.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(format!("no thread {arg:?} (threads lists them)")),
        many => Err(format!(
            "{} threads are named {arg:?}: name one by its id ({})",
            many.len(),
            many.iter()
                .map(|t| format!("{:?}", t.times.id))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// The thread `arg` names, unless it is a kernel service thread (`what` is refused for it).
fn app_thread(arg: &str, what: &str) -> Result<ThreadInfo, String> {
    let t = find_thread(arg)?;
    if t.kernel {
        return Err(format!(
            "{:?} '{}' is a kernel thread: {what} is refused (the kernel's service depends on it)",
            t.times.id, t.times.name
        ));
    }
    Ok(t)
}

fn state_name(t: &ThreadInfo) -> String {
    let base = match t.sched.state {
        RunState::Ready => "ready",
        RunState::Running => "running",
        RunState::Blocked => "blocked",
        RunState::Suspended => "suspended",
    };
    match (t.sched.blocked_on, t.sched.suspend_pending) {
        (_, true) => format!("{base}+susp"),
        (Some(on), false) => format!("{base}:{on}"),
        (None, false) => String::from(base),
    }
}

/// `0-3`, `0,2`, `all`.
fn cpus_text(set: CpuSet) -> String {
    let online = rhea::thread::online_cpus();
    if online.iter().all(|c| set.contains(c)) {
        return String::from("all");
    }
    let cpus: Vec<String> = set.iter().map(|c| format!("{c}")).collect();
    cpus.join(",")
}

fn parse_cpus(text: &str) -> Result<CpuSet, String> {
    if text == "all" {
        return Ok(CpuSet::ALL);
    }
    let mut bits = 0u64;
    for part in text.split(',') {
        let (lo, hi) = match part.split_once('-') {
            Some((lo, hi)) => (lo, hi),
            None => (part, part),
        };
        let num = |t: &str| -> Result<u32, String> {
            t.parse::<u32>()
                .ok()
                .filter(|&c| c < 64)
                .ok_or_else(|| format!("{text:?} is not a CPU list (0,2-3 or all; CPUs 0-63)"))
        };
        let (lo, hi) = (num(lo)?, num(hi)?);
        if lo > hi {
            return Err(format!("{text:?}: {lo}-{hi} is backwards"));
        }
        for c in lo..=hi {
            bits |= 1 << c;
        }
    }
    Ok(CpuSet::from_bits(bits))
}

fn ms(ns: u64) -> String {
    format!("{}.{:03}", ns / 1_000_000, (ns / 1_000) % 1_000)
}

/// The heading of the columns `threads` and `top` share.
fn thread_heading() -> String {
    format!(
        "{:<8} {:<18} {:>3} {:<18} {:>5}",
        "ID", "NAME", "CPU", "STATE", "PRIO"
    )
}

/// The columns `threads` and `top` share: id, name (cut at 18), CPU, state, base/effective
/// priority.
fn thread_columns(t: &ThreadInfo) -> String {
    let name: String = t.times.name.chars().take(18).collect();
    format!(
        "{:<8} {:<18} {:>3} {:<18} {:>2}/{:<2}",
        format!("{:?}", t.times.id),
        name,
        t.sched.cpu,
        state_name(t),
        t.sched.base.level(),
        t.sched.effective.level()
    )
}

fn threads(s: &mut Session, _: &Args<'_>) -> CommandResult {
    out!(
        s,
        "{} {:<8} {:>12} {:>9} K",
        thread_heading(),
        "AFFINITY",
        "RUN ms",
        "SWITCHES"
    );
    for t in rhea::thread::threads() {
        out!(
            s,
            "{} {:<8} {:>12} {:>9} {}",
            thread_columns(&t),
            cpus_text(t.sched.affinity),
            ms(t.times.run_ns),
            t.times.switches_in,
            if t.kernel { "k" } else { "" }
        );
    }
    Ok(())
}

fn top(s: &mut Session, a: &Args<'_>) -> CommandResult {
    let interval = match a.get(0) {
        Some(_) => a.number_in(0, "interval-ms", 100, 60_000)?,
        None => 1000,
    };
    let interval = Duration::from_millis(interval);
    // The first frame counts from boot (no earlier sample), the others from the frame before.
    let mut before: Vec<(ThreadId, u64)> = Vec::new();
    let mut idle_before: Vec<u64> = Vec::new();
    let mut at = rhea::time::Instant::ZERO;
    loop {
        let now = rhea::time::now();
        let span = now.saturating_duration_since(at).as_nanos().max(1) as u64;
        at = now;
        let list = rhea::thread::threads();
        let online: Vec<usize> = rhea::thread::online_cpus().iter().collect();
        let idle: Vec<u64> = online
            .iter()
            .map(|&c| rhea::thread::cpu_idle_ns(c))
            .collect();
        s.clear_screen();
        out!(
            s,
            "top: every {} ms, until a key  (uptime {} s)",
            interval.as_millis(),
            now.as_nanos() / 1_000_000_000
        );
        let mut load = String::new();
        for (i, &c) in online.iter().enumerate() {
            let was = idle_before.get(i).copied().unwrap_or(0);
            let idle_pct = (idle[i].saturating_sub(was) * 100 / span).min(100);
            let _ = write!(load, " cpu{c} {:>3}%", 100 - idle_pct);
        }
        out!(s, "load:{load}");
        // A thread not in the last frame counts its whole run time (it began since).
        let mut rows: Vec<(u64, &ThreadInfo)> = list
            .iter()
            .map(|t| {
                let was = before
                    .iter()
                    .find(|(id, _)| *id == t.times.id)
                    .map_or(0, |(_, r)| *r);
                (t.times.run_ns.saturating_sub(was), t)
            })
            .collect();
        // The busiest first (a selection, not a sort: 20 rows, and no sort's code in the
        // image).
        for i in 0..rows.len().min(20) {
            let most = (i..rows.len()).max_by_key(|&j| rows[j].0).unwrap_or(i);
            rows.swap(i, most);
        }
        out!(s, "{} {:>6}", thread_heading(), "CPU%");
        for (delta, t) in rows.iter().take(20) {
            out!(s, "{} {:>5}%", thread_columns(t), delta * 100 / span);
        }
        before = list.iter().map(|t| (t.times.id, t.times.run_ns)).collect();
        idle_before = idle;
        if s.wait_key(interval).is_some() || s.cancelled() {
            return Ok(());
        }
    }
}

fn irq(s: &mut Session, _: &Args<'_>) -> CommandResult {
    let cpus: Vec<usize> = rhea::thread::online_cpus().iter().collect();
    let mut head = format!("{:<7} {:>10}", "VECTOR", "TOTAL");
    for c in &cpus {
        let _ = write!(head, " {:>9}", format!("cpu{c}"));
    }
    out!(s, "{head}  WHAT");
    let mut any = false;
    for v in 0..=255u8 {
        let n = rhea::irq::count(v);
        if n == 0 {
            continue;
        }
        any = true;
        let mut row = format!("{:<#7x} {:>10}", v, n);
        for &c in &cpus {
            let _ = write!(row, " {:>9}", rhea::irq::count_on(c, v));
        }
        out!(s, "{row}  {}", rhea::irq::describe(v));
    }
    if !any {
        out!(s, "(none handled yet)");
    }
    Ok(())
}

fn mem(s: &mut Session, _: &Args<'_>) -> CommandResult {
    let m = rhea::memory_stats();
    let kib = |b: u64| b >> 10;
    out!(
        s,
        "heap: {} KiB used, {} KiB free",
        kib(m.heap_used_bytes as u64),
        kib(m.heap_free_bytes as u64)
    );
    out!(s, "frames: {} KiB free", kib(m.free_frame_bytes));
    out!(s, "stacks: {} ({} KiB)", m.stacks, kib(m.stack_bytes));
    let pools = rhea::pools::pools();
    if pools.is_empty() {
        out!(s, "pools: none registered");
        return Ok(());
    }
    out!(
        s,
        "{:<20} {:>7} {:>7} {:>7} {:>7} {:>9}",
        "POOL",
        "BLOCKS",
        "BYTES",
        "IN-USE",
        "PEAK",
        "KIB"
    );
    for p in &pools {
        out!(
            s,
            "{:<20} {:>7} {:>7} {:>7} {:>7} {:>9}",
            p.name,
            p.blocks,
            p.block_bytes,
            p.in_use,
            p.peak,
            kib((p.blocks * p.block_bytes) as u64)
        );
    }
    Ok(())
}

#[cfg(feature = "net")]
fn net(s: &mut Session, _: &Args<'_>) -> CommandResult {
    let Some(addr) = rhea_net::address() else {
        out!(s, "no network (not started, or no address yet)");
        return Ok(());
    };
    let n = rhea_net::stats();
    out!(s, "address: {addr}");
    out!(s, "frames: rx {} tx {}", n.rx_frames, n.tx_frames);
    out!(
        s,
        "drops: rx ring full {}, tx ring full {}, pool empty {}, device errors {}, malformed {}",
        n.rx_ring_full,
        n.tx_ring_full,
        n.pool_empty,
        n.device_errors,
        n.malformed.total()
    );
    out!(
        s,
        "tcp: refused {}, evicted {}, half-open given up {}, orphans reset {}",
        n.tcp_refused,
        n.tcp_evicted,
        n.syn_recycled,
        n.orphans_reset
    );
    out!(
        s,
        "udp: dropped {}, unreachable {}",
        n.udp_dropped,
        n.udp_unreachable
    );
    out!(
        s,
        "sockets: {} KiB of {} KiB budget; refused for memory {}",
        n.socket_bytes >> 10,
        n.socket_budget >> 10,
        n.no_memory
    );
    let list = rhea_net::sockets().map_err(|e| format!("{e:?}"))?;
    out!(
        s,
        "{:<5} {:<22} {:<22} {:<12} {:>7} {:>7}",
        "PROTO",
        "LOCAL",
        "REMOTE",
        "STATE",
        "RECV-Q",
        "SEND-Q"
    );
    for k in &list {
        let local = k.local.map_or(String::from("-"), |l| match l.addr {
            Some(a) => format!("{a}:{}", l.port),
            None => format!("*:{}", l.port),
        });
        let remote = k.remote.map_or(String::from("-"), |r| format!("{r}"));
        out!(
            s,
            "{:<5} {:<22} {:<22} {:<12} {:>7} {:>7}",
            k.kind,
            local,
            remote,
            k.state,
            k.recv_queue,
            k.send_queue
        );
    }
    Ok(())
}

fn cpus(s: &mut Session, _: &Args<'_>) -> CommandResult {
    let up = rhea::time::now().as_nanos().max(1);
    out!(
        s,
        "{:<4} {:>6} {:>12} {:>12} {:>10}",
        "CPU",
        "BUSY%",
        "IDLE ms",
        "STOLEN ms",
        "SWITCHES"
    );
    for c in rhea::thread::online_cpus().iter() {
        let idle = rhea::thread::cpu_idle_ns(c);
        let stolen = rhea::thread::cpu_stolen_ns(c).map_or(String::from("-"), ms);
        out!(
            s,
            "{:<4} {:>5}% {:>12} {:>12} {:>10}",
            c,
            100 - (idle.min(up) * 100 / up),
            ms(idle),
            stolen,
            rhea::thread::cpu_switches(c)
        );
    }
    Ok(())
}

fn prio(s: &mut Session, a: &Args<'_>) -> CommandResult {
    let t = app_thread(a.get(0).unwrap_or(""), "changing its priority")?;
    let level = a.number_in(1, "priority", 1, 63)? as u32;
    let p = Priority::new(level).map_err(|e| format!("{e:?}"))?;
    rhea::thread::set_priority(t.times.id, p).map_err(|e| format!("{e:?}"))?;
    let eff = rhea::thread::effective_priority(t.times.id).map_or(0, |p| p.level());
    out!(
        s,
        "{:?} '{}': priority {} (effective {eff})",
        t.times.id,
        t.times.name,
        level
    );
    Ok(())
}

fn affinity(s: &mut Session, a: &Args<'_>) -> CommandResult {
    let t = app_thread(a.get(0).unwrap_or(""), "changing its CPUs")?;
    let set = parse_cpus(a.get(1).unwrap_or(""))?;
    rhea::thread::set_affinity(t.times.id, set).map_err(|e| match e {
        rhea::thread::SchedError::NoUsableCpu => {
            format!("none of {} is online", a.get(1).unwrap_or(""))
        }
        e => format!("{e:?}"),
    })?;
    out!(
        s,
        "{:?} '{}': CPUs {}",
        t.times.id,
        t.times.name,
        cpus_text(set)
    );
    Ok(())
}

fn suspend(s: &mut Session, a: &Args<'_>) -> CommandResult {
    let t = app_thread(a.get(0).unwrap_or(""), "suspending it")?;
    if t.times.id == rhea::thread::current() {
        return Err(String::from(
            "that is this shell's own thread: nothing could resume it",
        ));
    }
    rhea::thread::suspend(t.times.id).map_err(|e| format!("{e:?}"))?;
    out!(s, "{:?} '{}' suspended", t.times.id, t.times.name);
    Ok(())
}

fn resume(s: &mut Session, a: &Args<'_>) -> CommandResult {
    let t = app_thread(a.get(0).unwrap_or(""), "resuming it")?;
    rhea::thread::resume(t.times.id).map_err(|e| format!("{e:?}"))?;
    out!(s, "{:?} '{}' resumed", t.times.id, t.times.name);
    Ok(())
}

fn trace(s: &mut Session, a: &Args<'_>) -> CommandResult {
    use rhea::trace;
    let what = a.get(0).unwrap_or("status");
    let needs_buffers = what != "status";
    if needs_buffers && !trace::available() {
        return Err(String::from(
            "no trace buffers: boot with rhea.trace=<categories> (or rhea.trace=off: buffers, \
             nothing recorded until `trace on`)",
        ));
    }
    match (what, a.get(1)) {
        ("status", None) => {
            if !trace::available() {
                out!(
                    s,
                    "tracing: no buffers (boot with rhea.trace=... to have them)"
                );
                return Ok(());
            }
            out!(
                s,
                "tracing: categories {:#x}, mode {:?}{}",
                trace::categories(),
                trace::mode(),
                if trace::is_frozen() { ", frozen" } else { "" }
            );
            for (cpu, c) in trace::counts().iter().enumerate() {
                out!(
                    s,
                    "cpu{cpu}: {} held, {} dropped, {} overwritten",
                    c.held,
                    c.dropped,
                    c.overwritten
                );
            }
        }
        ("on", cats) => {
            trace::set_categories_str(cats.unwrap_or("all")).map_err(|e| format!("{e}"))?;
            out!(s, "tracing: categories {:#x}", trace::categories());
        }
        ("off", None) => {
            trace::set_categories(0);
            out!(s, "tracing: off");
        }
        ("mode", Some(m)) => {
            let mode = match m {
                "ring" => trace::Mode::Ring,
                "full" => trace::Mode::UntilFull,
                "freeze" => trace::Mode::Freeze,
                other => return Err(format!("mode {other:?}: ring, full or freeze")),
            };
            trace::set_mode(mode);
            out!(s, "tracing: mode {mode:?}");
        }
        ("freeze", None) => {
            trace::freeze("shell");
            out!(s, "tracing: frozen");
        }
        ("thaw", None) => {
            trace::thaw();
            out!(s, "tracing: recording");
        }
        ("clear", None) => {
            trace::clear();
            out!(s, "tracing: cleared");
        }
        ("dump", None) => {
            // The framed dump `cargo xtask trace --from` reads.
            trace::dump_to(|line| {
                let _ = write!(s, "{line}");
            });
        }
        (other, _) => {
            return Err(format!(
                "{other:?}: status, on [cats], off, mode ring|full|freeze, freeze, thaw, clear \
                 or dump"
            ));
        }
    }
    Ok(())
}

/// `ls [path]`: one line per entry — kind (`d`, `-`, `l`, `?`), size in bytes, name (a
/// link's target after `->`). Default `/`.
fn ls(s: &mut Session, a: &Args<'_>) -> CommandResult {
    let path = a.get(0).unwrap_or("/");
    let meta = rhea::fs::symlink_metadata(path).map_err(|e| e.to_string())?;
    let line = |s: &mut Session, full: &str, name: &str, kind: rhea::fs::FileType| {
        let m = rhea::fs::symlink_metadata(full).ok();
        let size = m.map_or(0, |m| m.len);
        let mark = match kind {
            rhea::fs::FileType::Dir => 'd',
            rhea::fs::FileType::File => '-',
            rhea::fs::FileType::Symlink => 'l',
            rhea::fs::FileType::Other => '?',
        };
        match rhea::fs::read_link(full)
            .ok()
            .filter(|_| kind == rhea::fs::FileType::Symlink)
        {
            Some(t) => {
                out!(s, "{mark} {size:>10} {} -> {}", Shown(name), Shown(&t));
            }
            None => {
                out!(s, "{mark} {size:>10} {}", Shown(name));
            }
        }
    };
    if !meta.is_dir() {
        line(s, path, path, meta.kind);
        return Ok(());
    }
    let entries = rhea::fs::read_dir(path).map_err(|e| e.to_string())?;
    let base = path.trim_end_matches('/');
    for e in &entries {
        let full = alloc::format!("{base}/{}", e.name);
        line(s, &full, &e.name, e.kind);
    }
    out!(s, "{} entries", entries.len());
    Ok(())
}

/// A name from a file system, shown with its control characters escaped (a name can hold
/// an escape sequence meant for the terminal).
struct Shown<'a>(&'a str);

impl core::fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for c in self.0.chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// The most of a file `cat` shows.
const CAT_MAX: usize = 64 << 10;

/// `cat <path>`: the file's bytes as text (control characters but tab and newline escaped),
/// at most [`CAT_MAX`] of them.
fn cat(s: &mut Session, a: &Args<'_>) -> CommandResult {
    let path = a.get(0).unwrap_or("");
    let mut f = rhea::fs::File::open(path).map_err(|e| e.to_string())?;
    let len = f.metadata().map_err(|e| e.to_string())?.len;
    let mut buf = [0u8; 512];
    let mut shown = 0;
    let mut text = String::new();
    while shown < CAT_MAX {
        let n = f.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        shown += n;
        for c in String::from_utf8_lossy(&buf[..n]).chars() {
            match c {
                '\n' => {
                    out!(s, "{text}");
                    text.clear();
                }
                '\t' => text.push(c),
                c if c.is_control() => text.push_str(&alloc::format!("\\x{:02x}", c as u32)),
                c => text.push(c),
            }
        }
    }
    if !text.is_empty() {
        out!(s, "{text}");
    }
    if len > shown as u64 {
        out!(s, "({} more bytes not shown)", len - shown as u64);
    }
    Ok(())
}

/// `df`: every mount with its kind, bytes used, limit and nodes.
fn df(s: &mut Session, _: &Args<'_>) -> CommandResult {
    let mounts = rhea::fs::mounts().map_err(|e| e.to_string())?;
    out!(
        s,
        "{:<24} {:<10} {:>12} {:>12} {:>8}",
        "MOUNT",
        "KIND",
        "USED",
        "LIMIT",
        "NODES"
    );
    for m in &mounts {
        let limit = m
            .usage
            .limit
            .map_or(String::from("-"), |l| alloc::format!("{l}"));
        out!(
            s,
            "{:<24} {:<10} {:>12} {:>12} {:>8}",
            Shown(&m.at).to_string(),
            m.kind,
            m.usage.used,
            limit,
            m.usage.nodes
        );
    }
    Ok(())
}

fn uptime(s: &mut Session, _: &Args<'_>) -> CommandResult {
    let ns = rhea::time::now().as_nanos();
    let secs = ns / 1_000_000_000;
    out!(
        s,
        "up {}d {:02}:{:02}:{:02}.{:03}",
        secs / 86_400,
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60,
        (ns / 1_000_000) % 1000
    );
    Ok(())
}

fn version(s: &mut Session, _: &Args<'_>) -> CommandResult {
    out!(s, "Rhea {}", env!("CARGO_PKG_VERSION"));
    out!(s, "command line: {}", rhea::cmdline());
    Ok(())
}

fn poweroff(s: &mut Session, _: &Args<'_>) -> CommandResult {
    out!(s, "powering off");
    s.flush();
    rhea::exit(rhea::ExitStatus::Success)
}

fn reboot(s: &mut Session, _: &Args<'_>) -> CommandResult {
    out!(s, "rebooting");
    s.flush();
    let why = rhea::reboot();
    Err(format!("cannot reboot: {why}"))
}
