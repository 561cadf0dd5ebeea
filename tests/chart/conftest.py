"""Fixtures for the chart tier: each scenario rendered once per session."""

from __future__ import annotations

import pytest
import yaml
from chartlib import CHART, SCENARIOS, Render, helm_template


@pytest.fixture(scope="session")
def renders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Render]:
    out = tmp_path_factory.mktemp("renders")
    result: dict[str, Render] = {}
    for scenario in SCENARIOS:
        proc = helm_template("-f", str(CHART / "ci" / f"{scenario}-values.yaml"))
        assert proc.returncode == 0, f"helm template {scenario} failed:\n{proc.stderr}"
        path = out / f"{scenario}.yaml"
        path.write_text(proc.stdout)
        objects = [d for d in yaml.safe_load_all(proc.stdout) if d]
        result[scenario] = Render(scenario, path, objects)
    return result


@pytest.fixture(params=SCENARIOS)
def render(request: pytest.FixtureRequest, renders: dict[str, Render]) -> Render:
    return renders[request.param]
