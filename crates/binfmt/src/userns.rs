//! User and mount namespaces for `binfmt run`, and why creating them failed.
//!
//! Since Linux 6.7 binfmt_misc is per user namespace: an ordinary user can create a
//! user namespace, mount a binfmt_misc instance of its own there and register entries
//! that only processes in that namespace (and its children) use. This module holds the
//! system calls that get there, one wrapper each, and the diagnosis of their failures:
//! which sysctl, security module or kernel version is in the way, and what to do.
//!
//! The diagnosis is pure ([`diagnose`] over the [`HostFacts`] read from `/proc`), so
//! every cause is unit tested, including those that cannot be built on the test
//! machine (an old kernel, AppArmor's restriction, Debian's sysctl).

use std::fmt;
use std::fs::OpenOptions;
use std::io::{self, Write as _};
use std::path::Path;

use binfmt_misc::DEFAULT_MOUNT;
use binfmt_misc::report::Fixable;

use rustix::io::Errno;
use rustix::mount::MountPropagationFlags;
use rustix::thread::UnshareFlags;

use crate::findings::Finding;
use crate::host::{
    self, APPARMOR_CURRENT, APPARMOR_RESTRICT_USERNS, HostFacts, MAX_USER_NAMESPACES, SELF_STATUS,
    UNPRIVILEGED_USERNS_CLONE,
};

/// The first Linux release whose binfmt_misc can be mounted in a user namespace.
pub const PRIVATE_BINFMT_MISC_SINCE: (u32, u32) = (6, 7);

/// One line of `uid_map` or `gid_map`: the id `inside` the new namespace is `outside`
/// in its parent. An unprivileged process may map exactly one id: its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdMap {
    pub inside: u32,
    pub outside: u32,
}

impl IdMap {
    fn line(self) -> String {
        format!("{} {} 1\n", self.inside, self.outside)
    }
}

/// What the caller's user and group ids become in a new user namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdMapping {
    pub uid: IdMap,
    pub gid: IdMap,
}

/// A step of setting up the namespaces, for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// `unshare(2)` creating the user (and mount) namespace.
    CreateUserNamespace,
    /// Writing `deny` to `/proc/self/setgroups`.
    DenySetgroups,
    /// Writing `/proc/self/uid_map`.
    MapUid,
    /// Writing `/proc/self/gid_map`.
    MapGid,
    /// Making the mounts private, then shared in a peer group of their own.
    IsolateMounts,
    /// Mounting binfmt_misc.
    MountBinfmtMisc,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::CreateUserNamespace => "cannot create a user namespace (unshare)",
            Step::DenySetgroups => "cannot write deny to /proc/self/setgroups",
            Step::MapUid => "cannot write /proc/self/uid_map",
            Step::MapGid => "cannot write /proc/self/gid_map",
            Step::IsolateMounts => "cannot isolate the mounts of the new namespace",
            Step::MountBinfmtMisc => {
                "cannot mount a private binfmt_misc instance on /proc/sys/fs/binfmt_misc"
            }
        })
    }
}

/// Setting up the namespaces failed at `step`; `causes` says why, when it is known.
#[derive(Debug)]
pub struct NamespaceError {
    pub step: Step,
    pub source: io::Error,
    pub causes: Vec<Cause>,
}

impl NamespaceError {
    /// An error at `step`, diagnosed against this host's facts.
    pub fn diagnosed(step: Step, source: io::Error) -> NamespaceError {
        let causes = match source.raw_os_error() {
            Some(errno) => diagnose(step, Errno::from_raw_os_error(errno), &HostFacts::read()),
            None => Vec::new(),
        };
        NamespaceError {
            step,
            source,
            causes,
        }
    }
}

impl fmt::Display for NamespaceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.step.fmt(f)
    }
}

impl Fixable for NamespaceError {
    /// What is in the way and what to do about it, for each cause found.
    fn fix(&self) -> Option<String> {
        if self.causes.is_empty() {
            return Some(
                "register system-wide instead, as root: `sudo binfmt --install all` (no known \
                 cause found: user namespaces are allowed by the sysctls binfmt knows, no \
                 seccomp filter, no AppArmor profile, Linux 6.7 or newer)"
                    .to_owned(),
            );
        }
        let worded: Vec<String> = self.causes.iter().map(Cause::worded).collect();
        Some(worded.join("; "))
    }
}

