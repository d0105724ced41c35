//! `binfmt doctor`: every finding, each from a broken state built for real in a
//! private binfmt_misc instance (two kernel states are simulated, as their tests
//! say), and a healthy state that yields none.

use std::fs;
use std::path::Path;

use binfmt_misc::{Matcher, Registration, Table};
use qemu_catalog::Arch;
use serde_json::Value;

use crate::util::{
    Run, Sandbox, binfmt_without_capabilities, host_arch, must, namespace_test, native_exit_zero,
};

/// `binfmt doctor --json`, with its exit code checked against its findings.
fn doctor(sandbox: &Sandbox) -> (Run, Value) {
    let run = sandbox.subcommand("doctor", &["--json"]);
    let json = run.json();
    let expected = if json["findings"].as_array().is_some_and(|f| f.is_empty()) {
        0
    } else {
        1
    };
    assert_eq!(
        run.code,
        Some(expected),
        "exit code and findings disagree:\n{run}"
    );
    (run, json)
}

/// How fixes start for the sandbox's table (not at the default place).
fn binfmt(sandbox: &Sandbox) -> String {
    format!("binfmt --mount {}", sandbox.mount.display())
}

/// The findings with this id.
fn findings<'a>(json: &'a Value, id: &str) -> Vec<&'a Value> {
    json["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["id"] == id)
        .collect()
}

/// The one finding with this id; panics with the report otherwise.
#[track_caller]
fn finding<'a>(json: &'a Value, run: &Run, id: &str) -> &'a Value {
    match findings(json, id).as_slice() {
        [one] => one,
        other => panic!("expected one {id} finding, found {}:\n{run}", other.len()),
    }
}

fn text(value: &Value) -> &str {
    value.as_str().expect("a string")
}

/// `binfmt doctor` with the default mount (no `--mount`), for the states where
/// nothing is mounted at /proc/sys/fs/binfmt_misc.
fn doctor_default() -> (Run, Value) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_binfmt"));
    command
        .args(["doctor", "--json"])
        .env("BINFMT_LOG", "debug");
    let run = Run::of(command);
    let json = run.json();
    (run, json)
}

/// Hides whatever the machine has at /proc/sys/fs under an empty tmpfs (in this
/// test's mount namespace only), with an empty binfmt_misc directory.
fn nothing_mounted_at_the_default_place() {
    must("mount", &["-t", "tmpfs", "tmpfs", "/proc/sys/fs"]);
    fs::create_dir("/proc/sys/fs/binfmt_misc").unwrap();
}

/// Replaces a /proc file with `content`, in this test's mount namespace only.
fn fake_proc_file(sandbox: &Sandbox, proc_file: &str, content: &str) {
    let fake = sandbox.scratch.join(proc_file.replace('/', "_"));
    fs::write(&fake, content).unwrap();
    must("mount", &["--bind", fake.to_str().unwrap(), proc_file]);
}

namespace_test! {
    /// A healthy machine: everything installed, nothing to report, exit 0. Entries
    /// for other kinds of files (binfmt-support's jar entry, here disabled and
    /// without F) are none of doctor's business.
    fn a_healthy_table_has_no_findings(sandbox: &Sandbox) {
        sandbox.binfmt(&["--install", "all"]).success();
        sandbox
            .table()
            .register(&Registration {
                name: "jar".into(),
                matcher: Matcher::Extension("jar".into()),
                interpreter: "/bin/true".into(),
                flags: "".parse().unwrap(),
            })
            .unwrap();
        sandbox.write_control("jar", "0");
        let run = sandbox.subcommand("doctor", &[]).success();
        assert!(run.stdout.ends_with("binfmt doctor: no problems found\n"), "{run}");
        for check in ["binfmt_misc is in the kernel", "binfmt_misc is enabled", "probes ran in an empty root"] {
            assert!(run.stdout.contains(check), "{check}: {run}");
        }
        assert!(run.stdout.contains("linux/arm64"), "what runs is listed: {run}");
        let (_, json) = doctor(sandbox);
        assert_eq!(json["ok"], true);
    }
}

