//! `cargo xtask conformance [ARCH...]`: real Debian userlands under binfmt's own
//! emulators, running the workloads that crashed other registrars' QEMU pins; the
//! check a re-pin (`cargo xtask pin`) must pass before it lands.
//!
//! The worst regressions of emulators are the ones only real programs show:
//! tonistiigi/binfmt's pins made `ldconfig` (libc-bin's trigger) segfault on
//! bullseye and jammy arm64, apt fail at random, GNU tar fail with EINVAL from
//! openat2 and node segfault; Go 1.23 hung under qemu-user. binfmt's own probes are a
//! few hundred bytes each and cannot see that. So, for each architecture, this builds
//! a Debian root filesystem with mmdebstrap, in which dpkg, every maintainer script
//! and the ldconfig trigger run emulated, with the packages the workloads need
//! (golang-go, nodejs, default-jdk-headless, apt), then runs each workload
//! ([`workload`]) in it, each bounded by a timeout, and prints a matrix of
//! architecture by workload: seconds of each pass, each failure with the end of its
//! log, each cell that could not be tested here with the reason ([`record`]).
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
//! from (`--suite` for others); the variant mmdebstrap's `essential` plus the selected
//! workloads' packages, without recommends ([`userland`]). The bullseye workload is a
//! second, separate bootstrap of Debian 11 (arm64). Packages are kept between runs per
//! suite and architecture under `~/.cache/binfmt/conformance/`; emulated dpkg, not
//! downloading, takes most of the bootstrap's time. Architectures are built `--jobs`
//! at a time (default: one per core); each workload's seconds are its own wall time.
//!
//! **Verdicts.** A workload passes when its program exits 0 and prints what it
//! checked (each program compares its parallel result with a sequential one). A cell
//! is UNAVAILABLE, not passed, when it cannot be tested here: Debian has no port, the
//! suite's `Release` does not list it, the mirror answers 404 for one of its packages,
//! or the architecture is this machine's own ([`arch::unavailable_here`]). Exit
//! status: 0 every selected workload of every requested architecture passed; 1 one
//! failed (or the run could not be done); 2 invalid arguments; 3 nothing failed, but a
//! cell could not be tested, so a re-pin gate never passes silently.
//!
//! **The record and the gate.** `--record` merges the results into
//! `qemu-blobs/conformance.toml` ([`record::RECORD_PATH`]); `--write-docs` renders it
//! into docs/workloads.md and the README; `cargo xtask pin` runs the recorded matrix
//! with a new pin and refuses it if it fails a workload the record passes ([`gate`]).

pub mod arch;
pub mod gate;
pub mod record;
mod step;
mod userland;
pub mod workload;

use std::collections::BTreeMap;
use std::fs;
use std::io::Read as _;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Mutex;

use qemu_pins::{MANIFEST_PATH, Manifest};

use anyhow::{Context, Result, anyhow};

use crate::mirror::Mirror;
use crate::sandbox::{self, Ids};
use crate::workspace::{target_dir, workspace_root};
use arch::{Target, parse_target};
use record::{RECORD_PATH, Record, Row};
use step::Outcome;
use workload::Workload;

/// The exit status's meaning, for `--help`.
const EXIT_STATUS: &str = "\
Exit status: 0 every selected workload of every requested architecture passed; 1 one \
failed, or the run could not be done; 2 invalid arguments; 3 nothing failed, but a \
workload could not be tested here (UNAVAILABLE: no Debian port, the mirror lacks its \
packages, or the architecture is this machine's own).";

