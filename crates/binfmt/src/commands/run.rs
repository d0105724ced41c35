//! `binfmt run [--platform LIST] [--root] -- CMD [ARGS...]`: one command, and
//! everything it starts, gets foreign-architecture emulation without privileges.
//!
//! binfmt_misc is per user namespace since Linux 6.7, so an ordinary user can do all
//! of this; the machine's own table is never touched. In order:
//!
//! 1. Validate `--platform` (nothing is created when it is wrong).
//! 2. Create a user and a mount namespace, mapping the caller to root inside (the
//!    only single id an unprivileged process may map besides its own, and the one
//!    that owns the binfmt_misc instance mounted next).
//! 3. Cut the mounts off from the caller's namespace (private, then shared among
//!    themselves for the container engines CMD may start) and mount a binfmt_misc
//!    instance of this namespace on `/proc/sys/fs/binfmt_misc`, where CMD and the
//!    tools it runs look for it.
//! 4. Register the embedded emulators, each from a sealed memfd with flag `F`: the
//!    kernel holds them open, so they work in every container CMD starts, and nothing
//!    is written to disk (an unprivileged user owns no directory the kernel should
//!    trust). Same code as `--install`.
//! 5. Unless `--root`: create a nested user namespace that maps the caller's own uid
//!    and gid back to themselves, so CMD runs as the caller. It uses its parent's
//!    binfmt_misc instance (the kernel looks up the user namespace chain).
//! 6. Execute CMD in place of binfmt: same process, so stdin, stdout, stderr, the
//!    working directory, the environment and signals pass through, and CMD's exit
//!    status (or the signal that killed it) is binfmt's.
//!
//! Registering needs `CAP_SYS_ADMIN` over the instance and writing its files needs
//! its owner (root of the outer namespace): binfmt holds both until it executes CMD.
//! The private table replaces the machine's for CMD: only the architectures of LIST
//! (and native ones) run inside, even if the machine registers more.
//!
//! Exit status when binfmt itself fails: 2 for invalid arguments, 125 when the
//! namespaces or the registrations cannot be set up, 126 when CMD cannot be
//! executed, 127 when it is not found (the conventions of `env`, `chroot` and
//! `podman run`). Like Rust's `Command`, binfmt resets the signal mask and `SIGPIPE`
//! to their defaults for CMD.

use std::convert::Infallible;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs;
use std::io::{self, Read as _};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::Command;

use binfmt_cli::DEFAULT_INTERPRETER_DIR;
use binfmt_misc::{BinfmtMisc, DEFAULT_MOUNT, Flags};
use interpreter_files::InterpreterDir;
use qemu_catalog::{Arch, Emulator, Selection};

use crate::install;
use crate::outcome::{CommandError, Completion, Context, Failure, Message};
use crate::register::{self, InstallOutcome};
use crate::userns::{self, IdMap, IdMapping, NamespaceError, Step};
use binfmt_cli::RunArgs;

/// Exit status when binfmt cannot set up the namespaces or the registrations (the
/// codes are binfmt-cli's, which `binfmt --help` lists).
pub const SETUP_FAILED: u8 = binfmt_cli::EXIT_SETUP_FAILED;
/// Exit status when CMD exists but cannot be executed.
pub const CANNOT_EXECUTE: u8 = binfmt_cli::EXIT_CANNOT_EXECUTE;
/// Exit status when CMD is not found.
pub const NOT_FOUND: u8 = binfmt_cli::EXIT_NOT_FOUND;
/// Exit status for invalid arguments (as for every binfmt command).
pub const USAGE: u8 = binfmt_cli::EXIT_USAGE;

/// Flags of the private entries: those of `--install` (and tonistiigi/binfmt). `F`
/// matters most: the emulator lives in a memfd of this process, which is gone once CMD
/// replaces it, so the kernel must open it at registration.
const FLAGS: Flags = Flags::POCF;

/// Why binfmt did not execute CMD, with the exit status to report.
#[derive(Debug)]
pub struct RunError {
    pub code: u8,
    pub failure: Failure,
}

impl RunError {
    /// The failure `error`, with `code`, printed `run: error`.
    fn new(code: u8, error: impl Into<Failure>) -> RunError {
        RunError {
            code,
            failure: Context {
                what: "run".to_owned(),
                error: error.into(),
            }
            .into(),
        }
    }

    fn setup(error: impl Into<Failure>) -> RunError {
        RunError::new(SETUP_FAILED, error)
    }
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.failure.fmt(f)
    }
}

impl From<RunError> for CommandError {
    fn from(error: RunError) -> CommandError {
        CommandError::Run {
            code: error.code,
            failure: error.failure,
        }
    }
}

/// Runs `binfmt run`: returns only when CMD could not be executed.
pub fn run(args: &RunArgs) -> Result<Completion, CommandError> {
    let Err(error) = set_up_and_exec(args);
    Err(error.into())
}

