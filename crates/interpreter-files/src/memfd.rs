//! Emulators in sealed memfds: for `binfmt run` (an unprivileged user owns no
//! directory the kernel should trust), and where the interpreter directory is
//! read-only or on FUSE.
//!
//! A memfd is decoded straight into its own memory (mapped), then sealed against
//! writes, growth and shrinking: nothing can change the interpreter the kernel holds.
//! It pins its ~15 MB in RAM for as long as the entry exists, so disk is preferred.

use std::fs::File;
use std::os::fd::AsFd;

use qemu_catalog::Emulator;
use rustix::fs::{FallocateFlags, MemfdFlags, SealFlags};
use rustix::io::Errno;

use crate::decode::{Prefix, decode_parts, decode_reference, map_written, reference_for};
use crate::error::Error;
use crate::interpreter::Interpreter;
use crate::mapping::Mapping;

/// Writes the emulator into a sealed memfd; see [`write_memfds`].
pub fn write_memfd(emulator: &Emulator) -> Result<Interpreter, Error> {
    write_memfds(std::slice::from_ref(emulator))
        .pop()
        .unwrap_or_else(|| unreachable!("one result per emulator"))
}

/// Writes each emulator into a sealed memfd and returns, in order, interpreters whose
/// paths are `/proc/self/fd/<n>`, which the kernel resolves when it registers with
/// flag F.
///
/// Each memfd is sealed against writes, growth and shrinking once filled: nothing can
/// change the interpreter the kernel holds.
pub fn write_memfds(emulators: &[Emulator]) -> Vec<Result<Interpreter, Error>> {
    let mut results: Vec<Option<Result<File, Error>>> = emulators.iter().map(|_| None).collect();
    // The reference first, when it is wanted itself: the others decode against it.
    let reference = emulators.iter().find_map(Emulator::reference);
    let mut prefix = None;
    if let Some(index) = reference.and_then(|r| emulators.iter().position(|e| *e == r)) {
        let result = write_memfd_file(&emulators[index], None);
        if let Ok(file) = &result {
            prefix = Some(map_written(file, &emulators[index]));
        }
        results[index] = Some(result);
    }
    let prefix = reference.map(|reference| prefix.unwrap_or_else(|| decode_reference(reference)));
    // One after another: each one's parts already use every core.
    for (emulator, result) in emulators.iter().zip(results.iter_mut()) {
        if result.is_none() {
            *result = Some(
                reference_for(emulator, prefix.as_ref())
                    .and_then(|reference| write_memfd_file(emulator, reference)),
            );
        }
    }
    results
        .into_iter()
        .map(|result| {
            result
                .unwrap_or_else(|| unreachable!("every emulator was written"))
                .map(Interpreter::in_memfd)
        })
        .collect()
}

/// Writes one emulator into a new sealed memfd, decoded straight into the memfd's own
/// memory (mapped): there is nothing to copy it from.
fn write_memfd_file(emulator: &Emulator, reference: Option<&Prefix>) -> Result<File, Error> {
    let memfd_error = |source| Error::Memfd { source };
    let file = create_memfd(emulator)?;
    let size = emulator.size() as usize;
    // Reserving the memory first makes running out of it an error here instead of a
    // SIGBUS when the decoder touches a page that cannot be allocated.
    rustix::fs::fallocate(file.as_fd(), FallocateFlags::empty(), 0, size as u64)
        .map_err(|errno| memfd_error(errno.into()))?;
    {
        let mut mapping = Mapping::new(&file, size, true).map_err(memfd_error)?;
        decode_parts(emulator, mapping.bytes_mut(), reference, &|_, _| Ok(()))
            .map_err(|error| error.into_error(|_, source| memfd_error(source)))?;
    }
    rustix::fs::fcntl_add_seals(
        &file,
        SealFlags::WRITE | SealFlags::GROW | SealFlags::SHRINK | SealFlags::SEAL,
    )
    .map_err(|errno| memfd_error(errno.into()))?;
    Ok(file)
}

fn create_memfd(emulator: &Emulator) -> Result<File, Error> {
    let name = format!("qemu-{}", emulator.arch().qemu_cpu());
    let flags = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
    // Since Linux 6.3 a memfd is executable only when created with MFD_EXEC if the
    // vm.memfd_noexec sysctl asks for it; older kernels reject the flag with EINVAL.
    let fd = rustix::fs::memfd_create(&name, flags | MemfdFlags::EXEC)
        .or_else(|errno| match errno {
            Errno::INVAL => rustix::fs::memfd_create(&name, flags),
            errno => Err(errno),
        })
        .map_err(|errno| Error::Memfd {
            source: errno.into(),
        })?;
    Ok(File::from(fd))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::interpreter::is_memfd_path;
    use crate::testing::foreign_emulator;

    #[test]
    fn memfd_holds_the_exact_emulator_and_is_sealed() {
        let patched = foreign_emulator();
        let reference = patched.reference().unwrap();
        let interpreters = write_memfds(&[patched, reference]);
        for (emulator, interpreter) in [patched, reference].iter().zip(interpreters) {
            let interpreter = interpreter.unwrap();
            assert!(interpreter.is_memfd());
            assert!(is_memfd_path(interpreter.path()));
            let mut file = File::open(interpreter.path()).unwrap();
            assert!(emulator.matches(&mut file).unwrap());
            let writable = std::fs::OpenOptions::new()
                .write(true)
                .open(interpreter.path());
            if let Ok(mut writable) = writable {
                assert!(
                    writable.write_all(b"x").is_err(),
                    "sealed memfd accepted a write"
                );
            }
        }
    }
}
