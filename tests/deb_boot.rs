//! The amd64 Debian package, installed with apt into a Debian trixie root, which then
//! boots systemd 257 on trixie's own kernel in a virtual machine (qemu-system-x86_64,
//! TCG). In one boot:
//!
//! - before systemd starts, `apt-get install ./binfmt_<version>_amd64.deb` in the root
//!   (a chroot, as when an image is built: the unit is enabled, not started);
//! - at boot, binfmt.service registers every foreign architecture into the kernel's
//!   empty table, after systemd-binfmt, and their programs run;
//! - `systemctl restart systemd-binfmt` wipes the table; binfmt.service runs again
//!   after it, and every entry is back;
//! - `apt-get remove` removes binfmt's entries and no other tool's: a WSLInterop
//!   stand-in (`MZ` programs, as WSL registers it) and Debian qemu-user-binfmt's
//!   `qemu-m68k` (a foreign architecture binfmt does not carry, under a `qemu-` name),
//!   both from `/usr/lib/binfmt.d` as their packages ship them, stay as they were and
//!   still run their programs; the conffile stays;
//! - `apt-get purge` removes the conffile, the emulator files' directory
//!   (`/var/lib/binfmt`) and the unit's enablement;
//! - `apt-get install` on the running system, the usual way, registers at once.
//!
//! Why a virtual machine rather than systemd in a container, as `systemd_boot` does:
//! trixie's systemd refuses this machine's cgroup v1 unless forced into a legacy mode
//! no trixie host runs, and a container's systemd shares the machine's global
//! binfmt_misc table, which systemd-binfmt wipes. The VM has a kernel of its own:
//! its table is its own, systemd's automount of binfmt_misc works as on a real host,
//! and this test never touches the machine's table (no lock needed, nothing to undo).
//!
//! What it boots, all from the machine's Debian mirror (`tools/debian-package
//! --mirror`) and cached in `~/.cache/binfmt`:
//!
//! - the kernel of `linux-image-cloud-amd64` (trixie's kernel for virtual machines:
//!   34 MB to download instead of the generic kernel's 108 MB);
//! - a root filesystem made by mmdebstrap (trixie's `apt` variant with systemd,
//!   systemd-sysv and udev), written into an ext4 image by `mke2fs -d`, with no
//!   mount: `vm-rootfs/`, named after a digest of what makes it; each run boots a
//!   copy;
//! - an initramfs made per run: busybox (trixie's busybox-static), the three modules
//!   the cloud kernel has as modules and this needs (virtio_blk for the disk, autofs4
//!   for systemd's automounts, binfmt_misc: the root has no `/lib/modules`, so they
//!   are loaded before systemd starts), and the test's files, which its `/init`
//!   copies into the root before it installs the package and hands over to systemd:
//!   the package, the stand-ins' binfmt.d files and interpreters, programs of every
//!   architecture, and a unit that runs the test's steps once the boot is done and
//!   powers off.
//!
//! The steps print what the test checks (the table, the units, binfmt.service's
//! journal, which files exist, what programs print) to the second serial port, in
//! `@@ section` blocks; the assertions are here.
//!
//! Slow: a boot under TCG (KVM hangs on these machines). It runs when
//! `BINFMT_SLOW_TESTS=1` (`.ci/run` sets it; `util::slow_test!`) and is reported as
//! ignored otherwise, and on machines that are not x86_64. It needs root (mmdebstrap makes a root filesystem as root, and `mke2fs -d` keeps its
//! owners) and runs on x86_64, whose package it installs.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use qemu_catalog::Arch;
use sha2::{Digest, Sha256};

use crate::util::{
    Run, binfmt_cache, debian_depends, debian_mirror, debian_package, foreign_arches, machine,
    report,
};

/// The suite the package is installed into.
const SUITE: &str = "trixie";

/// The kernel: trixie's for virtual machines (a metapackage; tools/debian-package
/// `--depends` names the kernel package it stands for).
const KERNEL_METAPACKAGE: &str = "linux-image-cloud-amd64";

