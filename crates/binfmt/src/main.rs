//! `binfmt`: register pinned, verified QEMU emulators with binfmt_misc.
//!
//! A thin binary over the library crates (ripgrep style): `main` parses arguments,
//! calls [`run`], prints an error once and maps the result to an exit code. The work
//! lives in `binfmt-misc` (the kernel interface) and `qemu-catalog` (architectures and
//! embedded emulators); this crate holds one module per command.
//!
//! Exit codes: 0 when everything asked for is done, 1 when something could not be
//! done (the cause and fix are on stderr), 2 when the arguments are invalid (nothing
//! was changed).

mod apply;
mod check;
mod cli;
mod config;
mod doctor;
mod empty_root;
mod install;
mod proof_record;
mod run;
mod signals;
mod status;
mod survey;
#[cfg(test)]
mod testing;
mod uninstall;
mod userns;

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use binfmt_misc::persist::{self, Placement};
use binfmt_misc::{BinfmtMisc, DEFAULT_MOUNT};
use clap::Parser;
use interpreter_files::{self as interpreter, InterpreterDir};
use qemu_catalog::{Emulator, Selection};

use crate::cli::{Args, CheckArgs, Command, DoctorArgs};

fn main() -> ExitCode {
    init_logging();
    let args = Args::parse();
    match run(&args) {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("binfmt: {failure}");
            failure.exit_code()
        }
    }
}

/// Why binfmt stops before doing everything it was asked.
#[derive(Debug)]
pub enum Failure {
    /// The arguments are invalid; nothing was changed.
    Usage(String),
    /// Something failed while running.
    Runtime(String),
    /// `binfmt run` could not execute its command (its own exit statuses).
    Run(run::Error),
}

impl Failure {
    fn exit_code(&self) -> ExitCode {
        match self {
            Failure::Usage(_) => ExitCode::from(2),
            Failure::Runtime(_) => ExitCode::FAILURE,
            Failure::Run(error) => ExitCode::from(error.code),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Usage(message) | Failure::Runtime(message) => f.write_str(message),
            Failure::Run(error) => error.fmt(f),
        }
    }
}

impl From<binfmt_misc::Error> for Failure {
    fn from(error: binfmt_misc::Error) -> Failure {
        Failure::Runtime(error.to_string())
    }
}

fn run(args: &Args) -> Result<ExitCode, Failure> {
    if let Some(command) = &args.command {
        // One arm per subcommand, each in its own module.
        match command {
            Command::Run(run_args) => {
                let request = run::Request {
                    platform: &run_args.platform,
                    root: run_args.root,
                    command: &run_args.command,
                };
                // Returns only when CMD could not be executed.
                let Err(error) = run::run(&request);
                return Err(Failure::Run(error));
            }
            Command::Check(check) => return run_check(check),
            Command::Doctor(doctor) => return run_doctor(doctor),
            Command::Apply(apply_args) => return apply::run(apply_args),
        }
    }
    if args.version {
        println!(
            "binfmt/{} qemu/{} rust/{}",
            env!("CARGO_PKG_VERSION"),
            qemu_catalog::emulator::QEMU,
            env!("BINFMT_RUSTC_VERSION")
        );
        return Ok(ExitCode::SUCCESS);
    }

    // Everything is validated before the first write: one bad item refuses the run.
    let options = install::Options {
        flags: args.flags,
        interpreter_dir: InterpreterDir::new(&args.interpreter_dir),
        in_memory: false,
    };
    let install = match &args.install {
        Some(list) => {
            let selection = qemu_catalog::parse_list(list)
                .map_err(|error| Failure::Usage(format!("--install: {error}")))?;
            let emulators = install::resolve(&selection)
                .map_err(|error| Failure::Usage(format!("--install: {error}")))?;
            for emulator in &emulators {
                install::wanted(emulator, &options)
                    .validate()
                    .map_err(|reason| Failure::Usage(format!("--interpreter-dir: {reason}")))?;
            }
            check_interpreter_dir(&options, "--interpreter-dir")?;
            Some(Install {
                selection,
                emulators,
                options,
            })
        }
        None => None,
    };
    let uninstall = match &args.uninstall {
        Some(list) => Some(
            uninstall::parse(list)
                .map_err(|error| Failure::Usage(format!("--uninstall: {error}")))?,
        ),
        None => None,
    };
    let request = Request {
        mount: args.mount.clone(),
        uninstall,
        install,
        interpreter_dir: InterpreterDir::new(&args.interpreter_dir),
    };
    execute(&request, Report::Everything)
}

/// Refuses an interpreter directory others could write to (they would choose what the
/// kernel runs), while nothing has changed yet; it is checked again, through open
/// descriptors, when files are written. `what` names the option or key.
fn check_interpreter_dir(options: &install::Options, what: &str) -> Result<(), Failure> {
    match options.interpreter_dir.check_dir() {
        Ok(()) => Ok(()),
        Err(error @ interpreter::Error::Unsafe(_)) => {
            Err(Failure::Usage(format!("{what}: {error}")))
        }
        Err(error) => {
            log::debug!("not checking the interpreter directory now: {error}");
            Ok(())
        }
    }
}

/// One validated run: what to remove, then what to register, in which mount.
#[derive(Debug)]
pub struct Request {
    /// The binfmt_misc mount.
    pub mount: PathBuf,
    /// Entries to remove first.
    pub uninstall: Option<Vec<uninstall::Target>>,
    /// What to register, and how.
    pub install: Option<Install>,
    /// Where interpreter files are, and the proofs of earlier runs (see [`proof_record`]).
    pub interpreter_dir: InterpreterDir,
}

