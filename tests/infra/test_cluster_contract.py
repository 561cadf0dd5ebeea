"""The Terraform cluster gives the chart's defaults what they need: a GPU whose memory holds the
default GPU profile, NetworkPolicy enforcement, the RuntimeClass the chart names, and a
ReadWriteMany storage class for the weights that every Triton replica mounts."""

from __future__ import annotations

import json
import re
from typing import Any

import yaml
from test_terraform import EXAMPLES, GPU_CLUSTER, PLATFORM, expression, load, root_blocks, unquote

from tests.contracts import GPU_HEADROOM_GIB, GPU_MEMORY_GIB, MODEL_INSTANCE_GPU_GIB, REPO

VLLM_REPOSITORY = REPO / "images" / "triton" / "models-vllm"
CHART_VALUES = REPO / "charts" / "voicebot" / "values.yaml"
EXAMPLE = EXAMPLES[0]


def _gpu_instance_types() -> set[str]:
    """The GPU instance types the module and the example provision by default."""
    module_type = expression(root_blocks(GPU_CLUSTER, "variable")["gpu_node_group"]["type"])
    found = set(re.findall(r"instance_types\s*=\s*optional\(list\(string\),\s*\[([^\]]*)\]", module_type))
    types = {t.strip().strip('"') for group in found for t in group.split(",")}
    example = root_blocks(EXAMPLE, "variable")["gpu_instance_types"]["default"]
    return types | {unquote(t) for t in example}


def _gpu_instances(model: str) -> int:
    config = (VLLM_REPOSITORY / model / "config.pbtxt").read_text()
    return sum(int(c) for c in re.findall(r"kind:\s*KIND_GPU,\s*count:\s*(\d+)", config))


def gpu_budget_gib() -> dict[str, float]:
    """What the default GPU install (the vLLM repository) asks of one GPU, per consumer, GiB."""
    vllm = json.loads((VLLM_REPOSITORY / "llm" / "1" / "model.json").read_text())
    budget = {m: _gpu_instances(m) * MODEL_INSTANCE_GPU_GIB[m] for m in MODEL_INSTANCE_GPU_GIB}
    budget["headroom"] = GPU_HEADROOM_GIB
    return {**budget, "vllm_fraction": float(vllm["gpu_memory_utilization"])}


def test_default_gpu_profile_fits_the_gpu_terraform_provisions() -> None:
    budget = gpu_budget_gib()
    fraction = budget.pop("vllm_fraction")
    others = sum(budget.values())
    assert others > 3, budget  # the instance counts were read
    types = _gpu_instance_types()
    assert types
    for instance_type in types:
        family = instance_type.split(".")[0]
        memory = GPU_MEMORY_GIB[family]
        used = fraction * memory + others
        assert used <= memory, (
            f"{instance_type} ({memory} GiB): vLLM {fraction:.2f} x {memory} + {others:.1f} GiB for asr, "
            f"embed, tts and headroom = {used:.1f} GiB; pick a larger GPU or lower gpu_memory_utilization"
        )


def test_the_budget_check_refuses_a_24_gib_gpu() -> None:
    """The check above can fail: the previous default (g5, one 24 GiB A10G) does not hold it."""
    budget = gpu_budget_gib()
    fraction = budget.pop("vllm_fraction")
    assert fraction * GPU_MEMORY_GIB["g5"] + sum(budget.values()) > GPU_MEMORY_GIB["g5"]


def test_vpc_cni_enforces_network_policies() -> None:
    eks = root_blocks(GPU_CLUSTER, "module")["eks"]
    vpc_cni = eks["cluster_addons"]["vpc-cni"]
    config = expression(vpc_cni.get("configuration_values", ""))
    assert re.search(r'enableNetworkPolicy\s*=\s*"true"', config), config


def test_the_chart_runtime_class_exists_on_the_cluster() -> None:
    """Pods naming a RuntimeClass that nothing created are refused at admission."""
    name = yaml.safe_load(CHART_VALUES.read_text())["triton"]["runtimeClassName"]
    if not name:
        return  # the node's default runtime: the EKS NVIDIA AMIs make it the NVIDIA one
    created: set[str] = set()
    for tf in sorted((REPO / "terraform").rglob("*.tf")):
        for block in load(tf).get("resource", []):
            for kind, instances in block.items():
                if unquote(kind) in ("kubernetes_runtime_class_v1", "kubernetes_runtime_class"):
                    for body in instances.values():
                        created.add(unquote(body["metadata"][0]["name"]))
    assert name in created, f"the chart defaults to runtimeClassName {name!r}, which terraform/ never creates"


def _resources(root: Any, kind: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for tf in sorted(root.glob("*.tf")):
        for block in load(tf).get("resource", []):
            if kind in {unquote(k) for k in block}:
                found.update(block[next(k for k in block if unquote(k) == kind)])
    return found


def test_the_example_gives_the_weights_a_read_write_many_storage_class() -> None:
    classes = _resources(EXAMPLE, "kubernetes_storage_class_v1")
    efs = [
        unquote(name)
        for name, body in classes.items()
        if unquote(body["storage_provisioner"]) == "efs.csi.aws.com"
    ]
    assert efs, "no EFS (ReadWriteMany) StorageClass in the example"
    platform = root_blocks(EXAMPLE, "module")["platform"]
    assert (
        expression(platform["weights_storage_class_name"])
        == f"kubernetes_storage_class_v1.{efs[0]}.metadata[0].name"
    )
    cluster = root_blocks(GPU_CLUSTER, "module")["eks"]["cluster_addons"]
    assert "aws-efs-csi-driver" in cluster
    assert _resources(GPU_CLUSTER, "aws_efs_mount_target")
    assert "weights_storage_class_name" in root_blocks(PLATFORM, "variable")