namespace_test! {
    /// Simulated: binfmt_misc missing from the kernel. A test cannot unload it from
    /// this machine's kernel, so /proc/filesystems is replaced (bind mount, in this
    /// test's namespace only) by one without binfmt_misc, and nothing is mounted at
    /// the default place, as on such a kernel.
    fn binfmt_misc_missing_from_the_kernel(sandbox: &Sandbox) {
        fake_proc_file(sandbox, "/proc/filesystems", "nodev\tsysfs\nnodev\tproc\n\text4\n");
        nothing_mounted_at_the_default_place();
        let (run, json) = doctor_default();
        assert_eq!(run.code, Some(1), "{run}");
        let found = finding(&json, &run, "binfmt-misc-missing");
        assert!(text(&found["fix"]).starts_with("modprobe binfmt_misc"), "{run}");
        // It is the root cause: nothing is mounted to look at it further.
        assert_eq!(json["findings"].as_array().unwrap().len(), 1, "{run}");
        assert!(fs::read_dir("/proc/sys/fs/binfmt_misc").unwrap().next().is_none());
    }
}

namespace_test! {
    /// Simulated: a kernel older than 4.8 (no flag F). A test cannot boot another
    /// kernel, so /proc/sys/kernel/osrelease is replaced (bind mount, in this test's
    /// namespace only).
    fn a_kernel_too_old_for_flag_f(sandbox: &Sandbox) {
        sandbox.binfmt(&["--install", "arm64"]).success();
        fake_proc_file(sandbox, "/proc/sys/kernel/osrelease", "4.4.0-210-generic\n");
        let (run, json) = doctor(sandbox);
        let found = finding(&json, &run, "kernel-too-old-for-f");
        assert!(text(&found["problem"]).contains("Linux 4.4.0-210-generic is older than 4.8"), "{run}");
        assert_eq!(json["findings"].as_array().unwrap().len(), 1, "{run}");
    }
}

namespace_test! {
    /// --mount names a directory where binfmt_misc is not mounted: found, with where
    /// it is mounted instead.
    fn binfmt_misc_not_mounted_where_asked(sandbox: &Sandbox) {
        let plain = sandbox.scratch.join("plain");
        fs::create_dir_all(&plain).unwrap();
        let run = sandbox
            .with_mount(&plain)
            .subcommand("doctor", &["--json"])
        .exit(1);
        let json = run.json();
        let found = finding(&json, &run, "not-mounted");
        let problem = text(&found["problem"]);
        assert!(problem.contains(&format!("binfmt_misc is not mounted at {}", plain.display())), "{run}");
        assert!(problem.contains(&format!("it is mounted at {}", sandbox.mount.display())), "{run}");
        assert!(text(&found["fix"]).starts_with("mount -t binfmt_misc binfmt_misc"), "{run}");
        assert!(findings(&json, "self-mounted").is_empty(), "only the default place is mounted");
    }
}

namespace_test! {
    /// Nothing mounted at the default place: doctor mounts an instance to look inside,
    /// reports that such an instance dies with its last mount, and unmounts it again.
    fn an_instance_this_process_had_to_mount_itself(sandbox: &Sandbox) {
        let _ = sandbox;
        nothing_mounted_at_the_default_place();
        let (run, json) = doctor_default();
        assert_eq!(run.code, Some(1), "{run}");
        finding(&json, &run, "not-mounted");
        let found = finding(&json, &run, "self-mounted");
        assert!(text(&found["problem"]).contains("had to mount binfmt_misc at /proc/sys/fs/binfmt_misc itself"), "{run}");
        assert!(text(&found["cause"]).contains("destroys it with every entry"), "{run}");
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            !mountinfo.lines().any(|l| l.contains(" /proc/sys/fs/binfmt_misc ")),
            "doctor left its mount behind:\n{mountinfo}"
        );
    }
}

