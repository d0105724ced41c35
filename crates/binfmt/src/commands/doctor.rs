//! `binfmt doctor`: inspect the kernel and the environment, and report every finding
//! with its cause and its fix; exit 1 when anything is wrong.
//!
//! What it looks at, in order, each step only when the previous one allows it:
//!
//! 1. the kernel, through [`HostFacts`] (read from a [`HostPaths`] tree, the seam the
//!    tests use to fake a kernel they cannot have): `/proc/filesystems` (is
//!    binfmt_misc there?), `/lib/modules/<release>` (if not, is it a module that is
//!    not loaded?), `/proc/sys/kernel/osrelease` (flag F needs Linux 4.8),
//!    `/proc/self/mountinfo` (where binfmt_misc is mounted instead);
//! 2. the mount: is binfmt_misc mounted at `--mount`? If not and it is the default
//!    place, doctor mounts it to look inside, says that such an instance dies with
//!    the process that mounted it, and unmounts it again;
//! 3. permission: may this process write `register` (root, and not a read-only
//!    `/proc/sys` as in a container without `--privileged`)? Is the table enabled?
//! 4. every entry: disabled; claiming the machine's own architecture; no flag F with
//!    an interpreter missing from this mount namespace (a stale entry), or
//!    present here but not in containers. Entries for other kinds of files
//!    (binfmt-support's jar and python entries, WSLInterop) are only reported when
//!    stale. The entry that runs an architecture binfmt carries with an interpreter
//!    that is not binfmt's emulator (another tool's) is noted, not counted as a
//!    problem;
//! 5. every architecture: two enabled entries of binfmt's claiming it (a problem:
//!    which one runs depends on the order they were registered in), or an enabled
//!    entry of another tool's next to another one (a note that says which runs and
//!    why, and never advises removing another tool's working translator); its probe,
//!    run in an empty root: an entry whose probe fails. What runs each architecture
//!    is listed (`handlers`).
//!
//! Every finding is worded by [`crate::findings`]. Nothing is written to binfmt_misc.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use binfmt_misc::report::Chain;
use binfmt_misc::{BinfmtMisc, DEFAULT_MOUNT, Entry, Error as TableError, Table};
use interpreter_files::is_memfd_path;
use qemu_catalog::{Arch, Emulator};
use serde::Serialize;

use crate::commands::lines::print_stdout;
use crate::findings::{EntryRef, F_SINCE, Finding, WordedFinding};
use crate::host::{self, BinfmtMiscModule, HostFacts, HostPaths};
use crate::outcome::{CommandError, Completion, Shared};
use crate::probe::{Confinement, Prober, SystemProber};
use crate::status;
use crate::survey::{Survey, claims, is_binfmts_entry};
use binfmt_cli::DoctorArgs;

/// Runs `binfmt doctor`.
pub fn run(args: &DoctorArgs) -> Result<Completion, CommandError> {
    let report = doctor(&HostPaths::system(), &args.mount, &SystemProber);
    print_stdout(&if args.json {
        report.render_json()
    } else {
        report.render_text()
    })?;
    Ok(Completion::of(report.ok))
}

/// Everything doctor found.
#[derive(Clone, Debug, Serialize)]
pub struct DoctorReport {
    /// Whether nothing is wrong.
    pub ok: bool,
    /// Checks that passed, in order, as sentences.
    pub checks: Vec<String>,
    /// What is wrong.
    pub findings: Vec<WordedFinding>,
    /// What is worth knowing but not wrong (an entry with another tool's emulator).
    pub notes: Vec<WordedFinding>,
    /// What runs, proved by execution (the status JSON's `supported`).
    pub supported: Vec<String>,
    /// The entry that runs each emulated platform (the status JSON's `handlers`).
    pub handlers: Vec<status::Handler>,
    /// The binfmt_misc mount the findings are about.
    #[serde(skip)]
    pub mount: PathBuf,
}

impl DoctorReport {
    /// An empty report about the table at `mount`.
    pub fn new(mount: &Path) -> DoctorReport {
        DoctorReport {
            ok: false,
            checks: Vec::new(),
            findings: Vec::new(),
            notes: Vec::new(),
            supported: Vec::new(),
            handlers: Vec::new(),
            mount: mount.to_owned(),
        }
    }

    fn pass(&mut self, check: String) {
        self.checks.push(check);
    }

    /// Records a problem, or a notice among the notes ([`Finding::is_notice`]).
    fn find(&mut self, finding: &Finding) {
        let worded = finding.worded(&self.mount);
        if finding.is_notice() {
            self.notes.push(worded);
        } else {
            self.findings.push(worded);
        }
    }

