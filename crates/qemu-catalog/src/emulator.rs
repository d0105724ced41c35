//! The QEMU emulators embedded in this binary, and decoding one with its integrity
//! checked on the way.
//!
//! The blobs are made by `cargo xtask fetch` (format: the `blob-format` crate;
//! trade-offs: xtask's `blob` module): the host's *reference* emulator on its own,
//! every other one as a patch against the reference's bytes (a zstd prefix), each cut
//! into consecutive parts of one zstd frame each. So decoding a patched emulator needs the reference decoded
//! first ([`Emulator::reference`]), and after that every part of every patch decodes
//! on its own: the parts of one emulator at the same time, on every core
//! ([`Emulator::decode_part`]).
//!
//! Decoding is libzstd's streaming decoder with a *stable output buffer*: the caller
//! hands over the whole destination and the decoder writes into it directly and uses it
//! as its history, so no window buffer is allocated and nothing is copied. After each
//! step the caller learns how far it got, to write that part out or to drop it from its
//! address space.
//!
//! **Integrity, with no digest computed twice.** `build.rs` decoded every blob and
//! checked the result against the pinned size and sha256 when the binary was built. At
//! run time the decoder checks the frame's own content checksum (XXH64 of the output,
//! which every blob must carry) and the size, so a blob damaged since (a corrupt binary)
//! or a decoding fault can never hand the kernel a wrong interpreter. Hashing the
//! output with sha256 again would add ~70 ms of CPU to every `--install all` and catch
//! nothing more: whoever can change the blobs inside the binary can change the pinned
//! digests next to them. Files already on disk are a different matter and are hashed
//! (see the `interpreter-files` crate).

use std::fmt;
use std::io::{self, Read};
use std::ops::Range;

use binfmt_misc::report::Fixable;
use sha2::{Digest, Sha256};
use zstd_safe::{DCtx, DParameter, InBuffer, OutBuffer};

use crate::arch::Arch;

/// Decoded bytes at their offset in an emulator, for [`Emulator::unfilter`].
pub use elf_filter::Piece;

// The largest match window (log2) the decoder accepts is `blob_format::WINDOW_LOG_MAX`,
// the one limit xtask makes every blob within and `build.rs` checks each blob against.
// A patch's window spans the reference and the emulator (~32 MB). With a stable output
// buffer the window costs no memory; the limit only refuses nonsense.

/// How much compressed input each decoding step is given: about a zstd block's worth,
/// so that most blocks decode straight from the blob rather than being copied into
/// zstd's input buffer first (16 KiB steps measured ~15% more CPU, in memcpy), while
/// the caller still regains control every MB or so of output to write it out.
const INPUT_STEP: usize = 64 * 1024;

/// One row of the generated table.
pub(crate) struct Embedded {
    cpu: &'static str,
    size: u64,
    sha256: &'static str,
    /// Whether the blob is a patch against the reference emulator's bytes.
    patched: bool,
    compressed: &'static [u8],
    /// The frames of `compressed`, each a consecutive part of the emulator.
    parts: &'static [Part],
    /// Where the `elf-filter` filters the blob was made with act (build.rs found it).
    filters: elf_filter::Layout,
}

/// One frame of a blob.
pub(crate) struct Part {
    /// Where its output starts in the emulator.
    offset: u64,
    /// Its bytes in the blob.
    start: usize,
    end: usize,
}

include!(concat!(env!("OUT_DIR"), "/embedded.rs"));

/// The Debian source package the emulators were built from, for the GPL notice.
pub const SOURCE_PACKAGE: &str = DEBIAN_SOURCE;
/// The Debian binary package the emulators were extracted from (`qemu-user`), built
/// from [`SOURCE_PACKAGE`] at [`SOURCE_VERSION`].
pub const PACKAGE: &str = DEBIAN_PACKAGE;
/// The Debian version of the source package and of [`PACKAGE`], e.g.
/// `1:10.0.13+ds-0+deb13u1`.
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

impl PartialEq for Emulator {
    fn eq(&self, other: &Emulator) -> bool {
        self.arch == other.arch
    }
}

impl Eq for Emulator {}

