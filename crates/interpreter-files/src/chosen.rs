//! An emulator file a user names for an architecture instead of the one binfmt carries
//! (another version of Debian's qemu-user-static, box64, FEX), checked as binfmt
//! checks its own before the kernel is pointed at it.
//!
//! The interpreter of an entry runs for every program the entry matches, setuid ones
//! too with flag `C`: whoever can change that file or a directory on its path can run
//! code as anyone. So [`check`] refuses a file unless
//!
//! - its path is absolute and no component of it is a symbolic link (a link's target
//!   can change after the check; the fix names the resolved path),
//! - every directory from `/` down is one only root can change (`secure_dir`),
//! - it is a regular file owned by root (or the user running binfmt), that group and
//!   others cannot write, and that may be executed,
//! - its sha256 is the one given, when one is given.
//!
//! The file is opened once, with `O_NOFOLLOW`, relative to the checked directory, and
//! everything is read through that descriptor: what was checked is what was hashed.
//! [`ChosenFile`] also says whether the file is dynamically linked (an ELF
//! `PT_INTERP`): such an emulator runs on the host but not in a container or chroot
//! that lacks its loader and libraries.

use std::ffi::OsStr;
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use binfmt_misc::report::Fixable;
use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;
use sha2::{Digest, Sha256};

use crate::secure_dir::{SecureDir, SecureDirError, Trust, Unsafe};

/// Mode bits that let group or others write.
const WRITABLE_BY_OTHERS: u32 = 0o022;
/// Mode bits that let anyone execute.
const EXECUTABLE: u32 = 0o111;
/// How many bytes of the file are read for its ELF headers: the ELF header and every
/// program header of any emulator there is.
const HEADER_BYTES: usize = 64 * 1024;

/// A checked emulator file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChosenFile {
    /// Its path, as given (and checked).
    pub path: PathBuf,
    /// Its sha256, in lowercase hex, as read.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// The dynamic loader it needs (`PT_INTERP`), when it is not statically linked.
    pub loader: Option<PathBuf>,
}

/// Why a chosen emulator file is refused.
#[derive(Debug)]
pub enum ChosenError {
    /// The path is relative.
    NotAbsolute { path: PathBuf },
    /// The path, or a directory on it, is a symbolic link; `resolved` is where it
    /// leads, when that can be told.
    Symlink {
        path: PathBuf,
        resolved: Option<PathBuf>,
    },
    /// A directory on the path is one others could change.
    UnsafeDirectory { path: PathBuf, problem: Unsafe },
    /// Nothing is at the path.
    Missing { path: PathBuf },
    /// Something other than a regular file is there.
    NotRegular { path: PathBuf },
    /// Group or others may write it.
    WritableByOthers { path: PathBuf, mode: u32 },
    /// Nobody may execute it.
    NotExecutable { path: PathBuf, mode: u32 },
    /// It belongs to a user who is neither root nor the one running binfmt.
    Owner { path: PathBuf, uid: u32 },
    /// Its sha256 is not the one given.
    Digest {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    /// A system call on it failed.
    Io {
        path: PathBuf,
        action: &'static str,
        errno: Errno,
    },
}

impl fmt::Display for ChosenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let risk = "whoever can change it chooses what every foreign program (setuid ones \
                    too, with flag C) runs through";
        match self {
            ChosenError::NotAbsolute { path } => {
                write!(f, "emulator {} is not an absolute path", path.display())
            }
            ChosenError::Symlink { path, .. } => write!(
                f,
                "emulator {} is, or lies under, a symbolic link, whose target can change after \
                 binfmt checked it",
                path.display()
            ),
            ChosenError::UnsafeDirectory { path, problem } => {
                write!(f, "emulator {}: {}", path.display(), problem.describe())
            }
            ChosenError::Missing { path } => {
                write!(f, "emulator {} does not exist", path.display())
            }
            ChosenError::NotRegular { path } => {
                write!(f, "emulator {} is not a regular file", path.display())
            }
            ChosenError::WritableByOthers { path, mode } => write!(
                f,
                "emulator {} is writable by others (mode {mode:04o}): {risk}",
                path.display()
            ),
            ChosenError::NotExecutable { path, mode } => write!(
                f,
                "emulator {} is not executable (mode {mode:04o})",
                path.display()
            ),
            ChosenError::Owner { path, uid } => write!(
                f,
                "emulator {} belongs to uid {uid}, not root: {risk}",
                path.display()
            ),
            ChosenError::Digest {
                path,
                expected,
                actual,
            } => write!(
                f,
                "emulator {} has sha256 {actual}, not the {expected} given",
                path.display()
            ),
            ChosenError::Io { path, action, .. } => {
                write!(f, "cannot {action} emulator {}", path.display())
            }
        }
    }
}

