//! Deciding what to change: compare the registration we want with the entry the table
//! holds, and apply the smallest change that makes them equal.
//!
//! This is what makes binfmt idempotent: an identical entry is left alone (no write at
//! all), a disabled but otherwise identical one is enabled, and one that differs in
//! any other way is replaced, with the differences reported.

use crate::entry::{Difference, Entry, Registration};
use crate::error::Error;
use crate::table::Table;

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
/// A replacement removes the old entry and then registers the new one: the kernel has
/// no way to update an entry in place, and a name can be registered only once.
pub fn apply(table: &impl Table, wanted: &Registration, change: &Change) -> Result<(), Error> {
    match change {
        Change::Unchanged => Ok(()),
        Change::Register => table.register(wanted),
        Change::Enable => table.set_enabled(&wanted.name, true),
        Change::Replace(_) => {
            table.remove(&wanted.name)?;
            table.register(wanted)
        }
    }
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
                Write::Remove("qemu-riscv64".into()),
                Write::Register("qemu-riscv64".into())
            ]
        );
        let entry = &table.entries()[0];
        assert!(entry.differences(&wanted()).is_empty());
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
