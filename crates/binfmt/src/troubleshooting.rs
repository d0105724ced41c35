//! The troubleshooting reference, the part of `docs/troubleshooting.md` between its
//! markers: every finding `binfmt doctor` and `binfmt check` can report, grouped by
//! what the user sees, each shown as doctor prints it with its cause and fix. (Above
//! the markers, the page maps the errors a failing build prints to these groups.)
//!
//! The reference is generated from the findings themselves ([`crate::findings`]): an
//! example of every [`Finding`] variant is worded by the same code that words a real
//! one, so the page cannot say something binfmt does not. The tests below fail when a
//! variant has no example, when the page is not what [`reference`] writes, or when the
//! page lists an id no finding has; `BINFMT_UPDATE_DOCS=1 cargo test -p binfmt --lib
//! troubleshooting` writes it again.

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use binfmt_misc::DEFAULT_MOUNT;
use binfmt_misc::lock::{Holder, LockBusy};
use qemu_catalog::Arch;
use rustix::io::Errno;

use crate::findings::{EntryRef, Finding};
use crate::outcome::Shared;
use crate::probe::ProbeFailure;

/// What a user sees, and the findings that explain it, in the order the page lists
/// them.
const SYMPTOMS: &[(&str, &str, &[&str])] = &[
    (
        "A build or a container fails with `exec format error`",
        "`docker buildx build --platform linux/amd64` on an ARM64 host (or `linux/arm64` on \
         x86-64) stops at its first `RUN` with `exec /bin/sh: exec format error`, or \
         `verify-qemu.sh` says a platform does not run. The kernel found no working handler \
         for the program's architecture.",
        &[
            "no-entry",
            "stale-entry",
            "no-fix-binary",
            "probe-failed",
            "entry-disabled",
            "globally-disabled",
            "duplicate-arch",
            "kernel-too-old-for-f",
            "level-too-low",
            "native-fails",
        ],
    ),
    (
        "binfmt cannot register, or what it registered is gone",
        "`binfmt --install` exits non-zero, buildkitd logs `failed to register binfmt_misc`, \
         or a container reported success and the entries vanished with it.",
        &[
            "read-only",
            "not-privileged",
            "not-mounted",
            "self-mounted",
            "binfmt-misc-missing",
            "binfmt-misc-not-loaded",
            "no-space",
            "interpreter-dir-denied",
            "lock-busy",
        ],
    ),
    (
        "binfmt cannot look",
        "`binfmt doctor` or `binfmt check` could not read the table or run its probes, so it \
         cannot say what works.",
        &["unreadable", "cannot-probe"],
    ),
    (
        "Every program is slow or broken, native ones too",
        "The shell, `ls` and binfmt itself crawl or fail: an entry claims the machine's own \
         architecture.",
        &["host-arch-entry"],
    ),
    (
        "Another tool's handler (notices, not problems)",
        "Rosetta, FEX, box64 or a distribution's qemu-user-binfmt registered entries too. \
         binfmt says which one runs each architecture and never advises removing a working \
         one.",
        &["shadowed-handler", "foreign-emulator"],
    ),
];

/// The line before the generated reference in `docs/troubleshooting.md`.
pub const BEGIN: &str = "<!-- BEGIN findings: generated from crates/binfmt/src/findings.rs by \
                         crates/binfmt/src/troubleshooting.rs; edit those, then run \
                         BINFMT_UPDATE_DOCS=1 cargo test -p binfmt --lib troubleshooting -->";
/// The line after it.
pub const END: &str = "<!-- END findings -->";

/// The reference, as the findings word themselves: what goes between [`BEGIN`] and
/// [`END`].
pub fn reference() -> String {
    let mount = Path::new(DEFAULT_MOUNT);
    let examples = examples();
    let mut page = String::from(
        "## Every finding\n\
         \n\
         Each entry shows what doctor prints for an example table at \
         `/proc/sys/fs/binfmt_misc` on an x86-64 host building for `linux/arm64`; on an \
         ARM64 host building for `linux/amd64` it names `qemu-x86_64` and `amd64` \
         instead, and yours names your own entries and paths. `binfmt doctor --json` \
         gives the same, with these ids.\n",
    );
    for (symptom, seen, ids) in SYMPTOMS {
        let _ = write!(page, "\n### {symptom}\n\n{seen}\n");
        for id in *ids {
            let _ = write!(page, "\n#### `{id}`\n");
            let worded: Vec<_> = examples
                .iter()
                .filter(|finding| finding.id() == *id)
                .map(|finding| finding.worded(mount))
                .collect();
            let heading = match examples.iter().find(|finding| finding.id() == *id) {
                Some(finding) if finding.is_notice() => "NOTE",
                _ => "PROBLEM",
            };
            page.push_str("\n```text\n");
            for finding in &worded {
                let _ = writeln!(page, "{heading} [{}] {}", finding.id, finding.problem);
            }
            page.push_str("```\n");
            // The cause is one per id; the fix can differ between the examples.
            if let Some(first) = worded.first() {
                let _ = write!(page, "\n**Why:** {}\n", first.cause);
            }
            let mut fixes: Vec<&str> = worded.iter().map(|f| f.fix.as_str()).collect();
            fixes.dedup();
            for fix in fixes {
                let _ = write!(page, "\n**Fix:** {fix}\n");
            }
        }
    }
    page
}

