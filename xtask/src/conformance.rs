//! `cargo xtask conformance [ARCH...]`: real Debian userlands under binfmt's own
//! emulators, the check a re-pin (`cargo xtask pin`) must pass before it lands.
//!
//! The worst regressions of emulators are the ones only a real userland shows:
//! tonistiigi/binfmt's QEMU 9.2 pin made `ldconfig` (libc-bin's trigger) and node
//! segfault on arm64. binfmt's own probes are a few hundred bytes each and cannot see
//! that. So, for each foreign architecture, this builds a minimal Debian root
//! filesystem with mmdebstrap, in which dpkg, every maintainer script and the ldconfig
//! trigger run emulated, then runs python3 (importing C extension modules: hashlib,
//! sqlite3, ssl, zlib), perl (POSIX) and ldconfig in it, and prints a matrix of
//! seconds per architecture and step.
//!
//! **What registers the emulators.** `dist/binfmt-<host>-linux-musl`, the static
//! binary `cargo xtask dist` builds from the pins (built first, incrementally), with
//! `--install ARCHES` in a private binfmt_misc instance. So what is checked is exactly
//! what ships.
//!
//! **Where.** Everything runs in a user and mount namespace of its own that maps every
//! uid and gid to itself ([`sandbox`], [`Ids::All`]), with a private binfmt_misc
//! instance at `/proc/sys/fs/binfmt_misc`; the machine's own table is never written,
//! and is compared before and after. Every id is mapped because dpkg hands files to
//! the system users the userland creates (`_apt`, ...), which a namespace mapping only
//! root refuses; only root may map them, so this needs root (CI runs as root). Inside,
//! the namespace's root is root as far as mmdebstrap can tell, so `--mode=unshare`
//! does not create a user namespace of its own (it does when run by anyone else, and
//! then needs `/etc/subuid` ranges): it only adds mount, pid, UTS and IPC namespaces
//! and keeps using the private instance, which it reads (flag `F`, `qemu-<cpu>`) to
//! know that no emulator needs copying into the root. A kernel older than 6.7 has no
//! private instances: the run stops before anything is registered, rather than
//! falling back to the machine's table.
//!
//! **The userland.** The suite is trixie by default, the suite the pinned QEMU comes
//! from, so a re-pin is checked against the userland its emulators were built with
//! (`--suite` for others). The variant is mmdebstrap's `essential`, the smallest one
//! that installs with dpkg inside the root (`extract` runs no maintainer script):
//! the Essential packages (libc6, libc-bin with ldconfig, perl-base, dpkg, ...) plus
//! `--include=python3`, installed from outside by apt into the chroot. perl is
//! perl-base, Essential. The packages are kept between runs per suite and architecture
//! under `~/.cache/binfmt/conformance/` (mmdebstrap's `sync-in`/`sync-out` hooks);
//! emulated dpkg, not downloading, takes most of the time.
//!
//! Architectures are built `--jobs` at a time (default: one per core), since an
//! emulated dpkg keeps one core busy; each step's seconds are its own wall time.
//!
//! **Steps and verdicts.** `mmdebstrap` passes when mmdebstrap succeeds, its log shows
//! libc-bin's ldconfig trigger processed, and `dpkg --audit` in the root finds nothing
//! half-installed. `python3` and `perl` pass when each prints the same `uname -m`, one
//! of the architecture's names; `ldconfig` when it rebuilds the cache and `ldconfig
//! -p` lists libc.so.6. An architecture is UNAVAILABLE, not passed, when it cannot be
//! tested here: Debian has no port of it, the suite's `Release` does not list it, or
//! the mirror answers 404 for one of its packages (some mirrors do not carry every
//! architecture). Exit status: 0 every step of every requested architecture passed; 1
//! a step failed (or the run could not be done); 2 invalid arguments; 3 nothing
//! failed, but an architecture could not be tested, so a re-pin gate never passes
//! silently.

use std::fmt::Write as _;
use std::fs;
use std::io::Read as _;
use std::num::NonZeroUsize;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

