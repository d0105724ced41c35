//! The pin manifest of the embedded QEMU emulators, and where their blobs are cached.
//!
//! binfmt embeds unmodified QEMU user-mode emulators taken from Debian's `qemu-user`
//! binary package. `qemu-blobs/pins.toml` ([`MANIFEST_PATH`]) pins, for each host
//! architecture binfmt is built for, the exact `.deb` (pool path, size, sha256) and every
//! emulator inside it (path, size, sha256). `cargo xtask pin` writes the manifest with
//! [`Manifest::to_toml`]; `cargo xtask fetch` downloads the pinned packages and fills the
//! [`BlobCache`]; the build script of `qemu-catalog` reads both to embed the emulators.
//!
//! The cache is content addressed: an emulator's blob is named after the sha256 of the
//! *uncompressed* emulator, so a blob can be checked against its pin without knowing
//! where it came from, and several pins (hosts, versions) can share one cache.
//!
//! Architecture invariant: this crate does no I/O beyond reading the manifest file and
//! the environment; downloading, extracting and compressing live in xtask.

#![forbid(unsafe_code)]

use std::collections::HashSet;
use std::ffi::OsString;
use std::fmt;
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Where the manifest lives, relative to the workspace root.
pub const MANIFEST_PATH: &str = "qemu-blobs/pins.toml";

/// Environment variable that overrides the blob cache directory (an absolute path).
pub const BLOB_CACHE_ENV: &str = "BINFMT_BLOB_CACHE";

/// Every environment variable [`BlobCache::from_env`] reads, in order of precedence.
///
/// A build script that calls [`BlobCache::from_env`] should print
/// `cargo::rerun-if-env-changed=<var>` for each of them.
pub const CACHE_ENV_VARS: &[&str] = &[BLOB_CACHE_ENV, "XDG_CACHE_HOME", "HOME"];

/// The largest zstd window (log2) a blob may need (a patched part's spans the reference
/// and the part, ~25 MB): xtask makes every blob within it, qemu-catalog's build script
/// checks each against it and hands it to the binary's decoder, which accepts no more.
pub const ZSTD_WINDOW_LOG_MAX: u32 = 27;

/// What to tell the user when the manifest itself is wrong.
const REPIN_HINT: &str = "regenerate it with `cargo xtask pin` instead of editing it by hand";

/// The whole pin manifest: one Debian source version, one binary package per host.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The Debian source package all pinned binary packages were built from.
    pub source: Source,
    /// One entry per host architecture binfmt is built for (TOML `[[host]]`).
    #[serde(rename = "host", default)]
    pub hosts: Vec<Host>,
}

/// The Debian source package the emulators were built from; this is what a user needs
/// to obtain the matching source code (GPL-2.0).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// Debian suite the packages were taken from, e.g. `trixie`.
    pub suite: String,
    /// Debian source package name, e.g. `qemu`.
    pub source_package: String,
    /// Full Debian version, e.g. `1:10.0.13+ds-0+deb13u1`.
    pub version: String,
}

/// The pinned binary package for one host architecture.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Host {
    /// Host architecture in Rust's `target_arch` spelling: `x86_64` or `aarch64`.
    pub arch: String,
    /// The same architecture in Debian's spelling: `amd64` or `arm64`.
    pub debian_arch: String,
    /// Debian binary package name, e.g. `qemu-user`.
    pub package: String,
    /// Path of the `.deb` below the mirror root, e.g. `pool/main/q/qemu/qemu-user_..._amd64.deb`.
    pub pool_path: String,
    /// Size of the `.deb` in bytes.
    pub size: u64,
    /// sha256 of the `.deb`, 64 lowercase hex digits.
    pub sha256: String,
    /// The emulators taken from this package (TOML `[[host.emulator]]`).
    #[serde(rename = "emulator", default)]
    pub emulators: Vec<Emulator>,
}

/// One pinned emulator binary inside a host's package.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Emulator {
    /// OCI architecture name (`--platform linux/<oci>`), e.g. `arm64`.
    pub oci: String,
    /// QEMU cpu name, e.g. `aarch64`; the emulator is `qemu-<cpu>`.
    pub cpu: String,
    /// Path inside the package's data archive, without a leading `./`,
    /// e.g. `usr/bin/qemu-aarch64`.
    pub path: String,
    /// Size of the uncompressed emulator in bytes.
    pub size: u64,
    /// sha256 of the uncompressed emulator, 64 lowercase hex digits.
    pub sha256: String,
}

