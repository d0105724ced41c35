//! `binfmt run`: one command gets foreign-architecture emulation without privileges.
//!
//! `binfmt run` makes its own user and mount namespace, so these tests call it
//! directly, as an ordinary user: when the test runner is root, as `nobody` (uid and
//! gid 65534) with every capability dropped (`setpriv`, util-linux); otherwise as the
//! runner itself, which is as unprivileged. Programs live in a fresh directory under
//! /tmp that anyone can read and search. Every test checks that the machine's own
//! binfmt_misc is the same afterwards.

use std::ffi::OsStr;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use qemu_catalog::Arch;

use crate::util::{assert_global_table_unchanged, foreign_arches, machine};

/// `setpriv` arguments that turn root into `nobody` with no capabilities at all.
const NOBODY: [&str; 5] = [
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
    "--inh-caps=-all",
    "--bounding-set=-all",
];

fn runner_is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The uid and gid `binfmt run` is called with.
fn caller_ids() -> (u32, u32) {
    if runner_is_root() {
        (65534, 65534)
    } else {
        (
            rustix::process::geteuid().as_raw(),
            rustix::process::getegid().as_raw(),
        )
    }
}

/// `program` as an ordinary user without capabilities (see the module doc).
fn unprivileged(program: impl AsRef<OsStr>) -> Command {
    if runner_is_root() {
        let mut command = Command::new("setpriv");
        command.args(NOBODY).arg(program);
        command
    } else {
        eprintln!("not root: running binfmt as this test runner's own uid instead of nobody");
        Command::new(program)
    }
}

/// The binfmt binary, where an ordinary user can execute it: in place when every
/// directory above it is searchable by others; otherwise (a checkout under /root, say)
/// a copy in /tmp/binfmt-run-tests, one per build, replacing older ones.
fn binfmt() -> &'static Path {
    static BINFMT: OnceLock<PathBuf> = OnceLock::new();
    BINFMT.get_or_init(|| {
        let built = Path::new(env!("CARGO_BIN_EXE_binfmt"));
        let searchable = built.ancestors().skip(1).all(|dir| {
            fs::metadata(dir).is_ok_and(|metadata| metadata.permissions().mode() & 0o001 != 0)
        });
        if searchable || !runner_is_root() {
            return built.to_owned();
        }
        let metadata = fs::metadata(built).expect("the built binfmt");
        let copies = Path::new("/tmp/binfmt-run-tests");
        let copy = copies.join(format!(
            "binfmt-{}-{}",
            metadata.len(),
            metadata.modified().map_or(0, |time| time
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| since.as_nanos()))
        ));
        if !copy.exists() {
            let _ = fs::remove_dir_all(copies);
            fs::create_dir_all(copies).expect("create /tmp/binfmt-run-tests");
            fs::set_permissions(copies, fs::Permissions::from_mode(0o755)).unwrap();
            let partial = copies.join(format!(".partial-{}", std::process::id()));
            fs::copy(built, &partial).expect("copy binfmt where nobody can run it");
            fs::rename(&partial, &copy).expect("rename the copy into place");
        }
        copy
    })
}

/// `binfmt run ARGS` as an ordinary user, run from `world`.
fn binfmt_run(world: &World, args: &[&str]) -> Command {
    let mut command = unprivileged(binfmt());
    command.arg("run").args(args).current_dir(&world.dir);
    command
}

/// A fresh directory under /tmp that every user can read and search, removed at the
/// end of the test.
struct World {
    dir: PathBuf,
}

