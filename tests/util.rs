//! Helpers for the integration tests: private binfmt_misc instances, the `binfmt`
//! binary, and foreign programs to run.
//!
//! Every test that touches binfmt_misc runs in a child process in a user and mount
//! namespace of its own (Linux 6.7 or newer), where it mounts a private binfmt_misc
//! instance: it needs no privileges, and neither the test runner nor the machine is
//! changed. [`namespace_test!`] re-executes this test binary under
//! `unshare --user --map-root-user --mount`, filtered to the one test; the child sees
//! `BINFMT_TEST_SANDBOX` and runs the body. The parent checks that the child ran
//! exactly one test and passed, and that the machine's global binfmt_misc is the same
//! before and after.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use binfmt_misc::{BinfmtMisc, Table};
use qemu_catalog::Arch;
use tiny_elf::Machine;

/// Set in the child: the sandbox directory the parent made.
const SANDBOX_ENV: &str = "BINFMT_TEST_SANDBOX";

/// Defines a test whose body runs inside a private binfmt_misc instance.
macro_rules! namespace_test {
    ($(#[$meta:meta])* fn $name:ident($sandbox:ident: &$sandbox_type:ty) $body:block) => {
        $(#[$meta])*
        #[test]
        fn $name() {
            // libtest names tests by module path without the crate: `install::name`.
            let path = concat!(module_path!(), "::", stringify!($name));
            let path = path.split_once("::").map_or(path, |(_, rest)| rest);
            $crate::util::in_private_binfmt_misc(path, |$sandbox: &$sandbox_type| $body);
        }
    };
}
pub(crate) use namespace_test;

/// The one switch of the slow tests: those that build the release binaries (`dist()`),
/// boot a machine, or drive the machine's Docker engine or systemd. Each carries
/// exactly [`SLOW_TEST`] after its `#[test]`, so that without `BINFMT_SLOW_TESTS=1`
/// (`.ci/run` sets it) libtest reports it as ignored, with that reason, and a plain
/// `cargo test` stays quick. `crates/binfmt/build.rs` turns the variable into
/// `cfg(slow_tests)` when the tests are compiled: libtest decides "ignored" then, not
/// when a test runs. A test that also needs something of the machine adds
/// `#[cfg_attr(all(slow_tests, not(<condition>)), ignore = "<reason>")]`
/// (`target_arch = "x86_64"`, `not(no_docker)` where `BINFMT_SKIP_DOCKER` says no
/// Docker engine answers); run anyway (`--ignored`), such a test fails where it cannot
/// work, and never passes without doing its work. `tidy` checks the attribute.
pub const SLOW_TEST: &str = r#"#[cfg_attr(not(slow_tests), ignore = "slow: set BINFMT_SLOW_TESTS=1 to run it (.ci/run does)")]"#;

/// A test's private world: a binfmt_misc instance and scratch directories.
pub struct Sandbox {
    /// Where the private binfmt_misc instance is mounted.
    pub mount: PathBuf,
    /// Where `binfmt` writes interpreter files (`--interpreter-dir`).
    pub interpreters: PathBuf,
    /// Scratch space for programs and anything else.
    pub scratch: PathBuf,
}

impl Sandbox {
    fn at(root: &Path) -> Sandbox {
        Sandbox {
            mount: root.join("binfmt_misc"),
            interpreters: root.join("interpreters"),
            scratch: root.join("scratch"),
        }
    }

    /// The private table, through the kernel layer.
    pub fn table(&self) -> BinfmtMisc {
        BinfmtMisc::open(&self.mount).expect("the sandbox's binfmt_misc is mounted")
    }

    /// `binfmt` with `--mount` and `--interpreter-dir` pointing into the sandbox.
    pub fn binfmt(&self, args: &[&str]) -> Run {
        Run::of(self.command(args))
    }

    /// The command [`Sandbox::binfmt`] runs, to add environment or spawn it.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_binfmt"));
        command
            .arg("--mount")
            .arg(&self.mount)
            .arg("--interpreter-dir")
            .arg(&self.interpreters)
            .args(args)
            .env("BINFMT_LOG", "debug");
        command
    }

    /// `binfmt <subcommand> --mount <sandbox> args...`: the subcommands take their own
    /// `--mount` (top-level options do not mix with subcommands).
    pub fn subcommand(&self, subcommand: &str, args: &[&str]) -> Run {
        let mut command = Command::new(env!("CARGO_BIN_EXE_binfmt"));
        command
            .arg(subcommand)
            .arg("--mount")
            .arg(&self.mount)
            .args(args)
            .env("BINFMT_LOG", "debug");
        Run::of(command)
    }

    /// Registers an entry for `arch`'s programs (the catalog's magic and mask) under
    /// `name`, with `interpreter` and `flags`, straight through the kernel layer: the
    /// states other tools leave behind.
    pub fn register(&self, name: &str, arch: Arch, interpreter: &Path, flags: &str) {
        let registration = binfmt_misc::Registration {
            name: name.to_owned(),
            matcher: arch.matcher(),
            interpreter: interpreter.to_owned(),
            flags: flags.parse().expect("valid flags"),
        };
        self.table()
            .register(&registration)
            .unwrap_or_else(|error| panic!("cannot register {name}: {error}"));
    }

    /// Writes `bytes` as an executable file in the scratch directory.
    pub fn executable(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.scratch.join(name);
        fs::write(&path, bytes).expect("write executable");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod executable");
        path
    }

    /// Writes `text` to a binfmt_misc control file (`status`, or an entry's file), as
    /// `echo text > file` does.
    pub fn write_control(&self, file: &str, text: &str) {
        fs::write(self.mount.join(file), text)
            .unwrap_or_else(|error| panic!("cannot write {text:?} to {file}: {error}"));
    }

    /// The names and contents of every entry, for comparing states.
    pub fn entries(&self) -> BTreeMap<String, String> {
        read_entries(&self.mount)
    }

    /// The names of the private table's entries (not its `register` and `status`).
    pub fn entry_names(&self) -> BTreeSet<String> {
        self.entries()
            .into_keys()
            .filter(|name| name != "register" && name != "status")
            .collect()
    }

    /// The same sandbox with `--mount` pointing at `mount` instead.
    pub fn with_mount(&self, mount: &Path) -> Sandbox {
        Sandbox {
            mount: mount.to_owned(),
            interpreters: self.interpreters.clone(),
            scratch: self.scratch.clone(),
        }
    }

    /// The same sandbox with another interpreter directory.
    pub fn with_interpreters(&self, interpreters: &Path) -> Sandbox {
        Sandbox {
            mount: self.mount.clone(),
            interpreters: interpreters.to_owned(),
            scratch: self.scratch.clone(),
        }
    }

    /// Writes a program for `arch` that prints `message` and exits with `status`.
    pub fn program(&self, arch: Arch, message: &str, status: u8) -> PathBuf {
        let path = self.scratch.join(format!("hello-{}", arch.qemu_cpu()));
        fs::write(
            &path,
            tiny_elf::hello(machine(arch), message.as_bytes(), status),
        )
        .expect("write program");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod program");
        path
    }

    /// Runs a program of `arch` and asserts that it printed its message and exited
    /// with its status: the registered emulator really works.
    pub fn assert_runs(&self, arch: Arch) {
        let message = format!("hello from {}\n", arch.qemu_cpu());
        let status = 40 + arch as u8;
        let program = self.program(arch, &message, status);
        let output = Command::new(&program).output().unwrap_or_else(|error| {
            panic!(
                "cannot run the {arch} program {}: {error}",
                program.display()
            )
        });
        assert_eq!(
            String::from_utf8_lossy(&output.stdout),
            message,
            "{arch} program output; stderr: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            output.status.code(),
            Some(i32::from(status)),
            "{arch} exit status"
        );
    }

    /// Asserts that a program of `arch` cannot be executed at all.
    pub fn assert_does_not_run(&self, arch: Arch) {
        let program = self.program(arch, "unreachable\n", 1);
        let result = Command::new(&program).output();
        assert!(result.is_err(), "the {arch} program ran: {result:?}");
    }
}

/// The `tiny_elf` machine for an architecture (their names are QEMU's cpu names).
pub fn machine(arch: Arch) -> Machine {
    Machine::ALL
        .into_iter()
        .find(|m| m.name() == arch.qemu_cpu())
        .unwrap_or_else(|| panic!("tiny-elf has no program for {arch}"))
}

/// Every architecture this build carries an emulator for (the foreign ones).
pub fn foreign_arches() -> Vec<Arch> {
    Arch::ALL.into_iter().filter(|a| !a.is_native()).collect()
}

/// A finished run of a command.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    /// The signal that ended it, if one did.
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Runs `command` to the end.
    pub fn of(mut command: Command) -> Run {
        Run::from_output(command.output().expect("run binfmt"))
    }

    /// The result of a command already waited for.
    pub fn from_output(output: Output) -> Run {
        use std::os::unix::process::ExitStatusExt;
        let Output {
            status,
            stdout,
            stderr,
        } = output;
        Run {
            code: status.code(),
            signal: status.signal(),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }

    /// Asserts exit code 0 and returns self.
    #[track_caller]
    pub fn success(self) -> Run {
        assert_eq!(self.code, Some(0), "binfmt failed:\n{self}");
        self
    }

    /// Asserts the exit code and returns self.
    #[track_caller]
    pub fn exit(self, code: i32) -> Run {
        assert_eq!(self.code, Some(code), "unexpected exit code:\n{self}");
        self
    }

    /// The register writes the run logged (`BINFMT_LOG=debug`).
    pub fn register_writes(&self) -> usize {
        self.stderr.matches("bytes to ").count()
    }

    /// Asserts that stderr holds no error: log lines at warn or error level, or a
    /// `binfmt: ` failure line (BINFMT_LOG=debug adds only debug records).
    #[track_caller]
    pub fn assert_no_errors(&self) {
        for line in self.stderr.lines() {
            assert!(
                !line.starts_with("binfmt: warn") && !line.starts_with("binfmt: error"),
                "unexpected complaint on stderr:\n{self}"
            );
        }
    }

    /// The stdout parsed as JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{self}"))
    }

    /// The stdout parsed as the status JSON.
    #[track_caller]
    pub fn status(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not the status JSON ({e}):\n{self}"))
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?} (signal {:?})\n--- stdout\n{}--- stderr\n{}",
            self.code, self.signal, self.stdout, self.stderr
        )
    }
}

