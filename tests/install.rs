//! `binfmt --install`: foreign programs run afterwards; reruns write nothing; stale
//! entries are repaired; bad arguments change nothing.

use std::fs;
use std::path::PathBuf;

use binfmt_misc::{Flags, Registration, Table};
use qemu_catalog::Arch;

use crate::util::{Sandbox, foreign_arches, make_read_only, namespace_test};

namespace_test! {
    /// The core promise: after `--install all`, a real program of every foreign arch
    /// of the table runs, and its output and exit status come through.
    fn install_all_runs_a_program_of_every_foreign_arch(sandbox: &Sandbox) {
        for arch in foreign_arches() {
            sandbox.assert_does_not_run(arch);
        }
        let run = sandbox.binfmt(&["--install", "all"]).success();
        for arch in foreign_arches() {
            assert!(run.stderr.contains(&format!("installing: {arch} OK\n")), "{run}");
            sandbox.assert_runs(arch);
        }
        // Never the host's own architectures.
        let entries = sandbox.entries();
        for arch in Arch::native() {
            assert!(!entries.contains_key(&arch.entry_name()), "{arch} registered");
        }
        assert_eq!(entries.len(), foreign_arches().len() + 2, "{entries:?}"); // + register, status
        // Each entry: POCF, the table's magic and mask, a digest-named file.
        let table = sandbox.table();
        for arch in foreign_arches() {
            let entry = table.read_entry(&arch.entry_name()).unwrap().unwrap();
            assert!(entry.enabled);
            assert_eq!(entry.registration.flags, Flags::POCF);
            assert!(entry.registration.matcher.matches_same_files(&arch.matcher()));
            assert!(entry.interpreter().starts_with(&sandbox.interpreters), "{entry:?}");
        }
        let status = run.status();
        assert!(status["supported"].as_array().unwrap().contains(&"linux/arm64".into()));
        assert_eq!(status["emulators"].as_array().unwrap().len(), foreign_arches().len());
    }
}

namespace_test! {
    /// Idempotence: a second identical run writes nothing, to the table or to disk.
    /// The table and the interpreter directory are made read-only before the rerun,
    /// so any write at all would fail it.
    fn a_second_identical_run_writes_nothing(sandbox: &Sandbox) {
        sandbox.binfmt(&["--install", "all"]).success();
        let before = sandbox.entries();
        let files_before = listing(&sandbox.interpreters);

        crate::util::must("mount", &["-o", "remount,ro", sandbox.mount.to_str().unwrap()]);
        make_read_only(&sandbox.interpreters);
        let rerun = sandbox.binfmt(&["--install", "all"]).success();
        assert_eq!(rerun.register_writes(), 0, "{rerun}");
        for arch in foreign_arches() {
            assert!(
                rerun.stderr.contains(&format!("installing: {arch} OK (already registered)")),
                "{rerun}"
            );
        }
        assert_eq!(sandbox.entries(), before);
        assert_eq!(listing(&sandbox.interpreters), files_before);
        sandbox.assert_runs(Arch::Riscv64);
    }
}

namespace_test! {
    /// After a reboot the table is empty and the files are still there: every entry is
    /// registered again and no file is rewritten (the directory is read-only to prove
    /// it).
    fn after_a_reboot_the_files_on_disk_are_registered_again(sandbox: &Sandbox) {
        sandbox.binfmt(&["--install", "all"]).success();
        let files_before = listing(&sandbox.interpreters);
        fs::write(sandbox.mount.join("status"), "-1").unwrap();
        assert_eq!(sandbox.entries().len(), 2, "the table was not emptied");

        make_read_only(&sandbox.interpreters);
        let run = sandbox.binfmt(&["--install", "all"]).success();
        assert_eq!(run.register_writes(), foreign_arches().len(), "{run}");
        assert_eq!(listing(&sandbox.interpreters), files_before);
        for arch in foreign_arches() {
            sandbox.assert_runs(arch);
        }
    }
}

