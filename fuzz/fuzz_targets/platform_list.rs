//! The command line's platform parser (`--install LIST`, and every item of
//! `--uninstall` tries it) on arbitrary text: no panic; a list of at most the
//! accepted length; and every architecture it finds is named by its own OCI name.

#![no_main]

use libfuzzer_sys::fuzz_target;
use qemu_catalog::arch::MAX_LIST_LENGTH;
use qemu_catalog::{Arch, Selection, parse_list};

fuzz_target!(|text: &str| {
    if let Ok(arch) = Arch::parse(text) {
        assert_eq!(Arch::parse(arch.oci()), Ok(arch));
        // A name never carries a character that could break out of a field or a line.
        assert!(!text.contains([',', ':', '\n', '\0', ';', ' ']), "{text:?}");
    }
    match parse_list(text) {
        Ok(Selection::Arches(arches)) => {
            assert!(text.len() <= MAX_LIST_LENGTH);
            assert!(!arches.is_empty());
            for (i, arch) in arches.iter().enumerate() {
                assert!(!arches[..i].contains(arch), "duplicate {arch}");
            }
        }
        Ok(Selection::All) => assert!(text.to_ascii_lowercase().contains("all")),
        Err(_) => {}
    }
});
