//! arm (32-bit, EABI, A32 instruction set): `svc #0` with the number in r7 and
//! arguments in r0, r1, r2.
//!
//! Only ARMv4 instructions are used: `movw`/`movt` would need ARMv6T2 and this probe
//! must also run on ARMv6 (linux/arm/v6). A 32-bit constant is therefore assembled
//! byte by byte with `mov` and three `orr`s, each taking an 8-bit immediate rotated
//! right by twice the 4-bit rotation field (bits 11..8).

use crate::arch::span::Span;
use crate::elf::{Class, Data, Format};

/// `EM_ARM` with `EF_ARM_EABI_VER5` (0x05000000), what every EABI toolchain writes.
/// arm64 kernels run 32-bit programs only with an EABI version set
/// (`compat_elf_check_arch`); QEMU itself accepts any flags. No float-ABI bit: the
/// code uses no floating point.
pub(super) const FORMAT: Format = Format {
    class: Class::Elf32,
    data: Data::Lsb,
    machine: 40,
    flags: 0x0500_0000,
};

/// `mov rd, #imm` with rd = r0, immediate 0; rd is in bits 15..12.
const MOV: u32 = 0xe3a0_0000;
/// `orr rd, rn, #imm` with rd = rn = r0, immediate 0; rn is in bits 19..16.
const ORR: u32 = 0xe380_0000;

/// `mov rd, #byte0; orr rd, rd, #byte1 << 8; orr rd, rd, #byte2 << 16;
/// orr rd, rd, #byte3 << 24`: four instructions whatever the value.
fn load32(rd: u32, v: u32) -> [u32; 4] {
    // Byte k is `imm8 ror (2 * rot)` with rot = 16 - 4k (mod 16): 0, 12, 8, 4.
    let lane = |k: u32| ((16 - 4 * k) % 16) << 8 | (v >> (8 * k)) & 0xff;
    [
        MOV | rd << 12 | lane(0),            // mov rd, #(v & 0xff)
        ORR | rd << 16 | rd << 12 | lane(1), // orr rd, rd, #(v & 0xff00)
        ORR | rd << 16 | rd << 12 | lane(2), // orr rd, rd, #(v & 0xff0000)
        ORR | rd << 16 | rd << 12 | lane(3), // orr rd, rd, #(v & 0xff000000)
    ]
}

/// `write(1, msg.addr, msg.len)`, falling through to what follows.
pub(super) fn write(msg: Span) -> Vec<u32> {
    let mut code = vec![0xe3a0_0001]; // mov r0, #1
    code.extend(load32(1, msg.addr)); // r1 = message address
    code.extend(load32(2, msg.len)); // r2 = message length
    code.extend([
        0xe3a0_7004, // mov r7, #4 (write)
        0xef00_0000, // svc #0
    ]);
    code
}

/// `exit_group(status)`.
pub(super) fn exit(status: u8) -> Vec<u32> {
    vec![
        MOV | u32::from(status), // mov r0, #status
        0xe3a0_70f8,             // mov r7, #248 (exit_group)
        0xef00_0000,             // svc #0
    ]
}
