//! `qemu-blobs/kernels.toml`: the Debian packages the real-kernel guests are made of,
//! pinned by sha256, and how they get into the blob cache.
//!
//! Two kinds of package are pinned: a kernel per [`Kernel`] of the matrix (its
//! `linux-image-*` package, and in it the kernel image and the binfmt_misc module),
//! and `busybox-static` per Debian architecture (its one static program, the guests'
//! shell and their foreign programs). Each pin gives the `.deb` (pool path, size,
//! sha256) and every file taken from it (path, size, sha256). The files are kept in
//! the blob cache as they came out of the package, named by their sha256
//! ([`BlobCache::kernel_file_path`]); the `.deb` is deleted once they are stored.
//!
//! [`pin`] (`cargo xtask kernels --pin`) writes the file: for each kernel, the newest
//! version of the flavour that the suite's package index lists AND the mirror serves
//! (the index can name a version the mirror answers 404 for: then the next older one
//! listed is taken). [`ensure_cached`] is what every run does: it checks the cached
//! files and downloads only what is missing, through the same mirror logic as the
//! emulators ([`Mirror`]). A pin the mirror no longer serves, or a kernel of the
//! matrix without a pin, fails with the command that fixes it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::BufReader;
use std::ops::ControlFlow;
use std::path::Path;
use std::time::Instant;

use qemu_pins::BlobCache;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use anyhow::{Context, Result, anyhow};

use crate::blob::TempFile;
use crate::fetch::{Package, download_to, not_found};
use crate::http::{self, HttpError};
use crate::mirror::{MIRROR_ENV, Mirror};
use crate::pin::{Candidate, parse_packages_where};
use crate::version;
use crate::workspace::megabytes;

/// One of Debian's kernel packages.
#[derive(Debug)]
pub struct Kernel {
    /// The suite: `bullseye` (Debian 11), `bookworm` (12), `trixie` (13).
    pub suite: &'static str,
    /// Debian's architecture.
    pub debian_arch: &'static str,
    /// Debian's flavour: the package is `linux-image-<abi>-<flavour>`.
    pub flavour: &'static str,
    /// Whether the package's name ends in `-unsigned` (amd64 and arm64: the signed
    /// one, built from it, differs only in its signature).
    pub unsigned: bool,
    /// The kernel image's name in `/boot`: `vmlinuz`, or `vmlinux` (ppc64el, riscv64).
    pub image: &'static str,
}

impl Kernel {
    /// The kernel release of a binary package of this flavour (`6.1.0-50-amd64` for
    /// `linux-image-6.1.0-50-amd64-unsigned`); `None` for other packages (other
    /// flavours such as `cloud-amd64`, debug symbols, metapackages).
    pub fn release_of(&self, package: &str) -> Option<String> {
        let rest = package.strip_prefix("linux-image-")?;
        let rest = if self.unsigned {
            rest.strip_suffix("-unsigned")?
        } else {
            rest
        };
        let abi = rest.strip_suffix(self.flavour)?.strip_suffix('-')?;
        // `5.10.0-32`, `6.12.117+deb13`: a version, then numbers only.
        let mut parts = abi.split('-');
        let version = parts.next()?;
        let is_version = version.starts_with(|c: char| c.is_ascii_digit())
            && version
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '+');
        let numbers =
            parts.all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_digit()));
        (is_version && numbers).then(|| format!("{abi}-{}", self.flavour))
    }
}

/// Where the pins live, relative to the workspace root.
pub const PINS_PATH: &str = "qemu-blobs/kernels.toml";

/// The command that rewrites [`PINS_PATH`].
pub const PIN_COMMAND: &str = "cargo xtask kernels --pin";

/// The Debian package of the static busybox.
const BUSYBOX_PACKAGE: &str = "busybox-static";
/// Where the program is in it: `usr/bin/busybox`, `bin/busybox` before Debian 13.
const BUSYBOX_PATHS: [&str; 2] = ["usr/bin/busybox", "bin/busybox"];

