"""Assertions on `helm template` output: lint, pods, selectors, GPU scheduling, scenarios, values."""

from __future__ import annotations

import json
import re
import tomllib
from typing import Any

import pytest
import yaml
from chartlib import (
    CHART,
    NAMESPACE,
    PREFIX,
    RELEASE,
    SCENARIOS,
    Obj,
    Render,
    helm_bin,
    helm_template,
    pod_templates,
    run,
)

from tests.contracts import PLATFORM_CHART_VALUES, REPO, TRITON_SCHEDULING

GPU = "nvidia.com/gpu"
# The default scenario: the chart's defaults plus the one value they require (a hub token Secret).
DEFAULTS = ("-f", str(CHART / "ci" / "default-values.yaml"))
TRITON_CONTAINERS = {"triton", "kserve-container"}
STANDARD_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/version",
    "helm.sh/chart",
)
SELECTOR_KEYS = {"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component"}


def values(scenario: str) -> dict[str, Any]:
    return yaml.safe_load((CHART / "ci" / f"{scenario}-values.yaml").read_text()) or {}


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def containers(spec: Obj) -> list[Obj]:
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def workload_pods(render: Render) -> list[tuple[Obj, Obj, Obj]]:
    """(object, pod metadata, pod spec) for objects that run pods."""
    return [(o, meta, spec) for o in render.objects for _, meta, spec in pod_templates(o)]


