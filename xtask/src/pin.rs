//! `cargo xtask pin`: choose the Debian `qemu-user` version to embed and rewrite
//! `qemu-blobs/pins.toml`.
//!
//! For each host, the mirror's package index `dists/<suite>/main/binary-<arch>/Packages.xz`
//! gives the `qemu-user` versions with the pool path, size and sha256 of each `.deb`.
//! The version is `--version` if given (it must be listed for every host), else the
//! highest version (dpkg ordering, [`crate::version`]) listed for every host. Each `.deb`
//! is downloaded and checked against the index, and the ten emulators are measured and
//! stored in the blob cache, with the same code as `cargo xtask fetch`. A host whose
//! package and cached emulators are already pinned is not downloaded again.
//!
//! The index is fetched over plain HTTP without checking the archive's signature: the
//! digests it gives end up in the manifest, and the person pinning reviews them in the
//! commit (and can compare them with `apt-get download qemu-user` on a Debian machine).
//!
//! **The gate.** A new QEMU version is pinned only if it passes every workload of the
//! conformance record (`qemu-blobs/conformance.toml`) that the current pin passes:
//! the recorded matrix runs again under the new pin (`cargo xtask conformance`, as
//! root), and a regression refuses the pin (pins.toml is restored) unless
//! `--accept-regression ARCH:WORKLOAD` names it ([`crate::conformance::gate`]).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::Instant;

use qemu_pins::{BlobCache, Host, MANIFEST_PATH, Manifest, Pin, Source};

use anyhow::{Context, Result, anyhow};

use crate::blob::{self, Cached, Wanted};
use crate::conformance::{
    self, gate,
    record::{RECORD_PATH, Record},
};
use crate::fetch::{Package, download_and_store};
use crate::http::{self, HttpError};
use crate::mirror::{MIRROR_ENV, Mirror};
use crate::version;
use crate::workspace::{megabytes, workspace_root};

/// The hosts binfmt is built for ([`arch_table::HOSTS`]) and their Debian
/// architecture: the five platforms tonistiigi/binfmt's image is published for.
fn debian_hosts() -> impl Iterator<Item = (&'static str, &'static str)> {
    arch_table::HOSTS
        .iter()
        .map(|host| (host.name, host.arch().debian.unwrap_or(host.name)))
}

/// The Debian binary package holding the static emulators.
const PACKAGE: &str = "qemu-user";
/// The suite pinned when there is no manifest yet.
const DEFAULT_SUITE: &str = "trixie";

/// Arguments of `cargo xtask pin`.
#[derive(clap::Args)]
pub struct Args {
    /// Debian suite to take qemu-user from [default: the manifest's suite, else trixie].
    #[arg(long)]
    suite: Option<String>,
    /// Exact Debian version to pin, e.g. 1:10.0.13+ds-0+deb13u1 [default: the highest
    /// version listed for every host].
    #[arg(long)]
    version: Option<String>,
    /// Pin even though the new QEMU fails this workload on this architecture, which
    /// the current pin passes (qemu-blobs/conformance.toml); repeat for each. A
    /// regression not named refuses the pin; a name that is no regression is refused.
    #[arg(long = "accept-regression", value_name = "ARCH:WORKLOAD", value_parser = gate::parse_acceptance)]
    accept_regression: Vec<gate::Acceptance>,
}

/// One `qemu-user` stanza of a Packages index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// `Version`.
    pub version: String,
    /// `Source` without a version: the source package name.
    pub source: String,
    /// `Filename`: the pool path.
    pub filename: String,
    /// `Size`.
    pub size: u64,
    /// `SHA256`.
    pub sha256: String,
}

