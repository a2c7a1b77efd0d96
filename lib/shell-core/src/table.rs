//! The command table: every command the shell knows, the built-in ones and those apps add,
//! each with its usage (checked when added, and against every call) and one line of help.
//!
//! `C` is what a command runs with (the shell's session: its output, its cancellation).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::args::{self, ArgError, Args, Usage};

/// The longest command name.
pub const MAX_NAME: usize = 24;
/// The most commands a table holds.
pub const MAX_COMMANDS: usize = 128;

/// What a command's function returns: `Err` is the message the user sees.
pub type CommandResult = Result<(), String>;

/// One command.
pub struct Command<C> {
    /// What the user types: lowercase letters, digits, `-` and `_`, at most [`MAX_NAME`].
    pub name: &'static str,
    /// Its arguments (see [`Usage`]): `<thread> <priority>`.
    pub usage: &'static str,
    /// One line saying what it does.
    pub help: &'static str,
    /// What it does.
    pub run: fn(&mut C, &Args<'_>) -> CommandResult,
}

impl<C> Clone for Command<C> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<C> Copy for Command<C> {}

impl<C> fmt::Debug for Command<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Command({} {})", self.name, self.usage)
    }
}

/// Why a command was not added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableError {
    /// A name not of the allowed characters or too long.
    BadName(&'static str),
    /// The name is taken.
    Duplicate(&'static str),
    /// The usage does not parse (the reason).
    BadUsage(String),
    /// The table is full.
    Full,
}

impl fmt::Display for TableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TableError::BadName(n) => write!(
                f,
                "command name {n:?}: use 1-{MAX_NAME} lowercase letters, digits, - or _"
            ),
            TableError::Duplicate(n) => write!(f, "command {n:?} exists already"),
            TableError::BadUsage(why) => write!(f, "{why}"),
            TableError::Full => write!(f, "the command table is full ({MAX_COMMANDS})"),
        }
    }
}

/// What a line did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dispatch {
    /// An empty line.
    Empty,
    /// The command ran and succeeded.
    Done,
    /// The command ran and failed: its message, prefixed with its name.
    Failed(String),
    /// The line was refused before any command ran (unknown command, bad arguments): why.
    Refused(String),
}

/// The commands, sorted by name.
pub struct Table<C> {
    commands: Vec<(Command<C>, Usage)>,
}

impl<C> fmt::Debug for Table<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<C> Default for Table<C> {
    fn default() -> Self {
        Table {
            commands: Vec::new(),
        }
    }
}

impl<C> Table<C> {
    /// An empty table.
    pub fn new() -> Table<C> {
        Table::default()
    }

    /// Adds `cmd`, checking its name and usage.
    pub fn add(&mut self, cmd: Command<C>) -> Result<(), TableError> {
        let name_ok = !cmd.name.is_empty()
            && cmd.name.len() <= MAX_NAME
            && cmd
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !name_ok {
            return Err(TableError::BadName(cmd.name));
        }
        let usage = Usage::parse(cmd.usage).map_err(TableError::BadUsage)?;
        match self
            .commands
            .binary_search_by(|(c, _)| c.name.cmp(cmd.name))
        {
            Ok(_) => Err(TableError::Duplicate(cmd.name)),
            Err(_) if self.commands.len() >= MAX_COMMANDS => Err(TableError::Full),
            Err(at) => {
                self.commands.insert(at, (cmd, usage));
                Ok(())
            }
        }
    }

    /// The command named `name`.
    pub fn find(&self, name: &str) -> Option<&Command<C>> {
        self.commands
            .binary_search_by(|(c, _)| c.name.cmp(name))
            .ok()
            .map(|i| &self.commands[i].0)
    }

    /// Every command, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Command<C>> {
        self.commands.iter().map(|(c, _)| c)
    }

    /// The names that start with `prefix` (for Tab).
    pub fn complete(&self, prefix: &str) -> Vec<String> {
        self.iter()
            .filter(|c| c.name.starts_with(prefix))
            .map(|c| String::from(c.name))
            .collect()
    }

    /// Runs `line` with `ctx`: its first word names the command, the rest are checked against
    /// its usage before it runs.
    pub fn dispatch(&self, ctx: &mut C, line: &str) -> Dispatch {
        let words = match args::split(line) {
            Ok(w) => w,
            Err(e) => return Dispatch::Refused(format!("{e}")),
        };
        let Some((&name, rest)) = words.split_first() else {
            return Dispatch::Empty;
        };
        let Ok(i) = self.commands.binary_search_by(|(c, _)| c.name.cmp(name)) else {
            let shown: String = name.chars().take(MAX_NAME + 8).collect();
            return Dispatch::Refused(format!("{shown}: unknown command (help lists them)"));
        };
        let (cmd, usage) = &self.commands[i];
        let args = match Args::new(rest.to_vec(), usage) {
            Ok(a) => a,
            Err(e) => return Dispatch::Refused(format!("{}: {e}", cmd.name)),
        };
        match (cmd.run)(ctx, &args) {
            Ok(()) => Dispatch::Done,
            Err(why) => Dispatch::Failed(format!("{}: {why}", cmd.name)),
        }
    }
}

