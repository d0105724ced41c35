//! The failing build's session, replayed on this machine's Docker engine: a `docker buildx
//! build --platform linux/arm64` whose `RUN` runs an arm64 program dies with `exec
//! /bin/sh: exec format error`; `binfmt doctor` says why; the image's `--install
//! arm64` fixes it; `docker buildx inspect --bootstrap` lists linux/arm64, and the
//! same build passes, its `RUN` having run as aarch64.
//!
//! docs/failing-build.md shows this session with the outputs this test
//! saw: the test reads that walk-through and checks every output line it quotes
//! against what it sees now, step by step, so the page cannot drift from the truth.
//! The commands differ from the page's only where a test must: a tag of its own,
//! `--no-cache` and `--progress=plain` for the builds, the release binary as `sudo
//! binfmt`, the equivalent of `--privileged` this engine can grant (`privileged`), and
//! the mount made by the guard, as doctor's fix says.
//!
//! Like `docker`, it changes the machine's own binfmt_misc (an arm64 entry, for the
//! engine's BuildKit) under the machine-wide lock, refuses to run where foreign entries
//! are registered already, and removes what it added: the entry, binfmt_misc's mount
//! if it made it, the images and BuildKit's cache records of its builds. One thing
//! outlives it: BuildKit in Docker 20.10 adds the platforms it probes to its worker's
//! list for good (moby's builder-next worker `Platforms(noCache)`), so `buildx
//! inspect` keeps listing linux/arm64 until dockerd restarts.

use std::path::{Path, PathBuf};
use std::process::Command;

use binfmt_misc::{BinfmtMisc, DEFAULT_MOUNT};

use crate::docker::{
    BuildCache, Builder, GlobalEntries, Images, build_command, buildx, buildx_docker_config,
    docker, privileged, require_engine,
};
use crate::util::{
    DocSection, GlobalTable, Run, debian_package, dist, host_arch, line_with, report,
};

/// The failing build's error: BuildKit's `RUN /bin/sh -c ...` of an arm64 shell that the kernel
/// cannot run.
const EXEC_FORMAT_ERROR: &str = "exec /bin/sh: exec format error";

/// The failing build: an arm64 shell (Debian's static busybox) and a `RUN` in the shell
/// form, as in any Dockerfile `FROM` an arm64 image.
const FAILING_DOCKERFILE: &str = "FROM scratch\nCOPY sh /bin/sh\nRUN uname -m\n";

/// The session as docs/failing-build.md shows it: its walk-through.
pub(crate) const SESSION: DocSection = DocSection {
    file: "docs/failing-build.md",
    heading: "The session, replayed",
    language: "console",
    blocks: 1,
};

/// One step of the page's walk-through: the command shown after `$ `, and the output
/// lines quoted under it (`...` elides).
#[derive(Debug)]
struct Step {
    command: String,
    output: Vec<String>,
}

/// The walk-through of [`SESSION`] (its
/// first `console` block).
fn walk_through() -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    for line in SESSION.block().lines() {
        if let Some(command) = line.strip_prefix("$ ") {
            steps.push(Step {
                command: command.to_owned(),
                output: Vec::new(),
            });
        } else if !line.trim().is_empty() && line.trim() != "..." {
            steps
                .last_mut()
                .expect("docs/failing-build.md: the walk-through starts with a `$ ` command")
                .output
                .push(line.trim().to_owned());
        }
    }
    steps
}

/// Digits vary from run to run (times, build step numbers, sizes): compared without.
fn without_digits(line: &str) -> String {
    line.chars()
        .map(|c| if c.is_ascii_digit() { '0' } else { c })
        .collect()
}

/// Whether `parts` occur in `line` in this order (a quoted line with `...` in it).
fn contains_in_order(line: &str, parts: &[String]) -> bool {
    let mut rest = line;
    parts.iter().all(|part| match rest.find(part.as_str()) {
        Some(at) => {
            rest = &rest[at + part.len()..];
            true
        }
        None => false,
    })
}

/// Checks the page's walk-through step by step against what the test saw.
struct WalkThrough {
    steps: std::vec::IntoIter<Step>,
}