impl Emulator {
    /// Its compressed bytes, as embedded: `include_bytes!` data in the executable's
    /// read-only image, which a caller may drop from resident memory once the emulator
    /// is decoded (they fault back in from the page cache when read again).
    pub fn compressed(&self) -> &'static [u8] {
        self.embedded.compressed
    }

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

    /// The emulator whose decoded bytes [`decode_into`](Self::decode_into) needs for
    /// this one, or `None` when this one decodes on its own (it is the reference).
    pub fn reference(&self) -> Option<Emulator> {
        if !self.embedded.patched {
            return None;
        }
        let reference = EMBEDDED.iter().find(|embedded| !embedded.patched)?;
        Arch::ALL
            .into_iter()
            .find(|arch| arch.qemu_cpu() == reference.cpu)
            .map(|arch| Emulator {
                arch,
                embedded: reference,
            })
    }

    /// How many parts it is stored in (each decodes on its own).
    pub fn parts(&self) -> usize {
        self.embedded.parts.len()
    }

    /// The bytes of the emulator that part `part` decodes to.
    pub fn part_range(&self, part: usize) -> Range<usize> {
        let parts = self.embedded.parts;
        let start = parts.get(part).map_or(self.size(), |p| p.offset) as usize;
        let end = parts.get(part + 1).map_or(self.size(), |p| p.offset) as usize;
        start..end.max(start)
    }

    /// Decodes the whole emulator into `dst`, part after part, then undoes the filters;
    /// see [`decode_part`](Self::decode_part) and [`unfilter`](Self::unfilter).
    pub fn decode_into(
        &self,
        dst: &mut [u8],
        reference: Option<&[u8]>,
        progress: &mut dyn FnMut(usize, &[u8]) -> io::Result<()>,
    ) -> Result<(), WriteError> {
        if dst.len() as u64 != self.size() {
            return Err(self.wrong_size(dst.len(), self.size()));
        }
        for part in 0..self.parts() {
            let range = self.part_range(part);
            self.decode_part(part, &mut dst[range], reference, progress)?;
        }
        self.unfilter(
            &mut [Piece {
                offset: 0,
                bytes: dst,
            }],
            progress,
        )
    }

    /// Once every part is decoded ([`decode_part`](Self::decode_part)), given as
    /// pieces at their offsets: undoes the filters the blob was made with (the
    /// `elf-filter` crate) and hands `progress` the bytes they changed, which
    /// `decode_part` held back.
    pub fn unfilter(
        &self,
        pieces: &mut [Piece<'_>],
        progress: &mut dyn FnMut(usize, &[u8]) -> io::Result<()>,
    ) -> Result<(), WriteError> {
        let layout = &self.embedded.filters;
        elf_filter::unfilter(pieces, layout).map_err(|error| WriteError::Corrupt {
            arch: self.arch,
            reason: error.to_string(),
        })?;
        for span in layout.filtered() {
            for piece in pieces.iter() {
                let start = span.start.max(piece.offset);
                let end = span.end.min(piece.offset + piece.bytes.len());
                if start < end {
                    progress(
                        start,
                        &piece.bytes[start - piece.offset..end - piece.offset],
                    )
                    .map_err(|source| WriteError::Io {
                        arch: self.arch,
                        source,
                    })?;
                }
            }
        }
        Ok(())
    }

    /// Decodes part `part` into `dst`, which must be exactly that part's bytes
    /// ([`part_range`](Self::part_range)), checking zstd's content checksum and the size
    /// on the way. `reference` is the decoded [`reference`](Self::reference) when there
    /// is one. After each step `progress` gets the bytes that step finished, with their
    /// offset in the emulator, to write them out or release their pages; an error it
    /// returns stops decoding as [`WriteError::Io`]. The bytes the filters changed are
    /// held back: they are final only once every part is decoded and
    /// [`unfilter`](Self::unfilter) has run, which hands them on.
    ///
    /// On error the bytes in `dst` must not be used: callers decode into a temporary
    /// file or a fresh memfd and discard it.
    pub fn decode_part(
        &self,
        part: usize,
        dst: &mut [u8],
        reference: Option<&[u8]>,
        progress: &mut dyn FnMut(usize, &[u8]) -> io::Result<()>,
    ) -> Result<(), WriteError> {
        let corrupt = |reason: String| WriteError::Corrupt {
            arch: self.arch,
            reason,
        };
        let zstd_error = |code: usize| corrupt(zstd_safe::get_error_name(code).to_owned());
        let Some(frame) = self.embedded.parts.get(part) else {
            return Err(corrupt(format!("it has no part {part}")));
        };
        let (base, expected) = (self.part_range(part).start, self.part_range(part).len());
        if dst.len() != expected {
            return Err(self.wrong_size(dst.len(), expected as u64));
        }
        let compressed = self
            .embedded
            .compressed
            .get(frame.start..frame.end)
            .ok_or_else(|| corrupt(format!("part {part} lies outside the blob")))?;
        if !blob_format::has_content_checksum(compressed) {
            return Err(corrupt(
                "a part is not a zstd frame with a content checksum".to_owned(),
            ));
        }
        let mut dctx = DCtx::create();
        dctx.set_parameter(DParameter::WindowLogMax(blob_format::WINDOW_LOG_MAX))
            .map_err(zstd_error)?;
        dctx.set_parameter(DParameter::StableOutBuffer(true))
            .map_err(zstd_error)?;
        match (self.reference(), reference) {
            (Some(needed), Some(bytes)) if bytes.len() as u64 == needed.size() => {
                dctx.ref_prefix(bytes).map_err(zstd_error)?;
            }
            (Some(needed), _) => {
                return Err(WriteError::NeedsReference {
                    arch: self.arch,
                    reference: needed.arch,
                });
            }
            (None, _) => {}
        }

        let (mut consumed, mut produced) = (0, 0);
        loop {
            let end = compressed.len().min(consumed + INPUT_STEP);
            let mut input = InBuffer::around(&compressed[..end]);
            input.set_pos(consumed);
            let mut output = OutBuffer::around_pos(&mut *dst, produced);
            // Checks the content checksum when the frame ends.
            let remaining = dctx
                .decompress_stream(&mut output, &mut input)
                .map_err(zstd_error)?;
            let (now_consumed, now_produced) = (input.pos(), output.pos());
            let stalled = now_consumed == consumed && now_produced == produced;
            self.hand_on(base, produced..now_produced, dst, progress)
                .map_err(|source| WriteError::Io {
                    arch: self.arch,
                    source,
                })?;
            (consumed, produced) = (now_consumed, now_produced);
            if remaining == 0 {
                break;
            }
            if stalled {
                return Err(corrupt(format!(
                    "part {part} ends early, at {produced} of {expected} bytes"
                )));
            }
        }
        if consumed != compressed.len() {
            return Err(corrupt(format!(
                "{} bytes follow part {part}",
                compressed.len() - consumed
            )));
        }
        if produced != expected {
            return Err(corrupt(format!(
                "part {part} decodes to {produced} bytes, not {expected}"
            )));
        }
        Ok(())
    }

    /// Hands `progress` the bytes `finished` of a part starting at `base` in the
    /// emulator, but for those the filters changed.
    fn hand_on(
        &self,
        base: usize,
        finished: Range<usize>,
        part: &[u8],
        progress: &mut dyn FnMut(usize, &[u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut next = finished.start;
        for span in self.embedded.filters.filtered() {
            let held = span.start.saturating_sub(base).clamp(next, finished.end)
                ..span.end.saturating_sub(base).clamp(next, finished.end);
            if held.start > next {
                progress(base + next, &part[next..held.start])?;
            }
            next = next.max(held.end);
        }
        if finished.end > next {
            progress(base + next, &part[next..finished.end])?;
        }
        Ok(())
    }

    fn wrong_size(&self, given: usize, wanted: u64) -> WriteError {
        WriteError::Io {
            arch: self.arch,
            source: io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the destination holds {given} bytes, not {wanted}"),
            ),
        }
    }

    /// The emulator decoded into memory (its reference too, when it has one). For
    /// tests and checks; installing decodes straight into the destination instead.
    pub fn to_vec(&self) -> Result<Vec<u8>, WriteError> {
        let reference = match self.reference() {
            Some(reference) => Some(reference.to_vec()?),
            None => None,
        };
        let mut bytes = vec![0; self.size() as usize];
        self.decode_into(&mut bytes, reference.as_deref(), &mut |_, _| Ok(()))?;
        Ok(bytes)
    }

    /// Whether the bytes read from `reader` are exactly this emulator (size and sha256).
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
    /// The emulator is a patch and its reference's bytes were not given (a bug).
    NeedsReference { arch: Arch, reference: Arch },
    /// The destination refused the bytes.
    Io { arch: Arch, source: io::Error },
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteError::Corrupt { arch, reason } => write!(
                f,
                "the embedded qemu-{} is damaged ({reason}): this binfmt binary is corrupt",
                arch.qemu_cpu()
            ),
            WriteError::NeedsReference { arch, reference } => write!(
                f,
                "internal error: qemu-{} decodes only against qemu-{}, which was not given",
                arch.qemu_cpu(),
                reference.qemu_cpu()
            ),
            WriteError::Io { arch, .. } => write!(f, "cannot write qemu-{}", arch.qemu_cpu()),
        }
    }
}

