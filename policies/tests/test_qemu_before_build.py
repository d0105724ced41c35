"""The decisions of policies/checkov/qemu_before_build.py, without Checkov: platform
spellings, runner labels, what a shell line builds or registers, and the verdict.
(The checks themselves are tested through the checkov CLI: test_checkov_policy.py.)"""

from __future__ import annotations

import importlib.util
import sys
import unittest
from pathlib import Path

_PATH = Path(__file__).resolve().parents[1] / "checkov" / "qemu_before_build.py"
_SPEC = importlib.util.spec_from_file_location("qemu_before_build", _PATH)
assert _SPEC and _SPEC.loader
rules = importlib.util.module_from_spec(_SPEC)
sys.modules[_SPEC.name] = rules  # as Checkov's loader does; dataclasses look it up
_SPEC.loader.exec_module(rules)


def events(script: str, env: dict[str, str] | None = None) -> list[tuple[str, object]]:
    """A script's events as (kind, platforms or coverage) pairs."""
    out: list[tuple[str, object]] = []
    for event in rules.shell_events(script, dict(env or {})):
        if isinstance(event, rules.Build):
            out.append(("build", event.platforms))
        else:
            out.append(("register", sorted(event.covers)))
    return out


class PlatformSpellings(unittest.TestCase):
    def test_every_usual_spelling_names_its_architecture(self) -> None:
        table = {
            "linux/amd64": "amd64", "linux/amd64/v2": "amd64", "amd64": "amd64", "x86_64": "amd64",
            "linux/arm64": "arm64", "linux/arm64/v8": "arm64", "aarch64": "arm64", "qemu-aarch64": "arm64",
            "linux/arm/v7": "arm", "linux/arm/v6": "arm", "armhf": "arm",
            "linux/386": "386", "i386": "386", "linux/riscv64": "riscv64", "ppc64el": "ppc64le",
            "linux/s390x": "s390x", "mips64el": "mips64le", "loongarch64": "loong64",
            "linux/sparc64": "sparc64",  # unknown to binfmt, still foreign
        }  # fmt: skip
        for platform, arch in table.items():
            self.assertEqual(rules.arch_of(platform), arch, platform)

    def test_what_cannot_be_known_names_nothing(self) -> None:
        for platform in ("$PLATFORM", "linux/${ARCH}", "local", "windows/amd64", "", rules.UNRESOLVED):
            self.assertIsNone(rules.arch_of(platform), platform)


class RunnerLabels(unittest.TestCase):
    def test_github_labels(self) -> None:
        table = {
            ("ubuntu-24.04-arm",): "arm64", ("ubuntu-22.04-arm",): "arm64", ("windows-11-arm",): "arm64",
            ("ubuntu-latest",): "amd64", ("ubuntu-24.04",): "amd64", ("windows-2022",): "amd64",
            ("self-hosted", "linux", "ARM64"): "arm64", ("self-hosted", "aarch64"): "arm64",
            ("self-hosted", "arm64"): "arm64", ("self-hosted", "X64"): "amd64",
            ("self-hosted", "ARM"): "arm",  # GitHub's label for 32-bit ARM runners
            ("self-hosted", "linux"): None, ("macos-14",): None, (rules.UNRESOLVED,): None,
            ("self-hosted", "ARM64", "X64"): None,  # contradictory
        }  # fmt: skip
        for labels, arch in table.items():
            self.assertEqual(rules.github_runner_arch(list(labels)), arch, labels)

    def test_gitlab_tags(self) -> None:
        self.assertEqual(rules.runner_arch(["saas-linux-medium-arm64"]), "arm64")
        self.assertEqual(rules.runner_arch(["saas-linux-small-amd64"]), "amd64")
        self.assertEqual(rules.runner_arch(["docker", "arm64"]), "arm64")
        self.assertIsNone(rules.runner_arch(["docker"]))
        self.assertEqual(rules.runner_arch([], default="amd64"), "amd64")


