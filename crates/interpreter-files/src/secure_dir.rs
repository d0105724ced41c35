//! Directories that only root can change, for the emulators every foreign program
//! runs through.
//!
//! An entry's interpreter runs for every binary the entry matches, with flag `C` even
//! with the binary's setuid privileges. Whoever can replace that file, or rename a
//! directory on its path, can run code as anyone on the machine. So before binfmt
//! writes or trusts an interpreter file, it walks the directory from `/` one
//! component at a time with `openat(2)` and `O_NOFOLLOW`, and refuses the path if any
//! component
//!
//! - is a symbolic link (its target could change after the check),
//! - is writable by group or others (a sticky bit, as on `/tmp`, does not help: anyone
//!   may still create the file before root does), or
//! - is owned by anyone but root or the user running binfmt.
//!
//! The descriptor of the last component is what files are then created, checked and
//! renamed in, so what was checked is what is used. The kernel later opens the
//! interpreter by path; with every directory on it root's alone, only root can change
//! what that path names.
//!
//! Inside a user namespace (a rootless container, the tests' private namespaces),
//! files of users outside it, the machine's root among them, appear owned by the
//! overflow uid (`/proc/sys/kernel/overflowuid`, usually 65534). binfmt there can only
//! change that namespace's own binfmt_misc instance, and the machine's root owns `/`,
//! so the overflow uid is trusted there, and only there. In the initial namespace
//! 65534 is the ordinary user `nobody` and is not trusted.

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use binfmt_misc::lock::{self, LockBusy, LockWaitError};
use binfmt_misc::report::Fixable;
use rustix::fs::{AtFlags, CWD, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;

/// Mode bits that let someone other than the owner write.
const WRITABLE_BY_OTHERS: u32 = 0o022;

/// What is wrong with a directory on the interpreter's path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// The path is relative: it would depend on the working directory.
    NotAbsolute,
    /// The path has a `..` component.
    ParentComponent,
    /// The component is a symbolic link.
    Symlink { target: PathBuf },
    /// The component exists but is not a directory.
    NotDirectory,
    /// Group or others may write to it.
    WritableByOthers { mode: u32, uid: u32 },
    /// It belongs to a user who is neither root nor the one running binfmt.
    Owner { uid: u32, mode: u32 },
}

/// A directory on the interpreter's path that binfmt refuses to use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsafe {
    /// The offending component, as a path from `/`.
    pub path: PathBuf,
    /// What is wrong with it.
    pub problem: Problem,
}

/// What whoever can change a directory on the interpreter's path can do.
const RISK: &str = "whoever can change it can replace the emulator that foreign programs \
                    (setuid ones too, with flag C) run through";

impl fmt::Display for Unsafe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.problem {
            Problem::NotAbsolute | Problem::ParentComponent => {
                write!(f, "interpreter directory {}", self.describe())
            }
            Problem::Symlink { .. } => {
                write!(f, "{}: {RISK} by pointing it elsewhere", self.describe())
            }
            Problem::NotDirectory => f.write_str(&self.describe()),
            Problem::WritableByOthers { .. } | Problem::Owner { .. } => {
                write!(f, "{}: {RISK}", self.describe())
            }
        }
    }
}

impl std::error::Error for Unsafe {}

impl Fixable for Unsafe {
    fn fix(&self) -> Option<String> {
        let path = self.path.display();
        Some(match &self.problem {
            Problem::NotAbsolute => "give one from `/`".to_owned(),
            Problem::ParentComponent => "give the directory itself".to_owned(),
            Problem::Symlink { .. } => {
                "give the resolved directory with --interpreter-dir".to_owned()
            }
            Problem::NotDirectory => "give a directory with --interpreter-dir".to_owned(),
            Problem::WritableByOthers { .. } => format!(
                "run `chmod go-w {path}`, or choose a directory only root can write with \
                 --interpreter-dir (default /var/lib/binfmt)"
            ),
            Problem::Owner { .. } => format!(
                "run `chown root {path}`, or choose a directory owned by root with \
                 --interpreter-dir (default /var/lib/binfmt)"
            ),
        })
    }
}

