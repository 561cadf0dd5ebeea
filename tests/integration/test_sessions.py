"""Stored API keys and stored conversations against the real stack: `voicebot keys`, turns
recorded in Postgres, `GET /v1/sessions/{id}`, and resuming a session on a new socket."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from typing import Any

import httpx

from tests.integration.voice_client import SQL_KEY_NAME, SecuredGateway, voice


def _cli(gateway: SecuredGateway, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, VOICEBOT_DATABASE_URL=gateway.dsn)
    env.pop("VOICEBOT_AUTH_SECRET", None)  # key management needs only the database
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "keys", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_keys_create_list_revoke(secured_gateway: SecuredGateway) -> None:
    created = _cli(secured_gateway, "create", SQL_KEY_NAME)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    prefix = key.split("_")[1]
    assert "shown only now" in created.stderr
    assert secured_gateway.post_session(key).status_code == 200

    listed = _cli(secured_gateway, "list")
    assert listed.returncode == 0, listed.stderr
    [line] = [line for line in listed.stdout.splitlines() if f"vb_{prefix}_" in line]
    assert SQL_KEY_NAME in line
    assert "active" in line
    assert key.split("_")[2] not in listed.stdout  # never the secret
    assert secured_gateway.query(
        "SELECT count(*) FROM api_keys WHERE key_hash LIKE %s", f"%{key[-12:]}%"
    ) == [(0,)]

    assert _cli(secured_gateway, "revoke", "nosuchkey").returncode == 1
    revoked = _cli(secured_gateway, "revoke", f"vb_{prefix}")
    assert revoked.returncode == 0, revoked.stderr
    assert "revoked key" in revoked.stdout
    assert _cli(secured_gateway, "revoke", prefix).returncode == 0  # again: nothing changes
    listed = _cli(secured_gateway, "list", "--json")
    assert f'"prefix": "vb_{prefix}_' in listed.stdout
    assert '"status": "revoked"' in listed.stdout

    deadline = time.monotonic() + 10
    while (response := secured_gateway.post_session(key)).status_code != 401:
        assert time.monotonic() < deadline, response.text
        time.sleep(0.5)
    assert response.json()["error"]["message"] == "the API key has been revoked"


def _turns(gateway: SecuredGateway, key: str, session_id: str) -> httpx.Response:
    return httpx.get(
        f"{gateway.url}/v1/sessions/{session_id}", headers={"Authorization": f"Bearer {key}"}, timeout=30
    )


def test_turns_are_stored_and_a_session_resumes_on_a_new_socket(secured_gateway: SecuredGateway) -> None:
    key = secured_gateway.new_key("resume")
    stranger = secured_gateway.new_key("stranger")

    async def first() -> str:
        async with voice(secured_gateway, key) as v:
            ready = await v.start(language="en")
            assert ready["resumed"] is False
            assert ready["turns"] == 0
            await v.ask("Where does the local stack keep its logs?")
            return v.session_id

    session_id = asyncio.run(first())
    stored = _turns(secured_gateway, key, session_id)
    assert stored.status_code == 200
    body = stored.json()
    assert body["session_id"] == session_id
    [turn] = body["turns"]
    assert (turn["turn"], turn["outcome"]) == (1, "ok")
    assert turn["question"] == "Where does the local stack keep its logs?"
    assert turn["answer"]
    assert turn["citations"]
    assert set(turn["citations"][0]) == {"n", "title", "source", "heading_path", "snippet"}
    assert turn["timings"]["total"] is not None
    assert turn["created_at"]

    # Another key sees nothing, and cannot resume it.
    assert _turns(secured_gateway, stranger, session_id).status_code == 404
    assert secured_gateway.post_session(stranger, {"session_id": session_id}).status_code == 404

    async def resume() -> dict[str, Any]:
        token = secured_gateway.token(key, session_id)  # a token for this very session
        async with voice(secured_gateway, token=token) as v:
            ready = await v.start()
            done = await v.ask("And where is its data?")
            assert done["turn"] == 2
            return ready

    ready = asyncio.run(resume())
    assert (ready["session_id"], ready["resumed"], ready["turns"]) == (session_id, True, 1)

    async def foreign() -> tuple[dict[str, Any], dict[str, Any]]:
        async with voice(secured_gateway, stranger) as v:
            await v.send({"type": "session.start", "session_id": session_id})
            error = await v.error("not_found")
            ready = (await v.until("session.ready"))[-1]
            return error, ready

    error, foreign_ready = asyncio.run(foreign())
    assert "new session" in error["message"]
    assert foreign_ready["session_id"] != session_id
    assert [t["turn"] for t in _turns(secured_gateway, key, session_id).json()["turns"]] == [1, 2]
    assert secured_gateway.half_written() == []


def test_a_barge_in_is_stored_as_cancelled_without_a_half_answer(secured_gateway: SecuredGateway) -> None:
    key = secured_gateway.new_key("barge-in")
    # Asked nowhere else, so its prompt is in no cache: a second after its passages are found the
    # llm is still reading it (answer deltas are whole checked sentences, so by the first one a
    # short answer may already be complete).
    question = "In detail, how do the gateway, the model server and the database work together?"

    async def scenario() -> str:
        async with voice(secured_gateway, key) as v:
            await v.start()
            await v.send({"type": "text", "text": question, "speak": False})
            await v.until("sources")
            await asyncio.sleep(1.0)
            await v.send({"type": "turn.start"})
            events = await v.until("turn.started", turn=2)
            assert next(e for e in events if e["type"] == "turn.done")["outcome"] == "cancelled"
            await v.send({"type": "turn.cancel"})
            return v.session_id

    session_id = asyncio.run(scenario())
    deadline = time.monotonic() + 10
    while (turns := _turns(secured_gateway, key, session_id)).status_code != 200:
        assert time.monotonic() < deadline, turns.text
        time.sleep(0.2)
    [turn] = turns.json()["turns"]
    assert (turn["turn"], turn["question"], turn["outcome"], turn["answer"]) == (1, question, "cancelled", "")
    assert turn["citations"] == []
    assert secured_gateway.half_written() == []
