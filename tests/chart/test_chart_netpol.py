"""NetworkPolicies allow exactly the data flow, evaluated like a CNI would on the rendered objects.

Every port the release serves (Service ports, and the KServe predictor's ports) is checked against
every possible client: each pod of the release, the ingress controller, Prometheus, an unrelated
pod in the namespace, and addresses outside the cluster. A flow is allowed when the client's egress
and the server's ingress both admit it (or no policy selects that side).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

import pytest
from chartlib import NAMESPACE, PREFIX, Obj, Render, pod_templates


@dataclass(frozen=True)
class Peer:
    name: str
    labels: tuple[tuple[str, str], ...] = ()
    namespace: str = NAMESPACE
    ns_labels: tuple[tuple[str, str], ...] = (("kubernetes.io/metadata.name", NAMESPACE),)
    ip: str = "10.244.1.10"
    in_release: bool = False
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


def _t(d: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(d.items()))


EXTERNAL = [
    Peer(
        "ingress-controller",
        _t({"app.kubernetes.io/name": "ingress-nginx"}),
        "ingress-nginx",
        _t({"kubernetes.io/metadata.name": "ingress-nginx"}),
        "10.244.2.2",
    ),
    Peer(
        "prometheus",
        _t({"app.kubernetes.io/name": "prometheus"}),
        "monitoring",
        _t({"kubernetes.io/metadata.name": "monitoring"}),
        "10.244.2.3",
    ),
    Peer("stranger", _t({"app": "something-else"}), ip="10.244.2.4"),
]
DNS = Peer(
    "dns", _t({"k8s-app": "kube-dns"}), "kube-system", _t({"kubernetes.io/metadata.name": "kube-system"})
)
INTERNET = Peer("internet", namespace="", ns_labels=(), ip="203.0.113.7")
EXTERNAL_DB = Peer("external-db", namespace="", ns_labels=(), ip="10.0.64.5")


def selector_matches(sel: dict[str, Any] | None, labels: tuple[tuple[str, str], ...]) -> bool:
    if sel is None:
        return False
    have = dict(labels)
    return all(have.get(k) == v for k, v in sel.get("matchLabels", {}).items()) and not sel.get(
        "matchExpressions"
    )


def peer_matches(entry: dict[str, Any], peer: Peer, policy_ns: str) -> bool:
    if "ipBlock" in entry:
        if peer.namespace:  # pods are reached through selectors, not address blocks
            return False
        block = entry["ipBlock"]
        addr = ipaddress.ip_address(peer.ip)
        inside = addr in ipaddress.ip_network(block["cidr"])
        return inside and not any(addr in ipaddress.ip_network(c) for c in block.get("except", []))
    if not peer.namespace:
        return False
    if "namespaceSelector" in entry:
        if not selector_matches(entry["namespaceSelector"], peer.ns_labels):
            return False
    elif peer.namespace != policy_ns:
        return False
    return "podSelector" not in entry or selector_matches(entry["podSelector"], peer.labels)


def port_matches(ports: list[dict[str, Any]] | None, port: int, protocol: str) -> bool:
    if not ports:
        return True
    return any(p.get("port") in (None, port) and p.get("protocol", "TCP") == protocol for p in ports)


def admitted(
    policies: list[Obj], subject: Peer, other: Peer, port: int, protocol: str, direction: str
) -> bool:
    """Does the subject pod's policy set admit traffic with `other` in `direction`?"""
    ptype, key, peers_key = (
        ("Ingress", "ingress", "from") if direction == "in" else ("Egress", "egress", "to")
    )
    selecting = [
        p
        for p in policies
        if subject.in_release
        and selector_matches(p["spec"]["podSelector"], subject.labels)
        and ptype in p["spec"].get("policyTypes", ["Ingress"])
    ]
    if not subject.in_release:
        return True  # outside the release: not ours to restrict
    if not selecting:
        return True
    for pol in selecting:
        for rule in pol["spec"].get(key) or []:
            peers = rule.get(peers_key)
            peer_ok = not peers or any(peer_matches(e, other, NAMESPACE) for e in peers)
            if peer_ok and port_matches(rule.get("ports"), port, protocol):
                return True
    return False


def allowed(policies: list[Obj], src: Peer, dst: Peer, port: int, protocol: str = "TCP") -> bool:
    return admitted(policies, src, dst, port, protocol, "out") and admitted(
        policies, dst, src, port, protocol, "in"
    )


def release_pods(render: Render) -> dict[str, Peer]:
    pods: dict[str, Peer] = {}
    for obj in render.objects:
        for _, meta, spec in pod_templates(obj):
            if obj["kind"] == "ServingRuntime":
                continue
            labels = meta.get("labels", {})
            component = labels["app.kubernetes.io/component"]
            ports = [
                (p["containerPort"], p.get("protocol", "TCP"))
                for c in spec.get("containers", [])
                for p in c.get("ports", [])
            ]
            if obj["kind"] == "InferenceService":
                runtime = next(r for r in render.of_kind("ServingRuntime"))
                ports = [
                    (p["containerPort"], "TCP") for c in runtime["spec"]["containers"] for p in c["ports"]
                ]
            pods[component] = Peer(component, _t(labels), in_release=True, extra={"ports": ports})
    return pods