/// Runs `cargo xtask pin`.
pub fn run(args: &Args) -> Result<()> {
    let manifest_path = workspace_root().join(MANIFEST_PATH);
    let current = if manifest_path.exists() {
        match Manifest::load(&manifest_path) {
            Ok(manifest) => Some(manifest),
            Err(err) => {
                eprintln!("warning: ignoring the current manifest: {err}");
                None
            }
        }
    } else {
        None
    };
    let suite = match (&args.suite, &current) {
        (Some(suite), _) => suite.clone(),
        (None, Some(current)) => current.source.suite.clone(),
        (None, None) => DEFAULT_SUITE.to_string(),
    };
    let mirror = Mirror::from_env()?;
    let cache = BlobCache::from_env()?;
    eprintln!(
        "mirror {} (from {}), suite {suite}, blob cache {}",
        mirror.base(),
        mirror.origin(),
        cache.root().display()
    );

    let mut indexes = Vec::new();
    for (_, debian_arch) in debian_hosts() {
        indexes.push(read_index(&mirror, &suite, debian_arch)?);
    }
    let version = choose_version(&suite, &indexes, args.version.as_deref())?;
    let chosen: Vec<&Candidate> = indexes
        .iter()
        .map(|(_, candidates)| candidates.iter().find(|c| c.version == version))
        .collect::<Option<_>>()
        .context("internal error: the chosen version is not listed for every host")?;
    let source_package = &chosen[0].source;
    if let Some(other) = chosen.iter().find(|c| &c.source != source_package) {
        return Err(anyhow!(
            "{PACKAGE} {version} is built from source package {source_package} on one host and \
             {} on another; pin another version with --version",
            other.source
        ));
    }
    eprintln!("pinning {PACKAGE} {version} (source package {source_package}) from {suite}");

    let mut hosts = Vec::new();
    for ((arch, debian_arch), candidate) in debian_hosts().zip(chosen) {
        let previous = current.as_ref().and_then(|m| m.host(arch));
        let emulators = match reusable(previous, candidate, &cache) {
            Some(emulators) => {
                eprintln!(
                    "{arch}: {} is already pinned and its emulators are cached, nothing to download",
                    candidate.filename
                );
                emulators
            }
            None => measure(&mirror, &cache, &version, debian_arch, candidate)?,
        };
        hosts.push(Host {
            arch: arch.to_string(),
            debian_arch: debian_arch.to_string(),
            package: PACKAGE.to_string(),
            pool_path: candidate.filename.clone(),
            size: candidate.size,
            sha256: candidate.sha256.clone(),
            emulators,
        });
    }
    let manifest = Manifest {
        source: Source {
            suite,
            source_package: source_package.clone(),
            version,
        },
        hosts,
    };
    let previous_text = std::fs::read_to_string(&manifest_path).ok();
    write_manifest(&manifest_path, &manifest, current.as_ref())?;
    if let Some(current) = current
        .as_ref()
        .filter(|c| c.source.version != manifest.source.version)
        && let Err(error) = gate_repin(current, &args.accept_regression)
    {
        // The refused pin is not left behind.
        if let Some(text) = previous_text {
            std::fs::write(&manifest_path, text).with_context(|| {
                format!(
                    "cannot restore {} after the refused pin",
                    manifest_path.display()
                )
            })?;
            eprintln!("restored {MANIFEST_PATH} ({})", current.source.version);
        }
        return Err(error);
    }
    // What a development build on this machine embeds, so that it builds right away;
    // `cargo xtask dist` makes the release compression.
    let build_host = crate::fetch::build_host();
    for host in manifest.hosts.iter().filter(|host| host.arch == build_host) {
        crate::fetch::ensure_embedded(&cache, host, qemu_pins::Compression::Fast)?;
    }
    Ok(())
}

