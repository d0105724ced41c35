//! The compressed emulator blobs in the cache, and filling the cache from a `.deb`.
//!
//! Format: each emulator is ONE zstd frame at [`BlobCache::compressed_path`], compressed
//! at level 19 with long-distance matching and a 16 MiB window (log 24) so that a whole
//! ~15 MB emulator is one match window, with the content size in the frame header and a
//! content checksum. The shipped binary decodes it with the pure-Rust ruzstd, whose
//! memory use is about the window size; the tests of this module check that ruzstd
//! decodes what libzstd writes with these parameters.
//!
//! Blobs are written to a temporary file in the same directory, checked by decoding
//! them again, and renamed into place, so a blob at its final path is always complete.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, mpsc};
use std::thread;

use qemu_pins::{BlobCache, Emulator, sha256_hex};

use crate::{Result, ResultExt, deb};

/// zstd compression level (19: the highest "non-ultra" level).
pub const LEVEL: i32 = 19;
/// log2 of the match window: 16 MiB, larger than any emulator's remaining matches need.
pub const WINDOW_LOG: u32 = 24;
/// Compression threads (the development machines have 2 cores).
pub const WORKERS: u32 = 2;

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

/// Decodes a blob and checks it is exactly one frame whose content has `emulator`'s
/// size and sha256. The error says what differs.
pub fn check(compressed: &[u8], emulator: &Emulator) -> Result<()> {
    use zstd::zstd_safe;
    let frame_len = zstd_safe::find_frame_compressed_size(compressed)
        .map_err(|code| format!("not a zstd frame ({})", zstd_safe::get_error_name(code)))?;
    if frame_len != compressed.len() {
        return Err(format!(
            "holds more than one zstd frame (first frame {frame_len} of {} bytes)",
            compressed.len()
        )
        .into());
    }
    match zstd_safe::get_frame_content_size(compressed) {
        Ok(Some(size)) if size == emulator.size => {}
        Ok(Some(size)) => {
            return Err(format!(
                "frame header says {size} bytes, expected {} bytes",
                emulator.size
            )
            .into());
        }
        _ => return Err("frame header does not record the content size".into()),
    }
    let capacity = usize::try_from(emulator.size)?;
    let bytes = zstd::bulk::decompress(compressed, capacity).context(|| "cannot decode".into())?;
    let actual = sha256_hex(&bytes);
    if bytes.len() as u64 != emulator.size || actual != emulator.sha256 {
        return Err(format!(
            "decodes to {} bytes with sha256 {actual}, expected {} bytes with sha256 {}",
            bytes.len(),
            emulator.size,
            emulator.sha256
        )
        .into());
    }
    Ok(())
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
    Invalid(crate::Error),
}

