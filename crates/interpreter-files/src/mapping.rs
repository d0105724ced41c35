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
//! - [`Window`]: a written reference emulator mapped with room for output right after
//!   its last byte, so that zstd finds the reference where a prefix of the output
//!   would be (see its documentation for why that matters).
//! - [`release_static`]: drops pages of the executable's own read-only data.
//!
//! This module holds every `unsafe` block of the crate but one test's `fork`.

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

// SAFETY: the mapping is plain memory owned by this value; sharing `&Mapping` shares
// only reads of it.
unsafe impl Send for Mapping {}
// SAFETY: as for `Send`: `&Mapping` gives only reads.
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

// SAFETY: plain memory owned by this value.
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

// SAFETY: shared references only read.
unsafe impl Sync for Buffer {}

impl Drop for Buffer {
    fn drop(&mut self) {
        // SAFETY: exactly the region `new` mapped; no reference to it outlives `self`.
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len.max(1)) };
    }
}

/// A written reference emulator mapped privately, immediately followed in memory by
/// `capacity` bytes of room to decode one part of a patch into.
///
/// Why: zstd decodes a patch against a prefix (the reference). When the output buffer
/// does not begin where the prefix ends, every match into the reference is an
/// "external dictionary" match, copied with a call to `memmove`, and musl's is a plain
/// `rep movsq` that is slow on the short copies most matches are: patches decoded ~22%
/// slower here than with the output right after the prefix, where zstd copies matches
/// inline (16 bytes at a time). glibc's memmove hides the difference; the release
/// binaries are musl.
///
/// Layout, from `base` (page-aligned): the reference file's pages (`MAP_PRIVATE`,
/// read-write), then anonymous memory. The room begins at `base + reference_len`,
/// inside the file's last page when the size is not a multiple of the page size: the
/// first write there makes that page a private copy, so the file never changes. The
/// anonymous part starts 2 MiB-aligned, for transparent huge pages (as [`Buffer`]).
pub(crate) struct Window {
    /// The whole reservation, unmapped together when dropped.
    reserved: NonNull<u8>,
    reserved_len: usize,
    /// Where the reference's first byte is mapped.
    base: NonNull<u8>,
    reference_len: usize,
    capacity: usize,
}

// SAFETY: plain memory owned by this value; see `Window::split` for how it is shared.
unsafe impl Send for Window {}

/// The alignment of a transparent huge page on x86_64 and aarch64 (4 KiB pages).
const HUGE_PAGE: usize = 2 << 20;

impl Window {
    /// Maps the first `reference_len` bytes of `reference` (a file at least that long,
    /// that this process made and nobody else can change, as for [`Mapping`]) and
    /// `capacity` bytes of room after them.
    pub(crate) fn new(
        reference: &File,
        reference_len: usize,
        capacity: usize,
    ) -> io::Result<Window> {
        if reference_len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot map an empty reference",
            ));
        }
        let page = rustix::param::page_size();
        let file_len = reference_len.next_multiple_of(page);
        let room_start = reference_len;
        let anonymous_len = (room_start + capacity).saturating_sub(file_len).max(1);
        // Room to slide the layout so that the anonymous part is 2 MiB-aligned.
        let reserved_len = file_len + HUGE_PAGE + anonymous_len.next_multiple_of(page);
        // SAFETY: a new inaccessible anonymous mapping aliases no Rust memory.
        let reserved = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                reserved_len,
                ProtFlags::empty(),
                MapFlags::PRIVATE | MapFlags::NORESERVE,
            )
        }?;
        let reserved = NonNull::new(reserved.cast::<u8>())
            .ok_or_else(|| io::Error::other("mmap returned a null mapping"))?;
        // From here on, dropping `window` unmaps the whole reservation.
        let mut window = Window {
            reserved,
            reserved_len,
            base: reserved,
            reference_len,
            capacity,
        };
        let anonymous = (reserved.as_ptr() as usize + file_len).next_multiple_of(HUGE_PAGE);
        let base = anonymous - file_len;
        // SAFETY: both mappings replace parts of the reservation above (MAP_FIXED
        // inside a region this value owns), which nothing references yet. The file is
        // ours and keeps its length (see the type's docs); a private mapping never
        // writes to it.
        unsafe {
            rustix::mm::mmap(
                base as *mut _,
                file_len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE | MapFlags::FIXED,
                reference,
                0,
            )?;
            rustix::mm::mmap_anonymous(
                anonymous as *mut _,
                anonymous_len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE | MapFlags::FIXED,
            )?;
            // Advice only, as for `Buffer`.
            let _ = rustix::mm::madvise(anonymous as *mut _, anonymous_len, Advice::LinuxHugepage);
            let _ = rustix::mm::madvise(base as *mut _, file_len, Advice::Random);
        }
        window.base = NonNull::new(base as *mut u8)
            .ok_or_else(|| io::Error::other("a window at address 0"))?;
        Ok(window)
    }

    /// The reference's bytes and the room right after them, with what drops the
    /// reference's pages from this process (see [`Releaser`]).
    pub(crate) fn split(&mut self) -> (&[u8], &mut [u8], Releaser) {
        let base = self.base.as_ptr();
        // SAFETY: `reference_len + capacity` bytes from `base` are mapped readable and
        // writable for the lifetime of `self` (see `new`). The two slices do not
        // overlap, and `&mut self` makes them the only references into the window.
        let (reference, room) = unsafe {
            (
                std::slice::from_raw_parts(base, self.reference_len),
                std::slice::from_raw_parts_mut(base.add(self.reference_len), self.capacity),
            )
        };
        let page = rustix::param::page_size();
        let releaser = Releaser {
            start: self.base,
            // Only whole pages of the reference: the page the room begins in is a
            // private copy once written, and dropping it would lose output.
            len: self.reference_len / page * page,
        };
        (reference, room, releaser)
    }
}

