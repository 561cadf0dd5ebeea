"""A voice session's turns through its phases: push-to-talk, barge-in by button, cancel, and
the client mistakes it refuses. The one fake at the model seam; the real AppState and VoiceSession."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from orchestrator.pipeline import Source
from orchestrator.session import VoiceSession
from orchestrator.settings import Settings
from orchestrator.state import AppState, Corpus
from orchestrator.turn import Phase
from tests.unit.fakes import FakeModels, ListSink

SOURCE = Source(
    n=1,
    title="Guide",
    source="guide.md",
    heading_path=["Start"],
    snippet="Run make up.",
    text="To start it, run make up; hello. " + " ".join(f"word{i}: go on" for i in range(200)),
)
FRAME = b"\x01\x00" * 1600  # 100 ms of 16 kHz PCM16


async def _guide(question: str, corpus: Corpus) -> list[Source]:
    return [SOURCE]


def _session(models: FakeModels, sink: ListSink, **settings: Any) -> VoiceSession:
    state = AppState(Settings(**({"dev_mode": True, "speculation": False} | settings)))
    state.models = models  # the fake at the model seam
    state.retrieve = _guide  # type: ignore[method-assign]
    return state.new_session(sink, Corpus())


async def _send(session: VoiceSession, type_: str, **fields: object) -> None:
    await session.on_text(json.dumps({"type": type_, **fields}))


async def _until(sink: ListSink, type_: str, count: int = 1) -> None:
    """Until `count` events of `type_` (or audio frames: "audio") were sent."""
    for _ in range(1000):
        if sink.kinds().count(type_) >= count:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"no {type_}: {sink.kinds()}")


def test_a_push_to_talk_turn_goes_through_every_phase_to_a_spoken_answer() -> None:
    async def scenario() -> tuple[ListSink, list[Phase], FakeModels]:
        sink, models = ListSink(), FakeModels(["Run make up [1]."])
        session = _session(models, sink)
        assert session.phase is Phase.NEW
        await _send(session, "session.start")
        assert session.phase is Phase.IDLE
        await _send(session, "turn.start")
        assert session.phase is Phase.LISTENING
        for _ in range(8):  # 0.8 s: one 0.5 s chunk goes to the ASR while the button is held
            await session.on_audio(FRAME)
        await _until(sink, "transcript.partial")
        await _send(session, "turn.end")
        await _until(sink, "turn.done")
        path = session.turn.path
        await session.close()
        return sink, path, models

    sink, path, models = asyncio.run(scenario())
    assert path == [
        Phase.IDLE,
        Phase.LISTENING,
        Phase.TRANSCRIBING,
        Phase.ANSWERING,
        Phase.SPEAKING,
        Phase.DONE,
    ]
    kinds = [k for k in sink.kinds() if k != "audio"]
    assert kinds == [
        "session.ready",
        "turn.started",
        "transcript.partial",
        "transcript.final",
        "sources",
        "answer.delta",
        "answer.done",
        "turn.done",
    ]
    assert "audio" in sink.kinds()
    assert sink.of("transcript.final")[0] == {"type": "transcript.final", "turn": 1, "text": "hello"}
    done = sink.of("turn.done")[0]
    assert (done["turn"], done["outcome"], "note" in done) == (1, "ok", False)
    assert done["timings"]["asr_final"] is not None
    assert [(start, end) for _, start, end in models.chunks] == [(True, False), (False, True)]


def test_a_turn_start_during_the_answer_is_a_barge_in() -> None:
    async def scenario() -> tuple[ListSink, VoiceSession, list[Phase]]:
        sink = ListSink()
        session = _session(FakeModels([f"word{i}: go on. " for i in range(200)], delay=0.02), sink)
        await _send(session, "session.start")
        await _send(session, "text", text="Go on?")
        await _until(sink, "audio")
        interrupted = session.turn
        await _send(session, "turn.start")
        assert session.phase is Phase.LISTENING
        path = interrupted.path
        await session.close()
        return sink, session, path

    sink, session, path = asyncio.run(scenario())
    assert path == [Phase.IDLE, Phase.ANSWERING, Phase.SPEAKING, Phase.CANCELLED]
    after = sink.kinds()[sink.kinds().index("audio.clear") :]
    assert [k for k in after if k != "audio"] == ["audio.clear", "turn.done", "turn.started"]
    assert sink.of("audio.clear") == [{"type": "audio.clear", "turn": 1}]
    assert sink.of("turn.done") == [{"type": "turn.done", "turn": 1, "outcome": "cancelled", "timings": {}}]
    assert sink.of("turn.started")[-1]["turn"] == 2
    assert session.metrics.barge_ins._value.get() == 1


def test_cancelling_a_recording_says_nothing_and_audio_after_it_is_refused() -> None:
    async def scenario() -> tuple[ListSink, list[Phase]]:
        sink = ListSink()
        session = _session(FakeModels(), sink)
        await _send(session, "session.start")
        await _send(session, "turn.start")
        await session.on_audio(FRAME)
        await _send(session, "turn.cancel")
        path = session.turn.path
        await session.on_audio(FRAME)
        await _send(session, "turn.end")
        await session.close()
        return sink, path

    sink, path = asyncio.run(scenario())
    assert path == [Phase.IDLE, Phase.LISTENING, Phase.CANCELLED]
    assert not sink.of("turn.done")
    assert [(e["code"], e["turn"]) for e in sink.of("error")] == [("bad_audio", 1), ("bad_request", 1)]


def test_client_mistakes_get_errors_and_move_nothing() -> None:
    async def scenario() -> tuple[ListSink, Phase]:
        sink = ListSink()
        session = _session(FakeModels(), sink)
        await _send(session, "turn.start")  # before session.start
        await session.on_audio(FRAME)
        await _send(session, "session.start")
        await _send(session, "session.start")
        await _send(session, "turn.end")  # without turn.start
        phase = session.phase
        await session.close()
        return sink, phase

    sink, phase = asyncio.run(scenario())
    assert phase is Phase.IDLE
    assert [(e["code"], e["message"]) for e in sink.of("error")] == [
        ("bad_request", "send session.start first"),
        ("bad_audio", "audio received outside a turn; send turn.start first"),
        ("bad_request", "the session has already started"),
        ("bad_request", "turn.end without turn.start"),
    ]


def test_silence_ends_the_turn_ok_with_a_note_and_a_failed_asr_fails_it() -> None:
    async def scenario(models: FakeModels) -> tuple[ListSink, list[Phase]]:
        sink = ListSink()
        session = _session(models, sink)
        await _send(session, "session.start")
        await _send(session, "turn.start")
        await session.on_audio(FRAME)
        await _send(session, "turn.end")
        await _until(sink, "turn.done")
        path = session.turn.path
        await session.close()
        return sink, path

    sink, path = asyncio.run(scenario(FakeModels(transcript="")))
    assert path[-2:] == [Phase.TRANSCRIBING, Phase.DONE]
    done = sink.of("turn.done")[0]
    assert (done["outcome"], done["note"]) == ("ok", "no speech heard")
    assert not sink.of("sources")

    sink, path = asyncio.run(scenario(FakeModels(asr_fails=True)))
    assert path[-2:] == [Phase.TRANSCRIBING, Phase.FAILED]
    assert [e["code"] for e in sink.of("error")] == ["model_unavailable"]
    assert sink.of("turn.done")[0]["outcome"] == "error"


def test_an_answer_that_fails_ends_the_turn_failed_and_the_session_goes_on() -> None:
    async def scenario() -> tuple[ListSink, list[Phase], Phase]:
        sink = ListSink()
        models = FakeModels(fail=True)
        session = _session(models, sink)
        await _send(session, "session.start")
        await _send(session, "text", text="Hello?", speak=False)
        await _until(sink, "turn.done")
        path = session.turn.path
        models.fail = False
        await _send(session, "text", text="Hello again?", speak=False)
        await _until(sink, "turn.done", 2)
        phase = session.phase
        await session.close()
        return sink, path, phase

    sink, path, phase = asyncio.run(scenario())
    assert path == [Phase.IDLE, Phase.ANSWERING, Phase.FAILED]
    assert phase is Phase.DONE
    assert [(d["turn"], d["outcome"]) for d in sink.of("turn.done")] == [(1, "error"), (2, "ok")]


def test_speculation_warms_the_conversation_between_turns_and_the_passages_while_speaking() -> None:
    async def scenario() -> tuple[list[str], list[str], dict[str, Any]]:
        sink, models = ListSink(), FakeModels(["Run make up [1]."], transcript="how do I start the stack")
        session = _session(models, sink, speculation=True)
        await _send(session, "session.start")
        await _until(sink, "session.ready")
        for _ in range(100):  # the idle-time prefill of the instructions
            if models.prefilled:
                break
            await asyncio.sleep(0.005)
        at_start = list(models.prefilled)
        await _send(session, "turn.start")
        for _ in range(8):
            await session.on_audio(FRAME)
        await _until(sink, "transcript.partial")
        await _send(session, "turn.end")
        await _until(sink, "turn.done")
        for _ in range(100):  # after the answer: the next turn's start, with this exchange in it
            if models.prefilled[-1] != models.prefilled[0] and "Run make up" in models.prefilled[-1]:
                break
            await asyncio.sleep(0.005)
        done = next(e for kind, e in sink.items if kind == "event" and e["type"] == "turn.done")
        await session.close()
        return at_start, models.prefilled, done["timings"]

    at_start, prefilled, timings = asyncio.run(scenario())
    assert len(at_start) == 1
    assert at_start[0].endswith("Passages:\n")  # instructions, no passage yet
    assert any("To start it, run make up" in p for p in prefilled)  # the partial's passage, warmed
    assert all(p.startswith(at_start[0]) for p in prefilled[:-1])  # one growing prefix
    assert "how do I start the stack" in prefilled[-1]
    assert prefilled[-1].endswith("Passages:\n")
    assert timings["speculation"] == "hit", timings