/// Runs a shell-free command inside the sandbox (mount, for example) and asserts it
/// worked.
#[track_caller]
pub fn must(program: &str, args: &[&str]) {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Makes `dir` a read-only bind mount of itself (inside the test's mount namespace).
pub fn make_read_only(dir: &Path) {
    let dir = dir.to_str().expect("UTF-8 path");
    must("mount", &["--bind", dir, dir]);
    must("mount", &["-o", "remount,bind,ro", dir]);
}

fn read_entries(mount: &Path) -> BTreeMap<String, String> {
    let Ok(dir) = fs::read_dir(mount) else {
        return BTreeMap::new();
    };
    dir.filter_map(Result::ok)
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let text =
                fs::read_to_string(e.path()).unwrap_or_else(|e| format!("<unreadable: {e}>"));
            (name, text)
        })
        .collect()
}

/// What the machine's own binfmt_misc looks like: where it is mounted in this mount
/// namespace, every entry visible there, and, when the tests run as root, every entry
/// of the machine's instance read through a mount of its own (so a change is seen
/// even where nothing is mounted).
#[derive(Debug, PartialEq, Eq)]
pub struct GlobalSnapshot {
    mounts: Vec<String>,
    visible_entries: BTreeMap<String, String>,
    instance_entries: Option<BTreeMap<String, String>>,
}

