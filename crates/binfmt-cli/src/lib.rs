//! binfmt's command line, compatible with tonistiigi/binfmt: `--install`,
//! `--uninstall`, `--mount`, `--version`, and no arguments for the status JSON; and
//! the subcommands beyond it.
//!
//! Only the clap definitions and the defaults they show, in a crate of their own (as
//! youki keeps its in `liboci-cli`): the `binfmt` binary parses with them, and `cargo
//! xtask dist` generates the man pages and shell completions from them, without
//! building the emulators the binary embeds.

#![forbid(unsafe_code)]
#![deny(unreachable_pub)]

use std::ffi::OsString;
use std::path::PathBuf;

use binfmt_misc::Flags;
use clap::{Parser, Subcommand};

/// Register pinned, verified QEMU emulators with binfmt_misc, so other architectures' programs run
///
/// With no option, prints the status as JSON on stdout:
/// {"supported": [...platforms...], "emulators": [...entries...]}.
/// Log lines go to stderr.
#[derive(Debug, Parser)]
#[command(
    name = "binfmt",
    version = None,
    disable_version_flag = true,
    args_conflicts_with_subcommands = true,
    after_help = exit_codes_help()
)]
pub struct Args {
    /// A subcommand; without one, binfmt behaves as the tonistiigi/binfmt image.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Architectures to register: `all`, or a comma-separated list in any usual
    /// spelling (arm64, linux/arm64, aarch64, linux/arm/v7, riscv64, ...).
    /// `all` means every architecture this machine does not run natively.
    #[arg(long, value_name = "LIST")]
    pub install: Option<String>,

    /// Entries to remove: entry names (qemu-aarch64), globs (qemu-*) or architecture
    /// names (arm64), comma-separated. A glob or an architecture removes only
    /// binfmt's own entries; another tool's (rosetta, WSLInterop) only when named
    /// exactly. Emulator files no entry uses any more are removed too.
    #[arg(long, value_name = "LIST")]
    pub uninstall: Option<String>,

    /// Register binfmt's emulator even where another tool's working handler (Rosetta,
    /// FEX, box64) already runs the architecture: in front of it, which stays
    /// registered. Without it such an architecture is left to that handler.
    #[arg(long, env = "BINFMT_TAKE_OVER")]
    pub take_over: bool,

    /// Use this emulator for ARCH instead of the one binfmt carries (repeatable):
    /// ARCH=PATH, or ARCH=PATH@sha256:DIGEST to pin its digest. The file must be one
    /// only root can change; it must run ARCH's programs.
    #[arg(long = "emulator", value_name = "ARCH=PATH[@sha256:DIGEST]")]
    pub emulators: Vec<String>,

    /// The binfmt_misc mount to use. When nothing is mounted at the default place (as
    /// in every container), binfmt mounts it there, and refuses to register when the
    /// registrations would vanish with the container (nothing mounted on the host).
    #[arg(long, value_name = "DIR", env = "BINFMT_MOUNT", default_value = binfmt_misc::DEFAULT_MOUNT)]
    pub mount: PathBuf,

    /// Flags of every entry registered, letters from POCF: P preserves argv[0], O
    /// passes the binary as an open file, C takes credentials (setuid) from the
    /// binary and implies O, F opens the emulator now so it works inside containers.
    /// The default matches the tonistiigi/binfmt image; use `--flags POF` to drop C if
    /// setuid programs must not run the emulator with raised privileges.
    #[arg(long, value_name = "LETTERS", env = "BINFMT_FLAGS", default_value = "POCF",
          value_parser = parse_flags)]
    pub flags: Flags,

    /// Where emulator files are written (disk-backed, root-owned). On a read-only
    /// filesystem binfmt falls back to an in-memory file (memfd).
    #[arg(long, value_name = "DIR", env = "BINFMT_INTERPRETER_DIR",
          default_value = DEFAULT_INTERPRETER_DIR)]
    pub interpreter_dir: PathBuf,

    /// How long to wait for another binfmt run changing the same binfmt_misc table or
    /// interpreter directory, in seconds (0: do not wait). Past it binfmt changes
    /// nothing, names the process that holds the lock and exits 1.
    #[arg(long, value_name = "SECONDS", env = "BINFMT_LOCK_TIMEOUT",
          default_value_t = DEFAULT_LOCK_TIMEOUT, value_parser = lock_timeout_range())]
    pub lock_timeout: u64,

    /// Print binfmt/<version> qemu/<version> rust/<version> and exit.
    #[arg(long)]
    pub version: bool,
}

