//! Opening binfmt_misc at its usual place so that what gets registered outlives this
//! process, or saying that it would not.
//!
//! When the last mount of a binfmt_misc instance goes, the kernel either destroys it
//! with every entry in it or keeps the entries, and its version does not tell which:
//! measured on Debian's own kernels (`cargo xtask kernels`), bullseye's 5.10 keeps
//! them, bookworm's 6.1 and trixie's 6.12 destroy them. A privileged container has a
//! mount namespace and a `/proc` of its own, where nothing is mounted at
//! `/proc/sys/fs/binfmt_misc`: it has to mount binfmt_misc itself, and whether its
//! registrations survive it depends on whether another mount holds the same instance
//! (on a kernel that destroys it):
//!
//! - the host has binfmt_misc mounted: the container's mount joins the host's
//!   instance, and the registrations stay when the container exits;
//! - the host has nothing mounted (its automount never triggered, as on Amazon Linux
//!   2023): the container's mount creates the instance, which dies with the container,
//!   entries and all, after the tool that registered them reported success.
//!
//! [`open_or_mount`] tells the two apart by measuring it ([`probe_lifetime`]). Where
//! the instance would die, it mounts binfmt_misc where the mount lasts: in the mount
//! namespace of pid 1 when this process shares the host's pid namespace (`docker run
//! --pid=host`), or right here when this is the host itself. Otherwise it reports
//! [`Placement::Private`], and the caller refuses to register anything.

use std::fmt;
use std::fs::File;
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use rustix::fs::{CWD, Mode, OFlags};
use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};

use crate::entry::{Flags, Matcher, Registration};
use crate::error::Error;
use crate::report::Chain;
use crate::table::{BinfmtMisc, Table};

/// `PROC_PID_INIT_INO` from `include/linux/proc_ns.h`: the inode number of the
/// machine's initial pid namespace in nsfs, fixed since Linux 3.8. A process whose
/// `/proc/self/ns/pid` has it runs in the host's pid namespace, so its pid 1 is the
/// machine's init.
pub const PROC_PID_INIT_INO: u64 = 0xEFFF_FFFC;

/// Our mount namespace and pid 1's (this process's pid namespace's init).
const SELF_MOUNT_NS: &str = "/proc/self/ns/mnt";
const PID1_MOUNT_NS: &str = "/proc/1/ns/mnt";
const SELF_PID_NS: &str = "/proc/self/ns/pid";

/// Where the table that [`open_or_mount`] returns came from, which says how long what
/// is registered in it lasts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    /// binfmt_misc was mounted there already; whoever mounted it keeps it.
    AlreadyMounted,
    /// Nothing was mounted; we mounted it, and another mount holds the same instance
    /// (the host's): registrations outlive this process.
    SharedInstance,
    /// Nothing was mounted; this process runs in the machine's own pid and mount
    /// namespaces (it is on the host), where the mount we made stays.
    HostNamespace,
    /// Nothing was mounted here; we used (mounting it if needed) binfmt_misc in the
    /// mount namespace of pid 1, which this process shares its pid namespace with
    /// (`docker run --pid=host`). That mount lasts as long as pid 1's mount namespace:
    /// the machine's, when pid 1 is the machine's init.
    Pid1Namespace {
        /// Whether pid 1 is the machine's init (our pid namespace is the initial one).
        pid1_is_machine_init: bool,
    },
    /// Nothing was mounted, and the instance we mounted is ours alone, in a mount
    /// namespace that ends with this container: what is registered in it vanishes
    /// when the container exits. The reason says how that was concluded.
    Private { reason: String },
}

impl Placement {
    /// Whether registrations made through the table outlive this process.
    pub fn outlives_process(&self) -> bool {
        !matches!(self, Placement::Private { .. })
    }
}