/// The re-pin gate: the conformance matrix recorded for the current pin
/// (qemu-blobs/conformance.toml) runs again under the new pin, which the manifest
/// already names; any workload the record passes and the new run does not refuses
/// the pin, unless `accepted` names it. On success the new results become the record.
fn gate_repin(current: &Manifest, accepted: &[gate::Acceptance]) -> Result<()> {
    let record_path = workspace_root().join(RECORD_PATH);
    let record = Record::load(&record_path).with_context(|| {
        format!(
            "a re-pin is gated on the conformance record of the current pin; fix: run              `cargo xtask conformance --record` (as root) with {} pinned, then pin again",
            current.source.version
        )
    })?;
    if record.debian_version != current.source.version {
        return Err(anyhow!(
            "{RECORD_PATH} records QEMU {}, but {} is pinned: it says nothing about the \
             current pin; fix: run `cargo xtask conformance --record` (as root) with {} \
             pinned, then pin again",
            record.debian_version,
            current.source.version,
            current.source.version
        ));
    }
    eprintln!(
        "gate: running the recorded conformance matrix ({} cells) under the new pin",
        record.results.len()
    );
    let (candidate, _) = conformance::execute(&conformance::Args::gate(&record)?)?;
    let candidate_path = crate::workspace::target_dir().join("conformance/candidate.toml");
    candidate.save(&candidate_path)?;
    let accepted_regressions = gate::check(&record, &candidate, accepted)
        .with_context(|| format!("the new pin's results: {}", candidate_path.display()))?;
    for regression in &accepted_regressions {
        eprintln!(
            "gate: accepted regression {}:{} ({})",
            regression.arch, regression.workload, regression.now
        );
    }
    record.merged(&candidate).save(&record_path)?;
    eprintln!(
        "gate: passed; recorded in {RECORD_PATH} (`cargo xtask conformance --write-docs` \
         renders it)"
    );
    Ok(())
}