/// Where emulator files are written without `--interpreter-dir`: persistent,
/// disk-backed, root-owned on every distribution, and writable in a container's root
/// filesystem (the image declares it a volume).
pub const DEFAULT_INTERPRETER_DIR: &str = "/var/lib/binfmt";

/// Where `binfmt apply` looks without `--config`.
pub const DEFAULT_CONFIG: &str = "/etc/binfmt/config.toml";

/// `--lock-timeout`'s default, in seconds ([`binfmt_misc::lock::DEFAULT_TIMEOUT`]).
pub const DEFAULT_LOCK_TIMEOUT: u64 = binfmt_misc::lock::DEFAULT_TIMEOUT.as_secs();

/// binfmt's exit codes and what each means, as `binfmt --help` lists them (and
/// docs/options.md, which a test keeps the same).
pub const EXIT_CODES: [(u8, &str); 6] = [
    (
        EXIT_SUCCESS,
        "everything asked for is in place (check: every platform runs; doctor: nothing is wrong)",
    ),
    (
        EXIT_FAILURE,
        "something is not: the cause and the fix are on stderr",
    ),
    (
        EXIT_USAGE,
        "invalid arguments or config file: nothing was changed",
    ),
    (
        EXIT_SETUP_FAILED,
        "binfmt run: the namespace or the registrations could not be set up",
    ),
    (EXIT_CANNOT_EXECUTE, "binfmt run: CMD cannot be executed"),
    (
        EXIT_NOT_FOUND,
        "binfmt run: CMD not found (otherwise run exits with CMD's status)",
    ),
];
/// Everything asked for is done (or proved).
pub const EXIT_SUCCESS: u8 = 0;
/// Something could not be done; stderr says what, why and the fix.
pub const EXIT_FAILURE: u8 = 1;
/// Invalid arguments (clap's own exit code for them too); nothing was changed.
pub const EXIT_USAGE: u8 = 2;
/// `binfmt run` could not set up the namespaces or the registrations.
pub const EXIT_SETUP_FAILED: u8 = 125;
/// `binfmt run`: CMD exists but cannot be executed.
pub const EXIT_CANNOT_EXECUTE: u8 = 126;
/// `binfmt run`: CMD is not found.
pub const EXIT_NOT_FOUND: u8 = 127;

/// The `Exit codes:` list after `binfmt --help`, from [`EXIT_CODES`].
fn exit_codes_help() -> String {
    let mut help = String::from("Exit codes:");
    for (code, meaning) in EXIT_CODES {
        help.push_str(&format!("\n  {code:<4} {meaning}"));
    }
    help
}

/// `--lock-timeout` takes 0 to 86400 seconds.
fn lock_timeout_range() -> clap::builder::RangedU64ValueParser {
    clap::value_parser!(u64).range(0..=86_400)
}

fn parse_flags(letters: &str) -> Result<Flags, String> {
    letters
        .parse::<Flags>()
        .map_err(|error| binfmt_misc::report::Report(&error).to_string())
}

