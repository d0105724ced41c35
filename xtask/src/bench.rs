//! `cargo xtask bench`: how fast and how small binfmt is, side by side with the peer a
//! distribution would use, on this machine. Prints a table; asserts nothing.
//!
//! It builds the release binaries (static musl, both hosts), then re-runs itself in a
//! user and mount namespace of its own that maps the caller to root ([`sandbox`]),
//! where a tmpfs hides the machine's `/proc/sys/fs` and a private binfmt_misc instance
//! is mounted at `/proc/sys/fs/binfmt_misc` (Linux 6.7+), the place both binfmt and
//! systemd-binfmt write to. Every measured run gets a fresh instance (unmounting the
//! last mount of a private instance destroys it) set up as the scenario says; the machine's
//! own table is never touched (checked before and after).
//!
//! [`sandbox`]: crate::sandbox
//!
//! Scenarios (median, min and max wall time over `--runs` runs, each a new process
//! timed from spawn to exit, after `sync(2)` so that no writeback of the previous
//! runs' files competes with it; peak RSS from `wait4(2)`):
//!
//! - `binfmt --install all` **cold** (no interpreter files, empty table), **fresh**
//!   (files on disk, empty table: a reboot) and **rerun** (everything registered);
//! - one architecture cold: the reference emulator (one blob) and a patched one
//!   (the reference decoded too);
//! - `systemd-binfmt` applying the same eight entries from binfmt.d files (one per
//!   architecture, Debian's layout and line format, QEMU's magic and mask) with the
//!   interpreters on disk, into an empty table and onto the registered one;
//! - `binfmt` with no arguments: the status document alone, which every install run
//!   prints too, once with the proofs the install before it kept (what a rerun
//!   prints) and once without them (each platform proved by running its probe, as
//!   tonistiigi/binfmt does, and as the first run after any change does);
//! - the floor: the eight register writes alone, from this process;
//! - process start: `binfmt --version`.
//!
//! Then binary sizes for both hosts, the embedded blobs, and, where a Docker engine
//! answers, the image for each platform: built from the `Dockerfile` after `cargo xtask
//! dist`, measured and removed again.

use std::fmt::Write as _;
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use binfmt_misc::{BinfmtMisc, Entry, Table};
use qemu_pins::{BlobCache, Compression, MANIFEST_PATH, Manifest};

use anyhow::{Context, Result, anyhow};

use crate::dist::{ARTIFACTS, Artifact};
use crate::sandbox::{self, Ids, fresh_instance};
use crate::workspace::{target_dir, workspace_root};

/// Arguments of `cargo xtask bench`.
#[derive(clap::Args)]
pub struct Args {
    /// Runs per scenario; the table shows the median, minimum and maximum.
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// Use the release binaries already built instead of building them.
    #[arg(long)]
    no_build: bool,
}

/// Set for the namespaced child: the bench's scratch directory.
const SCRATCH_ENV: &str = "BINFMT_BENCH_SCRATCH";

/// Where systemd puts systemd-binfmt (Debian: /lib is /usr/lib).
const SYSTEMD_BINFMT: [&str; 2] = [
    "/usr/lib/systemd/systemd-binfmt",
    "/lib/systemd/systemd-binfmt",
];

