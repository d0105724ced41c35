//! `cargo xtask kernels [GUEST...]`: every release binary on Debian's own kernels of
//! its architecture, booted under qemu-system, and what it does there.
//!
//! The tests run on one kernel, this machine's. Users run Debian 11's 5.10, 6.1,
//! 6.12, on five architectures, with 4K and 16K pages, on arm64 CPUs with and without
//! AArch32; what binfmt relies on changes with the kernel (flag F, entries per user
//! namespace, whether entries outlive the last unmount of their instance). So each
//! [`GUEST`] boots one of Debian's kernel packages ([`KERNELS`], pinned by sha256 in
//! `qemu-blobs/kernels.toml`, see [`pins`]) under Debian 12's qemu-system (software
//! emulation: KVM is not needed, and hangs on the machines binfmt is built on), with
//! an initramfs built here ([`initramfs`]):
//!
//! - `/init` ([`INIT`], `kernels/init.sh`), which runs the checks and prints one line
//!   per step on the console (see [`boot`]);
//! - `/usr/bin/binfmt`: that host's release binary from `dist/` (built first, with
//!   `cargo xtask dist`);
//! - `/bin/busybox`: Debian's static busybox of the host, the shell;
//! - `/test/busybox/<arch>/busybox`: Debian's static busybox of every architecture Debian
//!   builds it for, and `/test/probes/<cpu>`: a tiny-elf program of every
//!   architecture binfmt knows, which prints a line and exits 42;
//! - `/lib/modules/binfmt_misc.ko`: the kernel's binfmt_misc module (Debian builds it
//!   as a module);
//! - `/test/config`: what this guest must show (the entries `--install all` registers
//!   here, the architectures the CPU runs natively, whether `binfmt run` works).
//!
//! In the guest, as the host (pid 1, the machine's namespaces): `--install all`
//! registers the host's set with another tool's entry in the table; the probes and
//! busyboxes of every architecture run, also from an empty root; `check` of every
//! platform and `doctor` pass; a rerun writes nothing; `--uninstall` leaves the table
//! as it was. As a container (`unshare -m -p -f --mount-proc`): with nothing mounted
//! on the host, `--install all` either leaves entries that stay after it, or refuses
//! with the fix, never success followed by loss; once the host has mounted
//! binfmt_misc, it succeeds and the entries stay. `binfmt run` as nobody works on
//! Linux 6.7 and newer and refuses with its reason on older kernels. And, measured
//! without binfmt: does an entry registered in a fresh mount namespace outlive the
//! last unmount of its instance?
//!
//! The matrix it prints (Markdown) has a row per guest: kernel, CPU and page size,
//! PASS or FAIL, seconds to boot and to run the checks, and what was measured. Exit
//! status 1 when any guest fails, or a kernel cannot be fetched or booted: never a
//! silent pass. Console logs: `target/kernels/<guest>/console.log`.

mod boot;
mod initramfs;
pub mod pins;

use std::fmt::Write as _;
use std::fs;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use qemu_pins::{BlobCache, MANIFEST_PATH, Manifest};

use anyhow::{Context, Result, anyhow};

use crate::mirror::Mirror;
use crate::workspace::{megabytes, target_dir, workspace_root};
use pins::{Kernel, PINS_PATH, PinnedFile, Pins};

/// The guest's `/init`.
const INIT: &str = include_str!("kernels/init.sh");

/// What every probe exits with.
const PROBE_STATUS: u8 = 42;

/// The steps `/init` reports, in order; a guest passes when each reported ok.
const STEPS: [&str; 15] = [
    "boot",
    "module",
    "native",
    "survival",
    "container-unmounted",
    "container-mounted",
    "host-mount",
    "install",
    "foreign",
    "empty-root",
    "check",
    "doctor",
    "rerun",
    "uninstall",
    "run",
];

