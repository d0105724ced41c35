//! Per-architecture ELF identity and machine code.
//!
//! Each submodule knows, for one architecture, the ELF header fields its executables
//! carry ([`Format`]) and two straight-line instruction sequences, without branches:
//! `write(1, addr, len)` and `exit_group(status)`. The Linux syscall numbers come from
//! the kernel's syscall tables for that ABI and were confirmed by running every program
//! under `qemu-<cpu> -strace`.
//!
//! Instructions are written as encodings with the assembly beside them. The encodings
//! were produced with `llvm-mc -show-encoding` (LLVM 14; LLVM 16 for LoongArch) for
//! concrete operands; where an operand varies (message address and length, exit
//! status), the constant is the encoding with that field zero and the operand is ORed
//! into the field, as the comment shows. The programs were then disassembled again with
//! `llvm-mc --disassemble` and run under Debian's qemu-user; the tests in
//! `tests/golden.rs` pin the resulting bytes.
//!
//! Addresses and lengths are below 2^31 (see [`crate::MAX_MESSAGE_LEN`]), which lets
//! every architecture build them with a sign-extending "load upper" instruction.

mod aarch64;
mod arm;
mod i386;
mod loongarch64;
mod mips64;
mod ppc64le;
mod riscv64;
mod s390x;
mod span;
mod x86_64;

use crate::elf::{Data, Format};
use crate::machine::Machine;

pub(crate) use span::Span;

pub(crate) use x86_64::level_probe as x86_64_level_probe;

/// How an architecture's code is produced.
enum Code {
    /// Variable-length instructions, already in memory order (x86, s390x).
    Bytes {
        /// Generates `write(1, addr, len)`.
        write: fn(Span) -> Vec<u8>,
        /// Generates `exit_group(status)`.
        exit: fn(u8) -> Vec<u8>,
    },
    /// Fixed 32-bit instruction words, stored in the ELF file's byte order.
    Words {
        /// Generates `write(1, addr, len)`.
        write: fn(Span) -> Vec<u32>,
        /// Generates `exit_group(status)`.
        exit: fn(u8) -> Vec<u32>,
    },
}

/// Everything needed to build executables for one [`Machine`].
pub(crate) struct Target {
    /// The ELF header fields of this architecture.
    pub(crate) format: Format,
    /// The instruction generators.
    code: Code,
}

impl Target {
    /// Code for `write(1, span.addr, span.len)`; execution falls through to what follows.
    pub(crate) fn write(&self, span: Span) -> Vec<u8> {
        match self.code {
            Code::Bytes { write, .. } => write(span),
            Code::Words { write, .. } => self.serialize(&write(span)),
        }
    }

    /// Code for `exit_group(status)`: the end of every program.
    pub(crate) fn exit(&self, status: u8) -> Vec<u8> {
        match self.code {
            Code::Bytes { exit, .. } => exit(status),
            Code::Words { exit, .. } => self.serialize(&exit(status)),
        }
    }

    /// Stores instruction words in the ELF file's byte order.
    fn serialize(&self, words: &[u32]) -> Vec<u8> {
        words
            .iter()
            .flat_map(|w| match self.format.data {
                Data::Lsb => w.to_le_bytes(),
                Data::Msb => w.to_be_bytes(),
            })
            .collect()
    }
}

/// The table: ELF identity and code generators of every supported machine.
pub(crate) fn of(machine: Machine) -> Target {
    let (format, code) = match machine {
        Machine::X86_64 => (
            x86_64::FORMAT,
            Code::Bytes {
                write: x86_64::write,
                exit: x86_64::exit,
            },
        ),
        Machine::I386 => (
            i386::FORMAT,
            Code::Bytes {
                write: i386::write,
                exit: i386::exit,
            },
        ),
        Machine::S390x => (
            s390x::FORMAT,
            Code::Bytes {
                write: s390x::write,
                exit: s390x::exit,
            },
        ),
        Machine::Aarch64 => (
            aarch64::FORMAT,
            Code::Words {
                write: aarch64::write,
                exit: aarch64::exit,
            },
        ),
        Machine::Arm => (
            arm::FORMAT,
            Code::Words {
                write: arm::write,
                exit: arm::exit,
            },
        ),
        Machine::Riscv64 => (
            riscv64::FORMAT,
            Code::Words {
                write: riscv64::write,
                exit: riscv64::exit,
            },
        ),
        Machine::Ppc64le => (
            ppc64le::FORMAT,
            Code::Words {
                write: ppc64le::write,
                exit: ppc64le::exit,
            },
        ),
        Machine::Mips64el => (
            mips64::FORMAT_EL,
            Code::Words {
                write: mips64::write,
                exit: mips64::exit,
            },
        ),
        Machine::Mips64 => (
            mips64::FORMAT_BE,
            Code::Words {
                write: mips64::write,
                exit: mips64::exit,
            },
        ),
        Machine::Loongarch64 => (
            loongarch64::FORMAT,
            Code::Words {
                write: loongarch64::write,
                exit: loongarch64::exit,
            },
        ),
    };
    Target { format, code }
}
