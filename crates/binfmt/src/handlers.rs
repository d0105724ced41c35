//! Sharing the table with other tools: what an install does with each architecture
//! where another tool's entry may already run it.
//!
//! Users' tables are crowded. Apple Silicon VMs (Lima, Colima, OrbStack, Docker
//! Desktop, Podman machine) register Rosetta for x86_64 programs, ARM64 hosts run FEX
//! or box64, WSL registers `WSLInterop`, distributions register their own qemu
//! entries. The kernel runs a program with the newest enabled entry that accepts it,
//! so an emulator registered after a working translator silently takes over from it
//! (Rosetta is several times faster than QEMU). So, for each architecture asked for:
//!
//! - if another tool's entry runs it ([`Survey::runner`], not [`is_binfmts_entry`])
//!   and its probe proves it in an empty root (so it works where containers need it),
//!   the architecture is left to it ([`ArchAction::LeftTo`]), unless the user asked to
//!   take over (`--take-over`): then binfmt's emulator is registered in front of it,
//!   and the line says which handler it now shadows;
//! - if that entry does not run it (its probe fails, it has no flag F, its
//!   interpreter is missing), it does not block: binfmt's is registered in front of
//!   it, which is left in place, and the line says so;
//! - with `all`, an architecture that runs with no entry at all is skipped as native
//!   ([`ArchAction::Native`]: 32-bit arm on an aarch64 CPU with AArch32);
//! - otherwise binfmt registers (or keeps) its own ([`ArchAction::Register`]).
//!
//! Everything here is a pure function of a [`Survey`] whose probes ran for the
//! architectures [`to_probe`] names.

use binfmt_misc::Entry;
use qemu_catalog::Arch;

use crate::findings::EntryRef;
use crate::survey::{Survey, is_binfmts_entry};

/// What an install does with one architecture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArchAction {
    /// Register binfmt's emulator (or the one chosen for the architecture), or keep it.
    Register(Registering),
    /// Nothing: this machine runs it natively.
    Native,
    /// Nothing: another tool's entry runs it, proved by its probe.
    LeftTo(EntryRef),
}

/// How binfmt's entry goes in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Registering {
    /// Other tools' enabled entries that claim the architecture and that binfmt's
    /// entry is (or will be) matched before.
    pub shadows: Vec<Shadowed>,
    /// Another tool's entry is matched before binfmt's today: binfmt's must be
    /// registered again, even where it is right, to come first.
    pub to_front: bool,
}

/// Another tool's entry that binfmt's is matched before.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shadowed {
    /// The entry.
    pub entry: EntryRef,
    /// Whether it ran the architecture's programs.
    pub state: HandlerState,
}

/// What is known of a handler binfmt's entry shadows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HandlerState {
    /// It ran the probe (and is shadowed because the user asked to take over).
    Runs,
    /// It does not run the architecture's programs where containers need it: why.
    Fails(String),
    /// binfmt's entry was in front of it already; it was not run.
    NotRun,
}

impl ArchAction {
    /// The part after `installing: <arch> ` when nothing is registered.
    pub fn skipped_line(&self) -> Option<String> {
        match self {
            ArchAction::Register(_) => None,
            ArchAction::Native => Some("skipped (this machine runs it natively)".to_owned()),
            ArchAction::LeftTo(entry) => Some(format!(
                "skipped ({} runs it, with {}; --take-over registers binfmt's emulator in \
                 front of it)",
                entry.name,
                entry.interpreter.display()
            )),
        }
    }
}

impl Registering {
    /// What follows the outcome on the `installing:` line: the handlers binfmt's entry
    /// shadows, if any.
    pub fn shadows_note(&self, arch: Arch) -> Option<String> {
        if self.shadows.is_empty() {
            return None;
        }
        let each: Vec<String> = self
            .shadows
            .iter()
            .map(|shadowed| {
                let what = match &shadowed.state {
                    HandlerState::Runs => format!("which runs {arch} programs too"),
                    HandlerState::Fails(why) => format!("which does not run them: {why}"),
                    HandlerState::NotRun => "registered before it".to_owned(),
                };
                format!(
                    "{} ({}, {what}; left in place)",
                    shadowed.entry.name,
                    shadowed.entry.interpreter.display()
                )
            })
            .collect();
        Some(format!("shadows {}", each.join(", ")))
    }
}

