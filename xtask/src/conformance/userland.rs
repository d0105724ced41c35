//! Building a Debian root filesystem with mmdebstrap under the emulators (every
//! maintainer script and trigger runs emulated), and judging the build.

use std::path::Path;
use std::process::Command;

use anyhow::{Result, anyhow};

use crate::conformance::step::{self, Outcome, chroot_step, run_logged};
use crate::conformance::workload::Workload;

/// What to build.
pub struct Bootstrap<'a> {
    pub suite: &'a str,
    /// Debian's name of the architecture.
    pub debian: &'a str,
    /// Packages beyond the Essential set.
    pub include: &'a [&'a str],
    /// `deb URL` of the mirror, without suite and component.
    pub mirror: &'a str,
    /// Where the packages are kept between runs (`sync-in`/`sync-out`).
    pub cache: &'a Path,
}

/// Builds the root at `rootfs` (log `dir/<name>.log`), killed after `workload`'s
/// timeout. Passes when mmdebstrap succeeds, its log shows libc-bin's ldconfig
/// trigger processed, and `dpkg --audit` in the root finds nothing half-installed.
/// A package the mirror answers 404 for, or one the index lacks, makes it
/// unavailable: not a verdict on the emulator.
pub fn build(spec: &Bootstrap, workload: Workload, rootfs: &Path, dir: &Path) -> Result<Outcome> {
    for path in [rootfs, spec.cache] {
        if path.to_string_lossy().contains(['\'', '\n']) {
            return Err(anyhow!(
                "{} contains a quote or newline: mmdebstrap's hooks cannot name it",
                path.display()
            ));
        }
    }
    let quoted_cache = format!("'{}'", spec.cache.display());
    let mut mmdebstrap = Command::new("mmdebstrap");
    mmdebstrap.args([
        "--mode=unshare",
        "--variant=essential",
        &format!("--arch={}", spec.debian),
        "--verbose",
        // Only what each workload needs: recommends would double the emulated dpkg time.
        "--aptopt=APT::Install-Recommends \"false\"",
        // Keep the Essential packages' .debs in the archive directory for sync-out.
        "--skip=essential/unlink",
        "--setup-hook=mkdir -p \"$1\"/var/cache/apt/archives",
        &format!("--setup-hook=sync-in {quoted_cache} /var/cache/apt/archives/"),
        &format!("--customize-hook=sync-out /var/cache/apt/archives {quoted_cache}"),
    ]);
    if !spec.include.is_empty() {
        mmdebstrap.arg(format!("--include={}", spec.include.join(",")));
    }
    mmdebstrap
        .arg(spec.suite)
        .arg(rootfs)
        .arg(format!("deb {} {} main", spec.mirror, spec.suite));
    let log = dir.join(format!("{}.log", workload.name()));
    let run = run_logged(&mut mmdebstrap, &log, workload.timeout())?;
    if !run.succeeded() {
        let missing = step::not_found(&run.output);
        if !missing.is_empty() {
            return Ok(Outcome::Unavailable(format!(
                "the mirror returns 404 for {}: not a verdict on the emulator",
                missing.join(", ")
            )));
        }
        let absent = step::not_in_index(&run.output);
        if !absent.is_empty() {
            return Ok(Outcome::Unavailable(format!(
                "{} {} has no {}: not a verdict on the emulator",
                spec.suite,
                spec.debian,
                absent.join(", ")
            )));
        }
        return Ok(Outcome::Failed(step::failure(&run, &log)));
    }
    if !run.output.contains("Processing triggers for libc-bin") {
        return Ok(Outcome::Failed(format!(
            "mmdebstrap succeeded, but {} shows no ldconfig trigger (libc-bin) processed",
            log.display()
        )));
    }
    // Without devices yet: dpkg needs none to read its database.
    let audit_log = dir.join(format!("{}-dpkg-audit.log", workload.name()));
    Ok(
        match chroot_step(rootfs, &audit_log, workload.timeout(), &["dpkg", "--audit"])? {
            Ok((_, output)) if output.trim().is_empty() => Outcome::Passed(run.elapsed),
            Ok((_, output)) => Outcome::Failed(format!("dpkg --audit: {}", output.trim())),
            Err(reason) => Outcome::Failed(reason),
        },
    )
}
