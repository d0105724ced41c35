//! One validated run of the table, as the top-level options (`binfmt [--uninstall
//! LIST] [--install LIST]`) and `binfmt apply` ask for it: what to remove, then what to
//! register, in which mount, then the status ([`execute`]), returned for the command
//! to print ([`Executed`]).
//!
//! Everything in a [`Request`] was validated before it was made (see
//! [`Install::new`]); carrying one out checks the files of the emulators chosen for
//! some architectures first ([`crate::chosen`]), and then makes the first write.
//! Which architectures an install registers, where other tools' entries run some, is
//! [`crate::handlers`]' decision, taken from a survey of the table.

use std::path::{Path, PathBuf};
use std::time::Duration;

use binfmt_misc::persist::{self, Placement};
use binfmt_misc::report::Chain;
use binfmt_misc::{BinfmtMisc, DEFAULT_MOUNT, Table};
use interpreter_files::{InterpreterDir, Keep, Removed};
use qemu_catalog::{Arch, Selection};

use crate::chosen::CheckedEmulator;
use crate::findings::Finding;
use crate::handlers::{self, ArchAction};
use crate::install::Install;
use crate::outcome::{CommandError, Message};
use crate::probe::SystemProber;
use crate::register::{self, ArchError, InstallOutcome, Item, Source};
use crate::status;
use crate::survey::Survey;
use crate::targets::Target;
use crate::uninstall::{self, Uninstalled};
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

/// What a run did, for the command to print (`crate::commands::lines`).
#[derive(Debug)]
pub struct Executed {
    /// What the uninstall removed, when one was asked for.
    pub uninstalled: Option<Uninstalled>,
    /// What the install registered, when one was asked for.
    pub installed: Option<Installed>,
    /// The emulator files no entry uses that were removed, and which were kept.
    pub unused_removed: Option<(Vec<Removed>, Keep)>,
    /// The table afterwards, when there is something to say about it: always with
    /// [`Verbosity::Everything`], else after a change.
    pub status: Option<TableStatus>,
    /// Whether everything asked for was done.
    pub complete: bool,
    /// The failure that stopped the run, after what is above was done.
    pub failure: Option<CommandError>,
}

/// What an install did, per architecture.
#[derive(Debug)]
pub struct Installed {
    /// Architectures left to another tool's entry or to the CPU, with the part of
    /// their line after `installing: <arch> `.
    pub skipped: Vec<(Arch, String)>,
    /// The architectures registered, in order.
    pub registered: Vec<RegisteredArch>,
    /// Why the interpreter directory could not be used at all, when it could not
    /// (each architecture that needed a file there points at it).
    pub directory_failure: Option<ArchError>,
}

impl Installed {
    /// How many architectures were not registered.
    pub fn failed(&self) -> usize {
        self.registered
            .iter()
            .filter(|registered| !registered.outcome.is_ok())
            .count()
    }
}

/// One architecture an install registered.
#[derive(Debug)]
pub struct RegisteredArch {
    /// The architecture.
    pub arch: Arch,
    /// What happened to it.
    pub outcome: InstallOutcome,
    /// The emulator chosen for it instead of binfmt's, when one was.
    pub chosen: Option<PathBuf>,
    /// Which other tool's entry it now runs in front of, when it does.
    pub shadows: Option<String>,
}

/// The table after a run: the status JSON, and which entry runs each platform.
#[derive(Debug)]
pub struct TableStatus {
    /// The document for stdout.
    pub status: status::Status,
    /// The entry that runs each emulated platform.
    pub handlers: Vec<status::Handler>,
}

/// Carries out a request on the table: uninstall, install, then the status. A failure
/// stops the run, and is returned with what was done before it.
pub fn execute(request: &Request, verbosity: Verbosity) -> Executed {
    let mut executed = Executed {
        uninstalled: None,
        installed: None,
        unused_removed: None,
        status: None,
        complete: true,
        failure: None,
    };
    if let Err(failure) = carry_out(request, verbosity, &mut executed) {
        executed.failure = Some(failure);
    }
    executed
}

