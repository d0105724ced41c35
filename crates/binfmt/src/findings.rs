//! The vocabulary of what can be wrong: every problem binfmt diagnoses, defined once
//! with a stable id, its wording, its cause and its fix.
//!
//! `binfmt check` (one finding per platform that does not run), `binfmt doctor` (every
//! finding, with its cause) and `--install` (what it refuses) all print from here, so
//! a problem reads the same wherever it is reported and its fix is the same command.
//! Adding a finding is adding a variant and its four arms below.
//!
//! A finding names the entries, architectures and paths it is about; the binfmt_misc
//! mount it concerns is given when it is worded ([`Finding::problem`],
//! [`Finding::fix`]), since every finding of one report is about one mount.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use binfmt_misc::lock::LockBusy;
use binfmt_misc::report::{Chain, Fixable};
use binfmt_misc::{DEFAULT_MOUNT, Entry};
use qemu_catalog::{Arch, Emulator};
use rustix::io::Errno;
use serde::Serialize;

use crate::host::HostFacts;
use crate::outcome::Shared;
use crate::probe::ProbeFailure;
use crate::survey::is_binfmts;

/// The oldest kernel with flag F (`MISC_FMT_OPEN_FILE`, Linux 4.8).
pub const F_SINCE: (u32, u32) = (4, 8);

/// An entry a finding is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryRef {
    /// The entry's name.
    pub name: String,
    /// Its interpreter's path.
    pub interpreter: PathBuf,
    /// Whether it is enabled.
    pub enabled: bool,
}

impl From<&Entry> for EntryRef {
    fn from(entry: &Entry) -> EntryRef {
        EntryRef {
            name: entry.registration.name.clone(),
            interpreter: entry.interpreter().to_owned(),
            enabled: entry.enabled,
        }
    }
}

/// One thing that is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finding {
    /// binfmt_misc is a module of this kernel that nobody loaded.
    BinfmtMiscNotLoaded,
    /// The kernel lacks binfmt_misc, or its module is not loaded.
    BinfmtMiscMissing,
    /// Linux older than 4.8: no flag F.
    KernelTooOldForF { release: String },
    /// binfmt_misc is not mounted at the mount (`elsewhere`: where it is), and why
    /// opening it failed when that says more than "not binfmt_misc".
    NotMounted {
        elsewhere: Vec<PathBuf>,
        error: Option<Shared<binfmt_misc::Error>>,
    },
    /// The mount cannot be used at all.
    MountUnusable { error: Shared<binfmt_misc::Error> },
    /// The mount's entries cannot be read.
    Unreadable { error: Shared<binfmt_misc::Error> },
    /// binfmt had to mount the instance itself: it dies with its last mount.
    SelfMounted { entries: usize },
    /// The mount is read-only.
    ReadOnly,
    /// This process may not write `register`.
    NotPrivileged { register: PathBuf, errno: Errno },
    /// The whole table is disabled (`status` says `disabled`).
    GloballyDisabled,
    /// Entries claim `arch`, but all are disabled.
    EntryDisabled { arch: Arch, entries: Vec<EntryRef> },
    /// Entries claim `arch`, the machine's own architecture.
    HostArchEntry { arch: Arch, entries: Vec<EntryRef> },
    /// Entries without flag F whose interpreter does not exist in this mount
    /// namespace; `arch` is what they claim, when they emulate one.
    StaleEntry {
        arch: Option<Arch>,
        entries: Vec<EntryRef>,
    },
    /// Entries for `arch` without flag F whose interpreter exists here: they do not
    /// work inside containers and chroots.
    NoFixBinary { arch: Arch, entries: Vec<EntryRef> },
    /// Several enabled entries of binfmt's claim `arch`; `names` in the order the
    /// kernel tries them (the first runs its programs).
    DuplicateArch { arch: Arch, names: Vec<String> },
    /// Several enabled entries claim `arch`, another tool's among them: `runner` runs
    /// its programs (registered last), `passed_over` are not used: a notice.
    Shadowed {
        arch: Arch,
        runner: EntryRef,
        passed_over: Vec<EntryRef>,
    },
    /// No probe could be run at all.
    CannotProbe { reason: String },
    /// The `arch` probe failed through these enabled entries.
    ProbeFailed {
        arch: Arch,
        entries: Vec<EntryRef>,
        failure: ProbeFailure,
    },
    /// No entry claims `arch`.
    NoEntry { arch: Arch },
    /// The machine's own architecture does not run, and no entry is involved.
    NativeFails {
        arch: Arch,
        failure: Option<ProbeFailure>,
    },
    /// amd64 runs, at a lower x86-64 level than asked for.
    LevelTooLow { have: u8, want: u8 },
    /// Another process held a lock binfmt waits for (the table's or the interpreter
    /// directory's) for longer than the run would wait.
    LockBusy(LockBusy),
    /// The interpreter directory's filesystem is full: the emulators of `arches` were
    /// not written; they need `needed` bytes, `free` are free.
    NoSpace {
        dir: PathBuf,
        arches: Vec<Arch>,
        needed: u64,
        free: Option<u64>,
    },
    /// This process may not create or write files in the interpreter directory.
    DirDenied {
        error: Shared<interpreter_files::Error>,
    },
    /// Entries claim `arch` with an interpreter that is not the emulator this binary
    /// carries for it (another tool's): a notice, not a problem.
    ForeignEmulator { arch: Arch, entries: Vec<EntryRef> },
}

