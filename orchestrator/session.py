"""A voice session: the turns behind one WebSocket (protocol in docs/protocol.md).

Its phases and their transitions are in orchestrator/turn.py: idle → listening (turn.start …
audio) → transcribing (turn.end) → answering → speaking → done, cancelled or failed. A
`turn.start` during an answer is a barge-in: the answer task is cancelled (closing the LLM and
TTS streams on Triton) and the client is told to drop that turn's queued audio (`audio.clear`).
Each recording streams its audio to `asr` as a Triton sequence, so partial transcripts arrive
while the button is held and the final one needs only the last chunk decoded.

Read a spoken turn top to bottom: `_turn_start` → `on_audio` → `_turn_end` → `_converse`
(transcribe, answer) → `_finish`; `_cancel` is the other way out.

Hands-free (`mode: "hands_free"`, docs/handsfree.md) replaces the button with the gateway's
ears: every frame goes to a `Listener` (VAD, turn detector, echo guard), and its events take the
button's place: `_speech_started` for `turn.start` (a barge-in when an answer is in flight or its
audio still plays), `_speech_ended` for `turn.end`. From there a turn is the same; only its end
differs: a final transcript with no question in it ends the turn IGNORED.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from orchestrator.endpointing import (
    BargeIn,
    EndpointingSettings,
    SpeechStarted,
    TurnEnded,
    TurnEvent,
    is_backchannel,
)
from orchestrator.errors import StageTimeout, VoicebotError
from orchestrator.handsfree import Listener, PlaybackTap
from orchestrator.history import Outcome, SessionHistory, TurnRecord
from orchestrator.inference import Models
from orchestrator.metrics import Metrics
from orchestrator.pipeline import (
    AnswerOptions,
    AnswerResult,
    Retriever,
    Sink,
    Source,
    answer,
    conversation_for,
    prompt_for,
)
from orchestrator.prompt import HISTORY_TURNS, Exchange
from orchestrator.protocol import (
    INPUT_SAMPLE_RATE,
    INPUT_SAMPLE_WIDTH,
    PROTOCOL_VERSION,
    AudioClear,
    ErrorCode,
    ErrorEvent,
    ProtocolError,
    SessionMode,
    SessionReady,
    SessionStart,
    SessionUpdate,
    SessionUpdated,
    TextQuestion,
    TranscriptFinal,
    TranscriptPartial,
    TurnCancel,
    TurnDone,
    TurnEnd,
    TurnStart,
    TurnStarted,
    TurnTrigger,
    parse_client_message,
    validate_audio_frame,
)
from orchestrator.speculation import Speculator
from orchestrator.turn import Phase, Turn
from orchestrator.vad import VadModel, VadUnavailable, shared_model

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
    # Hands-free thresholds (VOICEBOT_VAD_*, VOICEBOT_TURN_*, ...); None: push-to-talk only.
    endpointing: EndpointingSettings | None = field(default_factory=EndpointingSettings)


@dataclass(frozen=True)
class SessionContext:
    """Everything a session is built from, in one place (AppState.new_session makes it)."""

    models: Models
    retrieve: Retriever
    metrics: Metrics
    config: SessionConfig
    # Who owns the session, and where it is resumed from and recorded (None: kept in memory only).
    subject: str = "anonymous"
    store: SessionHistory | None = None
    session_id: str | None = None  # the id the session token was issued for
    resume: bool = False  # the token was issued to resume `session_id`
    # True while the gateway drains for a restart: turns in flight finish, new ones are refused.
    draining: Callable[[], bool] = lambda: False
    # The words of the documents, for the ASR to expect (AppState caches it per collection).
    vocabulary: Callable[[], str] = lambda: ""
    on_close: Callable[[VoiceSession], None] = lambda session: None
    vad: Callable[[], VadModel] = shared_model  # the loaded VAD model, for hands-free sessions


class AsrStream:
    """Feeds one turn's audio to the `asr` sequence in ASR_CHUNK_S pieces, off the receive loop.

    When ASR falls behind, waiting pieces are merged into one request, so the final transcript
    after release never waits for a backlog of partials."""

    def __init__(
        self,
        models: Models,
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


@dataclass(eq=False)
class VoiceTurn(Turn):
    """A turn of a voice session, with what it holds while it is in flight."""

    asr: AsrStream | None = None  # while LISTENING
    audio_bytes: int = 0
    speculator: Speculator | None = None  # the recording's (then its answer's) speculation
    task: asyncio.Task[None] | None = None  # from the release (or the typed question) to turn.done
    trigger: TurnTrigger = "client"  # "speech": hands-free, started by the gateway's VAD
    on_partial: Callable[[str], Awaitable[None]] | None = None  # where its ASR's partials go
    # Hands-free: the turn's audio so far (to feed a new ASR stream when the speaker goes on
    # after an early final), that early final, and how often it was thrown away.
    audio: bytearray = field(default_factory=bytearray)
    early_final: asyncio.Task[str] | None = None
    asr_restarts: int = 0

    @property
    def in_flight(self) -> bool:
        """Its transcription or answer is still running."""
        return self.task is not None and not self.task.done()

    async def stop_speculating(self) -> None:
        speculator, self.speculator = self.speculator, None
        if speculator is not None:
            await speculator.aclose()

    async def stop_listening(self) -> None:
        await self.stop_speculating()
        early, self.early_final = self.early_final, None
        if early is not None:
            early.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await early
        asr, self.asr = self.asr, None
        if asr is not None:
            await asr.aclose()


class VoiceSession:
    """One WebSocket's conversation: client messages in (`on_text`, `on_audio`), typed events and
    audio out to `sink`. Its state is its current turn's phase (orchestrator/turn.py)."""

    def __init__(self, sink: Sink, context: SessionContext) -> None:
        self.sink = PlaybackTap(sink)  # what the client plays, for the hands-free listener
        self.context = context
        self.config = context.config
        self.metrics = context.metrics
        self.session_id = context.session_id or uuid.uuid4().hex
        self.history: list[Exchange] = []
        self.language: str | None = None
        self.voice = ""
        self.mode: SessionMode = "push_to_talk"
        self.listener: Listener | None = None  # hands-free only
        # The current turn: before session.start a NEW placeholder, then IDLE until the first turn.
        self.turn = VoiceTurn(0, Phase.NEW)
        self._writes: set[asyncio.Task[None]] = set()
        self._warming: asyncio.Task[Any] | None = None  # the next turn's conversation prefix

    @property
    def phase(self) -> Phase:
        return self.turn.phase

    @property
    def busy(self) -> bool:
        """A recording or an answer is in flight (draining waits for it)."""
        return self.phase.live or self.turn.in_flight

    # ---- inbound ---------------------------------------------------------------------

    async def on_text(self, raw: str) -> None:
        try:
            message = parse_client_message(raw)
            if isinstance(message, SessionStart):
                await self._start_session(message)
            elif self.phase is Phase.NEW:
                raise ProtocolError(ErrorCode.BAD_REQUEST, "send session.start first")
            elif isinstance(message, SessionUpdate):
                await self._update(message)
            elif isinstance(message, TurnStart | TurnEnd) and self.mode == "hands_free":
                raise ProtocolError(
                    ErrorCode.BAD_REQUEST,
                    f"{message.type} in hands-free mode: the gateway starts and ends turns "
                    "(send session.update with mode push_to_talk to use the button)",
                )
            elif isinstance(message, TurnStart):
                await self._turn_start()
            elif isinstance(message, TurnEnd):
                await self._turn_end()
            elif isinstance(message, TurnCancel):
                await self._cancel()
            elif isinstance(message, TextQuestion):
                await self._text(message)
        except ProtocolError as e:
            await self._error(e.code, e.message)

    async def on_audio(self, frame: bytes) -> None:
        if self.listener is not None:
            try:
                validate_audio_frame(frame)
            except ProtocolError as e:
                await self._error(e.code, e.message)
                return
            await self._hear(frame)
            return
        turn = self.turn
        try:
            if turn.phase is Phase.DISCARDING:
                return  # the rest of a turn already dropped as too large
            if turn.phase is not Phase.LISTENING or turn.asr is None:
                raise ProtocolError(
                    ErrorCode.BAD_AUDIO, "audio received outside a turn; send turn.start first"
                )
            validate_audio_frame(frame)
            limit = int(self.config.max_turn_audio_s * INPUT_SAMPLE_RATE) * INPUT_SAMPLE_WIDTH
            if turn.audio_bytes + len(frame) > limit:
                await turn.stop_listening()
                turn.to(Phase.DISCARDING)
                await self._error(
                    ErrorCode.TOO_LARGE,
                    f"turn audio is over {self.config.max_turn_audio_s:.0f} s; the turn was dropped",
                )
                await self.sink.send_event(TurnDone(turn=turn.number, outcome="error", timings={}))
                return
            turn.audio_bytes += len(frame)
            turn.asr.feed(frame)
        except ProtocolError as e:
            await self._error(e.code, e.message)

    async def close(self) -> None:
        await self._cancel(notify=False)
        if self._warming is not None:
            self._warming.cancel()
        if self._writes:  # turns being recorded get their chance to land
            await asyncio.wait(self._writes, timeout=STORE_WRITE_TIMEOUT_S)
        if self.phase is not Phase.NEW:
            self.metrics.open_sessions.dec()
        self.context.on_close(self)

    async def end_for_shutdown(self) -> None:
        """Draining is over: tell the client to reconnect (the server then closes with 1012)."""
        await self.sink.send_event(
            ErrorEvent(
                code=ErrorCode.SHUTTING_DOWN,
                message="the server is restarting; reconnect to continue",
                fatal=True,
            )
        )

    def _refuse_while_draining(self) -> None:
        if self.context.draining():
            raise ProtocolError(
                ErrorCode.SHUTTING_DOWN, "the server is restarting; reconnect to ask a new question"
            )

    # ---- the session -----------------------------------------------------------------

    async def _start_session(self, message: SessionStart) -> None:
        if self.phase is not Phase.NEW:
            raise ProtocolError(ErrorCode.BAD_REQUEST, "the session has already started")
        self.language = message.language
        self.voice = message.voice or self.config.options.voice
        try:
            self._set_mode(message.mode)
        except ProtocolError as e:  # hands-free not offered: the session starts push-to-talk
            await self._error(e.code, e.message)
        last_turn = await self._resume(message.session_id)
        self.turn.to(Phase.IDLE)
        self.turn.number = last_turn or 0  # the next turn is numbered after the last stored one
        self.metrics.open_sessions.inc()
        await self.sink.send_event(
            SessionReady(
                session_id=self.session_id,
                protocol=PROTOCOL_VERSION,
                input_sample_rate=INPUT_SAMPLE_RATE,
                resumed=last_turn is not None,
                turns=last_turn or 0,
                mode=self.mode,
            )
        )
        self._warm_next_turn()

    def _warm_next_turn(self) -> None:
        """Idle time: have the model hold what the next turn's prompt starts with (instructions
        and the conversation so far), so that speculation during the next question starts from
        its passages. Speculative like the rest: it yields to every real generation. Not in
        hands-free mode: there the microphone is live between turns, and the listener's VAD and
        ASR need the CPU for whatever the user says next (the turn's own speculator warms the
        same prefix when speech starts)."""
        if not self.config.speculation or self.mode == "hands_free":
            return
        if self._warming is not None:
            self._warming.cancel()
        prefix = conversation_for(self.history[-HISTORY_TURNS:], self.config.options)
        self._warming = asyncio.create_task(self.context.models.prefill(prefix), name="warm-next-turn")

    async def _update(self, message: SessionUpdate) -> None:
        if message.mode != self.mode and self.phase is Phase.LISTENING:
            await self._cancel()  # a recording of the other mode ends with it
        self._set_mode(message.mode)
        await self.sink.send_event(SessionUpdated(mode=self.mode))

    def _set_mode(self, mode: SessionMode) -> None:
        if mode == "hands_free" and self.listener is None:
            if self.config.endpointing is None:
                raise ProtocolError(
                    ErrorCode.BAD_REQUEST,
                    "hands-free is turned off on this server (VOICEBOT_HANDSFREE=false)",
                )
            try:
                self.listener = Listener(self.config.endpointing, model=self.context.vad())
            except VadUnavailable as e:
                raise ProtocolError(ErrorCode.MODEL_UNAVAILABLE, f"hands-free is not available: {e}") from e
        elif mode == "push_to_talk":
            self.listener = None
        self.sink.listener = self.listener
        self.mode = mode

    async def _resume(self, requested: str | None) -> int | None:
        """Continue a stored session of this subject: the one `session.start` names, else the one
        the session token was issued to resume; the last turn's number, or None for a new session.
        An unknown or foreign id gets `not_found` and a new session."""
        store = self.context.store
        if store is None:
            if requested:
                self.session_id = requested
            return None
        candidate = requested or (self.session_id if self.context.resume else None)
        if candidate is None:
            return None
        try:
            resumed = await store.resume(candidate, self.context.subject)
        except VoicebotError as e:
            log.warning("session not resumed", extra={"session": candidate, "code": e.code.value})
            await self._error(e.code, f"the session could not be loaded ({e.message}); this is a new session")
            return None
        if resumed is None:
            await self._error(ErrorCode.NOT_FOUND, "no such session to resume; this is a new session")
            return None
        self.session_id = candidate
        self.history = resumed.history
        return resumed.last_turn

    # ---- a turn, top to bottom -------------------------------------------------------

    async def _next_turn(self, phase: Phase) -> VoiceTurn:
        """End what is in flight (a barge-in when an answer is), then begin the next turn."""
        self._refuse_while_draining()
        await self._cancel()
        if self.turn.phase is Phase.DISCARDING:
            self.turn.to(Phase.FAILED)  # its release will not come now
        self.turn.check_followable()
        self.turn = VoiceTurn.begin(self.turn.number + 1, phase)
        return self.turn

    async def _turn_start(self) -> None:
        self._refuse_while_draining()
        if self.turn.in_flight:
            self.metrics.barge_ins.inc()
        turn = await self._next_turn(Phase.LISTENING)
        self._listen(turn)
        await self.sink.send_event(TurnStarted(turn=turn.number))

    def _listen(self, turn: VoiceTurn) -> None:
        """The recording's ASR stream and speculation; partial transcripts go to the client,
        the speculator and (hands-free) the turn detector."""
        speculator = turn.speculator = self._new_speculator()
        listener = self.listener

        async def partial(text: str) -> None:
            await self.sink.send_event(TranscriptPartial(turn=turn.number, text=text))
            if speculator is not None:
                speculator.on_partial(text)
            if listener is not None and turn is self.turn and turn.phase is Phase.LISTENING:
                listener.partial(text)

        turn.on_partial = partial
        turn.asr = self._new_asr(turn)

    def _new_asr(self, turn: VoiceTurn) -> AsrStream:
        assert turn.on_partial is not None
        return AsrStream(
            self.context.models, self.language, turn.on_partial, prompt=self.context.vocabulary()
        )

    def _new_speculator(self) -> Speculator | None:
        if not self.config.speculation:
            return None
        history = self.history[-HISTORY_TURNS:]
        options = self.config.options

        def prefix_for(sources: Sequence[Source]) -> str:
            return prompt_for("", sources, history, options).prefix

        speculator = Speculator(
            self.context.retrieve,
            self.context.models,
            prefix_for,
            self.metrics,
            conversation=conversation_for(history, options),
        )
        speculator.start()
        return speculator

    async def _turn_end(self) -> None:
        turn = self.turn
        if turn.phase is Phase.DISCARDING:
            turn.to(Phase.FAILED)  # the release of a turn already dropped (and done)
            return
        if turn.phase is not Phase.LISTENING or turn.asr is None:
            raise ProtocolError(ErrorCode.BAD_REQUEST, "turn.end without turn.start")
        asr, turn.asr = turn.asr, None
        turn.to(Phase.TRANSCRIBING)
        turn.restart_clock()  # a spoken turn's timings count from the release
        self._launch(turn, self._converse(turn, self._final_transcript(asr)))

    async def _text(self, message: TextQuestion) -> None:
        if len(message.text) > self.config.max_text_chars:
            raise ProtocolError(ErrorCode.TOO_LARGE, f"text is over {self.config.max_text_chars} characters")
        turn = await self._next_turn(Phase.ANSWERING)
        turn.question = message.text
        await self.sink.send_event(TurnStarted(turn=turn.number))
        options = replace(self.config.options, voice=self.voice, speak=message.speak)
        self._launch(turn, self._answer(turn, message.text, options))

    # ---- hands-free: the listener's events in place of the button ---------------------

    async def _hear(self, frame: bytes) -> None:
        listener = self.listener
        assert listener is not None
        turn = self.turn
        events = listener.hear(frame, answering=turn.in_flight)
        if turn.phase is Phase.LISTENING:  # a turn the listener started: its audio
            limit = int(self.config.max_turn_audio_s * INPUT_SAMPLE_RATE) * INPUT_SAMPLE_WIDTH
            if turn.audio_bytes + len(frame) > limit:  # a long monologue: answer what was said
                listener.drop_turn()
                self._end_speech_turn(turn)
                return
            turn.audio_bytes += len(frame)
            turn.audio += frame
            if turn.asr is not None:
                turn.asr.feed(frame)
        for event in events:
            await self._on_turn_event(event)
        self._early_final(self.turn, listener)

    def _early_final(self, turn: VoiceTurn, listener: Listener) -> None:
        """In a pause, start on the final transcript while the hangover runs; when the speaker
        goes on, throw it away and feed a new ASR stream the whole turn so far."""
        if turn.phase is not Phase.LISTENING:
            return
        after = self.config.endpointing.early_final_s if self.config.endpointing else 0.0
        silence = listener.silence_s
        if turn.early_final is None and turn.asr is not None and after > 0 and silence >= after:
            asr, turn.asr = turn.asr, None
            turn.early_final = asyncio.create_task(self._heard_so_far(turn, asr, listener))
        elif turn.early_final is not None and silence == 0.0:
            turn.early_final.cancel()  # its stream is closed as it ends
            turn.early_final = None
            turn.asr_restarts += 1
            turn.asr = self._new_asr(turn)
            turn.asr.feed(bytes(turn.audio))

    async def _on_turn_event(self, event: TurnEvent) -> None:
        log.debug(
            "hands-free %s",
            type(event).__name__,
            extra={
                "session": self.session_id,
                "turn": self.turn.number,
                "phase": self.phase.value,
                "at": event.at,
            },
        )
        if isinstance(event, TurnEnded):
            turn = self.turn
            if turn.phase is Phase.LISTENING and turn.trigger == "speech":
                turn.timings.extra["hangover"] = round((event.at - event.speech_end) * 1000, 1)
                self._end_speech_turn(turn)
        else:
            await self._speech_started(event)

    async def _speech_started(self, event: SpeechStarted | BargeIn) -> None:
        """The user speaks: a new turn, with the audio kept from just before the speech began.
        Over an answer (in flight, or its audio still playing) this is a barge-in."""
        listener = self.listener
        assert listener is not None
        try:
            self._refuse_while_draining()
        except ProtocolError as e:
            listener.drop_turn()
            await self._error(e.code, e.message)
            return
        current = self.turn
        playing = listener.playing_turn if listener.bot_speaking else None
        if current.in_flight or playing is not None:
            self.metrics.barge_ins.inc()
        if playing is not None and not (current.in_flight and current.number == playing):
            await self.sink.send_event(AudioClear(turn=playing))  # answered, but still playing
        turn = await self._next_turn(Phase.LISTENING)
        turn.trigger = "speech"
        self._listen(turn)
        await self.sink.send_event(TurnStarted(turn=turn.number, trigger="speech"))
        assert turn.asr is not None
        audio = listener.turn_audio(event)
        turn.audio_bytes = len(audio)
        turn.audio += audio
        turn.asr.feed(audio)

    def _end_speech_turn(self, turn: VoiceTurn) -> None:
        """What `turn.end` does for the button: transcribe (or take the early final), then answer."""
        turn.to(Phase.TRANSCRIBING)
        turn.restart_clock()  # timings count from the end of the turn (after the hangover)
        turn.timings.extra["asr_restarts"] = turn.asr_restarts
        transcript: Awaitable[str]
        if turn.early_final is not None:
            transcript, turn.early_final = turn.early_final, None
            turn.timings.extra["early_final"] = "used"
        else:
            asr, turn.asr = turn.asr, None
            assert asr is not None
            transcript = self._final_transcript(asr)
        self._launch(turn, self._converse(turn, transcript))

    def _launch(self, turn: VoiceTurn, work: Coroutine[Any, Any, None]) -> None:
        turn.task = asyncio.create_task(work, name=f"turn-{self.session_id}-{turn.number}")

    async def _heard_so_far(self, turn: VoiceTurn, asr: AsrStream, listener: Listener) -> str:
        """An early final: the whole turn so far decoded, which also tells the turn detector what
        was said up to the pause (partials lag the speech by up to a chunk, so the last one
        before a pause often misses the last words and looks unfinished)."""
        text = await self._final_transcript(asr)
        if self.turn is turn and turn.phase is Phase.LISTENING:
            listener.heard_so_far(text)
        return text

    async def _final_transcript(self, asr: AsrStream) -> str:
        """The rest of the recording decoded: its final transcript (the stream is closed after)."""
        try:
            return await asyncio.wait_for(asr.finish(), timeout=self.config.asr_timeout_s)
        except TimeoutError as e:
            raise StageTimeout("transcription took too long") from e
        finally:
            await asr.aclose()

    async def _converse(self, turn: VoiceTurn, transcript: Awaitable[str]) -> None:
        """A released recording: its final transcript, then its answer."""
        try:
            question = await transcript
            turn.timings.asr_final = turn.elapsed_ms()
            self.metrics.stage_duration.labels("asr_final").observe(turn.timings.asr_final / 1000)
            if turn.trigger == "speech" and is_backchannel(question):
                await self._ignore(turn, question)
                return
            await self.sink.send_event(TranscriptFinal(turn=turn.number, text=question))
            turn.question = question or None
            if not question:
                await self._finish(turn, Phase.DONE, note="no speech heard")
                return
            retrieve = turn.speculator.retriever() if turn.speculator is not None else None
            turn.to(Phase.ANSWERING)
            await self._answer(turn, question, replace(self.config.options, voice=self.voice), retrieve)
        except VoicebotError as e:
            await self._failed(turn, e)
        finally:
            # No speech heard, or ASR failed: this turn's speculation must not outlive it.
            await turn.stop_speculating()

    async def _answer(
        self, turn: VoiceTurn, question: str, options: AnswerOptions, retrieve: Retriever | None = None
    ) -> None:
        try:
            result = await answer(
                question,
                turn,
                sink=self.sink,
                models=self.context.models,
                retrieve=retrieve or self.context.retrieve,
                history=self.history[-HISTORY_TURNS:],
                options=options,
                metrics=self.metrics,
            )
        except VoicebotError as e:
            await self._failed(turn, e)
            return
        finally:
            if turn.speculator is not None:  # a spoken turn: say what its speculation did
                speculator = turn.speculator
                await turn.stop_speculating()
                speculator.settle(turn.timings.llm_cached_tokens)
                turn.timings.extra.update(speculator.stats.as_timings())
        self.history.append(Exchange(question, result.text))
        del self.history[:-HISTORY_TURNS]  # bounded: only the recent exchanges go into prompts
        self._warm_next_turn()
        await self._finish(turn, Phase.DONE, result=result)

    async def _finish(
        self, turn: VoiceTurn, phase: Phase, *, note: str = "", result: AnswerResult | None = None
    ) -> None:
        """The turn is over (DONE or FAILED): count it, store it, then say so (`turn.done`)."""
        timings = turn.timings
        timings.total = turn.elapsed_ms()
        outcome: Outcome = "ok" if phase is Phase.DONE else "error"
        self.metrics.stage_duration.labels("turn_total").observe(timings.total / 1000)
        self.metrics.turns.labels(outcome).inc()
        write = self._record(turn, outcome, timings.as_dict(), result)
        if write is not None:  # stored before turn.done, so a client that reloads finds it
            await asyncio.shield(write)
        turn.to(phase)
        await self.sink.send_event(
            TurnDone(turn=turn.number, outcome=outcome, timings=timings.as_dict(), note=note or None)
        )

    async def _ignore(self, turn: VoiceTurn, heard: str) -> None:
        """A hands-free turn with no question in it (a cough, "mm-hmm"): it leaves no trace in
        the conversation, only in the metrics and the debug log."""
        log.debug("not a question", extra={"session": self.session_id, "turn": turn.number, "heard": heard})
        turn.timings.total = turn.elapsed_ms()
        self.metrics.turns.labels("ignored").inc()
        turn.to(Phase.IGNORED)
        await self.sink.send_event(
            TurnDone(
                turn=turn.number, outcome="ignored", timings=turn.timings.as_dict(), note="no question heard"
            )
        )

    async def _failed(self, turn: VoiceTurn, e: VoicebotError) -> None:
        log.warning(
            "turn failed", extra={"session": self.session_id, "turn": turn.number, "code": e.code.value}
        )
        self.metrics.errors.labels(e.code.value).inc()
        await self.sink.send_event(ErrorEvent(code=e.code, message=e.message, turn=turn.number))
        await self._finish(turn, Phase.FAILED)

    async def _cancel(self, *, notify: bool = True) -> None:
        """Stop the recording and/or the answer in flight; tell the client to drop its audio."""
        turn = self.turn
        if turn.phase is Phase.LISTENING and turn.trigger == "speech" and self.listener is not None:
            self.listener.drop_turn()  # the detector must not end a turn that is gone
        await turn.stop_listening()
        task = turn.task
        answering = turn.in_flight
        if task is not None and answering:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if not turn.phase.live:
            return  # over already (its turn.done was sent), or nothing began
        turn.to(Phase.CANCELLED)
        if not answering:
            # A recording abandoned: the client that pressed the button knows; one the gateway
            # started (hands-free) is ended for the client.
            if notify and turn.trigger == "speech":
                await self.sink.send_event(TurnDone(turn=turn.number, outcome="cancelled", timings={}))
            return
        self.metrics.turns.labels("cancelled").inc()
        self._record(turn, "cancelled", {}, None)  # written in the background
        if notify:
            await self.sink.send_event(AudioClear(turn=turn.number))
            await self.sink.send_event(TurnDone(turn=turn.number, outcome="cancelled", timings={}))

    # ---- records and errors ----------------------------------------------------------

    def _record(
        self,
        turn: VoiceTurn,
        outcome: Outcome,
        timings: dict[str, float | str | None],
        result: AnswerResult | None,
    ) -> asyncio.Task[None] | None:
        """Stores the finished turn in the background (a task the session owns and awaits at close).

        Only turns with a question are stored, once; the answer only when it finished."""
        question, turn.question = turn.question, None
        if self.context.store is None or not question:
            return None
        answered = result if outcome == "ok" else None
        record = TurnRecord(
            turn=turn.number,
            question=question,
            outcome=outcome,
            answer=answered.text if answered else "",
            citations=[s.public() for s in answered.sources] if answered else [],
            timings=timings,
        )
        task = asyncio.create_task(self._write(record), name=f"record-{self.session_id}-{turn.number}")
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)
        return task

    async def _write(self, record: TurnRecord) -> None:
        """A failed write is logged and counted; the conversation goes on."""
        store = self.context.store
        assert store is not None
        try:
            await asyncio.wait_for(
                store.record(
                    self.session_id, self.context.subject, record, language=self.language, voice=self.voice
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
        await self.sink.send_event(ErrorEvent(code=code, message=message, turn=self.turn.number or None))