/// Everything pinned.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pins {
    /// One per kernel of the matrix (TOML `[[kernel]]`).
    #[serde(rename = "kernel", default)]
    pub kernels: Vec<KernelPin>,
    /// One per Debian architecture (TOML `[[busybox]]`).
    #[serde(rename = "busybox", default)]
    pub busyboxes: Vec<BusyboxPin>,
}

/// A pinned kernel package.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelPin {
    /// The suite, e.g. `bookworm`.
    pub suite: String,
    /// Debian's kernel flavour, e.g. `amd64` or `arm64-16k`.
    pub flavour: String,
    /// The kernel image (`boot/vmlinuz-<release>`, `boot/vmlinux-<release>` on ppc64el and
    /// riscv64).
    pub image: PinnedFile,
    /// `binfmt_misc.ko`, or `binfmt_misc.ko.xz` as trixie ships it.
    pub module: PinnedFile,
    /// The package (TOML `[kernel.deb]`).
    pub deb: Deb,
}

/// A pinned `busybox-static` package.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusyboxPin {
    /// The suite.
    pub suite: String,
    /// `usr/bin/busybox` (`bin/busybox` before Debian 13).
    pub binary: PinnedFile,
    /// The package (TOML `[busybox.deb]`).
    pub deb: Deb,
}

/// A `.deb` on the mirror.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deb {
    /// Debian architecture, e.g. `ppc64el`.
    pub debian_arch: String,
    /// The binary package, e.g. `linux-image-6.1.0-50-amd64-unsigned`.
    pub package: String,
    /// Its version.
    pub version: String,
    /// Path below the mirror root.
    pub pool_path: String,
    /// Size in bytes.
    pub size: u64,
    /// sha256, 64 lowercase hex digits.
    pub sha256: String,
}

/// A file taken from a `.deb`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinnedFile {
    /// Its path in the package's data archive, without `./`.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// sha256, 64 lowercase hex digits.
    pub sha256: String,
}

