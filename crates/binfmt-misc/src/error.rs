//! The errors of the kernel layer. Each variant carries the path or entry it is about
//! and, for system calls, the errno as its `source()`; `Display` says what failed, and
//! [`Fixable::fix`] what usually causes it and what to do (see [`crate::report`]).

use std::fmt;
use std::io;
use std::path::PathBuf;

use rustix::io::Errno;

use crate::entry::{Difference, InvalidRegistration, ParseError};
use crate::lock::LockBusy;
use crate::report::Fixable;

fn errno(source: &io::Error) -> Option<Errno> {
    source.raw_os_error().map(Errno::from_raw_os_error)
}

/// Something the kernel interface could not do.
#[derive(Debug)]
pub enum Error {
    /// The mount directory could not be opened.
    OpenMount { path: PathBuf, source: io::Error },
    /// The mount directory is a symbolic link; it could point anywhere.
    MountIsSymlink { path: PathBuf },
    /// The directory is not a binfmt_misc filesystem (`statfs` type shown).
    NotBinfmtMisc { path: PathBuf, fs_type: u64 },
    /// `mount -t binfmt_misc` failed.
    Mount { path: PathBuf, source: io::Error },
    /// Unmounting a binfmt_misc mount we made failed.
    Unmount { path: PathBuf, source: io::Error },
    /// Entering or leaving another mount namespace (`setns(2)`) failed.
    Namespace {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// The registration breaks a rule of the kernel's; nothing was written.
    Invalid {
        name: String,
        reason: InvalidRegistration,
    },
    /// An entry of that name exists already (EEXIST).
    AlreadyRegistered { name: String },
    /// Writing the register line failed with another errno.
    Register {
        name: String,
        interpreter: PathBuf,
        fix_binary: bool,
        source: io::Error,
    },
    /// Listing the mount failed.
    List { path: PathBuf, source: io::Error },
    /// Reading an entry or the status file failed.
    Read { path: PathBuf, source: io::Error },
    /// An entry file did not have the format the kernel prints.
    Parse { path: PathBuf, source: ParseError },
    /// Locking the instance against other binfmt runs failed.
    Lock { path: PathBuf, source: io::Error },
    /// Another process held the instance's lock for longer than the run would wait.
    LockBusy(LockBusy),
    /// The kernel accepted the writes, but the entry read back differs from what was
    /// registered: another process changed it at the same time.
    NotConverged {
        name: String,
        differences: Vec<Difference>,
    },
    /// The entry was registered, and is gone when read back: another process removed it.
    Vanished { name: String },
    /// Writing `1`, `0` or `-1` to an entry or the status file failed.
    Write {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },
}

/// What to do about an errno from a write into binfmt_misc, with what it usually means.
fn permission_fix(source: &io::Error) -> Option<String> {
    match errno(source) {
        Some(Errno::PERM | Errno::ACCESS) => Some(
            "run as root, or in Docker with --privileged (changing binfmt_misc needs \
             CAP_SYS_ADMIN in the user namespace that owns the mount)"
                .to_owned(),
        ),
        Some(Errno::ROFS) => Some(
            "in a container, run with --privileged so that /proc/sys is writable (the mount \
             is read-only)"
                .to_owned(),
        ),
        _ => None,
    }
}

/// The register line for `registration`, or [`Error::Invalid`] naming the entry: what
/// every [`Table`](crate::Table) implementation does before it writes anything.
pub(crate) fn encode(registration: &crate::entry::Registration) -> Result<Vec<u8>, Error> {
    registration
        .register_line()
        .map_err(|reason| Error::Invalid {
            name: registration.name.clone(),
            reason,
        })
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::OpenMount { path, .. } => write!(f, "cannot open {}", path.display()),
            Error::MountIsSymlink { path } => {
                write!(f, "{} is a symbolic link", path.display())
            }
            Error::NotBinfmtMisc { path, fs_type } => write!(
                f,
                "{} is not a binfmt_misc mount (filesystem type {fs_type:#x})",
                path.display()
            ),
            Error::Mount { path, .. } => {
                write!(f, "cannot mount binfmt_misc on {}", path.display())
            }
            Error::Unmount { path, .. } => write!(f, "cannot unmount {}", path.display()),
            Error::Namespace { action, path, .. } => {
                write!(f, "cannot {action} {}", path.display())
            }
            Error::Invalid { name, .. } => write!(f, "cannot register {name}"),
            Error::AlreadyRegistered { name } => write!(
                f,
                "entry {name} is already registered (EEXIST): another process registered it \
                 at the same time, or it must be removed first"
            ),
            Error::Register { name, source, .. } => match errno(source) {
                Some(Errno::INVAL) => {
                    write!(f, "the kernel rejected the register line of {name}")
                }
                _ => write!(f, "cannot register {name}"),
            },
            Error::List { path, .. } => write!(f, "cannot list {}", path.display()),
            Error::Read { path, .. } => write!(f, "cannot read {}", path.display()),
            Error::Parse { path, .. } => write!(
                f,
                "cannot understand {} as a binfmt_misc entry",
                path.display()
            ),
            Error::Lock { path, .. } => write!(
                f,
                "cannot lock {} against other binfmt runs",
                path.display()
            ),
            Error::LockBusy(busy) => busy.fmt(f),
            Error::NotConverged { name, differences } => {
                write!(f, "registered {name}, but the kernel reports ")?;
                for (index, difference) in differences.iter().enumerate() {
                    if index > 0 {
                        f.write_str(", ")?;
                    }
                    difference.fmt(f)?;
                }
                Ok(())
            }
            Error::Vanished { name } => write!(
                f,
                "registered {name}, but it is gone: another process removed it"
            ),
            Error::Write { path, action, .. } => write!(f, "cannot {action} {}", path.display()),
        }
    }
}