impl World {
    fn new(test: &str) -> World {
        let dir = std::env::temp_dir().join(format!("binfmt-run-{test}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir(&dir).expect("create the test directory");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod 755");
        World { dir }
    }

    /// Writes an executable file.
    fn executable(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.dir.join(name);
        fs::write(&path, bytes).expect("write program");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod program");
        path
    }

    /// A program of `arch` that prints `message` and exits with `status`.
    fn program(&self, arch: Arch, message: &str, status: u8) -> PathBuf {
        self.executable(
            &format!("hello-{}", arch.qemu_cpu()),
            &tiny_elf::hello(machine(arch), message.as_bytes(), status),
        )
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

#[track_caller]
fn run(mut command: Command) -> Output {
    command
        .output()
        .unwrap_or_else(|error| panic!("cannot run {command:?}: {error}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[track_caller]
fn assert_output(output: &Output, stdout: &str, code: i32) {
    assert_eq!(
        (text(&output.stdout).as_str(), output.status.code()),
        (stdout, Some(code)),
        "stderr: {}",
        text(&output.stderr)
    );
}

/// Must show 2: as nobody without capabilities, an arm64 program, an s390x program
/// and a `#!` script whose interpreter is an arm64 program all run, with their
/// output and exit status; the machine's table is unchanged. Whatever the machine
/// registers itself does not count: the private table shadows it (see
/// `the_private_table_shadows_the_callers_and_leaves_it_alone`).
#[test]
fn foreign_programs_and_a_foreign_script_run_as_nobody() {
    let world = World::new("foreign");
    let arm64 = world.program(Arch::Arm64, "hello from aarch64\n", 41);
    let s390x = world.program(Arch::S390x, "hello from s390x\n", 46);
    // The kernel runs `#!` interpreters through binfmt_misc too: the interpreter is an
    // arm64 program (it ignores the script path it gets as its argument).
    let interpreter = world.executable(
        "interpreter-aarch64",
        &tiny_elf::hello(machine(Arch::Arm64), b"interpreted by aarch64\n", 33),
    );
    let script = world.executable(
        "script",
        format!("#!{}\nthis line is never read\n", interpreter.display()).as_bytes(),
    );
    assert_global_table_unchanged("binfmt run", || {
        for (program, message, status) in [
            (&arm64, "hello from aarch64\n", 41),
            (&s390x, "hello from s390x\n", 46),
            (&script, "interpreted by aarch64\n", 33),
        ] {
            let program = program.to_str().unwrap();
            let output = run(binfmt_run(
                &world,
                &["--platform", "linux/arm64,linux/s390x", "--", program],
            ));
            assert_output(&output, message, status);
            // binfmt is silent when all goes well: stderr is CMD's alone.
            assert_eq!(text(&output.stderr), "", "{program}");
        }
    });
}

/// Must show 1: the default is every foreign architecture binfmt carries, in a
/// private instance on /proc/sys/fs/binfmt_misc where CMD finds it, registered with
/// flag F; CMD runs as the caller, with no capabilities.
#[test]
fn the_default_registers_every_foreign_arch_and_cmd_keeps_the_callers_ids() {
    let world = World::new("default");
    let (uid, gid) = caller_ids();
    let output = assert_global_table_unchanged("binfmt run", || {
        run(binfmt_run(
            &world,
            &[
                "--",
                "sh",
                "-c",
                "id -u; id -g; grep CapEff /proc/self/status; ls /proc/sys/fs/binfmt_misc; \
                 cat /proc/sys/fs/binfmt_misc/qemu-riscv64",
            ],
        ))
    });
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&output.stderr)
    );
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some(uid.to_string().as_str()), "{stdout}");
    assert_eq!(lines.next(), Some(gid.to_string().as_str()), "{stdout}");
    assert_eq!(lines.next(), Some("CapEff:\t0000000000000000"), "{stdout}");
    let mut expected: Vec<String> = foreign_arches().iter().map(|a| a.entry_name()).collect();
    expected.extend(["register".into(), "status".into()]);
    expected.sort();
    let listed: Vec<String> = lines
        .by_ref()
        .take(expected.len())
        .map(str::to_owned)
        .collect();
    assert_eq!(listed, expected, "{stdout}");
    assert_eq!(lines.next(), Some("enabled"), "{stdout}");
    assert!(lines.any(|line| line == "flags: POCF"), "{stdout}");
}

/// Must show 1: `--root` maps the caller to root inside, with the namespace's
/// capabilities; the outside ids are still the caller's.
#[test]
fn root_maps_the_caller_to_root_inside() {
    let world = World::new("root");
    let (uid, _) = caller_ids();
    let output = assert_global_table_unchanged("binfmt run --root", || {
        run(binfmt_run(
            &world,
            &[
                "--root",
                "--platform",
                "riscv64",
                "--",
                "sh",
                "-c",
                "id -u; id -g; cat /proc/self/uid_map; grep CapEff /proc/self/status",
            ],
        ))
    });
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let lines: Vec<Vec<&str>> = stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["0"], "{stdout}");
    assert_eq!(lines[1], ["0"], "{stdout}");
    assert_eq!(lines[2], ["0", &uid.to_string(), "1"], "{stdout}");
    assert_eq!(lines[3][0], "CapEff:", "{stdout}");
    assert_ne!(
        lines[3][1], "0000000000000000",
        "root inside has capabilities: {stdout}"
    );
}

/// Must show 1: stdin, stdout, stderr, the working directory, the environment and the
/// exit status pass through.
#[test]
fn stdio_cwd_environment_and_exit_status_pass_through() {
    let world = World::new("passthrough");
    fs::create_dir(world.dir.join("sub")).unwrap();
    let mut command = binfmt_run(
        &world,
        &[
            "--platform",
            "arm64",
            "--",
            "sh",
            "-c",
            r#"read line; echo "stdin: $line"; echo "cwd: $(pwd -P)"; echo "env: $BINFMT_RUN_TEST"; echo "to stderr" >&2; exit 7"#,
        ],
    );
    command
        .current_dir(world.dir.join("sub"))
        .env("BINFMT_RUN_TEST", "a value, with spaces")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let output = assert_global_table_unchanged("binfmt run", || {
        let mut child = command.spawn().expect("spawn binfmt run");
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"from the caller\n").unwrap();
        drop(stdin);
        child.wait_with_output().unwrap()
    });
    let expected = format!(
        "stdin: from the caller\ncwd: {}\nenv: a value, with spaces\n",
        world.dir.join("sub").display()
    );
    assert_output(&output, &expected, 7);
    assert_eq!(text(&output.stderr), "to stderr\n");

    // A foreign program's exit status comes through the same way.
    let program = world.program(Arch::Arm64, "bye\n", 199);
    let output = run(binfmt_run(
        &world,
        &["--platform", "arm64", "--", program.to_str().unwrap()],
    ));
    assert_output(&output, "bye\n", 199);
}

/// Must show 1: CMD replaces binfmt (same process), so a signal sent to binfmt's pid
/// reaches CMD, and CMD killed by signal N is what the caller sees (a shell reports
/// 128+N).
#[test]
fn signals_pass_through_and_a_killed_cmd_reports_128_plus_n() {
    let world = World::new("signals");
    assert_global_table_unchanged("binfmt run", || {
        // The shell reports 128 + SIGTERM (15).
        let binfmt_run_words = binfmt_run(&world, &["--platform", "arm64", "--"]);
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(r#""$@"; echo "status $?""#)
            .arg("sh")
            .arg(binfmt_run_words.get_program())
            .args(binfmt_run_words.get_args())
            .args(["sh", "-c", "kill -TERM $$"])
            .current_dir(&world.dir);
        let output = run(command);
        assert_output(&output, "status 143\n", 0);

        // A signal sent to the pid the caller started reaches CMD.
        let mut child = binfmt_run(&world, &["--platform", "arm64", "--", "sleep", "60"])
            .spawn()
            .expect("spawn binfmt run");
        let pid = child.id();
        let deadline = Instant::now() + Duration::from_secs(60);
        while fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default() != "sleep\n" {
            assert!(Instant::now() < deadline, "binfmt run never executed sleep");
            std::thread::sleep(Duration::from_millis(20));
        }
        // SIGUSR1, not SIGINT: a shell starts background jobs with SIGINT ignored,
        // and CMD rightly inherits that (exec keeps ignored signals ignored), so SIGINT
        // would test how the suite was started. Nobody ignores SIGUSR1.
        let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::USR1).unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGUSR1), "{status:?}");
    });
}

