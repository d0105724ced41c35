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
//!
//! **Writing** ([`InterpreterDir::ensure_all`], [`write_memfds`]) decodes the reference
//! emulator first and then the others, patches against it (see [`crate::emulator`]),
//! one emulator at a time with its two parts decoded at once, one per core (the
//! reference into one buffer, each patch's parts into the room of a [`Window`] right
//! after a mapping of the written reference); each finished piece is written out with
//! `pwrite` right away and the file renamed into place ([`write_files`] says why).
//! Memfds are decoded straight into their own memory, mapped. So memory stays near
//! one emulator's size, and each emulator's compressed bytes are dropped from memory
//! once decoded.
//!
//! **Checking** a file that is already there normally costs an `fstat` and reading a
//! small record written when the file was last verified ([`crate::verified`]); only a
//! file without a matching record is read and hashed again.

use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use rustix::fs::{AtFlags, FallocateFlags, FileType, MemfdFlags, Mode, OFlags, SealFlags};
use rustix::io::Errno;

use crate::arch::Arch;
use crate::emulator::{Emulator, WriteError};
use crate::mapping::{Buffer, Mapping, Window};
use crate::secure_dir::{self, SecureDir, Trust, Unsafe};
use crate::verified;

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

/// How often (in output bytes, per thread) a patch's decoder drops the reference's
/// pages from the process: they fault back in as it reads them (a few hundred faults
/// more per run), and only those read lately stay. Measured peak RSS of a cold
/// `--install all`: 38 MB every 1 MiB, 35 MB every 512 KiB.
const RELEASE_REFERENCE_EVERY: usize = 512 << 10;

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

/// Whether `name` is a temporary file that [`InterpreterDir::ensure_all`] writes before
/// renaming it into place (`.qemu-<cpu>-<digest>.tmp-<pid>`, and the same for a
/// verification record), or a state file's (`.binfmt-<name>.tmp-<pid>`, see
/// [`InterpreterDir::write_state`]).
fn is_temporary(name: &[u8]) -> bool {
    (name.starts_with(b".qemu-") || name.starts_with(STATE_PREFIX.as_bytes()))
        && name.windows(5).any(|window| window == b".tmp-")
}

