"""Hands-free sessions: the gateway takes the turns from the microphone stream (VAD, turn
detector, echo guard), with no button.

The real session, listener, turn detector and echo guard; fakes only at the two model seams:
FakeModels, and a VAD that calls loud windows speech (so the audio here can be synthetic and
the outcome depends on the turn taking, not on how Silero hears a noise)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from orchestrator.pipeline import Source
from orchestrator.session import VoiceSession
from orchestrator.settings import Settings
from orchestrator.state import AppState, Corpus
from orchestrator.turn import Phase
from tests.unit.fakes import FakeModels, ListSink

RATE = 16_000
FRAME_S = 0.1
SOURCE = Source(
    n=1, title="Guide", source="guide.md", heading_path=["Start"], snippet="Run make up.", text="Run make up."
)


class LoudIsSpeech:
    """The VAD seam (`orchestrator.vad.VadModel`): a window is speech when it is loud."""

    def run(
        self, windows: npt.NDArray[np.float32], h: npt.NDArray[np.float32], c: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        loud = np.abs(windows[:, 64:]).mean(axis=1) > 0.005
        return np.where(loud, 0.95, 0.02).astype(np.float32), h, c


def _silence(seconds: float) -> npt.NDArray[np.int16]:
    return np.zeros(round(seconds * RATE), dtype=np.int16)


def _voice(seconds: float, seed: int, *, syllables_hz: float = 3.3) -> npt.NDArray[np.int16]:
    """Noise with a syllable-like level envelope: loud, shaped, and like nothing else here."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * RATE)) / RATE
    envelope = 0.1 + 0.9 * (0.5 + 0.5 * np.sin(2 * np.pi * syllables_hz * t + rng.uniform(0, np.pi)))
    return (rng.standard_normal(t.size) * 6000 * envelope).clip(-32000, 32000).astype(np.int16)


# What the fake TTS says for each chunk: 2 s with its own rhythm (a played answer of 4 s per sentence).
ANSWER_AUDIO = _voice(2.0, seed=99, syllables_hz=4.7)


async def _guide(question: str, corpus: Corpus) -> list[Source]:
    return [SOURCE]


def _session(models: FakeModels, sink: ListSink, **settings: Any) -> VoiceSession:
    state = AppState(Settings(dev_mode=True, speculation=False, **settings))
    state.models = models
    state.retrieve = _guide  # type: ignore[method-assign]
    state.vad = LoudIsSpeech
    return state.new_session(sink, Corpus())


async def _send(session: VoiceSession, type_: str, **fields: object) -> None:
    await session.on_text(json.dumps({"type": type_, **fields}))


def _frames(pcm: npt.NDArray[np.int16]) -> Iterator[bytes]:
    step = round(FRAME_S * RATE)
    for i in range(0, pcm.size, step):
        yield pcm[i : i + step].astype("<i2").tobytes()


async def _stream(session: VoiceSession, *parts: npt.NDArray[np.int16]) -> None:
    """The microphone, frame by frame; the loop runs between frames (as it does between messages)."""
    for frame in _frames(np.concatenate(parts)):
        await session.on_audio(frame)
        await asyncio.sleep(0)


async def _until(sink: ListSink, type_: str, count: int = 1) -> None:
    for _ in range(1000):
        if sink.kinds().count(type_) >= count:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"no {type_}: {sink.kinds()}")


async def _hands_free(session: VoiceSession) -> None:
    await _send(session, "session.start", mode="hands_free")


def test_speech_then_silence_is_a_turn_answered_with_no_button() -> None:
    async def scenario() -> tuple[ListSink, FakeModels, list[Phase]]:
        sink, models = ListSink(), FakeModels(["Run make up [1]."], transcript="How do I start it?")
        session = _session(models, sink)
        await _hands_free(session)
        await _stream(session, _silence(1.0), _voice(1.5, seed=1), _silence(1.5))
        await _until(sink, "turn.done")
        path = session.turn.path
        await session.close()
        return sink, models, path

    sink, models, path = asyncio.run(scenario())
    assert sink.of("session.ready")[0]["mode"] == "hands_free"
    assert sink.of("turn.started") == [{"type": "turn.started", "turn": 1, "trigger": "speech"}]
    assert sink.of("transcript.final")[0]["text"] == "How do I start it?"
    assert sink.of("answer.done")[0]["text"] == "Run make up [1]."
    done = sink.of("turn.done")[0]
    assert done["outcome"] == "ok"
    assert 700 <= done["timings"]["hangover"] <= 1400  # the silence the detector waited for
    assert path == [
        Phase.IDLE,
        Phase.LISTENING,
        Phase.TRANSCRIBING,
        Phase.ANSWERING,
        Phase.SPEAKING,
        Phase.DONE,
    ]
    # The ASR got the speech from just before the detector was sure (the pre-roll), not only
    # what came after: 1.5 s of voice plus up to 0.2 s before it, and the silence until the
    # final transcript was asked for (0.25 s in, while the hangover ran).
    heard_s = sum(samples for samples, _, _ in models.chunks) / RATE
    assert 1.5 + 0.25 <= heard_s <= 1.5 + 0.2 + 0.25 + 0.15
    assert done["timings"]["early_final"] == "used"
    assert done["timings"]["asr_restarts"] == 0
    assert models.chunks[0][1]
    assert models.chunks[-1][2]


