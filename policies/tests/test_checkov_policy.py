"""The Checkov policy (policies/checkov), run by the real `checkov` CLI.

One Checkov run scans a tree holding the corpus (corpus/.github/workflows/*.yml for
GitHub Actions, corpus/gitlab/*.gitlab-ci.yml for GitLab CI) and every CI example of
README.md marked `<!-- checkov-example: PATH [fails JOB,...] -->`; the tests then read
its JSON and CLI reports. Each corpus file is a test named after it, and says which
jobs must fail in a first-line comment (`# expect-failed: build`; empty: none) and
which must be skipped (`# expect-skipped: JOB`, Checkov's inline suppression). Every
other job must pass, and every file must have a result of its check: a file Checkov
did not scan (not a valid workflow, not where its runner looks) fails its test.

Run with the Python of the virtual environment that holds Checkov (.ci/run does):
    python -m unittest discover -s policies/tests -v
CHECKOV names the checkov executable; by default, the one beside that Python.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest
from dataclasses import dataclass
from pathlib import Path

import yaml  # PyYAML, installed with Checkov

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "policies" / "checkov"
CORPUS = Path(__file__).resolve().parent / "corpus"
README = ROOT / "README.md"

GITHUB_CHECK = "CKV_GHA_QEMU_001"
GITLAB_CHECK = "CKV_GITLABCI_QEMU_001"

# README.md: a CI file to scan, where it goes in a repository, and the jobs that fail.
README_EXAMPLE = re.compile(
    r"<!-- checkov-example: (?P<path>\S+)(?: fails (?P<fails>\S+))? -->\n"
    r"```ya?ml\n(?P<text>.*?)\n```",
    re.DOTALL,
)
# README.md: Checkov's output for one of those examples, after the command line.
README_OUTPUT = re.compile(
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
        name = path.name.split(".")[0]
        cases.append(
            Case(
                name=name,
                relative="/corpus/" + str(path.relative_to(CORPUS)),
                text=text,
                failed=_header_jobs(text, "expect-failed"),
                skipped=_header_jobs(text, "expect-skipped"),
            )
        )
    return cases


def readme_cases() -> list[Case]:
    cases = []
    for number, match in enumerate(README_EXAMPLE.finditer(README.read_text()), start=1):
        fails = match.group("fails")
        cases.append(
            Case(
                name=f"readme_{number}_{re.sub(r'[^a-z0-9]+', '_', match.group('path').lower()).strip('_')}",
                relative=f"/readme-{number}/{match.group('path')}",
                text=match.group("text") + "\n",
                failed=set(fails.split(",")) if fails else set(),
                skipped=set(),
            )
        )
    return cases


def checkov_executable() -> str:
    executable = os.environ.get("CHECKOV") or str(Path(sys.executable).with_name("checkov"))
    if not Path(executable).is_file() and not shutil.which(executable):
        raise AssertionError(
            f"checkov not found at {executable}: run these tests with the Python of the virtual "
            "environment that holds Checkov (see .ci/run), or set CHECKOV"
        )
    return executable


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
        for case in readme_cases():
            target = tree / case.relative.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(case.text)
        reports = Path(temporary) / "reports"
        command = [
            checkov_executable(),
            "--directory", str(tree),
            "--framework", "github_actions", "gitlab_ci",
            "--external-checks-dir", str(POLICY),
            "--check", f"{GITHUB_CHECK},{GITLAB_CHECK}",
            "--skip-download",  # offline: no guidelines or metadata from the vendor's API
            "--output", "cli", "--output", "json",
            "--output-file-path", str(reports),
        ]  # fmt: skip
        environment = {
            **os.environ,
            "ANSI_COLORS_DISABLED": "1",
            "LOG_LEVEL": "WARNING",
            # Offline: no query of the package index for a newer Checkov.
            "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true",
        }
        run = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=600)
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


def job_of(record: dict, case: Case) -> str:
    """The job a record is about. GitHub: `jobs(build)`. GitLab: `build`, or `build.tags`
    (Checkov appends the job's first list-valued key): the longest top-level key of the
    file that the resource starts with."""
    resource = record["resource"]
    match = re.fullmatch(r"jobs\((.*)\)", resource)
    if match:
        return match.group(1)
    keys = [str(key) for key in yaml.safe_load(case.text)]
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
    """One test per case (added below), and the README's finding text."""

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
        if case.name.startswith("fail-"):
            self.assertTrue(case.failed, f"{case.relative}: a fail- case must name the jobs that fail")
        if case.name.startswith("pass-"):
            self.assertFalse(case.failed, f"{case.relative}: a pass- case cannot expect a failure")

    def test_every_scanned_file_is_a_case(self) -> None:
        """Nothing is scanned that no test looks at, and no case is missing."""
        expected = {case.relative for case in corpus_cases() + readme_cases()}
        self.assertEqual(set(scan().records), expected)

    def test_readme_has_a_failing_and_a_passing_example_of_each_ci_system(self) -> None:
        cases = readme_cases()
        for check in (GITHUB_CHECK, GITLAB_CHECK):
            self.assertTrue(any(c.check == check and not c.failed for c in cases), check)
        self.assertTrue(any(c.check == GITHUB_CHECK and c.failed for c in cases))

    def test_readme_shows_the_finding_as_checkov_prints_it(self) -> None:
        """The README's console outputs are Checkov's: the summary counts of the example
        they scan and, for a failing one, the record exactly (check id and name, which
        carries the fix, the job, the file and lines, and the code lines that show the
        runner and the platform)."""
        outputs = list(README_OUTPUT.finditer(README.read_text()))
        self.assertTrue(outputs, "README.md has no <!-- checkov-output: PATH --> console block")
        cases = {case.relative.split("/", 2)[2]: case for case in readme_cases()}
        for output in outputs:
            case = cases[output.group("path")]
            shown = output.group("text")
            if "Check: " in shown:  # with --quiet, Checkov prints failed records only
                record = cli_record(scan().cli, case.relative)
                # The README scans a repository whose root holds the example.
                record = record.replace(f"File: /{case.relative.split('/')[1]}/", "File: /")
                start = shown.index("Check: ")
                self.assertEqual(shown[start:].expandtabs(), record.expandtabs())
            summary = re.search(r"Passed checks: (\d+), Failed checks: (\d+), Skipped checks: (\d+)", shown)
            self.assertIsNotNone(summary, "the README's output shows Checkov's summary line")
            results = [r["check_result"]["result"] for r in scan().records[case.relative]]
            counts = tuple(str(results.count(kind)) for kind in ("PASSED", "FAILED", "SKIPPED"))
            self.assertEqual(summary.groups(), counts)

    def test_policy_directory_holds_only_the_checks(self) -> None:
        """Checkov loads every .py file of --external-checks-dir as a check and every
        YAML file under it as a YAML policy: the directory holds the two checks and
        their shared module, and nothing else Checkov would load."""
        loaded = sorted(p.name for p in POLICY.rglob("*") if p.suffix in (".py", ".yml", ".yaml", ".json"))
        self.assertEqual(
            loaded,
            ["QEMUSetupBeforeBuildGitLabCI.py", "QEMUSetupBeforeBuildx.py", "__init__.py", "qemu_before_build.py"],
        )


def _add_case_tests() -> None:
    for case in corpus_cases() + readme_cases():
        name = "test_" + re.sub(r"[^a-z0-9]+", "_", case.name.lower())

        def test(self: CheckovPolicy, case: Case = case) -> None:
            self.check_case(case)

        test.__doc__ = f"{case.relative}: failed {sorted(case.failed) or 'none'}"
        setattr(CheckovPolicy, name, test)


_add_case_tests()

if __name__ == "__main__":
    unittest.main()
