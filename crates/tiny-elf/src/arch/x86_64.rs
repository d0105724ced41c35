//! x86_64: `syscall` with the number in eax and arguments in edi, esi, edx.
//!
//! Writing a 32-bit register zero-extends into the 64-bit one, so `mov r32, imm32`
//! (5 bytes) loads any address below 4 GiB.

use crate::arch::span::Span;
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

/// `exit_group(64 + level)`, where level is the highest x86-64 microarchitecture level
/// (psABI "x86-64-v1" to "x86-64-v4") this CPU, or the emulator running the program,
/// supports: 65 to 68.
///
/// buildkit's amd64 detection program exits 65 for v1 and 66 for v2; this extends the
/// same encoding to v3 and v4. Each level requires everything of the level below it
/// and the features the x86-64 psABI lists for it, read with CPUID:
///
/// - v2: CMPXCHG16B, LAHF/SAHF, POPCNT, SSE3, SSE4.1, SSE4.2, SSSE3;
/// - v3: AVX, AVX2, BMI1, BMI2, F16C, FMA, LZCNT, MOVBE, plus OSXSAVE and XCR0 bits 1
///   and 2 (the OS saves SSE and AVX state: without it AVX instructions fault);
/// - v4: AVX512F, AVX512BW, AVX512CD, AVX512DQ, AVX512VL, plus XCR0 bits 5 to 7 (the
///   OS saves opmask and ZMM state), the checks Go's runtime makes for `GOAMD64=v4`.
///
/// Every conditional jump goes to the final exit with a 32-bit displacement, so the
/// code reads top to bottom: the status in edi only ever rises.
pub(crate) fn level_probe() -> Vec<u8> {
    let mut code = Code::default();
    code.put(&[0xbf, 0x41, 0, 0, 0]); // mov edi, 65 (x86-64-v1: every x86_64 CPU)
    code.put(&[0x31, 0xc0]); // xor eax, eax
    code.put(&[0x0f, 0xa2]); // cpuid (leaf 0: eax = highest basic leaf)
    code.put(&[0x41, 0x89, 0xc0]); // mov r8d, eax
    code.put(&[0xb8, 0x00, 0x00, 0x00, 0x80]); // mov eax, 0x80000000
    code.put(&[0x0f, 0xa2]); // cpuid (eax = highest extended leaf)
    code.put(&[0x3d, 0x01, 0x00, 0x00, 0x80]); // cmp eax, 0x80000001
    code.jump_to_exit(JB); // jb exit
    code.put(&[0xb8, 0x01, 0x00, 0x00, 0x80]); // mov eax, 0x80000001
    code.put(&[0x0f, 0xa2]); // cpuid
    code.put(&[0x41, 0x89, 0xc9]); // mov r9d, ecx (bit 0 LAHF/SAHF, bit 5 LZCNT)
    code.put(&[0xb8, 0x01, 0x00, 0x00, 0x00]); // mov eax, 1
    code.put(&[0x0f, 0xa2]); // cpuid
    code.put(&[0x41, 0x89, 0xca]); // mov r10d, ecx (leaf 1 features)

    // x86-64-v2
    code.put(&[0x44, 0x89, 0xd0]); // mov eax, r10d
    code.and_eax(V2_LEAF1_ECX); // and eax, V2_LEAF1_ECX
    code.cmp_eax(V2_LEAF1_ECX); // cmp eax, V2_LEAF1_ECX
    code.jump_to_exit(JNE); // jne exit
    code.put(&[0x41, 0xf7, 0xc1, 0x01, 0x00, 0x00, 0x00]); // test r9d, 1 (LAHF/SAHF)
    code.jump_to_exit(JE); // je exit
    code.put(&[0xbf, 0x42, 0, 0, 0]); // mov edi, 66

    // x86-64-v3
    code.put(&[0x41, 0x83, 0xf8, 0x07]); // cmp r8d, 7 (leaf 7 exists?)
    code.jump_to_exit(JB); // jb exit
    code.put(&[0x44, 0x89, 0xd0]); // mov eax, r10d
    code.and_eax(V3_LEAF1_ECX); // and eax, V3_LEAF1_ECX
    code.cmp_eax(V3_LEAF1_ECX); // cmp eax, V3_LEAF1_ECX
    code.jump_to_exit(JNE); // jne exit
    code.put(&[0x41, 0xf7, 0xc1, 0x20, 0x00, 0x00, 0x00]); // test r9d, 0x20 (LZCNT)
    code.jump_to_exit(JE); // je exit
    code.put(&[0xb8, 0x07, 0x00, 0x00, 0x00]); // mov eax, 7
    code.put(&[0x31, 0xc9]); // xor ecx, ecx (subleaf 0)
    code.put(&[0x0f, 0xa2]); // cpuid
    code.put(&[0x89, 0xde]); // mov esi, ebx (leaf 7 features)
    code.put(&[0x81, 0xe3]); // and ebx, V3_LEAF7_EBX
    code.put(&V3_LEAF7_EBX.to_le_bytes());
    code.put(&[0x81, 0xfb]); // cmp ebx, V3_LEAF7_EBX
    code.put(&V3_LEAF7_EBX.to_le_bytes());
    code.jump_to_exit(JNE); // jne exit
    code.put(&[0x31, 0xc9]); // xor ecx, ecx (XCR0)
    code.put(&[0x0f, 0x01, 0xd0]); // xgetbv (OSXSAVE was checked: it cannot fault)
    code.put(&[0x41, 0x89, 0xc3]); // mov r11d, eax
    code.put(&[0x83, 0xe0, XCR0_SSE_AVX]); // and eax, XCR0_SSE_AVX
    code.put(&[0x83, 0xf8, XCR0_SSE_AVX]); // cmp eax, XCR0_SSE_AVX
    code.jump_to_exit(JNE); // jne exit
    code.put(&[0xbf, 0x43, 0, 0, 0]); // mov edi, 67

    // x86-64-v4
    code.put(&[0x89, 0xf0]); // mov eax, esi
    code.and_eax(V4_LEAF7_EBX); // and eax, V4_LEAF7_EBX
    code.cmp_eax(V4_LEAF7_EBX); // cmp eax, V4_LEAF7_EBX
    code.jump_to_exit(JNE); // jne exit
    code.put(&[0x41, 0x81, 0xe3]); // and r11d, XCR0_AVX512
    code.put(&XCR0_AVX512.to_le_bytes());
    code.put(&[0x41, 0x81, 0xfb]); // cmp r11d, XCR0_AVX512
    code.put(&XCR0_AVX512.to_le_bytes());
    code.jump_to_exit(JNE); // jne exit
    code.put(&[0xbf, 0x44, 0, 0, 0]); // mov edi, 68

    code.finish_with(&[
        0xb8, 0xe7, 0x00, 0x00, 0x00, // exit: mov eax, 231 (exit_group)
        0x0f, 0x05, // syscall
    ])
}