namespace_test! {
    /// A read-only mount, as containers without --privileged see /proc/sys.
    fn a_read_only_binfmt_misc(sandbox: &Sandbox) {
        sandbox.binfmt(&["--install", "arm64"]).success();
        must("mount", &["-o", "remount,ro", sandbox.mount.to_str().unwrap()]);
        let (run, json) = doctor(sandbox);
        let found = finding(&json, &run, "read-only");
        assert!(text(&found["fix"]).contains("--privileged"), "{run}");
        assert_eq!(json["findings"].as_array().unwrap().len(), 1, "{run}");
    }
}

namespace_test! {
    /// Not privileged: the kernel refuses writes to `register` (EACCES), as it does an
    /// ordinary user's. Simulated in part: these namespaces map only root, so there is
    /// no ordinary user to run as; instead `register` loses its mode (chmod 0, which
    /// binfmt_misc allows) and doctor runs with no capabilities, so that root gets the
    /// same refusal from the same permission check.
    fn no_permission_without_root(sandbox: &Sandbox) {
        sandbox.binfmt(&["--install", "arm64"]).success();
        must("chmod", &["0", sandbox.mount.join("register").to_str().unwrap()]);
        let mount = sandbox.mount.to_str().unwrap();
        let run = binfmt_without_capabilities(&["doctor", "--json", "--mount", mount]).exit(1);
        let json = run.json();
        let found = finding(&json, &run, "not-privileged");
        assert!(text(&found["problem"]).contains("may not write"), "{run}");
        assert!(text(&found["problem"]).contains("Permission denied"), "{run}");
        assert!(text(&found["fix"]).contains("run as root"), "{run}");
        assert_eq!(json["findings"].as_array().unwrap().len(), 1, "{run}");
        let checks = json["checks"].to_string();
        assert!(checks.contains("probes ran in place"), "{run}");
    }
}

namespace_test! {
    /// `echo 0 > status`: every entry ignored.
    fn binfmt_misc_disabled_as_a_whole(sandbox: &Sandbox) {
        sandbox.binfmt(&["--install", "arm64"]).success();
        sandbox.write_control("status", "0");
        let (run, json) = doctor(sandbox);
        let found = finding(&json, &run, "globally-disabled");
        assert_eq!(text(&found["fix"]), format!("echo 1 > {}/status", sandbox.mount.display()));
        assert_eq!(json["findings"].as_array().unwrap().len(), 1, "{run}");
        assert!(!json["supported"].to_string().contains("linux/arm64"), "{run}");
    }
}

namespace_test! {
    /// A stale registration: no F, and the interpreter does not exist in this
    /// mount namespace. Named with entry and path; its fix works.
    fn stale_entry(sandbox: &Sandbox) {
        sandbox.register("qemu-aarch64", Arch::Arm64, Path::new("/usr/bin/qemu-aarch64-static"), "OC");
        let (run, json) = doctor(sandbox);
        let found = finding(&json, &run, "stale-entry");
        assert_eq!(
            text(&found["problem"]),
            "qemu-aarch64 has no flag F and its interpreter /usr/bin/qemu-aarch64-static does \
             not exist in this mount namespace"
        );
        assert_eq!(text(&found["fix"]), format!("{} --install arm64", binfmt(sandbox)));
        assert_eq!(json["findings"].as_array().unwrap().len(), 1, "{run}");
        sandbox.binfmt(&["--install", "arm64"]).success();
        let (run, json) = doctor(sandbox);
        assert_eq!(json["ok"], true, "{run}");
    }
}

namespace_test! {
    /// No F, interpreter present: works here, not in containers.
    fn an_entry_without_f_that_works_only_here(sandbox: &Sandbox) {
        sandbox.binfmt(&["--install", "riscv64"]).success();
        let entry = sandbox.table().read_entry("qemu-riscv64").unwrap().unwrap();
        sandbox.table().remove("qemu-riscv64").unwrap();
        sandbox.register("qemu-riscv64", Arch::Riscv64, entry.interpreter(), "P");
        sandbox.assert_runs(Arch::Riscv64);
        let (run, json) = doctor(sandbox);
        let found = finding(&json, &run, "no-fix-binary");
        assert!(text(&found["problem"]).contains("exists here, but not inside containers"), "{run}");
        assert_eq!(json["findings"].as_array().unwrap().len(), 1, "{run}");
    }
}

