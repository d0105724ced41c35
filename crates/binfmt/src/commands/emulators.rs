//! `binfmt emulators [--json]`: what this binary carries, from the pins embedded at
//! build time (`qemu-blobs/pins.toml`, checked by the catalog's build script): per
//! emulator its architecture, the entry it is registered as, the file name it is
//! written under, QEMU's version, the Debian package and version it came from, and
//! the sha256 and size of the file, so that a user can check a file on disk
//! (`sha256sum /var/lib/binfmt/qemu-*`) or an SBOM against the binary.

use std::fmt::Write as _;

use qemu_catalog::Emulator;
use qemu_catalog::emulator::{PACKAGE, QEMU, SOURCE_PACKAGE, SOURCE_VERSION};
use serde::Serialize;

use crate::cli::EmulatorsArgs;
use crate::outcome::{CommandError, Completion, print_stdout};

/// One carried emulator, as `--json` prints it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Carried {
    /// The architecture, as `--install` takes it (`arm64`).
    pub arch: String,
    /// The platforms it runs (`linux/arm/v7`, `linux/arm/v6`).
    pub platforms: Vec<&'static str>,
    /// The binfmt_misc entry it is registered as (`qemu-aarch64`).
    pub entry: String,
    /// The file it is written to in the interpreter directory.
    pub file: String,
    /// The upstream QEMU version.
    pub qemu: &'static str,
    /// The Debian binary package it was extracted from.
    pub package: &'static str,
    /// That package's Debian version.
    pub package_version: &'static str,
    /// The Debian source package.
    pub source_package: &'static str,
    /// The sha256 of the emulator file.
    pub sha256: &'static str,
    /// Its size in bytes.
    pub size: u64,
}

/// Every emulator this binary carries, in the catalog's order.
pub fn carried() -> Vec<Carried> {
    Emulator::all()
        .iter()
        .map(|emulator| {
            let arch = emulator.arch();
            Carried {
                arch: arch.oci().to_owned(),
                platforms: arch.platforms().to_vec(),
                entry: arch.entry_name(),
                file: interpreter_files::file_name(emulator),
                qemu: QEMU,
                package: PACKAGE,
                package_version: SOURCE_VERSION,
                source_package: SOURCE_PACKAGE,
                sha256: emulator.sha256(),
                size: emulator.size(),
            }
        })
        .collect()
}

/// The human table.
pub fn render_text(carried: &[Carried]) -> String {
    let mut out = format!(
        "{} emulators, QEMU {QEMU} from Debian package {PACKAGE} {SOURCE_VERSION} (source \
         {SOURCE_PACKAGE}):\n",
        carried.len()
    );
    let _ = writeln!(out, "{:<9} {:<18} {:>10}  SHA256", "ARCH", "ENTRY", "BYTES");
    for emulator in carried {
        let _ = writeln!(
            out,
            "{:<9} {:<18} {:>10}  {}",
            emulator.arch, emulator.entry, emulator.size, emulator.sha256
        );
    }
    out
}

/// The JSON: a list of [`Carried`].
pub fn render_json(carried: &[Carried]) -> String {
    let mut text = serde_json::to_string_pretty(carried).unwrap_or_default();
    text.push('\n');
    text
}

/// Runs `binfmt emulators`.
pub fn run(args: &EmulatorsArgs) -> Result<Completion, CommandError> {
    let carried = carried();
    print_stdout(&if args.json {
        render_json(&carried)
    } else {
        render_text(&carried)
    })?;
    Ok(Completion::Complete)
}
