//! Registering the architectures of an install, idempotently: [`register`] gets the
//! [`Item`]s (which architectures, with which emulator) and says what happened to
//! each ([`InstallOutcome`], the part after `installing: <arch> ` in tonistiigi's
//! log line).
//!
//! For each architecture: compare the entry we want with the one the table holds,
//! make sure the interpreter file is the pinned emulator ([`crate::emulator_files`]),
//! apply the smallest change, and read the entry back to confirm it
//! ([`binfmt_misc::converge`]). An identical entry is left alone (nothing is
//! written), a different one is replaced and the difference reported.

use std::fmt;
use std::path::{Path, PathBuf};

use binfmt_misc::report::{Chain, Fixable, Report};
use binfmt_misc::{Change, Entry, Error as TableError, Registration, Table};
use interpreter_files::{self as files, FileState, Interpreter, is_memfd_path};
use qemu_catalog::{Arch, Emulator};

use rustix::io::Errno;

use crate::chosen::CheckedEmulator;
use crate::emulator_files::{emulator_files, no_space};
use crate::findings::{Diagnosis, Finding};
use crate::install::{Options, wanted, wanted_chosen};
use crate::outcome::Shared;

/// One architecture to register, with what.
#[derive(Clone, Debug)]
pub struct Item {
    /// The architecture.
    pub arch: Arch,
    /// The emulator that is to run it.
    pub source: Source,
    /// Another tool's entry is matched before binfmt's today: register binfmt's
    /// again, even where it is right, so that it comes first.
    pub to_front: bool,
}

/// The emulator an [`Item`] registers.
#[derive(Clone, Debug)]
pub enum Source {
    /// The one binfmt carries.
    Embedded(Emulator),
    /// The one the user chose, checked.
    Chosen(CheckedEmulator),
}

impl Item {
    /// binfmt's own emulator for its architecture, registered the usual way.
    pub fn embedded(emulator: Emulator) -> Item {
        Item {
            arch: emulator.arch(),
            source: Source::Embedded(emulator),
            to_front: false,
        }
    }
}

/// What happened to one architecture.
#[derive(Debug)]
pub enum InstallOutcome {
    /// No entry existed; one was registered.
    Registered,
    /// The entry was already exactly right; nothing was written.
    Unchanged,
    /// The entry was right but disabled; it was enabled.
    Enabled,
    /// The entry differed and was replaced; the reasons say how.
    Replaced(Vec<String>),
    /// The entry was right but its interpreter file (used at exec time, no flag F)
    /// was missing; the file was written.
    FileRestored,
    /// Something was wrong besides the entry (an interpreter file that did not match
    /// its pin, a staging entry a killed run left) and was put right; the entry is
    /// right. The notes say what was done.
    Repaired(Vec<String>),
    /// It could not be registered.
    Failed(ArchError),
}

impl InstallOutcome {
    /// Whether the architecture ended up registered.
    pub fn is_ok(&self) -> bool {
        !matches!(self, InstallOutcome::Failed(_))
    }
}

impl fmt::Display for InstallOutcome {
    /// The part after `installing: <arch> ` in tonistiigi/binfmt's log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InstallOutcome::Registered => f.write_str("OK"),
            InstallOutcome::Unchanged => f.write_str("OK (already registered)"),
            InstallOutcome::Enabled => f.write_str("OK (entry was disabled; enabled)"),
            InstallOutcome::Replaced(reasons) => write!(f, "OK (replaced: {})", reasons.join(", ")),
            InstallOutcome::FileRestored => f.write_str("OK (interpreter file restored)"),
            InstallOutcome::Repaired(notes) => write!(f, "OK (repaired: {})", notes.join(", ")),
            InstallOutcome::Failed(error) => write!(f, "FAILED: {}", Report(error)),
        }
    }
}

