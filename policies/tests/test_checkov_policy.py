"""The Checkov policy (policies/checkov), run the way docs/ci.md says: the real
Checkov CLI through policies/checkov/run_checkov.py.

One run scans a tree holding the corpus (corpus/.github/workflows/*.yml for GitHub
Actions, corpus/gitlab/*.gitlab-ci.yml for GitLab CI) and every CI example of
docs/ci.md marked `<!-- checkov-example: PATH [fails JOB,...] -->`; the tests then read
its JSON and CLI reports. Each corpus file is a test named after it, and says which
jobs must fail in a first-line comment (`# expect-failed: build`; empty: none), which
must be skipped (`# expect-skipped: JOB`, Checkov's inline suppression), and text each
failed job's finding must show (`# expect-details: TEXT`, one a line). Every other job
must pass, and every file must have a result of its check: a file Checkov did not scan
(not a valid workflow, not where its runner looks) fails its test. DocumentedCommands runs
each command docs/ci.md gives (the shell command, the GitHub Actions step, the
pre-commit hook's entry) over files Checkov's own loaders drop.

Run with the Python of the virtual environment that holds Checkov (.ci/run does):
    python -m unittest discover -s policies/tests -v
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import unittest
from dataclasses import dataclass, field
from pathlib import Path

import yaml  # PyYAML, installed with Checkov

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "policies" / "checkov"
RUN_CHECKOV = POLICY / "run_checkov.py"
CORPUS = Path(__file__).resolve().parent / "corpus"
CI_DOC = ROOT / "docs" / "ci.md"

GITHUB_CHECK = "CKV_GHA_QEMU_001"
GITLAB_CHECK = "CKV_GITLABCI_QEMU_001"

# docs/ci.md: a CI file to scan, where it goes in a repository, and the jobs that fail.
DOC_EXAMPLE = re.compile(
    r"<!-- checkov-example: (?P<path>\S+)(?: fails (?P<fails>\S+))? -->\n"
    r"```ya?ml\n(?P<text>.*?)\n```",
    re.DOTALL,
)
# docs/ci.md: Checkov's output for one of those examples, after the command line.
DOC_OUTPUT = re.compile(
    r"<!-- checkov-output: (?P<path>\S+) -->\n```console\n\$ [^\n]*\n(?P<text>.*?)\n```",
    re.DOTALL,
)


@dataclass
class Case:
    """One CI file to scan: where it is in the scanned tree, and what must come out."""

    name: str
    relative: str  # its path in the scanned tree, as Checkov reports it (with a leading /)
    text: str
    failed: set[str]
    skipped: set[str]
    details: list[str] = field(default_factory=list)  # text the findings must show

    @property
    def check(self) -> str:
        return GITLAB_CHECK if self.relative.endswith((".gitlab-ci.yml", ".gitlab-ci.yaml")) else GITHUB_CHECK


def _header_jobs(text: str, key: str) -> set[str]:
    match = re.search(rf"^# {key}:(.*)$", text, re.MULTILINE)
    return {job.strip() for job in match.group(1).split(",") if job.strip()} if match else set()


def corpus_cases() -> list[Case]:
    cases = []
    files = sorted(CORPUS.glob(".github/workflows/*.yml")) + sorted(CORPUS.glob("gitlab/*.gitlab-ci.yml"))
    for path in files:
        text = path.read_text()
        if not re.match(r"# expect-failed:", text):
            raise AssertionError(f"{path}: the first line must be `# expect-failed: JOB,...` (empty: none)")
        # Named for its CI system too: the two corpora share case names.
        name = ("gitlab-" if path.parent.name == "gitlab" else "github-") + path.name.split(".")[0]
        cases.append(
            Case(
                name=name,
                relative="/corpus/" + str(path.relative_to(CORPUS)),
                text=text,
                failed=_header_jobs(text, "expect-failed"),
                skipped=_header_jobs(text, "expect-skipped"),
                details=re.findall(r"^# expect-details: (.*)$", text, re.MULTILINE),
            )
        )
    return cases


def doc_cases() -> list[Case]:
    cases = []
    for number, match in enumerate(DOC_EXAMPLE.finditer(CI_DOC.read_text()), start=1):
        fails = match.group("fails")
        cases.append(
            Case(
                name=f"ci_doc_{number}_{re.sub(r'[^a-z0-9]+', '_', match.group('path').lower()).strip('_')}",
                relative=f"/ci-doc-{number}/{match.group('path')}",
                text=match.group("text") + "\n",
                failed=set(fails.split(",")) if fails else set(),
                skipped=set(),
            )
        )
    return cases


def policy_command(*arguments: str) -> list[str]:
    """run_checkov.py with `arguments`, by the Python running these tests (the one of
    the virtual environment that holds Checkov)."""
    try:
        import checkov  # noqa: F401  # only to say clearly where it is missing
    except ImportError as error:
        raise AssertionError(
            f"{sys.executable} has no checkov: run these tests with the Python of the virtual "
            "environment that holds Checkov (see .ci/run)"
        ) from error
    return [sys.executable, str(RUN_CHECKOV), *arguments]


# Checkov's environment for these runs: plain text, and offline.
CHECKOV_ENVIRONMENT = {
    **os.environ,
    "ANSI_COLORS_DISABLED": "1",
    "LOG_LEVEL": "WARNING",
    # Offline: no query of the package index for a newer Checkov.
    "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true",
}


@dataclass
class Scan:
    """One Checkov run over every case: its records per file, and its CLI report."""

    records: dict[str, list[dict]]  # file path (as reported) -> records of our checks
    cli: str
    stderr: str


_scan: Scan | None = None


def scan() -> Scan:
    """Runs Checkov once (for every test of this module) over a tree of all cases."""
    global _scan
    if _scan is not None:
        return _scan
    with tempfile.TemporaryDirectory(prefix="checkov-policy-") as temporary:
        tree = Path(temporary) / "tree"
        shutil.copytree(CORPUS, tree / "corpus")
        for case in doc_cases():
            target = tree / case.relative.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(case.text)
        reports = Path(temporary) / "reports"
        command = policy_command(
            "--directory", str(tree),
            "--framework", "github_actions", "gitlab_ci",
            "--external-checks-dir", str(POLICY),
            "--check", f"{GITHUB_CHECK},{GITLAB_CHECK}",
            "--skip-download",  # offline: no guidelines or metadata from the vendor's API
            "--output", "cli", "--output", "json",
            "--output-file-path", str(reports),
        )  # fmt: skip
        run = subprocess.run(command, capture_output=True, text=True, env=CHECKOV_ENVIRONMENT, timeout=600)
        # 0: everything passed, 1: some check failed (the corpus has failing cases).
        if run.returncode not in (0, 1) or not (reports / "results_json.json").is_file():
            raise AssertionError(
                f"checkov exited with {run.returncode}:\n{run.stdout[-4000:]}\n{run.stderr[-4000:]}"
            )
        reports_json = json.loads((reports / "results_json.json").read_text())
        cli = (reports / "results_cli.txt").read_text()
    records: dict[str, list[dict]] = {}
    for report in reports_json if isinstance(reports_json, list) else [reports_json]:
        for kind in ("passed_checks", "failed_checks", "skipped_checks"):
            for record in report.get("results", {}).get(kind, []):
                if record["check_id"] in (GITHUB_CHECK, GITLAB_CHECK):
                    records.setdefault(record["file_path"], []).append(record)
    _scan = Scan(records=records, cli=cli, stderr=run.stderr)
    return _scan


class _GitlabLoader(yaml.SafeLoader):
    """PyYAML's safe loader, reading GitLab's `!reference [...]` as its list."""


_GitlabLoader.add_constructor("!reference", lambda loader, node: loader.construct_sequence(node))


def job_of(record: dict, case: Case) -> str:
    """The job a record is about. GitHub: `jobs(build)`. GitLab: `build`, or `build.tags`
    (Checkov appends the job's first list-valued key): the longest top-level key of the
    file that the resource starts with."""
    resource = record["resource"]
    match = re.fullmatch(r"jobs\((.*)\)", resource)
    if match:
        return match.group(1)
    documents = [d for d in yaml.load_all(case.text, Loader=_GitlabLoader) if isinstance(d, dict)]
    keys = [str(key) for document in documents for key in document]
    matching = [key for key in keys if resource == key or resource.startswith(key + ".")]
    return max(matching, key=len) if matching else resource


def cli_record(cli: str, relative: str) -> str:
    """The CLI report's record of the one failed job in `relative`, from `Check:` down
    to its last code line."""
    blocks = re.split(r"\n(?=Check: )", cli)
    found = [b for b in blocks if f"\tFile: {relative}:" in b and "\tFAILED for resource: " in b]
    if len(found) != 1:
        raise AssertionError(f"expected one record for {relative} in the CLI report, got {len(found)}")
    lines = found[0].split("\n")
    # A record ends at its last code line; what follows is the next section's heading.
    end = max(index for index, line in enumerate(lines) if line.startswith(("\t", "Check: ")))
    return "\n".join(lines[: end + 1])


class CheckovPolicy(unittest.TestCase):
    """One test per case (added below), and docs/ci.md's finding text."""

    maxDiff = None

    def check_case(self, case: Case) -> None:
        result = scan()
        records = result.records.get(case.relative, [])
        self.assertTrue(
            records,
            f"{case.relative}: Checkov reported no result of {case.check} for this file, so it did "
            f"not scan it (an invalid workflow, or not where its runner looks) or the check "
            f"failed to load or crashed; checkov's stderr:\n{result.stderr[-3000:]}",
        )
        self.assertEqual({r["check_id"] for r in records}, {case.check}, case.relative)
        outcome = {job_of(r, case): r["check_result"]["result"] for r in records}
        self.assertEqual(len(outcome), len(records), f"{case.relative}: one result per job {records}")

        def jobs(result: str) -> set[str]:
            return {job for job, job_result in outcome.items() if job_result == result}

        self.assertEqual(jobs("FAILED"), case.failed, f"{case.relative}: failed jobs {outcome}")
        self.assertEqual(jobs("SKIPPED"), case.skipped, f"{case.relative}: skipped jobs {outcome}")
        failed = [r for r in records if r["check_result"]["result"] == "FAILED"]
        for record in failed:
            self.check_finding_text(case, job_of(record, case), record["details"])
        shown = "\n".join(line for record in failed for line in record["details"])
        for text in case.details:
            self.assertIn(text, shown, f"{case.relative}: the findings do not show it")
        if Path(case.relative).name.startswith("fail-"):
            self.assertTrue(case.failed, f"{case.relative}: a fail- case must name the jobs that fail")
        if Path(case.relative).name.startswith("pass-"):
            self.assertFalse(case.failed, f"{case.relative}: a pass- case cannot expect a failure")

    def check_finding_text(self, case: Case, job: str, details: list[str]) -> None:
        """A finding names the job, the platforms its runner cannot run, the runner (as
        the file names it, or why it was assumed) and the line to add (rules.details)."""
        self.assertGreaterEqual(len(details), 2, f"{case.relative}: job {job} has no finding text")
        first, fix = details[0], details[-1]
        self.assertRegex(first, rf"^job {re.escape(job)}( \(.*?\))? builds \S+", case.relative)
        runner = r"(runs-on |tags |no tags, so it runs on GitLab.com's default runner, assumed x86-64)"
        self.assertRegex(first, runner, case.relative)
        line_to_add = r"^fix: (add (the step )?`- .+`|run the job on a runner .*`tags: \[.+\]`|register QEMU)"
        self.assertRegex(fix, line_to_add, case.relative)

    def test_cli_report_shows_each_finding_text(self) -> None:
        """Checkov prints the text under each failed job (run_checkov.py gives the
        records their details): every failed record of the CLI report has it."""
        blocks = [b for b in re.split(r"\n(?=Check: )", scan().cli) if "\tFAILED for resource: " in b]
        self.assertTrue(blocks)
        for block in blocks:
            details = r"\tFAILED for resource: .*\n\tDetails: job .* builds .*\n(\t {9}.*\n)*\t {9}fix: "
            self.assertRegex(block, details)

    def test_every_corpus_file_was_read(self) -> None:
        """No file of the scan is one run_checkov.py had to name as not checked."""
        self.assertNotIn("not checked:", scan().stderr)

    def test_every_scanned_file_is_a_case(self) -> None:
        """Nothing is scanned that no test looks at, and no case is missing."""
        expected = {case.relative for case in corpus_cases() + doc_cases()}
        self.assertEqual(set(scan().records), expected)

    def test_docs_has_a_failing_and_a_passing_example_of_each_ci_system(self) -> None:
        cases = doc_cases()
        for check in (GITHUB_CHECK, GITLAB_CHECK):
            self.assertTrue(any(c.check == check and not c.failed for c in cases), check)
        self.assertTrue(any(c.check == GITHUB_CHECK and c.failed for c in cases))

    def test_docs_shows_the_finding_as_checkov_prints_it(self) -> None:
        """docs/ci.md's console outputs are Checkov's: the summary counts of the example
        they scan and, for a failing one, the record exactly (check id and name, which
        carries the fix, the job, the file and lines, and the code lines that show the
        runner and the platform)."""
        outputs = list(DOC_OUTPUT.finditer(CI_DOC.read_text()))
        self.assertTrue(outputs, "docs/ci.md has no <!-- checkov-output: PATH --> console block")
        cases = {case.relative.split("/", 2)[2]: case for case in doc_cases()}
        for output in outputs:
            case = cases[output.group("path")]
            shown = output.group("text")
            if "Check: " in shown:  # with --quiet, Checkov prints failed records only
                record = cli_record(scan().cli, case.relative)
                # docs/ci.md scans a repository whose root holds the example.
                record = record.replace(f"File: /{case.relative.split('/')[1]}/", "File: /")
                start = shown.index("Check: ")
                self.assertEqual(shown[start:].expandtabs(), record.expandtabs())
            summary = re.search(r"Passed checks: (\d+), Failed checks: (\d+), Skipped checks: (\d+)", shown)
            self.assertIsNotNone(summary, "docs/ci.md's output shows Checkov's summary line")
            results = [r["check_result"]["result"] for r in scan().records[case.relative]]
            counts = tuple(str(results.count(kind)) for kind in ("PASSED", "FAILED", "SKIPPED"))
            self.assertEqual(summary.groups(), counts)

    def test_policy_directory_holds_only_the_checks(self) -> None:
        """Checkov loads every .py file of --external-checks-dir as a check and every
        YAML file under it as a YAML policy: the directory holds the two checks, their
        shared module and run_checkov.py (which registers no check), and nothing else
        Checkov would load."""
        loaded = sorted(p.name for p in POLICY.rglob("*") if p.suffix in (".py", ".yml", ".yaml", ".json"))
        self.assertEqual(
            loaded,
            [
                "QEMUSetupBeforeBuildGitLabCI.py", "QEMUSetupBeforeBuildx.py", "__init__.py",
                "qemu_before_build.py", "run_checkov.py",
            ],
        )  # fmt: skip


# Corpus files Checkov's own loaders drop without a word, one for each way: GitHub
# Actions workflows its bundled schema rejects, GitLab files its YAML loader refuses or
# reads only the header of. Each has a failing job, so --quiet still shows its record.
DROPPED_BY_CHECKOV = {
    ".github/workflows/fail-schema-cancel-in-progress-expression.yml": "concurrency.cancel-in-progress",
    ".github/workflows/fail-schema-fail-fast-matrix-include-expression.yml": "strategy.matrix.include",
    ".github/workflows/fail-schema-read-all-with-fail-fast.yml": "strategy.fail-fast",
    ".github/workflows/fail-schema-permissions-attestations.yml": "permissions",
    ".github/workflows/fail-schema-concurrency-queue-job.yml": "concurrency",
    "gitlab/fail-reference-tag-build-without-registration.gitlab-ci.yml": "!reference",
    "gitlab/fail-spec-header-component.gitlab-ci.yml": "spec:",
}
# Not YAML: no loader reads it, so it must be named, and fail the run.
UNREADABLE = ".github/workflows/unreadable.yml"


def doc_commands() -> dict[str, str]:
    """The commands docs/ci.md gives to run the policy: the shell command (after
    `<!-- checkov-command -->`), the GitHub Actions step's `run:` and the pre-commit
    hook's `entry:` (after `<!-- checkov-pre-commit -->`)."""
    text = CI_DOC.read_text()
    shell = re.search(r"<!-- checkov-command -->\n```sh\n(.*?)\n```", text, re.DOTALL)
    hook = re.search(r"<!-- checkov-pre-commit -->\n```yaml\n(.*?)\n```", text, re.DOTALL)
    if not shell or not hook:
        raise AssertionError("docs/ci.md has no <!-- checkov-command --> or <!-- checkov-pre-commit --> block")
    shell_lines = shell.group(1).replace("\\\n", " ").splitlines()
    step = next(c for c in doc_cases() if c.relative.endswith("/.github/workflows/policy.yml"))
    runs = [s.get("run", "") for job in yaml.safe_load(step.text)["jobs"].values() for s in job["steps"]]
    return {
        "command": next(line for line in shell_lines if "run_checkov.py" in line),
        "step": next(run for run in runs if "run_checkov.py" in run),
        "pre-commit": yaml.safe_load(hook.group(1))["repos"][0]["hooks"][0]["entry"],
    }


def run_in_repository(command: str, files: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`command` run as a user runs it, from the root of a repository holding the
    policy and `files` (path: text), with this Python for `python` and docs/ci.md's
    virtual environment."""
    words = shlex.split(command)
    if words[0] in ("python", "python3", "~/.venvs/checkov/bin/python"):
        words[0] = sys.executable
    elif words[0] == "checkov":
        words[0] = str(Path(sys.executable).with_name("checkov"))
    with tempfile.TemporaryDirectory(prefix="checkov-repository-") as repository:
        root = Path(repository)
        shutil.copytree(POLICY, root / "policies" / "checkov", ignore=shutil.ignore_patterns("__pycache__"))
        for path, text in files.items():
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_text(text)
        return subprocess.run(words, cwd=root, capture_output=True, text=True, env=CHECKOV_ENVIRONMENT, timeout=600)


def dropped_files() -> dict[str, str]:
    """The DROPPED_BY_CHECKOV corpus files, where a repository has them, and UNREADABLE."""
    files = {}
    for path in DROPPED_BY_CHECKOV:
        target = path if path.startswith(".github/") else "ci/" + Path(path).name
        files[target] = (CORPUS / path).read_text()
    files[UNREADABLE] = "name: broken\non: push\njobs:\n  build:\n    steps:\n      - run: 'unterminated\n"
    return files


class DocumentedCommands(unittest.TestCase):
    """Must-show of the policy: every way docs/ci.md gives to run it checks every CI
    file it is given, also those Checkov's own loaders drop, or fails naming each."""

    maxDiff = None

    def test_plain_checkov_drops_these_files(self) -> None:
        """What the commands must make up for: plain `checkov` passes over each of
        them without a word (no result, no parsing error, exit 0)."""
        command = doc_commands()["command"]
        command = command.replace("~/.venvs/checkov/bin/python policies/checkov/run_checkov.py", "checkov")
        run = run_in_repository(command, dropped_files())
        self.assertEqual(run.returncode, 0, run.stdout + run.stderr)
        for path in dropped_files():
            self.assertNotIn(f"/{path}", run.stdout)
        self.assertNotIn("Parsing errors", run.stdout)

    def test_each_command_checks_every_file_or_names_it(self) -> None:
        for way, command in doc_commands().items():
            with self.subTest(way=way):
                run = run_in_repository(command, dropped_files())
                self.assertEqual(run.returncode, 1, f"{way}: {command}\n{run.stdout}\n{run.stderr}")
                for path in DROPPED_BY_CHECKOV:
                    shown = path if path.startswith(".github/") else "ci/" + Path(path).name
                    self.assertIn(f"File: /{shown}:", run.stdout, f"{way}: no finding for {shown}")
                self.assertIn(f"not checked: ./{UNREADABLE}: while scanning a quoted scalar", run.stderr, way)
                self.assertRegex(run.stdout, r"Parsing errors: 1\b", way)

    def test_skip_path_leaves_an_unreadable_file_out(self) -> None:
        """The fix a not-checked file's message gives: `--skip-path` it, knowingly."""
        command = doc_commands()["command"] + f" --skip-path {UNREADABLE}"
        run = run_in_repository(command, {UNREADABLE: "jobs: ["})
        self.assertEqual(run.returncode, 0, run.stdout + run.stderr)
        self.assertNotIn("not checked", run.stderr)

    def test_pre_commit_hook_installs_the_pinned_checkov(self) -> None:
        hook = re.search(r"<!-- checkov-pre-commit -->\n```yaml\n(.*?)\n```", CI_DOC.read_text(), re.DOTALL)
        assert hook
        dependencies = yaml.safe_load(hook.group(1))["repos"][0]["hooks"][0]["additional_dependencies"]
        # The Checkov these tests run (.ci/run pins it).
        self.assertEqual(dependencies, [f"checkov=={importlib.metadata.version('checkov')}"])


def _add_case_tests() -> None:
    for case in corpus_cases() + doc_cases():
        name = "test_" + re.sub(r"[^a-z0-9]+", "_", case.name.lower())
        if hasattr(CheckovPolicy, name):
            raise AssertionError(f"{case.relative}: another case is named {case.name}: rename one")

        def test(self: CheckovPolicy, case: Case = case) -> None:
            self.check_case(case)

        test.__doc__ = f"{case.relative}: failed {sorted(case.failed) or 'none'}"
        setattr(CheckovPolicy, name, test)


_add_case_tests()

if __name__ == "__main__":
    unittest.main()
