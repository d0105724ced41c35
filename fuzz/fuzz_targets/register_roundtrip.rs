//! The register-line encoder against the kernel, modelled: for every registration
//! the encoder accepts, what the kernel would store from the line and print back in
//! `<mount>/<name>` parses to exactly that registration:
//! `parse(print(kernel(encode(x)))) == x`. Any registration at all: no panic.

#![no_main]

use std::path::PathBuf;

use arbitrary::Arbitrary;
use binfmt_misc::model::{parse_register_line, status_text};
use binfmt_misc::{Entry, Flags, Matcher, Registration};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Kind {
    Magic {
        offset: u32,
        magic: Vec<u8>,
        mask: Option<Vec<u8>>,
    },
    Extension(String),
}

#[derive(Arbitrary, Debug)]
struct Input {
    name: String,
    kind: Kind,
    interpreter: String,
    flags: (bool, bool, bool, bool),
    enabled: bool,
}

fuzz_target!(|input: Input| {
    let (preserve_argv0, open_binary, credentials, fix_binary) = input.flags;
    let wanted = Registration {
        name: input.name,
        matcher: match input.kind {
            Kind::Magic {
                offset,
                magic,
                mask,
            } => Matcher::Magic {
                // Small offsets are the interesting ones; keep most inputs near them.
                offset: offset % 300,
                magic,
                mask,
            },
            Kind::Extension(extension) => Matcher::Extension(extension),
        },
        interpreter: PathBuf::from(input.interpreter),
        flags: Flags {
            preserve_argv0,
            open_binary,
            credentials,
            fix_binary,
        },
    };
    let Ok(line) = wanted.register_line() else {
        return;
    };
    // What we encode, the kernel accepts and stores as we meant it.
    let stored = parse_register_line(&line).unwrap_or_else(|rejected| {
        panic!("the encoder wrote a line the kernel refuses: {rejected}\n{wanted:?}")
    });
    let normalized = Registration {
        flags: wanted.flags.normalized(),
        ..wanted
    };
    assert_eq!(stored, normalized);
    // What the kernel prints, we read back.
    let entry = Entry {
        enabled: input.enabled,
        registration: stored,
    };
    let printed = status_text(&entry);
    let parsed = Entry::parse(&entry.registration.name, &printed)
        .unwrap_or_else(|error| panic!("cannot parse {printed:?}: {error}"));
    assert_eq!(parsed, entry);
    assert!(
        parsed
            .differences(&normalized)
            .iter()
            .all(|d| *d == binfmt_misc::Difference::Disabled)
    );
});
