//! Where the compressed emulator blobs are cached, outside the repository, and how
//! the files in it are named.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::manifest::Pin;

/// Environment variable that overrides the blob cache directory (an absolute path).
pub const BLOB_CACHE_ENV: &str = "BINFMT_BLOB_CACHE";

/// Every environment variable [`BlobCache::from_env`] reads, in order of precedence.
///
/// A build script that calls [`BlobCache::from_env`] should print
/// `cargo::rerun-if-env-changed=<var>` for each of them.
pub const CACHE_ENV_VARS: &[&str] = &[BLOB_CACHE_ENV, "XDG_CACHE_HOME", "HOME"];

/// Environment variable that says which [`Compression`] of the embedded emulators a
/// build takes: `release` (what `cargo xtask dist` sets) or `fast` (the default).
pub const COMPRESSION_ENV: &str = "BINFMT_EMBEDDED_COMPRESSION";

/// How hard the emulators a binary embeds are compressed. The two are the same format
/// (decoded by the same code, checked the same way) and differ only in size and in
/// how long they take to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Quick to make: what `cargo xtask fetch` makes for the machine's own host, so
    /// that development builds and the tests can start within a minute of a fresh
    /// clone. The binary is a few MB larger.
    Fast,
    /// As small as zstd makes them, minutes of CPU per host: what `cargo xtask dist`
    /// makes for each release binary, and the only kind that is shipped.
    Release,
}

impl Compression {
    /// The compression named by [`COMPRESSION_ENV`]; [`Compression::Fast`] when it
    /// is unset or empty.
    pub fn from_env() -> Result<Compression, Error> {
        Compression::from_value(std::env::var_os(COMPRESSION_ENV))
    }

    fn from_value(value: Option<OsString>) -> Result<Compression, Error> {
        match value.as_deref().map(|value| value.to_str()) {
            None | Some(Some("" | "fast")) => Ok(Compression::Fast),
            Some(Some("release")) => Ok(Compression::Release),
            _ => Err(Error::Compression {
                value: value.unwrap_or_default().to_string_lossy().into_owned(),
                variable: COMPRESSION_ENV,
            }),
        }
    }

    /// Its name, as [`COMPRESSION_ENV`] spells it.
    pub fn name(self) -> &'static str {
        match self {
            Compression::Fast => "fast",
            Compression::Release => "release",
        }
    }

    /// The cache directory of its blobs.
    fn dir(self) -> &'static str {
        match self {
            Compression::Fast => "embedded-fast",
            Compression::Release => "embedded",
        }
    }
}

/// The directory holding compressed emulator blobs, outside the repository.
///
/// Layout: `<root>/emulators/<sha256 of the uncompressed emulator>.zst`, each file one
/// zstd frame of one emulator on its own (what is fetched and checked), and
/// `<root>/embedded/...` and `<root>/embedded-fast/...`, the emulators in the form the
/// binary embeds them ([`BlobCache::embedded_path`]), and `<root>/kernels/<sha256>`,
/// the files the real-kernel test guests boot with ([`BlobCache::kernel_file_path`]).
/// Nothing else in the cache is relied upon; temporary
/// files of interrupted runs may be left next to the blobs and can be deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobCache {
    root: PathBuf,
}

impl BlobCache {
    /// The cache named by the environment: `$BINFMT_BLOB_CACHE`, else
    /// `$XDG_CACHE_HOME/binfmt/qemu-blobs`, else `$HOME/.cache/binfmt/qemu-blobs`.
    ///
    /// Only absolute paths are accepted: build scripts run in their package's directory
    /// and xtask in the caller's, so a relative path would name two different caches.
    /// A relative `$XDG_CACHE_HOME` is ignored, as the XDG base directory spec says.
    pub fn from_env() -> Result<BlobCache, Error> {
        BlobCache::from_vars(|name| std::env::var_os(name))
    }