/// Sets everything up and executes CMD; returns only when something failed.
fn set_up_and_exec(args: &RunArgs) -> Result<Infallible, RunError> {
    let emulators = emulators_for(&args.platform)?;
    let Some((program, arguments)) = args.command.split_first() else {
        return Err(RunError::new(
            USAGE,
            Message::new("no command given").fix("`binfmt run -- CMD [ARGS...]`"),
        ));
    };

    // execvp(3) in glibc runs a file the kernel refuses with ENOEXEC through /bin/sh,
    // which turns "no emulator for this architecture" into a shell's syntax error:
    // say it plainly instead, before anything is created.
    if let Some(arch) = unemulated_arch(program, &emulators) {
        let mut platforms: Vec<&str> = emulators.iter().map(|e| e.arch().oci()).collect();
        platforms.push(arch.oci());
        return Err(RunError::new(
            CANNOT_EXECUTE,
            Message::new(format!(
                "cannot execute {}: it is a {arch} program, and {arch} is not emulated \
                 (--platform gives: {})",
                program.to_string_lossy(),
                arch_list(&emulators),
            ))
            .fix(format!("add it: `--platform {}`", platforms.join(","))),
        ));
    }

    let uid = rustix::process::geteuid().as_raw();
    let gid = rustix::process::getegid().as_raw();
    userns::enter_user_namespace(
        IdMapping {
            uid: IdMap {
                inside: 0,
                outside: uid,
            },
            gid: IdMap {
                inside: 0,
                outside: gid,
            },
        },
        true,
    )
    .map_err(RunError::setup)?;
    userns::isolate_mounts().map_err(RunError::setup)?;
    let table = mount_private_instance()?;
    register_privately(&table, &emulators)?;
    drop(table);

    if !args.root {
        // The nested namespace maps the caller's ids to the outer one's root, which is
        // the caller outside: CMD runs as the caller all the way through.
        userns::enter_user_namespace(
            IdMapping {
                uid: IdMap {
                    inside: uid,
                    outside: 0,
                },
                gid: IdMap {
                    inside: gid,
                    outside: 0,
                },
            },
            false,
        )
        .map_err(RunError::setup)?;
    }

    log::debug!("executing {program:?} with {} arguments", arguments.len());
    let error = Command::new(program).args(arguments).exec();
    Err(exec_failed(program, error, &emulators))
}

/// The architectures of `emulators`, for messages (`none` when empty).
fn arch_list(emulators: &[Emulator]) -> String {
    if emulators.is_empty() {
        return "none".to_owned();
    }
    let names: Vec<&str> = emulators.iter().map(|e| e.arch().oci()).collect();
    names.join(", ")
}

/// The foreign architecture of the ELF program execvp(3) would run for `program`,
/// when it is not among `emulators` (so the kernel would refuse it). `None` for
/// native programs, scripts, and anything that cannot be read.
fn unemulated_arch(program: &OsStr, emulators: &[Emulator]) -> Option<Arch> {
    let path = find_program(program)?;
    let mut header = [0u8; 20];
    fs::File::open(path).ok()?.read_exact(&mut header).ok()?;
    let arch = Arch::ALL.into_iter().find(|arch| {
        header
            .iter()
            .zip(arch.magic().iter().zip(arch.mask()))
            .all(|(byte, (magic, mask))| byte & mask == magic & mask)
    })?;
    let emulated = emulators.iter().any(|e| e.arch() == arch);
    (!arch.is_native() && !emulated).then_some(arch)
}

