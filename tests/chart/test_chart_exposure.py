"""What the gateway exposes, and to whom: the keyless metrics listener only to Prometheus, only the
routes clients need through the Ingress, client addresses from the ingress's X-Forwarded-For, and
secrets the gateway accepts (docs/security.md, docs/deploy.md)."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from chartlib import CHART, NAMESPACE, PREFIX, RELEASE, REPO, Render, helm_bin, helm_template, run

from orchestrator.settings import MIN_SECRET_LENGTH, Settings, weak_secret

GATEWAY = f"{PREFIX}-gateway"
TOKEN = ("--set", "models.fetch.hubTokenSecret=hub-token")


def render_values(render: Render) -> dict[str, Any]:
    """The chart's values.yaml under the scenario's file, merged as Helm merges them."""

    def merge(base: Any, over: Any) -> Any:
        if isinstance(base, dict) and isinstance(over, dict):
            return {**base, **{k: merge(base.get(k), v) for k, v in over.items()}}
        return over

    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    return merge(
        defaults, yaml.safe_load((CHART / "ci" / f"{render.scenario}-values.yaml").read_text()) or {}
    )


def _gateway_container(render: Render) -> dict:
    dep = render.get("Deployment", GATEWAY)
    return next(c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == "gateway")


# --- the metrics listener -------------------------------------------------------------------


def test_prometheus_scrapes_the_keyless_metrics_listener(render: Render) -> None:
    """Outside dev mode /metrics on 8080 needs an API key: the ServiceMonitor scrapes the port the
    gateway serves without one (VOICEBOT_METRICS_PORT), through the `metrics` ports."""
    cfg = render.get("ConfigMap", GATEWAY)["data"]
    port = int(cfg["VOICEBOT_METRICS_PORT"])
    assert port not in (0, 8080)
    ports = {p["name"]: p["containerPort"] for p in _gateway_container(render)["ports"]}
    assert ports == {"http": 8080, "metrics": port}
    svc = {p["name"]: p for p in render.get("Service", GATEWAY)["spec"]["ports"]}
    assert svc["metrics"]["port"] == port
    assert svc["metrics"]["targetPort"] == "metrics"
    if not render.of_kind("ServiceMonitor"):
        return  # metrics.serviceMonitor.enabled=false (the cpu scenario)
    sm = render.get("ServiceMonitor", GATEWAY)
    assert [(e["port"], e["path"]) for e in sm["spec"]["endpoints"]] == [("metrics", "/metrics")]


def test_the_metrics_port_is_not_the_public_port() -> None:
    proc = helm_template(*TOKEN, "--set", "gateway.metricsPort=8080")
    assert proc.returncode != 0
    assert "metricsPort" in proc.stderr, proc.stderr


def test_alerts_and_dashboard_still_select_the_gateway_job(renders: dict[str, Render]) -> None:
    """Prometheus names the scrape job after the Service, whatever port it scrapes (no jobLabel):
    the alerts' job="<fullname>-gateway" and the dashboard's release variable (the job's prefix)
    keep matching it, and neither selects the `endpoint` label that moved from http to metrics."""
    r = renders["default"]
    sm = r.get("ServiceMonitor", GATEWAY)
    assert "jobLabel" not in sm["spec"]
    selected = [
        s
        for s in r.of_kind("Service")
        if s["metadata"]["labels"].items() >= sm["spec"]["selector"]["matchLabels"].items()
    ]
    assert [s["metadata"]["name"] for s in selected] == [GATEWAY]  # the job label's value
    rule = r.get("PrometheusRule", f"{PREFIX}-alerts")
    exprs = [x["expr"] for g in rule["spec"]["groups"] for x in g["rules"]]
    jobs = {j for e in exprs for j in re.findall(r'\bjob="([^"]+)"', e)}
    assert jobs == {GATEWAY}
    assert not any("endpoint=" in e for e in exprs)
    dashboard = r.get("ConfigMap", f"{PREFIX}-dashboard")["data"]["voicebot.json"]
    assert "endpoint=" not in dashboard
    assert '"regex": "/(.*)-gateway/"' in dashboard
    assert 'job=~\\"$release.*-gateway\\"' in dashboard
    release = re.fullmatch("(.*)-gateway", GATEWAY)  # the dashboard's $release, from the job
    assert release
    assert re.fullmatch(f"{re.escape(release.group(1))}.*-gateway", GATEWAY)


# --- the Ingress ----------------------------------------------------------------------------

UI = REPO / "ui"
# What clients use: the APIs, the voice socket, the UI's pages, scripts and files.
CLIENT_PATHS = [
    "/v1/chat",
    "/v1/voice",
    "/v1/sessions",
    "/v1/documents/42",
    "/",
    "/index.txt",
    "/documents",
    "/documents/",
    "/documents/index.txt",
    "/_next/static/chunks/main.js",
    "/worklets/pcm-capture.js",
]
# For the cluster only: Prometheus has its own port, probes come from the kubelet, the API docs are
# off outside dev mode (and would map every route for a visitor).
NEVER_ROUTED = [
    "/metrics",
    "/metrics/",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
    "/openapi.json",
    "/healthz",
    "/readyz",
    "/v1x",
    "/index.html.bak",
]


def routed(ingress: dict[str, Any], url_path: str) -> bool:
    """Kubernetes path matching: Exact is the whole path, Prefix whole path elements."""
    for rule in ingress["spec"]["rules"]:
        for p in rule["http"]["paths"]:
            path, kind = p["path"], p["pathType"]
            if kind == "Exact" and url_path == path:
                return True
            if kind == "Prefix" and (
                path == "/" or url_path == path.rstrip("/") or url_path.startswith(path.rstrip("/") + "/")
            ):
                return True
            assert kind in ("Exact", "Prefix"), f"{kind}: implementation-specific matching"
    return False


def _ingresses(renders: dict[str, Render]) -> list[dict[str, Any]]:
    found = [i for r in renders.values() for i in r.of_kind("Ingress")]
    assert found, "some scenario enables the Ingress"
    return found


def test_ingress_routes_only_what_clients_need(renders: dict[str, Render]) -> None:
    for ing in _ingresses(renders):
        paths = [p for rule in ing["spec"]["rules"] for p in rule["http"]["paths"]]
        assert {p["backend"]["service"]["port"]["name"] for p in paths} == {"http"}
        assert not any(p["pathType"] == "Prefix" and p["path"] == "/" for p in paths), "no catch-all"
        for url in CLIENT_PATHS:
            assert routed(ing, url), url
        for url in NEVER_ROUTED:
            assert not routed(ing, url), url


def _ui_urls() -> list[str]:
    """The URLs of the UI's pages (ui/app/**/page.tsx, exported as <page>/index.html and
    <page>/index.txt) and of its public files (ui/public)."""
    urls: list[str] = []
    for page in (UI / "app").rglob("page.tsx"):
        route = "/".join(
            part for part in page.parent.relative_to(UI / "app").parts if not part.startswith("(")
        )
        base = f"/{route}/" if route else "/"
        urls += [base, f"{base}index.txt"]
    urls += [f"/{f.relative_to(UI / 'public').as_posix()}" for f in (UI / "public").rglob("*") if f.is_file()]
    return sorted(urls)


def test_ingress_routes_every_ui_page_and_public_file(renders: dict[str, Render]) -> None:
    urls = _ui_urls()
    assert {"/", "/documents/", "/worklets/pcm-capture.js"} <= set(urls)
    for ing in _ingresses(renders):
        for url in urls:
            assert routed(ing, url), (
                f"{url} (ui/) is not routed by the Ingress (templates/gateway/ingress.yaml)"
            )


def test_ingress_routes_every_file_of_the_ui_export(renders: dict[str, Render]) -> None:
    """With the export built (scripts/build-ui.sh build, as `make up` and the e2e tier do): each of
    its files is reachable, the navigation payloads Next.js writes beside each page included."""
    out = UI / "out"
    if not (out / "index.html").exists():
        pytest.skip("ui/out is not built (scripts/build-ui.sh build)")
    skipped = ("404", "404.html", "_not-found", ".voicebot-build-stamp")  # the gateway's own 404s
    files = [f.relative_to(out).as_posix() for f in out.rglob("*") if f.is_file()]
    urls = [f"/{f}" for f in files if not f.startswith(skipped)]
    urls = [
        u.removesuffix("index.html") if u.endswith("/index.html") or u == "/index.html" else u for u in urls
    ]
    for ing in _ingresses(renders):
        missing = [u for u in urls if not routed(ing, u)]
        assert not missing, f"files of ui/out the Ingress does not route: {missing}"


# --- client addresses -----------------------------------------------------------------------


def test_trusted_proxies_reach_the_gateway_config(renders: dict[str, Render]) -> None:
    """Failed authentications are limited per client address, which behind the ingress comes from
    X-Forwarded-For, believed only from VOICEBOT_TRUSTED_PROXIES."""
    default = renders["default"].get("ConfigMap", GATEWAY)["data"]
    assert json.loads(default["VOICEBOT_TRUSTED_PROXIES"]) == ["127.0.0.1"]  # the gateway's default
    production = renders["production"].get("ConfigMap", GATEWAY)["data"]
    assert json.loads(production["VOICEBOT_TRUSTED_PROXIES"]) == ["10.0.0.0/16"]
    proc = helm_template(*TOKEN, "--set", "gateway.config.trustedProxies={10.244.0.0/16,fd00::/8}")
    assert proc.returncode == 0, proc.stderr
    assert 'VOICEBOT_TRUSTED_PROXIES: "[\\"10.244.0.0/16\\",\\"fd00::/8\\"]"' in proc.stdout
    refused = helm_template(*TOKEN, "--set", "gateway.config.trustedProxies={ingress-nginx}")
    assert refused.returncode != 0
    assert "trustedProxies" in refused.stderr


def _notes(*args: str) -> str:
    proc = run(
        [helm_bin(), "install", RELEASE, str(CHART), "-n", NAMESPACE, "--dry-run=client", *TOKEN, *args]
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split("NOTES:", 1)[1]


def test_notes_ask_for_the_ingress_controllers_addresses() -> None:
    ingress = ("--set", "gateway.ingress.enabled=true", "--set", "gateway.ingress.host=vb.example.com")
    ingress += ("--set", "gateway.ingress.tls.clusterIssuer=letsencrypt")
    assert "gateway.config.trustedProxies" in _notes(*ingress)
    assert "trustedProxies" not in _notes(*ingress, "--set", "gateway.config.trustedProxies={10.244.0.0/16}")
    assert "trustedProxies" not in _notes()  # no ingress: port-forward, no proxy in between


def test_the_gateway_accepts_the_rendered_config(render: Render, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ConfigMap read by the gateway's own Settings: the values arrive as it means them."""
    for name in [n for n in os.environ if n.startswith("VOICEBOT_")]:
        monkeypatch.delenv(name)
    for name, value in render.get("ConfigMap", GATEWAY)["data"].items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("VOICEBOT_AUTH_SECRET", "a" * MIN_SECRET_LENGTH)
    settings = Settings(_env_file=None)
    values = render_values(render)
    assert settings.metrics_port == values["gateway"]["metricsPort"]
    assert settings.trusted_proxies == values["gateway"]["config"]["trustedProxies"]
    assert settings.docs_served is False
    assert settings.retention_days == values["gateway"]["config"]["retentionDays"]