/// Installs each item; a failure does not stop the rest.
///
/// Three steps, so that the expensive middle one runs on every core: read each entry
/// and decide whether its interpreter file is needed; check those files and write the
/// missing, tampered or unsafe ones, all at once ([`emulator_files`],
/// falling back to memfds where the directory cannot hold them); then register what
/// differs, one entry after another. A chosen emulator needs no file written: its
/// entry is settled in the first step.
pub fn register(table: &impl Table, items: &[Item], options: &Options) -> Registered {
    // A run killed while writing an emulator left a temporary file as big as one;
    // remove it even if no entry needs a file this time. (In memory, the directory
    // is not ours to touch.)
    if !options.in_memory
        && let Err(error) = options.interpreter_dir.remove_leftovers()
    {
        log::debug!("not removing leftover temporary files: {}", Chain(&error));
    }
    let prepared: Vec<Result<Prepared, ArchError>> = items
        .iter()
        .map(|item| prepare(table, item, options))
        .collect();
    let needing_files: Vec<Emulator> = items
        .iter()
        .zip(&prepared)
        .filter_map(|(item, prepared)| match (&item.source, prepared) {
            (Source::Embedded(emulator), Ok(Prepared::NeedsFile { .. })) => Some(*emulator),
            _ => None,
        })
        .collect();
    let (files, directory_failure) = match emulator_files(&needing_files, options) {
        Ok(files) => (files, None),
        Err(error) => {
            let no_space = no_space(&needing_files, options);
            (Vec::new(), Some(diagnose(error, &no_space, table.path())))
        }
    };
    let full: Vec<Emulator> = needing_files
        .iter()
        .zip(&files)
        .filter(|(_, file)| matches!(file, Err(error) if error.errno() == Some(Errno::NOSPC)))
        .map(|(emulator, _)| *emulator)
        .collect();
    let no_space = no_space(&full, options);
    let mut files = files.into_iter();
    let outcomes = items
        .iter()
        .zip(prepared)
        .map(|(item, prepared)| {
            let outcome = match prepared {
                Ok(Prepared::Done(outcome)) => Ok(outcome),
                Ok(Prepared::NeedsFile { .. }) if directory_failure.is_some() => {
                    Err(ArchError::Directory {
                        dir: options.interpreter_dir.dir().to_owned(),
                    })
                }
                Ok(Prepared::NeedsFile { wanted, current }) => match files.next() {
                    Some(file) => {
                        let file = file.map_err(|error| diagnose(error, &no_space, table.path()));
                        finish(table, wanted, current.as_ref(), file, item.to_front)
                    }
                    None => Err(ArchError::Internal("no interpreter file was prepared")),
                },
                Err(failure) => Err(failure),
            }
            .and_then(|outcome| remove_staging(table, item.arch, outcome))
            .unwrap_or_else(InstallOutcome::Failed);
            (item.arch, outcome)
        })
        .collect();
    Registered {
        outcomes,
        directory_failure,
    }
}

/// What [`register`] did.
#[derive(Debug)]
pub struct Registered {
    /// What happened to each architecture, in order.
    pub outcomes: Vec<(Arch, InstallOutcome)>,
    /// Why the interpreter directory could not be used at all, when it could not:
    /// said once here, each architecture that needed a file there fails naming it
    /// ([`ArchError::Directory`]).
    pub directory_failure: Option<ArchError>,
}

/// An interpreter file's error, as the finding that says how to fix it where binfmt
/// words one (a full disk: `no_space`, a directory this process may not write, a busy
/// lock); else as it is.
fn diagnose(error: files::Error, no_space: &Option<Finding>, mount: &Path) -> ArchError {
    let finding = match (&error, error.errno()) {
        (_, Some(Errno::NOSPC)) => match no_space {
            Some(finding) => finding.clone(),
            None => return ArchError::File(error),
        },
        (files::Error::LockBusy(busy), _) => Finding::LockBusy(busy.clone()),
        (_, Some(Errno::ACCESS | Errno::PERM)) => Finding::DirDenied {
            error: Shared::new(error),
        },
        _ => return ArchError::File(error),
    };
    ArchError::Diagnosed(Diagnosis {
        finding,
        mount: mount.to_owned(),
    })
}

/// Why one architecture was not registered.
#[derive(Debug)]
pub enum ArchError {
    /// The kernel layer failed: it refused the registration, the entry could not be
    /// read, another process changed it.
    Table(TableError),
    /// Its emulator file could not be had.
    File(files::Error),
    /// A failure binfmt diagnoses itself, with its fix (`crate::findings`): a full
    /// disk, a directory this process may not write, a busy lock.
    Diagnosed(Diagnosis),
    /// The interpreter directory could not be used at all
    /// ([`Registered::directory_failure`] says why).
    Directory { dir: PathBuf },
    /// A bug in binfmt.
    Internal(&'static str),
}

impl fmt::Display for ArchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArchError::Table(error) => error.fmt(f),
            ArchError::File(error) => error.fmt(f),
            ArchError::Diagnosed(diagnosis) => diagnosis.fmt(f),
            ArchError::Directory { dir } => write!(
                f,
                "its emulator file was not written: the interpreter directory {} cannot be \
                 used (see below)",
                dir.display()
            ),
            ArchError::Internal(what) => write!(f, "internal error: {what}"),
        }
    }
}

