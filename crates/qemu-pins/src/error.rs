//! Why the manifest or the cache directory cannot be used.
//!
//! As every error of binfmt's, a message says what failed, and its cause is `source()`
//! (a file that cannot be read), never written into it. This crate is used at build
//! time only, where errors are printed through `anyhow` (xtask) or a build script's
//! panic, both of which write `Display` alone; none of these errors has both a cause
//! and a fix, so the fix ends the message, in the one form binfmt prints fixes in:
//! `; fix: ` and the action.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// What to tell the user when the manifest itself is wrong.
const REPIN_HINT: &str = "regenerate it with `cargo xtask pin` instead of editing it by hand";

/// Why the manifest or the cache directory cannot be used.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The manifest file cannot be read.
    Read {
        /// The manifest file.
        path: PathBuf,
        /// What reading it returned.
        source: io::Error,
    },
    /// The manifest is not TOML or does not match the schema.
    Syntax {
        /// The manifest file, when it was loaded from one.
        path: Option<PathBuf>,
        /// The TOML parser's message, with line and column.
        message: String,
    },
    /// A field of the manifest has a value that cannot be right.
    Invalid {
        /// The manifest file, when it was loaded from one.
        path: Option<PathBuf>,
        /// Which field, e.g. `host[x86_64].emulator[aarch64].sha256`.
        field: String,
        /// What is wrong with its value.
        problem: String,
    },
    /// The variable that chooses the compression of the embedded emulators has a
    /// value that names none.
    Compression {
        /// Its value.
        value: String,
        /// The variable (`BINFMT_EMBEDDED_COMPRESSION`).
        variable: &'static str,
    },
    /// No cache directory can be determined from the environment.
    CacheDir {
        /// Which variables are missing or unusable.
        problem: String,
        /// The variable to set instead (`BINFMT_BLOB_CACHE`).
        variable: &'static str,
    },
}

impl Error {
    pub(crate) fn in_file(self, file: &Path) -> Error {
        match self {
            Error::Syntax { message, .. } => Error::Syntax {
                path: Some(file.to_path_buf()),
                message,
            },
            Error::Invalid { field, problem, .. } => Error::Invalid {
                path: Some(file.to_path_buf()),
                field,
                problem,
            },
            other => other,
        }
    }
}

fn manifest_name(path: &Option<PathBuf>) -> String {
    match path {
        Some(path) => format!("pin manifest {}", path.display()),
        None => "pin manifest".to_string(),
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Read { path, source } if source.kind() == io::ErrorKind::NotFound => write!(
                f,
                "pin manifest {} does not exist; fix: create it with `cargo xtask pin`",
                path.display()
            ),
            Error::Read { path, .. } => {
                write!(f, "cannot read pin manifest {}", path.display())
            }
            Error::Syntax { path, message } => write!(
                f,
                "{}: cannot parse it: {}; fix: {REPIN_HINT}",
                manifest_name(path),
                message.trim_end()
            ),
            Error::Invalid {
                path,
                field,
                problem,
            } => write!(
                f,
                "{}: field {field}: {problem}; fix: {REPIN_HINT}",
                manifest_name(path)
            ),
            Error::Compression { value, variable } => write!(
                f,
                "${variable} is {value:?}; fix: set it to `release` (what `cargo xtask dist` \
                 builds with) or `fast`, or unset it"
            ),
            Error::CacheDir { problem, variable } => write!(
                f,
                "cannot determine the emulator blob cache directory: {problem}; fix: \
                 set ${variable} to an absolute path"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            // "does not exist" says it already.
            Error::Read { source, .. } if source.kind() == io::ErrorKind::NotFound => None,
            Error::Read { source, .. } => Some(source),
            _ => None,
        }
    }
}
