//! Where the filters act in one executable, found from its program headers (ELF-64,
//! either byte order; `elf(5)`).

use crate::byte_order::ByteOrder;

/// A byte range of the executable file, `start..end`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    /// Nothing: the filter it belongs to does not act.
    pub const EMPTY: Span = Span { start: 0, end: 0 };

    pub fn len(&self) -> usize {
        self.end.saturating_sub(self.start)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn overlaps(&self, other: &Span) -> bool {
        !self.is_empty() && !other.is_empty() && self.start < other.end && other.start < self.end
    }
}

/// Where the filters act in one executable. An empty [`Span`] turns its filter off; a
/// file that is not a 64-bit ELF executable gets the empty layout, which changes
/// nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Layout {
    /// The file's byte order (`EI_DATA`).
    pub big_endian: bool,
    /// The `Elf64_Rela` entries the dynamic section names (`DT_RELA`, `DT_RELASZ`).
    pub relocations: Span,
    /// The file bytes of the one writable `PT_LOAD` segment: the only place whose
    /// values the relocation filter reads.
    pub data: Span,
    /// That segment's virtual address.
    pub data_address: u64,
    /// The table of `.eh_frame_hdr` (`PT_GNU_EH_FRAME`): pairs of 4-byte values.
    pub search_table: Span,
}

/// The size of one `Elf64_Rela`.
pub(crate) const RELA_SIZE: usize = 24;

const ELFCLASS64: u8 = 2;
const ELFDATA2MSB: u8 = 2;
const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_GNU_EH_FRAME: u32 = 0x6474_e550;
const PF_W: u32 = 2;
const PHDR_SIZE: usize = 56;
const DYN_SIZE: usize = 16;
const DT_NULL: u64 = 0;
const DT_RELA: u64 = 7;
const DT_RELASZ: u64 = 8;
const DT_RELAENT: u64 = 9;
/// `.eh_frame_hdr` encodings (LSB's "Exception Frames"): the table is `DW_EH_PE_datarel
/// | DW_EH_PE_sdata4`, the count `DW_EH_PE_udata4`; the pointer before them 4 bytes.
const EH_TABLE_DATAREL_SDATA4: u8 = 0x3b;
const EH_COUNT_UDATA4: u8 = 0x03;
const EH_FORMAT_4_BYTES: [u8; 2] = [0x03, 0x0b];

/// One program header, as far as the layout needs it.
struct Segment {
    kind: u32,
    flags: u32,
    offset: u64,
    address: u64,
    file_size: u64,
}

impl Segment {
    fn span(&self, file_len: usize) -> Option<Span> {
        let start = usize::try_from(self.offset).ok()?;
        let end = start.checked_add(usize::try_from(self.file_size).ok()?)?;
        (end <= file_len).then_some(Span { start, end })
    }
}

/// Reads the file's integers in its byte order; `None` past the end.
struct Reader<'a> {
    bytes: &'a [u8],
    order: ByteOrder,
}

impl Reader<'_> {
    fn array<const N: usize>(&self, at: usize) -> Option<[u8; N]> {
        self.bytes.get(at..at.checked_add(N)?)?.try_into().ok()
    }

    fn u16(&self, at: usize) -> Option<u16> {
        Some(self.order.u16(self.array(at)?))
    }

    fn u32(&self, at: usize) -> Option<u32> {
        Some(self.order.u32(self.array(at)?))
    }

    fn u64(&self, at: usize) -> Option<u64> {
        Some(self.order.u64(self.array(at)?))
    }
}

impl Layout {
    /// The layout of `bytes`, original or filtered (the filters leave everything this
    /// reads as it is). Whatever is missing or malformed leaves its filter off.
    pub fn find(bytes: &[u8]) -> Layout {
        let Some(ident) = bytes.get(..6) else {
            return Layout::default();
        };
        if ident[..4] != *b"\x7fELF" || ident[4] != ELFCLASS64 {
            return Layout::default();
        }
        let reader = Reader {
            bytes,
            order: ByteOrder {
                big_endian: ident[5] == ELFDATA2MSB,
            },
        };
        let segments = segments(&reader).unwrap_or_default();
        let mut layout = Layout {
            big_endian: reader.order.big_endian,
            ..Layout::default()
        };
        let mut writable = segments
            .iter()
            .filter(|s| s.kind == PT_LOAD && s.flags & PF_W != 0);
        if let (Some(segment), None) = (writable.next(), writable.next())
            && let Some(span) = segment.span(bytes.len())
        {
            layout.data = span;
            layout.data_address = segment.address;
        }
        layout.relocations = relocations(&reader, &segments).unwrap_or(Span::EMPTY);
        layout.search_table = segments
            .iter()
            .find(|s| s.kind == PT_GNU_EH_FRAME)
            .and_then(|s| search_table(&reader, s.span(bytes.len())?))
            .unwrap_or(Span::EMPTY);
        // Undoing a filter reads only bytes no filter changes: the values in the
        // writable segment, and neither filter's range overlaps another's.
        if layout.relocations.overlaps(&layout.data) {
            layout.data = Span::EMPTY;
        }
        if layout.search_table.overlaps(&layout.relocations)
            || layout.search_table.overlaps(&layout.data)
        {
            layout.search_table = Span::EMPTY;
        }
        layout
    }