/// Runs `cargo xtask bench`.
pub fn run(args: &Args) -> Result<()> {
    if args.runs == 0 {
        return Err(anyhow!("--runs must be at least 1"));
    }
    if sandbox::is_inside() {
        sandbox::enter()?;
        let dir = std::env::var_os(SCRATCH_ENV).context("BINFMT_BENCH_SCRATCH is not set")?;
        return in_namespace(args, Path::new(&dir));
    }
    let root = workspace_root();
    let build_host = crate::fetch::build_host();
    let host_target = Artifact::of(&build_host)
        .with_context(|| format!("binfmt has no release binary for {build_host}"))?
        .target;
    if !args.no_build {
        // What ships: every release binary, as `cargo xtask dist` builds it.
        crate::dist::run(&crate::dist::Args::default())?;
    }
    let binary = |target: &str| target_dir().join(target).join("release/binfmt");
    let host_binary = binary(host_target);
    if !host_binary.is_file() {
        return Err(anyhow!(
            "{} is missing: run without --no-build",
            host_binary.display()
        ));
    }

    let scratch = target_dir().join("bench");
    let _ = fs::remove_dir_all(&scratch);
    fs::create_dir_all(&scratch).with_context(|| format!("cannot create {}", scratch.display()))?;
    let load_before = load_average();
    let _window = sandbox::GlobalTableWindow::open()?;
    let global_before = sandbox::global_table()?;
    eprintln!(
        "measuring in a private binfmt_misc instance ({} runs each)",
        args.runs
    );
    let output = sandbox::run_inside(
        &sandbox::os_args([
            "bench".to_owned(),
            "--runs".to_owned(),
            args.runs.to_string(),
        ]),
        &[
            (SCRATCH_ENV, scratch.as_os_str()),
            ("BINFMT_BENCH_BINARY", host_binary.as_os_str()),
        ],
        Ids::Root,
    )?;
    if sandbox::global_table()? != global_before {
        return Err(anyhow!(
            "the machine's own binfmt_misc table changed during the benchmark"
        ));
    }
    if !output.status.success() {
        return Err(anyhow!("the measurements failed ({})", output.status));
    }
    let load_after = load_average();
    let measured = String::from_utf8_lossy(&output.stdout);

    let mut out = String::new();
    let _ = writeln!(out, "{}", machine());
    let _ = writeln!(
        out,
        "load average {load_before} before, {load_after} after; {} runs per row, wall time \
         from spawn to exit\n",
        args.runs
    );
    out.push_str(&measured);
    out.push('\n');
    out.push_str(&sizes(&root, &binary)?);
    print!("{out}");
    let _ = fs::remove_dir_all(&scratch);
    Ok(())
}

/// One row of the timing table.
struct Row {
    what: String,
    times: Vec<Duration>,
    peak_rss_kb: Option<u64>,
    goal: String,
}

impl Row {
    fn median(&self) -> Duration {
        let mut times = self.times.clone();
        times.sort();
        times[times.len() / 2]
    }
}

fn ms(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1e3)
}

