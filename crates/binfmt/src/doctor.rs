//! `binfmt doctor`: inspect the kernel and the environment, and report every finding
//! with its cause and its fix; exit 1 when anything is wrong.
//!
//! What it looks at, in order, each step only when the previous one allows it:
//!
//! 1. the kernel, through an [`Environment`] of paths (the seam the tests use to
//!    fake a kernel they cannot have): `/proc/filesystems` (is binfmt_misc there?),
//!    `/lib/modules/<release>` (if not, is it a module that is not loaded?),
//!    `/proc/sys/kernel/osrelease` (flag F needs Linux 4.8), `/proc/self/mountinfo`
//!    (where binfmt_misc is mounted instead);
//! 2. the mount: is binfmt_misc mounted at `--mount`? If not and it is the default
//!    place, doctor mounts it to look inside, says that such an instance dies with
//!    the process that mounted it, and unmounts it again;
//! 3. permission: may this process write `register` (root, and not a read-only
//!    `/proc/sys` as in a container without `--privileged`)? Is the table enabled?
//! 4. every entry: disabled; claiming the machine's own architecture; no flag F with
//!    an interpreter missing from this mount namespace (the seed's stale entry), or
//!    present here but not in containers; two enabled entries claiming one
//!    architecture (Debian's qemu-user-binfmt next to ours, Rosetta). Entries for
//!    other kinds of files (binfmt-support's jar and python entries, WSLInterop) are
//!    only reported when stale;
//! 5. every architecture's probe, run in an empty root: an entry whose probe fails.
//!
//! Nothing is written to binfmt_misc.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use binfmt_misc::{BinfmtMisc, DEFAULT_MOUNT, Error as TableError, Table};
use qemu_catalog::Arch;
use serde::Serialize;

use crate::check::binfmt_command;
use crate::empty_root::{Confinement, Prober};
use crate::status;
use crate::survey::{Survey, claims};

/// The oldest kernel with flag F (`MISC_FMT_OPEN_FILE`, Linux 4.8).
const F_SINCE: (u32, u32) = (4, 8);

/// Where doctor reads kernel facts: the real paths, or a fake tree in tests.
#[derive(Clone, Debug)]
pub struct Environment {
    /// procfs: `filesystems`, `sys/kernel/osrelease`, `self/mountinfo`.
    pub proc: PathBuf,
    /// The kernel modules tree: `<release>/modules.dep` and `modules.builtin`.
    pub modules: PathBuf,
}

impl Environment {
    /// This machine.
    pub fn host() -> Environment {
        Environment {
            proc: PathBuf::from("/proc"),
            modules: PathBuf::from("/lib/modules"),
        }
    }
}

/// What the kernel's own files say; `None` where a file could not be read.
#[derive(Clone, Debug, Default)]
pub struct KernelFacts {
    /// `/proc/filesystems`.
    pub filesystems: Option<String>,
    /// `/proc/sys/kernel/osrelease`, trimmed.
    pub release: Option<String>,
    /// `/proc/self/mountinfo`.
    pub mountinfo: Option<String>,
    /// What the modules tree says about binfmt_misc.
    pub module: Module,
}

/// binfmt_misc in the kernel's modules tree.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Module {
    /// `modules.builtin` lists it.
    Builtin,
    /// `modules.dep` lists it: it can be loaded.
    Loadable,
    /// The tree exists and lists neither.
    Absent,
    /// No modules tree (most containers).
    #[default]
    Unknown,
}

impl KernelFacts {
    /// Reads the facts from `env`.
    pub fn read(env: &Environment) -> KernelFacts {
        let read = |path: PathBuf| fs::read_to_string(path).ok();
        let release = read(env.proc.join("sys/kernel/osrelease")).map(|r| r.trim().to_owned());
        let module = match &release {
            Some(release) => {
                let dir = env.modules.join(release);
                let builtin = read(dir.join("modules.builtin"));
                let dep = read(dir.join("modules.dep"));
                let lists = |text: &Option<String>| {
                    text.as_deref()
                        .is_some_and(|t| t.contains("/binfmt_misc.ko"))
                };
                if lists(&builtin) {
                    Module::Builtin
                } else if lists(&dep) {
                    Module::Loadable
                } else if builtin.is_some() || dep.is_some() {
                    Module::Absent
                } else {
                    Module::Unknown
                }
            }
            None => Module::Unknown,
        };
        KernelFacts {
            filesystems: read(env.proc.join("filesystems")),
            release,
            mountinfo: read(env.proc.join("self/mountinfo")),
            module,
        }
    }

