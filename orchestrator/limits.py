"""Per-caller limits, kept in process: requests a minute and concurrent voice sessions.

Each gateway replica counts on its own, so with N replicas behind a load balancer a caller may
get up to N times a limit; that is deliberate (no shared store on the request path). The keys
are callers' limit buckets (`Caller.bucket`): a stored key, the bootstrap key, or one anonymous
dev-mode client address.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

MAX_BUCKETS = 10_000  # idle buckets are forgotten beyond this many


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """A token bucket per caller: `per_minute` requests a minute on average, bursts up to `per_minute`.

    A caller over the limit waits for one token, not for a whole new minute."""

    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        if per_minute < 1:
            raise ValueError("per_minute must be at least 1")
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0  # tokens a second
        self.clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def acquire(self, key: str) -> float:
        """Takes one request from `key`'s bucket: 0 when allowed, else the seconds until one is."""
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= MAX_BUCKETS:
                self._forget_idle(now)
            bucket = self._buckets[key] = _Bucket(self.capacity, now)
        else:
            bucket.tokens = min(self.capacity, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate

    def wait(self, key: str) -> float:
        """Seconds until `key` may make a request (0: now), without taking one."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return 0.0
        tokens = min(self.capacity, bucket.tokens + (self.clock() - bucket.updated) * self.rate)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def _forget_idle(self, now: float) -> None:
        """Drops buckets that have refilled (they are as good as new); else the oldest half."""
        full = [
            k for k, b in self._buckets.items() if b.tokens + (now - b.updated) * self.rate >= self.capacity
        ]
        for k in full or sorted(self._buckets, key=lambda k: self._buckets[k].updated)[: MAX_BUCKETS // 2]:
            del self._buckets[k]


def retry_after(seconds: float) -> int:
    """A Retry-After value: whole seconds, at least 1."""
    return max(1, math.ceil(seconds))


class SessionLimiter:
    """Counts open voice sessions per caller."""

    def __init__(self, max_per_key: int) -> None:
        self.max_per_key = max_per_key
        self._open: dict[str, int] = {}

    def try_open(self, key: str) -> bool:
        """Counts a new session of `key` unless it is at the limit; pair with `close` when True."""
        count = self._open.get(key, 0)
        if count >= self.max_per_key:
            return False
        self._open[key] = count + 1
        return True

    def close(self, key: str) -> None:
        count = self._open.get(key, 0) - 1
        if count > 0:
            self._open[key] = count
        else:
            self._open.pop(key, None)

    def open_sessions(self, key: str) -> int:
        return self._open.get(key, 0)
