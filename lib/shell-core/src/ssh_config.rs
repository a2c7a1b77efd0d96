//! The SSH server's settings from the kernel command line (`rhea.ssh.*`), checked strictly:
//! every key known, every value in range, every authorized key an Ed25519 key — or an error
//! naming the argument and why. Pure (the server, `rhea-ssh`, reads them through this);
//! host-tested below and fuzzed (`cargo xtask fuzz ssh_config`).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::time::Duration;

/// The command-line keys read here (all under `rhea.ssh.`).
const KEYS: &[&str] = &[
    "rhea.ssh.keys",
    "rhea.ssh.hostkey",
    "rhea.ssh.port",
    "rhea.ssh.sessions",
    "rhea.ssh.idle",
    "rhea.ssh.grace",
];

/// At most this many authorized keys.
pub const MAX_KEYS: usize = 16;
/// At most this many sessions at once (`rhea.ssh.sessions`).
pub const MAX_SESSIONS: usize = 8;

/// The server's configuration.
pub struct Config {
    /// The TCP port (`rhea.ssh.port`, default 22).
    pub port: u16,
    /// Connections at once (`rhea.ssh.sessions`, 1 to [`MAX_SESSIONS`], default 3).
    pub sessions: usize,
    /// A shell session with no key for this long is closed (`rhea.ssh.idle` seconds, 5 to
    /// 86400, default 600).
    pub idle: Duration,
    /// From connecting to asking for a shell or a command, at most this long
    /// (`rhea.ssh.grace` seconds, 5 to 600, default 30).
    pub login_grace: Duration,
    /// The public keys that may log in (`rhea.ssh.keys`, comma-separated base64 fields of
    /// `authorized_keys` lines).
    pub authorized: Vec<[u8; 32]>,
    /// The host key's seed (`rhea.ssh.hostkey`, 64 hex digits), if given.
    pub host_seed: Option<[u8; 32]>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // No key material in logs.
        f.debug_struct("Config")
            .field("port", &self.port)
            .field("sessions", &self.sessions)
            .field("idle", &self.idle)
            .field("authorized", &self.authorized.len())
            .field("host_seed", &self.host_seed.is_some())
            .finish()
    }
}

/// A bad `rhea.ssh.*` argument: which, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn number(key: &str, v: &str, min: u64, max: u64) -> Result<u64, ConfigError> {
    v.parse::<u64>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| ConfigError(alloc::format!("{key}={v}: expected {min} to {max}")))
}

impl Config {
    /// Reads `rhea.ssh.*` from `line` (the last of a repeated key wins). `Ok(None)` when no
    /// `rhea.ssh.keys` is given: nobody could log in, so there is no server to start.
    pub fn from_cmdline(line: &str) -> Result<Option<Config>, ConfigError> {
        let mut cfg = Config {
            port: 22,
            sessions: 3,
            idle: Duration::from_secs(600),
            login_grace: Duration::from_secs(30),
            authorized: Vec::new(),
            host_seed: None,
        };
        let mut keys_given = false;
        for arg in line.split_ascii_whitespace() {
            if !arg.starts_with("rhea.ssh.") {
                continue;
            }
            let (key, v) = arg.split_once('=').unwrap_or((arg, ""));
            if !KEYS.contains(&key) {
                return Err(ConfigError(alloc::format!(
                    "{key}: unknown key; known: {}",
                    KEYS.join(", ")
                )));
            }
            if v.is_empty() {
                return Err(ConfigError(alloc::format!("{key}: needs a value")));
            }
            match key {
                "rhea.ssh.port" => cfg.port = number(key, v, 1, 65535)? as u16,
                "rhea.ssh.sessions" => {
                    cfg.sessions = number(key, v, 1, MAX_SESSIONS as u64)? as usize;
                }
                "rhea.ssh.idle" => cfg.idle = Duration::from_secs(number(key, v, 5, 86_400)?),
                "rhea.ssh.grace" => {
                    cfg.login_grace = Duration::from_secs(number(key, v, 5, 600)?);
                }
                "rhea.ssh.hostkey" => {
                    cfg.host_seed = Some(
                        crate::keys::parse_seed_hex(v)
                            .map_err(|e| ConfigError(alloc::format!("{key}: {e}")))?,
                    );
                }
                _ => {
                    keys_given = true;
                    cfg.authorized.clear();
                    for (i, k) in v.split(',').enumerate() {
                        if i == MAX_KEYS {
                            return Err(ConfigError(alloc::format!(
                                "{key}: more than {MAX_KEYS} keys"
                            )));
                        }
                        let k = crate::keys::parse_authorized(k).map_err(
                            |e: crate::keys::KeyError| {
                                ConfigError(alloc::format!("{key}: key {}: {e}", i + 1))
                            },
                        )?;
                        cfg.authorized.push(k);
                    }
                }
            }
        }
        Ok(keys_given.then_some(cfg))
    }