impl WalkThrough {
    /// The page's next step must be `command` (its start), and every line it quotes
    /// must be (digits aside, `...` for anything) in one of the lines the test saw for
    /// it.
    #[track_caller]
    fn next(&mut self, command: &str, seen: &Run) {
        let step = self.step(command);
        let seen_lines: Vec<String> = seen
            .stdout
            .lines()
            .chain(seen.stderr.lines())
            .map(without_digits)
            .collect();
        for quoted in &step.output {
            let parts: Vec<String> = without_digits(quoted)
                .split("...")
                .map(str::to_owned)
                .collect();
            assert!(
                seen_lines
                    .iter()
                    .any(|line| contains_in_order(line, &parts)),
                "docs/failing-build.md, the session, `$ {}` quotes\n  {quoted}\nwhich is not what \
                 the test saw:\n{seen}",
                step.command
            );
        }
    }

    /// The page's next step, which must be `command` (its start).
    #[track_caller]
    fn step(&mut self, command: &str) -> Step {
        let step = self.steps.next().unwrap_or_else(|| {
            panic!("docs/failing-build.md, the session: no step for `{command}`")
        });
        assert!(
            step.command.starts_with(command),
            "docs/failing-build.md, the session: the step `$ {}` is where the test runs `{command}`",
            step.command
        );
        step
    }

    #[track_caller]
    fn end(mut self) {
        if let Some(step) = self.steps.next() {
            panic!(
                "docs/failing-build.md, the session: the test has no step for `$ {}`",
                step.command
            );
        }
    }
}

/// A build context with the failing build's Dockerfile and an arm64 shell.
fn build_context() -> PathBuf {
    let busybox = debian_package("busybox-static:arm64").join("usr/bin/busybox");
    let context = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("failing-build-context");
    let _ = std::fs::remove_dir_all(&context);
    std::fs::create_dir_all(&context).expect("create the build context");
    std::fs::copy(&busybox, context.join("sh"))
        .unwrap_or_else(|error| panic!("cannot copy {}: {error}", busybox.display()));
    std::fs::write(context.join("Dockerfile"), FAILING_DOCKERFILE).expect("write the Dockerfile");
    context
}

/// The failing build, with no cache (the failed and the passing build must both run
/// their `RUN`) and plain progress (to see its output).
fn arm64_build(docker_config: &Path, tag: &str, context: &Path) -> Run {
    buildx(
        docker_config,
        &[
            "build",
            "--no-cache",
            "--progress=plain",
            "--platform",
            "linux/arm64",
            "--tag",
            tag,
            context.to_str().expect("UTF-8 path"),
        ],
    )
}

