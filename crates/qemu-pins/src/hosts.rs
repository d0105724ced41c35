//! The host architectures binfmt is built for: what each runs natively (never
//! embedded) and which emulator the others are compressed against.

use crate::manifest::{Host, Pin};

/// The QEMU cpus each host architecture runs natively (host name first, see
/// [`host_arch`]).
///
/// A binary built for a host never embeds or registers these: an emulator registered
/// for the host's own architecture would take over every native program. Mirrors
/// `qemu_catalog::Arch::native()`; a test in that crate checks the two agree.
pub const NATIVE_CPUS: &[(&str, &[&str])] = &[
    ("x86_64", &["x86_64", "i386"]),
    ("aarch64", &["aarch64"]),
    ("powerpc64le", &["ppc64le"]),
    ("s390x", &["s390x"]),
    ("riscv64", &["riscv64"]),
];

/// The emulator every other embedded emulator of a host is compressed against (see
/// [`crate::BlobCache::embedded_path`]): the architecture installed alone most often,
/// so that `--install` of that one decodes a single blob. arm64 on x86_64 hosts
/// (cross-building for Graviton, Ampere and Apple silicon), amd64 everywhere else
/// (the images most often built or run on an ARM, Power, Z or RISC-V machine are
/// amd64 ones).
pub const REFERENCE_CPUS: &[(&str, &str)] = &[
    ("x86_64", "aarch64"),
    ("aarch64", "x86_64"),
    ("powerpc64le", "x86_64"),
    ("s390x", "x86_64"),
    ("riscv64", "x86_64"),
];

/// The host name the manifest uses for a Rust target: its `target_arch`, except that
/// little-endian `powerpc64` is `powerpc64le` (Rust spells both byte orders
/// `powerpc64`; only the little-endian one is a binfmt host, as in Debian's
/// `ppc64el`).
pub fn host_arch(target_arch: &str, target_endian: &str) -> String {
    if target_arch == "powerpc64" && target_endian == "little" {
        "powerpc64le".to_owned()
    } else {
        target_arch.to_owned()
    }
}

impl Host {
    /// The emulators a binary built for this host embeds: every pinned one except the
    /// host's own architectures ([`NATIVE_CPUS`]). Empty for a host binfmt does not
    /// run on.
    pub fn embedded(&self) -> Vec<&Pin> {
        let Some((_, native)) = NATIVE_CPUS.iter().find(|(arch, _)| *arch == self.arch) else {
            return Vec::new();
        };
        self.emulators
            .iter()
            .filter(|emulator| !native.contains(&emulator.cpu.as_str()))
            .collect()
    }

    /// The embedded emulator the others are compressed against ([`REFERENCE_CPUS`]),
    /// or `None` when this host has none pinned.
    pub fn reference(&self) -> Option<&Pin> {
        let (_, cpu) = REFERENCE_CPUS.iter().find(|(arch, _)| *arch == self.arch)?;
        self.embedded()
            .into_iter()
            .find(|emulator| emulator.cpu == *cpu)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::tests::{emulator, sample};

    #[test]
    fn embedded_leaves_out_the_hosts_own_arches_and_names_the_reference() {
        let mut manifest = sample();
        for host in &mut manifest.hosts {
            host.emulators = ["x86_64", "i386", "aarch64", "riscv64"]
                .iter()
                .map(|cpu| emulator(cpu, cpu))
                .collect();
        }
        let cpus = |host: &Host| -> Vec<String> {
            host.embedded().iter().map(|e| e.cpu.clone()).collect()
        };
        let x86_64 = manifest.host("x86_64").unwrap();
        assert_eq!(cpus(x86_64), ["aarch64", "riscv64"]);
        assert_eq!(x86_64.reference().unwrap().cpu, "aarch64");
        let aarch64 = manifest.host("aarch64").unwrap();
        assert_eq!(cpus(aarch64), ["x86_64", "i386", "riscv64"]);
        assert_eq!(aarch64.reference().unwrap().cpu, "x86_64");

        let mut s390x = x86_64.clone();
        s390x.arch = "s390x".to_string();
        assert_eq!(cpus(&s390x), ["x86_64", "i386", "aarch64", "riscv64"]);
        assert_eq!(s390x.reference().unwrap().cpu, "x86_64");
        let mut riscv64 = x86_64.clone();
        riscv64.arch = "riscv64".to_string();
        assert_eq!(cpus(&riscv64), ["x86_64", "i386", "aarch64"]);

        let mut other = x86_64.clone();
        other.arch = "mips64".to_string();
        assert!(other.embedded().is_empty());
        assert!(other.reference().is_none());
    }

    #[test]
    fn host_arch_tells_the_powerpc64_byte_orders_apart() {
        assert_eq!(host_arch("powerpc64", "little"), "powerpc64le");
        assert_eq!(host_arch("powerpc64", "big"), "powerpc64");
        assert_eq!(host_arch("x86_64", "little"), "x86_64");
        assert_eq!(host_arch("s390x", "big"), "s390x");
        for (arch, _) in NATIVE_CPUS {
            assert!(
                REFERENCE_CPUS.iter().any(|(host, _)| host == arch),
                "{arch}"
            );
        }
    }
}