impl Pins {
    /// Reads and checks [`PINS_PATH`] below `root`.
    pub fn load(root: &Path) -> Result<Pins> {
        let path = root.join(PINS_PATH);
        let text = fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read {}: run `{PIN_COMMAND}` to write it",
                path.display()
            )
        })?;
        Pins::parse(&text).with_context(|| format!("{} is not valid", path.display()))
    }

    /// Parses and checks the pins: digests are 64 lowercase hex digits, sizes are not
    /// zero, paths are relative without `..`, nothing is pinned twice.
    pub fn parse(text: &str) -> Result<Pins> {
        let pins: Pins = toml::from_str(text)?;
        let mut seen = Vec::new();
        for kernel in &pins.kernels {
            let at = format!("kernel {} {}", kernel.suite, kernel.flavour);
            if seen.contains(&at) {
                return Err(anyhow!("{at} is pinned twice"));
            }
            check_deb(&at, &kernel.deb)?;
            check_file(&at, &kernel.image)?;
            check_file(&at, &kernel.module)?;
            seen.push(at);
        }
        for busybox in &pins.busyboxes {
            let at = format!("busybox {}", busybox.deb.debian_arch);
            if seen.contains(&at) {
                return Err(anyhow!("{at} is pinned twice"));
            }
            check_deb(&at, &busybox.deb)?;
            check_file(&at, &busybox.binary)?;
            seen.push(at);
        }
        Ok(pins)
    }

    /// The pins as TOML, in the one form [`pin`] writes: the same pins always give
    /// the same bytes, so a test can tell a hand edit from a generated file.
    pub fn to_toml(&self) -> String {
        let mut out = String::from(
            "\
# Generated by `cargo xtask kernels --pin`: do not edit by hand, re-run it instead.
#
# The Debian packages `cargo xtask kernels` boots its guests with: per kernel of the
# matrix, Debian's own kernel package (pool path, size and sha256 of the .deb) and the
# kernel image and binfmt_misc module inside it; per Debian architecture, the static
# busybox of `busybox-static` (the guests' shell, and their foreign programs). Each file
# is checked against its size and sha256 when it is taken from its package and every
# time a guest is built (see README.md next to this file).
",
        );
        let deb = |out: &mut String, table: &str, deb: &Deb| {
            let _ = write!(
                out,
                "\n[{table}.deb]\ndebian_arch = {}\npackage = {}\nversion = {}\npool_path = {}\nsize = {}\nsha256 = {}\n",
                quote(&deb.debian_arch),
                quote(&deb.package),
                quote(&deb.version),
                quote(&deb.pool_path),
                deb.size,
                quote(&deb.sha256),
            );
        };
        let file = |out: &mut String, key: &str, file: &PinnedFile| {
            let _ = writeln!(
                out,
                "{key} = {{ path = {}, size = {}, sha256 = {} }}",
                quote(&file.path),
                file.size,
                quote(&file.sha256)
            );
        };
        for kernel in &self.kernels {
            let _ = write!(
                out,
                "\n[[kernel]]\nsuite = {}\nflavour = {}\n",
                quote(&kernel.suite),
                quote(&kernel.flavour)
            );
            file(&mut out, "image", &kernel.image);
            file(&mut out, "module", &kernel.module);
            deb(&mut out, "kernel", &kernel.deb);
        }
        for busybox in &self.busyboxes {
            let _ = write!(out, "\n[[busybox]]\nsuite = {}\n", quote(&busybox.suite));
            file(&mut out, "binary", &busybox.binary);
            deb(&mut out, "busybox", &busybox.deb);
        }
        out
    }

    /// The pin of `kernel`, or the error that says how to make it.
    pub fn kernel(&self, kernel: &Kernel) -> Result<&KernelPin> {
        self.kernels
            .iter()
            .find(|pin| pin.suite == kernel.suite && pin.flavour == kernel.flavour)
            .ok_or_else(|| {
                anyhow!(
                    "{PINS_PATH} pins no {} kernel of flavour {}: run `{PIN_COMMAND}` and \
                     commit {PINS_PATH}",
                    kernel.suite,
                    kernel.flavour
                )
            })
    }

    /// The pinned busybox of `debian_arch`, or the error that says how to make it.
    pub fn busybox(&self, debian_arch: &str) -> Result<&BusyboxPin> {
        self.busyboxes
            .iter()
            .find(|pin| pin.deb.debian_arch == debian_arch)
            .ok_or_else(|| {
                anyhow!(
                    "{PINS_PATH} pins no busybox for {debian_arch}: run `{PIN_COMMAND}` and \
                     commit {PINS_PATH}"
                )
            })
    }
}

impl KernelPin {
    /// The upstream version (`6.12.107` of `6.12.107-1`) as numbers: `(6, 12)`.
    pub fn major_minor(&self) -> Option<(u32, u32)> {
        let mut parts = self.deb.version.split(['.', '-', '+']);
        Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
    }

    /// `6.12.107`: the version without the Debian revision.
    pub fn upstream_version(&self) -> &str {
        let version = self.deb.version.as_str();
        version
            .rsplit_once('-')
            .map_or(version, |(upstream, _)| upstream)
    }
}

fn check_deb(at: &str, deb: &Deb) -> Result<()> {
    check_path(at, &deb.pool_path)?;
    if !deb.pool_path.ends_with(".deb") {
        return Err(anyhow!("{at}: pool_path {:?} is not a .deb", deb.pool_path));
    }
    check_digest(at, deb.size, &deb.sha256)
}

fn check_file(at: &str, file: &PinnedFile) -> Result<()> {
    check_path(at, &file.path)?;
    check_digest(at, file.size, &file.sha256)
}