// An architecture, in the names the run needs: its row of the one table (`oci`, which
// `binfmt --install` takes; `qemu_cpu`, as in `qemu-blobs/pins.toml`; `debian`, `None`
// where Debian has no port; `uname`, what `uname -m` starts with under QEMU).
use arch_table::Arch as Target;
use qemu_pins::{MANIFEST_PATH, Manifest};

use anyhow::{Context, Result, anyhow};

use crate::mirror::Mirror;
use crate::sandbox::{self, Ids};
use crate::workspace::{target_dir, workspace_root};

/// The exit status's meaning, for `--help`.
const EXIT_STATUS: &str = "\
Exit status: 0 every step of every requested architecture passed; 1 a step failed, or \
the run could not be done; 2 invalid arguments; 3 nothing failed, but an architecture \
could not be tested here (UNAVAILABLE: no Debian port, or the mirror lacks its \
packages).";

/// Arguments of `cargo xtask conformance`.
#[derive(clap::Args)]
#[command(after_help = EXIT_STATUS)]
pub struct Args {
    /// Architectures to check, as Debian, OCI or QEMU names (arm64, armhf, riscv64,
    /// ppc64el, ...); default: every foreign one this machine's binfmt carries.
    #[arg(value_name = "ARCH", value_parser = parse_target)]
    arches: Vec<&'static Target>,
    /// The Debian suite of the userlands.
    #[arg(long, default_value = "trixie", value_parser = parse_suite)]
    suite: String,
    /// Keep each root filesystem (target/conformance/<arch>/rootfs; root owns its files).
    #[arg(long)]
    keep: bool,
    /// How many architectures to build at once (emulated dpkg keeps one core busy);
    /// default: this machine's cores.
    #[arg(long, value_name = "N", default_value_t = default_jobs())]
    jobs: NonZeroUsize,
}

/// One job per core.
fn default_jobs() -> NonZeroUsize {
    std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)
}

/// Parses an architecture argument: a Debian, OCI or QEMU name, `linux/` optional
/// (`arch_table::find`).
fn parse_target(name: &str) -> Result<&'static Target, String> {
    let target = arch_table::find(name).ok_or_else(|| {
        let known: Vec<&str> = arch_table::ARCHES.iter().filter_map(|t| t.debian).collect();
        format!("unknown architecture {name:?}; known: {}", known.join(", "))
    })?;
    if host_native_cpus().contains(&target.qemu_cpu) {
        return Err(format!(
            "{name} is this machine's own architecture: it runs natively, there is no \
             emulator to check"
        ));
    }
    Ok(target)
}

/// A suite name, as it appears in the mirror's `dists/` (no path, no spaces).
fn parse_suite(suite: &str) -> Result<String, String> {
    if !suite.is_empty()
        && suite
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    {
        Ok(suite.to_owned())
    } else {
        Err(format!(
            "{suite:?} is not a Debian suite name (trixie, bookworm, ...)"
        ))
    }
}

/// The QEMU cpus this machine runs natively.
fn host_native_cpus() -> &'static [&'static str] {
    arch_table::this_host().map_or(&[], |host| host.native)
}

/// Set for the namespaced child: the binfmt binary that registers the emulators.
const BINARY_ENV: &str = "BINFMT_CONFORMANCE_BINARY";
/// Set for the namespaced child: the scratch directory (one directory per arch).
const SCRATCH_ENV: &str = "BINFMT_CONFORMANCE_SCRATCH";

