//! `binfmt check PLATFORMS`: the CI preflight (the seed's `verify-qemu.sh`, but by
//! execution).
//!
//! Exits 0 only if every listed platform is proved by its probe; otherwise it says,
//! per platform, what is missing and why (no entry, entry disabled, no flag F, probe
//! failed, ...) and the one command that fixes it, then one command that fixes them
//! all, and exits 1. `--json` prints the same as a JSON document for machines.
//!
//! The verdicts are worked out from a [`Survey`] (pure; unit tested with a fake
//! prober); [`run`] only opens the table, takes the survey and prints.

use std::fmt;
use std::path::{Path, PathBuf};

use binfmt_misc::{BinfmtMisc, Entry, Table};
use qemu_catalog::{Arch, Emulator, UnknownArch};
use serde::Serialize;

use crate::empty_root::{ProbeFailure as Failure, Prober};
use crate::survey::Survey;

/// One platform asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wanted {
    /// Its architecture.
    pub arch: Arch,
    /// The variant, if one was given (`v7`, `v3`).
    pub variant: Option<String>,
}

impl Wanted {
    /// The x86-64 level an `amd64/vN` variant asks for.
    fn level(&self) -> Option<u8> {
        let variant = self.variant.as_deref()?;
        if self.arch != Arch::Amd64 {
            return None;
        }
        variant.strip_prefix('v')?.parse().ok()
    }
}

impl fmt::Display for Wanted {
    /// containerd's spelling: `linux/arm64`, `linux/amd64/v3`, `linux/arm/v7`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.variant {
            Some(variant) => write!(f, "linux/{}/{variant}", self.arch.oci()),
            None => f.write_str(self.arch.platforms()[0]),
        }
    }
}

/// Parses `linux/arm64,amd64/v3,qemu-riscv64,...` (items may also come as separate
/// arguments). Every usual spelling of [`Arch::parse`], plus entry names
/// (`qemu-aarch64`) as the seed's `verify-qemu.sh` lists them.
pub fn parse(items: &[String]) -> Result<Vec<Wanted>, UnknownArch> {
    let mut wanted = Vec::new();
    for item in items.iter().flat_map(|list| list.split(',')).map(str::trim) {
        let spec = item.strip_prefix("qemu-").unwrap_or(item);
        let arch = Arch::parse(spec)?;
        let lower = spec.to_ascii_lowercase();
        let rest = lower.strip_prefix("linux/").unwrap_or(&lower);
        let variant = rest.split_once('/').map(|(_, variant)| variant.to_owned());
        let item = Wanted { arch, variant };
        if !wanted.contains(&item) {
            wanted.push(item);
        }
    }
    Ok(wanted)
}

/// How a proved platform runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum How {
    /// The CPU runs it; no entry is involved.
    Native,
    /// Through these enabled entries.
    Emulated(Vec<String>),
    /// It runs, but no entry is visible at the mount checked (another binfmt_misc
    /// instance, or the CPU).
    Unseen,
}

/// Why a platform is not proved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// No probe could be run at all.
    ProbesUnavailable(String),
    /// The table could not be read (not mounted, ...).
    NoTable(String),
    /// The whole table is disabled (`status` says `disabled`).
    TableDisabled,
    /// No entry claims the architecture.
    NoEntry,
    /// Entries claim it, but all are disabled.
    Disabled(Vec<String>),
    /// The enabled entries lack flag F: they do not work in containers and chroots.
    NoFixBinary(Vec<(String, PathBuf)>),
    /// The probe failed through these entries.
    ProbeFailed {
        entries: Vec<String>,
        failure: Failure,
    },
    /// The machine's own architecture does not run: an entry hijacks it.
    HostArchEntry(Vec<String>),
    /// The machine's own architecture does not run, and no entry is involved.
    NativeFails(Option<Failure>),
    /// amd64 runs, at a lower x86-64 level than asked for.
    LevelTooLow { have: u8, want: u8 },
}