/// Arguments of `cargo xtask conformance`.
#[derive(clap::Args, Clone)]
#[command(after_help = EXIT_STATUS)]
pub struct Args {
    /// Architectures to check, as Debian, OCI or QEMU names (arm64, armhf, riscv64,
    /// ppc64el, ...); default: arm64 armhf riscv64 ppc64el s390x amd64.
    #[arg(value_name = "ARCH", value_parser = parse_target)]
    arches: Vec<&'static Target>,
    /// Workloads to run (comma-separated); default: all of them. The bootstrap runs
    /// whenever a workload needs the userland.
    #[arg(long, value_name = "NAME,...", value_delimiter = ',', value_parser = Workload::parse)]
    workloads: Vec<Workload>,
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
    /// Merge the results into qemu-blobs/conformance.toml (what `cargo xtask pin`
    /// compares a new pin with).
    #[arg(long)]
    record: bool,
    /// Run nothing: render qemu-blobs/conformance.toml into docs/workloads.md and the
    /// README, between their conformance matrix markers.
    #[arg(long, conflicts_with_all = ["arches", "workloads", "record", "keep"])]
    write_docs: bool,
}

impl Args {
    /// The run `cargo xtask pin` gates a new pin on: every architecture and workload
    /// of `record`, in its suite.
    pub fn gate(record: &Record) -> Result<Args> {
        let mut arches: Vec<&'static Target> = Vec::new();
        let mut workloads = Vec::new();
        for entry in &record.results {
            let target = arch::by_name(&entry.arch).with_context(|| {
                format!("{RECORD_PATH} names unknown architecture {}", entry.arch)
            })?;
            if !arches.contains(&target) {
                arches.push(target);
            }
            let workload =
                Workload::parse(&entry.workload).map_err(|e| anyhow!("{RECORD_PATH}: {e}"))?;
            if !workloads.contains(&workload) {
                workloads.push(workload);
            }
        }
        Ok(Args {
            arches,
            workloads,
            suite: record.suite.clone(),
            keep: false,
            jobs: default_jobs(),
            record: false,
            write_docs: false,
        })
    }

    /// The selected workloads, in running order.
    fn selected(&self) -> Vec<Workload> {
        Workload::ALL
            .into_iter()
            .filter(|w| self.workloads.is_empty() || self.workloads.contains(w))
            .collect()
    }
}

/// One job per core.
fn default_jobs() -> NonZeroUsize {
    std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)
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

/// Set for the namespaced child: the binfmt binary that registers the emulators.
const BINARY_ENV: &str = "BINFMT_CONFORMANCE_BINARY";
/// Set for the namespaced child: the scratch directory (one directory per arch).
const SCRATCH_ENV: &str = "BINFMT_CONFORMANCE_SCRATCH";
/// Where the child leaves its results, in the scratch directory.
const RESULTS_FILE: &str = "results.toml";

/// Runs `cargo xtask conformance`.
pub fn run(args: &Args) -> Result<ExitCode> {
    if sandbox::is_inside() {
        sandbox::enter()?;
        return in_namespace(args);
    }
    if args.write_docs {
        write_docs()?;
        return Ok(ExitCode::SUCCESS);
    }
    let (results, code) = execute(args)?;
    if args.record {
        let path = workspace_root().join(RECORD_PATH);
        let merged = match Record::load(&path) {
            Ok(old) => old.merged(&results),
            Err(_) if !path.exists() => results.merged(&results),
            Err(error) => return Err(error),
        };
        merged.save(&path)?;
        eprintln!(
            "conformance: recorded in {RECORD_PATH}; `cargo xtask conformance --write-docs` \
             renders it into the docs"
        );
    }
    Ok(ExitCode::from(code))
}

