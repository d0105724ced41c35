//! Why an interpreter could not be had: every error names the path (or the
//! emulator) it is about and keeps the error underneath as its
//! [`source`](std::error::Error::source).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use binfmt_misc::lock::LockBusy;
use binfmt_misc::report::Fixable;

use qemu_catalog::Arch;
use qemu_catalog::emulator::WriteError;
use rustix::io::Errno;

use crate::secure_dir::{SecureDirError, Unsafe};

/// Writing an interpreter out failed.
#[derive(Debug)]
pub enum Error {
    /// The directory's filesystem is read-only (EROFS): fall back to a memfd.
    ReadOnly { path: PathBuf },
    /// The directory is on FUSE: a file there that the kernel holds open (flag F)
    /// stops working when the filesystem's daemon exits, as it does when the
    /// container whose root it serves is removed. Fall back to a memfd.
    OnFuse { path: PathBuf },
    /// A directory on the way is one others could change: refused.
    Unsafe(Unsafe),
    /// Another process held the directory's lock for longer than the run would wait.
    LockBusy(LockBusy),
    /// Any other failure to create, check, write or rename a file.
    Io {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },
    /// The embedded emulator did not come out as pinned.
    Emulator(WriteError),
    /// `memfd_create(2)` or sealing failed.
    Memfd { source: io::Error },
    /// The emulator is a patch and its reference emulator could not be decoded.
    Reference {
        emulator: Arch,
        reference: Arch,
        reason: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::ReadOnly { path } => {
                write!(f, "{} is on a read-only filesystem", path.display())
            }
            Error::OnFuse { path } => write!(
                f,
                "{} is on a FUSE filesystem, whose daemon may exit (with this container) while \
                 the kernel still needs the file",
                path.display()
            ),
            Error::Unsafe(unsafe_dir) => unsafe_dir.fmt(f),
            Error::LockBusy(busy) => busy.fmt(f),
            Error::Io { path, action, .. } => write!(f, "cannot {action} {}", path.display()),
            Error::Emulator(error) => error.fmt(f),
            Error::Memfd { .. } => f.write_str("cannot create a memfd for the interpreter"),
            Error::Reference {
                emulator,
                reference,
                reason,
            } => write!(
                f,
                "cannot decode qemu-{}: it is stored as a difference to qemu-{}, which failed: \
                 {reason}",
                emulator.qemu_cpu(),
                reference.qemu_cpu()
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } | Error::Memfd { source } => Some(source),
            // These say what the error they hold says: its cause is theirs.
            Error::Emulator(error) => std::error::Error::source(error),
            Error::Unsafe(_)
            | Error::LockBusy(_)
            | Error::ReadOnly { .. }
            | Error::OnFuse { .. }
            | Error::Reference { .. } => None,
        }
    }
}

impl Fixable for Error {
    fn fix(&self) -> Option<String> {
        match self {
            Error::Unsafe(unsafe_dir) => unsafe_dir.fix(),
            Error::LockBusy(busy) => busy.fix(),
            Error::Emulator(error) => error.fix(),
            Error::Memfd { .. } => {
                Some("give a writable directory with --interpreter-dir".to_owned())
            }
            Error::ReadOnly { .. }
            | Error::OnFuse { .. }
            | Error::Io { .. }
            | Error::Reference { .. } => None,
        }
    }
}

impl From<SecureDirError> for Error {
    fn from(error: SecureDirError) -> Error {
        match error {
            SecureDirError::Unsafe(unsafe_dir) => Error::Unsafe(unsafe_dir),
            SecureDirError::Busy(busy) => Error::LockBusy(busy),
            SecureDirError::Io {
                path,
                action,
                source,
            } => io_error(&path, action, source),
        }
    }
}

impl Error {
    /// The errno underneath, when a system call on a file failed (ENOSPC, EACCES...):
    /// what a caller needs to say how to fix it.
    pub fn errno(&self) -> Option<Errno> {
        let source = match self {
            Error::Io { source, .. } | Error::Memfd { source } => source,
            Error::Emulator(WriteError::Io { source, .. }) => source,
            _ => return None,
        };
        source.raw_os_error().map(Errno::from_raw_os_error)
    }

    /// The path the error is about, when it is about one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Error::ReadOnly { path } | Error::OnFuse { path } | Error::Io { path, .. } => {
                Some(path)
            }
            Error::LockBusy(busy) => Some(&busy.path),
            Error::Unsafe(unsafe_dir) => Some(&unsafe_dir.path),
            _ => None,
        }
    }
}

/// The error of `action` on `path`: [`Error::ReadOnly`] (about the directory) for
/// EROFS, which callers fall back from.
pub(crate) fn io_error(path: &Path, action: &'static str, source: io::Error) -> Error {
    if source.raw_os_error() == Some(Errno::ROFS.raw_os_error()) {
        Error::ReadOnly {
            path: path.parent().unwrap_or(path).to_owned(),
        }
    } else {
        Error::Io {
            path: path.to_owned(),
            action,
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrapped_error_says_its_cause_once() {
        use binfmt_misc::report::Report;
        use qemu_catalog::emulator::WriteError;

        let error = Error::Emulator(WriteError::Io {
            arch: Arch::Riscv64,
            source: io::Error::from_raw_os_error(Errno::NOSPC.raw_os_error()),
        });
        let shown = Report(&error).to_string();
        assert_eq!(
            shown,
            "cannot write qemu-riscv64: No space left on device (os error 28)"
        );
        assert_eq!(error.errno(), Some(Errno::NOSPC));
        let error = io_error(
            Path::new("/var/lib/binfmt/.qemu-riscv64.tmp-1"),
            "write",
            io::Error::from_raw_os_error(Errno::NOSPC.raw_os_error()),
        );
        let shown = Report(&error).to_string();
        assert_eq!(shown.matches("No space left").count(), 1, "{shown}");
    }

    #[test]
    fn a_read_only_filesystem_names_the_directory() {
        let error = io_error(
            Path::new("/ro/binfmt/qemu-s390x"),
            "create",
            io::Error::from_raw_os_error(Errno::ROFS.raw_os_error()),
        );
        assert!(
            matches!(&error, Error::ReadOnly { path } if path == Path::new("/ro/binfmt")),
            "{error:?}"
        );
    }
}
