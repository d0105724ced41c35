//! The emulator files an install registers: checked, and written where missing or
//! wrong, in the interpreter directory ([`interpreter_files::InterpreterDir::ensure_all`]), or held in
//! sealed memfds in memory mode (`binfmt run`) and where the directory is read-only
//! or on FUSE; and what a full disk leaves unwritten ([`no_space`]).

use interpreter_files::{self as files, FileState};
use qemu_catalog::Emulator;

use crate::findings::Finding;
use crate::install::Options;

/// The interpreter files of `emulators`, checked and written where needed; in a memfd
/// each in memory mode, or where the directory is read-only or on FUSE. Fails as a
/// whole when the directory cannot be used at all.
pub fn emulator_files(
    emulators: &[Emulator],
    options: &Options,
) -> Result<Vec<files::Ensured>, files::Error> {
    let in_memory = |emulators: &[Emulator]| -> Vec<_> {
        files::write_memfds(emulators)
            .into_iter()
            .map(|memfd| memfd.map(|interpreter| (interpreter, FileState::Missing)))
            .collect()
    };
    if options.in_memory {
        return Ok(in_memory(emulators));
    }
    let mut files = match options.interpreter_dir.ensure_all(emulators) {
        Ok(files) => files,
        Err(error @ (files::Error::ReadOnly { .. } | files::Error::OnFuse { .. })) => {
            warn_in_memory(&error, emulators);
            return Ok(in_memory(emulators));
        }
        Err(error) => return Err(error),
    };
    let falling_back: Vec<usize> = files
        .iter()
        .enumerate()
        .filter(|(_, file)| {
            matches!(
                file,
                Err(files::Error::ReadOnly { .. } | files::Error::OnFuse { .. })
            )
        })
        .map(|(index, _)| index)
        .collect();
    let Some(&first) = falling_back.first() else {
        return Ok(files);
    };
    let moved: Vec<Emulator> = falling_back.iter().map(|&i| emulators[i]).collect();
    if let Err(error) = &files[first] {
        warn_in_memory(error, &moved);
    }
    for (index, memfd) in falling_back.into_iter().zip(in_memory(&moved)) {
        files[index] = memfd;
    }
    Ok(files)
}

/// Says that `moved` are held in memory because of `error` (the directory is on FUSE
/// or read-only), and what that costs.
fn warn_in_memory(error: &files::Error, moved: &[Emulator]) {
    let names = moved
        .iter()
        .map(|e| format!("qemu-{}", e.arch().qemu_cpu()))
        .collect::<Vec<_>>()
        .join(", ");
    let megabytes = moved.iter().map(Emulator::size).sum::<u64>() / 1_000_000;
    match error {
        files::Error::OnFuse { path } => log::warn!(
            "{} is on FUSE (fuse-overlayfs?): a file there stops working when its daemon \
             exits with the container, so {names} are held in memory instead (memfds, {megabytes} \
             MB of RAM while registered); fix: mount a volume there (the image declares one) or \
             give a disk directory with --interpreter-dir",
            path.display(),
        ),
        files::Error::ReadOnly { path } => log::warn!(
            "{} is read-only: {names} are held in memory (memfds, {megabytes} MB of RAM while \
             registered); fix: give a writable disk directory with --interpreter-dir",
            path.display(),
        ),
        _ => {}
    }
}

/// The finding that `full`, emulators whose file could not be written for want of
/// space (ENOSPC), were not written: what they need and what is free.
pub fn no_space(full: &[Emulator], options: &Options) -> Option<Finding> {
    if full.is_empty() {
        return None;
    }
    let dir = options.interpreter_dir.dir();
    // The directory itself may be what could not be created.
    let free = dir
        .ancestors()
        .find_map(|dir| rustix::fs::statvfs(dir).ok())
        .map(|stat| stat.f_bavail.saturating_mul(stat.f_frsize));
    Some(Finding::NoSpace {
        dir: dir.to_owned(),
        arches: full.iter().map(|emulator| emulator.arch()).collect(),
        needed: full.iter().map(|emulator| emulator.size()).sum(),
        free,
    })
}
