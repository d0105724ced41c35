//! Entries of the binfmt_misc table as plain data: what we write to `register`, what
//! the kernel prints back in `<mount>/<name>`, and how the two are compared.
//!
//! Nothing here touches the kernel, so every rule is unit tested. The rules mirror
//! `fs/binfmt_misc.c` (`create_entry`, `check_special_flags`, `entry_status`); where a
//! kernel quirk shapes the code, the comment beside it says which.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::report::Fixable;

/// `BINPRM_BUF_SIZE` since Linux 5.1: the kernel reads this many bytes of a binary
/// before matching, so `offset + magic length` may not exceed it.
pub const BINPRM_BUF_SIZE: usize = 256;

/// `MAX_REGISTER_LENGTH`: the longest line the `register` file accepts.
pub const MAX_REGISTER_LENGTH: usize = 1920;

/// The shortest line the `register` file accepts (`count < 11` is EINVAL).
const MIN_REGISTER_LENGTH: usize = 11;

/// The longest entry name: entries are files, so `NAME_MAX`.
pub const MAX_NAME_LENGTH: usize = 255;

/// The field delimiter we always use. The kernel takes the first character of the line
/// as the delimiter; we never put `:` inside a field (magic and mask are escaped in
/// full, names and interpreter paths containing `:` are refused).
const DELIMITER: char = ':';

/// Names that exist in every binfmt_misc mount and are not entries.
pub const CONTROL_FILES: [&str; 2] = ["register", "status"];

/// The flags of an entry, the letters after the last delimiter.
///
/// `C` implies `O` in the kernel (it sets `MISC_FMT_OPEN_BINARY` with
/// `MISC_FMT_CREDENTIALS`), so a `Flags` value always holds `O` when it holds `C`: a
/// registration with `CF` reads back as `OCF`, and the two compare equal here.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Flags {
    /// `P`: preserve argv[0]; the kernel passes `AT_FLAGS_PRESERVE_ARGV0`, QEMU reads it.
    pub preserve_argv0: bool,
    /// `O`: hand the interpreter the binary as an open file descriptor.
    pub open_binary: bool,
    /// `C`: compute credentials (setuid/setgid) from the binary, not the interpreter.
    pub credentials: bool,
    /// `F`: open the interpreter when registering, so it works in every mount
    /// namespace and chroot, and keeps working after the file is deleted.
    pub fix_binary: bool,
}

impl Flags {
    /// No flags at all.
    pub const NONE: Flags = Flags {
        preserve_argv0: false,
        open_binary: false,
        credentials: false,
        fix_binary: false,
    };

    /// `POCF`: what the tonistiigi/binfmt image registers with.
    pub const POCF: Flags = Flags {
        preserve_argv0: true,
        open_binary: true,
        credentials: true,
        fix_binary: true,
    };

    /// The same flags with the kernel's implication applied (`C` sets `O`).
    #[must_use]
    pub fn normalized(self) -> Flags {
        Flags {
            open_binary: self.open_binary || self.credentials,
            ..self
        }
    }
}

impl fmt::Display for Flags {
    /// The letters in the kernel's order, `POCF`, as `<mount>/<name>` prints them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let letters = [
            (self.preserve_argv0, 'P'),
            (self.open_binary, 'O'),
            (self.credentials, 'C'),
            (self.fix_binary, 'F'),
        ];
        for (set, letter) in letters {
            if set {
                write!(f, "{letter}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Flags({self})")
    }
}

/// A flag letter the kernel does not know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownFlag(pub char);

impl fmt::Display for UnknownFlag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown binfmt_misc flag {:?}", self.0)
    }
}

impl std::error::Error for UnknownFlag {}

impl Fixable for UnknownFlag {
    fn fix(&self) -> Option<String> {
        Some("give only the letters the kernel knows: P, O, C and F".to_owned())
    }
}

impl FromStr for Flags {
    type Err = UnknownFlag;

    /// Parses letters from `POCF` in any order and either case; the result is normalized.
    fn from_str(letters: &str) -> Result<Flags, UnknownFlag> {
        let mut flags = Flags::NONE;
        for letter in letters.chars() {
            match letter.to_ascii_uppercase() {
                'P' => flags.preserve_argv0 = true,
                'O' => flags.open_binary = true,
                'C' => flags.credentials = true,
                'F' => flags.fix_binary = true,
                _ => return Err(UnknownFlag(letter)),
            }
        }
        Ok(flags.normalized())
    }
}