/// Builds the release binary, runs the matrix in the namespace and returns its
/// results and exit status (0, 1 or 3).
pub fn execute(args: &Args) -> Result<(Record, u8)> {
    // Everything this needs, checked before anything is built or written.
    if !rustix::process::geteuid().is_root() {
        return Err(anyhow!(
            "cargo xtask conformance needs root: dpkg in the userland hands files to \
             system users, and only root can map their ids into the user namespace that \
             holds the private binfmt_misc instance (the machine's own table is never \
             touched); fix: run it as root (CI does)"
        ));
    }
    for tool in ["mmdebstrap", "arch-test", "chroot", "unshare"] {
        if step::find_in_path(tool).is_none() {
            return Err(anyhow!(
                "{tool} is not installed; fix: `apt-get install mmdebstrap arch-test` \
                 (Debian 12 or newer; mmdebstrap brings apt, arch-test lets it check the \
                 emulation)"
            ));
        }
    }
    let mirror = Mirror::from_env()?;
    let host = crate::fetch::build_host();
    let artifact = crate::dist::Artifact::of(&host)
        .with_context(|| format!("binfmt has no release binary for {host}"))?;
    eprintln!("conformance: building the release binary for {host} (cargo xtask dist)");
    crate::dist::run(&crate::dist::Args::only(&host))?;
    let binary = crate::dist::dist_dir().join(artifact.file_name());

    let scratch = target_dir().join("conformance");
    step::remove_tree(&scratch)?;
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
    let names: Vec<&str> = args.selected().iter().map(|w| w.name()).collect();
    child_args.push(format!("--workloads={}", names.join(",")));
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
            let dir = entry
                .with_context(|| format!("cannot read {}", scratch.display()))?
                .path();
            if !dir.is_dir() {
                continue;
            }
            for root in ["rootfs", "bullseye-rootfs"] {
                step::remove_tree(&dir.join(root))?;
            }
        }
    }
    let code = match output.status.code() {
        Some(code @ (0 | 1 | 3)) => code as u8,
        _ => {
            return Err(anyhow!(
                "the conformance run in the namespace ended with {}",
                output.status
            ));
        }
    };
    let results = Record::load(&scratch.join(RESULTS_FILE))?;
    Ok((results, code))
}