pub fn global_snapshot() -> GlobalSnapshot {
    let mounts = fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|line| line.contains(" binfmt_misc "))
        .map(|line| line.split(' ').nth(4).unwrap_or_default().to_owned())
        .collect();
    let visible_entries = match BinfmtMisc::open(binfmt_misc::DEFAULT_MOUNT) {
        Ok(table) => read_entries(table.path()),
        Err(_) => BTreeMap::new(),
    };
    GlobalSnapshot {
        mounts,
        visible_entries,
        instance_entries: global_instance_entries(),
    }
}

/// Every entry of the machine's own (initial user namespace's) binfmt_misc instance,
/// read through a mount in a private mount namespace; `None` when the tests do not
/// run as root and cannot mount it.
///
/// The mount goes away with that namespace. If it was the instance's only mount, the
/// instance had no entries (they die with its last mount), so nothing is lost.
fn global_instance_entries() -> Option<BTreeMap<String, String>> {
    if !rustix::process::geteuid().is_root() {
        return None;
    }
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "global-binfmt_misc-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    fs::create_dir_all(&dir).expect("create a mount point");
    // Prints `name NUL content NUL` for every entry (register is write-only).
    let output = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(
            r#"mount -t binfmt_misc binfmt_misc "$1" && cd "$1" && for f in *; do
                 [ "$f" = register ] || { printf '%s\0' "$f"; cat "$f"; printf '\0'; }
               done"#,
        )
        .arg("sh")
        .arg(&dir)
        .output()
        .expect("run unshare (util-linux)");
    let _ = fs::remove_dir(&dir);
    assert!(
        output.status.success(),
        "cannot read the machine's binfmt_misc instance through a private mount: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    let mut fields = text.split('\0');
    let mut entries = BTreeMap::new();
    while let (Some(name), Some(content)) = (fields.next(), fields.next()) {
        entries.insert(name.to_owned(), content.to_owned());
    }
    Some(entries)
}

/// Runs `body` and asserts that the machine's own binfmt_misc is the same afterwards.
#[track_caller]
pub fn assert_global_table_unchanged<T>(what: &str, body: impl FnOnce() -> T) -> T {
    // Kept out of the window of a test that changes the machine's table (`docker`).
    let _window = GlobalTable::shared();
    let before = global_snapshot();
    let result = body();
    assert_eq!(
        before,
        global_snapshot(),
        "the machine's global binfmt_misc changed during {what}"
    );
    result
}

/// Runs `body` in a child process inside a fresh user and mount namespace with a
/// private binfmt_misc instance mounted at `sandbox.mount`.
pub fn in_private_binfmt_misc(test_path: &str, body: impl FnOnce(&Sandbox)) {
    if let Ok(root) = std::env::var(SANDBOX_ENV) {
        // The child: inside the namespaces.
        let sandbox = Sandbox::at(Path::new(&root));
        BinfmtMisc::mount(&sandbox.mount).unwrap_or_else(|error| {
            panic!(
                "cannot mount a private binfmt_misc instance ({error}); these tests need \
                 Linux 6.7 or newer with unprivileged user namespaces"
            )
        });
        body(&sandbox);
        return;
    }

    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("sandboxes")
        .join(test_path.replace("::", "-"));
    let _ = fs::remove_dir_all(&root);
    let sandbox = Sandbox::at(&root);
    for dir in [&sandbox.mount, &sandbox.scratch] {
        fs::create_dir_all(dir).expect("create sandbox directories");
    }

    // Tests that change the machine's table (`docker`) wait until no snapshot window
    // is open, here or in another test process.
    let _window = GlobalTable::shared();
    let before = global_snapshot();
    let output = Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "--fork", "--"])
        .arg(std::env::current_exe().expect("test binary path"))
        // --include-ignored: the child runs the one test the parent runs, even one the
        // parent was asked to run although ignored (`--ignored`).
        .args([
            test_path,
            "--exact",
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(SANDBOX_ENV, &root)
        .output()
        .expect("run unshare (util-linux)");
    let after = global_snapshot();

    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "{test_path} failed inside its namespace ({}):\n--- stdout\n{stdout}--- stderr\n{stderr}",
        output.status
    );
    assert_eq!(
        before, after,
        "the machine's global binfmt_misc changed during {test_path}"
    );
    let _ = fs::remove_dir_all(&root);
}

