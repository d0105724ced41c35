//! i386: `int 0x80` with the number in eax and arguments in ebx, ecx, edx.

use crate::arch::span::Span;
use crate::elf::{Class, Data, Format};

/// `EM_386`; no e_flags are defined for i386.
pub(super) const FORMAT: Format = Format {
    class: Class::Elf32,
    data: Data::Lsb,
    machine: 3,
    flags: 0,
};

/// `__NR_write` in arch/x86/entry/syscalls/syscall_32.tbl.
const NR_WRITE: u32 = 4;
/// `__NR_exit_group` in arch/x86/entry/syscalls/syscall_32.tbl.
const NR_EXIT_GROUP: u32 = 252;

/// `write(1, msg.addr, msg.len)`, falling through to what follows.
pub(super) fn write(msg: Span) -> Vec<u8> {
    let mut code = Vec::with_capacity(22);
    code.extend_from_slice(&[0xbb, 0x01, 0x00, 0x00, 0x00]); // mov ebx, 1
    code.push(0xb9); // mov ecx, imm32 (message address)
    code.extend_from_slice(&msg.addr.to_le_bytes());
    code.push(0xba); // mov edx, imm32 (message length)
    code.extend_from_slice(&msg.len.to_le_bytes());
    code.push(0xb8); // mov eax, imm32 (= 4, write)
    code.extend_from_slice(&NR_WRITE.to_le_bytes());
    code.extend_from_slice(&[0xcd, 0x80]); // int 0x80
    code
}

/// `exit_group(status)`.
pub(super) fn exit(status: u8) -> Vec<u8> {
    let mut code = Vec::with_capacity(12);
    code.push(0xbb); // mov ebx, imm32 (exit status)
    code.extend_from_slice(&u32::from(status).to_le_bytes());
    code.push(0xb8); // mov eax, imm32 (= 252, exit_group)
    code.extend_from_slice(&NR_EXIT_GROUP.to_le_bytes());
    code.extend_from_slice(&[0xcd, 0x80]); // int 0x80
    code
}