/// Runs `cargo xtask conformance`.
pub fn run(args: &Args) -> Result<ExitCode> {
    if sandbox::is_inside() {
        sandbox::enter()?;
        return in_namespace(args);
    }
    // Everything this needs, checked before anything is built or written.
    if !rustix::process::geteuid().is_root() {
        return Err(anyhow!(
            "cargo xtask conformance needs root: dpkg in the userland hands files to \
                    system users, and only root can map their ids into the user namespace \
                    that holds the private binfmt_misc instance (the machine's own table is \
                    never touched); run it as root (CI does)"
        ));
    }
    for tool in ["mmdebstrap", "arch-test", "chroot", "unshare"] {
        if find_in_path(tool).is_none() {
            return Err(anyhow!(
                "{tool} is not installed: `apt-get install mmdebstrap arch-test` (Debian 12 \
                 or newer; mmdebstrap brings apt, arch-test lets it check the emulation)"
            ));
        }
    }
    let mirror = Mirror::from_env()?;
    let arch = crate::fetch::build_host();
    let artifact = crate::dist::Artifact::of(&arch)
        .with_context(|| format!("binfmt has no release binary for {arch}"))?;
    eprintln!("conformance: building the release binary for {arch} (cargo xtask dist)");
    crate::dist::run(&crate::dist::Args::only(&arch))?;
    let binary = crate::dist::dist_dir().join(artifact.file_name());

    let scratch = target_dir().join("conformance");
    remove_tree(&scratch)?;
    fs::create_dir_all(&scratch).with_context(|| format!("cannot create {}", scratch.display()))?;
    let _window = sandbox::GlobalTableWindow::open()?;
    let global_before = sandbox::global_table()?;
    eprintln!(
        "conformance: Debian {} from {} ({}), in a private binfmt_misc instance",
        args.suite,
        mirror.base(),
        mirror.origin()
    );
    let mut child_args = vec![
        "conformance".to_owned(),
        "--suite".to_owned(),
        args.suite.clone(),
    ];
    if args.keep {
        child_args.push("--keep".to_owned());
    }
    child_args.extend(["--jobs".to_owned(), args.jobs.to_string()]);
    child_args.extend(args.arches.iter().map(|t| t.oci.to_owned()));
    let output = sandbox::run_inside(
        &sandbox::os_args(child_args),
        &[
            (BINARY_ENV, binary.as_os_str()),
            (SCRATCH_ENV, scratch.as_os_str()),
        ],
        Ids::All,
    )?;
    print!("{}", String::from_utf8_lossy(&output.stdout));
    if sandbox::global_table()? != global_before {
        return Err(anyhow!(
            "the machine's own binfmt_misc table changed during the conformance run"
        ));
    }
    if !args.keep {
        // Outside the namespace nothing is mounted in the roots any more.
        for entry in
            fs::read_dir(&scratch).with_context(|| format!("cannot read {}", scratch.display()))?
        {
            let rootfs = entry
                .with_context(|| format!("cannot read {}", scratch.display()))?
                .path()
                .join("rootfs");
            remove_tree(&rootfs)?;
        }
    }
    Ok(match output.status.code() {
        Some(code @ (0 | 1 | 3)) => ExitCode::from(code as u8),
        _ => {
            eprintln!("xtask: conformance run ended with {}", output.status);
            ExitCode::FAILURE
        }
    })
}

/// Removes `dir` and everything below it; a missing one is fine.
fn remove_tree(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(anyhow!("cannot remove {}: {e}", dir.display()))
        }
        _ => Ok(()),
    }
}

/// The first `name` in `$PATH`.
fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// How one step ended.
#[derive(Debug)]
enum Outcome {
    Passed(Duration),
    Failed(String),
    Unavailable(String),
    /// An earlier step of the architecture did not pass.
    NotRun,
}

/// One architecture's row of the matrix.
struct Row {
    target: &'static Target,
    /// `uname -m` in the userland, as python3 printed it.
    machine: Option<String>,
    steps: Vec<Outcome>,
}

/// The steps, in order, as the matrix's columns.
const STEPS: [&str; 4] = ["mmdebstrap", "python3", "perl", "ldconfig"];

