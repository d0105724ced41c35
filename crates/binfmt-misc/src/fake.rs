//! [`FakeTable`]: an in-memory binfmt_misc table that behaves like the kernel's, for
//! testing the logic above the kernel layer without privileges.
//!
//! It applies the kernel's rules (validation, EEXIST on a taken name, `C` implies `O`)
//! and records every write, so a test can assert that a second identical run writes
//! nothing. What it stores is what the [`model`](crate::model) of the kernel's parser
//! makes of the encoded register line, and reads go through the kernel's print format
//! and [`Entry::parse`]: a bug in the encoder or the parser shows up here too.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::entry::{Entry, Registration, validate_name};
use crate::error::Error;
use crate::model;
use crate::table::{RegistrationId, Table};

/// One write the code under test made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    /// A line written to `register`, for the entry of this name.
    Register(String),
    /// `1` or `0` written to the entry's file.
    SetEnabled(String, bool),
    /// `-1` written to the entry's file.
    Remove(String),
}

/// An in-memory binfmt_misc table.
#[derive(Debug, Default)]
pub struct FakeTable {
    entries: RefCell<Vec<Entry>>,
    writes: RefCell<Vec<Write>>,
    refused: RefCell<BTreeMap<String, rustix::io::Errno>>,
    /// `status` says `disabled` (the whole table is off).
    disabled: Cell<bool>,
    /// How many more writes succeed; `None`: all of them.
    write_budget: Cell<Option<usize>>,
    /// Each entry's registration number, as the kernel's fresh inode number.
    registrations: RefCell<BTreeMap<String, u64>>,
    /// The last registration number given.
    last_registration: Cell<u64>,
}

impl FakeTable {
    /// An empty table.
    pub fn new() -> FakeTable {
        FakeTable::default()
    }

    /// Puts an entry in place as if another tool had registered it; not recorded as a
    /// write.
    pub fn insert(&self, entry: Entry) {
        self.new_registration(&entry.registration.name);
        let mut entries = self.entries.borrow_mut();
        entries.retain(|e| e.registration.name != entry.registration.name);
        entries.push(entry);
    }

    /// Gives the entry `name` a registration number no earlier one had.
    fn new_registration(&self, name: &str) {
        let number = self.last_registration.get() + 1;
        self.last_registration.set(number);
        self.registrations
            .borrow_mut()
            .insert(name.to_owned(), number);
    }

    /// Makes every later registration of `name` fail with `errno`, as the kernel does
    /// with flag F and a missing interpreter, for example.
    pub fn refuse(&self, name: &str, errno: rustix::io::Errno) {
        self.refused.borrow_mut().insert(name.to_owned(), errno);
    }

    /// Sets what `status` says, as `echo 1`/`echo 0 > status` would; not recorded as a
    /// write.
    pub fn set_status(&self, enabled: bool) {
        self.disabled.set(!enabled);
    }

    /// Lets only the next `writes` writes through; every later one fails with EIO and
    /// changes nothing, as if the process had been killed at that point.
    pub fn fail_after(&self, writes: usize) {
        self.write_budget.set(Some(writes));
    }

    /// Lets every write through again (the next run, after a kill).
    pub fn allow_all(&self) {
        self.write_budget.set(None);
    }

    /// Consumes one write from the budget, or fails when it is spent.
    fn spend_write(&self, path: PathBuf) -> Result<(), Error> {
        match self.write_budget.get() {
            None => Ok(()),
            Some(0) => Err(Error::Write {
                path,
                action: "write",
                source: rustix::io::Errno::IO.into(),
            }),
            Some(left) => {
                self.write_budget.set(Some(left - 1));
                Ok(())
            }
        }
    }

    /// Every write made so far, in order.
    pub fn writes(&self) -> Vec<Write> {
        self.writes.borrow().clone()
    }

    /// Forgets the writes recorded so far.
    pub fn clear_writes(&self) {
        self.writes.borrow_mut().clear();
    }

    /// All entries, oldest first.
    pub fn entries(&self) -> Vec<Entry> {
        self.entries.borrow().clone()
    }

    fn with_entry(&self, name: &str, f: impl FnOnce(&mut Vec<Entry>, usize)) -> Result<(), Error> {
        validate_name(name).map_err(|reason| Error::Invalid {
            name: name.to_owned(),
            reason,
        })?;
        let mut entries = self.entries.borrow_mut();
        match entries.iter().position(|e| e.registration.name == name) {
            Some(index) => {
                f(&mut entries, index);
                Ok(())
            }
            None => Err(Error::Write {
                path: self.path().join(name),
                action: "change",
                source: rustix::io::Errno::NOENT.into(),
            }),
        }
    }
}

