"""CKV_GHA_QEMU_001: a GitHub Actions job that builds a container image for a platform
its runner cannot run natively must register QEMU emulation in an earlier step of the
same job.

One result per job. The job's runner comes from `runs-on` (GitHub's hosted `*-arm`
images and self-hosted `ARM64` / `X64` / `ARM` labels; see qemu_before_build for the
rules); its builds from `run:` scripts (`docker buildx build --platform ...`,
`docker build`, `docker run --platform`, `docker buildx bake --set *.platform=...`,
podman, buildah, a standalone `buildx`, buildctl, kaniko), docker/build-push-action's
`platforms:` and docker/bake-action's `set:`; its registrations from
docker/setup-qemu-action, the actions that register QEMU before their own work
(crazy-max/ghaction-docker-buildx, uraimo/run-on-arch-action, dbhi/qus/action), and
the commands and images qemu_before_build reads. A registration after the build, or
in another job (another machine), does not count. Installing qemu-user-static
registers it on the runner's VM, not in a `container:` job (enable it there).

A matrix is expanded the way GitHub does (axes, `exclude`, `include`), and every
combination is judged with its own runner and platforms: a matrix that pairs each
runner with its native platform passes, one that pairs an arm runner with amd64 fails.
`${{ matrix.* }}` and `${{ env.* }}` (workflow, job and step `env:`) are resolved;
any other expression makes what holds it unknown (a runner that cannot be known, a
platform left out).

A finding points at the job (`jobs(build)`) and the lines from its start to the end of
the build step that needs emulation, and carries its text in the result's `details`:
the platforms, the runner and how it is known, and the step to add. Checkov prints
those lines for Terraform checks only; run_checkov.py makes it print them here too.
Plain `checkov` shows the check's name, which carries the fix.
"""

from __future__ import annotations

import re
from typing import Any

from checkov.common.models.enums import CheckResult
from checkov.github_actions.checks.base_github_action_check import BaseGithubActionsCheck
from checkov.yaml_doc.enums import BlockType

try:  # imported as a package (policies.checkov)
    from . import qemu_before_build as rules
except ImportError:  # loaded by Checkov from its path, with this directory on sys.path
    import qemu_before_build as rules

ID = "CKV_GHA_QEMU_001"
# The step a finding says to add: it registers every emulator (its default platforms).
FIX_STEP = "- uses: docker/setup-qemu-action@v3"
NAME = (
    "Ensure QEMU is registered before building for a platform the runner cannot run "
    f"natively (fix: add the step `{FIX_STEP}` before the build, in the same job)"
)
# Actions that register QEMU before their own work (read in their sources), and the
# input that names what they register (all emulators without it).
REGISTERING_ACTIONS: dict[str, str | None] = {
    "docker/setup-qemu-action": "platforms",
    # Every version (v0.1 to v3) runs `multiarch/qemu-user-static --reset -p yes`.
    "crazy-max/ghaction-docker-buildx": None,
    # multiarch/qemu-user-static (v1, v2) or `tonistiigi/binfmt --install all` (v3).
    "uraimo/run-on-arch-action": None,
    # `aptman/qus -s -- -p TARGETS`: QEMU's names (aarch64), all by default.
    "dbhi/qus/action": "targets",
}

_EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
_CONTEXT_PATH = re.compile(r"(matrix|env)((?:\.[A-Za-z0-9_-]+)+)")


