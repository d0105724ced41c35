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
//! such programs to it. What counts is what the magic and mask accept, not whether
//! they equal QEMU's (FEX's mask zeroes bytes QEMU's keeps). An architecture whose
//! probe runs while no enabled entry claims it runs natively (i386 on x86_64, 32-bit
//! arm on an aarch64 CPU with AArch32).
//!
//! Of several enabled entries that claim an architecture, the kernel runs its programs
//! with the one registered last, which the table lists first: that one is its
//! [`runner`](Survey::runner), the others are passed over.
//!
//! An entry is *binfmt's* ([`is_binfmts`]) when it has one of the names binfmt
//! registers (`qemu-<cpu>` of an architecture of the catalog, or the staging name of
//! one) or its interpreter is one of the files binfmt writes (`qemu-<cpu>-<digest>`).
//! binfmt replaces, disables and removes its own entries as it sees fit; another
//! tool's (Rosetta's, FEX's, WSL's) only when a user names it exactly.

use std::path::Path;

use binfmt_misc::{Entry, Table};
use interpreter_files::InterpreterDir;
use qemu_catalog::{Arch, Proof};

use crate::probe::{Confinement, ProbeError, ProbeFailure, ProbeOutcome, Prober};
use crate::proof_record::ProofRecord;

/// The table and the probe outcomes.
#[derive(Clone, Debug)]
pub struct Survey {
    /// Whether the table's `status` file says `enabled`; false without a table.
    pub table_enabled: bool,
    /// Every entry of the table, in the order the kernel tries them (newest first);
    /// empty without a table.
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
    pub outcome: Option<ProbeOutcome>,
}

impl ArchSurvey {
    /// The proof, when the probe ran and exited as it should.
    pub fn proof(&self) -> Option<Proof> {
        match &self.outcome {
            Some(ProbeOutcome::Proved(proof)) => Some(*proof),
            _ => None,
        }
    }

    /// How the probe failed, if it did.
    pub fn failure(&self) -> Option<&ProbeFailure> {
        match &self.outcome {
            Some(ProbeOutcome::Failed(failure)) => Some(failure),
            _ => None,
        }
    }

    /// The enabled entries that claim it.
    pub fn enabled_claims(&self) -> Vec<&Entry> {
        self.claims.iter().filter(|entry| entry.enabled).collect()
    }
}

/// Whether the entry `name` with `interpreter` is binfmt's (see the module
/// documentation).
pub fn is_binfmts(name: &str, interpreter: &Path) -> bool {
    let name = binfmt_misc::stands_in_for(name).unwrap_or(name);
    Arch::ALL.iter().any(|arch| arch.entry_name() == name)
        || interpreter
            .file_name()
            .and_then(|file| file.to_str())
            .is_some_and(interpreter_files::is_emulator_file_name)
}

