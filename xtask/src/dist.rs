//! `cargo xtask dist`: the release artifacts, in `dist/` at the top of the workspace.
//!
//! | file | what |
//! |---|---|
//! | `dist/binfmt-x86_64-linux-musl` | static binary for x86_64 hosts (linux/amd64) |
//! | `dist/binfmt-aarch64-linux-musl` | static binary for aarch64 hosts (linux/arm64) |
//! | `dist/binfmt-powerpc64le-linux-gnu` | static binary for ppc64le hosts (linux/ppc64le) |
//! | `dist/binfmt-s390x-linux-gnu` | static binary for IBM Z hosts (linux/s390x) |
//! | `dist/binfmt-riscv64-linux-gnu` | static binary for RISC-V hosts (linux/riscv64) |
//! | `dist/<binary>.sha256` | its digest, as `sha256sum` prints it (`sha256sum -c` in `dist/` checks it) |
//! | `dist/<binary>.spdx.json` | its SBOM, SPDX 2.3 JSON: the crates, QEMU's packages and the emulators in it (see [`crate::sbom`]) |
//! | `dist/man/`, `dist/completions/` | binfmt(1) and a page per subcommand; bash, zsh and fish completions (see [`crate::manpages`]) |
//! | `dist/binfmt_<version>_<debian arch>.deb` | the Debian package of each binary, with its `.sha256` (see [`crate::package`]) |
//!
//! Each binary carries the emulators its host needs (tonistiigi/binfmt's ten
//! architectures minus the host's own) and is `cargo build --release --locked -p
//! binfmt --target <target>` with `BINFMT_EMBEDDED_COMPRESSION=release`: first the
//! host's emulators are fetched if they are not cached, and compressed as hard as
//! zstd can (level 22, both cores, cached by digest: minutes of CPU per host the first
//! time, nothing after; see `blob`), then the catalog's build script embeds them.
//!
//! x86_64 and aarch64 are musl builds (`.cargo/config.toml` makes them fully static
//! and has zig compile their one C library, libzstd: see `tools/zig-cc`). ppc64le,
//! s390x and riscv64 are static glibc builds linked by Debian's cross gcc
//! (`gcc-<triple>` and `libc6-dev-<arch>-cross`): stable Rust ships no musl standard
//! library for s390x, and the musl ones for ppc64le and riscv64 cannot be downloaded
//! on the machines binfmt is built on, so the three share one recipe. binfmt asks
//! glibc for nothing that needs loading at run time (no NSS, no iconv, no locales).
//!
//! Before a binary is copied out it is checked: an ELF file for the right machine and
//! byte order, with no program interpreter and no shared library it needs, so it runs
//! in a `FROM scratch` image and on any distribution, and within its size limit
//! ([`GOAL_SIZE`], 10 MB). The
//! `Dockerfile` packages `dist/` for the five platforms.
//!
//! The same commit gives the same bytes in any directory, at any time, for any user
//! (with the same toolchain): nothing of the build's place or time reaches the binary
//! but the registry's path, which is remapped (`remap_registry_paths`).
//! `--check-reproducible` proves it with a second build ([`crate::reproduce`]).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use qemu_pins::{BlobCache, COMPRESSION_ENV, Compression, MANIFEST_PATH, Manifest};
use sha2::{Digest, Sha256};

use anyhow::{Context, Result, anyhow};

use crate::workspace::{absolute_env, megabytes, workspace_root};
use crate::{package, reproduce, sbom};

/// The size a release binary should stay within (issue 13): 10 MB.
pub const GOAL_SIZE: u64 = 10_000_000;

/// Arguments of `cargo xtask dist` (the default: every binary).
#[derive(clap::Args, Default)]
pub struct Args {
    /// Which binaries to build, by host (all by default).
    #[arg(long = "arch", value_name = "ARCH", value_parser = ARTIFACTS.map(|a| a.host))]
    arches: Vec<String>,
    /// Then build them again from a fresh clone of HEAD in another directory, with
    /// another target directory, and fail unless every byte is the same (binaries and
    /// SBOMs).
    #[arg(long)]
    check_reproducible: bool,
}

impl Args {
    /// Only the binary for `host` (`x86_64`, `aarch64`, ...).
    pub fn only(host: &str) -> Args {
        Args::hosts(&[host])
    }

