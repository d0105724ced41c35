//! loongarch64: `syscall 0` with the number in a7 and arguments in a0, a1, a2 (the
//! generic syscall table).
//!
//! A 32-bit constant is `lu12i.w` (a 20-bit immediate in bits 24..5, shifted left by
//! 12 and sign-extended) plus `ori` (a zero-extended 12-bit immediate in bits 21..10).

use crate::arch::span::Span;
use crate::elf::{Class, Data, Format};

/// `EM_LOONGARCH` with `EF_LOONGARCH_ABI_DOUBLE_FLOAT | EF_LOONGARCH_OBJABI_V1`
/// (0x3 | 0x40): the lp64d ABI that GCC and LLVM record for Linux executables.
pub(super) const FORMAT: Format = Format {
    class: Class::Elf64,
    data: Data::Lsb,
    machine: 258,
    flags: 0x43,
};

/// The low 12 bits of `v` in the `ui12` field of `ori`.
fn imm12(v: u32) -> u32 {
    (v & 0xfff) << 10
}

/// The low 20 bits of `v` in the `si20` field of `lu12i.w`.
fn imm20(v: u32) -> u32 {
    (v & 0xf_ffff) << 5
}

/// `write(1, msg.addr, msg.len)`, falling through to what follows.
pub(super) fn write(msg: Span) -> Vec<u32> {
    vec![
        0x0380_0404,                         // ori $a0, $zero, 1
        0x1400_0005 | imm20(msg.addr >> 12), // lu12i.w $a1, addr >> 12
        0x0380_00a5 | imm12(msg.addr),       // ori $a1, $a1, addr & 0xfff
        0x1400_0006 | imm20(msg.len >> 12),  // lu12i.w $a2, len >> 12
        0x0380_00c6 | imm12(msg.len),        // ori $a2, $a2, len & 0xfff
        0x0381_000b,                         // ori $a7, $zero, 64 (write)
        0x002b_0000,                         // syscall 0
    ]
}

/// `exit_group(status)`.
pub(super) fn exit(status: u8) -> Vec<u32> {
    vec![
        0x0380_0004 | imm12(status.into()), // ori $a0, $zero, status
        0x0381_780b,                        // ori $a7, $zero, 94 (exit_group)
        0x002b_0000,                        // syscall 0
    ]
}
