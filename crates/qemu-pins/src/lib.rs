//! The pin manifest of the embedded QEMU emulators, and where their blobs are cached.
//!
//! binfmt embeds unmodified QEMU user-mode emulators taken from Debian's `qemu-user`
//! binary package. `qemu-blobs/pins.toml` ([`MANIFEST_PATH`]) pins, for each host
//! architecture binfmt is built for, the exact `.deb` (pool path, size, sha256) and every
//! emulator inside it (path, size, sha256). `cargo xtask pin` writes the manifest with
//! [`Manifest::to_toml`]; `cargo xtask fetch` downloads the pinned packages and fills the
//! [`BlobCache`]; the build script of `qemu-catalog` reads both to embed the emulators.
//!
//! The cache is content addressed: an emulator's blob is named after the sha256 of the
//! *uncompressed* emulator, so a blob can be checked against its pin without knowing
//! where it came from, and several pins (hosts, versions) can share one cache.
//!
//! Architecture invariant: this crate does no I/O beyond reading the manifest file and
//! the environment; downloading, extracting and compressing live in xtask.

#![forbid(unsafe_code)]
// What is `pub` is the crate's API: an item only its own crate can reach says so.
#![deny(unreachable_pub)]

mod cache;
mod error;
mod hosts;
mod manifest;

pub use cache::{
    BLOB_CACHE_ENV, BlobCache, CACHE_ENV_VARS, COMPRESSION_ENV, Compression, sha256_hex,
};
pub use error::Error;
pub use manifest::{Host, MANIFEST_PATH, Manifest, Pin, Source};