/// How the name of every state file begins (see [`InterpreterDir::read_state`]).
pub const STATE_PREFIX: &str = ".binfmt-";

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
    ///
    /// A file of another size is tampered without reading it; a safe one whose record
    /// says it was verified and is unchanged since is intact without reading it (see
    /// [`crate::verified`]); any other is read and hashed, and recorded when intact
    /// (best effort: a read-only directory just means hashing next time too).
    pub fn check(&self, emulator: &Emulator) -> Result<FileState, Error> {
        let trust = Trust::current();
        match SecureDir::open_existing(&self.dir, &trust)? {
            Some(dir) => file_state(&dir, emulator, &trust),
            None => Ok(FileState::Missing),
        }
    }

    /// Reads a small file binfmt keeps next to the interpreters (`name` begins with
    /// [`STATE_PREFIX`]): `None` unless the directory exists and is safe, and the file
    /// is one only a trusted user could have written, of at most `limit` bytes. Creates
    /// and writes nothing.
    pub fn read_state(&self, name: &str, limit: usize) -> Option<String> {
        debug_assert!(name.starts_with(STATE_PREFIX), "{name}");
        let trust = Trust::current();
        let dir = SecureDir::open_existing(&self.dir, &trust).ok()??;
        dir.read_trusted(name, limit, &trust)
    }

    /// Replaces the state file `name` (see [`read_state`](Self::read_state)) with
    /// `contents`, through a temporary file renamed into place, under the directory's
    /// lock. Creates no directory: where no interpreter was ever written there is
    /// nothing to keep state about.
    pub fn write_state(&self, name: &str, contents: &str) -> Result<(), Error> {
        debug_assert!(name.starts_with(STATE_PREFIX), "{name}");
        let path = self.dir.join(name);
        let dir = SecureDir::open_existing(&self.dir, &Trust::current())?
            .ok_or_else(|| io_error(&path, "write", io::Error::from(io::ErrorKind::NotFound)))?;
        dir.lock()?;
        dir.replace_file(name, contents.as_bytes())
            .map_err(|source| io_error(&path, "write", source))
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

    /// Makes sure the emulator's file exists, is intact and safe; see
    /// [`ensure_all`](Self::ensure_all).
    pub fn ensure(&self, emulator: &Emulator) -> Result<(Interpreter, FileState), Error> {
        self.ensure_all(std::slice::from_ref(emulator))
            .pop()
            .unwrap_or_else(|| unreachable!("one result per emulator"))
    }

    /// Makes sure each emulator's file exists, is intact and safe, writing those that
    /// are not, and returns, per emulator and in order, the interpreter to register
    /// with what was on disk before (so the caller knows whether the kernel may hold a
    /// bad copy).
    ///
    /// The directory and its parents are checked first ([`secure_dir`]) and locked
    /// against other binfmt runs writing there. The files are checked on every core at
    /// once. A missing, tampered or unsafe file is written to a temporary file in the
    /// same directory (see [`write_files`]), checked while written, made mode 0755, and
    /// renamed into place: a reader sees the old file or the whole new one, never a
    /// part, and a file the kernel holds open (flag F) is replaced, not rewritten
    /// (which would fail with ETXTBSY). No `fsync`: after a crash the next run checks
    /// the file and rewrites a torn one (a torn file has no verification record, or
    /// one that no longer matches its ctime).
    pub fn ensure_all(
        &self,
        emulators: &[Emulator],
    ) -> Vec<Result<(Interpreter, FileState), Error>> {
        if emulators.is_empty() {
            // Nothing to check: not even the directory is created.
            return Vec::new();
        }
        let everyone = |error: Error| emulators.iter().map(|_| Err(duplicate(&error))).collect();
        let trust = Trust::current();
        // Before the directory is created or checked: nothing is written on FUSE.
        if self.is_on_fuse() {
            return everyone(Error::OnFuse {
                path: self.dir.clone(),
            });
        }
        let dir = match SecureDir::open(&self.dir, &trust) {
            Ok(dir) => dir,
            Err(error) => return everyone(error.into()),
        };
        // Held until `dir` is dropped: while it is, a temporary file in the directory
        // belongs to a run that died (killed while writing), never to a live one.
        if let Err(error) = dir.lock() {
            return everyone(error.into());
        }
        remove_leftovers(&dir);

        let found = on_every_core(emulators, |emulator| file_state(&dir, emulator, &trust));
        let jobs: Vec<Emulator> = emulators
            .iter()
            .zip(&found)
            .filter(|(_, state)| matches!(state, Ok(state) if *state != FileState::Intact))
            .map(|(emulator, _)| *emulator)
            .collect();
        let mut written = write_files(&dir, &jobs).into_iter();
        emulators
            .iter()
            .zip(found)
            .map(|(emulator, state)| {
                let path = self.path_for(emulator);
                let state = state?;
                if state != FileState::Intact {
                    written
                        .next()
                        .unwrap_or_else(|| unreachable!("one result per job"))?;
                    log::debug!("wrote {} (was {state:?})", path.display());
                }
                Ok((Interpreter { path, memfd: None }, state))
            })
            .collect()
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
    // Another size cannot be the pinned bytes: no need to read it.
    if u64::try_from(stat.st_size).ok() != Some(emulator.size()) {
        return Ok(FileState::Tampered);
    }
    let mode = stat.st_mode & 0o7777;
    let safe = mode == FILE_MODE && trust.trusts(stat.st_uid);
    if safe && verified::is_recorded(dir, &name, &fd, emulator.sha256(), trust) {
        return Ok(FileState::Intact);
    }
    let mut file = File::from(fd);
    if !emulator
        .matches(&mut file)
        .map_err(|source| io_error(&path, "read", source))?
    {
        return Ok(FileState::Tampered);
    }
    Ok(if mode != FILE_MODE {
        FileState::Unsafe(FileProblem::Mode(mode))
    } else if !trust.trusts(stat.st_uid) {
        FileState::Unsafe(FileProblem::Owner(stat.st_uid))
    } else {
        if let Err(error) = verified::record(dir, &name, &file, emulator.sha256()) {
            log::debug!("cannot record {} as verified: {error}", path.display());
        }
        FileState::Intact
    })
}

/// Writes the emulator into a sealed memfd; see [`write_memfds`].
pub fn write_memfd(emulator: &Emulator) -> Result<Interpreter, Error> {
    write_memfds(std::slice::from_ref(emulator))
        .pop()
        .unwrap_or_else(|| unreachable!("one result per emulator"))
}

/// Writes each emulator into a sealed memfd and returns, in order, interpreters whose
/// paths are `/proc/self/fd/<n>`, which the kernel resolves when it registers with
/// flag F.
///
/// Each memfd is sealed against writes, growth and shrinking once filled: nothing can
/// change the interpreter the kernel holds.
pub fn write_memfds(emulators: &[Emulator]) -> Vec<Result<Interpreter, Error>> {
    let mut results: Vec<Option<Result<File, Error>>> = emulators.iter().map(|_| None).collect();
    // The reference first, when it is wanted itself: the others decode against it.
    let reference = emulators.iter().find_map(Emulator::reference);
    let mut prefix = None;
    if let Some(index) = reference.and_then(|r| emulators.iter().position(|e| *e == r)) {
        let result = write_memfd_file(&emulators[index], None);
        if let Ok(file) = &result {
            prefix = Some(map_written(file, &emulators[index]));
        }
        results[index] = Some(result);
    }
    let prefix = reference.map(|reference| prefix.unwrap_or_else(|| decode_reference(reference)));
    // One after another: each one's parts already use every core.
    for (emulator, result) in emulators.iter().zip(results.iter_mut()) {
        if result.is_none() {
            *result = Some(with_reference(emulator, prefix.as_ref(), |reference| {
                write_memfd_file(emulator, reference)
            }));
        }
    }
    results
        .into_iter()
        .map(|result| {
            result
                .unwrap_or_else(|| unreachable!("every emulator was written"))
                .map(|file| Interpreter {
                    path: PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd())),
                    memfd: Some(file.into()),
                })
        })
        .collect()
}

