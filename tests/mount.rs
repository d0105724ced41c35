//! `--mount`: another binfmt_misc mount is used, anything else refused; nothing
//! mounted at the default place gets mounted (where registrations outlive the
//! process: see `persist` for the cases where they would not).

use std::fs;
use std::os::unix::fs::symlink;

use qemu_catalog::Arch;

use crate::util::{Sandbox, must, namespace_test};

namespace_test! {
    fn a_directory_that_is_not_binfmt_misc_is_refused(sandbox: &Sandbox) {
        let plain = sandbox.scratch.join("plain");
        fs::create_dir_all(&plain).unwrap();
        let link = sandbox.scratch.join("link");
        symlink(&sandbox.mount, &link).unwrap();
        let missing = sandbox.scratch.join("missing");

        let binfmt = |mount: &std::path::Path| sandbox.with_mount(mount).binfmt(&["--install", "arm64"]);
        let run = binfmt(&plain).exit(1);
        assert!(run.stderr.contains("is not a binfmt_misc mount"), "{run}");
        assert!(run.stderr.contains(plain.to_str().unwrap()), "{run}");
        let run = binfmt(&link).exit(1);
        assert!(run.stderr.contains("is a symbolic link"), "{run}");
        let run = binfmt(&missing).exit(1);
        assert!(run.stderr.contains("cannot open"), "{run}");
        assert!(fs::read_dir(&plain).unwrap().next().is_none(), "nothing mounted or written there");
        assert_eq!(sandbox.entries().len(), 2);
        assert!(!sandbox.interpreters.exists());
    }
}

namespace_test! {
    /// With no binfmt_misc at /proc/sys/fs/binfmt_misc, binfmt mounts it there. The
    /// test hides whatever the machine has at that place under a tmpfs (in its own
    /// mount namespace only) so the case is the same on every machine. The sandbox's
    /// own mount holds the instance, so registrations outlive binfmt's mount.
    fn nothing_mounted_at_the_default_place_gets_mounted(sandbox: &Sandbox) {
        must("mount", &["-t", "tmpfs", "tmpfs", "/proc/sys/fs"]);
        fs::create_dir("/proc/sys/fs/binfmt_misc").unwrap();
        let run = std::process::Command::new(env!("CARGO_BIN_EXE_binfmt"))
            .args(["--install", "ppc64le", "--interpreter-dir"])
            .arg(&sandbox.interpreters)
            .env("BINFMT_LOG", "info")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(run.status.success(), "{stderr}");
        assert!(
            stderr.contains("binfmt_misc was not mounted here; mounted it, and the instance is \
                             shared with another mount"),
            "{stderr}"
        );
        assert!(fs::metadata("/proc/sys/fs/binfmt_misc/qemu-ppc64le").is_ok());
        // The entry lives in the instance just mounted, which this namespace uses.
        sandbox.assert_runs(Arch::Ppc64le);
    }
}
