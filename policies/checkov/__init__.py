"""Checkov custom checks of binfmt: a CI job that builds for a platform its runner
cannot run natively must register QEMU emulation first, in the same job.

Run them with `python policies/checkov/run_checkov.py -d . --external-checks-dir
policies/checkov ...` (see docs/ci.md), Checkov's own CLI with every CI file scanned:
CKV_GHA_QEMU_001 (QEMUSetupBeforeBuildx.py) for GitHub Actions workflows and
CKV_GITLABCI_QEMU_001 (QEMUSetupBeforeBuildGitLabCI.py) for GitLab CI, both built on
qemu_before_build.py. Checkov loads every `.py` file of a directory that has this
`__init__.py` (run_checkov.py too: it registers no check), and skips directories
without one (tests/).
"""