impl std::error::Error for WriteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WriteError::Io { source, .. } => Some(source),
            WriteError::Corrupt { .. } | WriteError::NeedsReference { .. } => None,
        }
    }
}

impl Fixable for WriteError {
    fn fix(&self) -> Option<String> {
        match self {
            WriteError::Corrupt { .. } => Some("download binfmt again".to_owned()),
            WriteError::NeedsReference { .. } | WriteError::Io { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use binfmt_misc::report::Chain;

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
    fn one_reference_and_every_other_emulator_patched_against_it() {
        let standalone: Vec<Emulator> = Emulator::all()
            .into_iter()
            .filter(|e| e.reference().is_none())
            .collect();
        assert_eq!(standalone.len(), 1, "{standalone:?}");
        let reference = standalone[0];
        let expected = if cfg!(target_arch = "x86_64") {
            Arch::Arm64
        } else {
            Arch::Amd64
        };
        assert_eq!(reference.arch(), expected);
        for emulator in Emulator::all() {
            if emulator != reference {
                assert_eq!(emulator.reference(), Some(reference), "{emulator:?}");
            }
        }
    }

    fn reference() -> Emulator {
        Emulator::all()
            .into_iter()
            .find(|e| e.reference().is_none())
            .expect("a reference emulator")
    }

    fn patched() -> Emulator {
        Emulator::for_arch(Arch::Riscv64).expect("riscv64 is foreign on every host")
    }

    /// A copy of `emulator` whose blob is `compressed`.
    fn with_blob(emulator: Emulator, compressed: Vec<u8>) -> Emulator {
        let compressed: &'static [u8] = Box::leak(compressed.into_boxed_slice());
        let embedded: &'static Embedded = Box::leak(Box::new(Embedded {
            compressed,
            ..*emulator.embedded
        }));
        Emulator {
            arch: emulator.arch,
            embedded,
        }
    }