/// How long one step may take before it is killed: mmdebstrap installs ~70 packages
/// with an emulated dpkg; the others are single programs.
const MMDEBSTRAP_TIMEOUT: Duration = Duration::from_secs(30 * 60);
const STEP_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// The run inside the namespace: registers, builds and runs each userland, prints the
/// matrix on stdout.
fn in_namespace(args: &Args) -> Result<ExitCode> {
    let binary = PathBuf::from(
        std::env::var_os(BINARY_ENV).context("BINFMT_CONFORMANCE_BINARY is not set")?,
    );
    let scratch = PathBuf::from(
        std::env::var_os(SCRATCH_ENV).context("BINFMT_CONFORMANCE_SCRATCH is not set")?,
    );
    let manifest = Manifest::load(&workspace_root().join(MANIFEST_PATH))?;
    let host = manifest.host(std::env::consts::ARCH).with_context(|| {
        format!(
            "{MANIFEST_PATH} pins nothing for {} hosts",
            std::env::consts::ARCH
        )
    })?;
    let mut targets: Vec<&'static Target> = if args.arches.is_empty() {
        host.embedded()
            .iter()
            .filter_map(|emulator| arch_table::by_qemu_cpu(&emulator.cpu))
            .collect()
    } else {
        args.arches.clone()
    };
    let mut seen = Vec::new();
    targets.retain(|t| {
        let new = !seen.contains(&t.oci);
        seen.push(t.oci);
        new
    });
    let mirror = Mirror::from_env()?;
    let ports = suite_architectures(&mirror, &args.suite)?;

    let mut rows: Vec<Row> = Vec::new();
    let mut to_register = Vec::new();
    for &target in &targets {
        let mut row = Row {
            target,
            machine: None,
            steps: Vec::new(),
        };
        match target.debian {
            None => row.steps.push(Outcome::Unavailable(format!(
                "Debian has no {} port",
                target.oci
            ))),
            Some(debian) if !ports.iter().any(|p| p == debian) => {
                row.steps.push(Outcome::Unavailable(format!(
                    "{} has no {debian} port (its Release lists {})",
                    args.suite,
                    ports.join(" ")
                )))
            }
            Some(_) => to_register.push(target.oci),
        }
        rows.push(row);
    }

    let _table = sandbox::fresh_instance()?;
    if !to_register.is_empty() {
        register(
            &binary,
            &scratch.join("interpreters"),
            &to_register.join(","),
        )?;
    }
    let cache_root = cache_dir()?;
    // Emulated dpkg keeps one core busy: `--jobs` architectures at once, each from a
    // shared queue.
    let queue = Mutex::new(rows.iter_mut().filter(|row| row.steps.is_empty()));
    let next = || queue.lock().map_or(None, |mut rows| rows.next());
    std::thread::scope(|scope| -> Result<()> {
        let workers: Vec<_> = (0..args.jobs.get())
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    while let Some(row) = next() {
                        let debian = row.target.debian.context("unreachable: no Debian port")?;
                        let dir = scratch.join(debian);
                        fs::create_dir_all(&dir)
                            .with_context(|| format!("cannot create {}", dir.display()))?;
                        let cache = cache_root.join(format!("{}-{debian}", args.suite));
                        fs::create_dir_all(&cache)
                            .with_context(|| format!("cannot create {}", cache.display()))?;
                        check_userland(row, &args.suite, &mirror, &dir, &cache)?;
                    }
                    Ok(())
                })
            })
            .collect();
        for worker in workers {
            worker
                .join()
                .map_err(|_| anyhow!("a conformance worker thread panicked"))??;
        }
        Ok(())
    })?;

    print!(
        "{}",
        matrix(
            manifest.source.upstream_version(),
            &args.suite,
            &rows,
            &scratch
        )
    );
    Ok(ExitCode::from(exit_status(&rows)))
}

/// 1 if a step failed, else 3 if an architecture was not tested, else 0.
fn exit_status(rows: &[Row]) -> u8 {
    let any = |wanted: fn(&Outcome) -> bool| rows.iter().any(|row| row.steps.iter().any(wanted));
    if any(|s| matches!(s, Outcome::Failed(_))) {
        1
    } else if any(|s| matches!(s, Outcome::Unavailable(_))) {
        3
    } else {
        0
    }
}

/// The architectures `dists/<suite>/Release` on the mirror lists.
fn suite_architectures(mirror: &Mirror, suite: &str) -> Result<Vec<String>> {
    let url = mirror.url(&format!("dists/{suite}/Release"));
    let mut text = String::new();
    crate::http::get(&url)
        .with_context(|| format!("cannot read the Release file of suite {suite}"))?
        .reader
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read {url}"))?;
    text.lines()
        .find_map(|line| line.strip_prefix("Architectures:"))
        .map(|list| list.split_whitespace().map(str::to_owned).collect())
        .with_context(|| format!("{url} has no Architectures line"))
}

