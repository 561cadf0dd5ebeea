"""Contracts between parts of the repo written in different languages, checked from both sides.

The chart (charts/voicebot) and the Terraform modules (terraform/) agree on these; the chart tier
and the infra tier import them from here so that a change is made once.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

# The chart's default Triton scheduling; the GPU node group carries the matching label and taint.
TRITON_SCHEDULING: dict[str, Any] = {
    "nodeSelector": {"voicebot.dev/node-pool": "gpu"},
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
}

# The chart values the Terraform platform module may set (terraform/modules/platform/values.tf).
PLATFORM_CHART_VALUES = frozenset(
    {
        "gateway.ingress.enabled",
        "gateway.ingress.host",
        "gateway.ingress.className",
        "gateway.ingress.tls.clusterIssuer",
        "gateway.replicas",
        "gateway.autoscaling.enabled",
        "triton.autoscaling.enabled",
        "triton.autoscaling.mode",
        "metrics.serviceMonitor.enabled",
        "metrics.prometheusRule.enabled",
        "metrics.grafanaDashboard.enabled",
        "postgres.enabled",
        "postgres.external.existingSecret",
        "secrets.existingSecret",
        "models.profile",
        "models.fetch.hubTokenSecret",
        "models.weights.storageClassName",
        "models.weights.accessModes",
    }
)


# KServe finds the model-server container of a ServingRuntime / predictor by this name
# (constants.InferenceServiceContainerName in kserve/pkg/constants); its CRD schema does not say so.
KSERVE_CONTAINER_NAME = "kserve-container"

# ---- models: the weights manifest, the model repositories and the images that serve them ----------

# The weights manifest the Triton models read (profiles and weights entries).
MODEL_MANIFEST = REPO / "images" / "triton" / "voicebot_models" / "manifest.toml"

# Each model repository an image serves (its path inside the image) and the folders of this repo
# it is built from: the base first, then overlays copied over it (images/triton/Dockerfile*).
MODEL_REPOSITORIES: dict[str, tuple[str, ...]] = {
    "/opt/voicebot/models": ("images/triton/models",),
    "/opt/voicebot/models-vllm": ("images/triton/models", "images/triton/models-vllm"),
}

# The weights formats each Triton backend of the `llm` model loads: the Python backend runs
# llama.cpp (GGUF files), the vLLM backend a Hugging Face transformers folder.
LLM_BACKEND_FORMATS: dict[str, frozenset[str]] = {
    "python": frozenset({"gguf"}),
    "vllm": frozenset({"hf-transformers"}),
}


def model_manifest() -> dict[str, Any]:
    """The decoded weights manifest (read as TOML, so no tier needs the model code installed)."""
    return tomllib.loads(MODEL_MANIFEST.read_text(encoding="utf-8"))


def model_profiles() -> list[str]:
    """The profile names of the manifest, sorted."""
    return sorted(model_manifest()["profiles"])


def llm_backend(model_repository: str) -> str:
    """The `backend` of the `llm` model in a model repository (the last overlay that defines it)."""
    backend = ""
    for folder in MODEL_REPOSITORIES[model_repository]:
        config = REPO / folder / "llm" / "config.pbtxt"
        if config.is_file():
            found = re.search(r'^backend:\s*"([^"]+)"', config.read_text(encoding="utf-8"), re.MULTILINE)
            assert found, f"{config} names no backend"
            backend = found.group(1)
    return backend


def profile_llm_format(profile: str) -> str:
    """The weights format of a profile's LLM."""
    manifest = model_manifest()
    return str(manifest["weights"][manifest["profiles"][profile]["llm"]]["format"])


def profile_fits_repository(profile: str, model_repository: str) -> str | None:
    """Why a profile cannot run on a model repository, or None when it can."""
    if profile not in model_manifest()["profiles"]:
        return f"profile {profile!r} is not in {MODEL_MANIFEST.relative_to(REPO)} ({model_profiles()})"
    if model_repository not in MODEL_REPOSITORIES:
        return f"model repository {model_repository!r} is none of {sorted(MODEL_REPOSITORIES)}"
    backend, fmt = llm_backend(model_repository), profile_llm_format(profile)
    if fmt not in LLM_BACKEND_FORMATS[backend]:
        return (
            f"profile {profile!r} has an LLM in format {fmt!r}, which the {backend!r} backend of "
            f"{model_repository} cannot load ({sorted(LLM_BACKEND_FORMATS[backend])})"
        )
    return None


def chart_profiles() -> dict[str, Any]:
    """What the chart must know of the manifest to refuse a broken install (charts/voicebot/files/
    profiles.json, written by scripts/sync-chart-profiles.py): per profile, the LLM's weights format
    and whether a hub repository it fetches is gated (needs a token); per model repository, the
    formats its `llm` backend loads."""
    manifest = model_manifest()
    profiles: dict[str, Any] = {}
    for name, profile in sorted(manifest["profiles"].items()):
        ids = [profile["asr"], profile["llm"], profile["embed"], *profile["tts"]]
        gated = sorted(
            manifest["weights"][i]["hub"]["repo"]
            for i in ids
            if manifest["weights"][i].get("hub", {}).get("gated")
        )
        profiles[name] = {"llmFormat": profile_llm_format(name), "gatedRepos": gated}
    repositories = {
        path: sorted(LLM_BACKEND_FORMATS[llm_backend(path)]) for path in sorted(MODEL_REPOSITORIES)
    }
    return {"profiles": profiles, "modelRepositories": repositories}


# ---- GPU memory: what the default GPU install puts on one GPU (docs/terraform.md, "GPU memory") ----

# Memory of the GPU of each EC2 GPU family the Terraform module accepts, GiB (one GPU per node).
GPU_MEMORY_GIB: dict[str, float] = {
    "g4dn": 16,  # T4
    "g5": 24,  # A10G
    "g6": 24,  # L4
    "g6e": 48,  # L40S
    "p4d": 40,  # A100 40 GB
    "p4de": 80,  # A100 80 GB
    "p5": 80,  # H100
}
# One Triton instance of each Python-backend model of the vLLM repository on a GPU, GiB: its CUDA
# context (about 0.5) plus weights and working memory (distil-Whisper large-v3 fp16 with beam 5;
# MiniLM; Piper medium), rounded up. vLLM takes `gpu_memory_utilization` of the whole GPU.
MODEL_INSTANCE_GPU_GIB: dict[str, float] = {"asr": 2.5, "embed": 0.6, "tts": 0.8}
GPU_HEADROOM_GIB = 1.0  # fragmentation, the driver, a second context during a model reload
