//! Hostile arguments: each is refused with a message naming it, a non-zero exit, and
//! nothing written, neither to binfmt_misc nor to the interpreter directory.
//!
//! What the command line cannot express is tested one layer down, and says so: a NUL
//! byte cannot pass through `execve(2)` at all, and binfmt has no option for a custom
//! magic, mask or offset, so those are tried against the kernel layer directly.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use binfmt_misc::report::Report;
use binfmt_misc::{Error, Flags, Matcher, Registration, Table};
use qemu_catalog::Arch;

use crate::util::{Run, Sandbox, must, namespace_test};

/// Asserts the run was refused as invalid (exit 2) with `message` on stderr, printed
/// nothing on stdout, and left the sandbox empty: no entry, no interpreter file.
#[track_caller]
fn assert_refused(sandbox: &Sandbox, run: Run, message: &str) {
    let run = run.exit(2);
    assert!(run.stderr.contains(message), "expected {message:?}:\n{run}");
    assert_eq!(run.stdout, "", "{run}");
    assert_eq!(run.register_writes(), 0, "{run}");
    let names: Vec<String> = sandbox.entries().into_keys().collect();
    assert_eq!(names, ["register", "status"], "{run}");
    assert!(!sandbox.interpreters.exists(), "{run}");
}

namespace_test! {
    fn hostile_architecture_lists_are_refused(sandbox: &Sandbox) {
        let absurd = "arm64,".repeat(100_000 / 6);
        let cases: [(&str, &str); 14] = [
            ("arm64;rm -rf /", "unknown architecture \"arm64;rm -rf /\""),
            ("arm64,linux/arm64/..", "unknown architecture \"linux/arm64/..\""),
            ("../../../etc/passwd", "unknown architecture \"../../../etc/passwd\""),
            ("linux/../arm64", "unknown architecture \"linux/../arm64\""),
            // Control characters are shown escaped, never echoed raw to a terminal.
            ("arm64\n", "unknown architecture \"arm64\\n\""),
            ("arm64,\nriscv64", "unknown architecture \"\\nriscv64\""),
            ("arm64\t", "unknown architecture \"arm64\\t\""),
            ("arm64\x1b[2J", "unknown architecture \"arm64\\u{1b}[2J\""),
            ("linux/arm/v9", "unknown architecture \"linux/arm/v9\""),
            ("linux/amd64/v5", "unknown architecture \"linux/amd64/v5\""),
            ("linux/arm64/v8/extra", "unknown architecture \"linux/arm64/v8/extra\""),
            ("windows/arm64", "unknown architecture \"windows/arm64\""),
            ("", "unknown architecture \"\""),
            (&absurd, "the list is 99996 bytes long; at most 4096 are accepted"),
        ];
        for (list, message) in cases {
            let run = sandbox.binfmt(&["--install", list]);
            assert_refused(sandbox, run, &format!("--install: {message}"));
        }
        // The stderr of the absurd list stays short: nothing is echoed back.
        let run = sandbox.binfmt(&["--install", &absurd]);
        assert!(run.stderr.len() < 1000, "{} bytes of stderr", run.stderr.len());
    }
}

namespace_test! {
    /// `--uninstall` takes entry names: anything that could not be an entry file of
    /// this mount is refused before anything is removed.
    fn hostile_entry_names_are_refused(sandbox: &Sandbox) {
        sandbox.binfmt(&["--install", "s390x"]).success();
        let before = sandbox.entries();
        let long = "q".repeat(256);
        for item in [
            "a/b",
            "qemu-s390x/../register",
            "../binfmt_misc/status",
            "../",
            "..",
            ".",
            "a:b",
            "qemu-s390x\n",
            "qemu-\x1b[2Js390x",
            "qemu-s390x\r",
            "register",
            "status",
            "qemu-s390x,register",
            "qemu-*,status",
            "qemu-*/..",
            long.as_str(),
            "",
            ",",
        ] {
            let run = sandbox.binfmt(&["--uninstall", item]).exit(2);
            assert!(run.stderr.contains("--uninstall: cannot uninstall"), "{item:?}: {run}");
            assert!(run.stderr.contains("invalid entry name"), "{item:?}: {run}");
            assert_eq!(sandbox.entries(), before, "{item:?}");
        }
        let run = sandbox.binfmt(&["--uninstall", &"qemu-*,".repeat(10_000)]).exit(2);
        assert!(run.stderr.contains("70000 bytes long"), "{run}");
        assert_eq!(sandbox.entries(), before);
        sandbox.assert_runs(Arch::S390x);
    }
}

