//! ppc64le: `sc` with the number in r0 and arguments in r3, r4, r5.
//!
//! D-form instructions carry a 16-bit immediate in the low half-word; a 32-bit constant
//! is `lis` (shifted, sign-extended) plus `ori` (zero-extended).

use crate::arch::span::Span;
use crate::elf::{Class, Data, Format};

/// `EM_PPC64` with e_flags 2: ELFv2 ABI. With ELFv1 flags (0 or 1) QEMU and the
/// kernel treat `e_entry` as the address of a function descriptor, not of code
/// (QEMU 7.2 then dies with SIGSEGV: checked).
pub(super) const FORMAT: Format = Format {
    class: Class::Elf64,
    data: Data::Lsb,
    machine: 21,
    flags: 2,
};

/// `write(1, msg.addr, msg.len)`, falling through to what follows.
pub(super) fn write(msg: Span) -> Vec<u32> {
    vec![
        0x3860_0001,                       // li 3, 1
        0x3c80_0000 | msg.addr >> 16,      // lis 4, addr >> 16
        0x6084_0000 | (msg.addr & 0xffff), // ori 4, 4, addr & 0xffff
        0x3ca0_0000 | msg.len >> 16,       // lis 5, len >> 16
        0x60a5_0000 | (msg.len & 0xffff),  // ori 5, 5, len & 0xffff
        0x3800_0004,                       // li 0, 4 (write)
        0x4400_0002,                       // sc
    ]
}

/// `exit_group(status)`.
pub(super) fn exit(status: u8) -> Vec<u32> {
    vec![
        0x3860_0000 | u32::from(status), // li 3, status
        0x3800_00ea,                     // li 0, 234 (exit_group)
        0x4400_0002,                     // sc
    ]
}
