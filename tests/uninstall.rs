//! `binfmt --uninstall`: removes exactly what matches, never the control files; the
//! checks of tonistiigi/binfmt's own hack/install-and-test.

use std::collections::BTreeSet;

use binfmt_misc::Table as _;
use qemu_catalog::Arch;

use crate::util::{Sandbox, foreign_arches, namespace_test};

namespace_test! {
    fn uninstall_removes_exactly_what_matches(sandbox: &Sandbox) {
        sandbox.binfmt(&["--install", "all"]).success();
        let all: BTreeSet<String> = foreign_arches().iter().map(|a| a.entry_name()).collect();
        assert_eq!(sandbox.entry_names(), all);

        // By architecture name, in two spellings.
        let run = sandbox.binfmt(&["--uninstall", "aarch64,linux/riscv64"]).success();
        assert!(run.stderr.contains("uninstalling: qemu-aarch64 OK"), "{run}");
        let mut expected = all.clone();
        expected.remove("qemu-aarch64");
        expected.remove("qemu-riscv64");
        assert_eq!(sandbox.entry_names(), expected);
        sandbox.assert_does_not_run(Arch::Arm64);
        sandbox.assert_runs(Arch::S390x);

        // Reinstalling works.
        sandbox.binfmt(&["--install", "arm64,riscv64"]).success();
        assert_eq!(sandbox.entry_names(), all);
        sandbox.assert_runs(Arch::Arm64);

        // By glob: everything ours, but not another tool's entry.
        let other = binfmt_misc::Registration {
            name: "other-tool".into(),
            matcher: binfmt_misc::Matcher::Extension("xyz".into()),
            interpreter: "/bin/true".into(),
            flags: binfmt_misc::Flags::NONE,
        };
        binfmt_misc::Table::register(&sandbox.table(), &other).unwrap();
        sandbox.binfmt(&["--uninstall", "qemu-*"]).success();
        assert_eq!(sandbox.entry_names(), BTreeSet::from(["other-tool".to_owned()]));

        // Nothing left to match is success: the state asked for holds.
        let run = sandbox.binfmt(&["--uninstall", "qemu-*"]).success();
        assert!(run.stderr.contains("nothing matches"), "{run}");
    }
}

namespace_test! {
    /// After an uninstall the emulator files no entry uses any more are removed, as
    /// after an install; one an entry still uses stays.
    fn uninstall_removes_the_emulator_files_no_entry_uses(sandbox: &Sandbox) {
        sandbox.binfmt(&["--install", "all"]).success();
        let files = || -> BTreeSet<String> {
            std::fs::read_dir(&sandbox.interpreters)
                .unwrap()
                .map(|item| item.unwrap().file_name().into_string().unwrap())
                .filter(|name| name.starts_with("qemu-"))
                .collect()
        };
        assert_eq!(files().len(), foreign_arches().len());
        let s390x = sandbox.table().read_entry("qemu-s390x").unwrap().unwrap();
        let run = sandbox.binfmt(&["--uninstall", "arm64"]).success();
        let line = crate::util::line_with(&run.stderr, "removed: ");
        assert!(line.contains("qemu-aarch64-") && line.ends_with("MB freed)"), "{run}");
        assert!(line.contains("(emulator no entry uses any more;"), "{run}");
        assert_eq!(files().len(), foreign_arches().len() - 1);
        sandbox.binfmt(&["--uninstall", "qemu-*"]).success();
        assert_eq!(files(), BTreeSet::new(), "every file went with its entry");
        assert!(!s390x.interpreter().exists());
        // Reinstalling writes them again.
        sandbox.binfmt(&["--install", "s390x"]).success();
        sandbox.assert_runs(Arch::S390x);
    }
}

namespace_test! {
    fn uninstall_refuses_control_files_and_escapes(sandbox: &Sandbox) {
        sandbox.binfmt(&["--install", "s390x"]).success();
        for item in ["register", "status", "../binfmt_misc/status", "qemu-s390x,register", "a\nb"] {
            let run = sandbox.binfmt(&["--uninstall", item]).exit(2);
            assert!(run.stderr.contains("cannot uninstall"), "{item:?}: {run}");
        }
        assert!(sandbox.mount.join("register").exists());
        assert!(sandbox.mount.join("status").exists());
        assert!(sandbox.entry_names().contains("qemu-s390x"));
    }
}
