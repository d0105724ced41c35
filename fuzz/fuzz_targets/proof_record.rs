//! The proof record parser (`<interpreter dir>/.binfmt-proofs`, root's file, read by
//! every status run) on arbitrary text: no panic, and a record it accepts, written
//! again, reads back to the same fingerprint and proofs.

#![no_main]

use binfmt::proof_record::{parse, render};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let Some((fingerprint, proofs)) = parse(text) else {
        return;
    };
    let written = render(fingerprint, &proofs);
    let again = parse(&written).unwrap_or_else(|| panic!("cannot read back {written:?}"));
    assert_eq!(again, (fingerprint, proofs));
});