/// The file execvp(3) would execute for `program`: itself when it contains a `/`,
/// else the first regular file of that name in `PATH`.
fn find_program(program: &OsStr) -> Option<PathBuf> {
    if program.as_bytes().contains(&b'/') {
        return Some(PathBuf::from(program));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// The emulators for `--platform`: every one this binary carries for `all`; for a
/// list, those named, skipping this machine's own architectures (they run natively;
/// an emulator for them would take over every native program).
fn emulators_for(platform: &str) -> Result<Vec<Emulator>, RunError> {
    let usage = |error: Failure| {
        RunError::new(
            USAGE,
            Context {
                what: "--platform".to_owned(),
                error,
            },
        )
    };
    let selection = qemu_catalog::parse_list(platform).map_err(|error| usage(error.into()))?;
    let arches = match selection {
        Selection::All => return Ok(Emulator::all()),
        Selection::Arches(arches) => arches,
    };
    let mut emulators = Vec::new();
    for arch in arches {
        if arch.is_native() {
            log::info!("{arch} runs natively here; nothing to register for it");
            continue;
        }
        match Emulator::for_arch(arch) {
            Some(emulator) => emulators.push(emulator),
            None => {
                return Err(usage(
                    Message::new(format!("this binfmt carries no emulator for {arch}")).into(),
                ));
            }
        }
    }
    Ok(emulators)
}

/// Mounts this namespace's own binfmt_misc instance on the usual place. Whatever was
/// there (the machine's instance, an automount point) stays underneath, unchanged,
/// and out of CMD's sight.
fn mount_private_instance() -> Result<BinfmtMisc, RunError> {
    BinfmtMisc::mount(DEFAULT_MOUNT).map_err(|error| match error {
        binfmt_misc::Error::Mount { source, .. } => {
            RunError::setup(NamespaceError::diagnosed(Step::MountBinfmtMisc, source))
        }
        other => RunError::setup(other),
    })
}

/// Registers every emulator in the private instance, each from a sealed memfd.
fn register_privately(table: &BinfmtMisc, emulators: &[Emulator]) -> Result<(), RunError> {
    let options = install::Options {
        flags: FLAGS,
        // Never written to: `in_memory` keeps every emulator in a memfd.
        interpreter_dir: InterpreterDir::new(DEFAULT_INTERPRETER_DIR),
        in_memory: true,
        // A fresh instance holds no other tool's entry.
        take_over: false,
    };
    let items: Vec<register::Item> = emulators
        .iter()
        .copied()
        .map(register::Item::embedded)
        .collect();
    // In memory, no directory is used: `directory_failure` stays empty.
    let outcomes = register::register(table, &items, &options).outcomes;
    for (arch, outcome) in &outcomes {
        log::info!("registering {arch} in the private binfmt_misc instance: {outcome}");
    }
    let mut failures = outcomes
        .into_iter()
        .filter_map(|(arch, outcome)| match outcome {
            InstallOutcome::Failed(error) => Some((arch, error)),
            _ => None,
        });
    match failures.next() {
        None => Ok(()),
        // The first one: the others' lines are in the log above.
        Some((arch, error)) => Err(RunError::setup(Context {
            what: format!("cannot register {arch} in the private binfmt_misc instance"),
            error: error.into(),
        })),
    }
}

/// The error for an `execvp(3)` of CMD that returned.
fn exec_failed(program: &OsString, error: io::Error, emulators: &[Emulator]) -> RunError {
    let program = program.to_string_lossy();
    let kind = error.kind();
    let not_a_program = error.raw_os_error() == Some(rustix::io::Errno::NOEXEC.raw_os_error());
    let message = Message::new(format!("cannot execute {program}")).because(error);
    if kind == io::ErrorKind::NotFound {
        return RunError::new(NOT_FOUND, message.fix("give its path, or put it in PATH"));
    }
    let mut message = message;
    if not_a_program {
        let native: Vec<&str> = Arch::native().iter().map(|a| a.oci()).collect();
        message = message.fix(format!(
            "if it is a program of another architecture, add its architecture to --platform \
             (natively this machine runs {}; emulated here: {})",
            native.join(", "),
            arch_list(emulators)
        ));
    }
    RunError::new(CANNOT_EXECUTE, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_means_every_carried_emulator() {
        let emulators = emulators_for("all").unwrap();
        assert_eq!(emulators.len(), Emulator::all().len());
        assert!(emulators.iter().all(|e| !e.arch().is_native()));
    }

    #[test]
    fn native_arches_in_a_list_are_skipped_not_registered() {
        let mut list: Vec<&str> = Arch::native().iter().map(|a| a.oci()).collect();
        list.push("linux/s390x");
        let emulators = emulators_for(&list.join(",")).unwrap();
        let arches: Vec<Arch> = emulators.iter().map(Emulator::arch).collect();
        assert_eq!(arches, [Arch::S390x]);
    }

    #[test]
    fn an_unknown_platform_is_a_usage_error() {
        let error = emulators_for("arm64,linux/bogus").unwrap_err();
        assert_eq!(error.code, USAGE);
        assert!(
            error
                .to_string()
                .contains("unknown architecture \"linux/bogus\""),
            "{error}"
        );
    }

    #[test]
    fn exec_errors_map_to_the_usual_statuses() {
        let program = OsString::from("prog");
        let not_found = io::Error::from_raw_os_error(rustix::io::Errno::NOENT.raw_os_error());
        assert_eq!(exec_failed(&program, not_found, &[]).code, NOT_FOUND);
        let denied = io::Error::from_raw_os_error(rustix::io::Errno::ACCESS.raw_os_error());
        assert_eq!(exec_failed(&program, denied, &[]).code, CANNOT_EXECUTE);
        let format = io::Error::from_raw_os_error(rustix::io::Errno::NOEXEC.raw_os_error());
        let error = exec_failed(&program, format, &emulators_for("riscv64").unwrap());
        assert_eq!(error.code, CANNOT_EXECUTE);
        assert!(
            error.to_string().contains("emulated here: riscv64"),
            "{error}"
        );
    }
}