/// Subcommands beyond the tonistiigi/binfmt flags (one module each in `binfmt::commands`).
#[derive(Debug, Subcommand)]
pub enum Command {
    Run(RunArgs),
    /// Prove that PLATFORMS run here, by running a tiny program of each (CI preflight).
    ///
    /// Exits 0 only if every platform is proved. Otherwise prints, per platform, what
    /// is missing and why (no entry, disabled, no flag F, probe failed, binfmt_misc
    /// disabled or not mounted, CPU level too low) and the command that fixes it, and
    /// exits 1.
    Check(CheckArgs),
    /// Find what is wrong with binfmt_misc and its entries, and the fix for each
    ///
    /// Inspects the kernel, the binfmt_misc mount, permissions and every entry, runs
    /// every probe, and reports each problem with its cause and fix. Exits 1 when
    /// anything is wrong. Changes nothing.
    Doctor(DoctorArgs),
    /// Register what a config file lists: for the systemd unit and Kubernetes.
    ///
    /// The file (TOML) names the architectures and, optionally, the flags, the
    /// interpreter directory, the binfmt_misc mount, whether to take over from other
    /// tools' handlers, and emulators chosen for some architectures, for example:
    ///
    ///     architectures = ["arm64", "riscv64"]   # or ["all"]
    ///     flags = "POCF"                          # the default
    ///     interpreter_dir = "/var/lib/binfmt"     # the default
    ///     mount = "/proc/sys/fs/binfmt_misc"      # the default
    ///     take_over = false                       # the default
    ///
    ///     [emulators.riscv64]                     # instead of binfmt's
    ///     path = "/usr/bin/qemu-riscv64-static"
    ///     sha256 = "..."                          # optional
    ///
    /// The file is checked whole before anything is written; the top-level options
    /// and their BINFMT_* variables do not apply here (but --lock-timeout does). Exit
    /// codes as without a subcommand.
    #[command(
        verbatim_doc_comment,
        about = "Register what a config file lists: for the systemd unit and Kubernetes"
    )]
    Apply(ApplyArgs),
    /// List the emulators this binary carries, or which one serves each architecture.
    ///
    /// Per emulator: architecture, entry name, QEMU version, Debian package and version,
    /// sha256 and size (from the pins embedded at build time). With --config or
    /// --emulator, the emulators chosen instead of binfmt's are checked and shown.
    Emulators(EmulatorsArgs),
    /// Turn entries on again, without registering anything.
    ///
    /// LIST takes names, globs or architectures, comma-separated; a glob or an
    /// architecture takes in only binfmt's own entries, another tool's only when named
    /// exactly. Without a list, every entry of binfmt's.
    Enable(SwitchArgs),
    /// Turn entries off without unregistering them (`binfmt enable` undoes it).
    ///
    /// LIST as for enable: a glob or an architecture takes in only binfmt's own
    /// entries (`binfmt disable qemu-x86_64` lets Rosetta run x86_64 programs again).
    Disable(SwitchArgs),
}

/// `binfmt emulators`.
#[derive(Debug, clap::Args)]
pub struct EmulatorsArgs {
    /// Print JSON on stdout instead of a table.
    #[arg(long)]
    pub json: bool,

    /// Show the emulators this config file chooses (`[emulators]`), checked.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Show this emulator for ARCH, checked, as the top-level --emulator takes it
    /// (repeatable).
    #[arg(long = "emulator", value_name = "ARCH=PATH[@sha256:DIGEST]")]
    pub emulators: Vec<String>,
}

/// `binfmt enable` and `binfmt disable`.
#[derive(Debug, clap::Args)]
pub struct SwitchArgs {
    /// Entries: names (qemu-aarch64, rosetta), globs (qemu-*) or architectures (arm64),
    /// comma-separated; without it, every entry of binfmt's.
    #[arg(value_name = "LIST")]
    pub list: Option<String>,

    /// The binfmt_misc mount (never mounted by this command).
    #[arg(long, value_name = "DIR", env = "BINFMT_MOUNT", default_value = binfmt_misc::DEFAULT_MOUNT)]
    pub mount: PathBuf,

    /// How long to wait for another binfmt run changing the same table, in seconds,
    /// as the top-level --lock-timeout.
    #[arg(long, value_name = "SECONDS", env = "BINFMT_LOCK_TIMEOUT",
          default_value_t = DEFAULT_LOCK_TIMEOUT, value_parser = lock_timeout_range())]
    pub lock_timeout: u64,
}

/// Run one command with foreign-architecture emulation, without privileges.
///
/// Creates a user and mount namespace, mounts a private binfmt_misc instance on
/// /proc/sys/fs/binfmt_misc, registers the embedded emulators there and executes CMD
/// in place of binfmt: stdio, working directory, environment and signals pass through,
/// and CMD's exit status is binfmt's. The machine's own table is not touched. Needs
/// Linux 6.7 or newer with unprivileged user namespaces; no root.
///
/// Exit status when CMD did not run: 2 invalid arguments, 125 the namespace or the
/// registrations could not be set up (stderr says why and what to do), 126 CMD cannot
/// be executed, 127 CMD not found.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  binfmt run -- ./hello-arm64\n  binfmt run --platform linux/arm64 -- podman build --platform linux/arm64 .\n  binfmt run --root -- sh"
)]
pub struct RunArgs {
    /// Architectures to emulate: `all` (every foreign architecture binfmt carries), or
    /// a comma-separated list in any usual spelling (arm64, linux/arm64, aarch64, ...).
    /// This machine's own architectures are skipped: they run natively.
    #[arg(long, value_name = "LIST", default_value = "all")]
    pub platform: String,

