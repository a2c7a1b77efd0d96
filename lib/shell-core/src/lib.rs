//! # `rhea-shell-core` — the shell's hardware-free half
//!
//! What a shell on a serial line or an SSH channel needs that touches no kernel: turning the
//! bytes a terminal sends into edited lines ([`edit::Editor`]), and turning a line into a
//! checked call of a registered command ([`table::Table`], [`args::Args`]). `rhea-shell` (in
//! `shell/`) puts the kernel's built-in commands, the console and SSH front ends on top.
//!
//! Everything here is bounded: a line holds at most [`edit::MAX_LINE`] bytes, the history
//! [`edit::HISTORY`] lines, an escape sequence [`edit::MAX_ESCAPE`] bytes, a command
//! [`args::MAX_ARGS`] arguments. Input it does not understand (binary garbage, escape
//! sequences of other terminals, over-long lines) is dropped or refused with a bell, never a
//! panic: the host tests and the fuzz target feed it every byte value.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod args;
pub mod edit;
pub mod keys;
pub mod ssh_config;
pub mod table;

pub use args::{ArgError, Args, FromArg, Usage};
pub use edit::{Editor, Outcome};
pub use table::{Command, Dispatch, Table, TableError};
