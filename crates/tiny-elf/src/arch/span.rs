//! Where a program's message lies once loaded: what every architecture's `write`
//! needs to know.

/// Where the message lies in the loaded image.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Span {
    /// Virtual address of the first byte.
    pub(crate) addr: u32,
    /// Length in bytes.
    pub(crate) len: u32,
}
