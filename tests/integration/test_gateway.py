"""The gateway against the real stack: Triton with the real models, embedded Postgres, docs ingested."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from ingest.embedding import TritonEmbedder
from ingest.migrate import migrate
from ingest.pipeline import ingest_paths
from orchestrator.protocol import AudioHeader
from orchestrator.stack.component import http_ok
from orchestrator.stack.ports import free_port
from orchestrator.stack.postgres import EmbeddedPostgres
from orchestrator.stack.triton import TritonServer
from tests.conftest import REPO_ROOT
from tests.integration.conftest import LOG_DIR
from tests.speech import rms, speak_pcm16

FRAME_BYTES = 3200  # 100 ms of 16 kHz PCM16


@pytest.fixture(scope="module")
def gateway(postgres: EmbeddedPostgres, triton: TritonServer, stack_dir: Path) -> Iterator[str]:
    async def prepare() -> None:
        await migrate(postgres.dsn)
        embedder = TritonEmbedder(triton.grpc_url)
        try:
            await ingest_paths(postgres.dsn, embedder, [REPO_ROOT / "docs" / "architecture.md"])
        finally:
            await embedder.close()

    asyncio.run(prepare())
    port = free_port()
    env = dict(
        os.environ,
        VOICEBOT_DEV_MODE="true",
        VOICEBOT_PORT=str(port),
        VOICEBOT_DATABASE_URL=postgres.dsn,
        VOICEBOT_TRITON_URL=triton.grpc_url,
        VOICEBOT_LOG_FORMAT="text",
    )
    log = (LOG_DIR / "gateway.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", "serve"], env=env, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not http_ok(f"{url}/readyz"):
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.fail("gateway never became ready")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


async def _collect_turn(
    ws: Any, *, until: str = "turn.done", timeout_s: float = 180
) -> tuple[list[dict[str, Any]], bytes]:
    events: list[dict[str, Any]] = []
    audio = bytearray()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            message = await asyncio.wait_for(ws.recv(), timeout=deadline - time.monotonic())
        except TimeoutError:
            break
        if isinstance(message, bytes):
            _, pcm = AudioHeader.unpack(message)
            audio += pcm
            continue
        data = json.loads(message)
        events.append(data)
        if data["type"] == until:
            return events, bytes(audio)
    raise AssertionError(f"no {until} within {timeout_s} s; {len(audio)} audio bytes; events: {events}")


def _of(events: list[dict[str, Any]], type_: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == type_]


def _ws_url(http_url: str) -> str:
    return http_url.replace("http://", "ws://") + "/v1/voice"


def test_a_spoken_question_gets_a_cited_spoken_answer(gateway: str) -> None:
    # Whisper tiny.en hears this espeak-ng rendering as "where it does the local stack keep it slugs":
    # the words the retrieval needs survive, which is what this test relies on.
    question = "Where does the local stack keep its logs?"
    pcm = speak_pcm16(question)

    async def scenario() -> tuple[list[dict[str, Any]], bytes]:
        async with websockets.connect(_ws_url(gateway), max_size=None) as ws:
            await ws.send(json.dumps({"type": "session.start"}))
            assert json.loads(await ws.recv())["type"] == "session.ready"
            await ws.send(json.dumps({"type": "turn.start"}))
            for i in range(0, len(pcm), FRAME_BYTES):
                await ws.send(pcm[i : i + FRAME_BYTES])
            await ws.send(json.dumps({"type": "turn.end"}))
            return await _collect_turn(ws)

    events, audio = asyncio.run(scenario())
    final = _of(events, "transcript.final")[0]["text"].lower()
    assert "local stack" in final
    assert "keep" in final
    sources = _of(events, "sources")[0]
    assert sources["available"] is True
    assert len(sources["sources"]) >= 1
    answer = _of(events, "answer.done")[0]["text"]
    assert answer
    assert rms(audio) > 100, "the answer audio is silent"
    done = _of(events, "turn.done")[0]
    assert done["outcome"] == "ok"
    for stage in ("asr_final", "retrieval", "llm_first_token", "tts_first_audio", "first_audio", "total"):
        assert done["timings"][stage] is not None, stage


def test_bad_input_gets_errors_and_the_session_survives(gateway: str) -> None:
    async def scenario() -> list[dict[str, Any]]:
        async with websockets.connect(_ws_url(gateway)) as ws:
            await ws.send(json.dumps({"type": "session.start"}))
            await ws.recv()
            errors = []
            for bad in ("{not json", json.dumps({"type": "turn.jump"}), b"\x00\x01"):
                await ws.send(bad)
                errors.append(json.loads(await ws.recv()))
            await ws.send(json.dumps({"type": "turn.start"}))
            assert json.loads(await ws.recv())["type"] == "turn.started"
            await ws.send(b"\x00\x01\x02")  # odd length
            errors.append(json.loads(await ws.recv()))
            await ws.send(json.dumps({"type": "text", "text": "What does the gateway do?", "speak": False}))
            events, _ = await _collect_turn(ws)
            return errors + events

    events = asyncio.run(scenario())
    codes = [e["code"] for e in events if e["type"] == "error"]
    assert codes == ["bad_request", "bad_request", "bad_audio", "bad_audio"]
    assert _of(events, "answer.done")[0]["text"]


def test_barge_in_stops_the_old_turn(gateway: str) -> None:
    async def scenario() -> list[dict[str, Any] | str]:
        seen: list[dict[str, Any] | str] = []
        async with websockets.connect(_ws_url(gateway), max_size=None) as ws:
            await ws.send(json.dumps({"type": "session.start"}))
            await ws.recv()
            await ws.send(
                json.dumps(
                    {"type": "text", "text": "Describe every component of the architecture in detail."}
                )
            )
            while True:  # wait until the answer is streaming
                message = await asyncio.wait_for(ws.recv(), timeout=120)
                if isinstance(message, str) and json.loads(message)["type"] == "answer.delta":
                    break
            await ws.send(json.dumps({"type": "turn.start"}))
            while True:
                message = await asyncio.wait_for(ws.recv(), timeout=60)
                if isinstance(message, bytes):
                    seen.append(f"audio:{AudioHeader.unpack(message)[0].turn}")
                    continue
                data = json.loads(message)
                seen.append(data)
                if data["type"] == "turn.started":
                    break
        return seen

    seen = asyncio.run(scenario())
    types = [s["type"] if isinstance(s, dict) else s for s in seen]
    assert "audio.clear" in types
    done = next(s for s in seen if isinstance(s, dict) and s["type"] == "turn.done")
    assert done["outcome"] == "cancelled"
    assert done["turn"] == 1
    started = seen[-1]
    assert isinstance(started, dict)
    assert started["turn"] == 2
    # Nothing of turn 1 arrives after the barge-in was acknowledged.
    after = seen[types.index("audio.clear") + 1 :]
    assert all(not (isinstance(s, dict) and s.get("type") == "answer.delta") for s in after)


def test_sse_chat_streams_sources_deltas_and_done(gateway: str) -> None:
    with httpx.Client(timeout=180) as client:
        response = client.post(f"{gateway}/v1/chat", json={"message": "What does the gateway serve?"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    names = [line.split(": ", 1)[1] for line in response.text.splitlines() if line.startswith("event: ")]
    assert names[0] == "sources"
    assert "delta" in names
    assert names[-1] == "done"


def test_session_tokens_open_the_voice_socket_and_forged_ones_do_not(gateway: str) -> None:
    with httpx.Client(timeout=30) as client:
        token = client.post(f"{gateway}/v1/sessions").json()
    assert token["token"]

    async def with_token(tok: str) -> str:
        async with websockets.connect(_ws_url(gateway) + f"?token={tok}") as ws:
            await ws.send(json.dumps({"type": "session.start"}))
            return str(json.loads(await ws.recv())["session_id"])

    assert asyncio.run(with_token(token["token"])) == token["session_id"]

    async def with_bad_token() -> int | None:
        try:
            async with websockets.connect(_ws_url(gateway) + "?token=forged") as ws:
                await ws.recv()
        except websockets.ConnectionClosed as e:
            return e.rcvd.code if e.rcvd else None
        except websockets.InvalidStatus as e:
            return e.response.status_code
        return None

    assert asyncio.run(with_bad_token()) in (4401, 403)


def test_the_official_openai_client_works_unchanged(gateway: str) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=f"{gateway}/v1", api_key="sk-local-dev", timeout=180)
    try:
        completion = client.chat.completions.create(
            model="voicebot",
            messages=[{"role": "user", "content": "What does the gateway do?"}],
            max_tokens=60,
        )
        assert completion.choices[0].message.content
        assert completion.choices[0].finish_reason == "stop"
        stream = client.chat.completions.create(
            model="voicebot",
            messages=[{"role": "user", "content": "What does ingest do?"}],
            stream=True,
            max_tokens=60,
        )
        pieces = [chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices]
    finally:
        client.close()
    assert len([p for p in pieces if p]) > 1
    assert "".join(pieces).strip()
