//! Deterministic crash points for the kill-safety tests, in debug builds only.
//!
//! Every step that changes state (a write to binfmt_misc, an interpreter file renamed
//! into place) calls [`step`] first. With `BINFMT_DEBUG_KILL_AT=N` in the environment
//! of a debug build, the process sends itself SIGKILL just before its `N`th step, so
//! a test can stop a run at every point between two writes and check what it left.
//! With `BINFMT_LOG=debug`, each step is logged as `step N: ...`, so the test knows
//! how many there are.
//!
//! Release builds (`cfg(debug_assertions)` off) compile [`step`] to nothing and never
//! read the variable: the shipped binary has no way to be told to kill itself.

/// The environment variable naming the step to die before (1-based).
pub const KILL_AT_ENV: &str = "BINFMT_DEBUG_KILL_AT";

/// Marks the point just before a state-changing step described by `what`.
#[inline]
pub fn step(what: &dyn std::fmt::Display) {
    #[cfg(debug_assertions)]
    debug::step(what);
    #[cfg(not(debug_assertions))]
    let _ = what;
}

#[cfg(debug_assertions)]
mod debug {
    use std::sync::atomic::{AtomicUsize, Ordering};

    static STEPS: AtomicUsize = AtomicUsize::new(0);

    pub(super) fn step(what: &dyn std::fmt::Display) {
        let number = STEPS.fetch_add(1, Ordering::SeqCst) + 1;
        log::debug!("step {number}: {what}");
        let kill_at = std::env::var(super::KILL_AT_ENV)
            .ok()
            .and_then(|value| value.parse::<usize>().ok());
        if kill_at == Some(number) {
            log::debug!("step {number}: killed by {}", super::KILL_AT_ENV);
            let _ = rustix::process::kill_process(
                rustix::process::getpid(),
                rustix::process::Signal::KILL,
            );
            // SIGKILL cannot be caught; this is never reached.
            std::process::abort();
        }
    }
}
