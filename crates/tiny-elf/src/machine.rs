//! The machines (architectures) tiny-elf writes programs for, named as QEMU names
//! their CPUs.

/// A Linux architecture `binfmt` can register an emulator for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Machine {
    /// 64-bit x86 (OCI `amd64`).
    X86_64,
    /// 32-bit x86 (OCI `386`).
    I386,
    /// 64-bit Arm (OCI `arm64`).
    Aarch64,
    /// 32-bit Arm, EABI, little-endian (OCI `arm`, v6 and v7).
    Arm,
    /// 64-bit RISC-V (OCI `riscv64`).
    Riscv64,
    /// 64-bit POWER, little-endian, ELFv2 ABI (OCI `ppc64le`).
    Ppc64le,
    /// IBM Z, 64-bit, big-endian (OCI `s390x`).
    S390x,
    /// 64-bit MIPS, little-endian, n64 ABI (OCI `mips64le`).
    Mips64el,
    /// 64-bit MIPS, big-endian, n64 ABI (OCI `mips64`).
    Mips64,
    /// 64-bit LoongArch (OCI `loong64`).
    Loongarch64,
}

impl Machine {
    /// Every supported machine, in the order of the architecture table.
    pub const ALL: [Machine; 10] = [
        Machine::X86_64,
        Machine::I386,
        Machine::Aarch64,
        Machine::Arm,
        Machine::Riscv64,
        Machine::Ppc64le,
        Machine::S390x,
        Machine::Mips64el,
        Machine::Mips64,
        Machine::Loongarch64,
    ];

    /// QEMU's cpu name for this machine: the `<cpu>` in `qemu-<cpu>`.
    pub fn name(self) -> &'static str {
        match self {
            Machine::X86_64 => "x86_64",
            Machine::I386 => "i386",
            Machine::Aarch64 => "aarch64",
            Machine::Arm => "arm",
            Machine::Riscv64 => "riscv64",
            Machine::Ppc64le => "ppc64le",
            Machine::S390x => "s390x",
            Machine::Mips64el => "mips64el",
            Machine::Mips64 => "mips64",
            Machine::Loongarch64 => "loongarch64",
        }
    }
}
