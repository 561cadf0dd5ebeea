"""Stored conversations: history bounding, and how a voice session records and resumes itself.

Fakes at the model, retrieval and session-store seams; the real AppState and VoiceSession."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from orchestrator.errors import StoreUnavailable
from orchestrator.history import Resumed, TurnRecord, clean_text, recent_exchanges, valid_session_id
from orchestrator.pipeline import Source
from orchestrator.prompt import HISTORY_TURNS, Exchange
from orchestrator.session import VoiceSession
from orchestrator.settings import Settings
from orchestrator.state import AppState, Corpus
from tests.unit.fakes import FakeModels, ListSink

SOURCE = Source(
    n=1,
    title="Guide",
    source="docs/guide.md",
    heading_path=["Start"],
    snippet="Run make up.",
    # Every question these tests ask finds words of its own here, so no answer is declined.
    text="Hello! To start it, run make up. Tell me slowly if it does not start, or will fail.",
)


def _turn(n: int, outcome: str = "ok", answer: str | None = None) -> TurnRecord:
    return TurnRecord(
        turn=n,
        question=f"q{n}",
        outcome=outcome,  # type: ignore[arg-type]
        answer=f"a{n}" if answer is None else answer,
    )


def test_history_is_the_last_answered_exchanges_oldest_first() -> None:
    turns = [_turn(3), _turn(1), _turn(2, "error", ""), _turn(4, "cancelled", ""), _turn(5), _turn(6)]
    assert recent_exchanges(turns, limit=2) == [Exchange("q5", "a5"), Exchange("q6", "a6")]
    assert recent_exchanges(turns, limit=10) == [
        Exchange("q1", "a1"),
        Exchange("q3", "a3"),
        Exchange("q5", "a5"),
        Exchange("q6", "a6"),
    ]
    assert recent_exchanges(turns, limit=0) == []
    assert recent_exchanges([_turn(1, "ok", "")]) == []  # an empty answer is not an exchange
    assert len(recent_exchanges([_turn(n) for n in range(1, 50)])) == HISTORY_TURNS


def test_session_ids_and_stored_text() -> None:
    assert valid_session_id("5b0c" * 8)
    for bad in ("", "x" * 65, "'; DROP TABLE chunks; --", "a b", "a\x00b", "ü"):
        assert not valid_session_id(bad)
    assert clean_text("a\x00b\ud800c") == "ab?c"


# ---- a voice session with a fake store ---------------------------------------------------------


class FakeStore:
    """The SessionHistory seam in memory: session id → (subject, turns)."""

    def __init__(self, sink: ListSink | None = None) -> None:
        self.sessions: dict[str, tuple[str, list[TurnRecord]]] = {}
        self.down = False
        self.sink = sink
        self.events_seen_at_write: list[int] = []
        self.lookups: list[str] = []

    async def resume(self, session_id: str, subject: str) -> Resumed | None:
        self.lookups.append(session_id)
        if self.down:
            raise StoreUnavailable("the session store is unavailable")
        found = self.sessions.get(session_id)
        if found is None or found[0] != subject:
            return None
        return Resumed(max(t.turn for t in found[1]), recent_exchanges(found[1]))

    async def record(
        self, session_id: str, subject: str, turn: TurnRecord, *, language: str | None, voice: str
    ) -> None:
        if self.down:
            raise StoreUnavailable("the session store is unavailable")
        if self.sink is not None:
            self.events_seen_at_write.append(len(self.sink.events))
        self.sessions.setdefault(session_id, (subject, []))[1].append(turn)


async def _guide(question: str, corpus: Corpus) -> list[Source]:
    return [SOURCE]


def _session(
    models: FakeModels,
    store: FakeStore,
    sink: ListSink,
    *,
    session_id: str | None = None,
    resume: bool = False,
    **settings: Any,
) -> VoiceSession:
    state = AppState(Settings(dev_mode=True, **settings))
    state.models = models  # a fake at the model seam
    state.retrieve = _guide  # type: ignore[method-assign]
    return state.new_session(
        sink, Corpus(), subject="key:7", store=store, session_id=session_id, resume=resume
    )


async def _ask(session: VoiceSession, sink: ListSink, text: str) -> dict[str, Any]:
    done = len(sink.of("turn.done"))
    await session.on_text(json.dumps({"type": "text", "text": text, "speak": False}))
    for _ in range(500):
        if len(sink.of("turn.done")) > done:
            return sink.of("turn.done")[-1]
        await asyncio.sleep(0.01)
    raise AssertionError(f"no turn.done: {sink.events}")


def test_an_answered_turn_is_recorded_whole_before_turn_done() -> None:
    async def scenario() -> tuple[ListSink, FakeStore, VoiceSession]:
        sink = ListSink()
        store = FakeStore(sink)
        session = _session(FakeModels(), store, sink)
        await session.on_text(json.dumps({"type": "session.start", "language": "en"}))
        await _ask(session, sink, "How do I start it?")
        await session.close()
        return sink, store, session

    sink, store, session = asyncio.run(scenario())
    subject, turns = store.sessions[session.session_id]
    assert subject == "key:7"
    [turn] = turns
    assert (turn.turn, turn.question, turn.answer, turn.outcome) == (
        1,
        "How do I start it?",
        "Run make up [1].",
        "ok",
    )
    assert turn.citations == [SOURCE.public()]
    assert turn.timings["total"] is not None
    # Written before turn.done went out: a client that reloads right away finds the turn.
    assert store.events_seen_at_write[0] < sink.events.index(sink.of("turn.done")[0]) + 1
    assert sink.of("session.ready")[0]["resumed"] is False


def test_failed_and_cancelled_turns_are_recorded_without_an_answer() -> None:
    async def scenario() -> FakeStore:
        sink = ListSink()
        store = FakeStore()
        failing = _session(FakeModels(fail=True), store, sink)
        await failing.on_text(json.dumps({"type": "session.start", "session_id": None}))
        await _ask(failing, sink, "Will this fail?")
        await failing.close()
        slow = _session(FakeModels(delay=0.2), store, ListSink())
        await slow.on_text(json.dumps({"type": "session.start"}))
        await slow.on_text(json.dumps({"type": "text", "text": "Tell me slowly.", "speak": False}))
        await asyncio.sleep(0.05)
        await slow.on_text(json.dumps({"type": "turn.start"}))  # barge-in
        await slow.close()
        return store

    store = asyncio.run(scenario())
    recorded = sorted((t for _, turns in store.sessions.values() for t in turns), key=lambda t: t.question)
    assert [(t.question, t.outcome, t.answer, t.citations) for t in recorded] == [
        ("Tell me slowly.", "cancelled", "", []),
        ("Will this fail?", "error", "", []),
    ]


def test_resume_continues_numbering_with_bounded_history() -> None:
    async def scenario() -> tuple[ListSink, VoiceSession, FakeModels]:
        sink = ListSink()
        store = FakeStore()
        store.sessions["s1"] = ("key:7", [*(_turn(n) for n in range(1, 7)), _turn(7, "error", "")])
        models = FakeModels()
        session = _session(models, store, sink)
        await session.on_text(json.dumps({"type": "session.start", "session_id": "s1"}))
        done = await _ask(session, sink, "And then?")
        assert done["turn"] == 8
        for _ in range(3):
            await _ask(session, sink, "More?")
        await session.close()
        return sink, session, models

    sink, session, models = asyncio.run(scenario())
    ready = sink.of("session.ready")[0]
    assert (ready["session_id"], ready["resumed"], ready["turns"]) == ("s1", True, 7)
    assert not sink.of("error")
    assert "q3" in models.prompts[0]
    assert "a6" in models.prompts[0]
    assert "q2" not in models.prompts[0]  # only the last HISTORY_TURNS exchanges
    assert len(session.history) == HISTORY_TURNS


def test_a_token_issued_to_resume_resumes_and_a_fresh_session_looks_nothing_up() -> None:
    async def scenario(resume: bool) -> tuple[ListSink, FakeStore]:
        sink = ListSink()
        store = FakeStore()
        store.sessions["s1"] = ("key:7", [_turn(1), _turn(2)])
        session = _session(FakeModels(), store, sink, session_id="s1", resume=resume)  # as the token says
        await session.on_text(json.dumps({"type": "session.start"}))
        await session.close()
        return sink, store

    sink, store = asyncio.run(scenario(resume=True))
    ready = sink.of("session.ready")[0]
    assert (ready["session_id"], ready["resumed"], ready["turns"]) == ("s1", True, 2)
    sink, store = asyncio.run(scenario(resume=False))
    assert sink.of("session.ready")[0]["resumed"] is False
    assert store.lookups == []


def test_an_unknown_or_foreign_session_starts_a_new_one_with_not_found() -> None:
    async def scenario(session_id: str) -> tuple[ListSink, VoiceSession]:
        sink = ListSink()
        store = FakeStore()
        store.sessions["theirs"] = ("key:8", [_turn(1)])
        session = _session(FakeModels(), store, sink)
        await session.on_text(json.dumps({"type": "session.start", "session_id": session_id}))
        await _ask(session, sink, "Hello?")
        await session.close()
        return sink, session

    for session_id in ("theirs", "nobody", "'; DROP TABLE chunks; --"):
        sink, session = asyncio.run(scenario(session_id))
        error = sink.of("error")[0]
        assert (error["code"], error["fatal"]) == ("not_found", False)
        assert "new session" in error["message"]
        ready = sink.of("session.ready")[0]
        assert ready["resumed"] is False
        assert ready["session_id"] == session.session_id != session_id
        assert sink.of("turn.done")[0]["turn"] == 1
        assert session.history == [Exchange("Hello?", "Run make up [1].")]


def test_the_store_being_down_never_breaks_the_conversation() -> None:
    async def scenario() -> tuple[ListSink, VoiceSession]:
        sink = ListSink()
        store = FakeStore()
        store.down = True
        session = _session(FakeModels(), store, sink)
        await session.on_text(json.dumps({"type": "session.start", "session_id": "s1"}))
        first = await _ask(session, sink, "One?")
        second = await _ask(session, sink, "Two?")
        assert (first["outcome"], second["outcome"]) == ("ok", "ok")
        await session.close()
        return sink, session

    sink, session = asyncio.run(scenario())
    assert [e["code"] for e in sink.of("error")] == ["store_unavailable"]
    assert len(sink.of("answer.done")) == 2
    assert session.metrics.turn_write_failures._value.get() == 2


def test_audio_over_the_turn_limit_drops_the_turn_and_the_session_goes_on() -> None:
    async def scenario() -> tuple[ListSink, FakeStore]:
        sink = ListSink()
        store = FakeStore()
        session = _session(FakeModels(), store, sink, max_turn_audio_s=0.5)
        await session.on_text(json.dumps({"type": "session.start"}))
        await session.on_text(json.dumps({"type": "turn.start"}))
        for _ in range(20):  # 2 s of audio in 100 ms frames
            await session.on_audio(b"\x00\x00" * 1600)
        await session.on_text(json.dumps({"type": "turn.end"}))
        await _ask(session, sink, "Still there?")
        await session.close()
        return sink, store

    sink, store = asyncio.run(scenario())
    [error] = sink.of("error")  # one error, not one per frame; the release is quiet
    assert (error["code"], error["turn"]) == ("too_large", 1)
    dones = sink.of("turn.done")
    assert [(d["turn"], d["outcome"]) for d in dones] == [(1, "error"), (2, "ok")]
    [(_, turns)] = store.sessions.values()
    assert [t.turn for t in turns] == [2]  # the dropped turn left nothing behind
