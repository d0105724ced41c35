//! mips64 and mips64el, n64 ABI: `syscall` with the number in v0 ($2) and arguments in
//! a0..a2 ($4..$6). n64 syscall numbers are the kernel's table offset by 5000.
//!
//! The code has no branch or jump, so there is no delay slot to fill. I-type
//! instructions carry a 16-bit immediate in the low half-word; a 32-bit constant is
//! `lui` (shifted, sign-extended) plus `ori` (zero-extended). The same words serve both
//! byte orders: only their serialization differs.

use crate::arch::span::Span;
use crate::elf::{Class, Data, Format};

/// `EF_MIPS_ARCH_64R2`. The ABI bits stay zero: that (with ELFCLASS64) means n64, and
/// both QEMU (`elf_check_abi`) and the kernel refuse a 64-bit file with
/// `EF_MIPS_ABI2` (n32) set. Every instruction used exists since MIPS III, so any
/// 64-bit CPU model runs it.
const FLAGS: u32 = 0x8000_0000;
/// `EM_MIPS`.
const EM_MIPS: u16 = 8;

/// Big-endian mips64.
pub(super) const FORMAT_BE: Format = Format {
    class: Class::Elf64,
    data: Data::Msb,
    machine: EM_MIPS,
    flags: FLAGS,
};

/// Little-endian mips64el.
pub(super) const FORMAT_EL: Format = Format {
    class: Class::Elf64,
    data: Data::Lsb,
    machine: EM_MIPS,
    flags: FLAGS,
};

/// `write(1, msg.addr, msg.len)`, falling through to what follows.
pub(super) fn write(msg: Span) -> Vec<u32> {
    vec![
        0x3404_0001,                       // ori $a0, $zero, 1
        0x3c05_0000 | msg.addr >> 16,      // lui $a1, addr >> 16
        0x34a5_0000 | (msg.addr & 0xffff), // ori $a1, $a1, addr & 0xffff
        0x3c06_0000 | msg.len >> 16,       // lui $a2, len >> 16
        0x34c6_0000 | (msg.len & 0xffff),  // ori $a2, $a2, len & 0xffff
        0x3402_1389,                       // ori $v0, $zero, 5001 (write)
        0x0000_000c,                       // syscall
    ]
}

/// `exit_group(status)`.
pub(super) fn exit(status: u8) -> Vec<u32> {
    vec![
        0x3404_0000 | u32::from(status), // ori $a0, $zero, status
        0x3402_1455,                     // ori $v0, $zero, 5205 (exit_group)
        0x0000_000c,                     // syscall
    ]
}
