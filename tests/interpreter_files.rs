//! Interpreter files: written root-owned with mode 0755 into a directory that nobody
//! but root can change, all the way up to `/`; a file that does not match its pin,
//! or that others could change, is never registered and is replaced.
//!
//! In these private namespaces the test user is root (uid 0), so the files binfmt
//! writes are root's; directories owned by other users cannot be made here, so the
//! owner rule is unit tested in `qemu_catalog::secure_dir`.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;

use binfmt_misc::Table;
use interpreter_files::InterpreterDir;
use qemu_catalog::{Arch, Emulator};

use crate::util::{Run, Sandbox, namespace_test};

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Asserts the run was refused before any write, naming `path` and `problem`.
#[track_caller]
fn assert_refused(sandbox: &Sandbox, run: Run, path: &Path, problem: &str) {
    let run = run.exit(2);
    let expected = format!("--interpreter-dir: {} {problem}", path.display());
    assert!(
        run.stderr.contains(&expected),
        "expected {expected:?}:\n{run}"
    );
    assert_eq!(run.register_writes(), 0, "{run}");
    let names: Vec<String> = sandbox.entries().into_keys().collect();
    assert_eq!(names, ["register", "status"], "{run}");
}

fn emptied(dir: &Path) -> bool {
    fs::read_dir(dir).map_or(true, |mut items| items.next().is_none())
}

namespace_test! {
    fn directories_others_could_change_are_refused(sandbox: &Sandbox) {
        // The interpreter directory itself, writable by others; sticky or not.
        fs::create_dir_all(&sandbox.interpreters).unwrap();
        for mode in [0o777, 0o1777, 0o775, 0o757, 0o770] {
            chmod(&sandbox.interpreters, mode);
            let run = sandbox.binfmt(&["--install", "arm64"]);
            let problem = format!("is writable by others (mode {mode:04o}, owner uid 0)");
            assert_refused(sandbox, run, &sandbox.interpreters, &problem);
            assert!(emptied(&sandbox.interpreters));
        }
        let run = sandbox.binfmt(&["--install", "arm64"]);
        assert!(run.stderr.contains("run `chmod go-w"), "{run}");
        // Status alone writes no file and is not refused.
        sandbox.binfmt(&[]).success();

        // A parent writable by its group: its members could rename the directory
        // and put their own in its place. A missing directory below is not created.
        let parent = sandbox.scratch.join("shared");
        fs::create_dir(&parent).unwrap();
        chmod(&parent, 0o775);
        let below = sandbox.with_interpreters(&parent.join("binfmt").join("interpreters"));
        let run = below.binfmt(&["--install", "arm64"]);
        assert_refused(sandbox, run, &parent, "is writable by others (mode 0775");
        assert!(emptied(&parent));

        // A symbolic link on the way: it could be pointed elsewhere after the check.
        let real = sandbox.scratch.join("real");
        fs::create_dir(&real).unwrap();
        let link = sandbox.scratch.join("link");
        symlink(&real, &link).unwrap();
        let through_link = sandbox.with_interpreters(&link.join("interpreters"));
        let run = through_link.binfmt(&["--install", "arm64"]);
        let problem = format!("is a symbolic link (to {})", real.display());
        assert_refused(sandbox, run, &link, &problem);
        assert!(emptied(&real));

        // Fixed as the message says, the same command works.
        chmod(&sandbox.interpreters, 0o755);
        sandbox.binfmt(&["--install", "arm64"]).success();
        sandbox.assert_runs(Arch::Arm64);
    }
}

namespace_test! {
    fn files_are_written_root_owned_mode_0755(sandbox: &Sandbox) {
        sandbox.binfmt(&["--install", "riscv64,s390x"]).success();
        let dir = fs::metadata(&sandbox.interpreters).unwrap();
        assert_eq!(dir.mode() & 0o7777, 0o755);
        for arch in [Arch::Riscv64, Arch::S390x] {
            let entry = sandbox.table().read_entry(&arch.entry_name()).unwrap().unwrap();
            let file = fs::symlink_metadata(entry.interpreter()).unwrap();
            assert!(file.is_file());
            assert_eq!(file.mode() & 0o7777, 0o755, "{arch}");
            assert_eq!(file.uid(), 0, "{arch}");
        }
    }
}

