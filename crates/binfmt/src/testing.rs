//! Fixtures shared by the unit tests of the modules that read a survey: a prober that
//! answers from a table instead of running anything, and entries as binfmt registers
//! them.

use std::collections::BTreeMap;

use binfmt_misc::{Entry, Flags, Registration};
use qemu_catalog::{Arch, Proof};
use rustix::io::Errno;

use crate::probe::{Confinement, ProbeError, ProbeFailure, ProbeOutcome, ProbeRun, Prober};

/// Answers from a fixed map; architectures not in it fail with ENOEXEC.
pub(crate) struct FakeProber {
    pub outcomes: BTreeMap<Arch, ProbeOutcome>,
    pub confinement: Confinement,
}

impl FakeProber {
    /// Every architecture in `runs` proves itself (amd64 at `level`).
    pub(crate) fn running(runs: &[Arch], level: u8) -> FakeProber {
        FakeProber {
            outcomes: runs
                .iter()
                .map(|&arch| {
                    let level = (arch == Arch::Amd64).then_some(level);
                    (arch, ProbeOutcome::Proved(Proof { level }))
                })
                .collect(),
            confinement: Confinement::EmptyRoot,
        }
    }
}

impl Prober for FakeProber {
    fn run(&self, arches: &[Arch]) -> Result<ProbeRun, ProbeError> {
        Ok(ProbeRun {
            confinement: self.confinement,
            outcomes: arches
                .iter()
                .map(|arch| {
                    let outcome = self
                        .outcomes
                        .get(arch)
                        .cloned()
                        .unwrap_or(ProbeOutcome::Failed(ProbeFailure::Exec(
                            Errno::NOEXEC.raw_os_error(),
                        )));
                    (*arch, outcome)
                })
                .collect(),
        })
    }
}

/// An entry for `arch` with the catalog's magic, as binfmt registers it, whose
/// interpreter exists nowhere.
pub(crate) fn entry(arch: Arch, enabled: bool, flags: &str) -> Entry {
    Entry {
        enabled,
        registration: Registration {
            name: arch.entry_name(),
            matcher: arch.matcher(),
            interpreter: format!("/nonexistent/qemu-{}", arch.qemu_cpu()).into(),
            flags: flags.parse().unwrap_or(Flags::NONE),
        },
    }
}