/// The modules `/init` loads, under the kernel's `usr/lib/modules/<version>/kernel/`
/// (the cloud kernel has ext4, virtio-pci and the serial console built in).
const MODULES: [&str; 3] = [
    "drivers/block/virtio_blk.ko.xz",
    "fs/autofs/autofs4.ko.xz",
    "fs/binfmt_misc.ko.xz",
];

/// mmdebstrap's options for the root filesystem: apt to install the package with, and
/// systemd to boot. With [`SUITE`] and [`IMAGE_SIZE`] they name the cached image.
const MMDEBSTRAP_OPTIONS: [&str; 3] = [
    "--variant=apt",
    "--include=systemd,systemd-sysv,udev",
    // dpkg need not fsync every file of a tree written into an image at the end.
    "--dpkgopt=force-unsafe-io",
];

/// The image's size (sparse: 0.2 GB of it is used, and binfmt's emulators add ~0.1).
const IMAGE_SIZE: &str = "2G";

/// How long the machine may run, boot, steps and shutdown, before the test gives up
/// (under TCG on a 2-core machine busy with other work it took 4 minutes).
const BOOT_TIMEOUT: Duration = Duration::from_secs(600);

/// Where the test's files are in the guest.
const GUEST_DIR: &str = "/srv/binfmt-test";

/// The stand-in for WSL's handler: its name and `MZ` magic, flags PF as WSL has them,
/// and an interpreter that says it ran the program.
const WSL_STANDIN: (&str, &str) = (
    "usr/lib/binfmt.d/WSLInterop.conf",
    ":WSLInterop:M::MZ::/usr/libexec/wsl-standin/init:PF",
);

/// The stand-in for Debian's qemu-user-binfmt handler of m68k programs (32-bit
/// big-endian ELF, e_machine 4; QEMU's magic and mask), under its name.
const M68K_STANDIN: (&str, &str) = (
    "usr/lib/binfmt.d/qemu-m68k.conf",
    r":qemu-m68k:M::\x7fELF\x01\x02\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x04:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff:/usr/libexec/qemu-binfmt/m68k-binfmt-P:PF",
);

/// The other tools' entries, which binfmt must leave alone.
const STANDIN_ENTRIES: [&str; 2] = ["WSLInterop", "qemu-m68k"];

/// The unit that runs the test's steps once the boot is done, then powers off either
/// way.
const STEPS_UNIT: &str = "\
[Unit]
Description=binfmt's package test (tests/deb_boot.rs), then power off
After=multi-user.target
SuccessAction=poweroff
FailureAction=poweroff

[Service]
Type=oneshot
ExecStart=/srv/binfmt-test/steps
TimeoutStartSec=900

[Install]
WantedBy=multi-user.target
";

/// The test's steps, in the guest (`deb_boot/steps.sh`): they print `@@ section`
/// blocks to the second serial port.
const STEPS: &str = include_str!("deb_boot/steps.sh");

/// The initramfs's `/init` (`deb_boot/init.sh`): loads the modules, mounts the root
/// disk, copies the test's files into it (`/overlay`, mirrored onto `/`), installs the
/// package with apt in it (a chroot: no systemd runs there yet), and starts systemd.
const INIT: &str = include_str!("deb_boot/init.sh");