impl std::error::Error for ArchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // Each says what the error it holds says: that error's cause is its own.
        match self {
            ArchError::Table(error) => std::error::Error::source(error),
            ArchError::File(error) => std::error::Error::source(error),
            ArchError::Diagnosed(_) | ArchError::Directory { .. } | ArchError::Internal(_) => None,
        }
    }
}

impl Fixable for ArchError {
    fn fix(&self) -> Option<String> {
        match self {
            ArchError::Table(error) => error.fix(),
            ArchError::File(error) => error.fix(),
            ArchError::Diagnosed(diagnosis) => diagnosis.fix(),
            ArchError::Directory { .. } | ArchError::Internal(_) => None,
        }
    }
}

impl From<TableError> for ArchError {
    fn from(error: TableError) -> ArchError {
        ArchError::Table(error)
    }
}

impl From<files::Error> for ArchError {
    fn from(error: files::Error) -> ArchError {
        ArchError::File(error)
    }
}

/// Once the entry itself is right, removes a staging entry left by a killed run (it
/// is matched before the entry and may hold something else), noting it.
fn remove_staging(
    table: &impl Table,
    arch: Arch,
    outcome: InstallOutcome,
) -> Result<InstallOutcome, ArchError> {
    let name = arch.entry_name();
    if !binfmt_misc::remove_staging(table, &name)? {
        return Ok(outcome);
    }
    let note = format!(
        "removed {}, left by an interrupted run",
        binfmt_misc::staging_name_for(&name)
    );
    Ok(match outcome {
        InstallOutcome::Replaced(mut notes) => {
            notes.push(note);
            InstallOutcome::Replaced(notes)
        }
        InstallOutcome::Repaired(mut notes) => {
            notes.push(note);
            InstallOutcome::Repaired(notes)
        }
        _ => InstallOutcome::Repaired(vec![note]),
    })
}

/// An architecture after its entry was read.
enum Prepared {
    /// Settled without an interpreter file: the entry was right (or only disabled).
    Done(InstallOutcome),
    /// The interpreter file must be checked (and written if need be) before the
    /// entry can be compared and registered.
    NeedsFile {
        wanted: Registration,
        current: Option<Entry>,
    },
}

/// Reads the item's entry and settles what needs no interpreter file: everything for
/// a chosen emulator (its file is the user's, checked already).
fn prepare(table: &impl Table, item: &Item, options: &Options) -> Result<Prepared, ArchError> {
    let emulator = match &item.source {
        Source::Embedded(emulator) => emulator,
        Source::Chosen(chosen) => {
            let wanted = wanted_chosen(chosen, options);
            let current = table.read_entry(&wanted.name)?;
            let (change, notes) = to_front(
                binfmt_misc::compare(current.as_ref(), &wanted),
                current.as_ref(),
                item.to_front,
            );
            if change == Change::Unchanged {
                return Ok(Prepared::Done(InstallOutcome::Unchanged));
            }
            return apply_converging(table, &wanted, change, notes).map(Prepared::Done);
        }
    };
    let wanted = wanted(emulator, options);
    let current = table.read_entry(&wanted.name)?;

    // An entry registered from a memfd names a descriptor of the process that
    // registered it: its content cannot be checked from here. When everything else
    // matches, it is ours and is left alone.
    if let Some(entry) = &current
        && is_memfd_path(entry.interpreter())
        && !item.to_front
    {
        let as_registered = Registration {
            interpreter: entry.interpreter().to_owned(),
            ..wanted.clone()
        };
        if let change @ (Change::Unchanged | Change::Enable) =
            binfmt_misc::compare(Some(entry), &as_registered)
        {
            binfmt_misc::apply(table, &as_registered, &change)?;
            return Ok(Prepared::Done(outcome_of(&change, Vec::new())));
        }
    }

    let change = binfmt_misc::compare(current.as_ref(), &wanted);
    // With flag F the kernel opened the interpreter when the entry was registered and
    // holds it still; a path absent from this filesystem (another container wrote it)
    // is no fault. The digest in the file name says which emulator it was.
    if matches!(change, Change::Unchanged | Change::Enable)
        && wanted.flags.fix_binary
        && !options.in_memory
        && !item.to_front
        && !wanted.interpreter.exists()
    {
        binfmt_misc::apply(table, &wanted, &change)?;
        return Ok(Prepared::Done(outcome_of(&change, Vec::new())));
    }
    Ok(Prepared::NeedsFile { wanted, current })
}