/// The QEMU cpus each host architecture runs natively (Rust `target_arch` name first).
///
/// A binary built for a host never embeds or registers these: an emulator registered
/// for the host's own architecture would take over every native program. Mirrors
/// `qemu_catalog::Arch::native()`; a test in that crate checks the two agree.
pub const NATIVE_CPUS: &[(&str, &[&str])] =
    &[("x86_64", &["x86_64", "i386"]), ("aarch64", &["aarch64"])];

/// The emulator every other embedded emulator of a host is compressed against (see
/// [`BlobCache::embedded_path`]): the architecture installed alone most often, so that
/// `--install` of that one decodes a single blob. arm64 on x86_64 hosts (cross-building
/// for Graviton, Ampere and Apple silicon), amd64 on aarch64 hosts.
pub const REFERENCE_CPUS: &[(&str, &str)] = &[("x86_64", "aarch64"), ("aarch64", "x86_64")];

impl Host {
    /// The emulators a binary built for this host embeds: every pinned one except the
    /// host's own architectures ([`NATIVE_CPUS`]). Empty for a host binfmt does not
    /// run on.
    pub fn embedded(&self) -> Vec<&Emulator> {
        let Some((_, native)) = NATIVE_CPUS.iter().find(|(arch, _)| *arch == self.arch) else {
            return Vec::new();
        };
        self.emulators
            .iter()
            .filter(|emulator| !native.contains(&emulator.cpu.as_str()))
            .collect()
    }

    /// The embedded emulator the others are compressed against ([`REFERENCE_CPUS`]),
    /// or `None` when this host has none pinned.
    pub fn reference(&self) -> Option<&Emulator> {
        let (_, cpu) = REFERENCE_CPUS.iter().find(|(arch, _)| *arch == self.arch)?;
        self.embedded()
            .into_iter()
            .find(|emulator| emulator.cpu == *cpu)
    }
}

impl Source {
    /// The upstream QEMU version: the Debian version without its epoch and without
    /// everything from the first `+` or `-` (`1:10.0.13+ds-0+deb13u1` gives `10.0.13`).
    pub fn upstream_version(&self) -> &str {
        let version = self.version.as_str();
        let version = version.split_once(':').map_or(version, |(_, rest)| rest);
        let end = version.find(['+', '-']).unwrap_or(version.len());
        &version[..end]
    }
}

impl Manifest {
    /// Parses and validates a manifest.
    ///
    /// Besides the TOML schema, this checks that digests are 64 lowercase hex digits,
    /// sizes are non-zero, paths are relative and free of `.`/`..`/empty components,
    /// names use the characters Debian and QEMU use, host arches are unique and each
    /// host's emulators have unique cpus and OCI names.
    pub fn parse(text: &str) -> Result<Manifest, Error> {
        let manifest: Manifest = toml::from_str(text).map_err(|source| Error::Syntax {
            path: None,
            message: source.to_string(),
        })?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// Reads and parses the manifest at `path`; errors name the file.
    pub fn load(path: &Path) -> Result<Manifest, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Manifest::parse(&text).map_err(|err| err.in_file(path))
    }

