//! The architectures binfmt knows: their names in every usual spelling, and the
//! binfmt_misc magic and mask that recognise their ELF binaries.
//!
//! The magic/mask table is QEMU's `scripts/qemu-binfmt-conf.sh` (the same in
//! tonistiigi/binfmt and in Debian's `/usr/share/qemu/binfmt.d`). The masks accept both
//! `ET_EXEC` and `ET_DYN` (PIE) and ignore `EI_OSABI`.

use std::fmt;

use binfmt_misc::Matcher;
use binfmt_misc::report::Fixable;

/// A Linux architecture, named as OCI platforms name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Arch {
    /// `linux/amd64`, QEMU's `x86_64`.
    Amd64,
    /// `linux/arm64`, QEMU's `aarch64`.
    Arm64,
    /// `linux/arm/v7` and `linux/arm/v6`, QEMU's `arm`.
    Arm,
    /// `linux/386`, QEMU's `i386`.
    I386,
    /// `linux/riscv64`.
    Riscv64,
    /// `linux/ppc64le`.
    Ppc64le,
    /// `linux/s390x`.
    S390x,
    /// `linux/mips64le`, QEMU's `mips64el`.
    Mips64le,
    /// `linux/mips64`.
    Mips64,
    /// `linux/loong64`, QEMU's `loongarch64`.
    Loong64,
}

/// One row of the table: everything fixed about an architecture.
struct Row {
    oci: &'static str,
    qemu_cpu: &'static str,
    /// Other names users type (all lowercase), besides `oci` and `qemu_cpu`.
    aliases: &'static [&'static str],
    /// Variants allowed after `linux/<oci>/`.
    variants: &'static [&'static str],
    magic: [u8; 20],
    mask: [u8; 20],
}

const ELF: [u8; 4] = *b"\x7fELF";

/// The magic for an ELF header whose bytes after `\x7fELF` are `tail`.
const fn magic(tail: [u8; 16]) -> [u8; 20] {
    let mut out = [0u8; 20];
    let mut i = 0;
    while i < 4 {
        out[i] = ELF[i];
        i += 1;
    }
    while i < 20 {
        out[i] = tail[i - 4];
        i += 1;
    }
    out
}

/// The table, in the order of [`Arch`]'s variants ([`Arch::row`] indexes it).
///
/// Magic: the ELF header up to `e_machine` (ident with class, data, version and
/// OSABI, then `e_type` and `e_machine` in the architecture's byte order).
static ROWS: [Row; 10] = [
    // Arch::Amd64
    Row {
        oci: "amd64",
        qemu_cpu: "x86_64",
        aliases: &["x86_64", "x86-64", "x64"],
        variants: &["v1", "v2", "v3", "v4"],
        magic: magic(*b"\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x3e\x00"),
        mask: *b"\xff\xff\xff\xff\xff\xfe\xfe\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff",
    },
    // Arch::Arm64
    Row {
        oci: "arm64",
        qemu_cpu: "aarch64",
        aliases: &["aarch64", "arm64v8"],
        variants: &["v8", "v8.1", "v8.2", "v8.3", "v8.4", "v8.5", "v9"],
        magic: magic(*b"\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00"),
        mask: *b"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff",
    },
    // Arch::Arm
    Row {
        oci: "arm",
        qemu_cpu: "arm",
        aliases: &[
            "armhf", "armel", "armv7", "armv7l", "armv6", "armv6l", "arm32",
        ],
        variants: &["v5", "v6", "v7", "v8"],
        magic: magic(*b"\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x28\x00"),
        mask: *b"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff",
    },
    // Arch::I386
    Row {
        oci: "386",
        qemu_cpu: "i386",
        aliases: &["i386", "i486", "i586", "i686", "x86"],
        variants: &[],
        magic: magic(*b"\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x03\x00"),
        mask: *b"\xff\xff\xff\xff\xff\xfe\xfe\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff",
    },
    // Arch::Riscv64
    Row {
        oci: "riscv64",
        qemu_cpu: "riscv64",
        aliases: &[],
        variants: &[],
        magic: magic(*b"\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xf3\x00"),
        mask: *b"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff",
    },
    // Arch::Ppc64le
    Row {
        oci: "ppc64le",
        qemu_cpu: "ppc64le",
        aliases: &["ppc64el", "powerpc64le"],
        variants: &[],
        magic: magic(*b"\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x15\x00"),
        mask: *b"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\x00",
    },
    // Arch::S390x
    Row {
        oci: "s390x",
        qemu_cpu: "s390x",
        aliases: &[],
        variants: &[],
        magic: magic(*b"\x02\x02\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x16"),
        mask: *b"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff",
    },
    // Arch::Mips64le
    Row {
        oci: "mips64le",
        qemu_cpu: "mips64el",
        aliases: &["mips64el"],
        variants: &[],
        magic: magic(*b"\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x08\x00"),
        mask: *b"\xff\xff\xff\xff\xff\xff\xff\x00\x00\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff",
    },
    // Arch::Mips64
    Row {
        oci: "mips64",
        qemu_cpu: "mips64",
        aliases: &[],
        variants: &[],
        magic: magic(*b"\x02\x02\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x08"),
        mask: *b"\xff\xff\xff\xff\xff\xff\xff\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff",
    },
    // Arch::Loong64
    Row {
        oci: "loong64",
        qemu_cpu: "loongarch64",
        aliases: &["loongarch64"],
        variants: &[],
        magic: magic(*b"\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x02\x01"),
        mask: *b"\xff\xff\xff\xff\xff\xff\xff\xfc\x00\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff",
    },
];

