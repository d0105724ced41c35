//! The boot-time oneshot under a real systemd: Debian bookworm's systemd 252 boots as
//! pid 1 in a container on this machine's Docker engine, the unit-by-hand commands of docs/systemd-and-the-package.md
//! install binfmt there as they are written, and then, boot after boot:
//!
//! - after a reboot, binfmt.service has registered every foreign architecture (each one
//!   freshly, into a table without them), and their programs run;
//! - a binfmt.d file appears and `systemctl restart systemd-binfmt` wipes the table:
//!   afterwards that file's entry and binfmt's are all back, binfmt.service having run
//!   again after it (`PartOf=`, `After=`), and programs of each run.
//!
//! The root filesystem is made by mmdebstrap (bookworm's `essential` packages plus
//! systemd, systemd-sysv and sudo for those commands, from the machine's own
//! Debian mirror, `tools/debian-package --mirror`) and `docker import`ed: nothing is
//! pulled. The tarball is kept in `~/.cache/binfmt/systemd-rootfs/`, named after a
//! digest of mmdebstrap's arguments. The engine here cannot grant `--privileged`, so the
//! container gets `docker::privileged`'s equivalent, a cgroup namespace of its own
//! (on this machine's cgroup v1, systemd 252 runs in the writable cgroup2 hierarchy that
//! Docker mounts at /sys/fs/cgroup/unified; the read-only v1 `name=systemd` one costs
//! only warnings), tmpfs at /run and /run/lock, a disk volume at /var/lib/binfmt (a
//! host's /var is on disk; the container's root is FUSE here), and SIGRTMIN+3 as its
//! stop signal, which systemd takes as "halt".
//!
//! This test changes the machine's own binfmt_misc table, and what it tests wipes that
//! table. The container has the capabilities and no user namespace of its own, so the
//! binfmt_misc that systemd mounts in it is the kernel's initial instance, the machine's
//! global table: the unit's `Wants=proc-sys-fs-binfmt_misc.mount` mounts it (the
//! automount cannot work in a container, which has no /dev/autofs), and the test checks
//! that. systemd-binfmt writes -1 to its `status` when it starts and when it stops,
//! removing every entry the machine has. So the test:
//!
//! - holds the machine-wide lock (`GlobalTable::exclusive()`) while the container lives;
//! - mounts binfmt_misc on the host meanwhile if it is not (`docker::GlobalEntries`,
//!   unmounted after), and refuses to start when the table has any entry at all;
//! - registers foreign architectures only: binfmt never registers the machine's own,
//!   and the binfmt.d file's entry is for m68k's programs, under a name of the test's;
//! - removes exactly what it added at the end, on failure too (the guards).
//!
//! The host's mount also keeps the instance alive between boots. Otherwise the
//! container's mount, which goes with each boot, would be the instance's last one, and
//! the kernel would destroy it with every entry (facts file §1). With it, what the
//! first boot registered outlives that boot (systemd-binfmt did not run then: no
//! binfmt.d file had its condition met), so the test removes it before the second boot,
//! which then registers from nothing, as after a real reboot.
//!
//! Without a Docker engine the test fails, unless `BINFMT_SKIP_DOCKER` is set (see
//! `docker`). It needs root (mmdebstrap, the host's mount) and runs on x86_64: the
//! page installs the x86_64 build and the root filesystem is the machine's own amd64.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use binfmt_misc::{BinfmtMisc, DEFAULT_MOUNT, Table};
use qemu_catalog::Arch;
use sha2::{Digest, Sha256};

use crate::docker::{GlobalEntries, docker, privileged, require_engine};
use crate::util::{
    DocSection, GlobalTable, Run, binfmt_cache, debian_mirror, dist, foreign_arches, machine,
    report, workspace_root,
};

/// The suite whose systemd boots: bookworm's 252 still runs on cgroup v1 (systemd 256
/// and later, trixie's included, refuse it unless forced).
const SUITE: &str = "bookworm";

/// mmdebstrap's options for the root filesystem: what systemd needs to boot, and sudo
/// because the documented commands use it. Together with [`SUITE`] they name the cached
/// tarball; change them and it is made again.
///
/// No `--dpkgopt=path-exclude=` for documentation: mmdebstrap would then pipe every
/// package through a filter process of its own, which cost more time here (40 s of 130)
/// than the 45 MB it saved.
const MMDEBSTRAP_OPTIONS: [&str; 3] = [
    "--variant=essential",
    "--include=systemd,systemd-sysv,sudo",
    // dpkg need not fsync every file of a tarball that is written at the end.
    "--dpkgopt=force-unsafe-io",
];