/// An [`ArgError`] as a command's failure message (`?` in a command's function).
impl From<ArgError> for String {
    fn from(e: ArgError) -> String {
        format!("{e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Ctx {
        calls: Vec<String>,
    }

    fn set(ctx: &mut Ctx, a: &Args<'_>) -> CommandResult {
        let who: String = a.parse(0, "thread")?;
        let prio = a.number_in(1, "priority", 0, 63)?;
        if who == "idle" {
            return Err(String::from("idle is a kernel thread: its priority stays"));
        }
        ctx.calls.push(format!("set {who} {prio}"));
        Ok(())
    }

    fn list(ctx: &mut Ctx, a: &Args<'_>) -> CommandResult {
        ctx.calls.push(format!("list {:?}", a.rest(0)));
        Ok(())
    }

    fn cmd(name: &'static str, usage: &'static str) -> Command<Ctx> {
        Command {
            name,
            usage,
            help: "a test command",
            run: list,
        }
    }

    fn table() -> Table<Ctx> {
        let mut t = Table::new();
        t.add(Command {
            name: "prio",
            usage: "<thread> <priority>",
            help: "set a priority",
            run: set,
        })
        .unwrap();
        t.add(cmd("ps", "[filter...]")).unwrap();
        t.add(cmd("poweroff", "")).unwrap();
        t
    }

    #[test]
    fn lines_run_their_command_with_checked_arguments() {
        let t = table();
        let mut ctx = Ctx::default();
        assert_eq!(t.dispatch(&mut ctx, "prio worker 9"), Dispatch::Done);
        assert_eq!(t.dispatch(&mut ctx, "  ps a \"b c\" "), Dispatch::Done);
        assert_eq!(t.dispatch(&mut ctx, "   "), Dispatch::Empty);
        assert_eq!(ctx.calls, ["set worker 9", "list [\"a\", \"b c\"]"]);
    }

    #[test]
    fn refusals_and_failures_explain() {
        let t = table();
        let mut ctx = Ctx::default();
        let refused = |line: &str| match t.dispatch(&mut Ctx::default(), line) {
            Dispatch::Refused(why) => why,
            other => panic!("{line:?}: {other:?}"),
        };
        assert_eq!(
            refused("reboot now"),
            "reboot: unknown command (help lists them)"
        );
        assert_eq!(
            refused("prio worker"),
            "prio: expects 2 arguments (<thread> <priority>), got 1"
        );
        assert_eq!(
            refused("poweroff now"),
            "poweroff: expects no arguments, got 1"
        );
        assert_eq!(refused("prio \"worker 9"), "a \" is not closed");
        // An unknown name is cut when shown.
        assert!(refused(&"x".repeat(1000)).len() < 100);
        assert_eq!(
            t.dispatch(&mut ctx, "prio worker high"),
            Dispatch::Failed(String::from(
                "prio: argument 2 (priority): \"high\" is not a number"
            ))
        );
        assert_eq!(
            t.dispatch(&mut ctx, "prio idle 3"),
            Dispatch::Failed(String::from(
                "prio: idle is a kernel thread: its priority stays"
            ))
        );
        assert!(ctx.calls.is_empty());
    }

    #[test]
    fn adding_checks_names_usages_and_duplicates() {
        let mut t = table();
        assert_eq!(t.add(cmd("ps", "")), Err(TableError::Duplicate("ps")));
        assert_eq!(t.add(cmd("Ps", "")), Err(TableError::BadName("Ps")));
        assert_eq!(t.add(cmd("", "")), Err(TableError::BadName("")));
        assert!(matches!(
            t.add(cmd("x", "<a")),
            Err(TableError::BadUsage(_))
        ));
        let long: &'static str = "abcdefghijklmnopqrstuvwxyz";
        assert_eq!(t.add(cmd(long, "")), Err(TableError::BadName(long)));
        assert_eq!(
            t.iter().map(|c| c.name).collect::<Vec<_>>(),
            ["poweroff", "prio", "ps"]
        );
        assert_eq!(t.complete("p"), ["poweroff", "prio", "ps"]);
        assert_eq!(t.complete("pr"), ["prio"]);
        assert!(t.find("prio").is_some() && t.find("pri").is_none());
    }

    #[test]
    fn the_table_is_bounded() {
        let mut t: Table<Ctx> = Table::new();
        for i in 0..MAX_COMMANDS {
            let name: &'static str = Box::leak(format!("c{i}").into_boxed_str());
            t.add(cmd(name, "")).unwrap();
        }
        assert_eq!(t.add(cmd("extra", "")), Err(TableError::Full));
    }
}
