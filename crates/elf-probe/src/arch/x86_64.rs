//! x86_64: `syscall` with the number in eax and arguments in edi, esi, edx.
//!
//! Writing a 32-bit register zero-extends into the 64-bit one, so `mov r32, imm32`
//! (5 bytes) loads any address below 4 GiB.

use crate::arch::Span;
use crate::elf::{Class, Data, Format};

/// `EM_X86_64`; no e_flags are defined for x86_64.
pub(super) const FORMAT: Format = Format {
    class: Class::Elf64,
    data: Data::Lsb,
    machine: 62,
    flags: 0,
};

/// `__NR_write` in arch/x86/entry/syscalls/syscall_64.tbl.
const NR_WRITE: u32 = 1;
/// `__NR_exit_group` in arch/x86/entry/syscalls/syscall_64.tbl.
const NR_EXIT_GROUP: u32 = 231;

/// `write(1, msg.addr, msg.len)`, falling through to what follows.
pub(super) fn write(msg: Span) -> Vec<u8> {
    let mut code = Vec::with_capacity(22);
    code.extend_from_slice(&[0xbf, 0x01, 0x00, 0x00, 0x00]); // mov edi, 1
    code.push(0xbe); // mov esi, imm32 (message address)
    code.extend_from_slice(&msg.addr.to_le_bytes());
    code.push(0xba); // mov edx, imm32 (message length)
    code.extend_from_slice(&msg.len.to_le_bytes());
    code.push(0xb8); // mov eax, imm32 (= 1, write)
    code.extend_from_slice(&NR_WRITE.to_le_bytes());
    code.extend_from_slice(&[0x0f, 0x05]); // syscall
    code
}

/// `exit_group(status)`.
pub(super) fn exit(status: u8) -> Vec<u8> {
    let mut code = Vec::with_capacity(12);
    code.push(0xbf); // mov edi, imm32 (exit status)
    code.extend_from_slice(&u32::from(status).to_le_bytes());
    code.push(0xb8); // mov eax, imm32 (= 231, exit_group)
    code.extend_from_slice(&NR_EXIT_GROUP.to_le_bytes());
    code.extend_from_slice(&[0x0f, 0x05]); // syscall
    code
}
