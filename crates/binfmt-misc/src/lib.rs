//! The Linux binfmt_misc interface, and nothing else: no knowledge of QEMU.
//!
//! binfmt_misc lets the kernel run a binary through an interpreter chosen by the
//! binary's first bytes (its "magic") or its extension. Entries are created by writing
//! one line to `<mount>/register`, read back from `<mount>/<name>`, and enabled,
//! disabled or removed by writing `1`, `0` or `-1` to that file. See
//! [the kernel's documentation](https://docs.kernel.org/admin-guide/binfmt-misc.html).
//!
//! - [`entry`]: entries as plain data, the register-line encoder, the parser of entry
//!   files and their comparison. No system calls; unit tested.
//! - [`table`]: the [`Table`] trait and [`BinfmtMisc`], a real mount.
//! - [`model`]: the kernel's side modelled: how it reads a register line and prints
//!   an entry, for the fake table and the fuzz targets.
//! - [`fake`]: [`FakeTable`](fake::FakeTable), an in-memory table for tests.
//! - [`plan`]: compare what we want with what is there and apply the smallest change,
//!   converging when another process changes the same entry at the same time.
//! - [`lock`]: a bounded wait for a `flock(2)`, and who holds it (`/proc/locks`).
//! - [`report`]: how a failure is written for a person: what failed, each cause
//!   once, then `; fix: ` and what to do.
//! - [`persist`]: open binfmt_misc at its usual place so that registrations outlive
//!   this process (a container), or say that they would not.
//!
//! Architecture invariant: only this crate writes to binfmt_misc.

#![forbid(unsafe_code)]
// What is `pub` is the crate's API: an item only its own crate can reach says so.
#![deny(unreachable_pub)]

pub mod entry;
mod error;
pub mod fake;
#[doc(hidden)]
pub mod kill_point;
pub mod lock;
pub mod model;
pub mod persist;
pub mod plan;
pub mod report;
pub mod table;

pub use entry::{Difference, Entry, Flags, Matcher, Registration};
pub use error::Error;
pub use plan::{
    Change, STAGING_SUFFIX, apply, compare, converge, plan, remove_staging, staging_name_for,
    stands_in_for,
};
pub use table::{BINFMTFS_MAGIC, BinfmtMisc, DEFAULT_MOUNT, RegistrationId, Table, TableLock};