impl Finding {
    /// The finding for a binfmt_misc mount that could not be opened: not mounted
    /// (saying where it is mounted instead, from `facts`), or not usable at all.
    pub fn for_unopened_table(
        error: binfmt_misc::Error,
        mount: &Path,
        facts: &HostFacts,
    ) -> Finding {
        let elsewhere = || -> Vec<PathBuf> {
            facts
                .binfmt_misc_mounts()
                .into_iter()
                .filter(|path| path.as_path() != mount)
                .collect()
        };
        match error {
            binfmt_misc::Error::NotBinfmtMisc { .. } => Finding::NotMounted {
                elsewhere: elsewhere(),
                error: None,
            },
            binfmt_misc::Error::OpenMount { .. } => Finding::NotMounted {
                elsewhere: elsewhere(),
                error: Some(Shared::new(error)),
            },
            error => Finding::MountUnusable {
                error: Shared::new(error),
            },
        }
    }

    /// Whether this is worth knowing but not wrong (another tool's handler or
    /// emulator): doctor prints it as a `NOTE` and does not count it as a problem.
    pub fn is_notice(&self) -> bool {
        matches!(
            self,
            Finding::Shadowed { .. } | Finding::ForeignEmulator { .. }
        )
    }

    /// A short, stable name (`stale-entry`), for scripts and docs/troubleshooting.md.
    pub fn id(&self) -> &'static str {
        match self {
            Finding::BinfmtMiscNotLoaded => "binfmt-misc-not-loaded",
            Finding::BinfmtMiscMissing => "binfmt-misc-missing",
            Finding::KernelTooOldForF { .. } => "kernel-too-old-for-f",
            Finding::NotMounted { .. } | Finding::MountUnusable { .. } => "not-mounted",
            Finding::Unreadable { .. } => "unreadable",
            Finding::SelfMounted { .. } => "self-mounted",
            Finding::ReadOnly => "read-only",
            Finding::NotPrivileged { .. } => "not-privileged",
            Finding::GloballyDisabled => "globally-disabled",
            Finding::EntryDisabled { .. } => "entry-disabled",
            Finding::HostArchEntry { .. } => "host-arch-entry",
            Finding::StaleEntry { .. } => "stale-entry",
            Finding::NoFixBinary { .. } => "no-fix-binary",
            Finding::DuplicateArch { .. } => "duplicate-arch",
            Finding::Shadowed { .. } => "shadowed-handler",
            Finding::CannotProbe { .. } => "cannot-probe",
            Finding::ProbeFailed { .. } => "probe-failed",
            Finding::NoEntry { .. } => "no-entry",
            Finding::NativeFails { .. } => "native-fails",
            Finding::LevelTooLow { .. } => "level-too-low",
            Finding::LockBusy(_) => "lock-busy",
            Finding::NoSpace { .. } => "no-space",
            Finding::DirDenied { .. } => "interpreter-dir-denied",
            Finding::ForeignEmulator { .. } => "foreign-emulator",
        }
    }

    /// What is wrong, naming the entry, path or architecture, about the binfmt_misc
    /// table at `mount`.
    pub fn problem(&self, mount: &Path) -> String {
        let shown = mount.display();
        match self {
            Finding::BinfmtMiscNotLoaded => {
                "binfmt_misc is not in /proc/filesystems: its module is not loaded".to_owned()
            }
            Finding::BinfmtMiscMissing => "binfmt_misc is not in /proc/filesystems: the \
                                           kernel lacks it, or its module is not loaded"
                .to_owned(),
            Finding::KernelTooOldForF { release } => {
                format!("Linux {release} is older than 4.8 and has no flag F")
            }
            Finding::NotMounted { elsewhere, error } => {
                let mut problem = format!("binfmt_misc is not mounted at {shown}");
                if !elsewhere.is_empty() {
                    let paths: Vec<String> =
                        elsewhere.iter().map(|p| p.display().to_string()).collect();
                    let _ = write!(problem, " (it is mounted at {})", paths.join(", "));
                }
                if let Some(error) = error {
                    let _ = write!(problem, ": {}", Chain(&**error));
                }
                problem
            }
            Finding::MountUnusable { error } => {
                format!("cannot use {shown}: {}", Chain(&**error))
            }
            Finding::Unreadable { error } => {
                format!("cannot read binfmt_misc at {shown}: {}", Chain(&**error))
            }
            Finding::SelfMounted { entries } => format!(
                "binfmt doctor had to mount binfmt_misc at {shown} itself to look inside \
                 ({entries} entries); an instance that a process mounts itself dies with the \
                 last mount of it"
            ),
            Finding::ReadOnly => {
                format!("{shown} is mounted read-only: nothing can be registered")
            }
            Finding::NotPrivileged { register, errno } => {
                format!("this process may not write {}: {errno}", register.display())
            }
            Finding::GloballyDisabled => {
                format!("binfmt_misc is disabled as a whole: {shown}/status says disabled")
            }
            Finding::EntryDisabled { arch, entries } => format!(
                "{} claims {arch} programs but is disabled",
                names(entries).join(", ")
            ),
            Finding::HostArchEntry { arch, entries } => each(entries, |entry| {
                format!(
                    "{} claims {arch}, this machine's own architecture ({}; interpreter {})",
                    entry.name,
                    if entry.enabled { "enabled" } else { "disabled" },
                    entry.interpreter.display()
                )
            }),
            Finding::StaleEntry { entries, .. } => each(entries, |entry| {
                format!(
                    "{} has no flag F and its interpreter {} does not exist in this mount \
                     namespace",
                    entry.name,
                    entry.interpreter.display()
                )
            }),
            Finding::NoFixBinary { entries, .. } => each(entries, |entry| {
                format!(
                    "{} has no flag F: its interpreter {} exists here, but not inside \
                     containers and chroots",
                    entry.name,
                    entry.interpreter.display()
                )
            }),
            Finding::DuplicateArch { arch, names } => format!(
                "{} enabled entries claim {arch} programs: the kernel runs them with {}, \
                 registered last; {} passed over",
                names.len(),
                names.first().map_or("none", String::as_str),
                match &names[1.min(names.len())..] {
                    [one] => format!("{one} is"),
                    rest => format!("{} are", rest.join(", ")),
                }
            ),
            Finding::Shadowed {
                arch,
                runner,
                passed_over,
            } => format!(
                "{} runs {arch} programs, with {}: it was registered after {}, which the \
                 kernel now passes over",
                runner.name,
                runner.interpreter.display(),
                passed_over
                    .iter()
                    .map(|entry| format!("{} ({})", entry.name, entry.interpreter.display()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Finding::CannotProbe { reason } => format!("no probe could run: {reason}"),
            Finding::ProbeFailed {
                arch,
                entries,
                failure,
            } => format!(
                "{arch} programs do not run through {} (interpreter {}): {failure}",
                names(entries).join(", "),
                entries
                    .iter()
                    .map(|entry| entry.interpreter.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Finding::NoEntry { arch } => {
                format!("no entry: nothing in {shown} handles {arch} programs")
            }
            Finding::NativeFails { arch, failure } => format!(
                "this machine's kernel does not run {arch} programs{}",
                failure
                    .as_ref()
                    .map(|f| format!(" ({f})"))
                    .unwrap_or_default()
            ),
            Finding::LevelTooLow { have, want } => format!(
                "this CPU runs x86-64-v{have}, not v{want}: it lacks instructions v{want} \
                 programs use"
            ),
            Finding::LockBusy(busy) => busy.to_string(),
            Finding::NoSpace {
                dir,
                arches,
                needed,
                free,
            } => {
                let names: Vec<String> = arches
                    .iter()
                    .map(|arch| format!("qemu-{}", arch.qemu_cpu()))
                    .collect();
                let what = match names.as_slice() {
                    [one] => format!("{one}, not written, needs"),
                    names => format!(
                        "the {} emulators not written ({}) need",
                        names.len(),
                        names.join(", ")
                    ),
                };
                format!(
                    "no space left for the emulators in {}: {what} {} more, {}",
                    dir.display(),
                    megabytes(*needed),
                    match free {
                        Some(free) => format!("{} are free there", megabytes(*free)),
                        None => "and how much is free there cannot be read".to_owned(),
                    }
                )
            }
            Finding::DirDenied { error } => Chain(&**error).to_string(),
            Finding::ForeignEmulator { arch, entries } => each(entries, |entry| {
                let ours = Emulator::for_arch(*arch).map_or_else(String::new, |emulator| {
                    format!(
                        " ({}, QEMU {}, sha256 {})",
                        interpreter_files::file_name(&emulator),
                        qemu_catalog::emulator::QEMU,
                        emulator.sha256()
                    )
                });
                format!(
                    "{} runs {arch} programs with {}, not with the emulator binfmt carries for \
                     {arch}{ours}",
                    entry.name,
                    entry.interpreter.display()
                )
            }),
        }
    }

    /// Why it happens and what it breaks.
    pub fn cause(&self) -> &'static str {
        match self {
            Finding::BinfmtMiscNotLoaded => {
                "the kernel has binfmt_misc as a module (modules.dep lists binfmt_misc.ko) \
                 and nothing loaded it; without it no foreign program can run"
            }
            Finding::BinfmtMiscMissing => {
                "without binfmt_misc the kernel cannot hand foreign programs to QEMU; every \
                 cross-architecture build fails with `exec format error`"
            }
            Finding::KernelTooOldForF { .. } => {
                "without F the kernel opens the emulator at exec time inside each \
                 container's own root, where it does not exist, so emulated containers fail; \
                 registering with F fails with EINVAL"
            }
            Finding::NotMounted { .. } => {
                "tools and users look for the entries there, and a privileged container that \
                 finds nothing mounted has to mount an instance of its own"
            }
            Finding::MountUnusable { .. } => "binfmt_misc must be reachable at a real mount point",
            Finding::Unreadable { .. } => "its entries cannot be checked",
            Finding::SelfMounted { .. } => {
                "on many kernels (measured: Debian's 6.1 and 6.12; its 5.10 keeps the \
                 entries) unmounting the last mount of a binfmt_misc instance destroys it \
                 with every entry: a privileged container that mounts binfmt_misc, \
                 registers and exits leaves nothing behind, although it reported success \
                 (unless the host has the instance mounted too; entries already present mean \
                 someone does)"
            }
            Finding::ReadOnly => {
                "containers without --privileged see /proc/sys, and binfmt_misc under it, \
                 read-only (Docker, Kubernetes without privileged: true); buildkitd logs this \
                 as `failed to register binfmt_misc`"
            }
            Finding::NotPrivileged { .. } => {
                "registering needs root in the user namespace that owns the binfmt_misc mount"
            }
            Finding::GloballyDisabled => {
                "while it is, the kernel ignores every entry, enabled or not, and every \
                 foreign program fails with `exec format error`"
            }
            Finding::EntryDisabled { .. } => {
                "the kernel skips disabled entries: programs it would handle fail with \
                 `exec format error`"
            }
            Finding::HostArchEntry { .. } => {
                "the kernel consults binfmt_misc before running native programs: while this \
                 entry is enabled every such program, the shell and binfmt included, runs \
                 through the interpreter, slowly if it is an emulator and not at all if it is \
                 broken"
            }
            Finding::StaleEntry { .. } => {
                "without F the kernel looks the interpreter up when a program starts, in that \
                 program's own mount namespace and root; the entry is listed in binfmt_misc \
                 but every program it claims fails with `exec format error` or ENOENT (the \
                 stale registration `docker buildx ls` still lists as a platform)"
            }
            Finding::NoFixBinary { .. } => {
                "without F the kernel looks the interpreter up in each program's own root: \
                 emulated programs run on this host and fail in `docker build` and `docker \
                 run` with `exec format error`"
            }
            Finding::DuplicateArch { .. } => {
                "the kernel uses whichever was registered last, so which emulator runs depends \
                 on boot order (Debian's qemu-user-binfmt, Rosetta and binfmt each register \
                 their own)"
            }
            Finding::Shadowed { .. } => {
                "the kernel runs a program with the newest enabled entry that accepts it, so \
                 an emulator registered after a translator (Rosetta, FEX, box64) takes over \
                 from it without a word; binfmt leaves another tool's working entry in \
                 charge unless told to take over"
            }
            Finding::CannotProbe { .. } => {
                "without running a program of each architecture nothing is proved"
            }
            Finding::ProbeFailed { .. } => {
                "the entry is registered and enabled, but its interpreter does not run \
                 programs of this architecture: not an emulator, a wrong or broken one"
            }
            Finding::NoEntry { .. } => {
                "the kernel hands a program of another architecture to an emulator only \
                 through a binfmt_misc entry whose magic matches it"
            }
            Finding::NativeFails { .. } => {
                "the machine's own architectures run without an emulator, so only the kernel \
                 or the CPU can be missing something"
            }
            Finding::LevelTooLow { .. } => {
                "an x86-64 level is a set of instructions the CPU has, and amd64 programs run \
                 on the CPU itself"
            }
            Finding::LockBusy(_) => {
                "binfmt runs take turns on a binfmt_misc instance and on an interpreter \
                 directory (flock); a run that holds the lock this long is stopped, hung or \
                 waiting itself"
            }
            Finding::NoSpace { .. } => {
                "each emulator is a file of 14 to 17 MB, written whole before it is \
                 registered; what was not written is not registered"
            }
            Finding::ForeignEmulator { .. } => {
                "another tool registered it (Debian's qemu-user-binfmt, the tonistiigi/binfmt \
                 image, an older binfmt): the kernel runs whatever that file is, which binfmt \
                 has not checked; `binfmt emulators` lists what binfmt carries"
            }
            Finding::DirDenied { .. } => {
                "emulators go into a directory only root can change, so that nobody else \
                 chooses what the kernel runs, and registering needs root too"
            }
        }
    }

    /// What to run or do, for the binfmt_misc table at `mount`.
    pub fn fix(&self, mount: &Path) -> Fix {
        let shown = mount.display();
        let remove = |entries: &[EntryRef], remark: &'static str| Fix::Shell {
            command: entries
                .iter()
                .map(|entry| format!("echo -1 > {shown}/{}", entry.name))
                .collect::<Vec<_>>()
                .join(" && "),
            remark: Some(remark.to_owned()),
        };
        // binfmt's own entry for `arch`, with every other one of binfmt's among
        // `entries` removed (when `uninstall_others`) so that ours is the one the kernel
        // uses; `None` where binfmt carries no emulator for `arch` (the machine's own).
        // Another tool's entry is never removed: binfmt's, registered after it, is
        // matched first, and it stays in place.
        let install = |arch: Arch, entries: &[EntryRef], uninstall_others: bool| {
            Emulator::for_arch(arch).map(|_| Fix::Binfmt {
                keep: None,
                uninstall: if uninstall_others {
                    others(
                        arch,
                        entries
                            .iter()
                            .filter(|entry| is_binfmts(&entry.name, &entry.interpreter))
                            .map(|entry| &entry.name),
                    )
                } else {
                    Vec::new()
                },
                install: Some(arch),
            })
        };
        let not_carried = |arch: Arch| {
            Fix::Advice(format!(
                "binfmt carries no {arch} emulator: {arch} is this machine's own architecture"
            ))
        };
        match self {
            Finding::BinfmtMiscNotLoaded => Fix::Advice(
                "modprobe binfmt_misc (on the host, as root); to load it at every boot: echo \
                 binfmt_misc > /etc/modules-load.d/binfmt_misc.conf"
                    .to_owned(),
            ),
            Finding::BinfmtMiscMissing => Fix::Advice(
                "modprobe binfmt_misc on the host (as root: `sudo modprobe binfmt_misc`); if \
                 there is no such module, use a kernel built with CONFIG_BINFMT_MISC"
                    .to_owned(),
            ),
            Finding::KernelTooOldForF { .. } => Fix::Advice(
                "upgrade the kernel to 4.8 or newer; until then copy the qemu-<cpu> emulator \
                 into every image at the path the entry names, and register with `--flags \
                 POC`"
                    .to_owned(),
            ),
            Finding::NotMounted { elsewhere, .. } => Fix::Shell {
                command: format!("mount -t binfmt_misc binfmt_misc {shown}"),
                remark: Some(match elsewhere.first() {
                    Some(there) => format!("(or give --mount {}, where it is)", there.display()),
                    None => "(on systemd hosts: systemctl start proc-sys-fs-binfmt_misc.mount)"
                        .to_owned(),
                }),
            },
            Finding::MountUnusable { .. } => Fix::Shell {
                command: format!("mount -t binfmt_misc binfmt_misc {shown}"),
                remark: None,
            },
            Finding::Unreadable { .. } => Fix::Advice("run binfmt as root".to_owned()),
            Finding::SelfMounted { .. } => Fix::Advice(format!(
                "mount binfmt_misc on the host first (`sudo mount -t binfmt_misc binfmt_misc \
                 {shown}`, or `sudo systemctl start proc-sys-fs-binfmt_misc.mount` where \
                 systemd runs), or run this container with --pid=host as well, so that binfmt \
                 mounts it in the host's mount namespace"
            )),
            Finding::ReadOnly => Fix::Advice(
                "run the container with --privileged (Kubernetes: \
                 securityContext.privileged: true), or register on the host"
                    .to_owned(),
            ),
            Finding::NotPrivileged { .. } => Fix::Advice(
                "run as root (sudo binfmt ...), or in Docker with --privileged".to_owned(),
            ),
            Finding::GloballyDisabled => Fix::Shell {
                command: format!("echo 1 > {shown}/status"),
                remark: None,
            },
            Finding::EntryDisabled { arch, entries } => {
                install(*arch, entries, false).unwrap_or_else(|| remove(entries, "(removes it)"))
            }
            Finding::HostArchEntry { entries, .. } => {
                remove(entries, "(the shell's own echo, so it works even now)")
            }
            Finding::StaleEntry { arch, entries } => arch
                .and_then(|arch| install(arch, entries, true))
                .unwrap_or_else(|| remove(entries, "(removes it)")),
            Finding::NoFixBinary { arch, entries } => {
                install(*arch, entries, true).unwrap_or_else(|| remove(entries, "(removes it)"))
            }
            Finding::Shadowed {
                arch,
                runner,
                passed_over,
            } => {
                let ours = |entry: &EntryRef| is_binfmts(&entry.name, &entry.interpreter);
                let keep = format!("nothing, to keep {}", runner.name);
                let disable = format!("{} disable {}", binfmt_command(mount), runner.name);
                let other = passed_over.first().map_or("", |entry| entry.name.as_str());
                Fix::Advice(if ours(runner) {
                    format!(
                        "{keep}; to let {other} run {arch} programs again: {} (or {disable}; \
                         `binfmt enable` undoes it)",
                        binfmt_with(mount, std::slice::from_ref(&runner.name), None)
                    )
                } else if passed_over.iter().any(ours) {
                    format!(
                        "{keep}; to use binfmt's emulator instead: {} --install {} --take-over \
                         ({} stays registered), or {disable}",
                        binfmt_command(mount),
                        arch.oci(),
                        runner.name
                    )
                } else {
                    format!(
                        "{keep}; to let {other} run them instead: {disable} (`binfmt enable` \
                         undoes it)"
                    )
                })
            }
            Finding::DuplicateArch { arch, names } => {
                let ours = arch.entry_name();
                let (keep, uninstall) = if names.contains(&ours) {
                    (ours.clone(), others(*arch, names.iter()))
                } else {
                    ("one".to_owned(), names[1..].to_vec())
                };
                Fix::Binfmt {
                    keep: Some(keep),
                    uninstall,
                    install: None,
                }
            }
            Finding::CannotProbe { .. } => Fix::Advice(
                "run binfmt as root (chroot needs CAP_SYS_CHROOT), with TMPDIR on a \
                 filesystem that allows exec"
                    .to_owned(),
            ),
            Finding::ProbeFailed { arch, entries, .. } => {
                install(*arch, entries, true).unwrap_or_else(|| not_carried(*arch))
            }
            Finding::NoEntry { arch } => {
                install(*arch, &[], false).unwrap_or_else(|| not_carried(*arch))
            }
            Finding::NativeFails { .. } => Fix::Advice(
                "binfmt never registers the host's own architectures; for 386 on x86_64 the \
                 kernel needs IA32 emulation (CONFIG_IA32_EMULATION, not booted with \
                 ia32_emulation=0)"
                    .to_owned(),
            ),
            Finding::LevelTooLow { have, .. } => Fix::Advice(format!(
                "none: no registration changes the CPU; build for linux/amd64/v{have} or lower"
            )),
            Finding::LockBusy(busy) => Fix::Advice(busy.fix().unwrap_or_default()),
            Finding::NoSpace {
                dir, needed, free, ..
            } => {
                let short = needed.saturating_sub(free.unwrap_or(0));
                let free_up = if short == 0 {
                    // Someone freed space since: trying again is the fix.
                    "run it again (there is room now)".to_owned()
                } else {
                    format!(
                        "free {} in {} (df -h {} shows the filesystem)",
                        megabytes(short),
                        dir.display(),
                        dir.display()
                    )
                };
                Fix::Advice(format!(
                    "{free_up}, or put the emulators on a filesystem with room: \
                     --interpreter-dir DIR (BINFMT_INTERPRETER_DIR; interpreter_dir in the \
                     config file)"
                ))
            }
            Finding::ForeignEmulator { arch, entries } => {
                let theirs = entries
                    .iter()
                    .any(|entry| !is_binfmts(&entry.name, &entry.interpreter));
                Fix::Advice(if theirs {
                    format!(
                        "{} --install {} --take-over registers binfmt's in front of it (which \
                         stays registered); leave it if that emulator is the one you want",
                        binfmt_command(mount),
                        arch.oci()
                    )
                } else {
                    format!(
                        "{} replaces it with binfmt's; leave it if that emulator is the one you \
                         want",
                        binfmt_with(mount, &[], [arch.oci()])
                    )
                })
            }
            Finding::DirDenied { .. } => Fix::Advice(
                "run as root (sudo binfmt ...), or in Docker with --privileged; without root, \
                 `binfmt run -- CMD` emulates for one command"
                    .to_owned(),
            ),
        }
    }

    /// The finding worded in full, for reports.
    pub fn worded(&self, mount: &Path) -> WordedFinding {
        WordedFinding {
            id: self.id(),
            problem: self.problem(mount),
            cause: self.cause().to_owned(),
            fix: self.fix(mount).text(mount),
        }
    }
}

/// A finding as `binfmt doctor` prints it, and its JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WordedFinding {
    /// [`Finding::id`].
    pub id: &'static str,
    /// [`Finding::problem`].
    pub problem: String,
    /// [`Finding::cause`].
    pub cause: String,
    /// [`Finding::fix`], in words.
    pub fix: String,
}

/// A finding as a failure: what is wrong with the table at `mount`, and its fix. What
/// an install fails with when binfmt diagnoses the failure itself (a full disk, a
/// directory this process may not write, a busy lock).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnosis {
    /// What is wrong.
    pub finding: Finding,
    /// The binfmt_misc mount it is about.
    pub mount: PathBuf,
}