impl Reason {
    /// A short, stable name for machines.
    pub fn code(&self) -> &'static str {
        match self {
            Reason::ProbesUnavailable(_) => "probes-unavailable",
            Reason::NoTable(_) => "no-binfmt-misc",
            Reason::TableDisabled => "binfmt-misc-disabled",
            Reason::NoEntry => "no-entry",
            Reason::Disabled(_) => "disabled",
            Reason::NoFixBinary(_) => "no-f",
            Reason::ProbeFailed { .. } => "probe-failed",
            Reason::HostArchEntry(_) => "host-arch-entry",
            Reason::NativeFails(_) => "native-fails",
            Reason::LevelTooLow { .. } => "level-too-low",
        }
    }

    /// What is wrong, in a sentence.
    pub fn describe(&self, arch: Arch, mount: &Path) -> String {
        let mount = mount.display();
        match self {
            Reason::ProbesUnavailable(why) => format!("cannot run the probe: {why}"),
            Reason::NoTable(why) => why.clone(),
            Reason::TableDisabled => format!(
                "binfmt_misc is disabled as a whole ({mount}/status says disabled): the \
                 kernel ignores every entry"
            ),
            Reason::NoEntry => {
                format!("no entry: nothing in {mount} handles {arch} programs")
            }
            Reason::Disabled(names) => format!(
                "disabled: {} claims {arch} programs but is disabled",
                names.join(", ")
            ),
            Reason::NoFixBinary(entries) => format!(
                "no F: {} has no flag F, so the kernel looks for {} at exec time in the \
                 caller's own root, where containers and chroots do not have it",
                entries
                    .iter()
                    .map(|(name, _)| name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                entries
                    .iter()
                    .map(|(_, path)| path.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Reason::ProbeFailed { entries, failure } => {
                format!("probe failed through {}: {failure}", entries.join(", "))
            }
            Reason::HostArchEntry(names) => format!(
                "{} claims {arch}, this machine's own architecture, and the {arch} probe \
                 does not run through it",
                names.join(", ")
            ),
            Reason::NativeFails(failure) => format!(
                "this machine's kernel does not run {arch} programs{}",
                failure
                    .as_ref()
                    .map(|f| format!(" ({f})"))
                    .unwrap_or_default()
            ),
            Reason::LevelTooLow { have, want } => format!(
                "this CPU runs x86-64-v{have}, not v{want}: it lacks instructions v{want} \
                 programs use"
            ),
        }
    }

    /// The one thing that fixes it.
    pub fn fix(&self, arch: Arch, mount: &Path) -> Fix {
        let mount = mount.display();
        let carried = Emulator::for_arch(arch).is_some();
        let install = |uninstall: Vec<String>| {
            if carried {
                Fix::Install {
                    uninstall,
                    arch: Some(arch),
                }
            } else {
                Fix::None(format!(
                    "binfmt carries no {arch} emulator: {arch} is this machine's own \
                     architecture"
                ))
            }
        };
        match self {
            Reason::ProbesUnavailable(_) => Fix::None(
                "run binfmt as root (chroot needs CAP_SYS_CHROOT), with TMPDIR on a \
                 filesystem that allows exec"
                    .to_owned(),
            ),
            Reason::NoTable(_) | Reason::NoEntry | Reason::Disabled(_) => install(Vec::new()),
            Reason::NoFixBinary(entries) => install(others(arch, entries.iter().map(|(n, _)| n))),
            Reason::ProbeFailed { entries, .. } => install(others(arch, entries.iter())),
            Reason::TableDisabled => Fix::Command(format!("echo 1 > {mount}/status")),
            Reason::HostArchEntry(names) => Fix::Command(
                names
                    .iter()
                    .map(|name| format!("echo -1 > {mount}/{name}"))
                    .collect::<Vec<_>>()
                    .join(" && "),
            ),
            Reason::NativeFails(_) => Fix::None(
                "binfmt never registers the host's own architectures; for 386 on x86_64 \
                 the kernel needs IA32 emulation (CONFIG_IA32_EMULATION, not booted with \
                 ia32_emulation=0)"
                    .to_owned(),
            ),
            Reason::LevelTooLow { have, .. } => Fix::None(format!(
                "none: no registration changes the CPU; build for linux/amd64/v{have} or lower"
            )),
        }
    }
}

/// `binfmt`, with `--mount` when the mount is not the default one: the start of every
/// command a fix suggests.
pub fn binfmt_command(mount: &Path) -> String {
    if mount == Path::new(binfmt_misc::DEFAULT_MOUNT) {
        "binfmt".to_owned()
    } else {
        format!("binfmt --mount {}", mount.display())
    }
}

/// The entries among `names` that are not binfmt's own `qemu-<cpu>`: they must go for
/// ours to be the one the kernel uses.
fn others<'a>(arch: Arch, names: impl Iterator<Item = &'a String>) -> Vec<String> {
    names
        .filter(|name| **name != arch.entry_name())
        .cloned()
        .collect()
}

/// How to fix one platform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fix {
    /// `binfmt --uninstall ... --install <arch>`.
    Install {
        uninstall: Vec<String>,
        arch: Option<Arch>,
    },
    /// A shell command.
    Command(String),
    /// Nothing binfmt can do; the reason.
    None(String),
}

