//! A model of the kernel's side of binfmt_misc: how `create_entry()` in
//! `fs/binfmt_misc.c` reads a register line, and how `entry_status()` prints an entry
//! back in `<mount>/<name>`.
//!
//! [`FakeTable`](crate::fake::FakeTable) stores what [`parse_register_line`] makes of
//! the bytes [`Registration::register_line`] encodes and answers reads with what
//! [`status_text`] prints, which [`Entry::parse`] then reads: every test on the fake
//! goes through encode, the kernel's parser, the kernel's printer and our parser, and
//! the fuzz target `register_roundtrip` checks `parse(print(kernel(encode(x)))) == x`.
//!
//! The model follows the kernel line by line where our encoder can lead (delimiter,
//! field order, `\xHH` escapes, the `BINPRM_BUF_SIZE` rule, flag letters, one optional
//! trailing newline). It is stricter where the kernel's C string handling gets murky
//! and our encoder never goes: a raw NUL byte anywhere, or a name, extension or
//! interpreter that is not UTF-8, is refused here.

use std::path::PathBuf;

use crate::entry::{BINPRM_BUF_SIZE, Entry, Flags, MAX_REGISTER_LENGTH, Matcher, Registration};

/// The shortest line the kernel accepts (`count < 11` is EINVAL).
const MIN_REGISTER_LENGTH: usize = 11;

/// Why the kernel would answer EINVAL to a register line; the text says which rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected(pub String);

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the kernel would refuse this register line (EINVAL): {}",
            self.0
        )
    }
}

impl std::error::Error for Rejected {}

fn rejected(why: &str) -> Rejected {
    Rejected(why.to_owned())
}

