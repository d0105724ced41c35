//! One validated run of the table, as the top-level options (`binfmt [--uninstall
//! LIST] [--install LIST]`) and `binfmt apply` ask for it: what to remove, then what to
//! register, in which mount, then the status JSON ([`execute`]).
//!
//! Everything in a [`Request`] was validated before it was made (see
//! [`Install::new`]): carrying one out is the first write.

use std::path::{Path, PathBuf};
use std::time::Duration;

use binfmt_misc::persist::{self, Placement};
use binfmt_misc::{BinfmtMisc, DEFAULT_MOUNT};
use interpreter_files::InterpreterDir;
use qemu_catalog::Selection;

use crate::empty_root::SystemProber;
use crate::findings::Finding;
use crate::install::{self, Install};
use crate::outcome::{CommandError, Completion, print_stdout};
use crate::status;
use crate::survey::Survey;
use crate::uninstall;

/// One validated run: what to remove, then what to register, in which mount.
#[derive(Debug)]
pub struct Request {
    /// The binfmt_misc mount.
    pub mount: PathBuf,
    /// Entries to remove first.
    pub uninstall: Option<Vec<uninstall::Target>>,
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
    }
    if let Some(wanted) = &request.install {
        let emulators = if wanted.selection == Selection::All {
            install::skip_native(&table, wanted.emulators.clone(), &SystemProber)?
        } else {
            wanted.emulators.clone()
        };
        let outcomes = install::install(&table, &emulators, &wanted.options);
        for (arch, outcome) in &outcomes {
            if verbosity == Verbosity::Everything
                || !matches!(outcome, install::InstallOutcome::Unchanged)
            {
                eprintln!("installing: {arch} {outcome}");
                changed = true;
            }
        }
        let failed = outcomes
            .iter()
            .filter(|(_, outcome)| !outcome.is_ok())
            .count();
        if failed > 0 {
            eprintln!(
                "binfmt: {failed} of {} architectures are not registered; the lines above \
                 give each cause",
                outcomes.len()
            );
            complete = false;
        }
        if !wanted.options.in_memory {
            let removed = install::remove_unused(&table, &wanted.options);
            if !removed.is_empty() {
                eprintln!("{}", install::removed_line(&removed));
                changed = true;
            }
        }
    }

    if changed {
        let survey = Survey::take_remembering(&table, &SystemProber, &request.interpreter_dir)?;
        let status = status::status(&survey);
        print_stdout(&status::render(&status))?;
    }
    Ok(Completion::of(complete))
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
