//! A minimal ELF writer: one file header, one `PT_LOAD` program header, nothing else.
//!
//! The whole file (headers included) is mapped read+execute at [`BASE`], so a byte at
//! file offset `o` lives at virtual address `BASE + o` ([`vaddr`]). There are no
//! sections, no dynamic linking and no interpreter: the kernel, or QEMU's linux-user
//! loader (`linux-user/elfload.c`), maps the segment and jumps to `e_entry`.
//!
//! Field layouts follow the System V gABI (`Elf32_Ehdr`/`Elf64_Ehdr`,
//! `Elf32_Phdr`/`Elf64_Phdr`); see elf(5).

/// Where the single segment is loaded.
///
/// At least 0x10000 so that `vm.mmap_min_addr` (4096 on most distributions, 65536 on
/// some) never refuses the mapping, and a multiple of 64 KiB so that `p_vaddr` and
/// `p_offset` (0) are congruent modulo every page size in use: 4 KiB, 16 KiB
/// (loongarch64), 64 KiB (ppc64le, some aarch64 kernels).
pub(crate) const BASE: u32 = 0x0040_0000;

/// `p_align` of the segment: the largest page size of the architectures we build for.
const SEGMENT_ALIGN: u64 = 0x1_0000;

/// `e_type`: an executable with fixed addresses (not PIE).
pub(crate) const ET_EXEC: u16 = 2;
/// `p_type` of a loadable segment.
const PT_LOAD: u32 = 1;
/// `p_flags`: readable and executable (`PF_R | PF_X`); never writable.
const PF_R_X: u32 = 0x4 | 0x1;
/// `e_version` / `EI_VERSION`: the only ELF version there is.
const EV_CURRENT: u8 = 1;
/// `EI_OSABI`: System V. Linux accepts it, and the binfmt_misc masks ignore this byte.
const ELFOSABI_SYSV: u8 = 0;

/// `EI_CLASS`: the word size of the file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    /// `ELFCLASS32`: 32-bit addresses and offsets.
    Elf32 = 1,
    /// `ELFCLASS64`: 64-bit addresses and offsets.
    Elf64 = 2,
}

/// `EI_DATA`: the byte order of every multi-byte field (and, for our programs, of the
/// instruction words too).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Data {
    /// `ELFDATA2LSB`: little-endian.
    Lsb = 1,
    /// `ELFDATA2MSB`: big-endian.
    Msb = 2,
}

/// What identifies an architecture's executables in the ELF header.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Format {
    /// `EI_CLASS`.
    pub(crate) class: Class,
    /// `EI_DATA`.
    pub(crate) data: Data,
    /// `e_machine` (`EM_*`).
    pub(crate) machine: u16,
    /// `e_flags`: processor-specific ABI flags, see each architecture module.
    pub(crate) flags: u32,
}

impl Format {
    /// Size of the file header plus the one program header: where the body starts.
    pub(crate) fn headers_len(&self) -> usize {
        match self.class {
            Class::Elf32 => EHDR32_LEN + PHDR32_LEN,
            Class::Elf64 => EHDR64_LEN + PHDR64_LEN,
        }
    }
}

/// `Elf32_Ehdr` size.
const EHDR32_LEN: usize = 52;
/// `Elf32_Phdr` size.
const PHDR32_LEN: usize = 32;
/// `Elf32_Shdr` size, recorded in `e_shentsize` although there are no sections.
const SHDR32_LEN: usize = 40;
/// `Elf64_Ehdr` size.
const EHDR64_LEN: usize = 64;
/// `Elf64_Phdr` size.
const PHDR64_LEN: usize = 56;
/// `Elf64_Shdr` size, recorded in `e_shentsize` although there are no sections.
const SHDR64_LEN: usize = 64;

/// The virtual address at which file offset `offset` is mapped.
pub(crate) fn vaddr(offset: usize) -> u32 {
    let offset = u32::try_from(offset).expect("ELF probes are far smaller than 4 GiB");
    BASE.checked_add(offset)
        .expect("ELF probes are far smaller than 4 GiB")
}

