//! `binfmt emulators [--json]`: what the binary carries, checked against
//! `qemu-blobs/pins.toml` for the host it was built for (the table and the JSON come
//! from the pins embedded at build time, so this is where a hand-written string or a
//! stale build would show).

use std::collections::BTreeSet;
use std::process::Command;

use qemu_pins::{MANIFEST_PATH, Manifest};

use crate::util::{Run, workspace_root};

fn emulators(args: &[&str]) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_binfmt"));
    command.arg("emulators").args(args);
    Run::of(command).success()
}

#[test]
fn lists_every_pinned_emulator_of_this_host_with_its_pin() {
    let manifest = Manifest::load(&workspace_root().join(MANIFEST_PATH)).unwrap();
    let host = manifest.host(std::env::consts::ARCH).unwrap();
    let pinned: BTreeSet<(String, String, u64)> = host
        .embedded()
        .iter()
        .map(|emulator| {
            (
                format!("qemu-{}", emulator.cpu),
                emulator.sha256.clone(),
                emulator.size,
            )
        })
        .collect();

    let json = emulators(&["--json"]).json();
    let listed = json.as_array().unwrap();
    let carried: BTreeSet<(String, String, u64)> = listed
        .iter()
        .map(|emulator| {
            // The entry name is qemu-<cpu>, as the pin's cpu is QEMU's.
            (
                emulator["entry"].as_str().unwrap().to_owned(),
                emulator["sha256"].as_str().unwrap().to_owned(),
                emulator["size"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(carried, pinned);
    assert_eq!(listed.len(), pinned.len());
    for emulator in listed {
        assert_eq!(
            emulator["qemu"],
            manifest.source.upstream_version(),
            "{emulator}"
        );
        assert_eq!(emulator["package"], host.package.as_str(), "{emulator}");
        assert_eq!(
            emulator["package_version"],
            manifest.source.version.as_str(),
            "{emulator}"
        );
        assert_eq!(
            emulator["source_package"],
            manifest.source.source_package.as_str()
        );
        let pin = host
            .embedded()
            .into_iter()
            .find(|pin| emulator["entry"] == format!("qemu-{}", pin.cpu))
            .unwrap();
        assert_eq!(emulator["arch"], pin.oci.as_str(), "{emulator}");
        assert_eq!(
            emulator["file"],
            format!("qemu-{}-{}", pin.cpu, &pin.sha256[..16])
        );
    }

    // The table says the same.
    let table = emulators(&[]).stdout;
    assert!(
        table.starts_with(&format!(
            "{} emulators, QEMU {} from Debian package {} {} (source {}):\n",
            pinned.len(),
            manifest.source.upstream_version(),
            host.package,
            manifest.source.version,
            manifest.source.source_package
        )),
        "{table}"
    );
    for pin in host.embedded() {
        let line = table
            .lines()
            .find(|line| line.contains(&pin.sha256))
            .unwrap_or_else(|| panic!("no line for qemu-{}:\n{table}", pin.cpu));
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            words,
            [
                pin.oci.as_str(),
                &format!("qemu-{}", pin.cpu),
                &pin.size.to_string(),
                &pin.sha256
            ]
        );
    }
}