/// The architectures among `arches` whose probe [`decide`] needs: those another
/// tool's entry runs, and with `skip_native` those that may run natively here
/// (`may_be_native`) and no enabled entry claims.
pub fn to_probe(
    survey: &Survey,
    arches: &[Arch],
    skip_native: bool,
    may_be_native: &dyn Fn(Arch) -> bool,
) -> Vec<Arch> {
    arches
        .iter()
        .copied()
        .filter(|&arch| match survey.runner(arch) {
            Some(runner) => !is_binfmts_entry(runner),
            None => skip_native && may_be_native(arch),
        })
        .collect()
}

/// What to do with each of `arches` (see the module documentation); `take_over`
/// registers binfmt's in front of another tool's working entry, `skip_native` (for
/// `all`) leaves out what the CPU runs.
pub fn decide(
    survey: &Survey,
    arches: &[Arch],
    take_over: bool,
    skip_native: bool,
) -> Vec<(Arch, ArchAction)> {
    arches
        .iter()
        .map(|&arch| (arch, decide_one(survey, arch, take_over, skip_native)))
        .collect()
}

fn decide_one(survey: &Survey, arch: Arch, take_over: bool, skip_native: bool) -> ArchAction {
    let others: Vec<&Entry> = survey
        .serving_claims(arch)
        .into_iter()
        .filter(|entry| !is_binfmts_entry(entry))
        .collect();
    let Some(runner) = survey.runner(arch) else {
        return if skip_native && survey.runs_natively(arch) {
            ArchAction::Native
        } else {
            ArchAction::Register(Registering::default())
        };
    };
    if is_binfmts_entry(runner) {
        return ArchAction::Register(Registering {
            shadows: others
                .into_iter()
                .map(|entry| Shadowed {
                    entry: EntryRef::from(entry),
                    state: HandlerState::NotRun,
                })
                .collect(),
            to_front: false,
        });
    }
    let runner_state = runner_state(survey, arch, runner);
    if runner_state == HandlerState::Runs && !take_over {
        return ArchAction::LeftTo(EntryRef::from(runner));
    }
    ArchAction::Register(Registering {
        shadows: others
            .into_iter()
            .map(|entry| Shadowed {
                entry: EntryRef::from(entry),
                state: if entry.registration.name == runner.registration.name {
                    runner_state.clone()
                } else {
                    HandlerState::NotRun
                },
            })
            .collect(),
        to_front: true,
    })
}