    /// The human report.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        for check in &self.checks {
            let _ = writeln!(out, "ok: {check}");
        }
        if !self.supported.is_empty() {
            let _ = writeln!(out, "runs: {}", self.supported.join(", "));
        }
        for handler in &self.handlers {
            let _ = writeln!(out, "  {}", status::handler_line(handler));
        }
        let headed = self
            .findings
            .iter()
            .map(|finding| ("PROBLEM", finding))
            .chain(self.notes.iter().map(|note| ("NOTE", note)));
        for (heading, finding) in headed {
            let _ = writeln!(out, "\n{heading} [{}] {}", finding.id, finding.problem);
            let _ = writeln!(out, "  cause: {}", finding.cause);
            let _ = writeln!(out, "  fix: {}", finding.fix);
        }
        match self.findings.len() {
            0 => out.push_str("\nbinfmt doctor: no problems found\n"),
            1 => out.push_str("\nbinfmt doctor: 1 problem\n"),
            n => {
                let _ = writeln!(out, "\nbinfmt doctor: {n} problems");
            }
        }
        out
    }

    /// The JSON report.
    pub fn render_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }
}

/// The kernel's part: binfmt_misc present, flag F supported. Returns whether
/// binfmt_misc is there (or cannot be told), so the rest is worth looking at.
pub fn check_kernel(facts: &HostFacts, report: &mut DoctorReport) -> bool {
    let present = facts.has_binfmt_misc();
    match present {
        Some(true) => report.pass("binfmt_misc is in the kernel".to_owned()),
        Some(false) => report.find(&match facts.binfmt_misc_module {
            BinfmtMiscModule::Loadable => Finding::BinfmtMiscNotLoaded,
            _ => Finding::BinfmtMiscMissing,
        }),
        None => {}
    }
    match facts.kernel_version() {
        Some(version) if version < F_SINCE => report.find(&Finding::KernelTooOldForF {
            release: facts.kernel_release.clone().unwrap_or_default(),
        }),
        Some((major, minor)) => {
            report.pass(format!("Linux {major}.{minor} has flag F (since 4.8)"));
        }
        None => {}
    }
    present != Some(false)
}

/// Runs every check; see the module documentation.
pub fn doctor(paths: &HostPaths, mount: &Path, prober: &dyn Prober) -> DoctorReport {
    let mut report = DoctorReport::new(mount);
    let facts = HostFacts::read_from(paths);
    if check_kernel(&facts, &mut report) {
        check_table(&facts, mount, prober, &mut report);
    }
    report.ok = report.findings.is_empty();
    report
}

/// Steps 2 to 5 of the module documentation.
fn check_table(facts: &HostFacts, mount: &Path, prober: &dyn Prober, report: &mut DoctorReport) {
    let shown = mount.display();
    let mut self_mounted = None;
    let table = match BinfmtMisc::open(mount) {
        Ok(table) => {
            report.pass(format!("binfmt_misc is mounted at {shown}"));
            Some(table)
        }
        Err(error) => {
            let not_mounted = matches!(
                error,
                TableError::NotBinfmtMisc { .. } | TableError::OpenMount { .. }
            );
            let finding = Finding::for_unopened_table(error, mount, facts);
            report.find(&finding);
            if not_mounted && mount == Path::new(DEFAULT_MOUNT) {
                match BinfmtMisc::mount(mount) {
                    Ok(table) => {
                        self_mounted = Some(mount.to_owned());
                        Some(table)
                    }
                    Err(error) => {
                        log::info!("cannot mount binfmt_misc to look inside: {}", Chain(&error));
                        None
                    }
                }
            } else {
                None
            }
        }
    };

    let survey = match &table {
        Some(table) => match Survey::read(Some(table)) {
            Ok(survey) => Some(survey),
            Err(error) => {
                report.find(&Finding::Unreadable {
                    error: Shared::new(error),
                });
                None
            }
        },
        None => None,
    };

    if let (Some(_), Some(survey)) = (&self_mounted, &survey) {
        report.find(&Finding::SelfMounted {
            entries: survey.entries.len(),
        });
    }

    if let Some(table) = &table {
        check_permission(table, report);
        match table.is_enabled() {
            Ok(true) => report.pass("binfmt_misc is enabled".to_owned()),
            Ok(false) => report.find(&Finding::GloballyDisabled),
            Err(error) => log::warn!("{}", Chain(&error)),
        }
    }

    let mut survey = survey.unwrap_or_else(Survey::without_table);
    survey.probe(prober, &Arch::ALL);
    match (&survey.probe_error, survey.confinement) {
        (Some(reason), _) => report.find(&Finding::CannotProbe {
            reason: reason.clone(),
        }),
        (None, Some(Confinement::EmptyRoot)) => {
            report.pass("probes ran in an empty root, where only entries with F work".to_owned())
        }
        (None, _) => report.pass(
            "probes ran in place (not root: no chroot), which cannot tell entries with F from \
             entries without"
                .to_owned(),
        ),
    }
    check_entries(&survey, report);
    check_arches(&survey, report);
    if survey.probe_error.is_none() {
        report.supported = status::status(&survey).supported;
        report.handlers = status::handlers(&survey);
    }

    if let (Some(path), Some(table)) = (self_mounted, table)
        && let Err(error) = table.unmount()
    {
        log::warn!("cannot unmount {}: {error}", path.display());
    }
}