impl std::error::Error for NamespaceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Why a step failed, and what to do about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cause {
    /// `user.max_user_namespaces` is 0.
    UserNamespacesDisabled,
    /// The user already has `user.max_user_namespaces` user namespaces.
    UserNamespaceLimit { limit: u64 },
    /// `kernel.unprivileged_userns_clone` is 0 (Debian, Ubuntu).
    UnprivilegedUsernsClone,
    /// `kernel.apparmor_restrict_unprivileged_userns` is 1 (Ubuntu 23.10 and later).
    AppArmorRestrictsUserns,
    /// A seccomp filter confines this process (containers' default profiles forbid
    /// `unshare` and `mount`).
    Seccomp,
    /// An AppArmor profile other than `unconfined` confines this process (Docker's
    /// `docker-default` denies mounting).
    AppArmorProfile { profile: String },
    /// The kernel is older than 6.7: its binfmt_misc cannot be mounted in a user
    /// namespace.
    KernelTooOld { release: String },
    /// The kernel has no binfmt_misc (worded as [`Finding::BinfmtMiscMissing`]).
    NoBinfmtMisc,
    /// User namespaces nest at most 32 deep.
    NestedTooDeep,
    /// `unshare(CLONE_NEWUSER)` needs a single-threaded process.
    MultiThreaded,
}

/// Running as root instead, which works everywhere these do not.
const SYSTEM_WIDE: &str = "or register system-wide as root instead: `sudo binfmt --install all`";

impl fmt::Display for Cause {
    /// What is in the way.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::UserNamespacesDisabled => write!(
                f,
                "user namespaces are disabled: user.max_user_namespaces is 0 \
                 ({MAX_USER_NAMESPACES})"
            ),
            Cause::UserNamespaceLimit { limit } => write!(
                f,
                "the limit of user namespaces is reached: user.max_user_namespaces is {limit} \
                 ({MAX_USER_NAMESPACES})"
            ),
            Cause::UnprivilegedUsernsClone => write!(
                f,
                "unprivileged user namespaces are disabled: kernel.unprivileged_userns_clone \
                 is 0 ({UNPRIVILEGED_USERNS_CLONE}, a Debian/Ubuntu kernel setting)"
            ),
            Cause::AppArmorRestrictsUserns => write!(
                f,
                "AppArmor restricts unprivileged user namespaces: \
                 kernel.apparmor_restrict_unprivileged_userns is 1 ({APPARMOR_RESTRICT_USERNS}, \
                 Ubuntu 23.10 and later)"
            ),
            Cause::Seccomp => write!(
                f,
                "a seccomp filter confines this process (Seccomp: 2 in {SELF_STATUS}); the \
                 default profiles of Docker, Podman and Kubernetes forbid unshare and mount"
            ),
            Cause::AppArmorProfile { profile } => write!(
                f,
                "the AppArmor profile {profile:?} confines this process and may deny mounting \
                 ({APPARMOR_CURRENT})"
            ),
            Cause::KernelTooOld { release } => write!(
                f,
                "Linux {release} is older than {}.{}, the first release whose binfmt_misc can \
                 be mounted inside a user namespace",
                PRIVATE_BINFMT_MISC_SINCE.0, PRIVATE_BINFMT_MISC_SINCE.1
            ),
            Cause::NoBinfmtMisc => {
                f.write_str(&Finding::BinfmtMiscMissing.problem(Path::new(DEFAULT_MOUNT)))
            }
            Cause::NestedTooDeep => f.write_str(
                "user namespaces nest at most 32 deep and this process is already that deep",
            ),
            Cause::MultiThreaded => f.write_str(
                "unshare(CLONE_NEWUSER) needs a single-threaded process and binfmt has more \
                 than one thread",
            ),
        }
    }
}

