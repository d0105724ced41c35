//! The kernel layer (`binfmt-misc`) against a real, private binfmt_misc instance:
//! what we encode is what the kernel stores and prints back.

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use binfmt_misc::report::Report;
use binfmt_misc::{Entry, Error, Flags, Matcher, Registration, Table};
use qemu_catalog::Arch;

use crate::util::{Sandbox, host_arch, namespace_test};

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
        let shown = Report(&error).to_string();
        assert!(shown.contains("flag F opens the interpreter /nonexistent/qemu-riscv64"), "{shown}");

        // Control files are never entries.
        for name in ["register", "status", "..", "../x"] {
            assert!(matches!(table.remove(name), Err(Error::Invalid { .. })), "{name}");
        }
        assert!(table.remove("qemu-s390x").is_err(), "removing an absent entry");
    }
}

namespace_test! {
    /// The model of the kernel's parser and printer (`binfmt_misc::model`, behind the
    /// fake table and the fuzz targets) agrees with the kernel: on which lines it
    /// accepts, on what it stores, and on the text it prints back.
    fn the_kernel_model_agrees_with_the_kernel(sandbox: &Sandbox) {
        let lines: &[&[u8]] = &[
            b":plain:M::\\x7f\\x45\\x4c\\x46::/bin/true:",
            b"|pipes|M|3|ABC|\\xff\\x00\\xff|/bin/true|POC\n",
            b":raw:M::AB\\\\C::/bin/true:P",
            b":offset:M:236:\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00::/bin/true:",
            b":offset:M:237:\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00::/bin/true:",
            b":plus:M:+5:\\x41::/bin/true:",
            b":minus:M:-0:\\x41::/bin/true:",
            b":negative:M:-1:\\x41::/bin/true:",
            b":space:M: 5:\\x41::/bin/true:",
            b":hex:M:0x5:\\x41::/bin/true:",
            b":masklen:M::\\x41\\x42:\\xff:/bin/true:",
            b":onedigit:M::\\x4::/bin/true:",
            b":nomagic:M:::\\xff:/bin/true:",
            b":ext:E::wasm::/bin/true:",
            b":extslash:E::a/b::/bin/true:",
            b":extempty:E::::/bin/true:",
            b":badtype:X::\\x41::/bin/true:",
            b":..:M::\\x41::/bin/true:",
            b":a/b:M::\\x41::/bin/true:",
            b"::M::\\x41::/bin/true:",
            b":flags:M::\\x41::/bin/true:PX",
            b":newline:M::\\x41::/bin/true:F\n",
            b":newlines:M::\\x41::/bin/true:P\n\n",
            b":noflags:M::\\x41::/bin/true",
            b":nointerp:M::\\x41:::P",
            b":short:E",
            b":cimpliesO:M::\\x41::/bin/true:C",
        ];
        let register = sandbox.mount.join("register");
        for &line in lines {
            let shown = String::from_utf8_lossy(line);
            let model = binfmt_misc::model::parse_register_line(line);
            let kernel = std::fs::OpenOptions::new()
                .write(true)
                .open(&register)
                .and_then(|mut file| std::io::Write::write(&mut file, line));
            match (model, kernel) {
                (Ok(registration), Ok(written)) => {
                    assert_eq!(written, line.len());
                    let path = sandbox.mount.join(&registration.name);
                    let printed = std::fs::read_to_string(&path).unwrap();
                    let entry = Entry { enabled: true, registration };
                    assert_eq!(binfmt_misc::model::status_text(&entry), printed, "{shown:?}");
                    assert_eq!(Entry::parse(&entry.registration.name, &printed), Ok(entry.clone()));
                    sandbox.table().remove(&entry.registration.name).unwrap();
                }
                (Err(rejected), Err(error)) => {
                    assert_eq!(error.raw_os_error(), Some(rustix::io::Errno::INVAL.raw_os_error()),
                        "{shown:?}: {error}; model: {rejected}");
                }
                (model, kernel) => panic!("{shown:?}: the model says {model:?}, the kernel {kernel:?}"),
            }
        }
        assert_eq!(sandbox.table().entry_names().unwrap(), Vec::<String>::new());
    }
}

namespace_test! {
    /// What the proof record relies on: a registration keeps its id while it is
    /// enabled, disabled and read, and the same line registered again gets another.
    fn a_registration_id_changes_with_each_registration_and_only_then(sandbox: &Sandbox) {
        let table = sandbox.table();
        let arm64 = registration(Arch::Arm64, "F");
        assert_eq!(table.registration_id(&arm64.name).unwrap(), None);
        table.register(&arm64).unwrap();
        table.register(&registration(Arch::S390x, "F")).unwrap();
        let first = table.registration_id(&arm64.name).unwrap().unwrap();
        let other = table.registration_id("qemu-s390x").unwrap().unwrap();
        assert_ne!(first, other);
        assert_eq!(first.instance, other.instance, "one instance");

        table.set_enabled(&arm64.name, false).unwrap();
        table.set_enabled(&arm64.name, true).unwrap();
        let _ = table.read_entry(&arm64.name).unwrap();
        assert_eq!(table.registration_id(&arm64.name).unwrap(), Some(first));

        table.remove(&arm64.name).unwrap();
        assert_eq!(table.registration_id(&arm64.name).unwrap(), None);
        table.register(&arm64).unwrap();
        let second = table.registration_id(&arm64.name).unwrap().unwrap();
        assert_ne!(second, first, "the same line registered again");
        assert_ne!(second.inode, first.inode);
        assert!(table.registration_id("no/such").is_err(), "names are checked");
    }
}

namespace_test! {
    /// What `binfmt check` and `doctor` rely on to name the entry that runs an
    /// architecture: of two enabled entries that accept a program, the kernel runs it
    /// with the one registered last, and lists that one first.
    fn the_entry_listed_first_is_the_one_that_runs(sandbox: &Sandbox) {
        let table = sandbox.table();
        fs::create_dir_all(&sandbox.scratch).unwrap();
        // Two "interpreters" that ignore the program and exit with their own status.
        let exits = |status: u8| {
            sandbox.executable(
                &format!("exit-{status}"),
                &tiny_elf::exit_with(host_arch().machine(), status),
            )
        };
        let (seven, nine) = (exits(7), exits(9));
        let program = sandbox.program(Arch::Riscv64, "", 0);
        let entry = |name: &str, interpreter: &PathBuf| Registration {
            name: name.to_owned(),
            interpreter: interpreter.clone(),
            ..registration(Arch::Riscv64, "F")
        };
        let runs_with = || Command::new(&program).status().unwrap().code();

        table.register(&entry("older", &seven)).unwrap();
        table.register(&entry("newer", &nine)).unwrap();
        assert_eq!(table.entry_names().unwrap(), ["newer", "older"]);
        assert_eq!(runs_with(), Some(9));

        // Registered again, "older" is now the newest: first, and the one that runs.
        table.remove("older").unwrap();
        table.register(&entry("older", &seven)).unwrap();
        assert_eq!(table.entry_names().unwrap(), ["older", "newer"]);
        assert_eq!(runs_with(), Some(7));

        // Disabled, it is passed over; its place in the list stays.
        table.set_enabled("older", false).unwrap();
        assert_eq!(runs_with(), Some(9));
        assert_eq!(table.entry_names().unwrap(), ["older", "newer"]);
    }
}