    /// Whether `/proc/filesystems` lists binfmt_misc (`nodev\tbinfmt_misc`); `None`
    /// when it could not be read.
    pub fn has_binfmt_misc(&self) -> Option<bool> {
        self.filesystems.as_ref().map(|text| {
            text.lines()
                .any(|line| line.split_whitespace().last() == Some("binfmt_misc"))
        })
    }

    /// The kernel's major and minor version, from a release such as
    /// `6.18.44-fc-v657`.
    pub fn version(&self) -> Option<(u32, u32)> {
        let release = self.release.as_deref()?;
        let mut numbers = release
            .split(|c: char| !c.is_ascii_digit())
            .map(str::parse::<u32>);
        Some((numbers.next()?.ok()?, numbers.next()?.ok()?))
    }

    /// Where binfmt_misc is mounted in this mount namespace (mountinfo's fifth field,
    /// for lines whose filesystem type, after ` - `, is binfmt_misc).
    pub fn binfmt_misc_mounts(&self) -> Vec<PathBuf> {
        let Some(mountinfo) = &self.mountinfo else {
            return Vec::new();
        };
        mountinfo
            .lines()
            .filter_map(|line| {
                let (fields, rest) = line.split_once(" - ")?;
                (rest.split(' ').next() == Some("binfmt_misc"))
                    .then(|| fields.split(' ').nth(4).map(unescape_mountinfo))?
            })
            .collect()
    }
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|digits| {
            let text = std::str::from_utf8(digits).ok()?;
            u8::from_str_radix(text, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    use std::os::unix::ffi::OsStringExt;
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// One thing that is wrong.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// A stable name (`stale-entry`), for scripts and the README.
    pub id: &'static str,
    /// What is wrong, naming the entry, path or architecture.
    pub problem: String,
    /// Why it happens and what it breaks.
    pub cause: String,
    /// What to run or do.
    pub fix: String,
}

impl Finding {
    fn new(id: &'static str, problem: String, cause: &str, fix: String) -> Finding {
        Finding {
            id,
            problem,
            cause: cause.to_owned(),
            fix,
        }
    }
}

/// Everything doctor found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// Whether nothing is wrong.
    pub ok: bool,
    /// Checks that passed, in order, as sentences.
    pub checks: Vec<String>,
    /// What is wrong.
    pub findings: Vec<Finding>,
    /// What runs, proved by execution (the status JSON's `supported`).
    pub supported: Vec<String>,
}

impl Report {
    fn pass(&mut self, check: String) {
        self.checks.push(check);
    }

    fn find(&mut self, finding: Finding) {
        self.findings.push(finding);
    }

    /// The human report.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        for check in &self.checks {
            let _ = writeln!(out, "ok: {check}");
        }
        if !self.supported.is_empty() {
            let _ = writeln!(out, "runs: {}", self.supported.join(", "));
        }
        for finding in &self.findings {
            let _ = writeln!(out, "\nPROBLEM [{}] {}", finding.id, finding.problem);
            let _ = writeln!(out, "  cause: {}", finding.cause);
            let _ = writeln!(out, "  fix: {}", finding.fix);
        }
        match self.findings.len() {
            0 => out.push_str("\nbinfmt doctor: no problems found\n"),
            1 => out.push_str("\nbinfmt doctor: 1 problem\n"),
            n => {
                let _ = writeln!(out, "\nbinfmt doctor: {n} problems");
            }
        }
        out
    }

    /// The JSON report.
    pub fn render_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }
}

