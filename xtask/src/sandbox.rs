//! A private world for the xtask commands that run binfmt for real (`bench`,
//! `conformance`): a user and mount namespace of their own, with a private
//! binfmt_misc instance (Linux 6.7+) mounted at `/proc/sys/fs/binfmt_misc` over a
//! tmpfs that hides the machine's `/proc/sys/fs`, so that binfmt, systemd-binfmt,
//! mmdebstrap and anything else that looks at the usual place sees that instance. The
//! machine's own table is never touched: the kernel takes a program's handler from the
//! instance of the nearest user namespace that has one, so the namespaces that tools
//! create below this one (mmdebstrap's, Podman's) use it too.
//!
//! xtask runs itself again inside ([`run_inside`]). The child creates the namespaces
//! itself (`unshare(2)`, while it is single-threaded) and waits; the parent, still
//! outside, writes the child's uid and gid maps; the child then mounts the instance
//! ([`enter`]). The maps are written from outside because only the parent namespace
//! can grant more than the caller's own id: [`Ids::Root`] maps the caller to root,
//! which any user may do and which is enough to register emulators and run programs
//! (the bench); [`Ids::All`] maps every id to itself, which only root may do, and
//! which dpkg needs to hand files to the system users a Debian userland creates
//! (conformance). A map cannot be written by the child: a process that changes its
//! user namespace may map only its own id, and loses its capabilities if it executes
//! a program (`unshare --map-users` asks newuidmap, which grants root nothing).

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use binfmt_misc::{BinfmtMisc, DEFAULT_MOUNT, Table};

use anyhow::{Context, Result, anyhow};

/// Set in the re-executed child: it is to enter the namespaces first.
const INSIDE_ENV: &str = "BINFMT_XTASK_INSIDE";

/// What the child prints once it has created the namespaces, before its ids are mapped.
const CREATED: &[u8] = b"namespaces created\n";

/// Which ids the namespace maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ids {
    /// The caller's uid and gid as root (0), nothing else; any user.
    Root,
    /// Every uid and gid to itself, as in the machine's own namespace; root only.
    All,
}

/// Whether this process is the child [`run_inside`] started (which must call
/// [`enter`] before anything else).
pub fn is_inside() -> bool {
    std::env::var_os(INSIDE_ENV).is_some()
}

/// Runs `xtask ARGS...` again, with `envs`, inside a user and mount namespace mapping
/// `ids`; returns its exit status and stdout (its stderr is this process's). The child
/// calls [`enter`] first.
pub fn run_inside(args: &[OsString], envs: &[(&str, &OsStr)], ids: Ids) -> Result<Output> {
    let exe = std::env::current_exe().with_context(|| "cannot find the xtask binary")?;
    let mut child = Command::new(&exe)
        .args(args)
        .envs(envs.iter().copied())
        .env(INSIDE_ENV, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot run {}", exe.display()))?;
    let (Some(mut go), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(anyhow!("the child's stdin and stdout are not pipes"));
    };
    let mut stdout = BufReader::new(stdout);
    let mut line = Vec::new();
    stdout
        .read_until(b'\n', &mut line)
        .with_context(|| "cannot read from the namespaced child")?;
    if line != CREATED {
        let status = child.wait().with_context(|| "cannot wait for the child")?;
        return Err(anyhow!(
            "the child could not create its user and mount namespace ({status}; its error is \
             above)"
        ));
    }
    if let Err(error) = write_maps(child.id(), ids) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(error);
    }
    // The child waits for this line before it does anything as root of its namespace.
    go.write_all(b"\n")
        .with_context(|| "cannot tell the namespaced child to go on")?;
    drop(go);
    let mut out = Vec::new();
    stdout
        .read_to_end(&mut out)
        .with_context(|| "cannot read from the namespaced child")?;
    let status = child
        .wait()
        .with_context(|| "cannot wait for the namespaced child")?;
    Ok(Output {
        status,
        stdout: out,
        stderr: Vec::new(),
    })
}

/// Writes the uid and gid maps of process `pid`'s user namespace (user_namespaces(7)).
fn write_maps(pid: u32, ids: Ids) -> Result<()> {
    let proc = Path::new("/proc").join(pid.to_string());
    let (uid_map, gid_map) = match ids {
        Ids::Root => {
            // Without CAP_SETGID outside, a gid map may be written only after
            // setgroups(2) has been denied in the namespace.
            let setgroups = proc.join("setgroups");
            fs::write(&setgroups, "deny")
                .with_context(|| format!("cannot write {}", setgroups.display()))?;
            (
                format!("0 {} 1\n", rustix::process::geteuid().as_raw()),
                format!("0 {} 1\n", rustix::process::getegid().as_raw()),
            )
        }
        // The whole 32-bit range, as the machine's own namespace maps it.
        Ids::All => ("0 0 4294967295\n".to_owned(), "0 0 4294967295\n".to_owned()),
    };
    for (file, map) in [("uid_map", uid_map), ("gid_map", gid_map)] {
        let path = proc.join(file);
        fs::write(&path, &map).with_context(|| {
            format!(
                "cannot write {map:?} to {} (mapping every id takes root)",
                path.display()
            )
        })?;
    }
    Ok(())
}

