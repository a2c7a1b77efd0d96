//! A command's arguments: split from its line, counted against its usage, and parsed by type
//! with errors that say which argument, what was expected and what came.
//!
//! A usage string is the help's own syntax and the check at once: `<thread> <priority>` takes
//! exactly two, `<thread> [cpus]` one or two, `<name> [words...]` one or more. Arguments are
//! split at spaces; a double-quoted argument may hold spaces (`"net rx"`), with no escapes.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// The most arguments a command line may have.
pub const MAX_ARGS: usize = 16;

/// A usage string, checked: how many arguments it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    text: &'static str,
    required: usize,
    optional: usize,
    /// The last argument repeats (`...`): any number more.
    rest: bool,
}

impl Usage {
    /// Checks `text`: `<name>` required arguments, then `[name]` optional ones, the last of
    /// either may end in `...`. `Err` says what is wrong with it.
    pub fn parse(text: &'static str) -> Result<Usage, String> {
        let mut usage = Usage {
            text,
            required: 0,
            optional: 0,
            rest: false,
        };
        let words: Vec<&str> = text.split_whitespace().collect();
        for (i, w) in words.iter().enumerate() {
            let last = i + 1 == words.len();
            let (inner, optional) =
                if let Some(x) = w.strip_prefix('<').and_then(|w| w.strip_suffix('>')) {
                    (x, false)
                } else if let Some(x) = w.strip_prefix('[').and_then(|w| w.strip_suffix(']')) {
                    (x, true)
                } else {
                    return Err(format!(
                        "usage {text:?}: {w:?} is neither <name> nor [name]"
                    ));
                };
            let (name, rest) = match inner.strip_suffix("...") {
                Some(name) if last => (name, true),
                Some(_) => {
                    return Err(format!("usage {text:?}: only the last argument may repeat"));
                }
                None => (inner, false),
            };
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(format!(
                    "usage {text:?}: {w:?} needs a name of letters, digits, - or _"
                ));
            }
            if optional {
                usage.optional += 1;
            } else if usage.optional > 0 {
                return Err(format!(
                    "usage {text:?}: <{name}> after an optional argument"
                ));
            } else {
                usage.required += 1;
            }
            usage.rest = rest;
        }
        if usage.required + usage.optional > MAX_ARGS {
            return Err(format!("usage {text:?}: more than {MAX_ARGS} arguments"));
        }
        Ok(usage)
    }

    /// The usage as written.
    pub fn text(&self) -> &'static str {
        self.text
    }

    /// Whether `n` arguments fit.
    pub fn accepts(&self, n: usize) -> bool {
        n >= self.required && (self.rest || n <= self.required + self.optional)
    }

    /// What a wrong count is told: `expects 2 arguments (<thread> <priority>)`.
    fn expected(&self) -> String {
        let count = match (self.required, self.optional, self.rest) {
            (0, 0, false) => String::from("no arguments"),
            (r, 0, false) => format!("{r} argument{}", plural(r)),
            (r, _, true) => format!("at least {r} argument{}", plural(r)),
            (r, o, false) => format!("{r} to {} arguments", r + o),
        };
        if self.text.is_empty() {
            count
        } else {
            format!("{count} ({})", self.text)
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Why a command line or an argument was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgError {
    /// An opening `"` without its closing one.
    UnclosedQuote,
    /// More than [`MAX_ARGS`] arguments.
    TooMany,
    /// A count the usage does not take.
    Count { expected: String, got: usize },
    /// Argument `index` (from 1) is not a `what`.
    Invalid {
        index: usize,
        what: String,
        got: String,
        why: String,
    },
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgError::UnclosedQuote => write!(f, "a \" is not closed"),
            ArgError::TooMany => write!(f, "more than {MAX_ARGS} arguments"),
            ArgError::Count { expected, got } => write!(f, "expects {expected}, got {got}"),
            ArgError::Invalid {
                index,
                what,
                got,
                why,
            } => {
                write!(f, "argument {index} ({what}): {got:?} {why}")
            }
        }
    }
}

