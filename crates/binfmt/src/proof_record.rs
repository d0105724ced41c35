//! Proofs kept from one run to the next within one boot, so that a rerun of
//! `--install all` that changes nothing does not start eight emulators to prove again
//! what the previous run proved.
//!
//! What a probe proves depends on the kernel and the CPU, on binfmt's own probes, and
//! on the binfmt_misc table: which entries claim the program, their flags, and the
//! interpreter the kernel opened at registration (flag `F`) or opens by path. After a
//! run whose probes ran in an empty root, binfmt writes what they proved to
//! `<interpreter dir>/.binfmt-proofs`, after a *fingerprint* of all of that:
//!
//! - the boot (`/proc/sys/kernel/random/boot_id`): the same kernel and CPU, and inode
//!   numbers that have not started over;
//! - this binfmt: its version and the identity of `/proc/self/exe` (another build is
//!   another set of probes);
//! - whether the table is enabled, and for each entry, by name: its text as the kernel
//!   prints it, its [`RegistrationId`] (registering again, even the same line, gives
//!   a new one, and with it possibly another interpreter file held open), and the
//!   identity of the file its interpreter path names now (device, inode, size, mode,
//!   owner, mtime, ctime: every change to a file moves its ctime).
//!
//! A later run whose fingerprint is the same, byte for byte, takes the recorded proofs
//! as its own and probes only the architectures they do not cover. Any change to the
//! table or to an interpreter file, a reboot, or another binfmt binary makes the
//! fingerprint differ and every probe run again. Only proofs are kept, never failures:
//! a probe that failed (timed out on a loaded machine, say) runs again next time.
//! `binfmt check` and `binfmt doctor` never read the record: they exist to look again.
//!
//! The record is believed only as a verification record is (see
//! `qemu_catalog::verified`): a file only root could have written, in a directory only
//! root can change. Whoever could forge it could replace the interpreters themselves.
//! The fingerprint is kept in the clear, so `cat` shows what a proof rests on.

use std::fmt::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use binfmt_misc::report::Chain;
use binfmt_misc::{Entry, Table, model};
use interpreter_files::{InterpreterDir, is_memfd_path};
use qemu_catalog::{Arch, Proof};

use crate::host;

/// The record's file name in the interpreter directory.
pub const RECORD_NAME: &str = ".binfmt-proofs";

/// The record's first line; another format is simply not recognised.
const HEADER: &str = "binfmt proofs 1\n";

/// The line between the fingerprint and the proofs. Every line of the fingerprint
/// that comes from outside binfmt (an entry's text) is indented, so none can be this.
const SEPARATOR: &str = "proofs\n";

/// The longest record read: a table of a few hundred entries.
const LIMIT: usize = 256 << 10;

/// The proof record of one interpreter directory, for the table as it was read.
#[derive(Debug)]
pub struct ProofRecord<'a> {
    dir: &'a InterpreterDir,
    fingerprint: String,
}

impl<'a> ProofRecord<'a> {
    /// The record for `table` as it was read (`enabled`: its status; `entries`:
    /// every entry), kept in `dir`; `None` when what a proof rests on cannot be read
    /// (no boot id, an entry that cannot be stat'ed), and then nothing is recalled or
    /// kept.
    pub fn for_table(
        table: &dyn Table,
        enabled: bool,
        entries: &[Entry],
        dir: &'a InterpreterDir,
    ) -> Option<ProofRecord<'a>> {
        match fingerprint(table, enabled, entries) {
            Ok(fingerprint) => Some(ProofRecord { dir, fingerprint }),
            Err(reason) => {
                log::debug!("not using proofs of earlier runs: {reason}");
                None
            }
        }
    }

    /// The proofs recorded for this very fingerprint; none when there is no record,
    /// it is not trusted, or it was made for anything else.
    pub fn recall(&self) -> Vec<(Arch, Proof)> {
        let Some(text) = self.dir.read_state(RECORD_NAME, LIMIT) else {
            return Vec::new();
        };
        match parse(&text) {
            Some((fingerprint, proofs)) if fingerprint == self.fingerprint => proofs,
            Some(_) => {
                log::debug!("the proofs of an earlier run were made for another table");
                Vec::new()
            }
            None => {
                log::debug!("ignoring an unreadable {RECORD_NAME}");
                Vec::new()
            }
        }
    }

    /// Records `proofs` for this fingerprint, replacing any earlier record. Best
    /// effort: without a record the next run probes again.
    pub fn keep(&self, proofs: &[(Arch, Proof)]) {
        if let Err(error) = self
            .dir
            .write_state(RECORD_NAME, &render(&self.fingerprint, proofs))
        {
            log::debug!("cannot keep the proofs for the next run: {}", Chain(&error));
        }
    }
}