/// A program that is not QEMU, but runs: if binfmt ever registered it, foreign
/// programs would print this instead of their own output.
const IMPOSTOR: &[u8] = b"#!/bin/sh\necho impostor\n";

/// Asserts the file at `path` is the pinned emulator, root-owned, mode 0755.
#[track_caller]
fn assert_pinned(emulator: &Emulator, path: &Path) {
    let metadata = fs::symlink_metadata(path).unwrap();
    assert!(metadata.is_file(), "{}", path.display());
    assert_eq!(metadata.mode() & 0o7777, 0o755);
    assert_eq!(metadata.uid(), 0);
    let mut file = fs::File::open(path).unwrap();
    assert!(
        emulator.matches(&mut file).unwrap(),
        "{} is not the pinned emulator",
        path.display()
    );
}

namespace_test! {
    fn a_tampered_file_is_never_registered_and_is_replaced(sandbox: &Sandbox) {
        let arch = Arch::Riscv64;
        let emulator = Emulator::for_arch(arch).unwrap();
        let path = InterpreterDir::new(&sandbox.interpreters).path_for(&emulator);
        let name = arch.entry_name();

        // No entry yet, and an impostor at the emulator's path.
        fs::create_dir_all(&sandbox.interpreters).unwrap();
        fs::write(&path, IMPOSTOR).unwrap();
        chmod(&path, 0o755);
        let run = sandbox.binfmt(&["--install", "riscv64"]).success();
        let note = format!("{} did not match its pinned sha256 and was replaced", path.display());
        assert!(run.stderr.contains(&format!("installing: riscv64 OK (repaired: {note})")), "{run}");
        // The file was rewritten before the only registration.
        let wrote = run.stderr.find(&format!("wrote {}", path.display())).expect("wrote");
        let registered = run.stderr.find(&format!("register {name}")).expect("registered");
        assert!(wrote < registered, "{run}");
        assert_eq!(run.register_writes(), 1, "{run}");
        // The kernel holds the emulator: the program runs and prints its own output,
        // and the entry names the file that is the pinned emulator.
        sandbox.assert_runs(arch);
        let entry = sandbox.table().read_entry(&name).unwrap().unwrap();
        assert_eq!(entry.interpreter(), path);
        assert_pinned(&emulator, &path);

        // Registered, then the file is swapped for the impostor (renamed over it, as
        // someone able to write there would). The entry is registered again, so the
        // kernel drops whatever it held.
        let swap = sandbox.interpreters.join("swap");
        fs::write(&swap, IMPOSTOR).unwrap();
        chmod(&swap, 0o755);
        fs::rename(&swap, &path).unwrap();
        let run = sandbox.binfmt(&["--install", "riscv64"]).success();
        assert!(run.stderr.contains(&format!("installing: riscv64 OK (replaced: {note})")), "{run}");
        sandbox.assert_runs(arch);
        assert_pinned(&emulator, &path);

        // The right bytes, but a mode that lets anyone change them.
        chmod(&path, 0o666);
        let run = sandbox.binfmt(&["--install", "riscv64"]).success();
        let note = format!("{} had mode 0666, not 0755 and was replaced", path.display());
        assert!(run.stderr.contains(&note), "{run}");
        assert_pinned(&emulator, &path);

        // A symbolic link at the emulator's path, to the impostor.
        let impostor = sandbox.scratch.join("impostor");
        fs::write(&impostor, IMPOSTOR).unwrap();
        chmod(&impostor, 0o755);
        fs::remove_file(&path).unwrap();
        symlink(&impostor, &path).unwrap();
        let run = sandbox.binfmt(&["--install", "riscv64"]).success();
        assert!(run.stderr.contains("was a symbolic link and was replaced"), "{run}");
        assert_pinned(&emulator, &path);
        sandbox.assert_runs(arch);
        assert_eq!(fs::read(&impostor).unwrap(), IMPOSTOR, "the link's target is left alone");

        // And a rerun now changes nothing.
        let rerun = sandbox.binfmt(&["--install", "riscv64"]).success();
        assert_eq!(rerun.register_writes(), 0, "{rerun}");
    }
}