impl fmt::Display for Placement {
    /// One sentence on where binfmt_misc is mounted and how long registrations last.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Placement::AlreadyMounted => f.write_str("binfmt_misc was mounted already"),
            Placement::SharedInstance => f.write_str(
                "binfmt_misc was not mounted here; mounted it, and the instance is shared with \
                 another mount (the host's), so registrations outlive this process",
            ),
            Placement::HostNamespace => f.write_str(
                "binfmt_misc was not mounted; mounted it in the machine's own mount namespace, \
                 where it stays",
            ),
            Placement::Pid1Namespace {
                pid1_is_machine_init: true,
            } => f.write_str(
                "binfmt_misc was not mounted here; used it in the mount namespace of pid 1 \
                 (the host's init: this process shares the host's pid namespace), where it \
                 outlives this process",
            ),
            Placement::Pid1Namespace {
                pid1_is_machine_init: false,
            } => f.write_str(
                "binfmt_misc was not mounted here; used it in the mount namespace of pid 1, \
                 which is not the machine's init: registrations last only as long as that \
                 mount namespace",
            ),
            Placement::Private { reason } => write!(
                f,
                "binfmt_misc is not mounted on the host, and the instance mounted here belongs \
                 to this mount namespace alone: the kernel destroys it, with every \
                 registration, when this container exits ({reason})"
            ),
        }
    }
}

/// Opens binfmt_misc at `path`; when nothing is mounted there, mounts it where
/// registrations outlive this process if it can, and says where (see the module
/// documentation).
///
/// [`Placement::Private`] comes with the table mounted (a status read through it is
/// still true: the host has no instance, so no entries); a caller that would register
/// should [`unmount`] it and refuse.
pub fn open_or_mount(path: &Path) -> Result<(BinfmtMisc, Placement), Error> {
    match BinfmtMisc::open(path) {
        Err(Error::NotBinfmtMisc { .. }) => {}
        other => return other.map(|table| (table, Placement::AlreadyMounted)),
    }
    let facts = NamespaceFacts::read();
    let mut pid1_refused = None;
    if facts.pid1_mount_ns == Pid1MountNs::Different {
        match in_mount_namespace_of_pid1(|| open_or_mount_plain(path)) {
            Ok(table) => {
                let placement = Placement::Pid1Namespace {
                    pid1_is_machine_init: facts.initial_pid_ns,
                };
                return Ok((table?, placement));
            }
            Err(NamespaceSwitch::Enter(error)) => {
                let error = Chain(&error).to_string();
                log::debug!("{error}; mounting binfmt_misc in this mount namespace instead");
                pid1_refused = Some(error);
            }
            Err(NamespaceSwitch::Return(error)) => return Err(error),
        }
    }

    let table = BinfmtMisc::mount(path)?;
    let (table, lifetime) = probe_lifetime(table)?;
    let placement = match lifetime {
        Lifetime::Shared => Placement::SharedInstance,
        Lifetime::Private => decide_private(&facts, pid1_refused),
    };
    Ok((table, placement))
}

/// Unmounts a table this process mounted (see [`open_or_mount`]), leaving nothing
/// behind.
pub fn unmount(table: BinfmtMisc) -> Result<(), Error> {
    let path = table.path().to_owned();
    table
        .unmount()
        .map_err(|source| Error::Unmount { path, source })
}

/// Whether an instance outlives the mount this process made of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifetime {
    /// Another mount holds the instance (or the kernel keeps entries without any
    /// mount, as Debian's 5.10 does): entries outlive our mount.
    Shared,
    /// The instance was created by our mount and dies with it.
    Private,
}

/// Measures whether the instance mounted at `table` (which this process has just
/// mounted) is held by another mount as well.
///
/// Registers a harmless marker entry (type E for an extension no file has, no flags,
/// so the kernel never opens its interpreter), unmounts, mounts again and looks for
/// the marker. Still there: another mount holds the instance. Gone: the instance died
/// with our mount, and the one mounted now is new. The marker is removed either way;
/// the table returned is the new mount.
pub fn probe_lifetime(table: BinfmtMisc) -> Result<(BinfmtMisc, Lifetime), Error> {
    let marker = marker();
    table.register(&marker)?;
    let path = table.path().to_owned();
    unmount(table)?;
    let table = BinfmtMisc::mount(&path)?;
    let lifetime = if table.read_entry(&marker.name)?.is_some() {
        table.remove(&marker.name)?;
        Lifetime::Shared
    } else {
        Lifetime::Private
    };
    log::debug!(
        "binfmt_misc instance at {}: {lifetime:?}",
        table.path().display()
    );
    Ok((table, lifetime))
}

