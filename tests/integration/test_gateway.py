"""The gateway against the real stack: Triton with the real models, embedded Postgres, docs ingested."""

from __future__ import annotations

import asyncio
import io
import json
import re
import time
import wave
from typing import Any

import httpx
import websockets

from orchestrator.protocol import AudioHeader
from orchestrator.sentences import SentenceSplitter, speakable
from tests.speech import rms, speak_pcm16

FRAME_BYTES = 3200  # 100 ms of 16 kHz PCM16


async def _collect_turn(
    ws: Any, *, until: str = "turn.done", timeout_s: float = 180, rates: set[int] | None = None
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
            header, pcm = AudioHeader.unpack(message)
            audio += pcm
            if rates is not None:
                rates.add(header.sample_rate)
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
            return await _collect_turn(ws, rates=rates)

    rates: set[int] = set()
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

    # The audio says the answer: `asr` hears the answer's first sentence at its start.
    (rate,) = rates
    heard = _transcribe(gateway, audio[: rate * 2 * 30], rate)  # the first 30 s hold the first sentence
    splitter = SentenceSplitter()
    first = speakable([*splitter.feed(answer), *splitter.flush()][0])
    expected, got = _words(first), _words(heard)[: len(_words(first)) + 3]
    overlap = len(set(expected) & set(got)) / len(set(expected))
    assert overlap >= 0.6, f"the answer audio does not say {first!r}; asr heard {heard!r}"


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def _transcribe(gateway: str, pcm: bytes, rate: int) -> str:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm)
    response = httpx.post(
        f"{gateway}/v1/audio/transcriptions",
        files={"file": ("answer.wav", buffer.getvalue(), "audio/wav")},
        data={"model": "asr", "response_format": "text"},
        timeout=180,
    )
    assert response.status_code == 200, response.text
    return response.text


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
                while True:  # an `error` event (unauthorized, fatal), then the close
                    await ws.recv()
        except websockets.ConnectionClosed as e:
            return e.rcvd.code if e.rcvd else None
        except websockets.InvalidStatus as e:
            return e.response.status_code
        return None

    assert asyncio.run(with_bad_token()) == 4401


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
        assert [m.id for m in client.models.list()] == ["voicebot"]  # chat UIs list models first
        stream = client.chat.completions.create(
            model="voicebot",
            messages=[{"role": "user", "content": "What does ingest do?"}],
            stream=True,
            max_tokens=60,
        )
        chunks = list(stream)
    finally:
        client.close()
    # A role chunk, the answer's checked sentences as content chunks, then the finish chunk.
    pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert "".join(pieces).strip()
    extension = chunks[-1].model_extra["voicebot"]  # the passages and what the answer cites
    assert extension["sources"]
    assert set(extension["citations"]) <= {s["n"] for s in extension["sources"]}
