//! Every program matches the binfmt_misc magic/mask of its own architecture, and of no
//! other, so a registered emulator is what runs it.
//!
//! The table is QEMU's `scripts/qemu-binfmt-conf.sh` (identical in tonistiigi/binfmt),
//! copied here so that this dependency-free crate is checked against the real thing.

use crate::util::{greeting, unhex};
use tiny_elf::{Machine, exit_with, hello};

/// (machine, magic, mask) as hex; a space sets off e_machine.
const TABLE: [(Machine, &str, &str); 10] = [
    (
        Machine::X86_64,
        "7f454c460201010000000000000000000200 3e00",
        "fffffffffffefe00ffffffffffffffff feffffff",
    ),
    (
        Machine::Aarch64,
        "7f454c460201010000000000000000000200 b700",
        "ffffffffffffff00ffffffffffffffff feffffff",
    ),
    (
        Machine::Arm,
        "7f454c460101010000000000000000000200 2800",
        "ffffffffffffff00ffffffffffffffff feffffff",
    ),
    (
        Machine::I386,
        "7f454c460101010000000000000000000200 0300",
        "fffffffffffefe00ffffffffffffffff feffffff",
    ),
    (
        Machine::Riscv64,
        "7f454c460201010000000000000000000200 f300",
        "ffffffffffffff00ffffffffffffffff feffffff",
    ),
    (
        Machine::Ppc64le,
        "7f454c460201010000000000000000000200 1500",
        "ffffffffffffff00ffffffffffffffff feffff00",
    ),
    (
        Machine::S390x,
        "7f454c460202010000000000000000000002 0016",
        "ffffffffffffff00ffffffffffffffff fffeffff",
    ),
    (
        Machine::Mips64el,
        "7f454c460201010000000000000000000200 0800",
        "ffffffffffffff0000ffffffffffffff feffffff",
    ),
    (
        Machine::Mips64,
        "7f454c460202010000000000000000000002 0008",
        "ffffffffffffff0000ffffffffffffff fffeffff",
    ),
    (
        Machine::Loongarch64,
        "7f454c460201010000000000000000000200 0201",
        "fffffffffffffffc00ffffffffffffff feffffff",
    ),
];

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
            let matching: Vec<Machine> = TABLE
                .iter()
                .filter(|(_, magic, mask)| matches(&program, &unhex(magic), &unhex(mask)))
                .map(|(m, _, _)| *m)
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
    let (_, magic, mask) = TABLE[1];
    assert!(!matches(&program, &unhex(magic), &unhex(mask)));
}