/// Builds the file: headers, then `body` (which starts at [`Format::headers_len`]),
/// with the entry point at file offset `entry`.
pub(crate) fn executable(format: &Format, body: &[u8], entry: usize) -> Vec<u8> {
    let size = format.headers_len() + body.len();
    assert!(
        (format.headers_len()..size).contains(&entry),
        "entry point must lie inside the body"
    );
    let mut out = Writer {
        bytes: Vec::with_capacity(size),
        data: format.data,
        class: format.class,
    };
    let (ehdr_len, phdr_len, shdr_len) = match format.class {
        Class::Elf32 => (EHDR32_LEN, PHDR32_LEN, SHDR32_LEN),
        Class::Elf64 => (EHDR64_LEN, PHDR64_LEN, SHDR64_LEN),
    };

    // e_ident
    out.bytes.extend_from_slice(b"\x7fELF");
    out.bytes.push(format.class as u8);
    out.bytes.push(format.data as u8);
    out.bytes.push(EV_CURRENT);
    out.bytes.push(ELFOSABI_SYSV);
    out.bytes.extend_from_slice(&[0; 8]); // EI_ABIVERSION and padding up to EI_NIDENT (16)
    out.u16(ET_EXEC); // e_type
    out.u16(format.machine); // e_machine
    out.u32(u32::from(EV_CURRENT)); // e_version
    out.word(u64::from(vaddr(entry))); // e_entry
    out.word(ehdr_len as u64); // e_phoff: right after this header
    out.word(0); // e_shoff: no section headers
    out.u32(format.flags); // e_flags
    out.u16(ehdr_len as u16); // e_ehsize
    out.u16(phdr_len as u16); // e_phentsize: the kernel rejects anything but the real size
    out.u16(1); // e_phnum
    out.u16(shdr_len as u16); // e_shentsize
    out.u16(0); // e_shnum
    out.u16(0); // e_shstrndx: SHN_UNDEF
    debug_assert_eq!(out.bytes.len(), ehdr_len);

    // The program header. Elf32_Phdr and Elf64_Phdr order their fields differently:
    // p_flags comes last in the 32-bit one and second in the 64-bit one.
    let size64 = size as u64;
    out.u32(PT_LOAD); // p_type
    if format.class == Class::Elf64 {
        out.u32(PF_R_X); // p_flags
    }
    out.word(0); // p_offset: the segment starts at the beginning of the file
    out.word(u64::from(BASE)); // p_vaddr
    out.word(u64::from(BASE)); // p_paddr
    out.word(size64); // p_filesz: the whole file
    out.word(size64); // p_memsz: no .bss
    if format.class == Class::Elf32 {
        out.u32(PF_R_X); // p_flags
    }
    out.word(SEGMENT_ALIGN); // p_align
    debug_assert_eq!(out.bytes.len(), format.headers_len());

    out.bytes.extend_from_slice(body);
    out.bytes
}

/// Appends fields in the file's byte order and word size.
struct Writer {
    /// The file so far.
    bytes: Vec<u8>,
    /// Byte order of every field.
    data: Data,
    /// Width of addresses and offsets.
    class: Class,
}

impl Writer {
    /// Appends an `ElfN_Half`.
    fn u16(&mut self, v: u16) {
        let b = match self.data {
            Data::Lsb => v.to_le_bytes(),
            Data::Msb => v.to_be_bytes(),
        };
        self.bytes.extend_from_slice(&b);
    }

    /// Appends an `ElfN_Word`.
    fn u32(&mut self, v: u32) {
        let b = match self.data {
            Data::Lsb => v.to_le_bytes(),
            Data::Msb => v.to_be_bytes(),
        };
        self.bytes.extend_from_slice(&b);
    }

    /// Appends an `Elf64_Xword`, `Elf64_Addr` or `Elf64_Off`.
    fn u64(&mut self, v: u64) {
        let b = match self.data {
            Data::Lsb => v.to_le_bytes(),
            Data::Msb => v.to_be_bytes(),
        };
        self.bytes.extend_from_slice(&b);
    }

    /// An address or offset: `Elf32_Addr`/`Elf32_Off` or `Elf64_Addr`/`Elf64_Off`.
    fn word(&mut self, v: u64) {
        match self.class {
            Class::Elf32 => self.u32(u32::try_from(v).expect("value fits ELF32")),
            Class::Elf64 => self.u64(v),
        }
    }
}
