//! `cargo xtask fetch`: fill the emulator blob cache from the pinned packages.
//!
//! For each host in `qemu-blobs/pins.toml`, every pinned emulator's blob is checked in
//! the cache (decoded and hashed). If all are valid nothing is downloaded, and no mirror
//! is needed. Otherwise the host's `.deb` is downloaded into the cache directory while
//! being hashed, checked against the pin, the missing emulators are extracted, checked
//! against their pins and compressed (quickly) into the cache, and the `.deb` is
//! deleted. Then the blobs a development build for this machine embeds (the host's
//! reference emulator, and every other one against it, see [`blob`]; fast
//! compression) are checked the same way and made from the cached blobs where missing.
//! `cargo xtask dist` makes the release compression of each binary's set with
//! [`ensure_embedded`]; [`download_and_store`] is shared with `cargo xtask pin`, and
//! [`download_to`] (a checked download, nothing stored) with `cargo xtask kernels`.

use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::path::Path;
use std::sync::Mutex;
use std::thread;
use std::time::Instant;

use qemu_pins::{BlobCache, Compression, Host, MANIFEST_PATH, Manifest, Pin};
use sha2::{Digest, Sha256};

use anyhow::{Context, Result, anyhow};

use crate::blob::{self, Cached, Stored, TempFile, Wanted};
use crate::http::{self, HttpError};
use crate::mirror::{MIRROR_ENV, Mirror};
use crate::workspace::{megabytes, workspace_root};

/// Arguments of `cargo xtask fetch`.
#[derive(clap::Args)]
pub struct Args {
    /// Which host's emulators to fetch (a host of pins.toml, or all of them).
    #[arg(long, default_value = "all", value_parser = host_names())]
    host: String,
}

/// The names `--host` takes: every host binfmt is built for, and `all`.
pub fn host_names() -> Vec<&'static str> {
    arch_table::HOSTS
        .iter()
        .map(|host| host.name)
        .chain(["all"])
        .collect()
}

/// The host this xtask runs on, as pins.toml names hosts: the one development builds
/// and the tests build for.
pub fn build_host() -> String {
    arch_table::host_name(
        std::env::consts::ARCH,
        if cfg!(target_endian = "little") {
            "little"
        } else {
            "big"
        },
    )
}

/// Runs `cargo xtask fetch`: every selected host's emulators, downloaded and checked,
/// and the fast embedded set (see [`Compression::Fast`]) of the host this runs on when
/// it is selected, and of a host named with `--host`. The release set is `cargo xtask
/// dist`'s job: it takes minutes of CPU per host, and only a release needs it.
pub fn run(args: &Args) -> Result<()> {
    let start = Instant::now();
    let manifest_path = workspace_root().join(MANIFEST_PATH);
    let manifest = Manifest::load(&manifest_path)?;
    let cache = BlobCache::from_env()?;
    let hosts: Vec<_> = if args.host == "all" {
        manifest.hosts.iter().collect()
    } else {
        let host = manifest.host(&args.host).with_context(|| {
            format!(
                "{} pins no host {:?}; re-pin with `cargo xtask pin`",
                manifest_path.display(),
                args.host
            )
        })?;
        vec![host]
    };
    eprintln!(
        "qemu {} ({} {}), blob cache {}",
        manifest.source.upstream_version(),
        manifest.source.source_package,
        manifest.source.version,
        cache.root().display()
    );
    // One host's download and extraction keeps one core busy (xz decoding); two at once
    // keep both busy.
    let mirror = Mutex::new(None);
    let queue = Mutex::new(hosts.iter());
    let fetch_hosts = || -> Result<()> {
        loop {
            let next = match queue.lock() {
                Ok(mut queue) => queue.next(),
                Err(_) => return Err(anyhow!("another fetching thread panicked")),
            };
            let Some(host) = next else {
                return Ok(());
            };
            ensure_standalone(&manifest, &cache, host, &mirror)?;
        }
    };
    let results: Vec<Result<()>> = thread::scope(|scope| {
        let workers: Vec<_> = (0..PARALLEL_HOSTS)
            .map(|_| scope.spawn(fetch_hosts))
            .collect();
        workers
            .into_iter()
            .map(|worker| {
                worker
                    .join()
                    .unwrap_or_else(|_| Err(anyhow!("a fetching thread panicked")))
            })
            .collect()
    });
    for result in results {
        result?;
    }
    let build_host = build_host();
    for host in &hosts {
        if host.arch == build_host || args.host != "all" {
            ensure_embedded(&cache, host, Compression::Fast)?;
        }
    }
    eprintln!("fetched in {:.1} s", start.elapsed().as_secs_f64());
    Ok(())
}