/// The name of the binfmt.d entry the test adds (see [`test_entry_line`]).
const TEST_ENTRY: &str = "binfmt-test-m68k";

/// Where the container sees the test's files (read-only).
const TEST_DIR: &str = "/test";

/// The binfmt.d line of [`TEST_ENTRY`]: m68k programs (32-bit big-endian ELF, e_machine
/// 4; QEMU's magic and mask), foreign to this machine and to binfmt's catalog, handed to
/// a script that says it ran them. No flags: the script's path is looked up when a
/// program runs, in the container, where it is.
fn test_entry_line() -> String {
    let magic = r"\x7fELF\x01\x02\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x04";
    let mask = r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff";
    format!(":{TEST_ENTRY}:M::{magic}:{mask}:{TEST_DIR}/m68k-interpreter:")
}

#[test]
#[cfg_attr(
    not(slow_tests),
    ignore = "slow: set BINFMT_SLOW_TESTS=1 to run it (.ci/run does)"
)]
#[cfg_attr(
    all(slow_tests, not(all(target_arch = "x86_64", not(no_docker)))),
    ignore = "needs an x86_64 machine with a Docker engine (systemd boots in a container of it, with the x86_64 build); here BINFMT_SKIP_DOCKER is set or the machine is not x86_64"
)]
fn binfmt_service_registers_at_boot_and_again_when_systemd_binfmt_restarts() {
    if !cfg!(target_arch = "x86_64") {
        panic!("this test installs the x86_64 build in an amd64 root filesystem: run it on x86_64");
    }
    require_engine();
    assert!(
        rustix::process::geteuid().is_root(),
        "this test runs as root: mmdebstrap makes the root filesystem as root, and the test \
         mounts the machine's binfmt_misc"
    );
    let start = Instant::now();
    let dist = dist().canonicalize().expect("dist/");
    let image = Image::import(&rootfs_tarball());
    let privileged = privileged(&image.tag, &["/bin/true"]);
    let files = TestFiles::write();

    let waited = Instant::now();
    let lock = GlobalTable::exclusive();
    report(&format!(
        "systemd_boot: {:.1} s waiting for the machine-wide lock",
        waited.elapsed().as_secs_f64()
    ));
    let _global = GlobalEntries::open(&lock);
    let table = BinfmtMisc::open(DEFAULT_MOUNT).expect("the host's binfmt_misc, mounted");
    let present = table.entry_names().expect("the global table's entries");
    assert!(
        present.is_empty(),
        "the machine has binfmt_misc entries ({}), and systemd-binfmt, which this test \
         restarts, removes every entry: the test refuses to run. Run it where the table is \
         empty (binfmt --uninstall {}).",
        present.join(", "),
        present.join(",")
    );
    let _test_entry = RemovedOnDrop(TEST_ENTRY);

    // First boot: the documented commands, as written, in /src, where the workspace's
    // dist/ and deploy/ are mounted.
    let mounts = [
        format!("{}:/src/dist:ro", dist.display()),
        format!(
            "{}:/src/deploy:ro",
            workspace_root()
                .join("deploy")
                .canonicalize()
                .expect("deploy/")
                .display()
        ),
        format!("{}:{TEST_DIR}:ro", files.dir.display()),
    ];
    let container = Container::boot(&image.tag, &privileged, &mounts);
    let booted = Instant::now();
    container.wait_until_running();
    report(&format!(
        "systemd_boot: first boot in {:.1} s",
        booted.elapsed().as_secs_f64()
    ));
    let by_hand = UNIT_BY_HAND.block();
    let install = container.run(&["bash", "-e", "-c", &by_hand]);
    for line in install.stdout.lines().chain(install.stderr.lines()) {
        report(&format!("systemd_boot: by hand | {line}"));
    }
    assert_eq!(
        install.code,
        Some(0),
        "the unit-by-hand commands of docs/systemd-and-the-package.md:\n{install}"
    );
    assert!(
        install.stdout.contains("Active: active (exited)"),
        "{install}"
    );
    assert!(install.stdout.contains("status=0/SUCCESS"), "{install}");
    let status: serde_json::Value = serde_json::from_str(
        &install.stdout[install.stdout.rfind("\n{").expect("the status JSON last")..],
    )
    .expect("the status JSON");
    assert_supports_every_foreign_platform(&status);

    // Reboot. What the first boot registered outlives it (the host's mount holds the
    // instance, and nothing wiped it: systemd-binfmt did not run); remove it, so that
    // the second boot starts from an empty table, as a real reboot does.
    container.halt();
    for arch in foreign_arches() {
        let name = arch.entry_name();
        if table.read_entry(&name).unwrap().is_some() {
            table.remove(&name).unwrap();
        }
    }
    assert_eq!(table.entry_names().unwrap(), Vec::<String>::new());
    container.start();
    let booted = Instant::now();
    container.wait_until_running();
    report(&format!(
        "systemd_boot: second boot in {:.1} s",
        booted.elapsed().as_secs_f64()
    ));

    // binfmt_misc was mounted by systemd, as the unit asks: the automount cannot work
    // in a container.
    assert_eq!(
        container.properties("proc-sys-fs-binfmt_misc.mount", &["ActiveState", "Result"]),
        ["active", "success"]
    );
    let at_boot = container.assert_ran("binfmt.service");
    container.assert_registered_anew(&at_boot);
    container.assert_registered(&[]);

    // A binfmt.d file appears, and systemd-binfmt is restarted: it removes every entry,
    // then registers the file's; binfmt.service, part of it and after it, runs again.
    container
        .run(&[
            "install",
            "-D",
            "-m",
            "0644",
            &format!("{TEST_DIR}/{TEST_ENTRY}.conf"),
            &format!("/etc/binfmt.d/{TEST_ENTRY}.conf"),
        ])
        .success();
    container
        .run(&["systemctl", "restart", "systemd-binfmt.service"])
        .success();
    container.wait_for_new_run("binfmt.service", &at_boot);
    container.assert_ran("systemd-binfmt.service");
    let after_restart = container.assert_ran("binfmt.service");
    let [systemd_binfmt_done] = <[String; 1]>::try_from(container.properties(
        "systemd-binfmt.service",
        &["ExecMainExitTimestampMonotonic"],
    ))
    .unwrap();
    let [binfmt_started] = <[String; 1]>::try_from(
        container.properties("binfmt.service", &["ExecMainStartTimestampMonotonic"]),
    )
    .unwrap();
    let microseconds = |value: &str| value.parse::<u64>().expect("a monotonic timestamp");
    assert!(
        microseconds(&binfmt_started) > microseconds(&systemd_binfmt_done),
        "binfmt.service started (at {binfmt_started} µs) after systemd-binfmt had wiped \
         the table and registered /etc/binfmt.d (at {systemd_binfmt_done} µs)"
    );
    // Registered anew, not "already registered": the restart had removed every entry.
    container.assert_registered_anew(&after_restart);
    container.assert_registered(&[TEST_ENTRY]);
    let m68k = container
        .run(&[&format!("{TEST_DIR}/m68k-program")])
        .success();
    assert_eq!(
        m68k.stdout,
        format!("m68k-interpreter ran {TEST_DIR}/m68k-program\n"),
        "{m68k}"
    );

    // Halting stops systemd-binfmt, which removes every entry once more.
    container.halt();
    report(&format!(
        "systemd_boot: entries left after the last halt: {:?}; {:.1} s in all",
        table.entry_names().unwrap(),
        start.elapsed().as_secs_f64()
    ));
    // The guards go in reverse order: the container, the test's entry, the host's
    // mount (binfmt's entries removed first) with the lock, the files, the image.
}