/// How an entry recognises the binaries it handles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Matcher {
    /// Type `M`: `magic` at byte `offset` of the file, compared under `mask`.
    Magic {
        /// Where in the file the magic starts.
        offset: u32,
        /// The bytes to compare.
        magic: Vec<u8>,
        /// Which bits of each byte count; `None` means all of them.
        mask: Option<Vec<u8>>,
    },
    /// Type `E`: the file name's extension, without the dot.
    Extension(String),
}

impl Matcher {
    /// Whether the kernel would hand a file named `file_name` whose first bytes are
    /// `header` to this entry (`check_file()` in `fs/binfmt_misc.c`).
    ///
    /// A magic is compared at its offset under its mask; bytes beyond the end of
    /// `header` count as zero, as in the kernel's zero-filled `bprm->buf`. An
    /// extension is compared with what follows the last `.` of the file name. Whether
    /// the entry is enabled is the caller's business.
    pub fn matches_file(&self, file_name: &str, header: &[u8]) -> bool {
        match self {
            Matcher::Magic {
                offset,
                magic,
                mask,
            } => {
                let Ok(start) = usize::try_from(*offset) else {
                    return false;
                };
                magic.iter().enumerate().all(|(i, &magic_byte)| {
                    let byte = start
                        .checked_add(i)
                        .and_then(|at| header.get(at))
                        .copied()
                        .unwrap_or(0);
                    let bits = mask
                        .as_ref()
                        .and_then(|m| m.get(i))
                        .copied()
                        .unwrap_or(0xff);
                    (byte ^ magic_byte) & bits == 0
                })
            }
            Matcher::Extension(extension) => file_name
                .rsplit_once('.')
                .is_some_and(|(_, ext)| ext == extension),
        }
    }

    /// Whether the two match exactly the same files.
    ///
    /// The kernel stores the magic as given (bits outside the mask are kept and printed
    /// back), and a missing mask behaves like an all-`ff` one, so compare what the mask
    /// lets through rather than the raw bytes.
    pub fn matches_same_files(&self, other: &Matcher) -> bool {
        match (self, other) {
            (
                Matcher::Magic {
                    offset: a_offset,
                    magic: a_magic,
                    mask: a_mask,
                },
                Matcher::Magic {
                    offset: b_offset,
                    magic: b_magic,
                    mask: b_mask,
                },
            ) => {
                if a_offset != b_offset || a_magic.len() != b_magic.len() {
                    return false;
                }
                let mask_byte = |mask: &Option<Vec<u8>>, i: usize| {
                    mask.as_ref()
                        .and_then(|m| m.get(i).copied())
                        .unwrap_or(0xff)
                };
                (0..a_magic.len()).all(|i| {
                    let (a_bits, b_bits) = (mask_byte(a_mask, i), mask_byte(b_mask, i));
                    a_bits == b_bits && a_magic[i] & a_bits == b_magic[i] & b_bits
                })
            }
            (Matcher::Extension(a), Matcher::Extension(b)) => a == b,
            _ => false,
        }
    }
}

/// One entry to register: everything the `register` line carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    /// The entry's name, which becomes the file `<mount>/<name>`.
    pub name: String,
    /// How binaries are recognised.
    pub matcher: Matcher,
    /// The program the kernel runs with the binary as an argument.
    pub interpreter: PathBuf,
    /// The entry's flags.
    pub flags: Flags,
}

/// Why a registration cannot be written. Each variant names the offending part; the
/// caller adds which entry it was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InvalidRegistration {
    /// The name is empty, `.`, `..`, too long, a control file, or has `/`, `:` or a
    /// control character.
    Name(String),
    /// Magic is empty, or the mask's length differs from the magic's.
    MaskLength { magic: usize, mask: usize },
    /// `offset + magic length` exceeds [`BINPRM_BUF_SIZE`].
    BeyondBuffer { offset: u32, magic: usize },
    /// Magic of length zero.
    EmptyMagic,
    /// The extension is empty or has `/`, `:` or a control character.
    Extension(String),
    /// The interpreter is not an absolute path, or has `:` or a control character.
    Interpreter(PathBuf),
    /// The encoded line is longer than [`MAX_REGISTER_LENGTH`].
    TooLong(usize),
}