/// The kernels the guests boot: Debian 11, 12 and 13 on x86_64; Debian 13 on every
/// other host, with 4K and 16K pages on arm64.
pub static KERNELS: [Kernel; 8] = [
    Kernel {
        suite: "bullseye",
        debian_arch: "amd64",
        flavour: "amd64",
        unsigned: true,
        image: "vmlinuz",
    },
    Kernel {
        suite: "bookworm",
        debian_arch: "amd64",
        flavour: "amd64",
        unsigned: true,
        image: "vmlinuz",
    },
    Kernel {
        suite: "trixie",
        debian_arch: "amd64",
        flavour: "amd64",
        unsigned: true,
        image: "vmlinuz",
    },
    Kernel {
        suite: "trixie",
        debian_arch: "arm64",
        flavour: "arm64",
        unsigned: true,
        image: "vmlinuz",
    },
    Kernel {
        suite: "trixie",
        debian_arch: "arm64",
        flavour: "arm64-16k",
        unsigned: true,
        image: "vmlinuz",
    },
    Kernel {
        suite: "trixie",
        debian_arch: "ppc64el",
        flavour: "powerpc64le",
        unsigned: false,
        image: "vmlinux",
    },
    Kernel {
        suite: "trixie",
        debian_arch: "s390x",
        flavour: "s390x",
        unsigned: false,
        image: "vmlinuz",
    },
    Kernel {
        suite: "trixie",
        debian_arch: "riscv64",
        flavour: "riscv64",
        unsigned: false,
        image: "vmlinux",
    },
];

/// One boot of the matrix: a kernel on a CPU, with that host's release binary.
#[derive(Debug)]
pub struct Guest {
    /// Its name on the command line and in the matrix.
    pub name: &'static str,
    pub kernel: &'static Kernel,
    /// The release binary's host (`dist/binfmt-<host>-...`), as pins.toml names it.
    pub host: &'static str,
    /// The qemu-system program, and the Debian 12 package that has it.
    pub qemu: (&'static str, &'static str),
    /// Machine and CPU options.
    pub machine: &'static [&'static str],
    /// The CPU, for the matrix.
    pub cpu: &'static str,
    /// The serial console the kernel writes to.
    pub console: &'static str,
    /// Virtual CPUs (each one a thread of qemu).
    pub vcpus: u8,
    /// QEMU cpus this CPU runs natively besides the host's own
    /// ([`arch_table::Host::native`]):
    /// `arm` on an arm64 CPU with AArch32 at EL0.
    pub also_native: &'static [&'static str],
}

const X86_64_QEMU: (&str, &str) = ("qemu-system-x86_64", "qemu-system-x86");
const X86_64_MACHINE: &[&str] = &["-accel", "tcg", "-cpu", "max"];
const AARCH64_QEMU: (&str, &str) = ("qemu-system-aarch64", "qemu-system-arm");
const AARCH64_MAX: &[&str] = &["-M", "virt", "-cpu", "max,pauth-impdef=on"];

