//! The Debian packages `cargo xtask dist` writes (`dist/binfmt_<version>_<arch>.deb`,
//! see xtask/src/package.rs), as they ship, for all five hosts:
//!
//! - each holds exactly its files, root's, with their modes: its host's dist binary
//!   byte for byte (the binary `dist` runs under emulation for the other hosts), the
//!   unit running `/usr/bin/binfmt`, the config as a conffile, every man page and
//!   completion `dist` generated, the copyright, changelog and SBOM; its control
//!   fields name its architecture and the QEMU source it carries, and every file
//!   matches its md5sums line;
//! - lintian, the machine's (Debian's, from its APT: `.ci/run` installs it), finds no
//!   error and no warning in any of them (what it overrides is said, with the reason,
//!   in the package).
//!
//! `deb_boot` installs the amd64 package into Debian trixie and boots it. The four
//! others are checked here only: installing them needs a root filesystem of their
//! architecture booted under emulation (the mirror does not serve every ppc64el and
//! s390x package a root needs).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{Run, dist, report, workspace_root};

/// Each host's dist binary and its package's Debian architecture.
const PACKAGES: [(&str, &str); 5] = [
    ("binfmt-x86_64-linux-musl", "amd64"),
    ("binfmt-aarch64-linux-musl", "arm64"),
    ("binfmt-powerpc64le-linux-gnu", "ppc64el"),
    ("binfmt-s390x-linux-gnu", "s390x"),
    ("binfmt-riscv64-linux-gnu", "riscv64"),
];

/// The package's version: the workspace's.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The package of `debian_arch` in `dist/` (built by `cargo xtask dist` once per test
/// process).
pub(crate) fn package(debian_arch: &str) -> PathBuf {
    let path = dist().join(format!("binfmt_{VERSION}_{debian_arch}.deb"));
    assert!(
        path.is_file(),
        "{}: cargo xtask dist did not write it",
        path.display()
    );
    path
}

/// `dpkg-deb ARGS`, which must succeed.
fn dpkg_deb(args: &[&str], deb: &Path) -> Run {
    let mut command = Command::new("dpkg-deb");
    command.args(args).arg(deb);
    let run = Run::of(command);
    assert_eq!(
        run.code,
        Some(0),
        "dpkg-deb {args:?} {}:\n{run}",
        deb.display()
    );
    run
}

/// The files every package has, besides the man pages (one per page in dist/man/).
const FILES: [(&str, &str); 10] = [
    ("-rw-r--r--", "etc/binfmt/config.toml"),
    ("-rwxr-xr-x", "usr/bin/binfmt"),
    ("-rw-r--r--", "usr/lib/systemd/system/binfmt.service"),
    ("-rw-r--r--", "usr/share/bash-completion/completions/binfmt"),
    ("-rw-r--r--", "usr/share/doc/binfmt/changelog.gz"),
    ("-rw-r--r--", "usr/share/doc/binfmt/copyright"),
    ("-rw-r--r--", "usr/share/doc/binfmt/sbom.spdx.json"),
    (
        "-rw-r--r--",
        "usr/share/fish/vendor_completions.d/binfmt.fish",
    ),
    ("-rw-r--r--", "usr/share/lintian/overrides/binfmt"),
    ("-rw-r--r--", "usr/share/zsh/vendor-completions/_binfmt"),
];