/// [`is_binfmts`] of an entry.
pub fn is_binfmts_entry(entry: &Entry) -> bool {
    is_binfmts(&entry.registration.name, entry.interpreter())
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
            Err(ProbeError(reason)) => {
                log::warn!(
                    "cannot run the probes: {reason}; fix: set TMPDIR to a writable directory \
                     on a filesystem that allows exec"
                );
                self.probe_error = Some(reason);
            }
        }
    }

    /// Reads the table and probes every architecture (the tests' survey; binfmt's
    /// commands read and probe in steps, or remember, see
    /// [`take_remembering`](Survey::take_remembering)).
    #[cfg(test)]
    pub fn take(
        table: Option<&dyn Table>,
        prober: &dyn Prober,
    ) -> Result<Survey, binfmt_misc::Error> {
        let mut survey = Survey::read(table)?;
        survey.probe(prober, &Arch::ALL);
        Ok(survey)
    }

    /// Reads the table and proves every architecture, as [`Survey::take`] does, but
    /// takes as proved what an earlier run recorded in `dir` for this very table
    /// (see [`crate::proof_record`]), and records what it proves for the next run. Only the
    /// status JSON is made this way.
    pub fn take_remembering(
        table: &dyn Table,
        prober: &dyn Prober,
        dir: &InterpreterDir,
    ) -> Result<Survey, binfmt_misc::Error> {
        let mut survey = Survey::read(Some(table))?;
        // Taken before any probe runs: whatever changes after this makes the
        // fingerprint stale, never a proof of something that was not probed.
        let record = ProofRecord::for_table(table, survey.table_enabled, &survey.entries, dir);
        let recalled = record.as_ref().map(ProofRecord::recall).unwrap_or_default();
        for (arch, proof) in &recalled {
            log::debug!("{arch}: proved by an earlier run against this same table");
            survey.arch_mut(*arch).outcome = Some(ProbeOutcome::Proved(*proof));
        }
        let unproved: Vec<Arch> = Arch::ALL
            .into_iter()
            .filter(|arch| survey.arch(*arch).outcome.is_none())
            .collect();
        if unproved.is_empty() {
            // Recorded proofs come from probes that ran in an empty root.
            survey.confinement = Some(Confinement::EmptyRoot);
            return Ok(survey);
        }
        survey.probe(prober, &unproved);
        let proved_more = unproved
            .iter()
            .any(|arch| survey.arch(*arch).proof().is_some());
        // The record sits next to the interpreters it is about: where no entry's
        // interpreter is (a run that failed to write one), nothing is written.
        let serves_from_dir = survey
            .entries
            .iter()
            .any(|entry| entry.interpreter().parent() == Some(dir.dir()));
        if let Some(record) = record
            && proved_more
            && survey.confined()
            && serves_from_dir
        {
            record.keep(&survey.proofs());
        }
        Ok(survey)
    }

    /// Every architecture proved, with its proof.
    pub fn proofs(&self) -> Vec<(Arch, Proof)> {
        self.arches
            .iter()
            .filter_map(|arch| Some((arch.arch, arch.proof()?)))
            .collect()
    }

    /// The survey of one architecture.
    pub fn arch(&self, arch: Arch) -> &ArchSurvey {
        &self.arches[arch as usize]
    }

    fn arch_mut(&mut self, arch: Arch) -> &mut ArchSurvey {
        &mut self.arches[arch as usize]
    }

    /// The enabled entries that the kernel consults for `arch`, in the order it tries
    /// them: none while the whole table is disabled.
    pub fn serving_claims(&self, arch: Arch) -> Vec<&Entry> {
        if self.table_enabled {
            self.arch(arch).enabled_claims()
        } else {
            Vec::new()
        }
    }

    /// The entry the kernel runs `arch`'s programs with: the first (newest) of the
    /// enabled entries that claim them, while the table is enabled.
    pub fn runner(&self, arch: Arch) -> Option<&Entry> {
        self.serving_claims(arch).first().copied()
    }

    /// The enabled entries that claim `arch` but are passed over: every one after the
    /// [`runner`](Survey::runner).
    pub fn passed_over(&self, arch: Arch) -> Vec<&Entry> {
        self.serving_claims(arch).into_iter().skip(1).collect()
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
mod tests {
    use binfmt_misc::fake::FakeTable;

    use super::*;
    use crate::probe::ProbeRun;
    use crate::proof_record::RECORD_NAME;
    use crate::testing::{FakeProber, entry};

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

    /// Counts which architectures it was asked to probe.
    struct Counting {
        inner: FakeProber,
        asked: std::cell::RefCell<Vec<Arch>>,
    }

    impl Prober for Counting {
        fn run(&self, arches: &[Arch]) -> Result<ProbeRun, ProbeError> {
            self.asked.borrow_mut().extend_from_slice(arches);
            self.inner.run(arches)
        }
    }

    impl Counting {
        fn take_asked(&self) -> Vec<Arch> {
            std::mem::take(&mut *self.asked.borrow_mut())
        }
    }

    /// A fresh interpreter directory binfmt trusts, under the build's own target
    /// directory.
    fn scratch_dir(name: &str) -> (std::path::PathBuf, InterpreterDir) {
        use std::os::unix::fs::PermissionsExt;
        let path = std::path::Path::new(env!("OUT_DIR"))
            .join(format!("proofs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        (path.clone(), InterpreterDir::new(path))
    }

    /// [`entry`], with its interpreter in `dir`.
    fn entry_in(dir: &InterpreterDir, arch: Arch) -> binfmt_misc::Entry {
        let mut entry = entry(arch, true, "POCF");
        entry.registration.interpreter = dir.dir().join(format!("qemu-{}", arch.qemu_cpu()));
        entry
    }

    #[test]
    fn proofs_are_recalled_for_the_same_table_only() {
        let (path, dir) = scratch_dir("recall");
        let table = FakeTable::new();
        table.insert(entry(Arch::Arm64, true, "POCF"));
        let prober = FakeProber::running(&[Arch::Amd64, Arch::Arm64], 3);
        Survey::take_remembering(&table, &prober, &dir).unwrap();
        assert!(
            !path.join(RECORD_NAME).exists(),
            "no interpreter of the table is in the directory"
        );
        table.insert(entry_in(&dir, Arch::Arm64));
        table.insert(entry_in(&dir, Arch::S390x));
        let prober = Counting {
            inner: FakeProber::running(&[Arch::Amd64, Arch::I386, Arch::Arm64, Arch::S390x], 3),
            asked: Default::default(),
        };
        let first = Survey::take_remembering(&table, &prober, &dir).unwrap();
        assert_eq!(prober.take_asked(), Arch::ALL);
        assert!(path.join(RECORD_NAME).is_file());

        // The same table: the four proofs are recalled, only the failures run again.
        let second = Survey::take_remembering(&table, &prober, &dir).unwrap();
        let failed: Vec<Arch> = Arch::ALL
            .into_iter()
            .filter(|arch| ![Arch::Amd64, Arch::I386, Arch::Arm64, Arch::S390x].contains(arch))
            .collect();
        assert_eq!(prober.take_asked(), failed);
        assert_eq!(second.proofs(), first.proofs());
        assert_eq!(
            second.arch(Arch::Amd64).proof(),
            Some(Proof { level: Some(3) })
        );
        assert!(second.confined());

        // Disabled and enabled again: the same registration, still recalled.
        table.set_enabled("qemu-s390x", false).unwrap();
        table.set_enabled("qemu-s390x", true).unwrap();
        Survey::take_remembering(&table, &prober, &dir).unwrap();
        assert_eq!(prober.take_asked(), failed);

        // Every change to the table makes every probe run again.
        let changes: [&dyn Fn(); 3] = [
            // The same line registered again: another registration.
            &|| {
                table.remove("qemu-s390x").unwrap();
                table
                    .register(&entry_in(&dir, Arch::S390x).registration)
                    .unwrap();
            },
            &|| table.set_enabled("qemu-s390x", false).unwrap(),
            &|| table.set_status(false),
        ];
        for change in changes {
            change();
            Survey::take_remembering(&table, &prober, &dir).unwrap();
            assert_eq!(prober.take_asked(), Arch::ALL);
        }
        std::fs::remove_dir_all(&path).unwrap();
    }

    #[test]
    fn a_record_others_could_write_or_unconfined_probes_prove_nothing_later() {
        use std::os::unix::fs::PermissionsExt;
        let (path, dir) = scratch_dir("trust");
        let table = FakeTable::new();
        table.insert(entry_in(&dir, Arch::Arm64));
        let mut inner = FakeProber::running(&[Arch::Amd64, Arch::Arm64], 2);
        inner.confinement = Confinement::Unconfined;
        let prober = Counting {
            inner,
            asked: Default::default(),
        };
        Survey::take_remembering(&table, &prober, &dir).unwrap();
        assert!(
            !path.join(RECORD_NAME).exists(),
            "probes that ran in place are not kept"
        );
        let prober = Counting {
            inner: FakeProber::running(&[Arch::Amd64, Arch::Arm64], 2),
            asked: Default::default(),
        };
        Survey::take_remembering(&table, &prober, &dir).unwrap();
        prober.take_asked();
        let record = path.join(RECORD_NAME);
        std::fs::set_permissions(&record, std::fs::Permissions::from_mode(0o666)).unwrap();
        Survey::take_remembering(&table, &prober, &dir).unwrap();
        assert_eq!(
            prober.take_asked(),
            Arch::ALL,
            "a record anyone could write"
        );
        std::fs::remove_dir_all(&path).unwrap();
    }

    #[test]
    fn fexs_own_entry_claims_amd64_programs() {
        // FEX-x86_64 as FEX registers it: its mask zeroes bytes 8 to 10, which QEMU's
        // keeps; what counts is what it accepts.
        let line = b":FEX-x86_64:M:0:\\x7fELF\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\x3e\\x00:\\xff\\xff\\xff\\xff\\xff\\xfe\\xfe\\x00\\x00\\x00\\x00\\xff\\xff\\xff\\xff\\xff\\xfe\\xff\\xff\\xff:/usr/bin/FEXInterpreter:POCF";
        let registration = binfmt_misc::model::parse_register_line(line).unwrap();
        assert_ne!(registration.matcher, Arch::Amd64.matcher());
        let fex = Entry {
            enabled: true,
            registration,
        };
        assert!(claims(&fex, Arch::Amd64));
        assert!(!claims(&fex, Arch::I386));
        assert!(!is_binfmts_entry(&fex));
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
