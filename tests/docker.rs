//! The image, for real, on this machine's Docker engine: built from `dist/` with the
//! repository's `Dockerfile` by docs/building.md's own build commands (BuildKit through
//! buildx, and the classic builder, for linux/amd64 and linux/arm64), then used the
//! way docker/setup-qemu-action uses it.
//!
//! buildx is what `.ci/run` provides (`tools/docker-buildx`: Debian trixie's
//! docker-buildx in a private Docker config directory); with its default driver,
//! docker, it builds with the engine's own BuildKit (v0.8 in Docker 20.10).
//!
//! This is one of the two tests that change the machine's own (global) binfmt_misc
//! table (with `failing_build`): the engine can run an arm64 image only through an arm64
//! emulator registered there. It registers foreign architectures only, holds the
//! cross-process lock that keeps namespace tests from comparing the global table
//! meanwhile (and other checkouts' Docker tests from sharing the documented image tags
//! and BuildKit's cache), and guards remove exactly what it added (entries, images,
//! tags, BuildKit cache records), and unmount binfmt_misc only if it mounted it, on
//! success and on failure alike.
//!
//! Why it may mount binfmt_misc on the host: a container never sees the host's mount,
//! and when the host has none its registrations die with it (facts file §1). binfmt
//! then refuses to register (this test checks that first, where the host has nothing
//! mounted), and the fix it prints is to mount binfmt_misc on the host; so the test
//! does exactly that. (The other fix, `--pid=host`, needs ptrace access to the host's
//! pid 1, which this test cannot count on; `persist` tests it with namespaces.)
//!
//! Slow (`util::slow_test!`): it runs with `BINFMT_SLOW_TESTS=1`, on x86_64. Without a
//! Docker engine it fails and says so, unless `BINFMT_SKIP_DOCKER=1` says there is
//! none (CI sets it where no engine runs): then it is reported as ignored, with that
//! reason.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use binfmt_misc::{BinfmtMisc, DEFAULT_MOUNT, Table};
use qemu_catalog::Arch;

use crate::image;
use crate::kubernetes;
use crate::util::{
    DocSection, GlobalTable, Run, binfmt_cache, dist, foreign_arches, machine, report,
    run_doc_script, workspace_root,
};

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

/// Set where no Docker engine runs: the tests that need one are then ignored, with
/// that reason (`crates/binfmt/build.rs` turns it into `cfg(no_docker)`).
const SKIP_ENV: &str = "BINFMT_SKIP_DOCKER";

/// `docker ARGS` (in `util`, for `image` too; here for the other Docker tests).
pub(crate) use crate::util::docker;

/// Checks that a Docker engine answers: without one the calling test fails, saying
/// so. (Where [`SKIP_ENV`] says there is none, the tests that call this are ignored
/// and do not run.)
pub(crate) fn require_engine() {
    let run = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output();
    let reason = match run {
        Ok(run) if run.status.success() => {
            report(&format!(
                "docker: engine {}",
                String::from_utf8_lossy(&run.stdout).trim()
            ));
            return;
        }
        Ok(run) => format!(
            "no Docker engine answers: {}",
            String::from_utf8_lossy(&run.stderr).trim()
        ),
        Err(error) => format!("cannot run the docker client: {error}"),
    };
    panic!(
        "{reason}. This test needs a Docker engine: start one, or set {SKIP_ENV}=1 (and \
         rebuild the tests) to have the tests that need one reported as ignored"
    )
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

/// A builder of the documented build commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Builder {
    /// `DOCKER_BUILDKIT=0 docker build`.
    Classic,
    /// `docker buildx build`.
    BuildKit,
}

/// One build command of [`BUILD_COMMANDS`], as written there.
#[derive(Debug)]
pub(crate) struct BuildCommand {
    /// The line, run as it is (`sh -c`, in the workspace).
    pub line: String,
    pub builder: Builder,
    /// `--platform`: one (`linux/arm64`), or several for `--push`.
    pub platform: String,
    /// `-t`.
    pub tag: String,
    /// `--push`: needs a registry, so the tests cannot run it.
    pub push: bool,
}

/// The container image's build commands (docs/building.md), in its first `sh` block.
pub(crate) const BUILD_COMMANDS: DocSection = DocSection {
    file: "docs/building.md",
    heading: "The container image",
    language: "sh",
    blocks: 1,
};

