//! The Debian packages of `cargo xtask dist`: `dist/binfmt_<version>_<arch>.deb`, one
//! per release binary (amd64, arm64, ppc64el, s390x, riscv64), each with its
//! `.sha256`. What goes where:
//!
//! | in the package | from |
//! |---|---|
//! | `/usr/bin/binfmt` | the host's release binary, `dist/binfmt-<host>-linux-<libc>` |
//! | `/usr/lib/systemd/system/binfmt.service` | `deploy/systemd/binfmt.service`, `ExecStart=` naming `/usr/bin/binfmt` |
//! | `/etc/binfmt/config.toml`, a conffile | `deploy/systemd/config.toml` |
//! | `/usr/share/man/man1/binfmt*.1.gz` | `dist/man/` |
//! | `/usr/share/{bash-completion,zsh,fish}/...` | `dist/completions/` |
//! | `/usr/share/doc/binfmt/copyright`, `changelog.gz` | `deploy/debian/` |
//! | `/usr/share/doc/binfmt/sbom.spdx.json` | the binary's SBOM, as the image has it |
//! | `/usr/share/lintian/overrides/binfmt` | [`lintian_overrides`]: each with its reason |
//! | `DEBIAN/control` | `deploy/debian/control` and the fields computed here |
//! | `DEBIAN/postinst`, `prerm`, `postrm` | `deploy/debian/` |
//!
//! The package is native (its version is binfmt's, with no Debian revision: it is made
//! by binfmt itself, from the same commit as the binary), so its changelog is
//! `changelog.gz`, and `deploy/debian/changelog` must have an entry for the version.
//! It depends on nothing: the binary is static, and the maintainer scripts call only
//! essential tools (deb-systemd-helper is in init-system-helpers, essential in
//! Debian 12 and 13). `Built-Using` names the QEMU source package whose emulators it
//! carries, as Debian policy (7.8) asks of a package that includes another's code.
//!
//! Debian's own `dpkg-deb` builds each `.deb` from a tree staged under the target
//! directory (`debian/<arch>/`), as debhelper's `dh_builddeb` does; compression and
//! man pages as `dh_compress` (`gzip -9n`), checksums as `dh_md5sums` (conffiles
//! left out). Why not cargo-deb: it builds the binary itself, and ours come from
//! `dist`'s own recipe (zig, Debian's cross gcc, the emulators compressed first), so it
//! would only copy files here while needing a build of its own on every fresh machine;
//! the maintainer scripts are ours anyway (the entries go on removal, the emulator
//! files on purge). Every host that builds `dist` is a Debian or Ubuntu one already
//! (its cross compilers are Debian's), so dpkg-deb is there.
//!
//! The archive members are gzip-compressed, not xz (dpkg-deb's default): the binary is
//! mostly emulators compressed already, so xz made the amd64 package 2% smaller (7.21
//! instead of 7.36 MB) in 12 times the time (4.8 s of CPU instead of 0.4, per package);
//! every dpkg reads both.
//!
//! The same commit gives the same `.deb` bytes: every file and directory has the time
//! `SOURCE_DATE_EPOCH` (else `HEAD`'s commit time; [`sbom::source_date_epoch`]), which
//! dpkg-deb also gives the archive members; owners are root (`--root-owner-group`),
//! modes are set here, and dpkg-deb sorts the names.
//!
//! [`sbom::source_date_epoch`]: crate::sbom::source_date_epoch

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, anyhow};
use md5::{Digest as _, Md5};
use qemu_pins::Manifest;
use sha2::Sha256;

/// The package's name.
pub const PACKAGE: &str = "binfmt";

/// The package's version: binfmt's.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Where the Debian files are, under the workspace root.
const DEBIAN_DIR: &str = "deploy/debian";
/// The unit and its config, under the workspace root.
const UNIT: &str = "deploy/systemd/binfmt.service";
const CONFIG: &str = "deploy/systemd/config.toml";