    /// Whether `key` may log in.
    pub fn authorizes(&self, key: &[u8; 32]) -> bool {
        self.authorized.iter().any(|k| k == key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    const KEY: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIL+GKY8z6watc/FAtaHY475m+s1jzWAGUlmDrmKwRvfG";

    #[test]
    fn no_keys_no_server() {
        assert!(Config::from_cmdline("").unwrap().is_none());
        assert!(
            Config::from_cmdline("rhea.ssh.port=2222 a=b")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_full_line_is_read() {
        let seed = "00".repeat(31) + "ff";
        let line = format!(
            "rhea.cpus=2 rhea.ssh.keys={KEY},{KEY} rhea.ssh.port=2222 rhea.ssh.sessions=8 \
             rhea.ssh.idle=5 rhea.ssh.grace=600 rhea.ssh.hostkey={seed} app=1"
        );
        let c = Config::from_cmdline(&line).unwrap().unwrap();
        assert_eq!(c.port, 2222);
        assert_eq!(c.sessions, 8);
        assert_eq!(c.idle, Duration::from_secs(5));
        assert_eq!(c.login_grace, Duration::from_secs(600));
        assert_eq!(c.authorized.len(), 2);
        assert!(c.authorizes(&c.authorized[0].clone()));
        assert!(!c.authorizes(&[0; 32]));
        assert_eq!(c.host_seed.unwrap()[31], 0xff);
        // Defaults.
        let c = Config::from_cmdline(&format!("rhea.ssh.keys={KEY}"))
            .unwrap()
            .unwrap();
        assert_eq!((c.port, c.sessions), (22, 3));
        assert_eq!(c.idle, Duration::from_secs(600));
        assert!(c.host_seed.is_none());
        // The last of a repeated key wins.
        let c = Config::from_cmdline(&format!("rhea.ssh.keys={KEY},{KEY} rhea.ssh.keys={KEY}"))
            .unwrap()
            .unwrap();
        assert_eq!(c.authorized.len(), 1);
    }

    #[test]
    fn bad_arguments_are_named() {
        let err = |line: &str| Config::from_cmdline(line).unwrap_err().0;
        assert_eq!(
            err("rhea.ssh.bogus=1"),
            "rhea.ssh.bogus: unknown key; known: rhea.ssh.keys, rhea.ssh.hostkey, \
             rhea.ssh.port, rhea.ssh.sessions, rhea.ssh.idle, rhea.ssh.grace"
        );
        assert_eq!(
            err("rhea.ssh.port=0"),
            "rhea.ssh.port=0: expected 1 to 65535"
        );
        assert_eq!(
            err("rhea.ssh.port=65536"),
            "rhea.ssh.port=65536: expected 1 to 65535"
        );
        assert_eq!(
            err("rhea.ssh.sessions=9"),
            "rhea.ssh.sessions=9: expected 1 to 8"
        );
        assert_eq!(
            err("rhea.ssh.idle=-1"),
            "rhea.ssh.idle=-1: expected 5 to 86400"
        );
        assert_eq!(err("rhea.ssh.keys"), "rhea.ssh.keys: needs a value");
        assert_eq!(err("rhea.ssh.keys="), "rhea.ssh.keys: needs a value");
        assert_eq!(
            err("rhea.ssh.keys=AAAAB3NzaC1yc2EAAAADAQABAAABAQ"),
            "rhea.ssh.keys: key 1: a ssh-rsa key: only ssh-ed25519 keys are taken"
        );
        assert_eq!(
            err(&format!("rhea.ssh.keys={KEY},AAAA*A")),
            "rhea.ssh.keys: key 2: not base64 (at character 4)"
        );
        assert_eq!(
            err(&format!("rhea.ssh.keys={KEY},")),
            "rhea.ssh.keys: key 2: not an SSH public key (bad blob)"
        );
        let many = [KEY; 17].join(",");
        assert_eq!(
            err(&format!("rhea.ssh.keys={many}")),
            "rhea.ssh.keys: more than 16 keys"
        );
        assert_eq!(
            err("rhea.ssh.hostkey=abc"),
            "rhea.ssh.hostkey: a host key is 64 hex digits (an Ed25519 seed)"
        );
    }
}
