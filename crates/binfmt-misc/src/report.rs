//! How a failure is written for a person, one way in every crate of binfmt: what
//! failed, each cause once, then `; fix: ` and what to do.
//!
//! Every error type follows the Rust API guidelines (and reqwest): its `Display` says
//! what failed at its own layer, naming the entry, path or architecture, and never
//! writes its cause, which it returns from [`source`](Error::source); what to do
//! about it, when that layer knows, is [`Fixable::fix`]. Only [`Report`] puts the
//! three together, so that the cause is printed once and the fix always comes last,
//! after it:
//!
//! ```text
//! cannot register qemu-riscv64: Permission denied (os error 13); fix: run as root, or in Docker with --privileged (...)
//! ```
//!
//! A person learns to look for `fix:`. [`Chain`] is the same without the fix, for log
//! records.

use std::error::Error;
use std::fmt;

/// An error that may know what the user can do about it.
pub trait Fixable: Error {
    /// What to do about this failure, when this layer knows: the action alone,
    /// without `fix: `. An error that wraps another says whose fix applies.
    fn fix(&self) -> Option<String>;
}

/// A system call's failure says nothing of what to do: the error that holds it does.
impl Fixable for std::io::Error {
    fn fix(&self) -> Option<String> {
        None
    }
}

/// A failure as binfmt prints it: its message, each cause after `: `, and `; fix: `
/// with the fix when there is one.
pub struct Report<'a>(pub &'a dyn Fixable);

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Chain(self.0).fmt(f)?;
        match self.0.fix() {
            Some(fix) => write!(f, "; fix: {fix}"),
            None => Ok(()),
        }
    }
}

/// A failure and its causes, `failure: cause: cause`, without a fix: for log records.
pub struct Chain<'a>(pub &'a dyn Error);

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.0, f)?;
        let mut cause = self.0.source();
        while let Some(error) = cause {
            write!(f, ": {error}")?;
            cause = error.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    #[derive(Debug)]
    struct Outer {
        source: io::Error,
    }

    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("cannot write /x")
        }
    }

    impl Error for Outer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.source)
        }
    }

    impl Fixable for Outer {
        fn fix(&self) -> Option<String> {
            Some("run as root".to_owned())
        }
    }

    #[test]
    fn the_cause_is_printed_once_and_the_fix_last() {
        let error = Outer {
            source: io::Error::from_raw_os_error(13),
        };
        assert_eq!(
            Report(&error).to_string(),
            "cannot write /x: Permission denied (os error 13); fix: run as root"
        );
        assert_eq!(
            Chain(&error).to_string(),
            "cannot write /x: Permission denied (os error 13)"
        );
    }
}
