//! One module per command; each has a `run` that `main` dispatches to.
//!
//! - [`top_level`]: no subcommand, the top-level options: `--install`, `--uninstall`
//!   and the status JSON (tonistiigi/binfmt's command line); [`version`]: `--version`.
//! - [`run`]: `binfmt run`, foreign programs without privileges.
//! - [`check`]: `binfmt check`, the CI preflight.
//! - [`doctor`]: `binfmt doctor`, every finding with its cause and fix.
//! - [`apply`]: `binfmt apply`, the config file of the systemd unit and the DaemonSet.
//! - [`emulators`]: `binfmt emulators`, what the binary carries.
//! - [`switch`]: `binfmt enable` and `binfmt disable`, entries on and off.
//!
//! [`lines`] prints what a run of the table did, for `top_level` and `apply`.

pub mod apply;
pub mod check;
pub mod doctor;
pub mod emulators;
pub mod lines;
pub mod run;
pub mod switch;
pub mod top_level;
pub mod version;