/// May this process change the table? `access(2)` on `register` with the effective
/// ids (`faccessat(AT_EACCESS)`): EROFS for a read-only mount, EACCES without root.
fn check_permission(table: &BinfmtMisc, report: &mut DoctorReport) {
    use rustix::fs::{Access, AtFlags, CWD};
    let register = table.path().join("register");
    match rustix::fs::accessat(CWD, &register, Access::WRITE_OK, AtFlags::EACCESS) {
        Ok(()) => report.pass("this process may register entries".to_owned()),
        Err(rustix::io::Errno::ROFS) => report.find(&Finding::ReadOnly),
        Err(errno) => report.find(&Finding::NotPrivileged { register, errno }),
    }
}

/// Per-entry findings: disabled, the host's architecture, no F.
fn check_entries(survey: &Survey, report: &mut DoctorReport) {
    for entry in &survey.entries {
        let arch = Arch::ALL.into_iter().find(|arch| claims(entry, *arch));
        let this = || vec![EntryRef::from(entry)];
        // Entries for other kinds of files (binfmt-support's jar or python entries,
        // WSLInterop) are someone else's business, unless plainly broken (stale).
        if let Some(arch) = arch
            && let Some(emulator) = Emulator::for_arch(arch)
            && survey.runner(arch) == Some(entry)
            && !is_memfd_path(entry.interpreter())
            && entry.interpreter().file_name()
                != Some(interpreter_files::file_name(&emulator).as_ref())
        {
            report.find(&Finding::ForeignEmulator {
                arch,
                entries: this(),
            });
        }
        if let Some(arch) = arch
            && !entry.enabled
        {
            report.find(&Finding::EntryDisabled {
                arch,
                entries: this(),
            });
        }
        for native in Arch::native()
            .iter()
            .filter(|native| claims(entry, **native))
        {
            report.find(&Finding::HostArchEntry {
                arch: *native,
                entries: this(),
            });
        }
        if !entry.registration.flags.fix_binary {
            if !host::exists_here(entry.interpreter()) {
                report.find(&Finding::StaleEntry {
                    arch,
                    entries: this(),
                });
            } else if let Some(arch) = arch {
                report.find(&Finding::NoFixBinary {
                    arch,
                    entries: this(),
                });
            }
        }
    }
}

