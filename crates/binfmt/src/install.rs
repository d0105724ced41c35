//! What an install registers: the architectures, their emulators (binfmt's, or ones
//! chosen for some architectures) and how, validated before anything is written.
//!
//! An [`Install`] is made by [`parse_list`] and [`Install::new`], the one chain that
//! checks `--install` and a config file's `architectures` alike; [`wanted`] is the
//! entry it registers for each architecture. Carrying it out is
//! [`crate::register`]'s job, after [`crate::handlers`] decided which architectures
//! to leave to other tools' entries.

use std::fmt;

use binfmt_misc::entry::InvalidRegistration;
use binfmt_misc::report::Fixable;
use binfmt_misc::{Flags, Registration};
use interpreter_files::InterpreterDir;
use qemu_catalog::{Arch, Emulator, ListError, Selection};

use crate::chosen::{CheckedEmulator, ChosenEmulator};
use crate::outcome::Message;

/// How entries are registered.
#[derive(Clone, Debug)]
pub struct Options {
    /// Flags of every entry.
    pub flags: Flags,
    /// Where interpreter files go.
    pub interpreter_dir: InterpreterDir,
    /// Keep every emulator in a sealed memfd and write nothing to `interpreter_dir`
    /// (`binfmt run`: its private table lives only as long as its namespace, and an
    /// unprivileged user owns no directory the kernel should trust).
    pub in_memory: bool,
    /// Register binfmt's emulator even where another tool's working entry runs the
    /// architecture (`--take-over`), in front of it; see [`crate::handlers`].
    pub take_over: bool,
}

/// What to register, and how: validated, so nothing is refused once writing starts.
#[derive(Debug)]
pub struct Install {
    /// As asked (`all` leaves out, by execution, what this machine runs natively).
    pub selection: Selection,
    /// The emulators of the selection.
    pub emulators: Vec<Emulator>,
    /// The emulators chosen for some of its architectures, instead of binfmt's
    /// (`--emulator`, a config file's `[emulators]`); their files are checked when
    /// the install is carried out, before the first write.
    pub chosen: Vec<ChosenEmulator>,
    /// How to register them.
    pub options: Options,
}

impl Install {
    /// The install of `emulators` (from [`parse_list`]) with `options`, once every
    /// entry it would register passes the kernel's rules (an interpreter path in an
    /// unusable directory fails here, with the reason).
    pub fn new(
        selection: Selection,
        emulators: Vec<Emulator>,
        options: Options,
    ) -> Result<Install, InstallError> {
        for emulator in &emulators {
            let wanted = wanted(emulator, &options);
            wanted.validate().map_err(|reason| InstallError::Invalid {
                name: wanted.name,
                reason,
            })?;
        }
        Ok(Install {
            selection,
            emulators,
            chosen: Vec::new(),
            options,
        })
    }

    /// The same install with `chosen` emulators for some architectures. Refused: two
    /// for one architecture, one for an architecture the install does not register,
    /// and one whose entry the kernel would refuse.
    pub fn with_chosen(mut self, chosen: Vec<ChosenEmulator>) -> Result<Install, InstallError> {
        crate::chosen::refuse_duplicates(&chosen).map_err(InstallError::Chosen)?;
        for one in &chosen {
            if !self.emulators.iter().any(|e| e.arch() == one.arch) {
                return Err(InstallError::ChosenNotInstalled { arch: one.arch });
            }
            let wanted = Registration {
                name: one.arch.entry_name(),
                matcher: one.arch.matcher(),
                interpreter: one.path.clone(),
                flags: one.flags.unwrap_or(self.options.flags),
            };
            wanted.validate().map_err(|reason| InstallError::Invalid {
                name: wanted.name,
                reason,
            })?;
        }
        self.chosen = chosen;
        Ok(self)
    }

    /// Every architecture of the install, in order.
    pub fn arches(&self) -> Vec<Arch> {
        self.emulators.iter().map(Emulator::arch).collect()
    }
}

/// Why an install is refused before anything is written.
#[derive(Debug)]
pub enum InstallError {
    /// The list names no architecture binfmt knows, or is too long.
    List(ListError),
    /// The list names this machine's own architectures.
    Native { arches: Vec<Arch> },
    /// An entry the install would register breaks a rule of the kernel's (an
    /// interpreter path in an unusable directory).
    Invalid {
        name: String,
        reason: InvalidRegistration,
    },
    /// The emulators chosen for some architectures are refused as written.
    Chosen(Message),
    /// An emulator is chosen for an architecture the install does not register.
    ChosenNotInstalled { arch: Arch },
}

