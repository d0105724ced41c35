//! Waiting for an exclusive `flock(2)` for a bounded time, and naming who holds it.
//!
//! binfmt runs take turns on a binfmt_misc instance and on an interpreter directory
//! with `flock(2)` (see [`BinfmtMisc::lock`](crate::BinfmtMisc::lock)). A run that
//! waited for ever behind a stuck holder would hang a systemd oneshot or a
//! Kubernetes init container with no word of why, so every wait is bounded
//! ([`DEFAULT_TIMEOUT`] unless the caller says otherwise), and a run that gives up
//! says which process holds the lock: the kernel lists every lock with its holder's
//! pid in [`/proc/locks`](https://man7.org/linux/man-pages/man5/proc.5.html)
//! (`F_GETLK` reports POSIX locks only, never a `flock`).

use std::fmt;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use rustix::fs::FlockOperation;
use rustix::io::Errno;

use crate::report::Fixable;

/// How long a run waits for another binfmt's lock by default: a run takes well under
/// a second here (`cargo xtask bench`), and a hundred times that with every probe
/// killed at its 5 s limit is still far below it; a systemd oneshot (no start timeout
/// by default) or an init container then fails within half a minute, naming the
/// holder, instead of hanging.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the kernel lists every file lock (`fs/locks.c`, `locks_show`).
pub const PROC_LOCKS: &str = "/proc/locks";

/// How often a waiting run tries again. `flock(2)` has no timeout and a signal to cut
/// it short would need a handler in a process that must stay single-threaded (see
/// ARCHITECTURE.md); a retry every 50 ms costs nothing and hands the lock over
/// within 50 ms of its release.
const RETRY: Duration = Duration::from_millis(50);

/// A process that holds a lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    /// Its pid, in the pid namespace of the `/proc` that was read.
    pub pid: u32,
    /// Its command line (or command name), when `/proc/<pid>` could be read.
    pub command: Option<String>,
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.command {
            Some(command) => write!(f, "pid {} ({command})", self.pid),
            None => write!(f, "pid {}", self.pid),
        }
    }
}

/// Another process held a lock for longer than a run would wait: the table's or an
/// interpreter directory's. The one wording of a busy lock, wherever it is met.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockBusy {
    /// What is locked.
    pub path: PathBuf,
    /// How long the run waited.
    pub waited: Duration,
    /// Who holds it (empty when `/proc/locks` does not show them: a holder in another
    /// pid namespace).
    pub holders: Vec<Holder>,
}

impl fmt::Display for LockBusy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} is locked by another process (", self.path.display())?;
        if self.holders.is_empty() {
            f.write_str(
                "held by a process this pid namespace does not show, such as one in another \
                 container",
            )?;
        } else {
            for (index, holder) in self.holders.iter().enumerate() {
                if index > 0 {
                    f.write_str(", ")?;
                }
                holder.fmt(f)?;
            }
        }
        write!(
            f,
            ") that did not release it within {} s; nothing was changed",
            self.waited.as_secs()
        )
    }
}

impl std::error::Error for LockBusy {}

impl Fixable for LockBusy {
    fn fix(&self) -> Option<String> {
        let stop = if self.holders.is_empty() {
            "find it with `grep FLOCK /proc/locks` on the host".to_owned()
        } else {
            let pids: Vec<String> = self
                .holders
                .iter()
                .map(|holder| holder.pid.to_string())
                .collect();
            format!("kill {}", pids.join(" "))
        };
        Some(format!(
            "wait for it and run again; if it is stuck, stop it ({stop}); or wait longer: \
             --lock-timeout SECONDS (BINFMT_LOCK_TIMEOUT)"
        ))
    }
}

/// Why the lock was not taken.
#[derive(Debug)]
pub enum LockWaitError {
    /// Another process held it for the whole timeout.
    Busy(LockBusy),
    /// `flock(2)` itself failed.
    Failed(Errno),
}

/// Takes an exclusive `flock(2)` on `fd`, the file or directory at `path`, waiting at
/// most `timeout` for another holder to release it (`Duration::ZERO`: one try).
/// `waiting` is called once if it has to wait, to say so.
pub fn lock_exclusive(
    fd: impl AsFd,
    path: &Path,
    timeout: Duration,
    waiting: impl FnOnce(),
) -> Result<(), LockWaitError> {
    let deadline = Instant::now() + timeout;
    let mut waiting = Some(waiting);
    loop {
        match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(()),
            Err(Errno::WOULDBLOCK) => {}
            Err(Errno::INTR) => continue,
            Err(errno) => return Err(LockWaitError::Failed(errno)),
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(LockWaitError::Busy(LockBusy {
                path: path.to_owned(),
                waited: timeout,
                holders: holders(&fd),
            }));
        }
        if let Some(say) = waiting.take() {
            say();
        }
        sleep(RETRY.min(deadline - now));
    }
}