namespace_test! {
    fn unknown_flags_are_refused(sandbox: &Sandbox) {
        for flags in ["PX", "pocf!", "F\n", "F C", "ü"] {
            let run = sandbox.binfmt(&["--install", "arm64", "--flags", flags]);
            assert_refused(sandbox, run, "unknown binfmt_misc flag");
        }
        // The same through the environment variable.
        let mut command = sandbox.command(&["--install", "arm64"]);
        command.env("BINFMT_FLAGS", "POCFZ");
        assert_refused(sandbox, Run::of(command), "unknown binfmt_misc flag 'Z'");
        // An unknown option is refused by the parser, before anything else.
        let run = sandbox.binfmt(&["--install", "arm64", "--credentials-from-binary"]);
        assert_refused(sandbox, run, "unexpected argument");
    }
}

/// A NUL byte cannot reach binfmt through its arguments or environment: `execve(2)`
/// takes C strings, so the spawn itself fails. Every parser that would see those
/// strings refuses a NUL anyway, which is checked here on the libraries.
#[test]
fn a_nul_byte_cannot_pass_and_would_be_refused() {
    let spawn = |command: &mut Command| command.output().map(drop);
    let binfmt = env!("CARGO_BIN_EXE_binfmt");
    let error = spawn(Command::new(binfmt).args(["--install", "arm64\0riscv64"])).unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput, "{error}");
    let error = spawn(Command::new(binfmt).env("BINFMT_FLAGS", "F\0")).unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput, "{error}");

    for list in ["arm64\0", "\0", "arm64,\0riscv64", "all\0"] {
        assert!(qemu_catalog::parse_list(list).is_err(), "{list:?}");
    }
    assert!(binfmt_misc::entry::validate_name("qemu-aarch64\0").is_err());
    assert!("F\0".parse::<Flags>().is_err());
    let registration = Registration {
        name: "nul".into(),
        matcher: Matcher::Extension("x".into()),
        interpreter: PathBuf::from("/bin/true\0/x"),
        flags: Flags::NONE,
    };
    assert!(registration.validate().is_err());
}

