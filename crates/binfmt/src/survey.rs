//! What this machine runs, proved by execution: each architecture's probe outcome
//! next to the binfmt_misc entries that claim its programs.
//!
//! The status JSON (`supported`), `binfmt check`, `binfmt doctor` and
//! `--install all` (which skips architectures the CPU runs natively) all read a
//! [`Survey`]. It is taken in two steps: [`Survey::read`] reads the table (no
//! execution), [`Survey::probe`] runs the probes of the architectures asked for.
//!
//! An entry *claims* an architecture when its magic (or extension) matches that
//! architecture's probe, as an `ET_EXEC` program or as a PIE: the kernel would hand
//! such programs to it. An architecture whose probe runs while no enabled entry claims
//! it runs natively (i386 on x86_64, 32-bit arm on an aarch64 CPU with AArch32).

use binfmt_misc::{Entry, Table};
use qemu_catalog::{Arch, Proof};

use crate::probe::{self, Confinement, Failure, Outcome, Prober};

/// The table and the probe outcomes.
#[derive(Clone, Debug)]
pub struct Survey {
    /// Whether the table's `status` file says `enabled`; false without a table.
    pub table_enabled: bool,
    /// Every entry of the table, in directory order; empty without a table.
    pub entries: Vec<Entry>,
    /// One item per architecture, in [`Arch::ALL`] order.
    pub arches: Vec<ArchSurvey>,
    /// Where the probes ran, once [`Survey::probe`] ran any.
    pub confinement: Option<Confinement>,
    /// Why probes could not run at all, if they could not.
    pub probe_error: Option<String>,
}

/// One architecture.
#[derive(Clone, Debug)]
pub struct ArchSurvey {
    /// The architecture.
    pub arch: Arch,
    /// The entries that claim its programs, enabled or not.
    pub claims: Vec<Entry>,
    /// Its probe's outcome; `None` when it was not run.
    pub outcome: Option<Outcome>,
}

impl ArchSurvey {
    /// The proof, when the probe ran and exited as it should.
    pub fn proof(&self) -> Option<Proof> {
        match &self.outcome {
            Some(Outcome::Proved(proof)) => Some(*proof),
            _ => None,
        }
    }

    /// How the probe failed, if it did.
    pub fn failure(&self) -> Option<&Failure> {
        match &self.outcome {
            Some(Outcome::Failed(failure)) => Some(failure),
            _ => None,
        }
    }

    /// The enabled entries that claim it.
    pub fn enabled_claims(&self) -> Vec<&Entry> {
        self.claims.iter().filter(|entry| entry.enabled).collect()
    }
}

/// Whether `entry` claims programs of `arch` (see the module documentation).
pub fn claims(entry: &Entry, arch: Arch) -> bool {
    let probe = arch.probe();
    let matcher = &entry.registration.matcher;
    matcher.matches_file(probe.file_name(), probe.program())
        || matcher.matches_file(probe.file_name(), &probe.pie_header())
}

impl Survey {
    /// Reads the table, if there is one; runs nothing.
    pub fn read(table: Option<&dyn Table>) -> Result<Survey, binfmt_misc::Error> {
        let Some(table) = table else {
            return Ok(Survey::without_table());
        };
        let mut entries = Vec::new();
        for name in table.entry_names()? {
            // An entry removed between listing and reading is simply gone.
            if let Some(entry) = table.read_entry(&name)? {
                entries.push(entry);
            }
        }
        Ok(Survey::of(table.is_enabled()?, entries))
    }

    /// A survey with no table to read (not mounted, say): probes only.
    pub fn without_table() -> Survey {
        Survey::of(false, Vec::new())
    }

    fn of(table_enabled: bool, entries: Vec<Entry>) -> Survey {
        let arches = Arch::ALL
            .into_iter()
            .map(|arch| ArchSurvey {
                arch,
                claims: entries
                    .iter()
                    .filter(|entry| claims(entry, arch))
                    .cloned()
                    .collect(),
                outcome: None,
            })
            .collect();
        Survey {
            table_enabled,
            entries,
            arches,
            confinement: None,
            probe_error: None,
        }
    }

    /// Runs the probes of `arches` and records their outcomes.
    pub fn probe(&mut self, prober: &dyn Prober, arches: &[Arch]) {
        if arches.is_empty() {
            return;
        }
        match prober.run(arches) {
            Ok(run) => {
                self.confinement = Some(run.confinement);
                for (arch, outcome) in run.outcomes {
                    self.arch_mut(arch).outcome = Some(outcome);
                }
            }
            Err(probe::Error(reason)) => {
                log::warn!("cannot run the probes: {reason}");
                self.probe_error = Some(reason);
            }
        }
    }

    /// Reads the table and probes every architecture.
    pub fn take(
        table: Option<&dyn Table>,
        prober: &dyn Prober,
    ) -> Result<Survey, binfmt_misc::Error> {
        let mut survey = Survey::read(table)?;
        survey.probe(prober, &Arch::ALL);
        Ok(survey)
    }