/// In the child of [`run_inside`]: creates the user and mount namespace, waits until
/// the parent has mapped its ids, and mounts a tmpfs over `/proc/sys/fs` with an
/// empty directory for binfmt_misc ([`fresh_instance`] mounts an instance there).
#[allow(unsafe_code)] // rustix's unshare is unsafe for CLONE_FILES, which is not used.
pub fn enter() -> Result<()> {
    // SAFETY: xtask has started no thread (CLONE_NEWUSER refuses a multi-threaded
    // process anyway), and no file descriptor table is unshared.
    unsafe {
        rustix::thread::unshare_unsafe(
            rustix::thread::UnshareFlags::NEWUSER | rustix::thread::UnshareFlags::NEWNS,
        )
    }
    .with_context(|| {
        anyhow!(
            "cannot create a user and mount namespace (unprivileged user namespaces must be \
         allowed)"
        )
    })?;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(CREATED)
        .and_then(|()| stdout.flush())
        .with_context(|| "cannot tell the parent the namespaces exist")?;
    drop(stdout);
    let mut go = String::new();
    std::io::stdin()
        .read_line(&mut go)
        .with_context(|| "cannot wait for the parent")?;
    if go != "\n" || !rustix::process::geteuid().is_root() {
        return Err(anyhow!("the parent did not map this namespace's ids"));
    }
    // Nothing mounted here reaches the machine's mount namespace.
    rustix::mount::mount_change(
        "/",
        rustix::mount::MountPropagationFlags::PRIVATE | rustix::mount::MountPropagationFlags::REC,
    )
    .with_context(|| "cannot make the namespace's mounts private")?;
    // Hide the machine's /proc/sys/fs (in this mount namespace only) and make the
    // place every tool looks at a private instance.
    rustix::mount::mount(
        "tmpfs",
        "/proc/sys/fs",
        "tmpfs",
        rustix::mount::MountFlags::empty(),
        None,
    )
    .with_context(|| "cannot mount a tmpfs on /proc/sys/fs in the namespace")?;
    fs::create_dir(DEFAULT_MOUNT).with_context(|| format!("cannot create {DEFAULT_MOUNT}"))?;
    Ok(())
}

/// A new, empty binfmt_misc instance at the default place: the previous one is
/// unmounted (which destroys a private instance on the kernels that have them, Linux
/// 6.7 and newer; checked below) and a new one mounted.
pub fn fresh_instance() -> Result<BinfmtMisc> {
    while rustix::mount::unmount(DEFAULT_MOUNT, rustix::mount::UnmountFlags::empty()).is_ok() {}
    let table = BinfmtMisc::mount(DEFAULT_MOUNT)
        .with_context(|| "cannot mount a private binfmt_misc instance (Linux 6.7+ needed)")?;
    if !table.entry_names()?.is_empty() {
        return Err(anyhow!(
            "a freshly mounted binfmt_misc instance is not empty"
        ));
    }
    Ok(table)
}

/// The machine's own binfmt_misc table, to compare before and after a run: every
/// entry (name and text) where it is mounted in this mount namespace, and, as root,
/// every entry of the machine's instance read through a mount of its own in a
/// throwaway mount namespace, so that a change is seen even where nothing is mounted.
pub fn global_table() -> Result<Vec<(String, String)>> {
    let mut entries = Vec::new();
    if let Ok(table) = BinfmtMisc::open(DEFAULT_MOUNT) {
        for name in table.entry_names()? {
            let path = Path::new(DEFAULT_MOUNT).join(&name);
            let text = fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            entries.push((format!("mounted: {name}"), text));
        }
    }
    if rustix::process::geteuid().is_root() {
        let dir = crate::workspace::target_dir()
            .join(format!("global-binfmt_misc-{}", std::process::id()));
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        // Prints `name NUL text NUL` for every entry (register is write-only). The
        // mount dies with the namespace; if it was the instance's only one, the
        // instance had no entries to lose.
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
            .with_context(|| "cannot run unshare (util-linux)");
        let _ = fs::remove_dir(&dir);
        let output = output?;
        if !output.status.success() {
            return Err(anyhow!(
                "cannot read the machine's binfmt_misc instance through a private mount ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        let text = String::from_utf8_lossy(&output.stdout);
        let mut fields = text.split('\0');
        while let (Some(name), Some(text)) = (fields.next(), fields.next()) {
            entries.push((format!("instance: {name}"), text.to_owned()));
        }
    }
    entries.sort();
    Ok(entries)
}

/// `args` as the arguments of [`run_inside`].
pub fn os_args<I, S>(args: I) -> Vec<OsString>
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    args.into_iter().map(Into::into).collect()
}

/// A shared lock over the machine's own table for the length of a run, the one the
/// integration tests take (`tests/util.rs`, `GlobalTable`): a test that changes the
/// machine's table (the Docker test) holds it exclusively, so a comparison before and
/// after never sees its change.
pub struct GlobalTableWindow {
    _file: fs::File,
}

impl GlobalTableWindow {
    const LOCK: &str = "/tmp/binfmt-tests-global-binfmt_misc.lock";

    /// Waits until no one changes the machine's table, and keeps them waiting.
    pub fn open() -> Result<GlobalTableWindow> {
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(Self::LOCK)
            .with_context(|| format!("cannot open the lock file {}", Self::LOCK))?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockShared)
            .with_context(|| format!("cannot lock {}", Self::LOCK))?;
        Ok(GlobalTableWindow { _file: file })
    }
}
