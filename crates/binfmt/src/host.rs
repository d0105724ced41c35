//! What this machine's kernel and this process's namespaces say about themselves: the
//! one place binfmt reads host facts from `/proc` (and the kernel's modules tree).
//!
//! [`HostFacts`] holds everything `binfmt doctor` and `binfmt run`'s diagnosis look
//! at, read from a [`HostPaths`] (the real `/proc` and `/lib/modules`, or a fake tree
//! in tests of kernels a test machine cannot have). Each field is `None` where its
//! file is absent or unreadable; the parsers of the kernel's formats (kernel release,
//! mountinfo, `Seccomp:`, AppArmor labels) are pure functions, unit tested here.
//! [`boot_id`] and [`this_executable`] are what the proof record rests on.

use std::ffi::OsString;
use std::fs;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

/// `/proc/filesystems`, relative to procfs: one line per filesystem type the kernel
/// knows (`nodev\tbinfmt_misc`).
const FILESYSTEMS: &str = "filesystems";
/// The kernel release, as `uname -r` prints it.
const OSRELEASE: &str = "sys/kernel/osrelease";
/// The mounts of this process's mount namespace.
const MOUNTINFO: &str = "self/mountinfo";
/// Per user namespace limit on how many user namespaces may be created under it; 0
/// disables them (`user.max_user_namespaces`).
pub const MAX_USER_NAMESPACES: &str = "/proc/sys/user/max_user_namespaces";
/// Debian's and Ubuntu's switch for unprivileged user namespaces; absent on other
/// kernels.
pub const UNPRIVILEGED_USERNS_CLONE: &str = "/proc/sys/kernel/unprivileged_userns_clone";
/// Ubuntu 23.10 and later: 1 confines unprivileged user namespaces to an AppArmor
/// profile that denies every capability in them.
pub const APPARMOR_RESTRICT_USERNS: &str = "/proc/sys/kernel/apparmor_restrict_unprivileged_userns";
/// `Seccomp:` in it says whether a seccomp filter confines this process.
pub const SELF_STATUS: &str = "/proc/self/status";
/// The AppArmor profile confining this process (`unconfined` when none).
pub const APPARMOR_CURRENT: &str = "/proc/self/attr/apparmor/current";
/// A random id the kernel draws at each boot.
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";
/// This process's own executable.
const SELF_EXE: &str = "/proc/self/exe";

/// Where host facts are read: the real paths, or a fake tree in tests.
#[derive(Clone, Debug)]
pub struct HostPaths {
    /// procfs: `filesystems`, `sys/kernel/osrelease`, `self/mountinfo`, the sysctls.
    pub proc: PathBuf,
    /// The kernel modules tree: `<release>/modules.dep` and `modules.builtin`.
    pub modules: PathBuf,
}

impl HostPaths {
    /// This machine.
    pub fn system() -> HostPaths {
        HostPaths {
            proc: PathBuf::from("/proc"),
            modules: PathBuf::from("/lib/modules"),
        }
    }

    /// `path`, an absolute path under `/proc`, in this tree.
    fn proc_file(&self, path: &str) -> PathBuf {
        let relative = path.strip_prefix("/proc/").unwrap_or(path);
        self.proc.join(relative)
    }
}

/// What the kernel and this process's namespaces say; `None` wherever the file is
/// absent or unreadable.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostFacts {
    /// `/proc/filesystems`.
    pub filesystems: Option<String>,
    /// The kernel release (`6.1.0-18-amd64`), trimmed.
    pub kernel_release: Option<String>,
    /// `/proc/self/mountinfo`.
    pub mountinfo: Option<String>,
    /// What the modules tree says about binfmt_misc.
    pub binfmt_misc_module: BinfmtMiscModule,
    /// `user.max_user_namespaces`.
    pub max_user_namespaces: Option<u64>,
    /// `kernel.unprivileged_userns_clone` (Debian and Ubuntu kernels only).
    pub unprivileged_userns_clone: Option<u64>,
    /// `kernel.apparmor_restrict_unprivileged_userns` (Ubuntu kernels only).
    pub apparmor_restrict_unprivileged_userns: Option<u64>,
    /// The `Seccomp:` field of `/proc/self/status`: 0 none, 1 strict, 2 filter.
    pub seccomp: Option<u8>,
    /// The AppArmor profile confining this process, without the mode in parentheses.
    pub apparmor_profile: Option<String>,
}

/// binfmt_misc in the kernel's modules tree.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BinfmtMiscModule {
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

impl HostFacts {
    /// Reads this machine's facts.
    pub fn read() -> HostFacts {
        HostFacts::read_from(&HostPaths::system())
    }

