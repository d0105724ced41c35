//! The parser of `<mount>/<name>` files on arbitrary text: no panic; and an entry it
//! reads that could be registered prints (as the kernel would) to text that parses to
//! the same entry.

#![no_main]

use binfmt_misc::Entry;
use binfmt_misc::model::status_text;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let Ok(entry) = Entry::parse("fuzzed", text) else {
        return;
    };
    if entry.registration.register_line().is_err() {
        return;
    }
    let printed = status_text(&entry);
    assert_eq!(Entry::parse("fuzzed", &printed), Ok(entry), "{printed:?}");
});