class ShellLines(unittest.TestCase):
    def test_builds_in_every_form(self) -> None:
        script = (
            "docker buildx build \\\n  --push \\\n  --platform linux/amd64,linux/arm64 .\n"
            "sudo -E docker build --platform=linux/s390x . && echo done\n"
            "docker buildx bake --set '*.platform=linux/ppc64le' --set app.tags=x\n"
            "podman build --arch riscv64 .\n"
            "docker run --rm --platform linux/arm/v7 alpine true\n"
        )
        self.assertEqual(
            events(script),
            [
                ("build", ["linux/amd64", "linux/arm64"]),
                ("build", ["linux/s390x"]),
                ("build", ["linux/ppc64le"]),
                ("build", ["linux/riscv64"]),
                ("build", ["linux/arm/v7"]),
            ],
        )

    def test_variables_from_ci_and_from_the_script(self) -> None:
        self.assertEqual(
            events('P="linux/$ARCH"; docker build --platform "$P" .', {"ARCH": "arm64"}),
            [("build", ["linux/arm64"])],
        )

    def test_builds_by_other_clients(self) -> None:
        script = (
            "./buildx build --platform linux/arm/v7 --load .\n"
            "~/.docker/cli-plugins/docker-buildx bake --set '*.platform=linux/s390x'\n"
            "buildah bud --platform linux/arm64 -t app .\n"
            "buildctl build --frontend dockerfile.v0 --opt platform=linux/riscv64 --local context=.\n"
            "/kaniko/executor --context . --custom-platform=linux/ppc64le --destination app\n"
            "nerdctl build --platform=linux/arm64 .\n"
        )
        found = rules.shell_events(script, {})
        self.assertEqual(
            [(build.tool, build.platforms) for build in found],
            [
                ("buildx", ["linux/arm/v7"]), ("buildx", ["linux/s390x"]), ("buildah", ["linux/arm64"]),
                ("buildctl", ["linux/riscv64"]), ("kaniko", ["linux/ppc64le"]), ("nerdctl", ["linux/arm64"]),
            ],
        )  # fmt: skip

    def test_what_is_not_a_build(self) -> None:
        script = (
            "docker buildx create --use --platform linux/amd64,linux/arm64\n"
            "docker pull --platform linux/arm64 alpine\n"
            "echo docker build --platform linux/arm64 .\n"
            "# docker build --platform linux/arm64 .\n"
            "docker build .\n"
        )
        self.assertEqual(events(script), [])

    def test_registrations(self) -> None:
        table = {
            "docker run --privileged --rm tonistiigi/binfmt --install all": ["all"],
            "docker run --rm --privileged REGISTRY/binfmt:0.1.0 --install arm64,linux/arm/v7": ["arm", "arm64"],
            "docker run --rm --privileged --pid=host binfmt@sha256:abc --install=riscv64": ["riscv64"],
            "docker run --rm --privileged multiarch/qemu-user-static --reset -p yes": ["all"],
            "docker run --rm --privileged multiarch/qemu-user-static:7.2.0-1 --reset -p yes -c yes": ["all"],
            "sudo podman run --rm --privileged docker.io/multiarch/qemu-user-static --persistent yes": ["all"],
            "docker run --rm --privileged aptman/qus -s -- -p aarch64 riscv64": ["arm64", "riscv64"],
            "docker run --rm --privileged docker/binfmt:a7996909642ee92942dcd6cff44b9b95f08dad64":
                ["arm", "arm64", "ppc64le", "riscv64", "s390x"],
            "docker run --privileged linuxkit/binfmt:v0.8":
                ["arm", "arm64", "loong64", "ppc64le", "riscv64", "s390x"],
            "docker run --rm --privileged --name qemu hypriot/qemu-register":
                ["arm", "arm64", "ppc64le", "riscv64"],
            "sudo update-binfmts --enable": ["all"],
            "update-binfmts --enable qemu-aarch64": ["arm64"],
            "sudo systemctl restart systemd-binfmt.service": ["all"],
            "sudo ./target/release/binfmt --install all": ["all"],
            "binfmt-aarch64-linux-musl --install amd64": ["amd64"],
            "sudo binfmt apply": ["all"],
        }  # fmt: skip
        for script, covers in table.items():
            self.assertEqual(events(script), [("register", covers)], script)

    def test_installing_registers_only_where_the_runner_applies_it(self) -> None:
        script = "sudo apt-get install -y --no-install-recommends qemu-user-static binfmt-support"
        self.assertEqual(events(script), [("register", [])])  # a container: a note only
        (on_vm,) = rules.shell_events(script, {}, installs_register=True)
        self.assertEqual(on_vm.covers, frozenset({rules.ALL}))

    def test_what_registers_nothing(self) -> None:
        for script in (
            "docker run --rm --privileged REGISTRY/binfmt:0.1.0 check linux/arm64",
            "docker run --rm --privileged REGISTRY/binfmt:0.1.0",  # the status
            "docker run --rm --privileged tonistiigi/binfmt",  # the status
            "docker run --rm multiarch/qemu-user-static:x86_64-aarch64 /usr/bin/qemu-aarch64-static -version",
            "docker run --rm hypriot/qemu-register /qemu-arm --version",
            "docker create --name register hypriot/qemu-register",
            "apt-get install -y binfmt-support",
            "update-binfmts --display",
        ):
            self.assertEqual(events(script), [], script)

    def test_registrations_without_flag_f_cover_nothing_and_say_why(self) -> None:
        for script in (
            "docker run --rm --privileged multiarch/qemu-user-static --reset",
            "docker run --rm --privileged multiarch/qemu-user-static:register --reset",
            "docker run --rm --privileged aptman/qus -s -- aarch64",
        ):
            (registration,) = rules.shell_events(script, {})
            self.assertEqual(registration.covers, frozenset(), script)
            self.assertIn("without flag F", registration.why_not, script)

    def test_binfmt_run_emulates_its_command_only(self) -> None:
        found = rules.shell_events(
            "binfmt run --platform arm64 -- podman build --platform linux/arm64 .\n"
            "podman build --platform linux/arm64 .\n",
            {},
        )
        self.assertIsNone(rules.first_finding("amd64", found[:1]))
        finding = rules.first_finding("amd64", found)
        self.assertIsNotNone(finding)
        self.assertIs(finding.build, found[1])