#[test]
#[cfg_attr(
    not(slow_tests),
    ignore = "slow: set BINFMT_SLOW_TESTS=1 to run it (.ci/run does)"
)]
fn each_package_holds_its_hosts_binary_the_unit_the_conffile_and_the_docs() {
    let dist = dist();
    let pins = fs::read_to_string(workspace_root().join("qemu-blobs/pins.toml")).unwrap();
    let qemu_version = pins
        .lines()
        .find_map(|line| line.strip_prefix("version = "))
        .expect("pins.toml: the source package's version")
        .trim_matches('"');
    let mut pages: Vec<String> = fs::read_dir(dist.join("man"))
        .expect("dist/man/")
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    assert!(pages.len() >= 8, "dist/man/: {pages:?}");
    let mut expected: BTreeSet<(String, String)> = FILES
        .iter()
        .map(|(mode, path)| ((*mode).to_owned(), (*path).to_owned()))
        .collect();
    for page in &pages {
        expected.insert((
            "-rw-r--r--".to_owned(),
            format!("usr/share/man/man1/{page}.gz"),
        ));
    }
    let unpacked_root = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("deb-contents-{}", std::process::id()));
    for (binary, debian_arch) in PACKAGES {
        let deb = package(debian_arch);
        report(&format!(
            "size: {} {:.1} MB ({} bytes)",
            deb.file_name().unwrap().to_string_lossy(),
            fs::metadata(&deb).unwrap().len() as f64 / 1e6,
            fs::metadata(&deb).unwrap().len()
        ));

        let field = |name: &str| {
            dpkg_deb(&["--field"], &deb)
                .stdout
                .lines()
                .find_map(|line| line.strip_prefix(&format!("{name}: ")))
                .unwrap_or_else(|| panic!("{debian_arch}: no {name} field"))
                .to_owned()
        };
        assert_eq!(field("Package"), "binfmt");
        assert_eq!(field("Version"), VERSION);
        assert_eq!(field("Architecture"), debian_arch);
        assert_eq!(field("Built-Using"), format!("qemu (= {qemu_version})"));
        assert!(
            !dpkg_deb(&["--field"], &deb).stdout.contains("\nDepends:"),
            "{debian_arch}: a static binary needs no package"
        );

        // Every file and directory root's; the files exactly these, with these modes.
        let listing = dpkg_deb(&["--contents"], &deb).stdout;
        let mut files = BTreeSet::new();
        for line in listing.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [mode, owner, _size, _date, _time, path] = fields[..] else {
                panic!("{debian_arch}: unexpected dpkg-deb --contents line {line:?}")
            };
            assert_eq!(owner, "root/root", "{debian_arch}: {line}");
            let path = path.trim_start_matches("./");
            if mode.starts_with('d') {
                assert_eq!(mode, "drwxr-xr-x", "{debian_arch}: {line}");
            } else {
                files.insert((mode.to_owned(), path.to_owned()));
            }
        }
        assert_eq!(files, expected, "{debian_arch}: the package's files");

        let unpacked = unpacked_root.join(debian_arch);
        let _ = fs::remove_dir_all(&unpacked);
        fs::create_dir_all(&unpacked).unwrap();
        let unpacked_arg = unpacked.to_str().unwrap();
        let mut extract = Command::new("dpkg-deb");
        extract.arg("--extract").arg(&deb).arg(unpacked_arg);
        Run::of(extract).success();
        let mut control = Command::new("dpkg-deb");
        control
            .arg("--control")
            .arg(&deb)
            .arg(unpacked.join("DEBIAN"));
        Run::of(control).success();

        assert!(
            fs::read(unpacked.join("usr/bin/binfmt")).unwrap()
                == fs::read(dist.join(binary)).unwrap(),
            "{debian_arch}: usr/bin/binfmt is dist/{binary}, byte for byte"
        );
        assert_eq!(
            fs::read(unpacked.join("usr/share/doc/binfmt/sbom.spdx.json")).unwrap(),
            fs::read(dist.join(format!("{binary}.spdx.json"))).unwrap(),
            "{debian_arch}: the binary's SBOM"
        );
        let unit =
            fs::read_to_string(unpacked.join("usr/lib/systemd/system/binfmt.service")).unwrap();
        assert!(
            unit.contains("\nExecStart=/usr/bin/binfmt apply --config /etc/binfmt/config.toml\n"),
            "{debian_arch}: the unit runs the packaged binary:\n{unit}"
        );
        assert_eq!(
            fs::read(unpacked.join("etc/binfmt/config.toml")).unwrap(),
            fs::read(workspace_root().join("deploy/systemd/config.toml")).unwrap()
        );
        for (completion, installed) in [
            (
                "binfmt.bash",
                "usr/share/bash-completion/completions/binfmt",
            ),
            ("_binfmt", "usr/share/zsh/vendor-completions/_binfmt"),
            (
                "binfmt.fish",
                "usr/share/fish/vendor_completions.d/binfmt.fish",
            ),
        ] {
            assert_eq!(
                fs::read(unpacked.join(installed)).unwrap(),
                fs::read(dist.join("completions").join(completion)).unwrap(),
                "{debian_arch}: {installed}"
            );
        }
        for page in &pages {
            let gunzip = Command::new("gzip")
                .args(["-dc"])
                .arg(unpacked.join(format!("usr/share/man/man1/{page}.gz")))
                .output()
                .unwrap();
            assert!(
                gunzip.status.success()
                    && gunzip.stdout == fs::read(dist.join("man").join(page)).unwrap(),
                "{debian_arch}: {page}.gz is dist/man/{page}"
            );
        }

        // The conffile, and the md5sums of everything else, as dpkg checks them.
        assert_eq!(
            fs::read_to_string(unpacked.join("DEBIAN/conffiles")).unwrap(),
            "/etc/binfmt/config.toml\n"
        );
        let md5sums = fs::read_to_string(unpacked.join("DEBIAN/md5sums")).unwrap();
        assert_eq!(
            md5sums.lines().count(),
            expected.len() - 1,
            "{debian_arch}: one md5sums line per file but the conffile:\n{md5sums}"
        );
        let mut check = Command::new("md5sum");
        check
            .args(["--check", "--strict", "--quiet"])
            .arg(unpacked.join("DEBIAN/md5sums"))
            .current_dir(&unpacked);
        Run::of(check).success();
        for script in ["postinst", "prerm", "postrm"] {
            assert_eq!(
                fs::read(unpacked.join("DEBIAN").join(script)).unwrap(),
                fs::read(workspace_root().join("deploy/debian").join(script)).unwrap(),
                "{debian_arch}: DEBIAN/{script}"
            );
        }
    }
    let _ = fs::remove_dir_all(&unpacked_root);
}

