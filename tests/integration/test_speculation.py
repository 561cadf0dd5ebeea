"""Speculative retrieval and prefill on the real stack: audio played at real time, as a person speaks.

The gateway retrieves on the partial transcripts and has the real `llm` model evaluate the
prompt's prefix while the "user" is still speaking; these tests check what a turn then does with
it (the turn's timings and the model's own token counts), that a changed question still gets the
right answer, that cancelling leaves nothing on Triton, and that one session's speculation does
not hold up another session's real turn. No test times anything.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import websockets

from orchestrator.stack.triton import TritonServer
from tests.speech import speak_pcm16

FRAME_BYTES = 3200  # 100 ms of 16 kHz PCM16
FRAME_S = 0.1
TURN_TIMEOUT_S = 240.0


async def _events_until(ws: Any, done: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + TURN_TIMEOUT_S
    while True:
        message = await asyncio.wait_for(ws.recv(), timeout=max(0.1, deadline - time.monotonic()))
        if isinstance(message, bytes):
            continue
        event = json.loads(message)
        events.append(event)
        if done(event):
            return events


async def _speak(ws: Any, pcm: bytes) -> None:
    """The frames of `pcm` at real time: frame k leaves (k + 1) x 100 ms after the first."""
    start = time.monotonic()
    for k, i in enumerate(range(0, len(pcm), FRAME_BYTES)):
        await asyncio.sleep(max(0.0, start + (k + 1) * FRAME_S - time.monotonic()))
        await ws.send(pcm[i : i + FRAME_BYTES])


async def _open(url: str) -> Any:
    ws = await websockets.connect(url.replace("http://", "ws://") + "/v1/voice", max_size=None)
    await ws.send(json.dumps({"type": "session.start"}))
    assert json.loads(await ws.recv())["type"] == "session.ready"
    return ws


def _spoken_turn(url: str, question: str, pause_s: float = 0.0) -> list[dict[str, Any]]:
    """One push-to-talk turn: the question at real time, then `pause_s` of silence before the
    release (a speaker who stops, then lets go of the button)."""
    pcm = speak_pcm16(question) + bytes(int(pause_s * 16_000) * 2)

    async def scenario() -> list[dict[str, Any]]:
        ws = await _open(url)
        try:
            await ws.send(json.dumps({"type": "turn.start"}))
            await _speak(ws, pcm)
            await ws.send(json.dumps({"type": "turn.end"}))
            return await _events_until(ws, lambda e: e["type"] == "turn.done")
        finally:
            await ws.close()

    return asyncio.run(scenario())


def _of(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == kind]


def _llm_requests(triton: TritonServer) -> tuple[int, int]:
    """(finished, pending) `llm` requests on Triton."""
    stats = httpx.get(f"{triton.http_url}/v2/models/llm/stats", timeout=10).json()
    inference = stats["model_stats"][0]["inference_stats"]
    finished = int(inference["success"]["count"]) + int(inference["fail"]["count"])
    metrics = httpx.get(triton.metrics_url, timeout=10).text
    pending = [
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith('nv_inference_pending_request_count{model="llm"')
    ]
    assert pending, "Triton no longer exports nv_inference_pending_request_count for llm"
    return finished, int(sum(pending))


def _counter(url: str, name: str, label: str) -> float:
    body = httpx.get(f"{url}/metrics", timeout=10).text
    for line in body.splitlines():
        if line.startswith(f"{name}{{") and label in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_turn_whose_partials_found_its_passages_reads_only_the_question(gateway: str) -> None:
    # The pause lets the last partial transcript (the whole question) be searched and its prompt
    # prefilled before the release, whatever the speed of the machine.
    events = _spoken_turn(gateway, "Which model turns speech into text?", pause_s=6.0)
    done = _of(events, "turn.done")[0]
    timings = done["timings"]
    assert done["outcome"] == "ok"
    assert timings["speculation"] == "hit", timings
    assert timings["speculative_prefills"] >= 1
    assert timings["speculative_tokens"] > 0, timings
    # The llm model's own count: most of the prompt came from the prefix cache, not evaluated again.
    prompt, cached = timings["llm_prompt_tokens"], timings["llm_cached_tokens"]
    assert prompt, timings
    assert cached, timings
    assert prompt - cached < 60, (
        f"{prompt - cached} of {prompt} prompt tokens were evaluated after the release"
    )


def test_a_question_that_changes_course_is_answered_from_the_final_passages(gateway: str) -> None:
    # The first words retrieve passages about the Helm chart; the question ends elsewhere.
    question = "Tell me about the Helm chart values, or rather, which model turns speech into text?"
    events = _spoken_turn(gateway, question)
    done = _of(events, "turn.done")[0]
    timings = done["timings"]
    assert done["outcome"] == "ok"
    assert timings["speculation"] in ("hit", "partial", "miss"), timings
    sources = _of(events, "sources")[0]["sources"]
    assert sources, "the final transcript found no passages"
    assert [s["n"] for s in sources] == list(range(1, len(sources) + 1))  # numbered as the prompt gives them
    answer = _of(events, "answer.done")[0]
    assert answer["text"]
    assert set(answer["citations"]) <= {s["n"] for s in sources}, answer
    if timings["speculation"] == "miss":  # no warmed passage is the start of the answer's prompt
        assert timings["speculative_kept_passages"] == 0
        if timings["speculative_tokens"]:
            assert timings["speculative_wasted_tokens"], timings
    else:  # the warmed passages the prompt starts with were not evaluated again
        assert timings["speculative_kept_passages"] >= 1
        assert timings["llm_cached_tokens"], timings


def test_cancelling_a_turn_while_it_speculates_leaves_nothing_on_triton(
    gateway: str, triton: TritonServer
) -> None:
    pcm = speak_pcm16(
        "How does the hybrid search rank the passages, and which index does it use for vectors?"
    )
    prefills_before = _counter(gateway, "voicebot_speculations_total", 'event="prefill"')

    async def scenario() -> list[dict[str, Any]]:
        ws = await _open(gateway)
        try:
            await ws.send(json.dumps({"type": "turn.start"}))
            speaking = asyncio.create_task(_speak(ws, pcm))
            deadline = time.monotonic() + TURN_TIMEOUT_S
            while _counter(gateway, "voicebot_speculations_total", 'event="prefill"') <= prefills_before:
                assert time.monotonic() < deadline, "no speculative prefill started"
                assert not speaking.done(), "the whole question was spoken without a speculative prefill"
                await asyncio.sleep(0.2)
            speaking.cancel()
            await ws.send(json.dumps({"type": "turn.cancel"}))
            await ws.send(json.dumps({"type": "text", "text": "Thanks.", "speak": False}))
            return await _events_until(ws, lambda e: e["type"] == "turn.done" and e["turn"] == 2)
        finally:
            await ws.close()

    asyncio.run(scenario())
    deadline = time.monotonic() + 60
    while _llm_requests(triton)[1] != 0:
        if time.monotonic() > deadline:
            pytest.fail("llm requests are still pending on Triton after the cancel")
        time.sleep(0.3)


def test_one_sessions_speculation_and_another_sessions_turn_both_come_out_right(gateway: str) -> None:
    # That a real generation cancels speculative prefills first is proven deterministically in
    # tests/unit/test_inference_priority.py; here both sessions share the real model at once.
    long_question = speak_pcm16(
        "Please explain how documents are ingested, chunked, embedded and stored, and how the "
        "hybrid search later finds the passages that answer a spoken question."
    )

    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        speaker, typist = await _open(gateway), await _open(gateway)
        try:
            await speaker.send(json.dumps({"type": "turn.start"}))
            speaking = asyncio.create_task(_speak(speaker, long_question))
            await asyncio.sleep(2.0)  # the speaker's partials are being searched and prefilled
            await typist.send(
                json.dumps({"type": "text", "text": "Which port does the gateway use?", "speak": False})
            )
            typed = await _events_until(typist, lambda e: e["type"] == "turn.done")
            await speaking
            await speaker.send(json.dumps({"type": "turn.end"}))
            spoken = await _events_until(speaker, lambda e: e["type"] == "turn.done")
            return typed, spoken
        finally:
            await speaker.close()
            await typist.close()

    typed, spoken = asyncio.run(scenario())
    for turn in (typed, spoken):
        assert _of(turn, "turn.done")[0]["outcome"] == "ok"
        assert not _of(turn, "error"), _of(turn, "error")
        assert _of(turn, "answer.done")[0]["text"]
