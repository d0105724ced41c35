"""CKV_GITLABCI_QEMU_001: a GitLab CI job that builds a container image for a platform
its runner cannot run natively must register QEMU emulation before, in the same job
(its `before_script`, or earlier in its `script`).

One result per job (hidden `.templates` and GitLab's keywords are not jobs). The job
is taken as GitLab runs it: `!reference` tags resolved, `extends:` merged in,
`default:` (or the deprecated top-level `before_script`) applied unless `inherit:` says
otherwise, and `variables:` (global, the job's, each `parallel: matrix:` combination)
substituted in `tags:` and the scripts. The runner comes from `tags:`
(`saas-linux-medium-arm64`, `arm64`, `amd64`, ...); a job without tags runs on
GitLab.com's default runner, x86-64 (a self-managed instance may differ: tag such
jobs); tags that name no architecture leave it unknown. `image:` and `services:`
(docker:dind) do not change it: the job's containers run on the runner's CPU. Builds
and registrations are read from `before_script` then `script`, one shell session, as
in GitHub Actions' `run:` (see qemu_before_build). The job runs in a container, so
installing qemu-user-static registers nothing until it is enabled (`update-binfmts
--enable`, in a privileged job).

A finding points at the job and its lines (which show its tags and scripts), and
carries its text in the result's `details`: the platforms, the runner and why it was
assumed, and the line to add. Checkov prints those lines for Terraform checks only;
run_checkov.py makes it print them here too, and scans the files Checkov's own loader
drops (`!reference`, a CI/CD component's `spec:` header before its jobs). Plain
`checkov` shows the check's name, which carries the fix.
"""

from __future__ import annotations

from typing import Any

from checkov.common.models.enums import CheckResult
from checkov.gitlab_ci.checks.base_gitlab_ci_check import BaseGitlabCICheck
from checkov.yaml_doc.enums import BlockType

try:  # imported as a package (policies.checkov)
    from . import qemu_before_build as rules
except ImportError:  # loaded by Checkov from its path, with this directory on sys.path
    import qemu_before_build as rules

ID = "CKV_GITLABCI_QEMU_001"
# The line a finding says to add, for the platforms it names (`all` in the name).
FIX_LINE = "- {tool} run --rm --privileged tonistiigi/binfmt --install {arches}"
NAME = (
    "Ensure QEMU is registered before building for a platform the runner cannot run "
    f"natively (fix: add `{FIX_LINE.format(tool='docker', arches='all')}` to "
    "before_script, in the same job)"
)
# GitLab.com's hosted runners, by architecture: where a kaniko job can move to.
HOSTED_RUNNER_TAGS = {"amd64": "saas-linux-medium-amd64", "arm64": "saas-linux-medium-arm64"}
KANIKO = "(kaniko cannot register QEMU)"

# Top-level keys that are not jobs.
KEYWORDS = {
    "default", "include", "stages", "variables", "workflow", "image", "services",
    "cache", "before_script", "after_script", "types", "spec",
}  # fmt: skip
# What `default:` gives a job that does not set it, among what this check reads.
DEFAULT_KEYS = ("before_script", "tags")


class QEMUSetupBeforeBuildGitLabCI(BaseGitlabCICheck):
    def __init__(self) -> None:
        super().__init__(
            name=NAME,
            id=ID,
            # `@` is the whole file: an ARRAY check over it gets one call per top-level
            # key, with the key as the entity name.
            block_type=BlockType.ARRAY,
            supported_entities=("@",),
        )
        self._file = ""
        self._key = ""

    def run(self, scanned_file: str, entity_configuration: Any, entity_name: str, entity_type: str,
            skip_info: Any) -> Any:  # fmt: skip
        # A job is read with the file's `default:`, `variables:` and templates: remember
        # the file and the job's name.
        self._file, self._key = scanned_file, entity_name
        return super().run(scanned_file, entity_configuration, entity_name, entity_type, skip_info)

    def scan_conf(self, conf: dict[str, Any]) -> tuple[CheckResult, dict[str, Any]]:
        name = self._key
        if not isinstance(conf, dict) or name in KEYWORDS or str(name).startswith("."):
            return CheckResult.UNKNOWN, conf
        pipeline = rules.document(self._file)
        job = _effective_job(pipeline, name, rules.plain(conf))
        for combination in _parallel_matrix(job.get("parallel")):
            env = {**_variables(pipeline, job), **combination}
            judged = _judge(job, env)
            if judged is not None:
                finding, tags, runner = judged
                text = _details(name, finding, tags, runner, combination, self._file, conf)
                return CheckResult.FAILED, {**rules.lines_of(conf, conf), rules.DETAILS: text}
        return CheckResult.PASSED, rules.lines_of(conf, conf)


