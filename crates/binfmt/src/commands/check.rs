//! `binfmt check PLATFORMS`: the CI preflight (what a `verify-qemu.sh` that looks
//! for files in binfmt_misc means to check, but by execution).
//!
//! Exits 0 only if every listed platform is proved by its probe; otherwise it says,
//! per platform, what is missing and why (a [`Finding`]: no entry, entry disabled, no
//! flag F, probe failed, ...) and the one command that fixes it, then one command that
//! fixes them all, and exits 1. `--json` prints the same as a JSON document for
//! machines.
//!
//! The verdicts are worked out from a [`Survey`] (pure; unit tested with a fake
//! prober); [`check`] only opens the table, takes the survey and probes.

use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

use binfmt_misc::{BinfmtMisc, Entry, Table};
use qemu_catalog::{Arch, UnknownArch};
use serde::Serialize;

use crate::commands::lines::print_stdout;
use crate::findings::{EntryRef, Finding, Fix, binfmt_with};
use crate::host::{self, HostFacts};
use crate::outcome::{CommandError, Completion, Shared};
use crate::probe::{ProbeFailure, Prober, SystemProber};
use crate::status;
use crate::survey::Survey;
use binfmt_cli::CheckArgs;

/// Runs `binfmt check`.
pub fn run(args: &CheckArgs) -> Result<Completion, CommandError> {
    let wanted = parse(&args.platforms).map_err(|error| CommandError::usage("check", error))?;
    let report = check(&args.mount, wanted, &SystemProber);
    print_stdout(&if args.json {
        report.render_json()
    } else {
        report.render_text()
    })?;
    Ok(Completion::of(report.ok()))
}

/// One platform asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    /// Its architecture.
    pub arch: Arch,
    /// The variant, if one was given (`v7`, `v3`).
    pub variant: Option<String>,
}

impl Platform {
    /// The x86-64 level an `amd64/vN` variant asks for.
    fn level(&self) -> Option<u8> {
        let variant = self.variant.as_deref()?;
        if self.arch != Arch::Amd64 {
            return None;
        }
        variant.strip_prefix('v')?.parse().ok()
    }
}

impl fmt::Display for Platform {
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
/// (`qemu-aarch64`) as a `verify-qemu.sh` lists them.
pub fn parse(items: &[String]) -> Result<Vec<Platform>, UnknownArch> {
    let mut wanted = Vec::new();
    for item in items.iter().flat_map(|list| list.split(',')).map(str::trim) {
        let spec = item.strip_prefix("qemu-").unwrap_or(item);
        let arch = Arch::parse(spec)?;
        let lower = spec.to_ascii_lowercase();
        let rest = lower.strip_prefix("linux/").unwrap_or(&lower);
        let variant = rest.split_once('/').map(|(_, variant)| variant.to_owned());
        let item = Platform { arch, variant };
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
    /// Through `runner`, the enabled entry the kernel uses (of several, the one
    /// registered last); `passed_over` claim it too but are not used.
    Emulated {
        runner: EntryRef,
        passed_over: Vec<String>,
    },
    /// It runs, but no entry is visible at the mount checked (another binfmt_misc
    /// instance, or the CPU).
    Unseen,
}

/// The verdict on one platform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Proved by its probe.
    Proved(How),
    /// Not proved, and why.
    Missing(Finding),
}

/// Decides one platform from the survey. `table_problem` says why there is no table,
/// if there is none.
pub fn verdict(survey: &Survey, table_problem: Option<&Finding>, wanted: &Platform) -> Verdict {
    let arch = wanted.arch;
    if let Some(reason) = &survey.probe_error {
        return Verdict::Missing(Finding::CannotProbe {
            reason: reason.clone(),
        });
    }
    let state = survey.arch(arch);
    let serving = survey.serving_claims(arch);
    if let Some(proof) = state.proof() {
        let have = proof.level.unwrap_or(1);
        if let Some(want) = wanted.level()
            && have < want
        {
            return Verdict::Missing(Finding::LevelTooLow { have, want });
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
            return Verdict::Missing(Finding::NoFixBinary {
                arch,
                entries: refs(&without_f),
            });
        }
        return Verdict::Proved(How::Emulated {
            runner: EntryRef::from(serving[0]),
            passed_over: serving[1..]
                .iter()
                .map(|e| e.registration.name.clone())
                .collect(),
        });
    }
    let failure = state.failure().cloned();
    if arch.is_native() {
        return Verdict::Missing(if serving.is_empty() {
            Finding::NativeFails { arch, failure }
        } else {
            Finding::HostArchEntry {
                arch,
                entries: refs(&serving),
            }
        });
    }
    if let Some(problem) = table_problem {
        return Verdict::Missing(problem.clone());
    }
    if !survey.table_enabled {
        return Verdict::Missing(Finding::GloballyDisabled);
    }
    if state.claims.is_empty() {
        return Verdict::Missing(Finding::NoEntry { arch });
    }
    if serving.is_empty() {
        let all: Vec<&Entry> = state.claims.iter().collect();
        return Verdict::Missing(Finding::EntryDisabled {
            arch,
            entries: refs(&all),
        });
    }
    if serving.iter().all(|e| !e.registration.flags.fix_binary) {
        // The probe ran where only an entry with F serves: these cannot. Stale when
        // their interpreters are not even here.
        let entries = refs(&serving);
        return Verdict::Missing(
            if entries.iter().all(|e| !host::exists_here(&e.interpreter)) {
                Finding::StaleEntry {
                    arch: Some(arch),
                    entries,
                }
            } else {
                Finding::NoFixBinary { arch, entries }
            },
        );
    }
    Verdict::Missing(Finding::ProbeFailed {
        arch,
        entries: refs(&serving),
        failure: failure.unwrap_or(ProbeFailure::Wait("the probe was not run".into())),
    })
}

fn refs(entries: &[&Entry]) -> Vec<EntryRef> {
    entries.iter().map(|entry| EntryRef::from(*entry)).collect()
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
    /// The enabled entries that claim it, the one that runs it first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    entries: Vec<String>,
    /// The entry that ran it.
    #[serde(skip_serializing_if = "Option::is_none")]
    handler: Option<JsonHandler>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<String>,
}

/// The entry that ran a platform.
#[derive(Debug, Serialize)]
struct JsonHandler {
    entry: String,
    interpreter: String,
    emulator: String,
}

/// Everything `binfmt check` prints, worked out.
pub struct CheckReport {
    /// Each platform with its verdict.
    pub verdicts: Vec<(Platform, Verdict)>,
    /// Where the table was read.
    pub mount: PathBuf,
    /// Whether the probes ran in an empty root.
    pub confined: bool,
}

impl CheckReport {
    /// Whether every platform is proved.
    pub fn ok(&self) -> bool {
        self.verdicts
            .iter()
            .all(|(_, verdict)| matches!(verdict, Verdict::Proved(_)))
    }