/// Splits `text` into words: at spaces, a `"..."` word kept whole (without its quotes).
pub fn split(text: &str) -> Result<Vec<&str>, ArgError> {
    let mut words = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let (word, after) = if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted.find('"').ok_or(ArgError::UnclosedQuote)?;
            (&quoted[..end], &quoted[end + 1..])
        } else {
            let end = rest.find(' ').unwrap_or(rest.len());
            (&rest[..end], &rest[end..])
        };
        if words.len() == MAX_ARGS + 1 {
            return Err(ArgError::TooMany);
        }
        words.push(word);
        rest = after.trim_start();
    }
    Ok(words)
}

/// A value an argument can be parsed as.
pub trait FromArg: Sized {
    /// Parses `s`; `Err` completes "… <s> <why>" (e.g. "is not a number").
    fn from_arg(s: &str) -> Result<Self, String>;
}

/// An unsigned number, decimal or `0x` hexadecimal.
fn unsigned(s: &str) -> Result<u64, String> {
    let (digits, radix) = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None => (s, 10),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(String::from("is not a number"));
    }
    u64::from_str_radix(digits, radix).map_err(|_| String::from("is too large"))
}

macro_rules! from_arg_unsigned {
    ($($t:ty),*) => {$(
        impl FromArg for $t {
            fn from_arg(s: &str) -> Result<Self, String> {
                let n = unsigned(s)?;
                <$t>::try_from(n).map_err(|_| format!("is more than {}", <$t>::MAX))
            }
        }
    )*};
}
from_arg_unsigned!(u8, u16, u32, u64, usize);

impl FromArg for String {
    fn from_arg(s: &str) -> Result<Self, String> {
        Ok(String::from(s))
    }
}

impl FromArg for bool {
    fn from_arg(s: &str) -> Result<Self, String> {
        match s {
            "on" | "yes" | "true" | "1" => Ok(true),
            "off" | "no" | "false" | "0" => Ok(false),
            _ => Err(String::from("is not on or off")),
        }
    }
}

/// A command's arguments, counted against its usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args<'a> {
    words: Vec<&'a str>,
}