impl fmt::Display for InstallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InstallError::List(error) => error.fmt(f),
            InstallError::Native { arches } => match arches.as_slice() {
                [arch] => write!(
                    f,
                    "{arch} is this machine's own architecture: an emulator registered for it \
                     would run every native program through QEMU, so binfmt never registers it"
                ),
                arches => {
                    let names: Vec<&str> = arches.iter().map(|arch| arch.oci()).collect();
                    write!(
                        f,
                        "{} are this machine's own architectures: an emulator registered for \
                         them would run every native program through QEMU, so binfmt never \
                         registers them",
                        names.join(" and ")
                    )
                }
            },
            InstallError::Invalid { name, .. } => write!(f, "cannot register {name}"),
            InstallError::Chosen(message) => message.fmt(f),
            InstallError::ChosenNotInstalled { arch } => write!(
                f,
                "an emulator is chosen for {arch}, which is not among the architectures to \
                 install"
            ),
        }
    }
}

impl std::error::Error for InstallError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            InstallError::Invalid { reason, .. } => Some(reason),
            InstallError::List(_)
            | InstallError::Native { .. }
            | InstallError::Chosen(_)
            | InstallError::ChosenNotInstalled { .. } => None,
        }
    }
}

impl Fixable for InstallError {
    fn fix(&self) -> Option<String> {
        match self {
            InstallError::List(error) => error.fix(),
            InstallError::Native { arches } => {
                let names: Vec<&str> = arches.iter().map(|arch| arch.oci()).collect();
                Some(format!(
                    "leave {} out: this machine runs its programs natively already",
                    names.join(" and ")
                ))
            }
            InstallError::Chosen(message) => message.fix(),
            InstallError::ChosenNotInstalled { .. } => {
                Some("add it to the architectures to install".to_owned())
            }
            InstallError::Invalid { .. } => None,
        }
    }
}

/// Parses an `--install` list (or a config file's architectures, joined) and resolves
/// it to the emulators to register; see [`resolve`] for what is refused.
pub fn parse_list(list: &str) -> Result<(Selection, Vec<Emulator>), InstallError> {
    let selection = qemu_catalog::parse_list(list).map_err(InstallError::List)?;
    let emulators = resolve(&selection)?;
    Ok((selection, emulators))
}

/// The architectures to install with their emulators, or why the selection is refused.
///
/// `all` means every emulator this binary carries, which never includes the host's
/// own architectures. Naming one of those is refused: its emulator would take over
/// every native program.
pub fn resolve(selection: &Selection) -> Result<Vec<Emulator>, InstallError> {
    let arches = match selection {
        Selection::All => return Ok(Emulator::all()),
        Selection::Arches(arches) => arches,
    };
    let mut native = Vec::new();
    let mut emulators = Vec::new();
    for &arch in arches {
        match Emulator::for_arch(arch) {
            Some(emulator) if !arch.is_native() => emulators.push(emulator),
            _ => native.push(arch),
        }
    }
    if native.is_empty() {
        Ok(emulators)
    } else {
        Err(InstallError::Native { arches: native })
    }
}

/// The entry we want for `emulator`, with its interpreter on disk.
pub fn wanted(emulator: &Emulator, options: &Options) -> Registration {
    let arch = emulator.arch();
    Registration {
        name: arch.entry_name(),
        matcher: arch.matcher(),
        interpreter: options.interpreter_dir.path_for(emulator),
        flags: options.flags,
    }
}

/// The entry we want for a chosen emulator: binfmt's name for the architecture, its
/// magic and mask, the chosen file, its flags or those of the rest.
pub fn wanted_chosen(chosen: &CheckedEmulator, options: &Options) -> Registration {
    Registration {
        name: chosen.arch.entry_name(),
        matcher: chosen.arch.matcher(),
        interpreter: chosen.file.path.clone(),
        flags: chosen.flags.unwrap_or(options.flags),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hosts_own_arches_are_refused_by_name_and_skipped_by_all() {
        for &native in Arch::native() {
            let error = resolve(&Selection::Arches(vec![Arch::Riscv64, native])).unwrap_err();
            assert!(
                matches!(&error, InstallError::Native { arches } if *arches == [native]),
                "{error:?}"
            );
            assert!(error.to_string().contains("own architecture"), "{error}");
        }
        let all = resolve(&Selection::All).unwrap();
        assert!(all.iter().all(|e| !e.arch().is_native()));
        assert_eq!(all.len(), Arch::ALL.len() - Arch::native().len());
    }
}
