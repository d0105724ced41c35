//! Running the execution probes in an empty root: each architecture's tiny program
//! (see `qemu_catalog::exit_status`), executed where nothing but the probes exists,
//! so that only a binfmt_misc entry with flag `F` can serve it.
//!
//! This module is the one place where binfmt forks and execs. One [`run_probes`]:
//!
//! 1. makes a fresh directory, [`mkdir(2)`] mode 0700, under the first candidate that
//!    is writable and not mounted `noexec` ([`statvfs(2)`]): `$TMPDIR` or /tmp,
//!    /var/tmp, /run, /dev/shm, and last `/` (a `FROM scratch` container has no /tmp);
//! 2. writes every probe into it, mode 0755, and closes them all before the first
//!    fork, so that no child inherits a descriptor still open for writing (exec would
//!    fail with `ETXTBSY`);
//! 3. starts every probe at once: [`fork(2)`] (through `std::process::Command`), and in
//!    the child [`chroot(2)`] into the directory, [`chdir(2)`] to `/` and
//!    [`execve(2)`] `/<cpu>` with an empty environment and /dev/null as stdio. Nothing
//!    but the probes exists in that root: an entry without `F` names an interpreter
//!    the kernel cannot find there, so only an entry whose interpreter the kernel
//!    opened at registration can run a foreign probe;
//! 4. collects the exit statuses ([`waitpid(2)`] with `WNOHANG`, polling) until
//!    [`TIMEOUT`] for each probe a CPU has to start ([`deadline`]), then kills what
//!    still runs with `SIGKILL` ([`kill(2)`]);
//! 5. removes the directory.
//!
//! `chroot` needs `CAP_SYS_CHROOT` ([`capget(2)`] says whether this process has it):
//! root on a host, in a `--privileged` container and in the tests' user namespaces.
//! Without it the probes run unconfined, from the directory in place; that proves a
//! program of the architecture runs here, but an entry without `F` whose interpreter
//! exists on this filesystem could have served it, so the result says which it was
//! ([`Confinement`]) and its readers weigh it.
//!
//! [`mkdir(2)`]: https://man7.org/linux/man-pages/man2/mkdir.2.html
//! [`statvfs(2)`]: https://man7.org/linux/man-pages/man3/statvfs.3.html
//! [`fork(2)`]: https://man7.org/linux/man-pages/man2/fork.2.html
//! [`chroot(2)`]: https://man7.org/linux/man-pages/man2/chroot.2.html
//! [`chdir(2)`]: https://man7.org/linux/man-pages/man2/chdir.2.html
//! [`execve(2)`]: https://man7.org/linux/man-pages/man2/execve.2.html
//! [`waitpid(2)`]: https://man7.org/linux/man-pages/man2/waitpid.2.html
//! [`kill(2)`]: https://man7.org/linux/man-pages/man2/kill.2.html
//! [`capget(2)`]: https://man7.org/linux/man-pages/man2/capget.2.html

use std::ffi::CString;
use std::fmt;
use std::fs;
use std::io::{self, Write as _};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use qemu_catalog::{Arch, Probe, Proof};
use rustix::io::Errno;

/// How long a probe may run before it is killed. A probe exits at once; an emulator
/// starts in tens of milliseconds. Only a hung interpreter takes this long.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// How long `probes` started at once may run before what still runs is killed:
/// [`TIMEOUT`] for each probe a CPU has to start, on `cpus` CPUs. They share the
/// CPUs: on a slow or busy machine nine emulators starting together on one CPU took
/// 6 to 10 s (measured in Debian's kernels booted under qemu-system, `cargo xtask
/// kernels`), and were reported hung with 5 s for all of them.
pub fn deadline(probes: usize, cpus: usize) -> Duration {
    let rounds = probes.div_ceil(cpus.max(1)).max(1);
    TIMEOUT.saturating_mul(u32::try_from(rounds).unwrap_or(u32::MAX))
}

/// Where probes ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Confinement {
    /// In an empty root (chroot): only an entry with flag `F` can serve a foreign
    /// probe.
    EmptyRoot,
    /// In place, without chroot (no `CAP_SYS_CHROOT`): an entry without `F` whose
    /// interpreter exists here could have served it too.
    Unconfined,
}