/// The kernel's part: binfmt_misc present, flag F supported. Returns whether
/// binfmt_misc is there (or cannot be told), so the rest is worth looking at.
pub fn check_kernel(facts: &KernelFacts, report: &mut Report) -> bool {
    let present = facts.has_binfmt_misc();
    match present {
        Some(true) => report.pass("binfmt_misc is in the kernel".to_owned()),
        Some(false) => report.find(match facts.module {
            Module::Loadable => Finding::new(
                "binfmt-misc-not-loaded",
                "binfmt_misc is not in /proc/filesystems: its module is not loaded".to_owned(),
                "the kernel has binfmt_misc as a module (modules.dep lists binfmt_misc.ko) \
                 and nothing loaded it; without it no foreign program can run",
                "modprobe binfmt_misc (on the host, as root); to load it at every boot: \
                 echo binfmt_misc > /etc/modules-load.d/binfmt_misc.conf"
                    .to_owned(),
            ),
            _ => Finding::new(
                "binfmt-misc-missing",
                "binfmt_misc is not in /proc/filesystems: the kernel lacks it, or its \
                 module is not loaded"
                    .to_owned(),
                "without binfmt_misc the kernel cannot hand foreign programs to QEMU; every \
                 cross-architecture build fails with `exec format error`",
                "modprobe binfmt_misc on the host; if there is no such module, use a kernel \
                 built with CONFIG_BINFMT_MISC"
                    .to_owned(),
            ),
        }),
        None => {}
    }
    match facts.version() {
        Some(version) if version < F_SINCE => report.find(Finding::new(
            "kernel-too-old-for-f",
            format!(
                "Linux {} is older than 4.8 and has no flag F",
                facts.release.as_deref().unwrap_or_default()
            ),
            "without F the kernel opens the emulator at exec time inside each container's \
             own root, where it does not exist, so emulated containers fail; registering with \
             F fails with EINVAL",
            "upgrade the kernel to 4.8 or newer; until then copy the qemu-<cpu> emulator \
             into every image at the path the entry names, and register with `--flags POC`"
                .to_owned(),
        )),
        Some((major, minor)) => {
            report.pass(format!("Linux {major}.{minor} has flag F (since 4.8)"));
        }
        None => {}
    }
    present != Some(false)
}

/// Runs every check; see the module documentation.
pub fn doctor(env: &Environment, mount: &Path, prober: &dyn Prober) -> Report {
    let mut report = Report::default();
    let facts = KernelFacts::read(env);
    if check_kernel(&facts, &mut report) {
        check_table(&facts, mount, prober, &mut report);
    }
    report.ok = report.findings.is_empty();
    report
}

/// Steps 2 to 5 of the module documentation.
fn check_table(facts: &KernelFacts, mount: &Path, prober: &dyn Prober, report: &mut Report) {
    let shown = mount.display();
    let mut self_mounted = None;
    let table = match BinfmtMisc::open(mount) {
        Ok(table) => {
            report.pass(format!("binfmt_misc is mounted at {shown}"));
            Some(table)
        }
        Err(error @ (TableError::NotBinfmtMisc { .. } | TableError::OpenMount { .. })) => {
            let elsewhere: Vec<String> = facts
                .binfmt_misc_mounts()
                .iter()
                .filter(|path| path.as_path() != mount)
                .map(|path| path.display().to_string())
                .collect();
            let elsewhere = if elsewhere.is_empty() {
                String::new()
            } else {
                format!(" (it is mounted at {}; use --mount)", elsewhere.join(", "))
            };
            let what = match error {
                TableError::NotBinfmtMisc { .. } => {
                    format!("binfmt_misc is not mounted at {shown}{elsewhere}")
                }
                error => format!("binfmt_misc is not mounted at {shown}{elsewhere}: {error}"),
            };
            report.find(Finding::new(
                "not-mounted",
                what,
                "tools and users look for the entries there, and a privileged container that \
                 finds nothing mounted has to mount an instance of its own",
                format!(
                    "mount -t binfmt_misc binfmt_misc {shown} (on systemd hosts: systemctl \
                     start proc-sys-fs-binfmt_misc.mount)"
                ),
            ));
            if mount == Path::new(DEFAULT_MOUNT) {
                match BinfmtMisc::mount(mount) {
                    Ok(table) => {
                        self_mounted = Some(mount.to_owned());
                        Some(table)
                    }
                    Err(error) => {
                        log::info!("cannot mount binfmt_misc to look inside: {error}");
                        None
                    }
                }
            } else {
                None
            }
        }
        Err(error) => {
            report.find(Finding::new(
                "not-mounted",
                format!("cannot use {shown}: {error}"),
                "binfmt_misc must be reachable at a real mount point",
                format!("mount -t binfmt_misc binfmt_misc {shown}"),
            ));
            None
        }
    };

    let survey = match &table {
        Some(table) => match Survey::read(Some(table)) {
            Ok(survey) => Some(survey),
            Err(error) => {
                report.find(Finding::new(
                    "unreadable",
                    format!("cannot read binfmt_misc at {shown}: {error}"),
                    "its entries cannot be checked",
                    "run binfmt doctor as root".to_owned(),
                ));
                None
            }
        },
        None => None,
    };

    if let (Some(_), Some(survey)) = (&self_mounted, &survey) {
        let count = survey.entries.len();
        report.find(Finding::new(
            "self-mounted",
            format!(
                "binfmt doctor had to mount binfmt_misc at {shown} itself to look inside \
                 ({count} entries); an instance that a process mounts itself dies with the \
                 last mount of it"
            ),
            "since Linux 6.7 unmounting the last mount of a binfmt_misc instance destroys it \
             with every entry: a privileged container that mounts binfmt_misc, registers and \
             exits leaves nothing behind, although it reported success (unless the host has \
             the instance mounted too; entries already present mean someone does)",
            format!(
                "mount binfmt_misc on the host, where the mount outlives every container: \
                 systemctl start proc-sys-fs-binfmt_misc.mount, or mount -t binfmt_misc \
                 binfmt_misc {shown}; then register"
            ),
        ));
    }

    if let Some(table) = &table {
        check_permission(table, report);
        match table.is_enabled() {
            Ok(true) => report.pass("binfmt_misc is enabled".to_owned()),
            Ok(false) => report.find(Finding::new(
                "globally-disabled",
                format!("binfmt_misc is disabled as a whole: {shown}/status says disabled"),
                "while it is, the kernel ignores every entry, enabled or not, and every \
                 foreign program fails with `exec format error`",
                format!("echo 1 > {shown}/status"),
            )),
            Err(error) => log::warn!("{error}"),
        }
    }

    let mut survey = survey.unwrap_or_else(Survey::without_table);
    survey.probe(prober, &Arch::ALL);
    match (&survey.probe_error, survey.confinement) {
        (Some(why), _) => report.find(Finding::new(
            "cannot-probe",
            format!("no probe could run: {why}"),
            "without running a program of each architecture nothing is proved",
            "run binfmt doctor as root, with TMPDIR on a filesystem that allows exec".to_owned(),
        )),
        (None, Some(Confinement::EmptyRoot)) => {
            report.pass("probes ran in an empty root, where only entries with F work".to_owned())
        }
        (None, _) => report.pass(
            "probes ran in place (not root: no chroot), which cannot tell entries with F from \
             entries without"
                .to_owned(),
        ),
    }
    check_entries(&survey, mount, report);
    check_arches(&survey, mount, report);
    if survey.probe_error.is_none() {
        report.supported = status::status(&survey).supported;
    }

    if let (Some(path), Some(table)) = (self_mounted, table)
        && let Err(error) = table.unmount()
    {
        log::warn!("cannot unmount {}: {error}", path.display());
    }
}

