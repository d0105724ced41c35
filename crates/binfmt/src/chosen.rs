//! The emulator a user picks for an architecture instead of the one binfmt carries:
//! `--emulator ARCH=PATH[@sha256:DIGEST]`, or a config file's `[emulators.ARCH]`
//! table. Debian's qemu-user-static of another version when a pinned QEMU regresses
//! for a workload, box64, FEX.
//!
//! Two steps. [`ChosenEmulator::parse`] checks what was written (an architecture
//! binfmt knows and that is not this machine's own, an absolute path, a digest of 64
//! hex digits); a mistake there is an invalid argument. [`ChosenEmulator::check`],
//! run before the first write, checks the file as binfmt checks its own
//! (`interpreter_files::chosen`: a path only root can change, the digest when given)
//! and runs the architecture's probe through it: a file that is not an emulator of
//! that architecture changes nothing. Once registered (under binfmt's own entry name,
//! `qemu-<cpu>`, with the architecture's magic and mask), the status, `check` and
//! `doctor` prove it by its probe in an empty root like any other entry.

use std::fmt;
use std::path::PathBuf;

use binfmt_misc::Flags;
use binfmt_misc::report::Fixable;
use interpreter_files::chosen::{self as file, ChosenError, ChosenFile};
use qemu_catalog::Arch;

use crate::outcome::Message;
use crate::probe::{self, ProbeError, ProbeFailure, ProbeOutcome};

/// An emulator chosen for an architecture, as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChosenEmulator {
    /// The architecture it runs.
    pub arch: Arch,
    /// The emulator file.
    pub path: PathBuf,
    /// Its sha256, when the user pinned one (lowercase hex).
    pub sha256: Option<String>,
    /// Flags for its entry, when not those of the rest (a config file's `flags`).
    pub flags: Option<Flags>,
}

/// A chosen emulator whose file passed every check and ran its architecture's probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedEmulator {
    /// The architecture it runs.
    pub arch: Arch,
    /// The file as checked.
    pub file: ChosenFile,
    /// Flags for its entry, when not those of the rest.
    pub flags: Option<Flags>,
}

/// Why a chosen emulator cannot be used. Nothing was written.
#[derive(Debug)]
pub enum ChosenFailure {
    /// The file is refused.
    File { arch: Arch, error: ChosenError },
    /// The file is no emulator of the architecture: its probe failed through it.
    Probe {
        arch: Arch,
        path: PathBuf,
        failure: ProbeFailure,
    },
    /// The probe could not be run at all.
    CannotProbe { arch: Arch, error: ProbeError },
}

impl fmt::Display for ChosenFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChosenFailure::File { arch, .. } => write!(f, "the emulator chosen for {arch}"),
            ChosenFailure::Probe {
                arch,
                path,
                failure,
            } => write!(
                f,
                "the emulator chosen for {arch}, {}, does not run {arch} programs (its probe, \
                 given to it as its argument, {failure})",
                path.display()
            ),
            ChosenFailure::CannotProbe { arch, .. } => write!(
                f,
                "cannot run {arch}'s probe through the emulator chosen for it"
            ),
        }
    }
}

impl std::error::Error for ChosenFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ChosenFailure::File { error, .. } => Some(error),
            ChosenFailure::CannotProbe { error, .. } => Some(error),
            ChosenFailure::Probe { .. } => None,
        }
    }
}

impl Fixable for ChosenFailure {
    fn fix(&self) -> Option<String> {
        match self {
            ChosenFailure::File { error, .. } => error.fix(),
            ChosenFailure::Probe { arch, .. } => Some(format!(
                "give an emulator of {arch} that runs on this machine, such as Debian's \
                 qemu-{}-static",
                arch.qemu_cpu()
            )),
            ChosenFailure::CannotProbe { .. } => Some(
                "run binfmt as root, with TMPDIR on a writable filesystem that allows exec"
                    .to_owned(),
            ),
        }
    }
}

impl ChosenEmulator {
    /// Parses `ARCH=PATH[@sha256:DIGEST]`, as `--emulator` takes it.
    pub fn parse(spec: &str) -> Result<ChosenEmulator, Message> {
        let Some((arch, rest)) = spec.split_once('=') else {
            return Err(Message::new(format!("{spec:?} is not ARCH=PATH")).fix(
                "give the architecture and the emulator's path, such as \
                 arm64=/usr/bin/qemu-aarch64-static",
            ));
        };
        let (path, sha256) = match rest.rsplit_once("@sha256:") {
            Some((path, digest)) => (path, Some(digest)),
            None => (rest, None),
        };
        ChosenEmulator::new(arch.trim(), PathBuf::from(path), sha256, None)
    }