/// `ExecStart=` of the unit as docs/systemd-and-the-package.md installs it by hand, and
/// as the package does.
const EXEC_START_BY_HAND: &str = "ExecStart=/usr/local/bin/binfmt ";
const EXEC_START_PACKAGED: &str = "ExecStart=/usr/bin/binfmt ";

/// The maintainer scripts, taken as they are from [`DEBIAN_DIR`].
const MAINTAINER_SCRIPTS: [&str; 3] = ["postinst", "prerm", "postrm"];

/// Fields of `DEBIAN/control` that are computed here, so `deploy/debian/control` must
/// not have them.
const COMPUTED_FIELDS: [&str; 4] = ["Version", "Architecture", "Installed-Size", "Built-Using"];

/// The shell completions in `dist/completions/` and where Debian's shells look for
/// them (bash-completion's, zsh's and fish's vendor directories).
const COMPLETIONS: [(&str, &str); 3] = [
    (
        "binfmt.bash",
        "usr/share/bash-completion/completions/binfmt",
    ),
    ("_binfmt", "usr/share/zsh/vendor-completions/_binfmt"),
    (
        "binfmt.fish",
        "usr/share/fish/vendor_completions.d/binfmt.fish",
    ),
];

/// lintian's overrides, each with its reason. Only those that apply go in: an
/// override that matches nothing is a lintian finding too.
fn lintian_overrides(position_independent: bool) -> String {
    let binary = if position_independent {
        // The musl builds (x86_64, aarch64) are static-pie: an ET_DYN file without
        // DT_NEEDED, which lintian takes for a shared library linked against nothing.
        "# binfmt is static by design: the same binary is the FROM scratch image's\n\
         # entrypoint and runs on any distribution, in any container or mount namespace,\n\
         # with no dynamic loader (xtask/src/dist.rs). This build is static-pie, which\n\
         # lintian reads as a shared library without dependencies.\n\
         binfmt: shared-library-lacks-prerequisites [usr/bin/binfmt]\n"
    } else {
        // The glibc builds (ppc64le, s390x, riscv64) are static, not PIE.
        "# binfmt is static by design: the same binary is the FROM scratch image's\n\
         # entrypoint and runs on any distribution, in any container or mount namespace,\n\
         # with no dynamic loader (xtask/src/dist.rs).\n\
         binfmt: statically-linked-binary [usr/bin/binfmt]\n"
    };
    format!(
        "{binary}\
         # systemd-binfmt.service removes every entry when it starts: binfmt.service is\n\
         # started whenever it is (WantedBy=), and restarted with it (PartOf=), so that\n\
         # the entries come back (deploy/systemd/binfmt.service says so).\n\
         binfmt: systemd-service-file-refers-to-unusual-wantedby-target systemd-binfmt.service \
         [usr/lib/systemd/system/binfmt.service]\n"
    )
}

/// The release binary a package is made of, as `dist` built it.
pub struct Binary<'a> {
    /// Its host, as pins.toml names it (`x86_64`).
    pub host: &'a str,
    /// Its file name in `dist/`.
    pub file_name: String,
    /// Whether its ELF file is big-endian (s390x).
    pub big_endian: bool,
}

/// One file of the package: where it goes (relative to `/`), its bytes, its mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackagedFile {
    pub path: String,
    pub bytes: Vec<u8>,
    pub mode: u32,
}

impl PackagedFile {
    fn new(path: &str, bytes: Vec<u8>, mode: u32) -> PackagedFile {
        PackagedFile {
            path: path.to_owned(),
            bytes,
            mode,
        }
    }

    /// A conffile: dpkg keeps an administrator's changes to it across upgrades, and
    /// removes it only on purge. Every file under `/etc` is one (as debhelper decides).
    fn is_conffile(&self) -> bool {
        self.path.starts_with("etc/")
    }
}

