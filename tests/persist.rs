//! No silent loss: registrations made from a container outlive it, or binfmt refuses
//! to make them and says how to fix it.
//!
//! Each test builds the situation with nested namespaces. The test's own user and
//! mount namespace plays the host: since Linux 6.7 it has a binfmt_misc instance of its
//! own, which exists while something mounts it (the sandbox's mount, or nothing once
//! the test unmounts it). A "container" is a mount and pid namespace inside it, with
//! a fresh `/proc` where nothing is mounted at /proc/sys/fs/binfmt_misc, in the same
//! user namespace: what `docker run --privileged` gives, and binfmt runs there as
//! pid 1 (`unshare --fork` execs it), as it does as a container's entrypoint.

use std::process::Command;

use binfmt_misc::BinfmtMisc;
use qemu_catalog::Arch;

use crate::util::{Run, Sandbox, must, names, namespace_test};

/// The fix binfmt prints, as users would paste it.
const HOST_MOUNT_FIX: &str = "sudo mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc";

/// Runs `program args` as pid 1 of a new container (mount and pid namespaces, fresh
/// `/proc`).
fn in_container(program: &str, args: &[&str]) -> Run {
    let mut command = Command::new("unshare");
    command
        .args(["--mount", "--pid", "--fork", "--mount-proc", "--", program])
        .args(args)
        .env("BINFMT_LOG", "info");
    Run::of(command)
}

/// Runs binfmt (at the default mount place) as pid 1 of a new container.
fn binfmt_in_container(sandbox: &Sandbox, args: &[&str]) -> Run {
    let interpreters = sandbox.interpreters.to_str().expect("UTF-8 path");
    let mut all = vec!["--interpreter-dir", interpreters];
    all.extend_from_slice(args);
    in_container(env!("CARGO_BIN_EXE_binfmt"), &all)
}

/// The host stops mounting binfmt_misc: its instance is gone.
fn unmount_on_the_host(sandbox: &Sandbox) {
    must("umount", &[sandbox.mount.to_str().expect("UTF-8 path")]);
}

namespace_test! {
    /// The kernel fact binfmt guards against (facts file §1): a container that mounts
    /// binfmt_misc itself while the host has none mounted registers into an instance
    /// that dies with it. With a host mount, the same steps leave the entry behind.
    fn kernel_fact_a_containers_own_instance_dies_with_it(sandbox: &Sandbox) {
        let register = "mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc && \
                        echo :probe:E::probe-ext::/bin/true: > /proc/sys/fs/binfmt_misc/register && \
                        test -e /proc/sys/fs/binfmt_misc/probe";
        unmount_on_the_host(sandbox);
        let run = in_container("sh", &["-c", register]);
        assert_eq!(run.code, Some(0), "registering in the container:\n{run}");
        BinfmtMisc::mount(&sandbox.mount).expect("mount on the host");
        assert_eq!(sandbox.entry_names(), names(&[]), "the entry outlived its instance");

        let run = in_container("sh", &["-c", register]);
        assert_eq!(run.code, Some(0), "registering in the container:\n{run}");
        assert_eq!(sandbox.entry_names(), names(&["probe"]), "with a host mount the entry stays");
    }
}

namespace_test! {
    /// Amazon Linux 2023's case: nothing mounted on the host. binfmt in a container
    /// does not report success for registrations that would vanish with it: it exits
    /// 1 with the fix, and nothing is left registered or mounted.
    fn a_container_refuses_to_register_when_the_host_has_no_mount(sandbox: &Sandbox) {
        unmount_on_the_host(sandbox);
        let run = binfmt_in_container(sandbox, &["--install", "riscv64"]).exit(1);
        assert!(run.stderr.contains("binfmt_misc is not mounted on the host"), "{run}");
        assert!(run.stderr.contains("when this container exits"), "{run}");
        assert!(run.stderr.contains("pid namespace of its own"), "{run}");
        assert!(run.stderr.contains("; nothing was registered; fix: "), "{run}");
        assert!(run.stderr.contains(HOST_MOUNT_FIX), "{run}");
        assert!(run.stderr.contains("--pid=host"), "{run}");
        assert!(!run.stderr.contains("installing:"), "{run}");
        assert_eq!(run.stdout, "", "no status claims anything");

        // Reading the status is still true there: nothing is registered on the host.
        let status = binfmt_in_container(sandbox, &[]).success();
        assert_eq!(status.status()["emulators"], serde_json::json!([]), "{status}");
        assert!(status.stderr.contains("binfmt_misc is not mounted on the host"), "{status}");

        BinfmtMisc::mount(&sandbox.mount).expect("mount on the host");
        assert_eq!(sandbox.entry_names(), names(&[]));
        sandbox.assert_does_not_run(Arch::Riscv64);

        // The fix works: with the host's mount in place, the same command succeeds.
        binfmt_in_container(sandbox, &["--install", "riscv64"]).success();
        sandbox.assert_runs(Arch::Riscv64);
    }
}

