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

use std::time::Duration;

use crate::commands::lines;
use crate::config::Config;
use crate::outcome::{CommandError, Completion, Context};
use crate::request::{Request, Verbosity, check_interpreter_dir, execute};
use crate::signals::StopSignals;
use binfmt_cli::ApplyArgs;

/// Runs `binfmt apply`.
pub fn run(args: &ApplyArgs) -> Result<Completion, CommandError> {
    let mut config =
        Config::load(&args.config).map_err(|error| CommandError::Usage(error.into()))?;
    let lock_timeout = Duration::from_secs(args.lock_timeout);
    let options = &mut config.install.options;
    options.interpreter_dir = options
        .interpreter_dir
        .clone()
        .with_lock_timeout(lock_timeout);
    let options = &config.install.options;
    check_interpreter_dir(
        &options.interpreter_dir,
        &format!("config {}: interpreter_dir", args.config.display()),
    )?;
    if args.check {
        let arches: Vec<String> = config
            .install
            .emulators
            .iter()
            .map(|emulator| emulator.arch().to_string())
            .collect();
        // The chosen emulators' files are checked too, as applying would.
        let mut chosen = Vec::new();
        for one in &config.install.chosen {
            let checked = one.check().map_err(|failure| {
                CommandError::Runtime(
                    Context {
                        what: format!("config {}", args.config.display()),
                        error: failure.into(),
                    }
                    .into(),
                )
            })?;
            chosen.push(format!(
                "{} with {}",
                checked.arch,
                checked.file.path.display()
            ));
        }
        eprintln!(
            "config {}: OK: {} with flags {} into {}, emulators in {}{}{}",
            args.config.display(),
            arches.join(","),
            options.flags,
            config.mount.display(),
            options.interpreter_dir.dir().display(),
            if chosen.is_empty() {
                String::new()
            } else {
                format!(", {}", chosen.join(", "))
            },
            if options.take_over {
                ", taking over from other tools' handlers"
            } else {
                ""
            }
        );
        return Ok(Completion::Complete);
    }
    let request = Request {
        mount: config.mount,
        uninstall: None,
        interpreter_dir: config.install.options.interpreter_dir.clone(),
        install: Some(config.install),
        lock_timeout,
    };
    let Some(seconds) = args.watch else {
        return lines::print(
            execute(&request, Verbosity::Everything),
            Verbosity::Everything,
        );
    };

    let interval = Duration::from_secs(seconds);
    let mut stop = StopSignals::install().map_err(|error| Context {
        what: "cannot handle SIGTERM and SIGINT".to_owned(),
        error: error.into(),
    })?;
    let first = lines::print(
        execute(&request, Verbosity::Everything),
        Verbosity::Everything,
    )?;
    if first != Completion::Complete {
        return Ok(first);
    }
    eprintln!("binfmt: registered; checking again every {seconds}s until SIGTERM or SIGINT");
    loop {
        let stopped = stop.wait(interval).map_err(|error| Context {
            what: "cannot wait for signals".to_owned(),
            error: error.into(),
        })?;
        if stopped {
            eprintln!("binfmt: stopping on signal; the registrations stay");
            return Ok(Completion::Complete);
        }
        if let Err(error) = lines::print(execute(&request, Verbosity::Changes), Verbosity::Changes)
        {
            eprintln!("binfmt: this round failed, trying again in {seconds}s: {error}");
        }
    }
}
