"""Contracts between parts of the repo written in different languages, checked from both sides.

The chart (charts/voicebot) and the Terraform modules (terraform/) agree on these; the chart tier
and the infra tier import them from here so that a change is made once.
"""

from __future__ import annotations

from typing import Any

# The chart's default Triton scheduling; the GPU node group carries the matching label and taint.
TRITON_SCHEDULING: dict[str, Any] = {
    "nodeSelector": {"voicebot.dev/node-pool": "gpu"},
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
}

# The chart values the Terraform platform module may set (terraform/modules/platform/values.tf).
PLATFORM_CHART_VALUES = frozenset(
    {
        "gateway.ingress.enabled",
        "gateway.ingress.host",
        "gateway.ingress.className",
        "gateway.ingress.tls.clusterIssuer",
        "gateway.replicas",
        "gateway.autoscaling.enabled",
        "triton.autoscaling.enabled",
        "triton.autoscaling.mode",
        "metrics.serviceMonitor.enabled",
        "metrics.prometheusRule.enabled",
        "metrics.grafanaDashboard.enabled",
        "postgres.enabled",
        "postgres.external.existingSecret",
        "secrets.existingSecret",
        "models.profile",
    }
)