/// Downloads and parses one host's package index; returns the Debian arch and the
/// `qemu-user` stanzas.
fn read_index(mirror: &Mirror, suite: &str, debian_arch: &str) -> Result<(String, Vec<Candidate>)> {
    let url = mirror.url(&format!(
        "dists/{suite}/main/binary-{debian_arch}/Packages.xz"
    ));
    eprintln!("reading {url}");
    let start = Instant::now();
    let body = http::get(&url).map_err(|err| -> anyhow::Error {
        match err {
            HttpError::NotFound { .. } => anyhow!(
                "{err}: the mirror {} (from {}) has no suite {suite:?} for {debian_arch}; pass \
                 an existing suite with --suite, or set {MIRROR_ENV} to a mirror that has it",
                mirror.base(),
                mirror.origin()
            ),
            err => err.into(),
        }
    })?;
    let xz = liblzma::read::XzDecoder::new_multi_decoder(body.reader);
    let candidates =
        parse_packages(BufReader::new(xz), PACKAGE).with_context(|| format!("reading {url}"))?;
    eprintln!(
        "{debian_arch}: {PACKAGE} {} listed ({:.1} s)",
        candidates
            .iter()
            .map(|c| c.version.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        start.elapsed().as_secs_f64()
    );
    Ok((debian_arch.to_string(), candidates))
}

/// Collects the stanzas of `package` from a Packages index (deb822 stanzas separated by
/// blank lines; multi-line fields such as Description are skipped).
pub fn parse_packages(index: impl BufRead, package: &str) -> Result<Vec<Candidate>> {
    Ok(parse_packages_where(index, |name| name == package)?
        .into_iter()
        .map(|(_, candidate)| candidate)
        .collect())
}

/// Collects the stanzas of every package whose name `wanted` accepts from a Packages
/// index, each with its package name.
pub fn parse_packages_where(
    mut index: impl BufRead,
    mut wanted: impl FnMut(&str) -> bool,
) -> Result<Vec<(String, Candidate)>> {
    let mut candidates = Vec::new();
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        let at_end = index.read_line(&mut line)? == 0;
        let text = line.trim_end();
        if text.is_empty() {
            if let Some(name) = field(&fields, "Package")
                && wanted(name)
            {
                candidates.push((name.to_owned(), candidate(&fields)?));
            }
            fields.clear();
            if at_end {
                break;
            }
        } else if !text.starts_with([' ', '\t'])
            && let Some((key, value)) = text.split_once(':')
            && matches!(
                key,
                "Package" | "Version" | "Source" | "Filename" | "Size" | "SHA256"
            )
        {
            fields.push((key.to_string(), value.trim().to_string()));
        }
    }
    Ok(candidates)
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

fn candidate(fields: &[(String, String)]) -> Result<Candidate> {
    let version = field(fields, "Version").context("a stanza has no Version field")?;
    let required = |name: &str| -> Result<&str> {
        field(fields, name)
            .with_context(|| format!("the stanza of version {version} has no {name} field"))
    };
    let size = required("Size")?;
    // `Source: qemu` or `Source: qemu (1:10.0.13+ds-0+deb13u1)`; absent when equal to Package.
    let source = field(fields, "Source")
        .and_then(|source| source.split_whitespace().next())
        .or_else(|| field(fields, "Package"))
        .unwrap_or_default();
    Ok(Candidate {
        version: version.to_string(),
        source: source.to_string(),
        filename: required("Filename")?.to_string(),
        size: size
            .parse()
            .map_err(|_| anyhow!("version {version} has Size {size:?}, expected a number"))?,
        sha256: required("SHA256")?.to_string(),
    })
}

/// The version to pin: `wanted` if every host lists it, else the highest version every
/// host lists.
pub fn choose_version(
    suite: &str,
    indexes: &[(String, Vec<Candidate>)],
    wanted: Option<&str>,
) -> Result<String> {
    let listed = |candidates: &[Candidate]| {
        let versions: Vec<&str> = candidates.iter().map(|c| c.version.as_str()).collect();
        if versions.is_empty() {
            "none".to_string()
        } else {
            versions.join(", ")
        }
    };
    if let Some(wanted) = wanted {
        for (debian_arch, candidates) in indexes {
            if !candidates.iter().any(|c| c.version == wanted) {
                return Err(anyhow!(
                    "{PACKAGE} {wanted} is not listed in {suite} for {debian_arch} (listed: {}); \
                     a version the mirror no longer has can be pinned from Debian's snapshot \
                     archive: set {MIRROR_ENV} to its archive/debian/<timestamp>/ URL from a date \
                     when that version was current",
                    listed(candidates)
                ));
            }
        }
        return Ok(wanted.to_string());
    }
    let Some((_, first)) = indexes.first() else {
        return Err(anyhow!("no host to pin"));
    };
    let common = first.iter().map(|c| c.version.as_str()).filter(|v| {
        indexes
            .iter()
            .all(|(_, cs)| cs.iter().any(|c| c.version == *v))
    });
    match common.max_by(|a, b| version::compare(a, b)) {
        Some(best) => Ok(best.to_string()),
        None => {
            let all: Vec<String> = indexes
                .iter()
                .map(|(arch, cs)| format!("{arch}: {}", listed(cs)))
                .collect();
            Err(anyhow!(
                "no {PACKAGE} version is listed in {suite} for every host ({}); pass --version \
                 or --suite",
                all.join("; ")
            ))
        }
    }
}

/// The emulators every host is pinned with: OCI architecture, QEMU cpu and path, for
/// every architecture of [`arch_table::ARCHES`]. The host's own is pinned too;
/// embedding skips it.
fn wanted_paths() -> Vec<(&'static str, &'static str, String)> {
    arch_table::ARCHES
        .iter()
        .map(|arch| {
            let cpu = arch.qemu_cpu;
            (arch.oci, cpu, format!("usr/bin/qemu-{cpu}"))
        })
        .collect()
}

/// The previous pin of a host, if it pins this very package with the standard set of
/// emulators and all of them are in the cache: pinning again would measure the same.
fn reusable(previous: Option<&Host>, candidate: &Candidate, cache: &BlobCache) -> Option<Vec<Pin>> {
    let previous = previous?;
    let same_package = previous.pool_path == candidate.filename
        && previous.size == candidate.size
        && previous.sha256 == candidate.sha256;
    let expected = wanted_paths();
    let same_emulators = previous.emulators.len() == expected.len()
        && previous
            .emulators
            .iter()
            .zip(&expected)
            .all(|(e, (oci, cpu, path))| e.oci == *oci && e.cpu == *cpu && e.path == *path);
    let all_cached = previous
        .emulators
        .iter()
        .all(|e| matches!(blob::cached(cache, e), Cached::Valid { .. }));
    (same_package && same_emulators && all_cached).then(|| previous.emulators.clone())
}

/// Downloads a host's package and measures (and caches) its emulators.
fn measure(
    mirror: &Mirror,
    cache: &BlobCache,
    version: &str,
    debian_arch: &str,
    candidate: &Candidate,
) -> Result<Vec<Pin>> {
    let paths = wanted_paths();
    let wanted: Vec<Wanted> = paths
        .iter()
        .map(|(oci, cpu, path)| Wanted {
            oci,
            cpu,
            path,
            pinned: None,
        })
        .collect();
    let package = Package {
        pool_path: &candidate.filename,
        size: candidate.size,
        sha256: &candidate.sha256,
        description: format!("{PACKAGE} {version} for {debian_arch}"),
    };
    let stored = download_and_store(mirror, cache, &package, &wanted)?;
    Ok(stored.into_iter().map(|s| s.emulator).collect())
}

/// Writes the manifest (temporary file, then rename) and says what changed.
fn write_manifest(path: &Path, manifest: &Manifest, current: Option<&Manifest>) -> Result<()> {
    let text = manifest.to_toml();
    // Never write a file that the build would reject.
    Manifest::parse(&text).with_context(|| "internal error: the new manifest does not validate")?;
    if current == Some(manifest) && std::fs::read_to_string(path).is_ok_and(|old| old == text) {
        eprintln!("{} is up to date", path.display());
        return Ok(());
    }
    let temp = crate::blob::TempFile::next_to(path);
    std::fs::write(temp.path(), &text)
        .with_context(|| format!("cannot write {}", temp.path().display()))?;
    temp.persist(path)?;
    match current {
        Some(old) if old.source.version != manifest.source.version => eprintln!(
            "wrote {}: {} -> {}",
            path.display(),
            old.source.version,
            manifest.source.version
        ),
        _ => eprintln!("wrote {} ({})", path.display(), manifest.source.version),
    }
    for host in &manifest.hosts {
        let total: u64 = host.emulators.iter().map(|e| e.size).sum();
        eprintln!(
            "  {}: {} ({}), {} emulators, {} uncompressed",
            host.arch,
            host.pool_path,
            megabytes(host.size),
            host.emulators.len(),
            megabytes(total)
        );
    }
    eprintln!("review the digests, then commit {MANIFEST_PATH}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: &str = "\
Package: qemu-system-x86
Version: 1:10.0.13+ds-0+deb13u1
Filename: pool/main/q/qemu/qemu-system-x86_10.0.13+ds-0+deb13u1_amd64.deb
Size: 1
SHA256: 1111111111111111111111111111111111111111111111111111111111111111

Package: qemu-user
Source: qemu
Version: 1:10.0.13+ds-0+deb13u1
Installed-Size: 300000
Depends: libc6 (>= 2.38)
Description: QEMU user mode emulation binaries
 Package: not-a-field
 .
 continuation lines are skipped
Filename: pool/main/q/qemu/qemu-user_10.0.13+ds-0+deb13u1_amd64.deb
Size: 71234567
SHA256: ca6ede739327a20ae5a3498230c8a3a9a072c586e131bc6bcc1201eb1725e336

Package: qemu-user
Source: qemu (1:10.0.2+ds-1)
Version: 1:10.0.2+ds-1+b1
Filename: pool/main/q/qemu/qemu-user_10.0.2+ds-1+b1_amd64.deb
Size: 70000000
SHA256: c73711af02b97cd5e2667e735d9c06890c57165517110ca4e646c95a7083158d
";

    fn candidates() -> Vec<Candidate> {
        parse_packages(INDEX.as_bytes(), PACKAGE).unwrap()
    }

    #[test]
    fn parses_qemu_user_stanzas() {
        let found = candidates();
        assert_eq!(found.len(), 2);
        assert_eq!(
            found[0],
            Candidate {
                version: "1:10.0.13+ds-0+deb13u1".to_string(),
                source: "qemu".to_string(),
                filename: "pool/main/q/qemu/qemu-user_10.0.13+ds-0+deb13u1_amd64.deb".to_string(),
                size: 71234567,
                sha256: "ca6ede739327a20ae5a3498230c8a3a9a072c586e131bc6bcc1201eb1725e336"
                    .to_string(),
            }
        );
        assert_eq!(found[1].source, "qemu");
        assert_eq!(found[1].version, "1:10.0.2+ds-1+b1");
    }

    #[test]
    fn stanza_without_size_is_an_error() {
        let index = "Package: qemu-user\nVersion: 1:9\nFilename: x.deb\nSHA256: 00\n";
        let err = parse_packages(index.as_bytes(), PACKAGE)
            .unwrap_err()
            .to_string();
        assert_eq!(err, "the stanza of version 1:9 has no Size field");
    }

    fn indexes(amd64: &[&str], arm64: &[&str]) -> Vec<(String, Vec<Candidate>)> {
        let with = |versions: &[&str]| {
            versions
                .iter()
                .map(|v| Candidate {
                    version: v.to_string(),
                    ..candidates()[0].clone()
                })
                .collect()
        };
        vec![
            ("amd64".to_string(), with(amd64)),
            ("arm64".to_string(), with(arm64)),
        ]
    }

    #[test]
    fn picks_highest_version_listed_for_every_host() {
        let indexes = indexes(
            &[
                "1:10.0.2+ds-1",
                "1:10.0.13+ds-0+deb13u1",
                "1:10.0.14+ds-0+deb13u1",
            ],
            &["1:10.0.13+ds-0+deb13u1", "1:10.0.2+ds-1"],
        );
        assert_eq!(
            choose_version("trixie", &indexes, None).unwrap(),
            "1:10.0.13+ds-0+deb13u1"
        );
        assert_eq!(
            choose_version("trixie", &indexes, Some("1:10.0.2+ds-1")).unwrap(),
            "1:10.0.2+ds-1"
        );
    }

    #[test]
    fn unlisted_version_mentions_the_snapshot_archive() {
        let indexes = indexes(&["1:10.0.13+ds-0+deb13u1"], &["1:10.0.13+ds-0+deb13u1"]);
        let err = choose_version("trixie", &indexes, Some("1:10.0.9+ds-0+deb13u1"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("1:10.0.9+ds-0+deb13u1 is not listed in trixie for amd64"),
            "{err}"
        );
        assert!(err.contains("(listed: 1:10.0.13+ds-0+deb13u1)"), "{err}");
        assert!(err.contains("snapshot archive"), "{err}");
        assert!(err.contains("QEMU_BLOBS_MIRROR"), "{err}");
    }

    #[test]
    fn no_common_version() {
        let indexes = indexes(&["1:10.0.14+ds-1"], &[]);
        let err = choose_version("trixie", &indexes, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("amd64: 1:10.0.14+ds-1; arm64: none"), "{err}");
    }

    /// The committed manifest must be exactly what `cargo xtask pin` writes.
    #[test]
    fn committed_manifest_is_current() {
        let path = workspace_root().join(MANIFEST_PATH);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|err| {
            panic!(
                "cannot read {}: {err}; run `cargo xtask pin`",
                path.display()
            )
        });
        let manifest =
            Manifest::parse(&text).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        for (arch, debian_arch) in debian_hosts() {
            let host = manifest.host(arch).unwrap_or_else(|| {
                panic!("{MANIFEST_PATH} pins no {arch} host; run `cargo xtask pin`")
            });
            assert_eq!(host.debian_arch, debian_arch);
            assert_eq!(host.package, PACKAGE);
            let pinned: Vec<(&str, &str, &str)> = host
                .emulators
                .iter()
                .map(|e| (e.oci.as_str(), e.cpu.as_str(), e.path.as_str()))
                .collect();
            let paths = wanted_paths();
            let expected: Vec<(&str, &str, &str)> = paths
                .iter()
                .map(|(oci, cpu, path)| (*oci, *cpu, path.as_str()))
                .collect();
            assert_eq!(
                pinned, expected,
                "{arch}: emulators differ; run `cargo xtask pin`"
            );
        }
        assert_eq!(
            manifest.hosts.len(),
            debian_hosts().count(),
            "unexpected hosts; run `cargo xtask pin`"
        );
        assert!(
            manifest.to_toml() == text,
            "{MANIFEST_PATH} is stale or was edited by hand: it differs from what `cargo xtask pin` \
             writes for the same pins; run `cargo xtask pin` and commit the result"
        );
    }
}
