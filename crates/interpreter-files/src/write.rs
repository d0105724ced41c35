//! Writing emulators to files in a checked directory: each decoded on every core and
//! written out with `pwrite` as its pieces finish, to a temporary file that is renamed
//! into place and recorded as verified.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;

use qemu_catalog::Emulator;
use rustix::fs::{AtFlags, FallocateFlags, Mode, OFlags};
use rustix::io::Errno;

use crate::decode::{
    DecodeError, Finished, Prefix, decode_parts, decode_parts_in_windows, decode_reference,
    map_written, reference_for,
};
use crate::error::{Error, io_error};
use crate::file_names::{FILE_MODE, file_name, is_temporary, temporary_name};
use crate::mapping::{Buffer, Window};
use crate::secure_dir::SecureDir;
use crate::verified;
use binfmt_misc::report::Chain;

/// Removes the temporary files of runs that were killed while writing (the caller
/// holds the directory's lock) and returns how many. Failing to is no reason to
/// stop: logged only.
pub(crate) fn remove_leftovers(dir: &SecureDir) -> usize {
    let names = match dir.names() {
        Ok(names) => names,
        Err(error) => {
            log::debug!(
                "not looking for leftover temporary files: {}",
                Chain(&error)
            );
            return 0;
        }
    };
    let mut removed = 0;
    for name in names.into_iter().filter(|name| is_temporary(name)) {
        let shown = String::from_utf8_lossy(&name).into_owned();
        match rustix::fs::unlinkat(dir.fd(), name.as_slice(), AtFlags::empty()) {
            Ok(()) => {
                log::debug!("removed {shown}, left by an interrupted run");
                removed += 1;
            }
            Err(errno) => log::debug!("cannot remove leftover {shown}: {errno}"),
        }
    }
    removed
}

/// Writes emulators to files in `dir` (whose lock the caller holds): the reference
/// first when it is one of them, then the others against it; returns the written
/// files (open), in order.
///
/// One emulator at a time, its parts decoded at once, one per core, into one buffer
/// (the decoder's history) or, for the patches once the reference is written, into a
/// [`Window`] per part (as fast with musl as with glibc: see [`Window`]), each thread
/// writing the pieces it finishes to the file at their offsets right away, while they
/// are hot in the cache. So memory stays at one emulator whatever the number of cores
/// (the buffer is given back before the windows' room is touched), and both cores
/// decode and write all the time. Decoding straight into a shared mapping of the file would need no buffer at
/// all, but each of its 4 KiB pages then costs a page fault, zeroing and (on ext4) a
/// journal handle: about twice the kernel time of `pwrite(2)`.
pub(crate) fn write_files(dir: &SecureDir, jobs: &[Emulator]) -> Vec<Result<File, Error>> {
    let reference = jobs.iter().find_map(Emulator::reference);
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by_key(|&index| Some(jobs[index]) != reference);
    let largest = jobs.iter().map(|e| e.size() as usize).max().unwrap_or(0);
    let mut buffer = None;
    let mut results: Vec<Option<Result<File, Error>>> = jobs.iter().map(|_| None).collect();
    // Prepared at the first patch, once the reference has been written (if wanted).
    let mut patches: Option<PatchMemory> = None;
    for index in order {
        let emulator = &jobs[index];
        let path = dir.path().join(file_name(emulator));
        if let Some(reference) = emulator.reference() {
            let memory = patches.get_or_insert_with(|| {
                let written = jobs
                    .iter()
                    .zip(&results)
                    .find(|(e, _)| **e == reference)
                    .and_then(|(_, result)| result.as_ref()?.as_ref().ok());
                match written {
                    Some(file) => match make_windows(file, &reference, jobs) {
                        Some(windows) => {
                            // The reference's buffer is not needed any more: give it
                            // back before the windows' room is touched.
                            buffer = None;
                            PatchMemory::Windows(windows)
                        }
                        None => PatchMemory::Prefix(map_written(file, &reference)),
                    },
                    None => PatchMemory::Prefix(decode_reference(reference)),
                }
            });
            if let PatchMemory::Windows(windows) = memory {
                results[index] = Some(write_file(dir, emulator, &mut |finished| {
                    decode_parts_in_windows(emulator, windows, finished)
                }));
                continue;
            }
        }
        let buffer = match &mut buffer {
            Some(buffer) => buffer,
            None => match Buffer::new(largest) {
                Ok(made) => buffer.insert(made),
                Err(source) => {
                    results[index] = Some(Err(io_error(&path, "allocate a buffer for", source)));
                    continue;
                }
            },
        };
        let prefix = match &patches {
            Some(PatchMemory::Prefix(prefix)) => Some(prefix),
            _ => None,
        };
        let result = reference_for(emulator, prefix).and_then(|reference| {
            write_file(dir, emulator, &mut |finished| {
                let dst = buffer
                    .bytes_mut()
                    .get_mut(..emulator.size() as usize)
                    .ok_or(DecodeError::Internal {
                        action: "write",
                        what: "internal error: the buffer is too small",
                    })?;
                decode_parts(emulator, dst, reference, finished)
            })
        });
        results[index] = Some(result);
    }
    results
        .into_iter()
        .map(|result| result.unwrap_or_else(|| unreachable!("every job ran")))
        .collect()
}

