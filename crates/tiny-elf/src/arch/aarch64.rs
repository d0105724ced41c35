//! aarch64: `svc #0` with the number in x8 and arguments in x0, x1, x2 (the generic
//! syscall table shared with riscv64 and loongarch64).
//!
//! `movz`/`movk` take a 16-bit immediate in bits 20..5 and the register in bits 4..0.

use crate::arch::span::Span;
use crate::elf::{Class, Data, Format};

/// `EM_AARCH64`; the AArch64 ELF ABI defines no e_flags.
pub(super) const FORMAT: Format = Format {
    class: Class::Elf64,
    data: Data::Lsb,
    machine: 183,
    flags: 0,
};

/// `movz <reg>, #imm16` with x0 as register and 0 as immediate.
const MOVZ: u32 = 0xd280_0000;
/// `movk <reg>, #imm16, lsl #16` with x0 as register and 0 as immediate.
const MOVK_16: u32 = 0xf2a0_0000;
/// Register x0, for the `Rd` field.
const X0: u32 = 0;
/// Register x1, for the `Rd` field.
const X1: u32 = 1;
/// Register x2, for the `Rd` field.
const X2: u32 = 2;

/// The low 16 bits of `v` in the `imm16` field.
fn imm16(v: u32) -> u32 {
    (v & 0xffff) << 5
}

/// `write(1, msg.addr, msg.len)`, falling through to what follows.
pub(super) fn write(msg: Span) -> Vec<u32> {
    vec![
        0xd280_0020,                          // movz x0, #1
        MOVZ | imm16(msg.addr) | X1,          // movz x1, #(addr & 0xffff)
        MOVK_16 | imm16(msg.addr >> 16) | X1, // movk x1, #(addr >> 16), lsl #16
        MOVZ | imm16(msg.len) | X2,           // movz x2, #(len & 0xffff)
        MOVK_16 | imm16(msg.len >> 16) | X2,  // movk x2, #(len >> 16), lsl #16
        0xd280_0808,                          // movz x8, #64 (write)
        0xd400_0001,                          // svc #0
    ]
}

/// `exit_group(status)`.
pub(super) fn exit(status: u8) -> Vec<u32> {
    vec![
        MOVZ | imm16(status.into()) | X0, // movz x0, #status
        0xd280_0bc8,                      // movz x8, #94 (exit_group)
        0xd400_0001,                      // svc #0
    ]
}
