//! The shell on the serial console, as `cargo xtask test`'s shell cases drive it: a worker
//! thread at priority 7 for the commands to find and change, an app command (`answer`), and
//! `done`, after which the app checks from its side what the commands did to the kernel; and
//! a named block pool with 3 of 8 blocks out, which `mem` must report.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use core::fmt::Write;

use rhea::sync::Semaphore;
use rhea::thread::{Builder, Priority};
use rhea::time::Duration;
use rhea_shell::{Args, Command, CommandResult, ConsoleStart, Session, Shell};

rhea::main!(main);

/// Signalled by `done`.
static DONE: Semaphore = Semaphore::new(0, 1);

fn answer(s: &mut Session, a: &Args<'_>) -> CommandResult {
    let n = a.number_in(0, "n", 0, 1000)?;
    if n != 42 {
        return Err(alloc::format!("{n} is not the answer"));
    }
    let _ = writeln!(s, "answer: 42 it is");
    Ok(())
}

fn done(s: &mut Session, _: &Args<'_>) -> CommandResult {
    let _ = writeln!(s, "done: the app checks");
    s.flush();
    s.end_session();
    DONE.give().map_err(|e| alloc::format!("{e:?}"))
}

fn main() {
    // A named pool with 3 of its 8 blocks out, for `mem` to report.
    let pool = rhea::sync::BlockPool::new(8, 64).expect("8 × 64 bytes");
    assert!(pool.register("test-pool"), "the pool registry has room");
    let held: alloc::vec::Vec<_> = (0..3).map(|_| pool.try_alloc().expect("a block")).collect();
    let worker = Builder::new()
        .name("worker")
        .priority(Priority::new(7).expect("valid"))
        .spawn(|| {
            loop {
                rhea::thread::sleep(Duration::from_millis(20));
            }
        })
        .expect("the worker starts");
    let mut shell = Shell::new();
    let added = [
        shell.add(Command {
            name: "answer",
            usage: "<n>",
            help: "checks an app command's argument",
            run: answer,
        }),
        shell.add(Command {
            name: "done",
            usage: "",
            help: "ends the test: the app checks what the commands did",
            run: done,
        }),
        shell.add(rhea_shell::builtin::FILES[0]),
        shell.add(rhea_shell::builtin::FILES[1]),
        shell.add(rhea_shell::builtin::FILES[2]),
    ];
    // A name the shell has already, and a usage that does not parse: refused.
    let refused = [
        shell.add(Command {
            name: "threads",
            usage: "",
            help: "",
            run: answer,
        }),
        shell.add(Command {
            name: "bad",
            usage: "<a",
            help: "",
            run: answer,
        }),
    ];
    assert!(added.iter().all(Result::is_ok), "{added:?}");
    for r in &refused {
        match r {
            Err(e) => rhea::println!("shell-console: refused as it should be: {e}"),
            Ok(()) => panic!("a bad command was added"),
        }
    }
    // Said before the shell's first prompt, which the driver waits for next.
    rhea::println!("shell-console: ready");
    rhea_shell::start_console(shell, ConsoleStart::Always).expect("the console shell starts");
    DONE.take().expect("done is given");
    // What the session did, seen from here: `prio worker 9` was typed.
    let eff = rhea::thread::effective_priority(worker.id()).map(|p| p.level());
    rhea::println!("shell-console: worker priority now {eff:?}");
    assert_eq!(
        eff,
        Some(9),
        "the shell's prio command did not reach the kernel"
    );
    let info = rhea::thread::threads();
    let shell_thread = info
        .iter()
        .find(|t| t.times.name == "shell")
        .expect("the shell runs");
    assert_eq!(shell_thread.sched.base.level(), 4, "rhea.shell_prio=4");
    // The blocks `mem` saw out go back; the registry reports the pool empty again.
    drop(held);
    let pools = rhea::pools::pools();
    let p = pools
        .iter()
        .find(|p| p.name == "test-pool")
        .expect("the pool is listed");
    assert_eq!((p.in_use, p.peak), (0, 3), "{p:?}");
    drop(pool);
    assert!(
        rhea::pools::pools().iter().all(|p| p.name != "test-pool"),
        "a dropped pool is still listed"
    );
    rhea::println!("shell-console: PASS");
}