    /// One command for everything fixable: every install and uninstall merged into
    /// one `binfmt` run, other commands before it.
    pub fn fix_all(&self) -> Option<String> {
        let mut uninstall: Vec<String> = Vec::new();
        let mut install: Vec<&str> = Vec::new();
        let mut commands: Vec<String> = Vec::new();
        for (_, verdict) in &self.verdicts {
            let Verdict::Missing(finding) = verdict else {
                continue;
            };
            match finding.fix(&self.mount) {
                Fix::Binfmt {
                    uninstall: u,
                    install: arch,
                    ..
                } => {
                    for name in u {
                        if !uninstall.contains(&name) {
                            uninstall.push(name);
                        }
                    }
                    if let Some(arch) = arch.map(Arch::oci)
                        && !install.contains(&arch)
                    {
                        install.push(arch);
                    }
                }
                Fix::Shell { command, .. } => {
                    if !commands.contains(&command) {
                        commands.push(command);
                    }
                }
                Fix::Advice(_) => {}
            }
        }
        // Enabling the table comes first: installing into a disabled table is not enough.
        let mut all = commands;
        if !install.is_empty() || !uninstall.is_empty() {
            all.push(binfmt_with(&self.mount, &uninstall, install));
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
                        How::Emulated {
                            runner,
                            passed_over,
                        } => {
                            let mut how = format!(
                                "runs through {} ({}, {})",
                                runner.name,
                                runner.interpreter.display(),
                                status::emulator_of(wanted.arch, &runner.interpreter)
                            );
                            if !passed_over.is_empty() {
                                let _ = write!(
                                    how,
                                    "; {} claim{} it too, registered before it: not used",
                                    passed_over.join(", "),
                                    if passed_over.len() == 1 { "s" } else { "" }
                                );
                            }
                            how
                        }
                        How::Unseen => format!(
                            "runs (no entry for it in {}: another binfmt_misc instance \
                             serves it, or the CPU)",
                            self.mount.display()
                        ),
                    };
                    out.push_str(&format!("ok       {:width$}  {how}\n", wanted.to_string()));
                }
                Verdict::Missing(finding) => {
                    out.push_str(&format!(
                        "MISSING  {:width$}  {}\n",
                        wanted.to_string(),
                        finding.problem(&self.mount)
                    ));
                    let line = match finding.fix(&self.mount) {
                        Fix::Advice(advice) => format!("no fix: {advice}"),
                        fix => format!("fix: {}", fix.command(&self.mount).unwrap_or_default()),
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
                        How::Emulated { .. } => "emulated",
                        How::Unseen => "unseen",
                    }),
                    entries: match how {
                        How::Emulated {
                            runner,
                            passed_over,
                        } => std::iter::once(runner.name.clone())
                            .chain(passed_over.iter().cloned())
                            .collect(),
                        _ => Vec::new(),
                    },
                    handler: match how {
                        How::Emulated { runner, .. } => Some(JsonHandler {
                            entry: runner.name.clone(),
                            interpreter: runner.interpreter.display().to_string(),
                            emulator: status::emulator_of(wanted.arch, &runner.interpreter),
                        }),
                        _ => None,
                    },
                    reason: None,
                    detail: None,
                    fix: None,
                },
                Verdict::Missing(finding) => JsonPlatform {
                    platform: wanted.to_string(),
                    ok: false,
                    runs: None,
                    entries: Vec::new(),
                    handler: None,
                    reason: Some(finding.id()),
                    detail: Some(finding.problem(&self.mount)),
                    fix: finding.fix(&self.mount).command(&self.mount),
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
pub fn check(mount: &Path, wanted: Vec<Platform>, prober: &dyn Prober) -> CheckReport {
    let (table, mut table_problem) = match BinfmtMisc::open(mount) {
        Ok(table) => (Some(table), None),
        Err(error) => (
            None,
            Some(Finding::for_unopened_table(
                error,
                mount,
                &HostFacts::read(),
            )),
        ),
    };
    let mut survey = match Survey::read(table.as_ref().map(|t| t as &dyn Table)) {
        Ok(survey) => survey,
        Err(error) => {
            table_problem = Some(Finding::Unreadable {
                error: Shared::new(error),
            });
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
            let verdict = verdict(&survey, table_problem.as_ref(), &wanted);
            (wanted, verdict)
        })
        .collect();
    CheckReport {
        verdicts,
        mount: mount.to_owned(),
        confined: survey.confined() || survey.confinement.is_none(),
    }
}

#[cfg(test)]
mod tests {
    use binfmt_misc::fake::FakeTable;

    use super::*;
    use crate::probe::{Confinement, ProbeOutcome};
    use crate::testing::{FakeProber, entry};

    fn wanted(list: &str) -> Vec<Platform> {
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

    fn names(entries: &[EntryRef]) -> Vec<&str> {
        entries.iter().map(|e| e.name.as_str()).collect()
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
        table.insert(entry(Arch::Ppc64le, true, "OC")); // no F, interpreter not here
        table.insert(entry(Arch::Mips64, true, "F")); // broken interpreter
        let mut prober = FakeProber::running(&[Arch::Amd64, Arch::I386, Arch::Arm64], 3);
        prober.outcomes.insert(
            Arch::Mips64,
            ProbeOutcome::Failed(ProbeFailure::WrongStatus {
                status: 0,
                expected: "exit status 108".into(),
            }),
        );
        let got = verdicts(
            &table,
            &prober,
            "arm64,riscv64,s390x,ppc64le,mips64,amd64/v2,amd64/v4,386",
        );
        assert!(
            matches!(&got[0], Verdict::Proved(How::Emulated { runner, passed_over })
                if runner.name == "qemu-aarch64" && passed_over.is_empty()),
            "{:?}",
            got[0]
        );
        assert_eq!(
            got[1],
            Verdict::Missing(Finding::NoEntry {
                arch: Arch::Riscv64
            })
        );
        assert!(
            matches!(&got[2], Verdict::Missing(Finding::EntryDisabled { arch: Arch::S390x, entries }) if names(entries) == ["qemu-s390x"]),
            "{:?}",
            got[2]
        );
        assert!(
            matches!(&got[3], Verdict::Missing(Finding::StaleEntry { entries, .. }) if entries[0].name == "qemu-ppc64le"),
            "{:?}",
            got[3]
        );
        assert!(
            matches!(&got[4], Verdict::Missing(Finding::ProbeFailed { entries, .. }) if names(entries) == ["qemu-mips64"]),
            "{:?}",
            got[4]
        );
        if cfg!(target_arch = "x86_64") {
            assert_eq!(got[5], Verdict::Proved(How::Native));
            assert_eq!(
                got[6],
                Verdict::Missing(Finding::LevelTooLow { have: 3, want: 4 })
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
            matches!(&got[0], Verdict::Missing(Finding::NoFixBinary { .. })),
            "{got:?}"
        );

        let table = FakeTable::new();
        table.insert(entry(Arch::Riscv64, true, "F"));
        table.set_status(false);
        let got = verdicts(&table, &FakeProber::running(&[], 1), "riscv64");
        assert_eq!(got[0], Verdict::Missing(Finding::GloballyDisabled));
    }

    #[test]
    fn one_command_fixes_everything_fixable() {
        let report = CheckReport {
            verdicts: vec![
                (
                    wanted("riscv64").remove(0),
                    Verdict::Missing(Finding::NoEntry {
                        arch: Arch::Riscv64,
                    }),
                ),
                (
                    wanted("amd64").remove(0),
                    Verdict::Missing(Finding::ProbeFailed {
                        arch: Arch::Amd64,
                        entries: vec![EntryRef {
                            name: "rosetta".into(),
                            interpreter: "/nonexistent/rosetta".into(),
                            enabled: true,
                        }],
                        failure: ProbeFailure::TimedOut { seconds: 5 },
                    }),
                ),
                (
                    wanted("s390x").remove(0),
                    Verdict::Missing(Finding::GloballyDisabled),
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
