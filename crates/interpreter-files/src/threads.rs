//! The only threads binfmt starts: scoped ones that decode and check emulators on
//! every core, and that are gone from the process when the work returns.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// `work` applied to every item, on as many threads as there are cores (and items);
/// results in order.
pub(crate) fn on_every_core<T: Sync, R: Send>(
    items: &[T],
    work: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(items.len());
    if threads <= 1 {
        return items.iter().map(work).collect();
    }
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new(items.iter().map(|_| None).collect());
    in_threads(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(index) else {
                        break;
                    };
                    let result = work(item);
                    if let Ok(mut results) = results.lock() {
                        results[index] = Some(result);
                    }
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .into_iter()
        .map(|result| result.unwrap_or_else(|| unreachable!("every item ran")))
        .collect()
}

/// Runs `work` with a [`std::thread::scope`], then waits until the threads it started
/// are gone from the process, not just joined.
///
/// binfmt must be single-threaded when it next calls `unshare(CLONE_NEWUSER)` (`binfmt
/// run`, right after registering) or `setns(CLONE_NEWNS)` (`apply --watch`): the kernel
/// refuses both while another thread exists. A joined thread has only woken its joiner;
/// it leaves the thread group a few microseconds later, at the end of its exit. So this
/// counts the entries of `/proc/self/task` until they are back to what they were
/// (without `/proc` it cannot tell, and does not wait).
pub(crate) fn in_threads<'env, R>(
    work: impl for<'scope> FnOnce(&'scope std::thread::Scope<'scope, 'env>) -> R,
) -> R {
    let threads = || {
        std::fs::read_dir("/proc/self/task")
            .map(Iterator::count)
            .ok()
    };
    let before = threads();
    let result = std::thread::scope(work);
    if let Some(before) = before {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        while threads().is_some_and(|now| now > before) && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    /// Regression: a caller may unshare a user namespace right after, which the kernel
    /// refuses while another thread exists, and a joined thread lingers for a few
    /// microseconds (about one unshare in four failed here without the wait). Each
    /// attempt runs in a child process, which has only the thread that forked it.
    ///
    /// The forks happen in a test process of their own (this test binary run again
    /// for this one test, on one test thread): a child forked while other tests' threads
    /// hold the allocator's lock would wait for it forever.
    #[test]
    #[allow(unsafe_code)] // fork(2), unshare(2), waitpid(2), _exit(2): libc has no safe ones.
    fn the_threads_are_gone_when_in_threads_returns() {
        const ALONE: &str = "BINFMT_TEST_IN_THREADS_ALONE";
        if std::env::var_os(ALONE).is_none() {
            let output = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "threads::tests::the_threads_are_gone_when_in_threads_returns",
                    "--test-threads=1",
                    "--nocapture",
                ])
                .env(ALONE, "1")
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(
                output.status.success() && stdout.contains("1 passed"),
                "the test alone failed:\n{stdout}{}",
                String::from_utf8_lossy(&output.stderr)
            );
            return;
        }
        let mut failed = 0;
        for _ in 0..100 {
            // SAFETY: the child only spawns and joins a thread, reads /proc and calls
            // unshare(2) before _exit(2); the parent waits for it.
            match unsafe { libc::fork() } {
                0 => {
                    in_threads(|scope| {
                        scope.spawn(|| std::hint::black_box((0..10_000u64).sum::<u64>()));
                    });
                    // SAFETY: a system call on no memory of this process.
                    let unshared = unsafe { libc::unshare(libc::CLONE_NEWUSER) } == 0;
                    // SAFETY: ends the child without running anything of the parent's.
                    unsafe { libc::_exit(if unshared { 0 } else { 1 }) };
                }
                -1 => panic!("fork: {}", io::Error::last_os_error()),
                child => {
                    let mut status = 0;
                    // SAFETY: `status` is a live local the call writes an int to.
                    assert_eq!(unsafe { libc::waitpid(child, &mut status, 0) }, child);
                    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
                        failed += 1;
                    }
                }
            }
        }
        assert_eq!(
            failed, 0,
            "unshare(CLONE_NEWUSER) failed right after in_threads in {failed} of 100 children \
             (or user namespaces are disabled on this machine)"
        );
    }
}