/// The measurements, inside the namespace: prints the timing table on stdout.
fn in_namespace(args: &Args, scratch: &Path) -> Result<()> {
    let binary = PathBuf::from(
        std::env::var_os("BINFMT_BENCH_BINARY").context("BINFMT_BENCH_BINARY is not set")?,
    );
    let interpreters = scratch.join("interpreters");
    let bench = Bench {
        binary: &binary,
        interpreters: &interpreters,
        runs: args.runs,
    };
    let systemd_binfmt = SYSTEMD_BINFMT.iter().map(Path::new).find(|p| p.is_file());

    let mut rows = Vec::new();
    // Cold: no files, empty table.
    rows.push(bench.binfmt(
        "`binfmt --install all`, cold: no files, empty table",
        &["--install", "all"],
        "≤ 150 ms, ≤ 40 MB",
        |_| bench.clear_files(),
    )?);
    // The entries just registered, as binfmt.d lines for systemd-binfmt.
    let table = fresh_instance()?;
    run_binfmt(&binary, &interpreters, &["--install", "all"])?;
    let entries = read_entries(&table)?;
    let conf_dir = scratch.join("binfmt.d");
    let conf_files = write_binfmt_d(&conf_dir, &entries)?;
    drop(table);

    rows.push(bench.binfmt(
        "`binfmt --install all`, fresh: files on disk, empty table (after a reboot)",
        &["--install", "all"],
        "≤ 150 ms",
        |_| Ok(()),
    )?);
    rows.push(bench.binfmt(
        "`binfmt --install all`, rerun: everything registered",
        &["--install", "all"],
        "≤ systemd-binfmt",
        |_| run_binfmt(&binary, &interpreters, &["--install", "all"]),
    )?);
    let (one_reference, one_patched) = one_arch_choices();
    rows.push(bench.binfmt(
        &format!("`binfmt --install {one_reference}`, cold (the reference: one blob)"),
        &["--install", one_reference],
        "≤ 60 ms",
        |_| bench.clear_files(),
    )?);
    rows.push(bench.binfmt(
        &format!("`binfmt --install {one_patched}`, cold (a patch: the reference decoded too)"),
        &["--install", one_patched],
        "≤ 60 ms",
        |_| bench.clear_files(),
    )?);
    // Leave every file in place for the peers.
    run_binfmt(&binary, &interpreters, &["--install", "all"])?;
    match systemd_binfmt {
        Some(systemd_binfmt) => {
            let mut command = vec![systemd_binfmt.to_string_lossy().into_owned()];
            command.extend(conf_files.iter().map(|f| f.to_string_lossy().into_owned()));
            let command: Vec<&str> = command.iter().map(String::as_str).collect();
            rows.push(bench.command(
                "`systemd-binfmt` with the same 8 entries, empty table",
                &command,
                "",
                |_| Ok(()),
            )?);
            rows.push(bench.command(
                "`systemd-binfmt` with the same 8 entries, all registered",
                &command,
                "",
                |_| run_command(&command),
            )?);
        }
        None => eprintln!("systemd-binfmt not found at {SYSTEMD_BINFMT:?}: its rows are left out"),
    }
    rows.push(bench.binfmt(
        "`binfmt` alone: the status document, from the proofs the last run kept",
        &[],
        "",
        |_| run_binfmt(&binary, &interpreters, &["--install", "all"]),
    )?);
    rows.push(bench.binfmt(
        "`binfmt` alone, no proofs kept: every platform proved by running its probe",
        &[],
        "",
        |_| {
            run_binfmt(&binary, &interpreters, &["--install", "all"])?;
            bench.forget_proofs()
        },
    )?);
    rows.push(floor(&entries, args.runs)?);
    rows.push(bench.binfmt(
        "`binfmt --version`: process start",
        &["--version"],
        "",
        |_| Ok(()),
    )?);

    let mut out = String::new();
    out.push_str(
        "| scenario | median | min | max | peak RSS | goal |\n|---|--:|--:|--:|--:|---|\n",
    );
    for row in &rows {
        let mut sorted = row.times.clone();
        sorted.sort();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            row.what,
            ms(row.median()),
            ms(sorted[0]),
            ms(sorted[sorted.len() - 1]),
            row.peak_rss_kb
                .map(|kb| format!("{:.1} MB", kb as f64 / 1024.0))
                .unwrap_or_default(),
            row.goal
        );
    }
    // The aarch64 build, run under the emulator the x86_64 build just registered.
    if std::env::consts::ARCH == "x86_64" {
        let aarch64 = target_dir().join("aarch64-unknown-linux-musl/release/binfmt");
        if aarch64.is_file() {
            let _table = fresh_instance()?;
            run_binfmt(&binary, &interpreters, &["--install", "arm64"])?;
            let version = Command::new(&aarch64)
                .arg("--version")
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                .unwrap_or_else(|e| format!("does not run: {e}"));
            let _ = writeln!(out, "\nThe aarch64 build under emulation: `{version}`.");
        }
    }
    print!("{out}");
    Ok(())
}

/// The binary and the interpreter directory every binfmt run uses.
struct Bench<'a> {
    binary: &'a Path,
    interpreters: &'a Path,
    runs: usize,
}

impl Bench<'_> {
    /// Times `binfmt <args>` (with the bench's interpreter directory), each run in a
    /// fresh instance after `prepare`.
    fn binfmt(
        &self,
        what: &str,
        args: &[&str],
        goal: &str,
        prepare: impl Fn(&BinfmtMisc) -> Result<()>,
    ) -> Result<Row> {
        let mut command = vec![self.binary.to_string_lossy().into_owned()];
        command.extend(args.iter().map(|a| (*a).to_owned()));
        command.push("--interpreter-dir".to_owned());
        command.push(self.interpreters.to_string_lossy().into_owned());
        let command: Vec<&str> = command.iter().map(String::as_str).collect();
        self.command(what, &command, goal, prepare)
    }

    /// Times `command`, each run in a fresh instance after `prepare`.
    fn command(
        &self,
        what: &str,
        command: &[&str],
        goal: &str,
        prepare: impl Fn(&BinfmtMisc) -> Result<()>,
    ) -> Result<Row> {
        let mut times = Vec::new();
        let mut peak = 0;
        for _ in 0..self.runs {
            let table = fresh_instance()?;
            prepare(&table)?;
            // The last runs wrote (and the cold rows then deleted) ~120 MB: flush what
            // is left, so that no writeback of earlier runs competes with this one for
            // the two cores. A real boot or CI job starts settled too.
            rustix::fs::sync();
            let (elapsed, rss) = timed(command)?;
            times.push(elapsed);
            peak = peak.max(rss);
        }
        let row = Row {
            what: what.to_owned(),
            times,
            peak_rss_kb: Some(peak),
            goal: goal.to_owned(),
        };
        eprintln!("  {what}: {}", ms(row.median()));
        Ok(row)
    }

    /// Removes the proofs binfmt keeps next to the interpreters: the next status
    /// runs every probe.
    fn forget_proofs(&self) -> Result<()> {
        let record = self.interpreters.join(".binfmt-proofs");
        fs::remove_file(&record).with_context(|| format!("cannot remove {}", record.display()))
    }

    /// Removes the interpreter files: the next install starts cold.
    fn clear_files(&self) -> Result<()> {
        match fs::remove_dir_all(self.interpreters) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(anyhow!(
                "cannot remove {}: {e}",
                self.interpreters.display()
            )),
            _ => Ok(()),
        }
    }
}

