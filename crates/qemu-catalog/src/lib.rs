//! What binfmt knows about QEMU: the architectures (names, magic, mask), the pinned
//! emulators embedded in this binary, and how an emulator is put where the kernel can
//! open it.
//!
//! - [`arch`]: [`Arch`], every usual spelling of an architecture, and
//!   [`parse_list`](arch::parse_list) for `--install` lists.
//! - [`emulator`]: [`Emulator`], the embedded blobs, decompressed with their size and
//!   sha256 checked against the pin (`qemu-blobs/pins.toml`).
//! - [`interpreter`]: writing an emulator to a directory on disk (atomically, named by
//!   digest) or to a sealed memfd.
//! - [`exit_status`]: the execution probe of each architecture (a tiny program from
//!   `tiny-elf`) and what its exit status proves.
//! - [`secure_dir`]: checking that only root can change that directory and every
//!   directory above it.
//!
//! This crate builds on `binfmt-misc` only for its `Matcher` type (and the debug-only
//! kill points of the crash tests); it never writes to binfmt_misc itself.

pub mod arch;
pub mod emulator;
pub mod exit_status;
pub mod interpreter;
mod mapping;
pub mod secure_dir;
mod verified;

pub use arch::{Arch, ListError, Selection, UnknownArch, parse_list};
pub use emulator::Emulator;
pub use exit_status::{Probe, Proof};