/// The run inside the namespace: registers, builds and runs each userland, prints the
/// matrix on stdout and leaves the results in the scratch directory.
fn in_namespace(args: &Args) -> Result<ExitCode> {
    let binary = PathBuf::from(
        std::env::var_os(BINARY_ENV).context("BINFMT_CONFORMANCE_BINARY is not set")?,
    );
    let scratch = PathBuf::from(
        std::env::var_os(SCRATCH_ENV).context("BINFMT_CONFORMANCE_SCRATCH is not set")?,
    );
    let manifest = Manifest::load(&workspace_root().join(MANIFEST_PATH))?;
    let mut targets: Vec<&'static Target> = if args.arches.is_empty() {
        arch::DEFAULT
            .iter()
            .filter_map(|name| arch::by_name(name))
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
    let selected = args.selected();
    let mirror = Mirror::from_env()?;
    let ports = suite_architectures(&mirror, &args.suite)?;

    let mut rows: Vec<Row> = Vec::new();
    let mut to_register = Vec::new();
    for &target in &targets {
        let unavailable = match target.debian {
            _ if arch::unavailable_here(target).is_some() => arch::unavailable_here(target),
            None => Some(format!("Debian has no {} port", target.oci)),
            Some(debian) if !ports.iter().any(|p| p == debian) => Some(format!(
                "{} has no {debian} port (its Release lists {})",
                args.suite,
                ports.join(" ")
            )),
            Some(_) => None,
        };
        let mut cells = BTreeMap::new();
        match unavailable {
            Some(why) => {
                for &w in &selected {
                    cells.insert(w, Outcome::Unavailable(why.clone()));
                }
            }
            None => to_register.push(target.oci),
        }
        rows.push(Row { target, cells });
    }

    let _table = sandbox::fresh_instance()?;
    if !to_register.is_empty() {
        register(
            &binary,
            &scratch.join("interpreters"),
            &to_register.join(","),
        )?;
    }
    let cache_root = crate::workspace::binfmt_cache_dir()?.join("conformance");
    // Emulated dpkg keeps one core busy: `--jobs` architectures at once, each from a
    // shared queue.
    let queue = Mutex::new(rows.iter_mut().filter(|row| row.cells.is_empty()));
    let next = || queue.lock().map_or(None, |mut rows| rows.next());
    let context = RunContext {
        suite: &args.suite,
        mirror: &mirror,
        scratch: &scratch,
        cache_root: &cache_root,
        selected: &selected,
    };
    std::thread::scope(|scope| -> Result<()> {
        let workers: Vec<_> = (0..args.jobs.get())
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    while let Some(row) = next() {
                        check_arch(row, &context)?;
                        // Each architecture's results as soon as it is done, so that a
                        // run cut short still leaves what it measured.
                        let partial = Record::from_rows(
                            manifest.source.upstream_version(),
                            &manifest.source.version,
                            &args.suite,
                            std::slice::from_ref(&*row),
                        );
                        partial.save(&scratch.join(arch::name(row.target)).join(RESULTS_FILE))?;
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

    let results = Record::from_rows(
        manifest.source.upstream_version(),
        &manifest.source.version,
        &args.suite,
        &rows,
    );
    results.save(&scratch.join(RESULTS_FILE))?;
    print!(
        "\n{}:\n\n{}\nLogs: {}/<arch>/\n",
        results.caption(),
        results.matrix(true),
        scratch.display()
    );
    Ok(ExitCode::from(record::exit_status(&rows)))
}

/// What every architecture's run shares.
struct RunContext<'a> {
    suite: &'a str,
    mirror: &'a Mirror,
    scratch: &'a Path,
    cache_root: &'a Path,
    selected: &'a [Workload],
}

/// The suite of the bullseye workload, and the one architecture it runs for (the
/// reported crash).
const BULLSEYE: &str = "bullseye";
const BULLSEYE_ARCH: &str = "arm64";

/// Builds the userland of `row`'s architecture and runs the selected workloads in it,
/// filling `row`.
fn check_arch(row: &mut Row, cx: &RunContext) -> Result<()> {
    let target = row.target;
    let debian = target.debian.context("unreachable: no Debian port")?;
    let dir = cx.scratch.join(debian);
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let in_root: Vec<Workload> = cx
        .selected
        .iter()
        .copied()
        .filter(|w| !matches!(w, Workload::Bootstrap | Workload::Bullseye))
        .collect();
    if !in_root.is_empty() || cx.selected.contains(&Workload::Bootstrap) {
        let mut include: Vec<&str> = Vec::new();
        for w in cx.selected {
            for package in w.packages() {
                if !include.contains(package) {
                    include.push(package);
                }
            }
        }
        let cache = cache_dir(cx.cache_root, cx.suite, debian)?;
        eprintln!(
            "conformance: {debian}: mmdebstrap {} (essential + {}), emulated dpkg",
            cx.suite,
            include.join(", ")
        );
        let rootfs = dir.join("rootfs");
        let bootstrap = userland::build(
            &userland::Bootstrap {
                suite: cx.suite,
                debian,
                include: &include,
                mirror: cx.mirror.base(),
                cache: &cache,
            },
            Workload::Bootstrap,
            &rootfs,
            &dir,
        )?;
        let built = matches!(bootstrap, Outcome::Passed(_));
        let why_not = match &bootstrap {
            Outcome::Unavailable(why) => Outcome::Unavailable(why.clone()),
            _ => Outcome::NotRun(format!("the {} userland did not build", cx.suite)),
        };
        report(debian, Workload::Bootstrap, &bootstrap);
        row.cells.insert(Workload::Bootstrap, bootstrap);
        if built {
            step::mount_basics(&rootfs)?;
            workload::install_programs(&rootfs)?;
        }
        let mut machine = None;
        for &w in &in_root {
            let outcome = if built {
                eprintln!("conformance: {debian}: {}", w.name());
                workload::run_in_root(w, target, &rootfs, &dir, &mut machine)?
            } else {
                why_not.clone()
            };
            report(debian, w, &outcome);
            row.cells.insert(w, outcome);
        }
    }
    if cx.selected.contains(&Workload::Bullseye) {
        let outcome = bullseye(debian, cx, &dir)?;
        report(debian, Workload::Bullseye, &outcome);
        row.cells.insert(Workload::Bullseye, outcome);
    }
    Ok(())
}

/// One line on stderr as each cell is decided.
fn report(debian: &str, workload: Workload, outcome: &Outcome) {
    let verdict = match outcome {
        Outcome::Passed(elapsed) => format!("passed in {:.1} s", elapsed.as_secs_f64()),
        Outcome::Failed(why) => format!("FAILED: {why}"),
        Outcome::Unavailable(why) => format!("not available here: {why}"),
        Outcome::NotRun(why) => format!("not run: {why}"),
    };
    eprintln!("conformance: {debian}: {} {verdict}", workload.name());
}

/// The bullseye workload: a separate bootstrap of bullseye, then ldconfig in it.
fn bullseye(debian: &str, cx: &RunContext, dir: &Path) -> Result<Outcome> {
    if debian != BULLSEYE_ARCH {
        return Ok(Outcome::NotRun(format!(
            "the {BULLSEYE} bootstrap runs for {BULLSEYE_ARCH} only, where its libc-bin \
             trigger segfaulted (tonistiigi/binfmt#231, #240)"
        )));
    }
    let ports = suite_architectures(cx.mirror, BULLSEYE)?;
    if !ports.iter().any(|p| p == debian) {
        return Ok(Outcome::Unavailable(format!(
            "{BULLSEYE} has no {debian} port on this mirror (its Release lists {})",
            ports.join(" ")
        )));
    }
    eprintln!("conformance: {debian}: mmdebstrap {BULLSEYE} (essential + apt), emulated dpkg");
    let rootfs = dir.join("bullseye-rootfs");
    let built = userland::build(
        &userland::Bootstrap {
            suite: BULLSEYE,
            debian,
            // The essential set is installed with `dpkg --no-triggers`; apt, installed
            // after it (as in Debian's own bullseye images), brings libraries whose
            // ldconfig trigger libc-bin then processes, emulated: the reported crash.
            include: &["apt"],
            mirror: cx.mirror.base(),
            cache: &cache_dir(cx.cache_root, BULLSEYE, debian)?,
        },
        Workload::Bullseye,
        &rootfs,
        dir,
    )?;
    let Outcome::Passed(bootstrap) = built else {
        return Ok(built);
    };
    Ok(match workload::ldconfig(&rootfs, dir, "-bullseye")? {
        Outcome::Passed(ldconfig) => Outcome::Passed(bootstrap + ldconfig),
        other => other,
    })
}

/// The package cache of one suite and architecture.
fn cache_dir(root: &Path, suite: &str, debian: &str) -> Result<PathBuf> {
    let cache = root.join(format!("{suite}-{debian}"));
    fs::create_dir_all(&cache).with_context(|| format!("cannot create {}", cache.display()))?;
    Ok(cache)
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

/// The docs the record is rendered into, with what goes between their markers.
fn rendered_docs(record: &Record) -> [(&'static str, String); 2] {
    [
        ("docs/workloads.md", record::docs_body(record)),
        ("README.md", record::readme_body(record)),
    ]
}

/// `--write-docs`: the record into docs/workloads.md and the README.
fn write_docs() -> Result<()> {
    let root = workspace_root();
    let record = Record::load(&root.join(RECORD_PATH))?;
    for (file, body) in rendered_docs(&record) {
        let path = root.join(file);
        let text =
            fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let new = record::replace_between_markers(&text, &body, file)?;
        if new != text {
            fs::write(&path, new).with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("conformance: wrote the matrix into {file}");
        }
    }
    Ok(())
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_docs_show_the_recorded_matrix() {
        let root = workspace_root();
        let path = root.join(RECORD_PATH);
        let record = Record::load(&path).unwrap();
        for (file, body) in rendered_docs(&record) {
            let text = fs::read_to_string(root.join(file)).unwrap();
            assert!(
                text.contains(&format!("{}\n{body}{}", record::BEGIN, record::END)),
                "{file} does not show the matrix of {RECORD_PATH}; fix: run \
                 `cargo xtask conformance --write-docs`"
            );
        }
    }

    #[test]
    fn the_gate_reruns_the_recorded_matrix() {
        let record = Record::load(&workspace_root().join(RECORD_PATH)).unwrap();
        let args = Args::gate(&record).unwrap();
        assert!(!args.arches.is_empty());
        for entry in &record.results {
            assert!(
                args.arches.iter().any(|t| arch::name(t) == entry.arch),
                "{}",
                entry.arch
            );
            assert!(args.workloads.iter().any(|w| w.name() == entry.workload));
        }
    }
}
