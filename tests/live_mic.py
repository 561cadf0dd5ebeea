"""A hands-free client for tests and benchmarks: a microphone streamed in real time over the
voice WebSocket, silence between what it is told to say, and every event it gets back stamped
with the microphone's clock (seconds of audio sent when it arrived).

It plays nothing, but keeps the answer audio it receives and when it arrived, as a client
plays it (from arrival, gapless, cut at `audio.clear`), so a test knows when a real client's
speakers would fall silent; with `echo` it mixes that playback back into the microphone, late and
quieter, as speakers heard by the microphone are.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from websockets.asyncio.client import ClientConnection

from orchestrator.protocol import AudioHeader

RATE = 16_000
FRAME_S = 0.1
FRAME_BYTES = int(RATE * FRAME_S) * 2


@dataclass
class Playback:
    """One turn's answer audio as a client would play it: from the first chunk's arrival, gapless."""

    started_s: float
    sample_rate: int
    samples: int = 0

    @property
    def ends_s(self) -> float:
        return self.started_s + self.samples / self.sample_rate


@dataclass
class LiveMic:
    ws: ClientConnection
    echo: tuple[float, float] | None = None  # (delay s, gain dB) of the speakers into the microphone
    events: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    playback: dict[int, Playback] = field(default_factory=dict)
    _pending: bytearray = field(default_factory=bytearray)
    _frames_sent: int = 0
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    # What the speakers play, at 16 kHz, indexed by the microphone's sample clock.
    _speaker: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    _speaker_end: int = 0

    @property
    def now(self) -> float:
        """The microphone's clock: seconds of audio sent so far."""
        return self._frames_sent * FRAME_S

    async def __aenter__(self) -> LiveMic:
        self._tasks = [asyncio.create_task(self._send()), asyncio.create_task(self._receive())]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def say(self, pcm: bytes) -> tuple[float, float]:
        """Queue `pcm` to be spoken after what is queued; (start, end) on the microphone's clock."""
        start = self.now + len(self._pending) / (2 * RATE)
        self._pending += pcm
        return start, start + len(pcm) / (2 * RATE)

    async def until(self, done: Callable[[], bool], what: str, timeout_s: float = 240.0) -> None:
        """Until `done()` holds; checked at every frame sent and every message received."""
        deadline = time.monotonic() + timeout_s
        while not done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                kinds = [e["type"] for _, e in self.events]
                raise AssertionError(f"no {what} within {timeout_s} s; events: {kinds}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=remaining)

    async def said(self) -> None:
        """Until everything queued has been sent."""
        await self.until(lambda: not self._pending, "end of what was queued")

    async def wait_for(
        self, type_: str, timeout_s: float = 240.0, where: Callable[[dict[str, Any]], bool] = lambda e: True
    ) -> tuple[float, dict[str, Any]]:
        """The first event of `type_` (from the start) that `where` accepts, with its arrival time."""
        found: list[tuple[float, dict[str, Any]]] = []

        def seen() -> bool:
            found[:] = [(at, e) for at, e in self.events if e["type"] == type_ and where(e)][:1]
            return bool(found)

        await self.until(seen, type_, timeout_s)
        return found[0]

    async def playing(self, turn: int, timeout_s: float = 240.0) -> None:
        """Until the first audio of `turn` has arrived (a client's speakers play it now)."""
        await self.until(lambda: turn in self.playback, f"audio of turn {turn}", timeout_s)

    async def silent_speakers(self, margin_s: float = 0.5) -> None:
        """Until every answer received so far would have finished playing, plus `margin_s`."""

        def silent() -> bool:
            return self.now >= max((p.ends_s for p in self.playback.values()), default=0.0) + margin_s

        await self.until(silent, "silent speakers")

    def of(self, type_: str) -> list[dict[str, Any]]:
        return [e for _, e in self.events if e["type"] == type_]

    async def _send(self) -> None:
        t0 = time.monotonic()
        while True:
            frame = bytes(self._pending[:FRAME_BYTES])
            del self._pending[:FRAME_BYTES]
            frame = frame.ljust(FRAME_BYTES, b"\x00")  # silence when nothing is being said
            if self.echo is not None:
                frame = self._with_echo(frame)
            await self.ws.send(frame)
            self._frames_sent += 1
            self._changed.set()
            await asyncio.sleep(max(0.0, t0 + self._frames_sent * FRAME_S - time.monotonic()))

    async def _receive(self) -> None:
        async for message in self.ws:
            if isinstance(message, bytes):
                header, pcm = AudioHeader.unpack(message)
                playing = self.playback.get(header.turn)
                if playing is None:
                    playing = self.playback[header.turn] = Playback(self.now, header.sample_rate)
                playing.samples += len(pcm) // 2
                self._play(pcm, header.sample_rate)
                self._changed.set()
                continue
            event = json.loads(message)
            if event["type"] == "audio.clear" and event["turn"] in self.playback:
                cut = self.playback[event["turn"]]
                cut.samples = min(cut.samples, max(0, round((self.now - cut.started_s) * cut.sample_rate)))
                self._speaker_end = min(self._speaker_end, self._frames_sent * FRAME_BYTES // 2)
                self._speaker[self._speaker_end :] = 0.0
            self.events.append((self.now, event))
            self._changed.set()

    def _play(self, pcm: bytes, sample_rate: int) -> None:
        """Put a chunk on the speakers' timeline, right after what plays (or now)."""
        x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
        n = round(x.size * RATE / sample_rate)
        resampled = np.interp(np.arange(n) * sample_rate / RATE, np.arange(x.size), x) if n else x[:0]
        start = max(self._speaker_end, self._frames_sent * FRAME_BYTES // 2)
        end = start + resampled.size
        if end > self._speaker.size:
            self._speaker = np.concatenate([self._speaker, np.zeros(end - self._speaker.size + 10 * RATE)])
        self._speaker[start:end] = resampled
        self._speaker_end = end

    def _with_echo(self, frame: bytes) -> bytes:
        assert self.echo is not None
        delay_s, gain_db = self.echo
        first = self._frames_sent * FRAME_BYTES // 2 - round(delay_s * RATE)
        mic = np.frombuffer(frame, dtype="<i2").astype(np.float64)
        lo, hi = max(0, first), max(0, min(first + mic.size, self._speaker.size))
        if hi > lo:
            mic[lo - first : hi - first] += self._speaker[lo:hi] * 10 ** (gain_db / 20)
        return mic.clip(-32768, 32767).astype("<i2").tobytes()