impl fmt::Display for InvalidRegistration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidRegistration::Name(name) => write!(
                f,
                "invalid entry name {name:?}: it must be 1 to {MAX_NAME_LENGTH} bytes, not \
                 `.`, `..`, `register` or `status`, without `/`, `:` or control characters"
            ),
            InvalidRegistration::MaskLength { magic, mask } => write!(
                f,
                "mask is {mask} bytes but magic is {magic}: they must be the same length"
            ),
            InvalidRegistration::BeyondBuffer { offset, magic } => write!(
                f,
                "offset {offset} plus {magic} bytes of magic reaches beyond the \
                 {BINPRM_BUF_SIZE} bytes the kernel reads from a binary"
            ),
            InvalidRegistration::EmptyMagic => write!(f, "magic is empty"),
            InvalidRegistration::Extension(ext) => write!(
                f,
                "invalid extension {ext:?}: it must be non-empty, without `/`, `:` or control characters"
            ),
            InvalidRegistration::Interpreter(path) => write!(
                f,
                "invalid interpreter {}: it must be an absolute path without `:` or control characters",
                path.display()
            ),
            InvalidRegistration::TooLong(len) => write!(
                f,
                "the register line would be {len} bytes; the kernel accepts at most {MAX_REGISTER_LENGTH}"
            ),
        }
    }
}

impl std::error::Error for InvalidRegistration {}

/// Checks an entry name the way the kernel would, plus the rules that keep a name from
/// escaping the mount or colliding with its control files.
pub fn validate_name(name: &str) -> Result<(), InvalidRegistration> {
    let bad = name.is_empty()
        || name.len() > MAX_NAME_LENGTH
        || name == "."
        || name == ".."
        || CONTROL_FILES.contains(&name)
        || name.contains('/')
        || name.contains(DELIMITER)
        || name.chars().any(char::is_control);
    if bad {
        Err(InvalidRegistration::Name(name.to_owned()))
    } else {
        Ok(())
    }
}

impl Registration {
    /// Checks every rule the kernel applies (and a few it does not, such as an
    /// absolute interpreter path), without encoding.
    pub fn validate(&self) -> Result<(), InvalidRegistration> {
        self.register_line().map(drop)
    }

    /// The exact bytes to `write()` to `<mount>/register`, in one call.
    ///
    /// Magic and mask are written as `\xHH` escapes for every byte: the kernel
    /// unescapes them, and no raw delimiter or newline can slip into a field.
    pub fn register_line(&self) -> Result<Vec<u8>, InvalidRegistration> {
        validate_name(&self.name)?;
        let interpreter = self
            .interpreter
            .to_str()
            .filter(|path| {
                path.starts_with('/')
                    && !path.contains(DELIMITER)
                    && !path.chars().any(char::is_control)
            })
            .ok_or_else(|| InvalidRegistration::Interpreter(self.interpreter.clone()))?;

        let mut line = String::new();
        line.push(DELIMITER);
        line.push_str(&self.name);
        line.push(DELIMITER);
        match &self.matcher {
            Matcher::Magic {
                offset,
                magic,
                mask,
            } => {
                if magic.is_empty() {
                    return Err(InvalidRegistration::EmptyMagic);
                }
                if let Some(mask) = mask
                    && mask.len() != magic.len()
                {
                    return Err(InvalidRegistration::MaskLength {
                        magic: magic.len(),
                        mask: mask.len(),
                    });
                }
                let end = usize::try_from(*offset)
                    .ok()
                    .and_then(|offset| offset.checked_add(magic.len()));
                if end.is_none_or(|end| end > BINPRM_BUF_SIZE) {
                    return Err(InvalidRegistration::BeyondBuffer {
                        offset: *offset,
                        magic: magic.len(),
                    });
                }
                line.push('M');
                line.push(DELIMITER);
                line.push_str(&offset.to_string());
                line.push(DELIMITER);
                push_escaped(&mut line, magic);
                line.push(DELIMITER);
                if let Some(mask) = mask {
                    push_escaped(&mut line, mask);
                }
            }
            Matcher::Extension(extension) => {
                let bad = extension.is_empty()
                    || extension.contains('/')
                    || extension.contains(DELIMITER)
                    || extension.chars().any(char::is_control);
                if bad {
                    return Err(InvalidRegistration::Extension(extension.clone()));
                }
                line.push('E');
                line.push(DELIMITER);
                // Offset and mask are not used by extension entries.
                line.push(DELIMITER);
                line.push_str(extension);
                line.push(DELIMITER);
            }
        }
        line.push(DELIMITER);
        line.push_str(interpreter);
        line.push(DELIMITER);
        line.push_str(&self.flags.normalized().to_string());

        if line.len() > MAX_REGISTER_LENGTH {
            return Err(InvalidRegistration::TooLong(line.len()));
        }
        debug_assert!(line.len() >= MIN_REGISTER_LENGTH);
        Ok(line.into_bytes())
    }
}