impl std::error::Error for ChosenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ChosenError::Io { errno, .. } => Some(errno),
            _ => None,
        }
    }
}

impl Fixable for ChosenError {
    fn fix(&self) -> Option<String> {
        match self {
            ChosenError::NotAbsolute { .. } => Some("give its path from `/`".to_owned()),
            ChosenError::Symlink { resolved, .. } => Some(match resolved {
                Some(resolved) => format!("give the resolved path ({})", resolved.display()),
                None => "give the resolved path".to_owned(),
            }),
            ChosenError::UnsafeDirectory { .. } => Some(
                "keep the emulator in a directory only root can change (such as /usr/bin or \
                 /usr/local/bin)"
                    .to_owned(),
            ),
            ChosenError::Missing { .. } => {
                Some("install it, or give the path where it is".to_owned())
            }
            ChosenError::NotRegular { .. } => Some("give the emulator's file".to_owned()),
            ChosenError::WritableByOthers { path, .. } => {
                Some(format!("chmod go-w {}", path.display()))
            }
            ChosenError::NotExecutable { path, .. } => {
                Some(format!("chmod 0755 {}", path.display()))
            }
            ChosenError::Owner { path, .. } => Some(format!("chown root {}", path.display())),
            ChosenError::Digest { path, .. } => Some(format!(
                "give the file that digest names, or the digest of this file if it is the one \
                 you want (sha256sum {})",
                path.display()
            )),
            ChosenError::Io { .. } => None,
        }
    }
}

/// Checks the emulator file at `path` (see the module documentation), and its sha256
/// against `sha256` when one is given (lowercase hex).
pub fn check(path: &Path, sha256: Option<&str>) -> Result<ChosenFile, ChosenError> {
    let trust = Trust::current();
    if !path.is_absolute() {
        return Err(ChosenError::NotAbsolute {
            path: path.to_owned(),
        });
    }
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(ChosenError::NotRegular {
            path: path.to_owned(),
        });
    };
    let symlink = || ChosenError::Symlink {
        path: path.to_owned(),
        resolved: std::fs::canonicalize(path).ok(),
    };
    let dir = match SecureDir::open_existing(parent, &trust) {
        Ok(Some(dir)) => dir,
        Ok(None) => {
            return Err(ChosenError::Missing {
                path: path.to_owned(),
            });
        }
        Err(SecureDirError::Unsafe(problem)) if problem.is_symlink() => return Err(symlink()),
        Err(SecureDirError::Unsafe(problem)) => {
            return Err(ChosenError::UnsafeDirectory {
                path: path.to_owned(),
                problem,
            });
        }
        // open_existing takes no lock, so the only other failure is a system call's.
        Err(error) => {
            return Err(ChosenError::Io {
                path: path.to_owned(),
                action: "open the directory of",
                errno: match &error {
                    SecureDirError::Io { source, .. } => source
                        .raw_os_error()
                        .map_or(Errno::IO, Errno::from_raw_os_error),
                    _ => Errno::IO,
                },
            });
        }
    };
    let file = open(&dir, name, path).map_err(|error| match error {
        ChosenError::Io {
            errno: Errno::LOOP, ..
        } => symlink(),
        error => error,
    })?;
    judge_file(&file, path, &trust)?;
    let (digest, size, header) = read(&file, path)?;
    if let Some(expected) = sha256
        && expected != digest
    {
        return Err(ChosenError::Digest {
            path: path.to_owned(),
            expected: expected.to_owned(),
            actual: digest,
        });
    }
    Ok(ChosenFile {
        path: path.to_owned(),
        sha256: digest,
        size,
        loader: elf_loader(&header),
    })
}