namespace_test! {
    /// An entry for the machine's own architecture, registered in this private
    /// namespace only and disabled at once: while enabled it would run every native
    /// program of this namespace, this test included, through its interpreter. Nothing
    /// is executed between the two writes.
    fn an_entry_for_the_hosts_own_architecture(sandbox: &Sandbox) {
        let host = host_arch();
        let name = host.entry_name();
        let table = sandbox.table();
        table
            .register(&Registration {
                name: name.clone(),
                matcher: host.matcher(),
                interpreter: format!("/usr/bin/qemu-{}-static", host.qemu_cpu()).into(),
                flags: "OC".parse().unwrap(),
            })
            .unwrap();
        table.set_enabled(&name, false).unwrap();

        let (run, json) = doctor(sandbox);
        let found = finding(&json, &run, "host-arch-entry");
        assert!(text(&found["problem"]).starts_with(&format!("{name} claims {host}, this machine's own architecture (disabled")), "{run}");
        assert_eq!(text(&found["fix"]), format!("echo -1 > {}/{name} (the shell's own echo, so it works even now)", sandbox.mount.display()));
        finding(&json, &run, "entry-disabled");
        table.remove(&name).unwrap();
    }
}

namespace_test! {
    /// An enabled entry that claims the host's architecture too, like Rosetta on an
    /// x86_64 VM. To keep this namespace's programs running, it claims only non-PIE
    /// executables (e_type mask ff): everything this test runs is PIE, checked first.
    fn an_enabled_entry_for_the_hosts_own_architecture(sandbox: &Sandbox) {
        for program in [env!("CARGO_BIN_EXE_binfmt"), "/proc/self/exe"] {
            let header = fs::read(program).unwrap();
            assert_eq!(header[16], 3, "{program} is not PIE: this test would break it");
        }
        let host = host_arch();
        let Matcher::Magic { offset, magic, mask } = host.matcher() else { unreachable!() };
        let mut mask = mask.expect("the catalog has masks");
        mask[16] = 0xff; // ET_EXEC only
        sandbox.table()
            .register(&Registration {
                name: "rosetta".into(),
                matcher: Matcher::Magic { offset, magic, mask: Some(mask) },
                interpreter: "/nonexistent/rosetta".into(),
                flags: "".parse().unwrap(),
            })
            .unwrap();
        let (run, json) = doctor(sandbox);
        let found = finding(&json, &run, "host-arch-entry");
        assert!(text(&found["problem"]).contains("rosetta claims"), "{run}");
        assert!(text(&found["problem"]).contains("(enabled; interpreter /nonexistent/rosetta)"), "{run}");
        sandbox.table().remove("rosetta").unwrap();
    }
}

namespace_test! {
    /// A disabled entry.
    fn a_disabled_entry(sandbox: &Sandbox) {
        sandbox.binfmt(&["--install", "s390x"]).success();
        sandbox.write_control("qemu-s390x", "0");
        let (run, json) = doctor(sandbox);
        let found = finding(&json, &run, "entry-disabled");
        assert_eq!(text(&found["problem"]), "qemu-s390x claims s390x programs but is disabled");
        assert!(text(&found["fix"]).contains(&format!("{} --install s390x", binfmt(sandbox))), "{run}");
        assert_eq!(json["findings"].as_array().unwrap().len(), 1, "{run}");
    }
}

namespace_test! {
    /// Two enabled entries with the same magic (Debian's qemu-user-binfmt under
    /// another name next to ours, say).
    fn two_entries_claiming_one_architecture(sandbox: &Sandbox) {
        sandbox.binfmt(&["--install", "riscv64"]).success();
        let ours = sandbox.table().read_entry("qemu-riscv64").unwrap().unwrap();
        sandbox.register("riscv64-debian", Arch::Riscv64, ours.interpreter(), "OCF");
        let (run, json) = doctor(sandbox);
        let found = finding(&json, &run, "duplicate-arch");
        assert!(text(&found["problem"]).starts_with("2 enabled entries claim riscv64 programs"), "{run}");
        assert!(text(&found["problem"]).contains("qemu-riscv64") && text(&found["problem"]).contains("riscv64-debian"), "{run}");
        assert_eq!(
            text(&found["fix"]),
            format!("keep qemu-riscv64: {} --uninstall riscv64-debian", binfmt(sandbox))
        );
        assert_eq!(json["findings"].as_array().unwrap().len(), 1, "{run}");
    }
}

