"""Graceful shutdown of voice sessions: turns in flight finish, new ones are refused, clients are
told to reconnect. Fakes at the model and retrieval seams; the real AppState and VoiceSession."""

from __future__ import annotations

import asyncio
import json

from orchestrator.pipeline import Source
from orchestrator.settings import Settings
from orchestrator.state import AppState, Corpus
from tests.unit.fakes import FakeModels, ListSink

# A passage that backs every sentence the fake LLM writes ("word0 … word9."), so the gate keeps them.
WORDS = Source(
    n=1,
    title="Words",
    source="words.md",
    heading_path=[],
    snippet="",
    text=" ".join(f"word{i}: tell me everything, go on forever" for i in range(10)),
)


async def _words(question: str, corpus: Corpus) -> list[Source]:
    return [WORDS]


def _state(models: FakeModels) -> AppState:
    state = AppState(Settings(dev_mode=True))
    state.models = models  # a fake at the model seam
    state.retrieve = _words  # type: ignore[method-assign]
    return state


def test_drain_lets_the_answer_finish_then_tells_clients_to_reconnect() -> None:
    async def scenario() -> tuple[ListSink, ListSink, AppState]:
        state = _state(FakeModels([f"word{i}. " for i in range(3)], delay=0.05))
        busy_sink, idle_sink = ListSink(), ListSink()
        busy, idle = state.new_session(busy_sink, Corpus()), state.new_session(idle_sink, Corpus())
        for session in (busy, idle):
            await session.on_text(json.dumps({"type": "session.start"}))
        await busy.on_text(json.dumps({"type": "text", "text": "Tell me everything.", "speak": False}))
        assert busy.busy
        assert not idle.busy
        await state.drain(timeout_s=30)
        # Refused after the drain began:
        await idle.on_text(json.dumps({"type": "turn.start"}))
        await idle.on_text(json.dumps({"type": "text", "text": "One more?"}))
        for session in (busy, idle):
            await session.close()
        return busy_sink, idle_sink, state

    busy_sink, idle_sink, state = asyncio.run(scenario())
    assert busy_sink.of("turn.done")[0]["outcome"] == "ok"
    assert len(busy_sink.of("answer.delta")) == 3  # every sentence of the answer
    assert busy_sink.events[-1] == {
        "type": "error",
        "code": "shutting_down",
        "message": "the server is restarting; reconnect to continue",
        "turn": None,
        "fatal": True,
    }
    idle_errors = idle_sink.of("error")
    assert [e["code"] for e in idle_errors] == ["shutting_down"] * 3
    assert [e["fatal"] for e in idle_errors] == [True, False, False]
    assert not idle_sink.of("turn.started")
    assert state.sessions == set()  # closed sessions leave the registry


def test_drain_gives_up_after_its_timeout() -> None:
    async def scenario() -> tuple[ListSink, bool]:
        state = _state(FakeModels(["word1 "] * 1000, delay=0.05))
        sink = ListSink()
        session = state.new_session(sink, Corpus())
        await session.on_text(json.dumps({"type": "session.start"}))
        await session.on_text(json.dumps({"type": "text", "text": "Go on forever.", "speak": False}))
        await state.drain(timeout_s=0.2)
        still_busy = session.busy
        await session.close()
        return sink, still_busy

    sink, still_busy = asyncio.run(scenario())
    assert still_busy  # cut off by the timeout, not finished
    assert sink.events[-1]["code"] == "shutting_down"


def test_readiness_reports_draining() -> None:
    async def scenario() -> dict[str, bool]:
        state = _state(FakeModels())
        await state.drain(timeout_s=0)
        return await state.readiness()

    checks = asyncio.run(scenario())
    assert checks["accepting"] is False
