//! `binfmt check`: exit 0 only when every platform is proved by its probe; otherwise
//! what is missing, why, and the command that fixes it (which really does).

use qemu_catalog::Arch;

use crate::util::{Sandbox, cpu_level, host_arch, line_with, namespace_test, native_exit_zero};

namespace_test! {
    /// Everything listed runs: exit 0, also for the names a verify-qemu.sh uses.
    fn check_passes_when_every_platform_runs(sandbox: &Sandbox) {
        sandbox.binfmt(&["--install", "arm64,arm,riscv64"]).success();
        let run = sandbox
            .subcommand("check", &["linux/arm64,linux/arm/v7,linux/riscv64", "linux/arm/v6"])
            .success();
        assert!(run.stdout.ends_with("binfmt check: all 4 platforms run\n"), "{run}");
        if host_arch() == Arch::Amd64 {
            // REQUIRED_PLATFORMS as a verify-qemu.sh spells them (x86_64
            // is this CPU).
            sandbox.subcommand("check", &["qemu-x86_64", "qemu-aarch64", "qemu-arm"]).success();
        }
        let json = sandbox.subcommand("check", &["--json", "arm64,riscv64"]).success().json();
        assert_eq!(json["ok"], true);
        assert_eq!(json["confined"], true);
        assert_eq!(json["platforms"][0]["runs"], "emulated");
        assert_eq!(json["platforms"][0]["entries"][0], "qemu-aarch64");
        assert!(json.get("fix").is_none(), "{json}");
    }
}

