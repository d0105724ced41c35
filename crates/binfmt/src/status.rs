//! The status JSON that tonistiigi/binfmt prints with no arguments, and after every
//! install or uninstall: `{"supported": [...], "emulators": [...]}`.
//!
//! docker/setup-qemu-action `JSON.parse`s it and publishes `supported` as its output,
//! so stdout carries this document and nothing else.
//!
//! `supported` lists the host's native platforms and those of every enabled
//! `qemu-<cpu>` entry. It says what the table claims; proving each platform by running
//! a program of it is not done here.

use binfmt_misc::Table;
use qemu_catalog::Arch;
use serde::Serialize;

/// The document.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Status {
    /// Platforms this machine can run, spelled as containerd spells them.
    pub supported: Vec<String>,
    /// Names of the enabled binfmt_misc entries.
    pub emulators: Vec<String>,
}

/// Reads the table and builds the document.
pub fn status(table: &impl Table) -> Result<Status, binfmt_misc::Error> {
    let mut emulators = Vec::new();
    for name in table.entry_names()? {
        if table.read_entry(&name)?.is_some_and(|entry| entry.enabled) {
            emulators.push(name);
        }
    }
    emulators.sort();
    let table_enabled = table.is_enabled()?;
    let supported = Arch::ALL
        .into_iter()
        .filter(|arch| {
            arch.is_native() || (table_enabled && emulators.contains(&arch.entry_name()))
        })
        .flat_map(|arch| arch.platforms().iter().map(|p| (*p).to_owned()))
        .collect();
    Ok(Status {
        supported,
        emulators,
    })
}

/// The document as tonistiigi/binfmt prints it (indented JSON, a final newline).
pub fn render(status: &Status) -> String {
    // Serializing two lists of strings cannot fail.
    let mut text = serde_json::to_string_pretty(status).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use binfmt_misc::fake::FakeTable;
    use binfmt_misc::{Entry, Flags, Registration};

    use super::*;

    #[test]
    fn lists_native_platforms_and_enabled_entries() {
        let table = FakeTable::new();
        for (arch, enabled) in [(Arch::Arm64, true), (Arch::S390x, false)] {
            table.insert(Entry {
                enabled,
                registration: Registration {
                    name: arch.entry_name(),
                    matcher: arch.matcher(),
                    interpreter: "/x".into(),
                    flags: Flags::POCF,
                },
            });
        }
        let status = status(&table).unwrap();
        assert_eq!(status.emulators, ["qemu-aarch64"]);
        if cfg!(target_arch = "x86_64") {
            assert_eq!(
                status.supported,
                ["linux/amd64", "linux/arm64", "linux/386"]
            );
        }
        let json: serde_json::Value = serde_json::from_str(&render(&status)).unwrap();
        assert_eq!(json["emulators"][0], "qemu-aarch64");
    }
}
