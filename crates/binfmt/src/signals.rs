//! Waiting for a stop signal (SIGTERM or SIGINT) with a timeout, for `binfmt apply
//! --watch`.
//!
//! The self-pipe pattern: the handler (signal-hook's) only writes a byte to one end of
//! a socket pair, and the sleep between rounds is a read with a timeout on the other
//! end, so a signal ends the sleep at once and no thread is started (binfmt must stay
//! single-threaded to enter another mount namespace, see `binfmt_misc::persist`).
//!
//! A handler is needed even though the default action of SIGTERM is to exit: as pid 1
//! of a container (binfmt as a DaemonSet's entrypoint) the kernel drops signals whose
//! action is the default, and Kubernetes would wait out the grace period and kill it.

use std::io::{self, Read};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use signal_hook::consts::{SIGINT, SIGTERM};

/// A registration of handlers for SIGTERM and SIGINT.
pub struct StopSignals {
    read: UnixStream,
}

impl StopSignals {
    /// Installs the handlers; from now on the signals end [`wait`](Self::wait) instead
    /// of the process.
    pub fn install() -> io::Result<StopSignals> {
        let (read, write) = UnixStream::pair()?;
        signal_hook::low_level::pipe::register(SIGTERM, write.try_clone()?)?;
        signal_hook::low_level::pipe::register(SIGINT, write)?;
        Ok(StopSignals { read })
    }

    /// Waits up to `timeout` for a stop signal; true when one came.
    pub fn wait(&mut self, timeout: Duration) -> io::Result<bool> {
        self.read.set_read_timeout(Some(timeout))?;
        let mut byte = [0];
        match self.read.read(&mut byte) {
            Ok(_) => Ok(true),
            // The time is up (EAGAIN), or another signal interrupted the read: the next
            // round simply comes a little early.
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                Ok(false)
            }
            Err(error) => Err(error),
        }
    }
}
