"""The pure parts of `make bench-voice` (tests/bench/bench_voice.py): percentiles and summaries, the
client's reading of audio frames, gateway-added latency, and one turn timed against a fake socket."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
import pytest

from orchestrator.protocol import AudioHeader
from tests.bench.bench_voice import (
    DirectRecord,
    TurnRecord,
    Utterance,
    VoiceClient,
    compare_direct,
    gateway_added_ms,
    gateway_turn,
    llm_ttft_from_timings,
    parse_per_n,
    percentile,
    read_audio_frame,
    speculation_summary,
    summarize_turns,
    summary,
    ttfa_by_length,
)


@pytest.mark.parametrize("q", [0, 1, 50, 95, 99, 100])
def test_percentile_matches_numpy_linear_interpolation(q: float) -> None:
    values = [12.0, 3.5, 7.25, 100.0, 42.0, 0.5, 19.0]
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_percentile_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)


def test_summary_skips_missing_values_and_reports_empty_as_none() -> None:
    assert summary([None, 10.0, 20.0, None, 30.0]) == {
        "n": 3,
        "p50": 20.0,
        "p95": 29.0,
        "p99": 29.8,
        "max": 30.0,
    }
    assert summary([None]) == {"n": 0, "p50": None, "p95": None, "p99": None, "max": None}


def test_audio_frames_are_read_as_the_protocol_documents_them() -> None:
    pcm = np.arange(-4, 4, dtype="<i2").tobytes()
    frame = read_audio_frame(AudioHeader(turn=7, seq=3, sample_rate=22050).pack() + pcm)
    assert (frame.turn, frame.seq, frame.sample_rate, frame.pcm) == (7, 3, 22050, pcm)


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (b"\x01\x01\x00", "shorter than"),
        (bytes([2, 1, 0, 0]) + bytes(12), "not a protocol v1 audio frame"),
        (bytes([1, 2, 0, 0]) + bytes(12), "not a protocol v1 audio frame"),
        (AudioHeader(turn=1, seq=0, sample_rate=16000).pack() + b"\x00", "odd number"),
    ],
)
def test_malformed_audio_frames_are_refused(frame: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        read_audio_frame(frame)


def test_gateway_added_is_client_ttfa_minus_the_gateways_own_span() -> None:
    timings = {"asr_final": 400.0, "retrieval": 30.0, "llm_first_token": 900.0, "tts_first_audio": 1200.0}
    assert gateway_added_ms(1212.5, timings) == pytest.approx(12.5)
    assert gateway_added_ms(1212.5, {"first_audio": 1200.0}) == pytest.approx(12.5)
    assert gateway_added_ms(None, timings) is None  # no audio reached the client
    assert gateway_added_ms(1212.5, {"tts_first_audio": None}) is None  # speech failed


def test_llm_ttft_subtracts_asr_and_the_retrieval_duration() -> None:
    timings = {"asr_final": 400.0, "retrieval": 30.0, "llm_first_token": 900.0}
    assert llm_ttft_from_timings(timings) == pytest.approx(470.0)
    assert llm_ttft_from_timings({**timings, "retrieval": None}) is None


def test_turns_per_n_take_one_value_or_one_per_level() -> None:
    assert parse_per_n("3", [1, 10, 100], "turns") == [3, 3, 3]
    assert parse_per_n("6,1,1", [1, 10, 100], "turns") == [6, 1, 1]
    with pytest.raises(SystemExit, match="2 values for 3"):
        parse_per_n("6,1", [1, 10, 100], "turns")


def _turn(**fields: Any) -> TurnRecord:
    base: dict[str, Any] = {"concurrency": 10, "session": 0, "turn": 1, "utterance": 0, "outcome": "ok"}
    return TurnRecord(**{**base, **fields})


def test_summaries_count_errors_by_code_failed_and_missing_turns() -> None:
    ok = _turn(ttfa_ms=1000.0, total_ms=3000.0, timings={"tts_first_audio": 990.0}, audio_bytes=10)
    failed = _turn(outcome="error", errors=["timeout"], error_messages=["too slow"], sources_available=False)
    cut_off = _turn(outcome="", errors=["client_timeout"])
    silent = _turn(ttfa_ms=None, total_ms=2000.0)
    figures = summarize_turns([ok, failed, cut_off, silent], planned=5)
    assert figures["errors_by_code"] == {"client_timeout": 1, "timeout": 1, "turn_missing": 1}
    assert figures["error_examples"] == {"timeout": "too slow"}
    assert figures["turns_failed"] == 3
    assert figures["turns_finished"] == 3
    assert figures["turns_without_audio"] == 1
    assert figures["turns_without_sources"] == 1
    assert figures["client_ms"]["time_to_first_audio"]["n"] == 1
    assert figures["gateway_added_ms"]["p50"] == 10.0


def test_the_ratio_compares_median_ttfa_with_the_median_direct_sum() -> None:
    turns = [_turn(turn=i + 1, ttfa_ms=v) for i, v in enumerate((1000.0, 1100.0, 1300.0))]
    direct = [
        DirectRecord(i + 1, 0, asr_ms=300, retrieval_ms=50, llm_first_token_ms=200, llm_first_sentence_ms=500,
                     tts_first_chunk_ms=150, wall_ms=1001, first_sentence_chars=30)
        for i in range(3)
    ]  # fmt: skip
    result = compare_direct(turns, direct)
    assert result["direct_ms"]["stage_sum"]["p50"] == 1000.0
    assert result["ratio_ttfa_over_direct_sum"] == 1.1
    assert result["ttfa_minus_direct_sum_p50_ms"] == 100.0
    assert result["ratio_per_pair"]["n"] == 3
    assert result["ratio_per_pair"]["p50"] == 1.1


class FakeSocket:
    """The seam the client talks to (a websockets connection): `send` and async iteration. It
    answers `turn.start` and `turn.end` as a gateway does, including audio of an older turn."""

    def __init__(self, *, error: str | None = None) -> None:
        self.sent: list[str | bytes] = []
        self.error = error
        self._incoming: asyncio.Queue[str | bytes | None] = asyncio.Queue()

    def _push(self, type_: str, **fields: Any) -> None:
        self._incoming.put_nowait(json.dumps({"type": type_, **fields}))

    async def send(self, message: str | bytes) -> None:
        self.sent.append(message)
        if isinstance(message, bytes):
            return
        kind = json.loads(message)["type"]
        if kind == "turn.start":
            self._push("turn.started", turn=2)
        elif kind == "turn.end":
            await asyncio.sleep(0.002)
            self._incoming.put_nowait(AudioHeader(1, 9, 22050).pack() + b"\x00\x00")  # stale turn 1
            self._push("transcript.final", turn=2, text="where are the logs")
            self._push("sources", turn=2, available=True, sources=[])
            if self.error:
                self._push("error", code=self.error, message="too slow", turn=2, fatal=False)
            self._push("answer.delta", turn=2, text="They are in [1]")
            self._push("answer.delta", turn=2, text=" build/logs. More")
            await asyncio.sleep(0.002)
            self._incoming.put_nowait(AudioHeader(2, 0, 22050).pack() + b"\x01\x00" * 4)
            self._push("answer.done", turn=2, text="They are in [1] build/logs. More")
            self._push("turn.done", turn=2, outcome="ok", timings={"tts_first_audio": 3.0})

    def __aiter__(self) -> FakeSocket:
        return self

    async def __anext__(self) -> str | bytes:
        item = await self._incoming.get()
        if item is None:
            raise StopAsyncIteration
        return item


def _play(socket: FakeSocket) -> TurnRecord:
    async def scenario() -> TurnRecord:
        client = VoiceClient(socket)
        record = TurnRecord(concurrency=1, session=0, turn=0, utterance=0)
        await client.turn(record, Utterance("q", b"\x00\x00" * 160), timeout_s=5)
        socket._incoming.put_nowait(None)
        return record

    return asyncio.run(scenario())


def test_a_turn_is_timed_from_turn_end_and_ignores_audio_of_other_turns() -> None:
    socket = FakeSocket()
    record = _play(socket)
    assert [json.loads(m)["type"] for m in socket.sent if isinstance(m, str)] == ["turn.start", "turn.end"]
    assert socket.sent[1] == b"\x00\x00" * 160  # 10 ms of audio: one frame
    assert record.turn == 2
    assert record.outcome == "ok"
    assert not record.failed
    assert record.audio_bytes == 8  # turn 1's frame is not counted
    assert record.transcript == "where are the logs"
    assert record.answer.startswith("They are in")
    assert record.first_sentence_chars == len("They are in build/logs.")
    assert record.sources_available is True
    assert record.timings == {"tts_first_audio": 3.0}
    assert record.transcript_ms is not None
    assert record.first_delta_ms is not None
    assert record.ttfa_ms is not None
    assert record.total_ms is not None
    assert 0 <= record.transcript_ms <= record.first_delta_ms <= record.ttfa_ms <= record.total_ms


def test_an_error_event_fails_the_turn_under_its_code() -> None:
    record = _play(FakeSocket(error="timeout"))
    assert record.errors == ["timeout"]
    assert record.error_messages == ["too slow"]
    assert record.failed


def test_a_socket_that_closes_mid_turn_is_a_connection_error() -> None:
    class Closing(FakeSocket):
        async def send(self, message: str | bytes) -> None:
            if isinstance(message, str) and json.loads(message)["type"] == "turn.end":
                self._incoming.put_nowait(None)

    async def scenario() -> TurnRecord:
        record = TurnRecord(concurrency=1, session=0, turn=0, utterance=0)
        return await gateway_turn(VoiceClient(Closing()), record, Utterance("q", b"\x00\x00"), timeout_s=5)

    record = asyncio.run(scenario())
    assert record.errors == ["connection:ConnectionError"]
    assert record.failed


def test_the_physical_limit_is_asr_tail_cached_llm_and_first_chunk() -> None:
    direct = DirectRecord(
        turn=2,
        utterance=0,
        asr_ms=300.0,
        retrieval_ms=40.0,
        llm_first_token_ms=150.0,
        llm_first_sentence_ms=400.0,
        tts_first_chunk_ms=100.0,
        wall_ms=900.0,
        first_sentence_chars=30,
        llm_cached_first_sentence_ms=400.0,
    )
    assert direct.physical_limit_ms == 800.0  # retrieval is not in it: speculation moves it
    turn = TurnRecord(concurrency=1, session=0, turn=2, utterance=0, ttfa_ms=920.0)
    ratio = compare_direct([turn], [direct])["ratio_ttfa_over_limit"]
    assert (ratio["n"], ratio["p50"]) == (1, 1.15)


def test_speculation_figures_count_outcomes_and_thrown_away_prefill() -> None:
    def turn(outcome: str, spent: int, wasted: int) -> TurnRecord:
        timings = {"speculation": outcome, "speculative_tokens": spent, "speculative_wasted_tokens": wasted}
        return TurnRecord(concurrency=1, session=0, turn=1, utterance=0, outcome="ok", timings=timings)

    figures = speculation_summary([turn("hit", 400, 0), turn("hit", 800, 400), turn("miss", 300, 300)])
    assert figures["outcomes"] == {"hit": 2, "miss": 1}
    assert (figures["hit_rate"], figures["prefill_tokens"], figures["wasted_tokens"]) == (0.667, 1500, 700)


def test_ttfa_is_reported_by_utterance_length() -> None:
    utterances = [Utterance("short", b"\0\0" * 16000 * 2), Utterance("long", b"\0\0" * int(16000 * 4.3))]
    records = [
        TurnRecord(concurrency=1, session=0, turn=1, utterance=0, ttfa_ms=500.0),
        TurnRecord(concurrency=1, session=0, turn=2, utterance=1, ttfa_ms=900.0),
    ]
    by_length = ttfa_by_length(records, utterances)
    assert sorted(by_length) == ["2s", "4s"]
    assert by_length["4s"]["p50"] == 900.0


def test_the_waterfall_draws_the_limit_the_gateway_and_the_client_on_one_axis() -> None:
    from tests.bench.waterfall import rows, svg

    report = {
        "direct_at_n1": {
            "direct_ms": {"asr_final": {"p50": 300.0}, "tts_first_chunk": {"p50": 100.0}},
            "physical_limit_ms": {"llm_cached_first_sentence": {"p50": 400.0}},
        },
        "results": {
            "1": {
                "gateway_timings_ms": {
                    "asr_final": {"p50": 310.0},
                    "llm_first_token": {"p50": 500.0},
                    "tts_first_audio": {"p50": 880.0},
                },
                "client_ms": {"time_to_first_audio": {"p50": 900.0}},
            }
        },
    }
    bars = rows(report)
    assert [(round(start), round(end)) for _, start, end, _ in bars] == [
        (0, 300),
        (300, 700),
        (700, 800),
        (0, 310),
        (310, 500),
        (500, 880),
        (0, 900),
    ]
    picture = svg(bars, "turn")
    assert picture.startswith("<svg")
    assert picture.count("<rect") == len(bars) + 1
