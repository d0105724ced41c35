//! The compressed emulator blobs in the cache, and filling the cache from a `.deb`.
//!
//! # Format
//!
//! The format (zstd frames with their content size and checksum, the window limit,
//! the two kinds, standalone and embedded, and the check of a blob against its pin)
//! is the `blob-format` crate's, which the catalog and its build script read too. Here
//! is how the blobs are made, and why so:
//!
//! - **standalone** ([`BlobCache::compressed_path`]): one frame, level [`LEVEL`] (3),
//!   long-distance matching, a 16 MiB window (log 24) so that a whole ~15 MB emulator
//!   is one match window. Every pinned emulator of every host has one: it is what the
//!   cache is filled from and checked against, and what the embedded forms are made
//!   from. It is never shipped, so it is made fast (0.1 s and 3.1 MB per emulator;
//!   level 19 took 5 s of CPU for 2.4 MB).
//! - **embedded** ([`BlobCache::embedded_path`]): the host's *reference* emulator
//!   (`arch_table::Host::reference`) on its own, every other one against the
//!   reference's uncompressed bytes as a zstd prefix (a *patch*), each cut into
//!   [`EMBEDDED_PARTS`] consecutive parts, one frame each, long-distance matching, a
//!   window that spans the reference and the part, at the level of its
//!   [`Compression`] ([`embedded_level`]): 22 for release binaries (`cargo xtask
//!   dist`; ~19 s of CPU per emulator), 9 for development builds and tests (`cargo
//!   xtask fetch`; ~1 s, and ~40% larger). What is compressed is the emulator with
//!   the `elf-filter` crate's filters applied (its relocations and its unwind search
//!   table delta-coded); the reference's bytes the patches are made against are the
//!   emulator as it is, since that is what the binary has at hand (the written file).
//!
//! # Why filtered
//!
//! About 100,000 relocations per emulator (2.3 to 2.6 MB) were the second largest
//! cost of every patch after the code: shared code sits at another address in every
//! emulator, so nearly every entry differs. Delta-coded, and with each addend taken
//! relative to the value the linker already wrote at its place, nearly every entry
//! is the same 24 bytes (the `elf-filter` crate says how). Measured with the release
//! binaries (level 22, the same two-part layout), embedded emulators before and after:
//! s390x host 9.29 to 7.66 MB, riscv64 9.37 to 8.24 MB, x86_64 8.02 to 6.60 MB,
//! aarch64 8.19 to 6.73 MB. ppc64le's emulators are not position-independent (no
//! relocations, no `.eh_frame_hdr`): the filters find nothing there, 6.99 MB. The binary
//! undoes the filters once every part of an emulator is decoded (the relocations are
//! at the front, the values they are taken relative to in the last part) and holds
//! the filtered bytes back from the file until then.
//!
//! # Why patches against one reference, in two parts
//!
//! QEMU's user-mode emulators share most of their code (TCG, linux-user, glib, libc);
//! only the guest frontend differs. Measured with the eight foreign emulators of an
//! x86_64 host (117 MB raw, qemu 10.0.13):
//!
//! | layout | embedded | install one arch | install all, 2 cores |
//! |---|---|---|---|
//! | one frame each (before) | 19.6 MB | decode 1 | 8 independent decodes |
//! | trained dictionary (4 MB max) + frames | 19.8 MB | dict + 1 | 8 independent |
//! | one solid `--long` stream | 7.8 MB | decode up to it, serially | 1 serial decode, 16+ MB window |
//! | reference + patches, whole | 8.0 MB | 1, or reference + 1 | reference alone, then 7 on both cores |
//! | **reference + patches, in two parts (chosen)** | **8.0 MB** | **same, each on both cores** | **every one on both cores** |
//!
//! A trained dictionary does not find the long shared runs; a solid stream is smallest
//! but cannot use the second core and must be decoded from its start even for one
//! architecture. Patches against one reference keep nearly all of the solid stream's
//! gain, and each depends only on the reference, so installing the reference alone
//! (arm64 on x86_64) decodes one blob. The price: installing any other single
//! architecture also decodes the reference (~17 MB more output), and the reference's
//! bytes stay mapped while the patches decode. Cutting every emulator in two parts (each
//! on its own, or against the reference), where their decoding work is even (see
//! [`cuts`]), lets both cores decode one emulator at once into one buffer, so memory
//! stays at one emulator and no core waits for the reference; at level 22 it costs
//! next to nothing (a part cannot copy from the other, but most matches are in the
//! reference anyway). A deeper tree
//! (patching mips64el against mips64) would save a little more size for a third
//! decode on some single installs.
//!
//! The shipped binary decodes with libzstd (`zstd-safe`) straight into the destination;
//! see qemu-catalog's `emulator` module.
//!
//! Blobs are written to a temporary file in the same directory, checked by decoding
//! them again, and renamed into place, so a blob at its final path is always complete.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, mpsc};
use std::thread;

