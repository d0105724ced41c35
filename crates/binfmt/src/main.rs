//! `binfmt`: register pinned, verified QEMU emulators with binfmt_misc.
//!
//! A thin binary over the library (ripgrep style): `main` parses the arguments,
//! dispatches to the command's module (`binfmt::commands`), prints an error once and
//! maps the outcome to an exit code. The work lives in the library's modules and in
//! `binfmt-misc` (the kernel interface), `qemu-catalog` (architectures and embedded
//! emulators) and `interpreter-files` (where the emulators are put).
//!
//! Exit codes: `binfmt_cli::EXIT_CODES`, which `binfmt --help` lists: 0 when
//! everything asked for is done, 1 when something could not be done (the cause and
//! fix are on stderr), 2 when the arguments are invalid (nothing was changed); `binfmt
//! run` exits with its command's status, or 125 to 127 when it could not execute it.

use std::io::Write as _;
use std::process::ExitCode;

use binfmt::commands;
use binfmt::outcome::{CommandError, Completion};
use binfmt_cli::{Args, Command};
use clap::Parser;

fn main() -> ExitCode {
    init_logging();
    let args = Args::parse();
    let outcome = match &args.command {
        Some(Command::Run(run)) => commands::run::run(run),
        Some(Command::Check(check)) => commands::check::run(check),
        Some(Command::Doctor(doctor)) => commands::doctor::run(doctor),
        Some(Command::Apply(apply)) => commands::apply::run(apply),
        Some(Command::Emulators(emulators)) => commands::emulators::run(emulators),
        Some(Command::Enable(switch)) => commands::switch::run(switch, true),
        Some(Command::Disable(switch)) => commands::switch::run(switch, false),
        None if args.version => commands::version::run(),
        None => commands::top_level::run(&args),
    };
    match outcome {
        Ok(Completion::Complete) => ExitCode::SUCCESS,
        Ok(Completion::Incomplete) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("binfmt: {error}");
            match error {
                CommandError::Usage(_) => ExitCode::from(binfmt_cli::EXIT_USAGE),
                CommandError::Runtime(_) => ExitCode::FAILURE,
                CommandError::Run { code, .. } => ExitCode::from(code),
            }
        }
    }
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
