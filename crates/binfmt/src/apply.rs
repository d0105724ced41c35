//! `binfmt apply`: register what a config file lists (see [`crate::config`]), once
//! (the systemd oneshot) or again and again (`--watch`, the Kubernetes DaemonSet).
//!
//! With `--watch SECONDS` binfmt applies the config, then every SECONDS applies it
//! again, so entries that vanish behind its back (systemd-binfmt removes every entry
//! when it starts or restarts; an admin runs `--uninstall`) are registered again
//! within that time. Rounds after the first print only what changed. The first round
//! must succeed (a misconfiguration stops the process, visibly); a later failure is
//! reported and retried at the next round. SIGTERM or SIGINT ends it with exit code 0,
//! leaving the registrations in place.

use std::process::ExitCode;
use std::time::Duration;

use crate::cli::ApplyArgs;
use crate::config::Config;
use crate::signals::StopSignals;
use crate::{Failure, Install, Report, Request, check_interpreter_dir, execute};

/// Runs `binfmt apply`.
pub fn run(args: &ApplyArgs) -> Result<ExitCode, Failure> {
    let config = Config::load(&args.config).map_err(|error| Failure::Usage(error.to_string()))?;
    check_interpreter_dir(
        &config.options,
        &format!("config {}: interpreter_dir", args.config.display()),
    )?;
    if args.check {
        let arches: Vec<String> = config
            .emulators
            .iter()
            .map(|emulator| emulator.arch().to_string())
            .collect();
        eprintln!(
            "config {}: OK: {} with flags {} into {}, emulators in {}",
            args.config.display(),
            arches.join(","),
            config.options.flags,
            config.mount.display(),
            config.options.interpreter_dir.dir().display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let request = Request {
        mount: config.mount,
        uninstall: None,
        interpreter_dir: config.options.interpreter_dir.clone(),
        install: Some(Install {
            selection: config.selection,
            emulators: config.emulators,
            options: config.options,
        }),
    };
    let Some(seconds) = args.watch else {
        return execute(&request, Report::Everything);
    };

    let interval = Duration::from_secs(seconds);
    let mut stop = StopSignals::install()
        .map_err(|error| Failure::Runtime(format!("cannot handle SIGTERM and SIGINT: {error}")))?;
    let first = execute(&request, Report::Everything)?;
    if first != ExitCode::SUCCESS {
        return Ok(first);
    }
    eprintln!("binfmt: registered; checking again every {seconds}s until SIGTERM or SIGINT");
    loop {
        let stopped = stop
            .wait(interval)
            .map_err(|error| Failure::Runtime(format!("cannot wait for signals: {error}")))?;
        if stopped {
            eprintln!("binfmt: stopping on signal; the registrations stay");
            return Ok(ExitCode::SUCCESS);
        }
        if let Err(failure) = execute(&request, Report::Changes) {
            eprintln!("binfmt: {failure}; trying again in {seconds}s");
        }
    }
}
