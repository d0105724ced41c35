//! The workloads: what each runs in the userland, how long it may take, and what
//! counts as a pass. Each is one that broke another registrar's pinned QEMU (issue
//! #23); their programs are the files in `programs/`, copied into the root.

use std::fs;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::conformance::arch::Target;
use crate::conformance::step::{self, Outcome, chroot_step};

/// One column of the matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Workload {
    /// mmdebstrap of the suite with every workload's packages: emulated dpkg, every
    /// maintainer script, libc-bin's ldconfig trigger.
    Bootstrap,
    /// python3 importing C extension modules.
    Python3,
    /// perl with POSIX.
    Perl,
    /// ldconfig rebuilding the cache.
    Ldconfig,
    /// GNU tar extracting and re-creating a tree of thousands of files.
    Tar,
    /// python3 multiprocessing pools (fork and spawn).
    Multiprocessing,
    /// node with worker threads.
    Node,
    /// A Go program with goroutines and channels, built with `go build` in the root.
    Go,
    /// javac and java (Debian's OpenJDK, headless) on a small class.
    Java,
    /// apt-get update and apt installing a package with maintainer scripts.
    Apt,
    /// A separate mmdebstrap of bullseye, arm64 only: the libc-bin trigger segfault.
    Bullseye,
}

impl Workload {
    /// Every workload, in the order they run and the matrix shows them.
    pub const ALL: [Workload; 11] = [
        Workload::Bootstrap,
        Workload::Python3,
        Workload::Perl,
        Workload::Ldconfig,
        Workload::Tar,
        Workload::Multiprocessing,
        Workload::Node,
        Workload::Go,
        Workload::Java,
        Workload::Apt,
        Workload::Bullseye,
    ];

    /// The name in arguments, the matrix and the record.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Bootstrap => "bootstrap",
            Workload::Python3 => "python3",
            Workload::Perl => "perl",
            Workload::Ldconfig => "ldconfig",
            Workload::Tar => "tar",
            Workload::Multiprocessing => "multiprocessing",
            Workload::Node => "node",
            Workload::Go => "go",
            Workload::Java => "java",
            Workload::Apt => "apt",
            Workload::Bullseye => "bullseye",
        }
    }

    /// What it checks, for the docs.
    pub fn describe(self) -> &'static str {
        match self {
            Workload::Bootstrap => {
                "mmdebstrap of the suite (variant essential) with every selected workload's \
                 packages: emulated dpkg and maintainer scripts; passes when libc-bin's \
                 ldconfig trigger was processed and `dpkg --audit` finds nothing"
            }
            Workload::Python3 => {
                "python3 importing hashlib, sqlite3, ssl, zlib prints `uname -m` of the \
                 architecture"
            }
            Workload::Perl => "perl with POSIX prints the same `uname -m` as python3",
            Workload::Ldconfig => "ldconfig rebuilds the cache; `ldconfig -p` lists libc.so.6",
            Workload::Tar => {
                "GNU tar archives a tree of 6,000 files (symlinks, hard links, long names), \
                 extracts it, compares (`tar -d`), re-creates the archive from the copy and \
                 compares again (tonistiigi/binfmt#285, #287: openat2 EINVAL)"
            }
            Workload::Multiprocessing => {
                "python3 multiprocessing: fork and spawn pools of 4 map 400 tasks and a \
                 Process sends through a Queue; results compared"
            }
            Workload::Node => {
                "node: four worker_threads count primes and post back; compared with the \
                 main thread (tonistiigi/binfmt#215: node segfaults)"
            }
            Workload::Go => {
                "`go build` of a goroutine and channel pipeline inside the root, then run: \
                 8 workers, an asynchronously preempted spinning goroutine (golang/go#70329: \
                 Go 1.23 hangs under qemu-user)"
            }
            Workload::Java => {
                "javac then java on a class with a thread pool and a parallel stream \
                 (Debian's default-jdk-headless)"
            }
            Workload::Apt => {
                "apt-get update, then apt installs tzdata (debconf, postinst) inside the \
                 emulated root; `dpkg --audit` finds nothing (tonistiigi/binfmt#245: apt \
                 failing at random)"
            }
            Workload::Bullseye => {
                "a separate mmdebstrap of Debian 11 bullseye (arm64 only; essential + apt), \
                 its libc-bin ldconfig trigger, then ldconfig (tonistiigi/binfmt#231, \
                 #240, #244, #298)"
            }
        }
    }

    /// How long it may run before it is killed (measured on 2 shared cores under TCG,
    /// with room to spare: javac, `go build` and the bootstraps are the slow ones).
    pub fn timeout(self) -> Duration {
        Duration::from_secs(60)
            * match self {
                Workload::Bootstrap | Workload::Bullseye => 60,
                Workload::Go | Workload::Java | Workload::Apt => 25,
                Workload::Python3 | Workload::Perl | Workload::Ldconfig => 5,
                Workload::Tar | Workload::Multiprocessing | Workload::Node => 15,
            }
    }

    /// The packages the bootstrap adds for it (beyond the Essential set).
    pub fn packages(self) -> &'static [&'static str] {
        match self {
            Workload::Python3 | Workload::Multiprocessing => &["python3"],
            Workload::Node => &["nodejs"],
            Workload::Go => &["golang-go"],
            Workload::Java => &["default-jdk-headless"],
            Workload::Apt => &["apt"],
            _ => &[],
        }
    }

    /// Parses a workload's name.
    pub fn parse(name: &str) -> Result<Workload, String> {
        Workload::ALL
            .into_iter()
            .find(|w| w.name() == name)
            .ok_or_else(|| {
                let known: Vec<&str> = Workload::ALL.iter().map(|w| w.name()).collect();
                format!("unknown workload {name:?}; known: {}", known.join(", "))
            })
    }
}

