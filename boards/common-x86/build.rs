//! Relinks the images when the board's linker script changes: xtask passes it to the linker
//! by path (`-T`), which cargo does not see, so an edit alone would leave stale images.
fn main() {
    println!("cargo:rerun-if-changed=link.ld");
}