impl Cause {
    /// What to do about it.
    pub fn fix(&self) -> String {
        match self {
            Cause::UserNamespacesDisabled => format!(
                "allow them with `sudo sysctl -w user.max_user_namespaces=15000` (persist it in \
                 /etc/sysctl.d/), {SYSTEM_WIDE}"
            ),
            Cause::UserNamespaceLimit { .. } => "end some of them or raise it with `sudo sysctl \
                                                 -w user.max_user_namespaces=<more>`"
                .to_owned(),
            Cause::UnprivilegedUsernsClone => format!(
                "enable them with `sudo sysctl -w kernel.unprivileged_userns_clone=1` (persist \
                 it in /etc/sysctl.d/), {SYSTEM_WIDE}"
            ),
            Cause::AppArmorRestrictsUserns => format!(
                "allow binfmt with an AppArmor profile that grants `userns,` (for example \
                 /etc/apparmor.d/binfmt: `abi <abi/4.0>, include <tunables/global> profile \
                 binfmt /usr/local/bin/binfmt flags=(unconfined) {{ userns, }}`, then `sudo \
                 apparmor_parser -r /etc/apparmor.d/binfmt`), or turn the restriction off with \
                 `sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`, {SYSTEM_WIDE}"
            ),
            Cause::Seccomp => format!(
                "run the container with `--security-opt seccomp=unconfined` (Kubernetes: \
                 `securityContext.seccompProfile.type: Unconfined`) or a profile that allows \
                 unshare and mount, {SYSTEM_WIDE}"
            ),
            Cause::AppArmorProfile { .. } => format!(
                "run the container with `--security-opt apparmor=unconfined` (Kubernetes: \
                 `securityContext.appArmorProfile.type: Unconfined`), {SYSTEM_WIDE}"
            ),
            Cause::KernelTooOld { .. } => format!("upgrade the kernel, {SYSTEM_WIDE}"),
            Cause::NoBinfmtMisc => {
                let mount = Path::new(DEFAULT_MOUNT);
                Finding::BinfmtMiscMissing.fix(mount).text(mount)
            }
            Cause::NestedTooDeep => "run binfmt from an outer namespace".to_owned(),
            Cause::MultiThreaded => "report it: this is a bug in binfmt".to_owned(),
        }
    }

    /// What is in the way, then what to do about it.
    pub fn worded(&self) -> String {
        format!("{self}: {}", self.fix())
    }
}

/// Why the kernel is too old for a private binfmt_misc instance, if it is.
fn kernel_too_old(facts: &HostFacts) -> Option<Cause> {
    let release = facts.kernel_release.as_ref()?;
    (supports_private_binfmt_misc(release) == Some(false)).then(|| Cause::KernelTooOld {
        release: release.clone(),
    })
}

/// Whether Linux `release` (`6.7.0`, `6.1.0-18-amd64`, `5.15.0-91-generic`) can mount
/// binfmt_misc inside a user namespace: 6.7 or newer. `None` when the release cannot
/// be read as `major.minor`.
pub fn supports_private_binfmt_misc(release: &str) -> Option<bool> {
    Some(host::kernel_version(release)? >= PRIVATE_BINFMT_MISC_SINCE)
}

