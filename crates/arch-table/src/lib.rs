//! The architectures binfmt knows, as data: one row per architecture with its name in
//! every spelling (OCI and Docker platforms, Debian, QEMU, Rust, `uname -m`), the
//! binfmt_misc magic and mask that recognise its ELF binaries, and one row per host
//! binfmt is built for with what that host runs natively and which emulator the
//! others are compressed against.
//!
//! The one source of these facts: the catalog (`qemu-catalog`, its `Arch` and its
//! build script), the pin manifest (`qemu-pins`) and xtask read them here. It has no
//! dependencies and does nothing but look rows up.
//!
//! The magic/mask table is QEMU's `scripts/qemu-binfmt-conf.sh` (the same in
//! tonistiigi/binfmt and in Debian's `/usr/share/qemu/binfmt.d`). The masks accept both
//! `ET_EXEC` and `ET_DYN` (PIE) and ignore `EI_OSABI`.

#![forbid(unsafe_code)]
// What is `pub` is the crate's API: an item only its own crate can reach says so.
#![deny(unreachable_pub)]

/// Everything fixed about one architecture.
#[derive(Debug, PartialEq, Eq)]
pub struct Arch {
    /// The OCI name: what `--platform linux/<oci>` uses.
    pub oci: &'static str,
    /// The platforms it runs, as containerd spells them (`linux/arm/v7`).
    pub platforms: &'static [&'static str],
    /// Variants accepted after `linux/<oci>/`.
    pub variants: &'static [&'static str],
    /// QEMU's name for the CPU: the emulator is `qemu-<cpu>`, as in
    /// `qemu-blobs/pins.toml`.
    pub qemu_cpu: &'static str,
    /// Debian's architecture name; `None` where Debian has no port.
    pub debian: Option<&'static str>,
    /// Other names users type (all lowercase), besides `oci` and `qemu_cpu`.
    pub aliases: &'static [&'static str],
    /// What `uname -m` starts with on it (`armv7l` or `armv8l` for arm, `i686` ...).
    pub uname: &'static str,
    /// Rust's `target_arch` for it.
    pub target_arch: &'static str,
    /// Whether it is big-endian (Rust's `target_endian = "big"`, ELF's `ELFDATA2MSB`).
    pub big_endian: bool,
    /// The ELF header's `e_machine` (`EM_X86_64`, `EM_AARCH64`, ...).
    pub elf_machine: u16,
    /// The magic: the ELF header up to `e_machine` (ident with class, data, version
    /// and OSABI, then `e_type` and `e_machine` in the architecture's byte order).
    pub magic: [u8; 20],
    /// The mask applied to [`Arch::magic`].
    pub mask: [u8; 20],
}

/// A host binfmt is built for, and what it runs.
#[derive(Debug, PartialEq, Eq)]
pub struct Host {
    /// The host's name, as `qemu-blobs/pins.toml`, the release binaries and
    /// `cargo xtask dist --arch` name it: Rust's `target_arch`, except that
    /// little-endian `powerpc64` is `powerpc64le`.
    pub name: &'static str,
    /// The QEMU cpus it runs natively, its own first. A binary built for it never
    /// embeds or registers these: an emulator registered for the host's own
    /// architecture would take over every native program.
    pub native: &'static [&'static str],
    /// The QEMU cpus a CPU of this host may run natively, or may not: 32-bit arm on
    /// aarch64, where AArch32 is optional and only running a program tells.
    pub may_be_native: &'static [&'static str],
    /// The emulator every other embedded emulator is compressed against: the one
    /// installed alone most often, so that `--install` of that one decodes a single
    /// blob. arm64 on x86_64 hosts (cross-building for Graviton, Ampere and Apple
    /// silicon), amd64 everywhere else (the images most often built or run on an ARM,
    /// Power, Z or RISC-V machine are amd64 ones).
    pub reference: &'static str,
}

