//! What binfmt knows about QEMU: the architectures (names, magic, mask), the pinned
//! emulators embedded in this binary and how one is decoded, and what each
//! architecture's probe proves. Where an emulator is then put is `interpreter-files`'
//! job.
//!
//! - [`arch`]: [`Arch`], every usual spelling of an architecture, and
//!   [`parse_list`](arch::parse_list) for `--install` lists.
//! - [`emulator`]: [`Emulator`], the embedded blobs, decompressed with their size and
//!   sha256 checked against the pin (`qemu-blobs/pins.toml`).
//! - [`exit_status`]: the execution probe of each architecture (a tiny program from
//!   `tiny-elf`) and what its exit status proves.
//!
//! This crate builds on `binfmt-misc` only for its `Matcher` type; it never writes to
//! binfmt_misc and opens no file.

#![forbid(unsafe_code)]
// What is `pub` is the crate's API: an item only its own crate can reach says so.
#![deny(unreachable_pub)]

pub mod arch;
pub mod emulator;
pub mod exit_status;

pub use arch::{Arch, ListError, Selection, UnknownArch, parse_list};
pub use emulator::Emulator;
pub use exit_status::{Probe, Proof};