/// The unit installed by hand (docs/systemd-and-the-package.md): the commands run as
/// written, so the page cannot drift from what works.
pub(crate) const UNIT_BY_HAND: DocSection = DocSection {
    file: "docs/systemd-and-the-package.md",
    heading: "Without the package: the unit by hand",
    language: "sh",
    blocks: 1,
};

/// Asserts that the status JSON lists every foreign platform as supported: binfmt ran
/// a program of each.
fn assert_supports_every_foreign_platform(status: &serde_json::Value) {
    let supported = status["supported"]
        .as_array()
        .unwrap_or_else(|| panic!("no \"supported\" in {status}"));
    for arch in foreign_arches() {
        for platform in arch.platforms() {
            assert!(
                supported.contains(&(*platform).into()),
                "{platform} in {status}"
            );
        }
    }
}

/// The root filesystem's tarball: made by mmdebstrap once, then taken from the cache.
fn rootfs_tarball() -> PathBuf {
    let key = Sha256::digest(
        std::iter::once(SUITE)
            .chain(MMDEBSTRAP_OPTIONS)
            .collect::<Vec<_>>()
            .join("\n"),
    );
    let dir = binfmt_cache().join("systemd-rootfs");
    let tarball = dir.join(format!("{SUITE}-{}.tar", &hex::encode(key)[..16]));
    if tarball.is_file() {
        report(&format!(
            "systemd_boot: root filesystem {} (cached)",
            tarball.display()
        ));
        return tarball;
    }
    if Command::new("mmdebstrap")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!(
            "mmdebstrap is not installed: this test makes its root filesystem with it \
             (apt-get install mmdebstrap; .ci/run does)"
        );
    }
    let mirror = debian_mirror();
    fs::create_dir_all(&dir).expect("create the root filesystem cache");
    let partial = tarball.with_extension(format!("tar.{}.partial", std::process::id()));
    let start = Instant::now();
    let mut command = Command::new("mmdebstrap");
    command
        .args(MMDEBSTRAP_OPTIONS)
        .args(["--quiet", "--format=tar", SUITE])
        .arg(&partial)
        .arg(&mirror);
    let run = Run::of(command);
    if run.code != Some(0) {
        let _ = fs::remove_file(&partial);
        panic!("mmdebstrap could not make the root filesystem:\n{run}");
    }
    fs::rename(&partial, &tarball).expect("rename the root filesystem into the cache");
    // Tarballs of other options are stale now.
    for file in fs::read_dir(&dir).into_iter().flatten().flatten() {
        let path = file.path();
        if path != tarball && path.extension().is_some_and(|ext| ext == "tar") {
            let _ = fs::remove_file(path);
        }
    }
    report(&format!(
        "systemd_boot: root filesystem made by mmdebstrap in {:.0} s, {:.0} MB: {}",
        start.elapsed().as_secs_f64(),
        fs::metadata(&tarball).unwrap().len() as f64 / 1e6,
        tarball.display()
    ));
    tarball
}