use blob_format::{Expected, Filtered};
use qemu_pins::{BlobCache, Compression, Pin, sha256_hex};
use zstd::zstd_safe::{self, CCtx, CParameter};

use anyhow::{Context, Result, anyhow};

use crate::deb;

/// zstd compression level of the standalone blobs: fast, since they are never shipped
/// (see the module documentation).
pub const LEVEL: i32 = 3;
/// log2 of the match window: 16 MiB, larger than any emulator's remaining matches need.
pub const WINDOW_LOG: u32 = 24;
/// Compression threads (the development machines have 2 cores).
pub const WORKERS: u32 = 2;

/// Compression level of the embedded blobs. Release: 22, zstd's highest; they are made
/// once per pin and cached, and this saves ~5% over level 19; decoding is as fast.
/// Fast: 9, the lowest level whose patches find most of the long matches into the
/// reference (level 6 patches are 50% larger, level 9 ones 40%; level 9 takes a
/// second per emulator, level 22 nineteen).
pub fn embedded_level(compression: Compression) -> i32 {
    match compression {
        Compression::Release => 22,
        Compression::Fast => 9,
    }
}
/// The largest window (log2) a blob may need; the shipped decoder accepts exactly this
/// much (see [`blob_format::WINDOW_LOG_MAX`]).
pub const MAX_WINDOW_LOG: u32 = blob_format::WINDOW_LOG_MAX;

/// Compresses `bytes` into one zstd frame with the parameters above.
pub fn compress(bytes: &[u8], out: impl Write) -> Result<()> {
    let mut encoder = zstd::stream::write::Encoder::new(out, LEVEL)?;
    encoder.multithread(WORKERS)?;
    encoder.long_distance_matching(true)?;
    encoder.window_log(WINDOW_LOG)?;
    encoder.include_checksum(true)?;
    encoder.include_contentsize(true)?;
    encoder.set_pledged_src_size(Some(bytes.len() as u64))?;
    encoder.write_all(bytes)?;
    encoder.finish()?.flush()?;
    Ok(())
}

/// Decodes a standalone blob and checks it is exactly one frame whose content has
/// `emulator`'s size and sha256. The error says what differs.
pub fn check(compressed: &[u8], emulator: &Pin) -> Result<()> {
    decode_standalone(compressed, emulator).map(drop)
}

/// Decodes a standalone blob (one frame, see [`check`]) and returns the emulator.
pub fn decode_standalone(compressed: &[u8], emulator: &Pin) -> Result<Vec<u8>> {
    let frame_len = zstd_safe::find_frame_compressed_size(compressed)
        .map_err(|code| anyhow!("not a zstd frame ({})", zstd_safe::get_error_name(code)))?;
    if frame_len != compressed.len() {
        return Err(anyhow!(
            "holds more than one zstd frame (first frame {frame_len} of {} bytes)",
            compressed.len()
        ));
    }
    match zstd_safe::get_frame_content_size(compressed) {
        Ok(Some(size)) if size == emulator.size => {}
        Ok(Some(size)) => {
            return Err(anyhow!(
                "frame header says {size} bytes, expected {} bytes",
                emulator.size
            ));
        }
        _ => return Err(anyhow!("frame header does not record the content size")),
    }
    decode_frames(compressed, None, Filtered::No, emulator)
}

/// [`blob_format::decode`] against `emulator`'s pin.
fn decode_frames(
    compressed: &[u8],
    reference: Option<&[u8]>,
    filtered: Filtered,
    emulator: &Pin,
) -> Result<Vec<u8>> {
    let expected = Expected {
        size: emulator.size,
        sha256: &emulator.sha256,
    };
    Ok(blob_format::decode(compressed, reference, filtered, expected)?.bytes)
}