/// The private instance shadows the one the caller's namespace uses (here one with an
/// entry of its own): CMD sees only its own table, and the outer table is the same
/// afterwards. On a machine that mounts binfmt_misc (systemd does) this is the
/// machine's table.
#[test]
fn the_private_table_shadows_the_callers_and_leaves_it_alone() {
    let world = World::new("shadow");
    // An outer world with its own binfmt_misc instance and an entry in it; binfmt run
    // nests inside (as root of that namespace; nobody has no ids mapped there).
    let script = r#"
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || exit 90
        echo ':outer-entry:E::outer::/bin/true:' > /proc/sys/fs/binfmt_misc/register || exit 91
        before=$(ls /proc/sys/fs/binfmt_misc | tr '\n' ' ')
        "$0" run --platform s390x -- ls /proc/sys/fs/binfmt_misc || exit 92
        after=$(ls /proc/sys/fs/binfmt_misc | tr '\n' ' ')
        echo "outer before: $before"
        echo "outer after: $after"
    "#;
    let mut command = unprivileged("unshare");
    command
        .args([
            "--user",
            "--map-root-user",
            "--mount",
            "--",
            "sh",
            "-c",
            script,
        ])
        .arg(binfmt())
        .current_dir(&world.dir);
    let output = assert_global_table_unchanged("binfmt run", || run(command));
    assert_output(
        &output,
        "qemu-s390x\nregister\nstatus\n\
         outer before: outer-entry register status \n\
         outer after: outer-entry register status \n",
        0,
    );
}

