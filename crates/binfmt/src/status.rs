//! The status JSON that tonistiigi/binfmt prints with no arguments, and after every
//! install or uninstall: `{"supported": [...], "emulators": [...]}`.
//!
//! docker/setup-qemu-action `JSON.parse`s it and publishes `supported` as its output,
//! so stdout carries this document and nothing else.
//!
//! `supported` is proved by execution, as buildkit's `archutil.SupportedPlatforms`
//! (which tonistiigi/binfmt prints) does: the host's own platform first, then every
//! platform whose probe ran, in buildkit's order, spelled as containerd spells them
//! (`linux/arm/v7`, `linux/amd64/v2`). The amd64 probe's level adds
//! `linux/amd64/v2` up to `/v4`. `emulators` lists the enabled entries, whatever
//! their names; the document has these two keys and no other, as tonistiigi/binfmt's.
//! Which entry and interpreter run each emulated platform (binfmt's, one chosen for
//! the architecture, another tool's such as Rosetta or FEX) is [`handlers`]: on
//! stderr for a person ([`handler_line`]), in `check` and `doctor`.

use qemu_catalog::{Arch, Emulator};
use serde::Serialize;

use crate::survey::Survey;

/// The document.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Status {
    /// Platforms this machine can run, spelled as containerd spells them.
    pub supported: Vec<String>,
    /// Names of the enabled binfmt_misc entries.
    pub emulators: Vec<String>,
}

/// The entry that runs an architecture's programs.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Handler {
    /// The architecture's first platform (`linux/arm64`, `linux/arm/v7`).
    pub platform: String,
    /// The entry the kernel uses for it (of several, the one registered last).
    pub entry: String,
    /// Its interpreter.
    pub interpreter: String,
    /// What that interpreter is, as far as binfmt can tell: `binfmt's QEMU 10.0.13`,
    /// `binfmt's, an earlier pin`, or `not binfmt's`.
    pub emulator: String,
}

/// The handlers of every architecture that is proved and that an entry serves.
pub fn handlers(survey: &Survey) -> Vec<Handler> {
    ORDER
        .into_iter()
        .filter(|arch| survey.arch(*arch).proof().is_some())
        .filter_map(|arch| {
            let runner = survey.runner(arch)?;
            Some(Handler {
                platform: arch.platforms()[0].to_owned(),
                entry: runner.registration.name.clone(),
                interpreter: runner.interpreter().display().to_string(),
                emulator: emulator_of(arch, runner.interpreter()),
            })
        })
        .collect()
}

/// The handler as a log line: `linux/arm64 runs through qemu-aarch64: <interpreter>
/// (<what it is>)`.
pub fn handler_line(handler: &Handler) -> String {
    format!(
        "{} runs through {}: {} ({})",
        handler.platform, handler.entry, handler.interpreter, handler.emulator
    )
}

/// What the interpreter at `path` is for `arch` (see [`Handler::emulator`]).
pub fn emulator_of(arch: Arch, path: &std::path::Path) -> String {
    let name = path
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or("");
    let ours = Emulator::for_arch(arch).map(|emulator| interpreter_files::file_name(&emulator));
    if interpreter_files::is_memfd_path(path) {
        "an in-memory file (memfd) of the process that registered it".to_owned()
    } else if ours.as_deref() == Some(name) {
        format!("binfmt's QEMU {}", qemu_catalog::emulator::QEMU)
    } else if interpreter_files::is_emulator_file_name(name) {
        "binfmt's, an earlier pin".to_owned()
    } else {
        "not binfmt's".to_owned()
    }
}

/// buildkit's order of the platforms after the host's own.
const ORDER: [Arch; 10] = [
    Arch::Amd64,
    Arch::Arm64,
    Arch::Riscv64,
    Arch::Ppc64le,
    Arch::S390x,
    Arch::I386,
    Arch::Mips64le,
    Arch::Mips64,
    Arch::Loong64,
    Arch::Arm,
];