def test_a_speaker_who_goes_on_after_an_early_final_is_heard_whole() -> None:
    async def scenario() -> tuple[ListSink, FakeModels]:
        sink, models = ListSink(), FakeModels(["Run make up [1]."], transcript="How do I start it?")
        session = _session(models, sink)
        await _hands_free(session)
        # A 0.4 s pause: past the early final (0.25 s), short of the hangover (0.7 s).
        await _stream(session, _voice(1.0, seed=10), _silence(0.4), _voice(1.0, seed=11), _silence(1.5))
        await _until(sink, "turn.done")
        await session.close()
        return sink, models

    sink, models = asyncio.run(scenario())
    assert len(sink.of("turn.started")) == 1  # one turn, not two
    done = sink.of("turn.done")[0]
    assert (done["outcome"], done["timings"]["asr_restarts"], done["timings"]["early_final"]) == (
        "ok",
        1,
        "used",
    )
    # Two ASR sequences: the first ended early in the pause, the second got the whole turn again.
    starts = [i for i, (_, start, _) in enumerate(models.chunks) if start]
    assert len(starts) == 2
    second = models.chunks[starts[1] :]
    assert second[0][0] / RATE >= 1.0 + 0.4  # the first piece and the pause, at once
    assert sum(samples for samples, _, _ in second) / RATE >= 1.0 + 0.4 + 1.0


def test_silence_and_a_click_make_no_turn() -> None:
    async def scenario() -> ListSink:
        sink = ListSink()
        session = _session(FakeModels(), sink)
        await _hands_free(session)
        await _stream(session, _silence(1.0), _voice(0.1, seed=2), _silence(2.0))
        await asyncio.sleep(0.05)
        await session.close()
        return sink

    assert "turn.started" not in asyncio.run(scenario()).kinds()


def test_a_backchannel_is_an_ignored_turn_that_leaves_no_trace() -> None:
    async def scenario() -> tuple[ListSink, FakeModels, VoiceSession]:
        sink, models = ListSink(), FakeModels(transcript="Mm-hmm.")
        session = _session(models, sink)
        await _hands_free(session)
        await _stream(session, _voice(0.8, seed=3), _silence(1.5))
        await _until(sink, "turn.done")
        await session.close()
        return sink, models, session

    sink, models, session = asyncio.run(scenario())
    assert [k for k in sink.kinds() if k != "transcript.partial"] == [
        "session.ready",
        "turn.started",
        "turn.done",
    ]
    assert sink.of("turn.done")[0]["outcome"] == "ignored"
    assert models.prompts == []  # nothing was answered
    assert session.history == []
    assert session.turn.phase is Phase.IGNORED


def test_speech_over_the_answer_audio_interrupts_it_and_is_the_next_turn() -> None:
    async def scenario() -> tuple[ListSink, VoiceSession]:
        sink = ListSink()
        models = FakeModels(["Run make up [1]."], tts_pcm=ANSWER_AUDIO, transcript="How do I start?")
        session = _session(models, sink)
        await _hands_free(session)
        await _stream(session, _voice(1.2, seed=4), _silence(1.0))
        await _until(sink, "turn.done")  # answered; its 4 s of audio now plays on the client
        assert session.listener is not None
        assert session.listener.bot_speaking
        await _stream(session, _silence(0.5), _voice(2.0, seed=5))
        await _until(sink, "turn.started", 2)
        barge_ins = session.metrics.barge_ins._value.get()
        await session.close()
        return sink, barge_ins

    sink, barge_ins = asyncio.run(scenario())
    kinds = [k for k in sink.kinds() if k not in ("audio", "transcript.partial")]
    after_first = kinds[kinds.index("turn.done") + 1 :]
    assert after_first[:2] == ["audio.clear", "turn.started"]
    assert sink.of("audio.clear") == [{"type": "audio.clear", "turn": 1}]
    assert sink.of("turn.started")[1] == {"type": "turn.started", "turn": 2, "trigger": "speech"}
    assert barge_ins == 1