impl Unsafe {
    /// Whether the component is a symbolic link.
    pub fn is_symlink(&self) -> bool {
        matches!(self.problem, Problem::Symlink { .. })
    }

    /// What is wrong with the component, without what it risks or what to do about it
    /// (which depends on what the directory was wanted for).
    pub fn describe(&self) -> String {
        let path = self.path.display();
        match &self.problem {
            Problem::NotAbsolute => format!("{path} is not an absolute path"),
            Problem::ParentComponent => format!("{path} has a `..` component"),
            Problem::Symlink { target } => {
                format!("{path} is a symbolic link (to {})", target.display())
            }
            Problem::NotDirectory => format!("{path} is not a directory"),
            Problem::WritableByOthers { mode, uid } => {
                format!("{path} is writable by others (mode {mode:04o}, owner uid {uid})")
            }
            Problem::Owner { uid, mode } => {
                format!("{path} belongs to uid {uid} (mode {mode:04o}), not root")
            }
        }
    }
}

/// Whose files binfmt trusts: see the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trust {
    /// The effective uid binfmt runs as (0 when run as root).
    pub euid: u32,
    /// The overflow uid, when running in a user namespace other than the initial one.
    pub overflow_uid: Option<u32>,
}

impl Trust {
    /// The trust of the running process.
    pub fn current() -> Trust {
        let euid = rustix::process::geteuid().as_raw();
        // The initial user namespace maps every uid to itself: "0 0 4294967295". If
        // /proc is not there, assume the initial namespace (the stricter choice).
        let in_child_namespace = std::fs::read_to_string("/proc/self/uid_map")
            .map(|map| map.split_whitespace().collect::<Vec<_>>() != ["0", "0", "4294967295"])
            .unwrap_or(false);
        let overflow_uid = in_child_namespace.then(|| {
            std::fs::read_to_string("/proc/sys/kernel/overflowuid")
                .ok()
                .and_then(|text| text.trim().parse().ok())
                .unwrap_or(65534)
        });
        Trust { euid, overflow_uid }
    }

    /// Whether files of `uid` may be trusted.
    pub fn trusts(&self, uid: u32) -> bool {
        uid == 0 || uid == self.euid || Some(uid) == self.overflow_uid
    }

    /// Judges one directory on the path from its `stat`.
    pub fn judge_dir(&self, mode: u32, uid: u32) -> Result<(), Problem> {
        let permissions = mode & 0o7777;
        if FileType::from_raw_mode(mode) != FileType::Directory {
            Err(Problem::NotDirectory)
        } else if permissions & WRITABLE_BY_OTHERS != 0 {
            Err(Problem::WritableByOthers {
                mode: permissions,
                uid,
            })
        } else if !self.trusts(uid) {
            Err(Problem::Owner {
                uid,
                mode: permissions,
            })
        } else {
            Ok(())
        }
    }
}

/// A directory checked from `/` down, held open.
#[derive(Debug)]
pub struct SecureDir {
    path: PathBuf,
    /// Opened for reading (not `O_PATH`), so it can be locked and listed.
    fd: OwnedFd,
}

/// Opening or checking a directory failed.
#[derive(Debug)]
pub enum SecureDirError {
    /// A component is unsafe.
    Unsafe(Unsafe),
    /// A system call failed on `path`.
    Io {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },
    /// Another process held the directory's lock for longer than the run would wait.
    Busy(LockBusy),
}

impl fmt::Display for SecureDirError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecureDirError::Unsafe(unsafe_dir) => unsafe_dir.fmt(f),
            SecureDirError::Io { path, action, .. } => {
                write!(f, "cannot {action} {}", path.display())
            }
            SecureDirError::Busy(busy) => busy.fmt(f),
        }
    }
}

impl Fixable for SecureDirError {
    fn fix(&self) -> Option<String> {
        match self {
            SecureDirError::Unsafe(unsafe_dir) => unsafe_dir.fix(),
            SecureDirError::Busy(busy) => busy.fix(),
            SecureDirError::Io { .. } => None,
        }
    }
}

