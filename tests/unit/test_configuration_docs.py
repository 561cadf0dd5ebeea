"""docs/configuration.md documents every setting, and nothing that no longer exists."""

from __future__ import annotations

import re

from orchestrator.settings import Settings
from tests.conftest import REPO_ROOT


def test_every_setting_is_documented_and_no_stale_ones() -> None:
    text = (REPO_ROOT / "docs" / "configuration.md").read_text()
    documented = set(re.findall(r"^\| `VOICEBOT_([A-Z0-9_]+)` \|", text, flags=re.MULTILINE))
    fields = {name.upper() for name in Settings.model_fields}
    assert fields - documented == set(), "settings missing from docs/configuration.md"
    assert documented - fields == set(), "docs/configuration.md lists settings that do not exist"
