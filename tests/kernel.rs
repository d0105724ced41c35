//! The kernel layer (`binfmt-misc`) against a real, private binfmt_misc instance:
//! what we encode is what the kernel stores and prints back.

use std::path::PathBuf;

use binfmt_misc::{Entry, Error, Flags, Matcher, Registration, Table};
use qemu_catalog::Arch;

use crate::util::{Sandbox, namespace_test};

fn registration(arch: Arch, flags: &str) -> Registration {
    Registration {
        name: arch.entry_name(),
        matcher: arch.matcher(),
        interpreter: PathBuf::from("/bin/true"),
        flags: flags.parse().unwrap(),
    }
}

namespace_test! {
    /// parse(read(encode(x))) == x for every arch of the table and every flag set.
    fn the_kernel_reads_back_what_was_encoded(sandbox: &Sandbox) {
        let table = sandbox.table();
        for (i, arch) in Arch::ALL.into_iter().filter(|a| !a.is_native()).enumerate() {
            let flags = ["", "F", "PF", "CF", "POCF", "P", "OC", "O"][i % 8];
            let wanted = registration(arch, flags);
            table.register(&wanted).unwrap();
            let entry: Entry = table.read_entry(&wanted.name).unwrap().unwrap();
            assert!(entry.enabled);
            assert_eq!(entry.registration, wanted, "{arch} with {flags:?}");
            table.set_enabled(&wanted.name, false).unwrap();
            assert!(!table.read_entry(&wanted.name).unwrap().unwrap().enabled);
            table.remove(&wanted.name).unwrap();
            assert_eq!(table.read_entry(&wanted.name).unwrap(), None);
        }
        let extension = Registration {
            name: "by-extension".into(),
            matcher: Matcher::Extension("xyz".into()),
            interpreter: PathBuf::from("/bin/true"),
            flags: Flags::NONE,
        };
        table.register(&extension).unwrap();
        assert_eq!(table.read_entry("by-extension").unwrap().unwrap().registration, extension);
        assert_eq!(table.entry_names().unwrap(), ["by-extension"]);
        assert!(table.is_enabled().unwrap());
    }
}

namespace_test! {
    fn kernel_errors_are_named(sandbox: &Sandbox) {
        let table = sandbox.table();
        table.register(&registration(Arch::Arm64, "F")).unwrap();
        let error = table.register(&registration(Arch::Arm64, "F")).unwrap_err();
        assert!(matches!(error, Error::AlreadyRegistered { .. }), "{error}");

        let missing = Registration {
            interpreter: PathBuf::from("/nonexistent/qemu-riscv64"),
            ..registration(Arch::Riscv64, "F")
        };
        let error = table.register(&missing).unwrap_err();
        let shown = error.to_string();
        assert!(shown.contains("flag F opens the interpreter /nonexistent/qemu-riscv64"), "{shown}");

        // Control files are never entries.
        for name in ["register", "status", "..", "../x"] {
            assert!(matches!(table.remove(name), Err(Error::Invalid { .. })), "{name}");
        }
        assert!(table.remove("qemu-s390x").is_err(), "removing an absent entry");
    }
}
