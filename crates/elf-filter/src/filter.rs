//! Applying the filters, and undoing them on decoded bytes that may be in pieces.

use std::fmt;

use crate::byte_order::ByteOrder;
use crate::layout::{Layout, RELA_SIZE, Span};

/// Decoded bytes of an executable, at their offset in it: one part of an emulator, in
/// whatever buffer its decoder wrote it to.
pub struct Piece<'a> {
    pub offset: usize,
    pub bytes: &'a mut [u8],
}

/// Undoing a filter could not read or write a byte of the layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// The byte at `offset` of the executable is in none of the pieces given.
    Missing { offset: usize },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Missing { offset } => write!(
                f,
                "byte {offset} of the executable is in none of the decoded pieces"
            ),
        }
    }
}

impl std::error::Error for Error {}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Filter,
    Unfilter,
}

/// Applies the filters of `layout` (found in these very bytes: [`Layout::find`]) to
/// `bytes`, in place. Fails only when the layout names bytes past the end.
pub fn filter(bytes: &mut [u8], layout: &Layout) -> Result<(), Error> {
    apply(&mut [Piece { offset: 0, bytes }], layout, Direction::Filter)
}

/// Undoes [`filter`] on the decoded bytes of an executable, given as pieces (together
/// they must hold every byte of `layout`'s spans and of its writable segment).
pub fn unfilter(pieces: &mut [Piece<'_>], layout: &Layout) -> Result<(), Error> {
    apply(pieces, layout, Direction::Unfilter)
}

/// Undoes [`filter`] on a whole executable in one buffer, with the layout found in
/// it (the same as in the original); returns that layout.
pub fn unfilter_in_place(bytes: &mut [u8]) -> Result<Layout, Error> {
    let layout = Layout::find(bytes);
    unfilter(&mut [Piece { offset: 0, bytes }], &layout)?;
    Ok(layout)
}

fn apply(pieces: &mut [Piece<'_>], layout: &Layout, direction: Direction) -> Result<(), Error> {
    let order = ByteOrder {
        big_endian: layout.big_endian,
    };
    if !layout.relocations.is_empty() {
        // Undoing the relocations reads the writable segment, which may be in the same
        // piece: in place when one piece holds them all (the parts are cut far from
        // them), else through a copy.
        match split_around(pieces, layout.relocations) {
            Some((entries, others)) => {
                relocations(entries, &others, layout, order, direction)?;
            }
            None => {
                let mut entries = read(pieces, layout.relocations)?;
                let others: Vec<Readable<'_>> = pieces.iter().map(Readable::from).collect();
                relocations(&mut entries, &others, layout, order, direction)?;
                write(pieces, layout.relocations.start, &entries)?;
            }
        }
    }
    if !layout.search_table.is_empty() {
        match split_around(pieces, layout.search_table) {
            Some((table, _)) => search_table(table, order, direction),
            None => {
                let mut table = read(pieces, layout.search_table)?;
                search_table(&mut table, order, direction);
                write(pieces, layout.search_table.start, &table)?;
            }
        }
    }
    Ok(())
}

/// Bytes to read at their offset in the executable.
struct Readable<'a> {
    offset: usize,
    bytes: &'a [u8],
}

impl<'a> From<&'a Piece<'_>> for Readable<'a> {
    fn from(piece: &'a Piece<'_>) -> Readable<'a> {
        Readable {
            offset: piece.offset,
            bytes: piece.bytes,
        }
    }
}

/// When one piece holds all of `span`: its bytes, to change, and every other byte of
/// the pieces, to read.
fn split_around<'a>(
    pieces: &'a mut [Piece<'_>],
    span: Span,
) -> Option<(&'a mut [u8], Vec<Readable<'a>>)> {
    let holder = pieces.iter().position(|piece| {
        piece.offset <= span.start && span.end <= piece.offset.saturating_add(piece.bytes.len())
    })?;
    let mut others = Vec::with_capacity(pieces.len() + 1);
    let mut inside = None;
    for (index, piece) in pieces.iter_mut().enumerate() {
        if index != holder {
            others.push(Readable {
                offset: piece.offset,
                bytes: &*piece.bytes,
            });
            continue;
        }
        let (before, rest) = piece.bytes.split_at_mut(span.start - piece.offset);
        let (within, after) = rest.split_at_mut(span.len());
        others.push(Readable {
            offset: piece.offset,
            bytes: before,
        });
        others.push(Readable {
            offset: span.end,
            bytes: after,
        });
        inside = Some(within);
    }
    inside.map(|within| (within, others))
}

