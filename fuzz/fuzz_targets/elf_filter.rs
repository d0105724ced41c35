//! The emulator filters on arbitrary bytes: finding the layout never panics, the
//! layout is the same after filtering, only its ranges change, and undoing the filter
//! restores the bytes, whole or cut into two pieces anywhere.

#![no_main]

use elf_filter::{Layout, Piece, filter, unfilter};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u16, Vec<u8>)| {
    let (cut, original) = input;
    let layout = Layout::find(&original);
    let mut filtered = original.clone();
    filter(&mut filtered, &layout).expect("the layout lies within the bytes it was found in");
    assert_eq!(Layout::find(&filtered), layout);
    for (at, (a, b)) in original.iter().zip(&filtered).enumerate() {
        if a != b {
            assert!(
                layout
                    .filtered()
                    .any(|span| span.start <= at && at < span.end)
            );
        }
    }
    let cut = usize::from(cut).min(filtered.len());
    let (head, tail) = filtered.split_at_mut(cut);
    let mut pieces = [
        Piece {
            offset: cut,
            bytes: tail,
        },
        Piece {
            offset: 0,
            bytes: head,
        },
    ];
    unfilter(&mut pieces, &layout).expect("every byte is in a piece");
    assert!(filtered == original);
});