/// May this process change the table? `access(2)` on `register` with the effective
/// ids (`faccessat(AT_EACCESS)`): EROFS for a read-only mount, EACCES without root.
fn check_permission(table: &BinfmtMisc, report: &mut Report) {
    use rustix::fs::{Access, AtFlags, CWD};
    let register = table.path().join("register");
    match rustix::fs::accessat(CWD, &register, Access::WRITE_OK, AtFlags::EACCESS) {
        Ok(()) => report.pass("this process may register entries".to_owned()),
        Err(rustix::io::Errno::ROFS) => report.find(Finding::new(
            "read-only",
            format!(
                "{} is mounted read-only: nothing can be registered",
                table.path().display()
            ),
            "containers without --privileged see /proc/sys, and binfmt_misc under it, \
             read-only (Docker, Kubernetes without privileged: true); this is the seed's \
             `failed to register binfmt_misc`",
            "run the container with --privileged (Kubernetes: securityContext.privileged: \
             true), or register on the host"
                .to_owned(),
        )),
        Err(errno) => report.find(Finding::new(
            "not-privileged",
            format!("this process may not write {}: {errno}", register.display()),
            "registering needs root in the user namespace that owns the binfmt_misc mount",
            "run as root (sudo binfmt ...), or in Docker with --privileged".to_owned(),
        )),
    }
}