/// The reference emulator's bytes, for decoding patches against.
enum Prefix {
    /// Mapped from the file or memfd it was just written to: its pages can be dropped
    /// from this process and fault back in from the page cache.
    Written(Mapping),
    /// Decoded into memory only, because it is not wanted itself.
    Decoded(Buffer),
}

impl Prefix {
    fn bytes(&self) -> &[u8] {
        match self {
            Prefix::Written(mapping) => mapping.bytes(),
            Prefix::Decoded(buffer) => buffer.bytes(),
        }
    }

    /// Drops what this process holds of it that can be had again (see
    /// [`Mapping::release_all`]); anonymous memory has to stay.
    fn release(&self) {
        if let Prefix::Written(mapping) = self {
            mapping.release_all();
        }
    }
}

/// Runs `write` with the reference's bytes when `emulator` is a patch, or fails with
/// why the reference could not be had.
fn with_reference(
    emulator: &Emulator,
    prefix: Option<&Result<Prefix, String>>,
    write: impl FnOnce(Option<&Prefix>) -> Result<File, Error>,
) -> Result<File, Error> {
    match (emulator.reference(), prefix) {
        (None, _) => write(None),
        (Some(_), Some(Ok(prefix))) => write(Some(prefix)),
        (Some(reference), Some(Err(reason))) => Err(Error::Reference {
            emulator: emulator.arch(),
            reference: reference.arch(),
            reason: reason.clone(),
        }),
        (Some(reference), None) => Err(Error::Reference {
            emulator: emulator.arch(),
            reference: reference.arch(),
            reason: "internal error: it was not decoded".to_owned(),
        }),
    }
}

/// The reference emulator decoded into memory (on every core), for patches when the
/// reference itself is not being written.
fn decode_reference(reference: Emulator) -> Result<Prefix, String> {
    let mut buffer = Buffer::new(reference.size() as usize).map_err(|e| e.to_string())?;
    decode_parts(&reference, buffer.bytes_mut(), None, &|_, _| Ok(()))
        .map_err(|error| error.to_string())?;
    Ok(Prefix::Decoded(buffer))
}

/// A read-only mapping of a written reference emulator, to decode patches against.
fn map_written(file: &File, emulator: &Emulator) -> Result<Prefix, String> {
    Mapping::new(file, emulator.size() as usize, false)
        .map(Prefix::Written)
        .map_err(|error| format!("cannot map it: {error}"))
}