impl Arch {
    /// Every architecture, in the order of the facts table (and of `--install all`).
    pub const ALL: [Arch; 10] = [
        Arch::Amd64,
        Arch::Arm64,
        Arch::Arm,
        Arch::I386,
        Arch::Riscv64,
        Arch::Ppc64le,
        Arch::S390x,
        Arch::Mips64le,
        Arch::Mips64,
        Arch::Loong64,
    ];

    fn row(self) -> &'static Row {
        &ROWS[self as usize]
    }

    /// The OCI name: what `--platform linux/<oci>` uses.
    pub fn oci(self) -> &'static str {
        self.row().oci
    }

    /// QEMU's name for the CPU: the emulator is `qemu-<cpu>`.
    pub fn qemu_cpu(self) -> &'static str {
        self.row().qemu_cpu
    }

    /// The platforms this architecture runs, spelled as containerd spells them
    /// (`linux/arm/v7`), for the status JSON.
    pub fn platforms(self) -> &'static [&'static str] {
        match self {
            Arch::Amd64 => &["linux/amd64"],
            Arch::Arm64 => &["linux/arm64"],
            Arch::Arm => &["linux/arm/v7", "linux/arm/v6"],
            Arch::I386 => &["linux/386"],
            Arch::Riscv64 => &["linux/riscv64"],
            Arch::Ppc64le => &["linux/ppc64le"],
            Arch::S390x => &["linux/s390x"],
            Arch::Mips64le => &["linux/mips64le"],
            Arch::Mips64 => &["linux/mips64"],
            Arch::Loong64 => &["linux/loong64"],
        }
    }

    /// The binfmt_misc entry name, `qemu-<cpu>`, the same as QEMU's script, Debian and
    /// tonistiigi/binfmt use, so binfmt recognises (and repairs) their entries.
    pub fn entry_name(self) -> String {
        format!("qemu-{}", self.qemu_cpu())
    }

    /// The magic bytes (20 bytes at offset 0: the ELF header up to `e_machine`).
    pub fn magic(self) -> &'static [u8] {
        &self.row().magic
    }

    /// The mask applied to [`Arch::magic`].
    pub fn mask(self) -> &'static [u8] {
        &self.row().mask
    }

    /// The binfmt_misc matcher for this architecture's ELF binaries.
    pub fn matcher(self) -> Matcher {
        Matcher::Magic {
            offset: 0,
            magic: self.magic().to_vec(),
            mask: Some(self.mask().to_vec()),
        }
    }

    /// The architectures this build of binfmt runs on natively: never registered,
    /// because an emulator for them would take over every native program.
    ///
    /// On x86_64 that is x86_64 and i386 (every x86_64 CPU runs 32-bit x86 code); on
    /// aarch64 it is aarch64. Whether an aarch64 CPU also runs 32-bit arm varies, so
    /// that is measured by execution, not assumed. On ppc64le, s390x and riscv64 it is
    /// the one architecture: none of them runs another of the catalog (a ppc64le
    /// kernel may run big-endian ppc64 programs, which the catalog does not carry).
    pub fn native() -> &'static [Arch] {
        if cfg!(target_arch = "x86_64") {
            &[Arch::Amd64, Arch::I386]
        } else if cfg!(target_arch = "aarch64") {
            &[Arch::Arm64]
        } else if cfg!(all(target_arch = "powerpc64", target_endian = "little")) {
            &[Arch::Ppc64le]
        } else if cfg!(target_arch = "s390x") {
            &[Arch::S390x]
        } else if cfg!(target_arch = "riscv64") {
            &[Arch::Riscv64]
        } else {
            &[]
        }
    }

    /// Whether this build runs the architecture natively (see [`Arch::native`]).
    pub fn is_native(self) -> bool {
        Arch::native().contains(&self)
    }

    /// Whether a CPU of this build's architecture may run the architecture's programs
    /// natively although it is not in [`Arch::native`]: 32-bit arm on aarch64, where
    /// AArch32 is optional and only running a program tells. An x86_64 CPU runs no
    /// other architecture of the catalog, so `--install all` needs no probe to know
    /// what to skip there.
    pub fn may_be_native(self) -> bool {
        Arch::native()
            .first()
            .is_some_and(|&host| self.may_be_native_on(host))
    }

    /// [`Arch::may_be_native`] on a CPU of architecture `host`.
    pub fn may_be_native_on(self, host: Arch) -> bool {
        host == Arch::Arm64 && self == Arch::Arm
    }

    /// Finds the architecture a user means: an OCI name (`arm64`), a platform
    /// (`linux/arm64`, `linux/arm/v7`, `linux/amd64/v2`), QEMU's name (`aarch64`) or a
    /// common alias (`armhf`, `i686`, `ppc64el`). Case does not matter; anything else,
    /// including unknown variants, is refused.
    pub fn parse(spec: &str) -> Result<Arch, UnknownArch> {
        let unknown = || UnknownArch(spec.to_owned());
        let lower = spec.to_ascii_lowercase();
        let rest = lower.strip_prefix("linux/").unwrap_or(&lower);
        let mut parts = rest.split('/');
        let name = parts.next().unwrap_or_default();
        let variant = parts.next();
        if parts.next().is_some() {
            return Err(unknown());
        }
        let arch = Arch::ALL
            .into_iter()
            .find(|arch| {
                let row = arch.row();
                row.oci == name || row.qemu_cpu == name || row.aliases.contains(&name)
            })
            .ok_or_else(unknown)?;
        match variant {
            None => Ok(arch),
            Some(variant) if arch.row().variants.contains(&variant) => Ok(arch),
            Some(_) => Err(unknown()),
        }
    }
}