/// `-cpu max` of qemu-system-aarch64 has AArch32 at EL0; Fujitsu's A64FX has none
/// (its ID_AA64PFR0_EL1.EL0 says AArch64 only, as QEMU models it), so there 32-bit
/// arm programs need qemu-arm. `pauth-impdef=on`: Debian's arm64 kernels sign their
/// return addresses (pointer authentication), and QEMU's emulation of the
/// architected algorithm (QARMA) made the guest three times slower (146 s instead of
/// 51 s here); the implementation-defined one is as good a test of the kernel. The
/// A64FX model has a GICv3 CPU interface, which the kernel uses, so the machine gets
/// a GICv3 (with the default GICv2 the kernel stops at its first GIC access).
pub static GUESTS: [Guest; 9] = [
    Guest {
        name: "x86_64-5.10",
        kernel: &KERNELS[0],
        host: "x86_64",
        qemu: X86_64_QEMU,
        machine: X86_64_MACHINE,
        cpu: "max",
        console: "ttyS0",
        vcpus: 1,
        also_native: &[],
    },
    Guest {
        name: "x86_64-6.1",
        kernel: &KERNELS[1],
        host: "x86_64",
        qemu: X86_64_QEMU,
        machine: X86_64_MACHINE,
        cpu: "max",
        console: "ttyS0",
        vcpus: 1,
        also_native: &[],
    },
    Guest {
        name: "x86_64-6.12",
        kernel: &KERNELS[2],
        host: "x86_64",
        qemu: X86_64_QEMU,
        machine: X86_64_MACHINE,
        cpu: "max",
        console: "ttyS0",
        vcpus: 1,
        also_native: &[],
    },
    Guest {
        name: "arm64-6.12",
        kernel: &KERNELS[3],
        host: "aarch64",
        qemu: AARCH64_QEMU,
        machine: AARCH64_MAX,
        cpu: "max (AArch32)",
        console: "ttyAMA0",
        vcpus: 1,
        also_native: &["arm"],
    },
    Guest {
        name: "arm64-6.12-a64fx",
        kernel: &KERNELS[3],
        host: "aarch64",
        qemu: AARCH64_QEMU,
        machine: &["-M", "virt,gic-version=3", "-cpu", "a64fx"],
        cpu: "a64fx (no AArch32)",
        console: "ttyAMA0",
        vcpus: 1,
        also_native: &[],
    },
    Guest {
        name: "arm64-16k-6.12",
        kernel: &KERNELS[4],
        host: "aarch64",
        qemu: AARCH64_QEMU,
        machine: AARCH64_MAX,
        cpu: "max (AArch32)",
        console: "ttyAMA0",
        vcpus: 1,
        also_native: &["arm"],
    },
    Guest {
        name: "ppc64el-6.12",
        kernel: &KERNELS[5],
        host: "powerpc64le",
        qemu: ("qemu-system-ppc64", "qemu-system-ppc"),
        // TCG implements none of the speculation mitigations the pseries machine
        // asks for by default; say they are absent rather than fail to start.
        machine: &[
            "-M",
            "pseries,cap-cfpc=broken,cap-sbbc=broken,cap-ibs=broken,cap-ccf-assist=off",
            "-cpu",
            "power9",
        ],
        cpu: "power9",
        console: "hvc0",
        vcpus: 1,
        also_native: &[],
    },
    Guest {
        name: "s390x-6.12",
        kernel: &KERNELS[6],
        host: "s390x",
        qemu: ("qemu-system-s390x", "qemu-system-misc"),
        machine: &["-M", "s390-ccw-virtio", "-cpu", "max"],
        cpu: "max",
        console: "ttysclp0",
        vcpus: 1,
        also_native: &[],
    },
    Guest {
        name: "riscv64-6.12",
        kernel: &KERNELS[7],
        host: "riscv64",
        qemu: ("qemu-system-riscv64", "qemu-system-misc"),
        // The default firmware, OpenSBI from qemu-system-data, boots the kernel.
        machine: &["-M", "virt"],
        cpu: "rv64",
        console: "ttyS0",
        // `check` and `doctor` start every probe at once and give them 5 s together;
        // one emulated riscv64 CPU starts nine emulators in 6 to 10 s here (0.2 to
        // 1.2 s each, measured), two in half that.
        vcpus: 2,
        also_native: &[],
    },
];

/// A static busybox of Debian's in every guest.
#[derive(Debug)]
pub struct Busybox {
    /// Debian's architecture.
    pub debian_arch: &'static str,
    /// QEMU's cpu of it.
    pub cpu: &'static str,
    /// What `uname -m` says under QEMU's emulator of it.
    pub machine: &'static str,
    /// The suite it comes from: trixie, except mips64el, which Debian 13 no longer
    /// builds (bookworm's).
    pub suite: &'static str,
}

/// Debian's static busybox of each architecture it builds one for.
pub const BUSYBOXES: [Busybox; 8] = [
    Busybox {
        debian_arch: "amd64",
        cpu: "x86_64",
        machine: "x86_64",
        suite: "trixie",
    },
    Busybox {
        debian_arch: "i386",
        cpu: "i386",
        machine: "i686",
        suite: "trixie",
    },
    Busybox {
        debian_arch: "arm64",
        cpu: "aarch64",
        machine: "aarch64",
        suite: "trixie",
    },
    Busybox {
        debian_arch: "armhf",
        cpu: "arm",
        machine: "armv7l",
        suite: "trixie",
    },
    Busybox {
        debian_arch: "riscv64",
        cpu: "riscv64",
        machine: "riscv64",
        suite: "trixie",
    },
    Busybox {
        debian_arch: "ppc64el",
        cpu: "ppc64le",
        machine: "ppc64le",
        suite: "trixie",
    },
    Busybox {
        debian_arch: "s390x",
        cpu: "s390x",
        machine: "s390x",
        suite: "trixie",
    },
    Busybox {
        debian_arch: "mips64el",
        cpu: "mips64el",
        machine: "mips64",
        suite: "bookworm",
    },
];

