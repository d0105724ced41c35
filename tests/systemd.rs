//! The systemd unit (`deploy/systemd/binfmt.service`) and its example config: the unit
//! passes `systemd-analyze verify` against this machine's own systemd units, is
//! ordered around systemd-binfmt.service as it must be, and the config is valid.
//!
//! systemd is not pid 1 on the test machines, so nothing here starts the unit:
//! `systemd_boot` does, under Debian's systemd booted in a container. What it runs,
//! `binfmt apply`, is tested in `apply` (including putting entries back after
//! systemd-binfmt's wipe, which `--watch` does and the oneshot gets from `PartOf=`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{Run, workspace_root};

fn unit_path() -> PathBuf {
    workspace_root().join("deploy/systemd/binfmt.service")
}

/// Where this machine keeps systemd's own units.
fn system_units() -> &'static Path {
    ["/usr/lib/systemd/system", "/lib/systemd/system"]
        .into_iter()
        .map(Path::new)
        .find(|dir| dir.join("systemd-binfmt.service").is_file())
        .expect(
            "no systemd-binfmt.service in /usr/lib/systemd/system: install systemd \
             (apt-get install systemd) to verify the unit",
        )
}

/// Every `Key=value` of `section`, in order.
fn values(unit: &str, section: &str, key: &str) -> Vec<String> {
    let mut current = "";
    let mut found = Vec::new();
    for line in unit.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name;
        } else if current == section
            && let Some((k, v)) = line.split_once('=')
            && k.trim() == key
        {
            found.extend(v.split_whitespace().map(str::to_owned));
        }
    }
    found
}

/// `systemd-analyze verify` in a root holding this machine's systemd units, the unit
/// under test at /etc/systemd/system and a binfmt binary at the path `ExecStart=` names
/// (verify checks that it exists and is executable).
#[test]
fn the_unit_passes_systemd_analyze_verify() {
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("systemd-root");
    let _ = fs::remove_dir_all(&root);
    for dir in ["usr/lib/systemd", "etc/systemd/system", "usr/local/bin"] {
        fs::create_dir_all(root.join(dir)).unwrap();
    }
    let copy = Command::new("cp")
        .arg("-a")
        .arg(system_units())
        .arg(root.join("usr/lib/systemd/system"))
        .status()
        .expect("run cp");
    assert!(copy.success(), "copying {}", system_units().display());
    fs::copy(unit_path(), root.join("etc/systemd/system/binfmt.service")).unwrap();
    let exec_start = values(
        &fs::read_to_string(unit_path()).unwrap(),
        "Service",
        "ExecStart",
    );
    let binary = exec_start
        .first()
        .expect("ExecStart=")
        .trim_start_matches('/');
    fs::copy(env!("CARGO_BIN_EXE_binfmt"), root.join(binary)).unwrap();

    let mut command = Command::new("systemd-analyze");
    command
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .args(["--man=no", "binfmt.service"]);
    let run = Run::of(command);
    // verify exits 0 on warnings (an unknown key, an ordering cycle it broke): any
    // output at all is a failure.
    assert_eq!(run.code, Some(0), "{run}");
    assert_eq!(run.stdout, "", "{run}");
    assert_eq!(run.stderr, "", "{run}");
    fs::remove_dir_all(&root).unwrap();
}

#[test]
fn the_unit_follows_systemd_binfmt_and_precedes_the_container_engines() {
    let unit = fs::read_to_string(unit_path()).unwrap();
    let has = |section: &str, key: &str, value: &str| {
        values(&unit, section, key).iter().any(|v| v == value)
    };
    assert!(has("Service", "Type", "oneshot"));
    assert!(has("Service", "RemainAfterExit", "yes"));
    // systemd-binfmt wipes every entry when it starts: run after it, again when it
    // restarts (PartOf), and whenever it is started (WantedBy).
    assert!(has("Unit", "After", "systemd-binfmt.service"));
    assert!(has("Unit", "PartOf", "systemd-binfmt.service"));
    assert!(has("Install", "WantedBy", "systemd-binfmt.service"));
    assert!(has("Install", "WantedBy", "multi-user.target"));
    for engine in ["docker.service", "containerd.service", "kubelet.service"] {
        assert!(has("Unit", "Before", engine), "Before={engine}");
    }
    let exec_start = values(&unit, "Service", "ExecStart").join(" ");
    assert_eq!(
        exec_start,
        "/usr/local/bin/binfmt apply --config /etc/binfmt/config.toml"
    );
    // A mount namespace of its own would take binfmt away from the host's.
    for key in [
        "PrivateTmp",
        "ProtectSystem",
        "PrivateMounts",
        "ProtectHome",
    ] {
        assert!(values(&unit, "Service", key).is_empty(), "{key}= set");
    }
}

#[test]
fn the_example_config_is_valid() {
    let config = workspace_root().join("deploy/systemd/config.toml");
    let mut command = Command::new(env!("CARGO_BIN_EXE_binfmt"));
    command.args(["apply", "--check", "--config"]).arg(&config);
    let run = Run::of(command).success();
    assert!(run.stderr.contains("OK: "), "{run}");
    assert!(run.stderr.contains("with flags POCF"), "{run}");
}