/// The probe's marker: a name no one else uses (two containers can both be pid 1).
fn marker() -> Registration {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or_default();
    let name = format!("binfmt-lifetime-probe-{}-{nanos}", std::process::id());
    Registration {
        matcher: Matcher::Extension(name.clone()),
        name,
        interpreter: "/nonexistent/binfmt-lifetime-probe".into(),
        flags: Flags::NONE,
    }
}

/// Mounts binfmt_misc at `path` unless it is mounted there already.
fn open_or_mount_plain(path: &Path) -> Result<BinfmtMisc, Error> {
    match BinfmtMisc::open(path) {
        Err(Error::NotBinfmtMisc { .. }) => BinfmtMisc::mount(path),
        other => other,
    }
}

/// What this process can tell about its namespaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespaceFacts {
    /// Pid 1's mount namespace compared with ours.
    pub pid1_mount_ns: Pid1MountNs,
    /// Whether our pid namespace is the machine's initial one.
    pub initial_pid_ns: bool,
}

/// Pid 1's mount namespace compared with ours.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pid1MountNs {
    /// The same: this process is pid 1 or lives in its mount namespace.
    Same,
    /// Another one: this container shares its pid namespace with pid 1 (`--pid=host`).
    Different,
    /// It cannot be read (ptrace access to pid 1 is needed); the reason.
    Unknown(String),
}

impl NamespaceFacts {
    /// Reads them from `/proc`.
    pub fn read() -> NamespaceFacts {
        let ours = namespace_id(SELF_MOUNT_NS);
        let pid1 = namespace_id(PID1_MOUNT_NS);
        let pid1_mount_ns = match (ours, pid1) {
            (Ok(ours), Ok(pid1)) if ours == pid1 => Pid1MountNs::Same,
            (Ok(_), Ok(_)) => Pid1MountNs::Different,
            (Err(error), _) => {
                Pid1MountNs::Unknown(format!("cannot read {SELF_MOUNT_NS}: {error}"))
            }
            (_, Err(error)) => {
                Pid1MountNs::Unknown(format!("cannot read {PID1_MOUNT_NS}: {error}"))
            }
        };
        let initial_pid_ns =
            namespace_id(SELF_PID_NS).is_ok_and(|(_, ino)| ino == PROC_PID_INIT_INO);
        NamespaceFacts {
            pid1_mount_ns,
            initial_pid_ns,
        }
    }
}

/// A namespace file's identity: its device and inode in nsfs.
fn namespace_id(path: &str) -> std::io::Result<(u64, u64)> {
    let stat = rustix::fs::stat(path)?;
    #[allow(clippy::useless_conversion, clippy::unnecessary_cast)]
    Ok((stat.st_dev as u64, stat.st_ino as u64))
}

/// Whether a private instance mounted here still lasts: only on the host itself.
pub fn decide_private(facts: &NamespaceFacts, pid1_refused: Option<String>) -> Placement {
    match (&facts.pid1_mount_ns, facts.initial_pid_ns) {
        (Pid1MountNs::Same, true) => Placement::HostNamespace,
        (Pid1MountNs::Same, false) => Placement::Private {
            reason: "this process runs in a pid namespace of its own, as in a container, whose \
                     pid 1 is in this mount namespace"
                .to_owned(),
        },
        (Pid1MountNs::Different, _) => Placement::Private {
            reason: pid1_refused.unwrap_or_else(|| {
                "pid 1 lives in another mount namespace, which could not be entered".to_owned()
            }),
        },
        (Pid1MountNs::Unknown(why), _) => Placement::Private {
            reason: format!("cannot tell whether this is the host's mount namespace: {why}"),
        },
    }
}

/// Why running something in pid 1's mount namespace failed.
#[derive(Debug)]
enum NamespaceSwitch {
    /// Entering it failed; nothing changed.
    Enter(Error),
    /// Coming back to our own mount namespace, root or working directory failed.
    Return(Error),
}