/// Must show 3: with user namespaces disabled, the error names the sysctl and the
/// fix. Built for real: `user.max_user_namespaces` is per user namespace, so an outer
/// namespace sets it to 0 for everything inside.
#[test]
fn disabled_user_namespaces_are_named() {
    let world = World::new("disabled");
    let output = assert_global_table_unchanged("binfmt run", || {
        run(inside_userns_disabled(&world, "--platform arm64 -- true"))
    });
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(125), "{stderr}");
    assert!(
        stderr.starts_with("binfmt: run: cannot create a user namespace (unshare): "),
        "{stderr}"
    );
    assert!(
        stderr.contains("user namespaces are disabled: user.max_user_namespaces is 0"),
        "{stderr}"
    );
    assert!(
        stderr.contains("sudo sysctl -w user.max_user_namespaces="),
        "{stderr}"
    );
    assert!(stderr.contains("sudo binfmt --install all"), "{stderr}");
}

/// Must show 3: an unknown platform is refused before anything is created: the
/// refusal comes even where creating a namespace would fail, and nothing runs.
#[test]
fn an_unknown_platform_is_refused_before_any_namespace_is_created() {
    let world = World::new("unknown");
    let output = assert_global_table_unchanged("binfmt run", || {
        run(inside_userns_disabled(
            &world,
            "--platform arm64,linux/bogus -- touch ran",
        ))
    });
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--platform: unknown architecture \"linux/bogus\""),
        "{stderr}"
    );
    assert!(!stderr.contains("namespace"), "{stderr}");
    assert!(!world.dir.join("ran").exists());
}

/// `binfmt run ARGS` (a shell word list) in a user namespace whose
/// `user.max_user_namespaces` is 0, entered as an ordinary user.
fn inside_userns_disabled(world: &World, args: &str) -> Command {
    let mut command = unprivileged("unshare");
    command
        .args(["--user", "--map-root-user", "--", "sh", "-c"])
        .arg(format!(
            "echo 0 > /proc/sys/user/max_user_namespaces || exit 90; exec \"$0\" run {args}"
        ))
        .arg(binfmt())
        .current_dir(&world.dir);
    command
}

/// Must show 3: under a seccomp filter that forbids unshare (as container runtimes'
/// default profiles do), the error names seccomp and the fix.
#[test]
#[allow(unsafe_code)] // Command::pre_exec, to install the filter in the child.
fn a_seccomp_filter_is_named() {
    let world = World::new("seccomp");
    let mut command = binfmt_run(&world, &["--platform", "arm64", "--", "touch", "ran"]);
    // SAFETY: the closure runs in the forked child before exec and makes only two
    // prctl(2) calls on data on its own stack.
    unsafe { command.pre_exec(forbid_unshare) };
    let output = assert_global_table_unchanged("binfmt run", || run(command));
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(125), "{stderr}");
    assert!(stderr.contains("Operation not permitted"), "{stderr}");
    assert!(
        stderr.contains("a seccomp filter confines this process (Seccomp: 2"),
        "{stderr}"
    );
    assert!(
        stderr.contains("--security-opt seccomp=unconfined"),
        "{stderr}"
    );
    assert!(!world.dir.join("ran").exists());
}

