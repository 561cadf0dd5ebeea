"""What the Triton Dockerfiles bake in agrees with the model manifest and the model repositories."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest

from tests.contracts import REPO, model_manifest, profile_fits_repository

TRITON_DOCKERFILES = sorted(
    p for p in (REPO / "images" / "triton").glob("Dockerfile*") if not p.name.endswith(".dockerignore")
)
PACKAGE = REPO / "images" / "triton" / "pyproject.toml"


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


@pytest.mark.parametrize("dockerfile", TRITON_DOCKERFILES, ids=lambda p: p.name)
def test_triton_images_install_the_model_server_package_with_fetch(dockerfile: Path) -> None:
    """The models import voicebot_models; the model-fetch Job runs this image and needs the hub client."""
    text = dockerfile.read_text()
    # The package's wheel is built here and installed --no-deps; its dependencies with `fetch`
    # (huggingface_hub) are in the image's lock, which scripts/lock.sh compiles with --extra fetch.
    assert re.search(r"--no-deps( \S+\.whl)* /wheels/voicebot_models-\*\.whl", text)
    lock = re.search(r"-r /requirements/(triton|models-vllm)\.lock", text)
    assert lock, f"{dockerfile.name}: installs no lock"
    assert re.search(
        r"^huggingface-hub==", (REPO / "requirements" / f"{lock.group(1)}.lock").read_text(), re.M
    )
    assert "COPY images/triton/voicebot_models " in text
    assert "import sys, voicebot_models, huggingface_hub" in text  # fails the build on the base's Python
    extras = tomllib.loads(PACKAGE.read_text())["project"]["optional-dependencies"]["fetch"]
    assert any(req.startswith("huggingface_hub") for req in extras)


def test_model_server_package_runs_on_the_triton_bases_python() -> None:
    """Triton 24.x bases run the models with Python 3.10: no stdlib newer than that, no syntax either."""
    project = tomllib.loads(PACKAGE.read_text())["project"]
    assert project["requires-python"] == ">=3.10"
    assert "tomli>=2; python_version < '3.11'" in project["dependencies"]
    sources = sorted((PACKAGE.parent / "voicebot_models").glob("*.py")) + sorted(
        (PACKAGE.parent / "models").glob("*/1/model.py")
    )
    assert len(sources) >= 10
    for source in sources:
        tree = ast.parse(source.read_text(), str(source), feature_version=(3, 10))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                for name in names:
                    top = name.split(".")[0]
                    assert top != "orchestrator", f"{source}: the Triton models must not import the gateway"
                    if top == "tomllib":
                        assert "sys.version_info >= (3, 11)" in source.read_text(), f"{source}: bare tomllib"


def test_vllm_image_serves_every_model() -> None:
    """The vLLM image's repository is the base one with the overlay over it: asr, embed, tts keep their code."""
    text = (REPO / "images" / "triton" / "Dockerfile.vllm").read_text()
    assert "COPY --chown=root:root images/triton/models /opt/voicebot/models-vllm" in text
    assert text.index("images/triton/models /opt") < text.index("images/triton/models-vllm /opt")
    for model in ("asr", "embed", "tts"):
        assert (REPO / "images" / "triton" / "models" / model / "1" / "model.py").is_file()
        assert not (REPO / "images" / "triton" / "models-vllm" / model / "1").exists()