    /// The survey of one architecture.
    pub fn arch(&self, arch: Arch) -> &ArchSurvey {
        &self.arches[arch as usize]
    }

    fn arch_mut(&mut self, arch: Arch) -> &mut ArchSurvey {
        &mut self.arches[arch as usize]
    }

    /// The enabled entries that the kernel consults for `arch`: none while the whole
    /// table is disabled.
    pub fn serving_claims(&self, arch: Arch) -> Vec<&Entry> {
        if self.table_enabled {
            self.arch(arch).enabled_claims()
        } else {
            Vec::new()
        }
    }

    /// Whether `arch` runs natively: its probe ran, and no enabled entry could have
    /// served it.
    pub fn runs_natively(&self, arch: Arch) -> bool {
        self.arch(arch).proof().is_some() && self.serving_claims(arch).is_empty()
    }

    /// Whether the probes ran in an empty root (only entries with F serve there).
    pub fn confined(&self) -> bool {
        self.confinement == Some(Confinement::EmptyRoot)
    }
}

#[cfg(test)]
pub mod tests {
    //! A fake prober for the tests of the modules that read a survey.

    use std::collections::BTreeMap;

    use binfmt_misc::fake::FakeTable;
    use binfmt_misc::{Flags, Registration};

    use super::*;
    use crate::probe::{Error, Run};

    /// Answers from a fixed map; architectures not in it fail with ENOEXEC.
    pub struct FakeProber {
        pub outcomes: BTreeMap<Arch, Outcome>,
        pub confinement: Confinement,
    }

    impl FakeProber {
        /// Every architecture in `runs` proves itself (amd64 at `level`).
        pub fn running(runs: &[Arch], level: u8) -> FakeProber {
            FakeProber {
                outcomes: runs
                    .iter()
                    .map(|&arch| {
                        let level = (arch == Arch::Amd64).then_some(level);
                        (arch, Outcome::Proved(Proof { level }))
                    })
                    .collect(),
                confinement: Confinement::EmptyRoot,
            }
        }
    }

    impl Prober for FakeProber {
        fn run(&self, arches: &[Arch]) -> Result<Run, Error> {
            Ok(Run {
                confinement: self.confinement,
                outcomes: arches
                    .iter()
                    .map(|arch| {
                        let outcome = self.outcomes.get(arch).cloned().unwrap_or(Outcome::Failed(
                            Failure::Exec(Errno::NOEXEC.raw_os_error()),
                        ));
                        (*arch, outcome)
                    })
                    .collect(),
            })
        }
    }

    use rustix::io::Errno;

    /// An entry for `arch` with the catalog's magic, as binfmt registers it.
    pub fn entry(arch: Arch, enabled: bool, flags: &str) -> binfmt_misc::Entry {
        binfmt_misc::Entry {
            enabled,
            registration: Registration {
                name: arch.entry_name(),
                matcher: arch.matcher(),
                interpreter: format!("/usr/bin/qemu-{}", arch.qemu_cpu()).into(),
                flags: flags.parse().unwrap_or(Flags::NONE),
            },
        }
    }

    #[test]
    fn native_means_it_runs_and_no_enabled_entry_claims_it() {
        let table = FakeTable::new();
        table.insert(entry(Arch::Arm64, true, "POCF"));
        table.insert(entry(Arch::S390x, false, "POCF"));
        let prober = FakeProber::running(&[Arch::Amd64, Arch::I386, Arch::Arm64, Arch::S390x], 3);
        let survey = Survey::take(Some(&table), &prober).unwrap();
        assert!(survey.runs_natively(Arch::Amd64));
        assert!(survey.runs_natively(Arch::I386));
        assert!(
            !survey.runs_natively(Arch::Arm64),
            "an enabled entry serves it"
        );
        assert!(
            survey.runs_natively(Arch::S390x),
            "its only entry is disabled"
        );
        assert!(!survey.runs_natively(Arch::Riscv64), "it does not run");
        assert_eq!(survey.arch(Arch::Arm64).claims.len(), 1);
        assert_eq!(
            survey.arch(Arch::Amd64).proof(),
            Some(Proof { level: Some(3) })
        );
    }

    #[test]
    fn an_entry_claims_by_magic_not_by_name() {
        let mut rosetta = entry(Arch::Amd64, true, "F");
        rosetta.registration.name = "rosetta".into();
        assert!(claims(&rosetta, Arch::Amd64));
        assert!(!claims(&rosetta, Arch::I386));
        // An entry that only takes non-PIE programs still claims the architecture.
        let mut exec_only = entry(Arch::Arm64, true, "F");
        if let binfmt_misc::Matcher::Magic {
            mask: Some(mask), ..
        } = &mut exec_only.registration.matcher
        {
            mask[16] = 0xff;
        }
        assert!(claims(&exec_only, Arch::Arm64));
    }
}
