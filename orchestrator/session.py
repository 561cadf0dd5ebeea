"""A voice session: the turn state machine behind one WebSocket (protocol in docs/protocol.md).

States: idle → recording (turn.start … audio … turn.end) → answering → idle. A `turn.start`
while answering is a barge-in: the answer task is cancelled (closing the LLM and TTS streams on
Triton) and the client is told to drop that turn's queued audio (`audio.clear`). Each recording
streams its audio to `asr` as a Triton sequence, so partial transcripts arrive while the button
is held and the final one needs only the last chunk decoded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from orchestrator.errors import StageTimeout, VoicebotError
from orchestrator.history import Outcome, SessionHistory, TurnRecord
from orchestrator.inference import ModelClients
from orchestrator.metrics import Metrics
from orchestrator.pipeline import (
    AnswerOptions,
    AnswerResult,
    Retriever,
    Sink,
    Source,
    Timings,
    answer,
    prompt_for,
)
from orchestrator.prompt import HISTORY_TURNS, Exchange
from orchestrator.protocol import (
    INPUT_SAMPLE_RATE,
    INPUT_SAMPLE_WIDTH,
    PROTOCOL_VERSION,
    ErrorCode,
    ProtocolError,
    SessionStart,
    TextQuestion,
    TurnCancel,
    TurnEnd,
    TurnStart,
    error_event,
    event,
    parse_client_message,
    validate_audio_frame,
)
from orchestrator.speculation import Speculator

log = logging.getLogger(__name__)

ASR_CHUNK_S = 0.5  # audio sent to `asr` per request while the button is held
STORE_WRITE_TIMEOUT_S = 3.0  # a turn's record; past it the turn is logged as not recorded


@dataclass
class SessionConfig:
    max_turn_audio_s: float
    max_text_chars: int
    asr_timeout_s: float
    options: AnswerOptions
    speculation: bool = True  # retrieve and prefill on partial transcripts (orchestrator/speculation.py)


class AsrStream:
    """Feeds one turn's audio to the `asr` sequence in ASR_CHUNK_S pieces, off the receive loop.

    When ASR falls behind, waiting pieces are merged into one request, so the final transcript
    after release never waits for a backlog of partials."""

    def __init__(
        self,
        models: ModelClients,
        language: str | None,
        on_partial: Callable[[str], Awaitable[None]],
        prompt: str = "",
    ) -> None:
        self.models = models
        self.language = language
        self.on_partial = on_partial
        self.prompt = prompt  # the collection's vocabulary: biases recognition (ingest/vocabulary.py)
        self.sequence_id = secrets.randbits(63) or 1
        self._chunk_bytes = int(ASR_CHUNK_S * INPUT_SAMPLE_RATE) * INPUT_SAMPLE_WIDTH
        self._pending = bytearray()
        self._queue: asyncio.Queue[tuple[bytes, bool]] = asyncio.Queue()
        self._final: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._run())

    def feed(self, frame: bytes) -> None:
        self._pending += frame
        if len(self._pending) >= self._chunk_bytes:
            self._queue.put_nowait((bytes(self._pending), False))
            self._pending.clear()

    async def finish(self) -> str:
        """Send what is left with END and return the final transcript."""
        self._queue.put_nowait((bytes(self._pending), True))
        self._pending.clear()
        return await self._final

    async def _run(self) -> None:
        started = False
        try:
            while True:
                chunk, end = await self._queue.get()
                while not end and not self._queue.empty():
                    more, end = self._queue.get_nowait()
                    chunk += more
                pcm = np.frombuffer(chunk, dtype="<i2")
                result = await self.models.transcribe_chunk(
                    pcm,
                    sequence_id=self.sequence_id,
                    start=not started,
                    end=end,
                    language=self.language,
                    prompt=self.prompt,
                )
                started = True
                if end:
                    self._final.set_result(result.text.strip())
                    return
                if result.text:
                    await self.on_partial(result.text)
        except Exception as e:
            if not self._final.done():
                self._final.set_exception(e)

    async def aclose(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        if not self._final.done():
            self._final.cancel()


@dataclass(eq=False)  # identity: the gateway keeps open sessions in a set
class VoiceSession:
    sink: Sink
    models: ModelClients
    retrieve: Retriever
    metrics: Metrics
    config: SessionConfig
    session_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    history: list[Exchange] = field(default_factory=list)
    language: str | None = None
    voice: str = ""
    started: bool = False
    _turn: int = 0
    _asr: AsrStream | None = None
    _audio_bytes: int = 0
    _answering: asyncio.Task[None] | None = None
    _answering_turn: int = 0
    # Set by the gateway while it drains for a restart: turns in flight finish, new ones are refused.
    draining: Callable[[], bool] = lambda: False
    # The words of the documents, for the ASR to expect (AppState caches it per collection).
    vocabulary: Callable[[], str] = lambda: ""
    on_close: Callable[[VoiceSession], None] = lambda session: None
    # Who owns the session, and where it is resumed from and recorded (None: kept in memory only).
    subject: str = "anonymous"
    store: SessionHistory | None = None
    resume_session: bool = False  # the session token was issued to resume `session_id`
    _asked: str | None = None  # the question of the turn in flight, once known
    _discarding: bool = False  # the rest of a turn dropped for its size is ignored
    _writes: set[asyncio.Task[None]] = field(default_factory=set)
    _speculator: Speculator | None = None  # the recording's (then its answer's) speculation

    @property
    def busy(self) -> bool:
        """A recording or an answer is in flight (draining waits for it)."""
        return self._asr is not None or (self._answering is not None and not self._answering.done())

    # ---- inbound ---------------------------------------------------------------------

    async def on_text(self, raw: str) -> None:
        try:
            message = parse_client_message(raw)
            if isinstance(message, SessionStart):
                await self._start_session(message)
            elif not self.started:
                raise ProtocolError(ErrorCode.BAD_REQUEST, "send session.start first")
            elif isinstance(message, TurnStart):
                await self._turn_start()
            elif isinstance(message, TurnEnd):
                await self._turn_end()
            elif isinstance(message, TurnCancel):
                await self._cancel(reason="cancelled")
            elif isinstance(message, TextQuestion):
                await self._text(message)
        except ProtocolError as e:
            await self._error(e.code, e.message)

    async def on_audio(self, frame: bytes) -> None:
        try:
            if self._asr is None and self._discarding:
                return  # the rest of a turn already dropped as too large
            if self._asr is None:
                raise ProtocolError(
                    ErrorCode.BAD_AUDIO, "audio received outside a turn; send turn.start first"
                )
            validate_audio_frame(frame)
            limit = int(self.config.max_turn_audio_s * INPUT_SAMPLE_RATE) * INPUT_SAMPLE_WIDTH
            if self._audio_bytes + len(frame) > limit:
                await self._abandon_recording()
                self._discarding = True
                await self._error(
                    ErrorCode.TOO_LARGE,
                    f"turn audio is over {self.config.max_turn_audio_s:.0f} s; the turn was dropped",
                )
                await self.sink.send_text(event("turn.done", turn=self._turn, outcome="error", timings={}))
                return
            self._audio_bytes += len(frame)
            self._asr.feed(frame)
        except ProtocolError as e:
            await self._error(e.code, e.message)

    async def close(self) -> None:
        await self._cancel(reason="cancelled", notify=False)
        if self._writes:  # turns being recorded get their chance to land
            await asyncio.wait(self._writes, timeout=STORE_WRITE_TIMEOUT_S)
        if self.started:
            self.metrics.open_sessions.dec()
        self.on_close(self)

    async def end_for_shutdown(self) -> None:
        """Draining is over: tell the client to reconnect (the server then closes with 1012)."""
        await self.sink.send_text(
            error_event(
                ErrorCode.SHUTTING_DOWN, "the server is restarting; reconnect to continue", fatal=True
            )
        )

    def _refuse_while_draining(self) -> None:
        if self.draining():
            raise ProtocolError(
                ErrorCode.SHUTTING_DOWN, "the server is restarting; reconnect to ask a new question"
            )

    # ---- transitions -----------------------------------------------------------------

    async def _start_session(self, message: SessionStart) -> None:
        if self.started:
            raise ProtocolError(ErrorCode.BAD_REQUEST, "the session has already started")
        self.language = message.language
        self.voice = message.voice or self.config.options.voice
        resumed = await self._resume(message.session_id)
        self.started = True
        self.metrics.open_sessions.inc()
        await self.sink.send_text(
            event(
                "session.ready",
                session_id=self.session_id,
                protocol=PROTOCOL_VERSION,
                input_sample_rate=INPUT_SAMPLE_RATE,
                resumed=resumed,
                turns=self._turn,
            )
        )

    async def _resume(self, requested: str | None) -> bool:
        """Continue a stored session of this subject: the one `session.start` names, else the one
        the session token was issued to resume. History and turn numbering continue; an unknown
        or foreign id gets `not_found` and a new session."""
        if self.store is None:
            if requested:
                self.session_id = requested
            return False
        candidate = requested or (self.session_id if self.resume_session else None)
        if candidate is None:
            return False
        try:
            resumed = await self.store.resume(candidate, self.subject)
        except VoicebotError as e:
            log.warning("session not resumed", extra={"session": candidate, "code": e.code.value})
            await self._error(e.code, f"the session could not be loaded ({e.message}); this is a new session")
            return False
        if resumed is None:
            await self._error(ErrorCode.NOT_FOUND, "no such session to resume; this is a new session")
            return False
        self.session_id = candidate
        self.history = resumed.history
        self._turn = resumed.last_turn
        return True

    async def _turn_start(self) -> None:
        self._refuse_while_draining()
        if self._answering is not None and not self._answering.done():
            self.metrics.barge_ins.inc()
        await self._cancel(reason="cancelled")
        self._discarding = False
        self._turn += 1
        turn = self._turn

        speculator = self._speculator = self._new_speculator()

        async def partial(text: str) -> None:
            await self.sink.send_text(event("transcript.partial", turn=turn, text=text))
            if speculator is not None:
                speculator.on_partial(text)

        self._asr = AsrStream(self.models, self.language, partial, prompt=self.vocabulary())
        self._audio_bytes = 0
        await self.sink.send_text(event("turn.started", turn=turn))

    def _new_speculator(self) -> Speculator | None:
        if not self.config.speculation:
            return None
        history = self.history[-HISTORY_TURNS:]
        options = self.config.options

        def prefix_for(sources: Sequence[Source]) -> str:
            return prompt_for("", sources, history, options).prefix

        return Speculator(self.retrieve, self.models, prefix_for, self.metrics)

    async def _stop_speculating(self) -> None:
        speculator, self._speculator = self._speculator, None
        if speculator is not None:
            await speculator.aclose()

    async def _turn_end(self) -> None:
        if self._asr is None and self._discarding:
            self._discarding = False  # the release of a turn already dropped (and done)
            return
        if self._asr is None:
            raise ProtocolError(ErrorCode.BAD_REQUEST, "turn.end without turn.start")
        asr, self._asr = self._asr, None
        turn = self._turn
        t0 = time.monotonic()
        timings = Timings()
        self._launch(turn, self._transcribe_then_answer(asr, turn, t0, timings))

    async def _text(self, message: TextQuestion) -> None:
        if len(message.text) > self.config.max_text_chars:
            raise ProtocolError(ErrorCode.TOO_LARGE, f"text is over {self.config.max_text_chars} characters")
        self._refuse_while_draining()
        await self._cancel(reason="cancelled")
        self._discarding = False
        self._turn += 1
        turn = self._turn
        self._asked = message.text
        await self.sink.send_text(event("turn.started", turn=turn))
        options = replace(self.config.options, voice=self.voice, speak=message.speak)
        self._launch(turn, self._answer(message.text, turn, time.monotonic(), Timings(), options))

    def _launch(self, turn: int, work: Coroutine[Any, Any, None]) -> None:
        self._answering = asyncio.create_task(work, name=f"turn-{self.session_id}-{turn}")
        self._answering_turn = turn

    async def _transcribe_then_answer(self, asr: AsrStream, turn: int, t0: float, timings: Timings) -> None:
        speculator = self._speculator
        try:
            try:
                question = await asyncio.wait_for(asr.finish(), timeout=self.config.asr_timeout_s)
            except TimeoutError as e:
                raise StageTimeout("transcription took too long") from e
            finally:
                await asr.aclose()
            timings.asr_final = (time.monotonic() - t0) * 1000
            self.metrics.stage_duration.labels("asr_final").observe(timings.asr_final / 1000)
            await self.sink.send_text(event("transcript.final", turn=turn, text=question))
            self._asked = question or None
            if not question:
                await self._done(turn, timings, t0, "ok", note="no speech heard")
                return
            retrieve = speculator.retriever() if speculator is not None else self.retrieve
            options = replace(self.config.options, voice=self.voice)
            await self._answer(question, turn, t0, timings, options, retrieve=retrieve)
        except VoicebotError as e:
            await self._turn_failed(turn, e, timings, t0)
        finally:
            # No speech heard, or ASR failed: this turn's speculation must not outlive it.
            if speculator is not None and self._speculator is speculator:
                await self._stop_speculating()

    async def _answer(
        self,
        question: str,
        turn: int,
        t0: float,
        timings: Timings,
        options: AnswerOptions,
        retrieve: Retriever | None = None,
    ) -> None:
        try:
            result = await answer(
                question,
                turn=turn,
                t0=t0,
                sink=self.sink,
                models=self.models,
                retrieve=retrieve or self.retrieve,
                history=self.history[-HISTORY_TURNS:],
                options=options,
                timings=timings,
                metrics=self.metrics,
            )
        except VoicebotError as e:
            await self._turn_failed(turn, e, timings, t0)
            return
        finally:
            speculator = self._speculator
            if speculator is not None and retrieve is not None:
                timings.extra.update(speculator.stats.as_timings())
                await self._stop_speculating()
        self.history.append(Exchange(question, result.text))
        del self.history[:-HISTORY_TURNS]  # bounded: only the recent exchanges go into prompts
        await self._done(turn, timings, t0, "ok", result=result)

    async def _done(
        self,
        turn: int,
        timings: Timings,
        t0: float,
        outcome: str,
        note: str = "",
        result: AnswerResult | None = None,
    ) -> None:
        timings.total = (time.monotonic() - t0) * 1000
        self.metrics.stage_duration.labels("turn_total").observe(timings.total / 1000)
        self.metrics.turns.labels(outcome).inc()
        write = self._record(turn, "ok" if outcome == "ok" else "error", timings.as_dict(), result)
        if write is not None:  # stored before turn.done, so a client that reloads finds it
            await asyncio.shield(write)
        fields: dict[str, object] = {"turn": turn, "timings": timings.as_dict(), "outcome": outcome}
        if note:
            fields["note"] = note
        await self.sink.send_text(event("turn.done", **fields))

    async def _turn_failed(self, turn: int, e: VoicebotError, timings: Timings, t0: float) -> None:
        log.warning("turn failed", extra={"session": self.session_id, "turn": turn, "code": e.code.value})
        self.metrics.errors.labels(e.code.value).inc()
        await self.sink.send_text(error_event(e.code, e.message, turn=turn))
        await self._done(turn, timings, t0, "error")

    async def _abandon_recording(self) -> None:
        await self._stop_speculating()
        if self._asr is not None:
            asr, self._asr = self._asr, None
            await asr.aclose()

    async def _cancel(self, *, reason: str, notify: bool = True) -> None:
        """Stop the recording and/or the answer in flight; tell the client to drop its audio."""
        await self._abandon_recording()
        task, self._answering = self._answering, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self.metrics.turns.labels(reason).inc()
            self._record(self._answering_turn, "cancelled", {}, None)  # written in the background
            if notify:
                await self.sink.send_text(event("audio.clear", turn=self._answering_turn))
                await self.sink.send_text(
                    event("turn.done", turn=self._answering_turn, outcome=reason, timings={})
                )

    def _record(
        self, turn: int, outcome: Outcome, timings: dict[str, float | str | None], result: AnswerResult | None
    ) -> asyncio.Task[None] | None:
        """Stores the finished turn in the background (a task the session owns and awaits at close).

        Only turns with a question are stored; the answer only when it finished."""
        question, self._asked = self._asked, None
        if self.store is None or not question:
            return None
        answered = result if outcome == "ok" else None
        record = TurnRecord(
            turn=turn,
            question=question,
            outcome=outcome,
            answer=answered.text if answered else "",
            citations=[s.public() for s in answered.sources] if answered else [],
            timings=timings,
        )
        task = asyncio.create_task(self._write(record), name=f"record-{self.session_id}-{turn}")
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)
        return task

    async def _write(self, record: TurnRecord) -> None:
        """A failed write is logged and counted; the conversation goes on."""
        assert self.store is not None
        try:
            await asyncio.wait_for(
                self.store.record(
                    self.session_id, self.subject, record, language=self.language, voice=self.voice
                ),
                STORE_WRITE_TIMEOUT_S,
            )
        except Exception as e:  # the store is down, slow, or refused the row: never the caller's problem
            code = e.code.value if isinstance(e, VoicebotError) else type(e).__name__
            log.warning(
                "turn not recorded", extra={"session": self.session_id, "turn": record.turn, "code": code}
            )
            self.metrics.turn_write_failures.inc()

    async def _error(self, code: ErrorCode, message: str) -> None:
        self.metrics.errors.labels(code.value).inc()
        await self.sink.send_text(error_event(code, message, turn=self._turn or None))
