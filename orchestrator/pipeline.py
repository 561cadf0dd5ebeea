"""One answer: retrieval → prompt → LLM tokens → sentences → speech, with the stages overlapped.

The LLM stream and the speech of finished sentences run as two tasks joined by a bounded
queue, so sentence one is being synthesised (and heard) while sentence two is generated.
Cancelling `answer()` (barge-in, client gone) closes both model streams, which cancels them on
Triton. Speech failing still delivers the text; retrieval failing still answers, flagged as
without sources.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from orchestrator.errors import VoicebotError
from orchestrator.inference import AudioChunk
from orchestrator.metrics import Metrics
from orchestrator.prompt import Exchange, Passage, PromptFormat, build_messages, render, stop_strings
from orchestrator.protocol import AudioHeader, error_event, event, public_source
from orchestrator.sentences import SentenceSplitter, speakable

log = logging.getLogger(__name__)

SENTENCE_QUEUE = 8  # sentences waiting for speech; the LLM waits when speech falls this far behind
SNIPPET_CHARS = 240
AUDIO_LEAD_S = 1.0  # audio sent ahead of real time; bounds what a client buffers and must drop


class Models(Protocol):
    """What the pipeline needs from the model server (ModelClients implements it)."""

    def generate(self, prompt: str, *, max_tokens: int, stop: list[str]) -> AsyncGenerator[str, None]: ...

    def synthesize(
        self, text: str, *, voice: str = "", speaking_rate: float = 1.0
    ) -> AsyncGenerator[AudioChunk, None]: ...


@dataclass(frozen=True)
class Source:
    """A citation: the n-th passage of the prompt."""

    n: int
    title: str
    source: str
    heading_path: list[str]
    snippet: str
    text: str = field(repr=False, default="")

    def public(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "title": self.title,
            "source": self.source,
            "heading_path": self.heading_path,
            "snippet": self.snippet,
        }


class Retriever(Protocol):
    async def __call__(self, question: str) -> list[Source]:
        """Passages for the question; raises VoicebotError (store/model unavailable) on failure."""
        ...


class Sink(Protocol):
    """Where events and audio go (a WebSocket, an SSE stream, a test's list)."""

    async def send_text(self, data: str) -> None: ...

    async def send_bytes(self, data: bytes) -> None: ...


@dataclass
class Timings:
    """Milliseconds: `retrieval` is the search's duration; the others count from the turn's
    reference point (release of the button, or the typed question)."""

    asr_final: float | None = None
    retrieval: float | None = None
    llm_first_token: float | None = None
    tts_first_audio: float | None = None
    first_audio: float | None = None
    total: float | None = None

    def as_dict(self) -> dict[str, float | None]:
        return {k: (round(v, 1) if v is not None else None) for k, v in self.__dict__.items()}


@dataclass
class AnswerResult:
    text: str = ""
    sources: list[Source] = field(default_factory=list)
    sources_available: bool = True
    spoken: bool = False


@dataclass(frozen=True)
class AnswerOptions:
    prompt_format: PromptFormat = "chatml"
    max_tokens: int = 256
    voice: str = ""
    speak: bool = True


class AudioPacer:
    """Sends audio no more than AUDIO_LEAD_S ahead of real-time playback."""

    def __init__(self, lead_s: float = AUDIO_LEAD_S) -> None:
        self.lead_s = lead_s
        self._started: float | None = None
        self._sent_s = 0.0

    async def before_send(self, duration_s: float) -> None:
        now = time.monotonic()
        if self._started is None:
            self._started = now
        ahead = self._sent_s - (now - self._started)
        if ahead > self.lead_s:
            await asyncio.sleep(ahead - self.lead_s)
        self._sent_s += duration_s


def _elapsed_ms(t0: float) -> float:
    return (time.monotonic() - t0) * 1000


async def answer(
    question: str,
    *,
    turn: int,
    t0: float,
    sink: Sink,
    models: Models,
    retrieve: Retriever,
    history: Sequence[Exchange],
    options: AnswerOptions,
    timings: Timings,
    metrics: Metrics,
) -> AnswerResult:
    """Answer `question`, streaming `sources`, `answer.delta`, audio and `answer.done` to `sink`."""
    result = AnswerResult()

    # 1. retrieval
    began = time.monotonic()
    try:
        result.sources = await retrieve(question)
    except VoicebotError as e:
        log.warning("retrieval failed; answering without sources", extra={"turn": turn, "code": e.code.value})
        metrics.errors.labels(e.code.value).inc()
        result.sources_available = False
        # Say why (store_unavailable / model_unavailable), then answer anyway: not fatal.
        await sink.send_text(
            error_event(e.code, f"search is unavailable, answering without sources: {e.message}", turn=turn)
        )
    timings.retrieval = _elapsed_ms(began)
    metrics.stage_duration.labels("retrieval").observe(timings.retrieval / 1000)
    await sink.send_text(
        event(
            "sources",
            turn=turn,
            available=result.sources_available,
            sources=[s.public() for s in result.sources],
        )
    )

    # 2. generation and speech, overlapped
    passages = (
        [Passage(s.title, s.heading_path, s.text) for s in result.sources]
        if result.sources_available
        else None
    )
    prompt = render(build_messages(question, passages, history), options.prompt_format)
    sentences: asyncio.Queue[str | None] = asyncio.Queue(maxsize=SENTENCE_QUEUE)
    pieces: list[str] = []

    async def generate() -> None:
        # If this raises, the task group cancels speak(); so the end marker is only sent on success,
        # and with an awaited put: dropping it when the queue is full would leave speak() waiting.
        splitter = SentenceSplitter()
        stream = models.generate(
            prompt, max_tokens=options.max_tokens, stop=stop_strings(options.prompt_format)
        )
        async with contextlib.aclosing(stream):
            async for delta in stream:
                if timings.llm_first_token is None:
                    timings.llm_first_token = _elapsed_ms(t0)
                    metrics.stage_duration.labels("llm_first_token").observe(timings.llm_first_token / 1000)
                pieces.append(delta)
                await sink.send_text(event("answer.delta", turn=turn, text=delta))
                if options.speak:
                    for sentence in splitter.feed(delta):
                        await sentences.put(sentence)
        result.text = "".join(pieces).strip()
        if options.speak:
            for rest in splitter.flush():
                await sentences.put(rest)
            await sentences.put(None)
        await sink.send_text(event("answer.done", turn=turn, text=result.text))

    async def speak() -> None:
        seq = 0
        pacer = AudioPacer()
        failed = False
        while (sentence := await sentences.get()) is not None:
            text = speakable(sentence)
            if failed or not text:
                continue
            try:
                stream = models.synthesize(text, voice=options.voice)
                async with contextlib.aclosing(stream):
                    async for chunk in stream:
                        if timings.tts_first_audio is None:
                            timings.tts_first_audio = _elapsed_ms(t0)
                            timings.first_audio = timings.tts_first_audio
                            metrics.stage_duration.labels("tts_first_audio").observe(
                                timings.tts_first_audio / 1000
                            )
                            metrics.stage_duration.labels("turn_first_audio").observe(
                                timings.first_audio / 1000
                            )
                        await pacer.before_send(chunk.pcm.size / chunk.sample_rate)
                        header = AudioHeader(turn=turn, seq=seq, sample_rate=chunk.sample_rate)
                        await sink.send_bytes(header.pack() + chunk.pcm.tobytes())
                        seq += 1
                        result.spoken = True
            except VoicebotError as e:
                # The text still arrives; tell the client once that speech is missing.
                failed = True
                metrics.errors.labels(e.code.value).inc()
                await sink.send_text(error_event(e.code, f"speech is unavailable: {e.message}", turn=turn))

    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(generate())
            if options.speak:
                group.create_task(speak())
    except* VoicebotError as group_error:
        # Only generation errors reach here (speech handles its own); re-raise the first as is.
        raise group_error.exceptions[0] from None
    return result


def sources_from_hits(hits: Sequence[Any]) -> list[Source]:
    """ingest.search.SearchHit → numbered citations."""
    return [
        Source(
            n=i,
            title=hit.title,
            source=public_source(hit.source),  # never the server's paths
            heading_path=list(hit.heading_path),
            snippet=hit.text[:SNIPPET_CHARS].strip(),
            text=hit.text,
        )
        for i, hit in enumerate(hits, start=1)
    ]
