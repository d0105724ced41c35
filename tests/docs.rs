//! The documents hold together: every relative link in README.md, docs/*.md and the
//! other Markdown files points at a file that exists and, with `#anchor`, at a heading in it; and every block the
//! slow tests run or check as a document shows it is where they look, so moving text
//! between documents fails here, in the quick tests, not only in a Docker run.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Component, Path, PathBuf};

use crate::util::{DocSection, doc_blocks, workspace_root};

/// Every section a slow test reads blocks from, with how many it uses.
const SECTIONS_THE_TESTS_READ: [DocSection; 4] = [
    crate::docker::BUILD_COMMANDS,
    crate::dist::VERIFYING_A_RELEASE,
    crate::failing_build::SESSION,
    crate::systemd_boot::UNIT_BY_HAND,
];

#[test]
fn every_block_a_test_reads_is_where_it_looks() {
    for section in SECTIONS_THE_TESTS_READ {
        let blocks = section.blocks();
        assert!(
            blocks.len() >= section.blocks,
            "{}, \"{}\": {} {} blocks, the tests read {}",
            section.file,
            section.heading,
            blocks.len(),
            section.language,
            section.blocks
        );
    }
    // The build commands parse as docker.rs runs them: one per builder and platform.
    let commands = crate::docker::build_commands();
    for platform in [
        "linux/amd64",
        "linux/arm64",
        "linux/ppc64le",
        "linux/s390x",
        "linux/riscv64",
    ] {
        for builder in [
            crate::docker::Builder::BuildKit,
            crate::docker::Builder::Classic,
        ] {
            assert!(
                commands
                    .iter()
                    .any(|command| command.builder == builder && command.platform == platform),
                "docs/building.md: no {builder:?} build for {platform}"
            );
        }
    }
}

#[test]
fn doc_blocks_reads_a_section_up_to_the_next_heading_of_its_level() {
    let text = "# Title\n\n## One\n\n```sh\necho one\n# a comment, not a heading\n```\n\n\
                ### Inside\n\n```console\n$ x\n```\n\n```sh\necho two\n```\n\n## Two\n\n\
                ```sh\necho three\n```\n";
    assert_eq!(
        doc_blocks(text, "One", "sh").unwrap(),
        ["echo one\n# a comment, not a heading\n", "echo two\n"]
    );
    assert_eq!(doc_blocks(text, "Inside", "console").unwrap(), ["$ x\n"]);
    assert_eq!(doc_blocks(text, "Inside", "sh").unwrap(), ["echo two\n"]);
    assert_eq!(doc_blocks(text, "Two", "sh").unwrap(), ["echo three\n"]);
    assert!(doc_blocks(text, "Three", "sh").is_err());
    assert!(doc_blocks("## A\n```sh\nopen\n", "A", "sh").is_err());
}

/// The documents whose links are checked: README.md, ARCHITECTURE.md, the READMEs of
/// qemu-blobs/ and fuzz/, and every docs/*.md.
fn documents() -> Vec<PathBuf> {
    let root = workspace_root().canonicalize().expect("the workspace root");
    let mut documents: Vec<PathBuf> = [
        "README.md",
        "ARCHITECTURE.md",
        "qemu-blobs/README.md",
        "fuzz/README.md",
    ]
    .iter()
    .map(|name| root.join(name))
    .collect();
    let mut docs: Vec<PathBuf> = fs::read_dir(root.join("docs"))
        .expect("read docs/")
        .map(|entry| entry.expect("a docs/ entry").path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "md"))
        .collect();
    docs.sort();
    documents.extend(docs);
    documents
}

