"""What the gateway exposes, and to whom: the keyless metrics listener only to Prometheus, only the
routes clients need through the Ingress, client addresses from the ingress's X-Forwarded-For, and
secrets the gateway accepts (docs/security.md, docs/deploy.md)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from chartlib import PREFIX, REPO, Render, helm_template

GATEWAY = f"{PREFIX}-gateway"


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
    proc = helm_template("--set", "models.fetch.hubTokenSecret=t", "--set", "gateway.metricsPort=8080")
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
    assert re.fullmatch("(.*)-gateway", GATEWAY)


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