/// The file name of the package for a Debian architecture: `binfmt_0.1.0_amd64.deb`.
pub fn file_name(debian_arch: &str) -> String {
    format!("{PACKAGE}_{VERSION}_{debian_arch}.deb")
}

/// Fails, naming what to install, unless dpkg-deb and gzip run.
pub fn check_tools() -> Result<()> {
    for (tool, package) in [("dpkg-deb", "dpkg"), ("gzip", "gzip")] {
        let runs = Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !runs {
            return Err(anyhow!(
                "{tool}, which builds the Debian packages, does not run: install it with \
                 `apt-get install {package}`"
            ));
        }
    }
    Ok(())
}

/// Builds the package of `binary` from the workspace at `root` and the binary, man
/// pages and completions in `dist` (written there before), staging it in `staging`
/// (emptied first); writes it with its `.sha256` into `dist` and returns its path.
pub fn build(
    root: &Path,
    dist: &Path,
    staging: &Path,
    binary: &Binary,
    manifest: &Manifest,
) -> Result<PathBuf> {
    let host = manifest.host(binary.host).with_context(|| {
        format!(
            "{} pins no emulators for host {}: run `cargo xtask pin`",
            qemu_pins::MANIFEST_PATH,
            binary.host
        )
    })?;
    let debian_arch = host.debian_arch.as_str();
    let debian = root.join(DEBIAN_DIR);
    let read = |path: &Path| fs::read(path).with_context(|| format!("reading {}", path.display()));
    let read_text = |path: &Path| {
        fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
    };
    check_changelog(&read_text(&debian.join("changelog"))?)?;

    let binary_name = binary.file_name.as_str();
    let bytes = read(&dist.join(binary_name))?;
    let mut files = vec![
        PackagedFile::new("usr/bin/binfmt", bytes.clone(), 0o755),
        PackagedFile::new(
            "usr/lib/systemd/system/binfmt.service",
            packaged_unit(&read_text(&root.join(UNIT))?)?.into_bytes(),
            0o644,
        ),
        PackagedFile::new("etc/binfmt/config.toml", read(&root.join(CONFIG))?, 0o644),
        PackagedFile::new(
            "usr/share/doc/binfmt/copyright",
            read(&debian.join("copyright"))?,
            0o644,
        ),
        PackagedFile::new(
            "usr/share/doc/binfmt/changelog.gz",
            gzip(&read(&debian.join("changelog"))?)?,
            0o644,
        ),
        PackagedFile::new(
            "usr/share/doc/binfmt/sbom.spdx.json",
            read(&dist.join(format!("{binary_name}.spdx.json")))?,
            0o644,
        ),
    ];
    let man = dist.join(crate::manpages::MAN_DIR);
    let mut pages: Vec<PathBuf> = fs::read_dir(&man)
        .with_context(|| format!("reading {} (cargo xtask dist writes it)", man.display()))?
        .map(|entry| entry.map(|entry| entry.path()))
        .collect::<Result<_, _>>()
        .with_context(|| format!("reading {}", man.display()))?;
    pages.sort();
    for page in pages {
        let name = page
            .file_name()
            .and_then(|name| name.to_str())
            .with_context(|| format!("{}: not a UTF-8 file name", page.display()))?;
        files.push(PackagedFile::new(
            &format!("usr/share/man/man1/{name}.gz"),
            gzip(&read(&page)?)?,
            0o644,
        ));
    }
    for (name, path) in COMPLETIONS {
        let source = dist.join(crate::manpages::COMPLETIONS_DIR).join(name);
        files.push(PackagedFile::new(path, read(&source)?, 0o644));
    }
    files.push(PackagedFile::new(
        "usr/share/lintian/overrides/binfmt",
        lintian_overrides(is_position_independent(&bytes, binary.big_endian)).into_bytes(),
        0o644,
    ));
    files.sort_by(|a, b| a.path.cmp(&b.path));

    let control = control(
        &read_text(&debian.join("control"))?,
        debian_arch,
        installed_size(&files),
        &format!(
            "{} (= {})",
            manifest.source.source_package, manifest.source.version
        ),
    )?;
    let epoch = crate::sbom::source_date_epoch(root)?;
    stage(staging, &files, &control, &debian, epoch)?;

    let deb = dist.join(file_name(debian_arch));
    let temporary = deb.with_extension("deb.tmp");
    let status = Command::new("dpkg-deb")
        .env("SOURCE_DATE_EPOCH", epoch.to_string())
        .args(["--root-owner-group", "-Zgzip", "--build"])
        .arg(staging)
        .arg(&temporary)
        .stdout(Stdio::null())
        .status()
        .context("running dpkg-deb --build")?;
    if !status.success() {
        return Err(anyhow!(
            "dpkg-deb --build {} failed ({status})",
            staging.display()
        ));
    }
    fs::rename(&temporary, &deb).with_context(|| format!("renaming into {}", deb.display()))?;
    let digest = hex::encode(Sha256::digest(read(&deb)?));
    let name = file_name(debian_arch);
    fs::write(
        dist.join(format!("{name}.sha256")),
        format!("{digest}  {name}\n"),
    )
    .with_context(|| format!("writing {name}.sha256"))?;
    Ok(deb)
}