/// Per-entry findings: disabled, the host's architecture, no F.
fn check_entries(survey: &Survey, mount: &Path, report: &mut Report) {
    let shown = mount.display();
    let binfmt = binfmt_command(mount);
    for entry in &survey.entries {
        let name = &entry.registration.name;
        let arch = Arch::ALL.into_iter().find(|arch| claims(entry, *arch));
        let install = |arch: Option<Arch>| match arch {
            Some(arch) if !arch.is_native() => format!("{binfmt} --install {arch}"),
            _ => format!("echo -1 > {shown}/{name} (removes it)"),
        };
        // Entries for other kinds of files (binfmt-support's jar or python entries,
        // WSLInterop) are someone else's business, unless plainly broken (stale).
        let emulates = arch.is_some();
        if !entry.enabled && emulates {
            report.find(Finding::new(
                "entry-disabled",
                format!("{name} is disabled"),
                "the kernel skips disabled entries: programs it would handle fail with \
                 `exec format error`",
                match arch {
                    Some(arch) if !arch.is_native() => format!(
                        "echo 1 > {shown}/{name}, or {binfmt} --install {arch} (enables or \
                         replaces it)"
                    ),
                    _ => format!("echo -1 > {shown}/{name} (removes it)"),
                },
            ));
        }
        for native in Arch::native()
            .iter()
            .filter(|native| claims(entry, **native))
        {
            report.find(Finding::new(
                "host-arch-entry",
                format!(
                    "{name} claims {native}, this machine's own architecture ({}; interpreter \
                     {})",
                    if entry.enabled { "enabled" } else { "disabled" },
                    entry.interpreter().display()
                ),
                "the kernel consults binfmt_misc before running native programs: while this \
                 entry is enabled every such program, the shell and binfmt included, runs \
                 through the interpreter, slowly if it is an emulator and not at all if it is \
                 broken",
                format!("echo -1 > {shown}/{name} (the shell's own echo, so it works even now)"),
            ));
        }
        if !entry.registration.flags.fix_binary {
            let interpreter = entry.interpreter();
            // A /proc/self/fd path names a descriptor of whoever execs: never this file.
            let missing = interpreter.starts_with("/proc/self/fd")
                || fs::symlink_metadata(interpreter).is_err();
            if missing {
                report.find(Finding::new(
                    "stale-entry",
                    format!(
                        "{name} has no flag F and its interpreter {} does not exist in this \
                         mount namespace",
                        interpreter.display()
                    ),
                    "without F the kernel looks the interpreter up when a program starts, in \
                     that program's own mount namespace and root; the entry is listed in \
                     binfmt_misc but every program it claims fails with `exec format error` \
                     or ENOENT (the seed's stale registration)",
                    install(arch),
                ));
            } else if emulates {
                report.find(Finding::new(
                    "no-fix-binary",
                    format!(
                        "{name} has no flag F: its interpreter {} exists here, but not inside \
                         containers and chroots",
                        interpreter.display()
                    ),
                    "without F the kernel looks the interpreter up in each program's own \
                     root: emulated programs run on this host and fail in `docker build` and \
                     `docker run` with `exec format error`",
                    install(arch),
                ));
            }
        }
    }
}

