//! The ELF structure of every program, for every machine.

use crate::util::{Elf, expected, greeting};
use tiny_elf::{MAX_MESSAGE_LEN, Machine, exit_with, hello};

/// Checks everything the kernel and QEMU's loader look at, plus our layout promises.
fn check_structure(machine: Machine, bytes: &[u8]) {
    let m = machine.name();
    let e = Elf::parse(bytes);
    let want = expected(machine);
    let (ehsize, phentsize) = if want.class == 2 { (64, 56) } else { (52, 32) };

    assert_eq!(&bytes[..4], b"\x7fELF", "{m}: magic");
    assert_eq!(e.class, want.class, "{m}: EI_CLASS");
    assert_eq!(e.data, want.data, "{m}: EI_DATA");
    assert_eq!(bytes[6], 1, "{m}: EI_VERSION");
    assert_eq!(bytes[7], 0, "{m}: EI_OSABI is System V");
    assert_eq!(&bytes[8..16], &[0; 8], "{m}: EI_ABIVERSION and padding");
    assert_eq!(e.e_type, 2, "{m}: e_type is ET_EXEC");
    assert_eq!(e.e_machine, want.machine, "{m}: e_machine");
    assert_eq!(e.e_version, 1, "{m}: e_version");
    assert_eq!(e.e_flags, want.flags, "{m}: e_flags");
    assert_eq!(e.e_ehsize, ehsize, "{m}: e_ehsize");
    assert_eq!(e.e_phoff, u64::from(ehsize), "{m}: program header follows");
    assert_eq!(e.e_phentsize, phentsize, "{m}: e_phentsize");
    assert_eq!(e.e_phnum, 1, "{m}: one program header");

    let p = &e.phdr;
    let len = bytes.len() as u64;
    assert_eq!(p.p_type, 1, "{m}: PT_LOAD");
    assert_eq!(p.p_flags, 0x4 | 0x1, "{m}: segment is R+X, not writable");
    assert_eq!(p.p_offset, 0, "{m}: segment starts at the file's start");
    assert_eq!(p.p_filesz, len, "{m}: segment covers the whole file");
    assert_eq!(p.p_memsz, len, "{m}: no bss");
    assert!(p.p_vaddr >= 0x1_0000, "{m}: below mmap_min_addr");
    assert!(p.p_align.is_power_of_two(), "{m}: p_align");
    assert!(p.p_align >= 0x1_0000, "{m}: p_align covers 64 KiB pages");
    assert_eq!(p.p_vaddr % p.p_align, 0, "{m}: p_vaddr aligned");
    assert!(
        p.p_vaddr + u64::from(u32::try_from(len).unwrap()) < 1 << 31,
        "{m}: addresses stay below 2^31"
    );

    let code_start = p.p_vaddr + e.headers_len() as u64;
    assert!(
        (code_start..p.p_vaddr + len).contains(&e.e_entry),
        "{m}: entry {:#x} inside the segment, after the headers",
        e.e_entry
    );
    assert_eq!(e.e_entry % 4, 0, "{m}: entry aligned for instructions");
}

#[test]
fn names_are_qemu_cpu_names() {
    let names: Vec<&str> = Machine::ALL.iter().map(|m| m.name()).collect();
    assert_eq!(
        names,
        [
            "x86_64",
            "i386",
            "aarch64",
            "arm",
            "riscv64",
            "ppc64le",
            "s390x",
            "mips64el",
            "mips64",
            "loongarch64"
        ]
    );
}

#[test]
fn hello_programs_are_well_formed() {
    for machine in Machine::ALL {
        check_structure(machine, &hello(machine, &greeting(machine), 42));
        check_structure(machine, &hello(machine, b"", 0));
        check_structure(machine, &hello(machine, b"odd", 255));
    }
}

#[test]
fn exit_programs_are_well_formed() {
    for machine in Machine::ALL {
        check_structure(machine, &exit_with(machine, 0));
        check_structure(machine, &exit_with(machine, 255));
    }
}

#[test]
fn message_lies_right_after_the_headers() {
    // golden.rs pins that the code passes this address and length to write(2).
    for machine in Machine::ALL {
        let message = greeting(machine);
        let bytes = hello(machine, &message, 42);
        let e = Elf::parse(&bytes);
        let addr = e.phdr.p_vaddr + e.headers_len() as u64;
        let at = e.offset_of(addr);
        assert_eq!(
            &bytes[at..at + message.len()],
            message.as_slice(),
            "{}: message at {addr:#x}",
            machine.name()
        );
        assert!(
            e.e_entry >= addr + message.len() as u64,
            "{}: code does not overlap the message",
            machine.name()
        );
    }
}

#[test]
fn programs_are_tiny() {
    for machine in Machine::ALL {
        let hello_len = hello(machine, &greeting(machine), 42).len();
        let exit_len = exit_with(machine, 42).len();
        assert!(
            hello_len < 1024,
            "{}: hello is {hello_len} bytes",
            machine.name()
        );
        assert!(
            exit_len <= 256,
            "{}: exit is {exit_len} bytes",
            machine.name()
        );
    }
}

#[test]
fn status_is_part_of_the_code() {
    for machine in Machine::ALL {
        let a = exit_with(machine, 1);
        let b = exit_with(machine, 2);
        assert_eq!(a.len(), b.len(), "{}", machine.name());
        let headers = Elf::parse(&a).headers_len();
        assert_eq!(
            a[..headers],
            b[..headers],
            "{}: same headers",
            machine.name()
        );
        assert_ne!(a, b, "{}: different code", machine.name());
    }
}

#[test]
fn empty_message_still_writes() {
    // hello always makes its one write(2), even of zero bytes.
    for machine in Machine::ALL {
        assert!(
            hello(machine, b"", 0).len() > exit_with(machine, 0).len(),
            "{}",
            machine.name()
        );
    }
}

#[test]
fn longest_message_is_accepted() {
    let message = vec![b'x'; MAX_MESSAGE_LEN];
    for machine in Machine::ALL {
        let bytes = hello(machine, &message, 1);
        check_structure(machine, &bytes);
        let at = Elf::parse(&bytes).headers_len();
        assert_eq!(&bytes[at..at + message.len()], message.as_slice());
    }
}

#[test]
#[should_panic(expected = "longer than")]
fn too_long_message_panics() {
    hello(Machine::Aarch64, &vec![0; MAX_MESSAGE_LEN + 1], 0);
}

#[test]
fn the_x86_64_level_probe_is_well_formed_and_tiny() {
    let bytes = tiny_elf::x86_64_level();
    check_structure(Machine::X86_64, &bytes);
    assert!(bytes.len() <= 512, "level probe is {} bytes", bytes.len());
}