#[test]
#[cfg_attr(
    not(slow_tests),
    ignore = "slow: set BINFMT_SLOW_TESTS=1 to run it (.ci/run does)"
)]
#[cfg_attr(
    all(slow_tests, not(target_arch = "x86_64")),
    ignore = "x86_64 only: it installs the amd64 package into Debian trixie booted under qemu-system-x86_64"
)]
fn the_package_installs_registers_at_boot_and_after_systemd_binfmt_and_removes_only_its_own() {
    if !cfg!(target_arch = "x86_64") {
        panic!(
            "this test installs the amd64 package into an amd64 root filesystem: run it on x86_64"
        );
    }
    assert!(
        rustix::process::geteuid().is_root(),
        "this test runs as root: mmdebstrap makes the root filesystem as root, and mke2fs \
         keeps its owners"
    );
    for (tool, package) in [
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("mmdebstrap", "mmdebstrap"),
        ("mke2fs", "e2fsprogs"),
        ("cpio", "cpio"),
    ] {
        assert!(
            Command::new(tool)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok(),
            "{tool} is not installed: this test needs it (apt-get install {package}; .ci/run does)"
        );
    }
    let start = Instant::now();
    let deb = crate::deb::package("amd64");
    let machine = Machine::prepare(&deb);
    report(&format!(
        "deb_boot: the package, kernel, root image and initramfs ready in {:.1} s",
        start.elapsed().as_secs_f64()
    ));
    let results = machine.boot();

    // Installed with apt into the root before it booted: enabled, not started.
    let install = results.section("install");
    assert!(
        install.ends_with("exit 0"),
        "apt-get install in the root:\n{install}"
    );
    assert!(
        !install.contains("did not start"),
        "no systemd ran in the root, so nothing was started:\n{install}"
    );

    // At boot, into the new kernel's empty table, after systemd-binfmt.
    let standins = results.assert_registered("boot");
    let at_boot = results.assert_ran_and_registered_anew("boot");
    let unit = results.properties("boot binfmt.service");
    assert_eq!(unit["UnitFileState"], "enabled", "{unit:?}");
    assert_started_after(
        &unit,
        &results.properties("boot systemd-binfmt.service"),
        "at boot",
    );
    let mount = results.properties("boot proc-sys-fs-binfmt_misc.mount");
    assert_eq!(
        (mount["ActiveState"].as_str(), mount["Result"].as_str()),
        ("active", "success"),
        "binfmt_misc mounted by systemd: {mount:?}"
    );
    assert_eq!(
        results.section("boot dpkg"),
        format!("ii  {}", env!("CARGO_PKG_VERSION"))
    );
    assert_files(
        &results,
        "boot",
        "present",
        &[
            "/usr/bin/binfmt",
            "/etc/binfmt/config.toml",
            "/usr/lib/systemd/system/binfmt.service",
            "/etc/systemd/system/multi-user.target.wants/binfmt.service",
            "/etc/systemd/system/systemd-binfmt.service.wants/binfmt.service",
        ],
    );

    // After `systemctl restart systemd-binfmt`, which removed every entry.
    let restart = results.section("restart");
    assert!(restart.ends_with("exit 0"), "the restart:\n{restart}");
    let after_restart = results.assert_ran_and_registered_anew("restarted");
    assert_ne!(at_boot, after_restart, "binfmt.service ran again");
    assert_eq!(results.assert_registered("restarted"), standins);
    assert_started_after(
        &results.properties("restarted binfmt.service"),
        &results.properties("restarted systemd-binfmt.service"),
        "after the restart",
    );

    // Removed: binfmt's entries go, the stand-ins' stay as they were and still run.
    let remove = results.section("remove");
    assert!(remove.ends_with("exit 0"), "apt-get remove:\n{remove}");
    assert_eq!(
        results.entries("removed"),
        standins,
        "after apt-get remove, the stand-ins' entries only, as they were"
    );
    let programs = results.programs("removed");
    assert_standins_run(&programs, "after the removal");
    for arch in foreign_arches() {
        let (output, _) = &programs[&format!("hello-{}", arch.qemu_cpu())];
        assert!(
            !output.contains(&hello(arch)),
            "{arch}'s program still runs after the removal: {output}"
        );
    }
    assert_files(
        &results,
        "removed",
        "absent",
        &["/usr/bin/binfmt", "/usr/lib/systemd/system/binfmt.service"],
    );
    assert_files(&results, "removed", "present", &["/etc/binfmt/config.toml"]);
    assert_eq!(
        results.section("removed dpkg"),
        format!("rc  {}", env!("CARGO_PKG_VERSION")),
        "removed, its conffile kept"
    );
    report(&format!(
        "deb_boot: /var/lib/binfmt after the removal: {:?}",
        results.section("removed emulator files")
    ));

    // Purged: the conffile, the emulator files and the enablement are gone.
    let purge = results.section("purge");
    assert!(purge.ends_with("exit 0"), "apt-get purge:\n{purge}");
    let files = results.section("purged files");
    assert!(
        files.lines().all(|line| line.starts_with("absent ")),
        "nothing of the package is left after the purge:\n{files}"
    );
    assert_eq!(results.entries("purged"), standins);
    assert_standins_run(&results.programs("purged"), "after the purge");

    // Installed again on the running system: enabled and registered at once.
    let reinstall = results.section("reinstall");
    assert!(
        reinstall.ends_with("exit 0"),
        "apt-get install:\n{reinstall}"
    );
    assert_eq!(results.assert_registered("reinstalled"), standins);
    results.assert_ran_and_registered_anew("reinstalled");
    let unit = results.properties("reinstalled binfmt.service");
    assert_eq!(unit["UnitFileState"], "enabled", "{unit:?}");
    let status = results.section("status");
    let json: serde_json::Value = serde_json::from_str(
        status
            .strip_suffix("exit 0")
            .unwrap_or_else(|| panic!("binfmt's status:\n{status}")),
    )
    .unwrap_or_else(|e| panic!("binfmt's status JSON ({e}):\n{status}"));
    for arch in foreign_arches() {
        for platform in arch.platforms() {
            assert!(
                json["supported"]
                    .as_array()
                    .unwrap()
                    .contains(&(*platform).into()),
                "{platform} in {json}"
            );
        }
    }
    report(&format!(
        "deb_boot: {:.1} s in all",
        start.elapsed().as_secs_f64()
    ));
}