    /// Run CMD as root (uid and gid 0) of the namespace, instead of as the caller.
    #[arg(long)]
    pub root: bool,

    /// The command to run, and its arguments.
    #[arg(
        value_name = "CMD",
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<OsString>,
}

/// `binfmt check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Platforms that must run, comma- or space-separated, in any usual spelling:
    /// linux/arm64, arm64, linux/arm/v7, linux/amd64/v3, riscv64, or entry names as
    /// a verify-qemu.sh lists them (qemu-aarch64).
    #[arg(value_name = "PLATFORMS", required = true)]
    pub platforms: Vec<String>,

    /// Print a JSON report on stdout instead of text.
    #[arg(long)]
    pub json: bool,

    /// The binfmt_misc mount to read (never mounted by this command).
    #[arg(long, value_name = "DIR", env = "BINFMT_MOUNT", default_value = binfmt_misc::DEFAULT_MOUNT)]
    pub mount: PathBuf,
}

/// `binfmt doctor`.
#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// Print a JSON report on stdout instead of text.
    #[arg(long)]
    pub json: bool,

    /// The binfmt_misc mount to inspect. When nothing is mounted at the default
    /// place, doctor mounts it to look inside and unmounts it again.
    #[arg(long, value_name = "DIR", env = "BINFMT_MOUNT", default_value = binfmt_misc::DEFAULT_MOUNT)]
    pub mount: PathBuf,
}

/// Options of `binfmt apply`.
#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// The config file.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,

    /// Check the config file and exit, changing nothing.
    #[arg(long)]
    pub check: bool,

    /// Keep running and apply the config again every SECONDS (1 to 86400), so that
    /// entries removed behind binfmt's back (systemd-binfmt wipes them all when it
    /// restarts) come back within that time. Only changes are printed. Stops, with
    /// exit code 0, on SIGTERM or SIGINT; the registrations stay. The first round must
    /// succeed; a later failing round is reported and tried again.
    #[arg(long, value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub watch: Option<u64>,

    /// How long to wait for another binfmt run changing the same table or
    /// interpreter directory, in seconds, as the top-level --lock-timeout.
    #[arg(long, value_name = "SECONDS", env = "BINFMT_LOCK_TIMEOUT",
          default_value_t = DEFAULT_LOCK_TIMEOUT, value_parser = lock_timeout_range())]
    pub lock_timeout: u64,
}

