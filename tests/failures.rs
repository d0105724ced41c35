//! Every failure names its fix: each way `--install` can fail that a user meets
//! (a full disk, no permission, a read-only mount, no binfmt_misc, a busy lock) is
//! provoked for real in a private instance, and the message is checked for the cause,
//! the numbers and the fix, and for what was left behind (nothing half done).

use std::fs;
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use qemu_catalog::{Arch, Emulator};

use crate::util::{
    Run, Sandbox, binfmt_without_capabilities, foreign_arches, must, namespace_test,
};

/// The `installing: <arch> FAILED: ...` lines of a run.
fn failed_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|line| line.contains(" FAILED: "))
        .collect()
}

/// The one line that says why the interpreter directory `dir` could not be used, and
/// checks that every `FAILED` line of `run` points at it instead of repeating it.
fn directory_line<'a>(run: &'a Run, dir: &Path) -> &'a str {
    let failed = failed_lines(&run.stderr);
    assert!(!failed.is_empty(), "{run}");
    for line in &failed {
        assert!(
            line.ends_with(&format!(
                "the interpreter directory {} cannot be used (see below)",
                dir.display()
            )),
            "{line}"
        );
    }
    let lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|line| line.starts_with("binfmt: ") && line.contains(&*dir.to_string_lossy()))
        // Not the log records (BINFMT_LOG=debug).
        .filter(|line| {
            !["debug", "info", "warn"]
                .iter()
                .any(|level| line.starts_with(&format!("binfmt: {level}: ")))
        })
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "the directory's failure is said once: {run}"
    );
    lines[0]
}

/// Whether `dir` holds temporary files of an interrupted write.
fn temporary_files(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|items| {
            items
                .filter_map(Result::ok)
                .map(|item| item.file_name().to_string_lossy().into_owned())
                .filter(|name| name.contains(".tmp-"))
                .collect()
        })
        .unwrap_or_default()
}

namespace_test! {
    /// The user's report: `--install all` with a 20 MB filesystem as the interpreter
    /// directory. What fits is registered; every other line says how much the
    /// emulators not written need, how much is free, where, and `--interpreter-dir`.
    fn a_full_disk_says_how_much_is_needed_where_and_the_way_out(sandbox: &Sandbox) {
        fs::create_dir_all(&sandbox.interpreters).unwrap();
        let dir = sandbox.interpreters.to_str().unwrap();
        must("mount", &["-t", "tmpfs", "-o", "size=20m,mode=755", "tmpfs", dir]);
        let run = sandbox.binfmt(&["--install", "all"]).exit(1);

        let failed = failed_lines(&run.stderr);
        let foreign = foreign_arches();
        assert!(!failed.is_empty() && failed.len() < foreign.len(), "{run}");
        let not_written: Vec<Arch> = foreign
            .iter()
            .copied()
            .filter(|arch| failed.iter().any(|line| line.starts_with(&format!("installing: {arch} "))))
            .collect();
        assert_eq!(not_written.len(), failed.len(), "{run}");
        let needed: u64 = not_written
            .iter()
            .map(|arch| Emulator::for_arch(*arch).unwrap().size())
            .sum();
        let needed = format!(" {:.1} MB more, ", needed as f64 / 1e6);
        for line in &failed {
            assert!(line.contains(&format!("no space left for the emulators in {dir}")), "{line}");
            assert!(line.contains(&needed), "{line}\nexpected {needed:?}");
            assert!(line.contains("are free there"), "{line}");
            for arch in &not_written {
                assert!(line.contains(&format!("qemu-{}", arch.qemu_cpu())), "{line}");
            }
            assert!(line.contains("; fix: free "), "{line}");
            assert!(line.contains("--interpreter-dir DIR"), "{line}");
            assert!(!line.contains("os error"), "the errno alone is no message: {line}");
        }
        // What fitted is registered and runs; nothing half written is left.
        for arch in foreign.iter().filter(|arch| !not_written.contains(arch)) {
            sandbox.assert_runs(*arch);
        }
        assert_eq!(temporary_files(&sandbox.interpreters), Vec::<String>::new());
        assert_eq!(sandbox.entry_names().len(), foreign.len() - not_written.len());
    }
}