@pytest.mark.parametrize(("delay_s", "gain_db"), [(0.05, -6.0), (0.25, -20.0)])
def test_the_answers_own_echo_does_not_interrupt_it(delay_s: float, gain_db: float) -> None:
    async def scenario() -> tuple[ListSink, bool]:
        sink = ListSink()
        models = FakeModels(["Run make up [1]."], tts_pcm=ANSWER_AUDIO, transcript="How do I start?")
        session = _session(models, sink)
        await _hands_free(session)
        await _stream(session, _voice(1.2, seed=6), _silence(1.0))
        await _until(sink, "turn.done")
        # The microphone hears the answer playing from the speakers, late and quieter: at input
        # time t, what played at t - delay. (The stream here runs faster than real time, so
        # playback began a while ago on the input clock: the echo starts part way in.)
        listener = session.listener
        assert listener is not None
        played = np.concatenate([ANSWER_AUDIO] * 2)
        started = listener.playing_until - played.size / RATE
        into = round((listener.now - started - delay_s) * RATE)
        assert into < played.size // 2
        heard = played[into:] if into >= 0 else np.concatenate([np.zeros(-into, dtype=np.int16), played])
        echo = (heard * 10 ** (gain_db / 20)).astype(np.int16)
        await _stream(session, echo, _silence(delay_s))
        still_speaking = session.listener.bot_speaking
        await _stream(session, _silence(1.0))
        await asyncio.sleep(0.05)
        await session.close()
        return sink, still_speaking

    sink, still_speaking = asyncio.run(scenario())
    assert not still_speaking  # the echo was heard to the end of the played answer
    assert sink.kinds().count("turn.started") == 1
    assert "audio.clear" not in sink.kinds()


def test_speech_while_the_answer_is_prepared_cancels_it() -> None:
    async def scenario() -> ListSink:
        sink = ListSink()
        models = FakeModels(["Run ", "make ", "up [1]."], delay=0.3, transcript="How do I start?")
        session = _session(models, sink)
        await _hands_free(session)
        await _stream(session, _voice(1.0, seed=7), _silence(1.0))
        await _until(sink, "transcript.final")
        await _stream(session, _voice(0.6, seed=8))
        await _until(sink, "turn.started", 2)
        await session.close()
        return sink

    sink = asyncio.run(scenario())
    assert {"type": "turn.done", "turn": 1, "outcome": "cancelled", "timings": {}} in sink.events
    assert sink.of("audio.clear") == [{"type": "audio.clear", "turn": 1}]


def test_hands_free_refuses_the_button_until_the_mode_changes_back() -> None:
    async def scenario() -> ListSink:
        sink = ListSink()
        session = _session(FakeModels(), sink)
        await _hands_free(session)
        await _send(session, "turn.start")
        await _send(session, "session.update", mode="push_to_talk")
        await _send(session, "turn.start")
        await session.on_audio(b"\x01\x00" * 1600)
        await _send(session, "session.update", mode="hands_free")
        await session.close()
        return sink

    sink = asyncio.run(scenario())
    errors = sink.of("error")
    assert len(errors) == 1
    assert errors[0]["code"] == "bad_request"
    assert "hands-free" in errors[0]["message"]
    assert sink.of("session.updated") == [
        {"type": "session.updated", "mode": "push_to_talk"},
        {"type": "session.updated", "mode": "hands_free"},
    ]
    assert sink.of("turn.started") == [{"type": "turn.started", "turn": 1, "trigger": "client"}]


def test_a_gateway_without_hands_free_starts_push_to_talk_and_says_why() -> None:
    async def scenario() -> ListSink:
        sink = ListSink()
        session = _session(FakeModels(), sink, handsfree=False)
        await _hands_free(session)
        await _send(session, "session.update", mode="hands_free")
        await session.close()
        return sink

    sink = asyncio.run(scenario())
    assert sink.of("session.ready")[0]["mode"] == "push_to_talk"
    assert [e["code"] for e in sink.of("error")] == ["bad_request", "bad_request"]
    assert "VOICEBOT_HANDSFREE" in sink.of("error")[0]["message"]


def test_the_stop_button_ends_a_heard_turn_for_the_client_and_the_detector() -> None:
    async def scenario() -> tuple[ListSink, FakeModels]:
        sink, models = ListSink(), FakeModels()
        session = _session(models, sink)
        await _hands_free(session)
        await _stream(session, _voice(0.8, seed=9))
        await _send(session, "turn.cancel")
        await _stream(session, _silence(2.0))  # no turn.end of the dropped turn comes later
        await asyncio.sleep(0.05)
        await session.close()
        return sink, models

    sink, models = asyncio.run(scenario())
    assert sink.of("turn.done") == [{"type": "turn.done", "turn": 1, "outcome": "cancelled", "timings": {}}]
    assert "transcript.final" not in sink.kinds()
    assert models.prompts == []


def test_bad_frames_are_refused_in_hands_free_too() -> None:
    async def scenario() -> ListSink:
        sink = ListSink()
        session = _session(FakeModels(), sink)
        await _hands_free(session)
        await session.on_audio(b"\x01")
        await session.on_audio(b"")
        await session.close()
        return sink

    assert [e["code"] for e in asyncio.run(scenario()).of("error")] == ["bad_audio", "bad_audio"]
