"""Shared helpers of the chart tier: where the tools are, rendering, walking pod templates."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "voicebot"
TOOLS = REPO / ".tools"
TOOL_BIN = TOOLS / "venv" / "bin"
CRD_SCHEMAS = TOOLS / "crd-schemas"
SCENARIOS = sorted(p.name.removesuffix("-values.yaml") for p in (CHART / "ci").glob("*-values.yaml"))
RELEASE = "vb"
NAMESPACE = "voicebot"
PREFIX = f"{RELEASE}-voicebot"
# The custom resources' APIs a cluster with the Prometheus Operator serves; the chart renders its
# monitors and rules only where they exist (.Capabilities), so renders name them like a real cluster.
API_VERSIONS = (
    "--api-versions",
    "monitoring.coreos.com/v1/ServiceMonitor",
    "--api-versions",
    "monitoring.coreos.com/v1/PodMonitor",
    "--api-versions",
    "monitoring.coreos.com/v1/PrometheusRule",
)

Obj = dict[str, Any]


def tool(name: str) -> str:
    """A tool's path: the static-checker venv, .tools/bin, then PATH; missing is an error."""
    for candidate in (TOOL_BIN / name, TOOLS / "bin" / name):
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed: run scripts/install-chart-tools.sh (make tools-chart)")
    return found


def helm_bin() -> str:
    # A helm already on PATH wins over the extracted one (scripts/install-chart-tools.sh).
    return shutil.which("helm") or tool("helm")


def run(argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "HELM_CACHE_HOME": str(TOOLS / "helm-cache"),
        "HELM_CONFIG_HOME": str(TOOLS / "helm"),
    }
    return subprocess.run(argv, capture_output=True, text=True, check=False, env=env, **kw)


def helm_template(*args: str) -> subprocess.CompletedProcess[str]:
    return run([helm_bin(), "template", RELEASE, str(CHART), "--namespace", NAMESPACE, *API_VERSIONS, *args])


@dataclass
class Render:
    """One scenario's `helm template` output."""

    scenario: str
    path: Path
    objects: list[Obj] = field(default_factory=list)

    def of_kind(self, *kinds: str) -> list[Obj]:
        return [o for o in self.objects if o["kind"] in kinds]

    def get(self, kind: str, name: str) -> Obj:
        for o in self.objects:
            if o["kind"] == kind and o["metadata"]["name"] == name:
                return o
        raise KeyError(f"{kind}/{name} not rendered in {self.scenario}")

    def names(self, kind: str) -> set[str]:
        return {o["metadata"]["name"] for o in self.of_kind(kind)}


def pod_templates(obj: Obj) -> list[tuple[str, Obj, Obj]]:
    """(role, pod metadata, pod spec) for every pod an object creates; role says how it runs."""
    kind, spec = obj["kind"], obj.get("spec", {})
    if kind in ("Deployment", "StatefulSet"):
        return [("service", spec["template"]["metadata"], spec["template"]["spec"])]
    if kind == "Job":
        return [("batch", spec["template"]["metadata"], spec["template"]["spec"])]
    if kind == "CronJob":
        tmpl = spec["jobTemplate"]["spec"]["template"]
        return [("batch", tmpl["metadata"], tmpl["spec"])]
    if kind == "Pod":
        return [("batch", obj["metadata"], spec)]
    if kind == "ServingRuntime":
        return [("service", {"labels": {}}, spec)]
    if kind == "InferenceService":
        pred = dict(spec["predictor"])
        return [("predictor", {"labels": pred.get("labels", {})}, pred)]
    return []
