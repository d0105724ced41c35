//! The shape of the code, checked like rust-analyzer's `tidy`: binfmt's `main.rs`
//! stays a thin dispatcher, no source file grows past 1,000 lines, no module imports
//! its crate's root, no two modules of a crate import each other (no cycle at all),
//! and every crate takes the workspace lints. ARCHITECTURE.md says why; each failure
//! names the file and what to do.
//!
//! A small reader of Rust source, not a parser: it follows `mod name;` declarations
//! (and `#[path]`) from each crate root, and counts as an import every `crate::a::b`
//! path (resolved to the deepest module it names), every use of a child module
//! (`child::`) and every `super::` outside inline modules, after removing comments
//! and string literals.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use crate::util::workspace_root;

/// The most lines `crates/binfmt/src/main.rs` may have: parse, dispatch, exit code.
const MAIN_LINES: usize = 150;
/// The most lines any source file may have.
const FILE_LINES: usize = 1000;

#[test]
fn binfmt_main_only_parses_dispatches_and_exits() {
    let main = workspace_root().join("crates/binfmt/src/main.rs");
    let text = fs::read_to_string(&main).expect("read crates/binfmt/src/main.rs");
    let lines = text.lines().count();
    assert!(
        lines <= MAIN_LINES,
        "{} has {lines} lines, more than {MAIN_LINES}: move the logic into a module of the \
         library (crates/binfmt/src/commands/ for a command)",
        main.display()
    );
    let modules: Vec<String> = strip(&text).lines().filter_map(declared_name).collect();
    assert!(
        modules.is_empty(),
        "{} declares modules {modules:?}: declare them in lib.rs, so that the fuzz targets \
         and tests can reach them and main.rs stays a dispatcher",
        relative(&main)
    );
}

#[test]
fn no_source_file_is_over_a_thousand_lines() {
    let mut long = Vec::new();
    for file in rust_files(&workspace_root()) {
        let lines = fs::read_to_string(&file).map_or(0, |text| text.lines().count());
        if lines > FILE_LINES {
            long.push(format!("{} ({lines} lines)", relative(&file)));
        }
    }
    assert!(
        long.is_empty(),
        "split these by job, each part a module with a `//!` paragraph (at most \
         {FILE_LINES} lines each): {long:?}"
    );
}