namespace_test! {
    /// An entry with F whose interpreter is not an emulator: the probe fails.
    fn an_entry_whose_probe_fails(sandbox: &Sandbox) {
        let not_qemu = sandbox.executable("not-qemu", &native_exit_zero());
        sandbox.register("qemu-loongarch64", Arch::Loong64, &not_qemu, "F");
        let (run, json) = doctor(sandbox);
        let found = finding(&json, &run, "probe-failed");
        let problem = text(&found["problem"]);
        assert!(problem.starts_with("loong64 programs do not run through qemu-loongarch64"), "{run}");
        assert!(problem.contains("exited with status 0, not the exit status 109"), "{run}");
        assert_eq!(text(&found["fix"]), format!("{} --install loong64", binfmt(sandbox)));
        assert_eq!(json["findings"].as_array().unwrap().len(), 1, "{run}");
        sandbox.binfmt(&["--install", "loong64"]).success();
        let (run, json) = doctor(sandbox);
        assert_eq!(json["ok"], true, "{run}");
    }
}

namespace_test! {
    /// An entry with another tool's emulator (Debian's qemu-aarch64-static, here a
    /// copy of a working QEMU under that name): noted, with the command that replaces
    /// it and leave-it-if-intended, but not a problem (it runs); binfmt's own entries
    /// are not noted.
    fn another_tools_emulator_is_noted_not_a_problem(sandbox: &Sandbox) {
        sandbox.binfmt(&["--install", "arm64,riscv64"]).success();
        let ours = sandbox.table().read_entry("qemu-aarch64").unwrap().unwrap();
        let debian = sandbox.executable("qemu-aarch64-static", &fs::read(ours.interpreter()).unwrap());
        sandbox.write_control("qemu-aarch64", "-1");
        sandbox.register("qemu-aarch64", Arch::Arm64, &debian, "POCF");

        let (run, json) = doctor(sandbox);
        assert_eq!(json["findings"].as_array().unwrap().len(), 0, "{run}");
        assert_eq!(run.code, Some(0), "{run}");
        let notes = json["notes"].as_array().unwrap();
        assert_eq!(notes.len(), 1, "{run}");
        let note = &notes[0];
        assert_eq!(note["id"], "foreign-emulator");
        let problem = text(&note["problem"]);
        assert!(problem.starts_with(&format!("qemu-aarch64 runs arm64 programs with {}, not with the emulator binfmt carries for arm64 (qemu-aarch64-", debian.display())), "{problem}");
        assert!(problem.contains(qemu_catalog::Emulator::for_arch(Arch::Arm64).unwrap().sha256()), "{problem}");
        assert_eq!(
            text(&note["fix"]),
            format!("{} --install arm64 replaces it with binfmt's; leave it if that emulator is the one you want", binfmt(sandbox))
        );
        let human = sandbox.subcommand("doctor", &[]).success();
        assert!(human.stdout.contains("\nNOTE [foreign-emulator] qemu-aarch64 runs arm64 programs"), "{human}");
        assert!(human.stdout.ends_with("binfmt doctor: no problems found\n"), "{human}");

        // Under another name it is another tool's entry: never advised away; binfmt's
        // goes in front of it instead, if that is what the user wants.
        sandbox.write_control("qemu-aarch64", "-1");
        sandbox.register("aarch64-debian", Arch::Arm64, &debian, "POCF");
        let (run, json) = doctor(sandbox);
        let fix = text(&json["notes"][0]["fix"]);
        assert!(fix.starts_with(&format!("{} --install arm64 --take-over registers binfmt's in front of it", binfmt(sandbox))), "{run}");
        assert!(!fix.contains("--uninstall"), "{run}");
    }
}
