//! What an install registers: the architectures, their emulators (binfmt's, or ones
//! chosen for some architectures) and how, validated before anything is written.
//!
//! An [`Install`] is made by [`parse_list`] and [`Install::new`], the one chain that
//! checks `--install` and a config file's `architectures` alike; [`wanted`] is the
//! entry it registers for each architecture. Carrying it out is
//! [`crate::register`]'s job, after [`crate::handlers`] decided which architectures
//! to leave to other tools' entries.

use binfmt_misc::{Flags, Registration};
use interpreter_files::InterpreterDir;
use qemu_catalog::{Arch, Emulator, Selection};

use crate::chosen::{CheckedEmulator, ChosenEmulator};

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
    ) -> Result<Install, String> {
        for emulator in &emulators {
            wanted(emulator, &options)
                .validate()
                .map_err(|reason| reason.to_string())?;
        }
        Ok(Install {
            selection,
            emulators,
            chosen: Vec::new(),
            options,
        })
    }

    /// The same install with `chosen` emulators for some architectures; `what` names
    /// where they were given (`--emulator`, `emulators`), for the errors. Refused: two
    /// for one architecture, one for an architecture the install does not register,
    /// and one whose entry the kernel would refuse.
    pub fn with_chosen(
        mut self,
        chosen: Vec<ChosenEmulator>,
        what: &str,
    ) -> Result<Install, String> {
        crate::chosen::refuse_duplicates(&chosen).map_err(|error| format!("{what}: {error}"))?;
        for one in &chosen {
            if !self.emulators.iter().any(|e| e.arch() == one.arch) {
                return Err(format!(
                    "{what}: an emulator is chosen for {}, which is not among the \
                     architectures to install; add it to them",
                    one.arch
                ));
            }
            Registration {
                name: one.arch.entry_name(),
                matcher: one.arch.matcher(),
                interpreter: one.path.clone(),
                flags: one.flags.unwrap_or(self.options.flags),
            }
            .validate()
            .map_err(|reason| format!("{what} {}: {reason}", one.arch))?;
        }
        self.chosen = chosen;
        Ok(self)
    }

    /// Every architecture of the install, in order.
    pub fn arches(&self) -> Vec<Arch> {
        self.emulators.iter().map(Emulator::arch).collect()
    }
}

/// Parses an `--install` list (or a config file's architectures, joined) and resolves
/// it to the emulators to register; see [`resolve`] for what is refused.
pub fn parse_list(list: &str) -> Result<(Selection, Vec<Emulator>), String> {
    let selection = qemu_catalog::parse_list(list).map_err(|error| error.to_string())?;
    let emulators = resolve(&selection)?;
    Ok((selection, emulators))
}

/// The architectures to install with their emulators, or why the selection is refused.
///
/// `all` means every emulator this binary carries, which never includes the host's
/// own architectures. Naming one of those is refused: its emulator would take over
/// every native program.
pub fn resolve(selection: &Selection) -> Result<Vec<Emulator>, String> {
    let arches = match selection {
        Selection::All => return Ok(Emulator::all()),
        Selection::Arches(arches) => arches,
    };
    let mut refused = Vec::new();
    let mut emulators = Vec::new();
    for &arch in arches {
        match Emulator::for_arch(arch) {
            Some(emulator) if !arch.is_native() => emulators.push(emulator),
            _ => refused.push(format!(
                "{arch} is this machine's own architecture: an emulator registered for it \
                 would run every native program through QEMU, so binfmt never registers it \
                 (it runs natively already)"
            )),
        }
    }
    if refused.is_empty() {
        Ok(emulators)
    } else {
        Err(refused.join("; "))
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
            assert!(error.contains("own architecture"), "{error}");
        }
        let all = resolve(&Selection::All).unwrap();
        assert!(all.iter().all(|e| !e.arch().is_native()));
        assert_eq!(all.len(), Arch::ALL.len() - Arch::native().len());
    }
}
