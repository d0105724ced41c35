//! `cargo xtask dist`: the release artifacts, in `dist/` at the top of the workspace.
//!
//! | file | what |
//! |---|---|
//! | `dist/binfmt-x86_64-linux-musl` | static binary for x86_64 hosts, carrying the emulators an x86_64 host needs |
//! | `dist/binfmt-aarch64-linux-musl` | static binary for aarch64 hosts, carrying the emulators an aarch64 host needs |
//! | `dist/<binary>.sha256` | its digest, as `sha256sum` prints it (`sha256sum -c` in `dist/` checks it) |
//! | `dist/<binary>.spdx.json` | its SBOM, SPDX 2.3 JSON: the crates, QEMU's packages and the emulators in it (see [`crate::sbom`]) |
//!
//! Each binary is `cargo build --release --locked -p binfmt --target <arch>-unknown-linux-musl`
//! (`.cargo/config.toml` makes both fully static and has zig compile their one C
//! library, libzstd: see `tools/zig-cc`; the catalog's build script embeds the
//! emulators for the target's architecture from the blob cache, so `cargo xtask fetch`
//! comes first). Before a binary is copied out it is checked: an ELF file for the
//! right machine, with no program interpreter and no shared library it needs, so it
//! runs in a `FROM scratch` image and on any distribution. The `Dockerfile` packages
//! `dist/` for linux/amd64 and linux/arm64.
//!
//! The same commit gives the same bytes in any directory, at any time, for any user
//! (with the same toolchain): nothing of the build's place or time reaches the binary
//! but the registry's path, which is remapped (`remap_registry_paths`).
//! `--check-reproducible` proves it with a second build ([`crate::reproduce`]).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::{Result, ResultExt, megabytes, reproduce, sbom, workspace_root};

/// Arguments of `cargo xtask dist` (the default: both binaries).
#[derive(clap::Args, Default)]
pub struct Args {
    /// Which binaries to build (both by default).
    #[arg(long = "arch", value_name = "ARCH", value_parser = ARTIFACTS.map(|a| a.arch))]
    arches: Vec<String>,
    /// Then build them again from a fresh clone of HEAD in another directory, with
    /// another target directory, and fail unless every byte is the same (binaries and
    /// SBOMs).
    #[arg(long)]
    check_reproducible: bool,
}

impl Args {
    /// Only the binary for `arch` (`x86_64` or `aarch64`).
    pub fn only(arch: &str) -> Args {
        Args {
            arches: vec![arch.to_owned()],
            check_reproducible: false,
        }
    }
}

/// One artifact: a Rust target and the ELF machine its binary must have.
struct Artifact {
    arch: &'static str,
    /// `e_machine` of the ELF header (`EM_X86_64`, `EM_AARCH64`).
    machine: u16,
}

const ARTIFACTS: [Artifact; 2] = [
    Artifact {
        arch: "x86_64",
        machine: 62,
    },
    Artifact {
        arch: "aarch64",
        machine: 183,
    },
];

impl Artifact {
    fn target(&self) -> String {
        format!("{}-unknown-linux-musl", self.arch)
    }

    /// The file name in `dist/`.
    fn file_name(&self) -> String {
        format!("binfmt-{}-linux-musl", self.arch)
    }
}

/// The output folder.
pub fn dist_dir() -> PathBuf {
    workspace_root().join("dist")
}

/// Runs `cargo xtask dist`.
pub fn run(args: &Args) -> Result<()> {
    let root = workspace_root();
    let out = dist_dir();
    fs::create_dir_all(&out).context(|| format!("creating {}", out.display()))?;
    let artifacts: Vec<&Artifact> = ARTIFACTS
        .iter()
        .filter(|a| args.arches.is_empty() || args.arches.iter().any(|arch| arch == a.arch))
        .collect();
    for artifact in &artifacts {
        check_target_installed(&artifact.target())?;
    }
    for artifact in &artifacts {
        let bytes = build(&root, &crate::target_dir(), artifact)?;
        let name = artifact.file_name();
        let digest = hex::encode(Sha256::digest(&bytes));
        let sbom = sbom::generate(&root, &name, &artifact.target(), &digest)?;
        let path = out.join(&name);
        write_replacing(&path, &bytes, true)?;
        write_replacing(
            &out.join(format!("{name}.sha256")),
            format!("{digest}  {name}\n").as_bytes(),
            false,
        )?;
        write_replacing(&out.join(format!("{name}.spdx.json")), &sbom, false)?;
        eprintln!(
            "{}: {}, static, sha256 {digest}, SBOM {name}.spdx.json",
            path.strip_prefix(&root).unwrap_or(&path).display(),
            megabytes(bytes.len() as u64)
        );
    }
    if args.check_reproducible {
        let copy = reproduce::Copy::of_head(&root)?;
        for artifact in &artifacts {
            let name = artifact.file_name();
            let bytes = build(copy.root(), &copy.target_dir(), artifact)?;
            let digest = hex::encode(Sha256::digest(&bytes));
            let sbom = sbom::generate(copy.root(), &name, &artifact.target(), &digest)?;
            let second = copy.dist_dir();
            write_replacing(&second.join(&name), &bytes, true)?;
            write_replacing(&second.join(format!("{name}.spdx.json")), &sbom, false)?;
            reproduce::compare(&out.join(&name), &second.join(&name))?;
            reproduce::compare(
                &out.join(format!("{name}.spdx.json")),
                &second.join(format!("{name}.spdx.json")),
            )?;
            eprintln!(
                "{name}: rebuilt in {} with target directory {}: the same {} bytes, and the same SBOM",
                copy.root().display(),
                copy.target_dir().display(),
                bytes.len()
            );
        }
    }
    Ok(())
}

