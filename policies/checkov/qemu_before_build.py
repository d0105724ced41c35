"""What CKV_GHA_QEMU_001 and CKV_GITLABCI_QEMU_001 share: is a job's container build for
a platform its runner cannot run natively preceded, in the same job, by a step that
registers QEMU for that platform?

A job is reduced to its runner's architecture and an ordered list of events: builds
(with the platforms they target) and registrations (with the architectures they cover).
The two checks produce the events from their CI system's YAML (steps and actions in
GitHub Actions, before_script and script in GitLab CI); the shell commands of both are
read here. Nothing here imports Checkov (only PyYAML, which Checkov depends on), and
Checkov's external-check loader executes this module as if it were a check: it
defines no check and registers nothing.

Decisions, each where it is applied:
- native: an x86-64 runner runs amd64 and 386; an arm64 runner only arm64 (many arm64
  CPUs and kernels cannot run 32-bit arm programs, and registering costs nothing where
  they can); a 32-bit arm runner runs arm;
- a runner that cannot be known (an unresolved expression, labels that name no
  architecture) fails a job only when no one runner could build all its platforms
  natively: one platform passes, amd64 with arm64 fails;
- an explicit registration list (`--install arm64`) covers only what it names; `all`,
  `binfmt apply` and multiarch/qemu-user-static cover everything; the images that
  register a fixed set (docker/binfmt, linuxkit/binfmt, hypriot/qemu-register) cover
  that set;
- a registration without flag F (multiarch/qemu-user-static without `-p yes`) covers
  nothing: the build's containers do not hold the emulator it names. Installing
  Debian's qemu-user-static or qemu-user-binfmt registers only where the runner applies
  the package's binfmt config (a VM with systemd), or once enabled (`update-binfmts
  --enable`, `systemctl restart systemd-binfmt`);
- a platform that cannot be known (an unresolved variable or expression) is left out.

docs/checkov-policy.md says which tools and actions are recognised, and why.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

import yaml  # PyYAML, a dependency of Checkov

# Every foreign architecture: what `--install all` and a registration without a list
# cover.
ALL = "all"

# What a runner of each architecture runs without emulation.
NATIVE: dict[str, frozenset[str]] = {
    "amd64": frozenset({"amd64", "386"}),
    "arm64": frozenset({"arm64"}),
    "arm": frozenset({"arm"}),
}

# Stands for a CI expression that cannot be resolved (`${{ inputs.arch }}`): a word
# holding it names no platform and no architecture. It has no shell metacharacter, so
# it survives the shell parsing below as part of one word.
UNRESOLVED = "@unresolved@"

# Architecture spellings (Docker/OCI, kernel, Debian, QEMU), lowercase, to the OCI name.
_ARCH_ALIASES: dict[str, str] = {
    "amd64": "amd64",
    "x86_64": "amd64",
    "x86-64": "amd64",
    "x64": "amd64",
    "386": "386",
    "i386": "386",
    "i686": "386",
    "x86": "386",
    "arm64": "arm64",
    "aarch64": "arm64",
    "arm": "arm",
    "armhf": "arm",
    "armel": "arm",
    "armv6": "arm",
    "armv6l": "arm",
    "armv7": "arm",
    "armv7l": "arm",
    "riscv64": "riscv64",
    "ppc64le": "ppc64le",
    "ppc64el": "ppc64le",
    "s390x": "s390x",
    "mips64le": "mips64le",
    "mips64el": "mips64le",
    "mips64": "mips64",
    "loong64": "loong64",
    "loongarch64": "loong64",
}

# QEMU's cpu names, as in entry names (`qemu-aarch64`), which binfmt accepts too.
_QEMU_ALIASES: dict[str, str] = {"qemu-" + cpu: arch for cpu, arch in _ARCH_ALIASES.items()}

# Operating systems QEMU user-mode emulation is about; `windows/amd64` is not.
_LINUX = ("linux",)


def arch_of(platform: str) -> str | None:
    """The architecture a platform spelling names (`linux/arm/v7` -> `arm`, `aarch64`
    -> `arm64`), or None when it cannot be known: an unresolved variable or expression,
    `local` (buildx: the builder's own platform), another operating system, or empty.
    An unknown literal name (`linux/sparc64`) is kept as it is: it is still foreign."""
    text = platform.strip().strip("'\"").lower()
    if not text or "$" in text or UNRESOLVED in text or text == "local":
        return None
    text = _QEMU_ALIASES.get(text, text)
    parts = text.split("/")
    if len(parts) >= 2 and parts[0] in _LINUX:
        parts = parts[1:]
    elif len(parts) >= 2 and parts[0] not in _ARCH_ALIASES:
        return None  # windows/amd64, darwin/arm64: no binfmt_misc involved
    arch = parts[0]
    if not re.fullmatch(r"[a-z0-9_-]+", arch):
        return None
    return _ARCH_ALIASES.get(arch, arch)


def split_list(value: Any) -> list[str]:
    """The items of a platform list as CI files write them: comma, space or newline
    separated text, or a YAML list."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [item for element in value for item in split_list(element)]
    return [item for item in re.split(r"[,\s]+", str(value)) if item]


def arches_of(platforms: Iterable[str]) -> list[str]:
    """The distinct known architectures of `platforms`, in order."""
    arches: list[str] = []
    for platform in platforms:
        arch = arch_of(platform)
        if arch and arch not in arches:
            arches.append(arch)
    return arches


def coverage_of(value: Any) -> frozenset[str]:
    """What an `--install` / `platforms:` list (text or a YAML list) registers: ALL for
    `all` (or no list)."""
    items = split_list(value)
    if not items or any(item.lower() == ALL for item in items):
        return frozenset({ALL})
    return frozenset(arches_of(items))


# ---------------------------------------------------------------------------------------
# Runners


def _label_tokens(label: str) -> list[str]:
    text = label.strip().lower().replace("x86_64", "amd64").replace("x86-64", "amd64")
    return [token for token in re.split(r"[-_./\s]+", text) if token]


def _label_arch(label: str) -> str | None:
    """The architecture a runner label or tag names, if any. GitHub's hosted images end
    in `-arm` for arm64 (`ubuntu-24.04-arm`), and its self-hosted runners carry `X64`,
    `ARM64` or `ARM` (32-bit); GitLab's hosted runners end in `-amd64` or `-arm64`."""
    text = label.strip().lower()
    if not text or "$" in text or UNRESOLVED in text:
        return None
    if text == "arm":
        return "arm"
    votes = set()
    for token in _label_tokens(text):
        if token in ("arm", "arm64", "aarch64", "armv8"):
            votes.add("arm64")
        elif token in ("amd64", "x64"):
            votes.add("amd64")
        elif token in ("armv7", "armv7l", "armv6", "armv6l", "armhf", "armel", "arm32"):
            votes.add("arm")
        elif token in ("riscv64", "s390x", "ppc64le", "ppc64el", "loong64", "mips64le"):
            votes.add(_ARCH_ALIASES[token])
    return votes.pop() if len(votes) == 1 else None


def runner_arch(labels: Iterable[str], default: str | None = None) -> str | None:
    """The architecture of a runner from its labels (GitHub `runs-on`) or tags (GitLab),
    or None when they do not say (or contradict each other). `default` applies when
    no label names one (GitHub's hosted `ubuntu-*` and `windows-*` images are x86-64
    unless they end in `-arm`; GitLab.com runs untagged jobs on x86-64)."""
    labels = [str(label) for label in labels]
    votes = {arch for arch in map(_label_arch, labels) if arch}
    if len(votes) == 1:
        return votes.pop()
    if votes:
        return None
    return default


def github_runner_arch(labels: list[str]) -> str | None:
    """`runner_arch` for GitHub's `runs-on`: a hosted image name without an architecture
    (`ubuntu-latest`, `windows-2022`) is x86-64, unless the labels say `self-hosted`."""
    lowered = [label.strip().lower() for label in labels]
    hosted_x64 = "self-hosted" not in lowered and any(
        re.fullmatch(r"(ubuntu|windows)-[a-z0-9.]+", label) for label in lowered
    )
    return runner_arch(labels, default="amd64" if hosted_x64 else None)


# ---------------------------------------------------------------------------------------
# Events


@dataclass
class Build:
    """A container build (or run) for `platforms`, as written (unknown ones included)."""

    platforms: list[str]
    where: Any = None  # what the check points the finding at (a step, a job)
    # What emulation the build runs under whatever is registered (`binfmt run`).
    emulated: frozenset[str] = frozenset()
    tool: str = "docker"  # docker, podman, buildah, nerdctl, buildx, buildctl, kaniko
    command: str = ""  # the command as written, to find its line

    @property
    def arches(self) -> list[str]:
        return arches_of(self.platforms)

    def platforms_of(self, arches: Iterable[str]) -> list[str]:
        """The build's own spellings of `arches` (`linux/arm/v7` for arm)."""
        wanted = set(arches)
        spelled = [p for p in self.platforms if arch_of(p) in wanted]
        return list(dict.fromkeys(spelled)) or sorted(wanted)


@dataclass
class Registration:
    """A step that registers QEMU emulators for `covers` (architectures, or ALL).
    `why_not` says why one that looks like a registration covers nothing (no flag F):
    the finding repeats it, since the user believes the build is covered."""

    covers: frozenset[str]
    where: Any = None
    why_not: str = ""
    command: str = ""


@dataclass
class Finding:
    """A build that needs emulation nothing before it registered."""

    build: Build
    uncovered: list[str]  # the architectures that need emulation and have none
    # Why registrations before the build did not count (Registration.why_not).
    notes: list[str] = field(default_factory=list)


def _needs(runner: str | None, arches: list[str], covered: set[str]) -> list[str]:
    """The architectures of a build that need emulation no registration covers."""
    if ALL in covered:
        return []
    if runner is not None:
        native = NATIVE.get(runner, frozenset({runner}))
        return [arch for arch in arches if arch not in native and arch not in covered]
    # Unknown runner: no alarm if some runner could build the rest natively.
    rest = [arch for arch in arches if arch not in covered]
    for candidate in set(NATIVE) | set(rest):
        if all(arch in NATIVE.get(candidate, frozenset({candidate})) for arch in rest):
            return []
    return rest


def first_finding(runner: str | None, events: Iterable[Build | Registration]) -> Finding | None:
    """The first build in `events` (in job order) that needs emulation for an
    architecture no earlier registration covers."""
    covered: set[str] = set()
    notes: list[str] = []
    for event in events:
        if isinstance(event, Registration):
            covered |= event.covers
            if event.why_not and event.why_not not in notes:
                notes.append(event.why_not)
            continue
        uncovered = _needs(runner, event.arches, covered | event.emulated)
        if uncovered:
            return Finding(build=event, uncovered=uncovered, notes=notes)
    return None


def install_list(arches: Iterable[str]) -> str:
    """`--install`'s argument for `arches` (`arm64,riscv64`)."""
    return ",".join(sorted(set(arches)))


# What a runner of each architecture is called in a finding.
_ARCH_NAMES = {"amd64": "x86-64", "386": "32-bit x86", "arm": "32-bit arm"}


def arch_name(arch: str) -> str:
    """An architecture as a finding names a runner's: `x86-64`, `arm64`, `32-bit arm`."""
    return _ARCH_NAMES.get(arch, arch)


def details(job: str, finding: Finding, runner: str, fix: str, line: int | None = None,
            context: str = "") -> list[str]:  # fmt: skip
    """A finding's text, one sentence a line: the job and the platforms its runner
    cannot run (`runner` says which runner and how it is known), why registrations
    before the build did not count, and `fix`, the line to add. Checkov prints these
    lines under the failed job (see run_checkov.py)."""
    platforms = ", ".join(finding.build.platforms_of(finding.uncovered))
    at = f" (line {line})" if line else ""
    return [f"job {job}{context} builds {platforms}{at}, which {runner}", *finding.notes, f"fix: {fix}"]


# ---------------------------------------------------------------------------------------
# Shell scripts

_VARIABLE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
_OPERATORS = set(";&|()<>")
# Prefixes that run the rest of the words as a command.
_WRAPPERS = {"sudo", "env", "time", "exec", "command", "nice", "nohup", "doas"}
# Options of docker (and nerdctl, podman) before the subcommand that take a value.
_GLOBAL_OPTIONS_WITH_VALUE = {
    "-c", "--context", "-H", "--host", "--config", "-l", "--log-level",
    "--tlscacert", "--tlscert", "--tlskey", "--namespace", "-n", "--connection",
    "--url", "--root", "--runroot", "--storage-driver", "--cgroup-manager", "--builder",
}  # fmt: skip
_CONTAINER_TOOLS = {"docker", "podman", "nerdctl", "buildah"}


def expand(text: str, env: dict[str, str]) -> str:
    """`$NAME` and `${NAME}` replaced from `env`; unknown ones are left as they are."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return env.get(name, match.group(0))

    return _VARIABLE.sub(value, text)


def _commands(script: str) -> Iterator[list[str]]:
    """The simple commands of a shell script, as lists of words (quotes removed), in
    order: lines joined at backslash continuations, comments dropped, split at `;`,
    `&&`, `||`, `|`, `&`, parentheses and redirections (a redirection's target then
    reads as a command of its own, which names no tool). A line the shell lexer cannot
    read (an open quote) is split at blanks."""
    joined = re.sub(r"\\\r?\n", " ", script)
    for line in joined.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars="".join(_OPERATORS))
        lexer.whitespace_split = True
        lexer.commenters = "#"
        try:
            words = list(lexer)
        except ValueError:
            words = line.split()
        command: list[str] = []
        for word in words:
            if word and set(word) <= _OPERATORS:
                if command:
                    yield command
                command = []
            else:
                command.append(word)
        if command:
            yield command


def _program(words: list[str]) -> list[str]:
    """`words` without leading assignments (`A=b cmd`) and wrappers (`sudo -E cmd`)."""
    index = 0
    while index < len(words):
        word = words[index]
        if _ASSIGNMENT.match(word):
            index += 1
        elif os.path.basename(word) in _WRAPPERS:
            index += 1
            while index < len(words) and words[index].startswith("-"):
                # sudo -u USER, env -u NAME: the option's value follows it.
                takes_value = words[index] in ("-u", "-g", "-C", "-D", "-h", "-p")
                index += 2 if takes_value else 1
        else:
            break
    return words[index:]


def _option_values(words: list[str], name: str) -> list[str]:
    """Every value of option `name` in `words`: `--name X` and `--name=X`."""
    values = []
    for index, word in enumerate(words):
        if word == name and index + 1 < len(words):
            values.append(words[index + 1])
        elif word.startswith(name + "="):
            values.append(word[len(name) + 1 :])
    return values


def _subcommand(words: list[str]) -> tuple[tuple[str, ...], list[str]]:
    """A container tool's subcommand (`("buildx", "build")`) and the words after it, its
    global options skipped."""
    index = 1
    path: list[str] = []
    while index < len(words):
        word = words[index]
        if word in _GLOBAL_OPTIONS_WITH_VALUE:
            index += 2
        elif word.startswith("-"):
            index += 1
        else:
            path.append(word)
            index += 1
            if word not in _COMMAND_GROUPS:
                break
    return tuple(path), words[index:]


_COMMAND_GROUPS = {"buildx", "image", "builder", "container"}
# Subcommands that build an image, or run a container, for `--platform`.
_BUILDS = {
    ("build",), ("image", "build"), ("builder", "build"), ("buildx", "build"),
    ("buildx", "b"), ("bud",), ("from",),
    ("run",), ("container", "run"), ("create",), ("container", "create"),
}  # fmt: skip
_BAKES = {("buildx", "bake"), ("bake",)}
# buildx without docker: the release binary (`./buildx`) or the plugin run directly.
_BUILDX_BINARIES = {"buildx", "docker-buildx"}
# BuildKit's own client; `buildctl-daemonless.sh` starts buildkitd for it.
_BUILDCTL = {"buildctl", "buildctl-daemonless.sh"}
# kaniko's binary is /kaniko/executor in its image.
_KANIKO = {"executor"}
_KANIKO_PLATFORM = ("--custom-platform", "--customPlatform")


def _buildx_platforms(rest: list[str], path: tuple[str, ...]) -> list[str]:
    """The platforms of a buildx `build` (`--platform X`) or `bake` (`--set T.platform=X`)."""
    platforms: list[str] = []
    if path in _BAKES:
        for value in _option_values(rest, "--set"):
            target, _, assignment = value.partition(".")
            key, _, platform_list = assignment.partition("=")
            if target and key == "platform":
                platforms += split_list(platform_list)
    else:
        platforms = [p for value in _option_values(rest, "--platform") for p in split_list(value)]
    return platforms


def _build(words: list[str]) -> Build | None:
    """The build (or container run) a command makes, when it names its platforms:
    `docker buildx build --platform X`, `docker build --platform=X`, `docker buildx bake
    --set T.platform=X`, `docker run --platform X`, `podman build --arch X`, `buildah bud
    --platform X`, a standalone `buildx build` or `bake`, `buildctl build --opt
    platform=X`, kaniko's `executor --custom-platform X`. None otherwise: no `--platform`
    is a build for the runner's own platform."""
    tool = os.path.basename(words[0])
    command = " ".join(words)
    platforms: list[str] = []
    if tool in _CONTAINER_TOOLS:
        path, rest = _subcommand(words)
        if path in _BUILDS or path in _BAKES:
            platforms = _buildx_platforms(rest, path)
        if path in _BUILDS and tool in ("podman", "buildah"):
            platforms += ["linux/" + arch for arch in _option_values(rest, "--arch")]
    elif tool in _BUILDX_BINARIES:
        path, rest = _subcommand(["docker", "buildx", *words[1:]])
        if path in _BUILDS or path in _BAKES:
            platforms, tool = _buildx_platforms(rest, path), "buildx"
    elif tool in _BUILDCTL:
        path, rest = _subcommand(words)
        if path == ("build",):
            for value in _option_values(rest, "--opt"):
                key, _, platform_list = value.partition("=")
                if key == "platform":
                    platforms += split_list(platform_list)
            tool = "buildctl"
    elif tool in _KANIKO:
        platforms = [p for name in _KANIKO_PLATFORM for value in _option_values(words, name)
                     for p in split_list(value)]  # fmt: skip
        tool = "kaniko"
    return Build(platforms, tool=tool, command=command) if platforms else None


# `docker run` options that take a value, so that the value is not read as the image.
_RUN_OPTIONS_WITH_VALUE = {
    "--name", "-v", "--volume", "-e", "--env", "--env-file", "--platform", "--entrypoint",
    "-w", "--workdir", "--network", "--net", "--pid", "-u", "--user", "--mount",
    "--cap-add", "--cap-drop", "--security-opt", "--device", "-l", "--label", "--pull",
    "--hostname", "-h", "--ipc", "--uts", "--userns", "--cgroupns", "--tmpfs", "-p", "--publish",
}  # fmt: skip


def _run_image(rest: list[str]) -> tuple[str, list[str]] | None:
    """The image of `docker run`'s arguments (options skipped) and the arguments after it."""
    index = 0
    while index < len(rest):
        word = rest[index]
        if word in _RUN_OPTIONS_WITH_VALUE:
            index += 2
        elif word.startswith("-"):
            index += 1
        else:
            return word, rest[index + 1 :]
    return None


def _image_reference(word: str) -> tuple[str, str]:
    """An image reference's repository path and tag, without registry host or digest:
    `docker.io/multiarch/qemu-user-static:register` -> (`multiarch/qemu-user-static`,
    `register`); `REGISTRY/binfmt:0.1.0` -> (`registry/binfmt`, `0.1.0`)."""
    name = word.split("@", 1)[0].lower()
    path, _, tag = name.rpartition(":") if ":" in name.rsplit("/", 1)[-1] else (name, "", "")
    parts = path.split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        parts = parts[1:]  # a registry host
    if parts[:1] == ["library"]:
        parts = parts[1:]
    return "/".join(parts), tag


def _binfmt_coverage(args: list[str]) -> frozenset[str] | None:
    """What binfmt (or tonistiigi/binfmt) registers with these arguments: `--install
    LIST`, or `apply` (the list is in its config file: taken as everything)."""
    if args and args[0] == "apply":
        return frozenset({ALL})
    installs = _option_values(args, "--install")
    if not installs:
        return None
    return frozenset().union(*(coverage_of(value) for value in installs))


# What the images that register a fixed set of emulators register, each with flag F
# (read in their sources): docker/binfmt's and linuxkit/binfmt's etc/binfmt.d, and
# hypriot/qemu-register's register.sh. They register when run without arguments
# (their CMD); arguments replace the CMD.
_FIXED_SETS: dict[str, frozenset[str]] = {
    "docker/binfmt": frozenset({"arm64", "arm", "ppc64le", "s390x", "riscv64"}),
    "linuxkit/binfmt": frozenset({"arm64", "arm", "ppc64le", "s390x", "riscv64", "loong64"}),
    "hypriot/qemu-register": frozenset({"arm64", "arm", "ppc64le", "riscv64"}),
}
_MULTIARCH = "multiarch/qemu-user-static"
_QUS = "aptman/qus"


def _multiarch_registration(tag: str, args: list[str], command: str) -> Registration | None:
    """multiarch/qemu-user-static registers every emulator (qemu-binfmt-conf.sh): with
    flag F only with `-p yes` / `--persistent yes`, which its `register` tag cannot take.
    Without F an entry names /usr/bin/qemu-*-static, which the build's containers lack.
    Its tags named for architectures (`x86_64-aarch64`, `aarch64`) only hold emulators
    (for COPY): running them registers nothing, nor does running a command in it; the
    others are versions (`7.2.0-1`), `latest` and `register`."""
    binaries_only = tag[:1].isalpha() and tag not in ("latest", "register")
    if binaries_only or any(not word.startswith("-") and word not in ("yes", "no") for word in args):
        return None
    persistent = _option_values(args, "-p") + _option_values(args, "--persistent")
    if "yes" in persistent and tag != "register":
        return Registration(frozenset({ALL}), command=command)
    how = "its `register` tag cannot take `-p yes`" if tag == "register" else "add `-p yes`"
    why_not = (
        f"`{command}` registers its emulators without flag F, so the build's containers "
        f"cannot run them ({how})"
    )
    return Registration(frozenset(), why_not=why_not, command=command)


def _qus_registration(args: list[str], command: str) -> Registration:
    """aptman/qus (dbhi/qus): `-s -- -p [TARGET...]` registers with flag F (`-p`) the
    QEMU targets named, or all of them."""
    after = args[args.index("--") + 1 :] if "--" in args else args
    if "-p" not in after:
        why_not = f"`{command}` registers its emulators without flag F (add `-p` after `--`)"
        return Registration(frozenset(), why_not=why_not, command=command)
    return Registration(coverage_of(" ".join(w for w in after if not w.startswith("-"))), command=command)


def _container_registration(words: list[str]) -> Registration | None:
    """`docker run ... IMAGE ARGS` of an image that registers QEMU: one named binfmt
    (this project's, tonistiigi/binfmt) run with `--install` or `apply`; docker/binfmt,
    linuxkit/binfmt or hypriot/qemu-register run without arguments; any form of
    multiarch/qemu-user-static or aptman/qus."""
    if os.path.basename(words[0]) not in ("docker", "podman", "nerdctl"):
        return None
    path, rest = _subcommand(words)
    found = _run_image(rest) if path in (("run",), ("container", "run")) else None
    if found is None:
        return None
    image, args = found
    repository, tag = _image_reference(image)
    command = " ".join(words)
    if repository in _FIXED_SETS:
        own_command = not args or os.path.basename(args[0]) in ("binfmt", "register.sh")
        return Registration(_FIXED_SETS[repository], command=command) if own_command else None
    if repository == _MULTIARCH:
        return _multiarch_registration(tag, args, command)
    if repository == _QUS:
        return _qus_registration(args, command)
    if repository.rsplit("/", 1)[-1] == "binfmt":
        coverage = _binfmt_coverage(args)
        return Registration(coverage, command=command) if coverage else None
    return None


# Debian's packages of static emulators with their binfmt config (both register every
# emulator; qemu-user-binfmt's are static from Debian 13 on), and Fedora's.
_QEMU_PACKAGES = re.compile(r"qemu-user-static(-[a-z0-9_]+)?|qemu-user-binfmt")
_PACKAGE_MANAGERS = {"apt-get", "apt", "aptitude", "dnf", "yum", "microdnf", "zypper"}


def _installs_qemu(words: list[str]) -> bool:
    """`apt-get install ... qemu-user-static` and its kin (dnf, yum, zypper)."""
    if os.path.basename(words[0]) not in _PACKAGE_MANAGERS:
        return False
    operands = [word for word in words[1:] if not word.startswith("-")]
    return bool(operands) and operands[0] == "install" and any(
        _QEMU_PACKAGES.fullmatch(word.split("=", 1)[0]) for word in operands[1:]
    )


def _enables_binfmt(words: list[str]) -> frozenset[str] | None:
    """What a command that applies installed binfmt config registers: `update-binfmts
    --enable [NAME]` (or `--import`), `systemctl restart systemd-binfmt`, systemd-binfmt
    itself, `service binfmt-support restart`."""
    tool = os.path.basename(words[0])
    if tool == "update-binfmts":
        for option in ("--enable", "--import"):
            if option in words:
                name = words[words.index(option) + 1 :][:1]
                named = name and not name[0].startswith("-")
                return coverage_of(name[0]) if named else frozenset({ALL})
        return None
    units = [word.removesuffix(".service") for word in words[1:]]
    if tool == "systemctl" and units[:1] in (["restart"], ["start"]) and "systemd-binfmt" in units:
        return frozenset({ALL})
    if tool == "systemd-binfmt":
        return frozenset({ALL})
    if tool in ("service", "binfmt-support") and "binfmt-support" in [tool, *units[:1]]:
        return frozenset({ALL}) if set(units) & {"start", "restart"} else None
    return None


def _is_binfmt_binary(word: str) -> bool:
    """binfmt itself: `binfmt`, `./target/release/binfmt`, `binfmt-x86_64-linux-musl`."""
    name = os.path.basename(word)
    return name == "binfmt" or name.startswith("binfmt-")


def _binfmt_run(args: list[str]) -> tuple[frozenset[str], list[str]]:
    """`binfmt run [--platform LIST] [--root] [--] CMD...`: what it emulates, and CMD."""
    platforms = None
    index = 0
    while index < len(args):
        word = args[index]
        if word == "--":
            index += 1
            break
        if word == "--platform" and index + 1 < len(args):
            platforms = args[index + 1]
            index += 2
        elif word.startswith("--platform="):
            platforms = word.partition("=")[2]
            index += 1
        elif word.startswith("-"):
            index += 1
        else:
            break
    return coverage_of(platforms), _program(args[index:])


def _binfmt_events(words: list[str]) -> list[Build | Registration]:
    """binfmt's own commands: `--install LIST`, `apply`, `run --platform LIST -- CMD`."""
    args, command = words[1:], " ".join(words)
    if args[:1] == ["run"]:
        emulated, inner = _binfmt_run(args[1:])
        build = _build(inner) if inner else None
        if build:
            build.emulated = emulated
        return [build] if build else []
    coverage = _binfmt_coverage(args)
    return [Registration(coverage, command=command)] if coverage else []


def _command_events(words: list[str], installs_register: bool) -> list[Build | Registration]:
    """What one simple command builds or registers."""
    if _is_binfmt_binary(words[0]):
        return _binfmt_events(words)
    registration = _container_registration(words)
    if registration:
        return [registration]
    enabled = _enables_binfmt(words)
    if enabled:
        return [Registration(enabled, command=" ".join(words))]
    if _installs_qemu(words):
        command = " ".join(words)
        if installs_register:
            return [Registration(frozenset({ALL}), command=command)]
        why_not = (
            f"`{command}` registers nothing in a container: enable the emulators too "
            "(`update-binfmts --enable`, in a privileged job)"
        )
        return [Registration(frozenset(), why_not=why_not, command=command)]
    build = _build(words)
    return [build] if build else []


def shell_events(script: str, env: dict[str, str], where: Any = None,
                 installs_register: bool = False) -> list[Build | Registration]:  # fmt: skip
    """The builds and registrations of a shell script, in order. `env` holds the
    variables known before it (CI variables); assignments in the script (`P=linux/arm64`,
    `export P=...`) are added to it as they come, so a later command sees them.
    A build in `binfmt run --platform LIST -- CMD` runs under LIST's emulation, and
    only that command does. `installs_register`: the runner applies a package's binfmt
    config when it is installed (a VM with systemd, not a container)."""
    events: list[Build | Registration] = []
    for raw in _commands(script):
        words = [expand(word, env) for word in raw]
        if words and words[0] in ("export", "readonly", "declare", "local"):
            words = [word for word in words[1:] if not word.startswith("-")]
        if words and all(_ASSIGNMENT.match(word) for word in words):
            for word in words:
                name, _, value = word.partition("=")
                env[name] = value
            continue
        words = _program(words)
        if not words:
            continue
        for event in _command_events(words, installs_register):
            event.where = where
            events.append(event)
    return events


# ---------------------------------------------------------------------------------------
# The CI file as a whole

START_LINE = "__startline__"
END_LINE = "__endline__"
# The key of a result configuration that holds the finding's text (details()):
# run_checkov.py copies it into the record's details, which Checkov prints.
DETAILS = "details"


def plain(value: Any) -> Any:
    """A YAML value without Checkov's line-number keys."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items() if k not in (START_LINE, END_LINE)}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def lines_of(start: dict[str, Any], end: dict[str, Any]) -> dict[str, int]:
    """A finding's lines: from `start`'s first line to `end`'s last, as a result
    configuration for Checkov, which prints its file lines up to two lines past
    `__endline__` (its loader sets that to the line where the next sibling begins).
    Those extra lines would show the next job; this ends the print at `end`'s last line
    (when nothing separates it from its next sibling)."""
    first = start[START_LINE]
    return {START_LINE: first, END_LINE: max(first, end[END_LINE] - 2)}


def as_text(value: Any) -> str:
    """A scalar as the text a CI system substitutes for it (`true`, `3`, `linux/arm64`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


# GitLab's tag for a value taken from elsewhere in the file: `!reference [.job, script]`.
REFERENCE_TAG = "!reference"
# GitLab resolves references in references up to this depth.
MAX_REFERENCE_DEPTH = 10


@dataclass(frozen=True)
class Reference:
    """A `!reference [.job, key, ...]`: the path of the value it stands for."""

    path: tuple[str, ...]


class _CILoader(yaml.SafeLoader):
    """PyYAML's safe loader, plus GitLab's `!reference` tag (refused by the safe
    loader, so a file using it would not load at all)."""


def _construct_reference(loader: yaml.SafeLoader, node: yaml.Node) -> Reference:
    return Reference(tuple(str(part) for part in loader.construct_sequence(node)))  # type: ignore[arg-type]


_CILoader.add_constructor(REFERENCE_TAG, _construct_reference)


def resolve_references(value: Any, root: dict[str, Any], depth: int = 0) -> Any:
    """`value` with every Reference replaced by what its path names in `root` (None
    when nothing is there). GitLab resolves them when it loads the file, before
    `extends`; a script line that is a reference becomes a list of lines, which
    GitLab (and the checks) flatten."""
    if isinstance(value, Reference):
        if depth >= MAX_REFERENCE_DEPTH:
            return None
        target: Any = root
        for key in value.path:
            target = target.get(key) if isinstance(target, dict) else None
        return resolve_references(target, root, depth + 1)
    if isinstance(value, dict):
        return {key: resolve_references(item, root, depth) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve_references(item, root, depth) for item in value]
    return value


def is_spec_header(candidate: Any) -> bool:
    """Whether a YAML document is a GitLab CI/CD component's `spec:` header, whose
    jobs follow in the next document."""
    if not isinstance(candidate, dict):
        return False
    return {key for key in candidate if key not in (START_LINE, END_LINE)} == {"spec"}


def pipeline_of(documents: Iterable[Any]) -> Any:
    """The document of a CI file that holds its jobs: the first mapping, or the one
    after a `spec:` header. None when there is no mapping."""
    mappings = [candidate for candidate in documents if isinstance(candidate, dict)]
    if len(mappings) > 1 and is_spec_header(mappings[0]):
        return mappings[1]
    return mappings[0] if mappings else None


def document(path: str) -> dict[str, Any]:
    """The CI file a job comes from, as plain data: Checkov hands a job check one job,
    but its workflow-level `env:` (GitHub) or `default:`, `variables:` and templates
    (GitLab) decide what the job does. Its pipeline_of() document with GitLab's
    `!reference`s resolved; {} when the file cannot be read (then Checkov did not scan
    it either: run_checkov.py names it)."""
    try:
        status = os.stat(path)
    except OSError:
        return {}
    return _document(path, status.st_mtime_ns, status.st_size)


@functools.lru_cache(maxsize=8)
def _document(path: str, mtime_ns: int, size: int) -> dict[str, Any]:
    del mtime_ns, size  # part of the cache key only: a changed file is read again
    try:
        with open(path, encoding="utf-8") as file:
            pipeline = pipeline_of(yaml.load_all(file, Loader=_CILoader))  # nosec: a safe loader
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    return resolve_references(pipeline, pipeline) if isinstance(pipeline, dict) else {}


MAX_COMBINATIONS = 256


def cartesian(axes: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the axes' values (at most MAX_COMBINATIONS)."""
    combinations: list[dict[str, Any]] = [{}]
    for name, values in axes.items():
        combinations = [
            {**combination, name: value} for combination in combinations for value in values
        ][:MAX_COMBINATIONS]
    return combinations