#[test]
fn no_module_imports_its_crate_root() {
    let mut offenders = Vec::new();
    for root in crate_roots() {
        let tree = ModuleTree::read(&root);
        for (module, imports) in &tree.imports {
            if module != "crate" && imports.contains("crate") {
                offenders.push(format!("{} ({module})", relative(&tree.files[module])));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "these import an item of their crate root; move the item into a module of its own \
         and import it from there (the root only declares and re-exports): {offenders:?}"
    );
}

#[test]
fn no_two_modules_import_each_other() {
    let mut cycles = Vec::new();
    for root in crate_roots() {
        let tree = ModuleTree::read(&root);
        for cycle in strongly_connected(&tree.imports) {
            cycles.push(format!("{}: {}", relative(&root), cycle.join(" <-> ")));
        }
    }
    assert!(
        cycles.is_empty(),
        "modules that import each other, directly or around a circle: move what both need \
         into a module of its own, or pass it in: {cycles:?}"
    );
}

/// Shows that the reader finds what the checks rely on, so they cannot pass by
/// reading nothing.
#[test]
fn the_reader_sees_imports_and_cycles() {
    let text = strip(
        "use crate::a::{self, B};\n// crate::commented\nlet s = \"crate::quoted\";\n\
         use crate::{c, D};\nfn f() { child::g(); super::h(); }\nmod tests {\n    use super::*;\n}\n",
    );
    let mut modules = BTreeSet::from(["crate::a".to_owned(), "crate::c".to_owned()]);
    modules.insert("crate::m::child".to_owned());
    let found = imports_in(&text, "crate::m", &modules);
    assert_eq!(
        found,
        BTreeSet::from([
            "crate".to_owned(),
            "crate::a".to_owned(),
            "crate::c".to_owned(),
            "crate::m::child".to_owned(),
        ])
    );
    let graph = BTreeMap::from([
        ("a".to_owned(), BTreeSet::from(["b".to_owned()])),
        ("b".to_owned(), BTreeSet::from(["c".to_owned()])),
        ("c".to_owned(), BTreeSet::from(["a".to_owned()])),
        ("d".to_owned(), BTreeSet::from(["a".to_owned()])),
    ]);
    assert_eq!(strongly_connected(&graph), [vec!["a", "b", "c"]]);
    // The workspace has crates to look at.
    assert!(crate_roots().len() >= 6, "{:?}", crate_roots());
}

/// The crates under `crates/`, sorted.
fn product_crates() -> Vec<PathBuf> {
    let mut crates: Vec<PathBuf> = fs::read_dir(workspace_root().join("crates"))
        .expect("read crates/")
        .filter_map(|entry| Some(entry.ok()?.path()))
        .collect();
    crates.sort();
    crates
}

/// Every crate root checked: libraries and binaries under `crates/`, xtask, their test
/// binaries, the workspace's test binary and the fuzz targets.
fn crate_roots() -> Vec<PathBuf> {
    let root = workspace_root();
    let mut roots = Vec::new();
    for dir in product_crates() {
        for file in ["src/lib.rs", "src/main.rs", "tests/tests.rs", "build.rs"] {
            let path = dir.join(file);
            if path.is_file() {
                roots.push(path);
            }
        }
    }
    roots.push(root.join("xtask/src/main.rs"));
    roots.push(root.join("tests/tests.rs"));
    if let Ok(targets) = fs::read_dir(root.join("fuzz/fuzz_targets")) {
        roots.extend(targets.filter_map(|entry| Some(entry.ok()?.path())));
    }
    roots
}

/// The modules of one crate, their files and what each imports.
struct ModuleTree {
    files: BTreeMap<String, PathBuf>,
    imports: BTreeMap<String, BTreeSet<String>>,
}

impl ModuleTree {
    fn read(root: &Path) -> ModuleTree {
        let mut files = BTreeMap::new();
        collect(&mut files, "crate".to_owned(), root, true);
        let modules: BTreeSet<String> = files.keys().cloned().collect();
        let imports = files
            .iter()
            .map(|(module, file)| {
                let text = strip(&fs::read_to_string(file).unwrap_or_default());
                (module.clone(), imports_in(&text, module, &modules))
            })
            .collect();
        ModuleTree { files, imports }
    }
}

/// Adds `module` (in `file`) and the modules it declares, recursively. `owns_dir`:
/// the file is a crate root or a `mod.rs`, whose children sit next to it.
fn collect(files: &mut BTreeMap<String, PathBuf>, module: String, file: &Path, owns_dir: bool) {
    let Ok(text) = fs::read_to_string(file) else {
        return;
    };
    let dir = file.parent().unwrap_or(Path::new("."));
    let base = if owns_dir {
        dir.to_owned()
    } else {
        dir.join(file.file_stem().unwrap_or_default())
    };
    files.insert(module.clone(), file.to_owned());
    for (name, path) in declarations(&text) {
        let child = format!("{module}::{name}");
        if let Some(path) = path {
            collect(files, child, &dir.join(path), false);
        } else if base.join(format!("{name}.rs")).is_file() {
            collect(files, child, &base.join(format!("{name}.rs")), false);
        } else if base.join(&name).join("mod.rs").is_file() {
            collect(files, child, &base.join(&name).join("mod.rs"), true);
        }
    }
}

/// The `mod name;` declarations of a file, with the `#[path]` given on the line
/// before, if any.
fn declarations(text: &str) -> Vec<(String, Option<String>)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        let Some(name) = declared_name(line) else {
            continue;
        };
        let path = index
            .checked_sub(1)
            .and_then(|before| lines[before].trim().strip_prefix("#[path = \""))
            .and_then(|rest| rest.strip_suffix("\"]"))
            .map(str::to_owned);
        found.push((name, path));
    }
    found
}

/// `name` for a line `[pub[(...)]] mod name;`.
fn declared_name(line: &str) -> Option<String> {
    let mut rest = line.trim();
    if let Some(after) = rest.strip_prefix("pub") {
        rest = after.trim_start();
        if let Some(after) = rest.strip_prefix('(') {
            rest = after.split_once(')')?.1.trim_start();
        }
    }
    let name = rest.strip_prefix("mod ")?.trim().strip_suffix(';')?.trim();
    is_ident(name).then(|| name.to_owned())
}