# --- lint -----------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_helm_lint_strict(scenario: str) -> None:
    proc = run(
        [helm_bin(), "lint", "--strict", str(CHART), "-f", str(CHART / "ci" / f"{scenario}-values.yaml")]
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_scenario_exists() -> None:
    assert {"default", "production", "kserve", "airgapped"} <= set(SCENARIOS)


# --- pods -----------------------------------------------------------------------------------


def test_every_container_has_resources(render: Render) -> None:
    for obj, _, spec in workload_pods(render):
        for c in containers(spec):
            res = c.get("resources", {})
            for bound in ("requests", "limits"):
                for kind in ("cpu", "memory"):
                    assert kind in res.get(bound, {}), (
                        f"{obj['kind']}/{obj['metadata']['name']} {c['name']}: {bound}.{kind}"
                    )


def test_long_running_containers_have_probes(render: Render) -> None:
    for obj, _, spec in workload_pods(render):
        if obj["kind"] not in ("Deployment", "StatefulSet", "ServingRuntime"):
            continue
        for c in spec.get("containers", []):
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                assert probe in c, f"{obj['kind']}/{obj['metadata']['name']} {c['name']} lacks {probe}"


def test_triton_startup_probe_allows_model_loading(render: Render) -> None:
    for _obj, _, spec in workload_pods(render):
        for c in spec.get("containers", []):
            if c["name"] == "triton":
                probe = c["startupProbe"]
                assert probe["httpGet"]["path"] == "/v2/health/ready"
                assert probe["periodSeconds"] * probe["failureThreshold"] >= 20 * 60


def test_restricted_security_context(render: Render) -> None:
    for obj, _, spec in workload_pods(render):
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["kind"] != "ServingRuntime":  # the pod-level part is in the InferenceService
            psc = spec.get("securityContext", {})
            assert psc.get("runAsNonRoot") is True, where
            assert psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
            assert spec.get("automountServiceAccountToken") is False, where
            assert not any(spec.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")), where
        for c in containers(spec):
            sc = c.get("securityContext", {})
            assert sc.get("runAsNonRoot") is True, f"{where} {c['name']}"
            assert sc.get("runAsUser", 0) > 0, f"{where} {c['name']}"
            assert sc.get("allowPrivilegeEscalation") is False, f"{where} {c['name']}"
            assert sc.get("privileged", False) is False, f"{where} {c['name']}"
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], f"{where} {c['name']}"
            assert not sc.get("capabilities", {}).get("add"), f"{where} {c['name']}"
            assert sc.get("readOnlyRootFilesystem") is True, f"{where} {c['name']}"
            assert sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{where} {c['name']}"


def test_images_are_pinned(render: Render) -> None:
    for _obj, _, spec in workload_pods(render):
        for c in containers(spec):
            image = c["image"]
            assert "@sha256:" in image or re.search(r":[\w.-]+$", image.rsplit("/", 1)[-1]), image
            assert not image.endswith(":latest"), image


# --- selectors and references ---------------------------------------------------------------


def pod_labels(render: Render) -> list[tuple[str, dict[str, str], Obj]]:
    out = []
    for obj, meta, spec in workload_pods(render):
        if obj["kind"] != "ServingRuntime":
            out.append((f"{obj['kind']}/{obj['metadata']['name']}", meta.get("labels", {}), spec))
    return out


def test_workload_selectors_match_their_pods(render: Render) -> None:
    for obj in render.of_kind("Deployment", "StatefulSet"):
        sel = obj["spec"]["selector"]["matchLabels"]
        assert set(sel) == SELECTOR_KEYS, obj["metadata"]["name"]
        assert matches(sel, obj["spec"]["template"]["metadata"]["labels"]), obj["metadata"]["name"]
    # no two workloads share a selector
    sels = [
        json.dumps(o["spec"]["selector"], sort_keys=True) for o in render.of_kind("Deployment", "StatefulSet")
    ]
    assert len(sels) == len(set(sels))


def test_services_select_pods_with_their_ports(render: Render) -> None:
    pods = pod_labels(render)
    for svc in render.of_kind("Service"):
        sel = svc["spec"]["selector"]
        assert set(sel) == SELECTOR_KEYS
        targets = [spec for _, labels, spec in pods if matches(sel, labels)]
        assert targets, f"Service {svc['metadata']['name']} selects no pod"
        runtimes = [r["spec"] for r in render.of_kind("ServingRuntime")]
        for port in svc["spec"]["ports"]:
            for spec in targets:
                # KServe's predictor pods run the ServingRuntime's containers
                containers = spec.get("containers") or [c for r in runtimes for c in r["containers"]]
                names = {p.get("name") for c in containers for p in c.get("ports", [])}
                assert port["targetPort"] in names, f"{svc['metadata']['name']}:{port['targetPort']}"


def test_pdbs_and_policies_select_pods(render: Render) -> None:
    pods = pod_labels(render)
    for obj in render.of_kind("PodDisruptionBudget", "NetworkPolicy"):
        sel = obj["spec"].get("podSelector", obj["spec"].get("selector", {})).get("matchLabels", {})
        assert any(matches(sel, labels) for _, labels, _ in pods), f"{obj['kind']}/{obj['metadata']['name']}"


def test_scalers_target_rendered_workloads(render: Render) -> None:
    deployments = render.names("Deployment") | {f"{n}-predictor" for n in render.names("InferenceService")}
    for hpa in render.of_kind("HorizontalPodAutoscaler"):
        assert hpa["spec"]["scaleTargetRef"]["name"] in deployments
    for so in render.of_kind("ScaledObject"):
        assert so["spec"]["scaleTargetRef"]["name"] in deployments


def test_monitors_select_metrics_ports(render: Render) -> None:
    services = render.of_kind("Service")
    for sm in render.of_kind("ServiceMonitor"):
        sel = sm["spec"]["selector"]["matchLabels"]
        hits = [s for s in services if matches(sel, s["metadata"]["labels"])]
        assert len(hits) == 1, sm["metadata"]["name"]
        for ep in sm["spec"]["endpoints"]:
            assert ep["port"] in {p["name"] for p in hits[0]["spec"]["ports"]}
    for pm in render.of_kind("PodMonitor"):
        sel = pm["spec"]["selector"]["matchLabels"]
        pods = [spec for _, labels, spec in pod_labels(render) if matches(sel, labels)]
        assert pods, pm["metadata"]["name"]
        runtime_ports = {
            p["name"]
            for sr in render.of_kind("ServingRuntime")
            for c in sr["spec"]["containers"]
            for p in c["ports"]
        }
        for ep in pm["spec"]["podMetricsEndpoints"]:
            assert ep["port"] in runtime_ports


def test_referenced_secrets_configmaps_and_claims_exist(render: Render) -> None:
    v = values(render.scenario)
    existing_secrets = {
        v.get("secrets", {}).get("existingSecret"),
        v.get("postgres", {}).get("external", {}).get("existingSecret"),
        v.get("models", {}).get("fetch", {}).get("hubTokenSecret"),
        v.get("gateway", {}).get("ingress", {}).get("tls", {}).get("existingSecret"),
    } - {None, ""}
    secrets = render.names("Secret") | existing_secrets
    configmaps = render.names("ConfigMap")
    claims = render.names("PersistentVolumeClaim") | {
        v.get("models", {}).get("weights", {}).get("existingClaim"),
        v.get("ingest", {}).get("volume", {}).get("existingClaim"),
    }
    for obj, _, spec in workload_pods(render):
        for c in containers(spec):
            for env in c.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] in secrets, f"{obj['metadata']['name']}: secret {ref['name']}"
            for src in c.get("envFrom", []):
                if "configMapRef" in src:
                    assert src["configMapRef"]["name"] in configmaps
        for vol in spec.get("volumes", []):
            if "persistentVolumeClaim" in vol:
                assert vol["persistentVolumeClaim"]["claimName"] in claims


