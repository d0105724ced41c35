//! Running one program of a workload: in the userland (`chroot`), with its output in
//! a log, in a process group of its own that is killed after the workload's timeout;
//! and the mounts the programs expect in the root.

use std::fs;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};

/// How one workload ended on one architecture.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Passed(Duration),
    /// Why, with the end of its log.
    Failed(String),
    /// It could not be tested here (no port, the mirror lacks a package): not a pass.
    Unavailable(String),
    /// Not run: an earlier workload it needs did not pass, or it does not apply.
    NotRun(String),
}

/// How many lines of a failed program's log its verdict carries.
pub const TAIL_LINES: usize = 12;

/// A finished (or killed) command.
pub struct Finished {
    /// `None` when it was killed after its timeout.
    pub status: Option<ExitStatus>,
    pub elapsed: Duration,
    /// stdout and stderr, interleaved, as written to the log.
    pub output: String,
}

impl Finished {
    pub fn succeeded(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }
}

/// Runs `command` with stdout and stderr into `log`, in a process group of its own
/// that is killed if it runs longer than `timeout`.
pub fn run_logged(command: &mut Command, log: &Path, timeout: Duration) -> Result<Finished> {
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

/// Runs `command` (a program of the userland and its arguments) in `rootfs` with
/// `chroot`, killed after `timeout`; `Ok(Ok((time, output)))` when it exited 0,
/// `Ok(Err(reason))` when not.
pub fn chroot_step(
    rootfs: &Path,
    log: &Path,
    timeout: Duration,
    command: &[&str],
) -> Result<Result<(Duration, String), String>> {
    let mut chroot = Command::new("chroot");
    chroot
        .arg(rootfs)
        .args(command)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LC_ALL", "C")
        .env("HOME", "/root")
        .env("DEBIAN_FRONTEND", "noninteractive");
    let run = run_logged(&mut chroot, log, timeout)?;
    Ok(if run.succeeded() {
        Ok((run.elapsed, run.output))
    } else {
        Err(format!("`{}`: {}", command.join(" "), failure(&run, log)))
    })
}

/// Why a finished command did not pass, with the end of its log.
pub fn failure(run: &Finished, log: &Path) -> String {
    let how = match run.status {
        Some(status) => status.to_string(),
        None => format!(
            "killed after {:.0} s (its timeout)",
            run.elapsed.as_secs_f64()
        ),
    };
    format!(
        "{how}; the end of {}:\n    {}",
        log.display(),
        tail(&run.output, TAIL_LINES).join("\n    ")
    )
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> Vec<&str> {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

/// Mounts what the workloads' programs expect in the root (it has an empty /dev,
/// and a user namespace cannot create device nodes): the few device nodes, bound
/// from the machine's; /proc, bound recursively from this namespace's (JVM, node and
/// Go read /proc/self, /proc/cpuinfo; QEMU answers some of it itself); a tmpfs on
/// /dev/shm (POSIX semaphores, which multiprocessing needs). The mounts vanish with
/// the namespace.
pub fn mount_basics(rootfs: &Path) -> Result<()> {
    for name in ["null", "zero", "full", "random", "urandom", "tty"] {
        let source = Path::new("/dev").join(name);
        let node = rootfs.join("dev").join(name);
        if !source.exists() {
            continue;
        }
        fs::File::create(&node).with_context(|| format!("cannot create {}", node.display()))?;
        rustix::mount::mount_bind(&source, &node).with_context(|| {
            format!(
                "cannot bind-mount {} on {}",
                source.display(),
                node.display()
            )
        })?;
    }
    let proc_dir = rootfs.join("proc");
    fs::create_dir_all(&proc_dir)
        .with_context(|| format!("cannot create {}", proc_dir.display()))?;
    // Recursive: this namespace's /proc has the private binfmt_misc instance mounted
    // below it, and a plain bind of a tree with locked submounts is refused.
    rustix::mount::mount_bind_recursive("/proc", &proc_dir)
        .with_context(|| format!("cannot bind-mount /proc on {}", proc_dir.display()))?;
    let shm = rootfs.join("dev/shm");
    fs::create_dir_all(&shm).with_context(|| format!("cannot create {}", shm.display()))?;
    rustix::mount::mount(
        "tmpfs",
        &shm,
        "tmpfs",
        rustix::mount::MountFlags::NOSUID | rustix::mount::MountFlags::NODEV,
        Some(c"mode=1777"),
    )
    .with_context(|| format!("cannot mount a tmpfs on {}", shm.display()))?;
    Ok(())
}

/// Removes `dir` and everything below it; a missing one is fine.
pub fn remove_tree(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(anyhow!("cannot remove {}: {e}", dir.display()))
        }
        _ => Ok(()),
    }
}

/// The first `name` in `$PATH`.
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// What apt could not download because the mirror answered 404: `name version` for a
/// package (apt prints `Err:N URL suite/component arch NAME ARCH VERSION`, then the
/// status on the next line), or what the line names otherwise (an index: `trixie/main
/// s390x Packages`).
pub fn not_found(log: &str) -> Vec<String> {
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

/// Packages apt says the architecture's index does not have (`E: Unable to locate
/// package NAME`, `Package 'NAME' has no installation candidate`).
pub fn not_in_index(log: &str) -> Vec<String> {
    let mut missing = Vec::new();
    for line in log.lines() {
        let name = line
            .split_once("Unable to locate package ")
            .map(|(_, name)| name.trim())
            .or_else(|| {
                line.split_once("Package '")
                    .and_then(|(_, rest)| rest.split_once("' has no installation candidate"))
                    .map(|(name, _)| name)
            });
        if let Some(name) = name
            && !missing.iter().any(|m| m == name)
        {
            missing.push(name.to_owned());
        }
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn packages_missing_from_an_index_are_named() {
        let log = "\
E: Unable to locate package nodejs
Package 'default-jdk-headless' has no installation candidate
E: Unable to locate package nodejs
";
        assert_eq!(not_in_index(log), ["nodejs", "default-jdk-headless"]);
        assert!(not_in_index("E: Sub-process /usr/bin/dpkg returned an error code (1)").is_empty());
    }

    #[test]
    fn a_killed_command_says_it_hit_its_timeout_and_shows_the_last_lines() {
        let dir = std::env::temp_dir().join(format!("conformance-step-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let log = dir.join("sleep.log");
        let run = run_logged(
            Command::new("sh").args(["-c", "echo one; echo two; exec sleep 30"]),
            &log,
            Duration::from_millis(300),
        )
        .unwrap();
        assert!(run.status.is_none());
        let text = failure(&run, &log);
        assert!(text.contains("(its timeout)"), "{text}");
        assert!(text.contains("one\n    two"), "{text}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