/// Why `step` failed with `errno` on a host with `facts`: every cause that applies, most
/// decisive first; empty when none is known.
pub fn diagnose(step: Step, errno: Errno, facts: &HostFacts) -> Vec<Cause> {
    let mut causes = Vec::new();
    let denied = matches!(errno, Errno::PERM | Errno::ACCESS);
    match step {
        Step::CreateUserNamespace => match errno {
            Errno::NOSPC => causes.push(match facts.max_user_namespaces {
                Some(0) => Cause::UserNamespacesDisabled,
                Some(limit) => Cause::UserNamespaceLimit { limit },
                None => Cause::UserNamespacesDisabled,
            }),
            Errno::USERS => causes.push(Cause::NestedTooDeep),
            Errno::INVAL => causes.push(Cause::MultiThreaded),
            _ if denied => {
                if facts.unprivileged_userns_clone == Some(0) {
                    causes.push(Cause::UnprivilegedUsernsClone);
                }
                if facts.apparmor_restrict_unprivileged_userns == Some(1) {
                    causes.push(Cause::AppArmorRestrictsUserns);
                }
                if facts.seccomp_filter() {
                    causes.push(Cause::Seccomp);
                }
            }
            _ => {}
        },
        // AppArmor's restriction lets unshare succeed but denies every capability in
        // the new namespace: writing the maps or mounting is where it shows.
        Step::DenySetgroups | Step::MapUid | Step::MapGid | Step::IsolateMounts if denied => {
            if facts.apparmor_restrict_unprivileged_userns == Some(1) {
                causes.push(Cause::AppArmorRestrictsUserns);
            }
            if facts.seccomp_filter() {
                causes.push(Cause::Seccomp);
            }
            if step == Step::IsolateMounts
                && let Some(profile) = &facts.apparmor_profile
            {
                causes.push(Cause::AppArmorProfile {
                    profile: profile.clone(),
                });
            }
        }
        Step::MountBinfmtMisc => match errno {
            Errno::NODEV | Errno::NOENT => causes.push(Cause::NoBinfmtMisc),
            // A filesystem without FS_USERNS_MOUNT answers EPERM; say EINVAL too, in
            // case a kernel answers that.
            _ if denied || errno == Errno::INVAL => {
                causes.extend(kernel_too_old(facts));
                if facts.apparmor_restrict_unprivileged_userns == Some(1) {
                    causes.push(Cause::AppArmorRestrictsUserns);
                }
                if facts.seccomp_filter() {
                    causes.push(Cause::Seccomp);
                }
                if let Some(profile) = &facts.apparmor_profile {
                    causes.push(Cause::AppArmorProfile {
                        profile: profile.clone(),
                    });
                }
            }
            _ => {}
        },
        _ => {}
    }
    causes
}

/// Creates a new user namespace (and, with `with_mount_namespace`, a new mount
/// namespace owned by it) for this process, and maps the caller's ids as `mapping`
/// says.
///
/// Calls [`unshare(2)`](https://man7.org/linux/man-pages/man2/unshare.2.html) with
/// `CLONE_NEWUSER` (and `CLONE_NEWNS`), then writes `deny` to `/proc/self/setgroups`
/// and one line each to `/proc/self/uid_map` and `/proc/self/gid_map`
/// ([user_namespaces(7)](https://man7.org/linux/man-pages/man7/user_namespaces.7.html)):
/// an unprivileged process may map exactly its own effective ids, and only after
/// giving up `setgroups(2)`. Until the process executes another program it holds
/// every capability in the new namespace, whatever ids are mapped.
///
/// The process must be single-threaded.
#[allow(unsafe_code)] // rustix's unshare is unsafe for CLONE_FILES, which is not used.
pub fn enter_user_namespace(
    mapping: IdMapping,
    with_mount_namespace: bool,
) -> Result<(), NamespaceError> {
    let mut flags = UnshareFlags::NEWUSER;
    if with_mount_namespace {
        flags |= UnshareFlags::NEWNS;
    }
    // SAFETY: the flags do not include CLONE_FILES, the one that can leave another
    // thread with descriptors it cannot use; binfmt is single-threaded here anyway
    // (CLONE_NEWUSER refuses otherwise).
    unsafe { rustix::thread::unshare_unsafe(flags) }
        .map_err(|errno| NamespaceError::diagnosed(Step::CreateUserNamespace, errno.into()))?;
    write_proc("/proc/self/setgroups", "deny", Step::DenySetgroups)?;
    write_proc("/proc/self/uid_map", &mapping.uid.line(), Step::MapUid)?;
    write_proc("/proc/self/gid_map", &mapping.gid.line(), Step::MapGid)?;
    Ok(())
}

