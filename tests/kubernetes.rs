//! The Kubernetes manifests (`deploy/kubernetes/`): valid against the Kubernetes API
//! schema, least privileged, and carrying a valid binfmt config.
//!
//! No cluster runs here; the containers the manifests describe run for real on the
//! Docker engine with the same privileges, arguments and config in
//! `docker::the_image_does_what_setup_qemu_action_asks_on_a_real_engine`.
//!
//! The schema check uses `kubernetes-validate` (PyPI; it bundles the API's JSON
//! schemas, so it works offline), and the manifests are read with the PyYAML it
//! depends on. `.ci/run` installs it.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::util::{Run, workspace_root};

/// The oldest Kubernetes release the manifests are checked against (the first with
/// `appArmorProfile` in the security context), and the newest the validator knows.
const KUBERNETES_VERSIONS: [Option<&str>; 2] = [Some("1.30.0"), None];

const INSTALL_VALIDATOR: &str = "pip install kubernetes-validate (.ci/run does)";

fn manifests() -> Vec<PathBuf> {
    ["daemonset.yaml", "build-pod.yaml"]
        .into_iter()
        .map(|name| workspace_root().join("deploy/kubernetes").join(name))
        .collect()
}

/// Every document of a YAML file, as JSON.
pub fn documents(path: &std::path::Path) -> Vec<Value> {
    let output = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))",
        ])
        .arg(path)
        .output()
        .unwrap_or_else(|error| panic!("cannot run python3: {error}; {INSTALL_VALIDATOR}"));
    assert!(
        output.status.success(),
        "cannot read {} as YAML: {}; {INSTALL_VALIDATOR}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON from python")
}

/// The DaemonSet's document of `kind`.
fn daemonset(kind: &str) -> Value {
    documents(&workspace_root().join("deploy/kubernetes/daemonset.yaml"))
        .into_iter()
        .find(|document| document["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in daemonset.yaml"))
}

/// The binfmt config the DaemonSet's ConfigMap holds.
pub fn daemonset_config() -> String {
    daemonset("ConfigMap")["data"]["config.toml"]
        .as_str()
        .expect("config.toml in the ConfigMap")
        .to_owned()
}

/// The DaemonSet container's arguments.
pub fn daemonset_args() -> Vec<String> {
    let container = &daemonset("DaemonSet")["spec"]["template"]["spec"]["containers"][0];
    container["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|arg| arg.as_str().expect("string argument").to_owned())
        .collect()
}

#[test]
fn the_manifests_match_the_kubernetes_schema() {
    for version in KUBERNETES_VERSIONS {
        let mut command = Command::new("kubernetes-validate");
        command.arg("--strict");
        if let Some(version) = version {
            command.args(["--kubernetes-version", version]);
        }
        command.args(manifests());
        let run = Run::of(command);
        assert!(
            run.code.is_some(),
            "kubernetes-validate did not run: {run}; {INSTALL_VALIDATOR}"
        );
        assert_eq!(run.code, Some(0), "{run}");
        // One line per resource: ConfigMap, DaemonSet, Pod.
        assert_eq!(
            run.stdout.matches(" passed for resource ").count(),
            3,
            "{run}"
        );
    }
}

/// Both run binfmt as uid 0 with nothing else: not privileged, no capability, no
/// escalation, read-only root, no host namespaces; the only host path is the node's
/// binfmt_misc mount.
#[test]
fn the_manifests_ask_for_the_smallest_privileges_that_work() {
    let mut binfmt_containers = 0;
    for path in manifests() {
        for document in documents(&path) {
            let pod = match document["kind"].as_str() {
                Some("DaemonSet") => &document["spec"]["template"]["spec"],
                Some("Pod") => &document["spec"],
                _ => continue,
            };
            for key in ["hostPID", "hostNetwork", "hostIPC", "hostUsers"] {
                assert!(pod[key].is_null(), "{key} in {}", path.display());
            }
            for volume in pod["volumes"].as_array().expect("volumes") {
                if !volume["hostPath"].is_null() {
                    assert_eq!(volume["hostPath"]["path"], "/proc/sys/fs/binfmt_misc");
                }
            }
            let containers = [&pod["initContainers"], &pod["containers"]];
            for container in containers.iter().filter_map(|c| c.as_array()).flatten() {
                let image = container["image"].as_str().unwrap_or_default();
                if !image.starts_with("binfmt:") {
                    continue;
                }
                binfmt_containers += 1;
                let security = &container["securityContext"];
                assert_eq!(
                    security["readOnlyRootFilesystem"],
                    true,
                    "{}",
                    path.display()
                );
                assert_eq!(security["privileged"], false);
                assert_eq!(security["allowPrivilegeEscalation"], false);
                assert_eq!(security["runAsUser"], 0);
                assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
                assert!(security["capabilities"]["add"].is_null());
                let mounts: Vec<&str> = container["volumeMounts"]
                    .as_array()
                    .expect("volumeMounts")
                    .iter()
                    .filter_map(|mount| mount["mountPath"].as_str())
                    .collect();
                assert!(mounts.contains(&"/host/binfmt_misc"), "{mounts:?}");
                assert!(
                    mounts.contains(&"/var/lib/binfmt"),
                    "emulators on disk: {mounts:?}"
                );
            }
        }
    }
    assert_eq!(
        binfmt_containers, 2,
        "the DaemonSet's and the build pod's init container"
    );
}

/// The DaemonSet re-asserts the registrations (`--watch`) from a config that binfmt
/// accepts.
#[test]
fn the_daemonset_config_and_arguments_are_valid() {
    let args = daemonset_args();
    assert_eq!(
        args,
        [
            "apply",
            "--config",
            "/etc/binfmt/config.toml",
            "--watch",
            "60"
        ]
    );
    let config = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("daemonset-config.toml");
    std::fs::write(&config, daemonset_config()).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_binfmt"));
    command.args(["apply", "--check", "--config"]).arg(&config);
    let run = Run::of(command).success();
    assert!(run.stderr.contains("into /host/binfmt_misc"), "{run}");
    assert!(run.stderr.contains("emulators in /var/lib/binfmt"), "{run}");
}