/// Builds `artifact` in the workspace at `root` with `target_dir` as cargo's target
/// directory, checks that it is static, and returns its bytes.
fn build(root: &Path, target_dir: &Path, artifact: &Artifact) -> Result<Vec<u8>> {
    let target = artifact.target();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(&cargo)
        .current_dir(root)
        .env("CARGO_TARGET_DIR", target_dir)
        .args([
            "build",
            "--release",
            "--locked",
            "--package",
            "binfmt",
            "--target",
        ])
        .arg(&target)
        .args(remap_registry_paths(&target)?)
        .status()
        .context(|| format!("running {cargo} build for {target}"))?;
    if !status.success() {
        return Err(format!("cargo build --release --target {target} failed ({status})").into());
    }
    let built = target_dir.join(&target).join("release").join("binfmt");
    let bytes = fs::read(&built).context(|| format!("reading {}", built.display()))?;
    check_static_elf(&bytes, artifact.machine)
        .map_err(|reason| format!("{}: {reason}", built.display()))?;
    Ok(bytes)
}

/// Cargo options that keep `$CARGO_HOME` out of the binary: panic messages carry the
/// source path of the code that panicked, which for a crate from the registry is
/// `$CARGO_HOME/registry/src/<registry>/<crate>-<version>/...`, so a build by another
/// user (another home directory) would differ. The prefix becomes
/// `/cargo/registry/src`. (The workspace's own paths are relative already, the
/// standard library's are `/rustc/<commit>`; cargo's `trim-paths`, which would do
/// this, is not stable yet.) Added to `.cargo/config.toml`'s flags for the target:
/// cargo joins the arrays of `--config` and config files; `RUSTFLAGS` would replace
/// them.
fn remap_registry_paths(target: &str) -> Result<Vec<String>> {
    let absolute = |var: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .filter(|path| path.is_absolute())
    };
    let cargo_home = absolute("CARGO_HOME")
        .or_else(|| absolute("HOME").map(|home| home.join(".cargo")))
        .ok_or("neither $CARGO_HOME nor $HOME is an absolute path")?;
    let registry = cargo_home.join("registry").join("src");
    let registry = registry
        .to_str()
        .ok_or_else(|| format!("{} is not UTF-8", registry.display()))?;
    // A JSON string is a valid TOML basic string.
    let flag = serde_json::to_string(&format!(
        "--remap-path-prefix={registry}=/cargo/registry/src"
    ))?;
    Ok(vec![
        "--config".to_owned(),
        format!("target.{target}.rustflags=[{flag}]"),
    ])
}

/// Fails with the fix when rustup has not installed the standard library for `target`.
fn check_target_installed(target: &str) -> Result<()> {
    let output = Command::new("rustc")
        .args(["--print", "target-libdir", "--target", target])
        .output()
        .context(|| "running rustc --print target-libdir".to_owned())?;
    let libdir = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if output.status.success() && Path::new(&libdir).is_dir() {
        Ok(())
    } else {
        Err(format!(
            "the Rust standard library for {target} is not installed: run \
             `rustup target add {target}`"
        )
        .into())
    }
}

/// Writes `bytes` to a temporary file next to `path` and renames it into place, so a
/// reader (a `docker build` running meanwhile) never sees half a binary.
fn write_replacing(path: &Path, bytes: &[u8], executable: bool) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let temporary = path.with_extension("tmp");
    fs::write(&temporary, bytes).context(|| format!("writing {}", temporary.display()))?;
    let mode = if executable { 0o755 } else { 0o644 };
    fs::set_permissions(&temporary, fs::Permissions::from_mode(mode))
        .context(|| format!("chmod {}", temporary.display()))?;
    fs::rename(&temporary, path).context(|| format!("renaming into {}", path.display()))
}

/// ELF constants from `include/uapi/linux/elf.h`.
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;

