"""`make test-images`: the gateway and CPU Triton images, built with the repository's Dockerfiles
(scripts/images/build.sh), run the chart's CPU scenario and answer a spoken question over the
WebSocket. Writes build/images/report.json (sizes, build and start times, the turn)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import websockets

from orchestrator.protocol import AudioHeader
from tests.images.stack import NAME, OUT, REPO, Stack, podman, running_stack
from tests.speech import rms, speak_pcm16

FRAME_BYTES = 3200  # 100 ms of 16 kHz PCM16
QUESTION = "Where does the local stack keep its logs?"
MODELS = ("asr", "embed", "llm", "tts")


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with running_stack([REPO / "docs" / "architecture.md", REPO / "docs" / "operations.md"]) as running:
        yield running


def _token(stack: Stack) -> str:
    key = stack.secrets["bootstrap_api_key"]
    response = httpx.post(
        f"{stack.gateway_url}/v1/sessions", headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    assert response.status_code == 200, response.text
    return str(response.json()["token"])


async def _spoken_turn(url: str, pcm: bytes) -> tuple[list[dict[str, Any]], bytes, float, int]:
    events: list[dict[str, Any]] = []
    audio = bytearray()
    first_audio = 0.0
    rate = 0
    async with websockets.connect(url, max_size=None) as ws:
        await ws.send(json.dumps({"type": "session.start"}))
        assert json.loads(await ws.recv())["type"] == "session.ready"
        await ws.send(json.dumps({"type": "turn.start"}))
        for i in range(0, len(pcm), FRAME_BYTES):
            await ws.send(pcm[i : i + FRAME_BYTES])
        await ws.send(json.dumps({"type": "turn.end"}))
        released = time.monotonic()
        deadline = released + 300
        while time.monotonic() < deadline:
            message = await asyncio.wait_for(ws.recv(), timeout=deadline - time.monotonic())
            if isinstance(message, bytes):
                header, chunk = AudioHeader.unpack(message)
                rate = header.sample_rate
                if not audio:
                    first_audio = time.monotonic() - released
                audio += chunk
                continue
            event = json.loads(message)
            events.append(event)
            if event["type"] == "turn.done":
                return events, bytes(audio), first_audio, rate
    raise AssertionError(f"no turn.done within 300 s: {events}")


def test_triton_loaded_all_four_models_from_the_fetched_volume(stack: Stack) -> None:
    index = httpx.post(f"{stack.triton_url}/v2/repository/index", json={}, timeout=10).json()
    assert {m["name"]: m.get("state") for m in index} == dict.fromkeys(MODELS, "READY")


def test_the_containers_answer_a_spoken_question(stack: Stack) -> None:
    url = stack.gateway_url.replace("http://", "ws://") + f"/v1/voice?token={_token(stack)}"
    events, audio, first_audio, rate = asyncio.run(_spoken_turn(url, speak_pcm16(QUESTION)))
    errors = [e for e in events if e["type"] == "error"]
    final = next(e for e in events if e["type"] == "transcript.final")["text"]
    answer = next((e for e in events if e["type"] == "answer.done"), {}).get("text", "")
    done = events[-1]
    turn = {
        "question": QUESTION,
        "transcript": final,
        "answer": answer,
        "outcome": done["outcome"],
        "sources": len(next((e for e in events if e["type"] == "sources"), {}).get("sources", [])),
        "audio_seconds": round(len(audio) / 2 / rate, 2) if rate else 0.0,
        "first_audio_after_release_s": round(first_audio, 2),
        "timings": done.get("timings"),
    }
    _write_report(stack, turn)
    assert not errors, errors
    assert done["outcome"] == "ok", done
    assert "local stack" in final.lower(), final
    assert answer
    assert rms(audio) > 100, "the answer audio is silent"


def _write_report(stack: Stack, turn: dict[str, Any]) -> None:
    build = json.loads((OUT / "build.json").read_text()) if (OUT / "build.json").exists() else {}
    seconds = build.get("build_seconds", {})
    report = {
        "images": {
            name: {
                "size_bytes": build.get("size_bytes", {}).get(name),
                # the triton build runs in two podman calls (scripts/images/build.sh says why)
                "build_seconds": sum(v for k, v in seconds.items() if k == name or k.startswith(f"{name}-")),
            }
            for name in ("gateway", "triton")
        },
        "base_build_seconds": {
            k: v for k, v in build.get("build_seconds", {}).items() if k.startswith("base-")
        },
        "start_seconds": stack.timings,
        "turn": turn,
    }
    (OUT / "report.json").write_text(json.dumps(report, indent=2) + "\n")


async def _typed_turn(url: str, text: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    async with websockets.connect(url, max_size=None) as ws:
        await ws.send(json.dumps({"type": "session.start"}))
        assert json.loads(await ws.recv())["type"] == "session.ready"
        await ws.send(json.dumps({"type": "text", "text": text, "speak": False}))
        while True:
            message = await asyncio.wait_for(ws.recv(), timeout=60)
            if isinstance(message, bytes):
                continue
            events.append(json.loads(message))
            # The first model_unavailable is what the user is told; the turn's end is not awaited
            # (with Triton stopped the answer stream waits for its own timeout, several minutes).
            if events[-1]["type"] == "turn.done" or events[-1].get("code") == "model_unavailable":
                return events


def test_the_gateway_image_offers_hands_free(stack: Stack) -> None:
    # Its VAD (onnxruntime and Silero's model file) is in the image: the session starts hands-free,
    # with no "hands-free is not available" error before it.
    async def start() -> dict[str, Any]:
        url = stack.gateway_url.replace("http://", "ws://") + f"/v1/voice?token={_token(stack)}"
        async with websockets.connect(url, max_size=None) as ws:
            await ws.send(json.dumps({"type": "session.start", "mode": "hands_free"}))
            return dict(json.loads(await asyncio.wait_for(ws.recv(), timeout=30)))

    first = asyncio.run(start())
    assert (first["type"], first.get("mode")) == ("session.ready", "hands_free"), first


def test_the_gateway_stays_ready_while_triton_restarts(stack: Stack) -> None:
    """Last (it stops Triton): the gateway container keeps passing its readiness probe, degraded,
    and a turn says model_unavailable, instead of every gateway pod leaving the Service."""
    podman("stop", "--time", "10", f"{NAME}-triton")
    try:
        ready = httpx.get(f"{stack.gateway_url}/readyz", timeout=30)
        assert ready.status_code == 200, ready.text
        assert ready.json()["status"] == "degraded"
        assert ready.json()["checks"]["triton"] is False
        url = stack.gateway_url.replace("http://", "ws://") + f"/v1/voice?token={_token(stack)}"
        events = asyncio.run(_typed_turn(url, "What does the gateway do?"))
        assert "model_unavailable" in [e.get("code") for e in events if e["type"] == "error"]
    finally:
        podman("start", f"{NAME}-triton")
