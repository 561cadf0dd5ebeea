"""One answer: retrieval → prompt → LLM tokens → checked sentences → speech, stages overlapped.

The LLM stream and the speech of finished sentences run as two tasks joined by a bounded
queue, so sentence one is being synthesised (and heard) while sentence two is generated.
Cancelling `answer()` (barge-in, client gone) closes both model streams, which cancels them on
Triton. Speech failing still delivers the text; retrieval failing still answers, flagged as
without sources.

Every sentence passes a grounding gate (orchestrator/grounding.py) before it is shown or
spoken: it must be backed by the passages, it gets the citation of the passage that backs it,
and a repeated one ends the answer. A question the passages do not touch, or an answer they do
not back, becomes the one stable decline sentence (`NO_ANSWER`), with the reason on the result.
So `answer.delta` carries whole checked sentences, not raw tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from orchestrator.errors import VoicebotError
from orchestrator.focus import focus, focus_terms, lead
from orchestrator.grounding import (
    DeclineReason,
    Evidence,
    cited_numbers,
    is_model_decline,
    only_citations,
    terms,
)
from orchestrator.inference import Models, Usage
from orchestrator.metrics import Metrics
from orchestrator.prompt import (
    NO_ANSWER,
    PASSAGE_CHARS,
    Exchange,
    Passage,
    Prompt,
    PromptFormat,
    build_prompt,
    conversation_prefix,
    stop_strings,
)
from orchestrator.protocol import (
    AnswerDelta,
    AnswerDone,
    AudioHeader,
    Citation,
    ErrorEvent,
    ServerEvent,
    Sources,
    public_source,
)
from orchestrator.sentences import SentenceSplitter, speakable
from orchestrator.turn import Phase, Turn

log = logging.getLogger(__name__)

SENTENCE_QUEUE = 8  # sentences waiting for speech; the LLM waits when speech falls this far behind
SNIPPET_CHARS = 240
MAX_SENTENCES = 3  # a spoken answer is one to three sentences; the rest is not generated
AUDIO_LEAD_S = 1.0  # audio sent ahead of real time; bounds what a client buffers and must drop


@dataclass(frozen=True)
class Source:
    """A citation: the n-th passage of the prompt."""

    n: int
    title: str
    source: str
    heading_path: list[str]
    snippet: str
    text: str = field(repr=False, default="")

    def public(self, passage_chars: int = 0) -> dict[str, Any]:
        """As clients see it; with `passage_chars`, also the passage's `text` as the LLM read it,
        so a client can show (and check) what each citation points to. Stored turns keep no text."""
        shown: dict[str, Any] = {
            "n": self.n,
            "title": self.title,
            "source": self.source,
            "heading_path": self.heading_path,
            "snippet": self.snippet,
        }
        if passage_chars:
            shown["text"] = self.text[:passage_chars].strip()
        return shown

    def citation(self, passage_chars: int) -> Citation:
        """As a `sources` event carries it."""
        return Citation(**self.public(passage_chars))


class Retriever(Protocol):
    async def __call__(self, question: str) -> list[Source]:
        """Passages for the question; raises VoicebotError (store/model unavailable) on failure."""
        ...


class Sink(Protocol):
    """Where events and audio go (a WebSocket, an SSE stream, a test's list). Events arrive
    typed; a sink that speaks JSON serialises them itself."""

    async def send_event(self, event: ServerEvent) -> None: ...

    async def send_audio(self, frame: bytes) -> None: ...


@dataclass
class AnswerResult:
    text: str = ""
    sources: list[Source] = field(default_factory=list)
    sources_available: bool = True
    spoken: bool = False
    citations: list[int] = field(default_factory=list)  # the passages the answer cites, in order
    decline_reason: DeclineReason | None = None  # set when the answer is the decline sentence

    @property
    def declined(self) -> bool:
        return self.decline_reason is not None

    def done_fields(self) -> dict[str, Any]:
        """What `answer.done` (and the HTTP answers) say about the answer besides its text."""
        return {
            "citations": self.citations,
            "declined": self.declined,
            "decline_reason": self.decline_reason.value if self.decline_reason else None,
        }

    def done_event(self, turn: int) -> AnswerDone:
        return AnswerDone(turn=turn, text=self.text, **self.done_fields())


@dataclass(frozen=True)
class AnswerOptions:
    prompt_format: PromptFormat = "chatml"
    max_tokens: int = 160
    voice: str = ""
    speak: bool = True
    passage_chars: int = PASSAGE_CHARS
    max_sentences: int = MAX_SENTENCES


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


def prompt_for(
    question: str, sources: Sequence[Source] | None, history: Sequence[Exchange], options: AnswerOptions
) -> Prompt:
    """The answer's prompt; with `question=""`, `.prefix` is what speculation warms (the same bytes)."""
    passages = [Passage(s.title, s.heading_path, s.text) for s in sources] if sources is not None else None
    return build_prompt(
        question, passages, history, fmt=options.prompt_format, passage_chars=options.passage_chars
    )


def conversation_for(history: Sequence[Exchange], options: AnswerOptions) -> str:
    """What every prompt of the next turn starts with, whatever its passages and question."""
    return conversation_prefix(history, fmt=options.prompt_format)


async def answer(
    question: str,
    turn: Turn,
    *,
    sink: Sink,
    models: Models,
    retrieve: Retriever,
    history: Sequence[Exchange],
    options: AnswerOptions,
    metrics: Metrics,
) -> AnswerResult:
    """Answer `question` in `turn` (ANSWERING; SPEAKING once its first audio is sent), streaming
    `sources`, `answer.delta`, audio and `answer.done` to `sink`; the stages' times go to
    `turn.timings`."""
    result = AnswerResult()
    timings = turn.timings
    number = turn.number

    # 1. retrieval
    began = time.monotonic()
    try:
        result.sources = await retrieve(question)
    except VoicebotError as e:
        log.warning(
            "retrieval failed; answering without sources", extra={"turn": number, "code": e.code.value}
        )
        metrics.errors.labels(e.code.value).inc()
        result.sources_available = False
        # Say why (store_unavailable / model_unavailable), then answer anyway: not fatal.
        await sink.send_event(
            ErrorEvent(
                code=e.code,
                message=f"search is unavailable, answering without sources: {e.message}",
                turn=number,
            )
        )
    timings.retrieval = (time.monotonic() - began) * 1000
    metrics.stage_duration.labels("retrieval").observe(timings.retrieval / 1000)
    await sink.send_event(
        Sources(
            turn=number,
            available=result.sources_available,
            sources=[s.citation(options.passage_chars) for s in result.sources],
        )
    )

    # 2. generation and speech, overlapped
    prompt = prompt_for(question, result.sources if result.sources_available else None, history, options)
    # Without sources (search down) there is nothing to check against: the answer says so itself.
    evidence = (
        Evidence(
            question,
            [" ".join([s.title, *s.heading_path, s.text[: options.passage_chars]]) for s in result.sources],
        )
        if result.sources_available
        else None
    )
    sentences: asyncio.Queue[str | None] = asyncio.Queue(maxsize=SENTENCE_QUEUE)
    kept: list[str] = []
    pointed: list[int] = []  # passages the model cited without saying anything

    async def say(text: str) -> None:
        await sink.send_event(AnswerDelta(turn=number, text=(" " if kept else "") + text))
        kept.append(text)
        if options.speak:
            await sentences.put(text)

    async def decline(reason: DeclineReason) -> None:
        result.decline_reason = reason
        metrics.declines.labels(reason.value).inc()
        result.citations = []
        kept.clear()
        await say(NO_ANSWER)
        log.info("answer declined", extra={"turn": number, "reason": reason.value})

    async def accept(sentence: str) -> bool:
        """Show and speak `sentence` if it passes the gate; False ends the answer."""
        if evidence is None:
            await say(sentence)
            return len(kept) < options.max_sentences
        if not kept and is_model_decline(sentence):
            await decline(DeclineReason.MODEL_DECLINED)
            return False
        verdict = evidence.check(sentence)
        if verdict.skip:
            log.debug("answer sentence skipped (no prose): %r", sentence, extra={"turn": number})
            if only_citations(sentence):
                pointed.extend(cited_numbers(sentence))
            return True
        if not verdict.keep:
            # The sentence itself only at debug (docs/security.md): what tuning the gate needs.
            log.debug(
                "answer sentence refused: %r",
                sentence,
                extra={"turn": number, "reason": (verdict.reason or "repeated"), "kept": len(kept)},
            )
            if not kept:
                await decline(verdict.reason or DeclineReason.UNSUPPORTED)
            return False
        for n in verdict.citations:
            if n not in result.citations:
                result.citations.append(n)
        await say(verdict.text)
        if timings.llm_first_sentence is None:
            timings.llm_first_sentence = turn.elapsed_ms()
        return len(kept) < options.max_sentences

    async def say_pointed(numbers: Sequence[int]) -> None:
        for n in dict.fromkeys(numbers):
            if not 1 <= n <= len(result.sources):
                continue
            source = result.sources[n - 1]
            sentence = lead(source.text[: options.passage_chars])
            # Only a sentence about what the question asks beyond the passage's heading: a lead
            # that merely shares the words that found the section answers nothing.
            if set(terms(sentence)) & focus_terms(question, " ".join([source.title, *source.heading_path])):
                await accept(f"{sentence} [{n}]")
            if kept:
                return

    async def finish() -> None:
        result.text = " ".join(kept).strip()
        if options.speak:
            await sentences.put(None)
        await sink.send_event(result.done_event(number))

    async def generate() -> None:
        # If this raises, the task group cancels speak(); so the end marker is only sent on success,
        # and with an awaited put: dropping it when the queue is full would leave speak() waiting.
        early = evidence.before_generation() if evidence is not None else None
        if early is not None:
            await decline(early)
            await finish()
            return
        splitter = SentenceSplitter()
        going = True
        usage = Usage()
        stream = models.generate(
            prompt.text, max_tokens=options.max_tokens, stop=stop_strings(options.prompt_format), usage=usage
        )
        async with contextlib.aclosing(stream):  # leaving early closes it: generation stops on Triton
            async for delta in stream:
                if timings.llm_first_token is None:
                    timings.llm_first_token = turn.elapsed_ms()
                    metrics.stage_duration.labels("llm_first_token").observe(timings.llm_first_token / 1000)
                for sentence in splitter.feed(delta):
                    going = going and await accept(sentence)
                if not going:
                    break
        if usage.prompt_tokens:
            timings.llm_prompt_tokens, timings.llm_cached_tokens = usage.prompt_tokens, usage.cached_tokens
        if going:
            for rest in splitter.flush():
                going = going and await accept(rest)
        if not kept and pointed and evidence is not None:
            # The model only pointed at a passage ("[2]", a habit of the 0.5B default): the answer
            # is what that passage, given from the part the question is about, says first.
            await say_pointed(pointed)
        if not kept:  # the model wrote nothing usable
            await decline(DeclineReason.UNSUPPORTED)
        await finish()

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
                            timings.tts_first_audio = turn.elapsed_ms()
                            timings.first_audio = timings.tts_first_audio
                            metrics.stage_duration.labels("tts_first_audio").observe(
                                timings.tts_first_audio / 1000
                            )
                            metrics.stage_duration.labels("turn_first_audio").observe(
                                timings.first_audio / 1000
                            )
                        await pacer.before_send(chunk.pcm.size / chunk.sample_rate)
                        header = AudioHeader(turn=number, seq=seq, sample_rate=chunk.sample_rate)
                        await sink.send_audio(header.pack() + chunk.pcm.tobytes())
                        seq += 1
                        if not result.spoken and turn.phase is Phase.ANSWERING:
                            turn.to(Phase.SPEAKING)
                        result.spoken = True
            except VoicebotError as e:
                # The text still arrives; tell the client once that speech is missing.
                failed = True
                metrics.errors.labels(e.code.value).inc()
                await sink.send_event(
                    ErrorEvent(code=e.code, message=f"speech is unavailable: {e.message}", turn=number)
                )

    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(generate())
            if options.speak:
                group.create_task(speak())
    except* VoicebotError as group_error:
        # Only generation errors reach here (speech handles its own); re-raise the first as is.
        raise group_error.exceptions[0] from None
    return result


def sources_from_hits(
    hits: Sequence[Any], question: str = "", passage_chars: int = PASSAGE_CHARS
) -> list[Source]:
    """ingest.search.SearchHit → numbered citations, each passage from the part `question` is
    about (orchestrator/focus.py; the whole passage without a question)."""
    sources = []
    for i, hit in enumerate(hits, start=1):
        where = " ".join([hit.title, *hit.heading_path])
        text = focus(hit.text, question, passage_chars, heading=where) if question else hit.text
        sources.append(
            Source(
                n=i,
                title=hit.title,
                source=public_source(hit.source),  # never the server's paths
                heading_path=list(hit.heading_path),
                snippet=text[:SNIPPET_CHARS].strip(),
                text=text,
            )
        )
    return sources
