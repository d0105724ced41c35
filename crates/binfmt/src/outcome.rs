//! What a command ends with: [`Completion`] when it ran to its end, [`CommandError`]
//! when it stopped short; `main` maps both to binfmt's exit code and prints the error
//! once. Also the one way a command prints its report on stdout ([`print_stdout`]).
//!
//! Exit codes: 0 when everything asked for is done, 1 when something could not be
//! done (the cause and fix are on stderr), 2 when the arguments are invalid (nothing
//! was changed); `binfmt run` has its own for a command it could not execute.

use std::fmt;
use std::io::Write as _;

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
    Usage(String),
    /// Something failed while running (exit 1).
    Runtime(String),
    /// `binfmt run` could not execute its command: the exit status it reports then.
    Run { code: u8, message: String },
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::Usage(message)
            | CommandError::Runtime(message)
            | CommandError::Run { message, .. } => f.write_str(message),
        }
    }
}

impl std::error::Error for CommandError {}

impl From<binfmt_misc::Error> for CommandError {
    fn from(error: binfmt_misc::Error) -> CommandError {
        CommandError::Runtime(error.to_string())
    }
}

/// Writes a report to stdout; failing to is an error (a closed pipe in CI).
pub fn print_stdout(text: &str) -> Result<(), CommandError> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|error| CommandError::Runtime(format!("cannot write to stdout: {error}")))
}