/// `--help` and the docs say the same: docs/options.md lists exactly the options clap
/// defines here, with the same value names, defaults and environment variables, and
/// the exit codes [`EXIT_CODES`] lists; each subcommand's summary is one line.
#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use clap::CommandFactory;

    use super::*;

    /// One row of an options table: the option as written (`--mount DIR`, `--json`,
    /// `PLATFORMS`), its default and its environment variable, `` ` `` stripped.
    #[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
    struct Row {
        option: String,
        default: String,
        env: String,
    }

    fn options_md() -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/options.md");
        std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
    }

    fn code(cell: &str) -> String {
        cell.trim().trim_matches('`').to_owned()
    }

    /// The tables of docs/options.md by command (`binfmt`, `binfmt run`, ...): a
    /// `## ` heading names one or more commands in backticks.
    fn documented() -> BTreeMap<String, Vec<Row>> {
        let mut tables: BTreeMap<String, Vec<Row>> = BTreeMap::new();
        let mut commands: Vec<String> = Vec::new();
        for line in options_md().lines() {
            if let Some(heading) = line.strip_prefix("## ") {
                commands = heading
                    .split('`')
                    .skip(1)
                    .step_by(2)
                    .filter(|name| name.starts_with("binfmt"))
                    .map(str::to_owned)
                    .collect();
                for command in &commands {
                    tables.entry(command.clone()).or_default();
                }
            } else if line.starts_with("| `") && !commands.is_empty() {
                let cells: Vec<&str> = line.trim_matches('|').split(" | ").collect();
                assert_eq!(
                    cells.len(),
                    4,
                    "docs/options.md: a row of four cells: {line}"
                );
                for command in &commands {
                    tables.get_mut(command).unwrap().push(Row {
                        option: code(cells[0]),
                        default: code(cells[1]),
                        env: code(cells[2]),
                    });
                }
            }
        }
        tables
    }

    /// What clap defines, in the same form.
    fn defined() -> BTreeMap<String, Vec<Row>> {
        let root = Args::command();
        let mut commands = vec![("binfmt".to_owned(), root.clone())];
        for sub in root.get_subcommands() {
            commands.push((format!("binfmt {}", sub.get_name()), sub.clone()));
        }
        commands
            .into_iter()
            .map(|(name, command)| {
                let rows = command
                    .get_arguments()
                    .filter(|arg| arg.get_id() != "help")
                    .map(|arg| {
                        let takes_value = arg.get_action().takes_values();
                        let value_names = arg
                            .get_value_names()
                            .map(|names| {
                                names
                                    .iter()
                                    .map(ToString::to_string)
                                    .collect::<Vec<_>>()
                                    .join(" ")
                            })
                            .unwrap_or_else(|| arg.get_id().as_str().to_uppercase());
                        let option = match arg.get_long() {
                            Some(long) if takes_value => format!("--{long} {value_names}"),
                            Some(long) => format!("--{long}"),
                            None => value_names,
                        };
                        let default = if takes_value {
                            arg.get_default_values()
                                .iter()
                                .map(|value| value.to_string_lossy().into_owned())
                                .collect::<Vec<_>>()
                                .join(",")
                        } else {
                            String::new()
                        };
                        let env = arg
                            .get_env()
                            .map(|env| env.to_string_lossy().into_owned())
                            .unwrap_or_default();
                        Row {
                            option,
                            default,
                            env,
                        }
                    })
                    .collect();
                (name, rows)
            })
            .collect()
    }

    #[test]
    fn the_options_table_lists_exactly_what_clap_defines() {
        let mut documented = documented();
        let mut defined = defined();
        for rows in documented.values_mut().chain(defined.values_mut()) {
            rows.sort();
        }
        assert_eq!(
            documented.keys().collect::<Vec<_>>(),
            defined.keys().collect::<Vec<_>>(),
            "docs/options.md has a table for each command, and only for those"
        );
        for (command, rows) in &defined {
            assert_eq!(
                &documented[command], rows,
                "docs/options.md, `{command}`: option, default, environment as clap defines them"
            );
        }
    }

    #[test]
    fn the_documented_exit_codes_are_those_help_lists() {
        let text = options_md();
        let section = text
            .split_once("\n## Exit codes\n")
            .expect("docs/options.md: a section \"## Exit codes\"")
            .1;
        let section = section.split("\n## ").next().unwrap();
        let documented: Vec<u8> = section
            .lines()
            .filter_map(|line| line.strip_prefix("| "))
            .filter_map(|line| line.split(" |").next()?.parse().ok())
            .collect();
        let listed: Vec<u8> = EXIT_CODES.iter().map(|(code, _)| *code).collect();
        assert_eq!(
            documented, listed,
            "docs/options.md's exit codes, and `binfmt --help`'s"
        );
        let help = Args::command().render_long_help().to_string();
        for (code, meaning) in EXIT_CODES {
            assert!(
                help.contains(&format!("{code:<4} {meaning}")),
                "binfmt --help lists exit code {code}:\n{help}"
            );
        }
    }

    #[test]
    fn every_summary_is_one_line_without_a_final_period() {
        let root = Args::command();
        let about = |command: &clap::Command| {
            command
                .get_about()
                .map(ToString::to_string)
                .unwrap_or_default()
        };
        let mut commands: Vec<clap::Command> = root.get_subcommands().cloned().collect();
        commands.push(root);
        for command in &commands {
            let summary = about(command);
            assert!(!summary.is_empty(), "{}: no summary", command.get_name());
            assert!(
                !summary.contains('\n') && !summary.ends_with('.') && summary.len() <= 100,
                "{}: the summary in --help is one line of at most 100 characters, no final \
                 period: {summary:?}",
                command.get_name()
            );
        }
    }
}
