//! Reading files out of a `.deb` without dpkg: an `ar` archive by hand, then the
//! `data.tar.xz` member through liblzma and the tar crate, all streamed.
//!
//! A `.deb` is an `ar` archive (see deb(5) and ar(5)): the magic `!<arch>\n`, then for
//! each member a 60-byte ASCII header and the member's bytes, padded to an even offset.
//! The members are `debian-binary` (`2.0\n`), `control.tar.*` and `data.tar.*`; the
//! files the package installs are in `data.tar.*`, named `./usr/bin/...`.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::io::{self, Read};
use std::ops::ControlFlow;

use anyhow::{Context, Result, anyhow};

const AR_MAGIC: &[u8; 8] = b"!<arch>\n";
const AR_HEADER_LEN: usize = 60;
/// Every ar header ends with these two bytes.
const AR_HEADER_END: &[u8; 2] = b"`\n";
/// The only data member compression xtask reads (Debian's default since dpkg 1.17).
const DATA_MEMBER: &str = "data.tar.xz";

/// One member's header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArMember {
    /// Member name, without GNU ar's trailing `/`.
    pub name: String,
    /// Member size in bytes, without padding.
    pub size: u64,
}

/// Streams the members of an ar archive. After [`ArReader::next_member`] returned a
/// member, reading from the `ArReader` yields that member's bytes and then EOF.
pub struct ArReader<R> {
    inner: R,
    /// Bytes of the current member not read yet.
    remaining: u64,
    /// Whether a padding byte follows the current member.
    padded: bool,
}

impl<R: Read> ArReader<R> {
    /// Checks the ar magic at the start of `inner`.
    pub fn new(mut inner: R) -> io::Result<ArReader<R>> {
        let mut magic = [0; 8];
        inner.read_exact(&mut magic).map_err(|err| {
            io::Error::new(err.kind(), format!("cannot read the ar magic: {err}"))
        })?;
        if &magic != AR_MAGIC {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("not an ar archive (starts with {magic:?}, expected \"!<arch>\\n\")"),
            ));
        }
        Ok(ArReader {
            inner,
            remaining: 0,
            padded: false,
        })
    }

    /// Skips what is left of the current member and reads the next header;
    /// `None` at the end of the archive.
    pub fn next_member(&mut self) -> io::Result<Option<ArMember>> {
        let skip = self.remaining + u64::from(self.padded);
        let skipped = io::copy(&mut (&mut self.inner).take(skip), &mut io::sink())?;
        if skipped != skip {
            return Err(truncated("a member's data"));
        }
        self.remaining = 0;
        self.padded = false;

        let mut header = [0; AR_HEADER_LEN];
        let mut filled = 0;
        while filled < AR_HEADER_LEN {
            match self.inner.read(&mut header[filled..]) {
                Ok(0) if filled == 0 => return Ok(None),
                Ok(0) => return Err(truncated("a member header")),
                Ok(n) => filled += n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
        if &header[58..60] != AR_HEADER_END {
            return Err(invalid(format!(
                "corrupt ar member header {:?}",
                String::from_utf8_lossy(&header)
            )));
        }
        let name = String::from_utf8_lossy(&header[0..16]);
        let name = name.trim_end_matches(' ').trim_end_matches('/').to_string();
        let size_field = String::from_utf8_lossy(&header[48..58]);
        let size: u64 = size_field.trim_end_matches(' ').parse().map_err(|_| {
            invalid(format!(
                "ar member {name:?} has the size field {size_field:?}, expected a decimal number"
            ))
        })?;
        self.remaining = size;
        self.padded = size % 2 == 1;
        Ok(Some(ArMember { name, size }))
    }
}

impl<R: Read> Read for ArReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let max = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        if max == 0 {
            return Ok(0);
        }
        let n = self.inner.read(&mut buf[..max])?;
        if n == 0 {
            return Err(truncated("a member's data"));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

fn truncated(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("ar archive ends in the middle of {what}"),
    )
}

/// Positions `ar` at the start of the `data.tar.xz` member, checking on the way that
/// the archive is a binary package (format 2.x).
fn find_data_member<R: Read>(ar: &mut ArReader<R>) -> Result<()> {
    let mut first = true;
    while let Some(member) = ar.next_member()? {
        if first {
            first = false;
            let mut version = String::new();
            (&mut *ar).take(16).read_to_string(&mut version)?;
            if member.name != "debian-binary" || !version.starts_with("2.") {
                return Err(anyhow!(
                    "not a Debian binary package: first member is {:?} containing {version:?}, \
                     expected \"debian-binary\" containing \"2.0\\n\"",
                    member.name
                ));
            }
        } else if member.name == DATA_MEMBER {
            return Ok(());
        } else if member.name.starts_with("data.tar") {
            return Err(anyhow!(
                "the package's data is in member {:?}, but xtask only reads {DATA_MEMBER:?}",
                member.name
            ));
        }
    }
    Err(anyhow!("the package has no {DATA_MEMBER:?} member"))
}

/// Reads the files at `paths` (tar names without a leading `./`) from the package
/// `deb` and hands each one's contents to `found`, in archive order. `what` names the
/// package in errors. Fails if a path is missing or is not a regular file.
pub fn for_each_file<R: Read>(
    deb: R,
    what: &str,
    paths: &[&str],
    mut found: impl FnMut(&str, Vec<u8>) -> Result<()>,
) -> Result<()> {
    let mut missing: BTreeSet<&str> = paths.iter().copied().collect();
    let left = Cell::new(missing.len());
    for_each_file_where(
        deb,
        what,
        |name| {
            let wanted = missing.remove(name);
            if wanted {
                left.set(left.get() - 1);
            }
            wanted
        },
        |path, bytes| {
            found(path, bytes)?;
            // The rest of the archive is not needed once every path was found.
            Ok(if left.get() == 0 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            })
        },
    )?;
    if !missing.is_empty() {
        let missing: Vec<&str> = missing.into_iter().collect();
        return Err(anyhow!(
            "{what} does not contain {} (looked in {DATA_MEMBER})",
            missing.join(", ")
        ));
    }
    Ok(())
}