/// How many parts an embedded emulator is cut into ([`blob_format::PARTS`]): one per
/// core of the 2-core machines binfmt is measured on, so that both decode one emulator
/// at once (each part is a frame of its own). Halves cost next to nothing at level 22
/// (a part cannot copy from the one before it, but most matches are in the reference
/// anyway).
pub const EMBEDDED_PARTS: usize = blob_format::PARTS;

/// Compresses `bytes` as the binary embeds it: filtered (the `elf-filter` crate), in
/// [`EMBEDDED_PARTS`] consecutive parts (cut at page boundaries where the decoding work is even, see [`cuts`]), each one
/// zstd frame at `level` with long-distance matching and its content size and
/// checksum, compressed against `reference` (a zstd prefix) when given.
pub fn compress_embedded(bytes: &[u8], reference: Option<&[u8]>, level: i32) -> Result<Vec<u8>> {
    let mut filtered = bytes.to_vec();
    elf_filter::filter(&mut filtered, &elf_filter::Layout::find(bytes))
        .context("cannot filter the emulator before compressing it")?;
    let cuts = cuts(&filtered, reference)?;
    let mut out = Vec::new();
    for part in ranges(filtered.len(), &cuts) {
        out.extend(compress_part(&filtered[part], reference, level)?);
    }
    Ok(out)
}

/// How much decoding a compressed byte costs, in raw (output) bytes' worth, for a
/// part on its own and for a part against the reference. Fitted to binfmt's decoder on
/// the 2-core machine (time = a * raw MB + b * compressed MB): the reference's parts
/// a ~2.0, b ~6.2 ms; a patch's parts a ~0.2 (most output is long matches, copied at
/// memory speed), b ~27 ms. The code at the front of an emulator compresses worse
/// than the data behind it, so halves of equal size decoded in 27 and 15 ms (the
/// reference) and 14 and 9 ms (a patch).
const COMPRESSED_WEIGHT: [usize; 2] = [3, 100];

/// Granularity of the cut, and of the profile it is found with.
const PROFILE_STEP: usize = 256 * 1024;

/// Where to cut `bytes` into [`EMBEDDED_PARTS`] parts of even decoding work: at the
/// [`PROFILE_STEP`] boundaries closest to equal shares of `raw + COMPRESSED_WEIGHT *
/// compressed` along the emulator (the weight for a part on its own, or against the
/// reference). The compressed sizes come from one quick pass
/// (level 9, against the same reference, flushed at every step), deterministic like
/// all of libzstd: the same pin gives the same blobs on every machine.
fn cuts(bytes: &[u8], reference: Option<&[u8]>) -> Result<Vec<usize>> {
    use zstd_safe::zstd_sys::ZSTD_EndDirective::{ZSTD_e_end, ZSTD_e_flush};
    use zstd_safe::{InBuffer, OutBuffer};

    let zstd_error = |code: usize| -> anyhow::Error { anyhow!(zstd_safe::get_error_name(code)) };
    let mut cctx = CCtx::create();
    let span = reference.map_or(0, <[u8]>::len) + bytes.len();
    let window_log = blob_format::window_log(span).min(MAX_WINDOW_LOG);
    for parameter in [
        CParameter::CompressionLevel(9),
        CParameter::WindowLog(window_log),
        CParameter::EnableLongDistanceMatching(true),
    ] {
        cctx.set_parameter(parameter).map_err(zstd_error)?;
    }
    if let Some(reference) = reference {
        cctx.ref_prefix(reference).map_err(zstd_error)?;
    }
    // Work done up to the end of each step: (offset, cost).
    let mut profile = vec![(0, 0)];
    let mut compressed = 0;
    let mut scratch = vec![0u8; zstd_safe::compress_bound(PROFILE_STEP) + 1024];
    for start in (0..bytes.len()).step_by(PROFILE_STEP) {
        let end = (start + PROFILE_STEP).min(bytes.len());
        let last = end == bytes.len();
        let mut input = InBuffer::around(&bytes[start..end]);
        loop {
            let mut output = OutBuffer::around(&mut scratch[..]);
            let directive = if last { ZSTD_e_end } else { ZSTD_e_flush };
            let remaining = cctx
                .compress_stream2(&mut output, &mut input, directive)
                .map_err(zstd_error)?;
            compressed += output.pos();
            if remaining == 0 && input.pos() == end - start {
                break;
            }
        }
        let weight = COMPRESSED_WEIGHT[usize::from(reference.is_some())];
        profile.push((end, end + weight * compressed));
    }
    let total = profile.last().map_or(0, |&(_, cost)| cost);
    let mut cuts: Vec<usize> = (1..EMBEDDED_PARTS)
        .filter_map(|i| {
            let share = total * i / EMBEDDED_PARTS;
            profile
                .iter()
                .min_by_key(|&&(_, cost)| cost.abs_diff(share))
                .map(|&(offset, _)| offset)
        })
        .filter(|&cut| cut > 0 && cut < bytes.len())
        .collect();
    cuts.dedup();
    Ok(cuts)
}

