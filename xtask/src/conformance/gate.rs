//! The re-pin gate: a new pin may not fail a workload the current pin passes, unless
//! that regression is acknowledged by name (`cargo xtask pin --accept-regression
//! ARCH:WORKLOAD`). Pure: two records in, a verdict out.

use std::fmt;

use anyhow::{Result, anyhow};

use crate::conformance::arch;
use crate::conformance::record::{Record, Verdict};
use crate::conformance::workload::Workload;

/// An acknowledged regression: `ARCH:WORKLOAD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acceptance {
    pub arch: String,
    pub workload: String,
}

impl fmt::Display for Acceptance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.arch, self.workload)
    }
}

/// Parses `ARCH:WORKLOAD` (the architecture in any of its spellings).
pub fn parse_acceptance(text: &str) -> Result<Acceptance, String> {
    let (arch, workload) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("{text:?} is not ARCH:WORKLOAD (arm64:go, say)"))?;
    let target =
        arch::by_name(arch).ok_or_else(|| format!("unknown architecture {arch:?} in {text:?}"))?;
    let workload = Workload::parse(workload)?;
    Ok(Acceptance {
        arch: arch::name(target).to_owned(),
        workload: workload.name().to_owned(),
    })
}

/// A workload the current pin passes and the candidate does not.
#[derive(Debug, Clone, PartialEq)]
pub struct Regression {
    pub arch: String,
    pub workload: String,
    /// What the candidate's run says instead (`fail: ...`, `missing`).
    pub now: String,
}

/// Every cell `current` passes that `candidate` does not pass (a failure, a cell
/// that could not be tested or was not run: none of them shows the new emulators
/// still run it).
pub fn regressions(current: &Record, candidate: &Record) -> Vec<Regression> {
    current
        .results
        .iter()
        .filter(|e| e.verdict == Verdict::Pass)
        .filter_map(|old| {
            let now = match candidate.get(&old.arch, &old.workload) {
                Some(new) if new.verdict == Verdict::Pass => return None,
                Some(new) => format!(
                    "{:?}: {}",
                    new.verdict,
                    new.detail
                        .as_deref()
                        .unwrap_or("")
                        .lines()
                        .next()
                        .unwrap_or("")
                ),
                None => "missing from the candidate's run".to_owned(),
            };
            Some(Regression {
                arch: old.arch.clone(),
                workload: old.workload.clone(),
                now,
            })
        })
        .collect()
}

