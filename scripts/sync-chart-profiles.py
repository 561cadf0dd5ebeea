#!/usr/bin/env python3
"""Write what the chart knows of the weights manifest: values.schema.json's models.profile enum and
charts/voicebot/files/profiles.json (LLM format and gated repositories per profile, formats per
model repository), from images/triton/voicebot_models/manifest.toml. Run it after changing the
manifest; `make test-chart` fails until the two agree (tests/chart/test_chart_profiles.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.contracts import REPO, chart_profiles, model_profiles

CHART = REPO / "charts" / "voicebot"


def main() -> int:
    schema_path = CHART / "values.schema.json"
    schema = json.loads(schema_path.read_text())
    schema["properties"]["models"]["properties"]["profile"]["enum"] = model_profiles()
    schema_path.write_text(json.dumps(schema, indent=2, ensure_ascii=False) + "\n")
    out = CHART / "files" / "profiles.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(chart_profiles(), indent=2) + "\n")
    print(f"wrote {schema_path.relative_to(REPO)} and {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