/// The fingerprint text: see the module documentation.
fn fingerprint(table: &dyn Table, enabled: bool, entries: &[Entry]) -> Result<String, String> {
    let boot = host::boot_id()?;
    let exe = host::this_executable()?;
    let mut text = String::new();
    let _ = writeln!(text, "boot {boot}");
    let _ = writeln!(
        text,
        "binfmt {} {}",
        env!("CARGO_PKG_VERSION"),
        identity(&exe)
    );
    let _ = writeln!(
        text,
        "table {}",
        if enabled { "enabled" } else { "disabled" }
    );
    let mut entries: Vec<&Entry> = entries.iter().collect();
    entries.sort_by(|a, b| a.registration.name.cmp(&b.registration.name));
    for entry in entries {
        let name = &entry.registration.name;
        let id = table
            .registration_id(name)
            .map_err(|error| Chain(&error).to_string())?
            .ok_or_else(|| format!("the entry {name} went away while being read"))?;
        let _ = writeln!(text, "entry {name} registration {id}");
        for line in model::status_text(entry).lines() {
            let _ = writeln!(text, "  {line}");
        }
        let _ = writeln!(
            text,
            "  file {}",
            interpreter_identity(&entry.registration.interpreter)
        );
    }
    Ok(text)
}

/// What identifies the file at an entry's interpreter path now.
fn interpreter_identity(path: &Path) -> String {
    if is_memfd_path(path) {
        // The kernel opened a sealed memfd at registration (flag F): its contents
        // cannot change, and the registration id says which one it is. The path
        // names nothing in this process.
        return "memfd".to_owned();
    }
    match std::fs::metadata(path) {
        Ok(metadata) => identity(&metadata),
        Err(error) => format!("unreadable ({})", error.kind()),
    }
}

/// A file's identity: every change to it moves its ctime; another file has another
/// inode.
fn identity(metadata: &std::fs::Metadata) -> String {
    format!(
        "{}:{}:{}:{:o}:{}:{}.{:09}:{}.{:09}",
        metadata.dev(),
        metadata.ino(),
        metadata.size(),
        metadata.mode(),
        metadata.uid(),
        metadata.mtime(),
        metadata.mtime_nsec(),
        metadata.ctime(),
        metadata.ctime_nsec()
    )
}

/// The record's text.
pub fn render(fingerprint: &str, proofs: &[(Arch, Proof)]) -> String {
    let mut text = format!("{HEADER}{fingerprint}{SEPARATOR}");
    for (arch, proof) in proofs {
        match proof.level {
            Some(level) => {
                let _ = writeln!(text, "{arch} level {level}");
            }
            None => {
                let _ = writeln!(text, "{arch}");
            }
        }
    }
    text
}

/// The fingerprint and the proofs of a record; `None` unless it is one in every line.
pub fn parse(text: &str) -> Option<(&str, Vec<(Arch, Proof)>)> {
    let body = text.strip_prefix(HEADER)?;
    let at = body.find(&format!("\n{SEPARATOR}"))? + 1;
    let (fingerprint, proofs) = (&body[..at], &body[at + SEPARATOR.len()..]);
    let mut parsed = Vec::new();
    for line in proofs.lines() {
        let mut words = line.split(' ');
        let name = words.next()?;
        let arch = Arch::ALL.into_iter().find(|arch| arch.oci() == name)?;
        let level = match (words.next(), words.next(), words.next()) {
            (None, None, None) => None,
            (Some("level"), Some(level), None) => Some(level.parse().ok()?),
            _ => return None,
        };
        if level.is_some() != (arch == Arch::Amd64) || parsed.iter().any(|(a, _)| *a == arch) {
            return None;
        }
        parsed.push((arch, Proof { level }));
    }
    Some((fingerprint, parsed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_as_written_and_nothing_else_reads() {
        let fingerprint = "boot x\nentry a registration 0:1:2\n  enabled\n";
        let proofs = [
            (Arch::Amd64, Proof { level: Some(3) }),
            (Arch::Arm64, Proof { level: None }),
        ];
        let text = render(fingerprint, &proofs);
        assert_eq!(parse(&text), Some((fingerprint, proofs.to_vec())));
        assert_eq!(
            parse(&render(fingerprint, &[])),
            Some((fingerprint, Vec::new()))
        );
        for broken in [
            text.replacen("binfmt proofs 1", "binfmt proofs 2", 1),
            text.replace("\nproofs\n", "\n"),
            format!("{text}sparc\n"),
            format!("{text}arm64\n"),
            text.replace("level 3", "level x"),
            text.replace("level 3", "level"),
            text.replace("arm64", "arm64 level 2"),
        ] {
            assert_eq!(parse(&broken), None, "{broken}");
        }
    }
}