/// Every architecture a busybox is pinned for, with its suite.
pub fn busybox_arches() -> Vec<(&'static str, &'static str)> {
    BUSYBOXES
        .iter()
        .map(|busybox| (busybox.debian_arch, busybox.suite))
        .collect()
}

/// Arguments of `cargo xtask kernels`.
#[derive(clap::Args)]
#[command(
    after_help = "Exit status: 0 every guest passed; 1 a guest failed, or a kernel \
                        could not be fetched or booted."
)]
pub struct Args {
    /// Guests to boot (default: all): x86_64-5.10, x86_64-6.1, x86_64-6.12, arm64-6.12,
    /// arm64-6.12-a64fx, arm64-16k-6.12, ppc64el-6.12, s390x-6.12, riscv64-6.12.
    #[arg(value_name = "GUEST", value_parser = parse_guest)]
    guests: Vec<&'static Guest>,
    /// Pin the newest kernels and busyboxes the mirror serves: rewrite
    /// qemu-blobs/kernels.toml (and fill the cache), then stop.
    #[arg(long, conflicts_with = "guests")]
    pin: bool,
    /// How many guests to boot at once (each keeps one core busy).
    #[arg(long, value_name = "N", default_value_t = default_jobs())]
    jobs: NonZeroUsize,
    /// How long one guest may take, boot and checks, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 900)]
    timeout: u64,
}

fn default_jobs() -> NonZeroUsize {
    std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)
}

fn parse_guest(name: &str) -> Result<&'static Guest, String> {
    GUESTS
        .iter()
        .find(|guest| guest.name == name)
        .ok_or_else(|| {
            let names: Vec<&str> = GUESTS.iter().map(|guest| guest.name).collect();
            format!(
                "unknown guest {name:?}; the guests are {}",
                names.join(", ")
            )
        })
}

