//! `binfmt --version`: `binfmt/<version> qemu/<version> rust/<version>`, as
//! tonistiigi/binfmt prints `go/<version>`.

use crate::commands::lines::print_stdout;
use crate::outcome::{CommandError, Completion};

/// Prints the versions.
pub fn run() -> Result<Completion, CommandError> {
    print_stdout(&format!(
        "binfmt/{} qemu/{} rust/{}\n",
        env!("CARGO_PKG_VERSION"),
        qemu_catalog::emulator::QEMU,
        env!("BINFMT_RUSTC_VERSION")
    ))?;
    Ok(Completion::Complete)
}