/// Per-architecture findings: duplicates and failing probes.
fn check_arches(survey: &Survey, mount: &Path, report: &mut Report) {
    let binfmt = binfmt_command(mount);
    for state in &survey.arches {
        let arch = state.arch;
        let enabled = state.enabled_claims();
        if enabled.len() > 1 {
            let names: Vec<&str> = enabled
                .iter()
                .map(|e| e.registration.name.as_str())
                .collect();
            let ours = arch.entry_name();
            let others: Vec<&str> = names.iter().copied().filter(|n| *n != ours).collect();
            let keep = if names.contains(&ours.as_str()) {
                format!("keep {ours}: {binfmt} --uninstall {}", others.join(","))
            } else {
                format!("keep one: {binfmt} --uninstall {}", names[1..].join(","))
            };
            report.find(Finding::new(
                "duplicate-arch",
                format!(
                    "{} enabled entries claim {arch} programs: {}",
                    names.len(),
                    names.join(", ")
                ),
                "the kernel uses whichever was registered last, so which emulator runs \
                 depends on boot order (Debian's qemu-user-binfmt, Rosetta and binfmt each \
                 register their own)",
                keep,
            ));
        }
        let serving = survey.serving_claims(arch);
        // The host's architectures are covered by host-arch-entry, entries without F by
        // stale-entry and no-fix-binary: their probes fail for the reason given there.
        if arch.is_native() || serving.is_empty() {
            continue;
        }
        if !serving.iter().any(|e| e.registration.flags.fix_binary) {
            continue;
        }
        if let Some(failure) = state.failure() {
            let names: Vec<String> = serving
                .iter()
                .map(|e| e.registration.name.clone())
                .collect();
            let interpreters: Vec<String> = serving
                .iter()
                .map(|e| e.interpreter().display().to_string())
                .collect();
            let others: Vec<&String> = names.iter().filter(|n| **n != arch.entry_name()).collect();
            let fix = if others.is_empty() {
                format!("{binfmt} --install {arch}")
            } else {
                format!(
                    "{binfmt} --uninstall {} --install {arch}",
                    others
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                )
            };
            report.find(Finding::new(
                "probe-failed",
                format!(
                    "a {arch} program does not run through {} (interpreter {}): {failure}",
                    names.join(", "),
                    interpreters.join(", ")
                ),
                "the entry is registered and enabled, but its interpreter does not run \
                 programs of this architecture: not an emulator, a wrong or broken one",
                fix,
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake kernel tree: simulated, because a test cannot give this machine another
    /// kernel (one without binfmt_misc, or older than 4.8).
    fn fake_env(
        name: &str,
        filesystems: &str,
        release: &str,
        modules_dep: Option<&str>,
    ) -> Environment {
        let root =
            std::env::temp_dir().join(format!("binfmt-doctor-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let proc = root.join("proc");
        fs::create_dir_all(proc.join("sys/kernel")).unwrap();
        fs::create_dir_all(proc.join("self")).unwrap();
        fs::write(proc.join("filesystems"), filesystems).unwrap();
        fs::write(proc.join("sys/kernel/osrelease"), format!("{release}\n")).unwrap();
        fs::write(
            proc.join("self/mountinfo"),
            "36 25 0:33 / /proc/sys/fs/binfmt\\040misc rw,nosuid - binfmt_misc binfmt_misc rw\n\
             22 1 8:1 / / rw - ext4 /dev/sda1 rw\n",
        )
        .unwrap();
        let modules = root.join("modules");
        if let Some(dep) = modules_dep {
            fs::create_dir_all(modules.join(release)).unwrap();
            fs::write(modules.join(release).join("modules.dep"), dep).unwrap();
        }
        Environment { proc, modules }
    }

    const WITH: &str = "nodev\tsysfs\nnodev\tproc\nnodev\tbinfmt_misc\n\text4\n";
    const WITHOUT: &str = "nodev\tsysfs\nnodev\tproc\n\text4\n";

    #[test]
    fn reads_the_kernel_facts() {
        let env = fake_env("facts", WITH, "6.18.44-fc-v657", None);
        let facts = KernelFacts::read(&env);
        assert_eq!(facts.has_binfmt_misc(), Some(true));
        assert_eq!(facts.version(), Some((6, 18)));
        assert_eq!(facts.module, Module::Unknown);
        assert_eq!(
            facts.binfmt_misc_mounts(),
            [PathBuf::from("/proc/sys/fs/binfmt misc")]
        );
        let mut report = Report::default();
        assert!(check_kernel(&facts, &mut report));
        assert!(report.findings.is_empty(), "{report:?}");
    }

    /// Simulated: a kernel with binfmt_misc as a module nobody loaded.
    #[test]
    fn a_module_that_is_not_loaded_is_told_from_a_missing_one() {
        let dep = "kernel/fs/binfmt_misc.ko.zst:\nkernel/fs/other.ko:\n";
        let env = fake_env("module", WITHOUT, "6.1.0-28-amd64", Some(dep));
        let mut report = Report::default();
        assert!(!check_kernel(&KernelFacts::read(&env), &mut report));
        assert_eq!(report.findings[0].id, "binfmt-misc-not-loaded");
        assert!(report.findings[0].fix.starts_with("modprobe binfmt_misc"));

        let env = fake_env(
            "nomodule",
            WITHOUT,
            "6.1.0-28-amd64",
            Some("kernel/fs/other.ko:\n"),
        );
        let mut report = Report::default();
        assert!(!check_kernel(&KernelFacts::read(&env), &mut report));
        assert_eq!(report.findings[0].id, "binfmt-misc-missing");
        assert!(report.findings[0].fix.contains("CONFIG_BINFMT_MISC"));
    }

    /// Simulated: a kernel older than 4.8.
    #[test]
    fn a_kernel_without_flag_f_is_found() {
        let env = fake_env("old", WITH, "4.4.0-210-generic", None);
        let mut report = Report::default();
        assert!(check_kernel(&KernelFacts::read(&env), &mut report));
        assert_eq!(report.findings.len(), 1, "{report:?}");
        assert_eq!(report.findings[0].id, "kernel-too-old-for-f");
        assert!(report.findings[0].problem.contains("4.4.0-210-generic"));
        let env = fake_env("new", WITH, "4.8.0", None);
        let mut report = Report::default();
        check_kernel(&KernelFacts::read(&env), &mut report);
        assert!(report.findings.is_empty(), "{report:?}");
    }
}
