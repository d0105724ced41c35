//! Developer tasks for the binfmt workspace, run as `cargo xtask <command>`.
//!
//! - `cargo xtask pin`: choose the Debian `qemu-user` version to embed and write
//!   `qemu-blobs/pins.toml` ([`pin`]).
//! - `cargo xtask fetch`: download the pinned packages and fill the emulator blob cache
//!   that the build of `qemu-catalog` embeds from ([`fetch`]).
//! - `cargo xtask fuzz [--seconds N]`: run every fuzz target in `fuzz/` for a bounded
//!   time ([`fuzz`]).
//! - `cargo xtask dist`: build the static release binaries for the five hosts into
//!   `dist/`, which the `Dockerfile` packages, and a Debian package of each ([`dist`]).
//! - `cargo xtask bench`: build the release binaries and measure them side by side with
//!   systemd-binfmt in private binfmt_misc instances ([`bench`]).
//! - `cargo xtask conformance [ARCH...]`: build a Debian userland per architecture
//!   under the pinned emulators and run the workloads that broke other registrars'
//!   QEMU pins in it; what a re-pin must pass, recorded in
//!   `qemu-blobs/conformance.toml` ([`conformance`]).
//! - `cargo xtask kernels [GUEST...]`: boot Debian's own kernels of every host under
//!   qemu-system with that host's release binary and check what it does there; `--pin`
//!   pins the kernels ([`kernels`]).
//!
//! Shared pieces: the man pages and completions `dist` writes ([`manpages`]) and its
//! Debian packages ([`package`]), where
//! packages are downloaded from ([`mirror`]), plain-HTTP downloads
//! ([`http`]), reading a `.deb` without dpkg ([`deb`]), the compressed blob format
//! ([`blob`]), Debian version ordering ([`version`]) and the private binfmt_misc
//! instance the bench and conformance run in ([`sandbox`]), where the workspace, the
//! target and cache directories are ([`workspace`]).

mod bench;
mod blob;
mod conformance;
mod deb;
mod dist;
mod fetch;
mod fuzz;
mod http;
mod kernels;
mod manpages;
mod mirror;
mod package;
mod pin;
mod reproduce;
mod sandbox;
mod sbom;
mod version;
mod workspace;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Developer tasks for the binfmt workspace"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Download the pinned qemu-user packages and fill the emulator blob cache.
    Fetch(fetch::Args),
    /// Build the static release binaries for the five hosts, their SBOMs and Debian
    /// packages into dist/.
    Dist(dist::Args),
    /// Pin a Debian qemu-user version: rewrite qemu-blobs/pins.toml (and fill the cache).
    Pin(pin::Args),
    /// Run every fuzz target (or those named) for a bounded time (nightly, cargo-fuzz).
    Fuzz(fuzz::Args),
    /// Build the release binaries and print how fast and small they are, next to
    /// systemd-binfmt, measured in private binfmt_misc instances.
    Bench(bench::Args),
    /// Build a Debian userland for each architecture under the pinned emulators
    /// (mmdebstrap, emulated dpkg) and run the workloads that broke other registrars'
    /// QEMU in it (apt, tar, go build, node, multiprocessing, java, bullseye's
    /// libc-bin trigger); prints a matrix, `--record`s it. A re-pin must pass it. Root.
    Conformance(conformance::Args),
    /// Boot Debian's own kernels (5.10 to 6.12, every host) under qemu-system with each
    /// host's release binary and check --install, check, doctor, --uninstall, a
    /// container's install and `binfmt run` there; prints a matrix. `--pin` re-pins them.
    Kernels(kernels::Args),
}

// Errors are anyhow's: each step adds what it was doing (`with_context`), and main
// prints the chain once.
fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Dist(args) => dist::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Fetch(args) => fetch::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Pin(args) => pin::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Fuzz(args) => fuzz::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Bench(args) => bench::run(&args).map(|()| ExitCode::SUCCESS),
        // Its own statuses: 3 when an architecture could not be tested.
        Command::Conformance(args) => conformance::run(&args),
        Command::Kernels(args) => kernels::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            // `{:#}` prints the context chain on one line: what was done, then why it failed.
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