/// What one probe did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// It exited with the status that proves its architecture runs.
    Proved(Proof),
    /// It did not.
    Failed(ProbeFailure),
}

/// How a probe failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeFailure {
    /// `execve` failed with this errno.
    Exec(i32),
    /// It exited, but not with the status the probe exits with.
    WrongStatus { status: i32, expected: String },
    /// A signal ended it.
    Signal(i32),
    /// It ran longer than the probes' [`deadline`] (whole seconds) and was killed.
    TimedOut { seconds: u64 },
    /// Waiting for it failed.
    Wait(String),
}

impl fmt::Display for ProbeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeFailure::Exec(errno) => {
                let error = io::Error::from_raw_os_error(*errno);
                write!(f, "exec failed: {error}")?;
                match Errno::from_raw_os_error(*errno) {
                    Errno::NOEXEC => {
                        f.write_str(" (no enabled binfmt_misc entry recognises the program)")
                    }
                    Errno::NOENT => f.write_str(
                        " (a file the kernel needs is not in the probe's empty root: the \
                         interpreter of an entry without flag F, or the dynamic loader of an \
                         interpreter that is not a static emulator)",
                    ),
                    Errno::LOOP => f.write_str(
                        " (the interpreter is itself handed to binfmt_misc: an entry for the \
                         interpreter's own architecture)",
                    ),
                    Errno::ACCESS => f.write_str(
                        " (the interpreter is not executable, or lies on a noexec mount)",
                    ),
                    _ => Ok(()),
                }
            }
            ProbeFailure::WrongStatus { status, expected } => write!(
                f,
                "exited with status {status}, not the {expected} the probe exits with: the \
                 entry's interpreter is not an emulator that runs this architecture"
            ),
            ProbeFailure::Signal(signal) => write!(
                f,
                "killed by signal {signal}{}",
                match *signal {
                    4 => " (SIGILL: the interpreter does not understand the program)",
                    11 => " (SIGSEGV: the interpreter crashed)",
                    _ => "",
                }
            ),
            ProbeFailure::TimedOut { seconds } => write!(
                f,
                "did not exit within {seconds} s and was killed: the interpreter hangs"
            ),
            ProbeFailure::Wait(error) => write!(f, "cannot wait for it: {error}"),
        }
    }
}

/// Every probe's outcome, in the order asked for.
#[derive(Clone, Debug)]
pub struct ProbeRun {
    /// Where they ran.
    pub confinement: Confinement,
    /// One outcome per architecture.
    pub outcomes: Vec<(Arch, ProbeOutcome)>,
}

/// Probes could not be run at all (nowhere to write them, or no way to start them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeError(pub String);

impl std::error::Error for ProbeError {}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Launch<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Launch::EmptyRoot => f.write_str("in an empty root"),
            Launch::InPlace => f.write_str("in place"),
            Launch::Through(interpreter) => write!(f, "through {}", interpreter.display()),
        }
    }
}

/// Runs probes: [`SystemProber`] for real, a fake in tests of the logic that reads them.
pub trait Prober {
    /// Runs the probes of `arches` and reports each outcome.
    fn run(&self, arches: &[Arch]) -> Result<ProbeRun, ProbeError>;
}

/// The real prober: fork, chroot, exec, as the module documentation describes.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemProber;

impl Prober for SystemProber {
    fn run(&self, arches: &[Arch]) -> Result<ProbeRun, ProbeError> {
        run_probes(arches)
    }
}

/// Runs the probes of `arches`; see the module documentation.
pub fn run_probes(arches: &[Arch]) -> Result<ProbeRun, ProbeError> {
    let confinement = if can_chroot() {
        Confinement::EmptyRoot
    } else {
        log::debug!("no CAP_SYS_CHROOT: probes run without an empty root");
        Confinement::Unconfined
    };
    let launch = match confinement {
        Confinement::EmptyRoot => Launch::EmptyRoot,
        Confinement::Unconfined => Launch::InPlace,
    };
    let outcomes = run(arches, &launch)?;
    Ok(ProbeRun {
        confinement,
        outcomes,
    })
}

