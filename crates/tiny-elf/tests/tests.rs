//! Integration tests of tiny-elf, through its public API only.
//!
//! - `structure`: every program's ELF header and program header, parsed here
//!   independently of the crate's writer, for every machine.
//! - `binfmt`: every program matches its own binfmt_misc magic/mask and no other.
//! - `golden`: the machine code for one fixed program, compared with bytes assembled
//!   by `llvm-mc`; this pins which address, length and status the code uses.
//! - `native`: the x86_64 and i386 programs, actually run on this machine, and the
//!   x86_64 level probe against the kernel's /proc/cpuinfo flags.
//!
//! The other architectures are run through registered emulators by the workspace's
//! integration tests; nothing here needs qemu.

// Test code: an unwrap is how a test says "this cannot fail here" (the workspace
// denies clippy::unwrap_used in product code only).
#![allow(clippy::unwrap_used)]

mod binfmt;
mod cpu_level;
mod golden;
mod native;
mod structure;
mod util;