impl Table for FakeTable {
    fn path(&self) -> &Path {
        Path::new("/fake/binfmt_misc")
    }

    fn entry_names(&self) -> Result<Vec<String>, Error> {
        // Newest first, as the kernel lists (and matches) them.
        Ok(self
            .entries
            .borrow()
            .iter()
            .rev()
            .map(|e| e.registration.name.clone())
            .collect())
    }

    fn read_entry(&self, name: &str) -> Result<Option<Entry>, Error> {
        validate_name(name).map_err(|reason| Error::Invalid {
            name: name.to_owned(),
            reason,
        })?;
        let entries = self.entries.borrow();
        let Some(entry) = entries.iter().find(|e| e.registration.name == name) else {
            return Ok(None);
        };
        // As the kernel does: print the entry, and let the caller's parser read it.
        Entry::parse(name, &model::status_text(entry))
            .map(Some)
            .map_err(|source| Error::Parse {
                path: self.path().join(name),
                source,
            })
    }

    fn register(&self, registration: &Registration) -> Result<(), Error> {
        let name = &registration.name;
        let line = crate::error::encode(registration)?;
        self.writes.borrow_mut().push(Write::Register(name.clone()));
        self.spend_write(self.path().join("register"))?;
        if let Some(&errno) = self.refused.borrow().get(name) {
            return Err(Error::Register {
                name: name.clone(),
                interpreter: registration.interpreter.clone(),
                fix_binary: registration.flags.fix_binary,
                source: errno.into(),
            });
        }
        if self
            .entries
            .borrow()
            .iter()
            .any(|e| &e.registration.name == name)
        {
            return Err(Error::AlreadyRegistered { name: name.clone() });
        }
        // What the kernel would store from the bytes written, not what we meant.
        let stored = model::parse_register_line(&line).map_err(|rejected| Error::Register {
            name: name.clone(),
            interpreter: registration.interpreter.clone(),
            fix_binary: registration.flags.fix_binary,
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, rejected),
        })?;
        self.new_registration(name);
        self.entries.borrow_mut().push(Entry {
            enabled: true,
            registration: stored,
        });
        Ok(())
    }

    fn set_enabled(&self, name: &str, enabled: bool) -> Result<(), Error> {
        self.writes
            .borrow_mut()
            .push(Write::SetEnabled(name.to_owned(), enabled));
        self.spend_write(self.path().join(name))?;
        self.with_entry(name, |entries, index| entries[index].enabled = enabled)
    }

    fn remove(&self, name: &str) -> Result<(), Error> {
        self.writes
            .borrow_mut()
            .push(Write::Remove(name.to_owned()));
        self.spend_write(self.path().join(name))?;
        self.with_entry(name, |entries, index| {
            entries.remove(index);
        })?;
        self.registrations.borrow_mut().remove(name);
        Ok(())
    }

    fn is_enabled(&self) -> Result<bool, Error> {
        Ok(!self.disabled.get())
    }

    fn registration_id(&self, name: &str) -> Result<Option<RegistrationId>, Error> {
        validate_name(name).map_err(|reason| Error::Invalid {
            name: name.to_owned(),
            reason,
        })?;
        Ok(self
            .registrations
            .borrow()
            .get(name)
            .map(|&number| RegistrationId {
                instance: 0,
                inode: number,
                created_ns: 0,
            }))
    }
}

/// A path under the fake mount, for building expected values in tests.
pub fn fake_path(name: &str) -> PathBuf {
    FakeTable::new().path().join(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{Flags, Matcher};

    fn registration(name: &str) -> Registration {
        Registration {
            name: name.to_owned(),
            matcher: Matcher::Extension("xyz".into()),
            interpreter: "/bin/true".into(),
            flags: Flags::NONE,
        }
    }

    #[test]
    fn registration_ids_behave_as_the_kernels() {
        let table = FakeTable::new();
        table.register(&registration("one")).unwrap();
        let first = table.registration_id("one").unwrap().unwrap();
        table.set_enabled("one", false).unwrap();
        assert_eq!(table.registration_id("one").unwrap(), Some(first));
        table.remove("one").unwrap();
        assert_eq!(table.registration_id("one").unwrap(), None);
        table.register(&registration("one")).unwrap();
        assert_ne!(table.registration_id("one").unwrap(), Some(first));
        table.insert(Entry {
            enabled: true,
            registration: registration("one"),
        });
        let inserted = table.registration_id("one").unwrap();
        assert!(inserted.is_some_and(|id| id.inode > first.inode));
    }
}
