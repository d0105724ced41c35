//! Verdicts, the matrix they make, and the record of the latest run
//! (`qemu-blobs/conformance.toml`, written by `--record`), which `cargo xtask pin`
//! gates a re-pin on and `--write-docs` renders into docs/workloads.md and the README.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result, anyhow};
use serde::{Deserialize, Serialize};

use crate::conformance::arch::Target;
use crate::conformance::step::Outcome;
use crate::conformance::workload::Workload;

/// Where the record is kept, from the workspace root.
pub const RECORD_PATH: &str = "qemu-blobs/conformance.toml";

/// One architecture's row of the matrix; workloads not selected have no cell.
pub struct Row {
    pub target: &'static Target,
    pub cells: BTreeMap<Workload, Outcome>,
}

/// A verdict as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Pass,
    Fail,
    Unavailable,
    NotRun,
}

/// One cell of the record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub arch: String,
    pub workload: String,
    pub verdict: Verdict,
    /// Wall time of a pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    /// Why it did not pass (with the last lines of its log for a failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The results of a run, for the emulators of one pin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The upstream QEMU version (`10.0.13`).
    pub qemu: String,
    /// The Debian version of the pinned qemu-user (pins.toml's `version`).
    pub debian_version: String,
    /// The suite of the userlands.
    pub suite: String,
    /// The machine the emulators ran on (`x86_64`).
    pub host: String,
    #[serde(default, rename = "result")]
    pub results: Vec<Entry>,
}

impl Record {
    /// The record of `rows`: every cell that was run or judged.
    pub fn from_rows(qemu: &str, debian_version: &str, suite: &str, rows: &[Row]) -> Record {
        let mut results = Vec::new();
        for row in rows {
            for (workload, outcome) in &row.cells {
                let (verdict, seconds, detail) = match outcome {
                    Outcome::Passed(elapsed) => (
                        Verdict::Pass,
                        Some((elapsed.as_secs_f64() * 10.0).round() / 10.0),
                        None,
                    ),
                    Outcome::Failed(why) => (Verdict::Fail, None, Some(why.clone())),
                    Outcome::Unavailable(why) => (Verdict::Unavailable, None, Some(why.clone())),
                    Outcome::NotRun(why) => (Verdict::NotRun, None, Some(why.clone())),
                };
                results.push(Entry {
                    arch: crate::conformance::arch::name(row.target).to_owned(),
                    workload: workload.name().to_owned(),
                    verdict,
                    seconds,
                    detail,
                });
            }
        }
        Record {
            qemu: qemu.to_owned(),
            debian_version: debian_version.to_owned(),
            suite: suite.to_owned(),
            host: crate::fetch::build_host(),
            results,
        }
    }

    /// The cell of `arch` and `workload`.
    pub fn get(&self, arch: &str, workload: &str) -> Option<&Entry> {
        self.results
            .iter()
            .find(|e| e.arch == arch && e.workload == workload)
    }

    /// `newer` laid over this record: its cells replace these, the rest stay, unless
    /// it is for other emulators or another suite (then it replaces everything).
    pub fn merged(&self, newer: &Record) -> Record {
        if (&self.debian_version, &self.suite, &self.host)
            != (&newer.debian_version, &newer.suite, &newer.host)
        {
            return newer.clone();
        }
        let mut merged = self.clone();
        for entry in &newer.results {
            match merged
                .results
                .iter_mut()
                .find(|e| e.arch == entry.arch && e.workload == entry.workload)
            {
                Some(old) => *old = entry.clone(),
                None => merged.results.push(entry.clone()),
            }
        }
        merged.sort();
        merged
    }

    /// Architectures in the default matrix's order, then the others; workloads in
    /// their running order.
    fn sort(&mut self) {
        let arch_rank = |arch: &str| {
            crate::conformance::arch::DEFAULT
                .iter()
                .position(|a| *a == arch)
                .unwrap_or(usize::MAX)
        };
        let workload_rank = |name: &str| Workload::parse(name).map_or(usize::MAX, |w| w as usize);
        self.results.sort_by(|a, b| {
            (arch_rank(&a.arch), &a.arch, workload_rank(&a.workload)).cmp(&(
                arch_rank(&b.arch),
                &b.arch,
                workload_rank(&b.workload),
            ))
        });
    }

    /// Reads a record.
    pub fn load(path: &Path) -> Result<Record> {
        let text =
            fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        toml::from_str(&text)
            .with_context(|| format!("{} is not a conformance record", path.display()))
    }