impl std::fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.finding.problem(&self.mount))
    }
}

impl std::error::Error for Diagnosis {}

impl Fixable for Diagnosis {
    fn fix(&self) -> Option<String> {
        Some(self.finding.fix(&self.mount).text(&self.mount))
    }
}

/// How to fix a finding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fix {
    /// Run binfmt: `binfmt [--uninstall NAMES] [--install ARCH]`; `keep` names the
    /// entry kept of several.
    Binfmt {
        keep: Option<String>,
        uninstall: Vec<String>,
        install: Option<Arch>,
    },
    /// A shell command, and a remark after it.
    Shell {
        command: String,
        remark: Option<String>,
    },
    /// Nothing to run; what to do instead.
    Advice(String),
}

impl Fix {
    /// The command, if there is one, for the table at `mount`.
    pub fn command(&self, mount: &Path) -> Option<String> {
        match self {
            Fix::Binfmt {
                uninstall, install, ..
            } => Some(binfmt_with(mount, uninstall, install.map(Arch::oci))),
            Fix::Shell { command, .. } => Some(command.clone()),
            Fix::Advice(_) => None,
        }
    }

    /// The fix in words: the command with what goes with it, or the advice.
    pub fn text(&self, mount: &Path) -> String {
        match self {
            Fix::Binfmt {
                keep: Some(keep),
                uninstall,
                install,
            } => format!(
                "keep {keep}: {}",
                binfmt_with(mount, uninstall, install.map(Arch::oci))
            ),
            Fix::Shell {
                command,
                remark: Some(remark),
            } => format!("{command} {remark}"),
            Fix::Advice(advice) => advice.clone(),
            fix => fix.command(mount).unwrap_or_default(),
        }
    }
}