/// Runs `arch`'s probe by handing it to `interpreter` as its argument
/// (`interpreter /<dir>/<cpu>`), not through binfmt_misc and not in an empty root:
/// whether an emulator file a user names runs that architecture's programs at all,
/// before it is registered.
pub fn run_through(interpreter: &Path, arch: Arch) -> Result<ProbeOutcome, ProbeError> {
    let outcomes = run(&[arch], &Launch::Through(interpreter))?;
    outcomes
        .into_iter()
        .next()
        .map(|(_, outcome)| outcome)
        .ok_or_else(|| ProbeError("no probe ran".to_owned()))
}

/// How a probe is started.
enum Launch<'a> {
    /// chroot into the probes' directory, then exec the probe.
    EmptyRoot,
    /// exec the probe where it lies.
    InPlace,
    /// exec this interpreter with the probe's path as its argument.
    Through(&'a Path),
}

/// Writes the probes of `arches` to a fresh directory and runs them all at once.
fn run(arches: &[Arch], launch: &Launch) -> Result<Vec<(Arch, ProbeOutcome)>, ProbeError> {
    let probes: Vec<Probe> = arches.iter().map(|arch| arch.probe()).collect();
    let root = ProbeRoot::create()?;
    for probe in &probes {
        root.write(probe)?;
    }
    let root_c = CString::new(root.dir.as_os_str().as_bytes())
        .map_err(|_| ProbeError(format!("{} contains a NUL byte", root.dir.display())))?;

    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let deadline = deadline(probes.len(), cpus);
    let started = Instant::now();
    let mut outcomes: Vec<Option<ProbeOutcome>> = vec![None; probes.len()];
    let mut running: Vec<(usize, Child)> = Vec::new();
    for (index, probe) in probes.iter().enumerate() {
        match spawn(&root, &root_c, probe, launch) {
            Ok(child) => running.push((index, child)),
            Err(error) => {
                outcomes[index] = Some(ProbeOutcome::Failed(ProbeFailure::Exec(
                    error.raw_os_error().unwrap_or(Errno::IO.raw_os_error()),
                )));
            }
        }
    }

    let mut pause = Duration::from_micros(500);
    while !running.is_empty() {
        running.retain_mut(|(index, child)| match child.try_wait() {
            Ok(Some(status)) => {
                let probe = &probes[*index];
                outcomes[*index] = Some(match (status.code(), status.signal()) {
                    (Some(code), _) => match probe.interpret(code) {
                        Some(proof) => ProbeOutcome::Proved(proof),
                        None => ProbeOutcome::Failed(ProbeFailure::WrongStatus {
                            status: code,
                            expected: probe.expected(),
                        }),
                    },
                    (None, Some(signal)) => ProbeOutcome::Failed(ProbeFailure::Signal(signal)),
                    (None, None) => ProbeOutcome::Failed(ProbeFailure::Wait(format!("{status}"))),
                });
                false
            }
            Ok(None) => true,
            Err(error) => {
                outcomes[*index] =
                    Some(ProbeOutcome::Failed(ProbeFailure::Wait(error.to_string())));
                false
            }
        });
        let elapsed = started.elapsed();
        if running.is_empty() {
            break;
        }
        if elapsed >= deadline {
            for (index, mut child) in running.drain(..) {
                // SIGKILL, then reap it so no zombie is left behind.
                let _ = child.kill();
                let _ = child.wait();
                outcomes[index] = Some(ProbeOutcome::Failed(ProbeFailure::TimedOut {
                    seconds: deadline.as_secs(),
                }));
            }
            break;
        }
        std::thread::sleep(pause.min(deadline - elapsed));
        // Every millisecond: the probes finish within ~15 ms of each other, and a
        // backoff to 20 ms made a rerun wait up to twice that long for the last one.
        // Only a hung probe polls until the deadline, 1000 cheap wakeups a second.
        pause = Duration::from_millis(1);
    }

    Ok(arches
        .iter()
        .zip(outcomes)
        .map(|(arch, outcome)| {
            let outcome = outcome
                .unwrap_or_else(|| ProbeOutcome::Failed(ProbeFailure::Wait("no result".into())));
            log::debug!("probe {arch}: {outcome:?} ({launch:?})");
            (*arch, outcome)
        })
        .collect())
}