namespace_test! {
    /// A full filesystem: the write fails with its cause, nothing half-written is left
    /// behind and nothing is registered.
    fn a_full_filesystem_fails_cleanly(sandbox: &Sandbox) {
        fs::create_dir_all(&sandbox.interpreters).unwrap();
        let dir = sandbox.interpreters.to_str().unwrap();
        crate::util::must("mount", &["-t", "tmpfs", "-o", "size=4m,mode=0755", "tmpfs", dir]);
        let run = sandbox.binfmt(&["--install", "riscv64"]).exit(1);
        let size = qemu_catalog::Emulator::for_arch(Arch::Riscv64).unwrap().size();
        assert!(
            run.stderr.contains(&format!(
                "installing: riscv64 FAILED: no space left for the emulators in {dir}: \
                 qemu-riscv64, not written, needs {:.1} MB more",
                size as f64 / 1e6
            )),
            "{run}"
        );
        assert!(run.stderr.contains("; fix: free "), "{run}");
        assert_eq!(fs::read_dir(&sandbox.interpreters).unwrap().count(), 0);
        assert_eq!(sandbox.entries().len(), 2, "{:?}", sandbox.entries());
    }
}

namespace_test! {
    /// A stale registration: qemu-aarch64 without F, pointing at a path that
    /// does not exist here. Programs fail; `--install arm64` replaces it, says how it
    /// differed, and they run.
    fn a_stale_entry_is_repaired(sandbox: &Sandbox) {
        let stale = Registration {
            name: "qemu-aarch64".into(),
            matcher: Arch::Arm64.matcher(),
            interpreter: PathBuf::from("/usr/bin/qemu-aarch64-static"),
            flags: "OC".parse().unwrap(),
        };
        sandbox.table().register(&stale).unwrap();
        sandbox.assert_does_not_run(Arch::Arm64);

        let run = sandbox.binfmt(&["--install", "linux/arm64"]).success();
        assert!(
            run.stderr.contains(
                "installing: arm64 OK (replaced: interpreter /usr/bin/qemu-aarch64-static -> "
            ),
            "{run}"
        );
        assert!(run.stderr.contains("flags OC -> POCF"), "{run}");
        sandbox.assert_runs(Arch::Arm64);
    }
}

namespace_test! {
    /// Flag F: the kernel holds the emulator open, so the entry keeps working after the
    /// file is gone (the container that wrote it has exited).
    fn the_entry_keeps_working_after_the_file_is_gone(sandbox: &Sandbox) {
        sandbox.binfmt(&["--install", "riscv64,s390x"]).success();
        fs::remove_dir_all(&sandbox.interpreters).unwrap();
        sandbox.assert_runs(Arch::Riscv64);
        sandbox.assert_runs(Arch::S390x);
        // A rerun from "another container" (no file here) trusts the digest-named
        // path and changes nothing.
        let rerun = sandbox.binfmt(&["--install", "riscv64,s390x"]).success();
        assert_eq!(rerun.register_writes(), 0, "{rerun}");
        assert!(!sandbox.interpreters.exists());
    }
}

namespace_test! {
    /// A read-only filesystem (Kubernetes readOnlyRootFilesystem): the emulator goes
    /// into a sealed memfd, and programs run.
    fn a_read_only_interpreter_dir_falls_back_to_memfd(sandbox: &Sandbox) {
        fs::create_dir_all(&sandbox.interpreters).unwrap();
        make_read_only(&sandbox.interpreters);
        let run = sandbox.binfmt(&["--install", "mips64le,mips64"]).success();
        assert!(run.stderr.contains("is read-only"), "{run}");
        for arch in [Arch::Mips64le, Arch::Mips64] {
            let entry = sandbox.table().read_entry(&arch.entry_name()).unwrap().unwrap();
            assert!(entry.interpreter().starts_with("/proc/self/fd/"), "{entry:?}");
            sandbox.assert_runs(arch);
        }
        // Rerun: the memfd entries match in everything but the unverifiable path.
        let rerun = sandbox.binfmt(&["--install", "mips64le,mips64"]).success();
        assert_eq!(rerun.register_writes(), 0, "{rerun}");
    }
}

