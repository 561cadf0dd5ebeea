"""What every benchmark's JSON records about the run: the machine and the model profile."""

from __future__ import annotations

import os
import platform
from typing import Any


def machine(load_at_start: tuple[float, float, float]) -> dict[str, Any]:
    """Cores, platform, Python and the load averages around the run (absolute figures move with them)."""
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_at_start": [round(v, 2) for v in load_at_start],
        "load_average_at_end": [round(v, 2) for v in os.getloadavg()],
    }


def profile_models(profile: Any) -> dict[str, Any]:
    """A weights-manifest profile (voicebot_models.manifest) as the JSON records it."""
    return {
        "name": profile.name,
        "asr": profile.asr,
        "llm": profile.llm,
        "tts": list(profile.tts),
        "embed": profile.embed,
    }