/// Checks that `elf` is a 64-bit little-endian ELF executable for `machine` that needs
/// nothing at run time: no program interpreter (`PT_INTERP`, the dynamic loader) and
/// no shared library (`DT_NEEDED`). A static-pie binary has a dynamic section for its
/// own relocations, which is fine.
pub fn check_static_elf(elf: &[u8], machine: u16) -> Result<(), String> {
    let u16_at = |at: usize| {
        elf.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| {
        elf.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |at: usize| {
        elf.get(at..at + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
    };
    let truncated = || "truncated ELF file".to_owned();
    if elf.get(..6) != Some(b"\x7fELF\x02\x01") {
        return Err("not a 64-bit little-endian ELF file".to_owned());
    }
    let found = u16_at(18).ok_or_else(truncated)?;
    if found != machine {
        return Err(format!("ELF machine {found}, expected {machine}"));
    }
    let phoff = u64_at(32).ok_or_else(truncated)? as usize;
    let phentsize = usize::from(u16_at(54).ok_or_else(truncated)?);
    let phnum = usize::from(u16_at(56).ok_or_else(truncated)?);
    for index in 0..phnum {
        let header = phoff + index * phentsize;
        if phentsize < 56 || elf.get(header..header + phentsize).is_none() {
            return Err(truncated());
        }
        match u32_at(header).ok_or_else(truncated)? {
            PT_INTERP => {
                return Err("it has a program interpreter (PT_INTERP): it is not static".to_owned());
            }
            PT_DYNAMIC => {
                let offset = u64_at(header + 8).ok_or_else(truncated)? as usize;
                let size = u64_at(header + 32).ok_or_else(truncated)? as usize;
                for entry in (offset..offset + size).step_by(16) {
                    match u64_at(entry).ok_or_else(truncated)? {
                        DT_NULL => break,
                        DT_NEEDED => {
                            return Err("it needs a shared library (DT_NEEDED): it is not static"
                                .to_owned());
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest ELF header with `phnum` program headers of the given types.
    fn elf(machine: u16, headers: &[(u32, u64, u64)], dynamic: &[(u64, u64)]) -> Vec<u8> {
        let mut file = vec![0u8; 64];
        file[..6].copy_from_slice(b"\x7fELF\x02\x01");
        file[18..20].copy_from_slice(&machine.to_le_bytes());
        file[32..40].copy_from_slice(&64u64.to_le_bytes());
        file[54..56].copy_from_slice(&56u16.to_le_bytes());
        file[56..58].copy_from_slice(&(headers.len() as u16).to_le_bytes());
        let dynamic_at = 64 + 56 * headers.len() as u64;
        for &(kind, _, _) in headers {
            let mut header = vec![0u8; 56];
            header[..4].copy_from_slice(&kind.to_le_bytes());
            header[8..16].copy_from_slice(&dynamic_at.to_le_bytes());
            header[32..40].copy_from_slice(&(16 * dynamic.len() as u64).to_le_bytes());
            file.extend(header);
        }
        for &(tag, value) in dynamic {
            file.extend(tag.to_le_bytes());
            file.extend(value.to_le_bytes());
        }
        file
    }

    #[test]
    fn static_and_static_pie_binaries_pass() {
        check_static_elf(&elf(62, &[(1, 0, 0)], &[]), 62).unwrap();
        // static-pie: a dynamic section with relocations, no DT_NEEDED.
        check_static_elf(
            &elf(183, &[(PT_DYNAMIC, 0, 0)], &[(7, 0), (DT_NULL, 0)]),
            183,
        )
        .unwrap();
    }

    #[test]
    fn dynamic_binaries_and_wrong_machines_fail() {
        let interp = check_static_elf(&elf(62, &[(PT_INTERP, 0, 0)], &[]), 62).unwrap_err();
        assert!(interp.contains("PT_INTERP"), "{interp}");
        let needed = elf(62, &[(PT_DYNAMIC, 0, 0)], &[(DT_NEEDED, 1), (DT_NULL, 0)]);
        assert!(
            check_static_elf(&needed, 62)
                .unwrap_err()
                .contains("DT_NEEDED")
        );
        assert!(
            check_static_elf(&elf(62, &[], &[]), 183)
                .unwrap_err()
                .contains("machine 62")
        );
        assert!(check_static_elf(b"#!/bin/sh\n", 62).is_err());
        assert!(check_static_elf(&elf(62, &[(1, 0, 0)], &[])[..70], 62).is_err());
    }

    #[test]
    fn a_real_dynamic_binary_is_caught() {
        if !cfg!(target_env = "gnu") {
            return; // only a glibc build of this test is known to be dynamic
        }
        let me = fs::read(std::env::current_exe().unwrap()).unwrap();
        let machine = if cfg!(target_arch = "x86_64") {
            62
        } else {
            183
        };
        let error = check_static_elf(&me, machine).unwrap_err();
        assert!(error.contains("PT_INTERP"), "{error}");
    }
}
