//! A directory of interpreter files, and the one way binfmt reads and writes it.
//!
//! **Writing** ([`InterpreterDir::ensure_all`]) checks the directory from `/` down
//! ([`crate::secure_dir`]), locks it against other binfmt runs, checks every file on
//! every core (`file_state`) and writes the missing, tampered or unsafe ones
//! (`write`): the reference emulator first and then the others, patches
//! against it, one emulator at a time with its parts decoded at once, one per core.
//! So memory stays near one emulator's size.
//!
//! **Checking** a file that is already there normally costs an `fstat` and reading a
//! small record written when the file was last verified (`verified`).
//!
//! The directory also holds the small state files binfmt keeps next to the
//! interpreters ([`InterpreterDir::read_state`], [`InterpreterDir::write_state`]).

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use qemu_catalog::Emulator;

use crate::error::{Error, io_error};
use crate::file_names::{STATE_PREFIX, file_name};
use crate::file_state::{FileState, file_state};
use crate::interpreter::Interpreter;
use crate::secure_dir::{SecureDir, Trust};
use crate::threads::on_every_core;
use crate::unused::{Keep, Removed, file_names, remove_unused};
use crate::write::{remove_leftovers, write_files};

/// `FUSE_SUPER_MAGIC` from `include/uapi/linux/magic.h`: `statfs(2)`'s `f_type` for a
/// filesystem served by a userspace daemon (fuse-overlayfs, the root filesystem of
/// Docker containers on that storage driver and of rootless engines; sshfs; ...).
pub const FUSE_SUPER_MAGIC: u64 = 0x6573_5546;

/// One emulator's file after [`InterpreterDir::ensure_all`]: the interpreter to
/// register with what was on disk before, or why the file could not be had.
pub type Ensured = Result<(Interpreter, FileState), Error>;

/// A directory that holds interpreter files.
#[derive(Clone, Debug)]
pub struct InterpreterDir {
    dir: PathBuf,
    /// How long to wait for another binfmt run's lock on the directory.
    lock_timeout: Duration,
}

impl InterpreterDir {
    /// A directory of interpreter files (created when first written to), whose lock
    /// is waited for [`binfmt_misc::lock::DEFAULT_TIMEOUT`] at most.
    pub fn new(dir: impl Into<PathBuf>) -> InterpreterDir {
        InterpreterDir {
            dir: dir.into(),
            lock_timeout: binfmt_misc::lock::DEFAULT_TIMEOUT,
        }
    }

    /// The same directory, its lock waited for `timeout` at most.
    pub fn with_lock_timeout(self, timeout: Duration) -> InterpreterDir {
        InterpreterDir {
            lock_timeout: timeout,
            ..self
        }
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
    /// `verified`); any other is read and hashed, and recorded when intact
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
        dir.lock(self.lock_timeout)?;
        dir.replace_file(name, contents.as_bytes())
            .map_err(|source| io_error(&path, "write", source))
    }

    /// Removes the temporary files of runs that were killed while writing an emulator
    /// (each is as big as the emulator), creating nothing; returns how many. A run
    /// calls it once, as an entry that needs no file here never reaches [`ensure`].
    ///
    /// [`ensure`]: InterpreterDir::ensure
    ///
    /// Does not wait for the directory's lock: a run that holds it removes them itself.
    pub fn remove_leftovers(&self) -> Result<usize, Error> {
        match SecureDir::open_existing(&self.dir, &Trust::current())? {
            Some(dir) => {
                dir.lock(Duration::ZERO)?;
                Ok(remove_leftovers(&dir))
            }
            None => Ok(0),
        }
    }

    /// Removes the emulator files no entry uses: those binfmt wrote (by name, mode and
    /// owner) whose names no path in `in_use` (every entry's interpreter) has, and,
    /// with [`Keep::Pins`], that are not this binary's pins (what a re-pin superseded;
    /// after an install); see `unused`. Under the directory's lock, not waited for (a
    /// run that holds it removes them); creates nothing. Returns what was removed.
    pub fn remove_unused(&self, in_use: &[PathBuf], keep: Keep) -> Result<Vec<Removed>, Error> {
        let trust = Trust::current();
        match SecureDir::open_existing(&self.dir, &trust)? {
            Some(dir) => {
                dir.lock(Duration::ZERO)?;
                Ok(remove_unused(&dir, &file_names(in_use), keep, &trust))
            }
            None => Ok(Vec::new()),
        }
    }

    /// Makes sure the emulator's file exists, is intact and safe; see
    /// [`ensure_all`](Self::ensure_all).
    pub fn ensure(&self, emulator: &Emulator) -> Result<(Interpreter, FileState), Error> {
        self.ensure_all(std::slice::from_ref(emulator))?
            .pop()
            .unwrap_or_else(|| unreachable!("one result per emulator"))
    }

