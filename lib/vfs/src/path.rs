//! Paths: the limits every path and name is held to, and the checks.
//!
//! A path is `/`-separated UTF-8. There is no current directory: a relative path is taken
//! from `/`. `.` is skipped, `..` goes up (never above `/`), repeated `/` are one.

use crate::node::ErrorKind;

/// The longest path accepted, in bytes (Linux's `PATH_MAX`).
pub const MAX_PATH: usize = 4096;
/// The longest name (one component), in bytes (Linux's `NAME_MAX`).
pub const MAX_NAME: usize = 255;
/// The most directories a resolved path may go down.
pub const MAX_DEPTH: usize = 64;
/// The most symbolic links one resolution follows (Linux's is 40; a loop hits this).
pub const MAX_SYMLINKS: usize = 16;

/// Checks one name for a new entry: not empty, not `.` or `..`, no `/` or NUL, at most
/// [`MAX_NAME`] bytes.
pub fn check_name(name: &str) -> Result<(), ErrorKind> {
    if name.is_empty() {
        return Err(ErrorKind::InvalidName("empty"));
    }
    if name == "." || name == ".." {
        return Err(ErrorKind::InvalidName("`.` and `..` are not names"));
    }
    if name.contains('/') {
        return Err(ErrorKind::InvalidName("contains `/`"));
    }
    if name.contains('\0') {
        return Err(ErrorKind::InvalidName("contains NUL"));
    }
    if name.len() > MAX_NAME {
        return Err(ErrorKind::NameTooLong);
    }
    Ok(())
}

/// Checks a whole path before it is walked: at most [`MAX_PATH`] bytes, no NUL, not empty.
pub fn check_path(path: &str) -> Result<(), ErrorKind> {
    if path.is_empty() {
        return Err(ErrorKind::InvalidName("empty path"));
    }
    if path.len() > MAX_PATH {
        return Err(ErrorKind::PathTooLong);
    }
    if path.contains('\0') {
        return Err(ErrorKind::InvalidName("contains NUL"));
    }
    Ok(())
}

/// The components of `path` that name something (`.` and empty ones left out; `..` kept).
pub fn components(path: &str) -> impl DoubleEndedIterator<Item = &str> {
    path.split('/').filter(|c| !c.is_empty() && *c != ".")
}
