"""Soak: many concurrent voice sessions for a long while, on the real local stack, loopback only.

Run as ``python -m tests.bench.soak`` (``make soak``; issue 16 asks for 20 sessions for 30
minutes: the defaults). It starts Postgres, Triton with the real models and a gateway on free
loopback ports (tests/bench/bench_voice.py's ``local_stack``), ingests two docs, then for
``--minutes``:

- ``--sessions`` push-to-talk sessions play spoken questions back to back; every fourth turn is a
  barge-in (a question started while the previous answer's audio is arriving);
- one upload of a small Markdown file every 30 s through ``POST /v1/documents``;
- Triton is restarted once, in the middle (stopped and started again; the gateway must recover);
- gateway and model-server memory (RSS, with child processes) every minute.

It writes build/bench/soak.json: turns by outcome, errors by code (per minute too, so the
restart's are told apart), memory samples and the growth over the last two thirds of the run,
and Postgres row counts before and after with the rows the run should have added. Every loop is
bounded by the deadline; nothing asserts (figures depend on the machine and its load).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

from tests.bench import bench_voice
from tests.bench.bench_voice import REPO, TurnRecord, Utterance, VoiceClient, gateway_turn, local_stack
from tests.bench.report import machine

OUT = REPO / "build" / "bench" / "soak.json"
LOG_DIR = REPO / "build" / "bench-soak-logs"
DOCS = (REPO / "docs" / "architecture.md", REPO / "docs" / "operations.md")
QUESTIONS = (
    "Where does the local stack keep its logs?",
    "How do I create an API key?",
    "Which port does the gateway listen on?",
    "How do I restart Triton?",
)
BARGE_IN_EVERY = 4  # every fourth turn of a session interrupts the answer before it
UPLOAD_EVERY_S = 30.0
SAMPLE_EVERY_S = 60.0
TURN_TIMEOUT_S = 300.0
TRITON_READY_TIMEOUT_S = 600.0
TABLES = ("documents", "chunks", "sessions", "turns")


@dataclass
class Soak:
    """What the run saw, filled as it goes."""

    started: float = field(default_factory=time.monotonic)
    turns: list[TurnRecord] = field(default_factory=list)
    turn_minutes: list[int] = field(default_factory=list)
    barge_ins: int = 0
    sessions_opened: int = 0
    session_failures: Counter[str] = field(default_factory=Counter)
    uploads: Counter[str] = field(default_factory=Counter)
    memory: list[dict[str, Any]] = field(default_factory=list)
    restart: dict[str, Any] = field(default_factory=dict)

    def minute(self) -> int:
        return int((time.monotonic() - self.started) // 60)

    def add_turn(self, record: TurnRecord) -> None:
        self.turns.append(record)
        self.turn_minutes.append(self.minute())


def errors_by_code(soak: Soak) -> dict[str, int]:
    """Every error a turn, a session or an upload met, by code."""
    codes: Counter[str] = Counter()
    for record in soak.turns:
        codes.update(record.errors)
        if record.outcome not in ("ok", "cancelled") and not record.errors:
            codes[f"outcome:{record.outcome or 'unfinished'}"] += 1
    codes.update({f"session:{k}": v for k, v in soak.session_failures.items()})
    codes.update({f"upload:{k}": v for k, v in soak.uploads.items() if k != "ok"})
    return dict(sorted(codes.items()))


def errors_by_minute(soak: Soak) -> dict[int, int]:
    per: Counter[int] = Counter()
    for record, minute in zip(soak.turns, soak.turn_minutes, strict=True):
        per[minute] += len(record.errors)
    return dict(sorted(per.items()))


def memory_growth(samples: Sequence[dict[str, Any]], key: str, window: float = 2 / 3) -> float | None:
    """Growth of `key` (bytes) over the last `window` of the run, as a fraction of its first value
    there (issue 16: the last 20 of 30 minutes); None with fewer than two samples in the window."""
    if not samples:
        return None
    end = samples[-1]["t_s"]
    start = end - window * end
    inside = [s[key] for s in samples if s["t_s"] >= start and s.get(key)]
    if len(inside) < 2:
        return None
    return (inside[-1] - inside[0]) / inside[0]


def row_changes(before: dict[str, int], after: dict[str, int], expected: dict[str, int]) -> dict[str, Any]:
    """Counts before and after, and for the tables whose growth the run knows, lost or extra rows."""
    out: dict[str, Any] = {"before": before, "after": after, "expected_added": expected}
    out["unexpected"] = {
        t: after[t] - before[t] - n for t, n in expected.items() if after[t] - before[t] != n
    }
    return out


def _tree_rss(pid: int | None) -> int | None:
    import psutil

    if pid is None:
        return None
    try:
        root = psutil.Process(pid)
        return int(sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]))
    except psutil.Error:
        return None


def _listener_pid(port: int) -> int | None:
    import psutil

    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            return conn.pid
    return None


@contextlib.contextmanager
def _capture_triton() -> Iterator[list[Any]]:
    """local_stack builds its Triton through bench_voice.store_and_models: keep the object, to
    restart it (the stack's own code is used as it is)."""
    made: list[Any] = []
    original = bench_voice.store_and_models

    def capture(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
        postgres, triton = original(*args, **kwargs)
        made.append(triton)
        return postgres, triton

    with mock.patch.object(bench_voice, "store_and_models", capture):
        yield made


async def _row_counts(dsn: str) -> dict[str, int]:
    import psycopg

    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        counts = {}
        for table in TABLES:
            cur = await conn.execute(f"SELECT count(*) FROM {table}")  # noqa: S608 (fixed names)
            row = await cur.fetchone()
            counts[table] = int(row[0]) if row else 0
        return counts


async def _first_audio(client: VoiceClient, utterance: Utterance, timeout_s: float) -> None:
    """Play a question and return once its answer's audio starts (or its turn ends)."""
    await client.ws.send(json.dumps({"type": "turn.start"}))
    for frame in utterance.frames():  # not paced: only the answer's start matters here
        await client.ws.send(frame)
    await client.ws.send(json.dumps({"type": "turn.end"}))
    deadline = time.monotonic() + timeout_s
    while True:
        _, message = await client.next_message(max(0.0, deadline - time.monotonic()))
        if isinstance(message, bytes):
            return
        if json.loads(message).get("type") == "turn.done":
            return


async def _session(i: int, url: str, utterances: Sequence[Utterance], soak: Soak, deadline: float) -> None:
    k = 0
    while time.monotonic() < deadline:
        try:
            async with VoiceClient.connect(url) as client:
                soak.sessions_opened += 1
                while time.monotonic() < deadline:
                    k += 1
                    u = (i + k) % len(utterances)
                    if k % BARGE_IN_EVERY == 0:
                        await _first_audio(client, utterances[u], TURN_TIMEOUT_S)
                        soak.barge_ins += 1
                        u = (u + 1) % len(utterances)
                    record = TurnRecord(concurrency=0, session=i, turn=k, utterance=u)
                    soak.add_turn(await gateway_turn(client, record, utterances[u], TURN_TIMEOUT_S))
                    if any(e == "client_timeout" or ":" in e for e in record.errors):
                        break  # out of step or gone: open a new session
        except Exception as e:  # the session could not open or broke between turns
            soak.session_failures[type(e).__name__] += 1
            await asyncio.sleep(2.0)


async def _uploads(http_url: str, soak: Soak, deadline: float) -> None:
    import httpx

    n = 0
    async with httpx.AsyncClient(base_url=http_url, timeout=120) as client:
        while time.monotonic() + UPLOAD_EVERY_S < deadline:
            await asyncio.sleep(UPLOAD_EVERY_S)
            n += 1
            body = f"# Soak note {n}\n\nThe soak run uploaded note number {n} while sessions talked.\n"
            try:
                response = await client.post(
                    "/v1/documents", files=[("files", (f"soak-{n}.md", body.encode()))]
                )
                ok = response.status_code == 200 and all(
                    r.get("ok", True) for r in response.json()["results"]
                )
                soak.uploads["ok" if ok else f"http_{response.status_code}"] += 1
            except httpx.HTTPError as e:
                soak.uploads[type(e).__name__] += 1


def _sample(gateway_pid: int | None, triton: Any, soak: Soak) -> None:
    soak.memory.append(
        {
            "t_s": round(time.monotonic() - soak.started, 1),
            "gateway_rss": _tree_rss(gateway_pid),
            "triton_rss": _tree_rss(triton._process.pid if triton._process else None),
        }
    )


async def _memory(gateway_pid: int | None, triton: Any, soak: Soak, deadline: float) -> None:
    """Every SAMPLE_EVERY_S until the deadline; `run` takes the last sample once the turns in
    flight at the deadline have finished."""
    while True:
        _sample(gateway_pid, triton, soak)
        if time.monotonic() + SAMPLE_EVERY_S > deadline:
            return
        await asyncio.sleep(SAMPLE_EVERY_S)


async def _restart_triton(triton: Any, soak: Soak, at: float) -> None:
    await asyncio.sleep(max(0.0, at - time.monotonic()))
    began = time.monotonic()
    soak.restart["at_s"] = round(began - soak.started, 1)
    await asyncio.to_thread(triton.stop)
    await asyncio.to_thread(triton.start)
    await asyncio.to_thread(triton.wait_ready, TRITON_READY_TIMEOUT_S)
    soak.restart["ready_after_s"] = round(time.monotonic() - began, 1)


async def run(
    stack: Any, triton: Any, utterances: Sequence[Utterance], minutes: float, sessions: int
) -> Soak:
    soak = Soak()
    deadline = soak.started + minutes * 60
    url = stack.gateway_url.replace("http://", "ws://", 1) + "/v1/voice"
    gateway_pid = _listener_pid(int(stack.gateway_url.rsplit(":", 1)[1]))
    async with asyncio.TaskGroup() as group:
        for i in range(sessions):
            group.create_task(_session(i, url, utterances, soak, deadline))
        group.create_task(_uploads(stack.gateway_url, soak, deadline))
        group.create_task(_memory(gateway_pid, triton, soak, deadline))
        group.create_task(_restart_triton(triton, soak, soak.started + minutes * 30))
    _sample(gateway_pid, triton, soak)  # after the drain: what the run left behind
    return soak


def report(soak: Soak, rows: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    outcomes = Counter(r.outcome or "unfinished" for r in soak.turns)
    return {
        "command": f"make soak SOAK_ARGS='--minutes {args.minutes:g} --sessions {args.sessions}'",
        "minutes": args.minutes,
        "sessions": args.sessions,
        "turns": len(soak.turns),
        "outcomes": dict(sorted(outcomes.items())),
        "barge_ins": soak.barge_ins,
        "sessions_opened": soak.sessions_opened,
        "uploads": dict(soak.uploads),
        "triton_restart": soak.restart,
        "errors_by_code": errors_by_code(soak),
        "errors_by_minute": errors_by_minute(soak),
        "memory": soak.memory,
        "memory_growth_last_two_thirds": {
            "gateway": memory_growth(soak.memory, "gateway_rss"),
            "triton": memory_growth(soak.memory, "triton_rss"),
        },
        "rows": rows,
        "machine": machine(_load()),
        "note": args.note,
    }


def _load() -> tuple[float, float, float]:
    import os

    return os.getloadavg()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="how long the sessions talk (default 30)")
    parser.add_argument("--sessions", type=int, default=20, help="concurrent voice sessions (default 20)")
    parser.add_argument("--note", default="", help="recorded as is, e.g. 'machine shared with other runs'")
    parser.add_argument("--log-dir", type=Path, default=LOG_DIR, help="Postgres, Triton and gateway logs")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.sessions < 1:
        parser.error("--minutes must be > 0 and --sessions >= 1")

    from tests.speech import speak_pcm16

    utterances = [Utterance(q, speak_pcm16(q)) for q in QUESTIONS]
    gateway_env = {"VOICEBOT_LLM_MAX_TOKENS": "48", "VOICEBOT_MAX_SESSIONS_PER_KEY": str(args.sessions * 2)}
    with _capture_triton() as made, local_stack(args.log_dir, list(DOCS), gateway_env) as stack:
        before = asyncio.run(_row_counts(stack.dsn))
        soak = asyncio.run(run(stack, made[-1], utterances, args.minutes, args.sessions))
        after = asyncio.run(_row_counts(stack.dsn))
    # Every session and turn the gateway answered is stored once; each upload adds one document.
    finished = sum(1 for r in soak.turns if r.outcome in ("ok", "error", "cancelled"))
    expected = {"sessions": soak.sessions_opened, "documents": soak.uploads["ok"]}
    result = report(soak, row_changes(before, after, expected), args)
    result["rows"]["turns_seen_finished"] = finished  # plus the barge-ins' interrupted turns
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("turns", "outcomes", "errors_by_code", "rows")}, indent=2))
    print(f"wrote {args.out.relative_to(REPO)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
