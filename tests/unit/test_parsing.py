"""The parsing worker pool: hostile files refused (or parsed) within limits, in another process.

These run real worker processes (our own code, `python -m ingest.parsing`), not fakes: the
limits are the kernel's and the pool's, and only a real process shows them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path
from typing import Any

import psutil
import pytest

from ingest.errors import ParseError, ParseLimitExceeded, ParserCrashed, UnsupportedFormat
from ingest.limits import ParseLimits
from ingest.parsing import ParsePool, PreparedDocument
from tests.data.hostile import Hostile, cases
from tests.data.pdfgen import make_pdf

# Generous for a shared 2-core machine, small enough that the CPU backstop case ends quickly.
LIMITS = ParseLimits(cpu_time_s=5.0, wall_time_s=60.0)
HOSTILE = cases()


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture(scope="module")
def outcomes() -> dict[str, PreparedDocument | Exception]:
    """Every hostile case through one pool (one event loop), as the gateway would see them."""

    async def run_all() -> dict[str, PreparedDocument | Exception]:
        results: dict[str, PreparedDocument | Exception] = {}
        async with ParsePool(LIMITS) as pool:
            for case in HOSTILE:
                try:
                    results[case.name] = await pool.prepare(case.data, Path(case.name))
                except Exception as e:
                    results[case.name] = e
        return results

    return _run(run_all())


def test_there_are_at_least_fifteen_hostile_cases() -> None:
    assert len(HOSTILE) >= 15
    assert len({c.name for c in HOSTILE}) == len(HOSTILE)


@pytest.mark.parametrize("case", HOSTILE, ids=[c.name for c in HOSTILE])
def test_hostile_document_is_refused_clearly_or_parsed_within_limits(
    case: Hostile, outcomes: dict[str, PreparedDocument | Exception]
) -> None:
    outcome = outcomes[case.name]
    if case.code is None:
        assert isinstance(outcome, PreparedDocument), f"{case.why}: {outcome!r}"
        assert sum(len(c.text) for c in outcome.chunks) <= LIMITS.max_text_chars
        return
    assert isinstance(outcome, ParseError), f"{case.why}: expected a refusal, got {outcome!r}"
    assert outcome.code == case.code, str(outcome)
    if case.limit is not None:
        assert isinstance(outcome, ParseLimitExceeded)
        assert outcome.limit in case.limits, str(outcome)
    assert str(outcome), "the refusal says why"


def test_a_worker_is_reused_and_replaced_after_a_refusal() -> None:
    async def scenario() -> list[int]:
        pids = []
        async with ParsePool(LIMITS) as pool:
            for data, name in [
                (b"# A\n\nfirst", "a.md"),
                (b"# B\n\nsecond", "b.md"),
                (b"<div>" * 500, "deep.html"),
                (b"# C\n\nthird", "c.md"),
            ]:
                with contextlib.suppress(ParseLimitExceeded):
                    await pool.prepare(data, Path(name))
                pids.append(next(w.proc.pid for w in pool._idle) if pool._idle else -1)
        return pids

    first, second, after_refusal, third = _run(scenario())
    assert first == second, "the second file reused the first file's worker"
    assert after_refusal == -1, "the worker that hit a limit was not kept"
    assert third not in (-1, first), "a fresh worker took the next file"


def test_wall_clock_limit_kills_a_slow_parse() -> None:
    limits = ParseLimits(cpu_time_s=60.0, wall_time_s=1.0)
    slow = next(c for c in HOSTILE if c.limit == "cpu_time")

    async def scenario() -> None:
        async with ParsePool(limits) as pool:
            with pytest.raises(ParseLimitExceeded) as caught:
                await pool.prepare(slow.data, Path(slow.name))
            assert caught.value.limit == "wall_time"
            # The pool goes on with a fresh worker.
            doc = await pool.prepare(b"# Fine\n\nStill works.", Path("fine.md"))
            assert doc.chunks

    _run(scenario())


def test_a_worker_that_dies_is_a_clear_error_not_a_hang() -> None:
    slow = next(c for c in HOSTILE if c.limit == "cpu_time")

    async def scenario() -> None:
        async with ParsePool(ParseLimits(cpu_time_s=60.0, wall_time_s=60.0)) as pool:
            job = asyncio.create_task(pool.prepare(slow.data, Path(slow.name)))
            for _ in range(200):
                await asyncio.sleep(0.05)
                if pool._busy:
                    break
            (worker,) = pool._busy
            await asyncio.sleep(0.3)  # inside the parse
            os.kill(worker.proc.pid, signal.SIGSEGV)
            with pytest.raises(ParserCrashed, match="SIGSEGV"):
                await job
            doc = await pool.prepare(b"after the crash", Path("after.txt"))
            assert doc.title == "after the crash"

    _run(scenario())


def test_memory_limit_is_a_refusal() -> None:
    # Caps raised out of the way: the address-space limit is what stops this one.
    limits = ParseLimits(
        memory_bytes=400 * 1024 * 1024,
        max_text_chars=10**9,
        max_line_chars=10**9,
        cpu_time_s=60.0,
        wall_time_s=120.0,
    )
    data = (b"ab " * 30_000 + b"\n") * 1_000  # 90 MB of text: decoded, split, chunked...

    async def scenario() -> None:
        async with ParsePool(limits) as pool:
            with pytest.raises((ParseLimitExceeded, ParserCrashed)) as caught:
                await pool.prepare(data, Path("big.txt"))
            if isinstance(caught.value, ParseLimitExceeded):
                assert caught.value.limit == "memory"

    _run(scenario())


def test_worker_environment_holds_no_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICEBOT_AUTH_SECRET", "do-not-leak-this-secret-value")
    monkeypatch.setenv("VOICEBOT_DATABASE_URL", "postgresql://u:p@h/db")

    async def scenario() -> dict[str, str]:
        async with ParsePool(LIMITS) as pool:
            await pool.prepare(b"x", Path("x.txt"))
            (worker,) = pool._idle
            env: dict[str, str] = psutil.Process(worker.proc.pid).environ()
            return env

    env = _run(scenario())
    assert not [k for k in env if k.startswith("VOICEBOT_")]


def test_results_carry_chunks_pages_and_embedding_inputs() -> None:
    pdf = make_pdf([["Install", "Run the installer."], ["Configure", "Set the port to 8080."]])

    async def scenario() -> PreparedDocument:
        async with ParsePool(LIMITS) as pool:
            return await pool.prepare(pdf, Path("manual.pdf"))

    doc = _run(scenario())
    assert doc.format == "pdf"
    assert [c.page for c in doc.chunks] == [1, 2]
    assert all(c.embedding_input.endswith(c.text) for c in doc.chunks)


def test_unsupported_and_unreadable_are_reported_as_such() -> None:
    async def scenario() -> None:
        async with ParsePool(LIMITS) as pool:
            with pytest.raises(UnsupportedFormat):
                await pool.prepare(b"MZ", Path("setup.exe"))
            with pytest.raises(ParseError, match="unreadable PDF"):
                await pool.prepare(b"not a pdf", Path("x.pdf"))

    _run(scenario())