/// Runs `command`, returning its wall time and peak RSS (KiB); fails unless it exits 0.
#[allow(unsafe_code)] // wait4(2) with rusage: rustix has no rusage, libc's call is unsafe.
fn timed(command: &[&str]) -> Result<(Duration, u64)> {
    let (program, args) = command.split_first().context("empty command")?;
    let start = Instant::now();
    let child = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot run {program}"))?;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child with valid pointers; std's Child is not waited
    // on afterwards.
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    let elapsed = start.elapsed();
    if pid < 0 {
        return Err(anyhow!(
            "wait4 for {program}: {}",
            std::io::Error::last_os_error()
        ));
    }
    let status = ExitStatus::from_raw(status);
    if !status.success() {
        return Err(anyhow!("{} failed ({status})", command.join(" ")));
    }
    Ok((elapsed, usage.ru_maxrss as u64))
}

fn run_command(command: &[&str]) -> Result<()> {
    timed(command).map(drop)
}

fn run_binfmt(binary: &Path, interpreters: &Path, args: &[&str]) -> Result<()> {
    let binary = binary.to_string_lossy();
    let interpreters = interpreters.to_string_lossy();
    let mut command = vec![binary.as_ref()];
    command.extend(args);
    command.extend(["--interpreter-dir", interpreters.as_ref()]);
    run_command(&command)
}

/// Every entry of the table (the ones binfmt registered).
fn read_entries(table: &BinfmtMisc) -> Result<Vec<Entry>> {
    let mut entries = Vec::new();
    for name in table.entry_names()? {
        if let Some(entry) = table.read_entry(&name)? {
            entries.push(entry);
        }
    }
    entries.sort_by(|a, b| a.registration.name.cmp(&b.registration.name));
    if entries.is_empty() {
        return Err(anyhow!("binfmt --install all registered nothing"));
    }
    Ok(entries)
}

/// Writes one binfmt.d file per entry, as Debian's qemu-user-binfmt lays them out
/// (`/usr/lib/binfmt.d/qemu-<cpu>.conf`, one register line each); returns the paths.
fn write_binfmt_d(dir: &Path, entries: &[Entry]) -> Result<Vec<PathBuf>> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let line = entry
            .registration
            .register_line()
            .map_err(|e| anyhow!("{}: {e}", entry.registration.name))?;
        let path = dir.join(format!("{}.conf", entry.registration.name));
        let mut text = String::from_utf8_lossy(&line).into_owned();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        files.push(path);
    }
    Ok(files)
}

/// The floor: the same eight registrations written from this process, nothing else.
fn floor(entries: &[Entry], runs: usize) -> Result<Row> {
    let mut times = Vec::new();
    for _ in 0..runs {
        let table = fresh_instance()?;
        let start = Instant::now();
        for entry in entries {
            table.register(&entry.registration)?;
        }
        times.push(start.elapsed());
    }
    Ok(Row {
        what: format!(
            "the {} register writes alone, in-process (the floor)",
            entries.len()
        ),
        times,
        peak_rss_kb: None,
        goal: String::new(),
    })
}

/// The architectures for the one-arch rows: the reference (decoded alone, see
/// `arch_table::Host::reference`) and another one (a patch, so the reference is decoded
/// first), as binfmt spells them.
fn one_arch_choices() -> (&'static str, &'static str) {
    match std::env::consts::ARCH {
        "x86_64" => ("arm64", "riscv64"),
        _ => ("amd64", "riscv64"),
    }
}