impl Fix {
    /// The command, if there is one, for the table at `mount`.
    pub fn command(&self, mount: &Path) -> Option<String> {
        match self {
            Fix::Install { uninstall, arch } => {
                let mut command = binfmt_command(mount);
                if !uninstall.is_empty() {
                    command.push_str(&format!(" --uninstall {}", uninstall.join(",")));
                }
                if let Some(arch) = arch {
                    command.push_str(&format!(" --install {arch}"));
                }
                Some(command)
            }
            Fix::Command(command) => Some(command.clone()),
            Fix::None(_) => None,
        }
    }
}

/// The verdict on one platform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Proved by its probe.
    Proved(How),
    /// Not proved.
    Missing(Reason),
}

/// Decides one platform from the survey. `table_problem` says why there is no table,
/// if there is none.
pub fn verdict(survey: &Survey, table_problem: Option<&str>, wanted: &Wanted) -> Verdict {
    let arch = wanted.arch;
    if let Some(why) = &survey.probe_error {
        return Verdict::Missing(Reason::ProbesUnavailable(why.clone()));
    }
    let state = survey.arch(arch);
    let serving = survey.serving_claims(arch);
    let names = |entries: &[&Entry]| -> Vec<String> {
        entries
            .iter()
            .map(|e| e.registration.name.clone())
            .collect()
    };
    if let Some(proof) = state.proof() {
        let have = proof.level.unwrap_or(1);
        if let Some(want) = wanted.level()
            && have < want
        {
            return Verdict::Missing(Reason::LevelTooLow { have, want });
        }
        if serving.is_empty() {
            return Verdict::Proved(if arch.is_native() || table_problem.is_none() {
                How::Native
            } else {
                How::Unseen
            });
        }
        // Run in place, not in an empty root: an entry without F may have served it.
        let without_f: Vec<&Entry> = serving
            .iter()
            .copied()
            .filter(|e| !e.registration.flags.fix_binary)
            .collect();
        if !survey.confined() && !without_f.is_empty() {
            return Verdict::Missing(Reason::NoFixBinary(interpreters(&without_f)));
        }
        return Verdict::Proved(How::Emulated(names(&serving)));
    }
    let failure = state.failure().cloned();
    if arch.is_native() {
        return Verdict::Missing(if serving.is_empty() {
            Reason::NativeFails(failure)
        } else {
            Reason::HostArchEntry(names(&serving))
        });
    }
    if let Some(why) = table_problem {
        return Verdict::Missing(Reason::NoTable(why.to_owned()));
    }
    if !survey.table_enabled {
        return Verdict::Missing(Reason::TableDisabled);
    }
    if state.claims.is_empty() {
        return Verdict::Missing(Reason::NoEntry);
    }
    if serving.is_empty() {
        let all: Vec<&Entry> = state.claims.iter().collect();
        return Verdict::Missing(Reason::Disabled(names(&all)));
    }
    if serving.iter().all(|e| !e.registration.flags.fix_binary) {
        return Verdict::Missing(Reason::NoFixBinary(interpreters(&serving)));
    }
    Verdict::Missing(Reason::ProbeFailed {
        entries: names(&serving),
        failure: failure.unwrap_or(Failure::Wait("the probe was not run".into())),
    })
}

fn interpreters(entries: &[&Entry]) -> Vec<(String, PathBuf)> {
    entries
        .iter()
        .map(|e| (e.registration.name.clone(), e.interpreter().to_owned()))
        .collect()
}