class QEMUSetupBeforeBuildx(BaseGithubActionsCheck):
    def __init__(self) -> None:
        super().__init__(
            name=NAME,
            id=ID,
            block_type=BlockType.ARRAY,  # one result per job of `jobs`
            supported_entities=("jobs",),
        )
        self._workflow_file = ""
        self._job = ""

    def run(self, scanned_file: str, entity_configuration: Any, entity_name: str, entity_type: str,
            skip_info: Any) -> Any:  # fmt: skip
        # The job check needs the workflow's `env:` too, and the job's name for its text.
        self._workflow_file, self._job = scanned_file, entity_name
        return super().run(scanned_file, entity_configuration, entity_name, entity_type, skip_info)

    def scan_conf(self, conf: dict[str, Any]) -> tuple[CheckResult, dict[str, Any]]:
        if not isinstance(conf, dict):
            return CheckResult.UNKNOWN, conf
        workflow = rules.document(self._workflow_file)
        workflow_env = _mapping(workflow.get("env"))
        for combination in _matrix_combinations(rules.plain(conf.get("strategy"))):
            judged = _judge(conf, workflow_env, combination)
            if judged is not None:
                finding, labels, runner = judged
                # The job's lines down to the end of the build step that needs emulation.
                lines = rules.lines_of(conf, finding.build.where)
                text = _details(self._job, finding, labels, runner, combination)
                return CheckResult.FAILED, {**lines, rules.DETAILS: text}
        return CheckResult.PASSED, conf


def _judge(job: dict[str, Any], workflow_env: dict[str, Any],
           matrix: dict[str, Any]) -> tuple[rules.Finding, list[str], str | None] | None:  # fmt: skip
    """The first build of `job` that needs emulation nothing registered, for one
    combination of its matrix, with the runner's labels and architecture."""
    job_env = {**workflow_env, **_resolve(_mapping(job.get("env")), matrix, workflow_env)}
    labels = _labels(_resolve(rules.plain(job.get("runs-on")), matrix, job_env))
    runner = rules.github_runner_arch(labels)
    # A job without `container:` runs its steps on the runner's VM, where installing
    # qemu-user-static registers it (its package scripts apply its binfmt config).
    on_vm = not job.get("container")
    events: list[rules.Build | rules.Registration] = []
    for step in job.get("steps") or []:
        if not isinstance(step, dict):
            continue
        env = {**job_env, **_resolve(_mapping(step.get("env")), matrix, job_env)}
        events += _step_events(step, matrix, env, on_vm)
    finding = rules.first_finding(runner, events)
    return (finding, labels, runner) if finding else None


def _details(job: str, finding: rules.Finding, labels: list[str], runner: str | None,
             matrix: dict[str, Any]) -> list[str]:  # fmt: skip
    """The finding's text (rules.details), with the runner as `runs-on` names it."""
    shown = ", ".join(labels) or "(none)"
    if runner is None:
        about = f"no one runner runs natively, and runs-on {shown} does not say its architecture"
    elif rules.runner_arch(labels) is None:  # no label names it: a hosted image
        about = (
            f"its runner cannot run: runs-on {shown} is {rules.arch_name(runner)} "
            "(GitHub's hosted images are x86-64 unless their name ends in -arm)"
        )
    else:
        about = f"its runner cannot run: runs-on {shown} is {rules.arch_name(runner)}"
    scalars = {k: rules.as_text(v) for k, v in matrix.items() if not isinstance(v, (dict, list))}
    context = f" (matrix {', '.join(f'{k}={v}' for k, v in scalars.items())})" if scalars else ""
    where = finding.build.where
    line = where.get(rules.START_LINE) if isinstance(where, dict) else None
    fix = f"add the step `{FIX_STEP}` before line {line}, in the same job"
    return rules.details(job, finding, about, fix, line, context)


