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
//!
//! Another process may change the same entry between our read and our write (a second
//! binfmt in another binfmt_misc mount of the instance, or another tool): [`converge`]
//! reads the entry again and re-plans when a write fails the way such a race makes it
//! fail, and reads the entry back at the end, so that what it reports done is what
//! the kernel holds.

use crate::entry::{Difference, Entry, Registration, validate_name};
use crate::error::Error;
use crate::report::Chain;
use crate::table::Table;

/// What a staging entry's name ends with. Entry names of that form are binfmt's own:
/// no other tool uses the suffix, and [`stands_in_for`] checks the rest is a valid name.
pub const STAGING_SUFFIX: &str = ".binfmt-new";

/// The name under which a replacement of `name` is registered first.
pub fn staging_name_for(name: &str) -> String {
    format!("{name}{STAGING_SUFFIX}")
}

/// The entry a staging entry stands in for, or `None` when `name` is not one.
pub fn stands_in_for(name: &str) -> Option<&str> {
    name.strip_suffix(STAGING_SUFFIX)
        .filter(|staged| validate_name(staged).is_ok())
}

/// Removes the staging entry of `name` if a killed run left one; returns whether
/// there was one. Call it once the entry `name` itself is in place: the staging
/// entry, registered later, is matched first and may hold something else.
pub fn remove_staging(table: &impl Table, name: &str) -> Result<bool, Error> {
    let staging = staging_name_for(name);
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

/// How many times [`converge`] plans and applies when another process changes the
/// same entry between our read and our write (EEXIST on register, ENOENT on remove).
pub const ATTEMPTS: usize = 3;

/// Carries out `change` for `wanted` (planned from an entry read earlier), tolerating
/// another process that changes the same entry at the same time, then reads the entry
/// back.
///
/// A write that fails as a race makes it fail ([`is_race`]) is planned again from a
/// fresh read and retried, [`ATTEMPTS`] times in all. Fails with
/// [`Error::NotConverged`] when the entry read back differs from `wanted`, and with
/// [`Error::Vanished`] when it is gone.
pub fn converge(table: &impl Table, wanted: &Registration, change: &Change) -> Result<(), Error> {
    let mut change = change.clone();
    for attempt in 1..=ATTEMPTS {
        match apply(table, wanted, &change) {
            Ok(()) => break,
            Err(error) if attempt < ATTEMPTS && is_race(&error) => {
                log::debug!("{}: {}; reading it again", wanted.name, Chain(&error));
                change = plan(table, wanted)?;
            }
            Err(error) => return Err(error),
        }
    }
    match table.read_entry(&wanted.name)? {
        Some(entry) => {
            let differences = entry.differences(wanted);
            if differences.is_empty() {
                Ok(())
            } else {
                Err(Error::NotConverged {
                    name: wanted.name.clone(),
                    differences,
                })
            }
        }
        None => Err(Error::Vanished {
            name: wanted.name.clone(),
        }),
    }
}

/// Whether another process changing the same entry explains the error: the name got
/// taken before our register (EEXIST), or the entry vanished before our remove
/// (ENOENT).
pub fn is_race(error: &Error) -> bool {
    match error {
        Error::AlreadyRegistered { .. } => true,
        Error::Write { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
        _ => false,
    }
}

fn replace(table: &impl Table, wanted: &Registration) -> Result<(), Error> {
    let staging = Registration {
        name: staging_name_for(&wanted.name),
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
    use std::cell::Cell;
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::entry::{Entry, Flags, Matcher};
    use crate::fake::{FakeTable, Write};
    use crate::table::RegistrationId;

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

    /// Plans the wanted entry and converges to it, as an install does; returns the plan.
    fn install(table: &impl Table) -> Change {
        let change = plan(table, &wanted()).unwrap();
        converge(table, &wanted(), &change).unwrap();
        change
    }

    #[test]
    fn registers_when_absent_then_leaves_the_identical_entry_alone() {
        let table = FakeTable::new();
        assert_eq!(install(&table), Change::Register);
        assert_eq!(table.writes(), [Write::Register("qemu-riscv64".into())]);
        table.clear_writes();
        assert_eq!(install(&table), Change::Unchanged);
        assert_eq!(table.writes(), []);
    }

    #[test]
    fn a_disabled_entry_is_enabled_with_one_write() {
        let table = FakeTable::new();
        table.insert(Entry {
            enabled: false,
            registration: wanted(),
        });
        assert_eq!(install(&table), Change::Enable);
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
        let change = install(&table);
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
            install(&table);
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

    /// A table another process changes too: `meddle` is called with the table just
    /// before each of our writes (the write about to be made), and may change it.
    struct Contended<F> {
        table: FakeTable,
        meddle: F,
    }

    impl<F: Fn(&FakeTable, &Write)> Table for Contended<F> {
        fn path(&self) -> &Path {
            self.table.path()
        }
        fn entry_names(&self) -> Result<Vec<String>, Error> {
            self.table.entry_names()
        }
        fn read_entry(&self, name: &str) -> Result<Option<Entry>, Error> {
            self.table.read_entry(name)
        }
        fn register(&self, registration: &Registration) -> Result<(), Error> {
            (self.meddle)(&self.table, &Write::Register(registration.name.clone()));
            self.table.register(registration)
        }
        fn set_enabled(&self, name: &str, enabled: bool) -> Result<(), Error> {
            (self.meddle)(&self.table, &Write::SetEnabled(name.to_owned(), enabled));
            self.table.set_enabled(name, enabled)
        }
        fn remove(&self, name: &str) -> Result<(), Error> {
            (self.meddle)(&self.table, &Write::Remove(name.to_owned()));
            self.table.remove(name)
        }
        fn is_enabled(&self) -> Result<bool, Error> {
            self.table.is_enabled()
        }
        fn registration_id(&self, name: &str) -> Result<Option<RegistrationId>, Error> {
            self.table.registration_id(name)
        }
    }

    /// `stale()` under another name.
    fn stale_named(name: &str) -> Entry {
        let mut entry = stale();
        entry.registration.name = name.to_owned();
        entry
    }

    #[test]
    fn a_name_taken_between_read_and_register_is_planned_again() {
        // Another run registers a stale entry of the name after we read the table.
        let raced = Cell::new(false);
        let table = Contended {
            table: FakeTable::new(),
            meddle: |table: &FakeTable, write: &Write| {
                if matches!(write, Write::Register(_)) && !raced.replace(true) {
                    table.insert(stale());
                }
            },
        };
        let change = plan(&table, &wanted()).unwrap();
        assert_eq!(change, Change::Register);
        converge(&table, &wanted(), &change).unwrap();
        // EEXIST, then a fresh plan: a replacement through the staging entry.
        assert_eq!(
            table.table.writes(),
            [
                Write::Register("qemu-riscv64".into()),
                Write::Register("qemu-riscv64.binfmt-new".into()),
                Write::Remove("qemu-riscv64".into()),
                Write::Register("qemu-riscv64".into()),
                Write::Remove("qemu-riscv64.binfmt-new".into()),
            ]
        );
        let entries = table.table.entries();
        assert_eq!(entries.len(), 1, "{entries:?}");
        assert!(entries[0].differences(&wanted()).is_empty());
    }

    #[test]
    fn an_entry_another_process_removed_first_is_no_failure() {
        let table = Contended {
            table: FakeTable::new(),
            meddle: |table: &FakeTable, write: &Write| {
                if *write == Write::Remove("qemu-riscv64".into()) {
                    let _ = table.remove("qemu-riscv64");
                }
            },
        };
        table.table.insert(stale());
        let change = plan(&table, &wanted()).unwrap();
        assert!(matches!(change, Change::Replace(_)), "{change:?}");
        converge(&table, &wanted(), &change).unwrap();
        let entries = table.table.entries();
        assert_eq!(entries.len(), 1, "{entries:?}");
        assert!(entries[0].differences(&wanted()).is_empty());
    }

    #[test]
    fn a_race_that_goes_on_is_given_up_after_the_attempts() {
        // Every name we register is taken just before: the race never ends.
        let table = Contended {
            table: FakeTable::new(),
            meddle: |table: &FakeTable, write: &Write| {
                if let Write::Register(name) = write {
                    table.insert(stale_named(name));
                }
            },
        };
        let error = converge(&table, &wanted(), &Change::Register).unwrap_err();
        assert!(
            matches!(error, Error::AlreadyRegistered { .. }),
            "{error:?}"
        );
        assert!(is_race(&error));
        let registers = table
            .table
            .writes()
            .into_iter()
            .filter(|write| matches!(write, Write::Register(_)))
            .count();
        assert_eq!(registers, ATTEMPTS, "{:?}", table.table.writes());
    }

    #[test]
    fn what_the_kernel_reads_back_is_what_counts() {
        // Our writes succeed, but another process replaces the entry right after.
        let table = Contended {
            table: FakeTable::new(),
            meddle: |table: &FakeTable, write: &Write| {
                if let Write::Remove(name) = write
                    && name.ends_with(STAGING_SUFFIX)
                {
                    table.insert(stale());
                }
            },
        };
        table.table.insert(stale());
        let change = plan(&table, &wanted()).unwrap();
        let error = converge(&table, &wanted(), &change).unwrap_err();
        let Error::NotConverged { name, differences } = &error else {
            panic!("expected a difference read back, got {error:?}");
        };
        assert_eq!(name, "qemu-riscv64");
        assert_eq!(differences.len(), 2, "{differences:?}");
        assert!(
            error
                .to_string()
                .starts_with("registered qemu-riscv64, but the kernel reports interpreter "),
            "{error}"
        );

        // Gone when read back: removed right after our last write.
        let table = Contended {
            table: FakeTable::new(),
            meddle: |table: &FakeTable, write: &Write| {
                if let Write::Remove(name) = write
                    && name.ends_with(STAGING_SUFFIX)
                {
                    let _ = table.remove("qemu-riscv64");
                }
            },
        };
        table.table.insert(stale());
        let change = plan(&table, &wanted()).unwrap();
        let error = converge(&table, &wanted(), &change).unwrap_err();
        assert!(matches!(error, Error::Vanished { .. }), "{error:?}");
        assert_eq!(
            error.to_string(),
            "registered qemu-riscv64, but it is gone: another process removed it"
        );
    }

    #[test]
    fn staging_names_and_what_they_stand_in_for() {
        assert_eq!(staging_name_for("qemu-arm"), "qemu-arm.binfmt-new");
        assert_eq!(stands_in_for("qemu-arm.binfmt-new"), Some("qemu-arm"));
        assert_eq!(stands_in_for("qemu-arm"), None);
        assert_eq!(stands_in_for(".binfmt-new"), None);
        assert_eq!(stands_in_for("...binfmt-new"), None);
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