def _judge(job: dict[str, Any], env: dict[str, str]) -> tuple[rules.Finding, list[str], str | None] | None:
    """The job's first build that needs emulation nothing registered, with its tags and
    its runner's architecture. Each event's `where` is the script line it comes from."""
    tags = [rules.expand(rules.as_text(tag), env) for tag in _list(job.get("tags"))]
    # GitLab.com runs untagged jobs on its small x86-64 Linux runner.
    runner = rules.runner_arch(tags, default=None if tags else "amd64")
    shell_env = dict(env)
    events: list[rules.Build | rules.Registration] = []
    for line in _script(job.get("before_script")) + _script(job.get("script")):
        events += rules.shell_events(line, shell_env, line)
    finding = rules.first_finding(runner, events)
    return (finding, tags, runner) if finding else None


def _details(job: str, finding: rules.Finding, tags: list[str], runner: str | None,
             matrix: dict[str, str], path: str, conf: dict[str, Any]) -> list[str]:  # fmt: skip
    """The finding's text (rules.details): how the runner is known, and the line to add."""
    if not tags:
        about = (
            "its runner cannot run: the job has no tags, so it runs on GitLab.com's default "
            f"runner, assumed {rules.arch_name('amd64')} (on a self-managed instance, tag the "
            "job with its runner's architecture)"
        )
    elif runner is None:
        about = f"no one runner runs natively, and its tags ({', '.join(tags)}) name no architecture"
    else:
        about = f"its runner cannot run: tags {', '.join(tags)} say {rules.arch_name(runner)}"
    context = f" (parallel matrix {', '.join(f'{k}={v}' for k, v in matrix.items())})" if matrix else ""
    line = _line_of(path, finding.build, conf)
    return rules.details(job, finding, about, _fix(finding, line), line, context)


def _fix(finding: rules.Finding, line: int | None) -> str:
    """The line to add. kaniko builds inside the job's own container, which has no
    container engine to register QEMU with: there, a runner of the build's
    architecture."""
    build = finding.build
    if build.tool == "kaniko":
        hosted = [HOSTED_RUNNER_TAGS[arch] for arch in finding.uncovered if arch in HOSTED_RUNNER_TAGS]
        if len(hosted) == 1 == len(finding.uncovered):
            return f"run the job on a runner of that architecture: set `tags: [{hosted[0]}]` {KANIKO}"
        return f"register QEMU on the runner's host, or run the job on a runner of that architecture {KANIKO}"
    tool = {"podman": "podman", "buildah": "podman", "nerdctl": "nerdctl"}.get(build.tool, "docker")
    add = FIX_LINE.format(tool=tool, arches=rules.install_list(finding.uncovered))
    where = f"the job's before_script (before line {line})" if line else "the job's before_script"
    return f"add `{add}` to {where}"


