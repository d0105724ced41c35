//! `binfmt enable [LIST]` and `binfmt disable [LIST]`: turn entries on and off without
//! unregistering them, as users switch between handlers (`echo 0 > .../qemu-x86_64`
//! to let Rosetta run x86_64 programs, and `echo 1` to have QEMU back).
//!
//! The list is read as `--uninstall` reads it ([`crate::targets`]): a glob or an
//! architecture takes in only binfmt's own entries, another tool's entry is switched
//! only when named exactly. Without a list, every one of binfmt's entries is. An entry
//! already as asked is left alone (no write). The table is never mounted here: with
//! nothing mounted there is nothing to switch. Then the status JSON, as after an
//! install: the platforms that run now.

use std::time::Duration;

use binfmt_misc::report::Report;
use binfmt_misc::{BinfmtMisc, Table};

use crate::commands::lines::print_stdout;
use crate::findings::{Diagnosis, Finding};
use crate::host::HostFacts;
use crate::outcome::{CommandError, Completion};
use crate::probe::SystemProber;
use crate::status;
use crate::survey::Survey;
use crate::targets;
use binfmt_cli::SwitchArgs;

/// Runs `binfmt enable` (`enabled`) or `binfmt disable`.
pub fn run(args: &SwitchArgs, enabled: bool) -> Result<Completion, CommandError> {
    let (verb, state) = if enabled {
        ("enabling", "enabled")
    } else {
        ("disabling", "disabled")
    };
    let targets = match &args.list {
        Some(list) => Some(
            targets::parse(list, command(enabled))
                .map_err(|error| CommandError::usage(command(enabled), error))?,
        ),
        None => None,
    };
    let table = BinfmtMisc::open(&args.mount).map_err(|error| Diagnosis {
        finding: Finding::for_unopened_table(error, &args.mount, &HostFacts::read()),
        mount: args.mount.clone(),
    })?;
    let _lock = table.lock(Duration::from_secs(args.lock_timeout))?;
    let entries = Survey::read(Some(&table))?.entries;
    let targeted = match &targets {
        Some(targets) => targets::select(targets, &entries),
        None => targets::all_binfmts(&entries),
    };
    for name in &targeted.left_alone {
        eprintln!("{verb}: {name} left alone (another tool's entry: name it exactly to switch it)");
    }
    if targeted.selected.is_empty() {
        eprintln!("{verb}: nothing matches, nothing to do");
    }
    let mut failed = 0;
    for name in &targeted.selected {
        let already = entries
            .iter()
            .any(|entry| entry.registration.name == *name && entry.enabled == enabled);
        if already {
            eprintln!("{verb}: {name} OK (already {state})");
            continue;
        }
        match table.set_enabled(name, enabled) {
            Ok(()) => eprintln!("{verb}: {name} OK"),
            Err(error) => {
                failed += 1;
                eprintln!("{verb}: {name} FAILED: {}", Report(&error));
            }
        }
    }
    let mut survey = Survey::read(Some(&table))?;
    survey.probe(&SystemProber, &qemu_catalog::Arch::ALL);
    print_stdout(&status::render(&status::status(&survey)))?;
    Ok(Completion::of(failed == 0))
}

fn command(enabled: bool) -> &'static str {
    if enabled { "enable" } else { "disable" }
}