/// Starts one probe; see the module documentation for what the child does.
#[allow(unsafe_code)] // Command::pre_exec: chroot(2) in the child, before execve.
fn spawn(root: &ProbeRoot, root_c: &CString, probe: &Probe, launch: &Launch) -> io::Result<Child> {
    let mut command = match launch {
        Launch::EmptyRoot => {
            let mut command = Command::new(format!("/{}", probe.file_name()));
            let root_c = root_c.clone();
            // SAFETY: the closure runs in the forked child before execve. It only makes
            // two system calls on a string allocated before the fork; it allocates
            // nothing and takes no lock.
            unsafe {
                command.pre_exec(move || {
                    rustix::process::chroot(root_c.as_c_str())?;
                    rustix::process::chdir(c"/")?;
                    Ok(())
                });
            }
            command
        }
        Launch::InPlace => {
            let mut command = Command::new(root.dir.join(probe.file_name()));
            command.current_dir(&root.dir);
            command
        }
        Launch::Through(interpreter) => {
            let mut command = Command::new(interpreter);
            command
                .arg(root.dir.join(probe.file_name()))
                .current_dir(&root.dir);
            command
        }
    };
    command
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
}

/// Whether this process may call chroot(2): `CAP_SYS_CHROOT` in its effective set,
/// which capget(2) reports relative to the process's own user namespace.
fn can_chroot() -> bool {
    rustix::thread::capabilities(None).is_ok_and(|sets| {
        sets.effective
            .contains(rustix::thread::CapabilitySet::SYS_CHROOT)
    })
}

/// The directory the probes live in for one run; removed when dropped.
struct ProbeRoot {
    dir: PathBuf,
}

impl ProbeRoot {
    /// Candidate parents, in order of preference.
    fn candidates() -> Vec<PathBuf> {
        let mut candidates = vec![std::env::temp_dir()];
        for fixed in ["/tmp", "/var/tmp", "/run", "/dev/shm", "/"] {
            let fixed = PathBuf::from(fixed);
            if !candidates.contains(&fixed) {
                candidates.push(fixed);
            }
        }
        candidates
    }

    /// Makes a fresh directory under the first candidate where a program can be
    /// executed.
    fn create() -> Result<ProbeRoot, ProbeError> {
        let mut refused = Vec::new();
        for parent in ProbeRoot::candidates() {
            match ProbeRoot::create_in(&parent) {
                Ok(root) => return Ok(root),
                Err(reason) => refused.push(format!("{}: {reason}", parent.display())),
            }
        }
        Err(ProbeError(format!(
            "no directory to run probes from ({})",
            refused.join("; ")
        )))
    }

    fn create_in(parent: &Path) -> Result<ProbeRoot, String> {
        let stat = rustix::fs::statvfs(parent).map_err(|errno| errno.to_string())?;
        if stat.f_flag.contains(rustix::fs::StatVfsMountFlags::NOEXEC) {
            return Err("mounted noexec".to_owned());
        }
        for attempt in 0..100u32 {
            let dir = parent.join(format!(".binfmt-probe-{}-{attempt}", std::process::id()));
            match fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => return Ok(ProbeRoot { dir }),
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(error) => return Err(error.to_string()),
            }
        }
        Err("100 probe directories of this process already exist".to_owned())
    }

    /// Writes one probe as `<dir>/<cpu>`, executable, and closes it.
    fn write(&self, probe: &Probe) -> Result<(), ProbeError> {
        let path = self.dir.join(probe.file_name());
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o755)
            .open(&path)
            .and_then(|mut file| file.write_all(probe.program()))
            .map_err(|error| {
                ProbeError(format!(
                    "cannot write the probe {}: {error}",
                    path.display()
                ))
            })
    }
}

impl Drop for ProbeRoot {
    fn drop(&mut self) {
        if let Err(error) = fs::remove_dir_all(&self.dir) {
            log::warn!(
                "cannot remove the probe directory {}: {error}",
                self.dir.display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_get_five_seconds_for_each_one_a_cpu_has_to_start() {
        assert_eq!(deadline(1, 2), TIMEOUT);
        assert_eq!(deadline(2, 2), TIMEOUT);
        assert_eq!(deadline(9, 2), TIMEOUT * 5);
        assert_eq!(deadline(10, 1), TIMEOUT * 10);
        assert_eq!(deadline(0, 0), TIMEOUT);
    }
}