impl std::error::Error for SecureDirError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            // The same failure as the `Unsafe` it holds, not a cause below it.
            SecureDirError::Unsafe(_) | SecureDirError::Busy(_) => None,
            SecureDirError::Io { source, .. } => Some(source),
        }
    }
}

impl SecureDirError {
    /// Whether the failure is a read-only filesystem (EROFS).
    pub fn is_read_only(&self) -> bool {
        matches!(self, SecureDirError::Io { source, .. } if source.raw_os_error() == Some(Errno::ROFS.raw_os_error()))
    }
}

fn io_error<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(Errno) -> SecureDirError + 'a {
    move |errno| SecureDirError::Io {
        path: path.to_owned(),
        action,
        source: errno.into(),
    }
}

fn unsafe_at(path: &Path, problem: Problem) -> SecureDirError {
    SecureDirError::Unsafe(Unsafe {
        path: path.to_owned(),
        problem,
    })
}

impl SecureDir {
    /// Opens `path`, creating missing directories with mode 0755, and checks every
    /// component from `/` down.
    pub fn open(path: &Path, trust: &Trust) -> Result<SecureDir, SecureDirError> {
        let fd = walk(path, true, trust)?.ok_or_else(|| SecureDirError::Io {
            path: path.to_owned(),
            action: "open",
            source: Errno::NOENT.into(),
        })?;
        SecureDir::reopen(path, &fd)
    }

    /// Checks the components of `path` that exist, creating nothing, and opens the
    /// directory if it exists (`None` if not): also the check a caller makes before
    /// its first write, to refuse an unsafe directory while nothing has changed.
    pub fn open_existing(path: &Path, trust: &Trust) -> Result<Option<SecureDir>, SecureDirError> {
        match walk(path, false, trust)? {
            Some(fd) => SecureDir::reopen(path, &fd).map(Some),
            None => Ok(None),
        }
    }