/// The build commands of [`BUILD_COMMANDS`]: the tests run exactly these lines, so the
/// page cannot drift from what works.
pub(crate) fn build_commands() -> Vec<BuildCommand> {
    BUILD_COMMANDS
        .block()
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let builder = if line.starts_with("docker buildx build ") {
                Builder::BuildKit
            } else if line.starts_with("DOCKER_BUILDKIT=0 docker build ") {
                Builder::Classic
            } else {
                panic!(
                    "docs/building.md, \"The container image\": {line:?} is neither `docker buildx \
                     build` nor `DOCKER_BUILDKIT=0 docker build`"
                )
            };
            let words: Vec<&str> = line.split_whitespace().collect();
            let value = |flag: &str| {
                words
                    .windows(2)
                    .find(|pair| pair[0] == flag)
                    .map(|pair| pair[1].to_owned())
                    .unwrap_or_else(|| panic!("docs/building.md: {line:?} has no {flag}"))
            };
            assert_eq!(
                words.last(),
                Some(&"."),
                "docs/building.md: {line:?} builds the workspace"
            );
            BuildCommand {
                line: line.to_owned(),
                builder,
                platform: value("--platform"),
                tag: value("-t"),
                push: words.contains(&"--push"),
            }
        })
        .collect()
}

/// The build command of [`BUILD_COMMANDS`] for `builder` and `platform`.
pub(crate) fn build_command(builder: Builder, platform: &str) -> BuildCommand {
    build_commands()
        .into_iter()
        .find(|command| command.builder == builder && command.platform == platform && !command.push)
        .unwrap_or_else(|| {
            panic!("docs/building.md, \"The container image\": no {builder:?} build for {platform}")
        })
}

/// Images the tests built, restored on drop: a tag that named an image before gets it
/// back, a new tag is removed, and so is every untagged image that appeared meanwhile
/// (the classic builder's stage images, and images a later build took the tag from).
pub(crate) struct Images {
    before: BTreeSet<String>,
    tags: BTreeMap<String, Option<String>>,
}

impl Images {
    /// Every image, intermediate ones included, as `id repository:tag`.
    fn all() -> Vec<(String, String)> {
        docker(&[
            "images",
            "--all",
            "--no-trunc",
            "--format",
            "{{.ID}} {{.Repository}}:{{.Tag}}",
        ])
        .stdout
        .lines()
        .filter_map(|line| line.split_once(' '))
        .map(|(id, name)| (id.to_owned(), name.to_owned()))
        .collect()
    }

    pub(crate) fn new() -> Images {
        Images {
            before: Images::all().into_iter().map(|(id, _)| id).collect(),
            tags: BTreeMap::new(),
        }
    }

    /// Takes `tag` over for the test: whatever it names now is given it back on drop.
    pub(crate) fn claim(&mut self, tag: &str) {
        if !self.tags.contains_key(tag) {
            let previous = docker(&["image", "inspect", "--format", "{{.Id}}", tag]);
            let previous = (previous.code == Some(0)).then(|| previous.stdout.trim().to_owned());
            self.tags.insert(tag.to_owned(), previous);
        }
    }

    /// Runs one of the documented build commands as it is written, in the workspace, with
    /// buildx from `docker_config`, and checks the image it made (see [`check_image`]).
    pub(crate) fn build(&mut self, command: &BuildCommand, docker_config: &Path) -> String {
        assert!(!command.push, "{}: cannot push from a test", command.line);
        self.claim(&command.tag);
        let start = Instant::now();
        let run = Run::of({
            let mut sh = Command::new("sh");
            sh.args(["-c", &command.line])
                .current_dir(workspace_root())
                .env("DOCKER_CONFIG", docker_config);
            sh
        });
        assert_eq!(run.code, Some(0), "{}:\n{run}", command.line);
        report(&format!(
            "docker: {:.1} s: {}",
            start.elapsed().as_secs_f64(),
            command.line
        ));
        check_image(&command.tag, &command.platform);
        command.tag.clone()
    }
}

impl Drop for Images {
    fn drop(&mut self) {
        for (tag, previous) in &self.tags {
            let _ = match previous {
                Some(id) => docker(&["tag", id, tag]),
                None => docker(&["rmi", tag]),
            };
        }
        // Removing an image removes its untagged parents too, and a parent cannot go
        // before its children: repeat until nothing more goes.
        loop {
            let left: Vec<String> = Images::all()
                .into_iter()
                .filter(|(id, name)| name == "<none>:<none>" && !self.before.contains(id))
                .map(|(id, _)| id)
                .collect();
            let removed = left
                .iter()
                .filter(|id| docker(&["rmi", id]).code == Some(0))
                .count();
            if removed == 0 {
                if !left.is_empty() {
                    report(&format!("docker test: cannot remove images {left:?}"));
                }
                break;
            }
        }
    }
}

