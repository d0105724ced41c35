//! The names of the files in an interpreter directory: each emulator's, the mode
//! every one has, and the names of the temporary files a write renames into place and
//! of the state files.
//!
//! File names carry the first 16 hex digits of the emulator's sha256
//! (`qemu-aarch64-0123456789abcdef`): an entry whose interpreter path is ours names
//! the exact emulator it was registered with, even where the file itself is not
//! visible (another container's filesystem). A new pin gives a new path, which
//! replaces the entry.

use qemu_catalog::{Arch, Emulator};

/// How many hex digits of the sha256 go into a file name.
pub(crate) const DIGEST_PREFIX: usize = 16;

/// The mode of every interpreter file: root may write, everyone may run it.
pub(crate) const FILE_MODE: u32 = 0o755;

/// How the name of every state file begins (see
/// [`InterpreterDir::read_state`](crate::InterpreterDir::read_state)).
pub const STATE_PREFIX: &str = ".binfmt-";

/// The file an emulator is written to in its directory: `qemu-<cpu>-<sha256 prefix>`.
pub fn file_name(emulator: &Emulator) -> String {
    format!(
        "qemu-{}-{}",
        emulator.arch().qemu_cpu(),
        &emulator.sha256()[..DIGEST_PREFIX]
    )
}

/// Whether `name` is one binfmt gives an emulator file: `qemu-<cpu>-<16 lowercase hex
/// digits>` with the CPU of one of the catalog's architectures.
pub fn is_emulator_file_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("qemu-") else {
        return false;
    };
    let Some((cpu, digest)) = rest.rsplit_once('-') else {
        return false;
    };
    Arch::ALL.iter().any(|arch| arch.qemu_cpu() == cpu)
        && digest.len() == DIGEST_PREFIX
        && digest
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
}

/// The temporary name `name` is written under before it is renamed into place.
pub(crate) fn temporary_name(name: &str) -> String {
    format!(".{name}.tmp-{}", std::process::id())
}

/// Whether `name` is a temporary file that [`InterpreterDir::ensure_all`](crate::InterpreterDir::ensure_all) writes before
/// renaming it into place (`.qemu-<cpu>-<digest>.tmp-<pid>`, and the same for a
/// verification record), or a state file's (`.binfmt-<name>.tmp-<pid>`, see
/// [`InterpreterDir::write_state`](crate::InterpreterDir::write_state)).
pub(crate) fn is_temporary(name: &[u8]) -> bool {
    (name.starts_with(b".qemu-") || name.starts_with(STATE_PREFIX.as_bytes()))
        && name.windows(5).any(|window| window == b".tmp-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_binfmts_own_names_are_emulator_names() {
        assert!(is_emulator_file_name("qemu-aarch64-0123456789abcdef"));
        assert!(is_emulator_file_name("qemu-mips64el-ffffffffffffffff"));
        for other in [
            "qemu-aarch64-static",
            "qemu-aarch64",
            "qemu-aarch64-0123456789ABCDEF",
            "qemu-aarch64-0123456789abcde",
            "qemu-aarch64-0123456789abcdef0",
            "qemu-sparc-0123456789abcdef",
            ".qemu-aarch64-0123456789abcdef.verified",
            ".qemu-aarch64-0123456789abcdef.tmp-1",
            ".binfmt-proofs",
            "notes.txt",
        ] {
            assert!(!is_emulator_file_name(other), "{other}");
        }
        for emulator in Emulator::all() {
            assert!(is_emulator_file_name(&file_name(&emulator)), "{emulator:?}");
        }
    }

    #[test]
    fn temporary_files_are_told_from_the_rest() {
        assert!(is_temporary(b".qemu-aarch64-0123456789abcdef.tmp-1"));
        assert!(is_temporary(b".binfmt-proofs.tmp-1"));
        assert!(!is_temporary(b".binfmt-proofs"));
        assert!(!is_temporary(b"qemu-aarch64-0123456789abcdef"));
        assert!(is_temporary(
            temporary_name("qemu-riscv64-0123456789abcdef").as_bytes()
        ));
    }
}
