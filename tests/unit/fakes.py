"""Fakes shared by unit tests, each implementing one real interface at a seam."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from orchestrator.errors import ModelUnavailable
from orchestrator.inference import AudioChunk, Transcript, Usage
from orchestrator.protocol import AudioHeader, ServerEvent


class ListSink:
    """A pipeline/session `Sink` that keeps what it is sent, in order: each event as the JSON
    object a client would receive (`events`), the typed events (`typed`), and audio headers."""

    def __init__(self) -> None:
        self.items: list[tuple[str, Any]] = []
        self.typed: list[ServerEvent] = []

    async def send_event(self, event: ServerEvent) -> None:
        self.typed.append(event)
        self.items.append(("event", event.wire()))

    async def send_audio(self, frame: bytes) -> None:
        header, pcm = AudioHeader.unpack(frame)
        self.items.append(("audio", (header, len(pcm))))

    @property
    def events(self) -> list[dict[str, Any]]:
        return [e for kind, e in self.items if kind == "event"]

    def of(self, type_: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == type_]

    def kinds(self) -> list[str]:
        """Event types and "audio", in the order they were sent."""
        return [e["type"] if kind == "event" else "audio" for kind, e in self.items]

    def audio_headers(self) -> list[AudioHeader]:
        return [item[0] for kind, item in self.items if kind == "audio"]


class FakeModels:
    """The model seam (`orchestrator.inference.Models`), the one fake of it: an LLM that writes
    `deltas`, one every `delay` seconds (or is unavailable: `fail`); speech of two chunks per
    sentence, each `tts_pcm` (or unavailable: `tts_fails`); ASR that hears `transcript` (or is unavailable:
    `asr_fails`); prefills that count
    `prefill_tokens` (or wait until cancelled: `block_prefill`). It records what it was asked."""

    def __init__(
        self,
        deltas: Sequence[str] = ("Run ", "make ", "up [1]."),
        *,
        delay: float = 0.0,
        fail: bool = False,
        tts_fails: bool = False,
        tts_delay: float = 0.0,
        tts_pcm: npt.NDArray[np.int16] | None = None,
        transcript: str = "hello",
        asr_fails: bool = False,
        prefill_tokens: int = 100,
        block_prefill: bool = False,
    ) -> None:
        self.deltas = deltas
        self.delay = delay
        self.fail = fail
        self.tts_fails = tts_fails
        self.tts_delay = tts_delay
        self.tts_pcm = np.ones(160, dtype=np.int16) if tts_pcm is None else tts_pcm  # each chunk, 16 kHz
        self.transcript = transcript
        self.asr_fails = asr_fails
        self.prefill_tokens = prefill_tokens
        self.block_prefill = block_prefill
        self.prompts: list[str] = []  # generations
        self.prefilled: list[str] = []
        self.spoken: list[str] = []
        self.closed: list[str] = []  # "llm" / "tts" as each stream is closed
        self.chunks: list[tuple[int, bool, bool]] = []  # (samples, start, end) sent to the ASR
        self.prefills_cancelled: list[str] = []  # their prompts, in order
        self.speaking = asyncio.Event()

    async def transcribe_chunk(
        self,
        pcm: npt.NDArray[np.int16],
        *,
        sequence_id: int,
        start: bool,
        end: bool,
        language: str | None = None,
        prompt: str = "",
    ) -> Transcript:
        self.chunks.append((int(pcm.size), start, end))
        if self.asr_fails:
            raise ModelUnavailable("model 'asr' is unavailable")
        return Transcript(self.transcript, True)

    async def generate(
        self, prompt: str, *, max_tokens: int, stop: list[str], usage: Usage | None = None
    ) -> AsyncGenerator[str, None]:
        self.prompts.append(prompt)
        if self.fail:
            raise ModelUnavailable("model 'llm' is unavailable")
        try:
            for delta in self.deltas:
                await asyncio.sleep(self.delay)
                yield delta
        finally:
            self.closed.append("llm")

    async def prefill(self, prompt: str) -> Usage | None:
        self.prefilled.append(prompt)
        if self.block_prefill:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                self.prefills_cancelled.append(prompt)
                raise
        return Usage(prompt_tokens=self.prefill_tokens)

    async def synthesize(
        self, text: str, *, voice: str = "", speaking_rate: float = 1.0
    ) -> AsyncGenerator[AudioChunk, None]:
        if self.tts_fails:
            raise ModelUnavailable("model 'tts' is unavailable: connection refused")
        self.spoken.append(text)
        self.speaking.set()
        try:
            for _ in range(2):
                await asyncio.sleep(self.tts_delay)
                yield AudioChunk(self.tts_pcm, 16000)
        finally:
            self.closed.append("tts")
