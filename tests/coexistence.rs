//! Sharing the table with other tools, in private binfmt_misc instances holding
//! stand-ins registered the way those tools register theirs: Lima's Rosetta (`rosetta`,
//! flags `OCF`), FEX (`FEX-…`, `POCF`, a mask that zeroes bytes QEMU's keeps), WSL's
//! `WSLInterop` (`MZ` magic), and handlers that do not work. This machine is x86_64,
//! whose own programs no entry may claim, so the stand-ins claim arm64 and riscv64
//! programs, and run them with copies of working emulators.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use binfmt_misc::{Matcher, Registration, Table};
use qemu_catalog::Arch;
use serde_json::Value;

use crate::util::{Run, Sandbox, line_with, names, namespace_test, native_exit_zero};

/// A copy of binfmt's own emulator for `arch`, at `<scratch>/<dir>/<name>`: what a
/// stand-in handler runs programs with. binfmt's entry is removed again.
fn working_emulator(sandbox: &Sandbox, arch: Arch, dir: &str, name: &str) -> PathBuf {
    sandbox.binfmt(&["--install", arch.oci()]).success();
    let ours = sandbox
        .table()
        .read_entry(&arch.entry_name())
        .unwrap()
        .unwrap();
    let dir = sandbox.scratch.join(dir);
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    fs::copy(ours.interpreter(), &path).unwrap();
    sandbox
        .binfmt(&["--uninstall", &arch.entry_name()])
        .success();
    path
}

/// WSL's entry for Windows programs: `MZ` at offset 0.
fn register_wsl_interop(sandbox: &Sandbox) {
    let init = sandbox.executable("init", &native_exit_zero());
    sandbox
        .table()
        .register(&Registration {
            name: "WSLInterop".into(),
            matcher: Matcher::Magic {
                offset: 0,
                magic: b"MZ".to_vec(),
                mask: None,
            },
            interpreter: init,
            flags: "PF".parse().unwrap(),
        })
        .unwrap();
}

fn status(run: &Run) -> Vec<String> {
    run.status()["supported"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item.as_str().unwrap().to_owned())
        .collect()
}

fn doctor(sandbox: &Sandbox) -> (Run, Value) {
    let run = sandbox.subcommand("doctor", &["--json"]);
    let json = run.json();
    (run, json)
}

fn ids<'a>(json: &'a Value, key: &str) -> Vec<&'a str> {
    json[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|finding| finding["id"].as_str().unwrap())
        .collect()
}

