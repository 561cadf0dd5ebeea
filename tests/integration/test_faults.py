"""Faults on the real stack: Triton or Postgres dies mid-answer, comes back; the gateway drains on
SIGTERM; a barge-in leaves no generation running on Triton.

This module runs its own Postgres, Triton and gateway (the session's shared ones must stay up for
the other modules), kills them as a crash would (SIGKILL), and restarts them on the same ports.
The gateway process is never restarted: recovering on its own is what is tested.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from orchestrator.protocol import AudioHeader
from orchestrator.stack.ports import free_port
from orchestrator.stack.postgres import EmbeddedPostgres
from orchestrator.stack.triton import TritonServer
from tests.integration.conftest import (
    LOG_DIR,
    MODEL_REPOSITORY,
    STARTUP_TIMEOUT_S,
    prepare_store,
    running_gateway,
)

FAULT_LOGS = LOG_DIR / "faults"
# Answered from the docs (not declined before the LLM), with a prompt long enough to be mid-way
# through when a fault is injected at the `sources` event.
LONG_QUESTION = "Which port does the gateway listen on, and how do I start the local stack with make up?"
# Asked by one test only, so its prompt is in no cache: the llm model is still reading it a second
# after the passages are found (an uncached prompt takes seconds on a CPU).
UNCACHED_QUESTION = "How are documents chunked and embedded, and which search ranks the passages?"
LLM_BUSY_S = 1.0
SHORT_QUESTION = "What does the gateway do?"
RECOVERY_TIMEOUT_S = 90.0
GATEWAY_ENV = {"VOICEBOT_TRITON_TIMEOUT_S": "20"}


@dataclass
class Stack:
    postgres: EmbeddedPostgres
    triton: TritonServer
    url: str
    gateway: subprocess.Popen[bytes]

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/v1/voice"


def _wait_for(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.3)


@pytest.fixture(scope="module")
def stack(stack_dir: Path) -> Iterator[Stack]:
    FAULT_LOGS.mkdir(parents=True, exist_ok=True)
    postgres = EmbeddedPostgres(
        stack_dir / "faults-postgres", free_port(), log_dir=FAULT_LOGS, database="voicebot_faults"
    )
    triton = TritonServer(
        MODEL_REPOSITORY,
        http_port=free_port(),
        grpc_port=free_port(),
        metrics_port=free_port(),
        state_dir=stack_dir,
        log_dir=FAULT_LOGS,
    )
    try:
        postgres.start()
        triton.start()
        postgres.wait_ready(STARTUP_TIMEOUT_S)
        triton.wait_ready(STARTUP_TIMEOUT_S)
        prepare_store(postgres, triton)
        with running_gateway(postgres, triton, log_name="faults/gateway", **GATEWAY_ENV) as (url, proc):
            yield Stack(postgres, triton, url, proc)
    finally:
        triton.stop()
        postgres.stop()


# ---- a small protocol client ---------------------------------------------------------------


@dataclass
class Turn:
    events: list[dict[str, Any]]
    audio_bytes: int

    def of(self, type_: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == type_]

    def codes(self) -> list[str]:
        return [e["code"] for e in self.of("error")]


async def _receive_until(ws: Any, stop: Callable[[dict[str, Any]], bool], timeout_s: float = 180) -> Turn:
    turn = Turn([], 0)
    deadline = time.monotonic() + timeout_s
    while True:
        message = await asyncio.wait_for(ws.recv(), timeout=max(0.1, deadline - time.monotonic()))
        if isinstance(message, bytes):
            turn.audio_bytes += len(AudioHeader.unpack(message)[1])
            continue
        data = json.loads(message)
        turn.events.append(data)
        if stop(data):
            return turn


def _turn_done(data: dict[str, Any]) -> bool:
    return bool(data["type"] == "turn.done")


async def _start(ws: Any) -> None:
    await ws.send(json.dumps({"type": "session.start"}))
    assert json.loads(await ws.recv())["type"] == "session.ready"


def _ask(url: str, question: str, *, speak: bool = False) -> Turn:
    async def scenario() -> Turn:
        async with websockets.connect(url, max_size=None) as ws:
            await _start(ws)
            await ws.send(json.dumps({"type": "text", "text": question, "speak": speak}))
            return await _receive_until(ws, _turn_done)

    return asyncio.run(scenario())


def _readiness(url: str) -> tuple[int, dict[str, bool]]:
    response = httpx.get(f"{url}/readyz", timeout=10)
    return response.status_code, response.json()["checks"]


def _ask_while(url: str, fault: Callable[[], None]) -> Turn:
    """Ask a long question (its prompt in no cache), call `fault` while the LLM is reading its
    prompt (a second after the passages are found: answer deltas are whole checked sentences, so by
    the first one a short answer may be all generated), collect the turn."""

    async def scenario() -> Turn:
        async with websockets.connect(url, max_size=None) as ws:
            await _start(ws)
            await ws.send(json.dumps({"type": "text", "text": LONG_QUESTION}))
            before = await _receive_until(ws, lambda e: e["type"] == "sources")
            await asyncio.sleep(LLM_BUSY_S)
            await asyncio.to_thread(fault)
            after = await _receive_until(ws, _turn_done)
            return Turn(before.events + after.events, before.audio_bytes + after.audio_bytes)

    return asyncio.run(scenario())


# ---- tests ---------------------------------------------------------------------------------


def test_triton_dying_mid_answer_is_reported_and_the_gateway_recovers(stack: Stack) -> None:
    pid = stack.gateway.pid
    turn = _ask_while(stack.ws_url, stack.triton.kill)
    assert "model_unavailable" in turn.codes()
    assert turn.of("turn.done")[0]["outcome"] == "error"
    assert not turn.of("answer.done")  # the answer was cut, and is not passed off as complete

    status, checks = _readiness(stack.url)
    assert status == 200  # degraded but ready: the Service keeps the pod, turns say model_unavailable
    assert checks["triton"] is False
    assert checks["postgres"] is True

    down = _ask(stack.ws_url, SHORT_QUESTION)
    assert "model_unavailable" in down.codes()
    assert down.of("turn.done")[0]["outcome"] == "error"

    stack.triton.start()
    stack.triton.wait_ready(STARTUP_TIMEOUT_S)
    _wait_for(
        lambda: _readiness(stack.url)[1]["triton"], RECOVERY_TIMEOUT_S, "readiness after Triton returned"
    )
    again = _ask(stack.ws_url, SHORT_QUESTION)
    assert again.codes() == []
    assert again.of("answer.done")[0]["text"]
    assert again.of("sources")[0]["available"] is True
    assert stack.gateway.pid == pid
    assert stack.gateway.poll() is None


def test_postgres_dying_is_reported_the_answer_comes_without_sources_and_it_recovers(stack: Stack) -> None:
    stack.postgres.kill()
    status, checks = _readiness(stack.url)
    assert status == 200  # degraded but ready: answers still come, without sources
    assert checks["postgres"] is False
    assert checks["triton"] is True

    down = _ask(stack.ws_url, SHORT_QUESTION)
    assert down.codes() == ["store_unavailable"]
    assert down.of("error")[0]["fatal"] is False
    assert down.of("sources")[0]["available"] is False
    assert down.of("answer.done")[0]["text"]  # retrieval failing still answers
    assert down.of("turn.done")[0]["outcome"] == "ok"

    stack.postgres.start()
    stack.postgres.wait_ready(STARTUP_TIMEOUT_S)
    _wait_for(
        lambda: _readiness(stack.url)[1]["postgres"], RECOVERY_TIMEOUT_S, "readiness after Postgres returned"
    )
    again = _ask(stack.ws_url, SHORT_QUESTION)
    assert again.codes() == []
    assert again.of("sources")[0]["available"] is True
    assert len(again.of("sources")[0]["sources"]) >= 1
    assert stack.gateway.poll() is None


def _triton_log_count(stack: Stack, needle: str) -> int:
    return (FAULT_LOGS / "triton.log").read_text(errors="replace").count(needle)


def _finished_requests(stack: Stack, model: str) -> int:
    stats = httpx.get(f"{stack.triton.http_url}/v2/models/{model}/stats", timeout=10).json()
    inference = stats["model_stats"][0]["inference_stats"]
    return int(inference["success"]["count"]) + int(inference["fail"]["count"])


def _pending_requests(stack: Stack) -> float:
    """Requests queued on Triton, all models (its metrics endpoint)."""
    metrics = httpx.get(stack.triton.metrics_url, timeout=10).text
    values = [
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("nv_inference_pending_request_count{")
    ]
    assert values, "Triton no longer exports nv_inference_pending_request_count"
    return sum(values)


def test_barge_in_leaves_no_generation_running_on_triton(stack: Stack) -> None:
    cancelled_before = _triton_log_count(stack, "llm: request cancelled after")
    llm_before = _finished_requests(stack, "llm")

    async def scenario() -> Turn:
        async with websockets.connect(stack.ws_url, max_size=None) as ws:
            await _start(ws)
            await ws.send(json.dumps({"type": "text", "text": UNCACHED_QUESTION}))
            await _receive_until(ws, lambda e: e["type"] == "sources")
            await asyncio.sleep(LLM_BUSY_S)  # the llm request is sent, and its prompt is being read
            await ws.send(json.dumps({"type": "text", "text": SHORT_QUESTION, "speak": False}))  # barge-in
            return await _receive_until(ws, lambda e: e["type"] == "turn.done" and e["turn"] == 2)

    turn = asyncio.run(scenario())
    assert [e["outcome"] for e in turn.of("turn.done")] == ["cancelled", "ok"]
    # The model itself saw the cancellation and stopped generating ...
    _wait_for(
        lambda: _triton_log_count(stack, "llm: request cancelled after") > cancelled_before,
        30,
        "the llm model to log the cancellation",
    )
    # ... and every llm request of the session is finished on Triton: none is left streaming.
    # (Besides the two answers, the session warms the conversation's start between turns.)
    _wait_for(lambda: _finished_requests(stack, "llm") - llm_before >= 2, 30, "both llm requests to finish")
    _wait_for(lambda: _pending_requests(stack) == 0, 30, "no request left on Triton")


def test_sigterm_drains_the_answer_in_flight_then_asks_clients_to_reconnect(stack: Stack) -> None:
    with running_gateway(stack.postgres, stack.triton, log_name="faults/gateway-drain", **GATEWAY_ENV) as (
        url,
        proc,
    ):
        turn, close_code, status = _drain(url, proc)
    assert status in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after a clean shutdown
    assert turn.of("answer.done")[0]["text"]  # the answer in flight was finished, not cut
    assert turn.of("turn.done")[0]["outcome"] == "ok"
    assert turn.codes() == ["shutting_down"]
    assert close_code == 1012


def _drain(url: str, proc: subprocess.Popen[bytes]) -> tuple[Turn, int | None, int]:
    """SIGTERM the gateway while an answer streams; the turn, the socket's close code, the exit status."""
    ws_url = url.replace("http://", "ws://") + "/v1/voice"

    async def scenario() -> tuple[Turn, int | None]:
        async with websockets.connect(ws_url, max_size=None) as ws:
            await _start(ws)
            await ws.send(json.dumps({"type": "text", "text": LONG_QUESTION, "speak": False}))
            first = await _receive_until(ws, lambda e: e["type"] == "answer.delta")
            proc.send_signal(signal.SIGTERM)
            rest = await _receive_until(ws, lambda e: e["type"] == "error" and e["fatal"])
            try:
                await asyncio.wait_for(ws.recv(), timeout=30)
            except websockets.ConnectionClosed as e:
                code = e.rcvd.code if e.rcvd else None
            else:
                code = None
            return Turn(first.events + rest.events, 0), code

    turn, close_code = asyncio.run(scenario())
    return turn, close_code, proc.wait(timeout=60)
