//! The machine code of one fixed program per architecture, byte for byte.
//!
//! The program is `hello(machine, &[b'x'; 0x12abc], 255)`. The message starts right
//! after the headers, at 0x400078 (ELF64) or 0x400054 (ELF32). The length 0x12abc
//! exercises both halves of every split immediate and the riscv64 `%hi` rounding
//! (bit 11 is set), and status 255 the full width of the status field.
//!
//! The expected bytes were produced by assembling the listed instructions with
//! `llvm-mc -show-encoding` (LLVM 14; LLVM 16 for loongarch64) and were also run under
//! qemu-user. Since nothing here was derived from the crate's code, a wrong field, a
//! wrong register or a wrong byte order shows up as a mismatch.

use crate::util::{Elf, unhex};
use tiny_elf::{Machine, hello};

const MESSAGE_LEN: usize = 0x12abc;
const STATUS: u8 = 255;

/// (machine, code from the entry point to the end of the file, as hex).
const GOLDEN: [(Machine, &str); 10] = [
    (
        Machine::X86_64,
        // mov edi, 1; mov esi, 0x400078; mov edx, 0x12abc; mov eax, 1; syscall
        // mov edi, 255; mov eax, 231; syscall
        "bf01000000 be78004000 babc2a0100 b801000000 0f05 \
         bfff000000 b8e7000000 0f05",
    ),
    (
        Machine::I386,
        // mov ebx, 1; mov ecx, 0x400054; mov edx, 0x12abc; mov eax, 4; int 0x80
        // mov ebx, 255; mov eax, 252; int 0x80
        "bb01000000 b954004000 babc2a0100 b804000000 cd80 \
         bbff000000 b8fc000000 cd80",
    ),
    (
        Machine::Aarch64,
        // movz x0, #1; movz x1, #0x78; movk x1, #0x40, lsl #16;
        // movz x2, #0x2abc; movk x2, #1, lsl #16; movz x8, #64; svc #0
        // movz x0, #255; movz x8, #94; svc #0
        "200080d2 010f80d2 0108a0f2 825785d2 2200a0f2 080880d2 010000d4 \
         e01f80d2 c80b80d2 010000d4",
    ),
    (
        Machine::Arm,
        // mov r0, #1
        // mov r1, #0x54; orr r1, r1, #0, #24; orr r1, r1, #0x40, #16; orr r1, r1, #0, #8
        // mov r2, #0xbc; orr r2, r2, #0x2a, #24; orr r2, r2, #1, #16; orr r2, r2, #0, #8
        // mov r7, #4; svc #0
        // mov r0, #255; mov r7, #248; svc #0
        "0100a0e3 \
         5410a0e3 001c81e3 401881e3 001481e3 \
         bc20a0e3 2a2c82e3 012882e3 002482e3 \
         0470a0e3 000000ef \
         ff00a0e3 f870a0e3 000000ef",
    ),
    (
        Machine::Riscv64,
        // addi a0, zero, 1; lui a1, 0x400; addiw a1, a1, 0x78;
        // lui a2, 0x13; addiw a2, a2, -0x544; addi a7, zero, 64; ecall
        // addi a0, zero, 255; addi a7, zero, 94; ecall
        "13051000 b7054000 9b858507 37360100 1b06c6ab 93080004 73000000 \
         1305f00f 9308e005 73000000",
    ),
    (
        Machine::Ppc64le,
        // li 3, 1; lis 4, 0x40; ori 4, 4, 0x78; lis 5, 1; ori 5, 5, 0x2abc; li 0, 4; sc
        // li 3, 255; li 0, 234; sc
        "01006038 4000803c 78008460 0100a03c bc2aa560 04000038 02000044 \
         ff006038 ea000038 02000044",
    ),
    (
        Machine::S390x,
        // lghi %r2, 1; llilf %r3, 0x400078; llilf %r4, 0x12abc; svc 4
        // lghi %r2, 255; svc 248
        "a7290001 c03f00400078 c04f00012abc 0a04 \
         a72900ff 0af8",
    ),
    (
        Machine::Mips64el,
        // ori $a0, $zero, 1; lui $a1, 0x40; ori $a1, $a1, 0x78;
        // lui $a2, 1; ori $a2, $a2, 0x2abc; ori $v0, $zero, 5001; syscall
        // ori $a0, $zero, 255; ori $v0, $zero, 5205; syscall
        "01000434 4000053c 7800a534 0100063c bc2ac634 89130234 0c000000 \
         ff000434 55140234 0c000000",
    ),
    (
        Machine::Mips64,
        // the same instructions as mips64el, big-endian
        "34040001 3c050040 34a50078 3c060001 34c62abc 34021389 0000000c \
         340400ff 34021455 0000000c",
    ),
    (
        Machine::Loongarch64,
        // ori $a0, $zero, 1; lu12i.w $a1, 0x400; ori $a1, $a1, 0x78;
        // lu12i.w $a2, 0x12; ori $a2, $a2, 0xabc; ori $a7, $zero, 64; syscall 0
        // ori $a0, $zero, 255; ori $a7, $zero, 94; syscall 0
        "04048003 05800014 a5e08103 46020014 c6f0aa03 0b008103 00002b00 \
         04fc8303 0b788103 00002b00",
    ),
];

