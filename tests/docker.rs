//! The image, for real, on this machine's Docker engine: built from `dist/` with the
//! repository's `Dockerfile`, then used the way docker/setup-qemu-action uses it.
//!
//! This is the one test that changes the machine's own (global) binfmt_misc table: the
//! engine can run an arm64 image only through an arm64 emulator registered there. It
//! registers foreign architectures only (arm64, riscv64), holds the cross-process lock
//! that keeps namespace tests from comparing the global table meanwhile, and a guard
//! removes exactly what it added, and unmounts binfmt_misc only if it mounted it, on
//! success and on failure alike.
//!
//! Why it may mount binfmt_misc on the host: a container never sees the host's mount,
//! and when the host has none its registrations die with it (facts file §1). binfmt
//! then refuses to register (this test checks that first, where the host has nothing
//! mounted), and the fix it prints is to mount binfmt_misc on the host; so the test
//! does exactly that. (The other fix, `--pid=host`, needs ptrace access to the host's
//! pid 1, which this test cannot count on; `persist` tests it with namespaces.)
//!
//! Without a Docker engine the test fails and says so, unless `BINFMT_SKIP_DOCKER=1`
//! asks to skip it (CI sets it where no engine runs), which it reports loudly.

use std::collections::BTreeSet;
use std::process::Command;

use binfmt_misc::{BinfmtMisc, DEFAULT_MOUNT, Table};
use qemu_catalog::Arch;

use crate::kubernetes;
use crate::util::{GlobalTable, Run, dist, foreign_arches, machine, report, workspace_root};

/// Entries this test may register in the global table: every architecture foreign
/// to this host (the DaemonSet's config says "all"), never a native one.
fn entries() -> Vec<String> {
    foreign_arches()
        .iter()
        .map(|arch| arch.entry_name())
        .collect()
}

/// How the Kubernetes manifests run binfmt, in `docker run` options: no capability,
/// no privilege escalation, uid 0, a read-only root, and a writable /tmp (an emptyDir
/// there) for the execution probes.
const LEAST_PRIVILEGE: [&str; 5] = [
    "--cap-drop=ALL",
    "--security-opt=no-new-privileges",
    "--user=0:0",
    "--read-only",
    "--tmpfs=/tmp:exec",
];

/// Set to skip this test where no Docker engine runs.
const SKIP_ENV: &str = "BINFMT_SKIP_DOCKER";

pub(crate) fn docker(args: &[&str]) -> Run {
    let mut command = Command::new("docker");
    command.args(args);
    Run::of(command)
}

/// Whether a Docker engine answers. Without one the calling test fails, saying so,
/// unless [`SKIP_ENV`] asks to skip it: then this says so loudly and returns false.
pub(crate) fn engine_answers(test: &str) -> bool {
    let run = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output();
    let reason = match run {
        Ok(run) if run.status.success() => {
            report(&format!(
                "docker: engine {}",
                String::from_utf8_lossy(&run.stdout).trim()
            ));
            return true;
        }
        Ok(run) => format!(
            "no Docker engine answers: {}",
            String::from_utf8_lossy(&run.stderr).trim()
        ),
        Err(error) => format!("cannot run the docker client: {error}"),
    };
    if std::env::var_os(SKIP_ENV).is_some() {
        report(&format!("SKIPPED {test}: {reason} ({SKIP_ENV} is set)"));
        return false;
    }
    panic!("{reason}. This test needs a Docker engine: start one, or set {SKIP_ENV}=1 to skip it")
}

