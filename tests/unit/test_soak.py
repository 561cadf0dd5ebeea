"""The soak's bookkeeping (tests/bench/soak.py): errors by code, memory growth, row changes."""

from __future__ import annotations

import pytest

from tests.bench.bench_voice import TurnRecord
from tests.bench.soak import Soak, errors_by_code, errors_by_minute, main, memory_growth, row_changes


def _turn(outcome: str | None, *errors: str) -> TurnRecord:
    record = TurnRecord(concurrency=0, session=0, turn=1, utterance=0)
    record.outcome = outcome
    record.errors.extend(errors)
    return record


def test_errors_are_counted_by_code_from_turns_sessions_and_uploads() -> None:
    soak = Soak()
    for record, minute in [
        (_turn("ok"), 0),
        (_turn("cancelled"), 0),
        (_turn("error", "model_unavailable"), 1),
        (_turn(None, "client_timeout"), 1),
        (_turn(None), 2),  # unfinished with no error code: still an error
    ]:
        soak.turns.append(record)
        soak.turn_minutes.append(minute)
    soak.session_failures["ConnectionError"] += 2
    soak.uploads.update({"ok": 3, "http_503": 1})
    assert errors_by_code(soak) == {
        "client_timeout": 1,
        "model_unavailable": 1,
        "outcome:unfinished": 1,
        "session:ConnectionError": 2,
        "upload:http_503": 1,
    }
    assert errors_by_minute(soak) == {0: 0, 1: 2, 2: 0}


def test_memory_growth_is_over_the_last_two_thirds() -> None:
    samples = [{"t_s": t, "rss": rss} for t, rss in [(0, 50), (600, 100), (1200, 104), (1800, 105)]]
    assert memory_growth(samples, "rss") == pytest.approx(0.05)  # 100 -> 105 from minute 10 on
    assert memory_growth(samples[:1], "rss") is None
    assert memory_growth([], "rss") is None
    assert memory_growth([{"t_s": 0, "rss": None}, {"t_s": 60, "rss": None}], "rss") is None


def test_row_changes_report_lost_or_extra_rows() -> None:
    before = {"documents": 2, "sessions": 0, "turns": 0, "chunks": 10}
    after = {"documents": 5, "sessions": 7, "turns": 30, "chunks": 13}
    rows = row_changes(before, after, {"documents": 3, "sessions": 8})
    assert rows["unexpected"] == {"sessions": -1}  # one session lost
    assert row_changes(before, after, {"documents": 3})["unexpected"] == {}


def test_options_are_bounded() -> None:
    with pytest.raises(SystemExit):
        main(["--minutes", "0"])
    with pytest.raises(SystemExit):
        main(["--sessions", "0"])