/// Checks an image the documented commands built: its platform, that its
/// `/usr/bin/binfmt` is one of `dist/`'s binaries and one for that platform's machine
/// (so TARGETARCH chose right), and reports its size.
fn check_image(tag: &str, platform: &str) {
    let inspect = docker(&[
        "image",
        "inspect",
        "--format",
        "{{.Os}}/{{.Architecture}} {{.Size}}",
        tag,
    ])
    .success();
    let (built_platform, size) = inspect
        .stdout
        .trim()
        .split_once(' ')
        .expect("inspect output");
    assert_eq!(built_platform, platform, "{tag}: the image's platform");
    let size: u64 = size.parse().expect("image size");
    report(&format!(
        "size: image {tag} ({platform}) {:.2} MB ({size} bytes; goal 10 MB: {})",
        size as f64 / 1e6,
        if size <= 10_000_000 { "met" } else { "missed" }
    ));

    let container = docker(&["create", tag]).success().stdout.trim().to_owned();
    let copy = std::env::temp_dir().join(format!("binfmt-docker-test-{}", std::process::id()));
    let copied = docker(&[
        "cp",
        &format!("{container}:/usr/bin/binfmt"),
        copy.to_str().expect("UTF-8 path"),
    ]);
    let _ = docker(&["rm", "--volumes", &container]);
    copied.success();
    let binary = std::fs::read(&copy).expect("the copied binary");
    let _ = std::fs::remove_file(&copy);
    let arch = Arch::parse(platform).expect("a platform binfmt knows");
    let probe = tiny_elf::exit_with(machine(arch), 0);
    // EI_CLASS, EI_DATA and e_machine: 64-bit, byte order, the CPU.
    let identity = |elf: &[u8]| (elf[4..6].to_vec(), elf[18..20].to_vec());
    assert_eq!(
        identity(&binary),
        identity(&probe),
        "{tag}: /usr/bin/binfmt is not a {platform} program"
    );
    let shipped = std::fs::read_dir(dist())
        .expect("dist/")
        .filter_map(Result::ok)
        .any(|file| std::fs::read(file.path()).is_ok_and(|bytes| bytes == binary));
    assert!(
        shipped,
        "{tag}: /usr/bin/binfmt is none of dist/'s binaries"
    );
    image::check_labels(tag);
    image::check_sboms(tag, &binary);
    image::check_man_pages_and_completions(tag);
}

/// buildx, as `.ci/run` provides it (`tools/docker-buildx`): the private Docker config
/// directory whose `cli-plugins/` holds it. Missing, the test fails and says how to
/// provide it.
pub(crate) fn buildx_docker_config() -> PathBuf {
    let config = binfmt_cache().join("docker-config");
    let version = Command::new("docker")
        .args(["buildx", "version"])
        .env("DOCKER_CONFIG", &config)
        .output();
    match version {
        Ok(output) if output.status.success() => {
            report(&format!(
                "docker: {} (DOCKER_CONFIG={})",
                String::from_utf8_lossy(&output.stdout).trim(),
                config.display()
            ));
            config
        }
        _ => panic!(
            "buildx is not in {}: run tools/docker-buildx, which puts Debian trixie's \
             docker-buildx there (.ci/run does)",
            config.join("cli-plugins").display()
        ),
    }
}

/// `docker buildx ARGS` with buildx from `docker_config`.
pub(crate) fn buildx(docker_config: &Path, args: &[&str]) -> Run {
    let mut command = Command::new("docker");
    command
        .arg("buildx")
        .args(args)
        .env("DOCKER_CONFIG", docker_config);
    Run::of(command)
}

/// BuildKit's cache records the tests' builds added, pruned on drop: the engine's
/// BuildKit keeps them (and their copies of the build context) otherwise.
pub(crate) struct BuildCache {
    docker_config: PathBuf,
    before: BTreeSet<String>,
}

impl BuildCache {
    fn records(docker_config: &Path) -> BTreeSet<String> {
        buildx(docker_config, &["du", "--verbose"])
            .success()
            .stdout
            .lines()
            .filter_map(|line| line.strip_prefix("ID:"))
            .map(|id| id.trim().to_owned())
            .collect()
    }

    pub(crate) fn new(docker_config: &Path) -> BuildCache {
        BuildCache {
            docker_config: docker_config.to_owned(),
            before: BuildCache::records(docker_config),
        }
    }

    /// The records added since [`BuildCache::new`].
    fn added(&self) -> Vec<String> {
        BuildCache::records(&self.docker_config)
            .difference(&self.before)
            .cloned()
            .collect()
    }
}

impl Drop for BuildCache {
    fn drop(&mut self) {
        // One record per prune (buildx takes one value per filter key); a record that
        // others still use goes in a later round, after them.
        for _round in 0..3 {
            let added = self.added();
            if added.is_empty() {
                return;
            }
            for id in &added {
                let filter = format!("id={id}");
                let _ = buildx(
                    &self.docker_config,
                    &["prune", "--force", "--filter", &filter],
                );
            }
        }
        let left = self.added();
        if !left.is_empty() {
            report(&format!(
                "docker test: BuildKit cache records left behind: {left:?}"
            ));
        }
    }
}

