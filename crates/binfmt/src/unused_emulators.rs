//! Removing the emulator files no entry of the table uses, 14 to 17 MB each: after an
//! install those of superseded pins, after an uninstall every one
//! ([`InterpreterDir::remove_unused`]), and the line that says what went.

use std::path::PathBuf;

use binfmt_misc::report::Chain;
use binfmt_misc::{Error as TableError, Table};
use interpreter_files::{self as files, InterpreterDir};

/// Removes the emulator files in `dir` that no entry of `table` uses (see
/// [`InterpreterDir::remove_unused`]), 14 to 17 MB each: after an install those of
/// earlier pins ([`files::Keep::Pins`]), after an uninstall every one. Only when every
/// entry could be read: an entry that could not might use one. Failing is no reason
/// to fail the run: logged.
pub fn remove_unused(
    table: &impl Table,
    dir: &InterpreterDir,
    keep: files::Keep,
) -> Vec<files::Removed> {
    let in_use = table.entry_names().and_then(|names| {
        names
            .iter()
            .filter_map(|name| table.read_entry(name).transpose())
            .map(|entry| entry.map(|entry| entry.interpreter().to_owned()))
            .collect::<Result<Vec<PathBuf>, TableError>>()
    });
    let in_use = match in_use {
        Ok(in_use) => in_use,
        Err(error) => {
            log::warn!("not removing unused emulator files: {}", Chain(&error));
            return Vec::new();
        }
    };
    dir.remove_unused(&in_use, keep).unwrap_or_else(|error| {
        // Busy: the run that holds the lock removes them.
        if matches!(error, files::Error::LockBusy(_)) {
            log::debug!("not removing unused emulator files: {}", Chain(&error));
        } else {
            log::warn!("not removing unused emulator files: {}", Chain(&error));
        }
        Vec::new()
    })
}

/// The line that reports what [`remove_unused`] removed with `keep`.
pub fn removed_line(removed: &[files::Removed], keep: files::Keep) -> String {
    let bytes: u64 = removed.iter().map(|file| file.bytes).sum();
    let plural = if removed.len() == 1 { "" } else { "s" };
    format!(
        "removed: {} ({}; {:.1} MB freed)",
        removed
            .iter()
            .map(|file| file.path.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        match keep {
            files::Keep::Pins => format!("superseded emulator{plural}, used by no entry"),
            files::Keep::Nothing => format!("emulator{plural} no entry uses any more"),
        },
        bytes as f64 / 1e6
    )
}