/// Runs `cargo xtask kernels`.
pub fn run(args: &Args) -> Result<ExitCode> {
    let root = workspace_root();
    let cache = BlobCache::from_env()?;
    if args.pin {
        return pin(&root, &cache).map(|()| ExitCode::SUCCESS);
    }
    let guests: Vec<&'static Guest> = if args.guests.is_empty() {
        GUESTS.iter().collect()
    } else {
        args.guests.clone()
    };
    // Everything that can be missing is said before anything is downloaded or built.
    for guest in &guests {
        boot::check_installed(guest.qemu.0, guest.qemu.1)?;
    }
    let pins = Pins::load(&root)?;
    let manifest = Manifest::load(&root.join(MANIFEST_PATH))?;
    fetch(&pins, &guests, &cache)?;

    let mut hosts: Vec<&str> = guests.iter().map(|guest| guest.host).collect();
    hosts.sort_unstable();
    hosts.dedup();
    eprintln!(
        "kernels: building the release binaries for {} (cargo xtask dist)",
        hosts.join(", ")
    );
    crate::dist::run(&crate::dist::Args::hosts(&hosts))?;

    let scratch = target_dir().join("kernels");
    let mut prepared = Vec::new();
    for guest in guests {
        let dir = scratch.join(guest.name);
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let initramfs = dir.join("initramfs.cpio");
        let kernel = pins.kernel(guest.kernel)?;
        build_initramfs(guest, &pins, &manifest, &cache, &initramfs)?;
        prepared.push(Prepared {
            guest,
            dir,
            image: cache.kernel_file_path(&kernel.image.sha256),
            initramfs,
            kernel_version: kernel.upstream_version().to_owned(),
        });
    }
    let results = boot_all(&prepared, args.jobs, Duration::from_secs(args.timeout))?;
    let (text, all_passed) = matrix(&results);
    print!("{text}");
    Ok(if all_passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `--pin`: rewrites [`PINS_PATH`] with the newest kernels and busyboxes the mirror
/// serves.
fn pin(root: &Path, cache: &BlobCache) -> Result<()> {
    let mirror = Mirror::from_env()?;
    eprintln!(
        "pinning kernels and busyboxes from {} (from {})",
        mirror.base(),
        mirror.origin()
    );
    let current = Pins::load(root).ok();
    let pins = pins::pin(
        &mirror,
        cache,
        &KERNELS,
        &busybox_arches(),
        current.as_ref(),
    )?;
    let path = root.join(PINS_PATH);
    fs::write(&path, pins.to_toml()).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// Makes sure the cache holds the kernels of `guests` and every busybox, checked
/// against their pins; downloads what is missing (the mirror is looked up only then).
fn fetch(pins: &Pins, guests: &[&Guest], cache: &BlobCache) -> Result<()> {
    let mut debs: Vec<(&pins::Deb, Vec<&PinnedFile>)> = Vec::new();
    for guest in guests {
        let kernel = pins.kernel(guest.kernel)?;
        debs.push((&kernel.deb, vec![&kernel.image, &kernel.module]));
    }
    for (arch, _) in busybox_arches() {
        let busybox = pins.busybox(arch)?;
        debs.push((&busybox.deb, vec![&busybox.binary]));
    }
    let mut unique: Vec<(&pins::Deb, Vec<&PinnedFile>)> = Vec::new();
    for (deb, files) in debs {
        if !unique.iter().any(|(seen, _)| *seen == deb) {
            unique.push((deb, files));
        }
    }
    let start = Instant::now();
    let mut mirror = None;
    let mut make_mirror = || -> Result<Mirror> {
        if mirror.is_none() {
            mirror = Some(Mirror::from_env()?);
        }
        mirror.clone().context("unreachable: no mirror")
    };
    let downloaded = pins::ensure_cached(cache, &mut make_mirror, &unique)?;
    eprintln!(
        "kernels: {} packages cached and checked ({} downloaded) in {:.1} s",
        unique.len(),
        megabytes(downloaded),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Boots `prepared`, `jobs` at a time; the results in the order of [`GUESTS`].
fn boot_all(
    prepared: &[Prepared],
    jobs: NonZeroUsize,
    timeout: Duration,
) -> Result<Vec<(&Prepared, Result<Outcome>)>> {
    let start = Instant::now();
    let queue = Mutex::new(prepared.iter());
    let results = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.get().min(prepared.len()) {
            scope.spawn(|| {
                while let Some(prepared) = queue.lock().ok().and_then(|mut queue| queue.next()) {
                    let guest = prepared.guest;
                    eprintln!(
                        "kernels: booting {} ({} {})",
                        guest.name, guest.kernel.suite, prepared.kernel_version
                    );
                    let outcome = boot_guest(prepared, timeout);
                    match &outcome {
                        Ok(outcome) if outcome.problems.is_empty() => eprintln!(
                            "kernels: {} passed in {:.0} s",
                            guest.name,
                            outcome.boot.elapsed.as_secs_f64()
                        ),
                        Ok(outcome) => eprintln!(
                            "kernels: {} FAILED in {:.0} s",
                            guest.name,
                            outcome.boot.elapsed.as_secs_f64()
                        ),
                        Err(err) => eprintln!("kernels: {} could not boot: {err:#}", guest.name),
                    }
                    if let Ok(mut results) = results.lock() {
                        results.push((prepared, outcome));
                    }
                }
            });
        }
    });
    let mut results = results
        .into_inner()
        .map_err(|_| anyhow!("a booting thread panicked"))?;
    eprintln!(
        "kernels: {} guests booted and checked in {:.0} s, {jobs} at a time",
        results.len(),
        start.elapsed().as_secs_f64()
    );
    results.sort_by_key(|(prepared, _)| {
        GUESTS
            .iter()
            .position(|guest| guest.name == prepared.guest.name)
    });
    Ok(results)
}

/// A guest ready to boot.
struct Prepared {
    guest: &'static Guest,
    dir: PathBuf,
    image: PathBuf,
    initramfs: PathBuf,
    kernel_version: String,
}

/// What a guest must show, as its `/test/config` tells it.
struct Expected {
    /// What `--install all` registers there.
    entries: Vec<String>,
    /// The cpus its CPU runs natively.
    native: Vec<String>,
    /// Whether `binfmt run` works (Linux 6.7 and newer).
    run_works: bool,
}

/// One boot's result.
struct Outcome {
    boot: boot::Boot,
    problems: Vec<String>,
}

/// Puts `guest`'s initramfs together at `path`, with what it must show in its
/// `/test/config`.
fn build_initramfs(
    guest: &Guest,
    pins: &Pins,
    manifest: &Manifest,
    cache: &BlobCache,
    path: &Path,
) -> Result<()> {
    let kernel = pins.kernel(guest.kernel)?;
    let host = manifest
        .host(guest.host)
        .with_context(|| format!("{MANIFEST_PATH} pins nothing for host {}", guest.host))?;
    // Every architecture binfmt knows: the x86_64 host pins all ten (its own too).
    let all = manifest
        .host("x86_64")
        .with_context(|| format!("{MANIFEST_PATH} pins nothing for host x86_64"))?;
    let native: Vec<String> = arch_table::host(guest.host)
        .map(|host| host.native)
        .unwrap_or_default()
        .iter()
        .chain(guest.also_native)
        .map(|cpu| (*cpu).to_owned())
        .collect();
    let mut entries: Vec<String> = host
        .embedded()
        .iter()
        .filter(|emulator| !native.contains(&emulator.cpu))
        .map(|emulator| format!("qemu-{}", emulator.cpu))
        .collect();
    entries.sort();
    let cpus: Vec<&str> = all.emulators.iter().map(|e| e.cpu.as_str()).collect();
    // In the order of `cpus`, as the guest lists what ran.
    let native: Vec<String> = cpus
        .iter()
        .filter(|cpu| native.iter().any(|n| n == *cpu))
        .map(|cpu| (*cpu).to_owned())
        .collect();
    let platforms: Vec<String> = all
        .emulators
        .iter()
        .map(|e| format!("linux/{}", e.oci))
        .collect();
    let run_works = kernel
        .major_minor()
        .is_some_and(|version| version >= (6, 7));
    let expected = Expected {
        entries,
        native,
        run_works,
    };

    let mut archive = initramfs::Archive::new();
    archive.file("init", INIT.as_bytes().to_vec(), true);
    // For `su nobody` (`binfmt run` is run as an ordinary user).
    archive.file(
        "etc/passwd",
        b"root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n".to_vec(),
        false,
    );
    archive.file(
        "etc/group",
        b"root:x:0:\nnogroup:x:65534:\n".to_vec(),
        false,
    );
    let module = pins::read_cached(cache, &kernel.module)?;
    let module = if kernel.module.path.ends_with(".xz") {
        let mut plain = Vec::new();
        std::io::Read::read_to_end(
            &mut liblzma::read::XzDecoder::new(module.as_slice()),
            &mut plain,
        )
        .with_context(|| format!("cannot decompress {}", kernel.module.path))?;
        plain
    } else {
        module
    };
    archive.file("lib/modules/binfmt_misc.ko", module, false);
    let own = pins.busybox(guest.kernel.debian_arch)?;
    archive.file("bin/busybox", pins::read_cached(cache, &own.binary)?, true);
    for Busybox { debian_arch, .. } in BUSYBOXES {
        let busybox = pins.busybox(debian_arch)?;
        archive.file(
            &format!("test/busybox/{debian_arch}/busybox"),
            pins::read_cached(cache, &busybox.binary)?,
            true,
        );
    }
    for cpu in &cpus {
        let machine = tiny_elf::Machine::ALL
            .into_iter()
            .find(|machine| machine.name() == *cpu)
            .with_context(|| format!("tiny-elf makes no programs for {cpu}"))?;
        let message = format!("binfmt-kernel-test probe {cpu}\n");
        archive.file(
            &format!("test/probes/{cpu}"),
            tiny_elf::hello(machine, message.as_bytes(), PROBE_STATUS),
            true,
        );
    }
    let artifact = crate::dist::Artifact::of(guest.host)
        .with_context(|| format!("binfmt has no release binary for {}", guest.host))?;
    let binary = crate::dist::dist_dir().join(artifact.file_name());
    archive.file(
        "usr/bin/binfmt",
        fs::read(&binary).with_context(|| format!("cannot read {}", binary.display()))?,
        true,
    );
    let busyboxes: Vec<String> = BUSYBOXES
        .iter()
        .map(|busybox| {
            format!(
                "{}:{}:{}",
                busybox.debian_arch, busybox.cpu, busybox.machine
            )
        })
        .collect();
    let config = format!(
        "# Written by `cargo xtask kernels` for {name}.\n\
         GUEST='{name}'\n\
         CPUS='{cpus}'\n\
         NATIVE_CPUS='{native}'\n\
         EXPECTED_ENTRIES='{entries}'\n\
         BUSYBOXES='{busyboxes}'\n\
         PLATFORMS='{platforms}'\n\
         RUN_EXPECTED='{run}'\n\
         PROBE_STATUS={PROBE_STATUS}\n",
        name = guest.name,
        cpus = cpus.join(" "),
        native = expected.native.join(" "),
        entries = expected.entries.join(" "),
        busyboxes = busyboxes.join(" "),
        platforms = platforms.join(" "),
        run = if expected.run_works {
            "works"
        } else {
            "refused"
        },
    );
    archive.file("test/config", config.into_bytes(), false);
    let file =
        fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    archive
        .write(&mut out)
        .and_then(|()| std::io::Write::flush(&mut out))
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Boots one prepared guest and judges what it reported.
fn boot_guest(prepared: &Prepared, timeout: Duration) -> Result<Outcome> {
    let guest = prepared.guest;
    let mut command = Command::new(guest.qemu.0);
    command
        .args(guest.machine)
        .args(["-m", "2048", "-smp", &guest.vcpus.to_string()])
        .args(["-nic", "none", "-no-reboot"])
        .args(["-display", "none", "-monitor", "none", "-serial", "stdio"])
        .arg("-kernel")
        .arg(&prepared.image)
        .arg("-initrd")
        .arg(&prepared.initramfs)
        .arg("-append")
        .arg(format!(
            "console={} panic=-1 quiet rdinit=/init",
            guest.console
        ));
    let boot = boot::run(command, &prepared.dir.join("console.log"), timeout)?;
    let problems = boot::problems(&boot, &STEPS);
    let timings = prepared.dir.join("steps.txt");
    fs::write(&timings, boot.timings())
        .with_context(|| format!("cannot write {}", timings.display()))?;
    Ok(Outcome { boot, problems })
}

/// The matrix (Markdown) and the reasons of every guest that did not pass; `true`
/// when all passed.
fn matrix(results: &[(&Prepared, Result<Outcome>)]) -> (String, bool) {
    let mut out = String::from(
        "\nbinfmt's release binaries on Debian's own kernels, booted under qemu-system \
         (TCG); seconds to boot to /init and to run the checks:\n\n\
         | guest | kernel | CPU | pages | result | boot s | checks s | entries outlive last unmount | container, nothing mounted on the host | `binfmt run` |\n\
         |---|---|---|---|---|--:|--:|---|---|---|\n",
    );
    let mut notes = String::new();
    let mut all_passed = true;
    for (prepared, outcome) in results {
        let guest = prepared.guest;
        let kernel = format!("{} ({})", prepared.kernel_version, guest.kernel.suite);
        match outcome {
            Ok(outcome) => {
                let passed = outcome.problems.is_empty();
                all_passed &= passed;
                let fact = |name: &str| {
                    outcome
                        .boot
                        .facts
                        .get(name)
                        .map_or("?", String::as_str)
                        .to_owned()
                };
                let seconds = |d: Option<Duration>| {
                    d.map_or("-".to_owned(), |d| format!("{:.0}", d.as_secs_f64()))
                };
                let checks = match (outcome.boot.booted, outcome.boot.done) {
                    (Some(booted), Some(done)) => Some(done.saturating_sub(booted)),
                    _ => None,
                };
                let _ = writeln!(
                    out,
                    "| {} | {kernel} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    guest.name,
                    guest.cpu,
                    fact("page_size"),
                    if passed { "PASS" } else { "FAIL" },
                    seconds(outcome.boot.booted),
                    seconds(checks),
                    fact("entries_outlive_last_unmount"),
                    fact("container_without_host_mount"),
                    fact("binfmt_run"),
                );
                for problem in &outcome.problems {
                    let _ = writeln!(notes, "{}: {problem}", guest.name);
                }
                if !passed {
                    let _ = writeln!(
                        notes,
                        "{}: console log {}",
                        guest.name,
                        outcome.boot.console.display()
                    );
                }
            }
            Err(err) => {
                all_passed = false;
                let _ = writeln!(
                    out,
                    "| {} | {kernel} | {} | | FAIL | - | - | | | |",
                    guest.name, guest.cpu
                );
                let _ = writeln!(notes, "{}: could not boot: {err:#}", guest.name);
            }
        }
    }
    if !notes.is_empty() {
        let _ = write!(out, "\n{notes}");
    }
    (out, all_passed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_pins_pin_every_kernel_and_busybox() {
        let pins = Pins::load(&workspace_root()).unwrap();
        for kernel in &KERNELS {
            pins.kernel(kernel).unwrap();
        }
        for (arch, suite) in busybox_arches() {
            assert_eq!(pins.busybox(arch).unwrap().suite, suite);
        }
    }

    #[test]
    fn releases_are_read_from_package_names_of_the_flavour_only() {
        let amd64 = &KERNELS[1];
        assert_eq!(
            amd64.release_of("linux-image-6.1.0-50-amd64-unsigned"),
            Some("6.1.0-50-amd64".to_owned())
        );
        assert_eq!(
            KERNELS[2].release_of("linux-image-6.12.117+deb13-amd64-unsigned"),
            Some("6.12.117+deb13-amd64".to_owned())
        );
        for other in [
            "linux-image-6.1.0-50-amd64",
            "linux-image-6.1.0-50-cloud-amd64-unsigned",
            "linux-image-6.1.0-50-rt-amd64-unsigned",
            "linux-image-amd64",
            "linux-image-6.1.0-50-amd64-dbg",
        ] {
            assert_eq!(amd64.release_of(other), None, "{other}");
        }
        let arm64 = &KERNELS[3];
        assert_eq!(
            arm64.release_of("linux-image-6.12.117+deb13-arm64-16k-unsigned"),
            None
        );
        assert_eq!(
            KERNELS[4].release_of("linux-image-6.12.117+deb13-arm64-16k-unsigned"),
            Some("6.12.117+deb13-arm64-16k".to_owned())
        );
        let ppc64el = &KERNELS[5];
        assert_eq!(
            ppc64el.release_of("linux-image-6.12.107+deb13-powerpc64le"),
            Some("6.12.107+deb13-powerpc64le".to_owned())
        );
        assert_eq!(
            ppc64el.release_of("linux-image-6.12.107+deb13-powerpc64le-64k"),
            None
        );
    }

    #[test]
    fn the_init_script_runs_the_steps_in_the_order_they_are_judged() {
        let calls: Vec<String> = INIT
            .lines()
            .filter_map(|line| line.strip_prefix("step_"))
            .filter(|rest| !rest.contains('('))
            .map(|rest| rest.trim().replace('_', "-"))
            .collect();
        assert_eq!(calls, STEPS);
    }

    #[test]
    fn every_guest_has_a_release_binary_and_a_busybox_for_its_shell() {
        for guest in &GUESTS {
            assert!(
                crate::dist::Artifact::of(guest.host).is_some(),
                "{}",
                guest.name
            );
            assert!(
                BUSYBOXES
                    .iter()
                    .any(|busybox| busybox.debian_arch == guest.kernel.debian_arch),
                "{}",
                guest.name
            );
        }
    }
}
