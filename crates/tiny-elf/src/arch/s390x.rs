//! s390x: `svc n` carries the syscall number in the instruction when it is below 256
//! (both of ours are), arguments go in r2, r3, r4. Big-endian like the ELF fields;
//! instructions are 2, 4 or 6 bytes long and need only 2-byte alignment.

use crate::arch::span::Span;
use crate::elf::{Class, Data, Format};

/// `EM_S390`; no e_flags are defined for s390x.
pub(super) const FORMAT: Format = Format {
    class: Class::Elf64,
    data: Data::Msb,
    machine: 22,
    flags: 0,
};

/// `__NR_write` in arch/s390/kernel/syscalls/syscall.tbl.
const NR_WRITE: u8 = 4;
/// `__NR_exit_group` in arch/s390/kernel/syscalls/syscall.tbl.
const NR_EXIT_GROUP: u8 = 248;

/// `write(1, msg.addr, msg.len)`, falling through to what follows.
pub(super) fn write(msg: Span) -> Vec<u8> {
    let mut code = Vec::with_capacity(18);
    code.extend_from_slice(&[0xa7, 0x29, 0x00, 0x01]); // lghi %r2, 1
    code.extend_from_slice(&[0xc0, 0x3f]); // llilf %r3, imm32 (message address)
    code.extend_from_slice(&msg.addr.to_be_bytes());
    code.extend_from_slice(&[0xc0, 0x4f]); // llilf %r4, imm32 (message length)
    code.extend_from_slice(&msg.len.to_be_bytes());
    code.extend_from_slice(&[0x0a, NR_WRITE]); // svc 4
    code
}

/// `exit_group(status)`.
pub(super) fn exit(status: u8) -> Vec<u8> {
    let mut code = Vec::with_capacity(6);
    code.extend_from_slice(&[0xa7, 0x29, 0x00, status]); // lghi %r2, status
    code.extend_from_slice(&[0x0a, NR_EXIT_GROUP]); // svc 248
    code
}