/// [`execute`]'s steps, each recording in `executed` what it did.
fn carry_out(
    request: &Request,
    verbosity: Verbosity,
    executed: &mut Executed,
) -> Result<(), CommandError> {
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
        Some(table.lock(request.lock_timeout)?)
    } else {
        None
    };
    let mut changed = verbosity == Verbosity::Everything;
    if let Some(targets) = &request.uninstall {
        let uninstalled = uninstall::uninstall(&table, targets)?;
        executed.complete &= uninstalled.failed() == 0;
        changed = true;
        executed.uninstalled = Some(uninstalled);
        // An install that follows uses (or rewrites) the current pins' files: it
        // removes only what a re-pin superseded, below.
        if request.install.is_none() {
            executed.unused_removed =
                unused_removed(&table, &request.interpreter_dir, Keep::Nothing);
        }
    }
    if let Some(wanted) = &request.install {
        let installed = install_wanted(&table, wanted, chosen)?;
        executed.complete &= installed.failed() == 0;
        changed |= installed.directory_failure.is_some()
            || installed
                .registered
                .iter()
                .any(|registered| !matches!(registered.outcome, InstallOutcome::Unchanged));
        executed.installed = Some(installed);
        if !wanted.options.in_memory {
            executed.unused_removed =
                unused_removed(&table, &wanted.options.interpreter_dir, Keep::Pins);
        }
    }
    changed |= executed.unused_removed.is_some();

    if changed {
        let survey = Survey::take_remembering(&table, &SystemProber, &request.interpreter_dir)?;
        executed.status = Some(TableStatus {
            status: status::status(&survey),
            handlers: status::handlers(&survey),
        });
    }
    Ok(())
}

/// Checks every chosen emulator's file and runs its probe through it.
fn check_chosen(install: &Install) -> Result<Vec<CheckedEmulator>, CommandError> {
    install
        .chosen
        .iter()
        .map(|chosen| chosen.check().map_err(CommandError::from))
        .collect()
}

/// Registers what `wanted` asks for, leaving each architecture that another tool's
/// working entry runs to it (see [`crate::handlers`]).
fn install_wanted(
    table: &BinfmtMisc,
    wanted: &Install,
    chosen: Vec<CheckedEmulator>,
) -> Result<Installed, CommandError> {
    let arches = wanted.arches();
    let skip_native = wanted.selection == Selection::All;
    let mut survey = Survey::read(Some(table))?;
    let probe = handlers::to_probe(&survey, &arches, skip_native, &Arch::may_be_native);
    survey.probe(&SystemProber, &probe);
    let actions = handlers::decide(&survey, &arches, wanted.options.take_over, skip_native);

    let mut skipped = Vec::new();
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
            other => {
                if let Some(line) = other.skipped_line() {
                    skipped.push((*arch, line));
                }
            }
        }
    }
    let done = register::register(table, &items, &wanted.options);
    let registered = done
        .outcomes
        .into_iter()
        .zip(&items)
        .map(|((arch, outcome), item)| {
            let chosen = match &item.source {
                Source::Chosen(chosen) => Some(chosen.file.path.clone()),
                Source::Embedded(_) => None,
            };
            let shadows = actions.iter().find_map(|(a, action)| match action {
                ArchAction::Register(registering) if *a == arch => registering.shadows_note(arch),
                _ => None,
            });
            RegisteredArch {
                arch,
                outcome,
                chosen,
                shadows,
            }
        })
        .collect();
    Ok(Installed {
        skipped,
        registered,
        directory_failure: done.directory_failure,
    })
}

/// Removes the emulator files no entry uses ([`unused_emulators::remove_unused`]);
/// `None` when none went.
fn unused_removed(
    table: &impl Table,
    dir: &InterpreterDir,
    keep: Keep,
) -> Option<(Vec<Removed>, Keep)> {
    let removed = unused_emulators::remove_unused(table, dir, keep);
    (!removed.is_empty()).then_some((removed, keep))
}

/// Refuses an interpreter directory others could write to (they would choose what the
/// kernel runs), while nothing has changed yet; it is checked again, through open
/// descriptors, when files are written. `what` names the option or key.
pub fn check_interpreter_dir(dir: &InterpreterDir, what: &str) -> Result<(), CommandError> {
    match dir.check_dir() {
        Ok(()) => Ok(()),
        Err(error @ interpreter_files::Error::Unsafe(_)) => Err(CommandError::usage(what, error)),
        Err(error) => {
            log::debug!(
                "not checking the interpreter directory now: {}",
                Chain(&error)
            );
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
                log::warn!("{}", Chain(&error));
            }
            let fix = Finding::SelfMounted { entries: 0 }.fix(mount).text(mount);
            return Err(Message::new(format!("{placement}; nothing was registered"))
                .fix(fix)
                .into());
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