impl Fixable for Error {
    fn fix(&self) -> Option<String> {
        match self {
            Error::OpenMount { source, .. } if source.kind() == io::ErrorKind::NotFound => Some(
                "load binfmt_misc with `modprobe binfmt_misc` (the kernel may lack it)".to_owned(),
            ),
            Error::MountIsSymlink { .. } => {
                Some("give the binfmt_misc mount point itself".to_owned())
            }
            Error::NotBinfmtMisc { path, .. } => Some(format!(
                "mount one with `mount -t binfmt_misc binfmt_misc {}`",
                path.display()
            )),
            Error::Mount { source, .. } => match errno(source) {
                Some(Errno::NODEV) => Some(
                    "load the module with `modprobe binfmt_misc` (the kernel has no binfmt_misc)"
                        .to_owned(),
                ),
                Some(Errno::PERM | Errno::ACCESS) => Some(
                    "run as root, or in Docker with --privileged (mounting binfmt_misc needs \
                     CAP_SYS_ADMIN)"
                        .to_owned(),
                ),
                _ => None,
            },
            Error::Namespace { source, .. } => match errno(source) {
                Some(Errno::PERM | Errno::ACCESS) => Some(
                    "run the container with --privileged (another mount namespace needs \
                     CAP_SYS_ADMIN, CAP_SYS_CHROOT and ptrace access to pid 1)"
                        .to_owned(),
                ),
                _ => None,
            },
            Error::Register {
                interpreter,
                fix_binary,
                source,
                ..
            } => match errno(source) {
                Some(Errno::INVAL) if *fix_binary => {
                    Some("use Linux 4.8 or newer, the first with flag F".to_owned())
                }
                Some(Errno::NOENT) if *fix_binary => Some(format!(
                    "flag F opens the interpreter {} when the entry is registered: put it \
                     there first",
                    interpreter.display()
                )),
                _ => permission_fix(source),
            },
            Error::Write { source, .. } => permission_fix(source),
            Error::LockBusy(busy) => busy.fix(),
            Error::OpenMount { .. }
            | Error::Unmount { .. }
            | Error::Invalid { .. }
            | Error::AlreadyRegistered { .. }
            | Error::List { .. }
            | Error::Read { .. }
            | Error::Parse { .. }
            | Error::Lock { .. }
            | Error::NotConverged { .. }
            | Error::Vanished { .. } => None,
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::OpenMount { source, .. }
            | Error::Mount { source, .. }
            | Error::Unmount { source, .. }
            | Error::Namespace { source, .. }
            | Error::Register { source, .. }
            | Error::List { source, .. }
            | Error::Read { source, .. }
            | Error::Lock { source, .. }
            | Error::Write { source, .. } => Some(source),
            Error::Invalid { reason, .. } => Some(reason),
            Error::Parse { source, .. } => Some(source),
            Error::MountIsSymlink { .. }
            | Error::NotBinfmtMisc { .. }
            | Error::AlreadyRegistered { .. }
            | Error::LockBusy(_)
            | Error::NotConverged { .. }
            | Error::Vanished { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Report;

    #[test]
    fn the_errno_is_said_once_and_the_fix_last() {
        let error = Error::Register {
            name: "qemu-riscv64".to_owned(),
            interpreter: PathBuf::from("/var/lib/binfmt/qemu-riscv64"),
            fix_binary: true,
            source: io::Error::from_raw_os_error(Errno::ACCESS.raw_os_error()),
        };
        let shown = Report(&error).to_string();
        assert_eq!(shown.matches("Permission denied").count(), 1, "{shown}");
        assert!(
            shown.starts_with(
                "cannot register qemu-riscv64: Permission denied (os error 13); fix: run as root"
            ),
            "{shown}"
        );
        let error = Error::Write {
            path: PathBuf::from("/proc/sys/fs/binfmt_misc/qemu-arm"),
            action: "remove",
            source: io::Error::from_raw_os_error(Errno::ROFS.raw_os_error()),
        };
        let shown = Report(&error).to_string();
        assert_eq!(shown.matches("Read-only file system").count(), 1, "{shown}");
        assert!(
            shown.ends_with(
                "run with --privileged so that /proc/sys is writable (the mount is read-only)"
            ),
            "{shown}"
        );
    }
}
