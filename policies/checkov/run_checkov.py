"""Runs Checkov (its own CLI, in this process, with the arguments given) so that the
policy sees every CI file it is given, and prints each finding's text.

    python policies/checkov/run_checkov.py -d . --framework github_actions gitlab_ci \
        --external-checks-dir policies/checkov \
        --check CKV_GHA_QEMU_001,CKV_GITLABCI_QEMU_001 --skip-download --quiet

Plain `checkov` loses files without a word (exit 0, nothing passed, nothing failed):
- its GitHub Actions runner drops a workflow its bundled JSON schema rejects, and that
  schema is older than GitHub's syntax: `cancel-in-progress: ${{ ... }}`, `queue: max`,
  newer `permissions` keys (`attestations`, `models`), a matrix `include:` given as an
  expression, a job-level `permissions: read-all` with `strategy.fail-fast`
  (docs/checkov-policy.md says why each one fails);
- its GitLab runner drops a file that uses GitLab's `!reference` tag (its YAML loader
  refuses the tag), and reads only the `spec:` header of a CI/CD component;
- either drops a file that is not YAML at all, silently.
And it prints a check's `details` for Terraform only, so a finding here would show the
check's name without the platforms, the runner, or the line to add.

This script hands Checkov its own two runners with those gaps closed: a workflow the
schema rejects is scanned anyway (by every check run, Checkov's included: it is a
workflow GitHub runs), with a note on stderr; a GitLab file is read with `!reference`
understood and past a `spec:` header; a CI file that still cannot be read is listed
as Checkov lists a parsing error, named on stderr, and makes the exit code 1 (as
Checkov's CKV_HARD_FAIL_ON_PARSING_ERRORS does, whatever --soft-fail says). Output,
report formats and exit codes are otherwise Checkov's own.

Checkov also loads this file as a check module (it loads every .py file of the
directory): it defines no check, and does nothing unless run as a script.
"""

from __future__ import annotations

import sys
from typing import Any

import jsonschema  # a dependency of Checkov, as PyYAML is
import yaml
from checkov.common.models.enums import ParallelizationType
from checkov.common.output.report import Report
from checkov.common.parallelizer.parallel_runner import parallel_runner
from checkov.common.parsers.yaml.loader import SafeLineLoader, SafeLineLoaderGhaSchema
from checkov.github_actions.runner import Runner as GithubActionsRunner
from checkov.github_actions.schemas import gha_workflow
from checkov.github_actions.utils import is_workflow_file
from checkov.gitlab_ci.runner import Runner as GitlabCIRunner
from checkov.main import Checkov
from checkov.yaml_doc.runner import Runner as YamlRunner

# Beside this file: run as a script, its directory is first on sys.path; loaded by
# Checkov, Checkov puts it there.
import qemu_before_build as rules

PROGRAM = "run_checkov.py"
# The frameworks whose runners this script replaces.
FRAMEWORKS = (GithubActionsRunner.check_type, GitlabCIRunner.check_type)
_Parsed = tuple[Any, list[tuple[int, str]]]


def _note(message: str) -> None:
    print(f"{PROGRAM}: {message}", file=sys.stderr, flush=True)


class _EveryFileRunner:
    """What both runners below add to Checkov's: the CI files offered to them that
    none of their parsers could read become the report's parsing errors, and each
    failed record of a check gets the text the check left in its result configuration
    (rules.DETAILS) as its `details`, which Checkov prints under the failed resource.
    Both happen in the process that scans (Checkov forks one per framework)."""

    def is_ci_file(self, path: str) -> bool:
        raise NotImplementedError

    def _load_files(self, files_to_load: list[str], filename_fn: Any = None) -> None:
        super()._load_files(files_to_load, filename_fn)  # type: ignore[misc]  # a mixin
        offered = [filename_fn(f) if filename_fn else f for f in files_to_load]
        self.offered_files: list[str] = getattr(self, "offered_files", []) + offered

    def run(self, *args: Any, **kwargs: Any) -> Report | list[Report]:
        self.offered_files = []
        report: Report | list[Report] = super().run(*args, **kwargs)  # type: ignore[misc]
        for path in self.offered_files:
            if self.is_ci_file(path) and path not in self.definitions:  # type: ignore[attr-defined]
                for one in report if isinstance(report, list) else [report]:
                    one.add_parsing_error(path)
        return report

    def add_python_check_results(self, report: Report, *args: Any, **kwargs: Any) -> None:
        super().add_python_check_results(report, *args, **kwargs)  # type: ignore[misc]
        for record in report.failed_checks:
            configuration = record.check_result.get("results_configuration")
            if isinstance(configuration, dict) and rules.DETAILS in configuration:
                record.details = [str(line) for line in configuration.pop(rules.DETAILS)]


class WorkflowRunner(_EveryFileRunner, GithubActionsRunner):
    """Checkov's GitHub Actions runner, scanning the workflows its schema rejects."""

    def is_ci_file(self, path: str) -> bool:
        return is_workflow_file(path)

    @staticmethod
    def _parse_file(f: str, file_content: str | None = None) -> _Parsed | None:
        parsed = GithubActionsRunner._parse_file(f, file_content)
        if parsed is None and is_workflow_file(f):
            # What Checkov parses before it validates the file against its schema.
            parsed = YamlRunner._parse_file(f, file_content)
            if parsed is not None and not QUIET:
                rejected = _schema_error(f)
                _note(f"{f}: Checkov's bundled workflow schema rejects it ({rejected}); scanned anyway")
        return parsed