namespace_test! {
    /// Every way a platform can fail, each named with its reason and fix; then the one
    /// command printed at the end fixes them all.
    fn check_names_what_is_missing_why_and_the_fix(sandbox: &Sandbox) {
        sandbox.binfmt(&["--install", "arm64,s390x"]).success();
        // s390x: disabled.
        sandbox.write_control("qemu-s390x", "0");
        // ppc64le: a stale entry, no F and a path that does not exist here.
        sandbox.register("qemu-ppc64le", Arch::Ppc64le, "/usr/bin/qemu-ppc64le-static".as_ref(), "OC");
        // mips64el: an interpreter that is not an emulator (it exits 0 for anything).
        let not_qemu = sandbox.executable("not-qemu", &native_exit_zero());
        sandbox.register("qemu-mips64el", Arch::Mips64le, &not_qemu, "F");
        // riscv64: nothing at all.

        let run = sandbox
            .subcommand("check", &["arm64,s390x,ppc64le,mips64le,riscv64"])
            .exit(1);
        let out = &run.stdout;
        assert!(line_with(out, "linux/arm64").starts_with("ok "), "{run}");
        let expect = [
            ("linux/s390x", "qemu-s390x claims s390x programs but is disabled"),
            ("linux/ppc64le", "qemu-ppc64le has no flag F and its interpreter /usr/bin/qemu-ppc64le-static does not exist"),
            ("linux/mips64le", "mips64le programs do not run through qemu-mips64el (interpreter "),
            ("linux/riscv64", "no entry: nothing in"),
        ];
        for (platform, reason) in expect {
            let line = line_with(out, platform);
            assert!(line.starts_with("MISSING ") && line.contains(reason), "{platform}: {run}");
        }
        assert!(out.contains("/usr/bin/qemu-ppc64le-static"), "names the path: {run}");
        assert!(line_with(out, "linux/mips64le").contains("): exited with status 0"), "{run}");
        // Fixes name the mount when it is not the default one.
        let binfmt = format!("binfmt --mount {}", sandbox.mount.display());
        for arch in ["s390x", "ppc64le", "mips64le", "riscv64"] {
            assert!(out.contains(&format!("fix: {binfmt} --install {arch}\n")), "{arch}: {run}");
        }
        let summary = line_with(out, "binfmt check: 4 of 5 platforms do not run");
        let fix = summary.split("to fix: ").nth(1).expect("one fix for everything");
        assert_eq!(fix, format!("{binfmt} --install s390x,ppc64le,mips64le,riscv64"));

        let json = sandbox
            .subcommand("check", &["--json", "arm64,s390x,ppc64le,mips64le,riscv64"])
            .exit(1)
            .json();
        let reasons: Vec<&str> = json["platforms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["reason"].as_str().unwrap_or("ok"))
            .collect();
        assert_eq!(reasons, ["ok", "entry-disabled", "stale-entry", "probe-failed", "no-entry"]);
        assert_eq!(json["fix"], fix);

        // The printed command is the fix (run with the sandbox's interpreter
        // directory, which Sandbox::binfmt adds with the mount).
        let args: Vec<&str> = fix.strip_prefix(&binfmt).unwrap().split_whitespace().collect();
        sandbox.binfmt(&args).success();
        sandbox
            .subcommand("check", &["arm64,s390x,ppc64le,mips64le,riscv64"])
            .success();
    }
}

namespace_test! {
    /// binfmt_misc switched off as a whole, or not mounted where looked: named, with
    /// their own fixes.
    fn check_names_a_disabled_or_missing_binfmt_misc(sandbox: &Sandbox) {
        sandbox.binfmt(&["--install", "arm64"]).success();
        sandbox.write_control("status", "0");
        let run = sandbox.subcommand("check", &["arm64"]).exit(1);
        assert!(line_with(&run.stdout, "linux/arm64").contains("binfmt_misc is disabled as a whole"), "{run}");
        let fix = format!("fix: echo 1 > {}/status", sandbox.mount.display());
        assert!(run.stdout.contains(&fix), "{run}");
        sandbox.write_control("status", "1");
        sandbox.subcommand("check", &["arm64"]).success();

        let plain = sandbox.scratch.join("plain");
        std::fs::create_dir_all(&plain).unwrap();
        let run = sandbox
            .with_mount(&plain)
            .subcommand("check", &["--json", "riscv64"])
        .exit(1);
        let json = run.json();
        assert_eq!(json["platforms"][0]["reason"], "not-mounted", "{run}");
        assert!(json["platforms"][0]["detail"].as_str().unwrap().contains("not mounted at"), "{run}");
        assert!(std::fs::read_dir(&plain).unwrap().next().is_none(), "check mounts nothing");
    }
}

namespace_test! {
    /// linux/amd64/vN is proved by the level the x86_64 probe reports; a level above
    /// the CPU's is missing, with no registration to fix it.
    #[cfg_attr(
        not(target_arch = "x86_64"),
        ignore = "x86_64 only: elsewhere amd64 is emulated, and the level is the emulator's"
    )]
    fn amd64_variants_follow_the_cpus_level(sandbox: &Sandbox) {
        assert_eq!(
            host_arch(),
            Arch::Amd64,
            "amd64 is emulated here: the level would be the emulator's, not the CPU's"
        );
        let level = cpu_level();
        sandbox.subcommand("check", &[&format!("linux/amd64/v{level}")]).success();
        sandbox.subcommand("check", &["linux/amd64/v1,linux/amd64"]).success();
        if level < 4 {
            let above = format!("linux/amd64/v{}", level + 1);
            let run = sandbox.subcommand("check", &[&above]).exit(1);
            let line = line_with(&run.stdout, &above);
            assert!(line.contains(&format!("this CPU runs x86-64-v{level}")), "{run}");
            assert!(run.stdout.contains("no fix: none: no registration changes the CPU"), "{run}");
        }
    }
}

namespace_test! {
    /// Bad platform names are usage errors.
    fn check_refuses_unknown_platforms(sandbox: &Sandbox) {
        let run = sandbox.subcommand("check", &["arm64,bogus"]).exit(2);
        assert!(run.stderr.contains("unknown architecture \"bogus\""), "{run}");
        sandbox.subcommand("check", &[]).exit(2);
    }
}
