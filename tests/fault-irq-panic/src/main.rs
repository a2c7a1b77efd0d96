//! Test app: a panic in a fast interrupt handler must be reported as a panic in interrupt
//! context — which CPU, which vector — rather than "in thread 'main'" (the handler runs on the
//! interrupted thread's stack, so the stack alone names that thread), and end the run with a
//! failure.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

rhea::main!(main);

#[inline(never)]
fn on_interrupt(_: usize) {
    panic!("the interrupt handler gave up");
}

fn main() -> Result<(), &'static str> {
    let vector = rhea::irq::register_fast(on_interrupt, 0).map_err(|_| "register")?;
    rhea::println!("irq-panic: raising vector {vector:#04x}");
    rhea::irq::raise_self(vector);
    // The handler runs at once (or at the next kernel entry); the panic ends the run.
    for _ in 0..50 {
        rhea::thread::sleep(rhea::time::Duration::from_millis(100));
    }
    Err("the interrupt handler never ran")
}
