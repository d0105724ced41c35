//! The binfmt_misc table: the [`Table`] trait, the seam between the logic that decides
//! what to change and the kernel, and [`BinfmtMisc`], its implementation over a real
//! mount.
//!
//! [`BinfmtMisc`] holds a file descriptor to the mount directory, opened with
//! `O_NOFOLLOW` and checked with `fstatfs(2)`, and reaches every file through
//! `openat(2)` relative to it with names checked by [`validate_name`]: what was checked
//! is what is written to, and no entry name can lead outside the mount.
//!
//! [`BinfmtMisc::lock`] serialises binfmt runs on one instance with `flock(2)` on the
//! mount's root directory. Every mount of an instance (the host's, a privileged
//! container's) shares that one inode, so the lock holds across containers with no
//! lock file to create; the kernel drops it when its holder dies, even by SIGKILL. The
//! wait for it is bounded ([`crate::lock`]).

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::fs::{AtFlags, CWD, Mode, OFlags};
use rustix::io::Errno;

use crate::entry::{CONTROL_FILES, Entry, Registration, validate_name};
use crate::error::Error;
use crate::kill_point;
use crate::lock::{self, LockWaitError};

/// `BINFMTFS_MAGIC` from `include/uapi/linux/magic.h`: `statfs(2)`'s `f_type` for a
/// binfmt_misc mount.
pub const BINFMTFS_MAGIC: u64 = 0x4249_4e4d;

/// Where every distribution mounts binfmt_misc (systemd's
/// `proc-sys-fs-binfmt_misc.automount`, or by hand).
pub const DEFAULT_MOUNT: &str = "/proc/sys/fs/binfmt_misc";

/// The operations on a binfmt_misc table that the rest of binfmt needs.
///
/// Implemented by [`BinfmtMisc`] for a real mount and by
/// [`FakeTable`](crate::fake::FakeTable) for tests that need no kernel.
pub trait Table {
    /// Where the table is mounted, for messages.
    fn path(&self) -> &Path;

    /// The names of all entries (not `register` or `status`), in the order the kernel
    /// tries them: the one registered last first.
    ///
    /// The kernel adds each new entry at the head of the list it matches a program
    /// against (`list_add()` in `bm_register_write()`), and the entry's file at the
    /// head of the mount's directory, which `readdir(2)` lists from the head: so
    /// directory order is matching order (`tests/kernel.rs` checks it on the kernel it
    /// runs on). Of several enabled entries that accept a program, the first listed
    /// runs it.
    fn entry_names(&self) -> Result<Vec<String>, Error>;

    /// The entry of that name, or `None` when there is none.
    fn read_entry(&self, name: &str) -> Result<Option<Entry>, Error>;

    /// Registers an entry with one `write(2)` to `register`. Validates first: an
    /// invalid registration writes nothing.
    fn register(&self, registration: &Registration) -> Result<(), Error>;

    /// Enables (`1`) or disables (`0`) one entry.
    fn set_enabled(&self, name: &str, enabled: bool) -> Result<(), Error>;

    /// Removes one entry (`-1`). Refuses control files and names that are not entries.
    fn remove(&self, name: &str) -> Result<(), Error>;

    /// Whether the whole table is enabled (`<mount>/status`).
    fn is_enabled(&self) -> Result<bool, Error>;

    /// Which registration the entry of that name is, or `None` when there is none;
    /// see [`RegistrationId`].
    fn registration_id(&self, name: &str) -> Result<Option<RegistrationId>, Error>;
}

/// Tells one registration of an entry from every other, within one boot.
///
/// Registering (even the same line again, after a removal) creates a new entry file,
/// and the kernel gives each new file a fresh inode number (`get_next_ino()`) and
/// sets its ctime; enabling or disabling an entry changes neither. So two reads that
/// find the same id in the same instance, in the same boot, read the same
/// registration: the same interpreter the kernel opened for flag `F`, not merely the
/// same text. (Callers that cache what they learned about an entry key it on this
/// and on the boot; across boots inode numbers start over.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RegistrationId {
    /// The binfmt_misc instance (`st_dev` of the entry file: each mount of a new
    /// instance is a new superblock).
    pub instance: u64,
    /// The entry file's inode number.
    pub inode: u64,
    /// The entry file's ctime, in nanoseconds since the epoch.
    pub created_ns: i128,
}

impl std::fmt::Display for RegistrationId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.instance, self.inode, self.created_ns)
    }
}

/// An exclusive lock on a binfmt_misc instance (see [`BinfmtMisc::lock`]); dropping it
/// unlocks.
#[derive(Debug)]
pub struct TableLock {
    _dir: OwnedFd,
}

/// A binfmt_misc mount.
#[derive(Debug)]
pub struct BinfmtMisc {
    /// `O_PATH` descriptor of the mount directory, checked to be binfmt_misc.
    dir: OwnedFd,
    path: PathBuf,
}