/// Writes emulators to files in `dir` (whose lock the caller holds): the reference
/// first when it is one of them, then the others against it; returns the written
/// files (open), in order.
///
/// One emulator at a time, its parts decoded at once, one per core, into one buffer
/// (the decoder's history) or, for the patches once the reference is written, into a
/// [`Window`] per part (as fast with musl as with glibc: see [`Window`]), each thread
/// writing the pieces it finishes to the file at their offsets right away, while they
/// are hot in the cache. So memory stays at one emulator whatever the number of cores
/// (the buffer is given back before the windows' room is touched), and both cores
/// decode and write all the time. Decoding straight into a shared mapping of the file would need no buffer at
/// all, but each of its 4 KiB pages then costs a page fault, zeroing and (on ext4) a
/// journal handle: about twice the kernel time of `pwrite(2)`.
fn write_files(dir: &SecureDir, jobs: &[Emulator]) -> Vec<Result<File, Error>> {
    let reference = jobs.iter().find_map(Emulator::reference);
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by_key(|&index| Some(jobs[index]) != reference);
    let largest = jobs.iter().map(|e| e.size() as usize).max().unwrap_or(0);
    let mut buffer = None;
    let mut results: Vec<Option<Result<File, Error>>> = jobs.iter().map(|_| None).collect();
    // Prepared at the first patch, once the reference has been written (if wanted).
    let mut patches: Option<PatchMemory> = None;
    for index in order {
        let emulator = &jobs[index];
        let path = dir.path().join(file_name(emulator));
        if let Some(reference) = emulator.reference() {
            let memory = patches.get_or_insert_with(|| {
                let written = jobs
                    .iter()
                    .zip(&results)
                    .find(|(e, _)| **e == reference)
                    .and_then(|(_, result)| result.as_ref()?.as_ref().ok());
                match written {
                    Some(file) => match make_windows(file, &reference, jobs) {
                        Some(windows) => {
                            // The reference's buffer is not needed any more: give it
                            // back before the windows' room is touched.
                            buffer = None;
                            PatchMemory::Windows(windows)
                        }
                        None => PatchMemory::Prefix(map_written(file, &reference)),
                    },
                    None => PatchMemory::Prefix(decode_reference(reference)),
                }
            });
            if let PatchMemory::Windows(windows) = memory {
                results[index] = Some(write_file(dir, emulator, &mut |finished| {
                    decode_parts_in_windows(emulator, windows, finished)
                }));
                continue;
            }
        }
        let buffer = match &mut buffer {
            Some(buffer) => buffer,
            None => match Buffer::new(largest) {
                Ok(made) => buffer.insert(made),
                Err(source) => {
                    results[index] = Some(Err(io_error(&path, "allocate a buffer for", source)));
                    continue;
                }
            },
        };
        let prefix = match &patches {
            Some(PatchMemory::Prefix(prefix)) => Some(prefix),
            _ => None,
        };
        let result = with_reference(emulator, prefix, |reference| {
            write_file(dir, emulator, &mut |finished| {
                let dst = buffer
                    .bytes_mut()
                    .get_mut(..emulator.size() as usize)
                    .ok_or_else(|| {
                        plain_io_error(
                            "write",
                            io::Error::other("internal error: the buffer is too small"),
                        )
                    })?;
                decode_parts(emulator, dst, reference, finished)
            })
        });
        results[index] = Some(result);
    }
    results
        .into_iter()
        .map(|result| result.unwrap_or_else(|| unreachable!("every job ran")))
        .collect()
}

/// What [`write_files`] decodes patches with.
enum PatchMemory {
    /// A window per part, on the reference written in this run.
    Windows(Vec<Window>),
    /// The reference's bytes, mapped from its file or decoded into memory, or why
    /// they could not be had.
    Prefix(Result<Prefix, String>),
}

/// A [`Window`] per part of the largest patch among `jobs`, on the written
/// `reference`; `None` (and the patches are decoded as the reference is, into one
/// buffer) when they cannot be made.
fn make_windows(file: &File, reference: &Emulator, jobs: &[Emulator]) -> Option<Vec<Window>> {
    let patches = || jobs.iter().filter(|e| e.reference().is_some());
    let parts = patches().map(Emulator::parts).max()?;
    let room = patches()
        .flat_map(|e| (0..e.parts()).map(|part| e.part_range(part).len()))
        .max()?;
    (0..parts)
        .map(|_| Window::new(file, reference.size() as usize, room))
        .collect::<io::Result<Vec<Window>>>()
        .inspect_err(|error| log::debug!("decoding patches without windows: {error}"))
        .ok()
}