def _step_events(step: dict[str, Any], matrix: dict[str, Any], env: dict[str, Any],
                 on_vm: bool) -> list[rules.Build | rules.Registration]:  # fmt: skip
    uses = str(step.get("uses") or "").lower()
    inputs = _resolve(_mapping(step.get("with")), matrix, env)
    action = uses.split("@", 1)[0]
    if action in REGISTERING_ACTIONS:
        given = REGISTERING_ACTIONS[action]
        covers = rules.coverage_of(inputs.get(given) if given else None)
        return [rules.Registration(covers, step, command=uses)]
    if action == "docker/build-push-action":
        platforms = rules.split_list(inputs.get("platforms"))
        return [rules.Build(platforms, step)] if platforms else []
    if action == "docker/bake-action":
        # bake-action has no `platforms` input: platforms come from the bake file or
        # from `set: <target>.platform=...`. A `platforms:` given anyway is read as
        # what the bake file builds.
        platforms = rules.split_list(inputs.get("platforms"))
        for line in str(inputs.get("set") or "").splitlines():
            target, _, assignment = line.strip().partition(".")
            key, _, value = assignment.partition("=")
            if target and key.strip() == "platform":
                platforms += rules.split_list(value)
        return [rules.Build(platforms, step)] if platforms else []
    run = step.get("run")
    if isinstance(run, str):
        script = _resolve(run, matrix, env)
        shell_env = {name: rules.as_text(value) for name, value in env.items()}
        return rules.shell_events(script, shell_env, step, installs_register=on_vm)
    return []


def _matrix_combinations(strategy: Any) -> list[dict[str, Any]]:
    """The combinations of `strategy.matrix` as GitHub forms them: every combination of
    the axes, minus `exclude`, then each `include` entry added to every combination
    whose original values it does not change, or as a combination of its own. [{}]
    without a matrix, or for one given as an expression (nothing known about it)."""
    matrix = strategy.get("matrix") if isinstance(strategy, dict) else None
    if not isinstance(matrix, dict):
        return [{}]
    axes = {
        name: values
        for name, values in matrix.items()
        if name not in ("include", "exclude") and isinstance(values, list)
    }
    combinations = rules.cartesian(axes) if axes else []
    for excluded in matrix.get("exclude") or []:
        if isinstance(excluded, dict):
            combinations = [
                c for c in combinations if any(c.get(k) != v for k, v in excluded.items())
            ]
    extra: list[dict[str, Any]] = []
    for included in matrix.get("include") or []:
        if not isinstance(included, dict):
            continue
        added = False
        for combination in combinations:
            if all(combination.get(k) == v for k, v in included.items() if k in axes):
                combination.update({k: v for k, v in included.items() if k not in axes})
                added = True
        if not added:
            extra.append(dict(included))
    return (combinations + extra)[: rules.MAX_COMBINATIONS] or [{}]


def _resolve(value: Any, matrix: dict[str, Any], env: dict[str, Any]) -> Any:
    """`value` with `${{ matrix.* }}` and `${{ env.* }}` replaced (recursively in lists
    and mappings). A string that is one expression becomes the value itself (a matrix
    value may be a list of runner labels); any other expression becomes
    rules.UNRESOLVED."""
    if isinstance(value, dict):
        return {k: _resolve(v, matrix, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, matrix, env) for v in value]
    if not isinstance(value, str):
        return value
    whole = _EXPRESSION.fullmatch(value.strip())
    if whole:
        return _lookup(whole.group(1), matrix, env)
    return _EXPRESSION.sub(lambda m: rules.as_text(_lookup(m.group(1), matrix, env)), value)


def _lookup(expression: str, matrix: dict[str, Any], env: dict[str, Any]) -> Any:
    match = _CONTEXT_PATH.fullmatch(expression)
    if not match:
        return rules.UNRESOLVED
    value: Any = matrix if match.group(1) == "matrix" else env
    for key in match.group(2).split(".")[1:]:
        if not isinstance(value, dict) or key not in value:
            return rules.UNRESOLVED
        value = value[key]
    return value


def _labels(runs_on: Any) -> list[str]:
    """Runner labels from `runs-on`: a label, a list of labels, or `{group, labels}`."""
    if isinstance(runs_on, dict):
        runs_on = runs_on.get("labels")
    if isinstance(runs_on, list):
        return [rules.as_text(label) for label in runs_on]
    return [rules.as_text(runs_on)] if runs_on else []


def _mapping(value: Any) -> dict[str, Any]:
    """A YAML mapping (`env:`, `with:`) as a plain dict; {} for anything else."""
    value = rules.plain(value)
    return {str(k): v for k, v in value.items()} if isinstance(value, dict) else {}


check = QEMUSetupBeforeBuildx()