/// Reads every regular file of the package `deb` whose tar name (without a leading
/// `./`) `wanted` accepts, and hands its contents to `found`, in archive order, until
/// `found` breaks or the archive ends. `what` names the package in errors. Fails if a
/// wanted name is not a regular file.
pub fn for_each_file_where<R: Read>(
    deb: R,
    what: &str,
    mut wanted: impl FnMut(&str) -> bool,
    mut found: impl FnMut(&str, Vec<u8>) -> Result<ControlFlow<()>>,
) -> Result<()> {
    let mut ar = ArReader::new(deb).with_context(|| format!("reading {what}"))?;
    find_data_member(&mut ar).with_context(|| format!("reading {what}"))?;
    let xz = liblzma::read::XzDecoder::new_multi_decoder(ar);
    let mut tar = tar::Archive::new(xz);
    let entries = tar
        .entries()
        .with_context(|| format!("reading {DATA_MEMBER} of {what}"))?;
    for entry in entries {
        let mut entry = entry.with_context(|| format!("reading {DATA_MEMBER} of {what}"))?;
        let name = entry
            .path()
            .with_context(|| format!("reading a file name in {DATA_MEMBER} of {what}"))?
            .to_string_lossy()
            .into_owned();
        let path = name.strip_prefix("./").unwrap_or(&name);
        if !wanted(path) {
            continue;
        }
        let kind = entry.header().entry_type();
        if kind != tar::EntryType::Regular {
            return Err(anyhow!(
                "{path} in {what} is a {kind:?} entry, expected a regular file"
            ));
        }
        let mut bytes = Vec::with_capacity(usize::try_from(entry.size()).unwrap_or(0));
        entry
            .read_to_end(&mut bytes)
            .with_context(|| format!("extracting {path} from {what}"))?;
        if found(path, bytes)?.is_break() {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use std::io::{Cursor, Write};

    fn ar_member(out: &mut Vec<u8>, name: &str, data: &[u8]) {
        let header = format!(
            "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
            format!("{name}/"),
            0,
            0,
            0,
            100644,
            data.len()
        );
        assert_eq!(header.len(), AR_HEADER_LEN);
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        if data.len() % 2 == 1 {
            out.push(b'\n');
        }
    }

    fn tar_xz(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut dir = tar::Header::new_gnu();
        dir.set_entry_type(tar::EntryType::Directory);
        dir.set_size(0);
        builder
            .append_data(&mut dir, "./usr/bin/", io::empty())
            .unwrap();
        for (name, data) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o755);
            builder.append_data(&mut header, name, *data).unwrap();
        }
        let tar = builder.into_inner().unwrap();
        let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 1);
        xz.write_all(&tar).unwrap();
        xz.finish().unwrap()
    }

    /// A minimal binary package whose data member is `data_name` holding `files`.
    pub fn fake_deb(data_name: &str, files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = AR_MAGIC.to_vec();
        ar_member(&mut out, "debian-binary", b"2.0\n");
        ar_member(
            &mut out,
            "control.tar.xz",
            &tar_xz(&[("./control", b"Package: x\n")]),
        );
        ar_member(&mut out, data_name, &tar_xz(files));
        out
    }

    fn read_all(deb: &[u8], paths: &[&str]) -> Result<Vec<(String, Vec<u8>)>> {
        let mut found = Vec::new();
        for_each_file(Cursor::new(deb), "test.deb", paths, |path, bytes| {
            found.push((path.to_string(), bytes));
            Ok(())
        })?;
        Ok(found)
    }

    #[test]
    fn ar_members_and_padding() {
        let mut archive = AR_MAGIC.to_vec();
        ar_member(&mut archive, "odd", b"abc");
        ar_member(&mut archive, "even", b"wxyz");
        let mut ar = ArReader::new(Cursor::new(archive)).unwrap();
        let odd = ar.next_member().unwrap().unwrap();
        assert_eq!((odd.name.as_str(), odd.size), ("odd", 3));
        let even = ar.next_member().unwrap().unwrap();
        assert_eq!((even.name.as_str(), even.size), ("even", 4));
        let mut data = String::new();
        ar.read_to_string(&mut data).unwrap();
        assert_eq!(data, "wxyz");
        assert!(ar.next_member().unwrap().is_none());
    }

    #[test]
    fn extracts_pinned_files_with_dot_slash_names() {
        let deb = fake_deb(
            "data.tar.xz",
            &[
                ("./usr/bin/qemu-aarch64", b"aarch64 emulator"),
                ("./usr/bin/qemu-other", b"other"),
                ("./usr/bin/qemu-riscv64", b"riscv64 emulator!"),
            ],
        );
        let found = read_all(&deb, &["usr/bin/qemu-riscv64", "usr/bin/qemu-aarch64"]).unwrap();
        assert_eq!(
            found,
            vec![
                (
                    "usr/bin/qemu-aarch64".to_string(),
                    b"aarch64 emulator".to_vec()
                ),
                (
                    "usr/bin/qemu-riscv64".to_string(),
                    b"riscv64 emulator!".to_vec()
                ),
            ]
        );
    }

    #[test]
    fn missing_file_is_named() {
        let deb = fake_deb("data.tar.xz", &[("./usr/bin/qemu-aarch64", b"x")]);
        let err = read_all(&deb, &["usr/bin/qemu-aarch64", "usr/bin/qemu-s390x"])
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "test.deb does not contain usr/bin/qemu-s390x (looked in data.tar.xz)"
        );
    }

    #[test]
    fn other_data_compression_is_named() {
        let deb = fake_deb("data.tar.zst", &[("./usr/bin/qemu-aarch64", b"x")]);
        let err = read_all(&deb, &["usr/bin/qemu-aarch64"]).unwrap_err();
        let chain = format!("{err}: {}", err.source().unwrap());
        assert!(chain.contains("member \"data.tar.zst\""), "{chain}");
    }

    #[test]
    fn non_regular_file_is_rejected() {
        let deb = fake_deb("data.tar.xz", &[("./usr/bin/", b"")]);
        let err = read_all(&deb, &["usr/bin/"]).unwrap_err().to_string();
        assert!(
            err.contains("Directory entry, expected a regular file"),
            "{err}"
        );
    }

    #[test]
    fn not_a_deb() {
        let err = read_all(b"PK\x03\x04 zip file", &["x"]).unwrap_err();
        assert!(
            err.source()
                .unwrap()
                .to_string()
                .contains("not an ar archive")
        );
        let mut archive = AR_MAGIC.to_vec();
        ar_member(&mut archive, "hello.o", b"\x7fELF");
        let err = read_all(&archive, &["x"]).unwrap_err();
        assert!(
            err.source()
                .unwrap()
                .to_string()
                .contains("not a Debian binary package")
        );
    }

    #[test]
    fn truncated_archive() {
        let deb = fake_deb("data.tar.xz", &[("./usr/bin/qemu-aarch64", &[7; 5000])]);
        let err = read_all(&deb[..deb.len() - 100], &["usr/bin/qemu-aarch64"]).unwrap_err();
        let mut chain = err.to_string();
        let mut source = err.source();
        while let Some(cause) = source {
            chain.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        assert!(chain.contains("test.deb"), "{chain}");
    }
}