/// `binfmt --install LIST` into the private instance at the default place.
fn register(binary: &Path, interpreters: &Path, list: &str) -> Result<()> {
    let output = Command::new(binary)
        .args(["--install", list, "--interpreter-dir"])
        .arg(interpreters)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", binary.display()))?;
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    if !output.status.success() {
        return Err(anyhow!(
            "{} --install {list} failed ({}) in the private instance",
            binary.display(),
            output.status
        ));
    }
    Ok(())
}

/// `$XDG_CACHE_HOME/binfmt/conformance` (else `~/.cache/...`), where the packages of
/// each suite and architecture are kept between runs.
fn cache_dir() -> Result<PathBuf> {
    Ok(crate::workspace::binfmt_cache_dir()?.join("conformance"))
}

/// Builds the userland of `row`'s architecture in `dir/rootfs` and runs the steps in
/// it, filling `row`.
fn check_userland(
    row: &mut Row,
    suite: &str,
    mirror: &Mirror,
    dir: &Path,
    cache: &Path,
) -> Result<()> {
    let target = row.target;
    let debian = target.debian.context("unreachable: no Debian port")?;
    let rootfs = dir.join("rootfs");
    for path in [&rootfs, cache] {
        if path.to_string_lossy().contains(['\'', '\n']) {
            return Err(anyhow!(
                "{} contains a quote or newline: mmdebstrap's hooks cannot name it",
                path.display()
            ));
        }
    }
    let quoted_cache = format!("'{}'", cache.display());
    eprintln!("conformance: {debian}: mmdebstrap {suite} (essential + python3), emulated dpkg");
    let mut mmdebstrap = Command::new("mmdebstrap");
    mmdebstrap
        .args([
            "--mode=unshare",
            "--variant=essential",
            "--include=python3",
            &format!("--arch={debian}"),
            "--verbose",
            // Keep the Essential packages' .debs in the archive directory for sync-out.
            "--skip=essential/unlink",
            "--setup-hook=mkdir -p \"$1\"/var/cache/apt/archives",
            &format!("--setup-hook=sync-in {quoted_cache} /var/cache/apt/archives/"),
            &format!("--customize-hook=sync-out /var/cache/apt/archives {quoted_cache}"),
            suite,
        ])
        .arg(&rootfs)
        .arg(format!("deb {} {suite} main", mirror.base()));
    let log = dir.join("mmdebstrap.log");
    let run = run_logged(&mut mmdebstrap, &log, MMDEBSTRAP_TIMEOUT)?;
    let built = if run.status.is_some_and(|s| s.success()) {
        verify_rootfs(&rootfs, &run.output, &dir.join("dpkg-audit.log")).map(|()| run.elapsed)
    } else {
        let missing = not_found(&run.output);
        if !missing.is_empty() {
            row.steps.push(Outcome::Unavailable(format!(
                "the mirror returns 404 for {}: not a verdict on the emulator",
                missing.join(", ")
            )));
            return Ok(());
        }
        Err(failure(&run, &log))
    };
    match built {
        Ok(elapsed) => row.steps.push(Outcome::Passed(elapsed)),
        Err(reason) => {
            row.steps.push(Outcome::Failed(reason));
            return Ok(());
        }
    }
    eprintln!("conformance: {debian}: python3, perl and ldconfig in the root");
    bind_devices(&rootfs)?;
    let python = chroot_step(
        &rootfs,
        &dir.join("python3.log"),
        &[
            "python3",
            "-c",
            "import hashlib, platform, sqlite3, ssl, zlib; print(platform.machine())",
        ],
    )?;
    let machine = match python {
        Ok((elapsed, output)) => {
            let machine = output.trim().to_owned();
            if machine.starts_with(target.uname) {
                row.steps.push(Outcome::Passed(elapsed));
                row.machine = Some(machine.clone());
                Some(machine)
            } else {
                row.steps.push(Outcome::Failed(format!(
                    "python3 says the machine is {machine:?}, not {}*",
                    target.uname
                )));
                None
            }
        }
        Err(reason) => {
            row.steps.push(Outcome::Failed(reason));
            None
        }
    };
    let perl = chroot_step(
        &rootfs,
        &dir.join("perl.log"),
        &[
            "perl",
            "-MPOSIX",
            "-e",
            "print((POSIX::uname())[4], \"\\n\")",
        ],
    )?;
    row.steps.push(match perl {
        Ok((elapsed, output)) => match &machine {
            Some(machine) if output.trim() == machine => Outcome::Passed(elapsed),
            Some(machine) => Outcome::Failed(format!(
                "perl says the machine is {:?}, python3 {machine:?}",
                output.trim()
            )),
            // Its own verdict, without python3's to compare with.
            None if output.trim().starts_with(target.uname) => Outcome::Passed(elapsed),
            None => Outcome::Failed(format!("perl says the machine is {:?}", output.trim())),
        },
        Err(reason) => Outcome::Failed(reason),
    });
    let ldconfig_log = dir.join("ldconfig.log");
    let ldconfig = chroot_step(&rootfs, &ldconfig_log, &["ldconfig"])?;
    row.steps.push(match ldconfig {
        Ok((elapsed, _)) => {
            match chroot_step(&rootfs, &dir.join("ldconfig-p.log"), &["ldconfig", "-p"])? {
                Ok((listed, cache))
                    if cache
                        .lines()
                        .any(|l| l.trim_start().starts_with("libc.so.6 ")) =>
                {
                    Outcome::Passed(elapsed + listed)
                }
                Ok(_) => Outcome::Failed(format!(
                    "ldconfig -p does not list libc.so.6 (see {})",
                    dir.join("ldconfig-p.log").display()
                )),
                Err(reason) => Outcome::Failed(reason),
            }
        }
        Err(reason) => Outcome::Failed(reason),
    });
    Ok(())
}