/// Whether `runner`, the entry the kernel uses for `arch`, proved it where containers
/// need it: the probe ran in an empty root (or, without one, `runner` has flag F).
fn runner_state(survey: &Survey, arch: Arch, runner: &Entry) -> HandlerState {
    let state = survey.arch(arch);
    let fix_binary = runner.registration.flags.fix_binary;
    match (state.proof(), state.failure()) {
        (Some(_), _) if survey.confined() || fix_binary => HandlerState::Runs,
        (Some(_), _) => HandlerState::Fails(
            "it has no flag F, so inside containers and chroots its interpreter is not found"
                .to_owned(),
        ),
        (None, Some(failure)) => HandlerState::Fails(failure.to_string()),
        (None, None) => HandlerState::Fails(
            survey
                .probe_error
                .clone()
                .unwrap_or_else(|| "its probe was not run".to_owned()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use binfmt_misc::fake::FakeTable;
    use binfmt_misc::{Matcher, Table};

    use super::*;
    use crate::probe::{ProbeFailure, ProbeOutcome};
    use crate::testing::{FakeProber, entry};

    /// An entry another tool registered for `arch`, named `name`.
    fn others(name: &str, arch: Arch, flags: &str) -> Entry {
        let mut entry = entry(arch, true, flags);
        entry.registration.name = name.to_owned();
        entry.registration.interpreter = PathBuf::from(format!("/opt/{name}/{name}"));
        entry
    }

    fn survey(table: &FakeTable, prober: &FakeProber, arches: &[Arch]) -> Survey {
        let mut survey = Survey::read(Some(table as &dyn Table)).unwrap();
        let probe = to_probe(&survey, arches, true, &|_| true);
        survey.probe(prober, &probe);
        survey
    }

    #[test]
    fn a_working_translator_keeps_its_architecture_unless_taken_over() {
        let table = FakeTable::new();
        // Lima's Rosetta stand-in, for arm64 programs here (x86_64 is this host's).
        table.insert(others("rosetta", Arch::Arm64, "OCF"));
        let prober = FakeProber::running(&[Arch::Arm64], 1);
        let survey = survey(&table, &prober, &[Arch::Arm64, Arch::Riscv64]);
        let decided = decide(&survey, &[Arch::Arm64, Arch::Riscv64], false, true);
        let ArchAction::LeftTo(by) = &decided[0].1 else {
            panic!("{decided:?}")
        };
        assert_eq!(by.name, "rosetta");
        assert_eq!(
            decided[0].1.skipped_line().unwrap(),
            "skipped (rosetta runs it, with /opt/rosetta/rosetta; --take-over registers \
             binfmt's emulator in front of it)"
        );
        assert_eq!(
            decided[1].1,
            ArchAction::Register(Registering::default()),
            "riscv64 has no handler"
        );

        let taken = decide(&survey, &[Arch::Arm64], true, true);
        let ArchAction::Register(registering) = &taken[0].1 else {
            panic!("{taken:?}")
        };
        assert!(registering.to_front);
        assert_eq!(
            registering.shadows_note(Arch::Arm64).unwrap(),
            "shadows rosetta (/opt/rosetta/rosetta, which runs arm64 programs too; left in \
             place)"
        );
    }

    #[test]
    fn a_handler_that_does_not_run_does_not_block() {
        let table = FakeTable::new();
        table.insert(others("broken", Arch::S390x, "F"));
        let mut prober = FakeProber::running(&[], 1);
        prober
            .outcomes
            .insert(Arch::S390x, ProbeOutcome::Failed(ProbeFailure::Signal(11)));
        let survey = survey(&table, &prober, &[Arch::S390x]);
        let decided = decide(&survey, &[Arch::S390x], false, false);
        let ArchAction::Register(registering) = &decided[0].1 else {
            panic!("{decided:?}")
        };
        assert!(registering.to_front);
        let note = registering.shadows_note(Arch::S390x).unwrap();
        assert!(
            note.starts_with(
                "shadows broken (/opt/broken/broken, which does not run them: killed by signal 11"
            ),
            "{note}"
        );
        assert!(note.ends_with("; left in place)"), "{note}");
    }

    #[test]
    fn without_flag_f_a_handler_that_runs_in_place_does_not_count() {
        // Probes that could not chroot ran through an entry without F: it runs on the
        // host, not in containers.
        let table = FakeTable::new();
        table.insert(others("box64-like", Arch::Riscv64, ""));
        let mut prober = FakeProber::running(&[Arch::Riscv64], 1);
        prober.confinement = crate::probe::Confinement::Unconfined;
        let survey = survey(&table, &prober, &[Arch::Riscv64]);
        let decided = decide(&survey, &[Arch::Riscv64], false, false);
        let ArchAction::Register(registering) = &decided[0].1 else {
            panic!("{decided:?}")
        };
        assert!(matches!(
            registering.shadows[0].state,
            HandlerState::Fails(_)
        ));
    }

    #[test]
    fn binfmts_own_entry_in_front_is_kept_and_says_what_it_shadows() {
        let table = FakeTable::new();
        table.insert(others("rosetta", Arch::Arm64, "OCF"));
        table.insert(entry(Arch::Arm64, true, "POCF")); // newer: matched first
        let prober = FakeProber::running(&[Arch::Arm64], 1);
        let survey = survey(&table, &prober, &[Arch::Arm64]);
        assert!(
            to_probe(&survey, &[Arch::Arm64], false, &|_| false).is_empty(),
            "binfmt's own runs it: nothing to probe"
        );
        let decided = decide(&survey, &[Arch::Arm64], false, false);
        let ArchAction::Register(registering) = &decided[0].1 else {
            panic!("{decided:?}")
        };
        assert!(!registering.to_front);
        assert_eq!(registering.shadows[0].state, HandlerState::NotRun);
    }

    #[test]
    fn which_architecture_an_entry_serves_is_what_its_mask_accepts() {
        // FEX's mask zeroes bytes 8 to 10 where QEMU's keeps them: it still claims
        // the architecture's programs, and still keeps it.
        let table = FakeTable::new();
        let mut fex = others("FEX-riscv64", Arch::Riscv64, "POCF");
        if let Matcher::Magic {
            mask: Some(mask), ..
        } = &mut fex.registration.matcher
        {
            mask[8..11].fill(0);
        }
        table.insert(fex);
        let survey = survey(
            &table,
            &FakeProber::running(&[Arch::Riscv64], 1),
            &[Arch::Riscv64],
        );
        assert!(matches!(
            decide(&survey, &[Arch::Riscv64], false, false)[0].1,
            ArchAction::LeftTo(_)
        ));
    }

    #[test]
    fn all_skips_what_the_cpu_runs_with_no_entry() {
        let table = FakeTable::new();
        let survey = survey(&table, &FakeProber::running(&[Arch::Arm], 1), &[Arch::Arm]);
        assert_eq!(
            decide(&survey, &[Arch::Arm], false, true)[0].1,
            ArchAction::Native
        );
        assert!(matches!(
            decide(&survey, &[Arch::Arm], false, false)[0].1,
            ArchAction::Register(_)
        ));
    }

    #[test]
    fn all_skips_what_the_cpu_runs_natively() {
        // An aarch64 CPU with AArch32 runs arm programs natively, and riscv64
        // programs through an entry already registered. (This build's own emulators
        // stand in for an aarch64 build's: arm is among them on both hosts.)
        let table = FakeTable::new();
        table.insert(entry(Arch::Riscv64, true, "POCF"));
        let prober = FakeProber::running(&[Arch::Arm, Arch::Riscv64], 1);
        let all: Vec<Arch> = crate::install::resolve(&qemu_catalog::Selection::All)
            .unwrap()
            .iter()
            .map(qemu_catalog::Emulator::arch)
            .collect();
        let on_aarch64 = |arch: Arch| arch.may_be_native_on(Arch::Arm64);
        let mut survey = Survey::read(Some(&table as &dyn Table)).unwrap();
        survey.probe(&prober, &to_probe(&survey, &all, true, &on_aarch64));
        let kept: Vec<Arch> = decide(&survey, &all, false, true)
            .into_iter()
            .filter(|(_, action)| matches!(action, ArchAction::Register(_)))
            .map(|(arch, _)| arch)
            .collect();
        let expected: Vec<Arch> = all
            .iter()
            .copied()
            .filter(|arch| *arch != Arch::Arm)
            .collect();
        assert_eq!(
            kept, expected,
            "arm skipped; riscv64 kept (its entry serves it)"
        );
    }

    #[test]
    fn an_x86_64_cpu_needs_no_probe_to_know_what_to_skip() {
        let all: Vec<Arch> = crate::install::resolve(&qemu_catalog::Selection::All)
            .unwrap()
            .iter()
            .map(qemu_catalog::Emulator::arch)
            .collect();
        let on_x86_64 = |arch: Arch| arch.may_be_native_on(Arch::Amd64);
        let survey = Survey::read(Some(&FakeTable::new() as &dyn Table)).unwrap();
        assert_eq!(to_probe(&survey, &all, true, &on_x86_64), []);
        assert!(
            decide(&survey, &all, false, true)
                .iter()
                .all(|(_, action)| matches!(action, ArchAction::Register(_)))
        );
    }
}
