"""Shared pytest wiring: every test is marked with its tier, taken from its folder."""

from __future__ import annotations

from pathlib import Path

import pytest

TIERS = {"unit", "integration", "e2e", "chart", "infra", "images", "bench"}
REPO_ROOT = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        rel = Path(item.path).resolve().relative_to(REPO_ROOT / "tests")
        tier = rel.parts[0]
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))
