//! What a command ends with: [`Completion`] when it ran to its end, [`CommandError`]
//! when it stopped short; `main` maps both to binfmt's exit code and prints the error
//! once.
//!
//! Exit codes: 0 when everything asked for is done, 1 when something could not be
//! done (the cause and fix are on stderr), 2 when the arguments are invalid (nothing
//! was changed); `binfmt run` has its own for a command it could not execute.

use std::fmt;
use std::sync::Arc;

use binfmt_misc::report::{Chain, Fixable, Report};

/// How far a command that did not stop got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Completion {
    /// Everything asked for is done (or proved): exit 0.
    Complete,
    /// Some of it is not; what and why was printed: exit 1.
    Incomplete,
}

impl Completion {
    /// [`Complete`](Completion::Complete) when `done`.
    pub fn of(done: bool) -> Completion {
        if done {
            Completion::Complete
        } else {
            Completion::Incomplete
        }
    }
}

/// Why binfmt stops before doing everything it was asked.
#[derive(Debug)]
pub enum CommandError {
    /// The arguments are invalid; nothing was changed (exit 2).
    Usage(Failure),
    /// Something failed while running (exit 1).
    Runtime(Failure),
    /// `binfmt run` could not execute its command: the exit status it reports then.
    Run { code: u8, failure: Failure },
}

impl CommandError {
    /// Invalid arguments: `what` (the option or key) and why.
    pub fn usage(what: impl Into<String>, error: impl Into<Failure>) -> CommandError {
        CommandError::Usage(Failure::from(Context {
            what: what.into(),
            error: error.into(),
        }))
    }

    /// The failure, as `main` prints it.
    pub fn failure(&self) -> &Failure {
        match self {
            CommandError::Usage(failure)
            | CommandError::Runtime(failure)
            | CommandError::Run { failure, .. } => failure,
        }
    }
}

impl fmt::Display for CommandError {
    /// The failure with its causes and its fix ([`Report`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.failure().fmt(f)
    }
}

impl<E: Fixable + 'static> From<E> for CommandError {
    fn from(error: E) -> CommandError {
        CommandError::Runtime(error.into())
    }
}

/// A failure as a command ends with it: kept typed (the library's error, a finding,
/// an argument's context) until it is printed, with its causes and fix ([`Report`]).
#[derive(Debug)]
pub struct Failure(Box<dyn Fixable>);

impl<E: Fixable + 'static> From<E> for Failure {
    fn from(error: E) -> Failure {
        Failure(Box::new(error))
    }
}

impl Failure {
    /// The failure itself.
    pub fn error(&self) -> &(dyn Fixable + 'static) {
        &*self.0
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Report(&*self.0).fmt(f)
    }
}

/// A failure binfmt words where it finds it: what is wrong, the error that caused it
/// when there is one, and what to do when there is something.
#[derive(Debug)]
pub struct Message {
    problem: String,
    cause: Option<Box<dyn std::error::Error>>,
    fix: Option<String>,
}

impl Message {
    /// The failure `problem`, with no cause and no fix.
    pub fn new(problem: impl Into<String>) -> Message {
        Message {
            problem: problem.into(),
            cause: None,
            fix: None,
        }
    }

    /// The same failure, caused by `cause`.
    #[must_use]
    pub fn because(self, cause: impl std::error::Error + 'static) -> Message {
        Message {
            cause: Some(Box::new(cause)),
            ..self
        }
    }

    /// `error` worded as a message: its causes, and its fix.
    pub fn of(error: &dyn Fixable) -> Message {
        Message {
            problem: Chain(error).to_string(),
            cause: None,
            fix: error.fix(),
        }
    }

    /// The same failure, fixed by `fix`.
    #[must_use]
    pub fn fix(self, fix: impl Into<String>) -> Message {
        Message {
            fix: Some(fix.into()),
            ..self
        }
    }
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.problem)
    }
}

impl std::error::Error for Message {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause.as_deref()
    }
}

impl Fixable for Message {
    fn fix(&self) -> Option<String> {
        self.fix.clone()
    }
}

/// A failure of something named: an option or a key (`--install`, `config
/// /etc/binfmt/config.toml: architectures`), or a step (`run`). Printed `what: failure`.
#[derive(Debug)]
pub struct Context {
    /// What failed.
    pub what: String,
    /// How.
    pub error: Failure,
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.what)
    }
}

impl std::error::Error for Context {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        let error: &(dyn std::error::Error + 'static) = self.error.error();
        Some(error)
    }
}

impl Fixable for Context {
    fn fix(&self) -> Option<String> {
        self.error.error().fix()
    }
}

/// An error kept as it is and shared, so that what holds it (a finding about it)
/// stays a value to copy and compare: two are equal when they read the same.
#[derive(Debug)]
pub struct Shared<E>(Arc<E>);

impl<E> Clone for Shared<E> {
    fn clone(&self) -> Shared<E> {
        Shared(Arc::clone(&self.0))
    }
}

impl<E> Shared<E> {
    /// `error`, shared.
    pub fn new(error: E) -> Shared<E> {
        Shared(Arc::new(error))
    }
}

impl<E> std::ops::Deref for Shared<E> {
    type Target = E;
    fn deref(&self) -> &E {
        &self.0
    }
}

impl<E: std::error::Error> PartialEq for Shared<E> {
    fn eq(&self, other: &Shared<E>) -> bool {
        Chain(&*self.0).to_string() == Chain(&*other.0).to_string()
    }
}

impl<E: std::error::Error> Eq for Shared<E> {}
