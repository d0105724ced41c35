//! The format of binfmt's compressed emulator blobs, and checking one against its pin.
//! One definition, read by the three that make or read blobs: xtask makes them (its
//! `blob` module says why the format is what it is), `qemu-catalog`'s build script
//! checks each before embedding it, and the catalog decodes them at run time.
//!
//! # Format
//!
//! A blob is one or more consecutive zstd frames (RFC 8878), each with its content
//! size in the frame header and a content checksum (XXH64 of its output, which
//! libzstd checks while decoding), none empty, none needing a match window over
//! 2^[`WINDOW_LOG_MAX`]. Each frame is a consecutive part of the emulator. Two kinds:
//!
//! - **standalone**: one emulator on its own, one frame, the emulator as it is. What
//!   the cache is filled from and checked against; never shipped.
//! - **embedded**: what the binary carries, in [`PARTS`] frames. The host's
//!   *reference* emulator (`arch_table::Host::reference`) decodes on its own; every
//!   other one is a *patch*: each of its frames decodes against the reference's
//!   uncompressed bytes as a zstd prefix (`zstd --patch-from`). What the frames hold
//!   is the emulator with the `elf-filter` crate's filters applied; [`decode`]
//!   undoes them ([`Filtered::Yes`]).
//!
//! [`decode`] is the one check of a whole blob: frame by frame as the binary decodes,
//! then the size and sha256 of the result against the pin. The binary itself checks
//! each frame's checksum and size as it writes an emulator out
//! ([`has_content_checksum`], [`WINDOW_LOG_MAX`]) and relies on the build-time
//! [`decode`] for the digest.

#![forbid(unsafe_code)]
// What is `pub` is the crate's API: an item only its own crate can reach says so.
#![deny(unreachable_pub)]

use std::fmt;
use std::ops::Range;

use sha2::{Digest, Sha256};
use zstd_safe::{DCtx, DParameter};

/// The largest zstd window (log2) a blob may need (a patched part's spans the
/// reference and the part, ~25 MB): xtask makes every blob within it, the catalog's
/// build script checks each against it, and the binary's decoder accepts no more.
pub const WINDOW_LOG_MAX: u32 = 27;

/// How many parts (frames) an embedded emulator is cut into: one per core of the
/// 2-core machines binfmt is measured on, so that both decode one emulator at once.
pub const PARTS: usize = 2;

/// The smallest window (log2, at least zstd's minimum of 10) that reaches back over
/// `span` bytes: from the end of a part to the start of the reference (or of the
/// part).
pub fn window_log(span: usize) -> u32 {
    (usize::BITS - span.max(1).saturating_sub(1).leading_zeros()).max(10)
}

/// Whether `frame` starts a zstd frame whose header says it carries a content checksum
/// (RFC 8878 3.1.1: the magic number, then the frame header descriptor, whose bit 2
/// is the Content_Checksum_flag).
pub fn has_content_checksum(frame: &[u8]) -> bool {
    const MAGIC: [u8; 4] = 0xFD2F_B528u32.to_le_bytes();
    frame.len() > 4 && frame[..4] == MAGIC && frame[4] & 0b100 != 0
}

/// Whether a blob holds the emulator filtered (the embedded kind) or as it is (the
/// standalone kind).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filtered {
    Yes,
    No,
}

/// What a blob must decode to: the pinned size and sha256 (lowercase hex).
#[derive(Clone, Copy, Debug)]
pub struct Expected<'a> {
    pub size: u64,
    pub sha256: &'a str,
}

/// One frame of a blob: where its output starts in the emulator, and its bytes in
/// the blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub offset: u64,
    pub compressed: Range<usize>,
}

/// A blob decoded and checked by [`decode`].
pub struct Decoded {
    /// The emulator, exactly the pinned bytes.
    pub bytes: Vec<u8>,
    /// Its frames, in order.
    pub frames: Vec<Frame>,
    /// Where the filters acted (found in the bytes; see `elf_filter::Layout`), for
    /// [`Filtered::Yes`]; what the binary is given to undo them.
    pub layout: Option<elf_filter::Layout>,
}