/// `binfmt`, with `--mount` when the mount is not the default one: the start of every
/// command a fix suggests.
pub fn binfmt_command(mount: &Path) -> String {
    if mount == Path::new(DEFAULT_MOUNT) {
        "binfmt".to_owned()
    } else {
        format!("binfmt --mount {}", mount.display())
    }
}

/// `binfmt [--uninstall A,B] [--install C,D]` for the table at `mount`.
pub fn binfmt_with<'a>(
    mount: &Path,
    uninstall: &[String],
    install: impl IntoIterator<Item = &'a str>,
) -> String {
    let mut command = binfmt_command(mount);
    if !uninstall.is_empty() {
        let _ = write!(command, " --uninstall {}", uninstall.join(","));
    }
    let install: Vec<&str> = install.into_iter().collect();
    if !install.is_empty() {
        let _ = write!(command, " --install {}", install.join(","));
    }
    command
}

/// The names among `names` that are not binfmt's own `qemu-<cpu>` for `arch`: they
/// must go for ours to be the one the kernel uses.
fn others<'a>(arch: Arch, names: impl Iterator<Item = &'a String>) -> Vec<String> {
    names
        .filter(|name| **name != arch.entry_name())
        .cloned()
        .collect()
}

/// `104.5 MB`: bytes as a person reads them, in decimal megabytes as `df -H` shows.
fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn names(entries: &[EntryRef]) -> Vec<String> {
    entries.iter().map(|entry| entry.name.clone()).collect()
}

