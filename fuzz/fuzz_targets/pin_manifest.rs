//! The pin manifest loader (`qemu-blobs/pins.toml`) on arbitrary text: no panic; and
//! a manifest it accepts writes out (`to_toml`) to text that parses to the same
//! manifest, as `cargo xtask pin` relies on.

#![no_main]

use libfuzzer_sys::fuzz_target;
use qemu_pins::Manifest;

fuzz_target!(|text: &str| {
    let Ok(manifest) = Manifest::parse(text) else {
        return;
    };
    let written = manifest.to_toml();
    let again = Manifest::parse(&written)
        .unwrap_or_else(|error| panic!("cannot read back {written:?}: {error}"));
    assert_eq!(again, manifest);
});