fn push_escaped(line: &mut String, bytes: &[u8]) {
    use std::fmt::Write;
    for byte in bytes {
        // Writing to a String cannot fail.
        let _ = write!(line, "\\x{byte:02x}");
    }
}

/// An entry as the kernel reports it in `<mount>/<name>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Whether the entry is enabled (`echo 1` / `echo 0` to its file).
    pub enabled: bool,
    /// What the entry was registered with (flags normalized as the kernel prints them).
    pub registration: Registration,
}

/// Why the text of an entry file could not be understood.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError(String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseError {}

impl ParseError {
    pub(crate) fn new(message: String) -> ParseError {
        ParseError(message)
    }
}

impl Entry {
    /// Parses what `entry_status()` prints:
    ///
    /// ```text
    /// enabled
    /// interpreter /usr/bin/qemu-aarch64
    /// flags: POCF
    /// offset 0
    /// magic 7f454c46...
    /// mask ffffffff...
    /// ```
    ///
    /// or `extension .<ext>` instead of offset, magic and mask. Lines the kernel may add
    /// in the future are ignored; missing required lines are an error.
    pub fn parse(name: &str, text: &str) -> Result<Entry, ParseError> {
        let mut lines = text.lines();
        let enabled = match lines.next() {
            Some("enabled") => true,
            Some("disabled") => false,
            other => {
                return Err(ParseError(format!(
                    "expected `enabled` or `disabled` on the first line, found {other:?}"
                )));
            }
        };
        let mut interpreter = None;
        let mut flags = None;
        let mut offset = None;
        let mut magic = None;
        let mut mask = None;
        let mut extension = None;
        for line in lines {
            if let Some(path) = line.strip_prefix("interpreter ") {
                interpreter = Some(PathBuf::from(path));
            } else if let Some(letters) = line.strip_prefix("flags:") {
                flags = Some(
                    letters
                        .trim()
                        .parse::<Flags>()
                        .map_err(|e| ParseError(e.to_string()))?,
                );
            } else if let Some(number) = line.strip_prefix("offset ") {
                offset = Some(
                    number
                        .parse::<u32>()
                        .map_err(|_| ParseError(format!("bad offset {number:?}")))?,
                );
            } else if let Some(hex) = line.strip_prefix("magic ") {
                magic = Some(decode_hex(hex).ok_or_else(|| bad_hex("magic", hex))?);
            } else if let Some(hex) = line.strip_prefix("mask ") {
                mask = Some(decode_hex(hex).ok_or_else(|| bad_hex("mask", hex))?);
            } else if let Some(ext) = line.strip_prefix("extension .") {
                extension = Some(ext.to_owned());
            }
        }
        let missing = |what: &str| ParseError(format!("no `{what}` line"));
        let matcher = match (extension, magic) {
            (Some(ext), None) => Matcher::Extension(ext),
            (None, Some(magic)) => Matcher::Magic {
                offset: offset.ok_or_else(|| missing("offset"))?,
                magic,
                mask,
            },
            (Some(_), Some(_)) => {
                return Err(ParseError(
                    "both `extension` and `magic` lines: not an entry file".to_owned(),
                ));
            }
            (None, None) => return Err(missing("magic` or `extension")),
        };
        Ok(Entry {
            enabled,
            registration: Registration {
                name: name.to_owned(),
                matcher,
                interpreter: interpreter.ok_or_else(|| missing("interpreter"))?,
                flags: flags.ok_or_else(|| missing("flags:"))?,
            },
        })
    }

