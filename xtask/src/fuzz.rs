//! `cargo xtask fuzz [--seconds N] [TARGET...]`: runs every fuzz target in `fuzz/`
//! (or the ones named) for a bounded time each, and prints how many inputs each
//! tried.
//!
//! The targets are libFuzzer programs built by cargo-fuzz, which needs a nightly
//! toolchain: `rustup toolchain install nightly` and `cargo install cargo-fuzz`. Each
//! run starts from the committed inputs in `fuzz/corpus/<target>/` and keeps what it
//! discovers in `target/fuzz-corpus/<target>/`, so the committed corpus only changes
//! when someone copies a useful input there on purpose. A failing input is written to
//! `fuzz/artifacts/<target>/`; fix the bug and add the input as a regression test.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, anyhow};

use crate::workspace::workspace_root;

/// Options of `cargo xtask fuzz`.
#[derive(clap::Args)]
pub struct Args {
    /// How long to run each target, in seconds.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// The targets to run (default: every target in fuzz/Cargo.toml).
    targets: Vec<String>,
}

pub fn run(args: &Args) -> Result<()> {
    let root = workspace_root();
    let fuzz_dir = root.join("fuzz");
    check_tools(&fuzz_dir)?;
    let targets = if args.targets.is_empty() {
        list_targets(&fuzz_dir)?
    } else {
        args.targets.clone()
    };
    let mut summary = Vec::new();
    for target in &targets {
        let found = root.join("target").join("fuzz-corpus").join(target);
        std::fs::create_dir_all(&found).with_context(|| format!("creating {}", found.display()))?;
        let committed = fuzz_dir.join("corpus").join(target);
        eprintln!("fuzz: {target} for {} s", args.seconds);
        let output = cargo_fuzz(&fuzz_dir)
            .args(["run", target])
            .arg(&found)
            .arg(&committed)
            .arg("--")
            .arg(format!("-max_total_time={}", args.seconds))
            .arg("-print_final_stats=1")
            .stdout(Stdio::inherit())
            .stderr(Stdio::piped())
            .output()
            .with_context(|| format!("running cargo fuzz run {target}"))?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            // libFuzzer's report (the panic, the input's path) is what matters.
            eprintln!("{stderr}");
            return Err(anyhow!(
                "fuzz target {target} failed ({}); the input is in fuzz/artifacts/{target}/: \
                 fix the bug, add the input as a regression test, and run again",
                output.status
            ));
        }
        let runs = final_stat(&stderr, "stat::number_of_executed_units:")
            .unwrap_or_else(|| "?".to_owned());
        let corpus =
            final_stat(&stderr, "stat::new_units_added:").unwrap_or_else(|| "?".to_owned());
        summary.push(format!(
            "{target}: {runs} inputs in {} s, {corpus} new corpus entries, no failure",
            args.seconds
        ));
    }
    for line in summary {
        println!("{line}");
    }
    Ok(())
}

/// `cargo +nightly fuzz`, run in `fuzz/`, without the variables this `cargo run`
/// set for the stable toolchain.
fn cargo_fuzz(fuzz_dir: &Path) -> Command {
    let mut command = Command::new("cargo");
    command
        .args(["+nightly", "fuzz"])
        .current_dir(fuzz_dir)
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO")
        .env_remove("RUSTC")
        .env_remove("RUSTDOC")
        .env_remove("CARGO_MANIFEST_DIR")
        .env_remove("CARGO_TARGET_DIR");
    command
}

fn check_tools(fuzz_dir: &Path) -> Result<()> {
    let works = cargo_fuzz(fuzz_dir)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if works {
        Ok(())
    } else {
        Err(anyhow!(
            "`cargo +nightly fuzz` does not run: install the tools with \
             `rustup toolchain install nightly --profile minimal` and \
             `cargo install cargo-fuzz`"
        ))
    }
}

fn list_targets(fuzz_dir: &Path) -> Result<Vec<String>> {
    let output = cargo_fuzz(fuzz_dir)
        .arg("list")
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| "running cargo fuzz list".to_owned())?;
    if !output.status.success() {
        return Err(anyhow!("cargo fuzz list failed ({})", output.status));
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect())
}

/// The value of one of libFuzzer's `-print_final_stats` lines.
fn final_stat(stderr: &str, key: &str) -> Option<String> {
    stderr
        .lines()
        .find_map(|line| line.strip_prefix(key))
        .map(|value| value.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_libfuzzers_final_stats() {
        let stderr = "Done 1234 runs in 2 second(s)\n\
                      stat::number_of_executed_units: 1234\n\
                      stat::average_exec_per_sec:     617\n\
                      stat::new_units_added:          7\n";
        assert_eq!(
            final_stat(stderr, "stat::number_of_executed_units:").as_deref(),
            Some("1234")
        );
        assert_eq!(
            final_stat(stderr, "stat::new_units_added:").as_deref(),
            Some("7")
        );
        assert_eq!(final_stat(stderr, "stat::missing:"), None);
    }
}
