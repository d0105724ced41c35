//! Where things are: the workspace, cargo's target directory, binfmt's cache
//! directory; and how progress lines show sizes.

use std::path::PathBuf;

use anyhow::{Context, Result};

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
    let base = absolute_env("XDG_CACHE_HOME")
        .or_else(|| absolute_env("HOME").map(|home| home.join(".cache")))
        .context("neither $XDG_CACHE_HOME nor $HOME is an absolute path")?;
    Ok(base.join("binfmt"))
}

/// The path an environment variable holds, when it is set and absolute (a relative
/// one would mean another place in every directory xtask runs from).
pub fn absolute_env(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .map(PathBuf::from)
        .filter(|path| path.is_absolute())
}

/// Formats a byte count for progress lines: `71.2 MB`.
pub fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}