    /// The entry's interpreter.
    pub fn interpreter(&self) -> &Path {
        &self.registration.interpreter
    }
}

fn bad_hex(what: &str, hex: &str) -> ParseError {
    ParseError(format!("{what} is not hexadecimal: {hex:?}"))
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) || hex.is_empty() {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
        })
        .collect()
}

/// One way an existing entry differs from the registration we want.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Difference {
    /// The entry is disabled.
    Disabled,
    /// The interpreter path differs.
    Interpreter { current: PathBuf, wanted: PathBuf },
    /// The flags differ.
    Flags { current: Flags, wanted: Flags },
    /// Offset, magic, mask or type differ: it matches other files.
    Matcher,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Difference::Disabled => write!(f, "entry was disabled"),
            Difference::Interpreter { current, wanted } => write!(
                f,
                "interpreter {} -> {}",
                current.display(),
                wanted.display()
            ),
            Difference::Flags { current, wanted } => {
                let show = |flags: &Flags| {
                    let letters = flags.to_string();
                    if letters.is_empty() {
                        "(none)".to_owned()
                    } else {
                        letters
                    }
                };
                write!(f, "flags {} -> {}", show(current), show(wanted))
            }
            Difference::Matcher => write!(f, "magic/mask differ"),
        }
    }
}

