//! Test app: lines typed on the serial console arrive through COM1's receive interrupt (a
//! threaded handler: the top half drains the UART, the bottom-half thread queues the bytes)
//! and are echoed back. The harness types after it sees "echo: ready".
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

rhea::main!(main);

fn main() -> Result<(), &'static str> {
    rhea::println!("echo: ready");
    for expected in ["hello rhea", "second line"] {
        let mut buf = [0u8; 128];
        let n = rhea::console::read_line(&mut buf);
        let line = core::str::from_utf8(&buf[..n])
            .map_err(|_| "not UTF-8")?
            .trim_end();
        rhea::println!("echo: got {line:?}");
        if line != expected {
            return Err("the line read is not the line typed");
        }
    }
    let (dropped, errors) = rhea::console::input_losses();
    if dropped != 0 || errors != 0 {
        return Err("input bytes were lost");
    }
    rhea::println!("echo: PASS");
    Ok(())
}
