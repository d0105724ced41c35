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
  `binfmt apply` and multiarch/qemu-user-static cover everything;
- a platform that cannot be known (an unresolved variable or expression) is left out.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
from dataclasses import dataclass
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


def coverage_of(value: str | None) -> frozenset[str]:
    """What an `--install` / `platforms:` list registers: ALL for `all` (or no list)."""
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

    @property
    def arches(self) -> list[str]:
        return arches_of(self.platforms)


@dataclass
class Registration:
    """A step that registers QEMU emulators for `covers` (architectures, or ALL)."""

    covers: frozenset[str]
    where: Any = None


@dataclass
class Finding:
    """A build that needs emulation nothing before it registered."""

    build: Build
    uncovered: list[str]  # the architectures that need emulation and have none


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
    for event in events:
        if isinstance(event, Registration):
            covered |= event.covers
            continue
        uncovered = _needs(runner, event.arches, covered | event.emulated)
        if uncovered:
            return Finding(build=event, uncovered=uncovered)
    return None


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


def _build_platforms(words: list[str]) -> list[str] | None:
    """The platforms a container-tool command builds or runs for, or None when it
    is not a build (or run) that names any: `docker buildx build --platform X`,
    `docker build --platform=X`, `docker buildx bake --set T.platform=X`,
    `docker run --platform X`, `podman build --arch X`, `buildah bud --platform X`."""
    tool = os.path.basename(words[0])
    if tool not in _CONTAINER_TOOLS:
        return None
    path, rest = _subcommand(words)
    platforms: list[str] = []
    if path in _BUILDS:
        platforms = [p for value in _option_values(rest, "--platform") for p in split_list(value)]
        if tool in ("podman", "buildah"):
            platforms += ["linux/" + arch for arch in _option_values(rest, "--arch")]
    elif path in _BAKES:
        for value in _option_values(rest, "--set"):
            target, _, assignment = value.partition(".")
            key, _, platform_list = assignment.partition("=")
            if target and key == "platform":
                platforms += split_list(platform_list)
    return platforms or None


def _image_name(word: str) -> str:
    """The last path component of an image reference, without tag or digest:
    `REGISTRY/binfmt:0.1.0` -> `binfmt`, `tonistiigi/binfmt@sha256:...` -> `binfmt`."""
    name = word.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[0].lower()


def _binfmt_coverage(args: list[str]) -> frozenset[str] | None:
    """What binfmt (or tonistiigi/binfmt) registers with these arguments: `--install
    LIST`, or `apply` (the list is in its config file: taken as everything)."""
    if args and args[0] == "apply":
        return frozenset({ALL})
    installs = _option_values(args, "--install")
    if not installs:
        return None
    return frozenset().union(*(coverage_of(value) for value in installs))


def _container_registration(words: list[str]) -> frozenset[str] | None:
    """`docker run ... IMAGE ARGS` of a registering image: one named binfmt (this
    project's, tonistiigi/binfmt) run with `--install` or `apply`, or
    multiarch/qemu-user-static run with `--reset -p yes` (without `-p yes` its entries
    lack flag F and do not work inside containers)."""
    tool = os.path.basename(words[0])
    if tool not in ("docker", "podman", "nerdctl"):
        return None
    path, rest = _subcommand(words)
    if path not in (("run",), ("container", "run")):
        return None
    for index, word in enumerate(rest):
        if word.startswith(("-", "/", ".")) or "=" in word:
            continue
        image, args = _image_name(word), rest[index + 1 :]
        if image == "binfmt":
            coverage = _binfmt_coverage(args)
            if coverage:
                return coverage
        elif image == "qemu-user-static":
            persistent = _option_values(args, "-p") + _option_values(args, "--persistent")
            if "--reset" in args and "yes" in persistent:
                return frozenset({ALL})
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


def shell_events(script: str, env: dict[str, str], where: Any = None) -> list[Build | Registration]:
    """The builds and registrations of a shell script, in order. `env` holds the
    variables known before it (CI variables); assignments in the script (`P=linux/arm64`,
    `export P=...`) are added to it as they come, so a later command sees them.
    A build in `binfmt run --platform LIST -- CMD` runs under LIST's emulation, and
    only that command does."""
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
        if _is_binfmt_binary(words[0]):
            args = words[1:]
            if args[:1] == ["run"]:
                coverage, inner = _binfmt_run(args[1:])
                platforms = _build_platforms(inner) if inner else None
                if platforms:
                    events.append(Build(platforms, where, emulated=coverage))
                continue
            coverage = _binfmt_coverage(args)
            if coverage:
                events.append(Registration(coverage, where))
            continue
        coverage = _container_registration(words)
        if coverage:
            events.append(Registration(coverage, where))
            continue
        platforms = _build_platforms(words)
        if platforms:
            events.append(Build(platforms, where))
    return events


# ---------------------------------------------------------------------------------------
# The CI file as a whole

START_LINE = "__startline__"
END_LINE = "__endline__"


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


def document(path: str) -> dict[str, Any]:
    """The CI file a job comes from, as plain data: Checkov hands a job check one job,
    but its workflow-level `env:` (GitHub) or `default:`, `variables:` and templates
    (GitLab) decide what the job does. Like Checkov, the first YAML document that is
    a mapping; {} when the file cannot be read (Checkov did not scan it then either)."""
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
            for candidate in yaml.safe_load_all(file):
                if isinstance(candidate, dict):
                    return candidate
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        pass
    return {}


MAX_COMBINATIONS = 256


def cartesian(axes: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the axes' values (at most MAX_COMBINATIONS)."""
    combinations: list[dict[str, Any]] = [{}]
    for name, values in axes.items():
        combinations = [
            {**combination, name: value} for combination in combinations for value in values
        ][:MAX_COMBINATIONS]
    return combinations
