//! `--uninstall LIST`: remove the entries a list names ([`crate::targets`]: names,
//! globs and architectures, where a glob or an architecture takes in only binfmt's
//! own entries).

use binfmt_misc::Table;

use crate::survey::Survey;
use crate::targets::{self, Target};

/// Removes the selected entries, printing tonistiigi-style lines; returns how many
/// removals failed.
pub fn uninstall(table: &impl Table, targets: &[Target]) -> Result<usize, binfmt_misc::Error> {
    let entries = Survey::read(Some(table))?.entries;
    let selection = targets::select(targets, &entries);
    for name in &selection.left_alone {
        eprintln!(
            "uninstalling: {name} left alone (another tool's entry: name it exactly to remove \
             it)"
        );
    }
    if selection.selected.is_empty() {
        eprintln!("uninstalling: nothing matches, nothing to do");
    }
    let mut failed = 0;
    for name in selection.selected {
        match table.remove(&name) {
            Ok(()) => eprintln!("uninstalling: {name} OK"),
            Err(error) => {
                failed += 1;
                eprintln!("uninstalling: {name} FAILED: {error}");
            }
        }
    }
    Ok(failed)
}
