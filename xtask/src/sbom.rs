//! The SBOM of each dist binary: `dist/<binary>.spdx.json`, SPDX 2.3 JSON.
//!
//! It describes the binary (name, version, sha256, license) and what is in it:
//!
//! - every Rust crate compiled in for its target, with version, declared license and,
//!   for registry crates, a purl (`pkg:cargo/<name>@<version>`) and the sha256 of the
//!   `.crate` file that `Cargo.lock` pins: the `binfmt` package's normal dependencies, transitively, as
//!   `cargo tree --package binfmt --target <target> --edges normal,no-proc-macro`
//!   resolves them (proc macros and build dependencies run at build time and are not
//!   in the binary); and the Rust standard library, at the compiler's version;
//! - QEMU: Debian's source package (name, version), the binary package the emulators
//!   come from (`qemu-user` of the host architecture, the `.deb`'s sha256) and each
//!   embedded emulator (name, sha256, size), all from `qemu-blobs/pins.toml`, with
//!   the set the catalog's build script embeds for that host (`Host::embedded`).
//!
//! Relationships: the document DESCRIBES the binary; the binary STATIC_LINKs each
//! crate and CONTAINS each emulator; `qemu-user` CONTAINS the emulators and is
//! GENERATED_FROM the source package.
//!
//! The output is a function of the sources: no random namespace, and `created` is
//! `SOURCE_DATE_EPOCH` or else the commit time of `HEAD`, so that a rebuild gives the
//! same SBOM byte for byte, as it gives the same binary.
//!
//! Why written here rather than by a generator: cargo-cyclonedx writes CycloneDX, not
//! SPDX; cargo-sbom writes SPDX 2.3 JSON from `cargo metadata`, of crates only: it
//! cannot take the QEMU packages, which are most of the binary's bytes, and metadata
//! lists more crates than the build compiles (below); cargo-auditable embeds a dependency list in the binary itself,
//! which changes the binary and still needs a converter to SPDX. `cargo tree` lists
//! the crates with their licenses, with features resolved for this one package and
//! target as the build resolves them: exactly the crates the build compiles for the
//! target (checked against a build's own artifacts). `cargo metadata`'s resolve lists
//! more: here regex, indexmap and the five crates under them, which no build of the
//! binary compiles. The document is a few dozen lines of serde_json.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use qemu_pins::{Host, MANIFEST_PATH, Manifest, Source};
use serde_json::{Value, json};

use anyhow::{Context, Result, anyhow};

/// QEMU's license as a whole (its `LICENSE` file: "QEMU as a whole is released under
/// the GNU General Public License, version 2"); `qemu-blobs/COPYING` is its text.
pub const QEMU_LICENSE: &str = "GPL-2.0-only";

/// The license of the Rust standard library, which every Rust binary links.
const RUST_STD_LICENSE: &str = "MIT OR Apache-2.0";

/// A crate compiled into the binary.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Crate {
    pub name: String,
    pub version: String,
    /// The SPDX expression of Cargo.toml's `license`, `None` when it names none.
    pub license: Option<String>,
    /// From a registry (crates.io), as opposed to a path in this workspace.
    pub registry: bool,
    /// sha256 of the `.crate` file, from `Cargo.lock` (registry crates).
    pub sha256: Option<String>,
}

/// What the SBOM of one binary is made from.
pub struct Inputs<'a> {
    /// Its file name in `dist/`.
    pub file_name: &'a str,
    /// sha256 of the binary, hex.
    pub sha256: &'a str,
    /// The package the binary is built from (`binfmt`).
    pub package: &'a Crate,
    /// Every other crate compiled in.
    pub crates: &'a [Crate],
    /// The compiler's version (`1.95.0`), for the standard library.
    pub rust_version: &'a str,
    pub source: &'a Source,
    /// The pins of the binary's host architecture.
    pub host: &'a Host,
    /// `creationInfo.created`, `YYYY-MM-DDThh:mm:ssZ`.
    pub created: &'a str,
}

