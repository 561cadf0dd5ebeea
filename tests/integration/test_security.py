"""Issue 16 against the real stack: dev mode reachable from loopback pages only (Host and Origin),
failed authentications limited per address, session tokens never in the logs, weak secrets refused
at start-up, conversations deleted on request and after the retention period.

Every refusal is checked to have stored nothing: document and chunk counts are compared around
each cross-site request, turn counts around each delete and purge.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
import websockets

from orchestrator.stack.postgres import EmbeddedPostgres
from orchestrator.stack.triton import TritonServer
from tests.integration.conftest import LOG_DIR, running_gateway
from tests.integration.voice_client import AUTH_SECRET, SecuredGateway, voice

PLANTED = {"files": ("planted.md", b"# Planted\n\nThe gateway belongs to evil.example.\n", "text/markdown")}


def _counts(secured_gateway: SecuredGateway) -> tuple[int, int]:
    return secured_gateway.query("SELECT (SELECT count(*) FROM documents), (SELECT count(*) FROM chunks)")[0]


# ---- dev mode: loopback only, for Host and Origin ---------------------------------------------


@pytest.mark.parametrize("host", ["evil.example:8080", "127.0.0.1.nip.io", "192.168.1.5:8080"])
def test_dev_mode_refuses_host_names_that_are_not_loopback(
    gateway: str, secured_gateway: SecuredGateway, host: str
) -> None:
    # DNS rebinding: a page of evil.example whose name now points at 127.0.0.1 sends its own name.
    before = _counts(secured_gateway)
    response = httpx.post(f"{gateway}/v1/documents", headers={"Host": host}, files=PLANTED, timeout=30)
    assert (response.status_code, response.json()["error"]["code"]) == (403, "forbidden")
    assert httpx.get(f"{gateway}/healthz", headers={"Host": host}, timeout=30).status_code == 403
    assert _counts(secured_gateway) == before


@pytest.mark.parametrize("origin", ["https://evil.example", "null", "http://localhost.evil.example:8080"])
def test_dev_mode_refuses_cross_site_uploads(
    gateway: str, secured_gateway: SecuredGateway, origin: str
) -> None:
    before = _counts(secured_gateway)
    response = httpx.post(f"{gateway}/v1/documents", headers={"Origin": origin}, files=PLANTED, timeout=60)
    assert (response.status_code, response.json()["error"]["code"]) == (403, "forbidden")
    assert _counts(secured_gateway) == before


def test_dev_mode_refuses_a_cross_site_delete(gateway: str, secured_gateway: SecuredGateway) -> None:
    [(document_id,)] = secured_gateway.query("SELECT id FROM documents ORDER BY id LIMIT 1")
    before = _counts(secured_gateway)
    response = httpx.delete(
        f"{gateway}/v1/documents/{document_id}", headers={"Origin": "https://evil.example"}, timeout=30
    )
    assert (response.status_code, response.json()["error"]["code"]) == (403, "forbidden")
    assert _counts(secured_gateway) == before


@pytest.mark.parametrize(
    ("host", "origin"),
    [
        (None, "https://evil.example"),
        ("evil.example:8080", "http://evil.example:8080"),  # DNS rebinding: Origin == Host
        ("evil.example:8080", None),
    ],
    ids=["foreign-origin", "rebound-same-origin", "rebound-no-origin"],
)
def test_dev_mode_voice_sockets_from_other_sites_close_with_4403(
    gateway: str, host: str | None, origin: str | None
) -> None:
    port = int(gateway.rsplit(":", 1)[1])

    async def scenario() -> tuple[int | None, list[str]]:
        # The URL's host name is what the client sends as Host; the connection goes to 127.0.0.1.
        url = f"ws://{host or f'127.0.0.1:{port}'}/v1/voice"
        async with websockets.connect(url, host="127.0.0.1", port=port, origin=origin) as ws:  # type: ignore[arg-type]
            events = []
            try:
                while True:
                    events.append(str(await asyncio.wait_for(ws.recv(), 30)))
            except websockets.ConnectionClosed as e:
                return (e.rcvd.code if e.rcvd else None), events

    closed, events = asyncio.run(scenario())
    assert closed == 4403
    assert len(events) == 1
    assert '"code":"unauthorized"' in events[0]


def test_dev_mode_still_serves_loopback_pages(gateway: str) -> None:
    response = httpx.post(
        f"{gateway}/v1/sessions",
        headers={"Origin": "http://localhost:3000", "Host": "localhost:8080"},
        timeout=30,
    )
    assert response.status_code == 200
    assert response.headers["x-frame-options"] == "DENY"


# ---- failed authentications, limited per client address ---------------------------------------


@pytest.fixture(scope="module")
def strict_gateway(ingested: str, postgres: EmbeddedPostgres, triton: TritonServer) -> Iterator[str]:
    """Outside dev mode, 3 failed authentications a minute per address."""
    with running_gateway(
        postgres,
        triton,
        log_name="gateway-strict",
        VOICEBOT_DEV_MODE="false",
        VOICEBOT_AUTH_SECRET=AUTH_SECRET,
        VOICEBOT_AUTH_FAILURES_PER_MINUTE="3",
    ) as (url, _):
        yield url


def test_failed_authentications_get_429_with_retry_after(
    strict_gateway: str, secured_gateway: SecuredGateway
) -> None:
    key = secured_gateway.new_key("guessed")
    wrong = key[:-4] + "zzzz"
    me = {"X-Forwarded-For": "203.0.113.7"}  # the gateway believes it from 127.0.0.1 (a proxy)
    statuses = [
        httpx.post(
            f"{strict_gateway}/v1/sessions", headers={**me, "Authorization": f"Bearer {wrong}"}
        ).status_code
        for _ in range(4)
    ]
    assert statuses == [401, 401, 401, 429]
    refused = httpx.post(f"{strict_gateway}/v1/sessions", headers={**me, "Authorization": f"Bearer {key}"})
    assert (refused.status_code, refused.json()["error"]["code"]) == (429, "rate_limited")
    assert 1 <= int(refused.headers["Retry-After"]) <= 20
    other = httpx.post(
        f"{strict_gateway}/v1/sessions",
        headers={"X-Forwarded-For": "203.0.113.8", "Authorization": f"Bearer {key}"},
    )
    assert other.status_code == 200  # another address is not affected


def test_failed_token_checks_close_sockets_with_4429_once_over_the_limit(strict_gateway: str) -> None:
    async def attempt() -> int | None:
        url = strict_gateway.replace("http://", "ws://") + "/v1/voice?token=forged"
        async with websockets.connect(url, additional_headers={"X-Forwarded-For": "203.0.113.9"}) as ws:
            try:
                while True:
                    await asyncio.wait_for(ws.recv(), 30)
            except websockets.ConnectionClosed as e:
                return e.rcvd.code if e.rcvd else None

    codes = [asyncio.run(attempt()) for _ in range(4)]
    assert codes == [4401, 4401, 4401, 4429]


# ---- tokens stay out of the logs --------------------------------------------------------------


def test_session_tokens_never_reach_the_gateway_log(secured_gateway: SecuredGateway) -> None:
    key = secured_gateway.new_key("logged")
    url_token, header_token = secured_gateway.token(key), secured_gateway.token(key)

    async def scenario() -> None:
        async with voice(secured_gateway, token=url_token) as v:
            await v.start()
        async with voice(secured_gateway, token=header_token, in_header=True) as v:
            await v.start()

    asyncio.run(scenario())
    log = (LOG_DIR / "gateway-secured.log").read_text(errors="replace")
    assert "/v1/voice?token=[redacted]" in log  # uvicorn logged the old-style URL, redacted
    for token in (url_token, header_token):
        assert token not in log
        assert token.split(".")[2] not in log  # not even the signature


# ---- weak secrets refused at start-up ----------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("VOICEBOT_BOOTSTRAP_API_KEY", "a"),
        ("VOICEBOT_AUTH_SECRET", "changeme"),
        ("VOICEBOT_AUTH_SECRET", "x" * 31),
    ],
)
def test_a_gateway_with_a_weak_secret_refuses_to_start(setting: str, value: str) -> None:
    env = dict(os.environ, VOICEBOT_DEV_MODE="false", VOICEBOT_AUTH_SECRET=AUTH_SECRET, VOICEBOT_PORT="1")
    env[setting] = value
    started = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode != 0
    assert setting in started.stderr
    assert "at least 32 characters" in started.stderr
    if len(value) > 1:
        assert value not in started.stderr


# ---- conversations: deleted on request, purged after the retention period --------------------


def test_deleting_my_session_removes_it_and_its_turns(secured_gateway: SecuredGateway) -> None:
    key = secured_gateway.new_key("forgetful")

    async def converse() -> str:
        async with voice(secured_gateway, key) as v:
            await v.start()
            await v.ask()
            return v.session_id

    session_id = asyncio.run(converse())
    headers = {"Authorization": f"Bearer {key}"}
    assert secured_gateway.query("SELECT count(*) FROM turns WHERE session_id = %s", session_id) == [(1,)]
    deleted = httpx.delete(f"{secured_gateway.url}/v1/sessions/{session_id}", headers=headers, timeout=30)
    assert deleted.status_code == 204
    assert secured_gateway.query("SELECT count(*) FROM turns WHERE session_id = %s", session_id) == [(0,)]
    assert secured_gateway.query("SELECT count(*) FROM sessions WHERE id = %s", session_id) == [(0,)]
    again = httpx.get(f"{secured_gateway.url}/v1/sessions/{session_id}", headers=headers, timeout=30)
    assert (again.status_code, again.json()["error"]["code"]) == (404, "not_found")
    assert httpx.delete(f"{secured_gateway.url}/v1/sessions/{session_id}", headers=headers).status_code == 404


def test_sessions_purge_deletes_what_is_older_than_the_retention(secured_gateway: SecuredGateway) -> None:
    key = secured_gateway.new_key("retained")

    async def converse() -> list[str]:
        ids = []
        for _ in range(2):
            async with voice(secured_gateway, key) as v:
                await v.start()
                await v.ask()
                ids.append(v.session_id)
        return ids

    old, recent = asyncio.run(converse())
    secured_gateway.query(
        "WITH t AS (UPDATE turns SET created_at = now() - interval '40 days' WHERE session_id = %s RETURNING 1)"
        " UPDATE sessions SET updated_at = now() - interval '40 days' WHERE id = %s RETURNING id",
        old,
        old,
    )
    env = dict(os.environ, VOICEBOT_DATABASE_URL=secured_gateway.dsn, VOICEBOT_RETENTION_DAYS="30")
    env.pop("VOICEBOT_AUTH_SECRET", None)
    purged = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "sessions", "purge"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert purged.returncode == 0, purged.stderr
    assert "older than 30 days" in purged.stdout
    assert secured_gateway.query("SELECT count(*) FROM turns WHERE session_id = %s", old) == [(0,)]
    assert secured_gateway.query("SELECT count(*) FROM sessions WHERE id = %s", old) == [(0,)]
    assert secured_gateway.query("SELECT count(*) FROM turns WHERE session_id = %s", recent) == [(1,)]
    bad = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "sessions", "purge", "--days", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2
    assert "at least 1" in bad.stderr


def test_document_sources_do_not_show_server_paths(gateway: str, secured_gateway: SecuredGateway) -> None:
    [(stored,)] = secured_gateway.query(
        "SELECT source_uri FROM documents WHERE source_uri LIKE 'file:%%' LIMIT 1"
    )
    assert stored.startswith("file:///")  # what ingest keeps, to recognise the file again
    listed = httpx.get(f"{gateway}/v1/documents", timeout=30).json()["documents"]
    shown = {d["source"] for d in listed}
    assert "architecture.md" in shown
    assert not [s for s in shown if "/" in s.removeprefix("upload://")]
    answer = httpx.post(f"{gateway}/v1/chat", json={"message": "What does the gateway do?"}, timeout=240)
    cited = [line for line in answer.text.splitlines() if line.startswith("data: ") and '"sources"' in line]
    assert cited
    assert "file://" not in cited[0]
    assert '"source":"architecture.md"' in cited[0]


# Issue 16 finding 10: one oversized chunk failed the whole upload (503 model_unavailable); chunks
# are now capped in characters too (ingest/chunking.py, ChunkingConfig.max_chars).
def test_one_oversized_chunk_fails_its_file_not_the_whole_upload(
    gateway: str, secured_gateway: SecuredGateway
) -> None:
    before = _counts(secured_gateway)
    files = [
        ("files", ("huge-word.txt", b"x" * (3 << 20), "text/plain")),  # one 3 MB "word": one chunk
        ("files", ("fine.md", b"# Fine\n\nA small document about quokkaberries.\n", "text/markdown")),
    ]
    response = httpx.post(
        f"{gateway}/v1/documents", files=files, data={"collection": "oversized-chunk"}, timeout=240
    )
    try:
        assert response.status_code == 200, response.text
        results = {r["filename"]: r for r in response.json()["results"]}
        assert results["huge-word.txt"]["status"] == "failed"
        assert results["fine.md"]["status"] == "ingested"
    finally:
        for document in httpx.get(
            f"{gateway}/v1/documents", params={"collection": "oversized-chunk"}, timeout=30
        ).json()["documents"]:
            httpx.delete(f"{gateway}/v1/documents/{document['id']}", timeout=30)
        assert _counts(secured_gateway) == before
