//! riscv64: `ecall` with the number in a7 and arguments in a0, a1, a2 (the generic
//! syscall table).
//!
//! A 32-bit constant is `lui` (upper 20 bits, bits 31..12 of the instruction) plus
//! `addiw` (a signed 12-bit immediate, bits 31..20), so the upper part is rounded up
//! when bit 11 of the value is set. Only RV64I instructions: no compressed ones.

use crate::arch::span::Span;
use crate::elf::{Class, Data, Format};

/// `EM_RISCV` with `EF_RISCV_FLOAT_ABI_DOUBLE` (0x4), the lp64d ABI of every Linux
/// distribution. `EF_RISCV_RVC` (0x1) is not set because no compressed instruction
/// is used.
pub(super) const FORMAT: Format = Format {
    class: Class::Elf64,
    data: Data::Lsb,
    machine: 243,
    flags: 0x0004,
};

/// `lui rd, 0` with rd = zero; rd is in bits 11..7.
const LUI: u32 = 0x0000_0037;
/// `addiw rd, rs1, 0` with rd = rs1 = zero; rs1 is in bits 19..15.
const ADDIW: u32 = 0x0000_001b;
/// Register a1 (x11).
const A1: u32 = 11;
/// Register a2 (x12).
const A2: u32 = 12;

/// `lui rd, %hi(v); addiw rd, rd, %lo(v)`.
fn load32(rd: u32, v: u32) -> [u32; 2] {
    let hi = (v.wrapping_add(0x800) >> 12) & 0xf_ffff;
    let lo = v & 0xfff; // the two's complement of %lo(v), which is v - (hi << 12)
    [
        LUI | hi << 12 | rd << 7,              // lui rd, %hi(v)
        ADDIW | lo << 20 | rd << 15 | rd << 7, // addiw rd, rd, %lo(v)
    ]
}

/// `write(1, msg.addr, msg.len)`, falling through to what follows.
pub(super) fn write(msg: Span) -> Vec<u32> {
    let mut code = vec![0x0010_0513]; // addi a0, zero, 1
    code.extend(load32(A1, msg.addr));
    code.extend(load32(A2, msg.len));
    code.extend([
        0x0400_0893, // addi a7, zero, 64 (write)
        0x0000_0073, // ecall
    ]);
    code
}

/// `exit_group(status)`.
pub(super) fn exit(status: u8) -> Vec<u32> {
    vec![
        0x0000_0513 | u32::from(status) << 20, // addi a0, zero, status
        0x05e0_0893,                           // addi a7, zero, 94 (exit_group)
        0x0000_0073,                           // ecall
    ]
}
