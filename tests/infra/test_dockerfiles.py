"""What the Triton Dockerfiles bake in agrees with the model manifest and the model repositories."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.contracts import REPO, model_manifest, profile_fits_repository

TRITON_DOCKERFILES = sorted((REPO / "images" / "triton").glob("Dockerfile*"))


def _env(dockerfile: Path) -> dict[str, str]:
    """ENV settings of the last stage (continuation lines joined)."""
    text = dockerfile.read_text().replace("\\\n", " ")
    last_stage = re.split(r"^FROM .*$", text, flags=re.MULTILINE)[-1]
    env: dict[str, str] = {}
    for line in last_stage.splitlines():
        if line.startswith("ENV "):
            env.update(dict(re.findall(r"(\w+)=(\S+)", line)))
    return env


def _model_repository(dockerfile: Path) -> str:
    found = re.search(r"--model-repository=([^\"\s]+)", dockerfile.read_text())
    assert found, f"{dockerfile.name}: CMD names no --model-repository"
    return found.group(1)


def test_triton_dockerfiles_found() -> None:
    assert {p.name for p in TRITON_DOCKERFILES} >= {"Dockerfile", "Dockerfile.vllm"}


@pytest.mark.parametrize("dockerfile", TRITON_DOCKERFILES, ids=lambda p: p.name)
def test_image_profile_exists_and_fits_the_image_repository(dockerfile: Path) -> None:
    """The profile an image uses without the chart (its ENV, else the manifest default) loads there."""
    profile = _env(dockerfile).get("VOICEBOT_MODEL_PROFILE", model_manifest()["default_profile"])
    problem = profile_fits_repository(profile, _model_repository(dockerfile))
    assert problem is None, f"{dockerfile.name}: {problem}"