namespace_test! {
    /// The usual case: the host has binfmt_misc mounted, the container mounts the same
    /// instance, and what it registers stays after it exits.
    fn a_container_registers_into_the_hosts_instance(sandbox: &Sandbox) {
        let run = binfmt_in_container(sandbox, &["--install", "riscv64,s390x"]).success();
        assert!(run.stderr.contains("the instance is shared with another mount"), "{run}");
        assert!(run.stderr.contains("installing: riscv64 OK\n"), "{run}");
        assert_eq!(sandbox.entry_names(), names(&["qemu-riscv64", "qemu-s390x"]));
        sandbox.assert_runs(Arch::Riscv64);
        sandbox.assert_runs(Arch::S390x);
        // A second container finds them in place and writes nothing.
        let rerun = binfmt_in_container(sandbox, &["--install", "riscv64,s390x"]).success();
        assert!(rerun.stderr.contains("installing: s390x OK (already registered)"), "{rerun}");
        // The lifetime probe left no marker behind.
        assert_eq!(sandbox.entry_names(), names(&["qemu-riscv64", "qemu-s390x"]));
    }
}

namespace_test! {
    /// `docker run --pid=host`: nothing is mounted on the host, but the container
    /// shares the host's pid namespace, so binfmt mounts binfmt_misc in the mount
    /// namespace of pid 1 (the host's init), where it outlives the container.
    ///
    /// Here the "host" is a pid and mount namespace whose pid 1 is a shell; the
    /// container is a mount namespace inside it with a fresh /proc of the same pid
    /// namespace. After the container exits, the host's shell reads the entry and
    /// runs a riscv64 program through it.
    fn with_pid_host_binfmt_mounts_in_the_hosts_mount_namespace(sandbox: &Sandbox) {
        unmount_on_the_host(sandbox);
        let message = "riscv64 on the host after the container\n";
        let program = sandbox.program(Arch::Riscv64, message, 42);
        let host = r#"
            unshare --mount -- sh -c 'mount -t proc proc /proc && exec "$0" "$@"' \
                "$1" --install riscv64 --interpreter-dir "$2" || exit 90
            grep -c ' /proc/sys/fs/binfmt_misc ' /proc/self/mountinfo || exit 91
            cat /proc/sys/fs/binfmt_misc/qemu-riscv64 || exit 92
            exec "$3"
        "#;
        let run = in_container(
            "sh",
            &[
                "-c",
                host,
                "host",
                env!("CARGO_BIN_EXE_binfmt"),
                sandbox.interpreters.to_str().unwrap(),
                program.to_str().unwrap(),
            ],
        );
        assert_eq!(run.code, Some(42), "{run}");
        assert!(run.stderr.contains("used it in the mount namespace of pid 1"), "{run}");
        // Pid 1 here is the test's shell, not the machine's init: binfmt says so.
        assert!(run.stderr.contains("not the machine's init"), "{run}");
        assert!(run.stderr.contains("installing: riscv64 OK\n"), "{run}");
        // binfmt's status, then the host's view: one mount, the entry, the program.
        assert!(run.stdout.contains("}\n1\nenabled\n"), "one mount on the host:\n{run}");
        assert!(run.stdout.contains("flags: POCF\n"), "{run}");
        assert!(run.stdout.ends_with(message), "{run}");
    }
}