    /// Reads the facts from `paths`.
    pub fn read_from(paths: &HostPaths) -> HostFacts {
        let read = |path: PathBuf| fs::read_to_string(path).ok();
        let number =
            |path: &str| read(paths.proc_file(path)).and_then(|text| text.trim().parse().ok());
        let kernel_release =
            read(paths.proc.join(OSRELEASE)).map(|release| release.trim().to_owned());
        let binfmt_misc_module = match &kernel_release {
            Some(release) => {
                let dir = paths.modules.join(release);
                let builtin = read(dir.join("modules.builtin"));
                let dep = read(dir.join("modules.dep"));
                let lists = |text: &Option<String>| {
                    text.as_deref()
                        .is_some_and(|t| t.contains("/binfmt_misc.ko"))
                };
                if lists(&builtin) {
                    BinfmtMiscModule::Builtin
                } else if lists(&dep) {
                    BinfmtMiscModule::Loadable
                } else if builtin.is_some() || dep.is_some() {
                    BinfmtMiscModule::Absent
                } else {
                    BinfmtMiscModule::Unknown
                }
            }
            None => BinfmtMiscModule::Unknown,
        };
        HostFacts {
            filesystems: read(paths.proc.join(FILESYSTEMS)),
            kernel_release,
            mountinfo: read(paths.proc.join(MOUNTINFO)),
            binfmt_misc_module,
            max_user_namespaces: number(MAX_USER_NAMESPACES),
            unprivileged_userns_clone: number(UNPRIVILEGED_USERNS_CLONE),
            apparmor_restrict_unprivileged_userns: number(APPARMOR_RESTRICT_USERNS),
            seccomp: read(paths.proc_file(SELF_STATUS)).and_then(|status| seccomp_mode(&status)),
            apparmor_profile: read(paths.proc_file(APPARMOR_CURRENT))
                .and_then(|label| apparmor_profile(&label)),
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

    /// The kernel's major and minor version (see [`kernel_version`]).
    pub fn kernel_version(&self) -> Option<(u32, u32)> {
        kernel_version(self.kernel_release.as_deref()?)
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

    /// Whether a seccomp filter confines this process.
    pub fn seccomp_filter(&self) -> bool {
        self.seccomp == Some(2)
    }
}

/// The major and minor version of Linux `release` (`6.18.44-fc-v657`, `6.1.0-18-amd64`,
/// `4.19.0+`, `6.6rc1`): its first two runs of digits. `None` when it does not start
/// with `major.minor`.
pub fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut numbers = release
        .split(|c: char| !c.is_ascii_digit())
        .map(str::parse::<u32>);
    Some((numbers.next()?.ok()?, numbers.next()?.ok()?))
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
    PathBuf::from(OsString::from_vec(out))
}

/// The `Seccomp:` mode from the text of `/proc/self/status`.
pub fn seccomp_mode(status: &str) -> Option<u8> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("Seccomp:"))
        .and_then(|value| value.trim().parse().ok())
}

/// The confining AppArmor profile from `/proc/self/attr/apparmor/current`
/// (`docker-default (enforce)`), or `None` when unconfined.
pub fn apparmor_profile(label: &str) -> Option<String> {
    let label = label.trim_end_matches(['\n', '\0']).trim();
    let profile = label.rsplit_once(" (").map_or(label, |(name, _mode)| name);
    (!profile.is_empty() && profile != "unconfined").then(|| profile.to_owned())
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`), trimmed.
pub fn boot_id() -> Result<String, String> {
    fs::read_to_string(BOOT_ID)
        .map(|id| id.trim().to_owned())
        .map_err(|error| format!("cannot read the boot id: {error}"))
}

/// The metadata of this process's own executable (`/proc/self/exe`).
pub fn this_executable() -> Result<fs::Metadata, String> {
    fs::metadata(SELF_EXE).map_err(|error| format!("cannot stat {SELF_EXE}: {error}"))
}

/// Whether `path` names something in this mount namespace (a dangling symbolic link
/// counts: it is there). A `/proc/self/fd` path names a descriptor of whoever execs
/// it, never this file, so it is not.
pub fn exists_here(path: &Path) -> bool {
    !path.starts_with("/proc/self/fd") && fs::symlink_metadata(path).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions_are_the_first_two_numbers() {
        for (release, version) in [
            ("6.7.0", Some((6, 7))),
            ("6.18.44-fc-v657", Some((6, 18))),
            ("7.0.0-rc1", Some((7, 0))),
            ("4.19.0+", Some((4, 19))),
            ("6.6rc1", Some((6, 6))),
            ("garbage", None),
            ("", None),
            ("6", None),
        ] {
            assert_eq!(kernel_version(release), version, "{release}");
        }
    }

    #[test]
    fn proc_files_are_read_as_the_kernel_writes_them() {
        let status = "Name:\tbinfmt\nUmask:\t0022\nSeccomp:\t2\nSeccomp_filters:\t1\n";
        assert_eq!(seccomp_mode(status), Some(2));
        assert_eq!(seccomp_mode("Seccomp:\t0\n"), Some(0));
        assert_eq!(seccomp_mode("Name:\tx\n"), None);
        assert_eq!(
            apparmor_profile("docker-default (enforce)\n"),
            Some("docker-default".into())
        );
        assert_eq!(apparmor_profile("unconfined\n"), None);
        assert_eq!(apparmor_profile(""), None);
        assert_eq!(
            apparmor_profile("unprivileged_userns (enforce)\0\n"),
            Some("unprivileged_userns".into())
        );
    }

    #[test]
    fn mountinfo_paths_are_unescaped() {
        let facts = HostFacts {
            mountinfo: Some(
                "36 25 0:33 / /proc/sys/fs/binfmt\\040misc rw - binfmt_misc binfmt_misc rw\n\
                 22 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
                    .to_owned(),
            ),
            ..HostFacts::default()
        };
        assert_eq!(
            facts.binfmt_misc_mounts(),
            [PathBuf::from("/proc/sys/fs/binfmt misc")]
        );
    }
}