    /// Only the binaries for `hosts`.
    pub fn hosts(hosts: &[&str]) -> Args {
        Args {
            arches: hosts.iter().map(|host| (*host).to_owned()).collect(),
            check_reproducible: false,
        }
    }
}

/// One artifact: the host it is for, how it is built and what its ELF header must say.
pub struct Artifact {
    /// The host, as pins.toml and `--arch` name it.
    pub host: &'static str,
    /// The Rust target it is built for.
    pub target: &'static str,
    /// The largest the binary may be: [`GOAL_SIZE`] for every host. The tightest are
    /// s390x and riscv64, whose nine emulators are the largest to embed (the
    /// `elf-filter` crate is what brings them within it).
    max_size: u64,
    /// For a glibc target, the Debian packages of the cross compiler that links it
    /// (`<triple>-gcc` with its C library); `None` for musl, linked by rust-lld.
    cross_gcc: Option<(&'static str, &'static str)>,
}

/// Every release binary, in the order they are built and listed.
pub const ARTIFACTS: [Artifact; 5] = [
    Artifact {
        host: "x86_64",
        target: "x86_64-unknown-linux-musl",
        max_size: GOAL_SIZE,
        cross_gcc: None,
    },
    Artifact {
        host: "aarch64",
        target: "aarch64-unknown-linux-musl",
        max_size: GOAL_SIZE,
        cross_gcc: None,
    },
    Artifact {
        host: "powerpc64le",
        target: "powerpc64le-unknown-linux-gnu",
        max_size: GOAL_SIZE,
        cross_gcc: Some((
            "powerpc64le-linux-gnu-gcc",
            "gcc-powerpc64le-linux-gnu libc6-dev-ppc64el-cross",
        )),
    },
    Artifact {
        host: "s390x",
        target: "s390x-unknown-linux-gnu",
        max_size: GOAL_SIZE,
        cross_gcc: Some((
            "s390x-linux-gnu-gcc",
            "gcc-s390x-linux-gnu libc6-dev-s390x-cross",
        )),
    },
    Artifact {
        host: "riscv64",
        target: "riscv64gc-unknown-linux-gnu",
        max_size: GOAL_SIZE,
        cross_gcc: Some((
            "riscv64-linux-gnu-gcc",
            "gcc-riscv64-linux-gnu libc6-dev-riscv64-cross",
        )),
    },
];

