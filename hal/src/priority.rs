//! Thread priorities.

use core::fmt;

/// A thread priority: **a larger number is more important**. 64 levels, 0..=63; level 0 is
/// reserved for the idle threads, so application threads use 1..=63.
///
/// `Priority` deliberately does not implement `Ord`: compare with
/// [`Priority::is_more_important_than`], which cannot be misread.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Priority(u8);

/// Why a priority was refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct InvalidPriority(pub u32);

impl fmt::Display for InvalidPriority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "priority {} is outside {}..={}",
            self.0,
            Priority::MIN.0,
            Priority::MAX.0
        )
    }
}

impl Priority {
    /// Number of levels.
    pub const LEVELS: usize = 64;
    /// The idle threads' level, below every application thread.
    pub const IDLE: Priority = Priority(0);
    /// The least important application level.
    pub const MIN: Priority = Priority(1);
    /// The default for threads that do not ask.
    pub const NORMAL: Priority = Priority(16);
    /// The most important level.
    pub const MAX: Priority = Priority(63);

    /// A priority in `MIN..=MAX`.
    pub const fn new(level: u32) -> Result<Priority, InvalidPriority> {
        if level >= Self::MIN.0 as u32 && level <= Self::MAX.0 as u32 {
            Ok(Priority(level as u8))
        } else {
            Err(InvalidPriority(level))
        }
    }

    /// The level, 0..=63.
    pub const fn level(self) -> usize {
        self.0 as usize
    }

    /// Whether `self` must run before `other`.
    pub const fn is_more_important_than(self, other: Priority) -> bool {
        self.0 > other.0
    }

    /// The more important of the two.
    pub const fn max_importance(self, other: Priority) -> Priority {
        if other.is_more_important_than(self) {
            other
        } else {
            self
        }
    }
}

impl fmt::Debug for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "P{}", self.0)
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_and_direction() {
        assert_eq!(Priority::new(0), Err(InvalidPriority(0)));
        assert_eq!(Priority::new(64), Err(InvalidPriority(64)));
        let lo = Priority::new(1).unwrap();
        let hi = Priority::new(63).unwrap();
        assert!(hi.is_more_important_than(lo));
        assert!(!lo.is_more_important_than(hi));
        assert!(!lo.is_more_important_than(lo));
        assert!(lo.is_more_important_than(Priority::IDLE));
        assert_eq!(lo.max_importance(hi), hi);
    }
}