    /// The manifest as TOML, with a comment header saying where it comes from.
    ///
    /// The output is stable: `Manifest::parse(&m.to_toml()) == Ok(m)` for every valid
    /// manifest, and the same manifest always gives the same bytes, so a test can tell
    /// a hand-edited or stale file from a generated one.
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        let s = &self.source;
        // `write!` to a String cannot fail.
        let _ = write!(
            out,
            "\
# Generated by `cargo xtask pin`: do not edit by hand, re-run it instead.
#
# Pins the QEMU user-mode emulators that binfmt embeds: for each host architecture,
# Debian's binary package (pool path, size and sha256 of the .deb, from suite {suite})
# and every emulator inside it (size and sha256 of the uncompressed file). They are
# unmodified builds of QEMU {upstream}, from Debian source package {package} version
# {version} (GPL-2.0, see README.md and COPYING next to this file).
#
# Checked by `cargo xtask fetch` (the .deb and each extracted emulator), by the
# build script of qemu-catalog (each cached blob before it is embedded) and by
# binfmt at run time (each emulator before it is written out).

[source]
suite = {suite_q}
source_package = {package_q}
version = {version_q}
",
            // Comments end at a newline: escape control characters in them.
            suite = s.suite.escape_debug(),
            upstream = s.upstream_version().escape_debug(),
            package = s.source_package.escape_debug(),
            version = s.version.escape_debug(),
            suite_q = quote(&s.suite),
            package_q = quote(&s.source_package),
            version_q = quote(&s.version),
        );
        for host in &self.hosts {
            let _ = write!(
                out,
                "
[[host]]
arch = {}
debian_arch = {}
package = {}
pool_path = {}
size = {}
sha256 = {}
",
                quote(&host.arch),
                quote(&host.debian_arch),
                quote(&host.package),
                quote(&host.pool_path),
                host.size,
                quote(&host.sha256),
            );
            for emulator in &host.emulators {
                let _ = write!(
                    out,
                    "
[[host.emulator]]
oci = {}
cpu = {}
path = {}
size = {}
sha256 = {}
",
                    quote(&emulator.oci),
                    quote(&emulator.cpu),
                    quote(&emulator.path),
                    emulator.size,
                    quote(&emulator.sha256),
                );
            }
        }
        out
    }

    /// The pinned package for a host, by Rust `target_arch` name (`x86_64`, `aarch64`).
    pub fn host(&self, arch: &str) -> Option<&Host> {
        self.hosts.iter().find(|host| host.arch == arch)
    }

    fn validate(&self) -> Result<(), Error> {
        let s = &self.source;
        check_name("source.suite", &s.suite, is_name_char)?;
        check_name("source.source_package", &s.source_package, is_package_char)?;
        check_name("source.version", &s.version, is_version_char)?;
        if s.upstream_version().is_empty() {
            return Err(invalid(
                "source.version",
                format!("{:?} has no upstream version", s.version),
            ));
        }
        if self.hosts.is_empty() {
            return Err(invalid("host", "no [[host]] is pinned".to_string()));
        }
        let mut arches = HashSet::new();
        for (i, host) in self.hosts.iter().enumerate() {
            let at = format!("host[{i}]");
            check_name(&format!("{at}.arch"), &host.arch, is_name_char)?;
            if !arches.insert(host.arch.as_str()) {
                return Err(invalid(
                    &format!("{at}.arch"),
                    format!("host arch {:?} is pinned twice", host.arch),
                ));
            }
            let at = format!("host[{}]", host.arch);
            check_name(
                &format!("{at}.debian_arch"),
                &host.debian_arch,
                is_name_char,
            )?;
            check_name(&format!("{at}.package"), &host.package, is_package_char)?;
            check_relative_path(&format!("{at}.pool_path"), &host.pool_path)?;
            if !host.pool_path.ends_with(".deb") {
                return Err(invalid(
                    &format!("{at}.pool_path"),
                    format!("{:?} does not name a .deb", host.pool_path),
                ));
            }
            check_size(&format!("{at}.size"), host.size)?;
            check_sha256(&format!("{at}.sha256"), &host.sha256)?;
            if host.emulators.is_empty() {
                return Err(invalid(
                    &format!("{at}.emulator"),
                    "no [[host.emulator]] is pinned".to_string(),
                ));
            }
            let mut cpus = HashSet::new();
            let mut ocis = HashSet::new();
            for (j, emulator) in host.emulators.iter().enumerate() {
                let at = format!("{at}.emulator[{j}]");
                check_name(&format!("{at}.cpu"), &emulator.cpu, is_name_char)?;
                if !cpus.insert(emulator.cpu.as_str()) {
                    return Err(invalid(
                        &format!("{at}.cpu"),
                        format!("cpu {:?} is pinned twice for this host", emulator.cpu),
                    ));
                }
                let at = format!("host[{}].emulator[{}]", host.arch, emulator.cpu);
                check_name(&format!("{at}.oci"), &emulator.oci, is_name_char)?;
                if !ocis.insert(emulator.oci.as_str()) {
                    return Err(invalid(
                        &format!("{at}.oci"),
                        format!("oci arch {:?} is pinned twice for this host", emulator.oci),
                    ));
                }
                check_relative_path(&format!("{at}.path"), &emulator.path)?;
                check_size(&format!("{at}.size"), emulator.size)?;
                check_sha256(&format!("{at}.sha256"), &emulator.sha256)?;
            }
        }
        Ok(())
    }
}

/// A TOML basic string. Validated fields never need escapes, but `to_toml` must produce
/// valid TOML for any value, so escape what TOML requires.
fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn invalid(field: &str, problem: String) -> Error {
    Error::Invalid {
        path: None,
        field: field.to_string(),
        problem,
    }
}