/// After mmdebstrap succeeded: libc-bin's ldconfig trigger ran, and dpkg finds no
/// package half-installed. An error is the reason it did not pass.
fn verify_rootfs(rootfs: &Path, log_text: &str, audit_log: &Path) -> Result<(), String> {
    if !log_text.contains("Processing triggers for libc-bin") {
        return Err(
            "mmdebstrap succeeded, but its log shows no ldconfig trigger (libc-bin) processed"
                .to_owned(),
        );
    }
    // Without devices yet: dpkg needs none to read its database.
    match chroot_step(rootfs, audit_log, &["dpkg", "--audit"]) {
        Ok(Ok((_, output))) if output.trim().is_empty() => Ok(()),
        Ok(Ok((_, output))) => Err(format!("dpkg --audit: {}", output.trim())),
        Ok(Err(reason)) => Err(reason),
        Err(error) => Err(error.to_string()),
    }
}

/// Bind-mounts the few device nodes programs expect (the root has an empty /dev; a
/// user namespace cannot create device nodes). The mounts vanish with the namespace.
fn bind_devices(rootfs: &Path) -> Result<()> {
    for name in ["null", "zero", "full", "random", "urandom"] {
        let source = Path::new("/dev").join(name);
        let node = rootfs.join("dev").join(name);
        fs::File::create(&node).with_context(|| format!("cannot create {}", node.display()))?;
        rustix::mount::mount_bind(&source, &node).with_context(|| {
            format!(
                "cannot bind-mount {} on {}",
                source.display(),
                node.display()
            )
        })?;
    }
    Ok(())
}

/// Runs `command` (a program of the userland and its arguments) in `rootfs` with
/// `chroot`; `Ok(Ok((time, output)))` when it exited 0, `Ok(Err(reason))` when not.
fn chroot_step(
    rootfs: &Path,
    log: &Path,
    command: &[&str],
) -> Result<Result<(Duration, String), String>> {
    let mut chroot = Command::new("chroot");
    chroot
        .arg(rootfs)
        .args(command)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LC_ALL", "C")
        .env("HOME", "/root");
    let run = run_logged(&mut chroot, log, STEP_TIMEOUT)?;
    Ok(if run.status.is_some_and(|s| s.success()) {
        Ok((run.elapsed, run.output))
    } else {
        Err(format!("`{}`: {}", command.join(" "), failure(&run, log)))
    })
}

