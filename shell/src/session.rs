//! One shell session: the terminal it talks to ([`Io`]), the line editor, and what commands
//! see of it ([`Session`]).

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use rhea::time::Duration;
use rhea_shell_core::{Dispatch, Editor, Outcome};

use crate::Shell;

/// The peer went away (an SSH channel closed; a console never does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

/// A terminal: bytes out, bytes in.
pub trait Io {
    /// Sends `bytes` to the terminal (as they are: the session turns `\n` into `\r\n`).
    fn write(&mut self, bytes: &[u8]) -> Result<(), Closed>;
    /// The next byte if one comes within `timeout` (`Ok(None)`: none came).
    fn read(&mut self, timeout: Duration) -> Result<Option<u8>, Closed>;
    /// The session is over, with `status` (0: `exit`, or a command that succeeded): a
    /// transport that can say so tells the peer (SSH's `exit-status`). Called once, last.
    fn end(&mut self, status: u32) {
        let _ = status;
    }
}

/// What a command runs with: where its output goes, and whether the user asked it to stop.
pub struct Session {
    io: Box<dyn Io + Send>,
    /// The user pressed Ctrl-C while the command ran.
    cancelled: bool,
    /// Set by `exit`: the session ends after this command.
    pub(crate) end: bool,
    /// The shell's commands (name, usage, help), for `help`.
    pub(crate) commands: Vec<(&'static str, &'static str, &'static str)>,
    /// Output waiting for a flush (one write per line or per command, not per `write!`).
    out: Vec<u8>,
    closed: bool,
}

/// How much output is gathered before it is written.
const OUT_CHUNK: usize = 512;

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("cancelled", &self.cancelled)
            .field("end", &self.end)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl Session {
    pub(crate) fn new(io: Box<dyn Io + Send>) -> Session {
        Session {
            io,
            cancelled: false,
            end: false,
            commands: Vec::new(),
            out: Vec::with_capacity(OUT_CHUNK),
            closed: false,
        }
    }

    /// Sends what was written so far.
    pub fn flush(&mut self) {
        if !self.out.is_empty() && !self.closed && self.io.write(&self.out).is_err() {
            self.closed = true;
        }
        self.out.clear();
    }

    fn put(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                self.out.push(b'\r');
            }
            self.out.push(b);
        }
        if self.out.len() >= OUT_CHUNK {
            self.flush();
        }
    }

    /// Whether the user pressed Ctrl-C (or the peer went away) since the command started:
    /// a command that loops checks it. Reads input without waiting; other keys are dropped.
    pub fn cancelled(&mut self) -> bool {
        while !self.cancelled && !self.closed {
            match self.io.read(Duration::ZERO) {
                Ok(Some(0x03)) => self.cancelled = true,
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(Closed) => self.closed = true,
            }
        }
        self.cancelled || self.closed
    }

    /// Waits up to `d` for a key: `Some(key)` if one came (Ctrl-C also marks the command
    /// cancelled), `None` when the time passed. For commands that refresh until a key.
    pub fn wait_key(&mut self, d: Duration) -> Option<u8> {
        self.flush();
        if self.closed {
            return Some(0x03);
        }
        match self.io.read(d) {
            Ok(Some(k)) => {
                if k == 0x03 {
                    self.cancelled = true;
                }
                Some(k)
            }
            Ok(None) => None,
            Err(Closed) => {
                self.closed = true;
                Some(0x03)
            }
        }
    }

    /// Ends the session after this command (as `exit` does).
    pub fn end_session(&mut self) {
        self.end = true;
    }

    /// Clears the terminal and homes its cursor (for `top`).
    pub fn clear_screen(&mut self) {
        self.put(b"\x1b[H\x1b[2J");
    }
}

impl fmt::Write for Session {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.put(s.as_bytes());
        Ok(())
    }
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// `exit`, or Ctrl-D on an empty line.
    Exit,
    /// No key for the idle limit.
    Idle,
    /// The peer went away.
    Closed,
}

impl Session {
    /// A session of `shell` on `io`.
    fn for_shell(shell: &Shell, io: Box<dyn Io + Send>) -> Session {
        let mut s = Session::new(io);
        s.commands = shell
            .table()
            .iter()
            .map(|c| (c.name, c.usage, c.help))
            .collect();
        s
    }
}

/// Runs one command line on `io`: its output, or why it failed; `true` on success.
pub(crate) fn exec(shell: &Shell, io: Box<dyn Io + Send>, line: &str) -> bool {
    let mut s = Session::for_shell(shell, io);
    let ok = match shell.table().dispatch(&mut s, line) {
        Dispatch::Empty | Dispatch::Done => true,
        Dispatch::Failed(why) | Dispatch::Refused(why) => {
            let _ = fmt::Write::write_fmt(&mut s, format_args!("{why}\n"));
            false
        }
    };
    s.flush();
    let ok = ok && !s.cancelled && !s.closed;
    s.io.end(u32::from(!ok));
    ok
}

/// Runs one session on `io` until it ends: prompt, edit, run, repeat. `idle`: end it after
/// this long without a key (`None`: never).
pub(crate) fn run(shell: &Shell, io: Box<dyn Io + Send>, idle: Option<Duration>) -> Ended {
    let mut s = Session::for_shell(shell, io);
    let ended = edit_loop(shell, &mut s, idle);
    s.io.end(u32::from(ended != Ended::Exit));
    ended
}

/// The prompt-edit-run loop of [`run`].
fn edit_loop(shell: &Shell, s: &mut Session, idle: Option<Duration>) -> Ended {
    let mut editor = Editor::new(shell.prompt());
    editor.show_prompt();
    let complete = |prefix: &str| -> Vec<String> { shell.table().complete(prefix) };
    // Reads wait in slices, so an idle limit is noticed.
    let slice = Duration::from_millis(500);
    let mut quiet = Duration::ZERO;
    loop {
        let out = editor.take_output();
        if !out.is_empty() && s.io.write(&out).is_err() {
            return Ended::Closed;
        }
        let byte = match s.io.read(slice) {
            Ok(Some(b)) => b,
            Ok(None) => {
                quiet += slice;
                if idle.is_some_and(|limit| quiet >= limit) {
                    let _ = s.io.write(b"\r\nidle too long: session closed\r\n");
                    return Ended::Idle;
                }
                continue;
            }
            Err(Closed) => return Ended::Closed,
        };
        quiet = Duration::ZERO;
        match editor.feed(byte, &complete) {
            Outcome::Pending => {}
            Outcome::Cancelled => editor.show_prompt(),
            Outcome::End => {
                let _ = s.io.write(b"\r\n");
                return Ended::Exit;
            }
            Outcome::Line(line) => {
                let out = editor.take_output();
                if s.io.write(&out).is_err() {
                    return Ended::Closed;
                }
                s.cancelled = false;
                match shell.table().dispatch(s, &line) {
                    Dispatch::Empty | Dispatch::Done => {}
                    Dispatch::Failed(why) | Dispatch::Refused(why) => {
                        let _ = fmt::Write::write_fmt(s, format_args!("{why}\n"));
                    }
                }
                if s.cancelled {
                    let _ = fmt::Write::write_str(s, "^C\n");
                }
                s.flush();
                if s.closed {
                    return Ended::Closed;
                }
                if s.end {
                    return Ended::Exit;
                }
                editor.show_prompt();
            }
        }
    }
}