/// What `create_entry()` makes of a line written to `register`: the registration the
/// kernel would store (flags as it stores them: `C` sets `O`), or why it refuses.
pub fn parse_register_line(line: &[u8]) -> Result<Registration, Rejected> {
    if line.len() < MIN_REGISTER_LENGTH || line.len() > MAX_REGISTER_LENGTH {
        return Err(rejected("the line must be 11 to 1920 bytes"));
    }
    if line.contains(&0) {
        return Err(rejected(
            "a NUL byte (not modelled: the kernel's strchr stops there)",
        ));
    }
    let delimiter = line[0];
    let end = line.len();
    // The kernel pads the buffer with 8 delimiters "to simplify parsing": a field
    // search that runs off the end finds one of them.
    let mut buffer = line.to_vec();
    buffer.extend_from_slice(&[delimiter; 8]);
    // Past the padding the kernel would read whatever follows in memory; the model
    // reads NUL bytes there, which end every search.
    let at = |i: usize| buffer.get(i).copied().unwrap_or(0);
    let find = |from: usize| -> Option<usize> {
        buffer
            .get(from..)?
            .iter()
            .position(|&b| b == delimiter)
            .map(|i| from + i)
    };
    let text = |bytes: &[u8], what: &str| -> Result<String, Rejected> {
        String::from_utf8(bytes.to_vec()).map_err(|_| Rejected(format!("{what} is not UTF-8")))
    };

    let mut p = 1;
    let name_end = find(p).ok_or_else(|| rejected("no delimiter after the name"))?;
    let name = text(&buffer[p..name_end], "the name")?;
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(rejected("the name is empty, `.`, `..` or has `/`"));
    }
    p = name_end + 1;

    let kind = at(p);
    p += 1;
    if kind != b'E' && kind != b'M' {
        return Err(rejected("the type is neither `E` nor `M`"));
    }
    if at(p) != delimiter {
        return Err(rejected("no delimiter after the type"));
    }
    p += 1;

    let matcher = if kind == b'M' {
        let offset_end = find(p).ok_or_else(|| rejected("no delimiter after the offset"))?;
        let offset = if offset_end == p {
            0
        } else {
            kstrtoint(&buffer[p..offset_end]).ok_or_else(|| rejected("bad offset"))?
        };
        p = offset_end + 1;

        let (magic_raw, next) = scanarg(&buffer, p, delimiter)?;
        if magic_raw.is_empty() {
            return Err(rejected("the magic is empty"));
        }
        p = next;
        let (mask_raw, next) = scanarg(&buffer, p, delimiter)?;
        p = next;

        let magic = unescape_hex(magic_raw);
        let mask = if mask_raw.is_empty() {
            None
        } else {
            let mask = unescape_hex(mask_raw);
            if mask.len() != magic.len() {
                return Err(rejected("mask and magic differ in length"));
            }
            Some(mask)
        };
        if magic.len() > BINPRM_BUF_SIZE || BINPRM_BUF_SIZE - magic.len() < offset as usize {
            return Err(rejected("offset plus magic length exceeds 256"));
        }
        Matcher::Magic {
            offset,
            magic,
            mask,
        }
    } else {
        // Skip the offset, take the extension, skip the mask.
        p = find(p).ok_or_else(|| rejected("no delimiter after the offset"))? + 1;
        let extension_end = find(p).ok_or_else(|| rejected("no delimiter after the extension"))?;
        let extension = text(&buffer[p..extension_end], "the extension")?;
        if extension.is_empty() || extension.contains('/') {
            return Err(rejected("the extension is empty or has `/`"));
        }
        p = extension_end + 1;
        p = find(p).ok_or_else(|| rejected("no delimiter after the mask"))? + 1;
        Matcher::Extension(extension)
    };

    let interpreter_end = find(p).ok_or_else(|| rejected("no delimiter after the interpreter"))?;
    let interpreter = text(&buffer[p..interpreter_end], "the interpreter")?;
    if interpreter.is_empty() {
        return Err(rejected("the interpreter is empty"));
    }
    p = interpreter_end + 1;

    // check_special_flags(): take letters while they are flags, then the line must
    // end (after at most one newline).
    let mut flags = Flags::NONE;
    loop {
        match at(p) {
            b'P' => flags.preserve_argv0 = true,
            b'O' => flags.open_binary = true,
            b'C' => {
                flags.credentials = true;
                flags.open_binary = true;
            }
            b'F' => flags.fix_binary = true,
            _ => break,
        }
        p += 1;
    }
    if p < end && at(p) == b'\n' {
        p += 1;
    }
    if p != end {
        return Err(rejected(
            "something other than flags after the last delimiter",
        ));
    }
    Ok(Registration {
        name,
        matcher,
        interpreter: PathBuf::from(interpreter),
        flags,
    })
}

/// `scanarg()`: the field from `from` up to the next delimiter, where every `\x` must
/// be followed by two hex digits. Returns the raw field and where the next one starts.
fn scanarg(buffer: &[u8], from: usize, delimiter: u8) -> Result<(&[u8], usize), Rejected> {
    let mut s = from;
    loop {
        let c = *buffer
            .get(s)
            .ok_or_else(|| rejected("a field runs past the end of the line"))?;
        s += 1;
        if c == delimiter {
            return Ok((&buffer[from..s - 1], s));
        }
        if c == b'\\' && buffer.get(s) == Some(&b'x') {
            s += 1;
            for _ in 0..2 {
                if !buffer.get(s).is_some_and(u8::is_ascii_hexdigit) {
                    return Err(rejected("`\\x` without two hex digits"));
                }
                s += 1;
            }
        }
    }
}

/// `string_unescape_inplace(.., UNESCAPE_HEX)`: `\x` and one or two hex digits become
/// that byte; every other byte stays as it is.
fn unescape_hex(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let digit = |at: usize| raw.get(at).and_then(|&b| (b as char).to_digit(16));
        if raw[i] == b'\\'
            && raw.get(i + 1) == Some(&b'x')
            && let Some(high) = digit(i + 2)
        {
            match digit(i + 3) {
                Some(low) => {
                    out.push((high * 16 + low) as u8);
                    i += 4;
                }
                None => {
                    out.push(high as u8);
                    i += 3;
                }
            }
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    out
}

/// `kstrtoint(s, 10, ..)` followed by the kernel's `offset < 0` check: an optional
/// sign, decimal digits, an optional trailing newline, within `int`, not negative.
fn kstrtoint(field: &[u8]) -> Option<u32> {
    let field = field.strip_suffix(b"\n").unwrap_or(field);
    let (negative, digits) = match field.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, field),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let value: i64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    let value = if negative { -value } else { value };
    if value < 0 || value > i64::from(i32::MAX) {
        return None;
    }
    u32::try_from(value).ok()
}

