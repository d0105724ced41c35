//! Deciding what to change: compare the registration we want with the entry the table
//! holds, and apply the smallest change that makes them equal.
//!
//! This is what makes binfmt idempotent: an identical entry is left alone (no write at
//! all), a disabled but otherwise identical one is enabled, and one that differs in
//! any other way is replaced, with the differences reported.
//!
//! A replacement never leaves a moment without a working entry, even if the process
//! is killed between two writes. The kernel cannot update an entry in place and
//! matches the most recently registered entry first, so a replacement registers the
//! new entry under a staging name (`<name>.binfmt-new`), which takes over at once,
//! removes the old entry, registers the new one under its own name (now the newest),
//! and removes the staging entry. Killed at any point, the table holds the old entry,
//! the new one, or both with the new one matched first; [`remove_staging`] cleans up
//! what a killed run left.

use crate::entry::{Difference, Entry, Registration, validate_name};
use crate::error::Error;
use crate::table::Table;

/// What a staging entry's name ends with. Entry names of that form are binfmt's own:
/// no other tool uses the suffix, and [`staged_name`] checks the rest is a valid name.
pub const STAGING_SUFFIX: &str = ".binfmt-new";

/// The name under which a replacement of `name` is registered first.
pub fn staging_name(name: &str) -> String {
    format!("{name}{STAGING_SUFFIX}")
}

/// The entry a staging entry stands in for, or `None` when `name` is not one.
pub fn staged_name(name: &str) -> Option<&str> {
    name.strip_suffix(STAGING_SUFFIX)
        .filter(|staged| validate_name(staged).is_ok())
}

/// Removes the staging entry of `name` if a killed run left one; returns whether
/// there was one. Call it once the entry `name` itself is in place: the staging
/// entry, registered later, is matched first and may hold something else.
pub fn remove_staging(table: &impl Table, name: &str) -> Result<bool, Error> {
    let staging = staging_name(name);
    if validate_name(&staging).is_err() || table.read_entry(&staging)?.is_none() {
        return Ok(false);
    }
    log::debug!("removing {staging}, left by an interrupted replacement");
    table.remove(&staging)?;
    Ok(true)
}

/// What has to happen to one entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// The entry exists and is exactly what we want: write nothing.
    Unchanged,
    /// No entry of that name: register it.
    Register,
    /// The entry is what we want but disabled: enable it (one write).
    Enable,
    /// The entry differs: remove it and register ours.
    Replace(Vec<Difference>),
}

/// Compares `wanted` with the table's entry of the same name.
pub fn plan(table: &impl Table, wanted: &Registration) -> Result<Change, Error> {
    Ok(compare(table.read_entry(&wanted.name)?.as_ref(), wanted))
}

/// Compares `wanted` with `current`, an entry of the same name already read (or
/// `None` when there is none).
pub fn compare(current: Option<&Entry>, wanted: &Registration) -> Change {
    let Some(current) = current else {
        return Change::Register;
    };
    let differences = current.differences(wanted);
    match differences.as_slice() {
        [] => Change::Unchanged,
        [Difference::Disabled] => Change::Enable,
        _ => Change::Replace(differences),
    }
}

/// Carries out `change` for `wanted`.
///
/// A replacement goes through a staging entry (see the module documentation), so
/// that the old entry or the new one works at every moment.
pub fn apply(table: &impl Table, wanted: &Registration, change: &Change) -> Result<(), Error> {
    match change {
        Change::Unchanged => Ok(()),
        Change::Register => table.register(wanted),
        Change::Enable => table.set_enabled(&wanted.name, true),
        Change::Replace(_) => replace(table, wanted),
    }
}