/// An example of every [`Finding`] variant, with the values a real table gives.
fn examples() -> Vec<Finding> {
    let entry = |name: &str, interpreter: &str| EntryRef {
        name: name.to_owned(),
        interpreter: PathBuf::from(interpreter),
        enabled: true,
    };
    let ours = |arch: Arch| {
        entry(
            &arch.entry_name(),
            &format!("/var/lib/binfmt/qemu-{}-0123456789abcdef", arch.qemu_cpu()),
        )
    };
    // Debian's qemu-user-binfmt registers without F, at these paths.
    let debian = |arch: Arch| {
        entry(
            &arch.entry_name(),
            &format!("/usr/libexec/qemu-binfmt/{}-binfmt-P", arch.qemu_cpu()),
        )
    };
    let os_error = |errno: Errno| io::Error::from_raw_os_error(errno.raw_os_error());
    vec![
        Finding::BinfmtMiscNotLoaded,
        Finding::BinfmtMiscMissing,
        Finding::KernelTooOldForF {
            release: "4.4.0-210-generic".to_owned(),
        },
        Finding::NotMounted {
            elsewhere: Vec::new(),
            error: None,
        },
        Finding::MountUnusable {
            error: Shared::new(binfmt_misc::Error::MountIsSymlink {
                path: PathBuf::from(DEFAULT_MOUNT),
            }),
        },
        Finding::Unreadable {
            error: Shared::new(binfmt_misc::Error::List {
                path: PathBuf::from(DEFAULT_MOUNT),
                source: os_error(Errno::ACCESS),
            }),
        },
        Finding::SelfMounted { entries: 8 },
        Finding::ReadOnly,
        Finding::NotPrivileged {
            register: Path::new(DEFAULT_MOUNT).join("register"),
            errno: Errno::PERM,
        },
        Finding::GloballyDisabled,
        Finding::EntryDisabled {
            arch: Arch::Arm64,
            entries: vec![EntryRef {
                enabled: false,
                ..ours(Arch::Arm64)
            }],
        },
        Finding::HostArchEntry {
            arch: Arch::Amd64,
            entries: vec![debian(Arch::Amd64)],
        },
        Finding::StaleEntry {
            arch: Some(Arch::Arm64),
            entries: vec![entry("qemu-aarch64", "/usr/bin/qemu-aarch64-static")],
        },
        Finding::NoFixBinary {
            arch: Arch::Arm64,
            entries: vec![debian(Arch::Arm64)],
        },
        Finding::DuplicateArch {
            arch: Arch::Arm64,
            names: vec!["qemu-aarch64".to_owned(), "qemu-aarch64-old".to_owned()],
        },
        Finding::Shadowed {
            arch: Arch::Amd64,
            runner: entry("rosetta", "/mnt/lima-rosetta/rosetta"),
            passed_over: vec![ours(Arch::Amd64)],
        },
        Finding::CannotProbe {
            reason: "cannot create a directory in /tmp: Permission denied (os error 13)".to_owned(),
        },
        Finding::ProbeFailed {
            arch: Arch::Arm64,
            entries: vec![ours(Arch::Arm64)],
            failure: ProbeFailure::Signal(11),
        },
        Finding::NoEntry { arch: Arch::Arm64 },
        Finding::NativeFails {
            arch: Arch::I386,
            failure: Some(ProbeFailure::Exec(Errno::NOEXEC.raw_os_error())),
        },
        Finding::LevelTooLow { have: 2, want: 3 },
        Finding::LockBusy(LockBusy {
            path: PathBuf::from(DEFAULT_MOUNT),
            waited: Duration::from_secs(30),
            holders: vec![Holder {
                pid: 4242,
                command: Some("binfmt --install all".to_owned()),
            }],
        }),
        Finding::NoSpace {
            dir: PathBuf::from("/var/lib/binfmt"),
            arches: vec![Arch::Riscv64, Arch::S390x],
            needed: 31_457_280,
            free: Some(4_194_304),
        },
        Finding::DirDenied {
            error: Shared::new(interpreter_files::Error::Io {
                path: PathBuf::from("/var/lib/binfmt"),
                action: "create",
                source: os_error(Errno::ACCESS),
            }),
        },
        Finding::ForeignEmulator {
            arch: Arch::Arm64,
            entries: vec![debian(Arch::Arm64)],
        },
    ]
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// Which variant a finding is, by an exhaustive match: a new variant does not
    /// compile until it is numbered here, and the test below then asks for its example.
    fn variant(finding: &Finding) -> usize {
        match finding {
            Finding::BinfmtMiscNotLoaded => 0,
            Finding::BinfmtMiscMissing => 1,
            Finding::KernelTooOldForF { .. } => 2,
            Finding::NotMounted { .. } => 3,
            Finding::MountUnusable { .. } => 4,
            Finding::Unreadable { .. } => 5,
            Finding::SelfMounted { .. } => 6,
            Finding::ReadOnly => 7,
            Finding::NotPrivileged { .. } => 8,
            Finding::GloballyDisabled => 9,
            Finding::EntryDisabled { .. } => 10,
            Finding::HostArchEntry { .. } => 11,
            Finding::StaleEntry { .. } => 12,
            Finding::NoFixBinary { .. } => 13,
            Finding::DuplicateArch { .. } => 14,
            Finding::Shadowed { .. } => 15,
            Finding::CannotProbe { .. } => 16,
            Finding::ProbeFailed { .. } => 17,
            Finding::NoEntry { .. } => 18,
            Finding::NativeFails { .. } => 19,
            Finding::LevelTooLow { .. } => 20,
            Finding::LockBusy(_) => 21,
            Finding::NoSpace { .. } => 22,
            Finding::DirDenied { .. } => 23,
            Finding::ForeignEmulator { .. } => 24,
        }
    }
    const VARIANTS: usize = 25;

    fn page_path() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/troubleshooting.md")
    }

    #[test]
    fn every_finding_has_an_example_and_a_symptom() {
        let examples = examples();
        let seen: BTreeSet<usize> = examples.iter().map(variant).collect();
        let missing: Vec<usize> = (0..VARIANTS).filter(|v| !seen.contains(v)).collect();
        assert!(
            missing.is_empty(),
            "variants {missing:?} (see `variant`) have no example in `examples`"
        );
        let ids: BTreeSet<&str> = examples.iter().map(Finding::id).collect();
        let listed: Vec<&str> = SYMPTOMS
            .iter()
            .flat_map(|(_, _, ids)| *ids)
            .copied()
            .collect();
        let listed_set: BTreeSet<&str> = listed.iter().copied().collect();
        assert_eq!(
            listed.len(),
            listed_set.len(),
            "an id is listed twice: {listed:?}"
        );
        assert_eq!(
            ids, listed_set,
            "SYMPTOMS must list every finding's id, and no other"
        );
    }

    #[test]
    fn the_page_lists_every_finding_and_nothing_else() {
        let ids: BTreeSet<&str> = examples().iter().map(Finding::id).collect();
        let page = reference();
        let headed: BTreeSet<&str> = page
            .lines()
            .filter_map(|line| line.strip_prefix("#### `")?.strip_suffix('`'))
            .collect();
        assert_eq!(headed, ids);
        for id in &ids {
            assert!(
                page.contains(&format!("[{id}] ")),
                "{id}: the page shows no example of it"
            );
        }
    }

    // The fixes name the emulators the binary carries, which depend on its host.
    #[test]
    #[cfg_attr(
        not(target_arch = "x86_64"),
        ignore = "docs/troubleshooting.md is written for an x86_64 host's emulators"
    )]
    fn docs_troubleshooting_md_is_the_generated_reference() {
        let path = page_path();
        let page = std::fs::read_to_string(&path).expect("docs/troubleshooting.md");
        let (Some(begin), Some(end)) = (page.find(BEGIN), page.find(END)) else {
            panic!(
                "{}: the markers {BEGIN} and {END} are missing",
                path.display()
            );
        };
        let start = begin + BEGIN.len() + 1;
        let generated = reference();
        if std::env::var_os("BINFMT_UPDATE_DOCS").is_some() {
            let updated = format!("{}{generated}{}", &page[..start], &page[end..]);
            std::fs::write(&path, updated).expect("write docs/troubleshooting.md");
            return;
        }
        assert!(
            page.get(start..end) == Some(generated.as_str()),
            "{} is not what the findings say; regenerate it: BINFMT_UPDATE_DOCS=1 cargo test \
             -p binfmt --lib troubleshooting",
            path.display()
        );
    }
}
