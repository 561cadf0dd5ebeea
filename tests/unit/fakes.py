"""Fakes shared by unit tests, each implementing one real interface at a seam."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Sequence
from typing import Any

import numpy as np

from orchestrator.errors import ModelUnavailable
from orchestrator.inference import AudioChunk, Transcript, Usage


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


class FakeModels:
    """The model seam (`ModelClients`): an LLM that writes `deltas`, one every `delay` seconds (or
    is unavailable), and speech and ASR that answer at once."""

    def __init__(
        self, deltas: Sequence[str] = ("Run ", "make ", "up [1]."), *, delay: float = 0.0, fail: bool = False
    ) -> None:
        self.deltas = deltas
        self.delay = delay
        self.fail = fail
        self.prompts: list[str] = []

    async def generate(
        self, prompt: str, *, max_tokens: int, stop: list[str], usage: Usage | None = None
    ) -> AsyncGenerator[str, None]:
        self.prompts.append(prompt)
        if self.fail:
            raise ModelUnavailable("model 'llm' is unavailable")
        for delta in self.deltas:
            await asyncio.sleep(self.delay)
            yield delta

    async def synthesize(
        self, text: str, *, voice: str = "", speaking_rate: float = 1.0
    ) -> AsyncGenerator[AudioChunk, None]:
        yield AudioChunk(np.zeros(16, dtype=np.int16), 16000)

    async def prefill(self, prompt: str) -> int | None:
        self.prompts.append(prompt)
        return len(prompt.split())

    async def transcribe_chunk(self, pcm: object, **kwargs: object) -> Transcript:
        return Transcript("hello", True)
