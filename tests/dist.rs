//! The release artifacts of `cargo xtask dist`, tested as they ship: every binary is
//! there with its digest and within the size limit, and the binary for each other host
//! runs here under emulation and registers an emulator of its own set.

use std::fs;
use std::path::Path;
use std::process::Command;

use binfmt_misc::Table;
use qemu_catalog::Arch;
use sha2::{Digest, Sha256};

use crate::util::{Run, Sandbox, dist, host_arch, in_private_binfmt_misc, report};

/// Every release binary in `dist/`, the architecture it runs on and the largest it
/// may be: issue 13's 10 MB, which the s390x and riscv64 binaries miss (11.7 MB and
/// 11.0 MB: see `Artifact::max_size` in xtask/src/dist.rs); `cargo xtask dist`
/// refuses more.
const ARTIFACTS: [(&str, Arch, usize); 5] = [
    ("binfmt-x86_64-linux-musl", Arch::Amd64, 10_000_000),
    ("binfmt-aarch64-linux-musl", Arch::Arm64, 10_000_000),
    ("binfmt-powerpc64le-linux-gnu", Arch::Ppc64le, 10_000_000),
    ("binfmt-s390x-linux-gnu", Arch::S390x, 12_000_000),
    ("binfmt-riscv64-linux-gnu", Arch::Riscv64, 12_000_000),
];

/// The artifact of an architecture.
fn artifact(arch: Arch) -> &'static str {
    ARTIFACTS
        .iter()
        .find(|(_, of, _)| *of == arch)
        .map(|(name, _, _)| *name)
        .unwrap_or_else(|| panic!("no release binary runs on {arch}"))
}

/// Runs a dist binary against the sandbox, writing emulators into `<interpreters>/<dir>`.
fn run(sandbox: &Sandbox, binary: &Path, dir: &str, args: &[&str]) -> Run {
    let mut command = Command::new(binary);
    command
        .arg("--mount")
        .arg(&sandbox.mount)
        .arg("--interpreter-dir")
        .arg(sandbox.interpreters.join(dir))
        .args(args);
    Run::of(command)
}

#[test]
fn dist_holds_every_binary_with_matching_digests_within_the_size_limit() {
    let dist = dist();
    for (name, _, max_size) in ARTIFACTS {
        let binary = fs::read(dist.join(name)).unwrap_or_else(|e| panic!("dist/{name}: {e}"));
        let digest = hex::encode(Sha256::digest(&binary));
        let recorded = fs::read_to_string(dist.join(format!("{name}.sha256"))).unwrap();
        assert_eq!(recorded, format!("{digest}  {name}\n"));
        report(&format!(
            "size: dist/{name} {:.1} MB ({} bytes)",
            binary.len() as f64 / 1e6,
            binary.len()
        ));
        assert!(
            binary.len() <= max_size,
            "dist/{name} is {} bytes, more than {max_size}",
            binary.len()
        );
    }
}

/// In a private binfmt_misc instance, this machine's dist binary registers the
/// emulator for `host`; `host`'s dist binary then runs under it, refuses its own
/// architecture, registers another foreign architecture from its own set (an emulator
/// built for `host`, so two emulators nest) and a program of that architecture runs
/// through them. On a machine of `host`'s own architecture there is nothing to
/// emulate: the test says so and checks nothing.
fn runs_under_emulation_and_registers_its_own_set(test_path: &str, host: Arch) {
    if host.is_native() {
        report(&format!(
            "SKIPPED {test_path}: this machine runs {host} natively (the binary for it is \
             tested by every other test)"
        ));
        return;
    }
    let dist = dist();
    in_private_binfmt_misc(test_path, |sandbox| {
        let native = dist.join(artifact(host_arch()));
        let foreign = dist.join(artifact(host));
        let platform = host.to_string();
        // Foreign to this machine and to `host`: riscv64, or s390x for the riscv64 binary.
        let other = [Arch::Riscv64, Arch::S390x]
            .into_iter()
            .find(|arch| *arch != host && !arch.is_native())
            .expect("riscv64 or s390x is foreign");
        let other_name = other.to_string();

        let output = Command::new(&foreign).arg("--version").output();
        assert!(
            output.is_err(),
            "{foreign:?} ran before any emulator was registered"
        );
        run(sandbox, &native, "native", &["--install", &platform]).success();

        let version = Command::new(&foreign).arg("--version").output().unwrap();
        let version = String::from_utf8_lossy(&version.stdout);
        assert!(version.starts_with("binfmt/"), "{foreign:?}: {version}");

        // Its own architecture is refused: it is native to the binary.
        let mine = run(sandbox, &foreign, "foreign", &["--install", &platform]).exit(2);
        assert!(mine.stderr.contains("own architecture"), "{mine}");

        // Flags PF, not the default POCF: in a chain of binfmt_misc handlers only one
        // may take the binary as an open file (O, implied by C); a second one makes
        // exec fail with ENOEXEC (`exec_binprm` in fs/exec.c). The emulator for `host`
        // (POCF) is the second handler here, so the nested one must not ask for it. A
        // real machine of `host`'s architecture runs the nested emulator natively.
        let run = run(
            sandbox,
            &foreign,
            "foreign",
            &["--install", &other_name, "--flags", "PF"],
        )
        .success();
        assert!(
            run.stderr
                .contains(&format!("installing: {other_name} OK\n")),
            "{run}"
        );
        let entry = sandbox
            .table()
            .read_entry(&format!("qemu-{}", other.qemu_cpu()))
            .unwrap()
            .unwrap();
        assert!(
            entry
                .interpreter()
                .starts_with(sandbox.interpreters.join("foreign")),
            "registered from the foreign binary's own set: {entry:?}"
        );
        sandbox.assert_runs(other);
    });
}

#[test]
fn the_x86_64_binary_runs_under_emulation_and_registers_its_own_set() {
    runs_under_emulation_and_registers_its_own_set(
        "dist::the_x86_64_binary_runs_under_emulation_and_registers_its_own_set",
        Arch::Amd64,
    );
}

#[test]
fn the_aarch64_binary_runs_under_emulation_and_registers_its_own_set() {
    runs_under_emulation_and_registers_its_own_set(
        "dist::the_aarch64_binary_runs_under_emulation_and_registers_its_own_set",
        Arch::Arm64,
    );
}

#[test]
fn the_ppc64le_binary_runs_under_emulation_and_registers_its_own_set() {
    runs_under_emulation_and_registers_its_own_set(
        "dist::the_ppc64le_binary_runs_under_emulation_and_registers_its_own_set",
        Arch::Ppc64le,
    );
}

#[test]
fn the_s390x_binary_runs_under_emulation_and_registers_its_own_set() {
    runs_under_emulation_and_registers_its_own_set(
        "dist::the_s390x_binary_runs_under_emulation_and_registers_its_own_set",
        Arch::S390x,
    );
}

#[test]
fn the_riscv64_binary_runs_under_emulation_and_registers_its_own_set() {
    runs_under_emulation_and_registers_its_own_set(
        "dist::the_riscv64_binary_runs_under_emulation_and_registers_its_own_set",
        Arch::Riscv64,
    );
}
