//! Putting an embedded emulator where the kernel can open it: a file in a directory
//! on disk, or, when the filesystem is read-only, a memfd.
//!
//! Registered with flag F, the kernel opens the interpreter once, at registration, and
//! keeps it open: the entry then works in every mount namespace and keeps working
//! after the file is gone (a container that wrote it exits). A file on disk stays
//! reclaimable page cache; a memfd (or a file on tmpfs) pins its ~15 MB in RAM for as
//! long as the entry exists, so disk is preferred.
//!
//! File names carry the first 16 hex digits of the emulator's sha256
//! (`qemu-aarch64-0123456789abcdef`): an entry whose interpreter path is ours names
//! the exact emulator it was registered with, even where the file itself is not
//! visible (another container's filesystem). A new pin gives a new path, which
//! replaces the entry.

use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, MemfdFlags, Mode, OFlags, SealFlags};
use rustix::io::Errno;

use crate::emulator::{Emulator, WriteError};
use crate::secure_dir::{self, SecureDir, Trust, Unsafe};

/// Where interpreters are written by default: persistent, disk-backed, root-owned on
/// every distribution, and writable in a container's root filesystem.
pub const DEFAULT_DIR: &str = "/var/lib/binfmt";

/// `FUSE_SUPER_MAGIC` from `include/uapi/linux/magic.h`: `statfs(2)`'s `f_type` for a
/// filesystem served by a userspace daemon (fuse-overlayfs, the root filesystem of
/// Docker containers on that storage driver and of rootless engines; sshfs; ...).
pub const FUSE_SUPER_MAGIC: u64 = 0x6573_5546;

/// How many hex digits of the sha256 go into a file name.
const DIGEST_PREFIX: usize = 16;

/// The mode of every interpreter file: root may write, everyone may run it.
const FILE_MODE: u32 = 0o755;

/// A directory that holds interpreter files.
#[derive(Clone, Debug)]
pub struct InterpreterDir {
    dir: PathBuf,
}

/// What is on disk at an emulator's path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileState {
    /// No file: nothing to check (the kernel may hold one from another filesystem).
    Missing,
    /// The file is exactly the pinned emulator, root-owned, mode 0755.
    Intact,
    /// The file differs from the pinned emulator: it must never be registered.
    Tampered,
    /// The bytes are right, but the file is not a root-owned 0755 regular file, so
    /// someone else could change it: it is replaced like a tampered one.
    Unsafe(FileProblem),
}

/// Why a file with the right bytes cannot be trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileProblem {
    /// A symbolic link stands at the emulator's path.
    Symlink,
    /// Something other than a regular file stands there.
    NotRegular,
    /// Its mode is not 0755 (the value shown).
    Mode(u32),
    /// It belongs to this uid, neither root nor the user running binfmt.
    Owner(u32),
}

impl fmt::Display for FileProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileProblem::Symlink => f.write_str("was a symbolic link"),
            FileProblem::NotRegular => f.write_str("was not a regular file"),
            FileProblem::Mode(mode) => write!(f, "had mode {mode:04o}, not 0755"),
            FileProblem::Owner(uid) => write!(f, "belonged to uid {uid}, not root"),
        }
    }
}

/// An interpreter ready to be registered.
///
/// For a memfd the descriptor must stay open until the kernel has opened it, which
/// registration with flag F does; drop this value afterwards.
#[derive(Debug)]
pub struct Interpreter {
    path: PathBuf,
    memfd: Option<OwnedFd>,
}

impl Interpreter {
    /// The path to register as the entry's interpreter.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether it lives in a memfd (RAM) rather than on disk.
    pub fn is_memfd(&self) -> bool {
        self.memfd.is_some()
    }
}

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
            Error::Io {
                path,
                action,
                source,
            } => write!(f, "cannot {action} {}: {source}", path.display()),
            Error::Emulator(error) => error.fmt(f),
            Error::Memfd { source } => write!(
                f,
                "cannot create a memfd for the interpreter: {source}; give a writable \
                 directory with --interpreter-dir"
            ),
        }
    }
}

impl std::error::Error for Error {}

impl From<secure_dir::Error> for Error {
    fn from(error: secure_dir::Error) -> Error {
        match error {
            secure_dir::Error::Unsafe(unsafe_dir) => Error::Unsafe(unsafe_dir),
            secure_dir::Error::Io {
                path,
                action,
                source,
            } => io_error(&path, action, source),
        }
    }
}

