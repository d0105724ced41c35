//! Tiny static ELF executables for every architecture `binfmt` registers, built from
//! a handful of hand-encoded instructions.
//!
//! Registering an emulator with binfmt_misc proves nothing until a foreign program
//! actually runs through it. This crate makes such programs on the fly, with no
//! cross toolchain and no checked-in binaries: [`hello`] writes a message to stdout and
//! exits with a chosen status, so a test can check both; [`exit_with`] only exits, the
//! smallest possible execution probe (the role of buildkit's per-architecture detection
//! programs), meant to be run in an empty chroot where nothing but an `F` registration
//! can serve it. [`x86_64_level`] is the x86_64 probe that also reports the CPU's
//! microarchitecture level (x86-64-v1 to v4) in its exit status, as buildkit's does.
//!
//! Every program is one `PT_LOAD` segment mapping the whole file (ELF header, program
//! header, message, code) read+execute at a fixed address; see the `elf` module. The
//! per-architecture ELF identity (class, byte order, `e_machine`, `e_flags`), syscall
//! numbers and instruction encodings live in one module per architecture under `arch`.
//! Programs are tiny: `exit_with` is 96 to 132 bytes, `hello` adds the message and
//! 18 to 44 bytes of code for the write.
//!
//! The crate has no dependencies and does no I/O: it returns bytes.

#![forbid(unsafe_code)]
// What is `pub` is the crate's API: an item only its own crate can reach says so.
#![deny(unreachable_pub)]

mod arch;
mod elf;
mod machine;

pub use machine::Machine;

/// The longest message [`hello`] accepts: 1 MiB.
///
/// Far more than any probe needs, and small enough that every address in the program
/// stays below 2^31, which the instruction sequences rely on.
pub const MAX_MESSAGE_LEN: usize = 1 << 20;

/// Instructions start at a multiple of this file offset (and virtual address): the
/// strictest alignment among our architectures (fixed 4-byte instructions).
const CODE_ALIGN: usize = 4;

/// A static ELF executable that writes `message` to fd 1 with one write(2) and then
/// exits with `status` (exit_group).
///
/// The program ignores write's result, so it exits with `status` even when stdout is
/// closed or the write is short.
///
/// # Panics
///
/// If `message` is longer than [`MAX_MESSAGE_LEN`].
pub fn hello(machine: Machine, message: &[u8], status: u8) -> Vec<u8> {
    assert!(
        message.len() <= MAX_MESSAGE_LEN,
        "message of {} bytes is longer than the {MAX_MESSAGE_LEN} bytes tiny-elf supports",
        message.len()
    );
    build(machine, Some(message), status)
}

/// A static ELF executable that only exits with `status` (exit_group): the smallest
/// probe.
pub fn exit_with(machine: Machine, status: u8) -> Vec<u8> {
    build(machine, None, status)
}

/// The exit status of [`x86_64_level`] is this plus the level: 65 for x86-64-v1, 66
/// for v2, 67 for v3, 68 for v4 (buildkit's amd64 probe uses 65 and 66 the same way).
pub const X86_64_LEVEL_STATUS_BASE: u8 = 64;

/// A static x86_64 executable that exits with [`X86_64_LEVEL_STATUS_BASE`] plus the
/// highest x86-64 microarchitecture level (psABI x86-64-v1 to v4) of the CPU that runs
/// it, native or emulated: CPUID features, and for v3 and v4 also whether the kernel
/// saves the AVX and AVX-512 register state (XGETBV).
///
/// One program, one run: the level is in the status, rather than one program per
/// level that exits 0 or not. About 350 bytes.
pub fn x86_64_level() -> Vec<u8> {
    let arch = arch::of(Machine::X86_64);
    let headers_len = arch.format.headers_len();
    let code_offset = headers_len.next_multiple_of(CODE_ALIGN);
    let mut body = vec![0; code_offset - headers_len];
    body.extend(arch::x86_64_level_probe());
    elf::executable(&arch.format, &body, code_offset)
}

/// Lays out `[headers][message][padding][code]` and writes the file. Without a
/// message the code is only the exit.
fn build(machine: Machine, message: Option<&[u8]>, status: u8) -> Vec<u8> {
    let arch = arch::of(machine);
    let message_offset = arch.format.headers_len();
    let message_bytes = message.unwrap_or_default();

    let mut body = message_bytes.to_vec();
    let code_offset = (message_offset + body.len()).next_multiple_of(CODE_ALIGN);
    body.resize(code_offset - message_offset, 0);
    if message.is_some() {
        let len = u32::try_from(message_bytes.len()).expect("bounded by MAX_MESSAGE_LEN");
        body.extend(arch.write(arch::Span {
            addr: elf::vaddr(message_offset),
            len,
        }));
    }
    body.extend(arch.exit(status));
    elf::executable(&arch.format, &body, code_offset)
}