/// lintian's verdict on each package: no error and no warning; the overridden tags
/// (each with its reason in the package) and the informational ones are reported.
#[test]
#[cfg_attr(
    not(slow_tests),
    ignore = "slow: set BINFMT_SLOW_TESTS=1 to run it (.ci/run does)"
)]
fn lintian_finds_no_error_or_warning_in_any_package() {
    let version = Command::new("lintian").arg("--version").output();
    let Ok(version) = version else {
        panic!(
            "lintian is not installed: this test checks the Debian packages with it \
             (apt-get install --no-install-recommends lintian; .ci/run does)"
        )
    };
    report(&format!(
        "deb: {}",
        String::from_utf8_lossy(&version.stdout).trim()
    ));
    let mut complaints = Vec::new();
    for (_, debian_arch) in PACKAGES {
        let deb = package(debian_arch);
        let mut lintian = Command::new("lintian");
        lintian
            .args(["--pedantic", "--display-info", "--show-overrides"])
            .arg(&deb);
        let run = Run::of(lintian);
        for line in run.stdout.lines() {
            report(&format!("deb: lintian {debian_arch} | {line}"));
            if line.starts_with("E: ") || line.starts_with("W: ") {
                complaints.push(format!("{debian_arch}: {line}"));
            }
        }
        // 2 is "a tag at the --fail-on level (error)", overridden ones included when
        // --show-overrides shows them (the override of statically-linked-binary): the
        // E: and W: lines above are the verdict. Anything else: lintian itself failed.
        assert!(
            matches!(run.code, Some(0 | 2)),
            "lintian could not check {}:\n{run}",
            deb.display()
        );
    }
    assert!(
        complaints.is_empty(),
        "lintian complains about the packages (fix the package in xtask/src/package.rs \
         or deploy/debian/, or override a tag there, with the reason):\n{}",
        complaints.join("\n")
    );
}
