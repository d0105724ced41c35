//! The release artifacts of `cargo xtask dist`, tested as they ship: the binary for
//! the other architecture runs here under emulation and registers an emulator of its
//! own set.

use std::fs;
use std::path::Path;
use std::process::Command;

use binfmt_misc::Table;
use qemu_catalog::Arch;
use sha2::{Digest, Sha256};

use crate::util::{Run, Sandbox, dist, in_private_binfmt_misc, report};

/// This machine's artifact and the other one, with the other one's platform.
fn artifacts() -> (&'static str, &'static str, Arch) {
    if cfg!(target_arch = "x86_64") {
        (
            "binfmt-x86_64-linux-musl",
            "binfmt-aarch64-linux-musl",
            Arch::Arm64,
        )
    } else {
        (
            "binfmt-aarch64-linux-musl",
            "binfmt-x86_64-linux-musl",
            Arch::Amd64,
        )
    }
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
fn dist_holds_both_binaries_with_matching_digests() {
    let dist = dist();
    let (native, foreign, _) = artifacts();
    for name in [native, foreign] {
        let binary = fs::read(dist.join(name)).unwrap_or_else(|e| panic!("dist/{name}: {e}"));
        let digest = hex::encode(Sha256::digest(&binary));
        let recorded = fs::read_to_string(dist.join(format!("{name}.sha256"))).unwrap();
        assert_eq!(recorded, format!("{digest}  {name}\n"));
        report(&format!(
            "size: dist/{name} {:.1} MB ({} bytes)",
            binary.len() as f64 / 1e6,
            binary.len()
        ));
    }
}

/// Item 6 of the shipping issue: in a private binfmt_misc instance, this machine's
/// dist binary registers the other architecture's emulator; the other architecture's
/// dist binary then runs under emulation, registers riscv64 from its own set (an
/// emulator built for the other host, so two emulators nest), and a riscv64 program
/// runs through them.
#[test]
fn the_other_architectures_binary_runs_under_emulation_and_registers_its_own_set() {
    let dist = dist();
    in_private_binfmt_misc(
        "dist::the_other_architectures_binary_runs_under_emulation_and_registers_its_own_set",
        |sandbox| {
            let (native, foreign, foreign_arch) = artifacts();
            let native = dist.join(native);
            let foreign = dist.join(foreign);
            let platform = foreign_arch.to_string();

            let output = Command::new(&foreign).arg("--version").output();
            assert!(
                output.is_err(),
                "{foreign:?} ran before any emulator was registered"
            );
            run(sandbox, &native, "native", &["--install", &platform]).success();

            let version = Command::new(&foreign).arg("--version").output().unwrap();
            let version = String::from_utf8_lossy(&version.stdout);
            assert!(version.starts_with("binfmt/"), "{version}");

            // Its own architecture is refused: it is native to the binary.
            let mine = run(sandbox, &foreign, "foreign", &["--install", &platform]).exit(2);
            assert!(mine.stderr.contains("own architecture"), "{mine}");

            // Flags PF, not the default POCF: in a chain of binfmt_misc handlers only one
            // may take the binary as an open file (O, implied by C); a second one makes
            // exec fail with ENOEXEC (`exec_binprm` in fs/exec.c). qemu-aarch64 (POCF)
            // is the second handler here, so qemu-riscv64 must not ask for it. A real
            // aarch64 host runs qemu-riscv64 natively and never nests.
            let run = run(
                sandbox,
                &foreign,
                "foreign",
                &["--install", "riscv64", "--flags", "PF"],
            )
            .success();
            assert!(run.stderr.contains("installing: riscv64 OK\n"), "{run}");
            let entry = sandbox.table().read_entry("qemu-riscv64").unwrap().unwrap();
            assert!(
                entry
                    .interpreter()
                    .starts_with(sandbox.interpreters.join("foreign")),
                "registered from the foreign binary's own set: {entry:?}"
            );
            sandbox.assert_runs(Arch::Riscv64);
        },
    );
}
