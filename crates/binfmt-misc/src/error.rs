//! The errors of the kernel layer. Each variant carries the path or entry it is about
//! and, for system calls, the errno; `Display` adds what usually causes it and the fix.

use std::fmt;
use std::io;
use std::path::PathBuf;

use rustix::io::Errno;

use crate::entry::{Difference, InvalidRegistration, ParseError};
use crate::lock::LockBusy;

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

/// What an errno from a write into binfmt_misc usually means, and what to do.
fn permission_hint(source: &io::Error) -> &'static str {
    match errno(source) {
        Some(Errno::PERM | Errno::ACCESS) => {
            ": changing binfmt_misc needs root (CAP_SYS_ADMIN in the user namespace that owns \
             the mount); run as root, or in Docker with --privileged"
        }
        Some(Errno::ROFS) => {
            ": the mount is read-only; in a container, run with --privileged so /proc/sys is writable"
        }
        _ => "",
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
            Error::OpenMount { path, source } => {
                write!(f, "cannot open {}: {source}", path.display())?;
                if source.kind() == io::ErrorKind::NotFound {
                    write!(
                        f,
                        " (the kernel may lack binfmt_misc: load it with `modprobe binfmt_misc`)"
                    )?;
                }
                Ok(())
            }
            Error::MountIsSymlink { path } => write!(
                f,
                "{} is a symbolic link: give the binfmt_misc mount point itself",
                path.display()
            ),
            Error::NotBinfmtMisc { path, fs_type } => write!(
                f,
                "{} is not a binfmt_misc mount (filesystem type {fs_type:#x}); mount one with \
                 `mount -t binfmt_misc binfmt_misc {}`",
                path.display(),
                path.display()
            ),
            Error::Mount { path, source } => {
                write!(
                    f,
                    "cannot mount binfmt_misc on {}: {source}",
                    path.display()
                )?;
                match errno(source) {
                    Some(Errno::NODEV) => write!(
                        f,
                        " (the kernel has no binfmt_misc: load the module with `modprobe binfmt_misc`)"
                    ),
                    Some(Errno::PERM | Errno::ACCESS) => {
                        write!(f, " (mounting needs root; in Docker run with --privileged)")
                    }
                    _ => Ok(()),
                }
            }
            Error::Unmount { path, source } => {
                write!(f, "cannot unmount {}: {source}", path.display())
            }
            Error::Namespace {
                action,
                path,
                source,
            } => {
                write!(f, "cannot {action} {}: {source}", path.display())?;
                match errno(source) {
                    Some(Errno::PERM | Errno::ACCESS) => f.write_str(
                        " (needs CAP_SYS_ADMIN, CAP_SYS_CHROOT and ptrace access to pid 1, as \
                         in a container run with --privileged)",
                    ),
                    _ => Ok(()),
                }
            }
            Error::Invalid { name, reason } => write!(f, "entry {name}: {reason}"),
            Error::AlreadyRegistered { name } => write!(
                f,
                "entry {name} is already registered (EEXIST): another process registered it \
                 at the same time, or it must be removed first"
            ),
            Error::Register {
                name,
                interpreter,
                fix_binary,
                source,
            } => {
                write!(f, "cannot register {name}: {source}")?;
                match errno(source) {
                    Some(Errno::INVAL) if *fix_binary => write!(
                        f,
                        " (the kernel rejected the line; flag F needs Linux 4.8 or newer)"
                    ),
                    Some(Errno::INVAL) => {
                        write!(f, " (the kernel rejected the line)")
                    }
                    Some(Errno::NOENT) if *fix_binary => write!(
                        f,
                        " (flag F opens the interpreter {} now, and it does not exist)",
                        interpreter.display()
                    ),
                    _ => f.write_str(permission_hint(source)),
                }
            }
            Error::List { path, source } => {
                write!(f, "cannot list {}: {source}", path.display())
            }
            Error::Read { path, source } => {
                write!(f, "cannot read {}: {source}", path.display())
            }
            Error::Parse { path, source } => write!(
                f,
                "cannot understand {}: {source}; is it a binfmt_misc entry?",
                path.display()
            ),
            Error::Lock { path, source } => write!(
                f,
                "cannot lock {} against other binfmt runs: {source}",
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
            Error::Write {
                path,
                action,
                source,
            } => write!(
                f,
                "cannot {action} {}: {source}{}",
                path.display(),
                permission_hint(source)
            ),
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
