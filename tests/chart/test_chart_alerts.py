"""The PrometheusRule: `promtool check rules`, and `promtool test rules` for every alert.

Each alert gets a case where it must fire and one where it must stay silent. The unit-test copy of
the rules drops the `description` annotations, which quote `$value` (checked by `check rules`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from chartlib import NAMESPACE, PREFIX, REPO, Render, run, tool

GW = f'namespace="{NAMESPACE}", job="{PREFIX}-gateway"'
TRITON_POD = f'namespace="{NAMESPACE}", pod="{PREFIX}-triton-7d9f-abcde", model="llm"'
RUNBOOKS = REPO / "docs" / "runbooks"


def http(ok_per_min: float, err_per_min: float, minutes: int = 120) -> list[dict[str, str]]:
    return [
        {"series": f'voicebot_http_requests_total{{{GW}, route="/v1/chat", method="POST", status="200"}}',
         "values": f"0+{ok_per_min}x{minutes}"},
        {"series": f'voicebot_http_requests_total{{{GW}, route="/v1/chat", method="POST", status="503"}}',
         "values": f"0+{err_per_min}x{minutes}"},
    ]  # fmt: skip


def probes(err_per_min: float, minutes: int = 120) -> list[dict[str, str]]:
    """Failing readiness probes and scrapes: not user traffic, never in the availability SLI."""
    return [
        {"series": f'voicebot_http_requests_total{{{GW}, route="{route}", method="GET", status="503"}}',
         "values": f"0+{err_per_min}x{minutes}"}
        for route in ("/readyz", "/metrics")
    ]  # fmt: skip


def voice(ok_per_min: float, err_per_min: float, minutes: int = 120) -> list[dict[str, str]]:
    """Voice turns by outcome (a cancelled turn is a barge-in, not a failure)."""
    return [
        {"series": f'voicebot_turns_total{{{GW}, outcome="{outcome}"}}', "values": f"0+{rate}x{minutes}"}
        for outcome, rate in (("ok", ok_per_min), ("error", err_per_min), ("cancelled", ok_per_min))
    ]


def fetch_job(condition: str, job: str = f"{PREFIX}-model-fetch-1a2b3c4d") -> list[dict[str, str]]:
    labels = f'namespace="{NAMESPACE}", job_name="{job}", condition="{condition}"'
    return [{"series": f"kube_job_failed{{{labels}}}", "values": "1x20"}]


def keda_errors(values: str, namespace_label: str = "namespace") -> list[dict[str, str]]:
    labels = f'{namespace_label}="{NAMESPACE}", scaledObject="{PREFIX}-triton"'
    return [{"series": f"keda_scaled_object_errors_total{{{labels}}}", "values": values}]


def turns(fast_per_min: float, total_per_min: float, minutes: int = 120) -> list[dict[str, str]]:
    stage = f'{GW}, stage="turn_total"'
    return [
        {"series": f'voicebot_stage_duration_seconds_bucket{{{stage}, le="2.5"}}', "values": f"0+{fast_per_min}x{minutes}"},
        {"series": f'voicebot_stage_duration_seconds_bucket{{{stage}, le="+Inf"}}', "values": f"0+{total_per_min}x{minutes}"},
        {"series": f"voicebot_stage_duration_seconds_count{{{stage}}}", "values": f"0+{total_per_min}x{minutes}"},
    ]  # fmt: skip


def dependency(dep: str, pod_a: str, pod_b: str) -> list[dict[str, str]]:
    return [
        {"series": f'voicebot_dependency_up{{{GW}, pod="gw-a", dependency="{dep}"}}', "values": pod_a},
        {"series": f'voicebot_dependency_up{{{GW}, pod="gw-b", dependency="{dep}"}}', "values": pod_b},
    ]


def queue(avg_wait_us: int) -> list[dict[str, str]]:
    return [
        {"series": f"nv_inference_queue_duration_us{{{TRITON_POD}}}", "values": f"0+{avg_wait_us * 100}x60"},
        {"series": f"nv_inference_request_success{{{TRITON_POD}}}", "values": "0+100x60"},
    ]


def crashloop(pod: str, value: str) -> list[dict[str, str]]:
    labels = f'namespace="{NAMESPACE}", pod="{pod}", container="gateway", reason="CrashLoopBackOff"'
    return [{"series": f"kube_pod_container_status_waiting_reason{{{labels}}}", "values": value}]


NS = {"namespace": NAMESPACE}
# alert -> [(series, eval time, expected labels of the firing alerts; [] means silent)]
CASES: dict[str, list[tuple[list[dict[str, str]], str, list[dict[str, str]]]]] = {
    "VoicebotAvailabilityBurnRateFast": [
        (http(100, 10), "30m", [{**NS, "severity": "critical", "slo": "availability"}]),
        (http(100, 1), "90m", []),  # 1% errors: a slow burn, no page
        (http(100, 0), "30m", []),
        (http(100, 0) + probes(100), "30m", []),  # Triton restarting: probes fail, users do not
        (voice(90, 10), "30m", [{**NS, "severity": "critical", "slo": "availability"}]),  # turns count
        (http(100, 0) + voice(100, 0), "30m", []),
    ],
    "VoicebotAvailabilityBurnRateSlow": [
        (http(99, 1), "90m", [{**NS, "severity": "warning", "slo": "availability"}]),
        (http(1000, 1), "90m", []),  # 0.1% errors: inside the 99.9% SLO
    ],
    "VoicebotLatencyBurnRateFast": [
        (turns(50, 100), "30m", [{**NS, "severity": "critical", "slo": "latency"}]),
        (turns(90, 100), "30m", []),  # 10% slow turns: a slow burn, no page
    ],
    "VoicebotLatencyBurnRateSlow": [
        (turns(90, 100), "90m", [{**NS, "severity": "warning", "slo": "latency"}]),
        (turns(99.5, 100), "90m", []),
    ],
    "VoicebotGatewayDown": [
        (
            [{"series": f'up{{{GW}, pod="gw-a"}}', "values": "0x30"}],
            "20m",
            [{**NS, "severity": "critical"}],
        ),
        ([{"series": f'up{{{GW}, pod="gw-a"}}', "values": "1x30"}], "20m", []),
    ],
    "VoicebotTritonDown": [
        (dependency("triton", "0x20", "0x20"), "10m", [{**NS, "severity": "critical"}]),
        (dependency("triton", "0x20", "1x20"), "10m", []),  # one gateway still reaches it
        (dependency("postgres", "0x20", "0x20"), "10m", []),
    ],
    "VoicebotPostgresDown": [
        (dependency("postgres", "0x20", "0x20"), "10m", [{**NS, "severity": "critical"}]),
        (dependency("postgres", "1x20", "1x20"), "10m", []),
    ],
    "VoicebotTritonQueueing": [
        (queue(300_000), "30m", [{**NS, "severity": "warning"}]),
        (queue(50_000), "30m", []),
    ],
    "VoicebotModelFetchFailed": [
        (
            fetch_job("true"),
            "10m",
            [{**NS, "job_name": f"{PREFIX}-model-fetch-1a2b3c4d", "severity": "critical"}],
        ),
        (fetch_job("false"), "10m", []),
        (fetch_job("true", "someone-else-model-fetch-1"), "10m", []),  # not this release
    ],
    "VoicebotKedaScalerErrors": [
        (keda_errors("0+1x40"), "30m", [{**NS, "scaledObject": f"{PREFIX}-triton", "severity": "warning"}]),
        (
            keda_errors("0+1x40", "exported_namespace"),
            "30m",
            [{**NS, "scaledObject": f"{PREFIX}-triton", "severity": "warning"}],
        ),
        (keda_errors("5x40"), "30m", []),  # errors long ago, none now
    ],
    "VoicebotPodCrashLooping": [
        (
            crashloop(f"{PREFIX}-gateway-5f7c-xyz", "1x30"),
            "25m",
            [{**NS, "pod": f"{PREFIX}-gateway-5f7c-xyz", "container": "gateway", "severity": "warning"}],
        ),
        (crashloop("someone-else-5f7c-xyz", "1x30"), "25m", []),  # not this release
        (crashloop(f"{PREFIX}-gateway-5f7c-xyz", "0x30"), "25m", []),
    ],
}


@pytest.fixture(scope="module")
def rule_groups(renders: dict[str, Render]) -> list[dict[str, Any]]:
    rule = next(o for o in renders["default"].objects if o["kind"] == "PrometheusRule")
    return list(rule["spec"]["groups"])


def alerts(groups: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in groups for r in g["rules"] if "alert" in r}


def test_promtool_check_rules(rule_groups: list[dict[str, Any]], tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule_groups}))
    proc = run([tool("promtool"), "check", "rules", str(path)])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_promtool_unit_tests_cover_every_alert(rule_groups: list[dict[str, Any]], tmp_path: Path) -> None:
    rules = alerts(rule_groups)
    assert set(CASES) == set(rules), "every alert needs cases, and every case an alert"
    for name, cases in CASES.items():
        assert any(c[2] for c in cases), f"{name}: no case where it fires"
        assert any(not c[2] for c in cases), f"{name}: no case where it stays silent"

    stripped = [
        {**g, "rules": [{**r, "annotations": {k: v for k, v in r.get("annotations", {}).items() if k != "description"}}
                        for r in g["rules"]]}
        for g in rule_groups
    ]  # fmt: skip
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": stripped}))
    tests = []
    for name, cases in CASES.items():
        annotations = {k: v for k, v in rules[name]["annotations"].items() if k != "description"}
        for series, at, firing in cases:
            tests.append({
                "name": f"{name} at {at} ({'fires' if firing else 'silent'})",
                "interval": "1m",
                "input_series": series,
                "alert_rule_test": [{
                    "eval_time": at,
                    "alertname": name,
                    "exp_alerts": [{"exp_labels": labels, "exp_annotations": annotations} for labels in firing],
                }],
            })  # fmt: skip
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump({"rule_files": ["rules.yaml"], "tests": tests}))
    proc = run([tool("promtool"), "test", "rules", "tests.yaml"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_alert_has_severity_summary_and_a_runbook(rule_groups: list[dict[str, Any]]) -> None:
    for name, rule in alerts(rule_groups).items():
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        assert rule["annotations"]["summary"], name
        assert rule["annotations"]["description"], name
        url = rule["annotations"]["runbook_url"]
        assert url.startswith("https://"), name
        assert "/docs/runbooks/" in url, name
        runbook = RUNBOOKS / url.rsplit("/docs/runbooks/", 1)[1]
        assert runbook.exists(), f"{name}: {runbook} is missing"
        text = runbook.read_text()
        assert name.removesuffix("Fast").removesuffix("Slow") in text, f"{runbook.name} does not name {name}"
        for section in ("## What it means", "## First five minutes", "## Fix", "## Escalate"):
            assert section in text, f"{runbook.name} lacks '{section}'"
        assert "kubectl" in text, f"{runbook.name} gives no commands"


def test_alerts_select_only_this_release(rule_groups: list[dict[str, Any]]) -> None:
    for name, rule in alerts(rule_groups).items():
        assert f'namespace="{NAMESPACE}"' in rule["expr"], name
        assert PREFIX in rule["expr"], name
