//! Probes and the status JSON: `supported` lists what ran, in an empty root where
//! only entries with flag F work; native architectures and the x86-64 level are
//! found by execution.

use binfmt_misc::Table;
use qemu_catalog::Arch;

use crate::util::{
    Sandbox, binfmt_without_capabilities, cpu_level, host_arch, line_with, namespace_test,
    native_spinning,
};

fn supported(sandbox: &Sandbox) -> Vec<String> {
    let run = sandbox.binfmt(&[]).success();
    run.status()["supported"]
        .as_array()
        .expect("supported is a list")
        .iter()
        .map(|p| p.as_str().expect("platforms are strings").to_owned())
        .collect()
}

/// The platforms this host runs with nothing registered.
fn native_platforms() -> Vec<String> {
    match host_arch() {
        Arch::Amd64 => {
            let mut platforms = vec!["linux/amd64".to_owned()];
            platforms.extend((2..=cpu_level()).map(|v| format!("linux/amd64/v{v}")));
            platforms.push("linux/386".to_owned());
            platforms
        }
        arch => arch.platforms().iter().map(|p| (*p).to_owned()).collect(),
    }
}

namespace_test! {
    /// With nothing registered, `supported` is exactly what this CPU runs: on x86_64
    /// that includes linux/386, found by running the i386 probe (no entry claims it),
    /// and one linux/amd64/vN per x86-64 level /proc/cpuinfo shows.
    fn supported_is_what_runs_natively_when_nothing_is_registered(sandbox: &Sandbox) {
        if host_arch() == Arch::Amd64 && !std::path::Path::new("/proc/sys/abi/vsyscall32").exists() {
            panic!("this x86_64 kernel has no IA32 emulation: the test expects linux/386 to run");
        }
        assert_eq!(supported(sandbox), native_platforms());
        let run = sandbox.subcommand("check", &["linux/386,linux/amd64"]);
        if host_arch() == Arch::Amd64 {
            let run = run.success();
            let line = line_with(&run.stdout, "linux/386");
            assert!(line.starts_with("ok ") && line.ends_with("runs natively"), "{run}");
        }
    }
}

namespace_test! {
    /// An entry is not a platform: one without F (whose interpreter exists here, so a
    /// program run directly works) is not supported, because the probe runs in an
    /// empty root; a disabled one is not listed at all.
    fn only_entries_with_f_make_a_platform_supported(sandbox: &Sandbox) {
        sandbox.binfmt(&["--install", "riscv64,s390x,arm64"]).success();
        let entry = sandbox.table().read_entry("qemu-riscv64").unwrap().unwrap();
        let file = entry.interpreter().to_owned();
        assert!(file.exists(), "{} was written by --install", file.display());
        sandbox.table().remove("qemu-riscv64").unwrap();
        sandbox.register("qemu-riscv64", Arch::Riscv64, &file, "PO");
        sandbox.assert_runs(Arch::Riscv64); // here, where the file exists
        sandbox.write_control("qemu-s390x", "0");

        let run = sandbox.binfmt(&[]).success();
        let status = run.status();
        let supported = status["supported"].as_array().unwrap();
        assert!(supported.contains(&"linux/arm64".into()), "{run}");
        assert!(!supported.contains(&"linux/riscv64".into()), "no F: {run}");
        assert!(!supported.contains(&"linux/s390x".into()), "disabled: {run}");
        assert_eq!(
            status["emulators"],
            serde_json::json!(["qemu-aarch64", "qemu-riscv64"]),
            "enabled entries, whatever they can do"
        );
    }
}

namespace_test! {
    /// An interpreter that hangs is killed after the timeout, and the platform is not
    /// supported; the run still finishes.
    fn a_hung_interpreter_is_killed_after_the_timeout(sandbox: &Sandbox) {
        let spinning = sandbox.executable("spin", &native_spinning());
        sandbox.register("qemu-mips64", Arch::Mips64, &spinning, "F");
        let started = std::time::Instant::now();
        let run = sandbox.subcommand("check", &["mips64"]).exit(1);
        let took = started.elapsed();
        assert!(run.stdout.contains("did not exit within 5 s and was killed"), "{run}");
        assert!(took < std::time::Duration::from_secs(30), "took {took:?}");
    }
}

namespace_test! {
    /// Without CAP_SYS_CHROOT the probes cannot chroot: they run in place and say so. An entry
    /// with F is then still proved; one without F is not, since in place it proves
    /// nothing about containers.
    fn without_root_probes_run_in_place_and_say_so(sandbox: &Sandbox) {
        sandbox.binfmt(&["--install", "arm64,loong64"]).success();
        let loong64 = sandbox.table().read_entry("qemu-loongarch64").unwrap().unwrap();
        sandbox.table().remove("qemu-loongarch64").unwrap();
        sandbox.register("qemu-loongarch64", Arch::Loong64, loong64.interpreter(), "");
        let mount = sandbox.mount.to_str().unwrap();
        let run = binfmt_without_capabilities(&["check", "--mount", mount, "arm64,loong64"]).exit(1);
        let arm64 = line_with(&run.stdout, "linux/arm64");
        assert!(arm64.starts_with("ok ") && arm64.contains("runs through qemu-aarch64 ("), "{run}");
        assert!(arm64.ends_with(&format!(", binfmt's QEMU {})", qemu_catalog::emulator::QEMU)), "{run}");
        let loong64 = line_with(&run.stdout, "linux/loong64");
        assert!(loong64.starts_with("MISSING ") && loong64.contains("qemu-loongarch64 has no flag F: its interpreter"), "{run}");
        assert!(run.stdout.contains("note: the probes ran in place"), "{run}");
    }
}