/// The machine-readable report.
#[derive(Debug, Serialize)]
struct JsonReport {
    ok: bool,
    /// Whether probes ran in an empty root (false: as a user without chroot).
    confined: bool,
    platforms: Vec<JsonPlatform>,
    /// One command that fixes every platform that has a fix.
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<String>,
}

#[derive(Debug, Serialize)]
struct JsonPlatform {
    platform: String,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    runs: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    entries: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<String>,
}

/// Everything [`run`] prints, worked out.
pub struct Report {
    /// Each platform with its verdict.
    pub verdicts: Vec<(Wanted, Verdict)>,
    /// Where the table was read.
    pub mount: PathBuf,
    /// Whether the probes ran in an empty root.
    pub confined: bool,
}

impl Report {
    /// Whether every platform is proved.
    pub fn ok(&self) -> bool {
        self.verdicts
            .iter()
            .all(|(_, verdict)| matches!(verdict, Verdict::Proved(_)))
    }

    /// One command for everything fixable: every install and uninstall merged into
    /// one `binfmt` run, other commands after it.
    pub fn fix_all(&self) -> Option<String> {
        let mut uninstall: Vec<String> = Vec::new();
        let mut install: Vec<String> = Vec::new();
        let mut commands: Vec<String> = Vec::new();
        for (wanted, verdict) in &self.verdicts {
            let Verdict::Missing(reason) = verdict else {
                continue;
            };
            match reason.fix(wanted.arch, &self.mount) {
                Fix::Install { uninstall: u, arch } => {
                    for name in u {
                        if !uninstall.contains(&name) {
                            uninstall.push(name);
                        }
                    }
                    if let Some(arch) = arch.map(|a| a.oci().to_owned())
                        && !install.contains(&arch)
                    {
                        install.push(arch);
                    }
                }
                Fix::Command(command) => {
                    if !commands.contains(&command) {
                        commands.push(command);
                    }
                }
                Fix::None(_) => {}
            }
        }
        // Enabling the table comes first: installing into a disabled table is not enough.
        let mut all = commands;
        if !install.is_empty() || !uninstall.is_empty() {
            let mut command = binfmt_command(&self.mount);
            if !uninstall.is_empty() {
                command.push_str(&format!(" --uninstall {}", uninstall.join(",")));
            }
            if !install.is_empty() {
                command.push_str(&format!(" --install {}", install.join(",")));
            }
            all.push(command);
        }
        (!all.is_empty()).then(|| all.join(" && "))
    }

    /// The human report.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let width = self
            .verdicts
            .iter()
            .map(|(wanted, _)| wanted.to_string().len())
            .max()
            .unwrap_or(0);
        for (wanted, verdict) in &self.verdicts {
            match verdict {
                Verdict::Proved(how) => {
                    let how = match how {
                        How::Native => "runs natively".to_owned(),
                        How::Emulated(names) => format!("runs through {}", names.join(", ")),
                        How::Unseen => format!(
                            "runs (no entry for it in {}: another binfmt_misc instance \
                             serves it, or the CPU)",
                            self.mount.display()
                        ),
                    };
                    out.push_str(&format!("ok       {:width$}  {how}\n", wanted.to_string()));
                }
                Verdict::Missing(reason) => {
                    out.push_str(&format!(
                        "MISSING  {:width$}  {}\n",
                        wanted.to_string(),
                        reason.describe(wanted.arch, &self.mount)
                    ));
                    let fix = reason.fix(wanted.arch, &self.mount);
                    let line = match (&fix, fix.command(&self.mount)) {
                        (_, Some(command)) => format!("fix: {command}"),
                        (Fix::None(why), None) => format!("no fix: {why}"),
                        _ => continue,
                    };
                    out.push_str(&format!("         {:width$}  {line}\n", ""));
                }
            }
        }
        if !self.confined {
            out.push_str(
                "note: the probes ran in place, not in an empty root (no CAP_SYS_CHROOT: run \
                 as root to prove that entries work inside containers)\n",
            );
        }
        let missing = self
            .verdicts
            .iter()
            .filter(|(_, v)| matches!(v, Verdict::Missing(_)))
            .count();
        if missing == 0 {
            out.push_str(&format!(
                "binfmt check: all {} platforms run\n",
                self.verdicts.len()
            ));
        } else {
            out.push_str(&format!(
                "binfmt check: {missing} of {} platforms do not run",
                self.verdicts.len()
            ));
            match self.fix_all() {
                Some(command) => out.push_str(&format!("; to fix: {command}\n")),
                None => out.push('\n'),
            }
        }
        out
    }

    /// The JSON report.
    pub fn render_json(&self) -> String {
        let platforms = self
            .verdicts
            .iter()
            .map(|(wanted, verdict)| match verdict {
                Verdict::Proved(how) => JsonPlatform {
                    platform: wanted.to_string(),
                    ok: true,
                    runs: Some(match how {
                        How::Native => "native",
                        How::Emulated(_) => "emulated",
                        How::Unseen => "unseen",
                    }),
                    entries: match how {
                        How::Emulated(names) => names.clone(),
                        _ => Vec::new(),
                    },
                    reason: None,
                    detail: None,
                    fix: None,
                },
                Verdict::Missing(reason) => JsonPlatform {
                    platform: wanted.to_string(),
                    ok: false,
                    runs: None,
                    entries: Vec::new(),
                    reason: Some(reason.code()),
                    detail: Some(reason.describe(wanted.arch, &self.mount)),
                    fix: reason.fix(wanted.arch, &self.mount).command(&self.mount),
                },
            })
            .collect();
        let report = JsonReport {
            ok: self.ok(),
            confined: self.confined,
            platforms,
            fix: self.fix_all(),
        };
        let mut text = serde_json::to_string_pretty(&report).unwrap_or_default();
        text.push('\n');
        text
    }
}

