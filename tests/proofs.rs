//! Proofs kept between runs (`crates/binfmt/src/proofs.rs`): a rerun that changes
//! nothing reports what the previous run proved without starting an emulator, and
//! every change to an entry or its interpreter file makes binfmt probe again, so a
//! stale proof is never reported.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use binfmt_misc::Table;
use qemu_catalog::Arch;

use crate::util::{Sandbox, foreign_arches, namespace_test};

/// The record binfmt keeps next to the interpreters.
fn record(sandbox: &Sandbox) -> PathBuf {
    sandbox.interpreters.join(".binfmt-proofs")
}

/// The architectures a run probed (`BINFMT_LOG=debug` logs one line per probe).
fn probed(run: &crate::util::Run) -> Vec<String> {
    run.stderr
        .lines()
        .filter_map(|line| line.strip_prefix("binfmt: debug: probe "))
        .filter_map(|rest| rest.split(':').next())
        .map(str::to_owned)
        .collect()
}

namespace_test! {
    fn a_rerun_reports_the_proofs_of_the_last_run_without_probing(sandbox: &Sandbox) {
        let first = sandbox.binfmt(&["--install", "all"]).success();
        for arch in Arch::ALL {
            assert!(probed(&first).contains(&arch.to_string()), "{first}");
        }
        let kept = fs::metadata(record(sandbox)).expect("the proofs are kept");
        assert_eq!(kept.mode() & 0o777, 0o644);

        let rerun = sandbox.binfmt(&["--install", "all"]).success();
        assert_eq!(probed(&rerun), Vec::<String>::new(), "{rerun}");
        for arch in foreign_arches() {
            assert!(
                rerun.stderr.contains(&format!("{arch}: proved by an earlier run")),
                "{rerun}"
            );
        }
        assert_eq!(rerun.status(), first.status());
        // Nothing changed, nothing written: the record is the same file, untouched.
        let after = fs::metadata(record(sandbox)).unwrap();
        assert_eq!((after.ino(), after.ctime_nsec(), after.ctime()),
                   (kept.ino(), kept.ctime_nsec(), kept.ctime()));

        // The status alone reads the same record.
        let status = sandbox.binfmt(&[]).success();
        assert_eq!(probed(&status), Vec::<String>::new(), "{status}");
        assert_eq!(status.status(), first.status());

        // `binfmt check` looks again, always.
        let check = sandbox.subcommand("check", &["linux/arm64"]).success();
        assert!(probed(&check).contains(&"arm64".to_owned()), "{check}");
    }
}

namespace_test! {
    /// The arm64 emulator's file is replaced by the s390x emulator behind binfmt's
    /// back, then the entry registered again with the very same line: the kernel now
    /// runs arm64 programs through the wrong emulator, and the status says so.
    fn a_changed_file_or_registration_is_probed_again(sandbox: &Sandbox) {
        let first = sandbox.binfmt(&["--install", "arm64,s390x"]).success();
        let supported = |run: &crate::util::Run| -> Vec<String> {
            run.status()["supported"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_str().unwrap().to_owned())
                .collect()
        };
        assert!(supported(&first).contains(&"linux/arm64".to_owned()), "{first}");

        let table = sandbox.table();
        let arm64 = table.read_entry("qemu-aarch64").unwrap().unwrap();
        let s390x = table.read_entry("qemu-s390x").unwrap().unwrap();
        let wrong = sandbox.interpreters.join("wrong");
        fs::copy(s390x.interpreter(), &wrong).unwrap();
        fs::rename(&wrong, arm64.interpreter()).unwrap();

        // The kernel still holds the right file (flag F): probed again, still right.
        let status = sandbox.binfmt(&[]).success();
        assert!(probed(&status).contains(&"arm64".to_owned()), "{status}");
        assert!(supported(&status).contains(&"linux/arm64".to_owned()), "{status}");
        sandbox.assert_runs(Arch::Arm64);

        // The same line registered again opens the wrong file.
        table.remove("qemu-aarch64").unwrap();
        table.register(&arm64.registration).unwrap();
        assert_eq!(table.read_entry("qemu-aarch64").unwrap().unwrap(), arm64);
        let status = sandbox.binfmt(&[]).success();
        assert!(probed(&status).contains(&"arm64".to_owned()), "{status}");
        assert!(!supported(&status).contains(&"linux/arm64".to_owned()), "{status}");
        assert!(supported(&status).contains(&"linux/s390x".to_owned()), "{status}");

        // binfmt itself puts it right: the file is replaced and the entry with it.
        let repair = sandbox.binfmt(&["--install", "arm64,s390x"]).success();
        assert!(supported(&repair).contains(&"linux/arm64".to_owned()), "{repair}");
        sandbox.assert_runs(Arch::Arm64);
    }
}
