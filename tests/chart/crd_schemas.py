"""Build strict JSON schemas for the custom resources the chart renders, offline.

Run by scripts/install-chart-tools.sh with the static-checker venv (.tools/venv), which holds the
sources: the cloudcoil models (pydantic, generated from the cert-manager, Prometheus Operator and
KEDA CRDs) and the KServe SDK's OpenAPI models (a wheel unpacked under .tools/kserve), with the
Kubernetes core definitions that kubernetes-validate bundles. Every object schema gets
`additionalProperties: false` where the CRD lists its properties, so a misspelt field fails
(strict, like `kubernetes-validate --strict`). Output: OUT/<group>_<version>/<Kind>.json.

Usage: crd_schemas.py OUT_DIR KSERVE_SRC_DIR
"""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path
from typing import Any

CLOUDCOIL_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): (
        "cloudcoil.models.prometheus_operator.v1",
        "ServiceMonitor",
    ),
    ("monitoring.coreos.com/v1", "PodMonitor"): ("cloudcoil.models.prometheus_operator.v1", "PodMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"): (
        "cloudcoil.models.prometheus_operator.v1",
        "PrometheusRule",
    ),
    ("keda.sh/v1alpha1", "ScaledObject"): ("cloudcoil.models.keda.v1alpha1", "ScaledObject"),
    ("cert-manager.io/v1", "Certificate"): ("cloudcoil.models.cert_manager.v1", "Certificate"),
    ("cert-manager.io/v1", "Issuer"): ("cloudcoil.models.cert_manager.v1", "Issuer"),
    ("cert-manager.io/v1", "ClusterIssuer"): ("cloudcoil.models.cert_manager.v1", "ClusterIssuer"),
}
KSERVE_KINDS = {
    ("serving.kserve.io/v1alpha1", "ServingRuntime"): "V1alpha1ServingRuntime",
    ("serving.kserve.io/v1beta1", "InferenceService"): "V1beta1InferenceService",
}
K8S_VERSION = "1.33.0"


def _strict(node: Any) -> None:
    """additionalProperties: false on every object schema that lists its properties."""
    if isinstance(node, dict):
        if "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for value in node.values():
            _strict(value)
    elif isinstance(node, list):
        for value in node:
            _strict(value)


def _out_path(out: Path, api_version: str, kind: str) -> Path:
    return out / api_version.replace("/", "_") / f"{kind}.json"


def build_cloudcoil(out: Path) -> None:
    import importlib

    for (api_version, kind), (module, cls) in CLOUDCOIL_KINDS.items():
        model = getattr(importlib.import_module(module), cls)
        schema = model.model_json_schema(by_alias=True, mode="validation")
        _strict(schema)
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        path = _out_path(out, api_version, kind)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(schema))


def _k8s_definitions() -> dict[str, Any]:
    import kubernetes_validate

    base = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    data = json.loads((base / f"v{K8S_VERSION}-local-strict" / "_definitions.json").read_text())
    return dict(data["$defs"])


def _parse_kserve_models(src: Path) -> dict[str, dict[str, Any]]:
    """{ClassName: {"types": {attr: type}, "map": {attr: jsonKey}, "required": {attr}}}."""
    models: dict[str, dict[str, Any]] = {}
    for file in sorted((src / "kserve" / "models").glob("*.py")):
        tree = ast.parse(file.read_text())
        for node in tree.body:
            if not isinstance(node, ast.ClassDef):
                continue
            info: dict[str, Any] = {"types": {}, "map": {}, "required": set()}
            for stmt in node.body:
                if isinstance(stmt, ast.Assign) and isinstance(stmt.targets[0], ast.Name):
                    name = stmt.targets[0].id
                    if name in ("openapi_types", "attribute_map") and isinstance(stmt.value, ast.Dict):
                        info["types" if name == "openapi_types" else "map"] = ast.literal_eval(stmt.value)
            source = ast.get_source_segment(file.read_text(), node) or ""
            info["required"] = set(re.findall(r"Invalid value for `(\w+)`, must not be `None`", source))
            if info["types"]:
                models[node.name] = info
    return models


def _k8s_ref(name: str, k8s: dict[str, Any]) -> str | None:
    short = re.sub(r"^.*?V\d+(alpha\d+|beta\d+)?(?=[A-Z])", "", name)
    for prefix in ("io.k8s.api.core.v1.", "io.k8s.apimachinery.pkg.apis.meta.v1.", "io.k8s.api."):
        hits = [key for key in k8s if key.startswith(prefix) and key.endswith("." + short)]
        if hits:
            return sorted(hits, key=len)[0]
    return None


def build_kserve(out: Path, src: Path) -> None:
    k8s = _k8s_definitions()
    models = _parse_kserve_models(src)
    defs: dict[str, Any] = dict(k8s)

    def type_schema(spec: str) -> dict[str, Any]:
        spec = spec.strip()
        if m := re.fullmatch(r"list\[(.+)\]", spec):
            return {"type": "array", "items": type_schema(m.group(1))}
        if m := re.fullmatch(r"dict\(str, (.+)\)", spec):
            return {"type": "object", "additionalProperties": type_schema(m.group(1))}
        simple = {
            "str": {"type": "string"},
            "int": {"type": "integer"},
            "float": {"type": "number"},
            "bool": {"type": "boolean"},
            "datetime": {"type": "string"},
            "date": {"type": "string"},
            "object": {},
            "ResourceQuantity": {"type": ["string", "integer", "number"]},
        }
        if spec in simple:
            return simple[spec]
        if spec in models:
            add_model(spec)
            return {"$ref": f"#/$defs/kserve.{spec}"}
        ref = _k8s_ref(spec, k8s)
        if ref is None:
            # The SDK names a few classes it does not ship (e.g. V1alpha1WorkerSpec): accept any
            # value there rather than guess, and say so.
            print(f"    note: KServe SDK type {spec} is not shipped; left open in the schema")
            return {}
        return {"$ref": f"#/$defs/{ref}"}

    def add_model(name: str) -> None:
        key = f"kserve.{name}"
        if key in defs:
            return
        info = models[name]
        defs[key] = {}  # placeholder against recursion
        props = {info["map"][attr]: type_schema(t) for attr, t in info["types"].items()}
        schema: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
        required = sorted(info["map"][attr] for attr in info["required"] if attr in info["map"])
        if required:
            schema["required"] = required
        defs[key] = schema

    for (api_version, kind), cls in KSERVE_KINDS.items():
        if cls not in models:
            raise SystemExit(f"{cls} missing from the KServe SDK under {src}")
        add_model(cls)
        root = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$ref": f"#/$defs/kserve.{cls}",
            "$defs": defs,
        }
        path = _out_path(out, api_version, kind)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(root))


def main(argv: list[str]) -> int:
    out, kserve_src = Path(argv[1]), Path(argv[2])
    build_cloudcoil(out)
    build_kserve(out, kserve_src)
    print(f"==> CRD schemas written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
