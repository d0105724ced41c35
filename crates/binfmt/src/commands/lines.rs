//! What a run of the table prints, for the top-level options and `binfmt apply`:
//! tonistiigi/binfmt's `uninstalling: <name> OK` and `installing: <arch> OK` lines
//! (and `FAILED: ` with the cause and fix) on stderr, then the status JSON on stdout,
//! from what [`execute`](crate::request::execute) returns. Also the one way a
//! command writes its report to stdout ([`print_stdout`]).

use std::io::Write as _;

use binfmt_misc::report::Report;

use crate::outcome::{CommandError, Completion, Context, Failure};
use crate::register::InstallOutcome;
use crate::request::{Executed, Verbosity};
use crate::status;
use crate::unused_emulators;

/// Prints what `executed` says, as much as `verbosity` asks for (see the module
/// documentation), and returns how the run ended: the failure that stopped it, if one
/// did, once what was done before it is printed.
pub fn print(executed: Executed, verbosity: Verbosity) -> Result<Completion, CommandError> {
    let everything = verbosity == Verbosity::Everything;
    if let Some(uninstalled) = &executed.uninstalled {
        for name in &uninstalled.left_alone {
            eprintln!(
                "uninstalling: {name} left alone (another tool's entry: name it exactly to \
                 remove it)"
            );
        }
        if uninstalled.removed.is_empty() {
            eprintln!("uninstalling: nothing matches, nothing to do");
        }
        for (name, result) in &uninstalled.removed {
            match result {
                Ok(()) => eprintln!("uninstalling: {name} OK"),
                Err(error) => eprintln!("uninstalling: {name} FAILED: {}", Report(error)),
            }
        }
    }
    if let Some(installed) = &executed.installed {
        if everything {
            for (arch, line) in &installed.skipped {
                eprintln!("installing: {arch} {line}");
            }
        }
        for registered in &installed.registered {
            let outcome = &registered.outcome;
            if !everything && matches!(outcome, InstallOutcome::Unchanged) {
                continue;
            }
            let mut line = format!("installing: {} {outcome}", registered.arch);
            if outcome.is_ok() {
                if let Some(path) = &registered.chosen {
                    line.push_str(&format!(
                        "; with the emulator chosen for it, {}",
                        path.display()
                    ));
                }
                if let Some(note) = &registered.shadows {
                    line.push_str("; ");
                    line.push_str(note);
                }
            }
            eprintln!("{line}");
        }
        if let Some(failure) = &installed.directory_failure {
            eprintln!("binfmt: {}", Report(failure));
        }
        let failed = installed.failed();
        if failed > 0 {
            eprintln!(
                "binfmt: {failed} of {} architectures are not registered; the lines above give \
                 each cause",
                installed.registered.len()
            );
        }
    }
    if let Some((removed, keep)) = &executed.unused_removed {
        eprintln!("{}", unused_emulators::removed_line(removed, *keep));
    }
    if let Some(table) = &executed.status {
        // With nothing to install or remove, the status is all there is to say: which
        // entry runs each emulated platform goes to stderr too, for a person (stdout
        // is the document scripts parse).
        if executed.installed.is_none() && executed.uninstalled.is_none() {
            for handler in &table.handlers {
                eprintln!("status: {}", status::handler_line(handler));
            }
        }
        print_stdout(&status::render(&table.status))?;
    }
    match executed.failure {
        Some(failure) => Err(failure),
        None => Ok(Completion::of(executed.complete)),
    }
}

/// Writes a report to stdout; failing to is an error (a closed pipe in CI).
pub fn print_stdout(text: &str) -> Result<(), CommandError> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|error| {
            CommandError::from(Context {
                what: "cannot write to stdout".to_owned(),
                error: Failure::from(error),
            })
        })
}
