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


# ---- the voice protocol: orchestrator/protocol.py (its JSON Schema) ↔ ui/lib/protocol.ts, docs/protocol.md

UI_PROTOCOL = REPO / "ui" / "lib" / "protocol.ts"
PROTOCOL_DOC = REPO / "docs" / "protocol.md"
_TS_BLOCK_COMMENT = re.compile(r"/\*.*?\*/", re.DOTALL)
_TS_LINE_COMMENT = re.compile(r"(^|\s)//[^\n]*")
_TS_FIELD = re.compile(r"^(?P<name>\w+)(?P<optional>\?)?\s*:\s*(?P<type>.+)$", re.DOTALL)


def _ts_source() -> str:
    text = UI_PROTOCOL.read_text(encoding="utf-8")
    return _TS_LINE_COMMENT.sub(r"\1", _TS_BLOCK_COMMENT.sub("", text))


def _split_top(text: str, separators: str) -> list[str]:
    """`text` split at the `separators` that are outside braces, brackets and parentheses."""
    parts, depth, current = [], 0, []
    for char in text:
        depth += (char in "{[(" and 1) or 0
        depth -= (char in "}])" and 1) or 0
        if depth == 0 and char in separators:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    parts.append("".join(current).strip())
    return [p for p in parts if p]


def _ts_fields(body: str) -> dict[str, tuple[bool, str]]:
    """`name?: type; …` → {name: (optional, type)}."""
    fields = {}
    for member in _split_top(body, ";\n"):
        match = _TS_FIELD.match(member)
        assert match, f"cannot read the TypeScript member {member!r} in {UI_PROTOCOL}"
        fields[match["name"]] = (bool(match["optional"]), match["type"].strip())
    return fields


def ts_union(name: str) -> dict[str, dict[str, bool]]:
    """The object variants of `export type <name> = | { type: "…"; … } | …;` in ui/lib/protocol.ts:
    each variant's `type` literal → {field: optional}."""
    source = _ts_source()
    start = source.index(f"export type {name} =") + len(f"export type {name} =")
    end = start
    depth = 0
    while depth or source[end] != ";":  # the `;` that ends the declaration
        depth += {"{": 1, "}": -1}.get(source[end], 0)
        end += 1
    variants: dict[str, dict[str, bool]] = {}
    for variant in _split_top(source[start:end], "|"):
        assert variant[0] + variant[-1] == "{}", f"{name}: not an object type: {variant!r}"
        fields = _ts_fields(variant[1:-1])
        literal = fields.pop("type")[1]
        assert re.fullmatch(r'"[\w.]+"', literal), f"{name}: a variant's type is not one literal: {literal}"
        variants[literal.strip('"')] = {field: optional for field, (optional, _) in fields.items()}
    return variants


def ts_interface(name: str) -> dict[str, bool]:
    """`export interface <name> { … }` in ui/lib/protocol.ts: {field: optional}."""
    source = _ts_source()
    match = re.search(rf"export interface {name} \{{(?P<body>[^}}]*)\}}", source)
    assert match, f"no interface {name} in {UI_PROTOCOL}"
    return {field: optional for field, (optional, _) in _ts_fields(match["body"]).items()}


def ts_string_union(name: str) -> set[str]:
    """`export type <name> = "a" | "b";` → {"a", "b"}."""
    source = _ts_source()
    match = re.search(rf"export type {name} =(?P<body>[^;]*);", source)
    assert match, f"no type {name} in {UI_PROTOCOL}"
    return set(re.findall(r'"([^"]+)"', match["body"]))


def ts_string_set(name: str) -> set[str]:
    """`const <name> = new Set<string>([...])` → its strings."""
    source = _ts_source()
    match = re.search(rf"const {name} = new Set<string>\(\[(?P<body>[^\]]*)\]\)", source)
    assert match, f"no set {name} in {UI_PROTOCOL}"
    return set(re.findall(r'"([^"]+)"', match["body"]))


def doc_message_table(heading: str) -> dict[str, dict[str, bool]]:
    """The message table under `## <heading>` in docs/protocol.md: each backticked message name →
    {field: optional} from its fields column (`name?` optional; parenthesised notes skipped)."""
    text = PROTOCOL_DOC.read_text(encoding="utf-8")
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n#", 1)[0]
    table: dict[str, dict[str, bool]] = {}
    for line in section.splitlines():
        row = line.replace("\\|", "/")  # an escaped pipe inside a cell
        cells = [c.strip() for c in row.strip().strip("|").split("|")] if row.startswith("| `") else []
        if len(cells) < 2:
            continue
        name = cells[0].strip("`")
        fields_cell = re.sub(r"\([^)]*\)", "", cells[1])
        fields = {}
        for token in re.findall(r"`([^`]+)`", fields_cell):
            field = token.split(":", 1)[0].strip()
            fields[field.rstrip("?")] = field.endswith("?")
        table[name] = fields
    return table