/// Writes one emulator to a temporary file in `dir`, then makes it mode 0755, renames
/// it into place and records it as verified; returns it, open. `decode` decodes the
/// emulator, handing each finished piece to the function it is given.
fn write_file(
    dir: &SecureDir,
    emulator: &Emulator,
    decode: &mut dyn FnMut(&Finished<'_>) -> Result<(), Error>,
) -> Result<File, Error> {
    let name = file_name(emulator);
    let temporary = format!(".{name}.tmp-{}", std::process::id());
    let temporary_path = dir.path().join(&temporary);
    // Readable too: a written reference is mapped from this descriptor.
    let fd = rustix::fs::openat(
        dir.fd(),
        temporary.as_str(),
        OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(FILE_MODE),
    )
    .map_err(|errno| io_error(&temporary_path, "create", errno.into()))?;
    let file = File::from(fd);
    let result = fill_file(&file, emulator, decode)
        .map_err(|error| match error {
            Error::Io { action, source, .. } => io_error(&temporary_path, action, source),
            other => other,
        })
        .and_then(|()| finish_file(dir, &file, &temporary, &name, emulator.sha256()));
    if result.is_err() {
        // Best effort: the temporary name is ours alone (we hold the lock).
        let _ = rustix::fs::unlinkat(dir.fd(), temporary.as_str(), AtFlags::empty());
    }
    result.map(|()| file)
}

/// Decodes `emulator` into `file` (new and empty) with `decode`, each piece written at
/// its offset as it is finished.
fn fill_file(
    file: &File,
    emulator: &Emulator,
    decode: &mut dyn FnMut(&Finished<'_>) -> Result<(), Error>,
) -> Result<(), Error> {
    let size = emulator.size();
    // Reserving the blocks first makes a full disk fail before any decoding, and saves
    // ext4 reserving them page by page. Filesystems without fallocate (some network
    // and FUSE ones) just get the writes.
    match rustix::fs::fallocate(file.as_fd(), FallocateFlags::empty(), 0, size) {
        Ok(()) | Err(Errno::OPNOTSUPP | Errno::NOSYS) => {}
        Err(errno) => return Err(plain_io_error("reserve space for", errno.into())),
    }
    decode(&|offset, chunk| file.write_all_at(chunk, offset as u64))
}

/// Makes a fully written temporary file mode 0755, renames it into place and records
/// it as verified.
fn finish_file(
    dir: &SecureDir,
    file: &File,
    temporary: &str,
    name: &str,
    sha256: &str,
) -> Result<(), Error> {
    let path = dir.path().join(name);
    // The umask may have removed bits from the creation mode.
    rustix::fs::fchmod(file, Mode::from_raw_mode(FILE_MODE))
        .map_err(|errno| io_error(&dir.path().join(temporary), "chmod", errno.into()))?;
    binfmt_misc::kill_point::step(&format_args!("rename {} into place", path.display()));
    rustix::fs::renameat(dir.fd(), temporary, dir.fd(), name)
        .map_err(|errno| io_error(&path, "rename into place", errno.into()))?;
    // Written by the checking decoder: recorded as verified (after the rename, which
    // changes the ctime). Without a record the next run hashes it instead.
    if let Err(error) = verified::record(dir, name, file, sha256) {
        log::debug!("cannot record {} as verified: {error}", path.display());
    }
    Ok(())
}

/// An I/O error of decoding into a file or memfd; the caller adds the path.
fn plain_io_error(action: &'static str, source: io::Error) -> Error {
    Error::Io {
        path: PathBuf::new(),
        action,
        source,
    }
}

/// The same error again, for every emulator a failure of the directory concerns.
fn duplicate(error: &Error) -> Error {
    match error {
        Error::ReadOnly { path } => Error::ReadOnly { path: path.clone() },
        Error::OnFuse { path } => Error::OnFuse { path: path.clone() },
        Error::Unsafe(unsafe_dir) => Error::Unsafe(unsafe_dir.clone()),
        Error::Io {
            path,
            action,
            source,
        } => Error::Io {
            path: path.clone(),
            action,
            source: clone_io(source),
        },
        other => Error::Io {
            path: PathBuf::new(),
            action: "write",
            source: io::Error::other(other.to_string()),
        },
    }
}

/// What [`decode_parts`] hands each finished piece to, with its offset in the emulator.
type Finished<'a> = dyn Fn(usize, &[u8]) -> io::Result<()> + Sync + 'a;

/// Decodes every part of `emulator` into its place in `dst` (all of it), one thread
/// per part (as many at once as there are cores); `finished(offset, chunk)` gets each
/// finished piece with its offset in the emulator. The reference's pages are
/// dropped from this process every few MB each thread decodes: they fault back in as
/// the decoder reads them, and only those read lately stay.
fn decode_parts(
    emulator: &Emulator,
    dst: &mut [u8],
    reference: Option<&Prefix>,
    finished: &Finished<'_>,
) -> Result<(), Error> {
    let release = || {
        if let Some(reference) = reference {
            reference.release();
        }
    };
    let mut jobs = Vec::new();
    let mut rest = dst;
    for part in 0..emulator.parts() {
        let range = emulator.part_range(part);
        let (slice, tail) = rest.split_at_mut(range.len().min(rest.len()));
        jobs.push(PartJob {
            part,
            start: range.start,
            dst: slice,
            reference: reference.map(Prefix::bytes),
            release: &release,
        });
        rest = tail;
    }
    decode_jobs(emulator, jobs, finished)
}

/// Decodes every part of `emulator` (a patch) into the room of its own [`Window`],
/// right after the reference (see [`Window`] for why), as [`decode_parts`] does
/// otherwise. There must be a window per part, each with room for it.
fn decode_parts_in_windows(
    emulator: &Emulator,
    windows: &mut [Window],
    finished: &Finished<'_>,
) -> Result<(), Error> {
    let mut jobs = Vec::new();
    let mut releasers = Vec::new();
    for (part, window) in (0..emulator.parts()).zip(windows.iter_mut()) {
        let range = emulator.part_range(part);
        let (reference, room, releaser) = window.split();
        let dst = room.get_mut(..range.len()).ok_or_else(|| {
            plain_io_error(
                "write",
                io::Error::other("internal error: a window is too small"),
            )
        })?;
        jobs.push((part, range.start, dst, reference));
        releasers.push(releaser);
    }
    if jobs.len() != emulator.parts() {
        return Err(plain_io_error(
            "write",
            io::Error::other("internal error: too few windows"),
        ));
    }
    let releases: Vec<_> = releasers
        .iter()
        .map(|releaser| move || releaser.release())
        .collect();
    let jobs = jobs
        .into_iter()
        .zip(&releases)
        .map(|((part, start, dst, reference), release)| PartJob {
            part,
            start,
            dst,
            reference: Some(reference),
            release,
        })
        .collect();
    decode_jobs(emulator, jobs, finished)
}

/// One part to decode: where it goes, against what, and what drops the reference's
/// pages from this process.
struct PartJob<'a> {
    part: usize,
    /// Its offset in the emulator.
    start: usize,
    dst: &'a mut [u8],
    reference: Option<&'a [u8]>,
    release: &'a (dyn Fn() + Sync),
}

/// Decodes the parts, one thread per part (as many at once as there are cores);
/// `finished(offset, chunk)` gets each finished piece with its offset in the
/// emulator. Each thread drops the reference's pages every few MB it decodes.
fn decode_jobs(
    emulator: &Emulator,
    jobs: Vec<PartJob<'_>>,
    finished: &Finished<'_>,
) -> Result<(), Error> {
    let result = decode_jobs_in_threads(emulator, jobs, finished);
    // Each emulator is decoded once per run.
    emulator.release_compressed();
    result
}

fn decode_jobs_in_threads(
    emulator: &Emulator,
    jobs: Vec<PartJob<'_>>,
    finished: &Finished<'_>,
) -> Result<(), Error> {
    let decode = |job: PartJob<'_>| -> Result<(), Error> {
        let (mut offset, mut released) = (job.start, job.start);
        emulator
            .decode_part(job.part, job.dst, job.reference, &mut |chunk| {
                finished(offset, chunk)?;
                offset += chunk.len();
                if job.reference.is_some() && offset - released >= RELEASE_REFERENCE_EVERY {
                    (job.release)();
                    released = offset;
                }
                Ok(())
            })
            .map_err(|error| match error {
                WriteError::Io { source, .. } => plain_io_error("write", source),
                other => Error::Emulator(other),
            })
    };
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    if cores < 2 || jobs.len() < 2 {
        return jobs.into_iter().try_for_each(decode);
    }
    in_threads(|scope| {
        let mut jobs = jobs.into_iter();
        let first = jobs.next();
        let others: Vec<_> = jobs.map(|job| scope.spawn(move || decode(job))).collect();
        let mut result = first.map_or(Ok(()), decode);
        for other in others {
            let joined = other.join().unwrap_or_else(|_| {
                Err(plain_io_error(
                    "decode",
                    io::Error::other("a decoding thread panicked"),
                ))
            });
            result = result.and(joined);
        }
        result
    })
}