/// Checks `wanted` against the table at `mount` (never mounting anything) and the
/// probes.
pub fn check(mount: &Path, wanted: Vec<Wanted>, prober: &dyn Prober) -> Report {
    let (table, table_problem) = match BinfmtMisc::open(mount) {
        Ok(table) => (Some(table), None),
        Err(binfmt_misc::Error::NotBinfmtMisc { .. }) => (
            None,
            Some(format!("binfmt_misc is not mounted at {}", mount.display())),
        ),
        Err(error) => (None, Some(error.to_string())),
    };
    let mut table_problem = table_problem;
    let mut survey = match Survey::read(table.as_ref().map(|t| t as &dyn Table)) {
        Ok(survey) => survey,
        Err(error) => {
            table_problem = Some(error.to_string());
            Survey::without_table()
        }
    };
    let arches: Vec<Arch> = Arch::ALL
        .into_iter()
        .filter(|arch| wanted.iter().any(|w| w.arch == *arch))
        .collect();
    survey.probe(prober, &arches);
    let verdicts = wanted
        .into_iter()
        .map(|wanted| {
            let verdict = verdict(&survey, table_problem.as_deref(), &wanted);
            (wanted, verdict)
        })
        .collect();
    Report {
        verdicts,
        mount: mount.to_owned(),
        confined: survey.confined() || survey.confinement.is_none(),
    }
}

#[cfg(test)]
mod tests {
    use binfmt_misc::fake::FakeTable;

    use super::*;
    use crate::empty_root::{Confinement, ProbeOutcome as Outcome};
    use crate::testing::{FakeProber, entry};

    fn wanted(list: &str) -> Vec<Wanted> {
        parse(&[list.to_owned()]).unwrap()
    }

    fn verdicts(table: &FakeTable, prober: &FakeProber, list: &str) -> Vec<Verdict> {
        let mut survey = Survey::read(Some(table)).unwrap();
        survey.probe(prober, &Arch::ALL);
        wanted(list)
            .iter()
            .map(|w| verdict(&survey, None, w))
            .collect()
    }

    #[test]
    fn parses_platforms_arches_and_entry_names() {
        let parsed = parse(&["linux/arm64,amd64/v3".into(), "qemu-riscv64".into()]).unwrap();
        assert_eq!(
            parsed.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["linux/arm64", "linux/amd64/v3", "linux/riscv64"]
        );
        assert_eq!(parsed[1].level(), Some(3));
        assert!(parse(&["arm64,bogus".into()]).is_err());
        assert_eq!(wanted("arm")[0].to_string(), "linux/arm/v7");
    }

