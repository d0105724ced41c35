//! Every program matches the binfmt_misc magic/mask of its own architecture, and of no
//! other, so a registered emulator is what runs it.
//!
//! The magic and mask are QEMU's `scripts/qemu-binfmt-conf.sh` (identical in
//! tonistiigi/binfmt), as the `arch-table` crate holds them for binfmt: the one table
//! the registrations are made from (a dev-dependency; tiny-elf itself has none).

use crate::util::greeting;
use tiny_elf::{Machine, exit_with, hello};

/// Every row of the table: the machine tiny-elf names by the row's QEMU cpu, its
/// magic and mask.
fn table() -> Vec<(Machine, &'static [u8], &'static [u8])> {
    arch_table::ARCHES
        .iter()
        .map(|arch| {
            let machine = Machine::ALL
                .into_iter()
                .find(|machine| machine.name() == arch.qemu_cpu)
                .unwrap_or_else(|| panic!("tiny-elf has no machine {}", arch.qemu_cpu));
            (machine, &arch.magic[..], &arch.mask[..])
        })
        .collect()
}

/// What the kernel does in `check_file()`: compare `(byte & mask) == (magic & mask)`.
fn matches(bytes: &[u8], magic: &[u8], mask: &[u8]) -> bool {
    bytes.len() >= magic.len()
        && bytes
            .iter()
            .zip(magic)
            .zip(mask)
            .all(|((b, m), k)| b & k == m & k)
}

#[test]
fn each_program_matches_exactly_its_own_entry() {
    for machine in Machine::ALL {
        for program in [hello(machine, &greeting(machine), 3), exit_with(machine, 3)] {
            let matching: Vec<Machine> = table()
                .into_iter()
                .filter(|(_, magic, mask)| matches(&program, magic, mask))
                .map(|(m, _, _)| m)
                .collect();
            assert_eq!(matching, [machine], "{}", machine.name());
        }
    }
}

#[test]
fn matching_can_fail() {
    // Guards the helper above: a wrong e_machine must not match.
    let mut program = exit_with(Machine::Aarch64, 0);
    program[18] = 0x3e; // EM_X86_64
    let (machine, magic, mask) = table()[1];
    assert_eq!(machine, Machine::Aarch64);
    assert!(!matches(&program, magic, mask));
}