impl Host {
    /// The host's own architecture.
    pub fn arch(&self) -> &'static Arch {
        self.native
            .first()
            .and_then(|cpu| by_qemu_cpu(cpu))
            .unwrap_or(&ARCHES[0])
    }
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

/// Every architecture, in the order of the facts table (and of `--install all`).
pub const ARCHES: [Arch; 10] = [
    Arch {
        oci: "amd64",
        platforms: &["linux/amd64"],
        variants: &["v1", "v2", "v3", "v4"],
        qemu_cpu: "x86_64",
        debian: Some("amd64"),
        aliases: &["x86_64", "x86-64", "x64"],
        uname: "x86_64",
        target_arch: "x86_64",
        big_endian: false,
        elf_machine: 62,
        magic: magic(*b"\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x3e\x00"),
        mask: *b"\xff\xff\xff\xff\xff\xfe\xfe\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff",
    },
    Arch {
        oci: "arm64",
        platforms: &["linux/arm64"],
        variants: &["v8", "v8.1", "v8.2", "v8.3", "v8.4", "v8.5", "v9"],
        qemu_cpu: "aarch64",
        debian: Some("arm64"),
        aliases: &["aarch64", "arm64v8"],
        uname: "aarch64",
        target_arch: "aarch64",
        big_endian: false,
        elf_machine: 183,
        magic: magic(*b"\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00"),
        mask: *b"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff",
    },
    Arch {
        oci: "arm",
        platforms: &["linux/arm/v7", "linux/arm/v6"],
        variants: &["v5", "v6", "v7", "v8"],
        qemu_cpu: "arm",
        debian: Some("armhf"),
        aliases: &[
            "armhf", "armel", "armv7", "armv7l", "armv6", "armv6l", "arm32",
        ],
        uname: "armv",
        target_arch: "arm",
        big_endian: false,
        elf_machine: 40,
        magic: magic(*b"\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x28\x00"),
        mask: *b"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff",
    },
    Arch {
        oci: "386",
        platforms: &["linux/386"],
        variants: &[],
        qemu_cpu: "i386",
        debian: Some("i386"),
        aliases: &["i386", "i486", "i586", "i686", "x86"],
        uname: "i",
        target_arch: "x86",
        big_endian: false,
        elf_machine: 3,
        magic: magic(*b"\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x03\x00"),
        mask: *b"\xff\xff\xff\xff\xff\xfe\xfe\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff",
    },
    Arch {
        oci: "riscv64",
        platforms: &["linux/riscv64"],
        variants: &[],
        qemu_cpu: "riscv64",
        debian: Some("riscv64"),
        aliases: &[],
        uname: "riscv64",
        target_arch: "riscv64",
        big_endian: false,
        elf_machine: 243,
        magic: magic(*b"\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xf3\x00"),
        mask: *b"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff",
    },
    Arch {
        oci: "ppc64le",
        platforms: &["linux/ppc64le"],
        variants: &[],
        qemu_cpu: "ppc64le",
        debian: Some("ppc64el"),
        aliases: &["ppc64el", "powerpc64le"],
        uname: "ppc64le",
        target_arch: "powerpc64",
        big_endian: false,
        elf_machine: 21,
        magic: magic(*b"\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x15\x00"),
        mask: *b"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\x00",
    },
    Arch {
        oci: "s390x",
        platforms: &["linux/s390x"],
        variants: &[],
        qemu_cpu: "s390x",
        debian: Some("s390x"),
        aliases: &[],
        uname: "s390x",
        target_arch: "s390x",
        big_endian: true,
        elf_machine: 22,
        magic: magic(*b"\x02\x02\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x16"),
        mask: *b"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff",
    },
    Arch {
        oci: "mips64le",
        platforms: &["linux/mips64le"],
        variants: &[],
        qemu_cpu: "mips64el",
        debian: Some("mips64el"),
        aliases: &["mips64el"],
        uname: "mips64",
        target_arch: "mips64",
        big_endian: false,
        elf_machine: 8,
        magic: magic(*b"\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x08\x00"),
        mask: *b"\xff\xff\xff\xff\xff\xff\xff\x00\x00\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff",
    },
    Arch {
        oci: "mips64",
        platforms: &["linux/mips64"],
        variants: &[],
        qemu_cpu: "mips64",
        debian: None,
        aliases: &[],
        uname: "mips64",
        target_arch: "mips64",
        big_endian: true,
        elf_machine: 8,
        magic: magic(*b"\x02\x02\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x08"),
        mask: *b"\xff\xff\xff\xff\xff\xff\xff\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff",
    },
    Arch {
        oci: "loong64",
        platforms: &["linux/loong64"],
        variants: &[],
        qemu_cpu: "loongarch64",
        debian: Some("loong64"),
        aliases: &["loongarch64"],
        uname: "loongarch64",
        target_arch: "loongarch64",
        big_endian: false,
        elf_machine: 258,
        magic: magic(*b"\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x02\x01"),
        mask: *b"\xff\xff\xff\xff\xff\xff\xff\xfc\x00\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff",
    },
];

