//! Developer tasks for the binfmt workspace, run as `cargo xtask <command>`.
//!
//! - `cargo xtask pin`: choose the Debian `qemu-user` version to embed and write
//!   `qemu-blobs/pins.toml` ([`pin`]).
//! - `cargo xtask fetch`: download the pinned packages and fill the emulator blob cache
//!   that the build of `qemu-catalog` embeds from ([`fetch`]).
//! - `cargo xtask fuzz [--seconds N]`: run every fuzz target in `fuzz/` for a bounded
//!   time ([`fuzz`]).
//! - `cargo xtask dist`: build the static release binaries for x86_64 and aarch64 into
//!   `dist/`, which the `Dockerfile` packages ([`dist`]).
//! - `cargo xtask bench`: build the release binaries and measure them side by side with
//!   systemd-binfmt in private binfmt_misc instances ([`bench`]).
//! - `cargo xtask conformance [ARCH...]`: build a Debian userland per foreign
//!   architecture under the pinned emulators and run python3, perl and ldconfig in it;
//!   what a re-pin must pass ([`conformance`]).
//!
//! Shared pieces: where packages are downloaded from ([`mirror`]), plain-HTTP downloads
//! ([`http`]), reading a `.deb` without dpkg ([`deb`]), the compressed blob format
//! ([`blob`]), Debian version ordering ([`version`]) and the private binfmt_misc
//! instance the bench and conformance run in ([`sandbox`]).

mod bench;
mod blob;
mod conformance;
mod deb;
mod dist;
mod fetch;
mod fuzz;
mod http;
mod mirror;
mod pin;
mod reproduce;
mod sandbox;
mod sbom;
mod version;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

// Errors are anyhow's: each step adds what it was doing (`with_context`), and main
// prints the chain once.
use anyhow::{Context, Result};

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
    /// Build the static release binaries for x86_64 and aarch64 into dist/.
    Dist(dist::Args),
    /// Pin a Debian qemu-user version: rewrite qemu-blobs/pins.toml (and fill the cache).
    Pin(pin::Args),
    /// Run every fuzz target (or those named) for a bounded time (nightly, cargo-fuzz).
    Fuzz(fuzz::Args),
    /// Build the release binaries and print how fast and small they are, next to
    /// systemd-binfmt, measured in private binfmt_misc instances.
    Bench(bench::Args),
    /// Build a minimal Debian userland for each foreign architecture under the pinned
    /// emulators (mmdebstrap, emulated dpkg) and run python3, perl and ldconfig in it;
    /// prints a matrix. A re-pin must pass it. Needs root.
    Conformance(conformance::Args),
}

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

/// Where cargo builds: `$CARGO_TARGET_DIR` (relative to the workspace root when
/// relative) or `target/` in the workspace, as cargo decides for builds started there.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").filter(|dir| !dir.is_empty()) {
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    }
}

/// The workspace root: the parent of this crate's directory.
pub fn workspace_root() -> PathBuf {
    let xtask_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    match xtask_dir.parent() {
        Some(root) => root.to_path_buf(),
        None => xtask_dir,
    }
}

/// binfmt's cache directory, `$XDG_CACHE_HOME/binfmt` (else `~/.cache/binfmt`): the
/// blob cache, conformance's packages, the reproducibility check's second checkout.
pub fn binfmt_cache_dir() -> Result<PathBuf> {
    let absolute = |var: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .filter(|path| path.is_absolute())
    };
    let base = absolute("XDG_CACHE_HOME")
        .or_else(|| absolute("HOME").map(|home| home.join(".cache")))
        .context("neither $XDG_CACHE_HOME nor $HOME is an absolute path")?;
    Ok(base.join("binfmt"))
}

/// Formats a byte count for progress lines: `71.2 MB`.
pub fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}
