"""An upgrade to a new chart release that changes nothing a pod runs restarts nothing.

Triton takes minutes to load its models and Postgres is a single pod: a pod template that carries
the chart version (helm.sh/chart, app.kubernetes.io/version) restarts both on every release.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from chartlib import API_VERSIONS, CHART, NAMESPACE, RELEASE, helm_bin, run

SCENARIOS = ("default", "production", "kserve")


def _pod_templates(chart: Path, scenario: str) -> dict[str, object]:
    proc = run(
        [
            helm_bin(), "template", RELEASE, str(chart), "--namespace", NAMESPACE, *API_VERSIONS,
            "-f", str(CHART / "ci" / f"{scenario}-values.yaml"),
            # images pinned, as a real upgrade that changes only the chart would keep them
            "--set", "gateway.image.tag=1.0.0", "--set", "triton.image.tag=1.0.0",
        ]
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    templates: dict[str, object] = {}
    for obj in yaml.safe_load_all(proc.stdout):
        if obj and obj["kind"] in ("Deployment", "StatefulSet"):
            templates[f"{obj['kind']}/{obj['metadata']['name']}"] = obj["spec"]["template"]
        if obj and obj["kind"] == "InferenceService":
            predictor = obj["spec"]["predictor"]
            templates[f"InferenceService/{obj['metadata']['name']}"] = {
                "labels": predictor["labels"],
                "annotations": predictor["annotations"],
            }
    return templates


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_a_new_chart_release_leaves_pod_templates_unchanged(scenario: str, tmp_path: Path) -> None:
    bumped = tmp_path / "voicebot"
    shutil.copytree(CHART, bumped)
    chart = yaml.safe_load((bumped / "Chart.yaml").read_text())
    chart["version"] = "99.0.0"
    chart["appVersion"] = "99.0.0"
    (bumped / "Chart.yaml").write_text(yaml.safe_dump(chart))
    before, after = _pod_templates(CHART, scenario), _pod_templates(bumped, scenario)
    assert before.keys() == after.keys()
    assert any(k.startswith(("Deployment/", "InferenceService/")) for k in before)
    changed = [k for k in before if before[k] != after[k]]
    assert not changed, f"a chart release alone would restart {changed}"