/// The hosts binfmt is built for: the five platforms tonistiigi/binfmt's image is
/// published for.
///
/// On x86_64 the natives are x86_64 and i386 (every x86_64 CPU runs 32-bit x86 code);
/// on aarch64 it is aarch64, and 32-bit arm may be (AArch32 is optional). On ppc64le,
/// s390x and riscv64 it is the one architecture: none of them runs another of the
/// table (a ppc64le kernel may run big-endian ppc64 programs, which binfmt does not
/// carry).
pub const HOSTS: [Host; 5] = [
    Host {
        name: "x86_64",
        native: &["x86_64", "i386"],
        may_be_native: &[],
        reference: "aarch64",
    },
    Host {
        name: "aarch64",
        native: &["aarch64"],
        may_be_native: &["arm"],
        reference: "x86_64",
    },
    Host {
        name: "powerpc64le",
        native: &["ppc64le"],
        may_be_native: &[],
        reference: "x86_64",
    },
    Host {
        name: "s390x",
        native: &["s390x"],
        may_be_native: &[],
        reference: "x86_64",
    },
    Host {
        name: "riscv64",
        native: &["riscv64"],
        may_be_native: &[],
        reference: "x86_64",
    },
];

/// The architecture QEMU calls `cpu`.
pub fn by_qemu_cpu(cpu: &str) -> Option<&'static Arch> {
    ARCHES.iter().find(|arch| arch.qemu_cpu == cpu)
}

/// The architecture a user means: an OCI name (`arm64`), a platform (`linux/arm64`,
/// `linux/arm/v7`, `linux/amd64/v2`), QEMU's name (`aarch64`), Debian's (`ppc64el`)
/// or a common alias (`armhf`, `i686`). Case does not matter; anything else,
/// including unknown variants, is `None`.
pub fn find(spelling: &str) -> Option<&'static Arch> {
    let lower = spelling.to_ascii_lowercase();
    let rest = lower.strip_prefix("linux/").unwrap_or(&lower);
    let mut parts = rest.split('/');
    let name = parts.next().unwrap_or_default();
    let variant = parts.next();
    if parts.next().is_some() {
        return None;
    }
    let arch = ARCHES.iter().find(|arch| {
        arch.oci == name
            || arch.qemu_cpu == name
            || arch.debian == Some(name)
            || arch.aliases.contains(&name)
    })?;
    match variant {
        None => Some(arch),
        Some(variant) if arch.variants.contains(&variant) => Some(arch),
        Some(_) => None,
    }
}

/// The host named `name` (as [`Host::name`]), if binfmt is built for it.
pub fn host(name: &str) -> Option<&'static Host> {
    HOSTS.iter().find(|host| host.name == name)
}