/// The byte ranges between `cuts` (ascending) of an emulator of `len` bytes.
fn ranges(len: usize, cuts: &[usize]) -> Vec<std::ops::Range<usize>> {
    let starts = std::iter::once(0).chain(cuts.iter().copied());
    let ends = cuts.iter().copied().chain(std::iter::once(len));
    starts.zip(ends).map(|(start, end)| start..end).collect()
}

fn compress_part(bytes: &[u8], reference: Option<&[u8]>, level: i32) -> Result<Vec<u8>> {
    let span = reference.map_or(0, <[u8]>::len) + bytes.len();
    // The smallest window that reaches from the end of the part back to the start of
    // the reference (or of the part).
    let window_log = blob_format::window_log(span);
    if window_log > MAX_WINDOW_LOG {
        return Err(anyhow!(
            "a frame over {span} bytes needs a 2^{window_log} window; the decoder allows 2^{MAX_WINDOW_LOG}"
        ));
    }
    let zstd_error = |code: usize| -> anyhow::Error { anyhow!(zstd_safe::get_error_name(code)) };
    let mut cctx = CCtx::create();
    for parameter in [
        CParameter::CompressionLevel(level),
        CParameter::WindowLog(window_log),
        CParameter::EnableLongDistanceMatching(true),
        CParameter::ChecksumFlag(true),
        CParameter::ContentSizeFlag(true),
    ] {
        cctx.set_parameter(parameter).map_err(zstd_error)?;
    }
    if let Some(reference) = reference {
        cctx.ref_prefix(reference).map_err(zstd_error)?;
    }
    let mut out = Vec::with_capacity(zstd_safe::compress_bound(bytes.len()));
    cctx.compress2(&mut out, bytes).map_err(zstd_error)?;
    Ok(out)
}

/// Decodes an embedded blob the way the shipped binary does and checks it against
/// `emulator`'s pin ([`blob_format::decode`]), and returns it. The error says what
/// differs.
pub fn decode_embedded(
    compressed: &[u8],
    reference: Option<&[u8]>,
    emulator: &Pin,
) -> Result<Vec<u8>> {
    decode_frames(compressed, reference, Filtered::Yes, emulator)
}

/// The state of one emulator's blob in the cache.
pub enum Cached {
    /// Present, decodes, and matches the pin.
    Valid {
        /// Size of the blob file.
        compressed_size: u64,
    },
    /// No blob yet.
    Missing,
    /// Present but wrong (truncated, corrupt, or from a bug); it will be replaced.
    Invalid(anyhow::Error),
}

/// Checks the cached blob of `emulator` by decoding it completely and hashing the result
/// (about 0.1 s per emulator: cheap enough to not trust file names or sizes instead).
pub fn cached(cache: &BlobCache, emulator: &Pin) -> Cached {
    let path = cache.compressed_path(emulator);
    match fs::read(&path) {
        Ok(compressed) => match check(&compressed, emulator) {
            Ok(()) => Cached::Valid {
                compressed_size: compressed.len() as u64,
            },
            Err(err) => Cached::Invalid(err),
        },
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Cached::Missing,
        Err(err) => Cached::Invalid(err.into()),
    }
}

/// The reference an embedded emulator is compressed against: the emulator and its
/// uncompressed bytes.
pub type Reference<'a> = (&'a Pin, &'a [u8]);