fn check_path(at: &str, path: &str) -> Result<()> {
    if path.starts_with('/')
        || path
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return Err(anyhow!(
            "{at}: {path:?} is not a relative path without empty, . or .. parts"
        ));
    }
    Ok(())
}

fn check_digest(at: &str, size: u64, sha256: &str) -> Result<()> {
    if size == 0 {
        return Err(anyhow!("{at}: a size is 0"));
    }
    if sha256.len() != 64
        || !sha256
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(anyhow!(
            "{at}: sha256 {sha256:?} is not 64 lowercase hex digits"
        ));
    }
    Ok(())
}

/// A TOML basic string.
fn quote(value: &str) -> String {
    toml::Value::String(value.to_owned()).to_string()
}

/// Makes sure the blob cache holds every file `debs` pin, valid; downloads (from the
/// mirror `mirror` makes, only when something is missing) and stores what is not.
/// Returns the bytes downloaded.
pub fn ensure_cached(
    cache: &BlobCache,
    mirror: &mut dyn FnMut() -> Result<Mirror>,
    debs: &[(&Deb, Vec<&PinnedFile>)],
) -> Result<u64> {
    let mut downloaded = 0;
    for (deb, files) in debs {
        let missing: Vec<&PinnedFile> = files
            .iter()
            .copied()
            .filter(|file| !is_cached(cache, file))
            .collect();
        if missing.is_empty() {
            continue;
        }
        let mirror = mirror()?;
        let paths: Vec<&str> = missing.iter().map(|file| file.path.as_str()).collect();
        fetch_files(
            &mirror,
            cache,
            deb,
            |path| paths.contains(&path),
            &mut |path, bytes| {
                let file = missing
                    .iter()
                    .find(|file| file.path == path)
                    .context("internal error: an unasked-for file")?;
                store_checked(cache, deb, file, &bytes)
            },
        )
        .map_err(|err| match not_found(&err) {
            Some(err) => gone_from_mirror(err, &mirror, deb),
            None => err,
        })?;
        downloaded += deb.size;
    }
    Ok(downloaded)
}

/// Whether the cache holds `file`, with its size and sha256.
fn is_cached(cache: &BlobCache, file: &PinnedFile) -> bool {
    match fs::read(cache.kernel_file_path(&file.sha256)) {
        Ok(bytes) => bytes.len() as u64 == file.size && sha256_hex(&bytes) == file.sha256,
        Err(_) => false,
    }
}

/// The cached bytes of `file`, checked against its pin.
pub fn read_cached(cache: &BlobCache, file: &PinnedFile) -> Result<Vec<u8>> {
    let path = cache.kernel_file_path(&file.sha256);
    let bytes = fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.len() as u64 != file.size || sha256_hex(&bytes) != file.sha256 {
        return Err(anyhow!(
            "{} is not {} as pinned (size {}, sha256 {}): delete it and run again",
            path.display(),
            file.path,
            file.size,
            file.sha256
        ));
    }
    Ok(bytes)
}

/// Checks `bytes` against `file`'s pin and stores them in the cache, atomically.
fn store_checked(cache: &BlobCache, deb: &Deb, file: &PinnedFile, bytes: &[u8]) -> Result<()> {
    let sha256 = sha256_hex(bytes);
    if bytes.len() as u64 != file.size || sha256 != file.sha256 {
        return Err(anyhow!(
            "{} in {} is not the pinned file: expected {} bytes with sha256 {}, got {} bytes \
             with sha256 {sha256}",
            file.path,
            deb.package,
            file.size,
            file.sha256,
            bytes.len()
        ));
    }
    store(cache, &sha256, bytes)
}

fn store(cache: &BlobCache, sha256: &str, bytes: &[u8]) -> Result<()> {
    let target = cache.kernel_file_path(sha256);
    if let Some(dir) = target.parent() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let temp = TempFile::next_to(&target);
    fs::write(temp.path(), bytes)
        .with_context(|| format!("cannot write {}", temp.path().display()))?;
    temp.persist(&target)
}

