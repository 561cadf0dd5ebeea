"""Policy scans: checkov on the rendered manifests, hadolint on every Dockerfile, zizmor (offline)
on every workflow in .github/workflows/, and the chart workflow's shape."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from chartlib import REPO, Render, run, tool

DOCKERFILES = sorted(
    p for p in (REPO / "images").rglob("Dockerfile*") if not p.name.endswith(".dockerignore")
)
WORKFLOWS = REPO / ".github" / "workflows"


@pytest.fixture(scope="module")
def checkov_report(
    renders: dict[str, Render], tmp_path_factory: pytest.TempPathFactory
) -> list[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("checkov")
    for r in renders.values():
        shutil.copy(r.path, folder / r.path.name)
    proc = run([tool("checkov"), "-d", str(folder), "--framework", "kubernetes", "--skip-download", "--quiet",
                "--compact", "-o", "json"])  # fmt: skip
    assert proc.stdout.strip(), proc.stderr
    report = json.loads(proc.stdout)
    return report if isinstance(report, list) else [report]


def test_checkov_passes_on_every_scenario(checkov_report: list[dict[str, Any]]) -> None:
    summary = checkov_report[0]["summary"]
    assert summary["parsing_errors"] == 0
    assert summary["resource_count"] > 50
    failed = [
        f"{c['check_id']} {c['resource']} ({Path(c['file_path']).name}): {c['check_name']}"
        for r in checkov_report
        for c in r["results"].get("failed_checks", [])
    ]
    assert not failed, "\n".join(failed)


def test_checkov_skips_are_justified(
    checkov_report: list[dict[str, Any]], renders: dict[str, Render]
) -> None:
    skipped = [c for r in checkov_report for c in r["results"].get("skipped_checks", [])]
    for check in skipped:
        comment = check.get("check_result", {}).get("suppress_comment", "")
        assert len(comment) > 20, f"{check['check_id']} on {check['resource']} skipped without a reason"
    # and in the templates: every checkov.io/skip annotation carries "CHECK=reason"
    for r in renders.values():
        for obj in r.objects:
            for key, value in obj["metadata"].get("annotations", {}).items():
                if key.startswith("checkov.io/skip"):
                    assert re.fullmatch(r"CKV2?_K8S_\d+=.{20,}", value), f"{obj['metadata']['name']}: {value}"


def test_every_dockerfile_exists_and_passes_hadolint() -> None:
    names = {p.relative_to(REPO).as_posix() for p in DOCKERFILES}
    assert {"images/gateway/Dockerfile", "images/triton/Dockerfile", "images/triton/Dockerfile.vllm"} <= names
    proc = run([tool("hadolint"), "--no-color", *map(str, DOCKERFILES)])
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_dockerfile_hygiene(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("# hadolint ignore="):
            reason = lines[i - 1]
            assert re.match(r"# (?!hadolint)\S", reason), (
                f"{dockerfile.name}:{i + 1}: give the ignore a reason above"
            )
        if line.startswith("FROM "):
            image = line.split()[1]
            if arg := re.fullmatch(r"\$\{(\w+)\}", image):  # a base given as a build ARG: its default
                default = re.search(rf"^ARG {arg.group(1)}=(\S+)$", text, re.M)
                assert default, f"{dockerfile.name}: FROM {image} without an ARG default"
                image = default.group(1)
            assert re.search(r":[0-9][\w.-]*$|@sha256:[a-f0-9]{64}$", image), f"unpinned base {image}"
    assert re.search(r"^USER 10001", text, re.M), "runs as the non-root UID 10001"
    assert "HEALTHCHECK" in text


def test_gateway_image_contract() -> None:
    text = (REPO / "images" / "gateway" / "Dockerfile").read_text()
    assert re.search(r"^ARG NODE_BASE=node:\S+$", text, re.M)  # the UI stage
    assert re.search(r"^ARG PYTHON_BASE=python:3\.11\.\d+-slim-bookworm$", text, re.M)
    assert "COPY ui/ ./ui/" in text  # the UI export is built into the image
    assert "pip install --no-deps --no-build-isolation /src" in text  # dependencies: gateway.lock
    assert "--require-hashes -r /requirements/build.lock -r /requirements/gateway.lock" in text
    # Sources are COPYed: buildah's layer cache ignores a bind mount's content, so a RUN on the
    # mounted context would be reused after the sources change (a stale gateway once passed here).
    assert "--mount=type=bind" not in text
    assert 'ENTRYPOINT ["voicebot"]' in text
    assert "VOICEBOT_HOST=0.0.0.0" in text
    assert "VOICEBOT_PORT=8080" in text


def test_triton_image_contract() -> None:
    plain = (REPO / "images" / "triton" / "Dockerfile").read_text()
    vllm = (REPO / "images" / "triton" / "Dockerfile.vllm").read_text()
    assert re.search(r"^ARG TRITON_BASE=nvcr\.io/nvidia/tritonserver:\d\d\.\d\d-py3$", plain, re.M)
    assert re.search(r"^ARG TRITON_BASE=nvcr\.io/nvidia/tritonserver:\d\d\.\d\d-vllm-python-py3$", vllm, re.M)
    assert "images/triton/models /opt/voicebot/models" in plain
    assert "images/triton/models-vllm /opt/voicebot/models-vllm" in vllm
    assert "--require-hashes -r /requirements/triton.lock" in plain  # requirements/models.txt, locked
    assert "--require-hashes -r /requirements/models-vllm.lock" in vllm
    for text in (plain, vllm):
        assert re.search(r"^FROM \$\{TRITON_BASE\}$", text, re.M)
        assert "VOICEBOT_WEIGHTS_DIR=/weights" in text
        assert "EXPOSE 8000 8001 8002" in text


def test_zizmor_offline_on_every_workflow() -> None:
    files = sorted(WORKFLOWS.glob("*.y*ml"))
    assert {"chart.yml", "images.yml"} <= {f.name for f in files}
    proc = run([tool("zizmor"), "--offline", "--no-progress", "--format", "plain", *map(str, files)])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_chart_workflow_installs_into_kind_and_runs_helm_test() -> None:
    wf = yaml.safe_load((WORKFLOWS / "chart.yml").read_text())
    steps = [s for job in wf["jobs"].values() for s in job["steps"]]
    text = json.dumps(steps)
    assert "make test-chart" in text
    assert "ct lint" in text
    assert "ct install" in text  # chart-testing runs `helm test` after installing
    assert "helm/kind-action@" in text
    for step in steps:
        if "uses" in step:
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", step["uses"]), (
                f"pin {step['uses']} by commit"
            )
    assert wf["permissions"] == {"contents": "read"}


def test_images_workflow_builds_every_image() -> None:
    wf = yaml.safe_load((WORKFLOWS / "images.yml").read_text())
    matrix = wf["jobs"]["build"]["strategy"]["matrix"]["include"]
    assert {m["dockerfile"] for m in matrix} == {p.relative_to(REPO).as_posix() for p in DOCKERFILES}
