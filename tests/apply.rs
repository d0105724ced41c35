//! `binfmt apply`: the config file of the systemd unit and the Kubernetes DaemonSet,
//! refused whole when wrong; `--watch` puts back what vanished and stops on SIGTERM,
//! also as pid 1 of a container.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use binfmt_misc::Table;
use qemu_catalog::Arch;
use rustix::process::{Pid, Signal, kill_process};

use crate::util::{Run, Sandbox, namespace_test};

/// Writes a config for the sandbox's mount and interpreter directory.
fn write_config(sandbox: &Sandbox, architectures: &str, extra: &str) -> PathBuf {
    let path = sandbox.scratch.join("config.toml");
    fs::write(
        &path,
        format!(
            "architectures = {architectures}\nmount = {:?}\ninterpreter_dir = {:?}\n{extra}",
            sandbox.mount, sandbox.interpreters
        ),
    )
    .expect("write config");
    path
}

fn apply(config: &Path, args: &[&str]) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_binfmt"));
    command.args(["apply", "--config"]).arg(config).args(args);
    Run::of(command)
}

/// Waits until `done` holds, polling; panics with `what` after `limit`.
fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A running `binfmt apply --watch`: `child` is the process started (binfmt, or the
/// `unshare` around it), `binfmt` binfmt's pid. Dropped without [`stop`](Self::stop)
/// (a failed assertion), both are killed, so no watcher outlives its test.
struct Watcher {
    child: Child,
    binfmt: Pid,
}

impl Watcher {
    /// Sends SIGTERM to binfmt and collects the exit code and stderr of `child`.
    fn stop(mut self) -> (Option<i32>, String) {
        kill_process(self.binfmt, Signal::TERM).expect("send SIGTERM");
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "binfmt apply --watch did not stop within 10 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            pipe.read_to_string(&mut stderr).expect("read stderr");
        }
        (status.code(), stderr)
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            // SIGKILL reaches even a pid namespace's init from outside it.
            let _ = kill_process(self.binfmt, Signal::KILL);
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

namespace_test! {
    fn apply_registers_what_the_config_lists(sandbox: &Sandbox) {
        let config = write_config(sandbox, r#"["linux/riscv64", "s390x"]"#, "flags = \"PF\"\n");
        let run = apply(&config, &["--check"]).success();
        assert!(run.stderr.contains("OK: riscv64,s390x with flags PF"), "{run}");
        assert_eq!(sandbox.entries().len(), 2, "--check writes nothing");

        let run = apply(&config, &[]).success();
        assert!(run.stderr.contains("installing: riscv64 OK\n"), "{run}");
        assert_eq!(run.status()["emulators"], serde_json::json!(["qemu-riscv64", "qemu-s390x"]));
        let entry = sandbox.table().read_entry("qemu-s390x").unwrap().unwrap();
        assert_eq!(entry.registration.flags, "PF".parse().unwrap());
        sandbox.assert_runs(Arch::Riscv64);
        sandbox.assert_runs(Arch::S390x);
        let rerun = apply(&config, &[]).success();
        assert!(rerun.stderr.contains("installing: s390x OK (already registered)"), "{rerun}");
    }
}

namespace_test! {
    /// A bad config changes nothing and says which key is wrong: exit 2.
    fn a_bad_config_changes_nothing(sandbox: &Sandbox) {
        for (architectures, extra, expected) in [
            (r#"["riscv64", "bogus"]"#, "", "bogus"),
            (r#"["riscv64"]"#, "flags = \"POX\"\n", "flags \"POX\""),
            (r#"["riscv64"]"#, "architecture = [\"arm64\"]\n", "unknown field `architecture`"),
            (r#"["riscv64"]"#, "[extra]\n", "unknown field `extra`"),
        ] {
            let config = write_config(sandbox, architectures, extra);
            for args in [&["--check"][..], &[]] {
                let run = apply(&config, args).exit(2);
                assert!(run.stderr.contains(expected), "{run}");
                assert!(run.stderr.starts_with(&format!("binfmt: config {}: ", config.display())), "{run}");
            }
        }
        let run = apply(&sandbox.scratch.join("missing.toml"), &[]).exit(2);
        assert!(run.stderr.contains("No such file"), "{run}");
        assert_eq!(sandbox.entries().len(), 2, "nothing registered");
        assert!(!sandbox.interpreters.exists(), "nothing written");
    }
}

namespace_test! {
    /// systemd-binfmt restarting wipes every entry (`-1` to `status`); within one
    /// interval `--watch` registers them again. SIGTERM then stops it, exit 0, and the
    /// entries stay.
    fn watch_puts_back_what_vanished_and_stops_on_sigterm(sandbox: &Sandbox) {
        let config = write_config(sandbox, r#"["riscv64", "arm64"]"#, "");
        let child = Command::new(env!("CARGO_BIN_EXE_binfmt"))
            .args(["apply", "--watch", "1", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start binfmt apply --watch");
        let binfmt = Pid::from_child(&child);
        let watcher = Watcher { child, binfmt };
        let table = sandbox.table();
        let registered = || table.read_entry("qemu-riscv64").unwrap().is_some()
            && table.read_entry("qemu-aarch64").unwrap().is_some();
        wait_for("first registration", Duration::from_secs(30), registered);

        // What systemd-binfmt does when it (re)starts.
        fs::write(sandbox.mount.join("status"), "-1").expect("wipe all entries");
        assert!(!registered());
        wait_for("registration after the wipe", Duration::from_secs(10), registered);
        sandbox.assert_runs(Arch::Riscv64);

        let (code, stderr) = watcher.stop();
        assert_eq!(code, Some(0), "{stderr}");
        assert!(stderr.contains("checking again every 1s"), "{stderr}");
        assert_eq!(stderr.matches("installing: riscv64 OK\n").count(), 2, "{stderr}");
        assert!(!stderr.contains("(already registered)"), "rounds print only changes:\n{stderr}");
        assert!(stderr.contains("stopping on signal; the registrations stay"), "{stderr}");
        assert!(registered());
    }
}

namespace_test! {
    /// As pid 1 of a container (a DaemonSet's entrypoint), SIGTERM still stops it: the
    /// kernel would drop a signal left at its default action.
    fn watch_as_pid_1_stops_on_sigterm(sandbox: &Sandbox) {
        let config = write_config(sandbox, r#"["riscv64"]"#, "");
        let child = Command::new("unshare")
            .args(["--pid", "--fork", "--mount-proc", "--", env!("CARGO_BIN_EXE_binfmt")])
            .args(["apply", "--watch", "1", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start a container");
        let unshare = child.id();
        // binfmt is unshare's only child, pid 1 in its namespace.
        let mut binfmt = None;
        wait_for("unshare to start binfmt", Duration::from_secs(10), || {
            binfmt = fs::read_to_string(format!("/proc/{unshare}/task/{unshare}/children"))
                .ok()
                .and_then(|children| children.trim().parse::<i32>().ok());
            binfmt.is_some()
        });
        let binfmt = binfmt.expect("binfmt's pid");
        let watcher = Watcher { child, binfmt: Pid::from_raw(binfmt).expect("a pid") };
        let status = fs::read_to_string(format!("/proc/{binfmt}/status")).unwrap();
        assert!(status.lines().any(|l| l.starts_with("NSpid:") && l.ends_with("\t1")), "{status}");
        let table = sandbox.table();
        wait_for("registration", Duration::from_secs(30), || {
            table.read_entry("qemu-riscv64").unwrap().is_some()
        });

        let (code, stderr) = watcher.stop();
        assert_eq!(code, Some(0), "{stderr}");
        assert!(stderr.contains("stopping on signal"), "{stderr}");
    }
}
