"""What the gateway exposes, and to whom: the keyless metrics listener only to Prometheus, only the
routes clients need through the Ingress, client addresses from the ingress's X-Forwarded-For, and
secrets the gateway accepts (docs/security.md, docs/deploy.md)."""

from __future__ import annotations

import re

from chartlib import PREFIX, Render, helm_template

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