/// The validated `--install` part of a request.
#[derive(Debug)]
pub struct Install {
    /// As asked (`all` leaves out, by execution, what this machine runs natively).
    pub selection: Selection,
    /// The emulators of the selection.
    pub emulators: Vec<Emulator>,
    /// How to register them.
    pub options: install::Options,
}

/// How much a run prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Report {
    /// A line per architecture and the status JSON, as tonistiigi/binfmt prints them.
    Everything,
    /// Only what changed (for `apply --watch` rounds after the first): lines for
    /// architectures that were not already in place, and the status after them.
    Changes,
}

/// Carries out a request on the table: uninstall, install, print the status.
pub fn execute(request: &Request, report: Report) -> Result<ExitCode, Failure> {
    let table = open_table(&request.mount, request.install.is_some())?;
    // One binfmt at a time changes this table (a second `--install all` waits, then
    // finds everything in place); a status-only run reads without waiting.
    let _lock = if request.install.is_some() || request.uninstall.is_some() {
        Some(table.lock()?)
    } else {
        None
    };
    let mut complete = true;
    let mut changed = report == Report::Everything;
    if let Some(targets) = &request.uninstall {
        complete &= uninstall::uninstall(&table, targets)? == 0;
    }
    if let Some(wanted) = &request.install {
        let emulators = if wanted.selection == Selection::All {
            install::skip_native(&table, wanted.emulators.clone(), &empty_root::SystemProber)?
        } else {
            wanted.emulators.clone()
        };
        let outcomes = install::install(&table, &emulators, &wanted.options);
        for (arch, outcome) in &outcomes {
            if report == Report::Everything || !matches!(outcome, install::Outcome::Unchanged) {
                eprintln!("installing: {arch} {outcome}");
                changed = true;
            }
        }
        let failed = outcomes
            .iter()
            .filter(|(_, outcome)| !outcome.is_ok())
            .count();
        if failed > 0 {
            eprintln!(
                "binfmt: {failed} of {} architectures are not registered; the lines above \
                 give each cause",
                outcomes.len()
            );
            complete = false;
        }
    }

    if changed {
        let survey = survey::Survey::take_remembering(
            &table,
            &empty_root::SystemProber,
            &request.interpreter_dir,
        )?;
        let status = status::status(&survey);
        print_stdout(&status::render(&status))?;
    }
    Ok(if complete {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `binfmt check PLATFORMS`: see the `check` module.
fn run_check(args: &CheckArgs) -> Result<ExitCode, Failure> {
    let wanted =
        check::parse(&args.platforms).map_err(|error| Failure::Usage(format!("check: {error}")))?;
    let report = check::check(&args.mount, wanted, &empty_root::SystemProber);
    let text = if args.json {
        report.render_json()
    } else {
        report.render_text()
    };
    print_stdout(&text)?;
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `binfmt doctor`: see the `doctor` module.
fn run_doctor(args: &DoctorArgs) -> Result<ExitCode, Failure> {
    let report = doctor::doctor(
        &doctor::Environment::host(),
        &args.mount,
        &empty_root::SystemProber,
    );
    let text = if args.json {
        report.render_json()
    } else {
        report.render_text()
    };
    print_stdout(&text)?;
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Writes a report to stdout; failing to is an error (a closed pipe in CI).
fn print_stdout(text: &str) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|error| Failure::Runtime(format!("cannot write to stdout: {error}")))
}

/// What to do when registrations would vanish with this container.
const LOST_WITH_CONTAINER_FIX: &str = "Nothing was registered. Fix: mount binfmt_misc on the \
     host first (`sudo mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc`, or `sudo \
     systemctl start proc-sys-fs-binfmt_misc.mount` where systemd runs), or run this container \
     with --pid=host as well, so that binfmt mounts it in the host's mount namespace";

/// Opens the binfmt_misc table.
///
/// At the default place a container finds nothing mounted and has to mount
/// binfmt_misc itself; `binfmt_misc::persist` works out whether registrations made
/// through that mount outlive the container. When they would not, registering is
/// refused with the fix rather than reported done (reading the status is still true:
/// the host then has no entries).
fn open_table(mount: &Path, registering: bool) -> Result<BinfmtMisc, Failure> {
    if mount != Path::new(DEFAULT_MOUNT) {
        return Ok(BinfmtMisc::open(mount)?);
    }
    let (table, placement) = persist::open_or_mount(mount)?;
    match &placement {
        Placement::AlreadyMounted => {}
        Placement::Private { .. } if registering => {
            // Leave nothing behind; the instance dies with this mount anyway.
            if let Err(error) = persist::unmount(table) {
                log::warn!("{error}");
            }
            return Err(Failure::Runtime(format!(
                "{placement}. {LOST_WITH_CONTAINER_FIX}"
            )));
        }
        Placement::Private { .. }
        | Placement::Pid1Namespace {
            pid1_is_machine_init: false,
        } => log::warn!("{placement}"),
        Placement::SharedInstance
        | Placement::HostNamespace
        | Placement::Pid1Namespace {
            pid1_is_machine_init: true,
        } => log::info!("{placement}"),
    }
    Ok(table)
}

/// Log records go to stderr as `binfmt: <level>: <message>`; `BINFMT_LOG` sets the
/// level (default `warn`; `debug` shows every write).
fn init_logging() {
    env_logger::Builder::from_env(env_logger::Env::new().filter_or("BINFMT_LOG", "warn"))
        .format(|buf, record| {
            writeln!(
                buf,
                "binfmt: {}: {}",
                record.level().as_str().to_lowercase(),
                record.args()
            )
        })
        .init();
}