def _line_of(path: str, build: rules.Build, conf: dict[str, Any]) -> int | None:
    """The file line of the build's command, if it is in the job's own lines (not in a
    template it extends): the line of its script entry (`build.where`) that names the
    command's program, found in the file as written there (a folded entry shows its
    first words on that line)."""
    entry = str(build.where or "").strip()
    program = build.command.split(" ", 1)[0]
    wanted = next((line.strip() for line in entry.splitlines() if program in line), "")
    if not wanted:
        return None
    try:
        with open(path, encoding="utf-8") as file:
            lines = file.read().splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    start, end = conf.get(rules.START_LINE, 1), min(conf.get(rules.END_LINE, len(lines)), len(lines))
    for number in range(start, end + 1):
        written = lines[number - 1].strip().removeprefix("- ").strip()
        if wanted in written or (program in written and wanted.startswith(written)):
            return number
    return None


def _effective_job(pipeline: dict[str, Any], name: str, fallback: dict[str, Any]) -> dict[str, Any]:
    """The job as GitLab runs it: its `extends:` chain merged (mappings deeply, other
    values replaced, later over earlier), then `default:` for what it still lacks."""
    job = _extended(pipeline, name, set())
    if not job:
        job = fallback
    inherit = job.get("inherit") if isinstance(job.get("inherit"), dict) else {}
    wanted = inherit.get("default", True)
    defaults = pipeline.get("default") if isinstance(pipeline.get("default"), dict) else {}
    # The deprecated top-level before_script still works where `default:` has none.
    if "before_script" not in defaults and "before_script" in pipeline:
        defaults = {**defaults, "before_script": pipeline["before_script"]}
    for key in DEFAULT_KEYS:
        inherited = wanted is True or (isinstance(wanted, list) and key in wanted)
        if inherited and key not in job and key in defaults:
            job[key] = defaults[key]
    return job


def _extended(pipeline: dict[str, Any], name: str, seen: set[str]) -> dict[str, Any]:
    own = pipeline.get(name)
    if not isinstance(own, dict) or name in seen:
        return {}
    seen = seen | {name}
    bases = own.get("extends")
    merged: dict[str, Any] = {}
    for base in bases if isinstance(bases, list) else [bases] if bases else []:
        merged = _merge(merged, _extended(pipeline, str(base), seen))
    return _merge(merged, {k: v for k, v in own.items() if k != "extends"})


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _variables(pipeline: dict[str, Any], job: dict[str, Any]) -> dict[str, str]:
    """The job's variables: the global ones it inherits, then its own."""
    inherit = job.get("inherit") if isinstance(job.get("inherit"), dict) else {}
    wanted = inherit.get("variables", True)
    variables = {}
    for name, value in _mapping(pipeline.get("variables")).items():
        if wanted is True or (isinstance(wanted, list) and name in wanted):
            variables[name] = _variable_value(value)
    for name, value in _mapping(job.get("variables")).items():
        variables[name] = _variable_value(value)
    return variables


def _variable_value(value: Any) -> str:
    """A variable's value: `NAME: value`, or `NAME: {value: ..., description: ...}`."""
    if isinstance(value, dict):
        value = value.get("value")
    return rules.as_text(value)


def _parallel_matrix(parallel: Any) -> list[dict[str, str]]:
    """The variable sets of `parallel: matrix:` ([{}] without one): each entry gives
    every combination of its values."""
    matrix = parallel.get("matrix") if isinstance(parallel, dict) else None
    if not isinstance(matrix, list):
        return [{}]
    combinations: list[dict[str, str]] = []
    for entry in matrix:
        if isinstance(entry, dict):
            axes = {str(k): [rules.as_text(x) for x in _list(v)] for k, v in entry.items()}
            combinations += rules.cartesian(axes)
    return combinations[: rules.MAX_COMBINATIONS] or [{}]


def _script(value: Any) -> list[str]:
    """A script's lines: a string, or a list of strings and nested lists."""
    if isinstance(value, list):
        return [line for item in value for line in _script(item)]
    return [value] if isinstance(value, str) else []


def _list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _mapping(value: Any) -> dict[str, Any]:
    return {str(k): v for k, v in value.items()} if isinstance(value, dict) else {}


check = QEMUSetupBeforeBuildGitLabCI()