    #[test]
    fn decodes_exactly_the_pinned_bytes_reference_and_patch() {
        let reference_bytes = reference().to_vec().unwrap();
        assert!(
            reference()
                .matches(&mut reference_bytes.as_slice())
                .unwrap()
        );

        let emulator = patched();
        let mut out = vec![0; emulator.size() as usize];
        let mut steps = Vec::new();
        let mut copy = vec![0; out.len()];
        let mut handed = vec![0u8; out.len()];
        emulator
            .decode_into(&mut out, Some(&reference_bytes), &mut |offset, chunk| {
                copy[offset..offset + chunk.len()].copy_from_slice(chunk);
                handed[offset..offset + chunk.len()]
                    .iter_mut()
                    .for_each(|count| *count += 1);
                steps.push(offset);
                Ok(())
            })
            .unwrap();
        assert_eq!(&out[..4], b"\x7fELF");
        assert!(emulator.matches(&mut out.as_slice()).unwrap());
        // In many steps, so that the caller can write out as it goes; together the
        // chunks are the output, each byte handed on once.
        assert!(steps.len() > 10, "{} steps", steps.len());
        assert!(handed.iter().all(|&count| count == 1));
        assert!(copy == out, "the chunks are not the output");
        // The filtered bytes (the relocations and the unwind table) come last, once
        // the filters are undone. ppc64le's emulators are not position-independent:
        // nothing to filter there.
        let filtered: Vec<_> = emulator.embedded.filters.filtered().collect();
        let expected = if cfg!(target_arch = "powerpc64") {
            0
        } else {
            2
        };
        assert_eq!(filtered.len(), expected, "{:?}", emulator.embedded.filters);
        assert!(
            steps
                .iter()
                .rev()
                .take(filtered.len())
                .all(|offset| filtered.iter().any(|span| span.start == *offset)),
            "{steps:?}"
        );

        out[1000] ^= 1;
        assert!(!emulator.matches(&mut out.as_slice()).unwrap());
        assert!(!emulator.matches(&mut &out[..10]).unwrap());
    }