/// The machine's own architecture (the first of [`Arch::native`]).
pub fn host_arch() -> Arch {
    *Arch::native()
        .first()
        .expect("these tests run on x86_64 or aarch64 hosts")
}

/// A static program of the host's own architecture that exits 0 at once: an
/// interpreter that is not an emulator (it "runs" any foreign program by ignoring it).
pub fn native_exit_zero() -> Vec<u8> {
    tiny_elf::exit_with(host_arch().machine(), 0)
}

/// A static program of the host's own architecture that loops forever: a hung
/// interpreter. Its code is `exit_with`'s with the first instruction replaced by a
/// jump to itself (`jmp $` on x86_64, `b .` on aarch64).
pub fn native_spinning() -> Vec<u8> {
    let mut program = native_exit_zero();
    let entry = u64::from_le_bytes(program[24..32].try_into().expect("ELF64 e_entry"));
    let at = usize::try_from(entry - 0x40_0000).expect("entry inside the file");
    let jump_to_self: &[u8] = match host_arch() {
        Arch::Amd64 => &[0xeb, 0xfe],
        Arch::Arm64 => &[0x00, 0x00, 0x00, 0x14],
        other => panic!("no spinning program for {other}"),
    };
    program[at..at + jump_to_self.len()].copy_from_slice(jump_to_self);
    program
}

/// The x86-64 level of this machine from the kernel's /proc/cpuinfo flags, independent
/// of the probe's CPUID code; shared with tiny-elf's own tests.
#[path = "../crates/tiny-elf/tests/cpu_level.rs"]
mod cpu_level_oracle;
pub use cpu_level_oracle::cpu_level;