def test_ingress_routes_to_gateway_with_tls(render: Render) -> None:
    for ing in render.of_kind("Ingress"):
        backend = ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
        assert backend == {"name": f"{PREFIX}-gateway", "port": {"name": "http"}}
        assert ing["spec"]["tls"][0]["hosts"] == [ing["spec"]["rules"][0]["host"]]
        ann = ing["metadata"]["annotations"]
        assert int(ann["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600  # WebSockets
        tls = values(render.scenario)["gateway"]["ingress"]["tls"]
        if tls.get("existingSecret"):
            assert ing["spec"]["tls"][0]["secretName"] == tls["existingSecret"]
            assert not any(k.startswith("cert-manager.io/") for k in ann)
        else:
            assert any(k.startswith("cert-manager.io/") for k in ann)


# --- labels and annotations -----------------------------------------------------------------


def test_standard_labels_everywhere(render: Render) -> None:
    for obj in render.objects:
        if obj["metadata"]["name"].endswith("-extra"):  # extraObjects carry what the user wrote
            continue
        labels = obj["metadata"].get("labels", {})
        for key in STANDARD_LABELS:
            assert key in labels, f"{obj['kind']}/{obj['metadata']['name']} lacks {key}"
        assert obj["metadata"]["name"].startswith(PREFIX)
        assert len(obj["metadata"]["name"]) <= 63
        assert obj["metadata"].get("namespace") == NAMESPACE


def test_config_checksum_rolls_the_gateway() -> None:
    def checksum(*args: str) -> str:
        proc = helm_template("--show-only", "templates/gateway/deployment.yaml", *DEFAULTS, *args)
        assert proc.returncode == 0, proc.stderr
        return yaml.safe_load(proc.stdout)["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    assert checksum() != checksum("--set", "gateway.config.logLevel=debug")


def test_extra_objects_are_rendered(renders: dict[str, Render]) -> None:
    extra = renders["production"].get("ConfigMap", f"{PREFIX}-extra")
    assert extra["metadata"]["namespace"] == NAMESPACE  # templated


# --- GPU ------------------------------------------------------------------------------------


def test_gpu_scheduling_only_on_triton(render: Render) -> None:
    """GPUs only for Triton; GPU-node scheduling for Triton and the model-fetch Job (whose claim must
    bind in a zone with GPU nodes); the RuntimeClass, when set, only on Triton."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    scenario = yaml.safe_load((CHART / "ci" / f"{render.scenario}-values.yaml").read_text()) or {}
    runtime_class = scenario.get("triton", {}).get("runtimeClassName", values["triton"]["runtimeClassName"])
    gpus = scenario.get("triton", {}).get("gpu", {}).get("count", values["triton"]["gpu"]["count"])
    seen_triton = False
    for obj, meta, spec in workload_pods(render):
        component = meta["labels"].get("app.kubernetes.io/component")
        is_triton = obj["kind"] != "ServingRuntime" and component == "triton"
        on_gpu_nodes = is_triton or component == "model-fetch"
        seen_triton |= is_triton
        for c in containers(spec):
            wants_gpu = GPU in json.dumps(c.get("resources", {}))
            assert wants_gpu == (c["name"] in TRITON_CONTAINERS and gpus > 0), (
                f"{obj['metadata']['name']} {c['name']}"
            )
        if obj["kind"] == "ServingRuntime":
            continue
        assert spec.get("runtimeClassName") == ((runtime_class or None) if is_triton else None)
        name = obj["metadata"]["name"]
        assert ("voicebot.dev/node-pool" in spec.get("nodeSelector", {})) == on_gpu_nodes, name
        assert (GPU in json.dumps(spec.get("tolerations", []))) == on_gpu_nodes, name
        if on_gpu_nodes:
            assert spec["nodeSelector"] == TRITON_SCHEDULING["nodeSelector"]
            assert spec["tolerations"] == TRITON_SCHEDULING["tolerations"]
    for _obj, _, spec in workload_pods(render):
        for c in spec.get("containers", []):
            if c["name"] in TRITON_CONTAINERS:
                assert c["resources"]["limits"].get(GPU, 0) == gpus
    assert seen_triton


# --- contracts ------------------------------------------------------------------------------


def test_gateway_contract(renders: dict[str, Render]) -> None:
    r = renders["default"]
    dep = r.get("Deployment", f"{PREFIX}-gateway")
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert c["command"] == ["voicebot", "serve"]
    assert c["ports"] == [
        {"name": "http", "containerPort": 8080, "protocol": "TCP"},
        {"name": "metrics", "containerPort": 9090, "protocol": "TCP"},
    ]
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
    env = {e["name"] for e in c["env"]}
    assert {"VOICEBOT_AUTH_SECRET", "VOICEBOT_BOOTSTRAP_API_KEY", "VOICEBOT_DATABASE_URL"} <= env
    cfg = r.get("ConfigMap", f"{PREFIX}-gateway")["data"]
    assert cfg["VOICEBOT_HOST"] == "0.0.0.0"
    assert cfg["VOICEBOT_PORT"] == "8080"
    # the headless Service: the gateway balances over every Triton pod (and pins ASR sequences)
    assert cfg["VOICEBOT_TRITON_URL"] == f"dns:///{PREFIX}-triton-headless.{NAMESPACE}.svc:8001"
    headless = r.get("Service", f"{PREFIX}-triton-headless")
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["selector"] == r.get("Service", f"{PREFIX}-triton")["spec"]["selector"]
    assert cfg["VOICEBOT_LOG_FORMAT"] == "json"
    assert cfg["VOICEBOT_LLM_PROMPT_FORMAT"] in ("chatml", "llama3")
    assert cfg["VOICEBOT_OTEL_EXPORTER"] in ("none", "console", "otlp")
    svc = r.get("Service", f"{RELEASE}-voicebot-gateway")
    assert [(p["name"], p["port"]) for p in svc["spec"]["ports"]] == [("http", 8080), ("metrics", 9090)]
    assert cfg["VOICEBOT_METRICS_PORT"] == "9090"


def test_cli_jobs_use_the_gateway_image_and_commands(renders: dict[str, Render]) -> None:
    r = renders["default"]
    gateway_image = r.get("Deployment", f"{PREFIX}-gateway")["spec"]["template"]["spec"]["containers"][0][
        "image"
    ]
    mig = r.get("Job", f"{PREFIX}-migrations")
    c = mig["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == gateway_image
    assert c["command"] + c["args"] == ["voicebot", "db", "migrate"]
    assert "pre-upgrade" in mig["metadata"]["annotations"]["helm.sh/hook"]
    cron = r.get("CronJob", f"{PREFIX}-ingest")
    c = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == gateway_image
    assert c["command"] + c["args"] == [
        "voicebot",
        "ingest",
        "/data/docs",
        "--tenant",
        "default",
        "--collection",
        "default",
        "--prune",
    ]
    assert (
        r.get("Job", f"{PREFIX}-ingest-once")["metadata"]["annotations"]["helm.sh/hook"]
        == "post-install,post-upgrade"
    )


def test_the_ingest_jobs_write_into_the_tenant_and_collection_of_the_values() -> None:
    proc = helm_template(
        *DEFAULTS,
        "--set",
        "ingest.tenant=acme",
        "--set",
        "ingest.collection=handbook",
        "--set",
        "ingest.prune=false",
    )
    assert proc.returncode == 0, proc.stderr
    objects = [o for o in yaml.safe_load_all(proc.stdout) if o]
    cron = next(o for o in objects if o["kind"] == "CronJob" and o["metadata"]["name"] == f"{PREFIX}-ingest")
    once = next(o for o in objects if o["kind"] == "Job" and o["metadata"]["name"] == f"{PREFIX}-ingest-once")
    for pod in (cron["spec"]["jobTemplate"]["spec"]["template"]["spec"], once["spec"]["template"]["spec"]):
        c = pod["containers"][0]
        assert c["command"] + c["args"] == [
            "voicebot",
            "ingest",
            "/data/docs",
            "--tenant",
            "acme",
            "--collection",
            "handbook",
        ]


def test_model_fetch_runs_in_the_triton_image_that_can_fetch(renders: dict[str, Render]) -> None:
    """The fetch needs the model-server package and huggingface_hub: the Triton image has both."""
    r = renders["default"]
    triton_image = r.get("Deployment", f"{PREFIX}-triton")["spec"]["template"]["spec"]["containers"][0][
        "image"
    ]
    fetch = next(j for j in r.of_kind("Job") if "model-fetch" in j["metadata"]["name"])
    c = fetch["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == triton_image
    command = c["args"][0].split()[0]
    scripts = tomllib.loads((REPO / "images" / "triton" / "pyproject.toml").read_text())["project"]["scripts"]
    assert command in scripts, f"{command} is not a console script of voicebot-models"
    assert "fetch --profile" in c["args"][0]
    assert "--dest /weights" in c["args"][0]


def test_migrations_run_before_install_with_an_external_database(renders: dict[str, Render]) -> None:
    mig = renders["production"].get("Job", f"{PREFIX}-migrations")
    assert mig["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    env = {e["name"]: e for e in mig["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["VOICEBOT_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "voicebot-database",
        "key": "database_url",
    }
    # the generated secrets exist before the hook and survive upgrades
    for secret in renders["default"].of_kind("Secret"):
        ann = secret["metadata"]["annotations"]
        assert "pre-install" in ann["helm.sh/hook"]
        assert int(ann["helm.sh/hook-weight"]) < int(
            renders["default"].get("Job", f"{PREFIX}-migrations")["metadata"]["annotations"][
                "helm.sh/hook-weight"
            ]
        )
        assert ann["helm.sh/resource-policy"] == "keep"
    assert not renders["production"].of_kind("Secret")  # existingSecret: nothing generated


def test_triton_contract(renders: dict[str, Render]) -> None:
    dep = renders["default"].get("Deployment", f"{PREFIX}-triton")
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert c["command"] == ["tritonserver"]
    assert "--model-repository=/opt/voicebot/models-vllm" in c["args"]  # the GPU default: vLLM
    assert {p["containerPort"] for p in c["ports"]} == {8000, 8001, 8002}
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["VOICEBOT_WEIGHTS_DIR"] == "/weights"
    assert env["VOICEBOT_MODEL_PROFILE"]  # that it exists and fits: test_chart_profiles.py
    assert {"name": "weights", "mountPath": "/weights", "readOnly": True} in c["volumeMounts"]
    prod = renders["production"].get("Deployment", f"{PREFIX}-triton")["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert "--model-repository=/opt/voicebot/models-vllm" in prod["args"]


def test_triton_autoscales_on_queue_metrics_not_cpu(renders: dict[str, Render]) -> None:
    so = renders["production"].get("ScaledObject", f"{PREFIX}-triton")
    queries = " ".join(t["metadata"]["query"] for t in so["spec"]["triggers"])
    assert "nv_inference_pending_request_count" in queries
    assert "nv_inference_queue_duration_us" in queries
    assert all(t["type"] == "prometheus" for t in so["spec"]["triggers"])
    assert "replicas" not in renders["production"].get("Deployment", f"{PREFIX}-triton")["spec"]
    hpa = renders["airgapped"].get("HorizontalPodAutoscaler", f"{PREFIX}-triton")
    assert [m["type"] for m in hpa["spec"]["metrics"]] == ["Pods"]
    assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == "nv_inference_pending_request_count"
    gw_hpa = renders["production"].get("HorizontalPodAutoscaler", f"{PREFIX}-gateway")
    assert gw_hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"


def test_kserve_mode_replaces_the_triton_deployment(renders: dict[str, Render]) -> None:
    r, default = renders["kserve"], renders["default"]
    assert f"{PREFIX}-triton" not in r.names("Deployment") | r.names("Service")
    # the gateway reaches the predictor pods through our headless Service, balanced per call
    headless = r.get("Service", f"{PREFIX}-triton-headless")
    predictor_labels = r.get("InferenceService", f"{PREFIX}-triton")["spec"]["predictor"]["labels"]
    assert all(predictor_labels.get(k) == v for k, v in headless["spec"]["selector"].items())
    sr = r.get("ServingRuntime", f"{PREFIX}-triton")
    isvc = r.get("InferenceService", f"{PREFIX}-triton")
    runtime = sr["spec"]["containers"][0]
    plain = default.get("Deployment", f"{PREFIX}-triton")["spec"]["template"]["spec"]
    assert runtime["image"] == plain["containers"][0]["image"]
    assert runtime["args"] == plain["containers"][0]["args"]  # same model repository
    assert runtime["ports"][0]["containerPort"] == 8001  # KServe routes its Service to gRPC
    claim = {v["name"]: v for v in sr["spec"]["volumes"]}["weights"]["persistentVolumeClaim"]["claimName"]
    assert claim == {v["name"]: v for v in plain["volumes"]}["weights"]["persistentVolumeClaim"]["claimName"]
    assert isvc["spec"]["predictor"]["model"]["runtime"] == sr["metadata"]["name"]
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"
    cfg = r.get("ConfigMap", f"{PREFIX}-gateway")["data"]
    assert cfg["VOICEBOT_TRITON_URL"] == f"dns:///{PREFIX}-triton-headless.{NAMESPACE}.svc:8001"


def test_airgapped_never_references_a_hub(renders: dict[str, Render]) -> None:
    r = renders["airgapped"]
    text = r.path.read_text()
    for needle in ("models fetch", "HF_TOKEN", "huggingface", "hf.co", "model-fetch", "wait-for-weights"):
        assert needle not in text, needle
    for _obj, _, spec in workload_pods(r):
        for c in containers(spec):
            assert c["image"].startswith("registry.internal.example/"), c["image"]
    for pol in r.of_kind("NetworkPolicy"):
        for rule in pol["spec"].get("egress", []):
            assert rule.get("to"), f"{pol['metadata']['name']} allows egress to anywhere"
    claims = {
        v["persistentVolumeClaim"]["claimName"]
        for _, _, spec in workload_pods(r)
        for v in spec.get("volumes", [])
        if "persistentVolumeClaim" in v
    }
    assert "voicebot-weights-preloaded" in claims
    assert f"{PREFIX}-weights" not in r.names("PersistentVolumeClaim")


def test_hub_scenarios_fetch_weights_before_triton_starts(renders: dict[str, Render]) -> None:
    spec = renders["default"].get("Deployment", f"{PREFIX}-triton")["spec"]["template"]["spec"]
    assert [c["name"] for c in spec["initContainers"]] == ["wait-for-weights"]
    fetch = [j for j in renders["default"].of_kind("Job") if "model-fetch" in j["metadata"]["name"]]
    assert len(fetch) == 1


def test_dashboard_covers_the_metrics(renders: dict[str, Render]) -> None:
    cm = renders["default"].get("ConfigMap", f"{PREFIX}-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    dash = json.loads(cm["data"]["voicebot.json"])
    exprs = " ".join(t["expr"] for p in dash["panels"] for t in p.get("targets", []))
    for metric in (
        "voicebot_stage_duration_seconds_bucket",
        "voicebot_turns_total",
        "voicebot_errors_total",
        "voicebot_open_sessions",
        "voicebot_http_requests_total",
        "nv_inference_queue_duration_us",
        "nv_inference_pending_request_count",
        "nv_gpu_utilization",
        "nv_gpu_memory_used_bytes",
    ):
        assert metric in exprs, metric
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))


def test_notes_print_the_next_commands() -> None:
    proc = run(
        [
            helm_bin(),
            "install",
            RELEASE,
            str(CHART),
            "-n",
            NAMESPACE,
            "--dry-run=client",
            *DEFAULTS,
        ]
    )
    assert proc.returncode == 0, proc.stderr
    notes = proc.stdout.split("NOTES:", 1)[1]
    assert f"helm test {RELEASE} -n {NAMESPACE}" in notes
    assert f"port-forward svc/{PREFIX}-gateway 8080:8080" in notes
    assert f"scale deployment/{PREFIX}-gateway" in notes


def test_helm_test_asks_a_question(renders: dict[str, Render]) -> None:
    pod = renders["default"].get("Pod", f"{PREFIX}-helm-test")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    c = pod["spec"]["containers"][0]
    script = c["args"][0]
    assert "/readyz" in script
    assert "/v1/chat" in script
    assert "Bearer" in script
    assert '"done"' in script
    compile(script, "helm-test", "exec")  # the script is valid Python
    env = {e["name"]: e for e in c["env"]}
    assert env["GATEWAY_URL"]["value"] == f"http://{PREFIX}-gateway:8080"
    assert env["VOICEBOT_BOOTSTRAP_API_KEY"]["valueFrom"]["secretKeyRef"]["key"] == "bootstrap_api_key"


# --- values and schema ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--set", "gateway.replicaz=3"], "replicaz"),
        (["--set", "triton.autoscaling.mode=cpu"], "/triton/autoscaling/mode"),
        (["--set", "gateway.config.llmPromptFormat=llama2"], "llmPromptFormat"),
        (["--set", "metrics.serviceMonitor.enabeld=true"], "enabeld"),
        (["--set-string", "gateway.replicas=two"], "/gateway/replicas"),
        (["--set", "ingest.tenant=Acme Corp"], "/ingest/tenant"),
        (["--set", "ingest.collection=../etc"], "/ingest/collection"),
    ],
)
def test_schema_rejects_typos(args: list[str], needle: str) -> None:
    proc = helm_template(*args)
    assert proc.returncode != 0
    assert needle in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--set", "postgres.enabled=false"], "postgres.external.existingSecret"),
        (["--set", "models.source=volume"], "models.weights.existingClaim"),
        (["--set", "gateway.ingress.enabled=true"], "gateway.ingress.host"),
        (
            ["--set", "gateway.ingress.enabled=true", "--set", "gateway.ingress.host=a.example"],
            "gateway.ingress.tls",
        ),
    ],
)
def test_inconsistent_values_fail_with_a_message(args: list[str], needle: str) -> None:
    proc = helm_template(*args)
    assert proc.returncode != 0
    assert "VALUES VALIDATION" in proc.stderr, proc.stderr
    assert needle in proc.stderr, proc.stderr


# Values whose content is free-form (labels, selectors, Kubernetes fragments): documented as one.
FREE_FORM = {"nodeSelector", "labels", "resources", "namespaceSelector", "podSelector", "updateStrategy"}


def _leaves(node: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if isinstance(node, dict) and node and not (path and path[-1] in FREE_FORM):
        return [leaf for k, v in node.items() for leaf in _leaves(v, (*path, k))]
    return [path]


def test_schema_is_strict_and_covers_every_value() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"

    def walk(node: dict[str, Any], where: str) -> None:
        if "properties" in node:
            assert node.get("additionalProperties") is False, where
            for key, sub in node["properties"].items():
                walk(sub, f"{where}.{key}")

    walk(schema, "values")
    vals = yaml.safe_load((CHART / "values.yaml").read_text())
    for leaf in _leaves(vals):
        node = schema
        for key in leaf:
            assert key in node.get("properties", {}), f"{'.'.join(leaf)} missing from values.schema.json"
            node = node["properties"][key]
        assert node.get("description"), f"{'.'.join(leaf)} has no description in the schema"


def test_every_value_is_documented() -> None:
    """Each value in values.yaml has a `# --` comment block right above it."""
    leaves = set(_leaves(yaml.safe_load((CHART / "values.yaml").read_text())))
    lines = (CHART / "values.yaml").read_text().splitlines()
    stack: list[tuple[int, str]] = []
    documented: set[tuple[str, ...]] = set()
    for i, line in enumerate(lines):
        m = re.match(r"^( *)([A-Za-z][\w-]*):", line)
        if not m:
            continue
        indent = len(m.group(1))
        stack = [(n, k) for n, k in stack if n < indent] + [(indent, m.group(2))]
        path = tuple(k for _, k in stack)
        if path not in leaves:
            continue
        j = i - 1
        while j >= 0 and lines[j].strip().startswith("#") and not lines[j].strip().startswith("# --"):
            j -= 1
        if j >= 0 and lines[j].strip().startswith("# --"):
            documented.add(path)
    missing = sorted(".".join(p) for p in leaves - documented)
    assert not missing, f"values without a '# --' comment: {missing}"


@pytest.mark.parametrize("path", sorted(PLATFORM_CHART_VALUES))
def test_values_the_terraform_module_sets_exist(path: str) -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    node = schema
    for key in path.split("."):
        node = node["properties"][key]
    assert node["type"] in ("string", "boolean", "integer", "array")