namespace_test! {
    /// Docker's fuse-overlayfs storage driver (and rootless engines) serve a
    /// container's root through a daemon: a file there that the kernel holds open
    /// (flag F) fails with ENOTCONN once the daemon exits with the container. binfmt
    /// sees FUSE and holds the emulator in a memfd instead, which outlives both.
    fn an_interpreter_dir_on_fuse_falls_back_to_memfd(sandbox: &Sandbox) {
        let layer = |name: &str| {
            let dir = sandbox.scratch.join(name);
            fs::create_dir_all(&dir).unwrap();
            dir
        };
        let (lower, upper, work, merged) = (layer("lower"), layer("upper"), layer("work"), layer("merged"));
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.display(), upper.display(), work.display()
        );
        let daemon = std::process::Command::new("fuse-overlayfs")
            .args(["-f", "-o", &options])
            .arg(&merged)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run fuse-overlayfs ({e}): apt-get install fuse-overlayfs"));
        // Killed (by its pid) however the test ends.
        let mut daemon = KillOnDrop(daemon);
        let on_fuse = || rustix::fs::statfs(&merged).is_ok_and(|s| {
            #[allow(clippy::unnecessary_cast)]
            let fs_type = s.f_type as u64;
            fs_type == interpreter_files::FUSE_SUPER_MAGIC
        });
        for _ in 0..100 {
            if on_fuse() { break; }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert!(on_fuse(), "fuse-overlayfs did not mount {} (is /dev/fuse there?)", merged.display());

        let on_fuse_sandbox = sandbox.with_interpreters(&merged.join("var/lib/binfmt"));
        let run = on_fuse_sandbox.binfmt(&["--install", "riscv64"]).success();
        assert!(run.stderr.contains("is on FUSE"), "{run}");
        assert!(run.stderr.contains("held in memory"), "{run}");
        let entry = sandbox.table().read_entry("qemu-riscv64").unwrap().unwrap();
        assert!(entry.interpreter().starts_with("/proc/self/fd/"), "{entry:?}");

        // The container is removed: its root is unmounted and the daemon is gone.
        crate::util::must("umount", &["-l", merged.to_str().unwrap()]);
        daemon.0.kill().expect("stop fuse-overlayfs");
        daemon.0.wait().expect("reap fuse-overlayfs");
        sandbox.assert_runs(Arch::Riscv64);
    }
}

namespace_test! {
    /// A disabled entry or other flags are differences that get repaired.
    fn disabled_entries_and_other_flags_are_repaired(sandbox: &Sandbox) {
        sandbox.binfmt(&["--install", "loong64"]).success();
        sandbox.table().set_enabled("qemu-loongarch64", false).unwrap();
        sandbox.assert_does_not_run(Arch::Loong64);
        let run = sandbox.binfmt(&["--install", "loongarch64"]).success();
        assert!(run.stderr.contains("installing: loong64 OK (entry was disabled; enabled)"), "{run}");
        sandbox.assert_runs(Arch::Loong64);

        let run = sandbox.binfmt(&["--install", "loong64", "--flags", "PF"]).success();
        assert!(run.stderr.contains("flags POCF -> PF"), "{run}");
        let entry = sandbox.table().read_entry("qemu-loongarch64").unwrap().unwrap();
        assert_eq!(entry.registration.flags.to_string(), "PF");
        sandbox.assert_runs(Arch::Loong64);
    }
}

namespace_test! {
    /// Every argument is checked before the first write: one bad item registers nothing.
    fn a_bad_item_registers_nothing(sandbox: &Sandbox) {
        let run = sandbox.binfmt(&["--install", "arm64,bogus"]).exit(2);
        assert!(run.stderr.contains("unknown architecture \"bogus\""), "{run}");
        for arch in Arch::native() {
            let run = sandbox.binfmt(&["--install", &format!("riscv64,{}", arch.oci())]).exit(2);
            assert!(run.stderr.contains("own architecture"), "{run}");
        }
        sandbox.binfmt(&["--install", "arm64", "--flags", "PX"]).exit(2);
        sandbox.binfmt(&["--install", "arm64", "--interpreter-dir", "relative/dir"]).exit(2);
        sandbox.binfmt(&["--install", "arm64", "--interpreter-dir", "/a:b"]).exit(2);
        assert_eq!(sandbox.entries().len(), 2, "{:?}", sandbox.entries()); // register, status
        assert!(!sandbox.interpreters.exists());
    }
}