impl Artifact {
    /// The architecture it runs on: its host's own ([`arch_table::HOSTS`]), whose row
    /// says its OCI platform, `e_machine` and byte order.
    pub fn arch(&self) -> &'static arch_table::Arch {
        arch_table::host(self.host).map_or(&arch_table::ARCHES[0], arch_table::Host::arch)
    }

    /// The OCI platform the `Dockerfile` packages it for.
    pub fn platform(&self) -> &'static str {
        self.arch().platforms[0]
    }

    /// Whether the ELF file is big-endian (s390x).
    pub fn big_endian(&self) -> bool {
        self.arch().big_endian
    }

    /// The file name in `dist/`: `binfmt-<arch>-<os>-<libc>` (`binfmt-x86_64-linux-musl`,
    /// `binfmt-s390x-linux-gnu`).
    pub fn file_name(&self) -> String {
        let libc = self.target.rsplit('-').next().unwrap_or("musl");
        format!("binfmt-{}-linux-{libc}", self.host)
    }

    /// The artifact for a host.
    pub fn of(host: &str) -> Option<&'static Artifact> {
        ARTIFACTS.iter().find(|artifact| artifact.host == host)
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
    let artifacts: Vec<&Artifact> = ARTIFACTS
        .iter()
        .filter(|a| args.arches.is_empty() || args.arches.iter().any(|arch| arch == a.host))
        .collect();
    // Everything that can be missing is said before the first minute of work.
    package::check_tools()?;
    for artifact in &artifacts {
        check_target_installed(artifact.target)?;
        if let Some((gcc, packages)) = artifact.cross_gcc {
            check_cross_gcc(artifact.target, gcc, packages)?;
        }
    }
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let manifest = Manifest::load(&root.join(MANIFEST_PATH))?;
    let cache = BlobCache::from_env()?;
    let mirror = std::sync::Mutex::new(None);
    for artifact in &artifacts {
        let host = manifest.host(artifact.host).with_context(|| {
            format!(
                "{MANIFEST_PATH} pins no emulators for host {}: run `cargo xtask pin`",
                artifact.host
            )
        })?;
        crate::fetch::ensure_standalone(&manifest, &cache, host, &mirror)?;
        crate::fetch::ensure_embedded(&cache, host, Compression::Release)?;
    }
    for artifact in &artifacts {
        let bytes = build(&root, &crate::workspace::target_dir(), artifact)?;
        let name = artifact.file_name();
        let digest = hex::encode(Sha256::digest(&bytes));
        let sbom = sbom::generate(&root, &name, artifact.target, &digest)?;
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
    let docs = crate::manpages::write(&out)?;
    eprintln!(
        "dist/{}/, dist/{}/: {} man pages and completions, from binfmt's clap definitions",
        crate::manpages::MAN_DIR,
        crate::manpages::COMPLETIONS_DIR,
        docs.len()
    );
    let staging = crate::workspace::target_dir().join("debian");
    for artifact in &artifacts {
        let deb = package::build(
            &root,
            &out,
            &staging.join(artifact.host),
            &packaged(artifact),
            &manifest,
        )?;
        eprintln!(
            "{}: {}",
            deb.strip_prefix(&root).unwrap_or(&deb).display(),
            megabytes(fs::metadata(&deb).map(|m| m.len()).unwrap_or(0))
        );
    }
    if args.check_reproducible {
        let copy = reproduce::Copy::of_head(&root)?;
        crate::manpages::write(&copy.dist_dir())?;
        for artifact in &artifacts {
            let name = artifact.file_name();
            let bytes = build(copy.root(), &copy.target_dir(), artifact)?;
            let digest = hex::encode(Sha256::digest(&bytes));
            let sbom = sbom::generate(copy.root(), &name, artifact.target, &digest)?;
            let second = copy.dist_dir();
            write_replacing(&second.join(&name), &bytes, true)?;
            write_replacing(&second.join(format!("{name}.spdx.json")), &sbom, false)?;
            reproduce::compare(&out.join(&name), &second.join(&name))?;
            reproduce::compare(
                &out.join(format!("{name}.spdx.json")),
                &second.join(format!("{name}.spdx.json")),
            )?;
            let deb = package::build(
                copy.root(),
                &second,
                &copy.target_dir().join("debian").join(artifact.host),
                &packaged(artifact),
                &manifest,
            )?;
            let first_deb = out.join(deb.file_name().context("a .deb file name")?);
            reproduce::compare(&first_deb, &deb)?;
            eprintln!(
                "{name}: rebuilt in {} with target directory {}: the same {} bytes, the same \
                 SBOM and the same {}",
                copy.root().display(),
                copy.target_dir().display(),
                bytes.len(),
                first_deb.file_name().unwrap_or_default().to_string_lossy()
            );
        }
    }
    Ok(())
}

/// What the Debian package of `artifact` needs to know of it.
fn packaged(artifact: &Artifact) -> package::Binary<'static> {
    package::Binary {
        host: artifact.host,
        file_name: artifact.file_name(),
        big_endian: artifact.big_endian(),
    }
}

/// Builds `artifact` in the workspace at `root` with `target_dir` as cargo's target
/// directory, checks that it is static and within its size limit, and returns its
/// bytes.
fn build(root: &Path, target_dir: &Path, artifact: &Artifact) -> Result<Vec<u8>> {
    let target = artifact.target;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(&cargo)
        .current_dir(root)
        .env("CARGO_TARGET_DIR", target_dir)
        .env(COMPRESSION_ENV, Compression::Release.name())
        .args([
            "build",
            "--release",
            "--locked",
            "--package",
            "binfmt",
            "--target",
        ])
        .arg(target)
        .args(remap_registry_paths(target)?)
        .status()
        .with_context(|| format!("running {cargo} build for {target}"))?;
    if !status.success() {
        return Err(anyhow!(
            "cargo build --release --target {target} failed ({status})"
        ));
    }
    let built = target_dir.join(target).join("release").join("binfmt");
    let bytes = fs::read(&built).with_context(|| format!("reading {}", built.display()))?;
    check_static_elf(&bytes, artifact.arch().elf_machine, artifact.big_endian())
        .map_err(|reason| anyhow!("{}: {reason}", built.display()))?;
    if bytes.len() as u64 > artifact.max_size {
        return Err(anyhow!(
            "{} is {}, more than the {} the {} release binary may be: see what grew \
             with `cargo bloat` or the embedded emulators' sizes above",
            built.display(),
            megabytes(bytes.len() as u64),
            megabytes(artifact.max_size),
            artifact.host
        ));
    }
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
    let cargo_home = absolute_env("CARGO_HOME")
        .or_else(|| absolute_env("HOME").map(|home| home.join(".cargo")))
        .context("neither $CARGO_HOME nor $HOME is an absolute path")?;
    let registry = cargo_home.join("registry").join("src");
    let registry = registry
        .to_str()
        .with_context(|| format!("{} is not UTF-8", registry.display()))?;
    // A JSON string is a valid TOML basic string.
    let flag = serde_json::to_string(&format!(
        "--remap-path-prefix={registry}=/cargo/registry/src"
    ))?;
    Ok(vec![
        "--config".to_owned(),
        format!("target.{target}.rustflags=[{flag}]"),
    ])
}