    /// Makes sure each emulator's file exists, is intact and safe, writing those that
    /// are not, and returns, per emulator and in order, the interpreter to register
    /// with what was on disk before (so the caller knows whether the kernel may hold a
    /// bad copy). Fails as a whole, once, when the directory itself cannot be used (on
    /// FUSE, unsafe, locked by another run, not to be created); each emulator's file
    /// can fail on its own too (a full disk).
    ///
    /// The directory and its parents are checked first ([`secure_dir`](crate::secure_dir)) and locked
    /// against other binfmt runs writing there. The files are checked on every core at
    /// once. A missing, tampered or unsafe file is written to a temporary file in the
    /// same directory (see the `write` module), checked while written, made mode 0755, and
    /// renamed into place: a reader sees the old file or the whole new one, never a
    /// part, and a file the kernel holds open (flag F) is replaced, not rewritten
    /// (which would fail with ETXTBSY). No `fsync`: after a crash the next run checks
    /// the file and rewrites a torn one (a torn file has no verification record, or
    /// one that no longer matches its ctime).
    pub fn ensure_all(&self, emulators: &[Emulator]) -> Result<Vec<Ensured>, Error> {
        if emulators.is_empty() {
            // Nothing to check: not even the directory is created.
            return Ok(Vec::new());
        }
        let trust = Trust::current();
        // Before the directory is created or checked: nothing is written on FUSE.
        if self.is_on_fuse() {
            return Err(Error::OnFuse {
                path: self.dir.clone(),
            });
        }
        let dir = SecureDir::open(&self.dir, &trust)?;
        // Held until `dir` is dropped: while it is, a temporary file in the directory
        // belongs to a run that died (killed while writing), never to a live one.
        dir.lock(self.lock_timeout)?;
        remove_leftovers(&dir);

        let found = on_every_core(emulators, |emulator| file_state(&dir, emulator, &trust));
        let jobs: Vec<Emulator> = emulators
            .iter()
            .zip(&found)
            .filter(|(_, state)| matches!(state, Ok(state) if *state != FileState::Intact))
            .map(|(emulator, _)| *emulator)
            .collect();
        let mut written = write_files(&dir, &jobs).into_iter();
        Ok(emulators
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
                Ok((Interpreter::on_disk(path), state))
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use std::fs::{self, File};
    use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};

    use qemu_catalog::Arch;

    use super::*;
    use crate::file_state::FileProblem;
    use crate::secure_dir::{Problem, Unsafe};
    use crate::testing::{chmod, foreign_emulator, listing, scratch_dir};
    use crate::verified;

    fn unsafe_problem(result: Result<(Interpreter, FileState), Error>) -> (PathBuf, Problem) {
        match result {
            Err(Error::Unsafe(Unsafe { path, problem })) => (path, problem),
            other => panic!("expected a refusal, got {other:?}"),
        }
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

    #[test]
    fn writes_a_batch_reference_first_and_each_exactly() {
        let dir = scratch_dir("batch");
        let store = InterpreterDir::new(&dir);
        let all = Emulator::all();
        let results = store.ensure_all(&all).unwrap();
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
        for (emulator, result) in patched.iter().zip(store.ensure_all(&patched).unwrap()) {
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
            // One failure for the directory, not one per emulator.
            let both = [emulator, Emulator::for_arch(Arch::S390x).unwrap()];
            assert!(
                matches!(store.ensure_all(&both), Err(Error::Unsafe(_))),
                "{mode:o}"
            );
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
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unused_superseded_files_go_and_everything_else_stays() {
        let dir = scratch_dir("unused");
        let store = InterpreterDir::new(&dir);
        let emulator = foreign_emulator();
        let current = store.ensure(&emulator).unwrap().0.path().to_owned();
        let write = |name: &str, mode: u32| {
            let path = dir.join(name);
            fs::write(&path, vec![0u8; 1000]).unwrap();
            chmod(&path, mode);
            path
        };
        let superseded = write("qemu-riscv64-0000000000000000", 0o755);
        let record = write(".qemu-riscv64-0000000000000000.verified", 0o644);
        let in_use = write("qemu-aarch64-1111111111111111", 0o755);
        let foreign = write("qemu-aarch64-static", 0o755);
        let odd_mode = write("qemu-s390x-2222222222222222", 0o700);
        let notes = write("notes.txt", 0o644);
        // An entry names the old aarch64 file, from another directory even: the name
        // is enough to keep it.
        let entries = [PathBuf::from("/elsewhere/qemu-aarch64-1111111111111111")];
        let removed = store.remove_unused(&entries, Keep::Pins).unwrap();
        assert_eq!(
            removed,
            [Removed {
                path: superseded.clone(),
                bytes: 1000
            }]
        );
        assert!(!superseded.exists() && !record.exists());
        for kept in [&current, &in_use, &foreign, &odd_mode, &notes] {
            assert!(kept.exists(), "{}", kept.display());
        }
        assert_eq!(store.check(&emulator).unwrap(), FileState::Intact);
        // Nothing more to remove; an absent directory is not created.
        assert_eq!(store.remove_unused(&entries, Keep::Pins).unwrap(), []);
        let absent = InterpreterDir::new(dir.join("absent"));
        assert_eq!(absent.remove_unused(&[], Keep::Pins).unwrap(), []);
        assert!(!absent.dir().exists());
        // After an uninstall the current pin's file goes too, unless an entry uses it.
        let current_name = current.file_name().unwrap().to_str().unwrap().to_owned();
        let uses_current = [
            entries[0].clone(),
            PathBuf::from("/var/lib/binfmt").join(&current_name),
        ];
        assert_eq!(
            store.remove_unused(&uses_current, Keep::Nothing).unwrap(),
            []
        );
        let removed = store.remove_unused(&entries, Keep::Nothing).unwrap();
        assert_eq!(
            removed,
            [Removed {
                path: current.clone(),
                bytes: emulator.size()
            }]
        );
        for kept in [&in_use, &foreign, &odd_mode, &notes] {
            assert!(kept.exists(), "{}", kept.display());
        }
        fs::remove_dir_all(&dir).unwrap();
    }
}
