//! Records the compiler's version for `binfmt --version`
//! (`binfmt/<version> qemu/<version> rust/<version>`, as tonistiigi/binfmt prints
//! `go/<version>`), and gives the integration tests (`tests/`, this package's test
//! target) the switches that decide which of them are ignored, with their reason:
//! `cfg(slow_tests)` when `BINFMT_SLOW_TESTS=1` (`.ci/run` sets it), `cfg(no_docker)`
//! when `BINFMT_SKIP_DOCKER` is set (`.ci/run` sets it where no Docker engine
//! answers). libtest decides "ignored" when the test is compiled, not when it runs;
//! nothing outside the tests reads these.

use std::process::Command;

fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    // `rustc 1.95.0 (59807616e 2026-04-14)` -> `1.95.0`; "unknown" if it cannot say.
    let version = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.split_whitespace().nth(1).map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=BINFMT_RUSTC_VERSION={version}");
    println!("cargo:rerun-if-env-changed=RUSTC");

    println!("cargo::rustc-check-cfg=cfg(slow_tests)");
    println!("cargo::rustc-check-cfg=cfg(no_docker)");
    for var in ["BINFMT_SLOW_TESTS", "BINFMT_SKIP_DOCKER"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    if std::env::var_os("BINFMT_SLOW_TESTS").is_some_and(|value| value == "1") {
        println!("cargo:rustc-cfg=slow_tests");
    }
    if std::env::var_os("BINFMT_SKIP_DOCKER").is_some_and(|value| !value.is_empty()) {
        println!("cargo:rustc-cfg=no_docker");
    }
}