/// Runs `action` in the mount namespace of pid 1, then comes back to ours, with our
/// root and working directory, which `setns(2)` resets.
///
/// Calls [`setns(2)`](https://man7.org/linux/man-pages/man2/setns.2.html) with
/// `CLONE_NEWNS`, which needs CAP_SYS_ADMIN over the target namespace, CAP_SYS_CHROOT,
/// ptrace access to pid 1 (to open its namespace file), and a single-threaded process
/// (binfmt starts no threads). Descriptors opened in there, such as the table's mount
/// directory, keep pointing there afterwards.
fn in_mount_namespace_of_pid1<T>(action: impl FnOnce() -> T) -> Result<T, NamespaceSwitch> {
    fn enter(action: &'static str, path: &str, source: std::io::Error) -> NamespaceSwitch {
        NamespaceSwitch::Enter(Error::Namespace {
            action,
            path: path.into(),
            source,
        })
    }
    fn back(action: &'static str, errno: rustix::io::Errno) -> NamespaceSwitch {
        NamespaceSwitch::Return(Error::Namespace {
            action,
            path: SELF_MOUNT_NS.into(),
            source: errno.into(),
        })
    }
    let directory = |path: &'static str| {
        rustix::fs::openat(
            CWD,
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|errno| enter("open", path, errno.into()))
    };
    let ours = File::open(SELF_MOUNT_NS).map_err(|e| enter("open", SELF_MOUNT_NS, e))?;
    let pid1 = File::open(PID1_MOUNT_NS).map_err(|e| enter("open", PID1_MOUNT_NS, e))?;
    let root = directory("/")?;
    let cwd = directory(".")?;

    move_into_link_name_space(pid1.as_fd(), Some(LinkNameSpaceType::Mount))
        .map_err(|errno| enter("enter the mount namespace of", PID1_MOUNT_NS, errno.into()))?;
    let result = action();

    move_into_link_name_space(ours.as_fd(), Some(LinkNameSpaceType::Mount))
        .map_err(|errno| back("return to the mount namespace", errno))?;
    // setns(2) set root and working directory to the namespace's root; restore ours.
    let restore_root = "restore the root directory after leaving";
    rustix::process::fchdir(&root).map_err(|errno| back(restore_root, errno))?;
    rustix::process::chroot(".").map_err(|errno| back(restore_root, errno))?;
    rustix::process::fchdir(&cwd)
        .map_err(|errno| back("restore the working directory after leaving", errno))?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(pid1_mount_ns: Pid1MountNs, initial_pid_ns: bool) -> NamespaceFacts {
        NamespaceFacts {
            pid1_mount_ns,
            initial_pid_ns,
        }
    }

    #[test]
    fn a_private_instance_lasts_only_on_the_host() {
        assert_eq!(
            decide_private(&facts(Pid1MountNs::Same, true), None),
            Placement::HostNamespace
        );
        // A container whose pid 1 is its own init (or binfmt itself).
        let container = decide_private(&facts(Pid1MountNs::Same, false), None);
        assert!(!container.outlives_process());
        assert!(
            container.to_string().contains("pid namespace of its own"),
            "{container}"
        );
        // --pid=host, but entering pid 1's namespace was refused.
        let refused = decide_private(
            &facts(Pid1MountNs::Different, true),
            Some("cannot enter: EPERM".to_owned()),
        );
        assert!(!refused.outlives_process());
        assert!(
            refused.to_string().contains("cannot enter: EPERM"),
            "{refused}"
        );
        // Pid 1 unreadable: never assume the host.
        let unknown = decide_private(
            &facts(
                Pid1MountNs::Unknown("cannot read /proc/1/ns/mnt: EACCES".into()),
                true,
            ),
            None,
        );
        assert!(!unknown.outlives_process());
        assert!(unknown.to_string().contains("EACCES"), "{unknown}");
    }

    #[test]
    fn the_marker_is_a_valid_registration_nothing_executes() {
        let marker = marker();
        marker.validate().unwrap();
        assert!(
            !marker.flags.fix_binary,
            "the kernel must not open its interpreter"
        );
        assert!(matches!(marker.matcher, Matcher::Extension(_)));
        assert!(marker.name.starts_with("binfmt-lifetime-probe-"));
    }

    #[test]
    fn our_own_namespaces_are_readable() {
        let facts = NamespaceFacts::read();
        // Whatever pid 1 is, our own files can be read, so this is never a read error
        // on /proc/self.
        if let Pid1MountNs::Unknown(why) = &facts.pid1_mount_ns {
            assert!(why.contains(PID1_MOUNT_NS), "{why}");
        }
    }
}