def served_ports(render: Render, pods: dict[str, Peer]) -> list[tuple[str, int]]:
    """(component, container port) for every port a Service (or KServe) exposes."""
    out: list[tuple[str, int]] = []
    for svc in render.of_kind("Service"):
        component = svc["spec"]["selector"]["app.kubernetes.io/component"]
        obj = next(
            o
            for o in render.objects
            for _, meta, _ in pod_templates(o)
            if meta.get("labels", {}).get("app.kubernetes.io/component") == component
        )
        # KServe's predictor pods run the ServingRuntime's containers
        specs = (
            [r["spec"] for r in render.of_kind("ServingRuntime")] if obj["kind"] == "InferenceService" else []
        )
        specs = specs or [s for _, _, s in pod_templates(obj)]
        named = {p["name"]: p["containerPort"] for s in specs for c in s["containers"] for p in c["ports"]}
        out += [(component, named[p["targetPort"]]) for p in svc["spec"]["ports"]]
    if render.of_kind("InferenceService"):
        out += [("triton", port) for port, _ in pods["triton"].extra["ports"]]
    return sorted(set(out))


def gateway_metrics_port(render: Render) -> int:
    svc = render.get("Service", f"{PREFIX}-gateway")
    return next(p["port"] for p in svc["spec"]["ports"] if p["name"] == "metrics")


def expected_flows(render: Render, pods: dict[str, Peer]) -> set[tuple[str, str, int]]:
    """The data flow the chart's documentation promises, and nothing else: Prometheus scrapes the
    gateway's keyless metrics listener, never its public port 8080."""
    flows = {
        ("prometheus", "gateway", gateway_metrics_port(render)),
        ("helm-test", "gateway", 8080),
        ("prometheus", "triton", 8002),
    }
    if render.of_kind("Ingress"):
        flows.add(("ingress-controller", "gateway", 8080))
    clients = [c for c in ("gateway", "ingest") if c in pods]
    flows |= {(c, "triton", 8001) for c in clients}
    if "postgres" in pods:
        flows |= {(c, "postgres", 5432) for c in [*clients, "migrations"]}
    return flows


@pytest.fixture
def netpols(render: Render) -> list[Obj]:
    pols = render.of_kind("NetworkPolicy")
    assert pols, "NetworkPolicies are on by default"
    return pols


def test_default_deny_covers_every_pod(render: Render, netpols: list[Obj]) -> None:
    deny = next(p for p in netpols if p["metadata"]["name"] == f"{PREFIX}-default-deny")
    assert deny["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert not deny["spec"].get("ingress")
    assert not deny["spec"].get("egress")
    for pod in release_pods(render).values():
        assert selector_matches(deny["spec"]["podSelector"], pod.labels), pod.name


def test_every_served_port_has_exactly_the_needed_paths(render: Render, netpols: list[Obj]) -> None:
    pods = release_pods(render)
    sources = [*pods.values(), *EXTERNAL]
    actual = {
        (src.name, component, port)
        for component, port in served_ports(render, pods)
        for src in sources
        if src.name != component and allowed(netpols, src, pods[component], port)
    }
    expected = expected_flows(render, pods)
    assert actual == expected, f"extra: {sorted(actual - expected)}; missing: {sorted(expected - actual)}"
    # every served port is used by some flow
    used = {(dst, port) for _, dst, port in actual}
    assert set(served_ports(render, pods)) == used


def test_prometheus_scrapes_the_gateway_only_on_its_metrics_port(render: Render, netpols: list[Obj]) -> None:
    """/metrics on 8080 needs an API key outside dev mode: Prometheus reaches the keyless metrics
    listener and nothing else of the gateway; no one else reaches that listener."""
    gateway = release_pods(render)["gateway"]
    ingress_controller, prometheus, stranger = EXTERNAL
    port = gateway_metrics_port(render)
    assert allowed(netpols, prometheus, gateway, port)
    assert not allowed(netpols, prometheus, gateway, 8080)
    for other in (ingress_controller, stranger):
        assert not allowed(netpols, other, gateway, port), other.name


def test_egress_outside_the_release(render: Render, netpols: list[Obj]) -> None:
    pods = release_pods(render)
    clients = {"gateway", "ingest", "migrations", "helm-test", "model-fetch"} & set(pods)
    for name, pod in pods.items():
        assert allowed(netpols, pod, DNS, 53, "UDP") == (name in clients), name
        hub = allowed(netpols, pod, INTERNET, 443)
        assert hub == (name == "model-fetch"), name
    external_db = not render.of_kind("StatefulSet")
    for name, pod in pods.items():
        reaches_db = allowed(netpols, pod, EXTERNAL_DB, 5432)
        assert reaches_db == (external_db and name in {"gateway", "ingest", "migrations"}), name


def test_evaluator_sees_a_hole(render: Render, netpols: list[Obj]) -> None:
    """The checks can fail: a policy that opens Postgres to anyone is reported."""
    if "postgres" not in release_pods(render):
        pytest.skip("external database")
    pods = release_pods(render)
    stranger = EXTERNAL[2]
    assert not allowed(netpols, stranger, pods["postgres"], 5432)
    hole = {
        "kind": "NetworkPolicy",
        "metadata": {"name": "hole"},
        "spec": {
            "podSelector": {"matchLabels": {"app.kubernetes.io/component": "postgres"}},
            "policyTypes": ["Ingress"],
            "ingress": [{}],
        },
    }
    assert allowed([*netpols, hole], stranger, pods["postgres"], 5432)