namespace_test! {
    /// No permission to write the interpreter directory (binfmt as root without
    /// capabilities, under a directory only root with CAP_DAC_OVERRIDE could change;
    /// the tests' namespaces map no other user): the line says to run as root.
    fn no_permission_for_the_interpreter_dir_says_run_as_root(sandbox: &Sandbox) {
        let parent = sandbox.scratch.join("locked");
        fs::create_dir_all(&parent).unwrap();
        fs::set_permissions(&parent, fs::Permissions::from_mode(0o555)).unwrap();
        let dir = parent.join("interpreters");
        let mount = sandbox.mount.to_str().unwrap();
        let run = binfmt_without_capabilities(&[
            "--mount", mount, "--interpreter-dir", dir.to_str().unwrap(), "--install", "riscv64",
        ])
        .exit(1);
        let line = directory_line(&run, &dir);
        assert!(line.contains("Permission denied"), "{line}");
        assert!(line.contains(dir.to_str().unwrap()), "{line}");
        assert!(line.contains("; fix: run as root (sudo binfmt ...)"), "{line}");
        assert!(line.contains("binfmt run -- CMD"), "{line}");
        assert!(!dir.exists());
        assert!(sandbox.entry_names().is_empty());

        // A writable directory, and `register` refusing this process, as it refuses
        // an ordinary user (chmod 0: root without capabilities gets EACCES, see
        // `doctor::no_permission_without_root`).
        must("chmod", &["0", sandbox.mount.join("register").to_str().unwrap()]);
        let run = binfmt_without_capabilities(&[
            "--mount", mount, "--interpreter-dir", sandbox.interpreters.to_str().unwrap(),
            "--install", "riscv64",
        ])
        .exit(1);
        let line = failed_lines(&run.stderr).first().copied().unwrap_or_else(|| panic!("{run}"));
        assert!(line.contains("cannot register qemu-riscv64"), "{line}");
        assert!(line.contains("run as root, or in Docker with --privileged"), "{line}");
        assert!(sandbox.entry_names().is_empty());
    }
}

namespace_test! {
    /// A read-only binfmt_misc (a container without --privileged).
    fn a_read_only_mount_says_privileged(sandbox: &Sandbox) {
        must("mount", &["-o", "remount,ro", sandbox.mount.to_str().unwrap()]);
        let run = sandbox.binfmt(&["--install", "riscv64"]).exit(1);
        let line = failed_lines(&run.stderr).first().copied().unwrap_or_else(|| panic!("{run}"));
        assert!(line.contains("Read-only file system"), "{line}");
        assert!(line.contains("run with --privileged"), "{line}");
        assert!(sandbox.entry_names().is_empty());
    }
}

namespace_test! {
    /// No binfmt_misc where it is looked for (a kernel without it shows the same: no
    /// such filesystem to find): the message says how to mount it or load it.
    fn no_binfmt_misc_says_how_to_get_it(sandbox: &Sandbox) {
        let plain = sandbox.scratch.join("plain");
        fs::create_dir_all(&plain).unwrap();
        let run = sandbox.with_mount(&plain).binfmt(&["--install", "riscv64"]).exit(1);
        assert!(
            run.stderr.contains(&format!("mount one with `mount -t binfmt_misc binfmt_misc {}`", plain.display())),
            "{run}"
        );
        let missing = sandbox.scratch.join("missing");
        let run = sandbox.with_mount(&missing).binfmt(&["--install", "riscv64"]).exit(1);
        assert!(run.stderr.contains("modprobe binfmt_misc"), "{run}");
        assert!(!sandbox.interpreters.exists());
    }
}