def _schema_error(path: str) -> str:
    """Where Checkov's bundled workflow schema rejects a file, as Checkov reads it."""
    try:
        with open(path, encoding="utf-8") as file:
            workflow = yaml.load(file, Loader=SafeLineLoaderGhaSchema)  # nosec: a safe loader
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        return str(error).splitlines()[0]
    errors = list(jsonschema.Draft7Validator(gha_workflow).iter_errors(workflow))
    where = ".".join(str(part) for part in _cause(errors[0]).absolute_path) if errors else ""
    return f"at {where}" if where else "at the top level"


def _cause(error: jsonschema.ValidationError) -> jsonschema.ValidationError:
    """The error that decides a failed `oneOf` / `anyOf`: the one of the alternative
    that came closest (fewest errors). A modern job fails the schema's normal job on
    its `runs-on` already, and then its reusable-workflow job on what really differs."""
    if not error.context:
        return error
    branches: dict[Any, list[jsonschema.ValidationError]] = {}
    for sub in error.context:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    # The fewest errors; of as many, the one that reaches deepest into the file.
    def closeness(errors: list[jsonschema.ValidationError]) -> tuple[int, int]:
        return len(errors), -max(len(e.absolute_path) for e in errors)

    closest = min(branches.values(), key=closeness)
    return _cause(closest[0])


class _GitlabLoader(SafeLineLoader):
    """Checkov's YAML loader (line numbers on every mapping), plus `!reference`, read
    as the list of its path (the policy resolves it from the file itself)."""


_GitlabLoader.add_constructor(
    rules.REFERENCE_TAG,
    lambda loader, node: loader.construct_sequence(node),  # type: ignore[no-any-return]
)


class PipelineRunner(_EveryFileRunner, GitlabCIRunner):
    """Checkov's GitLab CI runner, reading `!reference` and CI/CD components."""

    def is_ci_file(self, path: str) -> bool:
        return GitlabCIRunner.is_workflow_file(path)

    @staticmethod
    def _parse_file(f: str, file_content: str | None = None) -> _Parsed | None:
        parsed = GitlabCIRunner._parse_file(f, file_content)
        if not GitlabCIRunner.is_workflow_file(f):
            return parsed
        if parsed is None or rules.is_spec_header(parsed[0]):
            parsed = _parse_pipeline(f, file_content)
        # Checkov takes a YAML list too; a pipeline is a mapping of jobs.
        return parsed if parsed is not None and isinstance(parsed[0], dict) else None


def _parse_pipeline(path: str, content: str | None) -> _Parsed | None:
    """A GitLab file as Checkov reads one, with _GitlabLoader, and its jobs' document."""
    try:
        if content is None:
            with open(path, encoding="utf-8") as file:
                content = file.read()
        pipeline = rules.pipeline_of(yaml.load_all(content, Loader=_GitlabLoader))  # nosec: safe
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    if not pipeline:
        return None
    lines = [(number, line) for number, line in enumerate(content.splitlines(keepends=True), start=1)]
    return pipeline, lines


class PolicyCheckov(Checkov):
    """Checkov's CLI, keeping every report it prints (one set per `-d` directory)."""

    def __init__(self, argv: list[str]) -> None:
        super().__init__(argv)
        self.printed_reports: list[Report] = []

    def print_results(self, *args: Any, **kwargs: Any) -> Any:
        self.printed_reports += self.scan_reports
        return super().print_results(*args, **kwargs)


# Whether to leave out the notes about rescued workflows (Checkov's --quiet).
QUIET = False


def main(argv: list[str]) -> int:
    global QUIET
    if parallel_runner.type == ParallelizationType.SPAWN:
        _note(
            "CHECKOV_PARALLELIZATION_TYPE=spawn starts each scan in a fresh interpreter, "
            "without the runners this script adds: unset it (fork is the default)"
        )
        return 2
    checkov = PolicyCheckov(argv)
    QUIET = bool(checkov.config.quiet)
    checkov.runners = [_replaced(runner) for runner in checkov.runners]
    exit_code = checkov.run()
    not_checked = [
        path
        for report in checkov.printed_reports
        if report.check_type in FRAMEWORKS
        for path in report.parsing_errors
    ]
    for path in dict.fromkeys(not_checked):
        _note(
            f"not checked: {path}: {_why_unreadable(path)} (fix the file, or leave it out "
            "knowingly with --skip-path)"
        )
    if not_checked:
        return 1
    return exit_code or 0


def _replaced(runner: Any) -> Any:
    if type(runner) is GithubActionsRunner:
        return WorkflowRunner()
    if type(runner) is GitlabCIRunner:
        return PipelineRunner()
    return runner


def _why_unreadable(path: str) -> str:
    """Why a CI file could not be read: the YAML error (with its line), or what it holds."""
    try:
        with open(path, encoding="utf-8") as file:
            documents = list(yaml.load_all(file, Loader=_GitlabLoader))  # nosec: a safe loader
    except UnicodeDecodeError:
        return "not UTF-8 text"
    except OSError as error:
        return error.strerror or str(error)
    except yaml.YAMLError as error:
        return " ".join(str(error).split())
    if not any(documents):
        return "it is empty"
    return "it holds no mapping of keys (a workflow or pipeline is one)"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