/// The root filesystem as an image, removed on drop.
struct Image {
    tag: String,
}

impl Image {
    fn import(tarball: &Path) -> Image {
        let start = Instant::now();
        let image = Image {
            tag: format!("binfmt-test-systemd-{}:{SUITE}", std::process::id()),
        };
        docker(&[
            "import",
            "--change",
            "CMD [\"/sbin/init\"]",
            // How systemd knows it runs in a container (as systemd-nspawn tells it).
            "--change",
            "ENV container=docker",
            tarball.to_str().expect("UTF-8 path"),
            &image.tag,
        ])
        .success();
        report(&format!(
            "systemd_boot: imported as {} in {:.1} s",
            image.tag,
            start.elapsed().as_secs_f64()
        ));
        image
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = docker(&["rmi", &self.tag]);
    }
}

/// Programs of every foreign architecture, the m68k program with its interpreter, and
/// the binfmt.d file, in a directory the container sees at [`TEST_DIR`].
struct TestFiles {
    dir: PathBuf,
}

impl TestFiles {
    fn write() -> TestFiles {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("systemd-boot-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create the test's files");
        let executable = |name: &str, bytes: &[u8]| {
            let path = dir.join(name);
            fs::write(&path, bytes).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        };
        for arch in foreign_arches() {
            executable(
                &format!("hello-{}", arch.qemu_cpu()),
                &tiny_elf::hello(machine(arch), hello(arch).as_bytes(), exit_status(arch)),
            );
        }
        // An ELF header that matches the m68k entry: the interpreter never reads more.
        let mut m68k = b"\x7fELF\x01\x02\x01".to_vec();
        m68k.resize(16, 0);
        m68k.extend_from_slice(b"\x00\x02\x00\x04");
        executable("m68k-program", &m68k);
        executable(
            "m68k-interpreter",
            b"#!/bin/sh\necho \"m68k-interpreter ran $1\"\n",
        );
        fs::write(
            dir.join(format!("{TEST_ENTRY}.conf")),
            format!("# binfmt's systemd_boot test\n{}\n", test_entry_line()),
        )
        .unwrap();
        TestFiles { dir }
    }
}

