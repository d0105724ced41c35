//! The architectures binfmt knows, typed: [`Arch`], one variant per row of the
//! `arch-table` crate (their names in every usual spelling, the binfmt_misc magic and
//! mask that recognise their ELF binaries, what each host runs natively).

use std::fmt;
use std::sync::OnceLock;

use binfmt_misc::Matcher;
use binfmt_misc::report::Fixable;

/// A Linux architecture, named as OCI platforms name it: a row of
/// [`arch_table::ARCHES`], in its order.
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

    /// Its row of the table.
    fn row(self) -> &'static arch_table::Arch {
        &arch_table::ARCHES[self as usize]
    }

    /// The architecture of a row of the table.
    fn of_row(row: &arch_table::Arch) -> Option<Arch> {
        Arch::ALL.into_iter().find(|arch| arch.row() == row)
    }

    /// The architecture QEMU calls `cpu`.
    pub fn by_qemu_cpu(cpu: &str) -> Option<Arch> {
        arch_table::by_qemu_cpu(cpu).and_then(Arch::of_row)
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
        self.row().platforms
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
    /// because an emulator for them would take over every native program (the
    /// table's [`arch_table::Host::native`] of this build's host; none on a host
    /// binfmt is not built for).
    pub fn native() -> &'static [Arch] {
        static NATIVE: OnceLock<Vec<Arch>> = OnceLock::new();
        NATIVE.get_or_init(|| {
            arch_table::this_host().map_or_else(Vec::new, |host| {
                host.native
                    .iter()
                    .filter_map(|cpu| Arch::by_qemu_cpu(cpu))
                    .collect()
            })
        })
    }

    /// Whether this build runs the architecture natively (see [`Arch::native`]).
    pub fn is_native(self) -> bool {
        Arch::native().contains(&self)
    }

    /// Whether a CPU of this build's architecture may run the architecture's programs
    /// natively although it is not in [`Arch::native`] (the table's
    /// [`arch_table::Host::may_be_native`]): 32-bit arm on aarch64, where AArch32 is
    /// optional and only running a program tells. An x86_64 CPU runs no other
    /// architecture of the catalog, so `--install all` needs no probe to know what to
    /// skip there.
    pub fn may_be_native(self) -> bool {
        Arch::native()
            .first()
            .is_some_and(|&host| self.may_be_native_on(host))
    }

    /// [`Arch::may_be_native`] on a CPU of architecture `host`.
    pub fn may_be_native_on(self, host: Arch) -> bool {
        arch_table::HOSTS
            .iter()
            .find(|row| row.native.first() == Some(&host.qemu_cpu()))
            .is_some_and(|row| row.may_be_native.contains(&self.qemu_cpu()))
    }

    /// Finds the architecture a user means: an OCI name (`arm64`), a platform
    /// (`linux/arm64`, `linux/arm/v7`, `linux/amd64/v2`), QEMU's name (`aarch64`),
    /// Debian's (`ppc64el`) or a common alias (`armhf`, `i686`); see
    /// [`arch_table::find`]. Case does not matter; anything else, including unknown
    /// variants, is refused.
    pub fn parse(spec: &str) -> Result<Arch, UnknownArch> {
        arch_table::find(spec)
            .and_then(Arch::of_row)
            .ok_or_else(|| UnknownArch(spec.to_owned()))
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
        assert_eq!(arch_table::ARCHES.len(), Arch::ALL.len());
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
    fn the_hosts_own_arches_are_native() {
        if cfg!(target_arch = "x86_64") {
            assert_eq!(Arch::native(), [Arch::Amd64, Arch::I386]);
        }
        assert!(Arch::ALL.iter().filter(|a| a.is_native()).count() <= 2);
        assert!(Arch::Arm.may_be_native_on(Arch::Arm64));
        assert!(!Arch::Arm.may_be_native_on(Arch::Amd64));
        assert!(!Arch::I386.may_be_native_on(Arch::Arm64));
    }
}