/// What the (stripped) text of `module` imports among `modules`: see the module
/// documentation. The module itself is not counted.
fn imports_in(text: &str, module: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let resolve = |segments: &[&str]| -> String {
        let mut best = "crate".to_owned();
        for count in 1..=segments.len() {
            let candidate = format!("crate::{}", segments[..count].join("::"));
            if modules.contains(&candidate) {
                best = candidate;
            } else {
                break;
            }
        }
        best
    };
    let bytes = text.as_bytes();
    let mut at = 0;
    while let Some(offset) = text[at..].find("crate::") {
        let start = at + offset;
        at = start + "crate::".len();
        if start > 0 && is_ident_byte(bytes[start - 1]) && bytes[start - 1] != b'$' {
            continue;
        }
        if text[at..].starts_with('{') {
            let group = braced(&text[at..]);
            for item in split_top_level(group) {
                let first = item.trim().split("::").next().unwrap_or_default().trim();
                if is_ident(first) && first != "self" {
                    found.insert(resolve(&[first]));
                }
            }
        } else {
            let path: String = text[at..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let segments: Vec<&str> = path.split("::").filter(|s| is_ident(s)).collect();
            found.insert(resolve(&segments));
        }
    }
    // Children used by name.
    let depth = module.matches("::").count();
    for child in modules
        .iter()
        .filter(|m| m.starts_with(&format!("{module}::")) && m.matches("::").count() == depth + 1)
    {
        let name = child.rsplit("::").next().unwrap_or_default();
        if uses_path(text, name) {
            found.insert(child.clone());
        }
    }
    // `super::` outside inline modules names the parent.
    if module != "crate" && outside_inline_modules(text).contains("super::") {
        found.insert(
            module
                .rsplit_once("::")
                .map_or("crate", |(p, _)| p)
                .to_owned(),
        );
    }
    found.remove(module);
    found
}

/// Whether `name::` appears as the start of a path.
fn uses_path(text: &str, name: &str) -> bool {
    let needle = format!("{name}::");
    let bytes = text.as_bytes();
    text.match_indices(&needle).any(|(index, _)| {
        index == 0 || !(is_ident_byte(bytes[index - 1]) || bytes[index - 1] == b':')
    })
}

/// The text with the bodies of inline `mod name { ... }` blocks removed.
fn outside_inline_modules(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(index) = find_inline_mod(rest) {
        out.push_str(&rest[..index]);
        let open = index + rest[index..].find('{').unwrap_or(0);
        let body = braced(&rest[open..]);
        rest = &rest[(open + body.len() + 2).min(rest.len())..];
    }
    out.push_str(rest);
    out
}

/// Where the next `mod name {` starts.
fn find_inline_mod(text: &str) -> Option<usize> {
    let mut at = 0;
    while let Some(offset) = text[at..].find("mod ") {
        let index = at + offset;
        at = index + 4;
        if index > 0 && is_ident_byte(text.as_bytes()[index - 1]) {
            continue;
        }
        let after = &text[at..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() && after[name.len()..].trim_start().starts_with('{') {
            return Some(index);
        }
    }
    None
}

/// The text inside the braces `text` starts with (without them).
fn braced(text: &str) -> &str {
    let mut depth = 0;
    for (index, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return &text[1..index];
                }
            }
            _ => {}
        }
    }
    text.get(1..).unwrap_or_default()
}

