//! Copies the symbol table xtask generated (`RHEA_SYMTAB`, a file path) into `OUT_DIR`, or
//! writes an empty table when there is none (host builds, `cargo clippy`).
use std::{env, fs, path::PathBuf};

fn main() {
    println!("cargo::rerun-if-env-changed=RHEA_SYMTAB");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("symtab.bin");
    let bytes = match env::var_os("RHEA_SYMTAB") {
        Some(path) if !path.is_empty() => {
            println!("cargo::rerun-if-changed={}", PathBuf::from(&path).display());
            fs::read(&path).unwrap_or_default()
        }
        _ => Vec::new(),
    };
    fs::write(out, bytes).expect("OUT_DIR is writable");
}