impl Drop for TestFiles {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn hello(arch: Arch) -> String {
    format!("hello from {}\n", arch.qemu_cpu())
}

fn exit_status(arch: Arch) -> u8 {
    40 + arch as u8
}

/// An entry of the host's table, removed on drop if it is there.
struct RemovedOnDrop(&'static str);

impl Drop for RemovedOnDrop {
    fn drop(&mut self) {
        if let Ok(table) = BinfmtMisc::open(DEFAULT_MOUNT)
            && table.read_entry(self.0).ok().flatten().is_some()
            && let Err(error) = table.remove(self.0)
        {
            report(&format!("systemd_boot: cannot remove {}: {error}", self.0));
        }
    }
}

/// The container systemd boots in, removed (with its volume) on drop.
struct Container {
    name: String,
}

impl Container {
    /// Creates the container and boots it.
    fn boot(image: &str, privileged: &[String], mounts: &[String]) -> Container {
        let container = Container {
            name: format!("binfmt-test-systemd-{}", std::process::id()),
        };
        let mut args: Vec<&str> = vec!["run", "--detach", "--name", &container.name];
        args.extend(privileged.iter().map(String::as_str));
        args.extend([
            "--cgroupns=private",
            "--tmpfs=/run",
            "--tmpfs=/run/lock",
            "--volume=/var/lib/binfmt",
            "--stop-signal=SIGRTMIN+3",
            // A terminal for systemd's console, so that `docker logs` shows the boot.
            "--tty",
            "--env=SYSTEMD_COLORS=0",
        ]);
        for mount in mounts {
            args.extend(["--volume", mount]);
        }
        args.push(image);
        docker(&args).success();
        container
    }

    /// Runs a command in the container (in /src, the documented commands' working directory).
    fn run(&self, command: &[&str]) -> Run {
        let mut args = vec!["exec", "--workdir", "/src", &self.name];
        args.extend_from_slice(command);
        docker(&args)
    }

    /// Waits until systemd has finished booting, and asserts that nothing failed.
    fn wait_until_running(&self) {
        let start = Instant::now();
        loop {
            // "offline" or nothing until systemd has set up /run and listens; then it
            // waits for the boot to finish.
            let state = self.run(&["timeout", "60", "systemctl", "is-system-running", "--wait"]);
            match state.stdout.trim() {
                "running" => return,
                "offline" | "" | "initializing" | "starting"
                    if start.elapsed() < Duration::from_secs(90) =>
                {
                    std::thread::sleep(Duration::from_millis(200));
                }
                _ => panic!(
                    "systemd did not boot: systemctl is-system-running --wait said\n{state}\n\
                     --- failed units\n{}--- boot log\n{}",
                    self.run(&["systemctl", "--failed", "--no-pager"]).stdout,
                    self.logs()
                ),
            }
        }
    }

    /// Halts systemd as `docker stop` does (SIGRTMIN+3), and asserts that it shut down
    /// (stopping every unit) rather than being killed when the timeout ran out.
    fn halt(&self) {
        let halts = self.logs().matches("\nHalting system.").count();
        let start = Instant::now();
        // `-t`: `--time` in older clients, `--timeout` in newer ones.
        docker(&["stop", "-t", "60", &self.name]).success();
        let logs = self.logs();
        assert_eq!(
            logs.matches("\nHalting system.").count(),
            halts + 1,
            "systemd did not halt:\n{logs}"
        );
        report(&format!(
            "systemd_boot: halted in {:.1} s",
            start.elapsed().as_secs_f64()
        ));
    }

    fn start(&self) {
        docker(&["start", &self.name]).success();
    }

    /// The console's output: the boot and the shutdowns.
    fn logs(&self) -> String {
        let logs = docker(&["logs", &self.name]);
        format!("{}{}", logs.stdout, logs.stderr)
    }

    /// `systemctl show UNIT`'s values of `properties`, in their order.
    fn properties(&self, unit: &str, properties: &[&str]) -> Vec<String> {
        let mut args = vec!["systemctl", "show", unit];
        for property in properties {
            args.extend(["--property", property]);
        }
        let show = self.run(&args).success();
        properties
            .iter()
            .map(|property| {
                show.stdout
                    .lines()
                    .find_map(|line| line.strip_prefix(&format!("{property}=")))
                    .unwrap_or_else(|| panic!("no {property} in:\n{show}"))
                    .to_owned()
            })
            .collect()
    }

    /// Asserts that a oneshot unit ran and exited 0, and is active; its invocation id.
    fn assert_ran(&self, unit: &str) -> String {
        let [state, sub, result, status, invocation] = <[String; 5]>::try_from(self.properties(
            unit,
            &[
                "ActiveState",
                "SubState",
                "Result",
                "ExecMainStatus",
                "InvocationID",
            ],
        ))
        .unwrap();
        assert_eq!(
            [state.as_str(), &sub, &result, &status],
            ["active", "exited", "success", "0"],
            "{unit}:\n{}",
            self.run(&["systemctl", "status", "--no-pager", unit])
        );
        invocation
    }

    /// Waits until `unit` has run again since the invocation `previous`.
    fn wait_for_new_run(&self, unit: &str, previous: &str) {
        let start = Instant::now();
        loop {
            let [state, invocation] =
                <[String; 2]>::try_from(self.properties(unit, &["ActiveState", "InvocationID"]))
                    .unwrap();
            if state == "active" && invocation != previous {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{unit} did not run again ({state}):\n{}",
                self.run(&["systemctl", "status", "--no-pager", unit])
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Asserts that binfmt.service's run `invocation` registered every foreign
    /// architecture into a table that did not have it: "installing: arm64 OK", not
    /// "(already registered)". Reports the run's messages.
    ///
    /// A run's messages are told apart by its invocation id: `journalctl --boot` would
    /// not do, since every boot of the container has the host's boot id.
    fn assert_registered_anew(&self, invocation: &str) {
        let field = format!("_SYSTEMD_INVOCATION_ID={invocation}");
        let start = Instant::now();
        let log = loop {
            // journald may still be reading the last lines of the run's output.
            let log = self
                .run(&["journalctl", &field, "--output=cat", "--no-pager"])
                .success()
                .stdout;
            if log.contains("\n}\n") || start.elapsed() > Duration::from_secs(10) {
                break log;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        for line in log.lines() {
            report(&format!(
                "systemd_boot: binfmt.service {invocation} | {line}"
            ));
        }
        for arch in foreign_arches() {
            assert!(
                log.contains(&format!("installing: {arch} OK\n")),
                "binfmt.service ({invocation}) registered {arch} anew:\n{log}"
            );
        }
    }

    /// Asserts that the container's binfmt_misc holds binfmt's entry for every foreign
    /// architecture, with flags and emulator as the config says, and `others`; that
    /// `binfmt` (its status JSON) runs a program of each; and that programs of each
    /// run in the container.
    fn assert_registered(&self, others: &[&str]) {
        let listed = self.run(&["ls", "/proc/sys/fs/binfmt_misc"]).success();
        let mut entries: Vec<&str> = listed.stdout.lines().collect();
        entries.sort_unstable();
        let mut expected: Vec<String> = foreign_arches().iter().map(|a| a.entry_name()).collect();
        expected.extend(others.iter().map(|name| (*name).to_owned()));
        expected.extend(["register".to_owned(), "status".to_owned()]);
        expected.sort_unstable();
        assert_eq!(
            entries, expected,
            "the container's /proc/sys/fs/binfmt_misc"
        );
        for arch in foreign_arches() {
            let entry = self
                .run(&[
                    "cat",
                    &format!("/proc/sys/fs/binfmt_misc/{}", arch.entry_name()),
                ])
                .success()
                .stdout;
            assert!(entry.starts_with("enabled\n"), "{arch}: {entry}");
            assert!(
                entry.contains(&format!(
                    "interpreter /var/lib/binfmt/qemu-{}-",
                    arch.qemu_cpu()
                )),
                "{arch}: {entry}"
            );
            assert!(entry.contains("flags: POCF\n"), "{arch}: {entry}");
            let program = format!("{TEST_DIR}/hello-{}", arch.qemu_cpu());
            let ran = self.run(&[&program]);
            assert_eq!(ran.stdout, hello(arch), "{arch} program:\n{ran}");
            assert_eq!(
                ran.code,
                Some(i32::from(exit_status(arch))),
                "{arch} program:\n{ran}"
            );
        }
        assert_supports_every_foreign_platform(&self.run(&["binfmt"]).success().status());
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker(&["rm", "--force", "--volumes", &self.name]);
    }
}