/// Ok with the regressions `accepted` names, or an error naming every other one. An
/// acceptance that names no regression is an error too: it is stale, and would hide
/// the next one.
pub fn check(
    current: &Record,
    candidate: &Record,
    accepted: &[Acceptance],
) -> Result<Vec<Regression>> {
    let found = regressions(current, candidate);
    let is_accepted = |r: &Regression| {
        accepted
            .iter()
            .any(|a| a.arch == r.arch && a.workload == r.workload)
    };
    let refused: Vec<&Regression> = found.iter().filter(|r| !is_accepted(r)).collect();
    let stale: Vec<&Acceptance> = accepted
        .iter()
        .filter(|a| {
            !found
                .iter()
                .any(|r| r.arch == a.arch && r.workload == a.workload)
        })
        .collect();
    if !refused.is_empty() {
        let list: Vec<String> = refused
            .iter()
            .map(|r| format!("{}:{} ({})", r.arch, r.workload, r.now))
            .collect();
        return Err(anyhow!(
            "QEMU {} does not pass what QEMU {} passes: {}; fix: find out why (the logs are \
             in target/conformance/<arch>/), or, if the regression is understood and to be \
             shipped, name each with --accept-regression ARCH:WORKLOAD",
            candidate.qemu,
            current.qemu,
            list.join(", ")
        ));
    }
    if !stale.is_empty() {
        let list: Vec<String> = stale.iter().map(ToString::to_string).collect();
        return Err(anyhow!(
            "--accept-regression {} names no regression of QEMU {}; fix: drop it",
            list.join(" "),
            candidate.qemu
        ));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::record::Entry;

    fn record(qemu: &str, cells: &[(&str, &str, Verdict)]) -> Record {
        Record {
            qemu: qemu.to_owned(),
            debian_version: format!("1:{qemu}+ds-1"),
            suite: "trixie".to_owned(),
            host: "x86_64".to_owned(),
            results: cells
                .iter()
                .map(|&(arch, workload, verdict)| Entry {
                    arch: arch.to_owned(),
                    workload: workload.to_owned(),
                    verdict,
                    seconds: (verdict == Verdict::Pass).then_some(1.0),
                    detail: (verdict != Verdict::Pass).then(|| "segfault\nmore".to_owned()),
                })
                .collect(),
        }
    }

    #[test]
    fn a_pin_that_fails_what_the_current_one_passes_is_refused_unless_accepted() {
        use Verdict::*;
        let current = record(
            "10.0.13",
            &[
                ("arm64", "go", Pass),
                ("arm64", "node", Pass),
                ("armhf", "java", Fail),
                ("s390x", "bootstrap", Unavailable),
                ("riscv64", "tar", Pass),
            ],
        );
        let candidate = record(
            "10.1.0",
            &[
                ("arm64", "go", Fail),
                ("arm64", "node", Pass),
                // Failing before is no regression.
                ("armhf", "java", Fail),
                ("s390x", "bootstrap", Unavailable),
                // riscv64 tar is missing: not shown to pass.
            ],
        );
        let found = regressions(&current, &candidate);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(
            (found[0].arch.as_str(), found[0].workload.as_str()),
            ("arm64", "go")
        );
        assert_eq!(found[0].now, "Fail: segfault");
        assert_eq!(found[1].now, "missing from the candidate's run");

        let refused = check(&current, &candidate, &[]).unwrap_err().to_string();
        assert!(refused.contains("arm64:go (Fail: segfault)"), "{refused}");
        assert!(refused.contains("riscv64:tar"), "{refused}");
        assert!(refused.contains("fix:"), "{refused}");

        let one = [parse_acceptance("linux/arm64:go").unwrap()];
        let still = check(&current, &candidate, &one).unwrap_err().to_string();
        assert!(!still.contains("arm64:go"), "{still}");
        assert!(still.contains("riscv64:tar"), "{still}");

        let both = [
            parse_acceptance("aarch64:go").unwrap(),
            parse_acceptance("riscv64:tar").unwrap(),
        ];
        assert_eq!(check(&current, &candidate, &both).unwrap().len(), 2);
    }

    #[test]
    fn a_pin_that_passes_everything_passes_and_a_stale_acceptance_is_refused() {
        use Verdict::*;
        let current = record("10.0.13", &[("arm64", "go", Pass), ("armhf", "go", Fail)]);
        let candidate = record("10.1.0", &[("arm64", "go", Pass), ("armhf", "go", Pass)]);
        assert!(check(&current, &candidate, &[]).unwrap().is_empty());
        let stale = [parse_acceptance("arm64:go").unwrap()];
        let error = check(&current, &candidate, &stale).unwrap_err().to_string();
        assert!(error.contains("names no regression"), "{error}");
    }

    #[test]
    fn acceptances_name_a_known_architecture_and_workload() {
        assert_eq!(
            parse_acceptance("arm/v7:java").unwrap().to_string(),
            "armhf:java"
        );
        assert!(
            parse_acceptance("arm64")
                .unwrap_err()
                .contains("ARCH:WORKLOAD")
        );
        assert!(
            parse_acceptance("sparc:go")
                .unwrap_err()
                .contains("unknown architecture")
        );
        assert!(
            parse_acceptance("arm64:rust")
                .unwrap_err()
                .contains("unknown workload")
        );
    }
}
