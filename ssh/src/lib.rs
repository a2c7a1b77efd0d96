//! # `rhea-ssh` — the shell over SSH
//!
//! An SSH server for [`rhea_shell::Shell`]: the operator's way in over the network.
//!
//! ```ignore
//! let shell = Arc::new(rhea_shell::Shell::new());
//! rhea_shell::start_console(shell.clone(), ConsoleStart::IfAsked)?;
//! match rhea_ssh::start(shell) { ... }        // if `rhea.ssh.keys` names a key
//! ```
//!
//! - **Protocol**: `sunset` (no_std, IO-less, by the author of Dropbear), driven over a
//!   blocking [`rhea_net::TcpStream`] by the session's own thread (`conn.rs`). Offered:
//!   curve25519-sha256 key exchange, `ssh-ed25519` host key, chacha20-poly1305 and aes-ctr
//!   with hmac-sha2 — sunset's set without ML-KEM (it would add ~30 KB).
//! - **Login**: public keys only (`ssh-ed25519`). The authorized keys and the host key come
//!   from the command line ([`Config::from_cmdline`]); with no host key given, one is made
//!   at boot from the machine's entropy and its fingerprint printed.
//! - **Entropy**: `rhea::entropy` (RDRAND, `RNDR`, LinuxU's host). A machine without a
//!   source does not get an SSH server: [`start`] refuses, and says why.
//! - **Bounds**: at most [`Config::sessions`] connections at once (the listener resets
//!   more); each in its own thread at the shell's priority; a connection that has not asked
//!   for a shell or a command within [`Config::login_grace`] is closed, as is a session idle
//!   for [`Config::idle`] and a peer that stops reading for [`conn::STALL`]; a failed login
//!   is logged (at most one line a second, the rest counted), costs its connection a
//!   second, and the sixth closes it.
//! - **Ending**: a command's session ends with its exit status (0, or 1 when it failed or
//!   was refused), `exit` with 0; then EOF and close. sunset 0.6.0 could not do this (and
//!   answered a client's EOF with its own, cutting off output), so it is carried patched:
//!   `third_party/sunset/PATCHED.md`.
//! - **One session channel per connection**; no port forwarding, no subsystems (sftp): each
//!   refused.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod conn;

use alloc::string::String;
use alloc::sync::Arc;
use core::fmt;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use rhea_net::{ListenOptions, NetError, TcpListener};
use rhea_shell::Shell;
use rhea_shell_core::keys;
use sunset::SignKey;
use sunset::ed25519_dalek::SigningKey;

pub use conn::STALL;

pub use rhea_shell_core::ssh_config::{Config, ConfigError, MAX_KEYS, MAX_SESSIONS};

/// OpenSSH's fingerprint of an Ed25519 public key: `SHA256:` and the unpadded base64 of
/// the SHA-256 of its wire blob.
pub fn fingerprint(key: &[u8; 32]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(keys::ed25519_blob(key));
    alloc::format!("SHA256:{}", keys::base64_encode_unpadded(&digest))
}

/// Why the server did not start.
#[derive(Debug)]
pub enum StartError {
    /// No `rhea.ssh.keys`: nobody could log in.
    NotAsked,
    /// A bad `rhea.ssh.*` argument.
    Config(ConfigError),
    /// The machine has no entropy source: keys and key exchanges would be guessable.
    NoEntropy(rhea::entropy::NoEntropy),
    /// The port could not be bound (the network not started, the port in use, no memory).
    Net(NetError),
    /// The listener thread could not be made.
    Spawn(rhea::SpawnError),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::NotAsked => {
                f.write_str("not asked for (rhea.ssh.keys=<key>[,...] starts it)")
            }
            StartError::Config(e) => write!(f, "bad command line: {e}"),
            StartError::NoEntropy(e) => write!(f, "{e}: refusing to run with guessable keys"),
            StartError::Net(e) => write!(f, "cannot listen: {e}"),
            StartError::Spawn(e) => write!(f, "cannot start its thread: {e}"),
        }
    }
}

/// What a started server listens on.
#[derive(Debug, Clone)]
pub struct Started {
    /// The TCP port.
    pub port: u16,
    /// The host key's fingerprint (`SHA256:...`).
    pub host_fingerprint: String,
    /// Whether the host key was made at boot (it changes every boot).
    pub host_key_generated: bool,
}

/// Connections ever accepted, for thread names.
static SERIAL: AtomicU32 = AtomicU32::new(0);