impl BinfmtMisc {
    /// Opens the binfmt_misc mount at `path`.
    ///
    /// Fails with [`Error::MountIsSymlink`] for a symbolic link and with
    /// [`Error::NotBinfmtMisc`] (carrying the filesystem type, so the caller can tell
    /// "nothing mounted here" apart) for any other filesystem.
    pub fn open(path: impl Into<PathBuf>) -> Result<BinfmtMisc, Error> {
        let path = path.into();
        // O_NOFOLLOW with O_DIRECTORY fails on a symlink (ENOTDIR) instead of following
        // it; look again with lstat to say so plainly.
        let dir = rustix::fs::openat(
            CWD,
            &path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|errno| {
            let is_symlink = std::fs::symlink_metadata(&path)
                .map(|m| m.file_type().is_symlink())
                .unwrap_or(false);
            if is_symlink {
                Error::MountIsSymlink { path: path.clone() }
            } else {
                Error::OpenMount {
                    path: path.clone(),
                    source: errno.into(),
                }
            }
        })?;
        let stat = rustix::fs::fstatfs(&dir).map_err(|errno| Error::OpenMount {
            path: path.clone(),
            source: errno.into(),
        })?;
        // `f_type` is i64 on most architectures and u32 on s390x.
        #[allow(clippy::unnecessary_cast)]
        let fs_type = stat.f_type as u64;
        if fs_type != BINFMTFS_MAGIC {
            return Err(Error::NotBinfmtMisc { path, fs_type });
        }
        Ok(BinfmtMisc { dir, path })
    }

    /// Mounts binfmt_misc at `path` (`mount -t binfmt_misc binfmt_misc PATH`, with
    /// nosuid, nodev and noexec as systemd does) and opens it.
    ///
    /// Calls [`mount(2)`](https://man7.org/linux/man-pages/man2/mount.2.html). In a
    /// user namespace of its own (Linux 6.7 or newer) this creates a private instance
    /// that only processes in that namespace see. The instance lives as long as some
    /// mount of it does: mounted from a container's private mount namespace, it dies
    /// with the container.
    pub fn mount(path: impl Into<PathBuf>) -> Result<BinfmtMisc, Error> {
        use rustix::mount::MountFlags;
        let path = path.into();
        rustix::mount::mount(
            "binfmt_misc",
            &path,
            "binfmt_misc",
            MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
            None,
        )
        .map_err(|errno| Error::Mount {
            path: path.clone(),
            source: errno.into(),
        })?;
        BinfmtMisc::open(path)
    }

    /// Unmounts this mount, for a caller that mounted it only to look inside:
    /// [`umount2(2)`](https://man7.org/linux/man-pages/man2/umount2.2.html) with
    /// `MNT_DETACH`, after closing the directory descriptor.
    ///
    /// Unmounting the last mount of an instance destroys it with every entry (on many
    /// kernels: see [`crate::persist`]), which is why only the caller that mounted it
    /// may do this.
    pub fn unmount(self) -> io::Result<()> {
        let BinfmtMisc { dir, path } = self;
        drop(dir);
        rustix::mount::unmount(&path, rustix::mount::UnmountFlags::DETACH).map_err(io::Error::from)
    }

    fn file_path(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    fn open_file(&self, name: &str, flags: OFlags) -> Result<OwnedFd, Errno> {
        rustix::fs::openat(
            &self.dir,
            name,
            flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
    }

    /// Takes an exclusive lock on this binfmt_misc instance, waiting at most `timeout`
    /// while another binfmt holds it; the lock lasts until the returned value is
    /// dropped or the process ends. Past the timeout it fails with
    /// [`Error::LockBusy`], naming the holder.
    ///
    /// Calls [`flock(2)`](https://man7.org/linux/man-pages/man2/flock.2.html) on the
    /// mount's root directory, opened for reading (an `O_PATH` descriptor cannot be
    /// locked). Two runs that change the same entries one after the other give the
    /// same table in any order; at the same time, each could undo the other's step.
    pub fn lock(&self, timeout: Duration) -> Result<TableLock, Error> {
        let lock_error = |errno: Errno| Error::Lock {
            path: self.path.clone(),
            source: errno.into(),
        };
        let dir = self
            .open_file(".", OFlags::RDONLY | OFlags::DIRECTORY)
            .map_err(lock_error)?;
        let waiting = || {
            log::info!(
                "another binfmt is changing {}; waiting for it to finish (at most {} s)",
                self.path.display(),
                timeout.as_secs()
            );
        };
        lock::lock_exclusive(&dir, &self.path, timeout, waiting).map_err(|error| match error {
            LockWaitError::Busy(busy) => Error::LockBusy(busy),
            LockWaitError::Failed(errno) => lock_error(errno),
        })?;
        log::debug!("locked {}", self.path.display());
        Ok(TableLock { _dir: dir })
    }

    /// Writes `bytes` to the file `name` in one `write(2)`, as binfmt_misc expects.
    /// `what` describes the step for the kill-safety tests ([`kill_point`]).
    fn write_once(
        &self,
        name: &str,
        bytes: &[u8],
        what: &dyn std::fmt::Display,
    ) -> Result<(), Errno> {
        let fd = self.open_file(name, OFlags::WRONLY)?;
        kill_point::step(what);
        let written = rustix::io::write(&fd, bytes)?;
        if written != bytes.len() {
            // binfmt_misc consumes a whole line or fails; a short write means something
            // else is mounted here.
            return Err(Errno::IO);
        }
        Ok(())
    }

    fn write_control(&self, name: &str, value: &[u8], action: &'static str) -> Result<(), Error> {
        let what = format_args!("{action} {name}");
        self.write_once(name, value, &what)
            .map_err(|errno| Error::Write {
                path: self.file_path(name),
                action,
                source: errno.into(),
            })
    }

    fn read_file(&self, name: &str) -> Result<Option<String>, Error> {
        let read_error = |source: io::Error| Error::Read {
            path: self.file_path(name),
            source,
        };
        let fd = match self.open_file(name, OFlags::RDONLY) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(None),
            Err(errno) => return Err(read_error(errno.into())),
        };
        let mut text = String::new();
        File::from(fd)
            .read_to_string(&mut text)
            .map_err(read_error)?;
        Ok(Some(text))
    }

    /// Checks that `name` names an entry file, never a control file or a path.
    fn entry_name<'a>(&self, name: &'a str) -> Result<&'a str, Error> {
        validate_name(name).map_err(|reason| Error::Invalid {
            name: name.to_owned(),
            reason,
        })?;
        Ok(name)
    }
}

