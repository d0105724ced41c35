//! Drop-in compatibility with tonistiigi/binfmt: the exact command sequence of
//! docker/setup-qemu-action, and the checks of tonistiigi/binfmt's own
//! hack/install-and-test, each in a private binfmt_misc instance.

use qemu_catalog::Arch;
use serde_json::Value;

use crate::util::{Run, Sandbox, host_arch, namespace_test};

/// What setup-qemu-action requires of every step: it fails a step only when the exit
/// code is non-zero and stderr is non-empty; we hold ourselves to exit 0.
#[track_caller]
fn step(run: Run) -> Run {
    assert_eq!(
        run.code,
        Some(0),
        "setup-qemu-action would fail this step:\n{run}"
    );
    run
}

/// `JSON.parse(stdout.trim())`, as setup-qemu-action does: stdout must be the
/// document and nothing else.
#[track_caller]
fn parse_like_the_action(run: &Run) -> Value {
    let value: Value = serde_json::from_str(run.stdout.trim())
        .unwrap_or_else(|e| panic!("JSON.parse would throw ({e}):\n{run}"));
    assert!(
        value["supported"].is_array() && value["emulators"].is_array(),
        "{run}"
    );
    assert_eq!(
        value.as_object().map(|o| o.len()),
        Some(2),
        "only the two keys: {run}"
    );
    value
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .expect("a list")
        .iter()
        .map(|item| item.as_str().expect("strings").to_owned())
        .collect()
}

namespace_test! {
    /// setup-qemu-action, in order: `--version`; `--uninstall qemu-*` (its
    /// `reset: true`); `--install <platforms>`, twice (a runner that already has them);
    /// then the image with no arguments, whose stdout becomes the `platforms` output.
    fn the_setup_qemu_action_sequence(sandbox: &Sandbox) {
        let version = step(sandbox.binfmt(&["--version"]));
        let line = version.stdout.trim_end();
        let parts: Vec<&str> = line.split(' ').collect();
        assert_eq!(parts.len(), 3, "{version}");
        for (part, name) in parts.iter().zip(["binfmt/", "qemu/", "rust/"]) {
            assert!(part.starts_with(name) && part.len() > name.len(), "{version}");
        }

        let reset = step(sandbox.binfmt(&["--uninstall", "qemu-*"]));
        parse_like_the_action(&reset);

        for _ in 0..2 {
            let install = step(sandbox.binfmt(&["--install", "arm64,riscv64,linux/arm/v7"]));
            let status = parse_like_the_action(&install);
            let supported = strings(&status["supported"]);
            for platform in ["linux/arm64", "linux/riscv64", "linux/arm/v7", "linux/arm/v6"] {
                assert!(supported.contains(&platform.to_owned()), "{install}");
            }
        }
        // The action's default `platforms: all`.
        step(sandbox.binfmt(&["--install", "all"]));

        let status = step(sandbox.binfmt(&[]));
        status.assert_no_errors();
        let document = parse_like_the_action(&status);
        let supported = strings(&document["supported"]);
        assert_eq!(
            supported.first().map(String::as_str),
            Some(host_arch().platforms()[0]),
            "the host's platform comes first, as buildkit lists it"
        );
        for arch in Arch::ALL {
            for platform in arch.platforms() {
                assert!(supported.contains(&(*platform).to_owned()), "{platform}: {status}");
            }
        }
        // The action publishes supported.join(','): no empty or duplicate items.
        let mut unique = supported.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), supported.len(), "{status}");
    }
}

namespace_test! {
    /// tonistiigi/binfmt's hack/install-and-test, check by check (its `docker run
    /// <image> uname -a` become programs of each architecture run here).
    fn tonistiigis_install_and_test(sandbox: &Sandbox) {
        step(sandbox.binfmt(&["--uninstall", "qemu-*"]));
        let run = step(sandbox.binfmt(&["--install", "all"]));
        let status = parse_like_the_action(&run);
        let supported = strings(&status["supported"]);
        let emulators = strings(&status["emulators"]);
        for platform in [
            "linux/arm64",
            "linux/amd64",
            "linux/arm/v7",
            "linux/arm/v6",
            "linux/riscv64",
            "linux/ppc64le",
            "linux/386",
        ] {
            assert!(supported.contains(&platform.to_owned()), "{platform}: {run}");
        }
        for emulator in ["qemu-riscv64", "qemu-arm"] {
            assert!(emulators.contains(&emulator.to_owned()), "{emulator}: {run}");
        }
        for arch in [Arch::Arm64, Arch::Arm, Arch::Ppc64le, Arch::S390x, Arch::I386, Arch::Riscv64] {
            sandbox.assert_runs(arch);
        }
        if host_arch() != Arch::Amd64 {
            // The script stops here on other hosts.
            return;
        }

        let run = step(sandbox.binfmt(&["--uninstall", "aarch64,riscv64"]));
        let status = parse_like_the_action(&run);
        let supported = strings(&status["supported"]);
        let emulators = strings(&status["emulators"]);
        assert!(!supported.contains(&"linux/arm64".to_owned()), "{run}");
        assert!(!supported.contains(&"linux/riscv64".to_owned()), "{run}");
        assert!(supported.contains(&"linux/ppc64le".to_owned()), "{run}");
        assert!(supported.contains(&"linux/arm/v7".to_owned()), "{run}");
        assert!(emulators.contains(&"qemu-arm".to_owned()), "{run}");
        assert!(emulators.contains(&"qemu-ppc64le".to_owned()), "{run}");
        assert!(!emulators.iter().any(|e| e.contains("aarch64")), "{run}");
        assert!(!emulators.iter().any(|e| e.contains("riscv64")), "{run}");
        sandbox.assert_does_not_run(Arch::Arm64);

        step(sandbox.binfmt(&["--install", "arm64"]));
        sandbox.assert_runs(Arch::Arm64);
        step(sandbox.binfmt(&["--install", "riscv64"]));
        sandbox.assert_runs(Arch::Riscv64);
    }
}