/// Starts the SSH server for `shell` if the command line gives `rhea.ssh.keys`: the
/// listener thread `ssh`, and a thread `ssh-<n>` per connection, all at the shell's priority
/// (`rhea.shell_prio`). Needs the network started (`rhea_net::start`).
pub fn start(shell: Arc<Shell>) -> Result<Started, StartError> {
    let cfg = Config::from_cmdline(rhea::cmdline())
        .map_err(StartError::Config)?
        .ok_or(StartError::NotAsked)?;
    if rhea::entropy::source().is_none() {
        return Err(StartError::NoEntropy(rhea::entropy::NoEntropy));
    }
    let (seed, generated) = match cfg.host_seed {
        Some(s) => (s, false),
        None => {
            let mut s = [0u8; 32];
            rhea::entropy::fill(&mut s).map_err(StartError::NoEntropy)?;
            (s, true)
        }
    };
    let signing = SigningKey::from_bytes(&seed);
    let host_fingerprint = fingerprint(&signing.verifying_key().to_bytes());
    let hostkey = SignKey::Ed25519(signing);
    let listener = TcpListener::bind_with(
        cfg.port,
        ListenOptions {
            backlog: 2,
            max_connections: cfg.sessions,
            max_per_peer: cfg.sessions,
            buffer: 8 * 1024,
        },
    )
    .map_err(StartError::Net)?;
    let port = cfg.port;
    let cfg = Arc::new(conn::Shared { cfg, hostkey });
    let prio = rhea_shell::priority();
    let handle = rhea::thread::Builder::new()
        .name("ssh")
        .priority(prio)
        .spawn(move || accept_loop(&listener, &shell, &cfg, prio))
        .map_err(StartError::Spawn)?;
    drop(handle);
    Ok(Started {
        port,
        host_fingerprint,
        host_key_generated: generated,
    })
}

/// What a session takes from the heap: sunset's input and output packet buffers (35,000 bytes
/// each), ours (3 KiB) and the runner's state, rounded up.
const SESSION_HEAP: usize = 80 << 10;

/// Session threads' stacks: sunset's key exchange and Ed25519 signing run on them, then the
/// shell's commands. Measured peak (the appliance's `stacks` line after the SSH case, q35):
/// 20 KiB; 64 KiB leaves room for what apps' commands add.
const SESSION_STACK: u64 = 64 << 10;

fn accept_loop(
    listener: &TcpListener,
    shell: &Arc<Shell>,
    shared: &Arc<conn::Shared>,
    prio: rhea::thread::Priority,
) {
    loop {
        let stream = match listener.accept(None) {
            Ok(s) => s,
            Err(e) => {
                rhea::println!("ssh: accept failed: {e}; the server stops");
                return;
            }
        };
        let n = SERIAL.fetch_add(1, Ordering::Relaxed) + 1;
        // A session's heap (sunset's two packet buffers and ours) is allocated without a
        // way to fail gracefully: refuse the connection while the heap has less than twice
        // that free, rather than let one more peer exhaust it.
        let free = rhea::memory_stats().heap_free_bytes;
        if free < 2 * SESSION_HEAP {
            rhea::println!(
                "ssh: connection {n} refused: {} KiB of heap free, a session needs {} KiB",
                free >> 10,
                SESSION_HEAP >> 10
            );
            drop(stream);
            continue;
        }
        let name = alloc::format!("ssh-{n}");
        let (shell, shared) = (shell.clone(), shared.clone());
        let spawned = rhea::thread::Builder::new()
            .name(&name)
            .priority(prio)
            .stack_size(SESSION_STACK)
            .spawn(move || conn::serve(&shell, &shared, stream, n));
        match spawned {
            Ok(h) => drop(h),
            Err(e) => {
                // The closure (and the stream in it) is gone: the connection is closed.
                rhea::println!("ssh: connection {n} refused: cannot start its thread: {e}");
            }
        }
    }
}

/// When the last failed-login line was printed (ms since boot), and how many were not
/// printed since: failed logins are logged at most once a second, so a flood of them cannot
/// flood the console.
static FAIL_LOGGED_MS: AtomicU64 = AtomicU64::new(0);
static FAIL_SUPPRESSED: AtomicU32 = AtomicU32::new(0);

pub(crate) fn log_failure(what: &dyn fmt::Display) {
    let now = rhea::time::now().as_nanos() / 1_000_000;
    let last = FAIL_LOGGED_MS.load(Ordering::Relaxed);
    if last != 0 && now.saturating_sub(last) < 1000 {
        FAIL_SUPPRESSED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    FAIL_LOGGED_MS.store(now.max(1), Ordering::Relaxed);
    let skipped = FAIL_SUPPRESSED.swap(0, Ordering::Relaxed);
    if skipped > 0 {
        rhea::println!("ssh: {what} ({skipped} more failed logins not shown)");
    } else {
        rhea::println!("ssh: {what}");
    }
}

impl Started {
    /// One line for the boot log.
    pub fn describe(&self) -> String {
        let mut s = alloc::format!(
            "ssh: listening on port {}, host key {}",
            self.port,
            self.host_fingerprint
        );
        if self.host_key_generated {
            s.push_str(" (made at boot: give rhea.ssh.hostkey to keep one)");
        }
        s
    }
}
