"""Per-caller limits: the token-bucket rate limiter and the concurrent-session counter."""

from __future__ import annotations

import pytest

from orchestrator import limits
from orchestrator.limits import RateLimiter, SessionLimiter, retry_after


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_up_to_the_limit_passes_then_the_next_request_waits() -> None:
    clock = Clock()
    limiter = RateLimiter(60, clock=clock)
    assert all(limiter.acquire("key:1") == 0 for _ in range(60))
    wait = limiter.acquire("key:1")
    assert wait == pytest.approx(1.0)  # one token a second at 60 a minute
    assert retry_after(wait) == 1


def test_the_bucket_refills_at_the_rate_not_all_at_once() -> None:
    clock = Clock()
    limiter = RateLimiter(6, clock=clock)  # one token every 10 s
    for _ in range(6):
        limiter.acquire("k")
    assert limiter.acquire("k") == pytest.approx(10.0)
    clock.now += 5
    assert limiter.acquire("k") == pytest.approx(5.0)  # refused requests take nothing
    clock.now += 5
    assert limiter.acquire("k") == 0
    assert limiter.acquire("k") > 0
    clock.now += 3600
    assert sum(limiter.acquire("k") == 0 for _ in range(10)) == 6  # never more than a full bucket


def test_callers_have_separate_buckets() -> None:
    limiter = RateLimiter(2, clock=Clock())
    assert [limiter.acquire("a") == 0 for _ in range(3)] == [True, True, False]
    assert limiter.acquire("b") == 0
    assert limiter.acquire("anonymous@127.0.0.2") == 0


def test_idle_buckets_are_forgotten_when_there_are_too_many(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "MAX_BUCKETS", 4)
    clock = Clock()
    limiter = RateLimiter(60, clock=clock)
    for name in "abcd":
        limiter.acquire(name)
    clock.now += 120  # every bucket has refilled
    limiter.acquire("e")
    assert len(limiter._buckets) == 1
    busy = RateLimiter(60, clock=clock)
    for name in "abcd":  # none refilled: the oldest half goes
        busy.acquire(name)
        clock.now += 0.01
    busy.acquire("e")
    assert sorted(busy._buckets) == ["c", "d", "e"]


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        RateLimiter(0)


def test_retry_after_is_whole_seconds_at_least_one() -> None:
    assert [retry_after(s) for s in (0.01, 1.0, 1.2, 59.9)] == [1, 1, 2, 60]


def test_sessions_are_counted_per_key_up_to_the_limit() -> None:
    sessions = SessionLimiter(2)
    assert sessions.try_open("key:1")
    assert sessions.try_open("key:1")
    assert not sessions.try_open("key:1")
    assert sessions.try_open("key:2")
    sessions.close("key:1")
    assert sessions.open_sessions("key:1") == 1
    assert sessions.try_open("key:1")
    for _ in range(3):
        sessions.close("key:1")  # closing more than was opened never goes negative
    assert sessions.open_sessions("key:1") == 0
    assert sessions.try_open("key:1")
