//! Decoding emulators on every core: each emulator's parts at once, one thread per
//! part, against the reference emulator's bytes when it is a patch (see
//! `qemu_catalog::emulator`), into memory the caller chose, handing each finished
//! piece on as it comes.
//!
//! Three kinds of memory to decode into, chosen by the callers ([`crate::write`],
//! [`crate::memfd`]): one buffer as large as an emulator, a [`Window`] per part right
//! after a mapping of the written reference, or a memfd's own mapped memory. The
//! reference itself is a [`Prefix`]: mapped from where it was written, or decoded
//! into memory when it is not wanted itself.

use std::fmt;
use std::fs::File;
use std::io;

use qemu_catalog::Emulator;
use qemu_catalog::emulator::{Piece, WriteError};

use binfmt_misc::report::Chain;

use crate::error::Error;
use crate::mapping::{self, Buffer, Mapping, Window};
use crate::threads::in_threads;

/// How often (in output bytes, per thread) a patch's decoder drops the reference's
/// pages from the process: they fault back in as it reads them (a few hundred faults
/// more per run), and only those read lately stay. Measured peak RSS of a cold
/// `--install all`: 38 MB every 1 MiB, 35 MB every 512 KiB.
const RELEASE_REFERENCE_EVERY: usize = 512 << 10;

/// Decoding failed; the caller says where it was decoding to.
#[derive(Debug)]
pub(crate) enum DecodeError {
    /// Handing a finished piece on (writing it out) failed.
    Sink(io::Error),
    /// The embedded emulator did not come out as pinned.
    Emulator(WriteError),
    /// A bug in binfmt, found while doing `action` ("write", "decode").
    Internal {
        action: &'static str,
        what: &'static str,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Sink(_) => f.write_str("cannot write the decoded bytes"),
            DecodeError::Emulator(error) => error.fmt(f),
            DecodeError::Internal { action, what } => write!(f, "cannot {action}: {what}"),
        }
    }
}

impl std::error::Error for DecodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DecodeError::Sink(source) => Some(source),
            DecodeError::Emulator(error) => std::error::Error::source(error),
            DecodeError::Internal { .. } => None,
        }
    }
}

impl DecodeError {
    /// As an I/O error of the file or memfd decoded into (`Sink` and `Internal`), or
    /// the emulator's error; `io` makes the first from the action and the source.
    pub(crate) fn into_error(self, io: impl FnOnce(&'static str, io::Error) -> Error) -> Error {
        match self {
            DecodeError::Sink(source) => io("write", source),
            DecodeError::Emulator(error) => Error::Emulator(error),
            DecodeError::Internal { action, what } => io(action, io::Error::other(what)),
        }
    }
}

/// The reference emulator's bytes, for decoding patches against.
pub(crate) enum Prefix {
    /// Mapped from the file or memfd it was just written to: its pages can be dropped
    /// from this process and fault back in from the page cache.
    Written(Mapping),
    /// Decoded into memory only, because it is not wanted itself.
    Decoded(Buffer),
}

impl Prefix {
    fn bytes(&self) -> &[u8] {
        match self {
            Prefix::Written(mapping) => mapping.bytes(),
            Prefix::Decoded(buffer) => buffer.bytes(),
        }
    }

    /// Drops what this process holds of it that can be had again (see
    /// [`Mapping::release_all`]); anonymous memory has to stay.
    fn release(&self) {
        if let Prefix::Written(mapping) = self {
            mapping.release_all();
        }
    }
}

/// The reference's bytes to decode `emulator` against (`None` when it is not a
/// patch), or why they could not be had: `prefix` is the reference decoded or
/// mapped, or why that failed.
pub(crate) fn reference_for<'a>(
    emulator: &Emulator,
    prefix: Option<&'a Result<Prefix, String>>,
) -> Result<Option<&'a Prefix>, Error> {
    match (emulator.reference(), prefix) {
        (None, _) => Ok(None),
        (Some(_), Some(Ok(prefix))) => Ok(Some(prefix)),
        (Some(reference), Some(Err(reason))) => Err(Error::Reference {
            emulator: emulator.arch(),
            reference: reference.arch(),
            reason: reason.clone(),
        }),
        (Some(reference), None) => Err(Error::Reference {
            emulator: emulator.arch(),
            reference: reference.arch(),
            reason: "internal error: it was not decoded".to_owned(),
        }),
    }
}

/// The reference emulator decoded into memory (on every core), for patches when the
/// reference itself is not being written.
pub(crate) fn decode_reference(reference: Emulator) -> Result<Prefix, String> {
    let mut buffer = Buffer::new(reference.size() as usize).map_err(|e| e.to_string())?;
    decode_parts(&reference, buffer.bytes_mut(), None, &|_, _| Ok(()))
        .map_err(|error| Chain(&error).to_string())?;
    Ok(Prefix::Decoded(buffer))
}

/// A read-only mapping of a written reference emulator, to decode patches against.
pub(crate) fn map_written(file: &File, emulator: &Emulator) -> Result<Prefix, String> {
    Mapping::new(file, emulator.size() as usize, false)
        .map(Prefix::Written)
        .map_err(|error| format!("cannot map it: {error}"))
}

pub(crate) type Finished<'a> = dyn Fn(usize, &[u8]) -> io::Result<()> + Sync + 'a;

