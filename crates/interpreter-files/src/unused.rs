//! Removing the emulator files no entry uses: every pin names its file after its digest
//! (`qemu-<cpu>-<digest>`, see `file_names`), so after a new pin the old file (14 to 17 MB)
//! would stay in the directory for ever, and so would every file after an uninstall.
//!
//! A file is removed only when all of these hold: its name is one binfmt writes
//! (`qemu-<cpu>-<16 hex digits>`, with a CPU of the catalog's), it is a regular file
//! as binfmt leaves them (mode 0755, owned by a trusted user, not a symbolic link),
//! it is not the file of one of the pins this binary carries (after an install: see
//! [`Keep`]), and no entry of the table names it (the caller passes every entry's
//! interpreter, binfmt's or not). Its verification record goes with it. Anything else
//! in the directory is left alone.
//!
//! Only the table the caller read is consulted: an entry of another binfmt_misc
//! instance (a container's private one) that names an old file is not seen. With flag
//! F, binfmt's default, the kernel opened that file at registration and keeps it
//! open, so removing its name breaks nothing.

use std::path::{Path, PathBuf};

use qemu_catalog::Emulator;
use rustix::fs::{AtFlags, FileType};

use crate::file_names::{FILE_MODE, file_name, is_emulator_file_name};
use crate::secure_dir::{SecureDir, Trust};
use crate::verified::record_name;
use binfmt_misc::report::Chain;

/// Which of binfmt's emulator files stay although no entry uses them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    /// The files of this binary's pins: after an install, which uses them, or will
    /// again after a kill; only what a re-pin superseded goes.
    Pins,
    /// None: after an uninstall, every file no entry uses goes.
    Nothing,
}

/// An emulator file that was removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Removed {
    /// Its path.
    pub path: PathBuf,
    /// Its size in bytes: what removing it freed.
    pub bytes: u64,
}

/// Removes from `dir` (whose lock the caller holds) the emulator files whose names are
/// not among `in_use` (file names of every entry's interpreter) and, with
/// [`Keep::Pins`], that are not the current pins'. Returns what was removed; a file
/// that cannot be removed is logged and kept.
pub(crate) fn remove_unused(
    dir: &SecureDir,
    in_use: &[&str],
    keep: Keep,
    trust: &Trust,
) -> Vec<Removed> {
    let pinned: Vec<String> = match keep {
        Keep::Pins => Emulator::all().iter().map(file_name).collect(),
        Keep::Nothing => Vec::new(),
    };
    let names = match dir.names() {
        Ok(names) => names,
        Err(error) => {
            log::debug!("not looking for unused emulator files: {}", Chain(&error));
            return Vec::new();
        }
    };
    let mut removed = Vec::new();
    for name in names {
        let Ok(name) = String::from_utf8(name) else {
            continue;
        };
        if !is_emulator_file_name(&name)
            || pinned.contains(&name)
            || in_use.contains(&name.as_str())
        {
            continue;
        }
        let Ok(stat) = rustix::fs::statat(dir.fd(), name.as_str(), AtFlags::SYMLINK_NOFOLLOW)
        else {
            continue;
        };
        let as_written = FileType::from_raw_mode(stat.st_mode) == FileType::RegularFile
            && stat.st_mode & 0o7777 == FILE_MODE
            && trust.trusts(stat.st_uid);
        if !as_written {
            log::debug!("leaving {name}: not a file as binfmt writes them");
            continue;
        }
        let path = dir.path().join(&name);
        match rustix::fs::unlinkat(dir.fd(), name.as_str(), AtFlags::empty()) {
            Ok(()) => {
                // Best effort: a record without its file matches nothing.
                let _ = rustix::fs::unlinkat(dir.fd(), record_name(&name), AtFlags::empty());
                removed.push(Removed {
                    path,
                    bytes: u64::try_from(stat.st_size).unwrap_or(0),
                });
            }
            Err(errno) => log::warn!("cannot remove unused {}: {errno}", path.display()),
        }
    }
    removed
}

/// The file names of `interpreters` (entries' interpreter paths).
pub(crate) fn file_names(interpreters: &[PathBuf]) -> Vec<&str> {
    interpreters
        .iter()
        .filter_map(|path| Path::new(path).file_name()?.to_str())
        .collect()
}
