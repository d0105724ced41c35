//! The architectures conformance checks, in the names the run needs (Debian's, OCI's,
//! QEMU's), and which of them this machine can check. Kept in this one module so that
//! a shared architecture table can replace it.

/// An architecture, in the names the run needs: its row of the one table (`oci`, which
/// `binfmt --install` takes; `qemu_cpu`, as in `qemu-blobs/pins.toml`; `debian`,
/// `None` where Debian has no port; `uname`, what `uname -m` starts with under QEMU).
pub use arch_table::Arch as Target;

/// The name the matrix and the record use: Debian's, else OCI's.
pub fn name(target: &Target) -> &'static str {
    target.debian.unwrap_or(target.oci)
}

/// The matrix a bare `cargo xtask conformance` runs (issue #23): the architectures
/// users build for most, and linux/amd64 as arm64 hosts (Apple silicon, Graviton)
/// run it.
pub const DEFAULT: [&str; 6] = ["arm64", "armhf", "riscv64", "ppc64el", "s390x", "amd64"];

/// Parses an architecture argument: a Debian, OCI or QEMU name, `linux/` optional.
pub fn parse_target(name: &str) -> Result<&'static Target, String> {
    let target = by_name(name).ok_or_else(|| {
        let known: Vec<&str> = arch_table::ARCHES.iter().filter_map(|t| t.debian).collect();
        format!("unknown architecture {name:?}; known: {}", known.join(", "))
    })?;
    // amd64 is taken on an amd64 machine too: its row says why it cannot run here.
    if host_native_cpus().contains(&target.qemu_cpu) && target.qemu_cpu != "x86_64" {
        return Err(format!(
            "{name} is this machine's own architecture: it runs natively, there is no \
             emulator to check"
        ));
    }
    Ok(target)
}

/// The target any of whose names is `name` (Debian, OCI or QEMU; `linux/` optional).
pub fn by_name(name: &str) -> Option<&'static Target> {
    arch_table::find(name)
}

/// The QEMU cpus this machine runs natively.
pub fn host_native_cpus() -> &'static [&'static str] {
    arch_table::this_host().map_or(&[], |host| host.native)
}

/// Why `target` cannot be checked on this machine at all, whatever the mirror serves.
pub fn unavailable_here(target: &Target) -> Option<String> {
    if !host_native_cpus().contains(&target.qemu_cpu) {
        return None;
    }
    Some(format!(
        "this machine is {0}: linux/{1} runs natively here, and binfmt registers no \
         emulator for a host's own architecture, even in a private instance (a handler \
         for its ELF header would take over every native program of the namespace, \
         emulators and mmdebstrap included, since binfmt_misc is asked before the ELF \
         loader). The {1} emulator binfmt ships is the arm64 host's qemu-x86_64, an \
         arm64 program: it runs here only nested under qemu-aarch64 and without \
         binfmt_misc, which cannot follow exec(2) into a userland; run this row on an \
         arm64 host",
        crate::fetch::build_host(),
        target.oci
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::workspace_root;
    use qemu_pins::{MANIFEST_PATH, Manifest};

    #[test]
    fn architectures_are_taken_in_debian_oci_and_qemu_spellings() {
        for (name, debian) in [
            ("armhf", "armhf"),
            ("arm", "armhf"),
            ("linux/arm/v7", "armhf"),
            ("ppc64el", "ppc64el"),
            ("ppc64le", "ppc64el"),
            ("mips64le", "mips64el"),
            ("linux/riscv64", "riscv64"),
            ("s390x", "s390x"),
            ("linux/amd64", "amd64"),
        ] {
            assert_eq!(parse_target(name).unwrap().debian, Some(debian), "{name}");
        }
        assert!(
            parse_target("sparc64")
                .unwrap_err()
                .contains("unknown architecture")
        );
        if cfg!(target_arch = "aarch64") {
            assert!(
                parse_target("arm64")
                    .unwrap_err()
                    .contains("own architecture")
            );
        }
    }

    #[test]
    fn the_hosts_own_architecture_is_a_row_that_says_why_it_cannot_run() {
        let amd64 = parse_target("amd64").unwrap();
        let arm64 = parse_target("arm64").unwrap();
        if cfg!(target_arch = "x86_64") {
            let reason = unavailable_here(amd64).unwrap();
            assert!(reason.contains("runs natively here"), "{reason}");
            assert!(unavailable_here(arm64).is_none());
        } else {
            assert!(unavailable_here(amd64).is_none());
        }
    }

    #[test]
    fn the_default_matrix_names_known_architectures() {
        for name in DEFAULT {
            assert!(by_name(name).is_some(), "{name}");
        }
    }

    #[test]
    fn every_pinned_emulator_has_a_target() {
        let manifest = Manifest::load(&workspace_root().join(MANIFEST_PATH)).unwrap();
        for host in &manifest.hosts {
            for emulator in &host.emulators {
                let target = arch_table::by_qemu_cpu(&emulator.cpu);
                assert_eq!(
                    target.map(|t| t.oci),
                    Some(emulator.oci.as_str()),
                    "{}",
                    emulator.cpu
                );
            }
        }
    }
}