/// Downloads `deb` into the cache directory, checks it, and hands the files `wanted`
/// accepts to `found`; the `.deb` is deleted after. A 404 is returned as the
/// [`HttpError`] itself ([`not_found`]).
fn fetch_files(
    mirror: &Mirror,
    cache: &BlobCache,
    deb: &Deb,
    mut wanted: impl FnMut(&str) -> bool,
    found: &mut dyn FnMut(&str, Vec<u8>) -> Result<()>,
) -> Result<()> {
    let file_name = deb.pool_path.rsplit('/').next().unwrap_or(&deb.pool_path);
    fs::create_dir_all(cache.root())
        .with_context(|| format!("cannot create the blob cache {}", cache.root().display()))?;
    // Dropping `temp` deletes the .deb: the cache keeps only the files taken from it.
    let temp = TempFile::next_to(&cache.root().join(file_name));
    let package = Package {
        pool_path: &deb.pool_path,
        size: deb.size,
        sha256: &deb.sha256,
        description: format!("{} {} for {}", deb.package, deb.version, deb.debian_arch),
    };
    download_to(mirror, &package, temp.path())?;
    let start = Instant::now();
    let file = fs::File::open(temp.path())
        .with_context(|| format!("cannot open {}", temp.path().display()))?;
    let mut first_error = None;
    crate::deb::for_each_file_where(
        BufReader::new(file),
        file_name,
        &mut wanted,
        |path, bytes| match found(path, bytes) {
            Ok(()) => Ok(ControlFlow::Continue(())),
            Err(err) => {
                first_error = Some(err);
                Ok(ControlFlow::Break(()))
            }
        },
    )?;
    if let Some(err) = first_error {
        return Err(err);
    }
    eprintln!(
        "took what is needed from {file_name} in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The error for a pinned `.deb` the mirror no longer has.
fn gone_from_mirror(err: &HttpError, mirror: &Mirror, deb: &Deb) -> anyhow::Error {
    anyhow!(
        "{err}: {} {} for {} is gone from the mirror {} (from {}); Debian's regular mirrors \
         drop superseded versions at point releases. Re-pin to what the mirror has now with \
         `{PIN_COMMAND}` (and commit {PINS_PATH}), or set {MIRROR_ENV} to a dated URL of \
         Debian's snapshot archive from a date when this version was current",
        deb.package,
        deb.version,
        deb.debian_arch,
        mirror.base(),
        mirror.origin()
    )
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Pins every kernel of `kernels` and a busybox for each of `busybox_arches` (Debian
/// architecture and suite): the
/// newest version the mirror serves of each, reusing `current`'s pins (and their
/// cached files, without downloading) where they are still the newest.
pub fn pin(
    mirror: &Mirror,
    cache: &BlobCache,
    kernels: &[Kernel],
    busybox_arches: &[(&str, &str)],
    current: Option<&Pins>,
) -> Result<Pins> {
    let mut indexes: BTreeMap<(String, String), Vec<(String, Candidate)>> = BTreeMap::new();
    let mut index = |suite: &str, debian_arch: &str| -> Result<Vec<(String, Candidate)>> {
        let key = (suite.to_owned(), debian_arch.to_owned());
        if let Some(candidates) = indexes.get(&key) {
            return Ok(candidates.clone());
        }
        let candidates = read_index(mirror, suite, debian_arch)?;
        indexes.insert(key, candidates.clone());
        Ok(candidates)
    };
    let mut pins = Pins {
        kernels: Vec::new(),
        busyboxes: Vec::new(),
    };
    for kernel in kernels {
        let candidates: Vec<(String, Candidate)> = index(kernel.suite, kernel.debian_arch)?
            .into_iter()
            .filter(|(name, _)| kernel.release_of(name).is_some())
            .collect();
        let previous = current.and_then(|pins| pins.kernel(kernel).ok());
        let what = format!("{} {} kernel", kernel.suite, kernel.flavour);
        let pinned = pin_newest(mirror, &what, candidates, |name, candidate| {
            if let Some(previous) = previous.filter(|p| p.deb.sha256 == candidate.sha256)
                && is_cached(cache, &previous.image)
                && is_cached(cache, &previous.module)
            {
                return Ok(Some(previous.clone()));
            }
            pin_kernel(mirror, cache, kernel, name, candidate)
        })?;
        eprintln!(
            "{what}: {} {} ({}, image {}, module {})",
            pinned.deb.package,
            pinned.deb.version,
            megabytes(pinned.deb.size),
            megabytes(pinned.image.size),
            pinned.module.path
        );
        pins.kernels.push(pinned);
    }
    for &(debian_arch, suite) in busybox_arches {
        let candidates: Vec<(String, Candidate)> = index(suite, debian_arch)?
            .into_iter()
            .filter(|(name, _)| name == BUSYBOX_PACKAGE)
            .collect();
        let previous = current.and_then(|pins| pins.busybox(debian_arch).ok());
        let what = format!("{suite} {BUSYBOX_PACKAGE} for {debian_arch}");
        let pinned = pin_newest(mirror, &what, candidates, |name, candidate| {
            if let Some(previous) = previous.filter(|p| p.deb.sha256 == candidate.sha256)
                && is_cached(cache, &previous.binary)
            {
                return Ok(Some(previous.clone()));
            }
            let deb = deb_of(debian_arch, name, candidate);
            let mut binary = None;
            let fetched = fetch_files(
                mirror,
                cache,
                &deb,
                |path| BUSYBOX_PATHS.contains(&path),
                &mut |path, bytes| {
                    binary = Some(measure(cache, path, &bytes)?);
                    Ok(())
                },
            );
            if fetched.as_ref().is_err_and(|err| not_found(err).is_some()) {
                return Ok(None);
            }
            fetched?;
            let binary = binary
                .with_context(|| format!("{name} has none of {}", BUSYBOX_PATHS.join(", ")))?;
            Ok(Some(BusyboxPin {
                suite: suite.to_owned(),
                binary,
                deb,
            }))
        })?;
        eprintln!("{what}: {}", pinned.deb.version);
        pins.busyboxes.push(pinned);
    }
    Ok(pins)
}

/// Tries `candidates` from the newest version down until `take` pins one (`None`: the
/// mirror answers 404 for it).
fn pin_newest<T>(
    mirror: &Mirror,
    what: &str,
    mut candidates: Vec<(String, Candidate)>,
    mut take: impl FnMut(&str, &Candidate) -> Result<Option<T>>,
) -> Result<T> {
    candidates.sort_by(|(_, a), (_, b)| version::compare(&b.version, &a.version));
    let mut not_served = Vec::new();
    for (name, candidate) in &candidates {
        match take(name, candidate)? {
            Some(pinned) => {
                if !not_served.is_empty() {
                    eprintln!(
                        "{what}: the index lists {}, which the mirror does not serve (404); \
                         pinned the newest one it serves",
                        not_served.join(", ")
                    );
                }
                return Ok(pinned);
            }
            None => not_served.push(format!("{name} {}", candidate.version)),
        }
    }
    Err(anyhow!(
        "the mirror {} (from {}) serves no {what}: its index lists {}; set {MIRROR_ENV} to a \
         mirror that has them",
        mirror.base(),
        mirror.origin(),
        if not_served.is_empty() {
            "none".to_owned()
        } else {
            format!("{} (all 404)", not_served.join(", "))
        }
    ))
}

fn deb_of(debian_arch: &str, name: &str, candidate: &Candidate) -> Deb {
    Deb {
        debian_arch: debian_arch.to_owned(),
        package: name.to_owned(),
        version: candidate.version.clone(),
        pool_path: candidate.filename.clone(),
        size: candidate.size,
        sha256: candidate.sha256.clone(),
    }
}

/// Downloads the kernel package `name` and measures its image and module; `None` when
/// the mirror answers 404.
fn pin_kernel(
    mirror: &Mirror,
    cache: &BlobCache,
    kernel: &Kernel,
    name: &str,
    candidate: &Candidate,
) -> Result<Option<KernelPin>> {
    let release = kernel
        .release_of(name)
        .context("internal error: not a package of the flavour")?;
    let image_path = format!("boot/{}-{release}", kernel.image);
    let is_module = |path: &str| {
        let module = format!("modules/{release}/kernel/fs/binfmt_misc.ko");
        ["lib/", "usr/lib/"].iter().any(|lib| {
            path.strip_prefix(lib)
                .is_some_and(|rest| rest == module || rest == format!("{module}.xz"))
        })
    };
    let deb = deb_of(kernel.debian_arch, name, candidate);
    let (mut image, mut module) = (None, None);
    let fetched = fetch_files(
        mirror,
        cache,
        &deb,
        |path| path == image_path || is_module(path),
        &mut |path, bytes| {
            let measured = measure(cache, path, &bytes)?;
            if path == image_path {
                image = Some(measured);
            } else {
                module = Some(measured);
            }
            Ok(())
        },
    );
    if fetched.as_ref().is_err_and(|err| not_found(err).is_some()) {
        return Ok(None);
    }
    fetched?;
    Ok(Some(KernelPin {
        suite: kernel.suite.to_owned(),
        flavour: kernel.flavour.to_owned(),
        image: image.with_context(|| format!("{name} has no {image_path}"))?,
        module: module.with_context(|| {
            format!("{name} has no binfmt_misc module (kernel/fs/binfmt_misc.ko[.xz])")
        })?,
        deb,
    }))
}

/// Stores `bytes` (the file at `path` of a package) in the cache and pins it.
fn measure(cache: &BlobCache, path: &str, bytes: &[u8]) -> Result<PinnedFile> {
    let sha256 = sha256_hex(bytes);
    store(cache, &sha256, bytes)?;
    Ok(PinnedFile {
        path: path.to_owned(),
        size: bytes.len() as u64,
        sha256,
    })
}

/// The stanzas of `dists/<suite>/main/binary-<arch>/Packages.xz` for kernel images and
/// busybox-static.
fn read_index(mirror: &Mirror, suite: &str, debian_arch: &str) -> Result<Vec<(String, Candidate)>> {
    let url = mirror.url(&format!(
        "dists/{suite}/main/binary-{debian_arch}/Packages.xz"
    ));
    eprintln!("reading {url}");
    let body = http::get(&url).map_err(|err| -> anyhow::Error {
        match err {
            HttpError::NotFound { .. } => anyhow!(
                "{err}: the mirror {} (from {}) has no suite {suite} for {debian_arch}; set \
                 {MIRROR_ENV} to a mirror that has it",
                mirror.base(),
                mirror.origin()
            ),
            err => err.into(),
        }
    })?;
    let xz = liblzma::read::XzDecoder::new_multi_decoder(body.reader);
    parse_packages_where(BufReader::new(xz), |name| {
        name.starts_with("linux-image-") || name == BUSYBOX_PACKAGE
    })
    .with_context(|| format!("reading {url}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::workspace_root;

    const DIGEST: &str = "ca6ede739327a20ae5a3498230c8a3a9a072c586e131bc6bcc1201eb1725e336";

    fn file(path: &str) -> PinnedFile {
        PinnedFile {
            path: path.to_owned(),
            size: 7,
            sha256: DIGEST.to_owned(),
        }
    }

    fn sample() -> Pins {
        let package = "linux-image-6.1.0-50-amd64-unsigned";
        Pins {
            kernels: vec![KernelPin {
                suite: "bookworm".to_owned(),
                flavour: "amd64".to_owned(),
                image: file("boot/vmlinuz-6.1.0-50-amd64"),
                module: file("lib/modules/6.1.0-50-amd64/kernel/fs/binfmt_misc.ko"),
                deb: Deb {
                    debian_arch: "amd64".to_owned(),
                    package: package.to_owned(),
                    version: "6.1.176-1".to_owned(),
                    pool_path: format!("pool/main/l/linux/{package}_6.1.176-1_amd64.deb"),
                    size: 70302080,
                    sha256: DIGEST.to_owned(),
                },
            }],
            busyboxes: vec![BusyboxPin {
                suite: "trixie".to_owned(),
                binary: file(BUSYBOX_PATHS[0]),
                deb: Deb {
                    debian_arch: "amd64".to_owned(),
                    package: BUSYBOX_PACKAGE.to_owned(),
                    version: "1:1.37.0-6+b9".to_owned(),
                    pool_path: "pool/main/b/busybox/busybox-static_1.37.0-6+b9_amd64.deb"
                        .to_owned(),
                    size: 955316,
                    sha256: DIGEST.to_owned(),
                },
            }],
        }
    }

    #[test]
    fn the_stable_form_reads_back_the_same() {
        let pins = sample();
        let text = pins.to_toml();
        assert_eq!(Pins::parse(&text).unwrap(), pins);
        assert!(text.starts_with("# Generated by `cargo xtask kernels --pin`"));
        assert!(
            text.contains(
                "image = { path = \"boot/vmlinuz-6.1.0-50-amd64\", size = 7, sha256 = \""
            ),
            "{text}"
        );
    }

    #[test]
    fn the_committed_pins_are_in_their_stable_form() {
        let root = workspace_root();
        let text = fs::read_to_string(root.join(PINS_PATH)).unwrap();
        let pins = Pins::parse(&text).unwrap();
        assert!(
            pins.to_toml() == text,
            "{PINS_PATH} is not what `{PIN_COMMAND}` writes for its content: run it again \
             instead of editing the file"
        );
    }

    #[test]
    fn bad_pins_are_refused_with_what_is_wrong() {
        let mut pins = sample();
        pins.kernels[0].image.path = "../boot/vmlinuz".to_owned();
        let err = Pins::parse(&pins.to_toml()).unwrap_err().to_string();
        assert!(err.contains("not a relative path"), "{err}");

        let mut pins = sample();
        pins.busyboxes[0].binary.sha256 = "ABC".to_owned();
        let err = Pins::parse(&pins.to_toml()).unwrap_err().to_string();
        assert!(err.contains("busybox amd64: sha256"), "{err}");

        let mut pins = sample();
        pins.kernels.push(pins.kernels[0].clone());
        let err = Pins::parse(&pins.to_toml()).unwrap_err().to_string();
        assert!(err.contains("pinned twice"), "{err}");

        let err = Pins::parse("[[kernel]]\nsuite = \"x\"\nextra = 1\n")
            .unwrap_err()
            .to_string();
        assert!(!err.is_empty());
    }

    #[test]
    fn a_kernel_without_a_pin_names_the_command() {
        let pins = Pins {
            kernels: Vec::new(),
            busyboxes: Vec::new(),
        };
        let kernel = Kernel {
            suite: "bullseye",
            debian_arch: "amd64",
            flavour: "amd64",
            unsigned: true,
            image: "vmlinuz",
        };
        let err = pins.kernel(&kernel).unwrap_err().to_string();
        assert!(err.contains("run `cargo xtask kernels --pin`"), "{err}");
        let err = pins.busybox("s390x").unwrap_err().to_string();
        assert!(err.contains("pins no busybox for s390x"), "{err}");
    }

    #[test]
    fn versions_of_a_kernel() {
        let mut pin = sample().kernels.remove(0);
        assert_eq!(pin.major_minor(), Some((6, 1)));
        assert_eq!(pin.upstream_version(), "6.1.176");
        pin.deb.version = "6.12.107-1".to_owned();
        assert_eq!(pin.major_minor(), Some((6, 12)));
    }
}