/// Opens `name` in `dir` for reading, not following a symbolic link, and not hanging
/// on a FIFO.
fn open(dir: &SecureDir, name: &OsStr, path: &Path) -> Result<File, ChosenError> {
    rustix::fs::openat(
        dir.fd(),
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map(File::from)
    .map_err(|errno| match errno {
        Errno::NOENT => ChosenError::Missing {
            path: path.to_owned(),
        },
        errno => ChosenError::Io {
            path: path.to_owned(),
            action: "open",
            errno,
        },
    })
}

/// The file's type, mode and owner.
fn judge_file(file: &File, path: &Path, trust: &Trust) -> Result<(), ChosenError> {
    let stat = rustix::fs::fstat(file).map_err(|errno| ChosenError::Io {
        path: path.to_owned(),
        action: "stat",
        errno,
    })?;
    let mode = stat.st_mode & 0o7777;
    let path = path.to_owned();
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
        Err(ChosenError::NotRegular { path })
    } else if mode & WRITABLE_BY_OTHERS != 0 {
        Err(ChosenError::WritableByOthers { path, mode })
    } else if !trust.trusts(stat.st_uid) {
        Err(ChosenError::Owner {
            path,
            uid: stat.st_uid,
        })
    } else if mode & EXECUTABLE == 0 {
        Err(ChosenError::NotExecutable { path, mode })
    } else {
        Ok(())
    }
}

/// The file's sha256 (hex), its size and its first [`HEADER_BYTES`] bytes.
fn read(mut file: &File, path: &Path) -> Result<(String, u64, Vec<u8>), ChosenError> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 256 * 1024];
    let mut header = Vec::new();
    let mut size = 0u64;
    loop {
        let n = match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => {
                return Err(ChosenError::Io {
                    path: path.to_owned(),
                    action: "read",
                    errno: error
                        .raw_os_error()
                        .map_or(Errno::IO, Errno::from_raw_os_error),
                });
            }
        };
        if header.len() < HEADER_BYTES {
            let take = n.min(HEADER_BYTES - header.len());
            header.extend_from_slice(&buffer[..take]);
        }
        hasher.update(&buffer[..n]);
        size += n as u64;
    }
    let digest = hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    Ok((digest, size, header))
}

/// The path of the ELF's `PT_INTERP` (its dynamic loader), if `header` is the start of
/// an ELF file that has one within it.
pub fn elf_loader(header: &[u8]) -> Option<PathBuf> {
    const PT_INTERP: u32 = 3;
    if header.get(..4)? != b"\x7fELF" {
        return None;
    }
    let wide = *header.get(4)? == 2;
    let little = *header.get(5)? == 1;
    let int = |at: usize, len: usize| -> Option<u64> {
        let bytes = header.get(at..at.checked_add(len)?)?;
        Some(bytes.iter().enumerate().fold(0u64, |value, (i, &byte)| {
            let shift = if little { i } else { len - 1 - i };
            value | u64::from(byte) << (8 * shift)
        }))
    };
    let (phoff, phentsize, phnum) = if wide {
        (int(32, 8)?, int(54, 2)?, int(56, 2)?)
    } else {
        (int(28, 4)?, int(42, 2)?, int(44, 2)?)
    };
    for index in 0..phnum {
        let at = usize::try_from(phoff.checked_add(index.checked_mul(phentsize)?)?).ok()?;
        if int(at, 4)? != u64::from(PT_INTERP) {
            continue;
        }
        let (offset, size) = if wide {
            (int(at + 8, 8)?, int(at + 32, 8)?)
        } else {
            (int(at + 4, 4)?, int(at + 16, 4)?)
        };
        let start = usize::try_from(offset).ok()?;
        let bytes = header.get(start..start.checked_add(usize::try_from(size).ok()?)?)?;
        let name = bytes.split(|&byte| byte == 0).next()?;
        return Some(PathBuf::from(OsStr::from_bytes(name)));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loader_of_a_dynamically_linked_program_is_found() {
        // This test binary is dynamically linked on the machines the tests run on;
        // a static one has no loader.
        let own = std::fs::read("/proc/self/exe").unwrap();
        let loader = elf_loader(&own[..own.len().min(HEADER_BYTES)]);
        let linked_statically = cfg!(target_feature = "crt-static");
        assert_eq!(loader.is_none(), linked_statically, "{loader:?}");
        if let Some(loader) = loader {
            assert!(loader.to_string_lossy().contains("ld"), "{loader:?}");
        }
        assert_eq!(elf_loader(b"#!/bin/sh\n"), None);
        assert_eq!(elf_loader(&own[..20]), None, "cut short");
    }

    #[test]
    fn relative_paths_are_refused_before_anything_is_opened() {
        let error = check(Path::new("bin/qemu-aarch64-static"), None).unwrap_err();
        assert!(matches!(error, ChosenError::NotAbsolute { .. }), "{error}");
        assert!(
            binfmt_misc::report::Report(&error)
                .to_string()
                .contains("fix: give its path from `/`")
        );
    }
}