impl fmt::Display for Arch {
    /// The OCI name, as tonistiigi/binfmt's log lines show it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.oci())
    }
}

/// A name that is no architecture binfmt knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownArch(pub String);

impl fmt::Display for UnknownArch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown architecture {:?}", self.0)
    }
}

impl std::error::Error for UnknownArch {}

impl Fixable for UnknownArch {
    fn fix(&self) -> Option<String> {
        let known: Vec<&str> = Arch::ALL.iter().map(|a| a.oci()).collect();
        Some(format!(
            "use one of {} (or `all`), as OCI names (`arm64`), platforms (`linux/arm/v7`) or \
             QEMU names (`aarch64`)",
            known.join(", ")
        ))
    }
}

/// What `--install` was asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    /// `all`: every architecture this binary carries an emulator for.
    All,
    /// Named architectures, without duplicates, in the order given.
    Arches(Vec<Arch>),
}

/// The longest list accepted: far more than every spelling of every architecture, short
/// enough that nothing absurd is echoed back in an error.
pub const MAX_LIST_LENGTH: usize = 4096;

/// Why a list of architectures was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListError {
    /// One item names no architecture binfmt knows.
    Unknown(UnknownArch),
    /// The list is longer than [`MAX_LIST_LENGTH`] bytes.
    TooLong { length: usize },
}