/// Whether `elf` (a release binary, which `dist` checked) is position-independent:
/// `e_type` `ET_DYN`, as a static-pie binary is, rather than `ET_EXEC`.
fn is_position_independent(elf: &[u8], big_endian: bool) -> bool {
    const ET_DYN: u16 = 3;
    let Some(&[a, b]) = elf.get(16..18) else {
        return false;
    };
    let e_type = if big_endian {
        u16::from_be_bytes([a, b])
    } else {
        u16::from_le_bytes([a, b])
    };
    e_type == ET_DYN
}

/// Fails unless the changelog's latest entry is for this version: dpkg and lintian
/// read the version from the control file, the user from the changelog.
fn check_changelog(changelog: &str) -> Result<()> {
    let expected = format!("{PACKAGE} ({VERSION}) ");
    if changelog.starts_with(&expected) {
        Ok(())
    } else {
        Err(anyhow!(
            "{DEBIAN_DIR}/changelog starts with {:?}, not an entry for {PACKAGE} {VERSION} \
             (the workspace's version): add one at the top, in the format of the entries \
             below",
            changelog.lines().next().unwrap_or("")
        ))
    }
}

/// The unit as the package installs it: the same file, with `ExecStart=` naming
/// `/usr/bin/binfmt`, where the package puts the binary.
fn packaged_unit(unit: &str) -> Result<String> {
    let lines = unit
        .lines()
        .filter(|line| line.starts_with(EXEC_START_BY_HAND))
        .count();
    if lines != 1 {
        return Err(anyhow!(
            "{UNIT} has {lines} lines starting {EXEC_START_BY_HAND:?}, expected one: the \
             package rewrites that line to {EXEC_START_PACKAGED:?} (xtask/src/package.rs)"
        ));
    }
    Ok(unit.replacen(EXEC_START_BY_HAND, EXEC_START_PACKAGED, 1))
}

/// `DEBIAN/control`: `template`'s fields, with the computed ones after `Package:`.
fn control(
    template: &str,
    debian_arch: &str,
    installed_size: u64,
    built_using: &str,
) -> Result<String> {
    let Some(rest) = template.strip_prefix(&format!("Package: {PACKAGE}\n")) else {
        return Err(anyhow!(
            "{DEBIAN_DIR}/control must start with \"Package: {PACKAGE}\""
        ));
    };
    for field in COMPUTED_FIELDS {
        if rest
            .lines()
            .any(|line| line.starts_with(&format!("{field}:")))
        {
            return Err(anyhow!(
                "{DEBIAN_DIR}/control has {field}:, which xtask computes: remove it"
            ));
        }
    }
    Ok(format!(
        "Package: {PACKAGE}\nVersion: {VERSION}\nArchitecture: {debian_arch}\n\
         Installed-Size: {installed_size}\nBuilt-Using: {built_using}\n{rest}"
    ))
}

