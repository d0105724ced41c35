//! Removing the emulator files a re-pin left behind: every pin names its file after its
//! digest (`qemu-<cpu>-<digest>`, see `layout`), so after a new pin the old file
//! (14 to 17 MB) would stay in the directory for ever.
//!
//! A file is removed only when all of these hold: its name is one binfmt writes
//! (`qemu-<cpu>-<16 hex digits>`, with a CPU of the catalog's), it is a regular file
//! as binfmt leaves them (mode 0755, owned by a trusted user, not a symbolic link),
//! it is not the file of one of the pins this binary carries, and no entry of the
//! table names it (the caller passes every entry's interpreter, binfmt's or not). Its
//! verification record goes with it. Anything else in the directory is left alone.
//!
//! Only the table the caller read is consulted: an entry of another binfmt_misc
//! instance (a container's private one) that names an old file is not seen. With flag
//! F, binfmt's default, the kernel opened that file at registration and keeps it
//! open, so removing its name breaks nothing.

use std::path::{Path, PathBuf};

use qemu_catalog::{Arch, Emulator};
use rustix::fs::{AtFlags, FileType};

use crate::layout::{DIGEST_PREFIX, FILE_MODE, file_name};
use crate::secure_dir::{SecureDir, Trust};
use crate::verified::record_name;

/// An emulator file that was removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Removed {
    /// Its path.
    pub path: PathBuf,
    /// Its size in bytes: what removing it freed.
    pub bytes: u64,
}

/// Whether `name` is one binfmt gives an emulator file: `qemu-<cpu>-<16 lowercase hex
/// digits>` with the CPU of one of the catalog's architectures.
pub(crate) fn is_emulator_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("qemu-") else {
        return false;
    };
    let Some((cpu, digest)) = rest.rsplit_once('-') else {
        return false;
    };
    Arch::ALL.iter().any(|arch| arch.qemu_cpu() == cpu)
        && digest.len() == DIGEST_PREFIX
        && digest
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
}

/// Removes from `dir` (whose lock the caller holds) the emulator files that are not
/// the current pins' and whose names are not among `in_use` (file names of every
/// entry's interpreter). Returns what was removed; a file that cannot be removed is
/// logged and kept.
pub(crate) fn remove_unused(dir: &SecureDir, in_use: &[&str], trust: &Trust) -> Vec<Removed> {
    let pinned: Vec<String> = Emulator::all().iter().map(file_name).collect();
    let names = match dir.names() {
        Ok(names) => names,
        Err(error) => {
            log::debug!("not looking for unused emulator files: {error}");
            return Vec::new();
        }
    };
    let mut removed = Vec::new();
    for name in names {
        let Ok(name) = String::from_utf8(name) else {
            continue;
        };
        if !is_emulator_name(&name) || pinned.contains(&name) || in_use.contains(&name.as_str()) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_binfmts_own_names_are_emulator_names() {
        assert!(is_emulator_name("qemu-aarch64-0123456789abcdef"));
        assert!(is_emulator_name("qemu-mips64el-ffffffffffffffff"));
        for other in [
            "qemu-aarch64-static",
            "qemu-aarch64",
            "qemu-aarch64-0123456789ABCDEF",
            "qemu-aarch64-0123456789abcde",
            "qemu-aarch64-0123456789abcdef0",
            "qemu-sparc-0123456789abcdef",
            ".qemu-aarch64-0123456789abcdef.verified",
            ".qemu-aarch64-0123456789abcdef.tmp-1",
            ".binfmt-proofs",
            "notes.txt",
        ] {
            assert!(!is_emulator_name(other), "{other}");
        }
        for emulator in Emulator::all() {
            assert!(is_emulator_name(&file_name(&emulator)), "{emulator:?}");
        }
    }
}