    /// Reopens an `O_PATH` descriptor for reading, to lock and list it.
    fn reopen(path: &Path, fd: &OwnedFd) -> Result<SecureDir, SecureDirError> {
        let fd = rustix::fs::openat(
            fd,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io_error(path, "open"))?;
        Ok(SecureDir {
            path: path.to_owned(),
            fd,
        })
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory's descriptor, for `*at` calls relative to it.
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// Takes an exclusive `flock(2)` on the directory, waiting at most `timeout` for
    /// another binfmt writing into it; held until this value is dropped.
    pub fn lock(&self, timeout: Duration) -> Result<(), SecureDirError> {
        let waiting = || {
            log::info!(
                "another binfmt is writing into {}; waiting for it to finish (at most {} s)",
                self.path.display(),
                timeout.as_secs()
            );
        };
        lock::lock_exclusive(&self.fd, &self.path, timeout, waiting).map_err(|error| match error {
            LockWaitError::Busy(busy) => SecureDirError::Busy(busy),
            LockWaitError::Failed(errno) => io_error(&self.path, "lock")(errno),
        })
    }

    /// Reads the small file `name` if only a trusted user could have written it: a
    /// regular file owned by a user `trust` trusts and writable by nobody else (the
    /// directory itself was checked when it was opened). `None` when it is missing,
    /// untrusted, unreadable or longer than `limit` bytes.
    pub fn read_trusted(&self, name: &str, limit: usize, trust: &Trust) -> Option<String> {
        // O_NONBLOCK: a FIFO planted there must not hang the open.
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()?;
        let stat = rustix::fs::fstat(&fd).ok()?;
        let trusted = FileType::from_raw_mode(stat.st_mode) == FileType::RegularFile
            && trust.trusts(stat.st_uid)
            && stat.st_mode & WRITABLE_BY_OTHERS == 0;
        if !trusted {
            return None;
        }
        let mut text = String::new();
        // One byte more than the limit, to tell a longer file.
        std::io::Read::read_to_string(
            &mut std::io::Read::take(std::fs::File::from(fd), limit as u64 + 1),
            &mut text,
        )
        .ok()?;
        (text.len() <= limit).then_some(text)
    }

    /// Replaces the file `name` with `contents`, mode 0644 less the umask: written to
    /// `<name>.tmp-<pid>` and renamed into place, so a reader finds the old file or the
    /// new one whole. The temporary file is removed when anything fails.
    pub fn replace_file(&self, name: &str, contents: &[u8]) -> io::Result<()> {
        let temporary = format!("{name}.tmp-{}", std::process::id());
        let written = rustix::fs::openat(
            &self.fd,
            temporary.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .map_err(io::Error::from)
        .and_then(|fd| std::io::Write::write_all(&mut std::fs::File::from(fd), contents))
        .and_then(|()| {
            rustix::fs::renameat(&self.fd, temporary.as_str(), &self.fd, name)
                .map_err(io::Error::from)
        });
        if written.is_err() {
            let _ = rustix::fs::unlinkat(&self.fd, temporary.as_str(), AtFlags::empty());
        }
        written
    }

    /// The names of the directory's entries.
    pub fn names(&self) -> Result<Vec<Vec<u8>>, SecureDirError> {
        let dir = rustix::fs::openat(
            &self.fd,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io_error(&self.path, "list"))?;
        let mut names = Vec::new();
        for item in rustix::fs::Dir::new(dir).map_err(io_error(&self.path, "list"))? {
            let item = item.map_err(io_error(&self.path, "list"))?;
            let name = item.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push(name.to_vec());
            }
        }
        Ok(names)
    }
}

/// Walks `path` from `/`, checking each component; creates missing ones when
/// `create`, else returns `None` at the first missing one.
fn walk(path: &Path, create: bool, trust: &Trust) -> Result<Option<OwnedFd>, SecureDirError> {
    if !path.is_absolute() {
        return Err(unsafe_at(path, Problem::NotAbsolute));
    }
    let mut current = PathBuf::from("/");
    let mut fd = rustix::fs::openat(
        CWD,
        "/",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io_error(&current, "open"))?;
    judge(&fd, &current, trust)?;
    for component in path.components() {
        let name = match component {
            Component::RootDir | Component::CurDir => continue,
            Component::ParentDir => return Err(unsafe_at(path, Problem::ParentComponent)),
            Component::Prefix(_) => return Err(unsafe_at(path, Problem::NotAbsolute)),
            Component::Normal(name) => name,
        };
        current.push(name);
        let opened = rustix::fs::openat(
            &fd,
            name,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        );
        let next = match opened {
            Ok(next) => next,
            Err(Errno::NOENT) if create => make_dir(&fd, name, &current)?,
            Err(Errno::NOENT) => return Ok(None),
            Err(Errno::NOTDIR | Errno::LOOP) => {
                return Err(unsafe_at(&current, not_a_directory(&fd, name)));
            }
            Err(errno) => return Err(io_error(&current, "open")(errno)),
        };
        judge(&next, &current, trust)?;
        fd = next;
    }
    Ok(Some(fd))
}

/// `mkdirat(2)` with mode 0755 whatever the umask, then opens what was made.
fn make_dir(parent: &OwnedFd, name: &OsStr, path: &Path) -> Result<OwnedFd, SecureDirError> {
    match rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o755)) {
        // Another process made it meanwhile: it is checked like any other.
        Ok(()) | Err(Errno::EXIST) => {}
        Err(errno) => return Err(io_error(path, "create directory")(errno)),
    }
    let made = rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io_error(path, "open"))?;
    let stat = rustix::fs::fstat(&made).map_err(io_error(path, "stat"))?;
    if stat.st_mode & 0o7777 != 0o755 && stat.st_uid == rustix::process::geteuid().as_raw() {
        rustix::fs::fchmod(&made, Mode::from_raw_mode(0o755)).map_err(io_error(path, "chmod"))?;
    }
    Ok(made)
}

/// Why `name` in `parent` could not be opened as a directory.
fn not_a_directory(parent: &OwnedFd, name: &OsStr) -> Problem {
    let is_symlink = rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW)
        .is_ok_and(|stat| FileType::from_raw_mode(stat.st_mode) == FileType::Symlink);
    if is_symlink {
        let target = rustix::fs::readlinkat(parent, name, Vec::new())
            .map(|target| PathBuf::from(OsStr::from_bytes(target.as_bytes())))
            .unwrap_or_else(|_| PathBuf::from("?"));
        Problem::Symlink { target }
    } else {
        Problem::NotDirectory
    }
}