/// Decodes every part of `emulator` into its place in `dst` (all of it), one thread
/// per part (as many at once as there are cores); `finished(offset, chunk)` gets each
/// finished piece with its offset in the emulator. The reference's pages are
/// dropped from this process every few MB each thread decodes: they fault back in as
/// the decoder reads them, and only those read lately stay.
pub(crate) fn decode_parts(
    emulator: &Emulator,
    dst: &mut [u8],
    reference: Option<&Prefix>,
    finished: &Finished<'_>,
) -> Result<(), DecodeError> {
    let release = || {
        if let Some(reference) = reference {
            reference.release();
        }
    };
    let mut jobs = Vec::new();
    let mut rest = dst;
    for part in 0..emulator.parts() {
        let range = emulator.part_range(part);
        let (slice, tail) = rest.split_at_mut(range.len().min(rest.len()));
        jobs.push(PartJob {
            part,
            start: range.start,
            dst: slice,
            reference: reference.map(Prefix::bytes),
            release: &release,
        });
        rest = tail;
    }
    decode_jobs(emulator, jobs, finished)
}

/// Decodes every part of `emulator` (a patch) into the room of its own [`Window`],
/// right after the reference (see [`Window`] for why), as [`decode_parts`] does
/// otherwise. There must be a window per part, each with room for it.
pub(crate) fn decode_parts_in_windows(
    emulator: &Emulator,
    windows: &mut [Window],
    finished: &Finished<'_>,
) -> Result<(), DecodeError> {
    let mut jobs = Vec::new();
    let mut releasers = Vec::new();
    for (part, window) in (0..emulator.parts()).zip(windows.iter_mut()) {
        let range = emulator.part_range(part);
        let (reference, room, releaser) = window.split();
        let dst = room.get_mut(..range.len()).ok_or(DecodeError::Internal {
            action: "write",
            what: "internal error: a window is too small",
        })?;
        jobs.push((part, range.start, dst, reference));
        releasers.push(releaser);
    }
    if jobs.len() != emulator.parts() {
        return Err(DecodeError::Internal {
            action: "write",
            what: "internal error: too few windows",
        });
    }
    let releases: Vec<_> = releasers
        .iter()
        .map(|releaser| move || releaser.release())
        .collect();
    let jobs = jobs
        .into_iter()
        .zip(&releases)
        .map(|((part, start, dst, reference), release)| PartJob {
            part,
            start,
            dst,
            reference: Some(reference),
            release,
        })
        .collect();
    decode_jobs(emulator, jobs, finished)
}

/// One part to decode: where it goes, against what, and what drops the reference's
/// pages from this process.
struct PartJob<'a> {
    part: usize,
    /// Its offset in the emulator.
    start: usize,
    dst: &'a mut [u8],
    reference: Option<&'a [u8]>,
    release: &'a (dyn Fn() + Sync),
}

/// Decodes the parts, one thread per part (as many at once as there are cores);
/// `finished(offset, chunk)` gets each finished piece with its offset in the
/// emulator. Each thread drops the reference's pages every few MB it decodes.
fn decode_jobs(
    emulator: &Emulator,
    jobs: Vec<PartJob<'_>>,
    finished: &Finished<'_>,
) -> Result<(), DecodeError> {
    let result = decode_jobs_in_threads(emulator, jobs, finished);
    // Each emulator is decoded once per run.
    mapping::release_static(emulator.compressed());
    result
}

/// Decodes the parts (see [`decode_jobs`]), then undoes the filters over all of
/// them, which hands on the bytes the parts' decoders held back.
fn decode_jobs_in_threads(
    emulator: &Emulator,
    mut jobs: Vec<PartJob<'_>>,
    finished: &Finished<'_>,
) -> Result<(), DecodeError> {
    let from_emulator = |error| match error {
        WriteError::Io { source, .. } => DecodeError::Sink(source),
        other => DecodeError::Emulator(other),
    };
    let decode = |job: &mut PartJob<'_>| -> Result<(), DecodeError> {
        let mut released = job.start;
        emulator
            .decode_part(job.part, job.dst, job.reference, &mut |offset, chunk| {
                finished(offset, chunk)?;
                let done = offset + chunk.len();
                if job.reference.is_some()
                    && done.saturating_sub(released) >= RELEASE_REFERENCE_EVERY
                {
                    (job.release)();
                    released = done;
                }
                Ok(())
            })
            .map_err(from_emulator)
    };
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    if cores < 2 || jobs.len() < 2 {
        jobs.iter_mut().try_for_each(decode)?;
    } else {
        in_threads(|scope| {
            let mut jobs = jobs.iter_mut();
            let first = jobs.next();
            let others: Vec<_> = jobs.map(|job| scope.spawn(move || decode(job))).collect();
            let mut result = first.map_or(Ok(()), decode);
            for other in others {
                let joined = other.join().unwrap_or(Err(DecodeError::Internal {
                    action: "decode",
                    what: "a decoding thread panicked",
                }));
                result = result.and(joined);
            }
            result
        })?;
    }
    let mut pieces: Vec<Piece<'_>> = jobs
        .iter_mut()
        .map(|job| Piece {
            offset: job.start,
            bytes: &mut *job.dst,
        })
        .collect();
    emulator
        .unfilter(&mut pieces, &mut |offset, chunk| finished(offset, chunk))
        .map_err(from_emulator)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::error::io_error;

    #[test]
    fn a_decoding_error_gets_the_path_of_what_was_written() {
        let path = Path::new("/var/lib/binfmt/.qemu-arm-0123456789abcdef.tmp-7");
        let at_path = |action, source| io_error(path, action, source);
        for (error, action) in [
            (DecodeError::Sink(io::Error::from_raw_os_error(28)), "write"),
            (
                DecodeError::Internal {
                    action: "decode",
                    what: "a decoding thread panicked",
                },
                "decode",
            ),
        ] {
            match error.into_error(at_path) {
                Error::Io {
                    path: named,
                    action: done,
                    ..
                } => {
                    assert_eq!(named, path);
                    assert_eq!(done, action);
                }
                other => panic!("expected an Io error, got {other:?}"),
            }
        }
    }
}