/// Fails with the fix when the cross compiler that links a glibc target is missing.
fn check_cross_gcc(target: &str, gcc: &str, packages: &str) -> Result<()> {
    match Command::new(gcc).arg("--version").output() {
        Ok(output) if output.status.success() => Ok(()),
        _ => Err(anyhow!(
            "{gcc}, which links the static glibc build for {target} (.cargo/config.toml), \
             does not run: install it with `apt-get install {packages}`"
        )),
    }
}

/// Fails with the fix when rustup has not installed the standard library for `target`.
fn check_target_installed(target: &str) -> Result<()> {
    let output = Command::new("rustc")
        .args(["--print", "target-libdir", "--target", target])
        .output()
        .with_context(|| "running rustc --print target-libdir".to_owned())?;
    let libdir = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if output.status.success() && Path::new(&libdir).is_dir() {
        Ok(())
    } else {
        Err(anyhow!(
            "the Rust standard library for {target} is not installed: run \
             `rustup target add {target}`"
        ))
    }
}

/// Writes `bytes` to a temporary file next to `path` and renames it into place, so a
/// reader (a `docker build` running meanwhile) never sees half a binary.
fn write_replacing(path: &Path, bytes: &[u8], executable: bool) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let temporary = path.with_extension("tmp");
    fs::write(&temporary, bytes).with_context(|| format!("writing {}", temporary.display()))?;
    let mode = if executable { 0o755 } else { 0o644 };
    fs::set_permissions(&temporary, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", temporary.display()))?;
    fs::rename(&temporary, path).with_context(|| format!("renaming into {}", path.display()))
}

/// ELF constants from `include/uapi/linux/elf.h`.
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;