/// One sentence per entry, joined.
fn each(entries: &[EntryRef], sentence: impl Fn(&EntryRef) -> String) -> String {
    entries.iter().map(sentence).collect::<Vec<_>>().join("; ")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use binfmt_misc::lock::Holder;

    use super::*;

    fn failure(finding: &Finding) -> String {
        let diagnosis = Diagnosis {
            finding: finding.clone(),
            mount: PathBuf::from(DEFAULT_MOUNT),
        };
        binfmt_misc::report::Report(&diagnosis).to_string()
    }

    #[test]
    fn a_full_disk_says_what_is_needed_and_what_to_do() {
        let full = |arches: Vec<Arch>, free: Option<u64>| Finding::NoSpace {
            dir: PathBuf::from("/var/lib/binfmt"),
            arches,
            needed: 30_000_000,
            free,
        };
        assert_eq!(
            failure(&full(vec![Arch::Riscv64, Arch::S390x], Some(4_200_000))),
            "no space left for the emulators in /var/lib/binfmt: the 2 emulators not written \
             (qemu-riscv64, qemu-s390x) need 30.0 MB more, 4.2 MB are free there; fix: free \
             25.8 MB in /var/lib/binfmt (df -h /var/lib/binfmt shows the filesystem), or put \
             the emulators on a filesystem with room: --interpreter-dir DIR \
             (BINFMT_INTERPRETER_DIR; interpreter_dir in the config file)"
        );
        let one = failure(&full(vec![Arch::Riscv64], None));
        assert!(
            one.contains("qemu-riscv64, not written, needs 30.0 MB more, and how much is free"),
            "{one}"
        );
        assert!(
            one.contains("fix: free 30.0 MB in /var/lib/binfmt"),
            "{one}"
        );
        let freed_since = failure(&full(vec![Arch::Riscv64], Some(31_000_000)));
        assert!(
            freed_since.contains("fix: run it again (there is room now), or put"),
            "{freed_since}"
        );
    }

    #[test]
    fn a_shadowed_handler_is_never_advised_away() {
        let entry = |name: &str, interpreter: &str| EntryRef {
            name: name.to_owned(),
            interpreter: PathBuf::from(interpreter),
            enabled: true,
        };
        let rosetta = entry("rosetta", "/mnt/lima-rosetta/rosetta");
        let ours = entry(
            "qemu-x86_64",
            "/var/lib/binfmt/qemu-x86_64-0123456789abcdef",
        );
        let fex = entry("FEX-x86_64", "/usr/bin/FEXInterpreter");
        let fix = |runner: &EntryRef, passed_over: &[&EntryRef]| {
            let finding = Finding::Shadowed {
                arch: Arch::Amd64,
                runner: runner.clone(),
                passed_over: passed_over.iter().map(|e| (*e).clone()).collect(),
            };
            assert!(
                finding
                    .problem(Path::new(DEFAULT_MOUNT))
                    .starts_with(&format!(
                        "{} runs amd64 programs, with {}: it was registered after ",
                        runner.name,
                        runner.interpreter.display()
                    ))
            );
            finding
                .fix(Path::new(DEFAULT_MOUNT))
                .text(Path::new(DEFAULT_MOUNT))
        };
        assert_eq!(
            fix(&ours, &[&rosetta]),
            "nothing, to keep qemu-x86_64; to let rosetta run amd64 programs again: binfmt \
             --uninstall qemu-x86_64 (or binfmt disable qemu-x86_64; `binfmt enable` undoes it)"
        );
        assert_eq!(
            fix(&rosetta, &[&ours]),
            "nothing, to keep rosetta; to use binfmt's emulator instead: binfmt --install amd64 \
             --take-over (rosetta stays registered), or binfmt disable rosetta"
        );
        assert_eq!(
            fix(&fex, &[&rosetta]),
            "nothing, to keep FEX-x86_64; to let rosetta run them instead: binfmt disable \
             FEX-x86_64 (`binfmt enable` undoes it)"
        );
        // A failing entry of another tool's is repaired by going in front of it.
        let failed = Finding::ProbeFailed {
            arch: Arch::Riscv64,
            entries: vec![entry("box64-like", "/usr/local/bin/emu")],
            failure: ProbeFailure::TimedOut { seconds: 5 },
        };
        assert_eq!(
            failed
                .fix(Path::new(DEFAULT_MOUNT))
                .text(Path::new(DEFAULT_MOUNT)),
            "binfmt --install riscv64"
        );
    }

    #[test]
    fn a_busy_lock_names_its_holders_or_how_to_find_them() {
        let busy = |holders: Vec<Holder>| {
            Finding::LockBusy(LockBusy {
                path: PathBuf::from(DEFAULT_MOUNT),
                waited: Duration::from_secs(30),
                holders,
            })
        };
        let named = failure(&busy(vec![Holder {
            pid: 42,
            command: Some("binfmt --install all".to_owned()),
        }]));
        assert_eq!(
            named,
            "/proc/sys/fs/binfmt_misc is locked by another process (pid 42 (binfmt --install \
             all)) that did not release it within 30 s; nothing was changed; fix: wait for it \
             and run again; if it is stuck, stop it (kill 42); or wait longer: --lock-timeout \
             SECONDS (BINFMT_LOCK_TIMEOUT)"
        );
        let hidden = failure(&busy(Vec::new()));
        assert!(hidden.contains("does not show"), "{hidden}");
        assert!(hidden.contains("grep FLOCK /proc/locks"), "{hidden}");
    }
}
