//! `--uninstall LIST`: remove the entries a list names ([`crate::targets`]: names,
//! globs and architectures, where a glob or an architecture takes in only binfmt's
//! own entries).

use binfmt_misc::Table;

use crate::survey::Survey;
use crate::targets::{self, Target};

/// What an uninstall did: which entries it left alone, and what removing each one it
/// selected came to.
#[derive(Debug)]
pub struct Uninstalled {
    /// Other tools' entries a glob or an architecture matched, left alone.
    pub left_alone: Vec<String>,
    /// Each selected entry, and whether removing it worked.
    pub removed: Vec<(String, Result<(), binfmt_misc::Error>)>,
}

impl Uninstalled {
    /// How many removals failed.
    pub fn failed(&self) -> usize {
        self.removed
            .iter()
            .filter(|(_, result)| result.is_err())
            .count()
    }
}

/// Removes the selected entries; a failure does not stop the rest.
pub fn uninstall(
    table: &impl Table,
    targets: &[Target],
) -> Result<Uninstalled, binfmt_misc::Error> {
    let entries = Survey::read(Some(table))?.entries;
    let targeted = targets::select(targets, &entries);
    let removed = targeted
        .selected
        .into_iter()
        .map(|name| {
            let result = table.remove(&name);
            (name, result)
        })
        .collect();
    Ok(Uninstalled {
        left_alone: targeted.left_alone,
        removed,
    })
}
