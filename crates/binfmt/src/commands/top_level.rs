//! `binfmt [--install LIST] [--uninstall LIST] [--mount DIR] [--flags F]
//! [--interpreter-dir DIR] [--take-over] [--emulator ARCH=PATH]`: the tonistiigi/binfmt
//! command line. With neither list it only prints the status JSON.
//!
//! Every argument is validated before the first write (one bad item refuses the
//! run, exit 2); the [`Request`] is then carried out by [`execute`].

use std::time::Duration;

use interpreter_files::InterpreterDir;

use crate::chosen::ChosenEmulator;
use crate::commands::lines;
use crate::install::{self, Install};
use crate::outcome::{CommandError, Completion, Message};
use crate::request::{Request, Verbosity, check_interpreter_dir, execute};
use crate::targets;
use binfmt_cli::Args;

/// Runs the command.
pub fn run(args: &Args) -> Result<Completion, CommandError> {
    let lock_timeout = Duration::from_secs(args.lock_timeout);
    let interpreter_dir =
        || InterpreterDir::new(&args.interpreter_dir).with_lock_timeout(lock_timeout);
    let chosen = args
        .emulators
        .iter()
        .map(|spec| ChosenEmulator::parse(spec))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| CommandError::usage("--emulator", error))?;
    let install = match &args.install {
        Some(list) => {
            let (selection, emulators) = install::parse_list(list)
                .map_err(|error| CommandError::usage("--install", error))?;
            let options = install::Options {
                flags: args.flags,
                interpreter_dir: interpreter_dir(),
                in_memory: false,
                take_over: args.take_over,
            };
            let install = Install::new(selection, emulators, options)
                .map_err(|error| CommandError::usage("--interpreter-dir", error))?
                .with_chosen(chosen)
                .map_err(|error| CommandError::usage("--emulator", error))?;
            check_interpreter_dir(&install.options.interpreter_dir, "--interpreter-dir")?;
            Some(install)
        }
        None if !chosen.is_empty() => {
            return Err(CommandError::Usage(
                Message::new("--emulator chooses the emulator an install registers")
                    .fix("give --install with its architecture too")
                    .into(),
            ));
        }
        None => None,
    };
    let uninstall = match &args.uninstall {
        Some(list) => Some(
            targets::parse(list, "uninstall")
                .map_err(|error| CommandError::usage("--uninstall", error))?,
        ),
        None => None,
    };
    let request = Request {
        mount: args.mount.clone(),
        uninstall,
        install,
        interpreter_dir: interpreter_dir(),
        lock_timeout,
    };
    lines::print(
        execute(&request, Verbosity::Everything),
        Verbosity::Everything,
    )
}