/// `a, b::{c, d}, e` split at the commas outside braces.
fn split_top_level(group: &str) -> Vec<&str> {
    let (mut items, mut depth, mut start) = (Vec::new(), 0, 0);
    for (index, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&group[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    items.push(&group[start..]);
    items
}

/// Source without comments, string and character literals (so that a path in a
/// message or a doc comment is not an import).
fn strip(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            i += 2;
            while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                i += 1;
            }
            i += 2;
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && !prev_is_ident(&chars, i)
        {
            // A raw string: r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            while j < chars.len() {
                if chars[j] == '"' && (0..hashes).all(|k| chars.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' && (chars.get(i + 2) == Some(&'\'') || next == Some('\\')) {
            // A character literal ('x' or '\n'); not a lifetime.
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("' '");
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn prev_is_ident(chars: &[char], index: usize) -> bool {
    index > 0 && (chars[index - 1].is_alphanumeric() || chars[index - 1] == '_')
}

fn is_ident(word: &str) -> bool {
    !word.is_empty() && word.bytes().all(is_ident_byte) && !word.as_bytes()[0].is_ascii_digit()
}

fn is_ident_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

/// The import cycles of `graph`: its strongly connected components of more than one
/// module (Tarjan's algorithm), each sorted.
fn strongly_connected(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        components: Vec<Vec<String>>,
    }
    fn visit<'a>(state: &mut State<'a>, node: &'a str) {
        let number = state.index.len();
        state.index.insert(node, number);
        state.low.insert(node, number);
        state.stack.push(node);
        state.on_stack.insert(node);
        let graph = state.graph;
        for next in graph.get(node).into_iter().flatten() {
            let next = next.as_str();
            if !graph.contains_key(next) {
                continue;
            }
            if !state.index.contains_key(next) {
                visit(state, next);
                let low = state.low[node].min(state.low[next]);
                state.low.insert(node, low);
            } else if state.on_stack.contains(next) {
                let low = state.low[node].min(state.index[next]);
                state.low.insert(node, low);
            }
        }
        if state.low[node] == state.index[node] {
            let mut component = Vec::new();
            while let Some(member) = state.stack.pop() {
                state.on_stack.remove(member);
                component.push(member.to_owned());
                if member == node {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                state.components.push(component);
            }
        }
    }
    let mut state = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        components: Vec::new(),
    };
    for node in graph.keys() {
        if !state.index.contains_key(node.as_str()) {
            visit(&mut state, node);
        }
    }
    state.components
}

/// Every `.rs` file of the workspace, outside `target/` and hidden directories.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return files;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name == "target" || name == "dist" {
            continue;
        }
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if name.ends_with(".rs") {
            files.push(path);
        }
    }
    files
}

/// `path` from the workspace's top directory, for messages.
fn relative(path: &Path) -> String {
    let root = workspace_root();
    let root = root.canonicalize().unwrap_or(root);
    let path = path.canonicalize().unwrap_or_else(|_| path.to_owned());
    path.strip_prefix(&root)
        .unwrap_or(&path)
        .display()
        .to_string()
}

#[test]
fn every_crate_takes_the_workspace_lints_and_forbids_unsafe_code_it_has_none_of() {
    let mut missing = Vec::new();
    let mut crates = product_crates();
    // xtask too: it never ships, but its unsafe blocks (wait4, unshare) are held to the
    // same rule.
    crates.push(workspace_root().join("xtask"));
    for dir in crates {
        let manifest = fs::read_to_string(dir.join("Cargo.toml")).unwrap_or_default();
        if !manifest.contains("[lints]\nworkspace = true") {
            missing.push(format!("{}: [lints] workspace = true", relative(&dir)));
        }
        let sources = rust_files(&dir.join("src"));
        let has_unsafe = sources.iter().any(|file| {
            let text = strip(&fs::read_to_string(file).unwrap_or_default());
            text.contains("unsafe {") || text.contains("unsafe impl") || text.contains("unsafe fn")
        });
        let root = ["src/lib.rs", "src/main.rs"]
            .iter()
            .map(|file| dir.join(file))
            .find(|file| file.is_file());
        let forbids = root.is_some_and(|root| {
            fs::read_to_string(root).is_ok_and(|text| text.contains("#![forbid(unsafe_code)]"))
        });
        if !has_unsafe && !forbids {
            missing.push(format!("{}: #![forbid(unsafe_code)]", relative(&dir)));
        }
    }
    assert!(
        missing.is_empty(),
        "every crate under crates/ and xtask takes the workspace lints, and one without \
         unsafe code forbids it at its root: {missing:?}"
    );
}

/// Every library under crates/ denies `unreachable_pub` at its root: what is `pub` is
/// its API, and an item only its own crate reaches says so (`pub(crate)`).
#[test]
fn every_library_denies_unreachable_pub() {
    let mut missing = Vec::new();
    for dir in product_crates() {
        let root = dir.join("src/lib.rs");
        let Ok(text) = fs::read_to_string(&root) else {
            continue;
        };
        if !strip(&text).contains("#![deny(unreachable_pub)]") {
            missing.push(relative(&root));
        }
    }
    assert!(
        missing.is_empty(),
        "add #![deny(unreachable_pub)] at the root of: {missing:?}"
    );
}