#[test]
fn code_matches_llvm_mc() {
    let message = vec![b'x'; MESSAGE_LEN];
    for (machine, hex) in GOLDEN {
        let bytes = hello(machine, &message, STATUS);
        let e = Elf::parse(&bytes);
        let code = &bytes[e.offset_of(e.e_entry)..];
        assert_eq!(
            to_hex(code),
            to_hex(&unhex(hex)),
            "{}: code differs from llvm-mc's",
            machine.name()
        );
    }
}

#[test]
fn exit_program_is_the_tail_of_hello() {
    // exit_with is hello without the write: the last instructions above.
    let message = vec![b'x'; MESSAGE_LEN];
    for (machine, _) in GOLDEN {
        let full = hello(machine, &message, STATUS);
        let exit = exit_with_code(machine);
        assert!(
            full.ends_with(&exit),
            "{}: exit code is not the tail of hello's",
            machine.name()
        );
    }
}

fn exit_with_code(machine: Machine) -> Vec<u8> {
    let bytes = tiny_elf::exit_with(machine, STATUS);
    let e = Elf::parse(&bytes);
    assert_eq!(
        e.offset_of(e.e_entry),
        e.headers_len(),
        "{}: exit code starts right after the headers",
        machine.name()
    );
    bytes[e.headers_len()..].to_vec()
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The x86_64 level probe, assembled from this listing with
/// `llvm-mc -triple=x86_64 -filetype=obj` (LLVM 14, Intel syntax, every jump forced to
/// `{disp32}`) and extracted with `objcopy -O binary -j .text`:
///
/// ```text
///   mov edi, 65; xor eax, eax; cpuid; mov r8d, eax
///   mov eax, 0x80000000; cpuid; cmp eax, 0x80000001; jb exit
///   mov eax, 0x80000001; cpuid; mov r9d, ecx; mov eax, 1; cpuid; mov r10d, ecx
///   mov eax, r10d; and eax, 0x982201; cmp eax, 0x982201; jne exit
///   test r9d, 1; je exit; mov edi, 66
///   cmp r8d, 7; jb exit
///   mov eax, r10d; and eax, 0x38401000; cmp eax, 0x38401000; jne exit
///   test r9d, 0x20; je exit
///   mov eax, 7; xor ecx, ecx; cpuid; mov esi, ebx
///   and ebx, 0x128; cmp ebx, 0x128; jne exit
///   xor ecx, ecx; xgetbv; mov r11d, eax; and eax, 6; cmp eax, 6; jne exit
///   mov edi, 67
///   mov eax, esi; and eax, 0xd0030000; cmp eax, 0xd0030000; jne exit
///   and r11d, 0xe0; cmp r11d, 0xe0; jne exit
///   mov edi, 68
/// exit:
///   mov eax, 231; syscall
/// ```
const X86_64_LEVEL: &str = "\
    bf4100000031c00fa24189c0b8000000800fa23d010000800f82c4000000b8010000800fa24189c9b8\
    010000000fa24189ca4489d025012298003d012298000f859d00000041f7c1010000000f8490000000\
    bf420000004183f8070f82810000004489d025001040383d001040380f856e00000041f7c120000000\
    0f8461000000b80700000031c90fa289de81e32801000081fb280100000f854400000031c90f01d041\
    89c383e00683f8060f8530000000bf4300000089f025000003d03d000003d00f85190000004181e3e0\
    0000004181fbe00000000f8505000000bf44000000b8e70000000f05";

#[test]
fn x86_64_level_probe_matches_llvm_mc() {
    let bytes = tiny_elf::x86_64_level();
    let e = Elf::parse(&bytes);
    let code = &bytes[e.offset_of(e.e_entry)..];
    assert_eq!(to_hex(code), to_hex(&unhex(X86_64_LEVEL)));
}
