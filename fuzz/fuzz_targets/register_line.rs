//! The model of the kernel's register-line parser on arbitrary bytes: no panic; and
//! every registration it accepts that our encoder also accepts survives a second trip
//! (encode, parse as the kernel, print, parse), so the encoder and the model agree on
//! lines found by mutation, not only on lines we wrote.

#![no_main]

use binfmt_misc::Entry;
use binfmt_misc::model::{parse_register_line, status_text};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|line: &[u8]| {
    let Ok(stored) = parse_register_line(line) else {
        return;
    };
    let Ok(encoded) = stored.register_line() else {
        // The kernel takes some things we never write (raw magic bytes, names with
        // control characters): nothing to compare.
        return;
    };
    let again = parse_register_line(&encoded).expect("the kernel takes our encoding");
    assert_eq!(again, stored);
    let entry = Entry {
        enabled: true,
        registration: again,
    };
    assert_eq!(
        Entry::parse(&entry.registration.name, &status_text(&entry)),
        Ok(entry)
    );
});
