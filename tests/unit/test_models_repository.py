"""The Triton model repositories: the CPU one and the GPU/vLLM overlay agree on every tensor, every
parameter a model reads is set in its config, and the vLLM engine points at the manifest's volume path."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from voicebot_models.manifest import load_manifest

ROOT = Path(__file__).resolve().parents[2] / "images" / "triton"
CPU = ROOT / "models"
GPU = ROOT / "models-vllm"
PYTHON_MODELS = ["asr", "embed", "tts"]


def _block(config: str, name: str) -> str:
    """The text of a top-level `name [ ... ]` section."""
    match = re.search(rf"^{name} \[\n(.*?)^\]", config, flags=re.S | re.M)
    assert match, f"no {name} section"
    return match.group(1)


def _parameters(config: str) -> dict[str, str]:
    return dict(re.findall(r'key: "([^"]+)", value: \{ string_value: "([^"]*)" \}', config))


@pytest.mark.parametrize("model", PYTHON_MODELS)
def test_gpu_configs_keep_the_cpu_tensor_contract(model: str) -> None:
    cpu = (CPU / model / "config.pbtxt").read_text()
    gpu = (GPU / model / "config.pbtxt").read_text()
    for section in ("input", "output"):
        assert _block(gpu, section) == _block(cpu, section), f"{model}: {section} differs"
    for line in ("max_batch_size", "model_transaction_policy", "control_input"):
        assert [x for x in cpu.splitlines() if line in x] == [x for x in gpu.splitlines() if line in x]
    assert "KIND_GPU" in gpu
    assert set(_parameters(gpu)) == set(_parameters(cpu))


@pytest.mark.parametrize("model", ["asr", "embed", "llm", "tts"])
def test_every_parameter_a_model_reads_is_set_in_its_config(model: str) -> None:
    code = (CPU / model / "1" / "model.py").read_text()
    read = set(re.findall(r'params\.get_\w+\("([^"]+)"', code))
    assert read, model
    assert read <= set(_parameters((CPU / model / "config.pbtxt").read_text()))


def test_contract_tensor_names_and_types() -> None:
    """The names and types the gateway and ingest code against (docs/models.md)."""
    expected = {
        "asr": [
            '"audio", data_type: TYPE_INT16, dims: [ -1 ]',
            '"transcript", data_type: TYPE_STRING',
            '"is_final", data_type: TYPE_BOOL',
            '"segments", data_type: TYPE_STRING',
            "CONTROL_SEQUENCE_CORRID, data_type: TYPE_UINT64",
        ],
        "embed": [
            '"text", data_type: TYPE_STRING, dims: [ 1 ]',
            '"embedding", data_type: TYPE_FP32, dims: [ 384 ]',
            "max_batch_size: 64",
        ],
        "llm": [
            '"text_input", data_type: TYPE_STRING',
            '"stream", data_type: TYPE_BOOL',
            '"sampling_parameters", data_type: TYPE_STRING',
            '"text_output", data_type: TYPE_STRING, dims: [ -1 ]',
            "decoupled: true",
        ],
        "tts": [
            '"text", data_type: TYPE_STRING',
            '"audio", data_type: TYPE_INT16, dims: [ -1 ]',
            '"sample_rate", data_type: TYPE_INT32',
            "decoupled: true",
        ],
    }
    for model, needles in expected.items():
        config = (CPU / model / "config.pbtxt").read_text()
        for needle in needles:
            assert needle in config, f"{model}: {needle}"


def test_vllm_engine_reads_the_gpu_profile_weights_from_the_volume() -> None:
    engine = json.loads((GPU / "llm" / "1" / "model.json").read_text())
    manifest = load_manifest()
    entry = manifest.entry(manifest.profile("gpu").llm)
    assert engine["model"] == f"/weights/{entry.volume_path}"
    assert entry.hub is not None
    assert 'backend: "vllm"' in (GPU / "llm" / "config.pbtxt").read_text()