/// The SBOM of the binary `file_name` built for `target`, whose sha256 is `sha256`.
pub fn generate(root: &Path, file_name: &str, target: &str, sha256: &str) -> Result<Vec<u8>> {
    let pins_path = root.join(MANIFEST_PATH);
    let manifest = Manifest::load(&pins_path)?;
    // The host's pins as the catalog's build script takes them.
    let arch = pins_host(target)?;
    let host = manifest.host(&arch).with_context(|| {
        format!(
            "{} pins no qemu-user package for host {arch} (target {target}): run `cargo \
             xtask pin`",
            pins_path.display()
        )
    })?;
    let (package, crates) = compiled_crates(root, target)?;
    let rust_version = rust_version()?;
    let created = utc_timestamp(source_date_epoch(root)?);
    let document = document(&Inputs {
        file_name,
        sha256,
        package: &package,
        crates: &crates,
        rust_version: &rust_version,
        source: &manifest.source,
        host,
        created: &created,
    });
    // Compact: every image carries the SBOM of every dist binary, and the image must
    // stay under 10 MB (indented it is a third larger; `jq .` indents it).
    let mut bytes = serde_json::to_vec(&document)?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// The `binfmt` package and every crate its binary links for `target`: its normal
/// dependencies, transitively, without proc macros (they run in the compiler), with
/// features resolved as `cargo build -p binfmt --target <target>` resolves them.
pub fn compiled_crates(root: &Path, target: &str) -> Result<(Crate, Vec<Crate>)> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(&cargo)
        .current_dir(root)
        .args([
            "tree",
            "--locked",
            "--package",
            "binfmt",
            "--target",
            target,
        ])
        .args(["--edges", "normal,no-proc-macro", "--prefix", "none"])
        .args(["--format", "{p}|{l}"])
        .output()
        .with_context(|| format!("running {cargo} tree"))?;
    if !output.status.success() {
        return Err(anyhow!(
            "cargo tree --package binfmt --target {target} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let checksums = lock_checksums(root)?;
    let mut crates: Vec<Crate> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(parse_tree_line)
        .collect::<Result<_, _>>()?;
    for krate in crates.iter_mut().filter(|krate| krate.registry) {
        let key = (krate.name.clone(), krate.version.clone());
        let checksum = checksums.get(&key).with_context(|| {
            format!(
                "Cargo.lock has no checksum for {} {}: run `cargo update -p {}`",
                krate.name, krate.version, krate.name
            )
        })?;
        krate.sha256 = Some(checksum.clone());
    }
    if crates.is_empty() {
        return Err(anyhow!(
            "cargo tree --package binfmt --target {target} printed nothing"
        ));
    }
    // The root comes first.
    let package = crates.remove(0);
    crates.sort();
    crates.dedup();
    Ok((package, crates))
}

/// The `checksum` of every package in `Cargo.lock` (the sha256 of its `.crate` file),
/// by name and version.
fn lock_checksums(root: &Path) -> Result<BTreeMap<(String, String), String>> {
    let path = root.join("Cargo.lock");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let lock: toml::Table = text
        .parse()
        .with_context(|| format!("parsing {}", path.display()))?;
    let packages = lock
        .get("package")
        .and_then(toml::Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    Ok(packages
        .iter()
        .filter_map(|package| {
            let field = |key: &str| package.get(key)?.as_str().map(str::to_owned);
            Some(((field("name")?, field("version")?), field("checksum")?))
        })
        .collect())
}

/// One line of `cargo tree --format '{p}|{l}'`: `clap v4.6.9|MIT OR Apache-2.0`, or
/// with ` (<path>)` after the version for a crate of the workspace, and ` (*)` at the
/// end where a crate is listed again.
fn parse_tree_line(line: &str) -> Result<Crate> {
    let malformed = || anyhow!("cargo tree printed {line:?}, not `<name> v<version>|<license>`");
    let line = line.strip_suffix(" (*)").unwrap_or(line);
    let (package, license) = line.split_once('|').ok_or_else(malformed)?;
    let mut words = package.splitn(3, ' ');
    let name = words
        .next()
        .filter(|n| !n.is_empty())
        .ok_or_else(malformed)?;
    let version = words
        .next()
        .and_then(|v| v.strip_prefix('v'))
        .ok_or_else(malformed)?;
    // Anything after the version is where it comes from other than the registry: a
    // path of this workspace (or a git repository, which this workspace has none of).
    let registry = words.next().is_none();
    let license = license.trim();
    Ok(Crate {
        name: name.to_owned(),
        version: version.to_owned(),
        license: (!license.is_empty()).then(|| spdx_license(license)),
        registry,
        sha256: None,
    })
}

/// Cargo's `license` as an SPDX expression: old manifests write `MIT/Apache-2.0`
/// for `MIT OR Apache-2.0`, which SPDX does not parse.
fn spdx_license(license: &str) -> String {
    license
        .split('/')
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" OR ")
}

/// The host name pins.toml uses for a Rust target, found as the catalog's build script
/// finds it: from the target's `target_arch` and `target_endian` as rustc reports them
/// (`arch_table::host_name`: `powerpc64le-unknown-linux-gnu` is `powerpc64le`).
fn pins_host(target: &str) -> Result<String> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let output = Command::new(&rustc)
        .args(["--print", "cfg", "--target", target])
        .output()
        .with_context(|| format!("running {rustc} --print cfg --target {target}"))?;
    let cfg = String::from_utf8_lossy(&output.stdout);
    let value = |key: &str| {
        cfg.lines()
            .find_map(|line| line.strip_prefix(key))
            .and_then(|rest| rest.strip_prefix("=\""))
            .and_then(|rest| rest.strip_suffix('"'))
    };
    match (value("target_arch"), value("target_endian")) {
        (Some(arch), Some(endian)) => Ok(arch_table::host_name(arch, endian)),
        _ => Err(anyhow!(
            "{rustc} --print cfg --target {target} names no target_arch and target_endian: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )),
    }
}

/// The compiler's version: `rustc 1.95.0 (59807616e 2026-04-14)` gives `1.95.0`.
fn rust_version() -> Result<String> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let output = Command::new(&rustc)
        .arg("--version")
        .output()
        .with_context(|| format!("running {rustc} --version"))?;
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .nth(1)
        .map(str::to_owned)
        .with_context(|| format!("{rustc} --version printed no version"))
}

/// When the SBOM was made, and the time of every file in the Debian packages, as
/// reproducible builds define it: `SOURCE_DATE_EPOCH` if set, else the commit time of
/// the checkout's `HEAD`.
pub fn source_date_epoch(root: &Path) -> Result<i64> {
    if let Ok(epoch) = std::env::var("SOURCE_DATE_EPOCH") {
        return epoch.trim().parse().map_err(|_| {
            anyhow!("SOURCE_DATE_EPOCH is {epoch:?}, not seconds since 1970: unset or fix it")
        });
    }
    let output = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["log", "-1", "--format=%ct"])
        .output()
        .with_context(|| "running git log for the commit time of HEAD".to_owned())?;
    let text = String::from_utf8_lossy(&output.stdout);
    match text.trim().parse() {
        Ok(time) if output.status.success() => Ok(time),
        _ => Err(anyhow!(
            "{} has no git commit to date the SBOM and packages by ({}): set SOURCE_DATE_EPOCH",
            root.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        )),
    }
}

/// Seconds since 1970 as `YYYY-MM-DDThh:mm:ssZ` (UTC), SPDX's date format.
pub fn utc_timestamp(epoch: i64) -> String {
    let days = epoch.div_euclid(86_400);
    let seconds = epoch.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days: days since 1970-01-01 to a proleptic Gregorian
    // date, in eras of 400 years that start on March 1st.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

/// An SPDX identifier: letters, digits, `.` and `-` only.
fn spdx_id(kind: &str, name: &str, version: &str) -> String {
    let clean = |text: &str| {
        text.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' {
                    c
                } else {
                    '-'
                }
            })
            .collect::<String>()
    };
    format!("SPDXRef-{kind}-{}-{}", clean(name), clean(version))
}