    /// Writes the record, with a header saying where it comes from.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut sorted = self.clone();
        sorted.sort();
        let body = toml::to_string(&sorted)
            .with_context(|| format!("cannot serialize the record for {}", path.display()))?;
        let text = format!(
            "# Generated by `cargo xtask conformance --record` (as root): do not edit by hand.\n\
             #\n\
             # The latest results of the conformance workloads under the pinned emulators,\n\
             # per architecture and workload: pass (with seconds of wall time), fail (with\n\
             # the end of its log), unavailable or not-run (with the reason). `cargo xtask\n\
             # pin` refuses a new pin that does not pass a workload these pass, unless\n\
             # --accept-regression ARCH:WORKLOAD names it. See docs/workloads.md.\n\n{body}"
        );
        fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
    }

    /// The architectures, in order, and the workloads that have a cell, in order.
    fn axes(&self) -> (Vec<&str>, Vec<Workload>) {
        let mut arches: Vec<&str> = Vec::new();
        for entry in &self.results {
            if !arches.contains(&entry.arch.as_str()) {
                arches.push(&entry.arch);
            }
        }
        let workloads = Workload::ALL
            .into_iter()
            .filter(|w| self.results.iter().any(|e| e.workload == w.name()))
            .collect();
        (arches, workloads)
    }

    /// The matrix (Markdown): architectures by workload, seconds of each pass; with
    /// `notes`, one line for every cell that did not pass, saying why.
    pub fn matrix(&self, notes: bool) -> String {
        let (arches, workloads) = self.axes();
        let mut out = String::new();
        let names: Vec<&str> = workloads.iter().map(|w| w.name()).collect();
        let _ = writeln!(out, "| arch | {} |", names.join(" | "));
        let _ = writeln!(out, "|---|{}", "--:|".repeat(names.len()));
        let mut why = String::new();
        for arch in &arches {
            let cells: Vec<String> = workloads
                .iter()
                .map(|w| match self.get(arch, w.name()) {
                    None => " ".to_owned(),
                    Some(entry) => match entry.verdict {
                        Verdict::Pass => format!("{:.1}", entry.seconds.unwrap_or(0.0)),
                        Verdict::Fail => "**FAIL**".to_owned(),
                        Verdict::Unavailable => "n/a".to_owned(),
                        Verdict::NotRun => "-".to_owned(),
                    },
                })
                .collect();
            let _ = writeln!(out, "| {arch} | {} |", cells.join(" | "));
            // One line per reason: the cells of an architecture that did not pass for
            // the same reason (no port, a 404) are named together.
            let mut reasons: Vec<(&str, &str, Vec<&str>)> = Vec::new();
            for w in &workloads {
                let Some(entry) = self.get(arch, w.name()) else {
                    continue;
                };
                let label = match entry.verdict {
                    Verdict::Pass => continue,
                    Verdict::Fail => "FAIL",
                    Verdict::Unavailable => "not available here",
                    Verdict::NotRun => "not run",
                };
                let detail = entry.detail.as_deref().unwrap_or("");
                match reasons
                    .iter_mut()
                    .find(|(l, d, _)| *l == label && *d == detail)
                {
                    Some((_, _, names)) => names.push(w.name()),
                    None => reasons.push((label, detail, vec![w.name()])),
                }
            }
            for (label, detail, names) in reasons {
                let _ = writeln!(why, "- {arch} {}: {label}: {detail}", names.join(", "));
            }
        }
        if notes && !why.is_empty() {
            let _ = write!(out, "\n{why}");
        }
        out
    }

    /// The heading line above a matrix.
    pub fn caption(&self) -> String {
        format!(
            "QEMU {} (Debian qemu-user {}), Debian {} userlands, on an {} host; seconds of \
             wall time per workload (`**FAIL**` failed, `n/a` not available here, `-` not run)",
            self.qemu, self.debian_version, self.suite, self.host
        )
    }
}

/// 1 if a workload failed, else 3 if one could not be tested, else 0.
pub fn exit_status(rows: &[Row]) -> u8 {
    let any = |wanted: fn(&Outcome) -> bool| rows.iter().any(|row| row.cells.values().any(wanted));
    if any(|s| matches!(s, Outcome::Failed(_))) {
        1
    } else if any(|s| matches!(s, Outcome::Unavailable(_))) {
        3
    } else {
        0
    }
}

/// The markers the generated matrix sits between, in docs/workloads.md and README.md.
pub const BEGIN: &str = "<!-- BEGIN conformance matrix -->";
pub const END: &str = "<!-- END conformance matrix -->";

/// `text` with what lies between the markers replaced by `body`.
pub fn replace_between_markers(text: &str, body: &str, file: &str) -> Result<String> {
    let start = text
        .find(BEGIN)
        .with_context(|| format!("{file} has no {BEGIN} line; fix: add the two marker lines"))?;
    let end = text
        .find(END)
        .filter(|&end| end > start)
        .ok_or_else(|| anyhow!("{file} has no {END} line after {BEGIN}; fix: add it"))?;
    Ok(format!("{}{BEGIN}\n{body}{}", &text[..start], &text[end..]))
}

/// What goes between the markers of docs/workloads.md: the caption, the matrix and
/// why each cell that did not pass did not.
pub fn docs_body(record: &Record) -> String {
    let mut workloads = String::new();
    for w in Workload::ALL {
        let _ = writeln!(
            workloads,
            "- `{}` (killed after {} min): {}.",
            w.name(),
            w.timeout().as_secs() / 60,
            w.describe()
        );
    }
    format!(
        "<!-- Generated by `cargo xtask conformance --write-docs` from {RECORD_PATH}. -->\n\n{}:\n\n{}\nThe workloads, in the order they run:\n\n{workloads}\n",
        record.caption(),
        record.matrix(true)
    )
}

