//! Helpers: a small ELF reader written from the gABI field offsets (independent of
//! the crate's writer) and the ELF identity each machine is expected to have.

use tiny_elf::Machine;

/// ELF identity every program for a machine must carry.
pub struct Expected {
    /// `EI_CLASS`: 1 = ELFCLASS32, 2 = ELFCLASS64.
    pub class: u8,
    /// `EI_DATA`: 1 = little-endian, 2 = big-endian.
    pub data: u8,
    /// `e_machine`.
    pub machine: u16,
    /// `e_flags`.
    pub flags: u32,
}

/// The expected identity of `machine`'s executables (see the crate's arch modules for
/// why each e_flags value).
pub fn expected(machine: Machine) -> Expected {
    let (class, data, machine, flags) = match machine {
        Machine::X86_64 => (2, 1, 62, 0),
        Machine::I386 => (1, 1, 3, 0),
        Machine::Aarch64 => (2, 1, 183, 0),
        Machine::Arm => (1, 1, 40, 0x0500_0000), // EABI version 5
        Machine::Riscv64 => (2, 1, 243, 0x4),    // double-float ABI
        Machine::Ppc64le => (2, 1, 21, 2),       // ELFv2
        Machine::S390x => (2, 2, 22, 0),
        Machine::Mips64el => (2, 1, 8, 0x8000_0000), // mips64r2, n64
        Machine::Mips64 => (2, 2, 8, 0x8000_0000),   // mips64r2, n64
        Machine::Loongarch64 => (2, 1, 258, 0x43),   // lp64d, object ABI v1
    };
    Expected {
        class,
        data,
        machine,
        flags,
    }
}

/// A parsed ELF file with its single program header.
pub struct Elf {
    pub class: u8,
    pub data: u8,
    pub e_type: u16,
    pub e_machine: u16,
    pub e_version: u32,
    pub e_entry: u64,
    pub e_phoff: u64,
    pub e_flags: u32,
    pub e_ehsize: u16,
    pub e_phentsize: u16,
    pub e_phnum: u16,
    pub phdr: Phdr,
}

/// The fields of a program header.
pub struct Phdr {
    pub p_type: u32,
    pub p_flags: u32,
    pub p_offset: u64,
    pub p_vaddr: u64,
    pub p_filesz: u64,
    pub p_memsz: u64,
    pub p_align: u64,
}

impl Elf {
    /// Parses the file header and the first program header; panics on a short file.
    pub fn parse(bytes: &[u8]) -> Elf {
        assert!(
            bytes.len() >= 52,
            "file of {} bytes is too short",
            bytes.len()
        );
        let r = Reader {
            bytes,
            big: bytes[5] == 2,
            wide: bytes[4] == 2,
        };
        let (e_entry, e_phoff, rest) = if r.wide {
            (r.u64(24), r.u64(32), 48)
        } else {
            (u64::from(r.u32(24)), u64::from(r.u32(28)), 36)
        };
        let ph = usize::try_from(e_phoff).unwrap();
        let phdr = if r.wide {
            Phdr {
                p_type: r.u32(ph),
                p_flags: r.u32(ph + 4),
                p_offset: r.u64(ph + 8),
                p_vaddr: r.u64(ph + 16),
                p_filesz: r.u64(ph + 32),
                p_memsz: r.u64(ph + 40),
                p_align: r.u64(ph + 48),
            }
        } else {
            Phdr {
                p_type: r.u32(ph),
                p_offset: u64::from(r.u32(ph + 4)),
                p_vaddr: u64::from(r.u32(ph + 8)),
                p_filesz: u64::from(r.u32(ph + 16)),
                p_memsz: u64::from(r.u32(ph + 20)),
                p_flags: r.u32(ph + 24),
                p_align: u64::from(r.u32(ph + 28)),
            }
        };
        Elf {
            class: bytes[4],
            data: bytes[5],
            e_type: r.u16(16),
            e_machine: r.u16(18),
            e_version: r.u32(20),
            e_entry,
            e_phoff,
            e_flags: r.u32(rest),
            e_ehsize: r.u16(rest + 4),
            e_phentsize: r.u16(rest + 6),
            e_phnum: r.u16(rest + 8),
            phdr,
        }
    }

    /// The file offset mapped at virtual address `addr` by the PT_LOAD segment.
    pub fn offset_of(&self, addr: u64) -> usize {
        let p = &self.phdr;
        assert!(
            (p.p_vaddr..p.p_vaddr + p.p_filesz).contains(&addr),
            "{addr:#x} lies outside the loaded segment"
        );
        usize::try_from(addr - p.p_vaddr + p.p_offset).unwrap()
    }

    /// Size of both headers: the file offset where message and code begin.
    pub fn headers_len(&self) -> usize {
        usize::try_from(self.e_phoff).unwrap() + usize::from(self.e_phentsize)
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    big: bool,
    wide: bool,
}

impl Reader<'_> {
    fn get<const N: usize>(&self, at: usize) -> [u8; N] {
        self.bytes[at..at + N].try_into().unwrap()
    }
    fn u16(&self, at: usize) -> u16 {
        let b = self.get(at);
        if self.big {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        }
    }
    fn u32(&self, at: usize) -> u32 {
        let b = self.get(at);
        if self.big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    }
    fn u64(&self, at: usize) -> u64 {
        let b = self.get(at);
        if self.big {
            u64::from_be_bytes(b)
        } else {
            u64::from_le_bytes(b)
        }
    }
}

/// Decodes a hex string, ignoring whitespace.
pub fn unhex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    assert!(digits.len().is_multiple_of(2), "odd number of hex digits");
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

/// A message that names the machine, as the integration tests use.
pub fn greeting(machine: Machine) -> Vec<u8> {
    format!("hello from {}\n", machine.name()).into_bytes()
}
