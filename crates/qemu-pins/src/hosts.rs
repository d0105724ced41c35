//! Which pinned emulators a host's binary embeds, and which one the others are
//! compressed against: what each host runs natively (never embedded) and its
//! reference are the `arch-table` crate's [`arch_table::HOSTS`].

use crate::manifest::{Host, Pin};

impl Host {
    /// The emulators a binary built for this host embeds: every pinned one except the
    /// host's own architectures ([`arch_table::Host::native`]). Empty for a host
    /// binfmt does not run on.
    pub fn embedded(&self) -> Vec<&Pin> {
        let Some(native) = arch_table::host(&self.arch).map(|host| host.native) else {
            return Vec::new();
        };
        self.emulators
            .iter()
            .filter(|emulator| !native.contains(&emulator.cpu.as_str()))
            .collect()
    }

    /// The embedded emulator the others are compressed against
    /// ([`arch_table::Host::reference`]), or `None` when this host has none pinned.
    pub fn reference(&self) -> Option<&Pin> {
        let cpu = arch_table::host(&self.arch)?.reference;
        self.embedded()
            .into_iter()
            .find(|emulator| emulator.cpu == cpu)
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
}