/// `Installed-Size`, in KiB, as dpkg-gencontrol counts it: each file rounded up to
/// a KiB, and one for each directory.
fn installed_size(files: &[PackagedFile]) -> u64 {
    let file_kib: u64 = files
        .iter()
        .map(|file| (file.bytes.len() as u64).div_ceil(1024))
        .sum();
    file_kib + directories(files).len() as u64
}

/// Every directory the files are in, parents first.
fn directories(files: &[PackagedFile]) -> Vec<String> {
    let mut dirs: Vec<String> = files
        .iter()
        .flat_map(|file| {
            let parts: Vec<&str> = file.path.split('/').collect();
            (1..parts.len())
                .map(|len| parts[..len].join("/"))
                .collect::<Vec<_>>()
        })
        .collect();
    dirs.sort();
    dirs.dedup();
    dirs
}

/// `gzip -9n`, as dh_compress compresses man pages and changelogs: the best
/// compression (lintian checks), no name or time in the header.
fn gzip(bytes: &[u8]) -> Result<Vec<u8>> {
    let mut child = Command::new("gzip")
        .arg("-9n")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("running gzip")?;
    let mut stdin = child.stdin.take().context("gzip's stdin")?;
    // A man page is a few KB: gzip reads it all before its output could fill the pipe.
    stdin.write_all(bytes).context("writing to gzip")?;
    drop(stdin);
    let output = child.wait_with_output().context("waiting for gzip")?;
    if !output.status.success() {
        return Err(anyhow!("gzip -9n failed ({})", output.status));
    }
    Ok(output.stdout)
}

