//! The QEMU emulators embedded in this binary, and writing one out with its size and
//! sha256 checked against the pin.
//!
//! `build.rs` verified every blob against `qemu-blobs/pins.toml` when the binary was
//! built. Writing out checks again, on the bytes actually produced, so a corrupted
//! binary can never hand the kernel a wrong interpreter.

use std::fmt;
use std::io::{self, Read, Write};

use sha2::{Digest, Sha256};

use crate::arch::Arch;

/// One row of the generated table.
pub(crate) struct Embedded {
    cpu: &'static str,
    size: u64,
    sha256: &'static str,
    compressed: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/embedded.rs"));

/// The Debian source package the emulators were built from, for the GPL notice.
pub const SOURCE_PACKAGE: &str = DEBIAN_SOURCE;
/// The Debian version of that package, e.g. `1:10.0.13+ds-0+deb13u1`.
pub const SOURCE_VERSION: &str = DEBIAN_VERSION;
/// The upstream QEMU version, e.g. `10.0.13`.
pub const QEMU: &str = QEMU_VERSION;

/// A pinned QEMU user-mode emulator carried by this binary.
#[derive(Clone, Copy)]
pub struct Emulator {
    arch: Arch,
    embedded: &'static Embedded,
}

impl fmt::Debug for Emulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Emulator")
            .field("arch", &self.arch)
            .field("size", &self.embedded.size)
            .field("sha256", &self.embedded.sha256)
            .finish()
    }
}

impl Emulator {
    /// The emulator for `arch`, or `None` when this binary does not carry one (the
    /// host's own architectures).
    pub fn for_arch(arch: Arch) -> Option<Emulator> {
        EMBEDDED
            .iter()
            .find(|embedded| embedded.cpu == arch.qemu_cpu())
            .map(|embedded| Emulator { arch, embedded })
    }

    /// Every emulator this binary carries, in [`Arch::ALL`] order.
    pub fn all() -> Vec<Emulator> {
        Arch::ALL
            .into_iter()
            .filter_map(Emulator::for_arch)
            .collect()
    }

    /// The architecture it emulates.
    pub fn arch(&self) -> Arch {
        self.arch
    }

    /// Its size in bytes, uncompressed.
    pub fn size(&self) -> u64 {
        self.embedded.size
    }

    /// Its pinned sha256, lowercase hex.
    pub fn sha256(&self) -> &'static str {
        self.embedded.sha256
    }

    /// How many bytes it takes in this binary.
    pub fn compressed_size(&self) -> usize {
        self.embedded.compressed.len()
    }

    /// Decompresses the emulator into `out`, checking size and sha256 on the way.
    ///
    /// On [`WriteError::Mismatch`] the bytes already written must not be used: callers
    /// write to a temporary file or a fresh memfd and discard it on error.
    pub fn write_to(&self, out: &mut dyn Write) -> Result<(), WriteError> {
        let corrupt = |reason: String| WriteError::Corrupt {
            arch: self.arch,
            reason,
        };
        let mut decoder = ruzstd::decoding::StreamingDecoder::new(self.embedded.compressed)
            .map_err(|e| corrupt(e.to_string()))?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; 256 * 1024];
        let mut written = 0u64;
        loop {
            let n = decoder
                .read(&mut buffer)
                .map_err(|e| corrupt(e.to_string()))?;
            if n == 0 {
                break;
            }
            written += n as u64;
            if written > self.size() {
                return Err(corrupt(format!(
                    "decompresses to more than the pinned {} bytes",
                    self.size()
                )));
            }
            hasher.update(&buffer[..n]);
            out.write_all(&buffer[..n])
                .map_err(|source| WriteError::Io {
                    arch: self.arch,
                    source,
                })?;
        }
        let actual = hex::encode(hasher.finalize());
        if written != self.size() || actual != self.sha256() {
            return Err(WriteError::Mismatch {
                arch: self.arch,
                expected: self.sha256(),
                actual,
            });
        }
        Ok(())
    }

    /// Whether `bytes` read from `reader` are exactly this emulator (size and sha256).
    pub fn matches(&self, reader: &mut dyn Read) -> io::Result<bool> {
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; 256 * 1024];
        let mut size = 0u64;
        loop {
            let n = reader.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            size += n as u64;
            if size > self.size() {
                return Ok(false);
            }
            hasher.update(&buffer[..n]);
        }
        Ok(size == self.size() && hex::encode(hasher.finalize()) == self.sha256())
    }
}

/// Writing an emulator out failed.
#[derive(Debug)]
pub enum WriteError {
    /// The embedded blob does not decompress: the binary is damaged.
    Corrupt { arch: Arch, reason: String },
    /// The decompressed bytes are not the pinned emulator: the binary is damaged.
    Mismatch {
        arch: Arch,
        expected: &'static str,
        actual: String,
    },
    /// The destination refused the bytes.
    Io { arch: Arch, source: io::Error },
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteError::Corrupt { arch, reason } => write!(
                f,
                "the embedded qemu-{} is damaged ({reason}): this binfmt binary is corrupt; \
                 download it again",
                arch.qemu_cpu()
            ),
            WriteError::Mismatch {
                arch,
                expected,
                actual,
            } => write!(
                f,
                "the embedded qemu-{} has sha256 {actual}, not the pinned {expected}: this \
                 binfmt binary is corrupt; download it again",
                arch.qemu_cpu()
            ),
            WriteError::Io { arch, source } => {
                write!(f, "cannot write qemu-{}: {source}", arch.qemu_cpu())
            }
        }
    }
}

impl std::error::Error for WriteError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carries_every_foreign_arch_and_no_native_one() {
        for arch in Arch::ALL {
            assert_eq!(
                Emulator::for_arch(arch).is_some(),
                !arch.is_native(),
                "{arch}"
            );
        }
        assert_eq!(EMBEDDED.len(), Arch::ALL.len() - Arch::native().len());
    }

    #[test]
    fn writes_out_exactly_the_pinned_bytes() {
        let emulator = Emulator::all()[0];
        let mut out = Vec::new();
        emulator.write_to(&mut out).unwrap();
        assert_eq!(out.len() as u64, emulator.size());
        assert_eq!(&out[..4], b"\x7fELF");
        assert!(emulator.matches(&mut out.as_slice()).unwrap());
        out[1000] ^= 1;
        assert!(!emulator.matches(&mut out.as_slice()).unwrap());
        assert!(!emulator.matches(&mut &out[..10]).unwrap());
    }

    #[test]
    fn a_damaged_blob_is_refused() {
        let emulator = Emulator::all()[0];
        let mut damaged = emulator.embedded.compressed.to_vec();
        let middle = damaged.len() / 2;
        damaged[middle] ^= 0x55;
        let leaked: &'static [u8] = Box::leak(damaged.into_boxed_slice());
        let embedded: &'static Embedded = Box::leak(Box::new(Embedded {
            compressed: leaked,
            ..*emulator.embedded
        }));
        let broken = Emulator {
            arch: emulator.arch,
            embedded,
        };
        let error = broken.write_to(&mut io::sink()).unwrap_err();
        assert!(
            matches!(
                error,
                WriteError::Corrupt { .. } | WriteError::Mismatch { .. }
            ),
            "{error}"
        );
    }
}