/// Writes one emulator into a new sealed memfd, decoded straight into the memfd's own
/// memory (mapped): there is nothing to copy it from.
fn write_memfd_file(emulator: &Emulator, reference: Option<&Prefix>) -> Result<File, Error> {
    let memfd_error = |source| Error::Memfd { source };
    let file = create_memfd(emulator)?;
    let size = emulator.size() as usize;
    // Reserving the memory first makes running out of it an error here instead of a
    // SIGBUS when the decoder touches a page that cannot be allocated.
    rustix::fs::fallocate(file.as_fd(), FallocateFlags::empty(), 0, size as u64)
        .map_err(|errno| memfd_error(errno.into()))?;
    {
        let mut mapping = Mapping::new(&file, size, true).map_err(memfd_error)?;
        decode_parts(emulator, mapping.bytes_mut(), reference, &|_, _| Ok(())).map_err(
            |error| match error {
                Error::Io { source, .. } => memfd_error(source),
                other => other,
            },
        )?;
    }
    rustix::fs::fcntl_add_seals(
        &file,
        SealFlags::WRITE | SealFlags::GROW | SealFlags::SHRINK | SealFlags::SEAL,
    )
    .map_err(|errno| memfd_error(errno.into()))?;
    Ok(file)
}

fn create_memfd(emulator: &Emulator) -> Result<File, Error> {
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
    Ok(File::from(fd))
}