/// What goes between the README's markers: the caption and the bare matrix.
pub fn readme_body(record: &Record) -> String {
    format!(
        "<!-- Generated by `cargo xtask conformance --write-docs` from {RECORD_PATH}. -->\n\n{}; \
         why a cell did not pass: [docs/workloads.md](docs/workloads.md#the-latest-matrix).\n\n{}\n",
        record.caption(),
        record.matrix(false)
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::conformance::arch::parse_target;

    fn row(arch: &str, cells: Vec<(Workload, Outcome)>) -> Row {
        Row {
            target: parse_target(arch).unwrap(),
            cells: cells.into_iter().collect(),
        }
    }

    fn sample() -> Vec<Row> {
        let passed = |s| Outcome::Passed(Duration::from_millis(s));
        vec![
            row(
                "riscv64",
                vec![
                    (Workload::Bootstrap, passed(1000)),
                    (Workload::Go, passed(2040)),
                ],
            ),
            row(
                "armhf",
                vec![
                    (Workload::Bootstrap, passed(90_000)),
                    (Workload::Go, Outcome::Failed("go crashed".into())),
                ],
            ),
            row(
                "s390x",
                vec![
                    (Workload::Bootstrap, Outcome::Unavailable("404".into())),
                    (Workload::Go, Outcome::NotRun("no userland".into())),
                ],
            ),
        ]
    }

    #[test]
    fn the_matrix_shows_each_workload_and_says_why_a_cell_did_not_pass() {
        let rows = sample();
        let record = Record::from_rows("10.0.13", "1:10.0.13+ds-0", "trixie", &rows);
        let text = record.matrix(true);
        assert!(
            text.starts_with("| arch | bootstrap | go |\n|---|--:|--:|\n"),
            "{text}"
        );
        assert!(text.contains("| riscv64 | 1.0 | 2.0 |\n"), "{text}");
        assert!(text.contains("| armhf | 90.0 | **FAIL** |\n"), "{text}");
        assert!(text.contains("| s390x | n/a | - |\n"), "{text}");
        assert!(text.contains("- armhf go: FAIL: go crashed\n"), "{text}");
        assert!(
            text.contains("- s390x bootstrap: not available here: 404\n"),
            "{text}"
        );
        assert!(
            text.contains("- s390x go: not run: no userland\n"),
            "{text}"
        );
        assert!(!record.matrix(false).contains("go crashed"));
        assert!(record.caption().contains("QEMU 10.0.13"));
        assert_eq!(exit_status(&rows), 1);
        assert_eq!(exit_status(&rows[2..]), 3);
        assert_eq!(exit_status(&rows[..1]), 0);

        let same = Record::from_rows(
            "10.0.13",
            "1:10.0.13+ds-0",
            "trixie",
            &[row(
                "s390x",
                vec![
                    (Workload::Bootstrap, Outcome::Unavailable("404".into())),
                    (Workload::Go, Outcome::Unavailable("404".into())),
                ],
            )],
        );
        let text = same.matrix(true);
        assert!(
            text.contains("- s390x bootstrap, go: not available here: 404\n"),
            "{text}"
        );
    }

    #[test]
    fn a_record_survives_a_round_trip_and_a_newer_run_replaces_only_its_cells() {
        let record = Record::from_rows("10.0.13", "1:10.0.13+ds-0", "trixie", &sample());
        let dir = std::env::temp_dir().join(format!("conformance-record-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("conformance.toml");
        record.save(&path).unwrap();
        let loaded = Record::load(&path).unwrap();
        assert_eq!(loaded.results.len(), record.results.len());
        assert_eq!(loaded.get("armhf", "go").unwrap().verdict, Verdict::Fail);
        fs::remove_dir_all(&dir).unwrap();

        let newer = Record::from_rows(
            "10.0.13",
            "1:10.0.13+ds-0",
            "trixie",
            &[row(
                "armhf",
                vec![(Workload::Go, Outcome::Passed(Duration::from_secs(3)))],
            )],
        );
        let merged = loaded.merged(&newer);
        assert_eq!(merged.get("armhf", "go").unwrap().verdict, Verdict::Pass);
        assert_eq!(merged.get("riscv64", "go").unwrap().seconds, Some(2.0));
        // armhf sorts before riscv64 (the default matrix's order).
        assert_eq!(merged.results[0].arch, "armhf");

        let other_pin = Record::from_rows("10.1.0", "1:10.1.0+ds-1", "trixie", &[]);
        assert!(loaded.merged(&other_pin).results.is_empty());
    }

    #[test]
    fn the_markers_bound_what_is_replaced() {
        let text = format!("intro\n{BEGIN}\nold\n{END}\nafter\n");
        let new = replace_between_markers(&text, "new\n", "README.md").unwrap();
        assert_eq!(new, format!("intro\n{BEGIN}\nnew\n{END}\nafter\n"));
        assert!(
            replace_between_markers("no markers", "x", "README.md")
                .unwrap_err()
                .to_string()
                .contains("fix: add")
        );
    }
}