/// A finished (or killed) command.
struct Finished {
    /// `None` when it was killed after its timeout.
    status: Option<ExitStatus>,
    elapsed: Duration,
    /// stdout and stderr, interleaved, as written to the log.
    output: String,
}

/// Runs `command` with stdout and stderr into `log`, in a process group of its own
/// that is killed if it runs longer than `timeout`.
fn run_logged(command: &mut Command, log: &Path, timeout: Duration) -> Result<Finished> {
    let file = fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let stderr = file
        .try_clone()
        .with_context(|| format!("cannot duplicate {}", log.display()))?;
    let start = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(stderr)
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot run {:?}", command.get_program()))?;
    let status = loop {
        if let Some(status) = child.try_wait().with_context(|| "cannot wait for a step")? {
            break Some(status);
        }
        if start.elapsed() > timeout {
            if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            }
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let elapsed = start.elapsed();
    let output = String::from_utf8_lossy(
        &fs::read(log).with_context(|| format!("cannot read {}", log.display()))?,
    )
    .into_owned();
    Ok(Finished {
        status,
        elapsed,
        output,
    })
}

/// Why a finished command did not pass, with the end of its log.
fn failure(run: &Finished, log: &Path) -> String {
    let how = match run.status {
        Some(status) => status.to_string(),
        None => format!("killed after {:.0} s", run.elapsed.as_secs_f64()),
    };
    let lines: Vec<&str> = run.output.lines().collect();
    let tail = lines[lines.len().saturating_sub(20)..].join("\n    ");
    format!("{how}; the end of {}:\n    {tail}", log.display())
}

/// What apt could not download because the mirror answered 404: `name version` for a
/// package (apt prints `Err:N URL suite/component arch NAME ARCH VERSION`, then the
/// status on the next line), or what the line names otherwise (an index: `trixie/main
/// s390x Packages`).
fn not_found(log: &str) -> Vec<String> {
    let lines: Vec<&str> = log.lines().collect();
    let mut missing = Vec::new();
    for pair in lines.windows(2) {
        if !(pair[0].starts_with("Err:") && pair[1].contains(" 404 ")) {
            continue;
        }
        let what = match pair[0].split_whitespace().skip(2).collect::<Vec<_>>()[..] {
            [_suite, _arch, name, _, version] => format!("{name} {version}"),
            ref other => other.join(" "),
        };
        if !missing.contains(&what) {
            missing.push(what);
        }
    }
    missing
}

/// The matrix (Markdown), then one line per architecture that did not pass.
fn matrix(qemu_version: &str, suite: &str, rows: &[Row], scratch: &Path) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Debian {suite} userlands (mmdebstrap --variant=essential --include=python3) under \
         binfmt's emulators, QEMU {}; seconds per step:\n",
        qemu_version
    );
    let _ = writeln!(out, "| arch | uname -m | {} |", STEPS.join(" | "));
    let _ = writeln!(out, "|---|---|{}", "--:|".repeat(STEPS.len()));
    let mut notes = String::new();
    for row in rows {
        let name = row.target.debian.unwrap_or(row.target.oci);
        let cells: Vec<String> = (0..STEPS.len())
            .map(|i| match row.steps.get(i).unwrap_or(&Outcome::NotRun) {
                Outcome::Passed(elapsed) => format!("{:.1}", elapsed.as_secs_f64()),
                Outcome::Failed(_) => "FAILED".to_owned(),
                Outcome::Unavailable(_) => "UNAVAILABLE".to_owned(),
                Outcome::NotRun => "-".to_owned(),
            })
            .collect();
        let _ = writeln!(
            out,
            "| {name} | {} | {} |",
            row.machine.as_deref().unwrap_or(""),
            cells.join(" | ")
        );
        for (step, outcome) in STEPS.iter().zip(&row.steps) {
            match outcome {
                Outcome::Failed(reason) => {
                    let _ = writeln!(notes, "{name}: {step} FAILED: {reason}");
                }
                Outcome::Unavailable(reason) => {
                    let _ = writeln!(notes, "{name}: UNAVAILABLE: {reason}");
                }
                Outcome::Passed(_) | Outcome::NotRun => {}
            }
        }
    }
    if !notes.is_empty() {
        let _ = write!(out, "\n{notes}");
    }
    let _ = writeln!(out, "\nLogs: {}/<arch>/", scratch.display());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
        ] {
            assert_eq!(parse_target(name).unwrap().debian, Some(debian), "{name}");
        }
        assert!(
            parse_target("sparc64")
                .unwrap_err()
                .contains("unknown architecture")
        );
        let native = if cfg!(target_arch = "x86_64") {
            "amd64"
        } else {
            "arm64"
        };
        assert!(
            parse_target(native)
                .unwrap_err()
                .contains("own architecture")
        );
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

    fn row(debian: &str, machine: Option<&str>, steps: Vec<Outcome>) -> Row {
        Row {
            target: parse_target(debian).unwrap(),
            machine: machine.map(str::to_owned),
            steps,
        }
    }

    #[test]
    fn the_matrix_shows_each_step_and_says_why_an_arch_did_not_pass() {
        let passed = |s| Outcome::Passed(Duration::from_millis(s));
        let rows = [
            row(
                "riscv64",
                Some("riscv64"),
                (1..=4).map(|s| passed(s * 1000)).collect(),
            ),
            row(
                "armhf",
                Some("armv7l"),
                vec![passed(90_000), Outcome::Failed("python3 crashed".into())],
            ),
            row("s390x", None, vec![Outcome::Unavailable("404".into())]),
        ];
        let text = matrix("10.0.13", "trixie", &rows, Path::new("/scratch"));
        assert!(text.contains("QEMU 10.0.13"), "{text}");
        assert!(
            text.contains("| riscv64 | riscv64 | 1.0 | 2.0 | 3.0 | 4.0 |\n"),
            "{text}"
        );
        assert!(
            text.contains("| armhf | armv7l | 90.0 | FAILED | - | - |\n"),
            "{text}"
        );
        assert!(
            text.contains("| s390x |  | UNAVAILABLE | - | - | - |\n"),
            "{text}"
        );
        assert!(
            text.contains("armhf: python3 FAILED: python3 crashed\n"),
            "{text}"
        );
        assert!(text.contains("s390x: UNAVAILABLE: 404\n"), "{text}");
        assert_eq!(exit_status(&rows), 1);
        assert_eq!(exit_status(&rows[2..]), 3);
        assert_eq!(exit_status(&rows[..1]), 0);
        assert_eq!(exit_status(&rows[1..2]), 1);
    }

    #[test]
    fn a_404_names_the_packages_the_mirror_lacks() {
        let log = "\
Get:1 http://mirror/debian trixie/main s390x gcc-14-base s390x 14.2.0-19 [49.4 kB]
Err:2 http://mirror/debian trixie/main s390x libc6 s390x 2.41-12+deb13u5
  404  Not Found [IP: 192.0.2.1 80]
Err:5 http://mirror/debian trixie/main s390x base-files s390x 13.8+deb13u8
  404  Not Found [IP: 192.0.2.1 80]
Err:6 http://mirror/debian trixie/main s390x zlib1g s390x 1:1.3.dfsg-1
  Connection failed
Err:7 http://mirror/debian trixie/main s390x Packages
  404  Not Found [IP: 192.0.2.1 80]
E: Failed to fetch http://mirror/debian/pool/main/g/glibc/libc6_2.41-12%2bdeb13u5_s390x.deb  404  Not Found
";
        assert_eq!(
            not_found(log),
            [
                "libc6 2.41-12+deb13u5",
                "base-files 13.8+deb13u8",
                "trixie/main s390x Packages"
            ]
        );
        assert!(not_found("E: Sub-process /usr/bin/dpkg returned an error code (1)\n").is_empty());
    }
}