/// The programs, copied into the root's /root/conformance.
const PROGRAMS: [(&str, &str); 5] = [
    ("pipeline.go", include_str!("programs/pipeline.go")),
    ("workers.js", include_str!("programs/workers.js")),
    ("pool.py", include_str!("programs/pool.py")),
    ("Workers.java", include_str!("programs/Workers.java")),
    ("tree.sh", include_str!("programs/tree.sh")),
];

/// Writes the programs into `rootfs`/root/conformance.
pub fn install_programs(rootfs: &Path) -> Result<()> {
    let dir = rootfs.join("root/conformance");
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (name, text) in PROGRAMS {
        let path = dir.join(name);
        fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// Runs `script` with /bin/sh in the root; passes when it exits 0 and prints `marker`.
fn script(
    workload: Workload,
    rootfs: &Path,
    log: &Path,
    script: &str,
    marker: &str,
) -> Result<Outcome> {
    Ok(
        match chroot_step(rootfs, log, workload.timeout(), &["/bin/sh", "-ec", script])? {
            Ok((elapsed, output)) if output.contains(marker) => Outcome::Passed(elapsed),
            Ok((_, output)) => Outcome::Failed(format!(
                "exited 0 without printing {marker:?}; the end of {}:\n    {}",
                log.display(),
                step::tail(&output, step::TAIL_LINES).join("\n    ")
            )),
            Err(reason) => Outcome::Failed(reason),
        },
    )
}

/// Runs one workload (not the bootstraps) in the built root `rootfs`, its log in
/// `dir`; `machine` is what python3 said `uname -m` is, for perl to agree with.
pub fn run_in_root(
    workload: Workload,
    target: &Target,
    rootfs: &Path,
    dir: &Path,
    machine: &mut Option<String>,
) -> Result<Outcome> {
    let log = dir.join(format!("{}.log", workload.name()));
    let timeout = workload.timeout();
    Ok(match workload {
        Workload::Bootstrap | Workload::Bullseye => {
            unreachable_outcome("the bootstraps are not run in a root")
        }
        Workload::Python3 => match chroot_step(
            rootfs,
            &log,
            timeout,
            &[
                "python3",
                "-c",
                "import hashlib, platform, sqlite3, ssl, zlib; print(platform.machine())",
            ],
        )? {
            Ok((elapsed, output)) => {
                let said = output.trim().to_owned();
                if said.starts_with(target.uname) {
                    *machine = Some(said);
                    Outcome::Passed(elapsed)
                } else {
                    Outcome::Failed(format!(
                        "python3 says the machine is {said:?}, not {}*",
                        target.uname
                    ))
                }
            }
            Err(reason) => Outcome::Failed(reason),
        },
        Workload::Perl => match chroot_step(
            rootfs,
            &log,
            timeout,
            &[
                "perl",
                "-MPOSIX",
                "-e",
                "print((POSIX::uname())[4], \"\\n\")",
            ],
        )? {
            Ok((elapsed, output)) => {
                let said = output.trim();
                match machine.as_deref() {
                    Some(machine) if said == machine => Outcome::Passed(elapsed),
                    Some(machine) => Outcome::Failed(format!(
                        "perl says the machine is {said:?}, python3 {machine:?}"
                    )),
                    None if said.starts_with(target.uname) => Outcome::Passed(elapsed),
                    None => Outcome::Failed(format!("perl says the machine is {said:?}")),
                }
            }
            Err(reason) => Outcome::Failed(reason),
        },
        Workload::Ldconfig => ldconfig(rootfs, dir, "")?,
        Workload::Tar => script(
            workload,
            rootfs,
            &log,
            "exec /bin/sh /root/conformance/tree.sh",
            "tar ok",
        )?,
        Workload::Multiprocessing => script(
            workload,
            rootfs,
            &log,
            "cd /root/conformance && exec python3 pool.py",
            "pool ok",
        )?,
        Workload::Node => script(
            workload,
            rootfs,
            &log,
            "cd /root/conformance && exec node workers.js",
            "workers ok",
        )?,
        // Module mode without a go.mod builds the one file; no toolchain download, no
        // proxy, no C compiler (there is none in the root).
        Workload::Go => script(
            workload,
            rootfs,
            &log,
            "cd /root/conformance && export GOTOOLCHAIN=local GOPROXY=off \
             GOFLAGS=-buildvcs=false CGO_ENABLED=0 GOCACHE=/root/.cache/go-build \
             GOPATH=/root/go && go version && go build -o pipeline pipeline.go && \
             ./pipeline",
            "pipeline ok",
        )?,
        // 256 MB of heap: armhf's JVM is a 32-bit process, whose default (a quarter of
        // the machine's memory) does not fit its address space.
        Workload::Java => script(
            workload,
            rootfs,
            &log,
            "cd /root/conformance && mkdir -p classes && \
             javac -J-Xmx256m -d classes Workers.java && \
             java -Xmx256m -cp classes Workers",
            "java ok",
        )?,
        Workload::Apt => apt(rootfs, dir)?,
    })
}

/// An outcome for a call that cannot happen (kept out of `unwrap`/panics).
fn unreachable_outcome(why: &str) -> Outcome {
    Outcome::Failed(format!("internal error: {why}"))
}

/// `ldconfig` in the root, then `ldconfig -p` listing libc.so.6; `suffix` names the
/// logs apart (the bullseye root's).
pub fn ldconfig(rootfs: &Path, dir: &Path, suffix: &str) -> Result<Outcome> {
    let timeout = Workload::Ldconfig.timeout();
    let list_log = dir.join(format!("ldconfig-p{suffix}.log"));
    Ok(
        match chroot_step(
            rootfs,
            &dir.join(format!("ldconfig{suffix}.log")),
            timeout,
            &["ldconfig"],
        )? {
            Ok((elapsed, _)) => match chroot_step(rootfs, &list_log, timeout, &["ldconfig", "-p"])?
            {
                Ok((listed, cache))
                    if cache
                        .lines()
                        .any(|l| l.trim_start().starts_with("libc.so.6 ")) =>
                {
                    Outcome::Passed(elapsed + listed)
                }
                Ok(_) => Outcome::Failed(format!(
                    "ldconfig -p does not list libc.so.6 (see {})",
                    list_log.display()
                )),
                Err(reason) => Outcome::Failed(reason),
            },
            Err(reason) => Outcome::Failed(reason),
        },
    )
}

/// The package the apt workload installs: small, and its maintainer scripts do real
/// work (debconf questions answered non-interactively, /etc/localtime written).
const APT_PACKAGE: &str = "tzdata";

/// apt-get update and `apt-get install --reinstall tzdata` in the root (a reinstall
/// runs the maintainer scripts too, where another package already pulled it in),
/// then dpkg says it is installed and `dpkg --audit` finds nothing.
fn apt(rootfs: &Path, dir: &Path) -> Result<Outcome> {
    // The name server the machine uses, for apt in the root (mmdebstrap removed its
    // copy): the namespace shares the machine's network.
    let resolv = rootfs.join("etc/resolv.conf");
    let _ = fs::remove_file(&resolv);
    if let Ok(text) = fs::read("/etc/resolv.conf") {
        fs::write(&resolv, text).with_context(|| format!("cannot write {}", resolv.display()))?;
    }
    let log = dir.join("apt.log");
    let commands = format!(
        "apt-get update && apt-get install -y --no-install-recommends --reinstall \
         {APT_PACKAGE} && test -e /var/lib/dpkg/info/{APT_PACKAGE}.postinst && \
         test \"$(dpkg-query -W -f='${{Status}}' {APT_PACKAGE})\" = 'install ok installed' && \
         test -z \"$(dpkg --audit)\" && echo 'apt ok'"
    );
    let outcome = script(Workload::Apt, rootfs, &log, &commands, "apt ok")?;
    Ok(match outcome {
        Outcome::Failed(reason) => {
            let text = fs::read_to_string(&log).unwrap_or_default();
            let missing = step::not_found(&text);
            if missing.is_empty() {
                Outcome::Failed(reason)
            } else {
                Outcome::Unavailable(format!(
                    "the mirror returns 404 for {}: not a verdict on the emulator",
                    missing.join(", ")
                ))
            }
        }
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_names_round_trip_and_unknown_ones_are_refused() {
        for workload in Workload::ALL {
            assert_eq!(Workload::parse(workload.name()), Ok(workload));
            assert!(!workload.describe().is_empty());
            assert!(workload.timeout() >= Duration::from_secs(60));
        }
        assert!(
            Workload::parse("rust")
                .unwrap_err()
                .contains("known: bootstrap")
        );
    }

    #[test]
    fn every_program_checks_what_its_workload_looks_for() {
        for (file, marker) in [
            ("pipeline.go", "pipeline ok"),
            ("workers.js", "workers ok"),
            ("pool.py", "pool ok"),
            ("Workers.java", "java ok"),
            ("tree.sh", "tar ok"),
        ] {
            let text = PROGRAMS.iter().find(|(name, _)| *name == file).unwrap().1;
            assert!(text.contains(marker), "{file} never prints {marker:?}");
        }
    }
}
