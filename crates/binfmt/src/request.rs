//! One validated run of the table, as the top-level options (`binfmt [--uninstall
//! LIST] [--install LIST]`) and `binfmt apply` ask for it: what to remove, then what to
//! register, in which mount, then the status JSON ([`execute`]).
//!
//! Everything in a [`Request`] was validated before it was made (see
//! [`Install::new`]); carrying one out checks the files of the emulators chosen for
//! some architectures first ([`crate::chosen`]), and then makes the first write.
//! Which architectures an install registers, where other tools' entries run some, is
//! [`crate::handlers`]' decision, taken from a survey of the table.

use std::path::{Path, PathBuf};
use std::time::Duration;

use binfmt_misc::persist::{self, Placement};
use binfmt_misc::{BinfmtMisc, DEFAULT_MOUNT, Table};
use interpreter_files::{InterpreterDir, Keep};
use qemu_catalog::{Arch, Selection};

use crate::chosen::CheckedEmulator;
use crate::empty_root::SystemProber;
use crate::findings::Finding;
use crate::handlers::{self, ArchAction};
use crate::install::Install;
use crate::outcome::{CommandError, Completion, print_stdout};
use crate::register::{self, InstallOutcome, Item, Source};
use crate::status;
use crate::survey::Survey;
use crate::targets::Target;
use crate::uninstall;
use crate::unused_emulators;

/// One validated run: what to remove, then what to register, in which mount.
#[derive(Debug)]
pub struct Request {
    /// The binfmt_misc mount.
    pub mount: PathBuf,
    /// Entries to remove first.
    pub uninstall: Option<Vec<Target>>,
    /// What to register, and how.
    pub install: Option<Install>,
    /// Where interpreter files are, and the proofs of earlier runs (see
    /// `crate::proof_record`).
    pub interpreter_dir: InterpreterDir,
    /// How long to wait for another run's lock on the table.
    pub lock_timeout: Duration,
}

/// How much a run prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verbosity {
    /// A line per architecture and the status JSON, as tonistiigi/binfmt prints them.
    Everything,
    /// Only what changed (for `apply --watch` rounds after the first): lines for
    /// architectures that were not already in place, and the status after them.
    Changes,
}

/// Carries out a request on the table: uninstall, install, print the status.
pub fn execute(request: &Request, verbosity: Verbosity) -> Result<Completion, CommandError> {
    // Before anything is mounted or written: a chosen emulator that is refused
    // changes nothing.
    let chosen = match &request.install {
        Some(install) => check_chosen(install)?,
        None => Vec::new(),
    };
    let table = open_table(&request.mount, request.install.is_some())?;
    // One binfmt at a time changes this table (a second `--install all` waits, then
    // finds everything in place); a status-only run reads without waiting.
    let _lock = if request.install.is_some() || request.uninstall.is_some() {
        Some(table.lock(request.lock_timeout).map_err(|error| {
            match Finding::for_table_error(&error) {
                Some(finding) => CommandError::Runtime(finding.as_failure(&request.mount)),
                None => error.into(),
            }
        })?)
    } else {
        None
    };
    let mut complete = true;
    let mut changed = verbosity == Verbosity::Everything;
    if let Some(targets) = &request.uninstall {
        complete &= uninstall::uninstall(&table, targets)? == 0;
        // An install that follows uses (or rewrites) the current pins' files: it
        // removes only what a re-pin superseded, below.
        if request.install.is_none() {
            changed |= report_unused(&table, &request.interpreter_dir, Keep::Nothing);
        }
    }
    if let Some(wanted) = &request.install {
        let (complete_install, changed_install) = install(&table, wanted, chosen, verbosity)?;
        complete &= complete_install;
        changed |= changed_install;
    }

    if changed {
        let survey = Survey::take_remembering(&table, &SystemProber, &request.interpreter_dir)?;
        // With nothing to install or remove, the status is all there is to say: which
        // entry runs each emulated platform goes to stderr too, for a person (stdout
        // is the document scripts parse).
        if request.install.is_none() && request.uninstall.is_none() {
            for handler in status::handlers(&survey) {
                eprintln!("status: {}", status::handler_line(&handler));
            }
        }
        let status = status::status(&survey);
        print_stdout(&status::render(&status))?;
    }
    Ok(Completion::of(complete))
}

/// Checks every chosen emulator's file and runs its probe through it.
fn check_chosen(install: &Install) -> Result<Vec<CheckedEmulator>, CommandError> {
    install
        .chosen
        .iter()
        .map(|chosen| {
            chosen
                .check()
                .map_err(|failure| CommandError::Runtime(failure.to_string()))
        })
        .collect()
}