impl Entry {
    /// Every way this entry differs from `wanted`; empty when registering `wanted` would
    /// change nothing.
    pub fn differences(&self, wanted: &Registration) -> Vec<Difference> {
        let current = &self.registration;
        let mut differences = Vec::new();
        if !current.matcher.matches_same_files(&wanted.matcher) {
            differences.push(Difference::Matcher);
        }
        if current.interpreter != wanted.interpreter {
            differences.push(Difference::Interpreter {
                current: current.interpreter.clone(),
                wanted: wanted.interpreter.clone(),
            });
        }
        if current.flags.normalized() != wanted.flags.normalized() {
            differences.push(Difference::Flags {
                current: current.flags.normalized(),
                wanted: wanted.flags.normalized(),
            });
        }
        if !self.enabled {
            differences.push(Difference::Disabled);
        }
        differences
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aarch64() -> Registration {
        Registration {
            name: "qemu-aarch64".to_owned(),
            matcher: Matcher::Magic {
                offset: 0,
                magic: b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00"
                    .to_vec(),
                mask: Some(
                    b"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"
                        .to_vec(),
                ),
            },
            interpreter: PathBuf::from("/usr/bin/qemu-aarch64"),
            flags: Flags::POCF,
        }
    }

    /// What the kernel printed for `aarch64()` on Linux 6.18.
    const AARCH64_STATUS: &str = "enabled\ninterpreter /usr/bin/qemu-aarch64\nflags: POCF\n\
        offset 0\nmagic 7f454c460201010000000000000000000200b700\n\
        mask ffffffffffffff00fffffffffffffffffeffffff\n";

    #[test]
    fn flags_parse_in_any_order_and_print_in_kernel_order() {
        assert_eq!("fcpo".parse::<Flags>().unwrap().to_string(), "POCF");
        assert_eq!("F".parse::<Flags>().unwrap().to_string(), "F");
        assert_eq!("".parse::<Flags>().unwrap(), Flags::NONE);
        assert_eq!("PX".parse::<Flags>(), Err(UnknownFlag('X')));
    }

    #[test]
    fn credentials_imply_open_binary_like_the_kernel() {
        // Registering `CF` reads back as `OCF`.
        assert_eq!("CF".parse::<Flags>().unwrap().to_string(), "OCF");
        let raw = Flags {
            credentials: true,
            ..Flags::NONE
        };
        assert_eq!(raw.normalized().to_string(), "OC");
    }

    #[test]
    fn register_line_escapes_every_magic_and_mask_byte() {
        let line = String::from_utf8(aarch64().register_line().unwrap()).unwrap();
        assert_eq!(
            line,
            ":qemu-aarch64:M:0:\\x7f\\x45\\x4c\\x46\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\
             \\x00\\x00\\x00\\x00\\x02\\x00\\xb7\\x00:\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\
             \\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xfe\\xff\\xff\\xff:/usr/bin/qemu-aarch64:POCF"
        );
    }

    #[test]
    fn extension_entries_encode_and_parse() {
        let reg = Registration {
            name: "wasm".to_owned(),
            matcher: Matcher::Extension("wasm".to_owned()),
            interpreter: PathBuf::from("/usr/bin/wasmtime"),
            flags: Flags::NONE,
        };
        assert_eq!(
            reg.register_line().unwrap(),
            b":wasm:E::wasm::/usr/bin/wasmtime:"
        );
        let parsed = Entry::parse(
            "wasm",
            "enabled\ninterpreter /usr/bin/wasmtime\nflags: \nextension .wasm\n",
        )
        .unwrap();
        assert_eq!(parsed.registration, reg);
    }

    #[test]
    fn parse_reads_back_what_the_kernel_printed() {
        let entry = Entry::parse("qemu-aarch64", AARCH64_STATUS).unwrap();
        assert!(entry.enabled);
        assert_eq!(entry.registration, aarch64());
        assert!(entry.differences(&aarch64()).is_empty());
    }

    #[test]
    fn parse_rejects_garbage_without_panicking() {
        for text in [
            "",
            "maybe\n",
            "enabled\n",
            "enabled\ninterpreter /x\nflags: Q\noffset 0\nmagic 00\n",
            "enabled\ninterpreter /x\nflags: F\noffset -1\nmagic 00\n",
            "enabled\ninterpreter /x\nflags: F\noffset 0\nmagic 0g\n",
            "enabled\ninterpreter /x\nflags: F\noffset 0\nmagic 000\n",
            "enabled\ninterpreter /x\nflags: F\nmagic 00\n",
            "enabled\nflags: F\noffset 0\nmagic 00\n",
            "enabled\ninterpreter /x\noffset 0\nmagic 00\n",
            "enabled\ninterpreter /x\nflags: F\noffset 0\nmagic 00\nextension .x\n",
            "enabled\ninterpreter /x\nflags: F\noffset 0\nmagic \u{e9}\u{e9}\n",
        ] {
            assert!(Entry::parse("x", text).is_err(), "accepted {text:?}");
        }
    }

    #[test]
    fn round_trip_through_the_kernel_format() {
        // What entry_status() would print for a registration, built independently of
        // the parser, must parse back to the same registration.
        let reg = aarch64();
        let Matcher::Magic {
            offset,
            magic,
            mask,
        } = &reg.matcher
        else {
            unreachable!()
        };
        let printed = format!(
            "disabled\ninterpreter {}\nflags: {}\noffset {offset}\nmagic {}\nmask {}\n",
            reg.interpreter.display(),
            reg.flags,
            hex(magic),
            hex(mask.as_ref().unwrap())
        );
        let entry = Entry::parse(&reg.name, &printed).unwrap();
        assert!(!entry.enabled);
        assert_eq!(entry.registration, reg);
        assert_eq!(entry.differences(&reg), vec![Difference::Disabled]);
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn invalid_names_are_refused() {
        for name in [
            "", ".", "..", "register", "status", "a/b", "../x", "a:b", "a\nb", "a\0b", "a\x1b",
        ] {
            let reg = Registration {
                name: name.to_owned(),
                ..aarch64()
            };
            assert_eq!(
                reg.register_line(),
                Err(InvalidRegistration::Name(name.to_owned())),
                "{name:?}"
            );
        }
        let long = "q".repeat(MAX_NAME_LENGTH + 1);
        assert!(validate_name(&long).is_err());
        assert!(validate_name(&"q".repeat(MAX_NAME_LENGTH)).is_ok());
    }

    #[test]
    fn mask_must_match_magic_length() {
        let reg = Registration {
            matcher: Matcher::Magic {
                offset: 0,
                magic: vec![1, 2, 3],
                mask: Some(vec![0xff, 0xff]),
            },
            ..aarch64()
        };
        assert_eq!(
            reg.register_line(),
            Err(InvalidRegistration::MaskLength { magic: 3, mask: 2 })
        );
    }

    #[test]
    fn magic_must_fit_in_the_kernel_buffer() {
        let with = |offset, len| Registration {
            matcher: Matcher::Magic {
                offset,
                magic: vec![0x7f; len],
                mask: None,
            },
            ..aarch64()
        };
        assert!(with(236, 20).register_line().is_ok());
        assert_eq!(
            with(237, 20).register_line(),
            Err(InvalidRegistration::BeyondBuffer {
                offset: 237,
                magic: 20
            })
        );
        assert!(with(u32::MAX, 1).register_line().is_err());
        assert_eq!(
            with(0, 0).register_line(),
            Err(InvalidRegistration::EmptyMagic)
        );
        // 256 bytes of magic and mask escape to 2048 bytes: over the line limit.
        let reg = Registration {
            matcher: Matcher::Magic {
                offset: 0,
                magic: vec![0; 256],
                mask: Some(vec![0xff; 256]),
            },
            ..aarch64()
        };
        assert!(matches!(
            reg.register_line(),
            Err(InvalidRegistration::TooLong(_))
        ));
    }

    #[test]
    fn interpreter_must_be_absolute_and_plain() {
        for path in ["qemu-aarch64", "", "/usr/bin/a:b", "/usr/bin/a\nb"] {
            let reg = Registration {
                interpreter: PathBuf::from(path),
                ..aarch64()
            };
            assert!(
                matches!(
                    reg.register_line(),
                    Err(InvalidRegistration::Interpreter(_))
                ),
                "{path:?}"
            );
        }
    }

    #[test]
    fn bits_outside_the_mask_do_not_count() {
        let wanted = aarch64();
        let mut other = aarch64();
        if let Matcher::Magic { magic, .. } = &mut other.matcher {
            magic[7] = 0x03; // EI_OSABI, masked out by 0x00
        }
        assert!(wanted.matcher.matches_same_files(&other.matcher));
        if let Matcher::Magic { magic, .. } = &mut other.matcher {
            magic[18] = 0x3e; // e_machine: x86_64, not aarch64
        }
        assert!(!wanted.matcher.matches_same_files(&other.matcher));

        let unmasked = |mask| Matcher::Magic {
            offset: 0,
            magic: vec![1, 2],
            mask,
        };
        assert!(unmasked(None).matches_same_files(&unmasked(Some(vec![0xff, 0xff]))));
        assert!(!unmasked(None).matches_same_files(&unmasked(Some(vec![0xff, 0xfe]))));
    }

    #[test]
    fn differences_name_what_changed() {
        // A stale entry: registered by hand without F, pointing elsewhere.
        let stale = Entry {
            enabled: false,
            registration: Registration {
                interpreter: PathBuf::from("/usr/bin/qemu-aarch64-static"),
                flags: "OF".parse().unwrap(),
                ..aarch64()
            },
        };
        let differences = stale.differences(&aarch64());
        let shown: Vec<String> = differences.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "interpreter /usr/bin/qemu-aarch64-static -> /usr/bin/qemu-aarch64",
                "flags OF -> POCF",
                "entry was disabled",
            ]
        );
    }

    #[test]
    fn matches_file_compares_magic_under_mask_and_extensions() {
        let matcher = Matcher::Magic {
            offset: 1,
            magic: vec![0xab, 0x0f],
            mask: Some(vec![0xff, 0x0f]),
        };
        assert!(matcher.matches_file("x", &[0, 0xab, 0xff]));
        assert!(matcher.matches_file("x", &[0, 0xab, 0x0f]));
        assert!(!matcher.matches_file("x", &[0xab, 0x0f]));
        assert!(!matcher.matches_file("x", &[0, 0xab, 0x0e]));
        // Beyond the header the kernel's buffer holds zeros.
        let zero = Matcher::Magic {
            offset: 2,
            magic: vec![0],
            mask: None,
        };
        assert!(zero.matches_file("x", &[1]));
        assert!(!zero.matches_file("x", &[1, 1, 1]));
        let extension = Matcher::Extension("exe".into());
        assert!(extension.matches_file("a.b.exe", b""));
        assert!(!extension.matches_file("exe", b""));
        assert!(!extension.matches_file("a.exe.b", b""));
    }
}