/// Cuts this process's mount namespace off from the one it was copied from, then
/// makes its mounts shared again, among themselves only.
///
/// Calls [`mount(2)`](https://man7.org/linux/man-pages/man2/mount.2.html) twice on
/// `/`: `MS_REC | MS_PRIVATE`, so nothing mounted here reaches the caller's namespace
/// and nothing from there arrives (as `unshare --mount` does), then `MS_REC |
/// MS_SHARED`, which puts every mount in a new peer group of this namespace: mount
/// namespaces CMD creates later (container engines) receive mounts made here, and
/// rootless Podman does not warn that "/" is not shared
/// ([mount_namespaces(7)](https://man7.org/linux/man-pages/man7/mount_namespaces.7.html)).
pub fn isolate_mounts() -> Result<(), NamespaceError> {
    for propagation in [
        MountPropagationFlags::PRIVATE,
        MountPropagationFlags::SHARED,
    ] {
        rustix::mount::mount_change("/", propagation | MountPropagationFlags::REC)
            .map_err(|errno| NamespaceError::diagnosed(Step::IsolateMounts, errno.into()))?;
    }
    Ok(())
}

/// Writes `text` to a `/proc` file in one
/// [`write(2)`](https://man7.org/linux/man-pages/man2/write.2.html): the id maps must
/// be written whole, at once.
fn write_proc(path: &str, text: &str, step: Step) -> Result<(), NamespaceError> {
    let mut file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|error| NamespaceError::diagnosed(step, error))?;
    match file.write(text.as_bytes()) {
        Ok(written) if written == text.len() => Ok(()),
        Ok(_) => Err(NamespaceError::diagnosed(
            step,
            io::Error::new(io::ErrorKind::WriteZero, "short write"),
        )),
        Err(error) => Err(NamespaceError::diagnosed(step, error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowing() -> HostFacts {
        HostFacts {
            max_user_namespaces: Some(15000),
            unprivileged_userns_clone: None,
            apparmor_restrict_unprivileged_userns: None,
            seccomp: Some(0),
            apparmor_profile: None,
            kernel_release: Some("6.18.0".into()),
            ..HostFacts::default()
        }
    }

    #[test]
    fn kernel_releases_from_6_7_support_private_instances() {
        for (release, supported) in [
            ("6.7.0", Some(true)),
            ("6.7", Some(true)),
            ("6.18.44-fc-v657", Some(true)),
            ("7.0.0-rc1", Some(true)),
            ("10.1", Some(true)),
            ("6.6.30-1-lts", Some(false)),
            ("6.1.0-18-amd64", Some(false)),
            ("5.15.0-91-generic", Some(false)),
            ("4.19.0+", Some(false)),
            ("6.6rc1", Some(false)),
            ("garbage", None),
            ("", None),
            ("6", None),
        ] {
            assert_eq!(
                supports_private_binfmt_misc(release),
                supported,
                "{release}"
            );
        }
    }

    #[test]
    fn an_old_kernel_is_named_when_mounting_fails() {
        let facts = HostFacts {
            kernel_release: Some("6.1.0-18-amd64".into()),
            ..allowing()
        };
        let causes = diagnose(Step::MountBinfmtMisc, Errno::PERM, &facts);
        assert_eq!(
            causes,
            [Cause::KernelTooOld {
                release: "6.1.0-18-amd64".into()
            }]
        );
        let shown = causes[0].worded();
        assert!(
            shown.contains("Linux 6.1.0-18-amd64 is older than 6.7"),
            "{shown}"
        );
        assert!(shown.contains("sudo binfmt --install all"), "{shown}");
        // A new kernel is not blamed.
        assert_eq!(
            diagnose(Step::MountBinfmtMisc, Errno::PERM, &allowing()),
            []
        );
    }

    #[test]
    fn each_sysctl_that_disables_user_namespaces_is_named() {
        let zero = HostFacts {
            max_user_namespaces: Some(0),
            ..allowing()
        };
        assert_eq!(
            diagnose(Step::CreateUserNamespace, Errno::NOSPC, &zero),
            [Cause::UserNamespacesDisabled]
        );
        assert_eq!(
            diagnose(Step::CreateUserNamespace, Errno::NOSPC, &allowing()),
            [Cause::UserNamespaceLimit { limit: 15000 }]
        );

        let debian = HostFacts {
            unprivileged_userns_clone: Some(0),
            ..allowing()
        };
        let causes = diagnose(Step::CreateUserNamespace, Errno::PERM, &debian);
        assert_eq!(causes, [Cause::UnprivilegedUsernsClone]);
        assert!(
            causes[0]
                .worded()
                .contains("sysctl -w kernel.unprivileged_userns_clone=1")
        );

        let ubuntu = HostFacts {
            apparmor_restrict_unprivileged_userns: Some(1),
            ..allowing()
        };
        for step in [
            Step::CreateUserNamespace,
            Step::MapUid,
            Step::MapGid,
            Step::DenySetgroups,
            Step::IsolateMounts,
            Step::MountBinfmtMisc,
        ] {
            let causes = diagnose(step, Errno::PERM, &ubuntu);
            assert_eq!(causes, [Cause::AppArmorRestrictsUserns], "{step:?}");
        }
        assert!(
            Cause::AppArmorRestrictsUserns
                .worded()
                .contains("kernel.apparmor_restrict_unprivileged_userns is 1")
        );

        // Set to their permissive values, the sysctls are not blamed.
        let permissive = HostFacts {
            unprivileged_userns_clone: Some(1),
            apparmor_restrict_unprivileged_userns: Some(0),
            ..allowing()
        };
        assert_eq!(
            diagnose(Step::CreateUserNamespace, Errno::PERM, &permissive),
            []
        );
    }

    #[test]
    fn seccomp_and_apparmor_profiles_are_named() {
        let filtered = HostFacts {
            seccomp: Some(2),
            ..allowing()
        };
        assert_eq!(
            diagnose(Step::CreateUserNamespace, Errno::PERM, &filtered),
            [Cause::Seccomp]
        );
        assert_eq!(
            diagnose(Step::MountBinfmtMisc, Errno::PERM, &filtered),
            [Cause::Seccomp]
        );
        let docker = HostFacts {
            apparmor_profile: Some("docker-default".into()),
            ..allowing()
        };
        let causes = diagnose(Step::MountBinfmtMisc, Errno::ACCESS, &docker);
        assert_eq!(
            causes,
            [Cause::AppArmorProfile {
                profile: "docker-default".into()
            }]
        );
        assert!(causes[0].worded().contains("apparmor=unconfined"));
        // Several causes at once are all named, most decisive first.
        let both = HostFacts {
            unprivileged_userns_clone: Some(0),
            seccomp: Some(2),
            ..allowing()
        };
        assert_eq!(
            diagnose(Step::CreateUserNamespace, Errno::PERM, &both),
            [Cause::UnprivilegedUsernsClone, Cause::Seccomp]
        );
    }

    #[test]
    fn missing_binfmt_misc_and_other_errnos() {
        for errno in [Errno::NODEV, Errno::NOENT] {
            assert_eq!(
                diagnose(Step::MountBinfmtMisc, errno, &allowing()),
                [Cause::NoBinfmtMisc]
            );
        }
        let shown = Cause::NoBinfmtMisc.worded();
        assert!(shown.contains("`sudo modprobe binfmt_misc`"), "{shown}");
        assert!(shown.contains("CONFIG_BINFMT_MISC"), "{shown}");
        assert_eq!(
            diagnose(Step::CreateUserNamespace, Errno::USERS, &allowing()),
            [Cause::NestedTooDeep]
        );
        assert_eq!(
            diagnose(Step::CreateUserNamespace, Errno::INVAL, &allowing()),
            [Cause::MultiThreaded]
        );
        let error = NamespaceError {
            step: Step::CreateUserNamespace,
            source: Errno::PERM.into(),
            causes: Vec::new(),
        };
        let shown = binfmt_misc::report::Report(&error).to_string();
        assert!(
            shown.starts_with("cannot create a user namespace (unshare): "),
            "{shown}"
        );
        assert!(shown.contains("no known cause found"), "{shown}");
    }

    #[test]
    fn id_map_lines_have_one_id() {
        let map = IdMap {
            inside: 0,
            outside: 65534,
        };
        assert_eq!(map.line(), "0 65534 1\n");
    }
}