/// Whether `name` is a temporary file that [`InterpreterDir::ensure`] writes before
/// renaming it into place (`.qemu-<cpu>-<digest>.tmp-<pid>`).
fn is_temporary(name: &[u8]) -> bool {
    name.starts_with(b".qemu-") && name.windows(5).any(|window| window == b".tmp-")
}

impl InterpreterDir {
    /// A directory of interpreter files (created when first written to).
    pub fn new(dir: impl Into<PathBuf>) -> InterpreterDir {
        InterpreterDir { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the directory (or, before it exists, its nearest existing parent, where
    /// it would be created) is on FUSE. When that cannot be read, the write that
    /// follows reports the actual problem.
    pub fn is_on_fuse(&self) -> bool {
        self.dir
            .ancestors()
            .find_map(|dir| rustix::fs::statfs(dir).ok())
            .is_some_and(|stat| {
                // `f_type` is i64 on most architectures and u32 on s390x.
                #[allow(clippy::unnecessary_cast)]
                let fs_type = stat.f_type as u64;
                fs_type == FUSE_SUPER_MAGIC
            })
    }

    /// The file an emulator is written to: `<dir>/qemu-<cpu>-<sha256 prefix>`.
    pub fn path_for(&self, emulator: &Emulator) -> PathBuf {
        self.dir.join(file_name(emulator))
    }

    /// Checks the directory and every parent that exists, creating and writing
    /// nothing: what a caller runs before its first write, to refuse an unsafe
    /// directory while nothing has changed yet.
    pub fn check_dir(&self) -> Result<(), Error> {
        SecureDir::open_existing(&self.dir, &Trust::current())?;
        Ok(())
    }

    /// Checks the file at the emulator's path against its pin, its owner and mode.
    pub fn check(&self, emulator: &Emulator) -> Result<FileState, Error> {
        let trust = Trust::current();
        match SecureDir::open_existing(&self.dir, &trust)? {
            Some(dir) => file_state(&dir, emulator, &trust),
            None => Ok(FileState::Missing),
        }
    }

    /// Removes the temporary files of runs that were killed while writing an emulator
    /// (each is as big as the emulator), creating nothing; returns how many. A run
    /// calls it once, as an entry that needs no file here never reaches [`ensure`].
    ///
    /// [`ensure`]: InterpreterDir::ensure
    pub fn remove_leftovers(&self) -> Result<usize, Error> {
        match SecureDir::open_existing(&self.dir, &Trust::current())? {
            Some(dir) => {
                dir.lock()?;
                Ok(remove_leftovers(&dir))
            }
            None => Ok(0),
        }
    }

    /// Makes sure the emulator's file exists, is intact and safe, writing it if not,
    /// and returns the interpreter to register with what was on disk before (so the
    /// caller knows whether the kernel may hold a bad copy; the digest is computed
    /// once).
    ///
    /// The directory and its parents are checked first ([`secure_dir`]) and locked
    /// against other binfmt runs writing there. A missing, tampered or unsafe file is
    /// written to a temporary file in the same directory, checked while written,
    /// made mode 0755, and renamed into place: a reader sees the old file or the
    /// whole new one, never a part, and a file the kernel holds open (flag F) is
    /// replaced, not rewritten (which would fail with ETXTBSY). No `fsync`: after a
    /// crash the next run checks the digest and rewrites a torn file.
    pub fn ensure(&self, emulator: &Emulator) -> Result<(Interpreter, FileState), Error> {
        let trust = Trust::current();
        let path = self.path_for(emulator);
        // Before the directory is created or checked: nothing is written on FUSE.
        if self.is_on_fuse() {
            return Err(Error::OnFuse {
                path: self.dir.clone(),
            });
        }
        let dir = SecureDir::open(&self.dir, &trust)?;
        // Held until `dir` is dropped: while it is, a temporary file in the directory
        // belongs to a run that died (killed while writing), never to a live one.
        dir.lock()?;
        remove_leftovers(&dir);

        let found = file_state(&dir, emulator, &trust)?;
        if found == FileState::Intact {
            return Ok((Interpreter { path, memfd: None }, found));
        }
        let name = file_name(emulator);
        let temporary = format!(".{name}.tmp-{}", std::process::id());
        let result = write_new_file(&dir, &temporary, emulator).and_then(|()| {
            binfmt_misc::kill_point::step(&format_args!("rename {} into place", path.display()));
            rustix::fs::renameat(dir.fd(), &temporary, dir.fd(), &name)
                .map_err(|errno| io_error(&path, "rename into place", errno.into()))
        });
        if result.is_err() {
            // Best effort: the temporary name is ours alone (we hold the lock).
            let _ = rustix::fs::unlinkat(dir.fd(), &temporary, AtFlags::empty());
        }
        result?;
        log::debug!("wrote {} (was {found:?})", path.display());
        Ok((Interpreter { path, memfd: None }, found))
    }
}

fn file_name(emulator: &Emulator) -> String {
    format!(
        "qemu-{}-{}",
        emulator.arch().qemu_cpu(),
        &emulator.sha256()[..DIGEST_PREFIX]
    )
}

fn io_error(path: &Path, action: &'static str, source: io::Error) -> Error {
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

/// Removes the temporary files of runs that were killed while writing (the caller
/// holds the directory's lock) and returns how many. Failing to is no reason to
/// stop: logged only.
fn remove_leftovers(dir: &SecureDir) -> usize {
    let names = match dir.names() {
        Ok(names) => names,
        Err(error) => {
            log::debug!("not looking for leftover temporary files: {error}");
            return 0;
        }
    };
    let mut removed = 0;
    for name in names.into_iter().filter(|name| is_temporary(name)) {
        let shown = String::from_utf8_lossy(&name).into_owned();
        match rustix::fs::unlinkat(dir.fd(), name.as_slice(), AtFlags::empty()) {
            Ok(()) => {
                log::debug!("removed {shown}, left by an interrupted run");
                removed += 1;
            }
            Err(errno) => log::debug!("cannot remove leftover {shown}: {errno}"),
        }
    }
    removed
}

/// What stands at the emulator's name in `dir`.
fn file_state(dir: &SecureDir, emulator: &Emulator, trust: &Trust) -> Result<FileState, Error> {
    let name = file_name(emulator);
    let path = dir.path().join(&name);
    // O_NONBLOCK: a FIFO planted there must not hang the open.
    let opened = rustix::fs::openat(
        dir.fd(),
        name.as_str(),
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    );
    let fd = match opened {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(FileState::Missing),
        Err(Errno::LOOP) => return Ok(FileState::Unsafe(FileProblem::Symlink)),
        Err(errno) => return Err(io_error(&path, "open", errno.into())),
    };
    let stat = rustix::fs::fstat(&fd).map_err(|errno| io_error(&path, "stat", errno.into()))?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
        return Ok(FileState::Unsafe(FileProblem::NotRegular));
    }
    let mut file = File::from(fd);
    if !emulator
        .matches(&mut file)
        .map_err(|source| io_error(&path, "read", source))?
    {
        return Ok(FileState::Tampered);
    }
    let mode = stat.st_mode & 0o7777;
    Ok(if mode != FILE_MODE {
        FileState::Unsafe(FileProblem::Mode(mode))
    } else if !trust.trusts(stat.st_uid) {
        FileState::Unsafe(FileProblem::Owner(stat.st_uid))
    } else {
        FileState::Intact
    })
}

fn write_new_file(dir: &SecureDir, name: &str, emulator: &Emulator) -> Result<(), Error> {
    let path = dir.path().join(name);
    let fd = rustix::fs::openat(
        dir.fd(),
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(FILE_MODE),
    )
    .map_err(|errno| io_error(&path, "create", errno.into()))?;
    let mut out = BufWriter::with_capacity(1 << 20, File::from(fd));
    emulator.write_to(&mut out).map_err(Error::Emulator)?;
    let file = out
        .into_inner()
        .map_err(|e| io_error(&path, "write", e.into_error()))?;
    // The umask may have removed bits from the creation mode.
    rustix::fs::fchmod(&file, Mode::from_raw_mode(FILE_MODE))
        .map_err(|errno| io_error(&path, "chmod", errno.into()))?;
    Ok(())
}

/// Writes the emulator into a sealed memfd and returns it as an interpreter whose path
/// is `/proc/self/fd/<n>`, which the kernel resolves when it registers with flag F.
///
/// The memfd is sealed against writes, growth and shrinking once filled: nothing can
/// change the interpreter the kernel holds.
pub fn write_memfd(emulator: &Emulator) -> Result<Interpreter, Error> {
    let name = format!("qemu-{}", emulator.arch().qemu_cpu());
    let flags = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
    // Since Linux 6.3 a memfd is executable only when created with MFD_EXEC if the
    // vm.memfd_noexec sysctl asks for it; older kernels reject the flag with EINVAL.
    let fd = rustix::fs::memfd_create(&name, flags | MemfdFlags::EXEC)
        .or_else(|errno| match errno {
            Errno::INVAL => rustix::fs::memfd_create(&name, flags),
            errno => Err(errno),
        })
        .map_err(|errno| Error::Memfd {
            source: errno.into(),
        })?;
    let file = File::from(fd);
    let mut out = BufWriter::with_capacity(1 << 20, &file);
    emulator.write_to(&mut out).map_err(Error::Emulator)?;
    out.flush().map_err(|source| Error::Memfd { source })?;
    drop(out);
    rustix::fs::fcntl_add_seals(
        &file,
        SealFlags::WRITE | SealFlags::GROW | SealFlags::SHRINK | SealFlags::SEAL,
    )
    .map_err(|errno| Error::Memfd {
        source: errno.into(),
    })?;
    let path = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
    Ok(Interpreter {
        path,
        memfd: Some(file.into()),
    })
}

/// Whether `path` is one that [`write_memfd`] hands out (a descriptor of the process
/// that registered it, meaningless to anyone else).
pub fn is_memfd_path(path: &Path) -> bool {
    path.to_str()
        .and_then(|p| p.strip_prefix("/proc/self/fd/"))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};

    use super::*;
    use crate::arch::Arch;
    use crate::secure_dir::Problem;

    /// A fresh directory under the build's own target directory. Not the system's temp
    /// directory: `/tmp` is writable by everyone, so interpreter files may not go there.
    fn scratch_dir(name: &str) -> PathBuf {
        let dir = Path::new(env!("OUT_DIR")).join(format!("scratch-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        dir
    }

    fn chmod(path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn unsafe_problem(result: Result<(Interpreter, FileState), Error>) -> (PathBuf, Problem) {
        match result {
            Err(Error::Unsafe(Unsafe { path, problem })) => (path, problem),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    fn foreign_emulator() -> Emulator {
        Emulator::for_arch(Arch::Riscv64).expect("riscv64 is foreign on every supported host")
    }

    #[test]
    fn writes_once_then_finds_the_file_intact() {
        let dir = scratch_dir("write");
        let store = InterpreterDir::new(dir.join("nested"));
        let emulator = foreign_emulator();
        assert_eq!(store.check(&emulator).unwrap(), FileState::Missing);

        let (interpreter, found) = store.ensure(&emulator).unwrap();
        assert_eq!(found, FileState::Missing);
        assert!(!interpreter.is_memfd());
        assert_eq!(interpreter.path(), store.path_for(&emulator));
        let name = interpreter.path().file_name().unwrap().to_str().unwrap();
        assert_eq!(name, format!("qemu-riscv64-{}", &emulator.sha256()[..16]));
        let metadata = fs::metadata(interpreter.path()).unwrap();
        assert_eq!(metadata.permissions().mode() & 0o7777, 0o755);
        assert_eq!(metadata.len(), emulator.size());
        assert_eq!(store.check(&emulator).unwrap(), FileState::Intact);

        // An intact file is not rewritten: same inode afterwards.
        let inode = metadata.ino();
        assert_eq!(store.ensure(&emulator).unwrap().1, FileState::Intact);
        assert_eq!(fs::metadata(interpreter.path()).unwrap().ino(), inode);
        // No temporary files are left behind.
        assert_eq!(fs::read_dir(store.dir()).unwrap().count(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_tampered_file_is_detected_and_replaced() {
        let dir = scratch_dir("tamper");
        let store = InterpreterDir::new(&dir);
        let emulator = foreign_emulator();
        let path = store.ensure(&emulator).unwrap().0.path().to_owned();
        fs::write(&path, b"#!/bin/sh\necho pwned\n").unwrap();
        assert_eq!(store.check(&emulator).unwrap(), FileState::Tampered);
        assert_eq!(store.ensure(&emulator).unwrap().1, FileState::Tampered);
        assert_eq!(store.check(&emulator).unwrap(), FileState::Intact);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_others_could_change_is_replaced() {
        let dir = scratch_dir("mode");
        let store = InterpreterDir::new(&dir);
        let emulator = foreign_emulator();
        let path = store.ensure(&emulator).unwrap().0.path().to_owned();
        let inode = fs::metadata(&path).unwrap().ino();
        chmod(&path, 0o777);
        assert_eq!(
            store.check(&emulator).unwrap(),
            FileState::Unsafe(FileProblem::Mode(0o777))
        );
        assert_eq!(
            store.ensure(&emulator).unwrap().1,
            FileState::Unsafe(FileProblem::Mode(0o777))
        );
        let metadata = fs::metadata(&path).unwrap();
        assert_eq!(metadata.permissions().mode() & 0o7777, 0o755);
        assert_ne!(metadata.ino(), inode, "replaced, not changed in place");

        // A symbolic link at the emulator's path, even to the right bytes.
        let elsewhere = dir.join("elsewhere");
        fs::rename(&path, &elsewhere).unwrap();
        symlink(&elsewhere, &path).unwrap();
        assert_eq!(
            store.check(&emulator).unwrap(),
            FileState::Unsafe(FileProblem::Symlink)
        );
        store.ensure(&emulator).unwrap();
        assert!(fs::symlink_metadata(&path).unwrap().is_file());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn directories_others_can_write_are_refused_and_nothing_is_written() {
        let emulator = foreign_emulator();
        for mode in [0o777, 0o1777, 0o775, 0o757] {
            let dir = scratch_dir("writable");
            let store = InterpreterDir::new(dir.join("interpreters"));
            fs::create_dir(store.dir()).unwrap();
            chmod(store.dir(), mode);
            let (path, problem) = unsafe_problem(store.ensure(&emulator));
            assert_eq!(path, store.dir());
            assert!(
                matches!(problem, Problem::WritableByOthers { mode: found, .. } if found == mode),
                "{problem:?}"
            );
            assert!(store.check_dir().is_err());
            assert_eq!(fs::read_dir(store.dir()).unwrap().count(), 0);

            // A parent others can write is as bad: they could rename the directory.
            chmod(store.dir(), 0o755);
            chmod(&dir, mode);
            let (path, _) = unsafe_problem(store.ensure(&emulator));
            assert_eq!(path, dir);
            // Not even a missing directory below it is created.
            let deeper = InterpreterDir::new(dir.join("new"));
            unsafe_problem(deeper.ensure(&emulator));
            assert!(!deeper.dir().exists());
            chmod(&dir, 0o755);
            fs::remove_dir_all(&dir).unwrap();
        }
    }

    #[test]
    fn a_symbolic_link_on_the_way_is_refused() {
        let dir = scratch_dir("symlink");
        fs::create_dir(dir.join("real")).unwrap();
        symlink(dir.join("real"), dir.join("link")).unwrap();
        let store = InterpreterDir::new(dir.join("link").join("interpreters"));
        let (path, problem) = unsafe_problem(store.ensure(&foreign_emulator()));
        assert_eq!(path, dir.join("link"));
        assert_eq!(
            problem,
            Problem::Symlink {
                target: dir.join("real")
            }
        );
        assert_eq!(fs::read_dir(dir.join("real")).unwrap().count(), 0);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn leftovers_of_a_killed_run_are_removed() {
        let dir = scratch_dir("leftover");
        let store = InterpreterDir::new(&dir);
        let emulator = foreign_emulator();
        let leftover = dir.join(format!(".{}.tmp-99999", file_name(&emulator)));
        fs::write(&leftover, b"half an emulator").unwrap();
        let unrelated = dir.join(".keep.tmp-1");
        fs::write(&unrelated, b"not ours").unwrap();
        store.ensure(&emulator).unwrap();
        assert!(!leftover.exists());
        assert!(unrelated.exists());
        // Also without writing anything.
        fs::write(&leftover, b"half an emulator").unwrap();
        assert_eq!(store.remove_leftovers().unwrap(), 1);
        assert!(!leftover.exists());
        assert_eq!(
            InterpreterDir::new(dir.join("absent"))
                .remove_leftovers()
                .unwrap(),
            0
        );
        assert!(!dir.join("absent").exists());
        assert!(is_temporary(b".qemu-aarch64-0123456789abcdef.tmp-1"));
        assert!(!is_temporary(b"qemu-aarch64-0123456789abcdef"));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn memfd_holds_the_exact_emulator_and_is_sealed() {
        let emulator = foreign_emulator();
        let interpreter = write_memfd(&emulator).unwrap();
        assert!(interpreter.is_memfd());
        assert!(is_memfd_path(interpreter.path()));
        let mut file = File::open(interpreter.path()).unwrap();
        assert!(emulator.matches(&mut file).unwrap());
        let writable = std::fs::OpenOptions::new()
            .write(true)
            .open(interpreter.path());
        if let Ok(mut writable) = writable {
            assert!(
                writable.write_all(b"x").is_err(),
                "sealed memfd accepted a write"
            );
        }
    }

    #[test]
    fn memfd_paths_are_recognised() {
        assert!(is_memfd_path(Path::new("/proc/self/fd/3")));
        assert!(!is_memfd_path(Path::new("/proc/self/fd/")));
        assert!(!is_memfd_path(Path::new("/proc/self/fd/3/x")));
        assert!(!is_memfd_path(Path::new("/var/lib/binfmt/qemu-aarch64")));
    }
}