/// Runs `binfmt args...` with no capabilities at all (`setpriv` clears the bounding
/// set, so none survive exec), as root without privileges: it may not chroot, and it
/// may not write files whose mode denies it. The tests' user namespaces map only root,
/// so no other user exists to run as; this is as close as they get to an ordinary
/// user.
pub fn binfmt_without_capabilities(args: &[&str]) -> Run {
    let mut command = Command::new("setpriv");
    command
        .args(["--inh-caps=-all", "--bounding-set=-all", "--"])
        .arg(env!("CARGO_BIN_EXE_binfmt"))
        .args(args)
        .env("BINFMT_LOG", "debug");
    Run::of(command)
}

/// The first line of `text` that contains `needle`; panics with the whole text when
/// there is none.
#[track_caller]
pub fn line_with<'a>(text: &'a str, needle: &str) -> &'a str {
    text.lines()
        .find(|line| line.contains(needle))
        .unwrap_or_else(|| panic!("no line contains {needle:?} in:\n{text}"))
}

/// A lock over the machine's global binfmt_misc table, across test processes (an
/// `flock(2)` on a file in /tmp): namespace tests hold it shared while they compare
/// the global table before and after; a test that must change the global table (the
/// Docker test registers arm64 there so the engine can run an arm64 image) holds it
/// exclusively, so no snapshot sees its change.
pub struct GlobalTable {
    _file: fs::File,
}

impl GlobalTable {
    const PATH: &str = "/tmp/binfmt-tests-global-binfmt_misc.lock";

    fn lock(operation: rustix::fs::FlockOperation) -> GlobalTable {
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(Self::PATH)
            .unwrap_or_else(|e| panic!("cannot open the lock file {}: {e}", Self::PATH));
        rustix::fs::flock(&file, operation)
            .unwrap_or_else(|e| panic!("cannot lock {}: {e}", Self::PATH));
        GlobalTable { _file: file }
    }

    /// For comparing the global table before and after a test.
    pub fn shared() -> GlobalTable {
        GlobalTable::lock(rustix::fs::FlockOperation::LockShared)
    }

    /// For changing the global table.
    pub fn exclusive() -> GlobalTable {
        GlobalTable::lock(rustix::fs::FlockOperation::LockExclusive)
    }
}

/// A set of entry names, to compare with [`Sandbox::entry_names`].
pub fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|name| (*name).to_owned()).collect()
}

/// The workspace's top directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The release binaries of `cargo xtask dist`, built (incrementally) once per test
/// process so the tests run what ships; in a namespace test's child, only the path.
pub fn dist() -> PathBuf {
    static BUILT: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    let dist = workspace_root().join("dist");
    if std::env::var_os(SANDBOX_ENV).is_some() {
        return dist;
    }
    BUILT
        .get_or_init(|| {
            let output = Command::new(env!("CARGO"))
                .current_dir(workspace_root())
                .args(["xtask", "dist"])
                .output()
                .map_err(|e| format!("cannot run cargo xtask dist: {e}"))?;
            if output.status.success() {
                Ok(dist.clone())
            } else {
                Err(format!(
                    "cargo xtask dist failed ({}):\n{}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr)
                ))
            }
        })
        .clone()
        .unwrap_or_else(|error| panic!("{error}"))
}

