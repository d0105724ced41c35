//! What an image the documented commands (docs/building.md) built holds besides its binary (which
//! `docker` checks): the OCI labels, against git and Cargo, and the SBOMs, the man
//! pages and the completions, against `dist/`. Called by the Docker test for every
//! image it builds.

use std::process::Command;

use crate::util::{dist, docker, report, workspace_root};

/// The image's OCI labels: what the documented build commands pass (the workspace's
/// version, the checkout's commit and origin) and the licenses of what it holds.
pub(crate) fn check_labels(tag: &str) {
    let labels = docker(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config.Labels}}",
        tag,
    ])
    .success();
    let labels: serde_json::Value = serde_json::from_str(labels.stdout.trim()).expect("labels");
    let git = |args: &[&str]| {
        let output = Command::new("git")
            .args(args)
            .current_dir(workspace_root())
            .output()
            .expect("run git");
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    };
    let origin = git(&["remote", "get-url", "origin"]);
    if origin.is_empty() {
        report(&format!(
            "docker: this checkout has no remote named origin, so {tag}'s \
             org.opencontainers.image.source label is empty, as the documented commands make it"
        ));
    }
    let expected = [
        ("org.opencontainers.image.title", "binfmt".to_owned()),
        ("org.opencontainers.image.source", origin),
        (
            "org.opencontainers.image.revision",
            git(&["rev-parse", "HEAD"]),
        ),
        (
            "org.opencontainers.image.version",
            env!("CARGO_PKG_VERSION").to_owned(),
        ),
        (
            "org.opencontainers.image.licenses",
            format!("({}) AND GPL-2.0-only", env!("CARGO_PKG_LICENSE")),
        ),
    ];
    for (label, value) in expected {
        assert_eq!(
            labels[label],
            value.as_str(),
            "{tag}: label {label} in {labels}"
        );
    }
}

/// The image carries the SBOM of its own binary, `/usr/share/doc/binfmt/sbom.spdx.json`,
/// as `cargo xtask dist` wrote it: the one of dist/'s SBOMs that names the sha256 of
/// the image's `/usr/bin/binfmt`.
pub(crate) fn check_sboms(tag: &str, binary: &[u8]) {
    use sha2::Digest as _;
    const IN_IMAGE: &str = "/usr/share/doc/binfmt/sbom.spdx.json";
    let in_image = copy_out(tag, IN_IMAGE);
    let digest = hex::encode(sha2::Sha256::digest(binary));
    let describing: Vec<(String, Vec<u8>)> = std::fs::read_dir(dist())
        .expect("dist/")
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".spdx.json"))
        .map(|name| {
            let bytes = std::fs::read(dist().join(&name)).unwrap();
            (name, bytes)
        })
        .filter(|(_, bytes)| String::from_utf8_lossy(bytes).contains(&digest))
        .collect();
    assert_eq!(
        describing.len(),
        1,
        "{tag}: one SBOM in dist/ names /usr/bin/binfmt's sha256 {digest}"
    );
    let (name, bytes) = &describing[0];
    assert!(in_image == *bytes, "{tag}: {IN_IMAGE} is not dist/{name}");
}

/// The image carries binfmt(1) and every subcommand's page, and the bash, zsh and fish
/// completions, each the one `cargo xtask dist` wrote.
pub(crate) fn check_man_pages_and_completions(tag: &str) {
    let man = dist().join("man");
    let pages: Vec<String> = std::fs::read_dir(&man)
        .unwrap_or_else(|error| panic!("{}: {error}", man.display()))
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(pages.contains(&"binfmt.1".to_owned()), "{pages:?}");
    let completions = [
        (
            "binfmt.bash",
            "/usr/share/bash-completion/completions/binfmt",
        ),
        ("_binfmt", "/usr/share/zsh/vendor-completions/_binfmt"),
        (
            "binfmt.fish",
            "/usr/share/fish/vendor_completions.d/binfmt.fish",
        ),
    ];
    let wanted = pages
        .iter()
        .map(|page| (format!("man/{page}"), format!("/usr/share/man/man1/{page}")))
        .chain(
            completions
                .iter()
                .map(|(file, path)| (format!("completions/{file}"), (*path).to_owned())),
        );
    for (in_dist, in_image) in wanted {
        let expected = std::fs::read(dist().join(&in_dist)).unwrap();
        assert!(
            copy_out(tag, &in_image) == expected,
            "{tag}: {in_image} is not dist/{in_dist}"
        );
    }
}

/// The file at `path` in the image `tag`.
fn copy_out(tag: &str, path: &str) -> Vec<u8> {
    let container = docker(&["create", tag]).success().stdout.trim().to_owned();
    let copy = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("docker-copy-{}", std::process::id()));
    let _ = std::fs::remove_file(&copy);
    let copied = docker(&[
        "cp",
        &format!("{container}:{path}"),
        copy.to_str().expect("UTF-8 path"),
    ]);
    let _ = docker(&["rm", "--volumes", &container]);
    copied.success();
    let bytes = std::fs::read(&copy).unwrap_or_else(|error| panic!("{tag}: {path}: {error}"));
    let _ = std::fs::remove_file(&copy);
    bytes
}
