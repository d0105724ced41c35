//! Reversible filters that make a static-PIE ELF executable compress better, in the
//! spirit of xz's branch filters: applied to an emulator before it is compressed
//! ([`filter`]), undone after it is decoded ([`unfilter`]).
//!
//! Debian's qemu-user emulators are static-PIE executables. Each carries ~100,000
//! dynamic relocations (`Elf64_Rela`, 24 bytes each: 2.3 to 2.6 MB), one per pointer in
//! its data. Their offsets ascend in small steps, and on x86_64, aarch64 and s390x each
//! addend is the very value the linker already wrote at its offset (on riscv64 that
//! place holds zero). As stored, they are the second largest cost of every patch
//! against the reference emulator (~150 KB of ~730 KB on s390x): shared code sits at a
//! different address in every emulator, so almost every entry differs. Two filters:
//!
//! - **Relocations**: every entry becomes (offset − previous offset, info, a − previous
//!   a), where a is the addend less the value at its offset when that offset lies in
//!   the one writable segment. On x86_64, aarch64 and s390x nearly every entry becomes
//!   (16 or 8, RELATIVE, 0); on riscv64 the addends become steps between neighbouring
//!   pointers.
//! - **Unwind search table**: `.eh_frame_hdr`'s sorted table of (function, FDE) pairs
//!   becomes the steps between neighbours, the sizes of functions and FDEs, which are
//!   the same in every emulator for the code they share.
//!
//! Executables that are not position-independent (ppc64le's emulators) have neither
//! the relocations nor the table: nothing changes there. What the filters save is
//! measured in xtask's `blob` module, which applies them.
//!
//! Both filters leave the ELF header, the program headers, the dynamic section and
//! every byte a relocation points at as they are, so [`Layout::find`] finds the same
//! [`Layout`] in the original and in the filtered bytes, and undoing needs nothing but
//! the filtered bytes and that layout. Only the two ranges of [`Layout::filtered`]
//! change. Decoders that write their output out as it comes hold those ranges back
//! until every part is decoded; [`unfilter`] takes the decoded bytes as [`Piece`]s for
//! that reason (the parts of an emulator may sit in separate buffers).
//!
//! The crate has no dependencies and does no I/O.

#![forbid(unsafe_code)]
// What is `pub` is the crate's API: an item only its own crate can reach says so.
#![deny(unreachable_pub)]

mod byte_order;
mod filter;
mod layout;

pub use filter::{Error, Piece, filter, unfilter, unfilter_in_place};
pub use layout::{Layout, Span};
