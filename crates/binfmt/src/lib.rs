//! binfmt's commands and the logic they share; the `binfmt` binary (`main.rs`) only
//! parses the arguments, dispatches to [`commands`] and maps the outcome to an exit
//! code.
//!
//! - [`commands`]: one module per command.
//! - [`outcome`]: what a command ends with; exit codes.
//! - [`request`], [`install`], [`register`], [`emulator_files`], [`uninstall`],
//!   [`unused_emulators`], [`config`], [`signals`]: registering and removing entries,
//!   as the top-level options and `binfmt apply` ask; [`handlers`]: where another
//!   tool's entry already runs an architecture; [`chosen`]: an emulator a user picks
//!   instead of binfmt's; [`targets`]: which entries a list names.
//! - [`survey`], [`probe`], [`proof_record`], [`status`]: what runs here, proved
//!   by running probes in an empty root, remembered within a boot, and the status JSON.
//! - [`findings`]: every problem binfmt diagnoses, worded once with its cause and fix;
//!   [`troubleshooting`]: the reference page generated from them.
//! - [`host`]: the facts `/proc` gives about the kernel and this process's namespaces.
//! - [`userns`]: the user and mount namespaces of `binfmt run`.
//!
//! The kernel interface is `binfmt-misc`, the architectures and embedded emulators
//! `qemu-catalog`, where emulators are written `interpreter-files`.

// What is `pub` is the crate's API: an item only its own crate can reach says so.
#![deny(unreachable_pub)]

pub mod chosen;
pub mod commands;
pub mod config;
pub mod emulator_files;
pub mod findings;
pub mod handlers;
pub mod host;
pub mod install;
pub mod outcome;
pub mod probe;
pub mod proof_record;
pub mod register;
pub mod request;
pub mod signals;
pub mod status;
pub mod survey;
pub mod targets;
#[cfg(test)]
mod testing;
pub mod troubleshooting;
pub mod uninstall;
pub mod unused_emulators;
pub mod userns;
