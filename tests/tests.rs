//! binfmt's integration tests: one test binary, one module per area (ripgrep style).
//!
//! Everything that touches binfmt_misc runs in a private instance inside a user and
//! mount namespace (see `util`), so the suite needs no root and leaves the machine's
//! own table untouched; each such test also checks that.

// Test code: an unwrap is how a test says "this cannot fail here" (the workspace
// denies clippy::unwrap_used in product code only).
#![allow(clippy::unwrap_used)]

mod util;

mod amd64_on_arm64;
mod apply;
mod check;
mod coexistence;
mod compat;
mod crash;
mod deb;
mod deb_boot;
mod dist;
mod docker;
mod docs;
mod doctor;
mod emulators;
mod failing_build;
mod failures;
mod hostile;
mod image;
mod install;
mod interpreter_files;
mod kernel;
mod kubernetes;
mod mount;
mod persist;
mod probe;
mod proofs;
mod run;
mod systemd;
mod systemd_boot;
mod tidy;
mod uninstall;