namespace_test! {
    /// When the kernel refuses, the exit code says so and stderr says why.
    fn a_kernel_refusal_fails_the_run(sandbox: &Sandbox) {
        // Another tool's entry of the same name that we cannot remove: simulate with
        // the table switched to read-only after a first registration differs.
        sandbox.binfmt(&["--install", "arm", "--flags", "F"]).success();
        crate::util::must("mount", &["-o", "remount,ro", sandbox.mount.to_str().unwrap()]);
        let run = sandbox.binfmt(&["--install", "arm,riscv64"]).exit(1);
        // The replacement fails at its first step, registering the staging entry: the
        // old entry is left as it was.
        assert!(run.stderr.contains("installing: arm FAILED: cannot register qemu-arm.binfmt-new"), "{run}");
        assert!(run.stderr.contains("installing: riscv64 FAILED: cannot register"), "{run}");
        assert!(run.stderr.contains("2 of 2 architectures are not registered"), "{run}");
    }
}

/// A child process killed when dropped.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn listing(dir: &std::path::Path) -> Vec<(String, u64, std::time::SystemTime)> {
    use std::os::unix::fs::MetadataExt;
    let mut files: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                m.ino(),
                m.modified().unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

namespace_test! {
    /// After a re-pin the files of the old pins (14 to 17 MB each) are removed once no
    /// entry uses them; a file an entry still uses, the current pins' files and files
    /// binfmt does not name so are kept.
    fn superseded_emulator_files_are_removed_once_unused(sandbox: &Sandbox) {
        use std::os::unix::fs::PermissionsExt;
        sandbox.binfmt(&["--install", "riscv64,s390x"]).success();
        let dir = &sandbox.interpreters;
        let current = |arch: Arch| {
            sandbox.table().read_entry(&arch.entry_name()).unwrap().unwrap().interpreter().to_owned()
        };
        let (riscv64, s390x) = (current(Arch::Riscv64), current(Arch::S390x));
        let old_file = |name: &str, from: &PathBuf| {
            let path = dir.join(name);
            fs::copy(from, &path).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
            path
        };
        // Files of earlier pins: riscv64's used by nothing, s390x's by its entry,
        // registered from it as an earlier binfmt would have.
        let old_riscv64 = old_file("qemu-riscv64-0000000000000000", &riscv64);
        let old_s390x = old_file("qemu-s390x-1111111111111111", &s390x);
        sandbox.write_control(&Arch::S390x.entry_name(), "-1");
        sandbox.register(&Arch::S390x.entry_name(), Arch::S390x, &old_s390x, "POCF");
        let foreign = old_file("qemu-aarch64-static", &riscv64);

        let run = sandbox.binfmt(&["--install", "riscv64"]).success();
        let size = fs::metadata(&riscv64).unwrap().len();
        assert!(
            run.stderr.contains(&format!(
                "removed: {} (superseded emulator, used by no entry; {:.1} MB freed)\n",
                old_riscv64.display(),
                size as f64 / 1e6
            )),
            "{run}"
        );
        assert!(!old_riscv64.exists());
        for kept in [&old_s390x, &foreign, &riscv64, &s390x] {
            assert!(kept.exists(), "{} removed:\n{run}", kept.display());
        }
        sandbox.assert_runs(Arch::S390x);

        // Once its entry moves to the current pin, the old s390x file goes too.
        let run = sandbox.binfmt(&["--install", "s390x"]).success();
        assert!(run.stderr.contains(&format!("removed: {} (", old_s390x.display())), "{run}");
        assert!(!old_s390x.exists() && foreign.exists() && s390x.exists());
        sandbox.assert_runs(Arch::S390x);
        // Nothing left to remove: a rerun says nothing about it.
        let run = sandbox.binfmt(&["--install", "riscv64,s390x"]).success();
        assert!(!run.stderr.contains("removed:"), "{run}");

        // `apply` removes them too.
        let old_mips64 = old_file("qemu-mips64-2222222222222222", &riscv64);
        let config = sandbox.scratch.join("config.toml");
        fs::write(
            &config,
            format!(
                "architectures = [\"riscv64\"]\nmount = \"{}\"\ninterpreter_dir = \"{}\"\n",
                sandbox.mount.display(),
                dir.display()
            ),
        )
        .unwrap();
        let mut apply = std::process::Command::new(env!("CARGO_BIN_EXE_binfmt"));
        apply.args(["apply", "--config", config.to_str().unwrap()]);
        let run = crate::util::Run::of(apply).success();
        assert!(run.stderr.contains(&format!("removed: {} (", old_mips64.display())), "{run}");
        assert!(!old_mips64.exists() && foreign.exists() && riscv64.exists() && s390x.exists());
    }
}