/// Registers what `wanted` asks for, leaving each architecture that another tool's
/// working entry runs to it (see [`crate::handlers`]), printing a line per
/// architecture; returns whether everything was registered and whether anything was
/// printed.
fn install(
    table: &BinfmtMisc,
    wanted: &Install,
    chosen: Vec<CheckedEmulator>,
    verbosity: Verbosity,
) -> Result<(bool, bool), CommandError> {
    let arches = wanted.arches();
    let skip_native = wanted.selection == Selection::All;
    let mut survey = Survey::read(Some(table))?;
    let probe = handlers::to_probe(&survey, &arches, skip_native, &Arch::may_be_native);
    survey.probe(&SystemProber, &probe);
    let actions = handlers::decide(&survey, &arches, wanted.options.take_over, skip_native);

    let mut changed = false;
    let mut items = Vec::new();
    for (arch, action) in &actions {
        match action {
            ArchAction::Register(registering) => {
                let source = match chosen.iter().find(|c| c.arch == *arch) {
                    Some(chosen) => Source::Chosen(chosen.clone()),
                    None => match wanted.emulators.iter().find(|e| e.arch() == *arch) {
                        Some(emulator) => Source::Embedded(*emulator),
                        None => continue,
                    },
                };
                items.push(Item {
                    arch: *arch,
                    source,
                    to_front: registering.to_front,
                });
            }
            skipped => {
                if verbosity == Verbosity::Everything
                    && let Some(line) = skipped.skipped_line()
                {
                    eprintln!("installing: {arch} {line}");
                    changed = true;
                }
            }
        }
    }
    let installed = register::register(table, &items, &wanted.options);
    let outcomes = installed.outcomes;
    for ((arch, outcome), item) in outcomes.iter().zip(&items) {
        if verbosity == Verbosity::Everything || !matches!(outcome, InstallOutcome::Unchanged) {
            let mut line = format!("installing: {arch} {outcome}");
            if outcome.is_ok() {
                if let Source::Chosen(chosen) = &item.source {
                    line.push_str(&format!(
                        "; with the emulator chosen for it, {}",
                        chosen.file.path.display()
                    ));
                }
                let registering = actions.iter().find_map(|(a, action)| match action {
                    ArchAction::Register(registering) if a == arch => Some(registering),
                    _ => None,
                });
                if let Some(note) = registering.and_then(|r| r.shadows_note(*arch)) {
                    line.push_str("; ");
                    line.push_str(&note);
                }
            }
            eprintln!("{line}");
            changed = true;
        }
    }
    if let Some(failure) = &installed.directory_failure {
        eprintln!("binfmt: {failure}");
        changed = true;
    }
    let failed = outcomes
        .iter()
        .filter(|(_, outcome)| !outcome.is_ok())
        .count();
    if failed > 0 {
        eprintln!(
            "binfmt: {failed} of {} architectures are not registered; the lines above give \
             each cause",
            outcomes.len()
        );
    }
    if !wanted.options.in_memory {
        changed |= report_unused(table, &wanted.options.interpreter_dir, Keep::Pins);
    }
    Ok((failed == 0, changed))
}

/// Removes the emulator files no entry uses ([`unused_emulators::remove_unused`]) and prints
/// what went; returns whether anything did.
fn report_unused(table: &impl Table, dir: &InterpreterDir, keep: Keep) -> bool {
    let removed = unused_emulators::remove_unused(table, dir, keep);
    if !removed.is_empty() {
        eprintln!("{}", unused_emulators::removed_line(&removed, keep));
    }
    !removed.is_empty()
}

/// Refuses an interpreter directory others could write to (they would choose what the
/// kernel runs), while nothing has changed yet; it is checked again, through open
/// descriptors, when files are written. `what` names the option or key.
pub fn check_interpreter_dir(dir: &InterpreterDir, what: &str) -> Result<(), CommandError> {
    match dir.check_dir() {
        Ok(()) => Ok(()),
        Err(error @ interpreter_files::Error::Unsafe(_)) => {
            Err(CommandError::Usage(format!("{what}: {error}")))
        }
        Err(error) => {
            log::debug!("not checking the interpreter directory now: {error}");
            Ok(())
        }
    }
}

/// Opens the binfmt_misc table.
///
/// At the default place a container finds nothing mounted and has to mount
/// binfmt_misc itself; `binfmt_misc::persist` works out whether registrations made
/// through that mount outlive the container. When they would not, registering is
/// refused with the fix rather than reported done (reading the status is still true:
/// the host then has no entries).
fn open_table(mount: &Path, registering: bool) -> Result<BinfmtMisc, CommandError> {
    if mount != Path::new(DEFAULT_MOUNT) {
        return Ok(BinfmtMisc::open(mount)?);
    }
    let (table, placement) = persist::open_or_mount(mount)?;
    match &placement {
        Placement::AlreadyMounted => {}
        Placement::Private { .. } if registering => {
            // Leave nothing behind; the instance dies with this mount anyway.
            if let Err(error) = persist::unmount(table) {
                log::warn!("{error}");
            }
            let fix = Finding::SelfMounted { entries: 0 }.fix(mount).text(mount);
            return Err(CommandError::Runtime(format!(
                "{placement}. Nothing was registered. Fix: {fix}"
            )));
        }
        Placement::Private { .. }
        | Placement::Pid1Namespace {
            pid1_is_machine_init: false,
        } => log::warn!("{placement}"),
        Placement::SharedInstance
        | Placement::HostNamespace
        | Placement::Pid1Namespace {
            pid1_is_machine_init: true,
        } => log::info!("{placement}"),
    }
    Ok(table)
}
