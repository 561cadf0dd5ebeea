"""Fakes shared by unit tests, each implementing one real interface at a seam."""

from __future__ import annotations

import json
from typing import Any


class ListSink:
    """A pipeline/session `Sink` that keeps the events it is sent (audio is dropped)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    async def send_text(self, data: str) -> None:
        self.events.append(json.loads(data))

    async def send_bytes(self, data: bytes) -> None:
        return None

    def of(self, type_: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == type_]