/// Asserts that each of `paths` is `state` (`present`, `absent`) at `checkpoint`.
#[track_caller]
fn assert_files(results: &Results, checkpoint: &str, state: &str, paths: &[&str]) {
    let files = results.section(&format!("{checkpoint} files"));
    for path in paths {
        assert!(
            files.lines().any(|line| line == format!("{state} {path}")),
            "{checkpoint}: {path} {state}:\n{files}"
        );
    }
}

/// Asserts that the `binfmt` unit's run started after the `systemd_binfmt` unit's
/// ended (monotonic timestamps, µs).
fn assert_started_after(
    binfmt: &BTreeMap<String, String>,
    systemd_binfmt: &BTreeMap<String, String>,
    when: &str,
) {
    let time = |properties: &BTreeMap<String, String>, key: &str| {
        properties[key]
            .parse::<u64>()
            .unwrap_or_else(|_| panic!("{key} in {properties:?}"))
    };
    let started = time(binfmt, "ExecMainStartTimestampMonotonic");
    let wiped = time(systemd_binfmt, "ExecMainExitTimestampMonotonic");
    assert!(
        started > wiped && wiped > 0,
        "{when}: binfmt.service started (at {started} µs) after systemd-binfmt had \
         wiped the table and registered binfmt.d's entries (at {wiped} µs)"
    );
}

/// Asserts that the stand-ins' programs ran through their interpreters.
fn assert_standins_run(programs: &BTreeMap<String, (String, String)>, when: &str) {
    for (program, interpreter) in [
        ("wsl-program", "wsl-standin"),
        ("m68k-program", "m68k-binfmt-P"),
    ] {
        let (output, exit) = &programs[program];
        assert_eq!(
            (output.as_str(), exit.as_str()),
            (
                format!("{interpreter} ran {GUEST_DIR}/programs/{program}\n").as_str(),
                "0"
            ),
            "{when}: {program} runs through its handler"
        );
    }
}

fn hello(arch: Arch) -> String {
    format!("hello from {}\n", arch.qemu_cpu())
}

