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

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{MemfdFlags, SealFlags};
use rustix::io::Errno;

use crate::emulator::{Emulator, WriteError};

/// Where interpreters are written by default: persistent, disk-backed, root-owned on
/// every distribution, and writable in a container's root filesystem.
pub const DEFAULT_DIR: &str = "/var/lib/binfmt";

/// How many hex digits of the sha256 go into a file name.
const DIGEST_PREFIX: usize = 16;

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
    /// The file is exactly the pinned emulator.
    Intact,
    /// The file differs from the pinned emulator: it must never be registered.
    Tampered,
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
    /// Any other failure to create, write or rename a file.
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

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::ReadOnly { path } => {
                write!(f, "{} is on a read-only filesystem", path.display())
            }
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

impl InterpreterDir {
    /// A directory of interpreter files (created when first written to).
    pub fn new(dir: impl Into<PathBuf>) -> InterpreterDir {
        InterpreterDir { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file an emulator is written to: `<dir>/qemu-<cpu>-<sha256 prefix>`.
    pub fn path_for(&self, emulator: &Emulator) -> PathBuf {
        self.dir.join(format!(
            "qemu-{}-{}",
            emulator.arch().qemu_cpu(),
            &emulator.sha256()[..DIGEST_PREFIX]
        ))
    }

    /// Checks the file at the emulator's path against its pin.
    pub fn check(&self, emulator: &Emulator) -> io::Result<FileState> {
        let path = self.path_for(emulator);
        let mut file = match fs::OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&path)
        {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(FileState::Missing),
            Err(error) => return Err(error),
        };
        Ok(if emulator.matches(&mut file)? {
            FileState::Intact
        } else {
            FileState::Tampered
        })
    }

    /// Makes sure the emulator's file exists and is intact, writing it if not, and
    /// returns the interpreter to register with what was on disk before (so the
    /// caller knows whether the kernel may hold a stale copy; the digest is computed
    /// once).
    ///
    /// A missing or tampered file is written to a temporary file in the same
    /// directory, checked while written, made mode 0755, and renamed into place: a
    /// reader sees the old file or the whole new one, never a part, and a file the
    /// kernel holds open (flag F) is replaced, not rewritten (which would fail with
    /// ETXTBSY).
    pub fn ensure(&self, emulator: &Emulator) -> Result<(Interpreter, FileState), Error> {
        let path = self.path_for(emulator);
        let io_error = |action, source: io::Error| {
            if source.raw_os_error() == Some(Errno::ROFS.raw_os_error()) {
                Error::ReadOnly {
                    path: self.dir.clone(),
                }
            } else {
                Error::Io {
                    path: path.clone(),
                    action,
                    source,
                }
            }
        };
        let found = self.check(emulator).map_err(|e| io_error("read", e))?;
        if found == FileState::Intact {
            return Ok((Interpreter { path, memfd: None }, found));
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&self.dir)
            .map_err(|e| io_error("create directory", e))?;

        let temporary = self.dir.join(format!(
            ".{}.tmp-{}",
            path.file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default(),
            std::process::id()
        ));
        let result = write_new_file(&temporary, emulator).and_then(|()| {
            fs::rename(&temporary, &path).map_err(|e| io_error("rename into place", e))
        });
        if result.is_err() {
            // Best effort: the temporary name is ours alone (it has our pid).
            let _ = fs::remove_file(&temporary);
        }
        result?;
        log::debug!("wrote {} (was {found:?})", path.display());
        Ok((Interpreter { path, memfd: None }, found))
    }
}

fn write_new_file(path: &Path, emulator: &Emulator) -> Result<(), Error> {
    let io_error = |action, source: io::Error| {
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
    };
    let file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o755)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .map_err(|e| io_error("create", e))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    emulator.write_to(&mut out).map_err(Error::Emulator)?;
    let file = out
        .into_inner()
        .map_err(|e| io_error("write", e.into_error()))?;
    // The umask may have removed bits from the creation mode.
    file.set_permissions(fs::Permissions::from_mode(0o755))
        .map_err(|e| io_error("chmod", e))?;
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
    use super::*;
    use crate::arch::Arch;

    fn scratch_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("qemu-catalog-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
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
        use std::os::unix::fs::MetadataExt;
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
    fn memfd_holds_the_exact_emulator_and_is_sealed() {
        let emulator = foreign_emulator();
        let interpreter = write_memfd(&emulator).unwrap();
        assert!(interpreter.is_memfd());
        assert!(is_memfd_path(interpreter.path()));
        let mut file = File::open(interpreter.path()).unwrap();
        assert!(emulator.matches(&mut file).unwrap());
        let writable = fs::OpenOptions::new().write(true).open(interpreter.path());
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
