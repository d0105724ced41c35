//! Kill safety and concurrency: a run killed with SIGKILL at any moment leaves the old
//! entry or the new one (each architecture keeps running programs), the next run
//! converges, and two runs at once both succeed and leave a correct table.
//!
//! Deterministic kill points come from the debug-only hook in
//! `binfmt_misc::kill_point`: `BINFMT_DEBUG_KILL_AT=N` makes a debug build SIGKILL
//! itself just before its `N`th state-changing step (a write to binfmt_misc, an
//! emulator file renamed into place). The random-moment test needs no hook.

use std::collections::BTreeMap;
use std::fs;
use std::process::{Child, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use binfmt_misc::kill_point::KILL_AT_ENV;
use qemu_catalog::Arch;

use crate::util::{Run, Sandbox, foreign_arches, namespace_test};

/// The entries of the sandbox's table with their text, without the control files.
fn entry_texts(sandbox: &Sandbox) -> BTreeMap<String, String> {
    let mut entries = sandbox.entries();
    entries.remove("register");
    entries.remove("status");
    entries
}

/// Leftover temporary emulator files in the interpreter directory.
fn temporary_files(sandbox: &Sandbox) -> Vec<String> {
    let Ok(dir) = fs::read_dir(&sandbox.interpreters) else {
        return Vec::new();
    };
    dir.map(|item| item.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains(".tmp-"))
        .collect()
}

fn assert_every_foreign_arch_runs(sandbox: &Sandbox) {
    for arch in foreign_arches() {
        sandbox.assert_runs(arch);
    }
}

namespace_test! {
    /// Two architectures whose entries differ (flags PF, and emulator files that are
    /// not on this filesystem) are replaced; the run is killed before each of its
    /// steps in turn. Each step is one of, per architecture: rename the emulator file
    /// into place, register `<name>.binfmt-new`, remove the old entry, register the
    /// new one, remove `<name>.binfmt-new`.
    fn a_replacement_killed_at_every_step_leaves_the_old_or_the_new_entry(sandbox: &Sandbox) {
        let arches = [Arch::Arm64, Arch::Riscv64];
        let list = "arm64,riscv64";
        sandbox.binfmt(&["--install", list]).success();
        let new = entry_texts(sandbox);
        let set_up_old = || {
            sandbox.binfmt(&["--uninstall", "qemu-*,*.binfmt-new"]).success();
            sandbox.binfmt(&["--install", list, "--flags", "PF"]).success();
            // Written by "another container": not on this filesystem any more.
            fs::remove_dir_all(&sandbox.interpreters).unwrap();
        };
        set_up_old();
        let old = entry_texts(sandbox);
        assert_ne!(old, new);

        let mut killed_at = Vec::new();
        for step in 1..=100 {
            set_up_old();
            let mut command = sandbox.command(&["--install", list]);
            command.env(KILL_AT_ENV, step.to_string());
            let run = Run::of(command);
            if run.signal.is_none() {
                // There is no step `step`: the run went through.
                run.success();
                assert_eq!(entry_texts(sandbox), new);
                break;
            }
            assert_eq!(run.signal, Some(9), "{run}");
            assert!(run.stderr.contains(&format!("step {step}: killed")), "{run}");

            let state = entry_texts(sandbox);
            for arch in arches {
                let name = arch.entry_name();
                let staging = binfmt_misc::staging_name_for(&name);
                let present: Vec<&String> =
                    [&name, &staging].into_iter().filter_map(|n| state.get(n)).collect();
                assert!(!present.is_empty(), "no {arch} entry after a kill at step {step}\n{run}");
                for text in present {
                    assert!(
                        *text == old[&name] || *text == new[&name],
                        "{arch} after a kill at step {step} is neither old nor new: {text}"
                    );
                }
                sandbox.assert_runs(arch);
            }
            assert!(
                state.keys().all(|name| arches.iter().any(|a| name.starts_with(&a.entry_name()))),
                "{state:?}"
            );

            // The next run converges: exactly the new entries, no leftovers.
            let next = sandbox.binfmt(&["--install", list]).success();
            assert_eq!(entry_texts(sandbox), new, "after a kill at step {step}\n{next}");
            assert_eq!(temporary_files(sandbox), Vec::<String>::new(), "{next}");
            for arch in arches {
                sandbox.assert_runs(arch);
            }
            killed_at.push(step);
        }
        assert!(
            !killed_at.is_empty(),
            "binfmt was never killed: the kill points ({KILL_AT_ENV}) exist only in debug \
             builds; run this test without --release"
        );
        assert_eq!(killed_at, (1..=10).collect::<Vec<_>>(), "five steps per architecture");
    }
}

namespace_test! {
    /// No hook: `--install all` is killed after a random delay within the time a
    /// whole run takes, over and over, alternating between two flag sets so that
    /// every run has all entries to replace. After every kill every foreign
    /// architecture still runs; at the end one run converges.
    fn runs_killed_at_random_moments_never_lose_an_entry(sandbox: &Sandbox) {
        let started = Instant::now();
        sandbox.binfmt(&["--install", "all", "--flags", "PF"]).success();
        let started_replace = Instant::now();
        sandbox.binfmt(&["--install", "all"]).success();
        let full_run = started_replace.elapsed();
        let start = started.elapsed().as_nanos() as u64 | 1;
        eprintln!("random start {start}, a full run takes {full_run:?}");

        let mut random = start;
        let mut next = move || {
            // xorshift64: enough to spread kill moments, and reproducible from its start.
            random ^= random << 13;
            random ^= random >> 7;
            random ^= random << 17;
            random
        };
        for round in 0..16 {
            if round % 5 == 4 {
                // Now and then the emulator files vanish too, so renames get killed.
                let _ = fs::remove_dir_all(&sandbox.interpreters);
            }
            let flags = if round % 2 == 0 { "PF" } else { "POCF" };
            let mut child: Child = sandbox
                .command(&["--install", "all", "--flags", flags])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn binfmt");
            let delay = Duration::from_nanos(next() % full_run.as_nanos() as u64);
            sleep(delay);
            let _ = child.kill();
            let status = child.wait().expect("wait for binfmt");
            eprintln!("round {round}: killed after {delay:?}: {status}");
            assert_every_foreign_arch_runs(sandbox);
        }
        let run = sandbox.binfmt(&["--install", "all"]).success();
        let state = entry_texts(sandbox);
        let names: Vec<String> = state.keys().cloned().collect();
        let mut expected: Vec<String> = foreign_arches().iter().map(|a| a.entry_name()).collect();
        expected.sort();
        assert_eq!(names, expected, "{run}");
        assert!(state.values().all(|text| text.contains("flags: POCF")), "{state:?}");
        assert_eq!(temporary_files(sandbox), Vec::<String>::new());
        assert_every_foreign_arch_runs(sandbox);
    }
}

namespace_test! {
    /// Two `--install all` at once, from an empty table, a stale one and a correct
    /// one: both exit 0, the table is correct, and exactly one of them wrote: the
    /// lock on the binfmt_misc instance made the second wait and find it done.
    fn two_installs_at_once_both_succeed(sandbox: &Sandbox) {
        let foreign = foreign_arches().len();
        // (how to set the table up, register writes one complete run makes)
        let rounds: [(&[&str], usize); 3] = [
            (&["--uninstall", "qemu-*"], foreign),
            (&["--install", "all", "--flags", "PF"], 2 * foreign),
            (&["--install", "all"], 0),
        ];
        for (set_up, writes) in rounds {
            sandbox.binfmt(set_up).success();
            for _ in 0..2 {
                let spawn = || {
                    sandbox
                        .command(&["--install", "all"])
                        .stdout(Stdio::piped())
                        .stderr(Stdio::piped())
                        .spawn()
                        .expect("spawn binfmt")
                };
                let (first, second) = (spawn(), spawn());
                let first = Run::from_output(first.wait_with_output().unwrap()).success();
                let second = Run::from_output(second.wait_with_output().unwrap()).success();
                let mut counts = [first.register_writes(), second.register_writes()];
                counts.sort();
                assert_eq!(counts, [0, writes], "{set_up:?}\n{first}\n{second}");
                assert_eq!(first.status(), second.status());
                let state = entry_texts(sandbox);
                assert_eq!(state.len(), foreign, "{state:?}");
                assert!(state.values().all(|text| text.contains("flags: POCF")), "{state:?}");
                // Set up the same starting point for the second try.
                sandbox.binfmt(set_up).success();
            }
        }
        sandbox.binfmt(&["--install", "all"]).success();
        assert_every_foreign_arch_runs(sandbox);
    }
}

namespace_test! {
    /// The lock itself, deterministically: while this test holds the instance's lock,
    /// a run waits; released, it finishes.
    fn a_run_waits_for_the_lock(sandbox: &Sandbox) {
        let table = sandbox.table();
        let lock = table.lock(Duration::from_secs(600)).unwrap();
        let mut child = sandbox
            .command(&["--install", "s390x"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        sleep(Duration::from_millis(500));
        assert!(child.try_wait().unwrap().is_none(), "binfmt did not wait for the lock");
        assert_eq!(entry_texts(sandbox).len(), 0, "binfmt wrote without the lock");
        drop(lock);
        let run = Run::from_output(child.wait_with_output().unwrap()).success();
        assert!(run.stderr.contains("waiting for it to finish"), "{run}");
        sandbox.assert_runs(Arch::S390x);
        // A status-only run does not wait.
        let _lock = table.lock(Duration::from_secs(600)).unwrap();
        sandbox.binfmt(&[]).success();
    }
}
