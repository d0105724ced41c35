//! The initramfs of a guest: a cpio archive in the "newc" format the kernel unpacks
//! into its root filesystem at boot (Documentation/driver-api/early-userspace/
//! buffer-format.rst).
//!
//! It is written uncompressed: the kernel takes an uncompressed archive as it is,
//! while inflating one inside an emulated guest costs seconds of emulated CPU for
//! nothing (the archive goes into guest memory either way), and it needs no
//! compressor here. Every entry is owned by root with mtime 0, so the same inputs give
//! the same bytes.

use std::collections::BTreeMap;
use std::io::{self, Write};

/// What a path in the archive is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Directory,
    File { bytes: Vec<u8>, executable: bool },
}

/// An archive being put together. Parent directories are added as needed, and every
/// directory is written before what is in it (the kernel creates files in
/// directories that must exist).
#[derive(Debug, Default)]
pub struct Archive {
    nodes: BTreeMap<String, Node>,
}

impl Archive {
    /// An empty archive.
    pub fn new() -> Archive {
        Archive::default()
    }

    /// Adds a file at `path` (relative, `/`-separated), mode 0755 when `executable`,
    /// else 0644, and its parent directories.
    pub fn file(&mut self, path: &str, bytes: Vec<u8>, executable: bool) {
        let mut parent = String::new();
        let parts: Vec<&str> = path.split('/').collect();
        for dir in &parts[..parts.len() - 1] {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(dir);
            self.nodes.insert(parent.clone(), Node::Directory);
        }
        self.nodes
            .insert(path.to_owned(), Node::File { bytes, executable });
    }

    /// The archive's bytes: the root directory first (mode 0755: without it the
    /// kernel leaves the root of its tmpfs writable by everyone, 1777), then every
    /// entry, and the `TRAILER!!!` entry.
    pub fn write(&self, mut out: impl Write) -> io::Result<()> {
        entry(&mut out, 1, 0o040_755, 2, ".", &[])?;
        // BTreeMap order puts a directory before everything below it: a path sorts
        // after every one of its prefixes.
        for (ino, (path, node)) in self.nodes.iter().enumerate() {
            let (mode, data): (u32, &[u8]) = match node {
                Node::Directory => (0o040_755, &[]),
                Node::File {
                    bytes,
                    executable: true,
                } => (0o100_755, bytes),
                Node::File {
                    bytes,
                    executable: false,
                } => (0o100_644, bytes),
            };
            let nlink = if matches!(node, Node::Directory) {
                2
            } else {
                1
            };
            entry(&mut out, ino as u32 + 2, mode, nlink, path, data)?;
        }
        entry(&mut out, 0, 0, 1, "TRAILER!!!", &[])
    }
}

/// One newc entry: the header (magic `070701` and 13 fields of 8 hex digits), the
/// name with its NUL, padded to 4 bytes, then the data, padded to 4 bytes.
fn entry(
    out: &mut impl Write,
    ino: u32,
    mode: u32,
    nlink: u32,
    name: &str,
    data: &[u8],
) -> io::Result<()> {
    let size = u32::try_from(data.len()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name} is larger than a cpio archive can hold (4 GiB)"),
        )
    })?;
    let name_size = name.len() as u32 + 1;
    // ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor,
    // rdevminor, namesize, check.
    let fields = [ino, mode, 0, 0, nlink, 0, size, 0, 0, 0, 0, name_size, 0];
    let mut header = String::from("070701");
    for field in fields {
        header.push_str(&format!("{field:08X}"));
    }
    out.write_all(header.as_bytes())?;
    out.write_all(name.as_bytes())?;
    out.write_all(&[0])?;
    out.write_all(&padding(header.len() + name.len() + 1))?;
    out.write_all(data)?;
    out.write_all(&padding(data.len()))
}

/// The zero bytes that bring `len` to a multiple of 4.
fn padding(len: usize) -> Vec<u8> {
    vec![0; len.next_multiple_of(4) - len]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads an archive back: (name, mode, data) per entry, checking the format.
    fn read(mut bytes: &[u8]) -> Vec<(String, u32, Vec<u8>)> {
        let mut entries = Vec::new();
        let mut offset = 0;
        loop {
            assert_eq!(offset % 4, 0);
            assert_eq!(&bytes[..6], b"070701");
            let field = |i: usize| {
                let text = std::str::from_utf8(&bytes[6 + i * 8..14 + i * 8]).unwrap();
                u32::from_str_radix(text, 16).unwrap() as usize
            };
            let (mode, size, name_size) = (field(1), field(6), field(11));
            let name = std::str::from_utf8(&bytes[110..110 + name_size - 1])
                .unwrap()
                .to_owned();
            assert_eq!(bytes[110 + name_size - 1], 0);
            let data_start = (110 + name_size).next_multiple_of(4);
            let data = bytes[data_start..data_start + size].to_vec();
            let next = (data_start + size).next_multiple_of(4);
            offset += next;
            bytes = &bytes[next..];
            if name == "TRAILER!!!" {
                assert!(bytes.is_empty());
                return entries;
            }
            entries.push((name, mode as u32, data));
        }
    }

    #[test]
    fn directories_come_before_their_files_and_everything_is_aligned() {
        let mut archive = Archive::new();
        archive.file("usr/bin/binfmt", b"\x7fELF binary".to_vec(), true);
        archive.file("init", b"#!/bin/sh\n".to_vec(), true);
        archive.file("test/config", b"A=1\n".to_vec(), false);
        let mut bytes = Vec::new();
        archive.write(&mut bytes).unwrap();
        let entries = read(&bytes);
        let names: Vec<(&str, u32)> = entries
            .iter()
            .map(|(name, mode, _)| (name.as_str(), *mode))
            .collect();
        assert_eq!(
            names,
            [
                (".", 0o040_755),
                ("init", 0o100_755),
                ("test", 0o040_755),
                ("test/config", 0o100_644),
                ("usr", 0o040_755),
                ("usr/bin", 0o040_755),
                ("usr/bin/binfmt", 0o100_755),
            ]
        );
        assert_eq!(entries[6].2, b"\x7fELF binary");
        // The same inputs, the same bytes.
        let mut again = Vec::new();
        archive.write(&mut again).unwrap();
        assert_eq!(bytes, again);
    }
}
