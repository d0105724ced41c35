//! Runs the x86_64 and i386 programs directly on this machine and checks their
//! output and exit status: the end-to-end proof for the two architectures that need
//! no emulator. Ignored, with the reason, where the host is not x86_64; an x86_64
//! kernel that runs no i386 programs fails the i386 test, saying so.

use crate::util::greeting;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
use tiny_elf::{Machine, exit_with, hello};

/// Writes `program` to a fresh executable file and runs it.
fn run(name: &str, program: &[u8]) -> Output {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("tiny-elf-{}-{name}", std::process::id()));
    std::fs::write(&path, program).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let output = spawn(&path);
    std::fs::remove_file(&path).unwrap();
    output
}

/// Runs `path`, retrying on ETXTBSY: a test thread that forks while another still
/// holds its freshly written file open for writing makes exec fail briefly (the
/// child inherits the write descriptor until its own exec).
fn spawn(path: &Path) -> Output {
    const ETXTBSY: i32 = 26;
    let mut attempts = 0;
    loop {
        match Command::new(path).output() {
            Ok(output) => return output,
            Err(e) if e.raw_os_error() == Some(ETXTBSY) && attempts < 50 => {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("cannot run {}: {e}", path.display()),
        }
    }
}

fn check(machine: Machine) {
    let message = greeting(machine);
    let out = run(
        &format!("hello-{}", machine.name()),
        &hello(machine, &message, 42),
    );
    assert_eq!(out.stdout, message, "{}: stdout", machine.name());
    assert_eq!(out.status.code(), Some(42), "{}: status", machine.name());

    let out = run(&format!("exit-{}", machine.name()), &exit_with(machine, 7));
    assert_eq!(out.stdout, b"", "{}: stdout", machine.name());
    assert_eq!(out.status.code(), Some(7), "{}: status", machine.name());

    let out = run(&format!("exit0-{}", machine.name()), &exit_with(machine, 0));
    assert_eq!(out.status.code(), Some(0), "{}: status", machine.name());
}

#[test]
#[cfg_attr(
    not(target_arch = "x86_64"),
    ignore = "x86_64 only: runs x86_64 programs natively"
)]
fn x86_64_runs_natively() {
    check(Machine::X86_64);
}

/// Whether the running kernel executes i386 binaries: an x86_64 kernel built with
/// IA32 emulation (it then has /proc/sys/abi/vsyscall32) and not booted with
/// `ia32_emulation=0`.
fn kernel_runs_i386() -> bool {
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    Path::new("/proc/sys/abi/vsyscall32").exists()
        && !cmdline
            .split_whitespace()
            .any(|arg| matches!(arg, "ia32_emulation=0" | "ia32_emulation=false"))
}

#[test]
#[cfg_attr(
    not(target_arch = "x86_64"),
    ignore = "x86_64 only: runs i386 programs natively"
)]
fn i386_runs_natively() {
    assert!(
        kernel_runs_i386(),
        "this x86_64 kernel runs no i386 programs (no IA32 emulation, or booted with \
         ia32_emulation=0), so the i386 programs cannot be checked natively: run the tests \
         on a kernel with CONFIG_IA32_EMULATION"
    );
    check(Machine::I386);
}

#[test]
#[cfg_attr(
    not(target_arch = "x86_64"),
    ignore = "x86_64 only: reads this CPU's x86-64 level"
)]
fn x86_64_level_probe_reports_this_cpus_level() {
    let level = crate::cpu_level::cpu_level();
    let out = run("level", &tiny_elf::x86_64_level());
    assert_eq!(
        out.status.code(),
        Some(i32::from(tiny_elf::X86_64_LEVEL_STATUS_BASE + level)),
        "expected x86-64-v{level} from /proc/cpuinfo"
    );
}