fn judge(fd: &OwnedFd, path: &Path, trust: &Trust) -> Result<(), SecureDirError> {
    let stat: Stat = rustix::fs::fstat(fd).map_err(io_error(path, "stat"))?;
    trust
        .judge_dir(stat.st_mode, stat.st_uid)
        .map_err(|problem| unsafe_at(path, problem))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIR: u32 = 0o040_000;
    const FILE: u32 = 0o100_000;

    fn as_root() -> Trust {
        Trust {
            euid: 0,
            overflow_uid: None,
        }
    }

    #[test]
    fn only_root_owned_directories_nobody_else_can_write_are_trusted() {
        let trust = as_root();
        assert_eq!(trust.judge_dir(DIR | 0o755, 0), Ok(()));
        assert_eq!(trust.judge_dir(DIR | 0o700, 0), Ok(()));
        assert_eq!(
            trust.judge_dir(DIR | 0o1777, 0),
            Err(Problem::WritableByOthers {
                mode: 0o1777,
                uid: 0
            })
        );
        assert_eq!(
            trust.judge_dir(DIR | 0o775, 0),
            Err(Problem::WritableByOthers {
                mode: 0o775,
                uid: 0
            })
        );
        assert_eq!(
            trust.judge_dir(DIR | 0o757, 0),
            Err(Problem::WritableByOthers {
                mode: 0o757,
                uid: 0
            })
        );
        assert_eq!(
            trust.judge_dir(DIR | 0o755, 1000),
            Err(Problem::Owner {
                uid: 1000,
                mode: 0o755
            })
        );
        assert_eq!(trust.judge_dir(FILE | 0o755, 0), Err(Problem::NotDirectory));
        // In the initial namespace 65534 is `nobody`, an ordinary user.
        assert!(!trust.trusts(65534));
    }

    #[test]
    fn the_user_running_binfmt_and_the_overflow_uid_in_a_namespace_are_trusted() {
        let trust = Trust {
            euid: 1000,
            overflow_uid: Some(65534),
        };
        assert_eq!(trust.judge_dir(DIR | 0o755, 1000), Ok(()));
        assert_eq!(trust.judge_dir(DIR | 0o755, 65534), Ok(()));
        assert!(trust.judge_dir(DIR | 0o755, 1001).is_err());
        assert!(trust.judge_dir(DIR | 0o777, 65534).is_err());
    }

    #[test]
    fn messages_name_the_path_the_mode_and_the_fix() {
        let shown = Unsafe {
            path: PathBuf::from("/srv/qemu"),
            problem: Problem::WritableByOthers {
                mode: 0o1777,
                uid: 0,
            },
        };
        let shown = binfmt_misc::report::Report(&shown).to_string();
        assert!(
            shown.starts_with("/srv/qemu is writable by others (mode 1777"),
            "{shown}"
        );
        assert!(shown.contains("chmod go-w /srv/qemu"), "{shown}");
        let shown = Unsafe {
            path: PathBuf::from("/srv/qemu"),
            problem: Problem::Owner {
                uid: 1000,
                mode: 0o755,
            },
        };
        let shown = binfmt_misc::report::Report(&shown).to_string();
        assert!(shown.contains("belongs to uid 1000"), "{shown}");
        assert!(shown.contains("chown root /srv/qemu"), "{shown}");
    }

    #[test]
    fn relative_paths_and_dot_dot_are_refused() {
        let trust = as_root();
        assert!(matches!(
            SecureDir::open_existing(Path::new("relative/dir"), &trust),
            Err(SecureDirError::Unsafe(Unsafe {
                problem: Problem::NotAbsolute,
                ..
            }))
        ));
        assert!(matches!(
            SecureDir::open_existing(Path::new("/usr/../var/lib/binfmt"), &trust),
            Err(SecureDirError::Unsafe(Unsafe {
                problem: Problem::ParentComponent,
                ..
            }))
        ));
    }
}