/// Binary sizes for every host, the embedded blobs, and the images if there is a
/// Docker engine.
fn sizes(root: &Path, binary: &dyn Fn(&str) -> PathBuf) -> Result<String> {
    let mut out = String::from("| size | bytes | MB | goal |\n|---|--:|--:|---|\n");
    for target in ARTIFACTS.map(|artifact| artifact.target) {
        match fs::metadata(binary(target)) {
            Ok(meta) => {
                let _ = writeln!(
                    out,
                    "| binary, {target} | {} | {:.2} | ≤ 10 MB |",
                    meta.len(),
                    meta.len() as f64 / 1e6
                );
            }
            Err(_) => {
                let _ = writeln!(out, "| binary, {target} | n/a (not built) | | |");
            }
        }
    }
    let manifest = Manifest::load(&root.join(MANIFEST_PATH))?;
    let cache = BlobCache::from_env()?;
    for host in &manifest.hosts {
        let Some(reference) = host.reference() else {
            continue;
        };
        let (mut total, mut raw) = (0, 0);
        for emulator in host.embedded() {
            let against = (emulator.cpu != reference.cpu).then_some(reference);
            total += fs::metadata(cache.embedded_path(Compression::Release, emulator, against))
                .map_or(0, |m| m.len());
            raw += emulator.size;
        }
        let _ = writeln!(
            out,
            "| embedded emulators, {} host ({} of them, {:.1} MB raw) | {total} | {:.2} | |",
            host.arch,
            host.embedded().len(),
            raw as f64 / 1e6,
            total as f64 / 1e6
        );
    }
    for (what, shown) in image_sizes() {
        if shown.contains('|') {
            let _ = writeln!(out, "| {what} | {shown} |");
        } else {
            let _ = writeln!(out, "| {what} | {shown} | | |");
        }
    }
    Ok(out)
}

/// The size of the image for each platform, built from the repository's `Dockerfile`
/// (after `cargo xtask dist`) on the machine's Docker engine, as Docker reports it; the
/// images are removed again.
fn image_sizes() -> Vec<(String, String)> {
    let docker = |args: &[&str]| {
        Command::new("docker")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .ok()
            .filter(|output| output.status.success())
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    };
    if docker(&["info", "--format", "{{.ServerVersion}}"]).is_none() {
        return vec![("image".to_owned(), "n/a (no Docker engine)".to_owned())];
    }
    if let Err(error) = crate::dist::run(&crate::dist::Args::default()) {
        return vec![(
            "image".to_owned(),
            format!("n/a (cargo xtask dist: {error})"),
        )];
    }
    // The classic builder leaves the stage image of the other platform untagged:
    // whatever image appears during the builds is removed afterwards.
    let all_images = || {
        docker(&["images", "--all", "--quiet", "--no-trunc"])
            .map(|ids| ids.lines().map(str::to_owned).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    let before = all_images();
    let root = workspace_root();
    let root = root.to_string_lossy();
    let sizes = ARTIFACTS
        .iter()
        .map(|artifact| {
            let platform = artifact.platform();
            let arch = platform.trim_start_matches("linux/");
            let tag = format!("binfmt-bench-{}:{arch}", std::process::id());
            // As the Dockerfile says for the classic builder: TARGETARCH, no cache.
            let built = docker(&[
                "build",
                "--quiet",
                "--no-cache",
                "--platform",
                platform,
                "--build-arg",
                &format!("TARGETARCH={arch}"),
                "--tag",
                &tag,
                &root,
            ]);
            let size = built
                .and_then(|_| docker(&["image", "inspect", "--format", "{{.Size}}", &tag]))
                .and_then(|size| size.parse::<u64>().ok());
            let _ = docker(&["rmi", "--force", &tag]);
            let shown = match size {
                Some(size) => format!("{size} | {:.2} | ≤ 10 MB", size as f64 / 1e6),
                None => "n/a (docker build failed) | |".to_owned(),
            };
            (format!("image, {platform}"), shown)
        })
        .collect();
    for id in all_images() {
        if !before.contains(&id) {
            let _ = docker(&["rmi", &id]);
        }
    }
    sizes
}

fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// The CPU, its cores and the kernel.
fn machine() -> String {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .and_then(|rest| rest.split_once(':'))
        .map(|(_, model)| model.trim().to_owned())
        .unwrap_or_else(|| std::env::consts::ARCH.to_owned());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{model}, {cores} cores, Linux {}", kernel.trim())
}