/// The host name of a Rust target, from its `target_arch` and `target_endian`
/// (`little` or `big`): [`Host::name`] for a host binfmt is built for, the
/// `target_arch` for any other (little-endian `powerpc64` is `powerpc64le`; Rust
/// spells both byte orders `powerpc64`).
pub fn host_name(target_arch: &str, target_endian: &str) -> String {
    let big_endian = target_endian == "big";
    HOSTS
        .iter()
        .find(|host| {
            let arch = host.arch();
            arch.target_arch == target_arch && arch.big_endian == big_endian
        })
        .map_or_else(|| target_arch.to_owned(), |host| host.name.to_owned())
}

/// The host this code was compiled for, or `None` when binfmt is not built for it.
/// (A build script asks [`host_name`] with cargo's `CARGO_CFG_TARGET_*` instead: it
/// runs on the build machine.)
pub fn this_host() -> Option<&'static Host> {
    let endian = if cfg!(target_endian = "big") {
        "big"
    } else {
        "little"
    };
    host(&host_name(std::env::consts::ARCH, endian))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_usual_spelling_finds_its_arch() {
        let cases = [
            ("arm64", "aarch64"),
            ("linux/arm64", "aarch64"),
            ("linux/arm64/v8", "aarch64"),
            ("aarch64", "aarch64"),
            ("AArch64", "aarch64"),
            ("arm", "arm"),
            ("linux/arm/v7", "arm"),
            ("linux/arm/v6", "arm"),
            ("armhf", "arm"),
            ("386", "i386"),
            ("i386", "i386"),
            ("linux/386", "i386"),
            ("amd64", "x86_64"),
            ("x86_64", "x86_64"),
            ("linux/amd64/v2", "x86_64"),
            ("riscv64", "riscv64"),
            ("linux/riscv64", "riscv64"),
            ("ppc64le", "ppc64le"),
            ("ppc64el", "ppc64le"),
            ("s390x", "s390x"),
            ("mips64le", "mips64el"),
            ("mips64el", "mips64el"),
            ("mips64", "mips64"),
            ("loong64", "loongarch64"),
            ("loongarch64", "loongarch64"),
        ];
        for (spelling, cpu) in cases {
            assert_eq!(find(spelling).map(|a| a.qemu_cpu), Some(cpu), "{spelling}");
        }
    }

    #[test]
    fn every_name_finds_its_row_back() {
        for arch in &ARCHES {
            assert_eq!(find(arch.oci), Some(arch));
            assert_eq!(find(arch.qemu_cpu), Some(arch));
            assert_eq!(find(&format!("linux/{}", arch.oci)), Some(arch));
            if let Some(debian) = arch.debian {
                assert_eq!(find(debian), Some(arch));
            }
            for platform in arch.platforms {
                assert_eq!(find(platform), Some(arch), "{platform}");
            }
            assert_eq!(by_qemu_cpu(arch.qemu_cpu), Some(arch));
        }
    }

    #[test]
    fn debian_names_are_debians() {
        let debian: Vec<Option<&str>> = ARCHES.iter().map(|a| a.debian).collect();
        assert_eq!(
            debian,
            [
                Some("amd64"),
                Some("arm64"),
                Some("armhf"),
                Some("i386"),
                Some("riscv64"),
                Some("ppc64el"),
                Some("s390x"),
                Some("mips64el"),
                None,
                Some("loong64"),
            ]
        );
    }

    #[test]
    fn hostile_or_unknown_names_are_refused() {
        for spelling in [
            "",
            "bogus",
            "sparc64",
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
            assert!(find(spelling).is_none(), "{spelling:?} accepted");
        }
    }

    #[test]
    fn magic_and_mask_match_the_elf_header_of_each_arch() {
        // (qemu cpu, EI_CLASS, EI_DATA, e_machine), from the ELF specification.
        let expected = [
            ("x86_64", 2, 1, 62u16),
            ("aarch64", 2, 1, 183),
            ("arm", 1, 1, 40),
            ("i386", 1, 1, 3),
            ("riscv64", 2, 1, 243),
            ("ppc64le", 2, 1, 21),
            ("s390x", 2, 2, 22),
            ("mips64el", 2, 1, 8),
            ("mips64", 2, 2, 8),
            ("loongarch64", 2, 1, 258),
        ];
        assert_eq!(expected.len(), ARCHES.len());
        for (arch, (cpu, class, data, machine)) in ARCHES.iter().zip(expected) {
            assert_eq!(arch.qemu_cpu, cpu);
            let magic = arch.magic;
            assert_eq!(&magic[..4], b"\x7fELF", "{cpu}");
            assert_eq!((magic[4], magic[5]), (class, data), "{cpu}");
            assert_eq!(arch.big_endian, data == 2, "{cpu}");
            let machine_bytes = if data == 1 {
                machine.to_le_bytes()
            } else {
                machine.to_be_bytes()
            };
            assert_eq!(&magic[18..20], &machine_bytes, "{cpu}");
            assert_eq!(arch.elf_machine, machine, "{cpu}");
            // The mask must let e_machine through and accept ET_EXEC (2) and ET_DYN (3).
            let mask = arch.mask;
            assert_eq!(magic.len(), mask.len());
            let e_type_at = if data == 1 { 16 } else { 17 };
            for e_type in [2u8, 3] {
                assert_eq!(e_type & mask[e_type_at], magic[e_type_at] & mask[e_type_at]);
            }
        }
    }

    #[test]
    fn each_host_runs_its_own_arch_and_names_a_foreign_reference() {
        let names: Vec<&str> = HOSTS.iter().map(|h| h.name).collect();
        assert_eq!(
            names,
            ["x86_64", "aarch64", "powerpc64le", "s390x", "riscv64"]
        );
        for host in &HOSTS {
            for cpu in host.native.iter().chain(host.may_be_native) {
                assert!(by_qemu_cpu(cpu).is_some(), "{}: {cpu}", host.name);
            }
            assert!(by_qemu_cpu(host.reference).is_some(), "{}", host.name);
            assert!(!host.native.contains(&host.reference), "{}", host.name);
            assert!(host.native.len() <= 2, "{}", host.name);
        }
        assert_eq!(
            host("x86_64").map(|h| h.native),
            Some(&["x86_64", "i386"][..])
        );
        assert_eq!(host("x86_64").map(|h| h.reference), Some("aarch64"));
        assert_eq!(host("aarch64").map(|h| h.may_be_native), Some(&["arm"][..]));
        assert_eq!(host("powerpc64le").map(|h| h.arch().oci), Some("ppc64le"));
        assert!(host("mips64").is_none());
    }

    #[test]
    fn host_name_tells_the_powerpc64_byte_orders_apart() {
        assert_eq!(host_name("powerpc64", "little"), "powerpc64le");
        assert_eq!(host_name("powerpc64", "big"), "powerpc64");
        assert_eq!(host_name("x86_64", "little"), "x86_64");
        assert_eq!(host_name("s390x", "big"), "s390x");
        assert_eq!(host_name("aarch64", "little"), "aarch64");
        assert_eq!(host_name("riscv64", "little"), "riscv64");
        assert_eq!(host_name("mips64", "big"), "mips64");
        for host in &HOSTS {
            let arch = host.arch();
            let endian = if arch.big_endian { "big" } else { "little" };
            assert_eq!(host_name(arch.target_arch, endian), host.name);
        }
    }

    #[test]
    fn this_host_is_the_compilers_target() {
        if cfg!(target_arch = "x86_64") {
            assert_eq!(this_host().map(|h| h.name), Some("x86_64"));
        }
        if cfg!(target_arch = "aarch64") {
            assert_eq!(this_host().map(|h| h.name), Some("aarch64"));
        }
    }
}