    /// Checks what was written: `arch` names an architecture that is not this
    /// machine's own, `path` is absolute, `sha256` is 64 hex digits.
    pub fn new(
        arch: &str,
        path: PathBuf,
        sha256: Option<&str>,
        flags: Option<Flags>,
    ) -> Result<ChosenEmulator, Message> {
        let arch = Arch::parse(arch).map_err(|error| Message::of(&error))?;
        if arch.is_native() {
            return Err(Message::new(format!(
                "{arch} is this machine's own architecture: an emulator registered for it would \
                 run every native program, so binfmt never registers one"
            ))
            .fix(format!("leave {arch} out: it runs natively")));
        }
        if !path.is_absolute() {
            return Err(Message::new(format!(
                "the emulator for {arch}, {}, is not an absolute path",
                path.display()
            ))
            .fix("give its path from `/`"));
        }
        let sha256 = match sha256 {
            Some(digest) => {
                let digest = digest.to_ascii_lowercase();
                if digest.len() != 64 || !digest.bytes().all(|byte| byte.is_ascii_hexdigit()) {
                    return Err(Message::new(format!(
                        "the sha256 given for {arch}'s emulator, {digest:?}, is not 64 hex digits"
                    ))
                    .fix(format!("`sha256sum {}` prints it", path.display())));
                }
                Some(digest)
            }
            None => None,
        };
        Ok(ChosenEmulator {
            arch,
            path,
            sha256,
            flags,
        })
    }

    /// Checks the file and runs the architecture's probe through it (see the module
    /// documentation).
    pub fn check(&self) -> Result<CheckedEmulator, ChosenFailure> {
        let arch = self.arch;
        let file = file::check(&self.path, self.sha256.as_deref())
            .map_err(|error| ChosenFailure::File { arch, error })?;
        match probe::run_through(&file.path, arch) {
            Ok(ProbeOutcome::Proved(_)) => {}
            Ok(ProbeOutcome::Failed(failure)) => {
                return Err(ChosenFailure::Probe {
                    arch,
                    path: file.path,
                    failure,
                });
            }
            Err(error) => return Err(ChosenFailure::CannotProbe { arch, error }),
        }
        if let Some(loader) = &file.loader {
            log::warn!(
                "the emulator chosen for {arch}, {}, is dynamically linked (it needs {}): it \
                 runs {arch} programs on this machine, but not inside containers and chroots \
                 that lack that loader and its libraries",
                file.path.display(),
                loader.display()
            );
        }
        Ok(CheckedEmulator {
            arch,
            file,
            flags: self.flags,
        })
    }
}

/// Refuses two emulators chosen for one architecture.
pub fn refuse_duplicates(chosen: &[ChosenEmulator]) -> Result<(), Message> {
    for (index, first) in chosen.iter().enumerate() {
        if let Some(second) = chosen[index + 1..].iter().find(|c| c.arch == first.arch) {
            return Err(Message::new(format!(
                "two emulators are chosen for {}: {} and {}",
                first.arch,
                first.path.display(),
                second.path.display()
            ))
            .fix("give one"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn foreign() -> Arch {
        [Arch::Riscv64, Arch::S390x]
            .into_iter()
            .find(|arch| !arch.is_native())
            .unwrap()
    }

    #[test]
    fn a_spec_names_the_architecture_the_path_and_maybe_the_digest() {
        let arch = foreign();
        let digest = "ab".repeat(32);
        let chosen = ChosenEmulator::parse(&format!(
            "{}=/usr/bin/qemu-x@sha256:{}",
            arch.oci(),
            digest.to_uppercase()
        ))
        .unwrap();
        assert_eq!(chosen.arch, arch);
        assert_eq!(chosen.path, PathBuf::from("/usr/bin/qemu-x"));
        assert_eq!(chosen.sha256.as_deref(), Some(digest.as_str()));
        let plain = ChosenEmulator::parse(&format!("linux/{}=/opt/e", arch.oci())).unwrap();
        assert_eq!(plain.sha256, None);
    }

    #[test]
    fn mistakes_are_refused_with_what_to_write() {
        let arch = foreign().oci();
        for (spec, says) in [
            ("/usr/bin/qemu".to_owned(), "is not ARCH=PATH"),
            ("bogus=/usr/bin/qemu".to_owned(), "bogus"),
            (format!("{arch}=usr/bin/qemu"), "not an absolute path"),
            (
                format!("{arch}=/usr/bin/qemu@sha256:abc"),
                "not 64 hex digits",
            ),
            (
                format!("{}=/usr/bin/qemu", Arch::native()[0].oci()),
                "own architecture",
            ),
        ] {
            let error = ChosenEmulator::parse(&spec).unwrap_err();
            assert!(error.to_string().contains(says), "{spec}: {error}");
        }
        let one = ChosenEmulator::parse(&format!("{arch}=/a")).unwrap();
        let two = ChosenEmulator::parse(&format!("{arch}=/b")).unwrap();
        assert!(refuse_duplicates(std::slice::from_ref(&one)).is_ok());
        let error = refuse_duplicates(&[one, two]).unwrap_err();
        assert!(
            error.to_string().contains("two emulators are chosen"),
            "{error}"
        );
    }
}