def test_retention_days_is_a_value() -> None:
    proc = helm_template(*TOKEN, "--set", "gateway.config.retentionDays=7")
    assert proc.returncode == 0, proc.stderr
    assert 'VOICEBOT_RETENTION_DAYS: "7"' in proc.stdout
    assert helm_template(*TOKEN, "--set", "gateway.config.retentionDays=-1").returncode != 0


# --- secrets --------------------------------------------------------------------------------

LOOKUP = 'lookup "v1" "Secret" .Release.Namespace .Values.secrets.existingSecret'


def _install_with_existing_secret(tmp_path: Path, data: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`helm template` of a copy of the chart whose lookup of secrets.existingSecret finds a Secret
    with `data` (what a real install would see in the cluster)."""
    chart = tmp_path / "voicebot"
    shutil.copytree(CHART, chart)
    helpers = chart / "templates" / "_helpers.tpl"
    text = helpers.read_text()
    assert text.count(LOOKUP) == 1, "the existing Secret is looked up once, in voicebot.validateValues"
    fake = " ".join(f'"{k}" "{base64.b64encode(v.encode()).decode()}"' for k, v in data.items())
    helpers.write_text(text.replace(LOOKUP, f'dict "data" (dict {fake})'))
    existing = ("--set", "secrets.existingSecret=mine")
    return run([helm_bin(), "template", RELEASE, str(chart), "-n", NAMESPACE, *TOKEN, *existing])


def test_a_weak_existing_secret_fails_the_install(tmp_path: Path) -> None:
    """The gateway refuses an auth secret or bootstrap key under MIN_SECRET_LENGTH characters at
    start-up (a crash loop); the install refuses it first, naming the key, never the value."""
    strong = "k" * MIN_SECRET_LENGTH
    weak = "s" * (MIN_SECRET_LENGTH - 1)
    for key in ("auth_secret", "bootstrap_api_key"):
        data = {"auth_secret": strong, "bootstrap_api_key": strong, key: weak}
        proc = _install_with_existing_secret(tmp_path / key, data)
        assert proc.returncode != 0
        assert "VALUES VALIDATION" in proc.stderr
        assert (
            f"the key {key} of Secret mine must hold at least {MIN_SECRET_LENGTH} characters" in proc.stderr
        )
        assert weak not in proc.stderr
        other = ({"auth_secret", "bootstrap_api_key"} - {key}).pop()
        assert f"the key {other} " not in proc.stderr
    missing = _install_with_existing_secret(tmp_path / "missing", {"auth_secret": strong})
    assert "the key bootstrap_api_key of Secret mine" in missing.stderr
    ok = _install_with_existing_secret(tmp_path / "ok", {"auth_secret": strong, "bootstrap_api_key": strong})
    assert ok.returncode == 0, ok.stderr


def test_generated_secrets_are_strong_enough(renders: dict[str, Render]) -> None:
    secret = renders["default"].get("Secret", f"{PREFIX}-secrets")
    for key in ("auth_secret", "bootstrap_api_key"):
        value = base64.b64decode(secret["data"][key]).decode()
        assert len(value) >= MIN_SECRET_LENGTH, key
        assert not weak_secret(value), key
