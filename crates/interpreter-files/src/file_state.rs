//! What stands at an emulator's path in its directory: missing, the pinned emulator,
//! something else, or the right bytes in a file others could change.
//!
//! Checking a file that is already there normally costs an `fstat` and reading a small
//! record written when the file was last verified ([`crate::verified`]); only a file
//! without a matching record is read and hashed again.

use std::fmt;
use std::fs::File;

use qemu_catalog::Emulator;
use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::error::{Error, io_error};
use crate::file_names::{FILE_MODE, file_name};
use crate::secure_dir::{SecureDir, Trust};
use crate::verified;

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

/// What stands at the emulator's name in `dir`.
pub(crate) fn file_state(
    dir: &SecureDir,
    emulator: &Emulator,
    trust: &Trust,
) -> Result<FileState, Error> {
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