/// Checks the cached embedded form of `emulator` with `compression` (against
/// `reference`, if any) by decoding it completely.
pub fn cached_embedded(
    cache: &BlobCache,
    compression: Compression,
    emulator: &Pin,
    reference: Option<Reference<'_>>,
) -> Cached {
    let path = cache.embedded_path(compression, emulator, reference.map(|(r, _)| r));
    match fs::read(path) {
        Ok(compressed) => match decode_embedded(&compressed, reference.map(|(_, b)| b), emulator) {
            Ok(_) => Cached::Valid {
                compressed_size: compressed.len() as u64,
            },
            Err(err) => Cached::Invalid(err),
        },
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Cached::Missing,
        Err(err) => Cached::Invalid(err.into()),
    }
}

/// Compresses `bytes` (the emulator `emulator` pins) into its embedded form with
/// `compression` (against `reference`, if any) in the cache, atomically. Returns the
/// size of the blob.
pub fn store_embedded(
    cache: &BlobCache,
    compression: Compression,
    emulator: &Pin,
    reference: Option<Reference<'_>>,
    bytes: &[u8],
) -> Result<u64> {
    let target = cache.embedded_path(compression, emulator, reference.map(|(r, _)| r));
    if let Some(dir) = target.parent() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let against = reference
        .map(|(r, _)| format!(" against qemu-{}", r.cpu))
        .unwrap_or_default();
    let compressed = compress_embedded(
        bytes,
        reference.map(|(_, b)| b),
        embedded_level(compression),
    )
    .with_context(|| format!("compressing qemu-{}{against}", emulator.cpu))?;
    decode_embedded(&compressed, reference.map(|(_, b)| b), emulator).with_context(|| {
        format!(
            "the embedded form of qemu-{}{against} does not decode to it",
            emulator.cpu
        )
    })?;
    let temp = TempFile::next_to(&target);
    fs::write(temp.path(), &compressed)
        .with_context(|| format!("cannot write {}", temp.path().display()))?;
    temp.persist(&target)?;
    Ok(compressed.len() as u64)
}

/// Removes a file when dropped, unless it was renamed away: temporary files of failed
/// or interrupted steps do not pile up in the cache.
pub struct TempFile {
    path: PathBuf,
    keep: bool,
}

impl TempFile {
    /// A temporary name next to `target`: `.<name>.<pid>.tmp`.
    pub fn next_to(target: &Path) -> TempFile {
        let name = target
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let path = target.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
        TempFile { path, keep: false }
    }