/// `sudo binfmt ARGS` on the host, with the release binary for this host.
fn binfmt_on_the_host(args: &[&str]) -> Run {
    let binary = dist().join(format!("binfmt-{}-linux-musl", host_arch().qemu_cpu()));
    Run::of({
        let mut command = Command::new(binary);
        command.args(args);
        command
    })
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
fn the_failing_buildx_build_passes_after_install_arm64() {
    if !cfg!(target_arch = "x86_64") {
        panic!("this test registers arm64 as the foreign architecture: run it on x86_64");
    }
    require_engine();
    let docker_config = buildx_docker_config();
    let context = build_context();
    dist();
    let mut shown = WalkThrough {
        steps: walk_through().into_iter(),
    };

    let lock = GlobalTable::exclusive();
    let cache = BuildCache::new(&docker_config);
    let mut images = Images::new();
    let image = images.build(
        &build_command(Builder::BuildKit, "linux/amd64"),
        &docker_config,
    );
    let privileged = privileged(&image, &["--version"]);
    let build_tag = format!("binfmt-test-failing-build-{}", std::process::id());
    images.claim(&build_tag);

    // The failing build's error, on a host with nothing mounted (these VMs: an automount that
    // never triggered); doctor names that, and the fix is to mount it.
    if BinfmtMisc::open(DEFAULT_MOUNT).is_ok() {
        report(
            "failing_build: binfmt_misc is mounted on this host already: the walk-through's first \
             steps (the build failing with nothing mounted, doctor, the mount) are NOT \
             replayed",
        );
        for command in ["docker buildx build", "sudo binfmt doctor", "sudo mount"] {
            shown.step(command);
        }
    } else {
        let failed = arm64_build(&docker_config, &build_tag, &context);
        assert_eq!(failed.code, Some(1), "{failed}");
        assert!(failed.stderr.contains(EXEC_FORMAT_ERROR), "{failed}");
        shown.next("docker buildx build", &failed);
        let doctor = binfmt_on_the_host(&["doctor"]);
        assert_eq!(doctor.code, Some(1), "{doctor}");
        assert!(
            doctor.stdout.contains(
                "\nPROBLEM [not-mounted] binfmt_misc is not mounted at /proc/sys/fs/binfmt_misc\n"
            ),
            "{doctor}"
        );
        assert!(
            BinfmtMisc::open(DEFAULT_MOUNT).is_err(),
            "doctor left binfmt_misc mounted"
        );
        shown.next("sudo binfmt doctor", &doctor);
        // The guard below mounts binfmt_misc as doctor's fix says.
        shown.step("sudo mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc");
    }
    // Mounted now (the guard refuses to go on where foreign entries are registered
    // already, and undoes its mount at the end), and still nothing for arm64: the
    // same error, and `check` says why.
    let global = GlobalEntries::open(&lock);
    let failed = arm64_build(&docker_config, &build_tag, &context);
    assert_eq!(failed.code, Some(1), "{failed}");
    assert!(failed.stderr.contains(EXEC_FORMAT_ERROR), "{failed}");
    // What the page says of this state: doctor finds nothing wrong (nothing is),
    // and its runs: line has no linux/arm64; check names the missing entry.
    let doctor = binfmt_on_the_host(&["doctor"]).success();
    assert!(
        doctor
            .stdout
            .ends_with("binfmt doctor: no problems found\n"),
        "{doctor}"
    );
    let runs = line_with(&doctor.stdout, "runs: ");
    assert!(!runs.contains("linux/arm64"), "{doctor}");
    let check = binfmt_on_the_host(&["check", "linux/arm64"]).exit(1);
    shown.next("sudo binfmt check linux/arm64", &check);
    let listed = |inspect: &Run| {
        inspect
            .stdout
            .lines()
            .find_map(|line| line.strip_prefix("Platforms:"))
            .is_some_and(|platforms| platforms.split(',').any(|p| p.trim() == "linux/arm64"))
    };
    let inspect = buildx(&docker_config, &["inspect", "--bootstrap"]).success();
    let listed_before = listed(&inspect);
    if listed_before {
        report(&format!(
            "failing_build: buildx inspect lists linux/arm64 BEFORE --install, while arm64 builds fail: \
             the engine's BuildKit (Docker 20.10) keeps every platform it once found until \
             dockerd restarts, so the listing after --install proves nothing on this run; \
             the build does\n{}",
            inspect.stdout
        ));
    }

    // The fix: the image's --install, then what buildx reports, then the same build.
    let install = {
        let mut args: Vec<&str> = vec!["run", "--rm"];
        args.extend(privileged.iter().map(String::as_str));
        args.extend([image.as_str(), "--install", "arm64"]);
        docker(&args).success()
    };
    assert!(
        install.stderr.contains("installing: arm64 OK\n"),
        "{install}"
    );
    shown.next("docker run --rm --privileged", &install);
    let inspect = buildx(&docker_config, &["inspect", "--bootstrap"]).success();
    assert!(listed(&inspect), "{inspect}");
    shown.next("docker buildx inspect --bootstrap", &inspect);
    let passed = arm64_build(&docker_config, &build_tag, &context).success();
    assert!(
        passed
            .stderr
            .lines()
            .any(|line| line.starts_with('#') && line.ends_with(" aarch64")),
        "the RUN step did not print aarch64:\n{passed}"
    );
    shown.next("docker buildx build", &passed);
    shown.end();

    // The page's warning: with the entry gone, Docker 20.10's BuildKit still lists
    // linux/arm64 (its worker only ever adds platforms).
    drop(global);
    let inspect = buildx(&docker_config, &["inspect", "--bootstrap"]).success();
    if inspect.stdout.contains("BuildKit version: v0.8") {
        assert!(
            listed(&inspect),
            "docs/failing-build.md says BuildKit v0.8 keeps listing linux/arm64 after its entry is \
             gone:\n{inspect}"
        );
    }
    drop(images);
    drop(cache);
}