    #[test]
    fn every_emulator_is_in_parts_that_decode_on_their_own() {
        let reference_bytes = reference().to_vec().unwrap();
        for emulator in Emulator::all() {
            assert_eq!(emulator.parts(), blob_format::PARTS, "{emulator:?}");
            assert_eq!(emulator.part_range(0).start, 0);
            assert_eq!(emulator.part_range(0).end, emulator.part_range(1).start);
            assert_eq!(emulator.part_range(1).end as u64, emulator.size());
        }
        // The last part first, as another thread might, into buffers of their own:
        // with the filters undone over both, the result is the emulator.
        let emulator = patched();
        let mut parts: Vec<Vec<u8>> = (0..emulator.parts())
            .map(|part| vec![0; emulator.part_range(part).len()])
            .collect();
        for part in (0..emulator.parts()).rev() {
            emulator
                .decode_part(
                    part,
                    &mut parts[part],
                    Some(&reference_bytes),
                    &mut |_, _| Ok(()),
                )
                .unwrap();
        }
        let mut pieces: Vec<Piece<'_>> = parts
            .iter_mut()
            .enumerate()
            .map(|(part, bytes)| Piece {
                offset: emulator.part_range(part).start,
                bytes,
            })
            .collect();
        emulator.unfilter(&mut pieces, &mut |_, _| Ok(())).unwrap();
        let out = parts.concat();
        assert!(emulator.matches(&mut out.as_slice()).unwrap());
        let mut out = out;
        let error = emulator
            .decode_part(
                0,
                &mut out[..10],
                Some(&reference_bytes),
                &mut |_, _| Ok(()),
            )
            .unwrap_err();
        assert!(
            Chain(&error)
                .to_string()
                .contains("the destination holds 10 bytes"),
            "{error}"
        );
    }

    #[test]
    fn a_patch_needs_its_exact_reference() {
        let emulator = patched();
        let mut out = vec![0; emulator.size() as usize];
        let error = emulator
            .decode_into(&mut out, None, &mut |_, _| Ok(()))
            .unwrap_err();
        assert!(
            matches!(error, WriteError::NeedsReference { .. }),
            "{error}"
        );

        let mut wrong = reference().to_vec().unwrap();
        // Changed throughout: a patch need not copy from every part of the reference.
        for byte in wrong.iter_mut().step_by(997) {
            *byte ^= 0x40;
        }
        let error = emulator
            .decode_into(&mut out, Some(&wrong), &mut |_, _| Ok(()))
            .unwrap_err();
        assert!(matches!(error, WriteError::Corrupt { .. }), "{error}");
    }

    #[test]
    fn an_error_from_progress_stops_decoding() {
        let emulator = reference();
        let mut out = vec![0; emulator.size() as usize];
        let mut calls = 0;
        let error = emulator
            .decode_into(&mut out, None, &mut |_, _| {
                calls += 1;
                Err(io::Error::other("disk full"))
            })
            .unwrap_err();
        assert_eq!(calls, 1);
        assert!(
            matches!(&error, WriteError::Io { source, .. } if source.to_string() == "disk full"),
            "{error}"
        );
    }

    #[test]
    fn a_destination_of_the_wrong_size_is_refused() {
        let emulator = reference();
        let mut out = vec![0; emulator.size() as usize - 1];
        let error = emulator
            .decode_into(&mut out, None, &mut |_, _| Ok(()))
            .unwrap_err();
        assert!(
            Chain(&error).to_string().contains("the destination holds"),
            "{error}"
        );
    }

    #[test]
    fn a_damaged_blob_is_refused() {
        let reference_bytes = reference().to_vec().unwrap();
        for emulator in [reference(), patched()] {
            let blob = emulator.embedded.compressed;
            let mut flipped = blob.to_vec();
            flipped[blob.len() / 2] ^= 0x55;
            let second = emulator.embedded.parts[1].start;
            let mut unchecked = blob.to_vec();
            unchecked[second + 4] &= !0b100;
            for (what, damaged) in [
                ("flipped", flipped),
                ("truncated", blob[..blob.len() - 100].to_vec()),
                ("without a content checksum", unchecked),
            ] {
                let broken = with_blob(emulator, damaged);
                let mut out = vec![0; emulator.size() as usize];
                let error = broken
                    .decode_into(&mut out, Some(&reference_bytes), &mut |_, _| Ok(()))
                    .unwrap_err();
                assert!(
                    matches!(error, WriteError::Corrupt { .. }),
                    "{what} {emulator:?}: {error}"
                );
            }
        }
    }
}