/// The platforms of `arch` that `survey` proves, in containerd's spelling; for amd64
/// also one `linux/amd64/vN` per level above v1 that the probe reported.
pub fn proved_platforms(survey: &Survey, arch: Arch) -> Vec<String> {
    let Some(proof) = survey.arch(arch).proof() else {
        return Vec::new();
    };
    let mut platforms: Vec<String> = arch.platforms().iter().map(|p| (*p).to_owned()).collect();
    if let Some(level) = proof.level {
        platforms.extend((2..=level).map(|v| format!("linux/{}/v{v}", arch.oci())));
    }
    platforms
}

/// Builds the document from a survey that probed every architecture.
pub fn status(survey: &Survey) -> Status {
    let mut emulators: Vec<String> = survey
        .entries
        .iter()
        .filter(|entry| entry.enabled)
        .map(|entry| entry.registration.name.clone())
        .collect();
    emulators.sort();

    let host = Arch::native().first().copied();
    let mut supported = Vec::new();
    if let Some(host) = host {
        // This program runs, which proves the host's platform even if its probe could
        // not tell more (the level) or could not run.
        supported = proved_platforms(survey, host);
        if supported.is_empty() {
            supported = host.platforms().iter().map(|p| (*p).to_owned()).collect();
        }
    }
    if survey.probe_error.is_some() {
        // Nothing could be executed: say what the table claims, as before probes.
        for arch in ORDER.into_iter().filter(|arch| Some(*arch) != host) {
            if arch.is_native() || !survey.serving_claims(arch).is_empty() {
                supported.extend(arch.platforms().iter().map(|p| (*p).to_owned()));
            }
        }
    } else {
        for arch in ORDER.into_iter().filter(|arch| Some(*arch) != host) {
            supported.extend(proved_platforms(survey, arch));
        }
    }
    Status {
        supported,
        emulators,
    }
}

/// The document as tonistiigi/binfmt prints it (indented JSON, a final newline).
pub fn render(status: &Status) -> String {
    // Serializing two lists of strings cannot fail.
    let mut text = serde_json::to_string_pretty(status).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use binfmt_misc::fake::FakeTable;

    use super::*;
    use crate::probe::{ProbeError, ProbeRun, Prober};
    use crate::testing::{FakeProber, entry};

    #[test]
    fn supported_is_what_ran_in_buildkits_order_with_amd64_levels() {
        let table = FakeTable::new();
        table.insert(entry(Arch::Arm64, true, "POCF"));
        table.insert(entry(Arch::Arm, true, "POCF"));
        table.insert(entry(Arch::S390x, false, "POCF"));
        // riscv64 has an entry that does not work: it is not supported.
        table.insert(entry(Arch::Riscv64, true, "OC"));
        let prober = FakeProber::running(&[Arch::Amd64, Arch::I386, Arch::Arm64, Arch::Arm], 3);
        let status = status(&Survey::take(Some(&table), &prober).unwrap());
        assert_eq!(
            status.emulators,
            ["qemu-aarch64", "qemu-arm", "qemu-riscv64"]
        );
        if cfg!(target_arch = "x86_64") {
            assert_eq!(
                status.supported,
                [
                    "linux/amd64",
                    "linux/amd64/v2",
                    "linux/amd64/v3",
                    "linux/arm64",
                    "linux/386",
                    "linux/arm/v7",
                    "linux/arm/v6"
                ]
            );
        }
        let json: serde_json::Value = serde_json::from_str(&render(&status)).unwrap();
        assert_eq!(json["emulators"][0], "qemu-aarch64");
    }

    #[test]
    fn without_probes_supported_is_what_the_table_claims() {
        struct Broken;
        impl Prober for Broken {
            fn run(&self, _: &[Arch]) -> Result<ProbeRun, ProbeError> {
                Err(ProbeError("no directory".into()))
            }
        }
        let table = FakeTable::new();
        table.insert(entry(Arch::Arm64, true, "POCF"));
        let status = status(&Survey::take(Some(&table), &Broken).unwrap());
        if cfg!(target_arch = "x86_64") {
            assert_eq!(
                status.supported,
                ["linux/amd64", "linux/arm64", "linux/386"]
            );
        }
    }
}