/// Suites, architectures, cpu and OCI names: `trixie`, `x86_64`, `mips64le`.
fn is_name_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-'
}

/// Debian package names (Debian Policy 5.6.1).
fn is_package_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '-' | '.')
}

/// Debian versions (Debian Policy 5.6.12).
fn is_version_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-' | '~' | ':')
}

fn check_name(field: &str, value: &str, allowed: fn(char) -> bool) -> Result<(), Error> {
    if value.is_empty() {
        return Err(invalid(field, "is empty".to_string()));
    }
    if let Some(c) = value.chars().find(|&c| !allowed(c)) {
        return Err(invalid(
            field,
            format!("{value:?} contains the character {c:?}"),
        ));
    }
    Ok(())
}

fn check_relative_path(field: &str, value: &str) -> Result<(), Error> {
    if value.is_empty() {
        return Err(invalid(field, "is empty".to_string()));
    }
    if value.starts_with('/') {
        return Err(invalid(
            field,
            format!("{value:?} is absolute, expected a relative path"),
        ));
    }
    if value.chars().any(|c| c.is_control() || c == '\\') {
        return Err(invalid(
            field,
            format!("{value:?} contains a control character or backslash"),
        ));
    }
    if let Some(part) = value
        .split('/')
        .find(|part| part.is_empty() || *part == "." || *part == "..")
    {
        return Err(invalid(
            field,
            format!("{value:?} has a {part:?} component, expected a plain relative path"),
        ));
    }
    Ok(())
}

fn check_size(field: &str, size: u64) -> Result<(), Error> {
    if size == 0 {
        return Err(invalid(
            field,
            "is 0, expected the size in bytes".to_string(),
        ));
    }
    Ok(())
}

fn check_sha256(field: &str, value: &str) -> Result<(), Error> {
    let is_hex = value
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if value.len() != 64 || !is_hex {
        return Err(invalid(
            field,
            format!("{value:?} is not a sha256 digest (64 lowercase hex digits)"),
        ));
    }
    Ok(())
}

/// The directory holding compressed emulator blobs, outside the repository.
///
/// Layout: `<root>/emulators/<sha256 of the uncompressed emulator>.zst`, each file one
/// zstd frame of one emulator on its own (what is fetched and checked), and
/// `<root>/embedded/...`, the emulators in the form the binary embeds them
/// ([`BlobCache::embedded_path`]). Nothing else in the cache is relied upon; temporary
/// files of interrupted runs may be left next to the blobs and can be deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobCache {
    root: PathBuf,
}

impl BlobCache {
    /// The cache named by the environment: `$BINFMT_BLOB_CACHE`, else
    /// `$XDG_CACHE_HOME/binfmt/qemu-blobs`, else `$HOME/.cache/binfmt/qemu-blobs`.
    ///
    /// Only absolute paths are accepted: build scripts run in their package's directory
    /// and xtask in the caller's, so a relative path would name two different caches.
    /// A relative `$XDG_CACHE_HOME` is ignored, as the XDG base directory spec says.
    pub fn from_env() -> Result<BlobCache, Error> {
        BlobCache::from_vars(|name| std::env::var_os(name))
    }

    fn from_vars(var: impl Fn(&str) -> Option<OsString>) -> Result<BlobCache, Error> {
        let set = |name: &str| {
            var(name)
                .filter(|value| !value.is_empty())
                .map(PathBuf::from)
        };
        if let Some(root) = set(BLOB_CACHE_ENV) {
            if root.is_relative() {
                return Err(Error::CacheDir {
                    problem: format!("${BLOB_CACHE_ENV} is the relative path {}", root.display()),
                });
            }
            return Ok(BlobCache::at(root));
        }
        if let Some(xdg) = set("XDG_CACHE_HOME").filter(|path| path.is_absolute()) {
            return Ok(BlobCache::at(xdg.join("binfmt/qemu-blobs")));
        }
        match set("HOME") {
            Some(home) if home.is_absolute() => {
                Ok(BlobCache::at(home.join(".cache/binfmt/qemu-blobs")))
            }
            Some(home) => Err(Error::CacheDir {
                problem: format!("$HOME is the relative path {}", home.display()),
            }),
            None => Err(Error::CacheDir {
                problem: format!("none of ${BLOB_CACHE_ENV}, $XDG_CACHE_HOME and $HOME is set"),
            }),
        }
    }

