//! Putting the catalog's emulators where the kernel can open them: a file in a
//! directory on disk that only root can change, or, when the filesystem is read-only
//! or on FUSE, a sealed memfd.
//!
//! Registered with flag F, the kernel opens the interpreter once, at registration, and
//! keeps it open: the entry then works in every mount namespace and keeps working
//! after the file is gone (a container that wrote it exits). A file on disk stays
//! reclaimable page cache; a memfd (or a file on tmpfs) pins its ~15 MB in RAM for as
//! long as the entry exists, so disk is preferred.
//!
//! - [`dir`]: [`InterpreterDir`], the API: check, write, and keep state files.
//! - [`secure_dir`]: walking a directory from `/` and refusing one others could change.
//! - [`chosen`]: an emulator file a user names instead of binfmt's, checked the same way.
//! - `file_state`, `verified`: what a file on disk is, and the record that spares
//!   hashing it again.
//! - `write`, `memfd`: writing emulators to files and to sealed memfds.
//! - `unused`: removing the emulator files no entry uses.
//! - `decode`, `mapping`, `threads`: decoding on every core into the memory those
//!   choose (every `unsafe` of the crate is in `mapping`), with threads that are gone
//!   when the work returns.
//!
//! What an emulator *is* (its bytes, pin and decoder) is `qemu-catalog`'s; this crate
//! never writes to binfmt_misc.

// What is `pub` is the crate's API: an item only its own crate can reach says so.
#![deny(unreachable_pub)]

pub mod chosen;
mod decode;
pub mod dir;
mod error;
mod file_names;
mod file_state;
mod interpreter;
// The mmap(2) and madvise(2) wrappers: the one module of the crate with unsafe code.
#[allow(unsafe_code)]
mod mapping;
mod memfd;
pub mod secure_dir;
#[cfg(test)]
mod testing;
mod threads;
mod unused;
mod verified;
mod write;

pub use dir::{Ensured, FUSE_SUPER_MAGIC, InterpreterDir};
pub use error::Error;
pub use file_names::{STATE_PREFIX, file_name, is_emulator_file_name};
pub use file_state::{FileProblem, FileState};
pub use interpreter::{Interpreter, is_memfd_path};
pub use memfd::{write_memfd, write_memfds};
pub use unused::{Keep, Removed};