/// What `entry_status()` prints in `<mount>/<name>` for an entry.
pub fn status_text(entry: &Entry) -> String {
    let registration = &entry.registration;
    let mut text = format!(
        "{}\ninterpreter {}\nflags: {}\n",
        if entry.enabled { "enabled" } else { "disabled" },
        registration.interpreter.to_string_lossy(),
        registration.flags.normalized()
    );
    match &registration.matcher {
        Matcher::Extension(extension) => {
            text.push_str(&format!("extension .{extension}\n"));
        }
        Matcher::Magic {
            offset,
            magic,
            mask,
        } => {
            text.push_str(&format!("offset {offset}\nmagic {}", hex(magic)));
            if let Some(mask) = mask {
                text.push_str(&format!("\nmask {}", hex(mask)));
            }
            text.push('\n');
        }
    }
    text
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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

    #[test]
    fn the_kernel_reads_our_line_as_we_meant_it() {
        let wanted = aarch64();
        let line = wanted.register_line().unwrap();
        assert_eq!(parse_register_line(&line), Ok(wanted));
    }

    #[test]
    fn status_text_is_what_linux_printed() {
        // Read from /proc/sys/fs/binfmt_misc/qemu-aarch64 on Linux 6.18.
        let printed = "enabled\ninterpreter /usr/bin/qemu-aarch64\nflags: POCF\n\
            offset 0\nmagic 7f454c460201010000000000000000000200b700\n\
            mask ffffffffffffff00fffffffffffffffffeffffff\n";
        let entry = Entry {
            enabled: true,
            registration: aarch64(),
        };
        assert_eq!(status_text(&entry), printed);
        assert_eq!(Entry::parse("qemu-aarch64", printed), Ok(entry));
    }

    #[test]
    fn lines_by_hand_follow_the_kernels_rules() {
        let ok = |line: &str| parse_register_line(line.as_bytes());
        // Another delimiter, an empty offset, no mask, raw magic bytes, a newline.
        let parsed = ok("|x|M||AB||/bin/true|CF\n").unwrap();
        assert_eq!(
            parsed.matcher,
            Matcher::Magic {
                offset: 0,
                magic: b"AB".to_vec(),
                mask: None
            }
        );
        assert_eq!(parsed.flags.to_string(), "OCF");
        // One hex digit after \x unescapes, but scanarg wants two first.
        assert!(ok(":x:M::\\x4:\\xff:/bin/true:").is_err());
        assert_eq!(
            ok(":x:E::wasm::/bin/true:").unwrap().matcher,
            Matcher::Extension("wasm".into())
        );
        for bad in [
            ":x:M::\\x41:\\xff\\xff:/bin/true:", // mask length differs
            ":x:M:237:\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00::/t:",
            ":x:M:-1:\\x41::/bin/true:",    // negative offset
            ":x:M:0x1:\\x41::/bin/true:",   // not decimal
            ":x:M:::\\xff:/bin/true:",      // empty magic
            ":x:Q::\\x41::/bin/true:",      // unknown type
            ":..:M::\\x41::/bin/true:",     // name ..
            ":a/b:M::\\x41::/bin/true:",    // name with /
            ":x:M::\\x41::/bin/true:PX",    // unknown flag
            ":x:M::\\x41::/bin/true",       // no flags field
            ":x:M::\\x41:::F",              // empty interpreter
            ":x:E::a/b::/bin/true:",        // extension with /
            ":x:M::\\x41::/bin/true:F\n\n", // two newlines
            "short",
        ] {
            assert!(ok(bad).is_err(), "accepted {bad:?}");
        }
        assert!(ok(":x:M:236:\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00::/t:").is_ok());
    }
}