/// Registers what differs, now that the interpreter file is in place; with
/// `to_front`, registers again what is right too (see [`Item::to_front`]).
fn finish(
    table: &impl Table,
    mut wanted: Registration,
    current: Option<&Entry>,
    file: Result<(Interpreter, FileState), ArchError>,
    to_front: bool,
) -> Result<InstallOutcome, ArchError> {
    let (interpreter, found) = file?;
    wanted.interpreter = interpreter.path().to_owned();

    let (mut change, mut notes) =
        self::to_front(binfmt_misc::compare(current, &wanted), current, to_front);
    let replaced_file = match found {
        FileState::Tampered => Some("did not match its pinned sha256".to_owned()),
        FileState::Unsafe(problem) => Some(problem.to_string()),
        FileState::Missing | FileState::Intact => None,
    };
    if let Some(problem) = replaced_file {
        notes.push(format!(
            "{} {problem} and was replaced",
            wanted.interpreter.display()
        ));
        // With F the kernel holds the file it opened at registration, which may be
        // the bad one: only registering again makes it open the new file.
        if wanted.flags.fix_binary && matches!(change, Change::Unchanged | Change::Enable) {
            change = Change::Replace(Vec::new());
        }
    }
    if change == Change::Unchanged {
        return Ok(if found == FileState::Intact {
            InstallOutcome::Unchanged
        } else {
            InstallOutcome::FileRestored
        });
    }

    apply_converging(table, &wanted, change, notes)
    // `interpreter` (a memfd, if that is what it is) stays open until here: the kernel
    // opened its own reference during registration.
}

/// `change`, or with `to_front` a replacement where the entry is right already (or
/// only disabled): registered again, it is matched before the entries another tool
/// registered after it. With the note that says so.
fn to_front(change: Change, current: Option<&Entry>, to_front: bool) -> (Change, Vec<String>) {
    match change {
        Change::Unchanged | Change::Enable if to_front && current.is_some() => (
            Change::Replace(Vec::new()),
            vec!["registered again, to be matched first".to_owned()],
        ),
        change => (change, Vec::new()),
    }
}

/// Applies `change` and reads the entry back ([`binfmt_misc::converge`]).
fn apply_converging(
    table: &impl Table,
    wanted: &Registration,
    change: Change,
    notes: Vec<String>,
) -> Result<InstallOutcome, ArchError> {
    binfmt_misc::converge(table, wanted, &change)?;
    Ok(outcome_of(&change, notes))
}