fn exit_status(arch: Arch) -> u8 {
    40 + arch as u8
}

/// Entry names, sorted.
fn names(entries: &BTreeMap<String, String>) -> Vec<&str> {
    entries.keys().map(String::as_str).collect()
}

/// What the steps printed, by section.
struct Results {
    sections: BTreeMap<String, String>,
}

impl Results {
    fn parse(text: &str) -> Results {
        let text = text.replace('\r', "");
        let mut sections = BTreeMap::new();
        for block in text.split("\n@@ ").skip(1) {
            let (name, body) = block.split_once('\n').unwrap_or((block, ""));
            sections.insert(name.trim().to_owned(), body.trim_end().to_owned());
        }
        Results { sections }
    }

    #[track_caller]
    fn section(&self, name: &str) -> &str {
        self.sections.get(name).unwrap_or_else(|| {
            panic!(
                "the steps printed no section {name:?}; they printed {:?}",
                self.sections.keys().collect::<Vec<_>>()
            )
        })
    }

    /// A section of `== name` blocks.
    fn blocks(&self, name: &str) -> BTreeMap<String, String> {
        let section = format!("\n{}", self.section(name));
        section
            .split("\n== ")
            .skip(1)
            .map(|block| {
                let (name, body) = block.split_once('\n').unwrap_or((block, ""));
                (name.to_owned(), format!("{body}\n"))
            })
            .collect()
    }

    fn entries(&self, checkpoint: &str) -> BTreeMap<String, String> {
        self.blocks(&format!("{checkpoint} entries"))
    }

    /// Each program's output and exit status.
    fn programs(&self, checkpoint: &str) -> BTreeMap<String, (String, String)> {
        self.blocks(&format!("{checkpoint} programs"))
            .into_iter()
            .map(|(name, body)| {
                let (output, exit) = body
                    .trim_end()
                    .rsplit_once("exit ")
                    .unwrap_or_else(|| panic!("{name}: no exit status in {body:?}"));
                (name, (output.to_owned(), exit.to_owned()))
            })
            .collect()
    }

    /// `systemctl show`'s properties in a section.
    fn properties(&self, name: &str) -> BTreeMap<String, String> {
        self.section(name)
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(key, value)| (key.to_owned(), value.to_owned()))
            .collect()
    }

    /// Asserts that binfmt's entry for every foreign architecture is there with the
    /// config's flags and an emulator binfmt wrote, next to the stand-ins' entries,
    /// and that programs of every architecture run; the stand-ins' entries.
    #[track_caller]
    fn assert_registered(&self, checkpoint: &str) -> BTreeMap<String, String> {
        let entries = self.entries(checkpoint);
        let mut expected: Vec<String> = foreign_arches().iter().map(|a| a.entry_name()).collect();
        expected.extend(STANDIN_ENTRIES.map(str::to_owned));
        expected.sort();
        assert_eq!(names(&entries), expected, "{checkpoint}: the table");
        for arch in foreign_arches() {
            let entry = &entries[&arch.entry_name()];
            assert!(
                entry.starts_with("enabled\n"),
                "{checkpoint} {arch}: {entry}"
            );
            assert!(
                entry.contains(&format!(
                    "interpreter /var/lib/binfmt/qemu-{}-",
                    arch.qemu_cpu()
                )),
                "{checkpoint} {arch}: {entry}"
            );
            assert!(
                entry.contains("flags: POCF\n"),
                "{checkpoint} {arch}: {entry}"
            );
        }
        let programs = self.programs(checkpoint);
        for arch in foreign_arches() {
            let (output, exit) = &programs[&format!("hello-{}", arch.qemu_cpu())];
            assert_eq!(
                (output.as_str(), exit.as_str()),
                (hello(arch).as_str(), exit_status(arch).to_string().as_str()),
                "{checkpoint}: {arch}'s program"
            );
        }
        assert_standins_run(&programs, checkpoint);
        let standins: BTreeMap<String, String> = entries
            .into_iter()
            .filter(|(name, _)| STANDIN_ENTRIES.contains(&name.as_str()))
            .collect();
        let wsl = &standins["WSLInterop"];
        assert!(
            wsl.starts_with("enabled\ninterpreter /usr/libexec/wsl-standin/init\n")
                && wsl.contains("\nmagic 4d5a\n"),
            "{checkpoint}: the WSLInterop stand-in, as its binfmt.d line says: {wsl}"
        );
        standins
    }

    /// Asserts that binfmt.service's last run before `checkpoint` succeeded and
    /// registered every foreign architecture into a table without it ("installing:
    /// arm64 OK", not "already registered"); its invocation id. Reports its log.
    #[track_caller]
    fn assert_ran_and_registered_anew(&self, checkpoint: &str) -> String {
        let unit = self.properties(&format!("{checkpoint} binfmt.service"));
        let state = ["ActiveState", "SubState", "Result", "ExecMainStatus"]
            .map(|key| unit.get(key).map_or("", String::as_str));
        assert_eq!(
            state,
            ["active", "exited", "success", "0"],
            "{checkpoint}: binfmt.service: {unit:?}"
        );
        let log = format!("{}\n", self.section(&format!("{checkpoint} journal")));
        for line in log.lines() {
            report(&format!("deb_boot: {checkpoint} binfmt.service | {line}"));
        }
        for arch in foreign_arches() {
            assert!(
                log.contains(&format!("installing: {arch} OK\n")),
                "{checkpoint}: binfmt.service registered {arch} anew:\n{log}"
            );
        }
        unit["InvocationID"].clone()
    }
}