/// The names of capabilities 0 to 40 (`include/uapi/linux/capability.h`).
const CAPABILITIES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// How to run a container "privileged" on this engine; `probe` is a command of
/// `image` that exits 0 (what follows the image on `docker run`'s command line).
///
/// `--privileged` grants every capability. An engine whose own bounding set lacks one
/// (this project's VMs drop CAP_SYS_RESOURCE) cannot, and runc fails with "unable to
/// apply caps". Then the same privileges minus the missing capabilities are asked for
/// one by one, and the test says so: what binfmt needs (CAP_SYS_ADMIN, a writable
/// /proc/sys, no seccomp filter in the way) is all there.
pub(crate) fn privileged(image: &str, probe: &[&str]) -> Vec<String> {
    let mut args = vec!["run", "--rm", "--privileged", image];
    args.extend_from_slice(probe);
    let run = docker(&args);
    if run.code == Some(0) {
        return vec!["--privileged".to_owned()];
    }
    assert!(
        run.stderr.contains("unable to apply caps"),
        "docker {} failed:\n{run}",
        args.join(" ")
    );
    let bounding = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("CapBnd:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        })
        .expect("CapBnd in /proc/self/status");
    let mut options: Vec<String> = vec!["--cap-add=ALL".into()];
    for (bit, name) in CAPABILITIES.iter().enumerate() {
        if bounding & (1 << bit) == 0 {
            options.push(format!("--cap-drop={name}"));
        }
    }
    options.extend(
        [
            "--security-opt=seccomp=unconfined",
            "--security-opt=apparmor=unconfined",
            "--security-opt=systempaths=unconfined",
        ]
        .map(str::to_owned),
    );
    report(&format!(
        "docker: this engine cannot grant --privileged (its bounding set lacks some \
         capabilities: runc says \"unable to apply caps\"); using the equivalent {}",
        options.join(" ")
    ));
    options
}

/// Images this test built, and the untagged ones their builds left, removed on drop.
struct Images {
    tags: Vec<String>,
    before: BTreeSet<String>,
}

impl Images {
    fn all_ids() -> BTreeSet<String> {
        docker(&["images", "--all", "--quiet", "--no-trunc"])
            .stdout
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn new() -> Images {
        Images {
            tags: Vec::new(),
            before: Images::all_ids(),
        }
    }

    /// Builds the repository's Dockerfile for `linux/<arch>` as the classic builder
    /// and buildx both can (TARGETARCH passed; no cache, see the Dockerfile).
    fn build(&mut self, arch: &str) -> String {
        let tag = format!("binfmt-test-{}:{arch}", std::process::id());
        self.tags.push(tag.clone());
        let root = workspace_root();
        let root = root.to_str().expect("UTF-8 path");
        let platform = format!("linux/{arch}");
        let build_arg = format!("TARGETARCH={arch}");
        let run = docker(&[
            "build",
            "--quiet",
            "--no-cache",
            "--platform",
            &platform,
            "--build-arg",
            &build_arg,
            "--tag",
            &tag,
            root,
        ]);
        assert_eq!(run.code, Some(0), "docker build for {platform}:\n{run}");
        let inspect = docker(&[
            "image",
            "inspect",
            "--format",
            "{{.Os}}/{{.Architecture}} {{.Size}}",
            &tag,
        ])
        .success();
        let (built_platform, size) = inspect
            .stdout
            .trim()
            .split_once(' ')
            .expect("inspect output");
        assert_eq!(built_platform, platform, "the image's platform");
        let size: u64 = size.parse().expect("image size");
        report(&format!(
            "size: image {platform} {:.1} MB ({size} bytes; goal 10 MB: {})",
            size as f64 / 1e6,
            if size <= 10_000_000 { "met" } else { "missed" }
        ));
        tag
    }
}

impl Drop for Images {
    fn drop(&mut self) {
        for tag in &self.tags {
            let _ = docker(&["rmi", "--force", tag]);
        }
        // The classic builder leaves the stage images of other platforms untagged.
        for id in Images::all_ids().difference(&self.before) {
            let _ = docker(&["rmi", id]);
        }
    }
}

/// The global table for the test's duration: mounted by the test if it was not, the
/// entries it registers removed at the end, whatever happens.
pub(crate) struct GlobalEntries {
    mounted_here: bool,
    _lock: GlobalTable,
}

impl GlobalEntries {
    pub(crate) fn open(lock: GlobalTable) -> GlobalEntries {
        let mounted_here = match BinfmtMisc::open(DEFAULT_MOUNT) {
            Ok(_) => false,
            Err(binfmt_misc::Error::NotBinfmtMisc { .. }) => {
                BinfmtMisc::mount(DEFAULT_MOUNT).unwrap_or_else(|error| {
                    panic!(
                        "binfmt_misc is not mounted on this host and the test cannot mount it \
                         ({error}): run the tests as root, or mount it first"
                    )
                });
                true
            }
            Err(error) => panic!("cannot open the global binfmt_misc: {error}"),
        };
        let table = BinfmtMisc::open(DEFAULT_MOUNT).expect("global binfmt_misc");
        let present: Vec<String> = entries()
            .into_iter()
            .filter(|name| table.read_entry(name).ok().flatten().is_some())
            .collect();
        if !present.is_empty() {
            // Not ours: leave them, and the table as it was.
            drop(table);
            if mounted_here {
                let _ = rustix::mount::unmount(DEFAULT_MOUNT, rustix::mount::UnmountFlags::empty());
            }
            panic!(
                "the machine already has {present:?} registered; this test would change them, \
                 so it refuses: remove them first (binfmt --uninstall {})",
                present.join(",")
            );
        }
        GlobalEntries {
            mounted_here,
            _lock: lock,
        }
    }
}

impl Drop for GlobalEntries {
    fn drop(&mut self) {
        if let Ok(table) = BinfmtMisc::open(DEFAULT_MOUNT) {
            for name in entries() {
                if table.read_entry(&name).ok().flatten().is_some()
                    && let Err(error) = table.remove(&name)
                {
                    report(&format!("docker test: cannot remove {name}: {error}"));
                }
            }
        }
        if self.mounted_here
            && let Err(error) =
                rustix::mount::unmount(DEFAULT_MOUNT, rustix::mount::UnmountFlags::empty())
        {
            report(&format!(
                "docker test: cannot unmount {DEFAULT_MOUNT}: {error}"
            ));
        }
    }
}

#[test]
fn the_image_does_what_setup_qemu_action_asks_on_a_real_engine() {
    if !cfg!(target_arch = "x86_64") {
        panic!("this test registers arm64 as the foreign architecture: run it on x86_64");
    }
    if !engine_answers("docker::the_image_does_what_setup_qemu_action_asks_on_a_real_engine") {
        return;
    }
    dist();
    let mut images = Images::new();
    let image = images.build("amd64");
    let arm64_image = images.build("arm64");
    let privileged = privileged(&image, &["--version"]);
    let run_image = |args: &[&str]| {
        let mut all: Vec<&str> = vec!["run", "--rm"];
        all.extend(privileged.iter().map(String::as_str));
        all.push(&image);
        all.extend_from_slice(args);
        docker(&all)
    };

    let lock = GlobalTable::exclusive();
    // No silent loss, for real: with nothing mounted on the host, registering from a
    // container is refused with the fix, and the host is left as it was.
    if BinfmtMisc::open(DEFAULT_MOUNT).is_err() {
        let refused = run_image(&["--install", "arm64"]).exit(1);
        assert!(
            refused
                .stderr
                .contains("binfmt_misc is not mounted on the host"),
            "{refused}"
        );
        assert!(
            refused.stderr.contains("sudo mount -t binfmt_misc"),
            "{refused}"
        );
        assert!(
            BinfmtMisc::open(DEFAULT_MOUNT).is_err(),
            "nothing was mounted on the host"
        );
    } else {
        report(
            "docker: binfmt_misc is mounted on this host; the refusal without a host mount \
                is covered by persist::a_container_refuses_to_register_when_the_host_has_no_mount",
        );
    }
    let global = GlobalEntries::open(lock);

    // docker/setup-qemu-action: --version, --install <platforms>, then the status.
    let version = run_image(&["--version"]).success();
    assert!(version.stdout.starts_with("binfmt/"), "{version}");
    let install = run_image(&["--install", "linux/arm64,riscv64"]).success();
    assert!(
        install.stderr.contains("installing: arm64 OK\n"),
        "{install}"
    );
    assert!(
        install.stderr.contains("installing: riscv64 OK\n"),
        "{install}"
    );
    let status = run_image(&[]).success().status();
    for platform in ["linux/amd64", "linux/arm64", "linux/riscv64"] {
        assert!(
            status["supported"]
                .as_array()
                .unwrap()
                .contains(&platform.into()),
            "{platform} in {status}"
        );
    }
    // A second run of the action finds everything in place.
    let again = run_image(&["--install", "arm64,riscv64"]).success();
    assert!(
        again
            .stderr
            .contains("installing: arm64 OK (already registered)"),
        "{again}"
    );

    // The registrations outlive the containers, on the host: foreign programs run.
    assert_runs_on_the_host(Arch::Arm64);
    assert_runs_on_the_host(Arch::Riscv64);

    // The engine runs the arm64 image under emulation.
    let arm64 = docker(&[
        "run",
        "--rm",
        "--platform",
        "linux/arm64",
        &arm64_image,
        "--version",
    ])
    .success();
    assert!(arm64.stdout.starts_with("binfmt/"), "{arm64}");

    // Least privilege, as the Kubernetes manifests run it (LEAST_PRIVILEGE), the host's
    // mount bound in (a hostPath), emulators on a disk volume.
    let host_mount = format!("{DEFAULT_MOUNT}:/host/binfmt_misc");
    let least_privileged = |args: &[&str]| {
        let mut all = vec!["run", "--rm"];
        all.extend(LEAST_PRIVILEGE);
        all.extend([
            "--volume",
            &host_mount,
            &image,
            "--mount",
            "/host/binfmt_misc",
        ]);
        all.extend_from_slice(args);
        docker(&all)
    };
    let least = least_privileged(&["--uninstall", "qemu-riscv64"]);
    let least = least.success();
    assert!(
        least.stderr.contains("uninstalling: qemu-riscv64 OK"),
        "{least}"
    );
    let least = least_privileged(&["--install", "riscv64"]).success();
    assert!(least.stderr.contains("installing: riscv64 OK\n"), "{least}");
    assert!(!least.stderr.contains("cannot run the probes"), "{least}");
    let supported = least.status()["supported"].clone();
    assert!(
        supported
            .as_array()
            .unwrap()
            .contains(&"linux/riscv64".into()),
        "{least}"
    );
    assert_runs_on_the_host(Arch::Riscv64);

    // The DaemonSet's container: its arguments and its ConfigMap's config, with the
    // same privileges, as the container's pid 1; `docker stop` (SIGTERM) ends it at
    // once with exit code 0 and the registrations stay.
    let daemonset = DaemonSet::start(&image, &host_mount);
    daemonset.wait_until_registered();
    for arch in foreign_arches() {
        assert!(
            BinfmtMisc::open(DEFAULT_MOUNT)
                .unwrap()
                .read_entry(&arch.entry_name())
                .unwrap()
                .is_some(),
            "{arch} registered by the DaemonSet's config"
        );
    }
    daemonset.stop_with_sigterm();
    assert_runs_on_the_host(Arch::S390x);

    // Clean up through the image, as a user would; the guard checks and repeats it.
    let names = entries().join(",");
    let removed = run_image(&["--uninstall", &names]).success();
    let table = BinfmtMisc::open(DEFAULT_MOUNT).expect("global binfmt_misc");
    for name in entries() {
        assert!(
            removed.stderr.contains(&format!("uninstalling: {name} OK")),
            "{removed}"
        );
        assert_eq!(table.read_entry(&name).unwrap(), None, "{name} left behind");
    }
    drop(table);
    drop(global);
}

/// The DaemonSet's container on the engine, removed (with its volume) on drop.
struct DaemonSet {
    name: String,
}

impl DaemonSet {
    fn start(image: &str, host_mount: &str) -> DaemonSet {
        let name = format!("binfmt-test-daemonset-{}", std::process::id());
        let config_dir =
            std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("daemonset-etc");
        std::fs::create_dir_all(&config_dir).unwrap();
        std::fs::write(
            config_dir.join("config.toml"),
            kubernetes::daemonset_config(),
        )
        .unwrap();
        let config_mount = format!("{}:/etc/binfmt:ro", config_dir.display());
        let mut args: Vec<String> = ["run", "--detach", "--name", &name]
            .map(str::to_owned)
            .to_vec();
        args.extend(LEAST_PRIVILEGE.map(str::to_owned));
        args.extend(["--volume", host_mount, "--volume", &config_mount, image].map(str::to_owned));
        args.extend(kubernetes::daemonset_args());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let daemonset = DaemonSet { name };
        docker(&args).success();
        daemonset
    }

    fn logs(&self) -> Run {
        docker(&["logs", &self.name])
    }

    fn wait_until_registered(&self) {
        let start = std::time::Instant::now();
        loop {
            let logs = self.logs();
            if logs.stderr.contains("registered; checking again every 60s") {
                return;
            }
            assert!(
                start.elapsed().as_secs() < 60,
                "the DaemonSet container did not register:\n{logs}"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    fn stop_with_sigterm(&self) {
        let start = std::time::Instant::now();
        docker(&["stop", "--time", "20", &self.name]).success();
        let stopped_in = start.elapsed();
        let code = docker(&["inspect", "--format", "{{.State.ExitCode}}", &self.name]).success();
        let logs = self.logs();
        assert_eq!(code.stdout.trim(), "0", "exit code after SIGTERM:\n{logs}");
        assert!(logs.stderr.contains("stopping on signal"), "{logs}");
        assert!(!logs.stderr.contains("cannot run the probes"), "{logs}");
        assert!(
            stopped_in.as_secs() < 10,
            "SIGTERM took {stopped_in:?}: was it ignored?"
        );
    }
}

impl Drop for DaemonSet {
    fn drop(&mut self) {
        let _ = docker(&["rm", "--force", "--volumes", &self.name]);
    }
}

/// Runs a program of `arch` on the host, outside any container.
fn assert_runs_on_the_host(arch: Arch) {
    use std::os::unix::fs::PermissionsExt;
    let program = std::env::temp_dir().join(format!(
        "binfmt-docker-test-{}-{}",
        std::process::id(),
        arch.qemu_cpu()
    ));
    let message = format!("{arch} on the host\n");
    std::fs::write(
        &program,
        elf_probe::hello(machine(arch), message.as_bytes(), 7),
    )
    .unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    let output = Command::new(&program).output();
    let _ = std::fs::remove_file(&program);
    let output = output.unwrap_or_else(|error| panic!("cannot run the {arch} program: {error}"));
    assert_eq!(String::from_utf8_lossy(&output.stdout), message);
    assert_eq!(
        output.status.code(),
        Some(7),
        "{arch} program's exit status"
    );
}