    fn from_vars(var: impl Fn(&str) -> Option<OsString>) -> Result<BlobCache, Error> {
        let set = |name: &str| {
            var(name)
                .filter(|value| !value.is_empty())
                .map(PathBuf::from)
        };
        if let Some(root) = set(BLOB_CACHE_ENV) {
            if root.is_relative() {
                return Err(Error::CacheDir {
                    problem: format!("${BLOB_CACHE_ENV} is the relative path {}", root.display()),
                    variable: BLOB_CACHE_ENV,
                });
            }
            return Ok(BlobCache::at(root));
        }
        if let Some(xdg) = set("XDG_CACHE_HOME").filter(|path| path.is_absolute()) {
            return Ok(BlobCache::at(xdg.join("binfmt/qemu-blobs")));
        }
        match set("HOME") {
            Some(home) if home.is_absolute() => {
                Ok(BlobCache::at(home.join(".cache/binfmt/qemu-blobs")))
            }
            Some(home) => Err(Error::CacheDir {
                problem: format!("$HOME is the relative path {}", home.display()),
                variable: BLOB_CACHE_ENV,
            }),
            None => Err(Error::CacheDir {
                problem: format!("none of ${BLOB_CACHE_ENV}, $XDG_CACHE_HOME and $HOME is set"),
                variable: BLOB_CACHE_ENV,
            }),
        }
    }

    /// A cache rooted at `root`.
    pub fn at(root: PathBuf) -> BlobCache {
        BlobCache { root }
    }

    /// The cache's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the compressed blob of `emulator` lives: `<root>/emulators/<sha256>.zst`.
    pub fn compressed_path(&self, emulator: &Pin) -> PathBuf {
        self.root
            .join("emulators")
            .join(format!("{}.zst", emulator.sha256))
    }

    /// Where `emulator` is cached in the form the binary embeds it, with
    /// `compression`: `<root>/embedded/<sha256>.filtered.zst` for a host's reference
    /// emulator, and `<root>/embedded/<sha256>.filtered.from-<sha256 of the
    /// reference>.zst` for the others, compressed against the reference's bytes (a zstd
    /// prefix, what `zstd --patch-from` does); `embedded-fast/` instead of `embedded/`
    /// for [`Compression::Fast`]. Either is a few zstd frames, each a consecutive part
    /// of the emulator with the `elf-filter` crate's filters applied (`filtered`: blobs
    /// made before them are not taken for these); xtask's `blob` module says why.
    pub fn embedded_path(
        &self,
        compression: Compression,
        emulator: &Pin,
        reference: Option<&Pin>,
    ) -> PathBuf {
        let name = match reference {
            Some(reference) => {
                format!("{}.filtered.from-{}.zst", emulator.sha256, reference.sha256)
            }
            None => format!("{}.filtered.zst", emulator.sha256),
        };
        self.root.join(compression.dir()).join(name)
    }

    /// Where a file that `cargo xtask kernels` boots its guests with (a Debian kernel
    /// image, its binfmt_misc module, a static busybox) is kept, as it came out of its
    /// package: `<root>/kernels/<sha256 of the file>` (the pins are in
    /// `qemu-blobs/kernels.toml`).
    pub fn kernel_file_path(&self, sha256: &str) -> PathBuf {
        self.root.join("kernels").join(sha256)
    }
}