/// Hosts fetched at the same time.
const PARALLEL_HOSTS: usize = 2;

/// Makes sure every pinned emulator of `host` has a valid standalone blob in the
/// cache: checks each (decoded and hashed), and when any is missing or invalid,
/// downloads the host's `.deb` from the mirror (found on first use, shared by the
/// callers of one run), checks it and stores the missing ones.
pub fn ensure_standalone(
    manifest: &Manifest,
    cache: &BlobCache,
    host: &Host,
    mirror: &Mutex<Option<Mirror>>,
) -> Result<()> {
    let start = Instant::now();
    let mut missing = Vec::new();
    let mut cached_size = 0;
    for emulator in &host.emulators {
        match blob::cached(cache, emulator) {
            Cached::Valid { compressed_size } => cached_size += compressed_size,
            Cached::Missing => missing.push(emulator),
            Cached::Invalid(err) => {
                eprintln!(
                    "{}: cached blob {} of qemu-{} is invalid, fetching it again: {err}",
                    host.arch,
                    cache.compressed_path(emulator).display(),
                    emulator.cpu
                );
                missing.push(emulator);
            }
        }
    }
    if missing.is_empty() {
        eprintln!(
            "{}: all {} emulators cached and verified ({} compressed) in {:.2} s, nothing to download",
            host.arch,
            host.emulators.len(),
            megabytes(cached_size),
            start.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    let mirror = {
        let mut slot = mirror
            .lock()
            .map_err(|_| anyhow!("another fetching thread panicked"))?;
        match &*slot {
            Some(mirror) => mirror.clone(),
            None => slot.insert(Mirror::from_env()?).clone(),
        }
    };
    let wanted: Vec<Wanted> = missing
        .iter()
        .map(|emulator| Wanted {
            oci: &emulator.oci,
            cpu: &emulator.cpu,
            path: &emulator.path,
            pinned: Some(emulator),
        })
        .collect();
    let package = Package {
        pool_path: &host.pool_path,
        size: host.size,
        sha256: &host.sha256,
        description: format!(
            "{} {} for {}",
            host.package, manifest.source.version, host.debian_arch
        ),
    };
    let stored = download_and_store(&mirror, cache, &package, &wanted)?;
    let fetched_size: u64 = stored.iter().map(|s| s.compressed_size).sum();
    eprintln!(
        "{}: {} emulators fetched, {} already cached; {} compressed in total",
        host.arch,
        stored.len(),
        host.emulators.len() - stored.len(),
        megabytes(cached_size + fetched_size)
    );
    Ok(())
}

/// Embedded blobs made at the same time: each is one single-threaded zstd job per part
/// (libzstd's workers do not split a long-distance-matching job against a prefix), so
/// two keep both cores busy.
const PARALLEL_BLOBS: usize = 2;

/// Makes sure the cache holds a valid embedded form, with `compression`, of every
/// emulator `host`'s binary embeds (see [`blob`]): the reference on its own, the
/// others against it; makes the missing or invalid ones from the cached standalone
/// blobs, which must be valid already (fetched).
pub fn ensure_embedded(cache: &BlobCache, host: &Host, compression: Compression) -> Result<()> {
    let start = Instant::now();
    let reference = host.reference().with_context(|| {
        format!(
            "host {} has no reference emulator pinned (arch_table::HOSTS)",
            host.arch
        )
    })?;
    let read_standalone = |emulator: &Pin| -> Result<Vec<u8>> {
        let path = cache.compressed_path(emulator);
        let compressed =
            fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        blob::decode_standalone(&compressed, emulator).with_context(|| {
            format!(
                "cached blob {} of qemu-{} is invalid: run `cargo xtask fetch`",
                path.display(),
                emulator.cpu
            )
        })
    };
    let reference_bytes = read_standalone(reference)?;
    let embedded = host.embedded();
    let queue = Mutex::new(embedded.iter());
    let total = Mutex::new(0u64);
    let make_blobs = || -> Result<()> {
        loop {
            let next = match queue.lock() {
                Ok(mut queue) => queue.next(),
                Err(_) => return Err(anyhow!("another compressing thread panicked")),
            };
            let Some(emulator) = next else {
                return Ok(());
            };
            let against =
                (emulator.cpu != reference.cpu).then_some((reference, reference_bytes.as_slice()));
            let (size, note) = match blob::cached_embedded(cache, compression, emulator, against) {
                Cached::Valid { compressed_size } => (compressed_size, " (already cached)"),
                state => {
                    if let Cached::Invalid(err) = state {
                        eprintln!(
                            "{}: cached embedded blob of qemu-{} is invalid, making it again: {err}",
                            host.arch, emulator.cpu
                        );
                    }
                    let bytes = read_standalone(emulator)?;
                    (
                        blob::store_embedded(cache, compression, emulator, against, &bytes)?,
                        "",
                    )
                }
            };
            eprintln!(
                "  qemu-{:<12} {:>9} -> {:>9}  {}{note}",
                emulator.cpu,
                megabytes(emulator.size),
                megabytes(size),
                match against {
                    Some((reference, _)) => format!("against qemu-{}", reference.cpu),
                    None => "the reference".to_owned(),
                }
            );
            if let Ok(mut total) = total.lock() {
                *total += size;
            }
        }
    };
    let results: Vec<Result<()>> = thread::scope(|scope| {
        let workers: Vec<_> = (0..PARALLEL_BLOBS)
            .map(|_| scope.spawn(make_blobs))
            .collect();
        workers
            .into_iter()
            .map(|worker| {
                worker
                    .join()
                    .unwrap_or_else(|_| Err(anyhow!("a compressing thread panicked")))
            })
            .collect()
    });
    for result in results {
        result?;
    }
    let total = total.lock().map(|total| *total).unwrap_or_default();
    eprintln!(
        "{}: {} emulators embedded in {} ({} compression, against qemu-{}), checked in {:.2} s",
        host.arch,
        embedded.len(),
        megabytes(total),
        compression.name(),
        reference.cpu,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A `.deb` to download, with what it must hash to.
pub struct Package<'a> {
    /// Path below the mirror root.
    pub pool_path: &'a str,
    /// Expected size in bytes.
    pub size: u64,
    /// Expected sha256.
    pub sha256: &'a str,
    /// For messages: `qemu-user 1:10.0.13+ds-0+deb13u1 for amd64`.
    pub description: String,
}

/// Downloads `package` from `mirror` into the cache directory (hashing as it streams),
/// checks size and sha256, stores the `wanted` emulators in the cache and deletes the
/// `.deb`.
pub fn download_and_store(
    mirror: &Mirror,
    cache: &BlobCache,
    package: &Package<'_>,
    wanted: &[Wanted<'_>],
) -> Result<Vec<Stored>> {
    let file_name = package
        .pool_path
        .rsplit('/')
        .next()
        .unwrap_or(package.pool_path);
    fs::create_dir_all(cache.root())
        .with_context(|| format!("cannot create the blob cache {}", cache.root().display()))?;
    // Dropping `temp` deletes the .deb: the cache keeps only compressed emulators.
    let temp = TempFile::next_to(&cache.root().join(file_name));

    download_to(mirror, package, temp.path()).map_err(|err| match not_found(&err) {
        Some(err) => gone_from_mirror(err, mirror, package),
        None => err,
    })?;

    let start = Instant::now();
    eprintln!(
        "extracting and compressing {} emulators into {}",
        wanted.len(),
        cache.root().display()
    );
    let stored = blob::store_from_deb(cache, temp.path(), file_name, wanted)?;
    let total: u64 = stored.iter().map(|s| s.compressed_size).sum();
    eprintln!(
        "stored {} emulators ({} compressed) in {:.1} s",
        stored.len(),
        megabytes(total),
        start.elapsed().as_secs_f64()
    );
    Ok(stored)
}

/// Downloads `package` from `mirror` to a new file at `dest` (hashing as it streams)
/// and checks its size and sha256. A 404 is returned as the [`HttpError`] itself (see
/// [`not_found`]), for the caller to say what a missing package means for it.
pub fn download_to(mirror: &Mirror, package: &Package<'_>, dest: &Path) -> Result<()> {
    let url = mirror.url(package.pool_path);
    let file_name = package
        .pool_path
        .rsplit('/')
        .next()
        .unwrap_or(package.pool_path);
    eprintln!("downloading {url} ({})", megabytes(package.size));
    let start = Instant::now();
    let body = http::get(&url)?;
    if let Some(length) = body.length.filter(|&length| length != package.size) {
        return Err(anyhow!(
            "{url}: the server announces {length} bytes, but {file_name} must have {} bytes",
            package.size
        ));
    }
    let (size, sha256) = save_hashing(body.reader, dest)
        .with_context(|| format!("downloading {url} to {}", dest.display()))?;
    if size != package.size || sha256 != package.sha256 {
        return Err(anyhow!(
            "{file_name} from {url} is not the pinned file: expected {} bytes with sha256 {}, \
             got {size} bytes with sha256 {sha256}",
            package.size,
            package.sha256
        ));
    }
    let seconds = start.elapsed().as_secs_f64();
    eprintln!(
        "downloaded {} in {seconds:.1} s ({:.1} MB/s), sha256 {sha256} ok",
        megabytes(size),
        size as f64 / 1e6 / seconds.max(1e-3)
    );
    Ok(())
}

/// The 404 an error of [`download_to`] is, if it is one.
pub fn not_found(err: &anyhow::Error) -> Option<&HttpError> {
    err.downcast_ref::<HttpError>()
        .filter(|err| matches!(err, HttpError::NotFound { .. }))
}

/// Copies `reader` to a new file at `path`; returns the size and sha256 of what was copied.
fn save_hashing(mut reader: impl Read, path: &std::path::Path) -> Result<(u64, String)> {
    let mut out = BufWriter::new(File::create(path)?);
    let mut hasher = Sha256::new();
    let mut buf = vec![0; 1 << 16];
    let mut size = 0;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err.into()),
        };
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])?;
        size += n as u64;
    }
    out.flush()?;
    Ok((size, hex::encode(hasher.finalize())))
}

/// The error for a pinned `.deb` the mirror no longer has.
fn gone_from_mirror(err: &HttpError, mirror: &Mirror, package: &Package<'_>) -> anyhow::Error {
    anyhow!(
        "{err}: {} is gone from the mirror {} (from {}); Debian's regular mirrors drop \
         superseded versions at point releases. Either re-pin to the version the mirror has \
         now with `cargo xtask pin` (and commit qemu-blobs/pins.toml), or set {MIRROR_ENV} to \
         a dated URL of Debian's snapshot archive, which keeps every version ever published \
         (its archive/debian/<timestamp>/ directory from a date when this version was current)",
        package.description,
        mirror.base(),
        mirror.origin()
    )
}