/// CPUID leaf 1, ECX: SSE3 (0), SSSE3 (9), CMPXCHG16B (13), SSE4.1 (19), SSE4.2 (20),
/// POPCNT (23).
const V2_LEAF1_ECX: u32 = 1 << 0 | 1 << 9 | 1 << 13 | 1 << 19 | 1 << 20 | 1 << 23;
/// CPUID leaf 1, ECX: FMA (12), MOVBE (22), OSXSAVE (27), AVX (28), F16C (29).
const V3_LEAF1_ECX: u32 = 1 << 12 | 1 << 22 | 1 << 27 | 1 << 28 | 1 << 29;
/// CPUID leaf 7, EBX: BMI1 (3), AVX2 (5), BMI2 (8).
const V3_LEAF7_EBX: u32 = 1 << 3 | 1 << 5 | 1 << 8;
/// CPUID leaf 7, EBX: AVX512F (16), AVX512DQ (17), AVX512CD (28), AVX512BW (30),
/// AVX512VL (31).
const V4_LEAF7_EBX: u32 = 1 << 16 | 1 << 17 | 1 << 28 | 1 << 30 | 1 << 31;
/// XCR0: SSE (1) and AVX (2) state.
const XCR0_SSE_AVX: u8 = 1 << 1 | 1 << 2;
/// XCR0: opmask (5), ZMM_Hi256 (6) and Hi16_ZMM (7) state.
const XCR0_AVX512: u32 = 1 << 5 | 1 << 6 | 1 << 7;

/// Second opcode byte of `jcc rel32` (`0f 8x`): below (carry set).
const JB: u8 = 0x82;
/// Equal (zero set).
const JE: u8 = 0x84;
/// Not equal (zero clear).
const JNE: u8 = 0x85;

/// Straight-line code whose conditional jumps all go to the final instructions.
#[derive(Default)]
struct Code {
    bytes: Vec<u8>,
    /// Offsets of the rel32 fields that must point at the exit.
    exits: Vec<usize>,
}

impl Code {
    fn put(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
    }

    /// `and eax, imm32` (short form `25 id`).
    fn and_eax(&mut self, imm: u32) {
        self.put(&[0x25]);
        self.put(&imm.to_le_bytes());
    }

    /// `cmp eax, imm32` (short form `3d id`).
    fn cmp_eax(&mut self, imm: u32) {
        self.put(&[0x3d]);
        self.put(&imm.to_le_bytes());
    }

    /// `jcc rel32` to the exit, patched in [`Code::finish_with`].
    fn jump_to_exit(&mut self, condition: u8) {
        self.put(&[0x0f, condition]);
        self.exits.push(self.bytes.len());
        self.put(&[0; 4]);
    }

    /// Appends the exit and points every jump at it. A rel32 is relative to the end of
    /// the jump instruction, which is where its 4-byte field ends.
    fn finish_with(mut self, exit: &[u8]) -> Vec<u8> {
        let target = self.bytes.len();
        for at in self.exits {
            let rel = i32::try_from(target - (at + 4)).expect("the probe is tiny");
            self.bytes[at..at + 4].copy_from_slice(&rel.to_le_bytes());
        }
        self.bytes.extend_from_slice(exit);
        self.bytes
    }
}