/// Only the command layer prints (`crates/binfmt/src/commands/`, `main.rs`): below it
/// every function returns what happened, typed, and the command says it. Log records
/// (`log::`) are not printing.
#[test]
fn only_the_command_layer_prints() {
    let commands = workspace_root().join("crates/binfmt/src/commands");
    let main = workspace_root().join("crates/binfmt/src/main.rs");
    let mut printing = Vec::new();
    for dir in product_crates() {
        for file in rust_files(&dir.join("src")) {
            if file.starts_with(&commands) || file == main {
                continue;
            }
            let text = strip(&fs::read_to_string(&file).unwrap_or_default());
            let prints = ["println!", "print!(", "eprint!(", "stdout()", "stderr()"]
                .iter()
                .any(|call| text.contains(call));
            if prints {
                printing.push(relative(&file));
            }
        }
    }
    assert!(
        printing.is_empty(),
        "these print: return what happened instead and let the command in \
         crates/binfmt/src/commands/ print it: {printing:?}"
    );
}

/// ARCHITECTURE.md's code map stays the layout: every crate under crates/ has its
/// `### \`crates/<name>\`` section, which names each of its modules (`file.rs`, or
/// `dir/` for a module with submodules).
#[test]
fn architecture_md_maps_every_crate_and_module() {
    let map =
        fs::read_to_string(workspace_root().join("ARCHITECTURE.md")).expect("read ARCHITECTURE.md");
    let mut missing = Vec::new();
    for dir in product_crates() {
        let name = dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let heading = format!("### `crates/{name}`");
        let Some(start) = map.find(&heading) else {
            missing.push(heading);
            continue;
        };
        let rest = &map[start + heading.len()..];
        let section = &rest[..rest.find("\n#").unwrap_or(rest.len())];
        let Ok(entries) = fs::read_dir(dir.join("src")) else {
            continue;
        };
        let mut modules: Vec<String> = entries
            .filter_map(|entry| {
                let entry = entry.ok()?;
                let file = entry.file_name().to_string_lossy().into_owned();
                if entry.path().is_dir() {
                    Some(format!("{file}/"))
                } else {
                    let keep = file.ends_with(".rs")
                        && !["lib.rs", "main.rs", "testing.rs"].contains(&file.as_str());
                    keep.then_some(file)
                }
            })
            .collect();
        modules.sort();
        for module in modules {
            if !section.contains(&format!("`{module}`")) && !section.contains(&format!("{module}`"))
            {
                missing.push(format!("crates/{name}/src/{module}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md's code map does not name these; add a sentence on each to its \
         crate's section: {missing:?}"
    );
}

/// The slow tests run behind one switch (`util::SLOW_TEST`): every test that builds the
/// release binaries (`dist()`), drives the Docker engine (`require_engine()`) or boots
/// a machine (`qemu-system`) carries the attribute right after its `#[test]`, and every
/// `ignore = "slow...` gives that very reason, worded once.
#[test]
fn slow_tests_are_behind_the_one_switch() {
    let squeeze = |text: &str| -> String { text.split_whitespace().collect() };
    let marker = squeeze(crate::util::SLOW_TEST);
    let reason = crate::util::SLOW_TEST
        .split_once("ignore = ")
        .map(|(_, rest)| rest.trim_end_matches(")]"))
        .expect("SLOW_TEST has an ignore reason");
    let mut unmarked = Vec::new();
    let mut reworded = Vec::new();
    for file in rust_files(&workspace_root().join("tests")) {
        let name = relative(&file);
        if name.ends_with("tests/util.rs") || name.ends_with("tests/tidy.rs") {
            continue;
        }
        let text = fs::read_to_string(&file).unwrap_or_default();
        for line in text.lines().filter(|line| line.contains("ignore = \"slow")) {
            if line
                .trim()
                .trim_start_matches("#[cfg_attr(not(slow_tests), ")
                .trim_start_matches("ignore = ")
                .trim_end_matches(")]")
                != reason
            {
                reworded.push(format!("{name}: {}", line.trim()));
            }
        }
        for test in text.split("#[test]\n").skip(1) {
            let slow = ["dist()", "require_engine()", "qemu-system"]
                .iter()
                .any(|call| test.contains(call));
            let attributes = test.split("\nfn ").next().unwrap_or_default();
            if slow && !squeeze(attributes).starts_with(&marker) {
                let name_line = test
                    .lines()
                    .find(|line| line.starts_with("fn "))
                    .unwrap_or("");
                unmarked.push(format!("{name}: {}", name_line.trim()));
            }
        }
    }
    assert!(
        unmarked.is_empty(),
        "slow tests without `{}` right after their #[test]: {unmarked:?}",
        crate::util::SLOW_TEST
    );
    assert!(
        reworded.is_empty(),
        "a slow test's reason is worded once (util::SLOW_TEST): {reworded:?}"
    );
}