/// Writes a figure (a size, a time) to the test's stderr even when libtest captures
/// output: the `print!` macros are captured, a direct write is not.
pub fn report(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// A section of a document whose blocks a test runs or checks as the document shows
/// them: the file (from the workspace root), the heading (its text, at any level), the
/// language of the blocks, and how many blocks of it the test uses. Every lookup goes
/// through one, and `docs::every_block_a_test_reads_is_where_it_looks` checks each of
/// them without running the slow tests, so moving the text cannot strand a test.
#[derive(Clone, Copy, Debug)]
pub struct DocSection {
    pub file: &'static str,
    pub heading: &'static str,
    pub language: &'static str,
    pub blocks: usize,
}

impl DocSection {
    /// The first block.
    pub fn block(&self) -> String {
        self.blocks().into_iter().next().unwrap_or_else(|| {
            panic!(
                "{}: no {} block under \"{}\"",
                self.file, self.language, self.heading
            )
        })
    }

    /// Every ```` ```language ```` block of the section, up to the next heading of its
    /// level or above (a line starting with `#` inside a block is not a heading).
    pub fn blocks(&self) -> Vec<String> {
        let path = workspace_root().join(self.file);
        let text =
            fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        doc_blocks(&text, self.heading, self.language)
            .unwrap_or_else(|error| panic!("{}: {error}", self.file))
    }
}

/// The ```` ```language ```` blocks under `heading` in a Markdown text (see
/// [`DocSection::blocks`]); an error names a missing heading or an unclosed block.
pub fn doc_blocks(text: &str, heading: &str, language: &str) -> Result<Vec<String>, String> {
    // The heading's level once found; inside a fence, the block being read (`None`
    // for a block of another language or outside the section).
    let mut level = None;
    let mut fence: Option<Option<String>> = None;
    let mut blocks = Vec::new();
    for line in text.lines() {
        if let Some(block) = &mut fence {
            if line.starts_with("```") {
                blocks.extend(block.take());
                fence = None;
            } else if let Some(block) = block {
                block.push_str(line);
                block.push('\n');
            }
            continue;
        }
        if line.starts_with("```") {
            let wanted = level.is_some() && line == format!("```{language}");
            fence = Some(wanted.then(String::new));
            continue;
        }
        let hashes = line.bytes().take_while(|&byte| byte == b'#').count();
        if (1..=6).contains(&hashes) && line[hashes..].starts_with(' ') {
            match level {
                Some(open) if hashes <= open => break,
                Some(_) => {}
                None if line[hashes..].trim() == heading => level = Some(hashes),
                None => {}
            }
        }
    }
    match (level, fence) {
        (None, _) => Err(format!("no heading \"{heading}\"")),
        (Some(_), Some(_)) => Err(format!("a block under \"{heading}\" is not closed")),
        (Some(_), None) => Ok(blocks),
    }
}

/// `docker ARGS`, to the end.
pub fn docker(args: &[&str]) -> Run {
    let mut command = Command::new("docker");
    command.args(args);
    Run::of(command)
}

/// Runs a block of a document's shell commands as a bash script (stopping at the
/// first that fails) in the workspace, with `PATH` as it is.
pub fn run_doc_script(section: &DocSection, script: &str) -> Run {
    let mut bash = Command::new("bash");
    bash.args(["-euo", "pipefail", "-c", script])
        .current_dir(workspace_root());
    let start = std::time::Instant::now();
    let run = Run::of(bash);
    report(&format!(
        "{} \"{}\": {:.1} s, exit {:?}",
        section.file,
        section.heading,
        start.elapsed().as_secs_f64(),
        run.code
    ));
    run
}

/// binfmt's cache directory, `${XDG_CACHE_HOME:-~/.cache}/binfmt`: pinned blobs, zig,
/// Debian packages, buildx's Docker config.
pub fn binfmt_cache() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache")))
        .expect("XDG_CACHE_HOME or HOME")
        .join("binfmt")
}

/// A Debian package of trixie (`busybox-static:arm64`), unpacked by
/// `tools/debian-package` into binfmt's cache (downloaded once); its directory.
pub fn debian_package(spec: &str) -> PathBuf {
    debian_package_of("trixie", spec)
}

/// [`debian_package`] of another suite (`bookworm`).
pub fn debian_package_of(suite: &str, spec: &str) -> PathBuf {
    let dest = binfmt_cache().join(match suite {
        "trixie" => "debian-packages".to_owned(),
        suite => format!("debian-packages-{suite}"),
    });
    let dest = dest.to_str().expect("a UTF-8 cache path");
    PathBuf::from(debian_package_tool(&["--suite", suite, dest, spec]).trim())
}

/// The Debian mirror the tests download from: the machine's, as
/// `tools/debian-package --mirror` finds it.
pub fn debian_mirror() -> String {
    debian_package_tool(&["--mirror"]).trim().to_owned()
}

/// The packages a package of `suite` depends on (`tools/debian-package --depends`):
/// for a metapackage, the one it stands for at the index's version.
pub fn debian_depends(suite: &str, spec: &str) -> Vec<String> {
    debian_package_tool(&["--suite", suite, "--depends", spec])
        .lines()
        .map(str::to_owned)
        .collect()
}

/// `tools/debian-package ARGS`, which must succeed; its stdout.
fn debian_package_tool(args: &[&str]) -> String {
    let output = Command::new(workspace_root().join("tools/debian-package"))
        .args(args)
        .output()
        .expect("run tools/debian-package");
    assert!(
        output.status.success(),
        "tools/debian-package {} failed ({}):\n{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("tools/debian-package prints UTF-8")
}
