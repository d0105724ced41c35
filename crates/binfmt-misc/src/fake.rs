//! [`FakeTable`]: an in-memory binfmt_misc table that behaves like the kernel's, for
//! testing the logic above the kernel layer without privileges.
//!
//! It applies the kernel's rules (validation, EEXIST on a taken name, `C` implies `O`)
//! and records every write, so a test can assert that a second identical run writes
//! nothing.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::entry::{Entry, Registration, validate_name};
use crate::error::Error;
use crate::table::Table;

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
}

impl FakeTable {
    /// An empty table.
    pub fn new() -> FakeTable {
        FakeTable::default()
    }

    /// Puts an entry in place as if another tool had registered it; not recorded as a
    /// write.
    pub fn insert(&self, entry: Entry) {
        let mut entries = self.entries.borrow_mut();
        entries.retain(|e| e.registration.name != entry.registration.name);
        entries.push(entry);
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
        Ok(self
            .entries
            .borrow()
            .iter()
            .map(|e| e.registration.name.clone())
            .collect())
    }

    fn read_entry(&self, name: &str) -> Result<Option<Entry>, Error> {
        validate_name(name).map_err(|reason| Error::Invalid {
            name: name.to_owned(),
            reason,
        })?;
        Ok(self
            .entries
            .borrow()
            .iter()
            .find(|e| e.registration.name == name)
            .cloned())
    }

    fn register(&self, registration: &Registration) -> Result<(), Error> {
        let name = &registration.name;
        registration
            .register_line()
            .map_err(|reason| Error::Invalid {
                name: name.clone(),
                reason,
            })?;
        self.writes.borrow_mut().push(Write::Register(name.clone()));
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
        let mut stored = registration.clone();
        stored.flags = stored.flags.normalized();
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
        self.with_entry(name, |entries, index| entries[index].enabled = enabled)
    }

    fn remove(&self, name: &str) -> Result<(), Error> {
        self.writes
            .borrow_mut()
            .push(Write::Remove(name.to_owned()));
        self.with_entry(name, |entries, index| {
            entries.remove(index);
        })
    }

    fn is_enabled(&self) -> Result<bool, Error> {
        Ok(!self.disabled.get())
    }
}

/// A path under the fake mount, for building expected values in tests.
pub fn fake_path(name: &str) -> PathBuf {
    FakeTable::new().path().join(name)
}