#[test]
fn every_relative_link_in_the_docs_points_at_a_file_and_heading() {
    let root = workspace_root().canonicalize().expect("the workspace root");
    let mut broken = Vec::new();
    let mut checked = 0;
    for document in documents() {
        let text = fs::read_to_string(&document).expect("read a document");
        let name = document.strip_prefix(&root).unwrap().display().to_string();
        for target in link_targets(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, anchor) = match target.split_once('#') {
                Some((path, anchor)) => (path, Some(anchor)),
                None => (target.as_str(), None),
            };
            let file = if path.is_empty() {
                document.clone()
            } else {
                normalize(&document.parent().unwrap().join(path))
            };
            if !file.starts_with(&root) || !file.exists() {
                broken.push(format!("{name}: ({target}): no file {}", file.display()));
                continue;
            }
            if let Some(anchor) = anchor {
                let headings = if file.is_file() {
                    anchors(&fs::read_to_string(&file).unwrap_or_default())
                } else {
                    BTreeSet::new()
                };
                if !headings.contains(anchor) {
                    broken.push(format!(
                        "{name}: ({target}): no heading #{anchor} in {}",
                        file.strip_prefix(&root).unwrap().display()
                    ));
                }
            }
        }
    }
    assert!(
        checked > 50,
        "only {checked} links found: is the reader broken?"
    );
    assert!(
        broken.is_empty(),
        "links that point nowhere (fix the link, or the heading it names):\n{}",
        broken.join("\n")
    );
}

#[test]
fn the_link_reader_sees_links_and_github_anchors() {
    let text = "See [a](docs/a.md#x) and [b\nc](../b.md).\n```sh\n[not](a-link)\n```\n\
                ## `binfmt apply` and its config file\n## Sharing: FEX, WSL2\n## Sharing: FEX, WSL2\n";
    assert_eq!(link_targets(text), ["docs/a.md#x", "../b.md"]);
    let anchors = anchors(text);
    assert!(
        anchors.contains("binfmt-apply-and-its-config-file"),
        "{anchors:?}"
    );
    assert!(anchors.contains("sharing-fex-wsl2"), "{anchors:?}");
    assert!(anchors.contains("sharing-fex-wsl2-1"), "{anchors:?}");
}

/// The targets of the Markdown links `[text](target)` outside code blocks.
fn link_targets(text: &str) -> Vec<String> {
    let mut targets = Vec::new();
    for line in outside_code_blocks(text, true) {
        let mut rest = line.as_str();
        while let Some(start) = rest.find("](") {
            let after = &rest[start + 2..];
            let Some(end) = after.find(')') else { break };
            let target = &after[..end];
            if !target.is_empty() && !target.contains(char::is_whitespace) {
                targets.push(target.to_owned());
            }
            rest = &after[end..];
        }
    }
    targets
}

/// The anchors GitHub gives a document's headings: lowercased, every character but
/// letters, digits, `-`, `_` and spaces dropped, spaces made `-`, and `-1`, `-2`, ...
/// after a repeated one.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut anchors = BTreeSet::new();
    for line in outside_code_blocks(text, false) {
        let hashes = line.bytes().take_while(|&byte| byte == b'#').count();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let slug: String = line[hashes..]
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let mut anchor = slug.clone();
        let mut repeat = 0;
        while anchors.contains(&anchor) {
            repeat += 1;
            anchor = format!("{slug}-{repeat}");
        }
        anchors.insert(anchor);
    }
    anchors
}

/// The lines of a Markdown text that are not inside a fenced code block. A link's text
/// may run over two lines: with `join`, a line that holds an unclosed `[` is joined
/// with the next.
fn outside_code_blocks(text: &str, join: bool) -> Vec<String> {
    let mut lines = Vec::new();
    let mut fenced = false;
    let mut pending = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        if pending.is_empty() {
            pending = line.to_owned();
        } else {
            pending.push(' ');
            pending.push_str(line);
        }
        if !join || pending.matches('[').count() <= pending.matches(']').count() {
            lines.push(std::mem::take(&mut pending));
        }
    }
    lines.push(pending);
    lines
}

/// `path` with `.` and `..` resolved without touching the filesystem.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}