    /// The ranges the filters change, in file order: what a decoder must hold back
    /// until [`unfilter`](crate::unfilter) has run.
    pub fn filtered(&self) -> impl Iterator<Item = Span> + use<> {
        let mut spans = [self.relocations, self.search_table];
        spans.sort_by_key(|span| span.start);
        spans.into_iter().filter(|span| !span.is_empty())
    }

    /// Where the 8 bytes a relocation at virtual address `address` patches are in the
    /// file, when they lie in the writable segment.
    pub(crate) fn data_offset(&self, address: u64) -> Option<usize> {
        let within = usize::try_from(address.checked_sub(self.data_address)?).ok()?;
        let start = self.data.start.checked_add(within)?;
        (start.checked_add(8)? <= self.data.end).then_some(start)
    }
}

fn segments(reader: &Reader<'_>) -> Option<Vec<Segment>> {
    let table = usize::try_from(reader.u64(0x20)?).ok()?;
    let entry_size = usize::from(reader.u16(0x36)?);
    let count = usize::from(reader.u16(0x38)?);
    if entry_size < PHDR_SIZE {
        return None;
    }
    (0..count)
        .map(|i| {
            let at = table.checked_add(i.checked_mul(entry_size)?)?;
            Some(Segment {
                kind: reader.u32(at)?,
                flags: reader.u32(at + 4)?,
                offset: reader.u64(at + 8)?,
                address: reader.u64(at + 16)?,
                file_size: reader.u64(at + 32)?,
            })
        })
        .collect()
}

/// The relocation entries `PT_DYNAMIC` names, located in the file through the
/// `PT_LOAD` segment that maps them.
fn relocations(reader: &Reader<'_>, segments: &[Segment]) -> Option<Span> {
    let dynamic = segments
        .iter()
        .find(|s| s.kind == PT_DYNAMIC)?
        .span(reader.bytes.len())?;
    let (mut address, mut size, mut entry_size) = (None, None, RELA_SIZE as u64);
    for at in (dynamic.start..dynamic.end).step_by(DYN_SIZE) {
        match reader.u64(at)? {
            DT_NULL => break,
            DT_RELA => address = Some(reader.u64(at + 8)?),
            DT_RELASZ => size = Some(reader.u64(at + 8)?),
            DT_RELAENT => entry_size = reader.u64(at + 8)?,
            _ => {}
        }
    }
    let (address, size) = (address?, usize::try_from(size?).ok()?);
    if entry_size != RELA_SIZE as u64 || size % RELA_SIZE != 0 || size == 0 {
        return None;
    }
    let segment = segments.iter().find(|s| {
        s.kind == PT_LOAD
            && s.address <= address
            && address
                .checked_add(size as u64)
                .is_some_and(|end| end <= s.address.saturating_add(s.file_size))
    })?;
    let start = usize::try_from(segment.offset.checked_add(address - segment.address)?).ok()?;
    let end = start.checked_add(size)?;
    (end <= reader.bytes.len()).then_some(Span { start, end })
}

/// The search table of the `.eh_frame_hdr` in `header`, when it has the usual
/// encodings (version 1, a 4-byte pointer, a 4-byte count, 4-byte entries).
fn search_table(reader: &Reader<'_>, header: Span) -> Option<Span> {
    let [version, pointer, count_format, table_format] = reader.array(header.start)?;
    if version != 1
        || !EH_FORMAT_4_BYTES.contains(&(pointer & 0x0f))
        || count_format != EH_COUNT_UDATA4
        || table_format != EH_TABLE_DATAREL_SDATA4
    {
        return None;
    }
    let count = usize::try_from(reader.u32(header.start + 8)?).ok()?;
    let start = header.start + 12;
    let end = start.checked_add(count.checked_mul(8)?)?;
    (end <= header.end && count > 0).then_some(Span { start, end })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_an_elf64_file_gets_the_empty_layout() {
        for bytes in [
            &b""[..],
            b"\x7fELF",
            b"\x7fELF\x01\x01\x01\0\0\0\0\0\0\0\0\0",
            b"#!/bin/sh\n",
        ] {
            assert_eq!(Layout::find(bytes), Layout::default(), "{bytes:?}");
            assert_eq!(Layout::find(bytes).filtered().count(), 0);
        }
    }

    #[test]
    fn data_offset_stays_inside_the_writable_segment() {
        let layout = Layout {
            data: Span {
                start: 1000,
                end: 1100,
            },
            data_address: 5000,
            ..Layout::default()
        };
        assert_eq!(layout.data_offset(5000), Some(1000));
        assert_eq!(layout.data_offset(5092), Some(1092));
        assert_eq!(
            layout.data_offset(5093),
            None,
            "its last byte is past the end"
        );
        assert_eq!(layout.data_offset(4999), None);
        assert_eq!(layout.data_offset(u64::MAX), None);
    }
}