/// Writes the tree dpkg-deb builds from: the files and their directories, and
/// `DEBIAN/` with the control file, the conffiles, the md5sums and the maintainer
/// scripts; every mode explicit, every time `epoch`.
fn stage(
    staging: &Path,
    files: &[PackagedFile],
    control: &str,
    debian: &Path,
    epoch: i64,
) -> Result<()> {
    if staging.exists() {
        fs::remove_dir_all(staging).with_context(|| format!("removing {}", staging.display()))?;
    }
    let mut written: Vec<PathBuf> = Vec::new();
    let dir = |path: PathBuf, written: &mut Vec<PathBuf>| -> Result<()> {
        fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        set_mode(&path, 0o755)?;
        written.push(path);
        Ok(())
    };
    dir(staging.to_path_buf(), &mut written)?;
    for relative in directories(files) {
        dir(staging.join(relative), &mut written)?;
    }
    let mut file = |path: PathBuf, bytes: &[u8], mode: u32| -> Result<()> {
        fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        set_mode(&path, mode)?;
        written.push(path);
        Ok(())
    };
    for packaged in files {
        file(staging.join(&packaged.path), &packaged.bytes, packaged.mode)?;
    }
    let control_dir = staging.join("DEBIAN");
    fs::create_dir(&control_dir).with_context(|| format!("creating {}", control_dir.display()))?;
    set_mode(&control_dir, 0o755)?;
    file(control_dir.join("control"), control.as_bytes(), 0o644)?;
    let conffiles: String = files
        .iter()
        .filter(|packaged| packaged.is_conffile())
        .map(|packaged| format!("/{}\n", packaged.path))
        .collect();
    file(control_dir.join("conffiles"), conffiles.as_bytes(), 0o644)?;
    let md5sums: String = files
        .iter()
        .filter(|packaged| !packaged.is_conffile())
        .map(|packaged| {
            format!(
                "{}  {}\n",
                hex::encode(Md5::digest(&packaged.bytes)),
                packaged.path
            )
        })
        .collect();
    file(control_dir.join("md5sums"), md5sums.as_bytes(), 0o644)?;
    for script in MAINTAINER_SCRIPTS {
        let source = debian.join(script);
        let bytes = fs::read(&source).with_context(|| format!("reading {}", source.display()))?;
        file(control_dir.join(script), &bytes, 0o755)?;
    }
    written.push(control_dir);
    let time = rustix::fs::Timespec {
        tv_sec: epoch,
        tv_nsec: 0,
    };
    let times = rustix::fs::Timestamps {
        last_access: time,
        last_modification: time,
    };
    for path in &written {
        rustix::fs::utimensat(
            rustix::fs::CWD,
            path,
            &times,
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .with_context(|| format!("setting the time of {}", path.display()))?;
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:o} {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unit_runs_the_packaged_binary() {
        let unit = fs::read_to_string(crate::workspace::workspace_root().join(UNIT)).unwrap();
        let packaged = packaged_unit(&unit).unwrap();
        assert!(
            packaged
                .contains("\nExecStart=/usr/bin/binfmt apply --config /etc/binfmt/config.toml\n"),
            "{packaged}"
        );
        assert!(
            !packaged.contains("\nExecStart=/usr/local/bin/"),
            "{packaged}"
        );
        // Only that line changes.
        assert_eq!(packaged.len() + "local/".len(), unit.len());
        let error = packaged_unit("[Service]\nExecStart=/opt/binfmt apply\n").unwrap_err();
        assert!(error.to_string().contains("0 lines"), "{error}");
    }

    #[test]
    fn the_changelog_has_an_entry_for_this_version() {
        let root = crate::workspace::workspace_root();
        check_changelog(&fs::read_to_string(root.join(DEBIAN_DIR).join("changelog")).unwrap())
            .unwrap();
        let error = check_changelog("binfmt (0.0.1) unstable; urgency=medium\n").unwrap_err();
        assert!(error.to_string().contains("add one at the top"), "{error}");
    }

    #[test]
    fn control_gets_the_computed_fields_and_refuses_them_in_the_template() {
        let root = crate::workspace::workspace_root();
        let template = fs::read_to_string(root.join(DEBIAN_DIR).join("control")).unwrap();
        let control = control(&template, "s390x", 9000, "qemu (= 1:10.0)").unwrap();
        assert!(
            control.starts_with(&format!(
                "Package: binfmt\nVersion: {VERSION}\nArchitecture: s390x\n\
                 Installed-Size: 9000\nBuilt-Using: qemu (= 1:10.0)\n"
            )),
            "{control}"
        );
        assert!(control.contains("\nDescription: "), "{control}");
        let error = super::control("Package: binfmt\nVersion: 1\n", "amd64", 1, "q").unwrap_err();
        assert!(error.to_string().contains("Version:"), "{error}");
        assert!(super::control("Source: binfmt\n", "amd64", 1, "q").is_err());
    }

    #[test]
    fn installed_size_counts_kibibytes_and_directories() {
        let files = [
            PackagedFile::new("usr/bin/binfmt", vec![0; 1025], 0o755),
            PackagedFile::new("etc/binfmt/config.toml", vec![0; 10], 0o644),
        ];
        assert_eq!(directories(&files), ["etc", "etc/binfmt", "usr", "usr/bin"]);
        // 2 KiB + 1 KiB + four directories.
        assert_eq!(installed_size(&files), 7);
        assert!(files[1].is_conffile() && !files[0].is_conffile());
    }

    #[test]
    fn gzip_output_has_no_name_or_time_and_the_best_level() {
        let compressed = gzip(b"hello\n").unwrap();
        assert_eq!(&compressed[..3], b"\x1f\x8b\x08");
        assert_eq!(compressed[3], 0, "no FNAME or other flag");
        assert_eq!(&compressed[4..8], &[0, 0, 0, 0], "no time");
        assert_eq!(compressed[8], 2, "XFL: the slowest, best compression");
    }
}