    /// A cache rooted at `root`.
    pub fn at(root: PathBuf) -> BlobCache {
        BlobCache { root }
    }

    /// The cache's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the compressed blob of `emulator` lives: `<root>/emulators/<sha256>.zst`.
    pub fn compressed_path(&self, emulator: &Emulator) -> PathBuf {
        self.root
            .join("emulators")
            .join(format!("{}.zst", emulator.sha256))
    }

    /// Where `emulator` is cached in the form the binary embeds it:
    /// `<root>/embedded/<sha256>.zst` for a host's reference emulator, and
    /// `<root>/embedded/<sha256>.from-<sha256 of the reference>.zst` for the others,
    /// compressed against the reference's bytes (a zstd prefix, what `zstd
    /// --patch-from` does). Either is a few zstd frames, each a consecutive part of
    /// the emulator; xtask's `blob` module says why.
    pub fn embedded_path(&self, emulator: &Emulator, reference: Option<&Emulator>) -> PathBuf {
        let name = match reference {
            Some(reference) => format!("{}.from-{}.zst", emulator.sha256, reference.sha256),
            None => format!("{}.zst", emulator.sha256),
        };
        self.root.join("embedded").join(name)
    }
}

/// The sha256 of `bytes` as 64 lowercase hex digits, the spelling used in the manifest.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Why the manifest or the cache directory cannot be used.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The manifest file cannot be read.
    Read {
        /// The manifest file.
        path: PathBuf,
        /// What reading it returned.
        source: io::Error,
    },
    /// The manifest is not TOML or does not match the schema.
    Syntax {
        /// The manifest file, when it was loaded from one.
        path: Option<PathBuf>,
        /// The TOML parser's message, with line and column.
        message: String,
    },
    /// A field of the manifest has a value that cannot be right.
    Invalid {
        /// The manifest file, when it was loaded from one.
        path: Option<PathBuf>,
        /// Which field, e.g. `host[x86_64].emulator[aarch64].sha256`.
        field: String,
        /// What is wrong with its value.
        problem: String,
    },
    /// No cache directory can be determined from the environment.
    CacheDir {
        /// Which variables are missing or unusable.
        problem: String,
    },
}

impl Error {
    fn in_file(self, file: &Path) -> Error {
        match self {
            Error::Syntax { message, .. } => Error::Syntax {
                path: Some(file.to_path_buf()),
                message,
            },
            Error::Invalid { field, problem, .. } => Error::Invalid {
                path: Some(file.to_path_buf()),
                field,
                problem,
            },
            other => other,
        }
    }
}