class Verdict(unittest.TestCase):
    def build(self, *platforms: str) -> object:
        return rules.Build(list(platforms))

    def test_native_builds_need_nothing(self) -> None:
        self.assertIsNone(rules.first_finding("amd64", [self.build("linux/amd64", "linux/386")]))
        self.assertIsNone(rules.first_finding("arm64", [self.build("linux/arm64/v8")]))

    def test_32_bit_arm_on_an_arm64_runner_needs_emulation(self) -> None:
        finding = rules.first_finding("arm64", [self.build("linux/arm64", "linux/arm/v7")])
        self.assertEqual(finding.uncovered, ["arm"])

    def test_unknown_runner(self) -> None:
        self.assertIsNone(rules.first_finding(None, [self.build("linux/riscv64")]))
        self.assertIsNone(rules.first_finding(None, [self.build("linux/amd64", "linux/386")]))
        finding = rules.first_finding(None, [self.build("linux/amd64", "linux/arm64")])
        self.assertEqual(finding.uncovered, ["amd64", "arm64"])
        covered = rules.Registration(frozenset({"arm64"}))
        self.assertIsNone(rules.first_finding(None, [covered, self.build("linux/amd64", "linux/arm64")]))

    def test_only_an_earlier_registration_counts(self) -> None:
        registration = rules.Registration(frozenset({rules.ALL}))
        build = self.build("linux/amd64")
        self.assertIsNone(rules.first_finding("arm64", [registration, build]))
        self.assertIsNotNone(rules.first_finding("arm64", [build, registration]))


if __name__ == "__main__":
    unittest.main()
