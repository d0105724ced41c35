//! An interpreter ready to be registered: a path, and the memfd behind it when it
//! lives in memory.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// An interpreter ready to be registered.
///
/// For a memfd the descriptor must stay open until the kernel has opened it, which
/// registration with flag F does; drop this value afterwards.
#[derive(Debug)]
pub struct Interpreter {
    path: PathBuf,
    memfd: Option<OwnedFd>,
}

impl Interpreter {
    /// The path to register as the entry's interpreter.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether it lives in a memfd (RAM) rather than on disk.
    pub fn is_memfd(&self) -> bool {
        self.memfd.is_some()
    }

    /// A file on disk at `path`.
    pub(crate) fn on_disk(path: PathBuf) -> Interpreter {
        Interpreter { path, memfd: None }
    }

    /// A memfd of this process, registered as `/proc/self/fd/<n>`, which the kernel
    /// resolves when it registers with flag F.
    pub(crate) fn in_memfd(file: File) -> Interpreter {
        Interpreter {
            path: PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd())),
            memfd: Some(file.into()),
        }
    }
}

/// Whether `path` is one that an interpreter in a memfd has (a descriptor of the
/// process that registered it, meaningless to anyone else).
pub fn is_memfd_path(path: &Path) -> bool {
    path.to_str()
        .and_then(|p| p.strip_prefix("/proc/self/fd/"))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memfd_paths_are_recognised() {
        assert!(is_memfd_path(Path::new("/proc/self/fd/3")));
        assert!(!is_memfd_path(Path::new("/proc/self/fd/")));
        assert!(!is_memfd_path(Path::new("/proc/self/fd/3/x")));
        assert!(!is_memfd_path(Path::new("/var/lib/binfmt/qemu-aarch64")));
    }
}
