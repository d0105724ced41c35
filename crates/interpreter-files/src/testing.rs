//! Fixtures shared by the unit tests: scratch directories binfmt trusts, and an
//! emulator to write.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use qemu_catalog::{Arch, Emulator};

/// A fresh directory under the build's own target directory (next to the test
/// binary). Not the system's temp directory: `/tmp` is writable by everyone, so
/// interpreter files may not go there.
pub(crate) fn scratch_dir(name: &str) -> PathBuf {
    let binary = std::env::current_exe().expect("the test binary's path");
    let dir = binary
        .parent()
        .expect("the test binary is in a directory")
        .join(format!("scratch-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    chmod(&dir, 0o755);
    dir
}

pub(crate) fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// The names in `dir`, sorted.
pub(crate) fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// An emulator every host carries, stored as a patch.
pub(crate) fn foreign_emulator() -> Emulator {
    Emulator::for_arch(Arch::Riscv64).expect("riscv64 is foreign on every supported host")
}
