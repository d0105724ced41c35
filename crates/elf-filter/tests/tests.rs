//! The filters on small static-PIE-shaped executables built here, in both byte orders.

// Helpers of tests may unwrap too (the workspace denies clippy::unwrap_used in product
// code only).
#![allow(clippy::unwrap_used)]

use elf_filter::{Error, Layout, Piece, Span, filter, unfilter};

const PAGE: usize = 0x1000;
/// The writable segment's address is its file offset plus this, as in real
/// static-PIE files (the read-only part ends mid-page).
const DATA_BIAS: u64 = 0x1000;
const RELA_AT: usize = 0x200;
const RELATIVE: u64 = 12;

struct Sample {
    bytes: Vec<u8>,
    relocations: Span,
    data: Span,
    search_table: Span,
}

/// An ELF-64 executable with `count` relocations into its writable segment: every
/// third one's place holds zero (as riscv64's linker leaves it), the others hold the
/// addend (as x86_64's, aarch64's and s390x's do), and the last one points past the
/// segment's file bytes (into .bss). `noise` fills the pointers with varying values.
fn sample(big_endian: bool, count: usize, noise: u64) -> Sample {
    let put64 = |bytes: &mut Vec<u8>, at: usize, v: u64| {
        let b = if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        };
        bytes[at..at + 8].copy_from_slice(&b);
    };
    let put32 = |bytes: &mut Vec<u8>, at: usize, v: u32| {
        let b = if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        };
        bytes[at..at + 4].copy_from_slice(&b);
    };
    let put16 = |bytes: &mut Vec<u8>, at: usize, v: u16| {
        let b = if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        };
        bytes[at..at + 2].copy_from_slice(&b);
    };
    let rela_end = RELA_AT + 24 * count;
    let eh_at = rela_end.next_multiple_of(8);
    let fdes = count / 2 + 1;
    let eh_end = eh_at + 12 + 8 * fdes;
    let data_at = eh_end.next_multiple_of(PAGE);
    let slots = 16 * count;
    let dynamic_at = data_at + slots;
    let data_end = dynamic_at + 4 * 16;
    let mut bytes = vec![0u8; data_end];
    let data_address = data_at as u64 + DATA_BIAS;

    bytes[..4].copy_from_slice(b"\x7fELF");
    bytes[4] = 2;
    bytes[5] = if big_endian { 2 } else { 1 };
    bytes[6] = 1;
    put16(&mut bytes, 16, 3); // ET_DYN
    put64(&mut bytes, 32, 64); // e_phoff
    put16(&mut bytes, 52, 64);
    put16(&mut bytes, 54, 56);
    put16(&mut bytes, 56, 4);
    // (type, flags, offset, address, file size)
    let segments = [
        (1u32, 5u32, 0usize, 0u64, eh_end),
        (1, 6, data_at, data_address, data_end - data_at),
        (2, 6, dynamic_at, dynamic_at as u64 + DATA_BIAS, 4 * 16),
        (0x6474_e550, 4, eh_at, eh_at as u64, eh_end - eh_at),
    ];
    for (i, (kind, flags, offset, address, size)) in segments.into_iter().enumerate() {
        let at = 64 + 56 * i;
        put32(&mut bytes, at, kind);
        put32(&mut bytes, at + 4, flags);
        put64(&mut bytes, at + 8, offset as u64);
        put64(&mut bytes, at + 16, address);
        put64(&mut bytes, at + 24, address);
        put64(&mut bytes, at + 32, size as u64);
        put64(&mut bytes, at + 40, size as u64);
    }
    let mut state = noise;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        state >> 24
    };
    for i in 0..count {
        let at = RELA_AT + 24 * i;
        let slot = 16 * i + if i % 5 == 0 { 8 } else { 0 };
        let address = if i + 1 == count {
            data_address + (data_end - data_at) as u64 + 64
        } else {
            data_address + slot as u64
        };
        let addend = 0x10_0000 + 0x40 * i as u64 + next() % 0x100;
        put64(&mut bytes, at, address);
        put64(&mut bytes, at + 8, RELATIVE);
        put64(&mut bytes, at + 16, addend);
        if i + 1 != count && i % 3 != 0 {
            put64(&mut bytes, data_at + slot, addend);
        }
    }
    bytes[eh_at..eh_at + 4].copy_from_slice(&[1, 0x1b, 0x03, 0x3b]);
    put32(&mut bytes, eh_at + 8, fdes as u32);
    for j in 0..fdes {
        let at = eh_at + 12 + 8 * j;
        put32(
            &mut bytes,
            at,
            (0x2000 + 0x90 * j as u64 + next() % 16) as u32,
        );
        put32(&mut bytes, at + 4, (0x8000 + 0x18 * j) as u32);
    }
    for (k, (tag, value)) in [
        (7u64, RELA_AT as u64),
        (8, 24 * count as u64),
        (9, 24),
        (0, 0),
    ]
    .into_iter()
    .enumerate()
    {
        put64(&mut bytes, dynamic_at + 16 * k, tag);
        put64(&mut bytes, dynamic_at + 16 * k + 8, value);
    }
    Sample {
        bytes,
        relocations: Span {
            start: RELA_AT,
            end: rela_end,
        },
        data: Span {
            start: data_at,
            end: data_end,
        },
        search_table: Span {
            start: eh_at + 12,
            end: eh_end,
        },
    }
}

