//! `binfmt emulators [--json] [--config FILE] [--emulator ARCH=PATH]`: what this
//! binary carries, from the pins embedded at build time (`qemu-blobs/pins.toml`,
//! checked by the catalog's build script): per emulator its architecture, the entry
//! it is registered as, the file name it is written under, QEMU's version, the Debian
//! package and version it came from, and the sha256 and size of the file, so that a
//! user can check a file on disk (`sha256sum /var/lib/binfmt/qemu-*`) or an SBOM
//! against the binary.
//!
//! With the emulators chosen for some architectures (a config file's `[emulators]`,
//! or `--emulator`), it says which emulator serves each: those files are checked and
//! their probes run, as an install would, and a refused one fails the command.

use std::fmt::Write as _;

use qemu_catalog::Emulator;
use qemu_catalog::emulator::{PACKAGE, QEMU, SOURCE_PACKAGE, SOURCE_VERSION};
use serde::Serialize;

use crate::chosen::{CheckedEmulator, ChosenEmulator};
use crate::commands::lines::print_stdout;
use crate::config::Config;
use crate::outcome::{CommandError, Completion};
use binfmt_cli::EmulatorsArgs;

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
    /// The emulator chosen to serve the architecture instead, when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chosen: Option<Chosen>,
}

/// An emulator chosen instead of the one carried, as checked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Chosen {
    /// Its path.
    pub path: String,
    /// Its sha256, as read.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// The dynamic loader it needs, when it is not statically linked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loader: Option<String>,
}

impl From<&CheckedEmulator> for Chosen {
    fn from(checked: &CheckedEmulator) -> Chosen {
        Chosen {
            path: checked.file.path.display().to_string(),
            sha256: checked.file.sha256.clone(),
            size: checked.file.size,
            loader: checked
                .file
                .loader
                .as_ref()
                .map(|loader| loader.display().to_string()),
        }
    }
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
                chosen: None,
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
    for emulator in carried {
        if let Some(chosen) = &emulator.chosen {
            let _ = writeln!(
                out,
                "{} is served by {} instead, as chosen ({} bytes, sha256 {}{})",
                emulator.arch,
                chosen.path,
                chosen.size,
                chosen.sha256,
                chosen
                    .loader
                    .as_ref()
                    .map(|loader| format!("; dynamically linked, needs {loader}"))
                    .unwrap_or_default()
            );
        }
    }
    out
}

/// The JSON: a list of [`Carried`].
pub fn render_json(carried: &[Carried]) -> String {
    let mut text = serde_json::to_string_pretty(carried).unwrap_or_default();
    text.push('\n');
    text
}

/// The emulators chosen by `--config` and `--emulator`.
fn chosen(args: &EmulatorsArgs) -> Result<Vec<ChosenEmulator>, CommandError> {
    let mut chosen = match &args.config {
        Some(path) => {
            Config::load(path)
                .map_err(|error| CommandError::Usage(error.into()))?
                .install
                .chosen
        }
        None => Vec::new(),
    };
    for spec in &args.emulators {
        chosen.push(
            ChosenEmulator::parse(spec)
                .map_err(|error| CommandError::usage("--emulator", error))?,
        );
    }
    crate::chosen::refuse_duplicates(&chosen).map_err(|error| CommandError::Usage(error.into()))?;
    Ok(chosen)
}

/// Runs `binfmt emulators`.
pub fn run(args: &EmulatorsArgs) -> Result<Completion, CommandError> {
    let mut carried = carried();
    for chosen in chosen(args)? {
        let checked = chosen.check()?;
        if let Some(emulator) = carried
            .iter_mut()
            .find(|emulator| emulator.entry == checked.arch.entry_name())
        {
            emulator.chosen = Some(Chosen::from(&checked));
        }
    }
    print_stdout(&if args.json {
        render_json(&carried)
    } else {
        render_text(&carried)
    })?;
    Ok(Completion::Complete)
}
