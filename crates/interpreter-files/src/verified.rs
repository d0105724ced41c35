//! What binfmt knew about an interpreter file the last time it verified it, so that a
//! later run can tell the file is unchanged without reading and hashing 15 MB again.
//!
//! Next to each file it writes or hashes, binfmt keeps a small record,
//! `<dir>/.<file name>.verified`, naming the pinned sha256 the file matched and the
//! file's identity then: inode number, size, mtime and ctime (with nanoseconds). A later
//! check that finds the same identity takes the file as intact; any difference (or no
//! record, or one binfmt did not write) means reading and hashing the file again.
//!
//! Why the identity can stand in for the digest: the kernel sets a file's ctime to the
//! current time on every change of its content or metadata (write, truncate, chmod,
//! rename, link, xattr), and no system call sets it back; replacing the file gives
//! another inode. So a file whose inode and ctime are what they were right after it was
//! hashed (or written through the checking decoder) still has that content. What gets
//! around it needs root: writing the block device underneath, or changing the system
//! clock to repeat a timestamp to the nanosecond, and root can register any interpreter
//! it likes anyway. The record is only believed if it is a regular file owned by a user
//! binfmt trusts and writable by nobody else, in a directory that [`SecureDir`] checked
//! only root can change (the interpreter file itself must be a trusted 0755 file too):
//! whoever could forge a record could as well rewrite the interpreter.

use std::io;
use std::os::fd::AsFd;

use crate::secure_dir::{SecureDir, Trust};

/// The record's name for the file `name`: `.<name>.verified`.
pub(crate) fn record_name(name: &str) -> String {
    format!(".{name}.verified")
}

/// The record's exact text for an open file that matches `sha256`.
fn text(file: impl AsFd, sha256: &str) -> io::Result<String> {
    let stat = rustix::fs::fstat(file)?;
    Ok(format!(
        "binfmt verified\nsha256 {sha256}\nsize {}\ninode {}\nmtime {}.{:09}\nctime {}.{:09}\n",
        stat.st_size,
        stat.st_ino,
        stat.st_mtime,
        stat.st_mtime_nsec,
        stat.st_ctime,
        stat.st_ctime_nsec,
    ))
}

/// Whether a trustworthy record in `dir` says `file` (open, named `name` there)
/// matched `sha256` and has not changed since.
pub(crate) fn is_recorded(
    dir: &SecureDir,
    name: &str,
    file: impl AsFd,
    sha256: &str,
    trust: &Trust,
) -> bool {
    let Ok(expected) = text(file, sha256) else {
        return false;
    };
    dir.read_trusted(&record_name(name), expected.len(), trust)
        .is_some_and(|found| found == expected)
}

/// Records in `dir` that `file` (open, named `name` there) matches `sha256` as it is
/// now. Callers treat a failure as "no record".
pub(crate) fn record(dir: &SecureDir, name: &str, file: impl AsFd, sha256: &str) -> io::Result<()> {
    dir.replace_file(&record_name(name), text(file, sha256)?.as_bytes())
}

#[cfg(test)]
mod tests {
    use std::fs::{self, File};
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    use super::*;
    use crate::testing::scratch_dir;

    /// A fresh directory binfmt trusts, under the build's own target directory.
    fn scratch(name: &str) -> (PathBuf, SecureDir) {
        let dir = scratch_dir(&format!("verified-{name}"));
        let secure = SecureDir::open(&dir, &Trust::current()).unwrap();
        (dir, secure)
    }

    const DIGEST: &str = "f2bb9b35eb97fc6b67c43a65d944ea9dcd7b1908df95faf28cea68511e762dc5";
    const NAME: &str = "qemu-riscv64-f2bb9b35eb97fc6b";

    #[test]
    fn a_recorded_file_is_recognised_until_it_changes() {
        let (dir, secure) = scratch("changes");
        let path = dir.join(NAME);
        let trust = Trust::current();
        fs::write(&path, b"an emulator").unwrap();
        let open = || File::open(&path).unwrap();
        assert!(
            !is_recorded(&secure, NAME, open(), DIGEST, &trust),
            "no record yet"
        );

        record(&secure, NAME, open(), DIGEST).unwrap();
        assert!(dir.join(format!(".{NAME}.verified")).is_file());
        assert!(is_recorded(&secure, NAME, open(), DIGEST, &trust));
        let other = DIGEST.replace('f', "0");
        assert!(
            !is_recorded(&secure, NAME, open(), &other, &trust),
            "other digest"
        );

        // Same size, content rewritten in place, mtime put back: ctime still differs.
        let mtime = fs::metadata(&path).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut writable = fs::OpenOptions::new().write(true).open(&path).unwrap();
        writable.write_all(b"AN EMULATOR").unwrap();
        writable.set_modified(mtime).unwrap();
        drop(writable);
        assert_eq!(fs::metadata(&path).unwrap().modified().unwrap(), mtime);
        assert!(
            !is_recorded(&secure, NAME, open(), DIGEST, &trust),
            "content changed"
        );

        // Replaced by another file: another inode.
        record(&secure, NAME, open(), DIGEST).unwrap();
        assert!(is_recorded(&secure, NAME, open(), DIGEST, &trust));
        fs::write(dir.join("other"), b"AN EMULATOR").unwrap();
        fs::rename(dir.join("other"), &path).unwrap();
        assert!(
            !is_recorded(&secure, NAME, open(), DIGEST, &trust),
            "file replaced"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_record_others_can_write_is_not_believed() {
        let (dir, secure) = scratch("perms");
        let path = dir.join(NAME);
        let trust = Trust::current();
        fs::write(&path, b"an emulator").unwrap();
        let open = || File::open(&path).unwrap();
        record(&secure, NAME, open(), DIGEST).unwrap();
        assert!(is_recorded(&secure, NAME, open(), DIGEST, &trust));
        let record_path = dir.join(record_name(NAME));
        fs::set_permissions(&record_path, fs::Permissions::from_mode(0o666)).unwrap();
        assert!(!is_recorded(&secure, NAME, open(), DIGEST, &trust));
        fs::remove_dir_all(&dir).unwrap();
    }
}