namespace_test! {
    /// binfmt has no option for a custom magic, mask or offset; the kernel layer that
    /// would write them refuses every malformed one before writing. The mount is
    /// read-only during the attempts, so a write would fail differently (EROFS).
    fn malformed_registrations_never_reach_the_kernel(sandbox: &Sandbox) {
        let table = sandbox.table();
        let base = Registration {
            name: "probe".into(),
            matcher: Arch::Riscv64.matcher(),
            interpreter: PathBuf::from("/bin/true"),
            flags: Flags::NONE,
        };
        let magic = |offset: u32, magic: usize, mask: Option<usize>| Registration {
            matcher: Matcher::Magic {
                offset,
                magic: vec![0x7f; magic],
                mask: mask.map(|length| vec![0xff; length]),
            },
            ..base.clone()
        };
        let named = |name: &str| Registration { name: name.into(), ..base.clone() };
        let cases = [
            (magic(0, 20, Some(19)), "mask is 19 bytes but magic is 20"),
            (magic(0, 4, Some(5)), "mask is 5 bytes but magic is 4"),
            (magic(237, 20, None), "offset 237 plus 20 bytes of magic reaches beyond the 256"),
            (magic(256, 1, Some(1)), "offset 256 plus 1 bytes"),
            (magic(u32::MAX, 1, None), "offset 4294967295 plus 1 bytes"),
            (magic(0, 257, None), "offset 0 plus 257 bytes"),
            (magic(0, 0, None), "magic is empty"),
            (magic(0, 256, Some(256)), "the register line would be"),
            (named("a/b"), "invalid entry name \"a/b\""),
            (named("../register"), "invalid entry name \"../register\""),
            (named("a:b"), "invalid entry name \"a:b\""),
            (named("a\nb"), "invalid entry name \"a\\nb\""),
            (named("a\x7fb"), "invalid entry name \"a\\u{7f}b\""),
            (named("register"), "invalid entry name \"register\""),
            (named(".."), "invalid entry name \"..\""),
            (
                Registration { interpreter: PathBuf::from("/bin/a:b"), ..base.clone() },
                "invalid interpreter /bin/a:b",
            ),
            (
                Registration { interpreter: PathBuf::from("bin/true"), ..base.clone() },
                "invalid interpreter bin/true",
            ),
        ];
        must("mount", &["-o", "remount,ro", sandbox.mount.to_str().unwrap()]);
        for (registration, message) in cases {
            let error = table.register(&registration).unwrap_err();
            assert!(matches!(error, Error::Invalid { .. }), "{error}");
            let shown = Report(&error).to_string();
            assert!(shown.contains(message), "expected {message:?} in {shown:?}");
        }
        // And the ones the kernel would take do reach it (and fail: read-only).
        let error = table.register(&magic(236, 20, Some(20))).unwrap_err();
        assert!(!matches!(error, Error::Invalid { .. }), "{error}");
        assert_eq!(sandbox.entries().len(), 2); // register, status
    }
}

namespace_test! {
    /// `--mount` must be a binfmt_misc mount itself: a symbolic link (to the real
    /// mount or anywhere else), a plain directory, another filesystem or a file are
    /// refused, and nothing is mounted, registered or written.
    fn mounts_that_are_not_binfmt_misc_are_refused(sandbox: &Sandbox) {
        let elsewhere = sandbox.scratch.join("elsewhere");
        fs::create_dir_all(&elsewhere).unwrap();
        let link_elsewhere = sandbox.scratch.join("link-elsewhere");
        symlink(&elsewhere, &link_elsewhere).unwrap();
        let link_to_mount = sandbox.scratch.join("link-to-mount");
        symlink(&sandbox.mount, &link_to_mount).unwrap();
        let tmpfs = sandbox.scratch.join("tmpfs");
        fs::create_dir_all(&tmpfs).unwrap();
        must("mount", &["-t", "tmpfs", "tmpfs", tmpfs.to_str().unwrap()]);
        let file = sandbox.scratch.join("file");
        fs::write(&file, b"").unwrap();

        let cases: [(&Path, &str); 7] = [
            (&link_elsewhere, "is a symbolic link"),
            (&link_to_mount, "is a symbolic link"),
            (&elsewhere, "is not a binfmt_misc mount"),
            (&tmpfs, "is not a binfmt_misc mount (filesystem type 0x1021994)"),
            (Path::new("/proc/sys/fs"), "is not a binfmt_misc mount (filesystem type 0x9fa0)"),
            (&file, "cannot open"),
            (Path::new("relative/binfmt_misc"), "cannot open"),
        ];
        let before = sandbox.entries();
        for (mount, message) in cases {
            let mut command = Command::new(env!("CARGO_BIN_EXE_binfmt"));
            command
                .arg("--mount")
                .arg(mount)
                .arg("--interpreter-dir")
                .arg(&sandbox.interpreters)
                .args(["--install", "arm64"]);
            let run = Run::of(command).exit(1);
            assert!(run.stderr.contains(message), "{}: {run}", mount.display());
            assert!(run.stderr.contains(&mount.display().to_string()), "{run}");
            assert_eq!(run.stdout, "");
        }
        assert_eq!(sandbox.entries(), before);
        assert!(fs::read_dir(&elsewhere).unwrap().next().is_none());
        assert!(fs::read_dir(&tmpfs).unwrap().next().is_none());
        assert!(!sandbox.interpreters.exists());
    }
}