/// The processes that hold a `flock(2)` on the file `fd` is open on, from
/// [`PROC_LOCKS`]; this process itself left out. Empty when that cannot be read.
pub fn holders(fd: impl AsFd) -> Vec<Holder> {
    let Ok(stat) = rustix::fs::fstat(&fd) else {
        return Vec::new();
    };
    let Ok(text) = std::fs::read_to_string(PROC_LOCKS) else {
        return Vec::new();
    };
    let file = LockedFile {
        major: rustix::fs::major(stat.st_dev),
        minor: rustix::fs::minor(stat.st_dev),
        inode: stat.st_ino,
    };
    let me = std::process::id();
    flock_holders(&text, &file)
        .into_iter()
        .filter(|pid| *pid != me)
        .map(|pid| Holder {
            pid,
            command: command_of(pid),
        })
        .collect()
}

/// A file as `/proc/locks` names it: `MAJOR:MINOR:INODE`, the device in hex.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockedFile {
    pub major: u32,
    pub minor: u32,
    pub inode: u64,
}

/// The pids that hold a `FLOCK` on `file`, in the text of `/proc/locks`:
///
/// ```text
/// 1: FLOCK  ADVISORY  WRITE 4242 00:2f:1 0 EOF
/// 1: -> FLOCK  ADVISORY  WRITE 4343 00:2f:1 0 EOF
/// ```
///
/// (the second line is a process blocked waiting for the first one's lock: not a
/// holder). Lines it does not understand are skipped.
pub fn flock_holders(text: &str, file: &LockedFile) -> Vec<u32> {
    let wanted = format!("{:02x}:{:02x}:{}", file.major, file.minor, file.inode);
    let mut pids = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // id, type, advisory/mandatory, read/write, pid, file, start, end
        let [_, "FLOCK", _, _, pid, locked, ..] = fields.as_slice() else {
            continue;
        };
        if *locked != wanted {
            continue;
        }
        if let Ok(pid) = pid.parse::<u32>()
            && !pids.contains(&pid)
        {
            pids.push(pid);
        }
    }
    pids
}

/// `/proc/<pid>/cmdline` with spaces for the NULs, or the command name from
/// `/proc/<pid>/comm`; `None` when neither can be read (the process is gone).
fn command_of(pid: u32) -> Option<String> {
    if let Ok(bytes) = std::fs::read(format!("/proc/{pid}/cmdline")) {
        let words: Vec<String> = bytes
            .split(|byte| *byte == 0)
            .filter(|word| !word.is_empty())
            .map(|word| String::from_utf8_lossy(word).into_owned())
            .collect();
        if !words.is_empty() {
            return Some(words.join(" "));
        }
    }
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|name| name.trim_end().to_owned())
}

#[cfg(test)]
mod tests {
    use std::fs::File;

    use super::*;

    #[test]
    fn finds_the_holders_of_one_file_and_not_its_waiters() {
        let text = "1: FLOCK  ADVISORY  WRITE 4242 00:2f:1 0 EOF\n\
                    1: -> FLOCK  ADVISORY  WRITE 4343 00:2f:1 0 EOF\n\
                    2: POSIX  ADVISORY  WRITE 77 00:2f:1 0 EOF\n\
                    3: FLOCK  ADVISORY  WRITE 88 00:2f:12 0 EOF\n\
                    4: OFDLCK ADVISORY  READ  -1 fd:01:1 0 EOF\n\
                    5: FLOCK  ADVISORY  WRITE 99 fd:01:1 0 EOF\n\
                    garbage\n";
        let binfmt_misc = LockedFile {
            major: 0,
            minor: 0x2f,
            inode: 1,
        };
        assert_eq!(flock_holders(text, &binfmt_misc), [4242]);
        let disk = LockedFile {
            major: 0xfd,
            minor: 1,
            inode: 1,
        };
        assert_eq!(flock_holders(text, &disk), [99]);
        assert_eq!(
            flock_holders(text, &LockedFile { inode: 2, ..disk }),
            [] as [u32; 0]
        );
    }

    #[test]
    fn gives_up_after_the_timeout_naming_the_holder() {
        let path = std::env::temp_dir().join(format!("binfmt-lock-test-{}", std::process::id()));
        let first = File::create(&path).unwrap();
        // A second open file description: flock(2) locks those, not processes, so
        // this process contends with itself.
        let second = File::open(&path).unwrap();
        lock_exclusive(&first, &path, Duration::ZERO, || {}).unwrap();
        let started = Instant::now();
        let mut said = false;
        let error = lock_exclusive(&second, &path, Duration::from_millis(200), || said = true)
            .expect_err("the lock is held");
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert!(said, "a run that waits says so");
        // The holder is this process, which `holders` leaves out; /proc/locks lists it.
        let LockWaitError::Busy(busy) = &error else {
            panic!("expected a busy lock, got {error:?}");
        };
        assert!(busy.holders.is_empty(), "{busy:?}");
        assert_eq!(busy.path, path);
        let stat = rustix::fs::fstat(&first).unwrap();
        let file = LockedFile {
            major: rustix::fs::major(stat.st_dev),
            minor: rustix::fs::minor(stat.st_dev),
            inode: stat.st_ino,
        };
        let text = std::fs::read_to_string(PROC_LOCKS).unwrap();
        assert_eq!(flock_holders(&text, &file), [std::process::id()]);
        drop(first);
        lock_exclusive(&second, &path, Duration::from_millis(200), || {}).unwrap();
        std::fs::remove_file(&path).unwrap();
    }
}
