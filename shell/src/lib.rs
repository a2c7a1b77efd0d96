//! # `rhea-shell` — a shell to operate a running Rhea
//!
//! An appliance in the field needs a way in: look at threads and counters, change a
//! priority, start a trace, power off. This crate is that shell, for apps to link:
//!
//! ```ignore
//! let mut shell = rhea_shell::Shell::new();          // the built-in commands
//! shell.add(rhea_shell::Command {                      // and the app's own
//!     name: "stats",
//!     usage: "[reset]",
//!     help: "the control loop's lateness",
//!     run: |s, args| { writeln!(s, "...").ok(); Ok(()) },
//! })?;
//! rhea_shell::start_console(shell, rhea_shell::ConsoleStart::IfAsked)?;
//! ```
//!
//! - The line editor, the command table and argument checking are `rhea-shell-core`'s
//!   (hardware-free, host-tested): cursor keys, history, Tab completion of command names,
//!   Ctrl-C abandons a line or stops a running command that checks [`Session::cancelled`].
//! - The built-in commands ([`builtin`]) use only the kernel's public API. Commands that change
//!   a thread refuse kernel service threads (idle, interrupt, driver and network threads),
//!   saying why.
//! - The console front end ([`start_console`]) runs the shell in its own thread at a
//!   priority of its own (`rhea.shell_prio`, default [`DEFAULT_PRIORITY`]): it never takes
//!   the CPU from more important work. `rhea.shell=console` starts it in any app that links
//!   this crate and calls [`start_console`] with [`ConsoleStart::IfAsked`]; `rhea.shell=off`
//!   keeps it off.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod builtin;
mod session;

use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;

pub use rhea_shell_core::table::CommandResult;
pub use rhea_shell_core::{ArgError, Args, FromArg, TableError};
pub use session::{Closed, Ended, Io, Session};

use rhea::thread::Priority;
use rhea::time::Duration;
use rhea_shell_core::Table;

/// A command of this shell: `run` gets the [`Session`] (write to it; check
/// [`Session::cancelled`] in loops) and the checked arguments.
pub type Command = rhea_shell_core::Command<Session>;

/// The shell's thread priority when `rhea.shell_prio` does not say.
pub const DEFAULT_PRIORITY: u32 = 5;

/// The shell: its commands and its prompt. Shared by every session (read-only once started).
pub struct Shell {
    table: Table<Session>,
    prompt: String,
}

impl core::fmt::Debug for Shell {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Shell")
            .field("prompt", &self.prompt)
            .field("commands", &self.table)
            .finish()
    }
}

impl Default for Shell {
    fn default() -> Self {
        Self::new()
    }
}

impl Shell {
    /// A shell with the built-in commands and the prompt `rhea> `.
    pub fn new() -> Shell {
        let mut table = Table::new();
        for cmd in builtin::COMMANDS {
            // The built-in table is fixed: a bad name or usage in it is this crate's bug, and
            // shows at the first shell made (every shell-console case makes one).
            table
                .add(*cmd)
                .unwrap_or_else(|e| panic!("built-in command {}: {e}", cmd.name));
        }
        Shell {
            table,
            prompt: String::from("rhea> "),
        }
    }

    /// Adds an app's command (its name must be new; usage and name are checked).
    pub fn add(&mut self, cmd: Command) -> Result<(), TableError> {
        self.table.add(cmd)
    }

    /// Sets the prompt.
    pub fn set_prompt(&mut self, prompt: &str) {
        self.prompt = String::from(prompt);
    }

    pub(crate) fn prompt(&self) -> &str {
        &self.prompt
    }

    pub(crate) fn table(&self) -> &Table<Session> {
        &self.table
    }

    /// Runs one session on `io` in the calling thread until it ends (`exit`, Ctrl-D, the
    /// peer gone, or `idle` without a key).
    pub fn run(&self, io: Box<dyn Io + Send>, idle: Option<Duration>) -> Ended {
        session::run(self, io, idle)
    }

    /// Runs one command line on `io` without a prompt or line editing (what `ssh host
    /// command` asks for); `true` if the command succeeded.
    pub fn exec(&self, io: Box<dyn Io + Send>, line: &str) -> bool {
        session::exec(self, io, line)
    }
}

/// The serial console as a terminal.
#[derive(Debug, Default)]
pub struct ConsoleIo;

impl Io for ConsoleIo {
    fn write(&mut self, bytes: &[u8]) -> Result<(), Closed> {
        // The console takes text; the editor sends ASCII and escape sequences only.
        rhea::print!("{}", core::str::from_utf8(bytes).unwrap_or(""));
        Ok(())
    }

    fn read(&mut self, timeout: Duration) -> Result<Option<u8>, Closed> {
        Ok(rhea::console::read_byte_timeout(timeout))
    }
}

/// When [`start_console`] starts the shell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleStart {
    /// Unless the command line says `rhea.shell=off`.
    Always,
    /// Only if the command line says `rhea.shell=console`.
    IfAsked,
}

/// Why the console shell did not start.
#[derive(Debug)]
pub enum StartError {
    /// Not asked for (or `rhea.shell=off`).
    NotAsked,
    /// This console has no input.
    NoInput,
    /// Its thread could not be created.
    Spawn(rhea::SpawnError),
}

impl core::fmt::Display for StartError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            StartError::NotAsked => write!(f, "not asked for (rhea.shell=console starts it)"),
            StartError::NoInput => write!(f, "this console has no input"),
            StartError::Spawn(e) => write!(f, "cannot start its thread: {e}"),
        }
    }
}

/// The shell's thread priority: `rhea.shell_prio`, else [`DEFAULT_PRIORITY`].
pub fn priority() -> Priority {
    let prio = rhea::cmdline_value("rhea.shell_prio")
        .and_then(|p| p.parse::<u32>().ok())
        .unwrap_or(DEFAULT_PRIORITY);
    Priority::new(prio).unwrap_or(Priority::NORMAL)
}

/// Starts the shell on the serial console in a thread named `shell` at `rhea.shell_prio`
/// (default [`DEFAULT_PRIORITY`]). After `exit` or Ctrl-D it starts a new session. `shell`
/// may be shared (an `Arc<Shell>`) with other front ends (`rhea-ssh`).
pub fn start_console(shell: impl Into<Arc<Shell>>, when: ConsoleStart) -> Result<(), StartError> {
    let asked = rhea::cmdline_value("rhea.shell");
    match (when, asked) {
        (_, Some("off")) | (ConsoleStart::IfAsked, None) => return Err(StartError::NotAsked),
        _ => {}
    }
    if !rhea::console::has_input() {
        return Err(StartError::NoInput);
    }
    let prio = priority();
    let shell: Arc<Shell> = shell.into();
    let handle = rhea::thread::Builder::new()
        .name("shell")
        .priority(prio)
        .spawn(move || {
            loop {
                let ended = shell.run(Box::new(ConsoleIo), None);
                rhea::println!("shell: session ended ({ended:?}); a new one starts");
            }
        })
        .map_err(StartError::Spawn)?;
    drop(handle);
    Ok(())
}
