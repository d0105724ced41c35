//! What each architecture's exit status means: which tiny program probes it, and what
//! the status that program exits with proves.
//!
//! A probe is a static program of a few hundred bytes from `tiny-elf` that only
//! exits, with a status chosen per architecture, so that a stray interpreter that
//! happens to exit 0 (say `/bin/true` registered by mistake) proves nothing. The x86_64
//! probe instead exits with 64 plus the CPU's x86-64 microarchitecture level, as
//! buildkit's does, so one run also says which `linux/amd64/vN` platforms run.
//!
//! Running a probe is the binary's business (it needs fork, chroot and exec); this
//! module only maps architectures to programs and statuses to proofs.

use tiny_elf::Machine;

use crate::arch::Arch;

/// Every probe but the x86_64 one exits with this plus the architecture's index in
/// [`Arch::ALL`]: 101 for arm64 up to 109 for loong64. Far from 0 and 1, which any
/// program might return, and from the x86_64 probe's 65 to 68.
pub const STATUS_BASE: u8 = 100;

/// `e_type` of a position-independent executable (`ET_DYN`); probes are `ET_EXEC`.
const ET_DYN: u8 = 3;

/// The probe of one architecture.
#[derive(Clone, Debug)]
pub struct Probe {
    arch: Arch,
    program: Vec<u8>,
}

/// What a probe that exited as expected proves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proof {
    /// For amd64, the highest x86-64 level (1 to 4) of the CPU that ran it, native or
    /// emulated; `None` for the other architectures.
    pub level: Option<u8>,
}

impl Arch {
    /// The `tiny-elf` machine of this architecture (tiny-elf names machines with
    /// QEMU's cpu names).
    pub fn machine(self) -> Machine {
        match self {
            Arch::Amd64 => Machine::X86_64,
            Arch::Arm64 => Machine::Aarch64,
            Arch::Arm => Machine::Arm,
            Arch::I386 => Machine::I386,
            Arch::Riscv64 => Machine::Riscv64,
            Arch::Ppc64le => Machine::Ppc64le,
            Arch::S390x => Machine::S390x,
            Arch::Mips64le => Machine::Mips64el,
            Arch::Mips64 => Machine::Mips64,
            Arch::Loong64 => Machine::Loongarch64,
        }
    }

    /// This architecture's probe.
    pub fn probe(self) -> Probe {
        let program = match self {
            Arch::Amd64 => tiny_elf::x86_64_level(),
            arch => tiny_elf::exit_with(arch.machine(), STATUS_BASE + arch as u8),
        };
        Probe {
            arch: self,
            program,
        }
    }
}

impl Probe {
    /// The architecture it proves.
    pub fn arch(&self) -> Arch {
        self.arch
    }

    /// The program's bytes: a complete static ELF executable.
    pub fn program(&self) -> &[u8] {
        &self.program
    }

    /// A file name for the program: QEMU's cpu name, without a dot, so that no
    /// extension entry can claim it.
    pub fn file_name(&self) -> &'static str {
        self.arch.qemu_cpu()
    }

    /// The program's header as a position-independent executable would have it
    /// (`e_type` `ET_DYN`): most programs are PIE, and an entry that claims either
    /// form claims the architecture.
    pub fn pie_header(&self) -> Vec<u8> {
        let mut header = self.program[..20].to_vec();
        // e_type is the 16-bit field at offset 16, in the file's byte order (EI_DATA:
        // 1 little-endian, 2 big-endian); its high byte is 0 either way.
        let low_byte = if header[5] == 2 { 17 } else { 16 };
        header[low_byte] = ET_DYN;
        header
    }

    /// What the probe exits with when it ran, for messages.
    pub fn expected(&self) -> String {
        match self.arch {
            Arch::Amd64 => {
                let base = tiny_elf::X86_64_LEVEL_STATUS_BASE;
                format!("exit status {} to {}", base + 1, base + 4)
            }
            arch => format!("exit status {}", STATUS_BASE + arch as u8),
        }
    }

    /// What an exit status proves: `None` when the program cannot have run as written
    /// (something else answered in its place).
    pub fn interpret(&self, status: i32) -> Option<Proof> {
        match self.arch {
            Arch::Amd64 => {
                let level = status - i32::from(tiny_elf::X86_64_LEVEL_STATUS_BASE);
                let level = u8::try_from(level).ok().filter(|l| (1..=4).contains(l))?;
                Some(Proof { level: Some(level) })
            }
            arch => {
                (status == i32::from(STATUS_BASE + arch as u8)).then_some(Proof { level: None })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_probe_is_claimed_by_its_own_arch_only() {
        for arch in Arch::ALL {
            let probe = arch.probe();
            for other in Arch::ALL {
                let claims = other
                    .matcher()
                    .matches_file(probe.file_name(), probe.program());
                let claims_pie = other
                    .matcher()
                    .matches_file(probe.file_name(), &probe.pie_header());
                assert_eq!(
                    claims,
                    arch == other,
                    "{other}'s entry and the {arch} probe"
                );
                assert_eq!(
                    claims_pie,
                    arch == other,
                    "{other}'s entry and a {arch} PIE"
                );
            }
        }
    }

    #[test]
    fn statuses_are_distinct_and_interpreted() {
        let mut statuses = Vec::new();
        for arch in Arch::ALL.into_iter().filter(|a| *a != Arch::Amd64) {
            let status = i32::from(STATUS_BASE + arch as u8);
            assert_eq!(arch.probe().interpret(status), Some(Proof { level: None }));
            assert_eq!(arch.probe().interpret(0), None);
            assert_eq!(arch.probe().interpret(status + 1), None);
            statuses.push(status);
        }
        let amd64 = Arch::Amd64.probe();
        for level in 1..=4u8 {
            let status = 64 + i32::from(level);
            assert_eq!(amd64.interpret(status), Some(Proof { level: Some(level) }));
            assert!(!statuses.contains(&status));
        }
        for status in [0, 1, 64, 69, 101] {
            assert_eq!(amd64.interpret(status), None, "{status}");
        }
    }

    #[test]
    fn machines_are_the_qemu_cpus() {
        for arch in Arch::ALL {
            assert_eq!(arch.machine().name(), arch.qemu_cpu());
        }
    }
}