/// The sha256 of `bytes` as 64 lowercase hex digits, the spelling used in the manifest.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::tests::{DIGEST_A, DIGEST_B, assert_contains, emulator};

    #[test]
    fn cache_paths_are_content_addressed() {
        let cache = BlobCache::at(PathBuf::from("/var/cache/blobs"));
        assert_eq!(cache.root(), Path::new("/var/cache/blobs"));
        assert_eq!(
            cache.compressed_path(&emulator("arm64", "aarch64")),
            PathBuf::from(format!("/var/cache/blobs/emulators/{DIGEST_B}.zst"))
        );
    }

    #[test]
    fn kernel_files_are_content_addressed() {
        let cache = BlobCache::at(PathBuf::from("/var/cache/blobs"));
        assert_eq!(
            cache.kernel_file_path(DIGEST_A),
            PathBuf::from(format!("/var/cache/blobs/kernels/{DIGEST_A}"))
        );
    }

    #[test]
    fn embedded_paths_name_the_digests() {
        let cache = BlobCache::at(PathBuf::from("/var/cache/blobs"));
        let mut reference = emulator("arm64", "aarch64");
        reference.sha256 = DIGEST_A.to_string();
        assert_eq!(
            cache.embedded_path(
                Compression::Release,
                &emulator("riscv64", "riscv64"),
                Some(&reference)
            ),
            PathBuf::from(format!(
                "/var/cache/blobs/embedded/{DIGEST_B}.filtered.from-{DIGEST_A}.zst"
            ))
        );
        assert_eq!(
            cache.embedded_path(Compression::Release, &reference, None),
            PathBuf::from(format!("/var/cache/blobs/embedded/{DIGEST_A}.filtered.zst"))
        );
    }

    fn cache_from(vars: &[(&str, &str)]) -> Result<BlobCache, Error> {
        BlobCache::from_vars(|name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| OsString::from(value))
        })
    }

    #[test]
    fn cache_dir_precedence() {
        let all = [
            (BLOB_CACHE_ENV, "/blobs"),
            ("XDG_CACHE_HOME", "/xdg"),
            ("HOME", "/home/me"),
        ];
        assert_eq!(cache_from(&all).unwrap().root(), Path::new("/blobs"));
        assert_eq!(
            cache_from(&all[1..]).unwrap().root(),
            Path::new("/xdg/binfmt/qemu-blobs")
        );
        assert_eq!(
            cache_from(&all[2..]).unwrap().root(),
            Path::new("/home/me/.cache/binfmt/qemu-blobs")
        );
        // Empty and relative XDG values are ignored, as the XDG spec says.
        let vars = [
            (BLOB_CACHE_ENV, ""),
            ("XDG_CACHE_HOME", "rel"),
            ("HOME", "/h"),
        ];
        assert_eq!(
            cache_from(&vars).unwrap().root(),
            Path::new("/h/.cache/binfmt/qemu-blobs")
        );
    }

    #[test]
    fn cache_dir_errors_say_what_to_set() {
        let err = cache_from(&[]).unwrap_err().to_string();
        assert_contains(
            &err,
            &["none of", "set $BINFMT_BLOB_CACHE to an absolute path"],
        );
        let err = cache_from(&[(BLOB_CACHE_ENV, "blobs")])
            .unwrap_err()
            .to_string();
        assert_contains(&err, &["relative path blobs", "set $BINFMT_BLOB_CACHE"]);
        let err = cache_from(&[("HOME", "home")]).unwrap_err().to_string();
        assert_contains(&err, &["$HOME is the relative path home"]);
    }

    #[test]
    fn sha256_hex_is_lowercase() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn fast_blobs_have_a_directory_of_their_own_and_the_variable_is_checked() {
        let cache = BlobCache::at(PathBuf::from("/c"));
        let emulator = emulator("arm64", "aarch64");
        assert_eq!(
            cache.embedded_path(Compression::Fast, &emulator, None),
            PathBuf::from(format!("/c/embedded-fast/{DIGEST_B}.filtered.zst"))
        );
        let value = |v: &str| Compression::from_value(Some(OsString::from(v)));
        assert_eq!(Compression::from_value(None).unwrap(), Compression::Fast);
        assert_eq!(value("").unwrap(), Compression::Fast);
        assert_eq!(value("fast").unwrap(), Compression::Fast);
        assert_eq!(value("release").unwrap(), Compression::Release);
        let err = value("best").unwrap_err().to_string();
        assert_contains(
            &err,
            &[
                "BINFMT_EMBEDDED_COMPRESSION is \"best\"",
                "`release`",
                "`fast`",
            ],
        );
    }
}
