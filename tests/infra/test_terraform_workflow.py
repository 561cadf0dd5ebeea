""".github/workflows/terraform.yml: init, validate and tflint on every module and example, hardened."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / ".github" / "workflows" / "terraform.yml"
TERRAFORM = REPO / "terraform"
ZIZMOR = REPO / ".tools" / "venv" / "bin" / "zizmor"
ROOTS = sorted(
    str(p.relative_to(REPO))
    for kind in ("modules", "examples")
    for p in (TERRAFORM / kind).iterdir()
    if (p / "main.tf").is_file()
)
SHA_PINNED = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}$")


@pytest.fixture(scope="module")
def workflow() -> dict[Any, Any]:
    return yaml.safe_load(WORKFLOW.read_text())


def steps(workflow: dict[Any, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job["steps"]]


def run_lines(job: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


def test_triggers_on_terraform_changes(workflow: dict[Any, Any]) -> None:
    triggers = workflow.get("on", workflow.get(True))  # PyYAML reads a bare `on` as True
    for event in ("push", "pull_request"):
        assert "terraform/**" in triggers[event]["paths"], f"{event} does not watch terraform/**"


def test_matrix_covers_every_module_and_example(workflow: dict[Any, Any]) -> None:
    assert {
        "terraform/modules/gpu-cluster",
        "terraform/modules/platform",
        "terraform/examples/aws-eks",
    } <= set(ROOTS)
    validate = workflow["jobs"]["validate"]
    assert sorted(validate["strategy"]["matrix"]["dir"]) == ROOTS
    assert validate["defaults"]["run"]["working-directory"] == "${{ matrix.dir }}"
    commands = run_lines(validate)
    for needed in ("terraform init -backend=false", "terraform validate", "tflint --init", "tflint --config"):
        assert needed in commands, f"validate job does not run {needed!r}"
    assert any("setup-tflint" in step.get("uses", "") for step in validate["steps"])
    assert (TERRAFORM / ".tflint.hcl").is_file()


def test_fmt_check_runs(workflow: dict[Any, Any]) -> None:
    assert any("terraform fmt -check -recursive" in run_lines(job) for job in workflow["jobs"].values())


def test_actions_pinned_and_credentials_not_persisted(workflow: dict[Any, Any]) -> None:
    uses = [step for step in steps(workflow) if "uses" in step]
    assert uses
    for step in uses:
        assert SHA_PINNED.match(step["uses"]), f"{step['uses']} is not pinned to a full commit SHA"
        if step["uses"].startswith("actions/checkout@"):
            assert step.get("with", {}).get("persist-credentials") is False


def test_permissions_are_read_only(workflow: dict[Any, Any]) -> None:
    assert workflow["permissions"] == {"contents": "read"}
    for name, job in workflow["jobs"].items():
        granted = job.get("permissions", {})
        assert all(level != "write" for level in granted.values()), f"job {name} asks for write access"


def test_zizmor_finds_nothing() -> None:
    assert ZIZMOR.exists(), f"{ZIZMOR.relative_to(REPO)} missing: run scripts/install-infra-tools.sh"
    audited = subprocess.run(
        [str(ZIZMOR), "--offline", "--no-progress", str(WORKFLOW)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert audited.returncode == 0, audited.stdout + audited.stderr