/// What [`write_files`] decodes patches with.
enum PatchMemory {
    /// A window per part, on the reference written in this run.
    Windows(Vec<Window>),
    /// The reference's bytes, mapped from its file or decoded into memory, or why
    /// they could not be had.
    Prefix(Result<Prefix, String>),
}

/// A [`Window`] per part of the largest patch among `jobs`, on the written
/// `reference`; `None` (and the patches are decoded as the reference is, into one
/// buffer) when they cannot be made.
fn make_windows(file: &File, reference: &Emulator, jobs: &[Emulator]) -> Option<Vec<Window>> {
    let patches = || jobs.iter().filter(|e| e.reference().is_some());
    let parts = patches().map(Emulator::parts).max()?;
    let room = patches()
        .flat_map(|e| (0..e.parts()).map(|part| e.part_range(part).len()))
        .max()?;
    (0..parts)
        .map(|_| Window::new(file, reference.size() as usize, room))
        .collect::<io::Result<Vec<Window>>>()
        .inspect_err(|error| log::debug!("decoding patches without windows: {error}"))
        .ok()
}

/// Writes one emulator to a temporary file in `dir`, then makes it mode 0755, renames
/// it into place and records it as verified; returns it, open. `decode` decodes the
/// emulator, handing each finished piece to the function it is given.
fn write_file(
    dir: &SecureDir,
    emulator: &Emulator,
    decode: &mut dyn FnMut(&Finished<'_>) -> Result<(), DecodeError>,
) -> Result<File, Error> {
    let name = file_name(emulator);
    let temporary = temporary_name(&name);
    let temporary_path = dir.path().join(&temporary);
    // Readable too: a written reference is mapped from this descriptor.
    let fd = rustix::fs::openat(
        dir.fd(),
        temporary.as_str(),
        OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(FILE_MODE),
    )
    .map_err(|errno| io_error(&temporary_path, "create", errno.into()))?;
    let file = File::from(fd);
    let result = fill_file(&file, emulator, decode)
        .map_err(|error| {
            error.into_error(|action, source| io_error(&temporary_path, action, source))
        })
        .and_then(|()| finish_file(dir, &file, &temporary, &name, emulator.sha256()));
    if result.is_err() {
        // Best effort: the temporary name is ours alone (we hold the lock).
        let _ = rustix::fs::unlinkat(dir.fd(), temporary.as_str(), AtFlags::empty());
    }
    result.map(|()| file)
}

/// Decodes `emulator` into `file` (new and empty) with `decode`, each piece written at
/// its offset as it is finished.
fn fill_file(
    file: &File,
    emulator: &Emulator,
    decode: &mut dyn FnMut(&Finished<'_>) -> Result<(), DecodeError>,
) -> Result<(), FillError> {
    let size = emulator.size();
    // Reserving the blocks first makes a full disk fail before any decoding, and saves
    // ext4 reserving them page by page. Filesystems without fallocate (some network
    // and FUSE ones) just get the writes.
    match rustix::fs::fallocate(file.as_fd(), FallocateFlags::empty(), 0, size) {
        Ok(()) | Err(Errno::OPNOTSUPP | Errno::NOSYS) => {}
        Err(errno) => return Err(FillError::Reserve(errno.into())),
    }
    decode(&|offset, chunk| file.write_all_at(chunk, offset as u64)).map_err(FillError::Decode)
}

/// Filling a new file failed: reserving its space, or decoding into it.
enum FillError {
    Reserve(io::Error),
    Decode(DecodeError),
}

impl FillError {
    /// As an error about the file at `path`.
    fn into_error(self, io: impl FnOnce(&'static str, io::Error) -> Error) -> Error {
        match self {
            FillError::Reserve(source) => io("reserve space for", source),
            FillError::Decode(error) => error.into_error(io),
        }
    }
}

/// Makes a fully written temporary file mode 0755, renames it into place and records
/// it as verified.
fn finish_file(
    dir: &SecureDir,
    file: &File,
    temporary: &str,
    name: &str,
    sha256: &str,
) -> Result<(), Error> {
    let path = dir.path().join(name);
    // The umask may have removed bits from the creation mode.
    rustix::fs::fchmod(file, Mode::from_raw_mode(FILE_MODE))
        .map_err(|errno| io_error(&dir.path().join(temporary), "chmod", errno.into()))?;
    binfmt_misc::kill_point::step(&format_args!("rename {} into place", path.display()));
    rustix::fs::renameat(dir.fd(), temporary, dir.fd(), name)
        .map_err(|errno| io_error(&path, "rename into place", errno.into()))?;
    // Written by the checking decoder: recorded as verified (after the rename, which
    // changes the ctime). Without a record the next run hashes it instead.
    if let Err(error) = verified::record(dir, name, file, sha256) {
        log::debug!("cannot record {} as verified: {error}", path.display());
    }
    Ok(())
}