fn outcome_of(change: &Change, notes: Vec<String>) -> InstallOutcome {
    match change {
        Change::Unchanged | Change::Register | Change::Enable if !notes.is_empty() => {
            InstallOutcome::Repaired(notes)
        }
        Change::Unchanged => InstallOutcome::Unchanged,
        Change::Register => InstallOutcome::Registered,
        Change::Enable => InstallOutcome::Enabled,
        Change::Replace(differences) => InstallOutcome::Replaced(
            differences
                .iter()
                .map(ToString::to_string)
                .chain(notes)
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use binfmt_misc::Flags;
    use binfmt_misc::fake::{FakeTable, Write};
    use interpreter_files::InterpreterDir;

    use super::*;

    fn options(dir: &Path) -> Options {
        Options {
            flags: Flags::POCF,
            interpreter_dir: InterpreterDir::new(dir),
            in_memory: false,
            take_over: false,
        }
    }

    /// A directory under the build's target directory: not `/tmp`, which everyone
    /// can write, so binfmt refuses to put interpreters there.
    fn scratch(name: &str) -> PathBuf {
        let dir = Path::new(env!("OUT_DIR")).join(format!("install-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn riscv64() -> Emulator {
        Emulator::for_arch(Arch::Riscv64).expect("riscv64 is foreign on every host")
    }

    #[test]
    fn installs_then_writes_nothing_the_second_time() {
        let dir = scratch("twice");
        let table = FakeTable::new();
        let options = options(&dir);
        let first = register(&table, &[Item::embedded(riscv64())], &options).outcomes;
        assert!(
            matches!(first[0].1, InstallOutcome::Registered),
            "{:?}",
            first
        );
        assert_eq!(table.writes(), [Write::Register("qemu-riscv64".into())]);
        table.clear_writes();

        let second = register(&table, &[Item::embedded(riscv64())], &options).outcomes;
        assert!(
            matches!(second[0].1, InstallOutcome::Unchanged),
            "{:?}",
            second
        );
        assert_eq!(table.writes(), []);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_stale_entry_is_replaced() {
        let dir = scratch("stale");
        let table = FakeTable::new();
        let options = options(&dir);
        // Registered by hand, without F, at a path that is not in this container.
        table.insert(Entry {
            enabled: true,
            registration: Registration {
                interpreter: PathBuf::from("/usr/bin/qemu-riscv64-static"),
                flags: "OC".parse().unwrap(),
                ..wanted(&riscv64(), &options)
            },
        });
        let outcome = register(&table, &[Item::embedded(riscv64())], &options)
            .outcomes
            .remove(0)
            .1;
        let InstallOutcome::Replaced(reasons) = outcome else {
            panic!("expected a replacement, got {outcome:?}");
        };
        assert_eq!(reasons.len(), 2, "{reasons:?}");
        assert!(reasons[0].starts_with("interpreter /usr/bin/qemu-riscv64-static -> "));
        assert_eq!(reasons[1], "flags OC -> POCF");
        let entry = table.read_entry("qemu-riscv64").unwrap().unwrap();
        assert!(entry.differences(&wanted(&riscv64(), &options)).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_tampered_interpreter_is_rewritten_and_reregistered() {
        let dir = scratch("tamper");
        let table = FakeTable::new();
        let options = options(&dir);
        register(&table, &[Item::embedded(riscv64())], &options);
        let path = options.interpreter_dir.path_for(&riscv64());
        std::fs::write(&path, b"not qemu").unwrap();
        table.clear_writes();

        let outcome = register(&table, &[Item::embedded(riscv64())], &options)
            .outcomes
            .remove(0)
            .1;
        let InstallOutcome::Replaced(reasons) = outcome else {
            panic!("expected a replacement, got {outcome:?}");
        };
        assert!(
            reasons[0].contains("did not match its pinned sha256 and was replaced"),
            "{reasons:?}"
        );
        assert_eq!(
            table.writes(),
            [
                Write::Register("qemu-riscv64.binfmt-new".into()),
                Write::Remove("qemu-riscv64".into()),
                Write::Register("qemu-riscv64".into()),
                Write::Remove("qemu-riscv64.binfmt-new".into()),
            ]
        );
        assert_eq!(
            options.interpreter_dir.check(&riscv64()).unwrap(),
            FileState::Intact
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_killed_runs_staging_entry_is_removed_once_the_entry_is_right() {
        let dir = scratch("staging");
        let table = FakeTable::new();
        let options = options(&dir);
        register(&table, &[Item::embedded(riscv64())], &options);
        // A replacement killed after registering its staging entry.
        let staging = Registration {
            name: "qemu-riscv64.binfmt-new".into(),
            ..wanted(&riscv64(), &options)
        };
        table.register(&staging).unwrap();
        table.clear_writes();

        let outcome = register(&table, &[Item::embedded(riscv64())], &options)
            .outcomes
            .remove(0)
            .1;
        assert_eq!(
            outcome.to_string(),
            "OK (repaired: removed qemu-riscv64.binfmt-new, left by an interrupted run)"
        );
        assert_eq!(
            table.writes(),
            [Write::Remove("qemu-riscv64.binfmt-new".into())]
        );
        assert_eq!(table.entry_names().unwrap(), ["qemu-riscv64"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_entry_whose_file_lives_elsewhere_is_left_alone_with_flag_f() {
        // Registered by an earlier container: same path (same digest), file not here.
        let dir = scratch("elsewhere");
        let table = FakeTable::new();
        let options = options(&dir);
        table.insert(Entry {
            enabled: true,
            registration: wanted(&riscv64(), &options),
        });
        let outcome = register(&table, &[Item::embedded(riscv64())], &options)
            .outcomes
            .remove(0)
            .1;
        assert!(matches!(outcome, InstallOutcome::Unchanged), "{outcome:?}");
        assert_eq!(table.writes(), []);
        assert!(!dir.exists(), "nothing is written when nothing changes");
    }

    #[test]
    fn a_kernel_refusal_is_a_failure_with_its_reason() {
        let dir = scratch("refused");
        let table = FakeTable::new();
        table.refuse("qemu-riscv64", rustix::io::Errno::PERM);
        let outcome = register(&table, &[Item::embedded(riscv64())], &options(&dir))
            .outcomes
            .remove(0)
            .1;
        assert!(!outcome.is_ok());
        let shown = outcome.to_string();
        assert!(
            shown.starts_with("FAILED: cannot register qemu-riscv64"),
            "{shown}"
        );
        assert!(shown.contains("--privileged"), "{shown}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