/// Each `Elf64_Rela` (offset, info, addend) as (offset − previous offset, info, a −
/// previous a), a being the addend less the 8 bytes at its offset when they are in the
/// writable segment (which no filter changes, so undoing reads the same value).
fn relocations(
    entries: &mut [u8],
    pieces: &[Readable<'_>],
    layout: &Layout,
    order: ByteOrder,
    direction: Direction,
) -> Result<(), Error> {
    let value_at = |address: u64| match layout.data_offset(address) {
        Some(at) => read_u64(pieces, at, order),
        None => Ok(0),
    };
    let (mut previous_offset, mut previous_a) = (0u64, 0u64);
    for entry in entries.chunks_exact_mut(RELA_SIZE) {
        let (offset_field, rest) = entry.split_at_mut(8);
        let addend_field = &mut rest[8..];
        let stored_offset = order.u64(array(offset_field));
        let stored_addend = order.u64(array(addend_field));
        let (offset, a) = match direction {
            Direction::Filter => {
                let a = stored_addend.wrapping_sub(value_at(stored_offset)?);
                offset_field
                    .copy_from_slice(&order.u64_bytes(stored_offset.wrapping_sub(previous_offset)));
                addend_field.copy_from_slice(&order.u64_bytes(a.wrapping_sub(previous_a)));
                (stored_offset, a)
            }
            Direction::Unfilter => {
                let offset = previous_offset.wrapping_add(stored_offset);
                let a = previous_a.wrapping_add(stored_addend);
                offset_field.copy_from_slice(&order.u64_bytes(offset));
                addend_field.copy_from_slice(&order.u64_bytes(a.wrapping_add(value_at(offset)?)));
                (offset, a)
            }
        };
        (previous_offset, previous_a) = (offset, a);
    }
    Ok(())
}

/// Each 4-byte value of the (function, FDE) pairs as the step from the one of the pair
/// before.
fn search_table(table: &mut [u8], order: ByteOrder, direction: Direction) {
    let mut previous = [0u32; 2];
    for pair in table.chunks_exact_mut(8) {
        for (column, field) in pair.chunks_exact_mut(4).enumerate() {
            let stored = order.u32(array(field));
            let value = match direction {
                Direction::Filter => {
                    field.copy_from_slice(&order.u32_bytes(stored.wrapping_sub(previous[column])));
                    stored
                }
                Direction::Unfilter => {
                    let value = previous[column].wrapping_add(stored);
                    field.copy_from_slice(&order.u32_bytes(value));
                    value
                }
            };
            previous[column] = value;
        }
    }
}

/// A copy of `span`, gathered from the pieces.
fn read(pieces: &[Piece<'_>], span: Span) -> Result<Vec<u8>, Error> {
    let mut out = vec![0; span.len()];
    let readable: Vec<Readable<'_>> = pieces.iter().map(Readable::from).collect();
    gather(&readable, span.start, &mut out)?;
    Ok(out)
}

fn read_u64(pieces: &[Readable<'_>], at: usize, order: ByteOrder) -> Result<u64, Error> {
    // Nearly always within one piece.
    for piece in pieces {
        if let Some(bytes) = at
            .checked_sub(piece.offset)
            .and_then(|start| piece.bytes.get(start..start.checked_add(8)?))
        {
            return Ok(order.u64(array(bytes)));
        }
    }
    let mut bytes = [0; 8];
    gather(pieces, at, &mut bytes)?;
    Ok(order.u64(bytes))
}

/// Copies the bytes from `at` on into `out`, from whichever pieces hold them.
fn gather(pieces: &[Readable<'_>], at: usize, out: &mut [u8]) -> Result<(), Error> {
    for piece in pieces {
        let (start, end) = overlap(piece.offset, piece.bytes.len(), at, out.len());
        if start < end {
            out[start - at..end - at]
                .copy_from_slice(&piece.bytes[start - piece.offset..end - piece.offset]);
        }
    }
    let held = pieces.iter().map(|p| (p.offset, p.bytes.len()));
    first_gap(held, at, out.len()).map_or(Ok(()), |offset| Err(Error::Missing { offset }))
}

/// Copies `bytes` to `at` on, into whichever pieces hold those offsets.
fn write(pieces: &mut [Piece<'_>], at: usize, bytes: &[u8]) -> Result<(), Error> {
    for piece in pieces.iter_mut() {
        let (start, end) = overlap(piece.offset, piece.bytes.len(), at, bytes.len());
        if start < end {
            piece.bytes[start - piece.offset..end - piece.offset]
                .copy_from_slice(&bytes[start - at..end - at]);
        }
    }
    let held = pieces.iter().map(|p| (p.offset, p.bytes.len()));
    first_gap(held, at, bytes.len()).map_or(Ok(()), |offset| Err(Error::Missing { offset }))
}

/// The first offset from `at` on, of `len`, that none of the `held` ranges (offset,
/// length) covers.
fn first_gap(held: impl Iterator<Item = (usize, usize)>, at: usize, len: usize) -> Option<usize> {
    let mut ranges: Vec<(usize, usize)> = held
        .map(|(offset, length)| overlap(offset, length, at, len))
        .filter(|(start, end)| start < end)
        .collect();
    ranges.sort_unstable();
    let mut next = at;
    for (start, end) in ranges {
        if start > next {
            return Some(next);
        }
        next = next.max(end);
    }
    (next < at + len).then_some(next)
}

/// The offsets two ranges (start, length) share, as start..end (empty when none).
fn overlap(a: usize, a_len: usize, b: usize, b_len: usize) -> (usize, usize) {
    (
        a.max(b),
        a.saturating_add(a_len).min(b.saturating_add(b_len)),
    )
}

/// The `N` bytes at the start of `field` (the filters' fields are whole: the spans
/// are whole entries).
fn array<const N: usize>(field: &[u8]) -> [u8; N] {
    let mut bytes = [0; N];
    bytes.copy_from_slice(&field[..N]);
    bytes
}