impl fmt::Display for ListError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListError::Unknown(unknown) => unknown.fmt(f),
            ListError::TooLong { length } => write!(
                f,
                "the list is {length} bytes long; at most {MAX_LIST_LENGTH} are accepted \
                 (every architecture in every spelling fits in far less)"
            ),
        }
    }
}

impl std::error::Error for ListError {}

impl Fixable for ListError {
    fn fix(&self) -> Option<String> {
        match self {
            ListError::Unknown(unknown) => unknown.fix(),
            ListError::TooLong { .. } => {
                Some("give `all` or the architectures you need".to_owned())
            }
        }
    }
}

impl From<UnknownArch> for ListError {
    fn from(unknown: UnknownArch) -> ListError {
        ListError::Unknown(unknown)
    }
}

/// Parses a comma-separated list such as `arm64,linux/riscv64` or `all`.
///
/// Every item is checked before anything is returned: one unknown name refuses the
/// whole list, so a caller validates everything before its first write.
pub fn parse_list(list: &str) -> Result<Selection, ListError> {
    if list.len() > MAX_LIST_LENGTH {
        return Err(ListError::TooLong { length: list.len() });
    }
    let mut arches = Vec::new();
    let mut all = false;
    // Only spaces are trimmed (`arm64, riscv64`): a newline, tab or NUL is no part of
    // any name and refuses the list.
    for item in list.split(',').map(|item| item.trim_matches(' ')) {
        if item.eq_ignore_ascii_case("all") {
            all = true;
            continue;
        }
        let arch = Arch::parse(item)?;
        if !arches.contains(&arch) {
            arches.push(arch);
        }
    }
    Ok(if all {
        Selection::All
    } else {
        Selection::Arches(arches)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_usual_spelling_finds_its_arch() {
        let cases = [
            ("arm64", Arch::Arm64),
            ("linux/arm64", Arch::Arm64),
            ("linux/arm64/v8", Arch::Arm64),
            ("aarch64", Arch::Arm64),
            ("AArch64", Arch::Arm64),
            ("arm", Arch::Arm),
            ("linux/arm/v7", Arch::Arm),
            ("linux/arm/v6", Arch::Arm),
            ("armhf", Arch::Arm),
            ("386", Arch::I386),
            ("i386", Arch::I386),
            ("linux/386", Arch::I386),
            ("amd64", Arch::Amd64),
            ("x86_64", Arch::Amd64),
            ("linux/amd64/v2", Arch::Amd64),
            ("riscv64", Arch::Riscv64),
            ("ppc64le", Arch::Ppc64le),
            ("ppc64el", Arch::Ppc64le),
            ("s390x", Arch::S390x),
            ("mips64le", Arch::Mips64le),
            ("mips64el", Arch::Mips64le),
            ("mips64", Arch::Mips64),
            ("loong64", Arch::Loong64),
            ("loongarch64", Arch::Loong64),
        ];
        for (spec, arch) in cases {
            assert_eq!(Arch::parse(spec), Ok(arch), "{spec}");
        }
    }

    #[test]
    fn the_table_is_in_variant_order() {
        let cpus: Vec<&str> = Arch::ALL.iter().map(|a| a.qemu_cpu()).collect();
        assert_eq!(
            cpus,
            [
                "x86_64",
                "aarch64",
                "arm",
                "i386",
                "riscv64",
                "ppc64le",
                "s390x",
                "mips64el",
                "mips64",
                "loongarch64"
            ]
        );
        for (index, arch) in Arch::ALL.into_iter().enumerate() {
            assert_eq!(arch as usize, index);
        }
    }

    #[test]
    fn every_name_parses_back() {
        for arch in Arch::ALL {
            assert_eq!(Arch::parse(arch.oci()), Ok(arch));
            assert_eq!(Arch::parse(arch.qemu_cpu()), Ok(arch));
            assert_eq!(Arch::parse(&format!("linux/{}", arch.oci())), Ok(arch));
        }
    }

    #[test]
    fn hostile_or_unknown_names_are_refused() {
        for spec in [
            "",
            "bogus",
            "arm64;rm",
            "linux/arm64/..",
            "linux/../arm64",
            "arm64\n",
            "arm64\0",
            "\0",
            "arm64\r",
            "arm64 rm",
            "ARM64\u{200b}",
            "linux/arm/v9",
            "linux/amd64/v5",
            "linux/arm64/v8/x",
            "windows/amd64",
            "/arm64",
            "arm64/",
        ] {
            assert!(Arch::parse(spec).is_err(), "{spec:?} accepted");
        }
    }

    #[test]
    fn lists_are_all_or_nothing() {
        assert_eq!(
            parse_list("arm64,linux/riscv64,aarch64"),
            Ok(Selection::Arches(vec![Arch::Arm64, Arch::Riscv64]))
        );
        assert_eq!(parse_list("all"), Ok(Selection::All));
        assert_eq!(
            parse_list(" arm64 , riscv64"),
            Ok(Selection::Arches(vec![Arch::Arm64, Arch::Riscv64]))
        );
        for hostile in [
            "arm64;rm -rf /",
            "arm64,linux/arm64/..",
            "../../etc/passwd",
            "arm64\n",
            "arm64,\nriscv64",
            "arm64\t",
            "arm64,\0",
            "all\0",
            "linux/arm/v9",
        ] {
            assert!(parse_list(hostile).is_err(), "{hostile:?} accepted");
        }
        assert_eq!(parse_list("arm64,all"), Ok(Selection::All));
        let error = parse_list("arm64,bogus").unwrap_err();
        assert_eq!(error, ListError::Unknown(UnknownArch("bogus".to_owned())));
        assert!(
            error
                .fix()
                .is_some_and(|fix| fix.contains("arm64, arm, 386"))
        );
        assert!(parse_list("").is_err());
        assert!(parse_list("arm64,").is_err());
        let absurd = "arm64,".repeat(10_000);
        assert_eq!(
            parse_list(&absurd),
            Err(ListError::TooLong { length: 60_000 })
        );
        assert!(parse_list(&"a".repeat(MAX_LIST_LENGTH)).is_err());
    }

    #[test]
    fn magic_and_mask_match_the_elf_header_of_each_arch() {
        // (EI_CLASS, EI_DATA, e_machine) for each arch, from the ELF specification.
        let expected = [
            (Arch::Amd64, 2, 1, 62u16),
            (Arch::Arm64, 2, 1, 183),
            (Arch::Arm, 1, 1, 40),
            (Arch::I386, 1, 1, 3),
            (Arch::Riscv64, 2, 1, 243),
            (Arch::Ppc64le, 2, 1, 21),
            (Arch::S390x, 2, 2, 22),
            (Arch::Mips64le, 2, 1, 8),
            (Arch::Mips64, 2, 2, 8),
            (Arch::Loong64, 2, 1, 258),
        ];
        for (arch, class, data, machine) in expected {
            let magic = arch.magic();
            assert_eq!(&magic[..4], b"\x7fELF", "{arch}");
            assert_eq!((magic[4], magic[5]), (class, data), "{arch}");
            let machine_bytes = if data == 1 {
                machine.to_le_bytes()
            } else {
                machine.to_be_bytes()
            };
            assert_eq!(&magic[18..20], &machine_bytes, "{arch}");
            // The mask must let e_machine through and accept ET_EXEC (2) and ET_DYN (3).
            let mask = arch.mask();
            let e_type_at = if data == 1 { 16 } else { 17 };
            for e_type in [2u8, 3] {
                assert_eq!(e_type & mask[e_type_at], magic[e_type_at] & mask[e_type_at]);
            }
            assert_eq!(magic.len(), mask.len());
        }
    }

    #[test]
    fn the_hosts_own_arches_are_native() {
        if cfg!(target_arch = "x86_64") {
            assert_eq!(Arch::native(), [Arch::Amd64, Arch::I386]);
        }
        assert!(Arch::ALL.iter().filter(|a| a.is_native()).count() <= 2);
    }
}