/// The global table for the test's duration: mounted by the test if it was not, the
/// entries it registers removed at the end, whatever happens. It borrows the lock, so
/// that the test holds it until its other guards (images, BuildKit's cache) are done
/// too: a test declares the lock first, and it drops last.
pub(crate) struct GlobalEntries<'lock> {
    mounted_here: bool,
    _lock: &'lock GlobalTable,
}

impl GlobalEntries<'_> {
    pub(crate) fn open(lock: &GlobalTable) -> GlobalEntries<'_> {
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

impl Drop for GlobalEntries<'_> {
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
#[cfg_attr(
    not(slow_tests),
    ignore = "slow: set BINFMT_SLOW_TESTS=1 to run it (.ci/run does)"
)]
#[cfg_attr(
    all(slow_tests, not(all(target_arch = "x86_64", not(no_docker)))),
    ignore = "needs an x86_64 machine with a Docker engine (it registers arm64 in the machine's table for the engine); here BINFMT_SKIP_DOCKER is set or the machine is not x86_64"
)]
fn the_image_does_what_setup_qemu_action_asks_on_a_real_engine() {
    if !cfg!(target_arch = "x86_64") {
        panic!("this test registers arm64 as the foreign architecture: run it on x86_64");
    }
    require_engine();
    let docker_config = buildx_docker_config();
    dist();
    // From here on the test holds the machine-wide lock: the tags the documented
    // commands build (binfmt:amd64, ...) and BuildKit's cache are shared by every
    // checkout on this machine, and so is the table.
    let lock = GlobalTable::exclusive();
    let _cache = BuildCache::new(&docker_config);
    let mut images = Images::new();
    // The documented build commands, each as written: the classic builder's first, so
    // that the images the rest of the test runs are BuildKit's.
    let mut commands: Vec<BuildCommand> = build_commands();
    commands.sort_by_key(|command| command.builder);
    for command in commands.iter().filter(|command| command.push) {
        report(&format!(
            "docker: not run here (no registry; the docker driver builds one platform at a \
             time): {}",
            command.line
        ));
    }
    let mut built = BTreeSet::new();
    for command in commands.iter().filter(|command| !command.push) {
        images.build(command, &docker_config);
        built.insert((command.builder, command.platform.clone()));
    }
    for builder in [Builder::Classic, Builder::BuildKit] {
        // tonistiigi/binfmt's five platforms, each built on its own as docs/building.md says.
        for platform in [
            "linux/amd64",
            "linux/arm64",
            "linux/ppc64le",
            "linux/s390x",
            "linux/riscv64",
        ] {
            assert!(
                built.contains(&(builder, platform.to_owned())),
                "docs/building.md, \"The container image\": no {builder:?} build for {platform}"
            );
        }
    }
    let image = build_command(Builder::BuildKit, "linux/amd64").tag;
    let arm64_image = build_command(Builder::BuildKit, "linux/arm64").tag;

    // The checks of an image (the second block of docs/verifying-a-release.md; the
    // first is tests/dist.rs's), as written, on the image the build commands built.
    let section = crate::dist::VERIFYING_A_RELEASE;
    let verify = section.blocks();
    let verify = verify
        .get(1)
        .expect("docs/verifying-a-release.md: the image's checks");
    assert!(verify.contains(&image), "{verify}");
    let run = run_doc_script(&section, verify);
    assert_eq!(run.code, Some(0), "{}:\n{run}", section.file);
    assert!(
        run.stdout.contains("org.opencontainers.image.revision"),
        "{run}"
    );
    // `binfmt emulators` in the image lists the pinned QEMU version.
    let pins = qemu_pins::Manifest::load(&workspace_root().join(qemu_pins::MANIFEST_PATH))
        .expect("qemu-blobs/pins.toml");
    let upstream = pins.source.version.clone();
    assert!(run.stdout.contains("qemu-aarch64"), "{run}");
    assert!(run.stdout.contains(upstream.as_str()), "{upstream}: {run}");
    let privileged = privileged(&image, &["--version"]);
    let run_image = |args: &[&str]| {
        let mut all: Vec<&str> = vec!["run", "--rm"];
        all.extend(privileged.iter().map(String::as_str));
        all.push(&image);
        all.extend_from_slice(args);
        docker(&all)
    };

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
    let global = GlobalEntries::open(&lock);

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
        tiny_elf::hello(machine(arch), message.as_bytes(), 7),
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