impl Table for BinfmtMisc {
    fn path(&self) -> &Path {
        &self.path
    }

    fn entry_names(&self) -> Result<Vec<String>, Error> {
        let list_error = |errno: Errno| Error::List {
            path: self.path.clone(),
            source: errno.into(),
        };
        // readdir needs a descriptor opened for reading; ours is O_PATH.
        let fd = self
            .open_file(".", OFlags::RDONLY | OFlags::DIRECTORY)
            .map_err(list_error)?;
        let mut names = Vec::new();
        for item in rustix::fs::Dir::new(fd).map_err(list_error)? {
            let item = item.map_err(list_error)?;
            let name = OsStr::from_bytes(item.file_name().to_bytes());
            let Some(name) = name.to_str() else {
                // The kernel refuses nothing here, but we cannot have registered it.
                log::warn!(
                    "skipping binfmt_misc entry with a non-UTF-8 name {:?}",
                    name
                );
                continue;
            };
            if name == "." || name == ".." || CONTROL_FILES.contains(&name) {
                continue;
            }
            names.push(name.to_owned());
        }
        Ok(names)
    }

    fn read_entry(&self, name: &str) -> Result<Option<Entry>, Error> {
        let name = self.entry_name(name)?;
        let Some(text) = self.read_file(name)? else {
            return Ok(None);
        };
        Entry::parse(name, &text)
            .map(Some)
            .map_err(|source| Error::Parse {
                path: self.file_path(name),
                source,
            })
    }

    fn register(&self, registration: &Registration) -> Result<(), Error> {
        let name = &registration.name;
        let line = crate::error::encode(registration)?;
        log::debug!(
            "writing {} bytes to {}",
            line.len(),
            self.file_path("register").display()
        );
        self.write_once("register", &line, &format_args!("register {name}"))
            .map_err(|errno| match errno {
                Errno::EXIST => Error::AlreadyRegistered { name: name.clone() },
                errno => Error::Register {
                    name: name.clone(),
                    interpreter: registration.interpreter.clone(),
                    fix_binary: registration.flags.fix_binary,
                    source: errno.into(),
                },
            })
    }

    fn set_enabled(&self, name: &str, enabled: bool) -> Result<(), Error> {
        let name = self.entry_name(name)?;
        let (value, action): (&[u8], _) = if enabled {
            (b"1", "enable")
        } else {
            (b"0", "disable")
        };
        self.write_control(name, value, action)
    }

    fn remove(&self, name: &str) -> Result<(), Error> {
        let name = self.entry_name(name)?;
        self.write_control(name, b"-1", "remove")
    }

    fn is_enabled(&self) -> Result<bool, Error> {
        let text = self.read_file("status")?.unwrap_or_default();
        match text.trim_end() {
            "enabled" => Ok(true),
            "disabled" => Ok(false),
            other => Err(Error::Parse {
                path: self.file_path("status"),
                source: crate::entry::ParseError::new(format!(
                    "expected `enabled` or `disabled`, found {other:?}"
                )),
            }),
        }
    }

    fn registration_id(&self, name: &str) -> Result<Option<RegistrationId>, Error> {
        let name = self.entry_name(name)?;
        match rustix::fs::statat(&self.dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(Some(RegistrationId {
                instance: stat.st_dev,
                inode: stat.st_ino,
                created_ns: i128::from(stat.st_ctime) * 1_000_000_000
                    + i128::from(stat.st_ctime_nsec),
            })),
            Err(Errno::NOENT) => Ok(None),
            Err(errno) => Err(Error::Read {
                path: self.file_path(name),
                source: errno.into(),
            }),
        }
    }
}