fn manifest_name(path: &Option<PathBuf>) -> String {
    match path {
        Some(path) => format!("pin manifest {}", path.display()),
        None => "pin manifest".to_string(),
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Read { path, source } if source.kind() == io::ErrorKind::NotFound => write!(
                f,
                "pin manifest {} does not exist: create it with `cargo xtask pin`",
                path.display()
            ),
            Error::Read { path, source } => {
                write!(f, "cannot read pin manifest {}: {source}", path.display())
            }
            Error::Syntax { path, message } => write!(
                f,
                "{}: cannot parse it ({REPIN_HINT}): {}",
                manifest_name(path),
                message.trim_end()
            ),
            Error::Invalid {
                path,
                field,
                problem,
            } => write!(
                f,
                "{}: field {field}: {problem} ({REPIN_HINT})",
                manifest_name(path)
            ),
            Error::CacheDir { problem } => write!(
                f,
                "cannot determine the emulator blob cache directory: {problem}; \
                 set ${BLOB_CACHE_ENV} to an absolute path"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Read { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST_A: &str = "ca6ede739327a20ae5a3498230c8a3a9a072c586e131bc6bcc1201eb1725e336";
    const DIGEST_B: &str = "c73711af02b97cd5e2667e735d9c06890c57165517110ca4e646c95a7083158d";

    fn emulator(oci: &str, cpu: &str) -> Emulator {
        Emulator {
            oci: oci.to_string(),
            cpu: cpu.to_string(),
            path: format!("usr/bin/qemu-{cpu}"),
            size: 15_000_000,
            sha256: DIGEST_B.to_string(),
        }
    }

    fn sample() -> Manifest {
        let host = |arch: &str, debian_arch: &str| Host {
            arch: arch.to_string(),
            debian_arch: debian_arch.to_string(),
            package: "qemu-user".to_string(),
            pool_path: format!("pool/main/q/qemu/qemu-user_10.0.13+ds-0+deb13u1_{debian_arch}.deb"),
            size: 71_000_000,
            sha256: DIGEST_A.to_string(),
            emulators: vec![
                emulator("arm64", "aarch64"),
                emulator("mips64le", "mips64el"),
            ],
        };
        Manifest {
            source: Source {
                suite: "trixie".to_string(),
                source_package: "qemu".to_string(),
                version: "1:10.0.13+ds-0+deb13u1".to_string(),
            },
            hosts: vec![host("x86_64", "amd64"), host("aarch64", "arm64")],
        }
    }

    /// Applies `edit` to the sample, serialises it and returns the parse error.
    fn error_after(edit: impl FnOnce(&mut Manifest)) -> String {
        let mut manifest = sample();
        edit(&mut manifest);
        match Manifest::parse(&manifest.to_toml()) {
            Ok(_) => panic!("manifest was accepted: {manifest:#?}"),
            Err(err) => err.to_string(),
        }
    }

    fn assert_contains(haystack: &str, needles: &[&str]) {
        for needle in needles {
            assert!(
                haystack.contains(needle),
                "{needle:?} missing in: {haystack}"
            );
        }
    }

    #[test]
    fn round_trips_through_toml() {
        let manifest = sample();
        let text = manifest.to_toml();
        assert_eq!(Manifest::parse(&text).unwrap(), manifest);
        assert_eq!(Manifest::parse(&text).unwrap().to_toml(), text);
    }

    #[test]
    fn toml_has_header_and_readable_tables() {
        let text = sample().to_toml();
        assert!(text.starts_with("# Generated by `cargo xtask pin`"));
        assert_contains(
            &text,
            &[
                "QEMU 10.0.13",
                "source package qemu version\n# 1:10.0.13+ds-0+deb13u1",
                "\n[source]\nsuite = \"trixie\"\n",
                "\n[[host]]\narch = \"x86_64\"\n",
                "\n[[host.emulator]]\noci = \"arm64\"\ncpu = \"aarch64\"\n",
                "size = 15000000\n",
            ],
        );
    }

    #[test]
    fn quote_escapes_what_toml_requires() {
        assert_eq!(quote("a\"b\\c\n\u{1}"), r#""a\"b\\c\n\u0001""#);
        let mut manifest = sample();
        manifest.source.suite = "we\"ird\\\n".to_string();
        // Not a valid suite, but still valid TOML that the parser rejects by field.
        assert_contains(
            &Manifest::parse(&manifest.to_toml())
                .unwrap_err()
                .to_string(),
            &["source.suite", "contains the character '\"'"],
        );
    }

    #[test]
    fn host_lookup() {
        let manifest = sample();
        assert_eq!(manifest.host("aarch64").unwrap().debian_arch, "arm64");
        assert!(manifest.host("riscv64").is_none());
    }

    #[test]
    fn upstream_version_strips_epoch_and_debian_parts() {
        let source = |version: &str| Source {
            suite: "trixie".to_string(),
            source_package: "qemu".to_string(),
            version: version.to_string(),
        };
        assert_eq!(
            source("1:10.0.13+ds-0+deb13u1").upstream_version(),
            "10.0.13"
        );
        assert_eq!(source("10.0.13-1").upstream_version(), "10.0.13");
        assert_eq!(source("2:9.2.0~rc1+ds-1").upstream_version(), "9.2.0~rc1");
        assert_eq!(source("8.2.2").upstream_version(), "8.2.2");
    }

    #[test]
    fn rejects_bad_digests() {
        let err = error_after(|m| m.hosts[0].sha256 = DIGEST_A.to_uppercase());
        assert_contains(
            &err,
            &["host[x86_64].sha256", "64 lowercase hex", "cargo xtask pin"],
        );
        let err = error_after(|m| m.hosts[1].emulators[1].sha256 = "abc".to_string());
        assert_contains(
            &err,
            &["host[aarch64].emulator[mips64el].sha256", "\"abc\""],
        );
        let err = error_after(|m| m.hosts[1].emulators[0].sha256 = format!("{}g", &DIGEST_A[1..]));
        assert_contains(&err, &["emulator[aarch64].sha256"]);
    }

    #[test]
    fn rejects_duplicate_host_arch() {
        let err = error_after(|m| m.hosts[1].arch = "x86_64".to_string());
        assert_contains(&err, &["host[1].arch", "\"x86_64\" is pinned twice"]);
    }

    #[test]
    fn rejects_duplicate_cpu_and_oci() {
        let err = error_after(|m| m.hosts[0].emulators[1].cpu = "aarch64".to_string());
        assert_contains(
            &err,
            &[
                "host[x86_64].emulator[1].cpu",
                "\"aarch64\" is pinned twice",
            ],
        );
        let err = error_after(|m| m.hosts[0].emulators[1].oci = "arm64".to_string());
        assert_contains(
            &err,
            &["emulator[mips64el].oci", "\"arm64\" is pinned twice"],
        );
    }

    #[test]
    fn rejects_zero_sizes() {
        let err = error_after(|m| m.hosts[0].size = 0);
        assert_contains(&err, &["host[x86_64].size", "is 0"]);
        let err = error_after(|m| m.hosts[0].emulators[0].size = 0);
        assert_contains(&err, &["host[x86_64].emulator[aarch64].size", "is 0"]);
    }

    #[test]
    fn rejects_unsafe_paths() {
        let cases = [
            ("/usr/bin/qemu-aarch64", "is absolute"),
            ("./usr/bin/qemu-aarch64", "\".\" component"),
            ("usr/../../etc/passwd", "\"..\" component"),
            ("usr//bin/qemu-aarch64", "\"\" component"),
            ("usr/bin/", "\"\" component"),
            ("", "is empty"),
        ];
        for (path, problem) in cases {
            let err = error_after(|m| m.hosts[0].emulators[0].path = path.to_string());
            assert_contains(&err, &["host[x86_64].emulator[aarch64].path", problem]);
        }
        let err = error_after(|m| m.hosts[1].pool_path = "../qemu-user.deb".to_string());
        assert_contains(&err, &["host[aarch64].pool_path", "\"..\" component"]);
        let err = error_after(|m| m.hosts[1].pool_path = "pool/qemu-user.tar".to_string());
        assert_contains(&err, &["host[aarch64].pool_path", "does not name a .deb"]);
    }

    #[test]
    fn rejects_bad_names() {
        let err = error_after(|m| m.source.suite = String::new());
        assert_contains(&err, &["source.suite", "is empty"]);
        let err = error_after(|m| m.source.source_package = "Qemu".to_string());
        assert_contains(&err, &["source.source_package", "'Q'"]);
        let err = error_after(|m| m.source.version = "1:10 0".to_string());
        assert_contains(&err, &["source.version", "' '"]);
        let err = error_after(|m| m.source.version = "1:+ds".to_string());
        assert_contains(&err, &["source.version", "no upstream version"]);
        let err = error_after(|m| m.hosts[0].arch = "x86/64".to_string());
        assert_contains(&err, &["host[0].arch", "'/'"]);
        let err = error_after(|m| m.hosts[0].emulators[0].cpu = "AArch64".to_string());
        assert_contains(&err, &["host[x86_64].emulator[0].cpu", "'A'"]);
    }

    #[test]
    fn rejects_empty_lists() {
        let err = error_after(|m| m.hosts.clear());
        assert_contains(&err, &["field host:", "no [[host]]"]);
        let err = error_after(|m| m.hosts[0].emulators.clear());
        assert_contains(&err, &["host[x86_64].emulator", "no [[host.emulator]]"]);
    }

    #[test]
    fn rejects_unknown_and_missing_fields() {
        let text = sample().to_toml().replace("suite = ", "codename = ");
        let err = Manifest::parse(&text).unwrap_err().to_string();
        assert_contains(&err, &["cannot parse it", "codename", "cargo xtask pin"]);
        let text = sample().to_toml().replacen("size = 71000000\n", "", 1);
        let err = Manifest::parse(&text).unwrap_err().to_string();
        assert_contains(&err, &["missing field `size`"]);
    }

    #[test]
    fn load_names_the_file() {
        let dir = std::env::temp_dir().join(format!("qemu-pins-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("pins.toml");
        let err = Manifest::load(&path).unwrap_err().to_string();
        assert_contains(
            &err,
            &[
                &path.display().to_string(),
                "does not exist",
                "cargo xtask pin",
            ],
        );

        std::fs::write(&path, sample().to_toml().replace(DIGEST_A, "00")).unwrap();
        let err = Manifest::load(&path).unwrap_err().to_string();
        assert_contains(&err, &[&path.display().to_string(), "host[x86_64].sha256"]);

        std::fs::write(&path, sample().to_toml()).unwrap();
        assert_eq!(Manifest::load(&path).unwrap(), sample());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn cache_paths_are_content_addressed() {
        let cache = BlobCache::at(PathBuf::from("/var/cache/blobs"));
        assert_eq!(cache.root(), Path::new("/var/cache/blobs"));
        assert_eq!(
            cache.compressed_path(&emulator("arm64", "aarch64")),
            PathBuf::from(format!("/var/cache/blobs/emulators/{DIGEST_B}.zst"))
        );
    }

    #[test]
    fn embedded_paths_name_the_digests() {
        let cache = BlobCache::at(PathBuf::from("/var/cache/blobs"));
        let mut reference = emulator("arm64", "aarch64");
        reference.sha256 = DIGEST_A.to_string();
        assert_eq!(
            cache.embedded_path(&emulator("riscv64", "riscv64"), Some(&reference)),
            PathBuf::from(format!(
                "/var/cache/blobs/embedded/{DIGEST_B}.from-{DIGEST_A}.zst"
            ))
        );
        assert_eq!(
            cache.embedded_path(&reference, None),
            PathBuf::from(format!("/var/cache/blobs/embedded/{DIGEST_A}.zst"))
        );
    }

    #[test]
    fn embedded_leaves_out_the_hosts_own_arches_and_names_the_reference() {
        let mut manifest = sample();
        for host in &mut manifest.hosts {
            host.emulators = ["x86_64", "i386", "aarch64", "riscv64"]
                .iter()
                .map(|cpu| emulator(cpu, cpu))
                .collect();
        }
        let cpus = |host: &Host| -> Vec<String> {
            host.embedded().iter().map(|e| e.cpu.clone()).collect()
        };
        let x86_64 = manifest.host("x86_64").unwrap();
        assert_eq!(cpus(x86_64), ["aarch64", "riscv64"]);
        assert_eq!(x86_64.reference().unwrap().cpu, "aarch64");
        let aarch64 = manifest.host("aarch64").unwrap();
        assert_eq!(cpus(aarch64), ["x86_64", "i386", "riscv64"]);
        assert_eq!(aarch64.reference().unwrap().cpu, "x86_64");

        let mut other = x86_64.clone();
        other.arch = "s390x".to_string();
        assert!(other.embedded().is_empty());
        assert!(other.reference().is_none());
    }

    fn cache_from(vars: &[(&str, &str)]) -> Result<BlobCache, Error> {
        BlobCache::from_vars(|name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| OsString::from(value))
        })
    }

    #[test]
    fn cache_dir_precedence() {
        let all = [
            (BLOB_CACHE_ENV, "/blobs"),
            ("XDG_CACHE_HOME", "/xdg"),
            ("HOME", "/home/me"),
        ];
        assert_eq!(cache_from(&all).unwrap().root(), Path::new("/blobs"));
        assert_eq!(
            cache_from(&all[1..]).unwrap().root(),
            Path::new("/xdg/binfmt/qemu-blobs")
        );
        assert_eq!(
            cache_from(&all[2..]).unwrap().root(),
            Path::new("/home/me/.cache/binfmt/qemu-blobs")
        );
        // Empty and relative XDG values are ignored, as the XDG spec says.
        let vars = [
            (BLOB_CACHE_ENV, ""),
            ("XDG_CACHE_HOME", "rel"),
            ("HOME", "/h"),
        ];
        assert_eq!(
            cache_from(&vars).unwrap().root(),
            Path::new("/h/.cache/binfmt/qemu-blobs")
        );
    }

    #[test]
    fn cache_dir_errors_say_what_to_set() {
        let err = cache_from(&[]).unwrap_err().to_string();
        assert_contains(
            &err,
            &["none of", "set $BINFMT_BLOB_CACHE to an absolute path"],
        );
        let err = cache_from(&[(BLOB_CACHE_ENV, "blobs")])
            .unwrap_err()
            .to_string();
        assert_contains(&err, &["relative path blobs", "set $BINFMT_BLOB_CACHE"]);
        let err = cache_from(&[("HOME", "home")]).unwrap_err().to_string();
        assert_contains(&err, &["$HOME is the relative path home"]);
    }

    #[test]
    fn sha256_hex_is_lowercase() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