    /// The temporary path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Renames the file to `target`.
    pub fn persist(mut self, target: &Path) -> Result<()> {
        fs::rename(&self.path, target).with_context(|| {
            format!(
                "cannot rename {} to {}",
                self.path.display(),
                target.display()
            )
        })?;
        self.keep = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Compresses `bytes` (the emulator `emulator` pins) into the cache, atomically.
/// Returns the size of the blob.
pub fn store(cache: &BlobCache, emulator: &Pin, bytes: &[u8]) -> Result<u64> {
    let target = cache.compressed_path(emulator);
    if let Some(dir) = target.parent() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let temp = TempFile::next_to(&target);
    let file = File::create(temp.path())
        .with_context(|| format!("cannot create {}", temp.path().display()))?;
    let mut out = BufWriter::new(file);
    compress(bytes, &mut out)
        .with_context(|| format!("compressing into {}", temp.path().display()))?;
    let file = out
        .into_inner()
        .map_err(|err| err.into_error())
        .with_context(|| format!("writing {}", temp.path().display()))?;
    file.sync_all()
        .with_context(|| format!("writing {}", temp.path().display()))?;
    drop(file);
    let compressed =
        fs::read(temp.path()).with_context(|| format!("reading back {}", temp.path().display()))?;
    check(&compressed, emulator).with_context(|| {
        format!(
            "the blob just written to {} is wrong",
            temp.path().display()
        )
    })?;
    temp.persist(&target)?;
    Ok(compressed.len() as u64)
}

/// An emulator to take out of a package: where it is, and what it must be if pinned.
pub struct Wanted<'a> {
    /// OCI architecture name.
    pub oci: &'a str,
    /// QEMU cpu name.
    pub cpu: &'a str,
    /// Path in the package's data archive, without `./`.
    pub path: &'a str,
    /// The pin to check against (`None` when pinning: anything is accepted).
    pub pinned: Option<&'a Pin>,
}

/// What [`store_from_deb`] put in the cache for one emulator.
#[derive(Debug)]
pub struct Stored {
    /// The emulator as measured (equal to the pin, if there was one).
    pub emulator: Pin,
    /// Size of its blob.
    pub compressed_size: u64,
}

/// Emulators compressed at the same time. zstd's own workers do not help here: with a
/// 16 MiB window one emulator is a single zstd job (jobs are 4 windows), and long-distance
/// matching runs serially; compressing two emulators at once keeps both cores busy.
const PARALLEL_FRAMES: usize = 2;

/// Extracts every wanted emulator from the `.deb` at `deb_path`, checks each against
/// its pin (if any) and stores it in the cache. `what` names the package in messages.
///
/// One thread reads the package (xz, tar, sha256) and hands each emulator to
/// [`PARALLEL_FRAMES`] compressing threads.
pub fn store_from_deb(
    cache: &BlobCache,
    deb_path: &Path,
    what: &str,
    wanted: &[Wanted<'_>],
) -> Result<Vec<Stored>> {
    let file =
        File::open(deb_path).with_context(|| format!("cannot open {}", deb_path.display()))?;
    let paths: Vec<&str> = wanted.iter().map(|w| w.path).collect();
    let (jobs, queue) = mpsc::sync_channel::<(Pin, Vec<u8>)>(0);
    let queue = Mutex::new(queue);
    let compress_all = || -> Result<Vec<Stored>> {
        let mut stored = Vec::new();
        loop {
            // Holding the lock while waiting is fine: whoever holds it takes the next job.
            let job = match queue.lock() {
                Ok(queue) => queue.recv(),
                Err(_) => return Err(anyhow!("another compressing thread panicked")),
            };
            let Ok((emulator, bytes)) = job else {
                return Ok(stored); // the reader is done
            };
            // Content addressed: a valid blob of the same bytes needs no compressing.
            let (compressed_size, note) = match cached(cache, &emulator) {
                Cached::Valid { compressed_size } => (compressed_size, " (already cached)"),
                _ => {
                    let size = store(cache, &emulator, &bytes)
                        .with_context(|| format!("storing qemu-{} in the cache", emulator.cpu))?;
                    (size, "")
                }
            };
            eprintln!(
                "  qemu-{:<12} {:>9} -> {:>9}  {}{note}",
                emulator.cpu,
                crate::workspace::megabytes(emulator.size),
                crate::workspace::megabytes(compressed_size),
                cache.compressed_path(&emulator).display()
            );
            stored.push(Stored {
                emulator,
                compressed_size,
            });
        }
    };
    let (read, compressed) = thread::scope(|scope| {
        let workers: Vec<_> = (0..PARALLEL_FRAMES)
            .map(|_| scope.spawn(compress_all))
            .collect();
        let read = deb::for_each_file(
            std::io::BufReader::new(file),
            what,
            &paths,
            |path, bytes| {
                let Some(w) = wanted.iter().find(|w| w.path == path) else {
                    return Ok(());
                };
                let emulator = Pin {
                    oci: w.oci.to_string(),
                    cpu: w.cpu.to_string(),
                    path: path.to_string(),
                    size: bytes.len() as u64,
                    sha256: sha256_hex(&bytes),
                };
                if let Some(pin) = w.pinned
                    && (pin.size != emulator.size || pin.sha256 != emulator.sha256)
                {
                    return Err(anyhow!(
                        "emulator qemu-{} ({path} in {what}) does not match its pin: expected \
                         {} bytes with sha256 {}, got {} bytes with sha256 {}",
                        w.cpu,
                        pin.size,
                        pin.sha256,
                        emulator.size,
                        emulator.sha256
                    ));
                }
                // Fails only when every compressing thread has stopped on an error,
                // which the join below reports.
                jobs.send((emulator, bytes))
                    .map_err(|_| anyhow!("the compressing threads stopped"))
            },
        );
        drop(jobs);
        let compressed: Vec<_> = workers
            .into_iter()
            .map(|worker| {
                worker
                    .join()
                    .unwrap_or_else(|_| Err(anyhow!("a compressing thread panicked")))
            })
            .collect();
        (read, compressed)
    });
    let mut stored = Vec::new();
    // A compression error explains a failed hand-over, so report it first.
    for result in compressed {
        stored.extend(result?);
    }
    read?;
    // Report in the order asked for, not the order they were finished in.
    stored.sort_by_key(|s| wanted.iter().position(|w| w.cpu == s.emulator.cpu));
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A few MB that compress like code: repeated structure, some noise, and repeats
    /// several MB apart that only long-distance matching finds.
    fn sample(len: usize) -> Vec<u8> {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut noise = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let block: Vec<u8> = (0..1 << 20).map(|_| (noise() % 7) as u8).collect();
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            out.extend_from_slice(&block[..block.len().min(len - out.len())]);
            let n = (noise() % 4096) as usize;
            out.extend((0..n.min(len - out.len())).map(|_| noise() as u8));
        }
        out
    }

    fn pin_of(bytes: &[u8]) -> Pin {
        Pin {
            oci: "arm64".to_string(),
            cpu: "aarch64".to_string(),
            path: "usr/bin/qemu-aarch64".to_string(),
            size: bytes.len() as u64,
            sha256: sha256_hex(bytes),
        }
    }

    #[test]
    fn one_frame_with_our_parameters() {
        let original = sample(6_000_000);
        let mut compressed = Vec::new();
        compress(&original, &mut compressed).unwrap();
        assert!(
            compressed.len() < original.len() / 2,
            "{} bytes",
            compressed.len()
        );
        assert!(matches!(
            zstd_safe::get_frame_content_size(&compressed),
            Ok(Some(size)) if size == original.len() as u64
        ));
        let decoded = decode_standalone(&compressed, &pin_of(&original)).unwrap();
        assert!(decoded == original, "decoded different bytes");
    }

    /// The number of frames in `blob`.
    fn frames(mut blob: &[u8]) -> usize {
        let mut count = 0;
        while !blob.is_empty() {
            blob = &blob[zstd_safe::find_frame_compressed_size(blob).unwrap()..];
            count += 1;
        }
        count
    }

    #[test]
    fn an_embedded_blob_is_in_parts_and_decodes_only_with_its_reference() {
        // A "reference" and an "emulator" sharing most of their content, moved around
        // and with a few changes, as QEMU's emulators for two guests do.
        let reference = sample(3_000_000);
        let mut emulator = reference.clone();
        emulator.rotate_left(1_234_567);
        for i in (0..emulator.len()).step_by(10_007) {
            emulator[i] ^= 0x5a;
        }
        emulator.extend_from_slice(&sample(50_000)[..40_000]);
        let pin = pin_of(&emulator);

        let level = embedded_level(Compression::Fast);
        let alone = compress_embedded(&reference, None, level).unwrap();
        assert_eq!(frames(&alone), EMBEDDED_PARTS);
        assert!(decode_embedded(&alone, None, &pin_of(&reference)).unwrap() == reference);

        let patch = compress_embedded(&emulator, Some(&reference), level).unwrap();
        assert_eq!(frames(&patch), EMBEDDED_PARTS);
        let mut standalone = Vec::new();
        compress(&emulator, &mut standalone).unwrap();
        assert!(
            patch.len() * 4 < standalone.len(),
            "patch {} bytes, standalone {} bytes",
            patch.len(),
            standalone.len()
        );
        assert!(decode_embedded(&patch, Some(&reference), &pin).unwrap() == emulator);

        let err = decode_embedded(&patch, None, &pin).unwrap_err().to_string();
        assert!(err.starts_with("cannot decode"), "{err}");
        let mut other = reference.clone();
        other[1_000_000] ^= 1;
        assert!(decode_embedded(&patch, Some(&other), &pin).is_err());
    }

    #[test]
    fn the_cut_evens_out_the_decoding_work() {
        // Dense "code" in front, then data that compresses ten times better, as in an
        // emulator: an even cost puts the cut well before the middle.
        let mut bytes = sample(2_000_000);
        for (i, byte) in bytes.iter_mut().enumerate().skip(1_000_000) {
            *byte = (i % 7) as u8;
        }
        let cut = cuts(&bytes, None).unwrap();
        assert_eq!(cut.len(), 1, "{cut:?}");
        assert_eq!(cut[0] % PROFILE_STEP, 0);
        assert!(cut[0] > 0 && cut[0] < 1_000_000, "{cut:?}");
        assert_eq!(cuts(&bytes, None).unwrap(), cut, "deterministic");

        assert_eq!(ranges(10, &[4]), [0..4, 4..10]);
        assert_eq!(ranges(10, &[]).len(), 1);
        assert!(
            cuts(&[1, 2, 3], None).unwrap().is_empty(),
            "too small to cut"
        );
    }

    #[test]
    fn check_reports_what_differs() {
        let original = sample(100_000);
        let mut compressed = Vec::new();
        compress(&original, &mut compressed).unwrap();

        let mut wrong_size = pin_of(&original);
        wrong_size.size += 1;
        let err = check(&compressed, &wrong_size).unwrap_err().to_string();
        assert!(
            err.contains("frame header says 100000 bytes, expected 100001"),
            "{err}"
        );

        let mut wrong_digest = pin_of(&original);
        wrong_digest.sha256 = sha256_hex(b"other");
        let err = check(&compressed, &wrong_digest).unwrap_err().to_string();
        assert!(err.contains(&format!(
            "expected 100000 bytes with sha256 {}",
            wrong_digest.sha256
        )));

        let mut two_frames = compressed.clone();
        two_frames.extend_from_slice(&compressed);
        let err = check(&two_frames, &pin_of(&original))
            .unwrap_err()
            .to_string();
        assert!(err.contains("more than one zstd frame"), "{err}");

        let err = check(&compressed[..compressed.len() / 2], &pin_of(&original)).unwrap_err();
        assert!(err.to_string().contains("not a zstd frame"), "{err}");
    }

    fn temp_cache(name: &str) -> BlobCache {
        let root = std::env::temp_dir().join(format!("xtask-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        BlobCache::at(root)
    }

    #[test]
    fn store_then_cached_is_valid() {
        let cache = temp_cache("store");
        let original = sample(200_000);
        let pin = pin_of(&original);
        assert!(matches!(cached(&cache, &pin), Cached::Missing));
        let size = store(&cache, &pin, &original).unwrap();
        assert!(
            matches!(cached(&cache, &pin), Cached::Valid { compressed_size } if compressed_size == size)
        );
        // Only the blob is left: no temporary files.
        let names: Vec<_> = fs::read_dir(cache.root().join("emulators"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec![format!("{}.zst", pin.sha256)]);

        fs::write(cache.compressed_path(&pin), b"garbage").unwrap();
        assert!(matches!(cached(&cache, &pin), Cached::Invalid(_)));
        fs::remove_dir_all(cache.root()).unwrap();
    }

    #[test]
    fn store_from_deb_checks_pins() {
        let cache = temp_cache("deb");
        let aarch64 = sample(50_000);
        let riscv64 = b"riscv64 emulator".to_vec();
        let deb_bytes = deb::tests::fake_deb(
            "data.tar.xz",
            &[
                ("./usr/bin/qemu-riscv64", &riscv64),
                ("./usr/bin/qemu-aarch64", &aarch64),
            ],
        );
        let deb_path = cache.root().join("test.deb");
        fs::create_dir_all(cache.root()).unwrap();
        fs::write(&deb_path, deb_bytes).unwrap();

        let pin = pin_of(&aarch64);
        let wanted = |pinned| {
            vec![
                Wanted {
                    oci: "arm64",
                    cpu: "aarch64",
                    path: "usr/bin/qemu-aarch64",
                    pinned,
                },
                Wanted {
                    oci: "riscv64",
                    cpu: "riscv64",
                    path: "usr/bin/qemu-riscv64",
                    pinned: None,
                },
            ]
        };
        let stored = store_from_deb(&cache, &deb_path, "test.deb", &wanted(Some(&pin))).unwrap();
        assert_eq!(stored[0].emulator, pin);
        assert_eq!(stored[1].emulator.sha256, sha256_hex(&riscv64));
        assert!(matches!(cached(&cache, &pin), Cached::Valid { .. }));

        let mut bad = pin.clone();
        bad.sha256 = sha256_hex(b"something else");
        let err = store_from_deb(&cache, &deb_path, "test.deb", &wanted(Some(&bad)))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(
                "emulator qemu-aarch64 (usr/bin/qemu-aarch64 in test.deb) does not match its pin"
            ),
            "{err}"
        );
        assert!(
            err.contains(&format!("expected 50000 bytes with sha256 {}", bad.sha256)),
            "{err}"
        );
        assert!(
            err.contains(&format!("got 50000 bytes with sha256 {}", pin.sha256)),
            "{err}"
        );
        fs::remove_dir_all(cache.root()).unwrap();
    }
}
