//! `cargo xtask dist --check-reproducible`: a second, independent build of the same
//! commit must give the same bytes.
//!
//! The second build starts from a fresh `git clone` of `HEAD` in another directory
//! (`$XDG_CACHE_HOME/binfmt/reproducible/<digest of the workspace path>/checkout`,
//! one per checkout, outside the workspace so that no `.cargo/config.toml` of the
//! first checkout applies to it) with a target directory of its own, empty, so
//! everything is compiled again at another time in another place;
//! only the toolchain, the crates' sources and the blob cache are shared, as they are
//! between two machines set up alike. Any path of the checkout or of the target
//! directory that reached the binary, or a timestamp, would show up as a difference.
//! The second binary and SBOM are left in `<that directory>/dist` to compare.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use anyhow::{Context, Result, anyhow};

/// A fresh clone of the workspace's `HEAD`, with an empty target directory.
pub struct Copy {
    dir: PathBuf,
    root: PathBuf,
}

impl Copy {
    /// Clones `HEAD` of the checkout at `workspace`. Refuses when the checkout has
    /// changes not committed: the copy would be built from other sources.
    pub fn of_head(workspace: &Path) -> Result<Copy> {
        let changes = git(workspace, &["status", "--porcelain"])?;
        if !changes.trim().is_empty() {
            return Err(anyhow!(
                "{} has changes that are not committed, and the second build is of a clone \
                 of HEAD, so it would build other sources: commit or stash them first \
                 (git status:\n{})",
                workspace.display(),
                changes.trim_end()
            ));
        }
        let head = git(workspace, &["rev-parse", "HEAD"])?;
        let head = head.trim();
        // One directory per checkout: two checkouts checked at once do not meet.
        let digest = hex::encode(Sha256::digest(workspace.as_os_str().as_encoded_bytes()));
        let dir = crate::workspace::binfmt_cache_dir()?
            .join("reproducible")
            .join(&digest[..16]);
        if dir.exists() {
            fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        fs::create_dir_all(dir.join("dist"))
            .with_context(|| format!("creating {}", dir.display()))?;
        let root = dir.join("checkout");
        let root_arg = root
            .to_str()
            .context("the cache directory's path is not UTF-8")?;
        let workspace_arg = workspace
            .to_str()
            .context("the workspace's path is not UTF-8")?;
        git(
            &dir,
            &["clone", "--quiet", "--no-checkout", workspace_arg, root_arg],
        )?;
        git(&root, &["checkout", "--quiet", "--detach", head])?;
        eprintln!("reproducible: building {head} again in {}", root.display());
        Ok(Copy { dir, root })
    }

    /// The clone's workspace root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Its own target directory.
    pub fn target_dir(&self) -> PathBuf {
        self.dir.join("target")
    }

    /// Where its binaries and SBOMs go, to be compared with `dist/`'s.
    pub fn dist_dir(&self) -> PathBuf {
        self.dir.join("dist")
    }
}

/// Runs git in `dir`; its stdout.
fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let output = Command::new("git")
        .current_dir(dir)
        .args(args)
        .output()
        .with_context(|| format!("running git {}", args.join(" ")))?;
    if !output.status.success() {
        return Err(anyhow!(
            "git {} in {} failed ({}): {}",
            args.join(" "),
            dir.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Fails, saying where they differ, unless the files `first` and `second` are the same.
pub fn compare(first: &Path, second: &Path) -> Result<()> {
    let read = |path: &Path| fs::read(path).with_context(|| format!("reading {}", path.display()));
    match difference(&read(first)?, &read(second)?) {
        None => Ok(()),
        Some(difference) => Err(anyhow!(
            "{} is not reproducible: the second build, {}, differs ({difference}); \
             `cmp -l` and `strings` on the two show what leaked (a path, a time)",
            first.display(),
            second.display()
        )),
    }
}

/// Where two builds differ, in words, or `None` when they are the same.
fn difference(first: &[u8], second: &[u8]) -> Option<String> {
    if first == second {
        return None;
    }
    let differing = first.iter().zip(second).filter(|(a, b)| a != b).count();
    let at = first
        .iter()
        .zip(second)
        .position(|(a, b)| a != b)
        .unwrap_or(first.len().min(second.len()));
    Some(format!(
        "{} and {} bytes, {differing} bytes differ in their common length, the first at \
         offset {at:#x}",
        first.len(),
        second.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkout_with_changes_not_committed_is_refused() {
        let repo = std::env::temp_dir().join(format!("xtask-reproduce-{}", std::process::id()));
        let _ = fs::remove_dir_all(&repo);
        fs::create_dir_all(&repo).unwrap();
        git(&repo, &["init", "--quiet"]).unwrap();
        fs::write(repo.join("new.rs"), "fn main() {}\n").unwrap();
        let error = Copy::of_head(&repo).err().unwrap().to_string();
        fs::remove_dir_all(&repo).unwrap();
        assert!(error.contains("not committed"), "{error}");
        assert!(error.contains("new.rs"), "{error}");
    }

    #[test]
    fn differences_are_located() {
        assert_eq!(difference(b"same", b"same"), None);
        let found = difference(b"abcdef", b"abXdeY").unwrap();
        assert!(found.contains("2 bytes differ"), "{found}");
        assert!(found.contains("offset 0x2"), "{found}");
        let longer = difference(b"abc", b"abcd").unwrap();
        assert!(longer.contains("3 and 4 bytes"), "{longer}");
        assert!(longer.contains("offset 0x3"), "{longer}");
    }
}
