//! `cmdline`: the kernel command line as a loader or `--append` gives it — the strict
//! `rhea.*` parser ([`rhea_hal::cmdline`]: [`parse`] of the whole line, then every known key
//! read with its type), the network stack's `rhea.net.*` keys
//! ([`rhea_net::Config::with_cmdline`]), the SSH server's `rhea.ssh.*` keys and key material
//! ([`rhea_shell_core::ssh_config`], [`rhea_shell_core::keys`]: the line, and the line as one
//! key) and the Arm boards' early `rhea.cpus=` read ([`cpus_from_cmdline`]) — with every error
//! rendered as the console would print it.
//! Invariant: a value or an error naming the argument, never a panic.
//!
//! Input: the line's bytes (lossily UTF-8: boot protocols hand over checked UTF-8 or bytes the
//! board converts).

use rhea_board_common_arm::platform::cpus_from_cmdline;
use rhea_hal::cmdline::{Cmdline, Kind, keys, parse};
use std::fmt::Write;

/// Runs one input.
pub fn run(data: &[u8]) {
    let line = String::from_utf8_lossy(data);
    let mut out = String::new();
    match parse(&line) {
        Ok(c) => {
            let _ = c.as_str();
        }
        Err(e) => {
            let _ = write!(out, "{e}");
        }
    }
    let c = Cmdline::new(&line);
    let _ = c.args().count();
    for key in keys::ALL {
        let _ = c.value(key.name);
        match key.kind {
            Kind::Flag => {
                if let Err(e) = c.flag(key) {
                    let _ = write!(out, "{e}");
                }
            }
            Kind::Number { .. } => {
                if let Err(e) = c.number(key) {
                    let _ = write!(out, "{e}");
                }
            }
            Kind::Choice(_) => {
                if let Err(e) = c.choice(key) {
                    let _ = write!(out, "{e}");
                }
            }
            Kind::Set(_) => {
                if let Err(e) = c.set(key) {
                    let _ = write!(out, "{e}");
                }
            }
            Kind::HostPath => match c.host_path(key) {
                Ok(Some(p)) => assert!(p.starts_with('/'), "a host path is absolute"),
                Ok(None) => {}
                Err(e) => {
                    let _ = write!(out, "{e}");
                }
            },
        }
        let _ = write!(out, "{}", key.kind);
    }
    if let Err(e) = rhea_net::Config::default().with_cmdline(&line) {
        let _ = write!(out, "{e}");
    }
    match rhea_shell_core::ssh_config::Config::from_cmdline(&line) {
        Ok(Some(c)) => {
            // Every key taken is one that parses back from its own blob.
            for k in &c.authorized {
                let blob = rhea_shell_core::keys::ed25519_blob(k);
                let b64 = rhea_shell_core::keys::base64_encode_unpadded(&blob);
                assert_eq!(rhea_shell_core::keys::parse_authorized(&b64).as_ref(), Ok(k));
            }
        }
        Ok(None) => {}
        Err(e) => {
            let _ = write!(out, "{e}");
        }
    }
    if let Err(e) = rhea_shell_core::keys::parse_authorized(&line) {
        let _ = write!(out, "{e}");
    }
    let _ = rhea_shell_core::keys::parse_seed_hex(&line);
    let _ = cpus_from_cmdline(&line);
}