fn filtered(sample: &Sample) -> (Layout, Vec<u8>) {
    let layout = Layout::find(&sample.bytes);
    let mut bytes = sample.bytes.clone();
    filter(&mut bytes, &layout).unwrap();
    (layout, bytes)
}

#[test]
fn finds_the_same_layout_before_and_after_filtering() {
    for big_endian in [false, true] {
        let sample = sample(big_endian, 300, 1);
        let (layout, bytes) = filtered(&sample);
        assert_eq!(layout.big_endian, big_endian);
        assert_eq!(layout.relocations, sample.relocations);
        assert_eq!(layout.data, sample.data);
        assert_eq!(layout.data_address, sample.data.start as u64 + DATA_BIAS);
        assert_eq!(layout.search_table, sample.search_table);
        assert_eq!(Layout::find(&bytes), layout);
        assert_eq!(
            layout.filtered().collect::<Vec<_>>(),
            [sample.relocations, sample.search_table]
        );
    }
}

#[test]
fn changes_only_the_filtered_ranges_and_leaves_mostly_steps_and_zeros() {
    for big_endian in [false, true] {
        let sample = sample(big_endian, 300, 2);
        let (layout, bytes) = filtered(&sample);
        let inside = |at: usize| layout.filtered().any(|s| s.start <= at && at < s.end);
        let changed: Vec<usize> = (0..bytes.len())
            .filter(|&at| bytes[at] != sample.bytes[at])
            .collect();
        assert!(!changed.is_empty());
        assert!(changed.iter().all(|&at| inside(at)), "{changed:?}");
        let u64_at = |at: usize| {
            let b: [u8; 8] = bytes[at..at + 8].try_into().unwrap();
            if big_endian {
                u64::from_be_bytes(b)
            } else {
                u64::from_le_bytes(b)
            }
        };
        // Entries whose place holds the addend, after one that did too: a step of 16
        // (or 8 / 24 around the shifted ones) and a zero addend.
        let zeros = (1..299)
            .filter(|i| i % 3 != 0 && (i - 1) % 3 != 0)
            .filter(|i| u64_at(RELA_AT + 24 * i + 16) == 0)
            .count();
        let expected = (1..299).filter(|i| i % 3 != 0 && (i - 1) % 3 != 0).count();
        assert_eq!(zeros, expected);
        assert!((1..299).all(|i| [8, 16, 24].contains(&u64_at(RELA_AT + 24 * i))));
        assert!((0..300).all(|i| u64_at(RELA_AT + 24 * i + 8) == RELATIVE));
    }
}

#[test]
fn unfilter_restores_the_bytes_however_they_are_cut_into_pieces() {
    for big_endian in [false, true] {
        for noise in [3, 4] {
            let sample = sample(big_endian, 200, noise);
            let (layout, bytes) = filtered(&sample);
            assert_ne!(bytes, sample.bytes);
            let len = bytes.len();
            // Cuts inside the relocations (mid-entry), the table and the writable
            // segment (mid-slot) included.
            for cut in (1..len)
                .step_by(37)
                .chain([RELA_AT + 100, layout.data.start + 4])
            {
                let mut out = bytes.clone();
                let (head, tail) = out.split_at_mut(cut);
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
                unfilter(&mut pieces, &layout).unwrap();
                assert!(out == sample.bytes, "cut at {cut}, big endian {big_endian}");
            }
        }
    }
}

#[test]
fn unfilter_names_a_byte_no_piece_holds() {
    let sample = sample(false, 50, 5);
    let (layout, bytes) = filtered(&sample);
    let mut out = bytes.clone();
    let hole = layout.data.start + 100;
    let (head, _) = out.split_at_mut(hole);
    let mut pieces = [Piece {
        offset: 0,
        bytes: head,
    }];
    let error = unfilter(&mut pieces, &layout).unwrap_err();
    match error {
        Error::Missing { offset } => assert!(offset >= hole, "{offset}"),
    }
    assert!(
        error.to_string().contains("none of the decoded pieces"),
        "{error}"
    );
}

#[test]
fn what_it_cannot_read_turns_a_filter_off() {
    let original = sample(true, 40, 6);
    // .eh_frame_hdr with another table encoding (udata8 absolute, say).
    let mut bytes = original.bytes.clone();
    bytes[original.search_table.start - 12 + 3] = 0x04;
    let layout = Layout::find(&bytes);
    assert!(layout.search_table.is_empty());
    assert_eq!(layout.relocations, original.relocations);
    // DT_RELASZ not a whole number of entries.
    let mut bytes = original.bytes.clone();
    let dynamic = original.data.end - 64;
    bytes[dynamic + 16 + 15] ^= 1;
    assert!(Layout::find(&bytes).relocations.is_empty());
    // Truncated: the writable segment's bytes are not all in the file.
    let cut = &original.bytes[..original.data.end - 1];
    let layout = Layout::find(cut);
    assert!(layout.data.is_empty() && layout.relocations.is_empty());
    // The empty layout changes nothing.
    let mut bytes = original.bytes.clone();
    filter(&mut bytes, &Layout::default()).unwrap();
    assert_eq!(bytes, original.bytes);
}