/// Installs a seccomp filter that fails `unshare(2)` with EPERM and allows every
/// other system call (after `PR_SET_NO_NEW_PRIVS`, which filters require of
/// unprivileged processes).
#[allow(unsafe_code)] // prctl(2): libc has no safe one.
fn forbid_unshare() -> std::io::Result<()> {
    use libc::{
        BPF_ABS, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W, EPERM, PR_SET_NO_NEW_PRIVS,
        PR_SET_SECCOMP, SECCOMP_MODE_FILTER, SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO, SYS_unshare,
        sock_fprog,
    };
    // seccomp_data.nr is the first field; the filter runs on this machine's own
    // architecture only, so no arch check is needed for a test.
    // SAFETY: BPF_STMT and BPF_JUMP only build structs from their arguments.
    let filter = unsafe {
        [
            libc::BPF_STMT((BPF_LD | BPF_W | BPF_ABS) as u16, 0),
            libc::BPF_JUMP((BPF_JMP | BPF_JEQ | BPF_K) as u16, SYS_unshare as u32, 0, 1),
            libc::BPF_STMT((BPF_RET | BPF_K) as u16, SECCOMP_RET_ERRNO | EPERM as u32),
            libc::BPF_STMT((BPF_RET | BPF_K) as u16, SECCOMP_RET_ALLOW),
        ]
    };
    let program = sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: plain prctl(2) calls; `program` outlives them.
    unsafe {
        if libc::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
            || libc::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A missing or non-executable CMD gets 127 or 126, as with `env` and `podman run`,
/// and binfmt says which; a foreign program whose arch is not in --platform is
/// refused by name, before anything is created.
#[test]
fn a_cmd_that_cannot_run_gets_127_or_126() {
    let world = World::new("exec");
    world.program(Arch::S390x, "unreachable\n", 1);
    let not_executable = world.dir.join("not-executable");
    fs::write(&not_executable, "#!/bin/sh\ntouch ran\n").unwrap();
    fs::set_permissions(&not_executable, fs::Permissions::from_mode(0o644)).unwrap();
    assert_global_table_unchanged("binfmt run", || {
        // The runner's PATH may hold directories nobody cannot search (/root/...),
        // which execvp(3) reports as EACCES rather than ENOENT.
        let mut command = binfmt_run(&world, &["--platform", "arm64", "--", "no-such-command"]);
        command.env("PATH", "/usr/local/bin:/usr/bin:/bin");
        let output = run(command);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(127), "{stderr}");
        assert!(
            stderr.contains("cannot execute no-such-command: No such file"),
            "{stderr}"
        );

        let output = run(binfmt_run(
            &world,
            &["--platform", "arm64", "--", "./not-executable"],
        ));
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(126), "{stderr}");
        assert!(
            stderr.contains("./not-executable: Permission denied"),
            "{stderr}"
        );

        let output = run(binfmt_run(
            &world,
            &["--platform", "arm64", "--", "./hello-s390x"],
        ));
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(126), "{stderr}");
        assert!(
            stderr.contains(
                "cannot execute ./hello-s390x: it is a s390x program, and s390x is not \
                 emulated (--platform gives: arm64); fix: add it: `--platform arm64,s390x`"
            ),
            "{stderr}"
        );
    });
    assert!(!world.dir.join("ran").exists());
}

/// Must show 4, docs/rootless.md's example: under `binfmt run`, rootless Podman
/// builds an arm64 image whose `RUN` step executes an arm64 program, as nobody. The
/// image is `FROM scratch` (no registry needed) and the build uses no network (a
/// rootless network needs /dev/net/tun, which this is not about).
#[test]
fn rootless_podman_builds_an_arm64_image() {
    let world = World::new("podman");
    let podman = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .chain(["/usr/bin".into()])
        .map(|dir| dir.join("podman"))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "podman is not installed: install it (`apt-get install podman`, as .ci/run does)"
            )
        });
    // Podman wants a home and a runtime directory owned by the user that runs it.
    let (uid, gid) = caller_ids();
    let home = world.dir.join("home");
    let runtime = world.dir.join("runtime");
    for dir in [&home, &runtime] {
        fs::create_dir(dir).unwrap();
        std::os::unix::fs::chown(dir, Some(uid), Some(gid)).unwrap();
    }
    fs::set_permissions(&runtime, fs::Permissions::from_mode(0o700)).unwrap();
    let context = world.dir.join("context");
    fs::create_dir(&context).unwrap();
    fs::write(
        context.join("Containerfile"),
        "FROM scratch\nCOPY hello /hello\nRUN [\"/hello\"]\n",
    )
    .unwrap();
    let hello = tiny_elf::hello(machine(Arch::Arm64), b"RUN on arm64 under binfmt run\n", 0);
    fs::write(context.join("hello"), hello).unwrap();
    fs::set_permissions(context.join("hello"), fs::Permissions::from_mode(0o755)).unwrap();

    let storage = home.join("storage");
    let run_root = runtime.join("storage");
    let mut command = binfmt_run(&world, &["--platform", "linux/arm64", "--"]);
    command
        .arg(&podman)
        .args([
            "--storage-driver",
            "vfs",
            "--events-backend",
            "file",
            "--root",
        ])
        .arg(&storage)
        .arg("--runroot")
        .arg(&run_root)
        .args([
            "build",
            "--network",
            "none",
            "--platform",
            "linux/arm64",
            "--no-cache",
        ])
        .arg(&context)
        .env("HOME", &home)
        .env("XDG_RUNTIME_DIR", &runtime)
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        );
    let output = assert_global_table_unchanged("binfmt run -- podman build", || run(command));

    // Rootless Podman leaves a pause process holding its user namespace (inside
    // binfmt run's): end it, it was started by this test.
    if let Ok(pid) = fs::read_to_string(runtime.join("libpod/tmp/pause.pid"))
        && let Some(pid) = pid
            .trim()
            .parse()
            .ok()
            .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
    let stdout = text(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("RUN on arm64 under binfmt run\n"),
        "podman build failed ({:?}):\n--- stdout\n{stdout}--- stderr\n{}",
        output.status,
        text(&output.stderr)
    );
}