/// Checks the cached blob of `emulator` by decoding it completely and hashing the result
/// (about 0.1 s per emulator: cheap enough to not trust file names or sizes instead).
pub fn cached(cache: &BlobCache, emulator: &Emulator) -> Cached {
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
        fs::rename(&self.path, target).context(|| {
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
pub fn store(cache: &BlobCache, emulator: &Emulator, bytes: &[u8]) -> Result<u64> {
    let target = cache.compressed_path(emulator);
    if let Some(dir) = target.parent() {
        fs::create_dir_all(dir).context(|| format!("cannot create {}", dir.display()))?;
    }
    let temp = TempFile::next_to(&target);
    let file =
        File::create(temp.path()).context(|| format!("cannot create {}", temp.path().display()))?;
    let mut out = BufWriter::new(file);
    compress(bytes, &mut out).context(|| format!("compressing into {}", temp.path().display()))?;
    let file = out
        .into_inner()
        .map_err(|err| err.into_error())
        .context(|| format!("writing {}", temp.path().display()))?;
    file.sync_all()
        .context(|| format!("writing {}", temp.path().display()))?;
    drop(file);
    let compressed =
        fs::read(temp.path()).context(|| format!("reading back {}", temp.path().display()))?;
    check(&compressed, emulator).context(|| {
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
    pub pinned: Option<&'a Emulator>,
}

/// What [`store_from_deb`] put in the cache for one emulator.
#[derive(Debug)]
pub struct Stored {
    /// The emulator as measured (equal to the pin, if there was one).
    pub emulator: Emulator,
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
    let file = File::open(deb_path).context(|| format!("cannot open {}", deb_path.display()))?;
    let paths: Vec<&str> = wanted.iter().map(|w| w.path).collect();
    let (jobs, queue) = mpsc::sync_channel::<(Emulator, Vec<u8>)>(0);
    let queue = Mutex::new(queue);
    let compress_all = || -> Result<Vec<Stored>> {
        let mut stored = Vec::new();
        loop {
            // Holding the lock while waiting is fine: whoever holds it takes the next job.
            let job = match queue.lock() {
                Ok(queue) => queue.recv(),
                Err(_) => return Err("another compressing thread panicked".into()),
            };
            let Ok((emulator, bytes)) = job else {
                return Ok(stored); // the reader is done
            };
            // Content addressed: a valid blob of the same bytes needs no compressing.
            let (compressed_size, note) = match cached(cache, &emulator) {
                Cached::Valid { compressed_size } => (compressed_size, " (already cached)"),
                _ => {
                    let size = store(cache, &emulator, &bytes)
                        .context(|| format!("storing qemu-{} in the cache", emulator.cpu))?;
                    (size, "")
                }
            };
            eprintln!(
                "  qemu-{:<12} {:>9} -> {:>9}  {}{note}",
                emulator.cpu,
                crate::megabytes(emulator.size),
                crate::megabytes(compressed_size),
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
                let emulator = Emulator {
                    oci: w.oci.to_string(),
                    cpu: w.cpu.to_string(),
                    path: path.to_string(),
                    size: bytes.len() as u64,
                    sha256: sha256_hex(&bytes),
                };
                if let Some(pin) = w.pinned
                    && (pin.size != emulator.size || pin.sha256 != emulator.sha256)
                {
                    return Err(format!(
                        "emulator qemu-{} ({path} in {what}) does not match its pin: expected \
                         {} bytes with sha256 {}, got {} bytes with sha256 {}",
                        w.cpu, pin.size, pin.sha256, emulator.size, emulator.sha256
                    )
                    .into());
                }
                // Fails only when every compressing thread has stopped on an error,
                // which the join below reports.
                jobs.send((emulator, bytes))
                    .map_err(|_| "the compressing threads stopped".into())
            },
        );
        drop(jobs);
        let compressed: Vec<_> = workers
            .into_iter()
            .map(|worker| {
                worker
                    .join()
                    .unwrap_or_else(|_| Err("a compressing thread panicked".into()))
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
    use std::io::Read;

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

    fn pin_of(bytes: &[u8]) -> Emulator {
        Emulator {
            oci: "arm64".to_string(),
            cpu: "aarch64".to_string(),
            path: "usr/bin/qemu-aarch64".to_string(),
            size: bytes.len() as u64,
            sha256: sha256_hex(bytes),
        }
    }

    #[test]
    fn ruzstd_decodes_one_frame_with_our_parameters() {
        let original = sample(6_000_000);
        let mut compressed = Vec::new();
        compress(&original, &mut compressed).unwrap();
        assert!(
            compressed.len() < original.len() / 2,
            "{} bytes",
            compressed.len()
        );
        check(&compressed, &pin_of(&original)).unwrap();

        // What the shipped binary does: ruzstd, one frame, size from the header.
        let mut decoder = ruzstd::decoding::StreamingDecoder::new(compressed.as_slice()).unwrap();
        assert_eq!(decoder.decoder.content_size(), original.len() as u64);
        let mut decoded = Vec::new();
        decoder.read_to_end(&mut decoded).unwrap();
        assert!(decoded == original, "ruzstd decoded different bytes");
        let rest = decoder.into_inner();
        assert!(rest.is_empty(), "{} bytes after the frame", rest.len());
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
