"""The chart names model profiles that exist, on a model repository that can load them.

A profile that the manifest does not define makes the model-fetch Job fail ("unknown model
profile") and Triton wait forever for the weights, or crash-loop in volume mode; a profile whose
LLM is in a format the image's `llm` backend cannot load crash-loops Triton. Both are decided by
values, so both are checked here for every scenario and for the schema that guards user values.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from chartlib import CHART, PREFIX, Render, helm_template

from tests.contracts import (
    MODEL_MANIFEST,
    chart_profiles,
    model_profiles,
    profile_fits_repository,
    profile_llm_format,
)

# A CPU profile (GGUF LLM) from the manifest, so no profile name is written down here.
CPU_PROFILE = next(p for p in model_profiles() if profile_llm_format(p) == "gguf")


def _triton_container(render: Render) -> dict[str, Any]:
    for obj in render.objects:
        if obj["kind"] == "Deployment" and obj["metadata"]["name"] == f"{PREFIX}-triton":
            return dict(obj["spec"]["template"]["spec"]["containers"][0])
        if obj["kind"] == "ServingRuntime":
            return dict(obj["spec"]["containers"][0])
    raise AssertionError(f"no Triton container in {render.scenario}")


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def test_schema_profile_enum_is_the_manifest_profiles() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    enum = schema["properties"]["models"]["properties"]["profile"].get("enum")
    assert enum == model_profiles(), (
        f"values.schema.json models.profile enum {enum} must list the profiles of {MODEL_MANIFEST.name} "
        f"{model_profiles()} (sorted)"
    )


def test_schema_refuses_an_unknown_profile() -> None:
    proc = helm_template("--set", "models.profile=no-such-profile", "--set", "models.fetch.hubTokenSecret=t")
    assert proc.returncode != 0
    assert "/models/profile" in proc.stderr, proc.stderr


def test_every_scenario_profile_exists_and_fits_its_model_repository(render: Render) -> None:
    triton = _triton_container(render)
    profile = _env(triton)["VOICEBOT_MODEL_PROFILE"]
    repository = next(a for a in triton["args"] if a.startswith("--model-repository=")).split("=", 1)[1]
    problem = profile_fits_repository(profile, repository)
    assert problem is None, f"{render.scenario}: {problem}"


def test_model_fetch_job_fetches_the_profile_triton_loads(render: Render) -> None:
    triton_profile = _env(_triton_container(render))["VOICEBOT_MODEL_PROFILE"]
    for job in render.of_kind("Job"):
        if "model-fetch" in job["metadata"]["name"]:
            env = _env(job["spec"]["template"]["spec"]["containers"][0])
            assert env["VOICEBOT_MODEL_PROFILE"] == triton_profile
            assert triton_profile in model_profiles()


TOKEN = ("--set", "models.fetch.hubTokenSecret=hub-token")


@pytest.mark.parametrize(
    ("args", "fits"),
    [
        ([], True),
        (["--set", "triton.modelRepository=/opt/voicebot/models"], False),  # gpu profile on llama.cpp
        (["--set", f"models.profile={CPU_PROFILE}"], False),  # a GGUF model on the vLLM backend
        (
            [
                "--set",
                f"models.profile={CPU_PROFILE}",
                "--set",
                "triton.modelRepository=/opt/voicebot/models",
            ],
            True,
        ),
    ],
)
def test_install_refuses_a_profile_the_model_repository_cannot_load(args: list[str], fits: bool) -> None:
    """The pair is checked at install time (files/profiles.json), the same way as above."""
    proc = helm_template(*TOKEN, *args)
    assert (proc.returncode == 0) == fits, proc.stderr
    if not fits:
        assert "VALUES VALIDATION" in proc.stderr
        assert "triton.modelRepository" in proc.stderr
        return
    objects = [d for d in yaml.safe_load_all(proc.stdout) if d]
    triton = _triton_container(Render("adhoc", CHART, objects))
    repository = next(a for a in triton["args"] if a.startswith("--model-repository=")).split("=", 1)[1]
    assert profile_fits_repository(_env(triton)["VOICEBOT_MODEL_PROFILE"], repository) is None


def test_chart_profile_catalog_is_the_manifest() -> None:
    """charts/voicebot/files/profiles.json is what scripts/sync-chart-profiles.py writes today."""
    written = json.loads((CHART / "files" / "profiles.json").read_text())
    assert written == chart_profiles(), "run scripts/sync-chart-profiles.py"


def test_a_gated_profile_needs_a_hub_token_at_install() -> None:
    gated = [p for p, v in chart_profiles()["profiles"].items() if v["gatedRepos"]]
    assert gated, "no gated profile: this test has nothing to prove"
    proc = helm_template("--set", f"models.profile={gated[0]}")
    assert proc.returncode != 0
    assert "models.fetch.hubTokenSecret: required" in proc.stderr, proc.stderr
    assert helm_template("--set", f"models.profile={gated[0]}", *TOKEN).returncode == 0
    # air-gapped: nothing is fetched, so no token is needed
    assert (
        helm_template(
            "--set",
            f"models.profile={gated[0]}",
            "--set",
            "models.source=volume",
            "--set",
            "models.weights.existingClaim=w",
        ).returncode
        == 0
    )
