//! Test app: two threads that each wait for the other's semaphore, with no timeout, in LinuxU's
//! simulation mode with standard input at end of file (the test harness gives /dev/null). The
//! simulation must report the deadlock and end the run with a failure, instead of waiting
//! forever for console input that cannot come.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use rhea::sync::Semaphore;
use rhea::thread::Builder;

rhea::main!(main);

static PING: Semaphore = Semaphore::new(0, 1);
static PONG: Semaphore = Semaphore::new(0, 1);

fn main() -> Result<(), &'static str> {
    let partner = Builder::new()
        .name("partner")
        .spawn(|| {
            let _ = PING.take();
            let _ = PONG.give();
        })
        .map_err(|_| "spawn")?;
    rhea::println!("sim-deadlock: main and its partner wait for each other");
    let _ = PONG.take();
    let _ = PING.give();
    drop(partner);
    Err("the deadlock was not detected")
}