impl<'a> Args<'a> {
    /// `words` (the line after the command's name) checked against `usage`.
    pub fn new(words: Vec<&'a str>, usage: &Usage) -> Result<Args<'a>, ArgError> {
        if !usage.accepts(words.len()) {
            return Err(ArgError::Count {
                expected: usage.expected(),
                got: words.len(),
            });
        }
        Ok(Args { words })
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// Argument `i` (from 0) as written, if given.
    pub fn get(&self, i: usize) -> Option<&'a str> {
        self.words.get(i).copied()
    }

    /// Every argument from `i` on.
    pub fn rest(&self, i: usize) -> &[&'a str] {
        self.words.get(i..).unwrap_or(&[])
    }

    /// Argument `i` parsed as a `T`, named `what` in the error; `Ok(None)` if not given.
    pub fn parse_opt<T: FromArg>(&self, i: usize, what: &str) -> Result<Option<T>, ArgError> {
        match self.get(i) {
            None => Ok(None),
            Some(s) => T::from_arg(s).map(Some).map_err(|why| ArgError::Invalid {
                index: i + 1,
                what: String::from(what),
                got: String::from(s),
                why,
            }),
        }
    }

    /// Argument `i` parsed as a `T`, named `what` in the error (a missing one is an error too,
    /// though the usage check makes that impossible for a required argument).
    pub fn parse<T: FromArg>(&self, i: usize, what: &str) -> Result<T, ArgError> {
        self.parse_opt(i, what)?.ok_or_else(|| ArgError::Invalid {
            index: i + 1,
            what: String::from(what),
            got: String::new(),
            why: String::from("is missing"),
        })
    }

    /// Argument `i` as a number in `range` (inclusive), named `what`.
    pub fn number_in(&self, i: usize, what: &str, lo: u64, hi: u64) -> Result<u64, ArgError> {
        let n: u64 = self.parse(i, what)?;
        if n < lo || n > hi {
            return Err(ArgError::Invalid {
                index: i + 1,
                what: String::from(what),
                got: String::from(self.get(i).unwrap_or("")),
                why: format!("is outside {lo}..={hi}"),
            });
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args<'a>(line: &'a str, usage: &'static str) -> Result<Args<'a>, ArgError> {
        Args::new(split(line)?, &Usage::parse(usage).unwrap())
    }

    #[test]
    fn usages_parse_and_count() {
        let u = Usage::parse("<thread> <priority>").unwrap();
        assert!(!u.accepts(1) && u.accepts(2) && !u.accepts(3));
        let u = Usage::parse("<thread> [cpus]").unwrap();
        assert!(!u.accepts(0) && u.accepts(1) && u.accepts(2) && !u.accepts(3));
        let u = Usage::parse("<name> [words...]").unwrap();
        assert!(u.accepts(1) && u.accepts(9));
        let u = Usage::parse("").unwrap();
        assert!(u.accepts(0) && !u.accepts(1));
        for bad in ["thread", "[a] <b>", "<a...> <b>", "<>", "<a b>", "<a;>"] {
            assert!(Usage::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn words_split_at_spaces_and_quotes() {
        assert_eq!(split("  a  b c ").unwrap(), ["a", "b", "c"]);
        assert_eq!(split("prio \"net rx\" 5").unwrap(), ["prio", "net rx", "5"]);
        assert_eq!(split("\"\"").unwrap(), [""]);
        assert_eq!(split("a \"b"), Err(ArgError::UnclosedQuote));
        assert_eq!(split(&"x ".repeat(MAX_ARGS + 2)), Err(ArgError::TooMany));
        assert!(split("").unwrap().is_empty());
    }

    #[test]
    fn wrong_counts_say_what_is_expected() {
        let e = args("worker", "<thread> <priority>").unwrap_err();
        assert_eq!(
            e.to_string(),
            "expects 2 arguments (<thread> <priority>), got 1"
        );
        let e = args("a b c", "<thread> [cpus]").unwrap_err();
        assert_eq!(
            e.to_string(),
            "expects 1 to 2 arguments (<thread> [cpus]), got 3"
        );
        let e = args("x", "").unwrap_err();
        assert_eq!(e.to_string(), "expects no arguments, got 1");
        let e = args("", "<what> [more...]").unwrap_err();
        assert_eq!(
            e.to_string(),
            "expects at least 1 argument (<what> [more...]), got 0"
        );
    }

    #[test]
    fn typed_arguments_explain_bad_values() {
        let a = args("worker 300 0x1f abc", "<thread> <prio> <mask> [x]").unwrap();
        assert_eq!(a.parse::<String>(0, "thread").unwrap(), "worker");
        let e = a.parse::<u8>(1, "priority").unwrap_err();
        assert_eq!(
            e.to_string(),
            "argument 2 (priority): \"300\" is more than 255"
        );
        assert_eq!(a.parse::<u32>(2, "mask").unwrap(), 0x1f);
        let e = a.parse::<u32>(3, "x").unwrap_err();
        assert_eq!(e.to_string(), "argument 4 (x): \"abc\" is not a number");
        let e = a.number_in(1, "priority", 0, 255).unwrap_err();
        assert_eq!(
            e.to_string(),
            "argument 2 (priority): \"300\" is outside 0..=255"
        );
        assert_eq!(a.parse_opt::<u32>(7, "absent").unwrap(), None);
        let big = args("99999999999999999999999", "<n>").unwrap();
        assert_eq!(
            big.parse::<u64>(0, "n").unwrap_err().to_string(),
            "argument 1 (n): \"99999999999999999999999\" is too large"
        );
        let b = args("on off maybe", "<a> <b> <c>").unwrap();
        assert!(b.parse::<bool>(0, "a").unwrap());
        assert!(!b.parse::<bool>(1, "b").unwrap());
        assert!(b.parse::<bool>(2, "c").is_err());
        assert_eq!(b.rest(1), ["off", "maybe"]);
    }
}