fn clone_io(error: &io::Error) -> io::Error {
    match error.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(error.kind(), error.to_string()),
    }
}

/// `work` applied to every item, on as many threads as there are cores (and items);
/// results in order.
fn on_every_core<T: Sync, R: Send>(items: &[T], work: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(items.len());
    if threads <= 1 {
        return items.iter().map(work).collect();
    }
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new(items.iter().map(|_| None).collect());
    in_threads(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(index) else {
                        break;
                    };
                    let result = work(item);
                    if let Ok(mut results) = results.lock() {
                        results[index] = Some(result);
                    }
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .into_iter()
        .map(|result| result.unwrap_or_else(|| unreachable!("every item ran")))
        .collect()
}

/// Runs `work` with a [`std::thread::scope`], then waits until the threads it started
/// are gone from the process, not just joined.
///
/// binfmt must be single-threaded when it next calls `unshare(CLONE_NEWUSER)` (`binfmt
/// run`, right after registering) or `setns(CLONE_NEWNS)` (`apply --watch`): the kernel
/// refuses both while another thread exists. A joined thread has only woken its joiner;
/// it leaves the thread group a few microseconds later, at the end of its exit. So this
/// counts the entries of `/proc/self/task` until they are back to what they were
/// (without `/proc` it cannot tell, and does not wait).
fn in_threads<'env, R>(
    work: impl for<'scope> FnOnce(&'scope std::thread::Scope<'scope, 'env>) -> R,
) -> R {
    let threads = || {
        std::fs::read_dir("/proc/self/task")
            .map(Iterator::count)
            .ok()
    };
    let before = threads();
    let result = std::thread::scope(work);
    if let Some(before) = before {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        while threads().is_some_and(|now| now > before) && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
    }
    result
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
    use std::io::Write;
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
        // The file and its verification record; no temporary files are left behind.
        assert_eq!(
            listing(store.dir()),
            [format!(".{name}.verified"), name.to_owned()]
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    /// The names in `dir`, sorted.
    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn writes_a_batch_reference_first_and_each_exactly() {
        let dir = scratch_dir("batch");
        let store = InterpreterDir::new(&dir);
        let all = Emulator::all();
        let results = store.ensure_all(&all);
        assert_eq!(results.len(), all.len());
        for (emulator, result) in all.iter().zip(results) {
            let (interpreter, found) = result.unwrap();
            assert_eq!(found, FileState::Missing);
            let mut file = File::open(interpreter.path()).unwrap();
            assert!(emulator.matches(&mut file).unwrap(), "{emulator:?}");
        }
        assert_eq!(listing(&dir).len(), 2 * all.len(), "{:?}", listing(&dir));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn patched_emulators_without_their_reference_are_written_alone() {
        let dir = scratch_dir("patches");
        let store = InterpreterDir::new(&dir);
        let patched = [foreign_emulator(), Emulator::for_arch(Arch::S390x).unwrap()];
        for emulator in &patched {
            assert!(emulator.reference().is_some());
        }
        for (emulator, result) in patched.iter().zip(store.ensure_all(&patched)) {
            let (interpreter, _) = result.unwrap();
            let mut file = File::open(interpreter.path()).unwrap();
            assert!(emulator.matches(&mut file).unwrap());
        }
        // The reference was decoded in memory only, not written to the directory.
        let names = listing(&dir);
        assert_eq!(names.len(), 4, "{names:?}");
        assert!(
            names
                .iter()
                .all(|n| n.contains("riscv64") || n.contains("s390x")),
            "{names:?}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_same_size_change_with_the_old_mtime_is_detected() {
        // The verification record must not let a careful in-place edit through: same
        // size, mtime set back, inode kept. Only the ctime tells, and it is enough.
        let dir = scratch_dir("same-size");
        let store = InterpreterDir::new(&dir);
        let emulator = foreign_emulator();
        let path = store.ensure(&emulator).unwrap().0.path().to_owned();
        assert_eq!(store.check(&emulator).unwrap(), FileState::Intact);
        let mtime = fs::metadata(&path).unwrap().modified().unwrap();
        let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
        rustix::io::pwrite(&file, b"\x90\x90", 0x2000).unwrap();
        file.set_modified(mtime).unwrap();
        drop(file);
        assert_eq!(fs::metadata(&path).unwrap().len(), emulator.size());
        assert_eq!(store.check(&emulator).unwrap(), FileState::Tampered);
        assert_eq!(store.ensure(&emulator).unwrap().1, FileState::Tampered);
        assert_eq!(store.check(&emulator).unwrap(), FileState::Intact);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_matching_record_stands_in_for_hashing() {
        // Shows that the record is what a check relies on: a safe file of the right
        // size with the record binfmt would write for it passes without being hashed.
        // (Only whoever can write the directory can make such a record: root.)
        let dir = scratch_dir("record");
        let store = InterpreterDir::new(&dir);
        let emulator = foreign_emulator();
        let path = store.path_for(&emulator);
        let file = File::create(&path).unwrap();
        file.set_len(emulator.size()).unwrap();
        chmod(&path, 0o755);
        assert_eq!(store.check(&emulator).unwrap(), FileState::Tampered);
        let secure = SecureDir::open(&dir, &Trust::current()).unwrap();
        verified::record(&secure, &file_name(&emulator), &file, emulator.sha256()).unwrap();
        assert_eq!(store.check(&emulator).unwrap(), FileState::Intact);
        // Not for a file others could change, though: that one is read, and replaced.
        chmod(&path, 0o775);
        verified::record(&secure, &file_name(&emulator), &file, emulator.sha256()).unwrap();
        assert_eq!(store.check(&emulator).unwrap(), FileState::Tampered);
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
        assert!(is_temporary(b".binfmt-proofs.tmp-1"));
        assert!(!is_temporary(b".binfmt-proofs"));
        assert!(!is_temporary(b"qemu-aarch64-0123456789abcdef"));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn memfd_holds_the_exact_emulator_and_is_sealed() {
        let patched = foreign_emulator();
        let reference = patched.reference().unwrap();
        let interpreters = write_memfds(&[patched, reference]);
        for (emulator, interpreter) in [patched, reference].iter().zip(interpreters) {
            let interpreter = interpreter.unwrap();
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
    }

    /// Regression: a caller may unshare a user namespace right after, which the kernel
    /// refuses while another thread exists, and a joined thread lingers for a few
    /// microseconds (about one unshare in four failed here without the wait). Each
    /// attempt runs in a child process, which has only the thread that forked it.
    ///
    /// The forks happen in a test process of their own (this test binary run again
    /// for this one test, on one test thread): a child forked while other tests' threads
    /// hold the allocator's lock would wait for it forever.
    #[test]
    fn the_threads_are_gone_when_in_threads_returns() {
        const ALONE: &str = "BINFMT_TEST_IN_THREADS_ALONE";
        if std::env::var_os(ALONE).is_none() {
            let output = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "interpreter::tests::the_threads_are_gone_when_in_threads_returns",
                    "--test-threads=1",
                    "--nocapture",
                ])
                .env(ALONE, "1")
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(
                output.status.success() && stdout.contains("1 passed"),
                "the test alone failed:\n{stdout}{}",
                String::from_utf8_lossy(&output.stderr)
            );
            return;
        }
        let mut failed = 0;
        for _ in 0..100 {
            // SAFETY: the child only spawns and joins a thread, reads /proc and calls
            // unshare(2) before _exit(2); the parent waits for it.
            match unsafe { libc::fork() } {
                0 => {
                    in_threads(|scope| {
                        scope.spawn(|| std::hint::black_box((0..10_000u64).sum::<u64>()));
                    });
                    let unshared = unsafe { libc::unshare(libc::CLONE_NEWUSER) } == 0;
                    unsafe { libc::_exit(if unshared { 0 } else { 1 }) };
                }
                -1 => panic!("fork: {}", io::Error::last_os_error()),
                child => {
                    let mut status = 0;
                    assert_eq!(unsafe { libc::waitpid(child, &mut status, 0) }, child);
                    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
                        failed += 1;
                    }
                }
            }
        }
        assert_eq!(
            failed, 0,
            "unshare(CLONE_NEWUSER) failed right after in_threads in {failed} of 100 children \
             (or user namespaces are disabled on this machine)"
        );
    }

    #[test]
    fn memfd_paths_are_recognised() {
        assert!(is_memfd_path(Path::new("/proc/self/fd/3")));
        assert!(!is_memfd_path(Path::new("/proc/self/fd/")));
        assert!(!is_memfd_path(Path::new("/proc/self/fd/3/x")));
        assert!(!is_memfd_path(Path::new("/var/lib/binfmt/qemu-aarch64")));
    }
}