impl Drop for Window {
    fn drop(&mut self) {
        // SAFETY: exactly the reservation `new` made (the fixed mappings lie inside
        // it); no reference into it outlives `self`.
        let _ = unsafe { rustix::mm::munmap(self.reserved.as_ptr().cast(), self.reserved_len) };
    }
}

/// Drops the pages of a [`Window`]'s reference from this process's memory, as
/// [`Mapping::release_all`] does: they are private file pages never written, which
/// fault back in unchanged from the page cache, so this may run while the reference
/// is being read. Valid while the window it came from lives, which the borrows of
/// [`Window::split`] ensure for its callers.
#[derive(Clone, Copy)]
pub(crate) struct Releaser {
    start: NonNull<u8>,
    len: usize,
}

// SAFETY: it only ever passes the address to madvise(2).
unsafe impl Send for Releaser {}
// SAFETY: as for `Send`.
unsafe impl Sync for Releaser {}

impl Releaser {
    /// Drops the pages.
    pub(crate) fn release(&self) {
        if self.len == 0 {
            return;
        }
        // SAFETY: whole pages of a private file mapping that are never written (see
        // the type's docs).
        let _ = unsafe {
            rustix::mm::madvise(self.start.as_ptr().cast(), self.len, Advice::LinuxDontNeed)
        };
    }
}

/// Drops the whole pages of `bytes`, data of the executable's read-only image, from
/// the process's resident memory: for an embedded emulator's compressed bytes once it
/// has been decoded for this run (a cold `--install all` reads 8 MB of them once each,
/// and they would otherwise stay counted until exit).
///
/// `include_bytes!` data lives in `.rodata`, a private file mapping that nothing
/// writes (the static binaries refuse text relocations), so like
/// [`Mapping::release_all`] this changes no byte: a page read again faults back in from
/// the page cache. Only whole pages inside the slice are touched.
pub(crate) fn release_static(bytes: &'static [u8]) {
    let page = rustix::param::page_size();
    let start = (bytes.as_ptr() as usize).next_multiple_of(page);
    let end = (bytes.as_ptr() as usize + bytes.len()) / page * page;
    if end > start {
        // SAFETY: whole pages of a read-only, never-written file mapping (see above);
        // advice that changes no content.
        let _ = unsafe { rustix::mm::madvise(start as *mut _, end - start, Advice::LinuxDontNeed) };
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
    fn a_window_puts_the_room_right_after_the_reference_and_never_writes_the_file() {
        for reference_len in [3 * PAGE, 3 * PAGE + 123, 1] {
            let file = memfd();
            let content: Vec<u8> = (0..reference_len).map(|i| (i % 241) as u8).collect();
            (&file).write_all(&content).unwrap();
            let capacity = 5 * PAGE + 7;
            let mut window = Window::new(&file, reference_len, capacity).unwrap();
            let (reference, room, releaser) = window.split();
            assert!(reference == content);
            assert_eq!(
                reference.as_ptr_range().end,
                room.as_ptr(),
                "contiguous in memory"
            );
            assert_eq!(room.len(), capacity);
            for (i, byte) in room.iter_mut().enumerate() {
                *byte = (i % 239) as u8;
            }
            // Releasing the reference keeps it and the room as they are.
            releaser.release();
            assert!(reference == content);
            assert!(room.iter().enumerate().all(|(i, b)| *b == (i % 239) as u8));
            drop(window);
            let mut on_file = Vec::new();
            (&file).rewind().unwrap();
            (&file).read_to_end(&mut on_file).unwrap();
            assert_eq!(on_file, content, "the file is unchanged");
        }
    }

    #[test]
    fn an_empty_mapping_is_refused() {
        assert!(Mapping::new(&memfd(), 0, false).is_err());
    }
}