fn relationship(from: &str, kind: &str, to: &str) -> Value {
    json!({
        "spdxElementId": from,
        "relationshipType": kind,
        "relatedSpdxElement": to,
    })
}

/// A package entry with the fields every one of ours has.
fn package(id: &str, name: &str, version: &str, license: Option<&str>) -> Value {
    json!({
        "SPDXID": id,
        "name": name,
        "versionInfo": version,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": license.unwrap_or("NOASSERTION"),
        "copyrightText": "NOASSERTION",
    })
}

fn purl(locator: String) -> Value {
    json!([{
        "referenceCategory": "PACKAGE-MANAGER",
        "referenceType": "purl",
        "referenceLocator": locator,
    }])
}

fn sha256(digest: &str) -> Value {
    json!([{ "algorithm": "SHA256", "checksumValue": digest }])
}

/// The SPDX document (a pure function of its inputs).
pub fn document(inputs: &Inputs) -> Value {
    let Inputs {
        file_name,
        package: binfmt,
        source,
        host,
        ..
    } = inputs;
    let mut packages = Vec::new();
    let mut relationships = Vec::new();

    let binary_id = spdx_id("Binary", file_name, &binfmt.version);
    let mut binary = package(
        &binary_id,
        &binfmt.name,
        &binfmt.version,
        binfmt.license.as_deref(),
    );
    binary["packageFileName"] = json!(file_name);
    binary["checksums"] = sha256(inputs.sha256);
    binary["primaryPackagePurpose"] = json!("APPLICATION");
    binary["comment"] = json!(format!(
        "the static binary `cargo xtask dist` builds from the {} package; it embeds the \
         QEMU emulators listed as its CONTAINS relationships",
        binfmt.name
    ));
    packages.push(binary);
    relationships.push(relationship("SPDXRef-DOCUMENT", "DESCRIBES", &binary_id));

    for krate in inputs.crates.iter() {
        let id = spdx_id("Crate", &krate.name, &krate.version);
        let mut entry = package(&id, &krate.name, &krate.version, krate.license.as_deref());
        if krate.registry {
            entry["externalRefs"] = purl(format!("pkg:cargo/{}@{}", krate.name, krate.version));
        } else {
            entry["comment"] = json!("a crate of this workspace");
        }
        if let Some(digest) = &krate.sha256 {
            entry["checksums"] = sha256(digest);
        }
        entry["primaryPackagePurpose"] = json!("LIBRARY");
        packages.push(entry);
        relationships.push(relationship(&binary_id, "STATIC_LINK", &id));
    }
    let std_id = spdx_id("Rust", "std", inputs.rust_version);
    let mut std = package(&std_id, "std", inputs.rust_version, Some(RUST_STD_LICENSE));
    std["comment"] = json!("the Rust standard library (std, alloc, core) of the compiler");
    std["primaryPackagePurpose"] = json!("LIBRARY");
    packages.push(std);
    relationships.push(relationship(&binary_id, "STATIC_LINK", &std_id));

    // QEMU, as Debian ships it. purls as the purl spec writes Debian's: the epoch kept,
    // the source package as arch=source.
    let distro = &source.suite;
    let source_id = spdx_id("Debian-source", &source.source_package, &source.version);
    let mut source_package = package(
        &source_id,
        &source.source_package,
        &source.version,
        Some(QEMU_LICENSE),
    );
    source_package["externalRefs"] = purl(format!(
        "pkg:deb/debian/{}@{}?arch=source&distro={distro}",
        source.source_package, source.version
    ));
    source_package["primaryPackagePurpose"] = json!("SOURCE");
    source_package["comment"] = json!(format!(
        "Debian's source package of QEMU {}, suite {distro}",
        source.upstream_version()
    ));
    packages.push(source_package);

    let deb_id = spdx_id(
        "Debian-binary",
        &format!("{}-{}", host.package, host.debian_arch),
        &source.version,
    );
    let deb_name = host
        .pool_path
        .rsplit('/')
        .next()
        .unwrap_or(host.pool_path.as_str());
    let mut deb = package(&deb_id, &host.package, &source.version, Some(QEMU_LICENSE));
    deb["packageFileName"] = json!(deb_name);
    deb["checksums"] = sha256(&host.sha256);
    deb["externalRefs"] = purl(format!(
        "pkg:deb/debian/{}@{}?arch={}&distro={distro}",
        host.package, source.version, host.debian_arch
    ));
    deb["primaryPackagePurpose"] = json!("INSTALL");
    deb["comment"] = json!(format!(
        "{}, {} bytes, from Debian's archive (pool path {}); the emulators below are \
         taken from it unmodified",
        deb_name, host.size, host.pool_path
    ));
    packages.push(deb);
    relationships.push(relationship(&deb_id, "GENERATED_FROM", &source_id));

    for emulator in host.embedded() {
        let name = format!("qemu-{}", emulator.cpu);
        let id = spdx_id("Emulator", &name, source.upstream_version());
        let mut entry = package(&id, &name, source.upstream_version(), Some(QEMU_LICENSE));
        entry["packageFileName"] = json!(emulator.path);
        entry["checksums"] = sha256(&emulator.sha256);
        entry["primaryPackagePurpose"] = json!("APPLICATION");
        entry["comment"] = json!(format!(
            "size {} bytes; for {} (linux/{}); embedded compressed, written out as \
             {name}-{} by binfmt",
            emulator.size,
            emulator.cpu,
            emulator.oci,
            &emulator.sha256[..16.min(emulator.sha256.len())]
        ));
        packages.push(entry);
        relationships.push(relationship(&binary_id, "CONTAINS", &id));
        relationships.push(relationship(&deb_id, "CONTAINS", &id));
    }

    json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": file_name,
        // Unique per binary, and the same for the same bytes: the digest is in it.
        "documentNamespace": format!(
            "https://spdx.org/spdxdocs/{file_name}-{}-{}",
            binfmt.version, inputs.sha256
        ),
        "creationInfo": {
            "created": inputs.created,
            "creators": [format!("Tool: binfmt-xtask-dist-{}", binfmt.version)],
        },
        "packages": packages,
        "relationships": relationships,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_civil_dates() {
        assert_eq!(utc_timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_timestamp(1_796_053_160), "2026-11-30T15:39:20Z");
        assert_eq!(utc_timestamp(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_timestamp(4_107_542_399), "2100-02-28T23:59:59Z");
        assert_eq!(utc_timestamp(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn cargo_tree_lines_are_parsed() {
        let registry = parse_tree_line("clap v4.6.9|MIT OR Apache-2.0").unwrap();
        assert_eq!(
            (
                registry.name.as_str(),
                registry.version.as_str(),
                registry.registry
            ),
            ("clap", "4.6.9", true)
        );
        assert_eq!(registry.license.as_deref(), Some("MIT OR Apache-2.0"));
        let again = parse_tree_line("toml v1.2.2+spec-1.1.0|MIT OR Apache-2.0 (*)").unwrap();
        assert_eq!(again.version, "1.2.2+spec-1.1.0");
        let path = parse_tree_line("tiny-elf v0.1.0 (/work/crates/tiny-elf)|").unwrap();
        assert!(!path.registry);
        assert_eq!(path.license, None);
        assert!(parse_tree_line("nonsense").is_err());
    }

    #[test]
    fn hosts_are_found_by_target_arch_as_the_catalog_finds_them() {
        assert_eq!(pins_host("x86_64-unknown-linux-musl").unwrap(), "x86_64");
        assert_eq!(
            pins_host("powerpc64le-unknown-linux-gnu").unwrap(),
            "powerpc64le"
        );
        assert_eq!(pins_host("s390x-unknown-linux-gnu").unwrap(), "s390x");
        assert!(pins_host("no-such-target").is_err());
    }

    #[test]
    fn cargo_lock_checksums_are_read() {
        let checksums = lock_checksums(&crate::workspace::workspace_root()).unwrap();
        let (_, sha2) = checksums
            .iter()
            .find(|((name, _), _)| name == "sha2")
            .unwrap();
        assert_eq!(sha2.len(), 64, "{sha2}");
        // Workspace crates have none.
        assert!(!checksums.keys().any(|(name, _)| name == "qemu-catalog"));
    }

    #[test]
    fn old_slash_licenses_become_spdx_expressions() {
        assert_eq!(spdx_license("MIT/Apache-2.0"), "MIT OR Apache-2.0");
        assert_eq!(spdx_license("MIT OR Apache-2.0"), "MIT OR Apache-2.0");
        assert_eq!(
            spdx_id("Crate", "windows_x86_64", "0.5+x"),
            "SPDXRef-Crate-windows-x86-64-0.5-x"
        );
    }

    fn manifest() -> Manifest {
        Manifest::load(&crate::workspace::workspace_root().join(MANIFEST_PATH)).unwrap()
    }

    #[test]
    fn the_document_names_the_binary_the_crates_and_qemu() {
        let manifest = manifest();
        let host = manifest.host("x86_64").unwrap();
        let package = Crate {
            name: "binfmt".into(),
            version: "0.1.0".into(),
            license: Some("MIT OR Apache-2.0".into()),
            registry: false,
            sha256: None,
        };
        let crates = [
            Crate {
                name: "clap".into(),
                version: "4.6.0".into(),
                license: Some("MIT OR Apache-2.0".into()),
                registry: true,
                sha256: Some("cd".repeat(32)),
            },
            Crate {
                name: "qemu-catalog".into(),
                version: "0.1.0".into(),
                license: None,
                registry: false,
                sha256: None,
            },
        ];
        let document = document(&Inputs {
            file_name: "binfmt-x86_64-linux-musl",
            sha256: "ab".repeat(32).as_str(),
            package: &package,
            crates: &crates,
            rust_version: "1.95.0",
            source: &manifest.source,
            host,
            created: "2026-11-30T15:39:20Z",
        });
        let packages = document["packages"].as_array().unwrap();
        let named = |name: &str| {
            packages
                .iter()
                .find(|p| p["name"] == name)
                .unwrap_or_else(|| panic!("no package {name} in {document:#}"))
        };
        assert_eq!(
            named("binfmt")["checksums"][0]["checksumValue"],
            "ab".repeat(32)
        );
        assert_eq!(
            named("clap")["externalRefs"][0]["referenceLocator"],
            "pkg:cargo/clap@4.6.0"
        );
        assert_eq!(
            named("clap")["checksums"][0]["checksumValue"],
            "cd".repeat(32)
        );
        assert!(named("qemu-catalog").get("checksums").is_none());
        assert_eq!(named("qemu-catalog")["licenseDeclared"], "NOASSERTION");
        assert_eq!(named("std")["versionInfo"], "1.95.0");
        assert_eq!(named("qemu")["versionInfo"], manifest.source.version);
        assert_eq!(
            named("qemu-user")["checksums"][0]["checksumValue"],
            host.sha256
        );
        // Exactly the emulators the catalog embeds for an x86_64 host: not its own.
        for emulator in &host.emulators {
            let name = format!("qemu-{}", emulator.cpu);
            let found = packages.iter().find(|p| p["name"] == name);
            if ["x86_64", "i386"].contains(&emulator.cpu.as_str()) {
                assert!(found.is_none(), "{name} is native to x86_64");
            } else {
                let found = found.unwrap_or_else(|| panic!("no {name}"));
                assert_eq!(found["checksums"][0]["checksumValue"], emulator.sha256);
                let size = format!("size {} bytes", emulator.size);
                assert!(found["comment"].as_str().unwrap().contains(&size));
            }
        }
        let relationships = document["relationships"].as_array().unwrap();
        let count = |kind: &str| {
            relationships
                .iter()
                .filter(|r| r["relationshipType"] == kind)
                .count()
        };
        assert_eq!(count("DESCRIBES"), 1);
        assert_eq!(count("STATIC_LINK"), crates.len() + 1);
        assert_eq!(count("CONTAINS"), 2 * host.embedded().len());
        assert_eq!(count("GENERATED_FROM"), 1);
    }
}