/// Per-architecture findings: duplicates, shadowed handlers and failing probes.
fn check_arches(survey: &Survey, report: &mut DoctorReport) {
    for state in &survey.arches {
        let arch = state.arch;
        let enabled = state.enabled_claims();
        let binfmts: Vec<&Entry> = enabled
            .iter()
            .copied()
            .filter(|entry| is_binfmts_entry(entry))
            .collect();
        if binfmts.len() > 1 {
            report.find(&Finding::DuplicateArch {
                arch,
                names: binfmts
                    .iter()
                    .map(|e| e.registration.name.clone())
                    .collect(),
            });
        }
        if let [runner, passed_over @ ..] = enabled.as_slice()
            && !passed_over.is_empty()
            && enabled.iter().any(|entry| !is_binfmts_entry(entry))
        {
            report.find(&Finding::Shadowed {
                arch,
                runner: EntryRef::from(*runner),
                passed_over: passed_over.iter().map(|e| EntryRef::from(*e)).collect(),
            });
        }
        let serving = survey.serving_claims(arch);
        // The host's architectures are covered by host-arch-entry, entries without F by
        // stale-entry and no-fix-binary: their probes fail for the reason given there.
        if arch.is_native() || serving.is_empty() {
            continue;
        }
        if !serving.iter().any(|e| e.registration.flags.fix_binary) {
            continue;
        }
        if let Some(failure) = state.failure() {
            report.find(&Finding::ProbeFailed {
                arch,
                entries: serving
                    .iter()
                    .map(|e: &&Entry| EntryRef::from(*e))
                    .collect(),
                failure: failure.clone(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    /// A fake kernel tree: simulated, because a test cannot give this machine another
    /// kernel (one without binfmt_misc, or older than 4.8).
    fn fake_paths(
        name: &str,
        filesystems: &str,
        release: &str,
        modules_dep: Option<&str>,
    ) -> HostPaths {
        let root =
            std::env::temp_dir().join(format!("binfmt-doctor-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let proc = root.join("proc");
        fs::create_dir_all(proc.join("sys/kernel")).unwrap();
        fs::create_dir_all(proc.join("self")).unwrap();
        fs::write(proc.join("filesystems"), filesystems).unwrap();
        fs::write(proc.join("sys/kernel/osrelease"), format!("{release}\n")).unwrap();
        fs::write(
            proc.join("self/mountinfo"),
            "36 25 0:33 / /proc/sys/fs/binfmt\\040misc rw,nosuid - binfmt_misc binfmt_misc rw\n\
             22 1 8:1 / / rw - ext4 /dev/sda1 rw\n",
        )
        .unwrap();
        let modules = root.join("modules");
        if let Some(dep) = modules_dep {
            fs::create_dir_all(modules.join(release)).unwrap();
            fs::write(modules.join(release).join("modules.dep"), dep).unwrap();
        }
        HostPaths { proc, modules }
    }

    const WITH: &str = "nodev\tsysfs\nnodev\tproc\nnodev\tbinfmt_misc\n\text4\n";
    const WITHOUT: &str = "nodev\tsysfs\nnodev\tproc\n\text4\n";

    fn empty_report() -> DoctorReport {
        DoctorReport::new(Path::new(DEFAULT_MOUNT))
    }

    #[test]
    fn reads_the_kernel_facts() {
        let paths = fake_paths("facts", WITH, "6.18.44-fc-v657", None);
        let facts = HostFacts::read_from(&paths);
        assert_eq!(facts.has_binfmt_misc(), Some(true));
        assert_eq!(facts.kernel_version(), Some((6, 18)));
        assert_eq!(facts.binfmt_misc_module, BinfmtMiscModule::Unknown);
        assert_eq!(
            facts.binfmt_misc_mounts(),
            [PathBuf::from("/proc/sys/fs/binfmt misc")]
        );
        let mut report = empty_report();
        assert!(check_kernel(&facts, &mut report));
        assert!(report.findings.is_empty(), "{report:?}");
    }

    /// Simulated: a kernel with binfmt_misc as a module nobody loaded.
    #[test]
    fn a_module_that_is_not_loaded_is_told_from_a_missing_one() {
        let dep = "kernel/fs/binfmt_misc.ko.zst:\nkernel/fs/other.ko:\n";
        let paths = fake_paths("module", WITHOUT, "6.1.0-28-amd64", Some(dep));
        let mut report = empty_report();
        assert!(!check_kernel(&HostFacts::read_from(&paths), &mut report));
        assert_eq!(report.findings[0].id, "binfmt-misc-not-loaded");
        assert!(report.findings[0].fix.starts_with("modprobe binfmt_misc"));

        let paths = fake_paths(
            "nomodule",
            WITHOUT,
            "6.1.0-28-amd64",
            Some("kernel/fs/other.ko:\n"),
        );
        let mut report = empty_report();
        assert!(!check_kernel(&HostFacts::read_from(&paths), &mut report));
        assert_eq!(report.findings[0].id, "binfmt-misc-missing");
        assert!(report.findings[0].fix.contains("CONFIG_BINFMT_MISC"));
    }

    /// Simulated: a kernel older than 4.8.
    #[test]
    fn a_kernel_without_flag_f_is_found() {
        let paths = fake_paths("old", WITH, "4.4.0-210-generic", None);
        let mut report = empty_report();
        assert!(check_kernel(&HostFacts::read_from(&paths), &mut report));
        assert_eq!(report.findings.len(), 1, "{report:?}");
        assert_eq!(report.findings[0].id, "kernel-too-old-for-f");
        assert!(report.findings[0].problem.contains("4.4.0-210-generic"));
        let paths = fake_paths("new", WITH, "4.8.0", None);
        let mut report = empty_report();
        check_kernel(&HostFacts::read_from(&paths), &mut report);
        assert!(report.findings.is_empty(), "{report:?}");
    }
}
