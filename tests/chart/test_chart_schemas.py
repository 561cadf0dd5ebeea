"""Every rendered object against its schema: Kubernetes 1.29-1.33 (strict) and the custom resources."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from chartlib import CRD_SCHEMAS, Obj, Render, run, tool

K8S_VERSIONS = ["1.29.0", "1.30.0", "1.31.0", "1.32.0", "1.33.0"]
CUSTOM_GROUPS = ("monitoring.coreos.com/", "keda.sh/", "serving.kserve.io/", "cert-manager.io/")

# Runs inside the static-checker venv: one process validates every object for every version.
VALIDATE = """
import json, sys, yaml, kubernetes_validate as kv
docs = [d for f in sys.argv[2:] for d in yaml.safe_load_all(open(f)) if d]
out = []
for version in sys.argv[1].split(","):
    for d in docs:
        where = f"{version} {d['kind']}/{d['metadata']['name']}"
        try:
            kv.validate(d, version, strict=True)
            out.append({"where": where, "result": "ok", "custom": False})
        except kv.SchemaNotFoundError:
            out.append({"where": where, "result": "no-schema", "custom": True, "apiVersion": d["apiVersion"]})
        except kv.ValidationError as e:
            out.append({"where": where, "result": f"{e.message} at {list(e.path)}", "custom": False})
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def k8s_results(renders: dict[str, Render]) -> list[dict[str, Any]]:
    files = [str(r.path) for r in renders.values()]
    proc = run([tool("python"), "-c", VALIDATE, ",".join(K8S_VERSIONS), *files])
    assert proc.returncode == 0, proc.stderr
    return list(json.loads(proc.stdout))


def test_builtin_objects_pass_kubernetes_validate_strict(k8s_results: list[dict[str, Any]]) -> None:
    failures = [f"{r['where']}: {r['result']}" for r in k8s_results if r["result"] not in ("ok", "no-schema")]
    assert not failures, "\n".join(failures)
    assert sum(r["result"] == "ok" for r in k8s_results) > 100


def test_only_custom_resources_lack_a_kubernetes_schema(k8s_results: list[dict[str, Any]]) -> None:
    unknown = [
        r for r in k8s_results if r["result"] == "no-schema" and not r["apiVersion"].startswith(CUSTOM_GROUPS)
    ]
    assert not unknown


def _schema_for(obj: Obj) -> dict[str, Any]:
    path: Path = CRD_SCHEMAS / obj["apiVersion"].replace("/", "_") / f"{obj['kind']}.json"
    assert path.exists(), (
        f"no schema for {obj['apiVersion']} {obj['kind']}: run scripts/install-chart-tools.sh"
    )
    return dict(json.loads(path.read_text()))


def _errors(obj: Obj) -> list[str]:
    validator = jsonschema.Draft202012Validator(_schema_for(obj))
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)]


def custom_resources(renders: dict[str, Render]) -> list[tuple[str, Obj]]:
    return [
        (s, o) for s, r in renders.items() for o in r.objects if o["apiVersion"].startswith(CUSTOM_GROUPS)
    ]


def test_custom_resources_pass_their_crd_schemas(renders: dict[str, Render]) -> None:
    crs = custom_resources(renders)
    kinds = {o["kind"] for _, o in crs}
    assert {
        "ServiceMonitor",
        "PodMonitor",
        "PrometheusRule",
        "ScaledObject",
        "ServingRuntime",
        "InferenceService",
    } <= kinds
    failures = [f"{s} {o['kind']}/{o['metadata']['name']}: {err}" for s, o in crs for err in _errors(o)]
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(
    ("kind", "mutate"),
    [
        ("ScaledObject", lambda o: o["spec"].update(minReplicaCounts=1)),
        ("ServiceMonitor", lambda o: o["spec"]["endpoints"][0].update(intervall="30s")),
        ("PrometheusRule", lambda o: o["spec"]["groups"][0]["rules"][0].update(alertname="x")),
        ("ServingRuntime", lambda o: o["spec"]["containers"][0].update(imagee="x")),
        ("InferenceService", lambda o: o["spec"]["predictor"].update(nodeSelectors={})),
        ("InferenceService", lambda o: o["spec"]["predictor"]["model"].pop("modelFormat")),
    ],
)
def test_crd_schemas_catch_typos(renders: dict[str, Render], kind: str, mutate: Any) -> None:
    obj = copy.deepcopy(next(o for _, o in custom_resources(renders) if o["kind"] == kind))
    assert not _errors(obj)
    mutate(obj)
    assert _errors(obj), f"a broken {kind} passed its schema"