namespace_test! {
    /// Lima's Rosetta stand-in runs arm64 programs: every way of installing leaves
    /// arm64 to it, says so, and exits 0; doctor and check name it and never advise
    /// removing it; --take-over puts binfmt's in front, and says what it shadows.
    fn a_working_translator_stays_in_charge(sandbox: &Sandbox) {
        let rosetta = working_emulator(sandbox, Arch::Arm64, "lima-rosetta", "rosetta");
        sandbox.register("rosetta", Arch::Arm64, &rosetta, "OCF");
        register_wsl_interop(sandbox);

        let run = sandbox.binfmt(&["--install", "arm64,riscv64"]).success();
        assert_eq!(
            line_with(&run.stderr, "installing: arm64"),
            format!(
                "installing: arm64 skipped (rosetta runs it, with {}; --take-over registers \
                 binfmt's emulator in front of it)",
                rosetta.display()
            )
        );
        assert!(status(&run).contains(&"linux/arm64".to_owned()), "{run}");
        assert_eq!(sandbox.entry_names(), names(&["WSLInterop", "qemu-riscv64", "rosetta"]));
        sandbox.assert_runs(Arch::Arm64);

        let run = sandbox.binfmt(&["--install", "all"]).success();
        line_with(&run.stderr, "installing: arm64 skipped (rosetta runs it");
        assert!(!sandbox.entry_names().contains("qemu-aarch64"), "{run}");
        let config = sandbox.scratch.join("config.toml");
        fs::write(
            &config,
            format!(
                "architectures = [\"all\"]\nmount = \"{}\"\ninterpreter_dir = \"{}\"\n",
                sandbox.mount.display(),
                sandbox.interpreters.display()
            ),
        )
        .unwrap();
        let run = crate::util::Run::of({
            let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_binfmt"));
            command.args(["apply", "--config"]).arg(&config);
            command
        })
        .success();
        line_with(&run.stderr, "installing: arm64 skipped (rosetta runs it");
        assert!(!sandbox.entry_names().contains("qemu-aarch64"), "{run}");

        let (run, json) = doctor(sandbox);
        assert_eq!(run.code, Some(0), "{run}");
        assert!(!run.stdout.contains("--uninstall rosetta"), "{run}");
        assert!(!run.stdout.contains("--uninstall WSLInterop"), "{run}");
        let handler = json["handlers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|handler| handler["platform"] == "linux/arm64")
            .unwrap_or_else(|| panic!("no handler for linux/arm64: {run}"));
        assert_eq!(handler["entry"], "rosetta", "{run}");
        assert_eq!(handler["emulator"], "not binfmt's", "{run}");
        let check = sandbox.subcommand("check", &["linux/arm64"]).success();
        assert!(
            check.stdout.contains(&format!("runs through rosetta ({}, not binfmt's)", rosetta.display())),
            "{check}"
        );

        // Taken over: binfmt's in front, rosetta left in place, and said so.
        let run = sandbox.binfmt(&["--install", "arm64", "--take-over"]).success();
        let line = line_with(&run.stderr, "installing: arm64");
        assert!(line.starts_with("installing: arm64 OK"), "{run}");
        assert!(
            line.ends_with(&format!(
                "; shadows rosetta ({}, which runs arm64 programs too; left in place)",
                rosetta.display()
            )),
            "{run}"
        );
        let listed = sandbox.table().entry_names().unwrap();
        assert_eq!(listed[0], "qemu-aarch64", "binfmt's is matched first: {listed:?}");
        assert!(listed.contains(&"rosetta".to_owned()));
        sandbox.assert_runs(Arch::Arm64);
        let check = sandbox.subcommand("check", &["arm64"]).success();
        assert!(check.stdout.contains("runs through qemu-aarch64 ("), "{check}");
        assert!(check.stdout.contains("; rosetta claims it too, registered before it: not used"), "{check}");
        let (run, json) = doctor(sandbox);
        assert_eq!(run.code, Some(0), "{run}");
        assert!(ids(&json, "notes").contains(&"shadowed-handler"), "{run}");
        let note = json["notes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|note| note["id"] == "shadowed-handler")
            .unwrap();
        assert!(
            note["problem"].as_str().unwrap().starts_with("qemu-aarch64 runs arm64 programs, with "),
            "{run}"
        );
        assert!(
            note["fix"].as_str().unwrap().contains(&format!(
                "to let rosetta run arm64 programs again: binfmt --mount {} --uninstall qemu-aarch64",
                sandbox.mount.display()
            )),
            "{run}"
        );
        // Now binfmt's is in front: a rerun without --take-over keeps it, writing nothing.
        let rerun = sandbox.binfmt(&["--install", "arm64"]).success();
        assert_eq!(rerun.register_writes(), 0, "{rerun}");

        // A glob and an architecture remove only binfmt's entries.
        let run = sandbox.binfmt(&["--uninstall", "*"]).success();
        assert!(run.stderr.contains("uninstalling: rosetta left alone (another tool's entry"), "{run}");
        assert!(run.stderr.contains("uninstalling: WSLInterop left alone"), "{run}");
        assert_eq!(sandbox.entry_names(), names(&["WSLInterop", "rosetta"]));
        sandbox.assert_runs(Arch::Arm64);
        sandbox.binfmt(&["--uninstall", "arm64,linux/arm64"]).success();
        assert_eq!(sandbox.entry_names(), names(&["WSLInterop", "rosetta"]));
        // Named exactly, it goes.
        sandbox.binfmt(&["--uninstall", "rosetta"]).success();
        assert_eq!(sandbox.entry_names(), names(&["WSLInterop"]));
    }
}

namespace_test! {
    /// Handlers that exist but do not run do not block: one whose interpreter is no
    /// emulator (its probe fails), one without F whose interpreter is missing. binfmt
    /// registers its own in front of each, says so, and leaves them in place; where
    /// binfmt's own entry was behind a broken one, it is registered again to come first.
    fn a_handler_that_does_not_run_does_not_block(sandbox: &Sandbox) {
        let without_f = working_emulator(sandbox, Arch::S390x, "host-only", "qemu-s390x-static");
        let not_an_emulator = sandbox.executable("not-an-emulator", &native_exit_zero());
        sandbox.register("broken-arm64", Arch::Arm64, &not_an_emulator, "F");
        sandbox.register("stale-riscv64", Arch::Riscv64, Path::new("/nonexistent/qemu-riscv64-static"), "OC");
        // Works on this host (its interpreter is here), but not in a container's root.
        sandbox.register("host-only-s390x", Arch::S390x, &without_f, "OC");
        let run = sandbox.binfmt(&["--install", "arm64,riscv64,s390x"]).success();
        let arm64 = line_with(&run.stderr, "installing: arm64");
        assert!(
            arm64.contains(&format!(
                "; shadows broken-arm64 ({}, which does not run them: exited with status 0",
                not_an_emulator.display()
            )),
            "{run}"
        );
        assert!(arm64.ends_with("; left in place)"), "{run}");
        let riscv64 = line_with(&run.stderr, "installing: riscv64");
        assert!(riscv64.contains("; shadows stale-riscv64 (/nonexistent/qemu-riscv64-static, which does not run them: exec failed"), "{run}");
        let s390x = line_with(&run.stderr, "installing: s390x");
        assert!(s390x.contains("; shadows host-only-s390x ("), "{run}");
        assert!(s390x.contains("which does not run them: exec failed"), "{run}");
        sandbox.assert_runs(Arch::Arm64);
        sandbox.assert_runs(Arch::Riscv64);
        sandbox.assert_runs(Arch::S390x);
        assert!(sandbox.entry_names().is_superset(&names(&["broken-arm64", "stale-riscv64", "host-only-s390x"])));

        // A broken handler registered after binfmt's: binfmt's goes in front again.
        sandbox.binfmt(&["--uninstall", "broken-arm64"]).success();
        sandbox.register("broken-arm64", Arch::Arm64, &not_an_emulator, "F");
        let run = sandbox.binfmt(&["--install", "arm64"]).success();
        assert!(
            line_with(&run.stderr, "installing: arm64").starts_with("installing: arm64 OK (replaced: registered again, to be matched first)"),
            "{run}"
        );
        assert_eq!(sandbox.table().entry_names().unwrap()[0], "qemu-aarch64");
        sandbox.assert_runs(Arch::Arm64);
    }
}

namespace_test! {
    /// FEX registers with a mask that zeroes bytes QEMU's keeps: which architecture
    /// an entry serves is what its magic and mask accept, so binfmt still sees that it
    /// runs riscv64 programs and leaves them to it.
    fn an_entry_with_another_mask_is_still_seen(sandbox: &Sandbox) {
        let fex = working_emulator(sandbox, Arch::Riscv64, "fex", "FEXInterpreter");
        let Matcher::Magic { offset, magic, mask } = Arch::Riscv64.matcher() else {
            unreachable!("the catalog matches by magic")
        };
        let mut mask = mask.unwrap();
        mask[8..11].fill(0);
        assert_ne!(mask, Arch::Riscv64.mask(), "a mask other than QEMU's");
        sandbox
            .table()
            .register(&Registration {
                name: "FEX-riscv64".into(),
                matcher: Matcher::Magic { offset, magic, mask: Some(mask) },
                interpreter: fex,
                flags: "POCF".parse().unwrap(),
            })
            .unwrap();
        let run = sandbox.binfmt(&["--install", "riscv64"]).success();
        line_with(&run.stderr, "installing: riscv64 skipped (FEX-riscv64 runs it");
        assert_eq!(sandbox.entry_names(), names(&["FEX-riscv64"]));
        sandbox.assert_runs(Arch::Riscv64);
    }
}

namespace_test! {
    /// `binfmt disable` and `enable` switch entries without unregistering them; check
    /// and the status follow. A glob leaves another tool's entry alone; its name
    /// switches it.
    fn entries_are_switched_off_and_on(sandbox: &Sandbox) {
        sandbox.binfmt(&["--install", "arm64,riscv64"]).success();
        let rosetta = working_emulator(sandbox, Arch::S390x, "lima-rosetta", "rosetta");
        sandbox.register("rosetta", Arch::S390x, &rosetta, "OCF");
        let before = sandbox.entry_names();

        let run = sandbox.subcommand("disable", &["arm64"]).success();
        assert!(run.stderr.contains("disabling: qemu-aarch64 OK"), "{run}");
        assert!(!status(&run).contains(&"linux/arm64".to_owned()), "{run}");
        let check = sandbox.subcommand("check", &["arm64"]).exit(1);
        assert!(check.stdout.contains("qemu-aarch64 claims arm64 programs but is disabled"), "{check}");
        sandbox.assert_does_not_run(Arch::Arm64);
        assert_eq!(sandbox.entry_names(), before, "nothing was unregistered");
        let again = sandbox.subcommand("disable", &["qemu-aarch64"]).success();
        assert!(again.stderr.contains("disabling: qemu-aarch64 OK (already disabled)"), "{again}");

        let run = sandbox.subcommand("disable", &["*"]).success();
        assert!(run.stderr.contains("disabling: rosetta left alone"), "{run}");
        sandbox.assert_runs(Arch::S390x);
        sandbox.subcommand("disable", &["rosetta"]).success();
        sandbox.assert_does_not_run(Arch::S390x);

        let run = sandbox.subcommand("enable", &[]).success();
        assert!(run.stderr.contains("enabling: qemu-aarch64 OK"), "{run}");
        assert!(run.stderr.contains("enabling: qemu-riscv64 OK"), "{run}");
        assert!(!run.stderr.contains("rosetta"), "without a list, binfmt's entries only: {run}");
        sandbox.assert_runs(Arch::Arm64);
        sandbox.subcommand("check", &["arm64,riscv64"]).success();
        sandbox.subcommand("enable", &["rosetta"]).success();
        sandbox.assert_runs(Arch::S390x);
        let refused = sandbox.subcommand("disable", &["register"]).exit(2);
        assert!(refused.stderr.contains("disable: cannot disable \"register\""), "{refused}");
    }
}

/// Debian 12's qemu-user-static (QEMU 7.2), unpacked into binfmt's cache: a real
/// second emulator, as a user picks one where a pinned QEMU regresses.
fn debian_12_qemu_user_static() -> PathBuf {
    crate::util::debian_package_of("bookworm", "qemu-user-static").join("usr/bin")
}

/// Whether the table's entries are the same as in `before`, byte for byte.
#[track_caller]
fn unchanged(sandbox: &Sandbox, before: &std::collections::BTreeMap<String, String>, run: &Run) {
    assert_eq!(&sandbox.entries(), before, "the table changed:\n{run}");
}

namespace_test! {
    /// An emulator chosen for an architecture: checked, registered with the
    /// architecture's magic, mask and flags, proved by its probe, and named by
    /// `emulators`, the status, `check` and `doctor`. A wrong digest, an unsafe path
    /// or an emulator of another architecture changes nothing and exits 1 with the fix.
    fn an_emulator_chosen_for_an_architecture(sandbox: &Sandbox) {
        let bin = debian_12_qemu_user_static();
        let debian = bin.join("qemu-aarch64-static");
        let digest = qemu_pins::sha256_hex(&fs::read(&debian).unwrap());
        let chosen = format!("arm64={}@sha256:{digest}", debian.display());

        let run = sandbox.binfmt(&["--install", "arm64,riscv64", "--emulator", &chosen]).success();
        assert!(
            line_with(&run.stderr, "installing: arm64").ends_with(&format!("; with the emulator chosen for it, {}", debian.display())),
            "{run}"
        );
        let entry = sandbox.table().read_entry("qemu-aarch64").unwrap().unwrap();
        assert_eq!(entry.interpreter(), debian);
        assert_eq!(entry.registration.matcher, Arch::Arm64.matcher());
        assert_eq!(entry.registration.flags, "POCF".parse().unwrap());
        assert!(status(&run).contains(&"linux/arm64".to_owned()), "{run}");
        sandbox.assert_runs(Arch::Arm64);
        let check = sandbox.subcommand("check", &["arm64"]).success();
        assert!(check.stdout.contains(&format!("runs through qemu-aarch64 ({}, not binfmt's)", debian.display())), "{check}");
        let (run, json) = doctor(sandbox);
        assert_eq!(run.code, Some(0), "{run}");
        assert!(
            json["handlers"].as_array().unwrap().iter().any(|h| h["platform"] == "linux/arm64" && h["interpreter"] == debian.display().to_string()),
            "{run}"
        );
        let listed = Run::of({
            let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_binfmt"));
            command.args(["emulators", "--emulator", &chosen]);
            command
        })
        .success();
        assert!(listed.stdout.contains(&format!("arm64 is served by {} instead, as chosen", debian.display())), "{listed}");
        let rerun = sandbox.binfmt(&["--install", "arm64,riscv64", "--emulator", &chosen]).success();
        assert_eq!(rerun.register_writes(), 0, "{rerun}");
        let status = sandbox.binfmt(&[]).success();
        assert!(
            status.stderr.contains(&format!("status: linux/arm64 runs through qemu-aarch64: {} (not binfmt's)", debian.display())),
            "{status}"
        );
        assert!(status.stderr.contains("status: linux/riscv64 runs through qemu-riscv64: "), "{status}");

        // Refusals change nothing.
        let before = sandbox.entries();
        let wrong = format!("arm64={}@sha256:{}", debian.display(), "0".repeat(64));
        let run = sandbox.binfmt(&["--install", "arm64", "--emulator", &wrong]).exit(1);
        assert!(run.stderr.contains(&format!("has sha256 {digest}, not the {} given; fix: ", "0".repeat(64))), "{run}");
        unchanged(sandbox, &before, &run);

        let open = sandbox.scratch.join("anyone-can-write");
        fs::create_dir_all(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        fs::copy(&debian, open.join("qemu-aarch64-static")).unwrap();
        let run = sandbox.binfmt(&["--install", "arm64", "--emulator", &format!("arm64={}/qemu-aarch64-static", open.display())]).exit(1);
        assert!(run.stderr.contains("is writable by others (mode 0777"), "{run}");
        assert!(run.stderr.contains("fix: keep the emulator in a directory only root can change"), "{run}");
        unchanged(sandbox, &before, &run);

        let link = sandbox.scratch.join("qemu-aarch64-link");
        std::os::unix::fs::symlink(&debian, &link).unwrap();
        let run = sandbox.binfmt(&["--install", "arm64", "--emulator", &format!("arm64={}", link.display())]).exit(1);
        assert!(run.stderr.contains(&format!("fix: give the resolved path ({})", debian.display())), "{run}");
        unchanged(sandbox, &before, &run);

        let other_arch = format!("arm64={}", bin.join("qemu-riscv64-static").display());
        let run = sandbox.binfmt(&["--install", "arm64", "--emulator", &other_arch]).exit(1);
        assert!(run.stderr.contains("does not run arm64 programs"), "{run}");
        unchanged(sandbox, &before, &run);

        // Without the choice, binfmt's own comes back.
        let run = sandbox.binfmt(&["--install", "arm64"]).success();
        assert!(line_with(&run.stderr, "installing: arm64").starts_with("installing: arm64 OK (replaced: interpreter "), "{run}");
        let entry = sandbox.table().read_entry("qemu-aarch64").unwrap().unwrap();
        assert!(entry.interpreter().starts_with(&sandbox.interpreters), "{run}");
        sandbox.assert_runs(Arch::Arm64);
    }
}