/// Why a blob is not what its pin says.
#[derive(Debug)]
pub enum Error {
    /// The bytes at `offset` start no zstd frame (zstd's reason).
    NotAFrame { offset: usize, reason: &'static str },
    /// A frame header does not record the content size.
    NoContentSize { offset: usize },
    /// A frame says it holds more than is left of the emulator.
    TooLarge { offset: usize, size: u64, left: u64 },
    /// A frame carries no content checksum.
    NoChecksum { offset: usize },
    /// A frame holds nothing.
    Empty { offset: usize },
    /// libzstd could not decode a frame (with the window limit and the reference
    /// given): zstd's reason.
    Decode { offset: usize, reason: &'static str },
    /// The filters could not be undone.
    Filters(elf_filter::Error),
    /// The whole decodes to other bytes than pinned.
    Mismatch {
        size: u64,
        sha256: String,
        expected_size: u64,
        expected_sha256: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotAFrame { offset, reason } => {
                write!(f, "not a zstd frame at byte {offset} ({reason})")
            }
            Error::NoContentSize { offset } => write!(
                f,
                "frame header at byte {offset} does not record the content size"
            ),
            Error::TooLarge { offset, size, left } => write!(
                f,
                "frame header at byte {offset} says {size} bytes, more than the {left} expected"
            ),
            Error::NoChecksum { offset } => {
                write!(f, "frame at byte {offset} carries no content checksum")
            }
            Error::Empty { offset } => write!(f, "frame at byte {offset} is empty"),
            Error::Decode { offset, reason } => {
                write!(f, "cannot decode the frame at byte {offset}: {reason}")
            }
            Error::Filters(_) => f.write_str("cannot undo the filters"),
            Error::Mismatch {
                size,
                sha256,
                expected_size,
                expected_sha256,
            } => write!(
                f,
                "decodes to {size} bytes with sha256 {sha256}, expected {expected_size} bytes \
                 with sha256 {expected_sha256}"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Filters(source) => Some(source),
            _ => None,
        }
    }
}

/// Decodes a blob the way the shipped binary does (libzstd, window limit
/// [`WINDOW_LOG_MAX`], each frame against `reference` when given, the parts one after
/// another, then the filters undone when `filtered`), checks that every frame records
/// its content size and a checksum and is not empty, and that the whole is `expected`;
/// returns it with its frames.
pub fn decode(
    compressed: &[u8],
    reference: Option<&[u8]>,
    filtered: Filtered,
    expected: Expected<'_>,
) -> Result<Decoded, Error> {
    let mut bytes = Vec::with_capacity(usize::try_from(expected.size).unwrap_or(0));
    let mut frames = Vec::new();
    let mut start = 0;
    while start < compressed.len() {
        let rest = &compressed[start..];
        let offset = start;
        let frame_len =
            zstd_safe::find_frame_compressed_size(rest).map_err(|code| Error::NotAFrame {
                offset,
                reason: zstd_safe::get_error_name(code),
            })?;
        let frame = &rest[..frame_len];
        let left = expected.size.saturating_sub(bytes.len() as u64);
        let size = match zstd_safe::get_frame_content_size(frame) {
            Ok(Some(0)) => return Err(Error::Empty { offset }),
            Ok(Some(size)) if size <= left => size,
            Ok(Some(size)) => return Err(Error::TooLarge { offset, size, left }),
            _ => return Err(Error::NoContentSize { offset }),
        };
        if !has_content_checksum(frame) {
            return Err(Error::NoChecksum { offset });
        }
        let zstd_error = |code: usize| Error::Decode {
            offset,
            reason: zstd_safe::get_error_name(code),
        };
        let mut dctx = DCtx::create();
        dctx.set_parameter(DParameter::WindowLogMax(WINDOW_LOG_MAX))
            .map_err(zstd_error)?;
        if let Some(reference) = reference {
            dctx.ref_prefix(reference).map_err(zstd_error)?;
        }
        // Decoded in place at the end of `bytes`; `size` is at most what is left of
        // `expected.size`. One byte more, so that a frame decoding to more than its
        // header says is seen as such.
        let at = bytes.len();
        bytes.resize(at + size as usize + 1, 0);
        let decoded = dctx
            .decompress(&mut bytes[at..], frame)
            .map_err(zstd_error)?;
        bytes.truncate(at + decoded);
        if decoded as u64 != size {
            return Err(Error::Decode {
                offset,
                reason: "the frame decodes to another size than its header says",
            });
        }
        frames.push(Frame {
            offset: at as u64,
            compressed: start..start + frame_len,
        });
        start += frame_len;
    }
    let layout = match filtered {
        Filtered::Yes => Some(elf_filter::unfilter_in_place(&mut bytes).map_err(Error::Filters)?),
        Filtered::No => None,
    };
    let sha256 = hex::encode(Sha256::digest(&bytes));
    if bytes.len() as u64 != expected.size || sha256 != expected.sha256 {
        return Err(Error::Mismatch {
            size: bytes.len() as u64,
            sha256,
            expected_size: expected.size,
            expected_sha256: expected.sha256.to_owned(),
        });
    }
    Ok(Decoded {
        bytes,
        frames,
        layout,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(bytes: &[u8], checksum: bool, reference: Option<&[u8]>) -> Vec<u8> {
        let mut cctx = zstd_safe::CCtx::create();
        for parameter in [
            zstd_safe::CParameter::CompressionLevel(3),
            zstd_safe::CParameter::ChecksumFlag(checksum),
            zstd_safe::CParameter::ContentSizeFlag(true),
        ] {
            cctx.set_parameter(parameter).unwrap();
        }
        if let Some(reference) = reference {
            cctx.ref_prefix(reference).unwrap();
        }
        let mut out = vec![0; zstd_safe::compress_bound(bytes.len())];
        let written = cctx.compress2(&mut out[..], bytes).unwrap();
        out.truncate(written);
        out
    }

    fn expected(bytes: &[u8]) -> (u64, String) {
        (bytes.len() as u64, hex::encode(Sha256::digest(bytes)))
    }

    #[test]
    fn frames_decode_in_order_against_the_reference() {
        let reference: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut emulator = reference.clone();
        emulator[500] ^= 1;
        let (head, tail) = emulator.split_at(40_000);
        let mut blob = frame(head, true, Some(&reference));
        let second = blob.len();
        blob.extend(frame(tail, true, Some(&reference)));
        let (size, sha256) = expected(&emulator);
        let want = Expected {
            size,
            sha256: &sha256,
        };
        let decoded = decode(&blob, Some(&reference), Filtered::No, want).unwrap();
        assert!(decoded.bytes == emulator);
        assert_eq!(
            decoded.frames,
            [
                Frame {
                    offset: 0,
                    compressed: 0..second
                },
                Frame {
                    offset: 40_000,
                    compressed: second..blob.len()
                }
            ]
        );
        assert!(decoded.layout.is_none());
        let mut other = reference.clone();
        for byte in other.iter_mut().step_by(97) {
            *byte ^= 0x40;
        }
        let error = decode(&blob, Some(&other), Filtered::No, want)
            .err()
            .unwrap();
        assert!(
            matches!(error, Error::Decode { .. } | Error::Mismatch { .. }),
            "{error}"
        );
    }

    #[test]
    fn a_blob_other_than_its_pin_says_what_differs() {
        let bytes = b"an emulator, or so it says".repeat(100);
        let (size, sha256) = expected(&bytes);
        let want = Expected {
            size,
            sha256: &sha256,
        };
        let good = frame(&bytes, true, None);
        assert!(decode(&good, None, Filtered::No, want).is_ok());

        let unchecked = frame(&bytes, false, None);
        let error = decode(&unchecked, None, Filtered::No, want).err().unwrap();
        assert!(matches!(error, Error::NoChecksum { offset: 0 }), "{error}");
        assert!(!has_content_checksum(&unchecked));
        assert!(has_content_checksum(&good));

        let error = decode(&good[..good.len() / 2], None, Filtered::No, want)
            .err()
            .unwrap();
        assert!(error.to_string().starts_with("not a zstd frame"), "{error}");

        let mut twice = good.clone();
        twice.extend_from_slice(&good);
        let error = decode(&twice, None, Filtered::No, want).err().unwrap();
        assert!(
            error
                .to_string()
                .contains(&format!("says {size} bytes, more than the 0 expected")),
            "{error}"
        );

        let other = "0".repeat(64);
        let error = decode(
            &good,
            None,
            Filtered::No,
            Expected {
                size,
                sha256: &other,
            },
        )
        .err()
        .unwrap();
        assert_eq!(
            error.to_string(),
            format!(
                "decodes to {size} bytes with sha256 {sha256}, expected {size} bytes with \
                 sha256 {other}"
            )
        );

        let error = decode(&frame(b"", true, None), None, Filtered::No, want)
            .err()
            .unwrap();
        assert!(matches!(error, Error::Empty { offset: 0 }), "{error}");
    }

    #[test]
    fn the_window_reaches_back_over_the_span() {
        assert_eq!(window_log(0), 10);
        assert_eq!(window_log(1024), 10);
        assert_eq!(window_log(1025), 11);
        assert_eq!(window_log(32 << 20), 25);
        assert!(window_log(200 << 20) > WINDOW_LOG_MAX);
    }
}