fn replace(table: &impl Table, wanted: &Registration) -> Result<(), Error> {
    let staging = Registration {
        name: staging_name(&wanted.name),
        ..wanted.clone()
    };
    if staging.validate().is_err() {
        // A name within 11 bytes of the limit has no room for the suffix: remove and
        // register, the only way left.
        log::debug!(
            "{}: no room for a staging name; replacing in two steps",
            wanted.name
        );
        table.remove(&wanted.name)?;
        return table.register(wanted);
    }
    // A staging entry left by a killed run is removed first; the old entry still works.
    remove_staging(table, &wanted.name)?;
    table.register(&staging)?;
    // From here the staging entry serves every binary the entry matches.
    match table.remove(&wanted.name) {
        Ok(()) => {}
        // Another process removed the old entry already: nothing lost.
        Err(Error::Write { ref source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => {
            // Undo, so that the table holds just the old entry, as before.
            let _ = table.remove(&staging.name);
            return Err(error);
        }
    }
    // If this fails the staging entry keeps working; the next run finishes the job.
    table.register(wanted)?;
    table.remove(&staging.name)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::entry::{Entry, Flags, Matcher};
    use crate::fake::{FakeTable, Write};

    fn wanted() -> Registration {
        Registration {
            name: "qemu-riscv64".to_owned(),
            matcher: Matcher::Magic {
                offset: 0,
                magic: b"\x7fELF\x02\x01\x01\x00".to_vec(),
                mask: Some(b"\xff\xff\xff\xff\xff\xff\xff\x00".to_vec()),
            },
            interpreter: PathBuf::from("/var/lib/binfmt/qemu-riscv64"),
            flags: Flags::POCF,
        }
    }

    fn converge(table: &FakeTable) -> Change {
        let change = plan(table, &wanted()).unwrap();
        apply(table, &wanted(), &change).unwrap();
        change
    }

    #[test]
    fn registers_when_absent_then_leaves_the_identical_entry_alone() {
        let table = FakeTable::new();
        assert_eq!(converge(&table), Change::Register);
        assert_eq!(table.writes(), [Write::Register("qemu-riscv64".into())]);
        table.clear_writes();
        assert_eq!(converge(&table), Change::Unchanged);
        assert_eq!(table.writes(), []);
    }

    #[test]
    fn a_disabled_entry_is_enabled_with_one_write() {
        let table = FakeTable::new();
        table.insert(Entry {
            enabled: false,
            registration: wanted(),
        });
        assert_eq!(converge(&table), Change::Enable);
        assert_eq!(
            table.writes(),
            [Write::SetEnabled("qemu-riscv64".into(), true)]
        );
        assert!(table.entries()[0].enabled);
    }

    #[test]
    fn a_stale_entry_is_replaced_and_the_difference_named() {
        let table = FakeTable::new();
        table.insert(Entry {
            enabled: true,
            registration: Registration {
                interpreter: PathBuf::from("/usr/bin/qemu-riscv64-static"),
                flags: "OF".parse().unwrap(),
                ..wanted()
            },
        });
        let change = converge(&table);
        let Change::Replace(differences) = change else {
            panic!("expected a replacement, got {change:?}");
        };
        assert_eq!(differences.len(), 2);
        assert_eq!(
            table.writes(),
            [
                Write::Register("qemu-riscv64.binfmt-new".into()),
                Write::Remove("qemu-riscv64".into()),
                Write::Register("qemu-riscv64".into()),
                Write::Remove("qemu-riscv64.binfmt-new".into()),
            ]
        );
        assert_eq!(table.entries().len(), 1);
        let entry = &table.entries()[0];
        assert!(entry.differences(&wanted()).is_empty());
    }

    fn stale() -> Entry {
        Entry {
            enabled: true,
            registration: Registration {
                interpreter: PathBuf::from("/usr/bin/qemu-riscv64-static"),
                flags: "OF".parse().unwrap(),
                ..wanted()
            },
        }
    }

    /// Stops a replacement before its `n`th write, as SIGKILL would, and returns the
    /// table as it was left.
    fn interrupted_after(writes: usize) -> FakeTable {
        let table = FakeTable::new();
        table.insert(stale());
        table.fail_after(writes);
        let _ = apply(&table, &wanted(), &plan(&table, &wanted()).unwrap());
        table
    }

    #[test]
    fn an_interrupted_replacement_always_leaves_a_working_entry() {
        for writes in 0..=4 {
            let table = interrupted_after(writes);
            // What the kernel would match first for a binary of this type: the newest
            // enabled entry.
            let newest = table.entries().into_iter().rev().find(|e| e.enabled);
            let newest = newest.unwrap_or_else(|| panic!("no entry after {writes} writes"));
            let is_old = newest.registration.interpreter == stale().registration.interpreter;
            // (Names are not compared: the staging entry counts as the new one.)
            let is_new = newest.differences(&wanted()).is_empty();
            assert!(is_old || is_new, "after {writes} writes: {newest:?}");
            assert_eq!(is_new, writes >= 1, "after {writes} writes: {newest:?}");

            // The next run converges to exactly the wanted entry, nothing else.
            table.allow_all();
            let change = plan(&table, &wanted()).unwrap();
            apply(&table, &wanted(), &change).unwrap();
            remove_staging(&table, &wanted().name).unwrap();
            let names: Vec<String> = table
                .entries()
                .iter()
                .map(|e| e.registration.name.clone())
                .collect();
            assert_eq!(names, ["qemu-riscv64"], "after {writes} writes");
            assert!(table.entries()[0].differences(&wanted()).is_empty());
        }
    }

    #[test]
    fn staging_names_are_recognised() {
        assert_eq!(staging_name("qemu-arm"), "qemu-arm.binfmt-new");
        assert_eq!(staged_name("qemu-arm.binfmt-new"), Some("qemu-arm"));
        assert_eq!(staged_name("qemu-arm"), None);
        assert_eq!(staged_name(".binfmt-new"), None);
        assert_eq!(staged_name("...binfmt-new"), None);
    }

    #[test]
    fn a_name_without_room_for_the_suffix_is_replaced_in_two_steps() {
        let long = "q".repeat(crate::entry::MAX_NAME_LENGTH);
        let table = FakeTable::new();
        table.insert(Entry {
            registration: Registration {
                name: long.clone(),
                ..stale().registration
            },
            ..stale()
        });
        let wanted = Registration {
            name: long.clone(),
            ..wanted()
        };
        apply(&table, &wanted, &plan(&table, &wanted).unwrap()).unwrap();
        assert_eq!(
            table.writes(),
            [Write::Remove(long.clone()), Write::Register(long)]
        );
    }

    #[test]
    fn an_invalid_registration_writes_nothing() {
        let table = FakeTable::new();
        let bad = Registration {
            name: "../escape".to_owned(),
            ..wanted()
        };
        assert!(matches!(plan(&table, &bad), Err(Error::Invalid { .. })));
        assert!(matches!(table.register(&bad), Err(Error::Invalid { .. })));
        assert_eq!(table.writes(), []);
    }
}