/// The files a boot needs, made or taken from the cache.
struct Machine {
    dir: PathBuf,
    kernel: PathBuf,
    initramfs: PathBuf,
    disk: PathBuf,
}

impl Machine {
    /// The kernel, a copy of the root image, and the initramfs with the package.
    fn prepare(deb: &Path) -> Machine {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("deb-boot-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let (kernel, modules) = kernel();
        let image = root_image();
        let disk = dir.join("disk.img");
        let copied = Instant::now();
        let mut copy = Command::new("cp");
        copy.arg("--sparse=always").arg(&image).arg(&disk);
        Run::of(copy).success();
        report(&format!(
            "deb_boot: root image copied in {:.1} s",
            copied.elapsed().as_secs_f64()
        ));
        let initramfs = initramfs(&dir, &modules, deb);
        Machine {
            dir,
            kernel,
            initramfs,
            disk,
        }
    }

    /// Boots, runs the steps, and returns what they printed once the machine powered
    /// off.
    fn boot(&self) -> Results {
        let console = self.dir.join("console.log");
        let results = self.dir.join("results.log");
        let start = Instant::now();
        let mut child = Command::new("qemu-system-x86_64")
            .args(["-accel", "tcg", "-cpu", "max", "-smp", "2", "-m", "2048"])
            .args([
                "-nodefaults",
                "-display",
                "none",
                "-no-reboot",
                "-nic",
                "none",
            ])
            .arg("-kernel")
            .arg(&self.kernel)
            .arg("-initrd")
            .arg(&self.initramfs)
            .arg("-append")
            .arg("console=ttyS0 panic=-1")
            .arg("-drive")
            .arg(format!("file={},if=virtio,format=raw", self.disk.display()))
            .arg("-serial")
            .arg(format!("file:{}", console.display()))
            .arg("-serial")
            .arg(format!("file:{}", results.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start qemu-system-x86_64");
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if start.elapsed() > BOOT_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the machine did not power off within {} s; the console's end ({}):\n{}",
                    BOOT_TIMEOUT.as_secs(),
                    console.display(),
                    tail(&console)
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        };
        let stderr = child
            .stderr
            .take()
            .map(|mut stderr| {
                let mut text = String::new();
                let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
                text
            })
            .unwrap_or_default();
        assert!(status.success(), "qemu-system-x86_64 ({status}): {stderr}");
        let text = fs::read_to_string(&results).unwrap_or_default();
        report(&format!(
            "deb_boot: the boot, the steps and the power-off in {:.1} s",
            start.elapsed().as_secs_f64()
        ));
        assert!(
            text.contains("\n@@ end"),
            "the steps did not finish: they printed\n{text}\n--- the console's end ({}):\n{}",
            console.display(),
            tail(&console)
        );
        let results = Results::parse(&text);
        // Where the time went: systemd's boot, and the guest's uptime at each checkpoint.
        for (name, body) in &results.sections {
            if name == "boot time" || name.ends_with(" clock") {
                for line in body.lines() {
                    report(&format!("deb_boot: {name} | {line}"));
                }
            }
        }
        results
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// The last lines of a log.
fn tail(path: &Path) -> String {
    let text = String::from_utf8_lossy(&fs::read(path).unwrap_or_default()).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// The kernel image and the modules' directory of trixie's cloud kernel.
fn kernel() -> (PathBuf, PathBuf) {
    let depends = debian_depends(SUITE, KERNEL_METAPACKAGE);
    let package = depends
        .iter()
        .find(|name| name.starts_with("linux-image-"))
        .unwrap_or_else(|| panic!("{KERNEL_METAPACKAGE} depends on no linux-image-: {depends:?}"));
    let unpacked = debian_package(package);
    let version = package.strip_prefix("linux-image-").unwrap();
    let kernel = unpacked.join(format!("boot/vmlinuz-{version}"));
    let modules = unpacked.join(format!("usr/lib/modules/{version}/kernel"));
    assert!(kernel.is_file(), "{}: no kernel", kernel.display());
    report(&format!("deb_boot: kernel {package}"));
    (kernel, modules)
}

/// The root filesystem's image: made by mmdebstrap and mke2fs once, then taken from
/// the cache.
fn root_image() -> PathBuf {
    let key = Sha256::digest(
        [SUITE, IMAGE_SIZE]
            .into_iter()
            .chain(MMDEBSTRAP_OPTIONS)
            .collect::<Vec<_>>()
            .join("\n"),
    );
    let cache = binfmt_cache().join("vm-rootfs");
    let image = cache.join(format!("{SUITE}-{}.ext4", &hex::encode(key)[..16]));
    if image.is_file() {
        report(&format!(
            "deb_boot: root image {} (cached)",
            image.display()
        ));
        return image;
    }
    let mirror = debian_mirror();
    fs::create_dir_all(&cache).unwrap();
    let tree = cache.join(format!("{SUITE}.{}.tree", std::process::id()));
    let partial = image.with_extension(format!("ext4.{}.partial", std::process::id()));
    let start = Instant::now();
    let mut mmdebstrap = Command::new("mmdebstrap");
    mmdebstrap
        .args(MMDEBSTRAP_OPTIONS)
        .args(["--quiet", "--format=directory", SUITE])
        .arg(&tree)
        .arg(&mirror);
    let made = Run::of(mmdebstrap);
    if made.code != Some(0) {
        let _ = fs::remove_dir_all(&tree);
        panic!("mmdebstrap could not make the root filesystem:\n{made}");
    }
    let mut mke2fs = Command::new("mke2fs");
    mke2fs
        .args(["-q", "-t", "ext4", "-L", "root", "-d"])
        .arg(&tree)
        .arg(&partial)
        .arg(IMAGE_SIZE);
    let written = Run::of(mke2fs);
    let _ = fs::remove_dir_all(&tree);
    if written.code != Some(0) {
        let _ = fs::remove_file(&partial);
        panic!("mke2fs -d could not write the root image:\n{written}");
    }
    fs::rename(&partial, &image).unwrap();
    // Images of other options are stale now.
    for file in fs::read_dir(&cache).into_iter().flatten().flatten() {
        let path = file.path();
        if path != image && path.extension().is_some_and(|ext| ext == "ext4") {
            let _ = fs::remove_file(path);
        }
    }
    report(&format!(
        "deb_boot: root image made by mmdebstrap and mke2fs in {:.0} s: {}",
        start.elapsed().as_secs_f64(),
        image.display()
    ));
    image
}

/// The initramfs: busybox, the modules, `/init`, and under `/overlay` what `/init`
/// copies into the root: the package, the steps and their unit, the stand-ins, and the
/// programs.
fn initramfs(dir: &Path, modules: &Path, deb: &Path) -> PathBuf {
    let tree = dir.join("initramfs");
    let write = |path: &str, bytes: &[u8], mode: u32| {
        let path = tree.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, bytes).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    };
    let busybox = debian_package("busybox-static").join("usr/bin/busybox");
    write("bin/busybox", &fs::read(&busybox).unwrap(), 0o755);
    write("init", INIT.as_bytes(), 0o755);
    for module in MODULES {
        let unxz = Command::new("xz")
            .arg("-dc")
            .arg(modules.join(module))
            .output()
            .expect("run xz");
        assert!(unxz.status.success(), "xz -dc {module}");
        let name = Path::new(module.trim_end_matches(".xz"))
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        write(&format!("modules/{name}"), &unxz.stdout, 0o644);
    }

    let overlay = |path: &str| format!("overlay{path}");
    let guest = |path: &str| overlay(&format!("{GUEST_DIR}/{path}"));
    write(
        &guest(&deb.file_name().unwrap().to_string_lossy()),
        &fs::read(deb).unwrap(),
        0o644,
    );
    write(&guest("steps"), STEPS.as_bytes(), 0o755);
    write(
        &overlay("/etc/systemd/system/binfmt-test.service"),
        STEPS_UNIT.as_bytes(),
        0o644,
    );
    let wants = tree.join(overlay("/etc/systemd/system/multi-user.target.wants"));
    fs::create_dir_all(&wants).unwrap();
    symlink(
        "/etc/systemd/system/binfmt-test.service",
        wants.join("binfmt-test.service"),
    )
    .unwrap();
    for (path, line) in [WSL_STANDIN, M68K_STANDIN] {
        write(
            &overlay(&format!("/{path}")),
            format!("{line}\n").as_bytes(),
            0o644,
        );
    }
    for interpreter in [
        "/usr/libexec/wsl-standin/init",
        "/usr/libexec/qemu-binfmt/m68k-binfmt-P",
    ] {
        let name = if interpreter.contains("wsl") {
            "wsl-standin"
        } else {
            "m68k-binfmt-P"
        };
        write(
            &overlay(interpreter),
            format!("#!/bin/sh\necho \"{name} ran $1\"\n").as_bytes(),
            0o755,
        );
    }
    for arch in foreign_arches() {
        write(
            &guest(&format!("programs/hello-{}", arch.qemu_cpu())),
            &tiny_elf::hello(machine(arch), hello(arch).as_bytes(), exit_status(arch)),
            0o755,
        );
    }
    // Headers the stand-ins' magics match: their interpreters never read more.
    write(&guest("programs/wsl-program"), b"MZ\x90\x00", 0o755);
    let mut m68k = b"\x7fELF\x01\x02\x01".to_vec();
    m68k.resize(16, 0);
    m68k.extend_from_slice(b"\x00\x02\x00\x04");
    write(&guest("programs/m68k-program"), &m68k, 0o755);

    let initramfs = dir.join("initramfs.cpio.gz");
    let archive = Command::new("sh")
        .arg("-c")
        .arg("find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0 | gzip -1")
        .current_dir(&tree)
        .stdout(fs::File::create(&initramfs).unwrap())
        .stderr(Stdio::piped())
        .output()
        .expect("run cpio");
    assert!(
        archive.status.success(),
        "cpio: {}",
        String::from_utf8_lossy(&archive.stderr)
    );
    initramfs
}