/// Checks that `elf` is a 64-bit ELF executable for `machine`, big-endian if
/// `big_endian` and little-endian otherwise, that needs nothing at run time: no
/// program interpreter (`PT_INTERP`, the dynamic loader) and no shared library
/// (`DT_NEEDED`). A static-pie binary has a dynamic section for its own relocations,
/// which is fine.
pub fn check_static_elf(elf: &[u8], machine: u16, big_endian: bool) -> Result<(), String> {
    let bytes = |at: usize, buf: &mut [u8; 8], len: usize| -> Option<()> {
        let field = elf.get(at..at + len)?;
        buf[..len].copy_from_slice(field);
        if big_endian {
            buf[..len].reverse();
        }
        Some(())
    };
    let u16_at = |at: usize| {
        let mut buf = [0; 8];
        bytes(at, &mut buf, 2).map(|()| u16::from_le_bytes([buf[0], buf[1]]))
    };
    let u32_at = |at: usize| {
        let mut buf = [0; 8];
        bytes(at, &mut buf, 4).map(|()| u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]))
    };
    let u64_at = |at: usize| {
        let mut buf = [0; 8];
        bytes(at, &mut buf, 8).map(|()| u64::from_le_bytes(buf))
    };
    let truncated = || "truncated ELF file".to_owned();
    let (data, order) = if big_endian {
        (2, "big-endian")
    } else {
        (1, "little-endian")
    };
    if elf.get(..6) != Some(&[0x7f, b'E', b'L', b'F', 2, data][..]) {
        return Err(format!("not a 64-bit {order} ELF file"));
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

    #[test]
    fn every_artifact_is_of_a_host_of_the_table_in_its_order() {
        let hosts: Vec<&str> = ARTIFACTS.iter().map(|artifact| artifact.host).collect();
        let table: Vec<&str> = arch_table::HOSTS.iter().map(|host| host.name).collect();
        assert_eq!(hosts, table);
        let platforms: Vec<&str> = ARTIFACTS.iter().map(Artifact::platform).collect();
        assert_eq!(
            platforms,
            [
                "linux/amd64",
                "linux/arm64",
                "linux/ppc64le",
                "linux/s390x",
                "linux/riscv64"
            ]
        );
        let machines: Vec<(u16, bool)> = ARTIFACTS
            .iter()
            .map(|artifact| (artifact.arch().elf_machine, artifact.big_endian()))
            .collect();
        assert_eq!(
            machines,
            [
                (62, false),
                (183, false),
                (21, false),
                (22, true),
                (243, false)
            ]
        );
    }

    /// The smallest little-endian ELF header with `phnum` program headers of the given
    /// types.
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
        check_static_elf(&elf(62, &[(1, 0, 0)], &[]), 62, false).unwrap();
        // static-pie: a dynamic section with relocations, no DT_NEEDED.
        check_static_elf(
            &elf(183, &[(PT_DYNAMIC, 0, 0)], &[(7, 0), (DT_NULL, 0)]),
            183,
            false,
        )
        .unwrap();
    }

    #[test]
    fn dynamic_binaries_and_wrong_machines_fail() {
        let interp = check_static_elf(&elf(62, &[(PT_INTERP, 0, 0)], &[]), 62, false).unwrap_err();
        assert!(interp.contains("PT_INTERP"), "{interp}");
        let needed = elf(62, &[(PT_DYNAMIC, 0, 0)], &[(DT_NEEDED, 1), (DT_NULL, 0)]);
        assert!(
            check_static_elf(&needed, 62, false)
                .unwrap_err()
                .contains("DT_NEEDED")
        );
        assert!(
            check_static_elf(&elf(62, &[], &[]), 183, false)
                .unwrap_err()
                .contains("machine 62")
        );
        assert!(check_static_elf(b"#!/bin/sh\n", 62, false).is_err());
        assert!(check_static_elf(&elf(62, &[(1, 0, 0)], &[])[..70], 62, false).is_err());
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
        let error = check_static_elf(&me, machine, false).unwrap_err();
        assert!(error.contains("PT_INTERP"), "{error}");
    }

    /// The same header, big-endian (every field byte-swapped), as s390x writes it.
    fn big_endian_elf(
        machine: u16,
        headers: &[(u32, u64, u64)],
        dynamic: &[(u64, u64)],
    ) -> Vec<u8> {
        let mut file = elf(machine, headers, dynamic);
        file[5] = 2;
        for (at, len) in [(18, 2), (32, 8), (54, 2), (56, 2)] {
            file[at..at + len].reverse();
        }
        for index in 0..headers.len() {
            let header = 64 + 56 * index;
            for (at, len) in [(0, 4), (8, 8), (32, 8)] {
                file[header + at..header + at + len].reverse();
            }
        }
        let dynamic_at = 64 + 56 * headers.len();
        for at in (dynamic_at..file.len()).step_by(8) {
            file[at..at + 8].reverse();
        }
        file
    }

    #[test]
    fn big_endian_binaries_are_read_in_their_byte_order() {
        check_static_elf(&big_endian_elf(22, &[(1, 0, 0)], &[]), 22, true).unwrap();
        let needed = big_endian_elf(22, &[(PT_DYNAMIC, 0, 0)], &[(DT_NEEDED, 1), (DT_NULL, 0)]);
        assert!(
            check_static_elf(&needed, 22, true)
                .unwrap_err()
                .contains("DT_NEEDED")
        );
        let interp = big_endian_elf(22, &[(PT_INTERP, 0, 0)], &[]);
        assert!(
            check_static_elf(&interp, 22, true)
                .unwrap_err()
                .contains("PT_INTERP")
        );
        // Either byte order is refused as the other.
        let little = check_static_elf(&elf(22, &[], &[]), 22, true).unwrap_err();
        assert!(little.contains("big-endian"), "{little}");
        let big = check_static_elf(&big_endian_elf(22, &[], &[]), 22, false).unwrap_err();
        assert!(big.contains("little-endian"), "{big}");
        assert!(
            check_static_elf(&big_endian_elf(22, &[], &[]), 21, true)
                .unwrap_err()
                .contains("machine 22")
        );
    }
}