namespace_test! {
    /// A stuck holder of the table's lock: past --lock-timeout, binfmt exits 1 naming
    /// the holder (this test process, by pid and command line) and changes nothing.
    fn a_busy_table_lock_names_its_holder_and_changes_nothing(sandbox: &Sandbox) {
        let table = sandbox.table();
        let _lock = table.lock(Duration::ZERO).unwrap();
        let me = std::process::id();
        let started = Instant::now();
        let run = sandbox.binfmt(&["--lock-timeout", "1", "--install", "s390x"]).exit(1);
        let waited = started.elapsed();
        assert!(waited >= Duration::from_secs(1), "gave up after {waited:?}");
        assert!(waited < Duration::from_secs(20), "waited {waited:?}");
        let line = run.stderr.lines().find(|line| line.starts_with("binfmt: ") && line.contains("locked")).unwrap_or_else(|| panic!("{run}"));
        assert!(line.contains(&format!("{} is locked by another process (pid {me} (", sandbox.mount.display())), "{line}");
        assert!(line.contains("did not release it within 1 s; nothing was changed"), "{line}");
        assert!(line.contains(&format!("stop it (kill {me})")), "{line}");
        assert!(line.contains("--lock-timeout SECONDS"), "{line}");
        assert!(sandbox.entry_names().is_empty());
        assert!(!sandbox.interpreters.exists());

        // The variable, and 0: one try, no wait.
        let started = Instant::now();
        let run = sandbox
            .command(&["--install", "s390x"])
            .env("BINFMT_LOCK_TIMEOUT", "0")
            .output()
            .unwrap();
        assert_eq!(run.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&run.stderr).contains("within 0 s"));
        assert!(started.elapsed() < Duration::from_secs(5));
        // `apply` takes the option too.
        let config = sandbox.scratch.join("config.toml");
        fs::write(&config, format!(
            "architectures = [\"s390x\"]\nmount = \"{}\"\ninterpreter_dir = \"{}\"\n",
            sandbox.mount.display(), sandbox.interpreters.display()
        )).unwrap();
        let mut apply = Command::new(env!("CARGO_BIN_EXE_binfmt"));
        apply.args(["apply", "--lock-timeout", "0", "--config", config.to_str().unwrap()]);
        let run = Run::of(apply).exit(1);
        assert!(run.stderr.contains(&format!("pid {me} (")), "{run}");
        assert!(sandbox.entry_names().is_empty());
        // A status-only run takes no lock.
        sandbox.binfmt(&["--lock-timeout", "0"]).success();
    }
}

namespace_test! {
    /// A stuck holder of the interpreter directory's lock (another table's run
    /// writing there): each architecture fails, the directory's failure names the
    /// holder once, nothing is registered.
    fn a_busy_interpreter_dir_lock_names_its_holder(sandbox: &Sandbox) {
        fs::create_dir_all(&sandbox.interpreters).unwrap();
        let dir = fs::File::open(&sandbox.interpreters).unwrap();
        rustix::fs::flock(dir.as_fd(), rustix::fs::FlockOperation::LockExclusive).unwrap();
        let me = std::process::id();
        let started = Instant::now();
        let run = sandbox.binfmt(&["--lock-timeout", "1", "--install", "s390x,riscv64"]).exit(1);
        // Waited once, for the write; the clean-ups before and after do not wait.
        assert!(started.elapsed() >= Duration::from_secs(1), "{run}");
        assert_eq!(run.stderr.matches("waiting for it to finish").count(), 1, "{run}");
        assert_eq!(failed_lines(&run.stderr).len(), 2, "{run}");
        let line = directory_line(&run, &sandbox.interpreters);
        assert!(line.contains(&format!("{} is locked by another process (pid {me} (", sandbox.interpreters.display())), "{line}");
        assert!(line.contains(&format!("kill {me}")), "{line}");
        assert!(sandbox.entry_names().is_empty());
        assert_eq!(fs::read_dir(&sandbox.interpreters).unwrap().count(), 0);
    }
}