    #[test]
    fn every_reason_is_told_apart() {
        let table = FakeTable::new();
        table.insert(entry(Arch::Arm64, true, "POCF")); // works
        table.insert(entry(Arch::S390x, false, "POCF")); // disabled
        table.insert(entry(Arch::Ppc64le, true, "OC")); // no F
        table.insert(entry(Arch::Mips64, true, "F")); // broken interpreter
        let mut prober = FakeProber::running(&[Arch::Amd64, Arch::I386, Arch::Arm64], 3);
        prober.outcomes.insert(
            Arch::Mips64,
            Outcome::Failed(Failure::WrongStatus {
                status: 0,
                expected: "exit status 108".into(),
            }),
        );
        let got = verdicts(
            &table,
            &prober,
            "arm64,riscv64,s390x,ppc64le,mips64,amd64/v2,amd64/v4,386",
        );
        assert_eq!(
            got[0],
            Verdict::Proved(How::Emulated(vec!["qemu-aarch64".into()]))
        );
        assert_eq!(got[1], Verdict::Missing(Reason::NoEntry));
        assert_eq!(
            got[2],
            Verdict::Missing(Reason::Disabled(vec!["qemu-s390x".into()]))
        );
        assert!(
            matches!(&got[3], Verdict::Missing(Reason::NoFixBinary(e)) if e[0].0 == "qemu-ppc64le")
        );
        assert!(
            matches!(&got[4], Verdict::Missing(Reason::ProbeFailed { entries, .. }) if entries == &["qemu-mips64"])
        );
        if cfg!(target_arch = "x86_64") {
            assert_eq!(got[5], Verdict::Proved(How::Native));
            assert_eq!(
                got[6],
                Verdict::Missing(Reason::LevelTooLow { have: 3, want: 4 })
            );
            assert_eq!(got[7], Verdict::Proved(How::Native));
        }
    }

    #[test]
    fn a_disabled_table_and_unconfined_probes_are_reasons_too() {
        let table = FakeTable::new();
        table.insert(entry(Arch::Riscv64, true, "OC"));
        let mut prober = FakeProber::running(&[Arch::Riscv64], 1);
        prober.confinement = Confinement::Unconfined;
        // Ran in place through an entry without F: not proved for containers.
        let got = verdicts(&table, &prober, "riscv64");
        assert!(
            matches!(&got[0], Verdict::Missing(Reason::NoFixBinary(_))),
            "{got:?}"
        );

        let table = FakeTable::new();
        table.insert(entry(Arch::Riscv64, true, "F"));
        table.set_status(false);
        let got = verdicts(&table, &FakeProber::running(&[], 1), "riscv64");
        assert_eq!(got[0], Verdict::Missing(Reason::TableDisabled));
    }

    #[test]
    fn one_command_fixes_everything_fixable() {
        let report = Report {
            verdicts: vec![
                (
                    wanted("riscv64").remove(0),
                    Verdict::Missing(Reason::NoEntry),
                ),
                (
                    wanted("amd64").remove(0),
                    Verdict::Missing(Reason::ProbeFailed {
                        entries: vec!["rosetta".into()],
                        failure: Failure::TimedOut,
                    }),
                ),
                (
                    wanted("s390x").remove(0),
                    Verdict::Missing(Reason::TableDisabled),
                ),
                (wanted("arm64").remove(0), Verdict::Proved(How::Native)),
            ],
            mount: binfmt_misc::DEFAULT_MOUNT.into(),
            confined: true,
        };
        let fix = report.fix_all().unwrap();
        if cfg!(target_arch = "x86_64") {
            // amd64 is native here: no emulator to install for it.
            assert_eq!(
                fix,
                "echo 1 > /proc/sys/fs/binfmt_misc/status && binfmt --install riscv64"
            );
        }
        let text = report.render_text();
        assert!(text.contains("MISSING  linux/riscv64"), "{text}");
        assert!(text.contains("fix: binfmt --install riscv64"), "{text}");
        let json: serde_json::Value = serde_json::from_str(&report.render_json()).unwrap();
        assert_eq!(json["ok"], false);
        assert_eq!(json["platforms"][0]["reason"], "no-entry");
        assert_eq!(json["platforms"][3]["runs"], "native");
    }
}
