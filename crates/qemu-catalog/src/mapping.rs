//! Memory to decode emulators into and to read the reference emulator from.
//!
//! - [`Mapping`]: a file or memfd mapped with
//!   [`mmap(2)`](https://man7.org/linux/man-pages/man2/mmap.2.html), `MAP_SHARED` to
//!   decode straight into a memfd, `MAP_PRIVATE` read-only to read a written reference
//!   emulator from the page cache (a private read-only mapping never stops a memfd from
//!   being sealed, unlike a shared one). Its pages can be dropped from the process with
//!   [`madvise(2)`](https://man7.org/linux/man-pages/man2/madvise.2.html)
//!   `MADV_DONTNEED` and fault back in from the page cache when read again.
//! - [`Buffer`]: anonymous memory that is returned to the system when dropped.
//!
use std::fs::File;
use std::io;
use std::ptr::NonNull;

use rustix::mm::{Advice, MapFlags, ProtFlags};

/// `len` bytes of a file, mapped.
///
/// Only ever made for files this process created and nobody else can resize (a new
/// `O_EXCL` file in a root-owned directory, or a memfd): a file shrinking under a
/// mapping would turn accesses past its end into `SIGBUS`.
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    writable: bool,
}

// The mapping is plain memory owned by this value; sharing `&Mapping` shares only
// reads of it.
unsafe impl Send for Mapping {}
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps the first `len` bytes of `file` (which must be at least that long)
    /// read-write, or read-only when `writable` is false.
    pub(crate) fn new(file: &File, len: usize, writable: bool) -> io::Result<Mapping> {
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot map an empty file",
            ));
        }
        let (prot, flags) = if writable {
            (ProtFlags::READ | ProtFlags::WRITE, MapFlags::SHARED)
        } else {
            (ProtFlags::READ, MapFlags::PRIVATE)
        };
        // SAFETY: a new mapping at an address of the kernel's choosing aliases no Rust
        // memory; the file is ours and keeps its length (see the type's docs).
        let ptr = unsafe { rustix::mm::mmap(std::ptr::null_mut(), len, prot, flags, file, 0) }?;
        let ptr = NonNull::new(ptr.cast::<u8>())
            .ok_or_else(|| io::Error::other("mmap returned a null mapping"))?;
        Ok(Mapping { ptr, len, writable })
    }

    /// The mapped bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: `len` bytes are mapped readable for the lifetime of `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The mapped bytes, to write into. Panics on a read-only mapping (a bug).
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        assert!(self.writable, "writing to a read-only mapping");
        // SAFETY: `len` bytes are mapped writable for the lifetime of `self`, and
        // `&mut self` makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: exactly the region `new` mapped; no reference to it outlives `self`.
        // Failing to unmap leaves an unused mapping behind: nothing to do about it.
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

impl Mapping {
    /// Drops every page of a read-only mapping from this process's memory. The bytes do
    /// not change: a private file mapping never written holds only page cache pages,
    /// which fault back in when read again. So this may run while other threads read
    /// the mapping; it only changes what counts as this process's resident memory.
    pub(crate) fn release_all(&self) {
        if self.writable {
            return;
        }
        // SAFETY: the whole mapping, a private file mapping never written: its content
        // refaults unchanged from the file.
        let _ = unsafe {
            rustix::mm::madvise(self.ptr.as_ptr().cast(), self.len, Advice::LinuxDontNeed)
        };
    }
}

/// Anonymous memory to decode into: zero pages until touched, and given back to the
/// system when dropped (rather than kept by the allocator for later), so that what it
/// costs in resident memory ends with it.
pub(crate) struct Buffer {
    ptr: NonNull<u8>,
    len: usize,
}

// Plain memory owned by this value.
unsafe impl Send for Buffer {}

impl Buffer {
    /// `len` bytes of private anonymous memory.
    pub(crate) fn new(len: usize) -> io::Result<Buffer> {
        // SAFETY: a new anonymous mapping aliases no Rust memory.
        let ptr = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                len.max(1),
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE,
            )
        }?;
        let ptr = NonNull::new(ptr.cast::<u8>())
            .ok_or_else(|| io::Error::other("mmap returned a null mapping"))?;
        // Transparent huge pages where the kernel offers them (enabled=madvise, the
        // usual default): a 15 MB buffer then costs 8 page faults instead of ~4000,
        // which measured a third of a one-architecture install's time here. Advice
        // only: without THP the pages are just small.
        // SAFETY: advice on the mapping just made; it changes no content.
        let _ =
            unsafe { rustix::mm::madvise(ptr.as_ptr().cast(), len.max(1), Advice::LinuxHugepage) };
        Ok(Buffer { ptr, len })
    }

    /// The memory.
    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: `len` bytes are mapped readable for the lifetime of `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The memory, to write into.
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: `len` bytes are mapped read-write for the lifetime of `self`, and
        // `&mut self` makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

// Shared references only read.
unsafe impl Sync for Buffer {}

impl Drop for Buffer {
    fn drop(&mut self) {
        // SAFETY: exactly the region `new` mapped; no reference to it outlives `self`.
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len.max(1)) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, Write};

    const PAGE: usize = 4096;

    fn memfd() -> File {
        File::from(
            rustix::fs::memfd_create("mapping-test", rustix::fs::MemfdFlags::CLOEXEC).unwrap(),
        )
    }

    #[test]
    fn writes_through_to_the_file() {
        let mut file = memfd();
        let len = 5 * PAGE + 123;
        file.set_len(len as u64).unwrap();
        let mut mapping = Mapping::new(&file, len, true).unwrap();
        for (i, byte) in mapping.bytes_mut().iter_mut().enumerate() {
            *byte = (i % 251) as u8;
        }
        drop(mapping);
        let mut content = Vec::new();
        file.rewind().unwrap();
        file.read_to_end(&mut content).unwrap();
        assert_eq!(content.len(), len);
        assert!(
            content
                .iter()
                .enumerate()
                .all(|(i, b)| *b == (i % 251) as u8)
        );
    }

    #[test]
    fn a_read_only_mapping_reads_the_file_before_and_after_release() {
        let file = memfd();
        let content: Vec<u8> = (0..3 * PAGE).map(|i| (i % 253) as u8).collect();
        (&file).write_all(&content).unwrap();
        let mapping = Mapping::new(&file, content.len(), false).unwrap();
        assert!(mapping.bytes() == content);
        mapping.release_all();
        assert!(mapping.bytes() == content);
    }

    #[test]
    fn a_buffer_is_zeroed_memory_of_its_size() {
        let mut buffer = Buffer::new(2 * PAGE + 1).unwrap();
        assert_eq!(buffer.bytes().len(), 2 * PAGE + 1);
        assert!(buffer.bytes().iter().all(|b| *b == 0));
        buffer.bytes_mut()[2 * PAGE] = 7;
        assert_eq!(buffer.bytes()[2 * PAGE], 7);
    }

    #[test]
    fn an_empty_mapping_is_refused() {
        assert!(Mapping::new(&memfd(), 0, false).is_err());
    }
}
