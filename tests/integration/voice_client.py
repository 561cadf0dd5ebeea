"""Drives the real gateway as a client would, and looks at what it left in Postgres.

`SecuredGateway` is a gateway outside dev mode (API keys required; see the `secured_gateway`
fixture in conftest.py); `Voice` is one WebSocket conversation with it.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
import websockets
from websockets.asyncio.client import ClientConnection

from ingest.tenancy import DEFAULT_TENANT_ID, create_tenant
from orchestrator.keys import DEFAULT_SCOPES, create_key, revoke_key
from orchestrator.protocol import AudioHeader

AUTH_SECRET = "integration-test-signing-key-" + "x" * 20
BOOTSTRAP_KEY = "integration-test-bootstrap-key-" + "y" * 20
EVENT_TIMEOUT_S = 60.0
ANSWER_TIMEOUT_S = 240.0
TABLES = ("documents", "chunks", "sessions", "turns", "api_keys")
SQL_KEY_NAME = "'; DROP TABLE api_keys; --"


@dataclass
class SecuredGateway:
    url: str
    process: subprocess.Popen[bytes]
    dsn: str
    answered: int = field(default=0)  # turns answered through `Voice.ask`, each checked in the database

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/v1/voice"

    def alive(self) -> bool:
        if self.process.poll() is not None:
            return False
        return httpx.get(f"{self.url}/healthz", timeout=10).status_code == 200

    # ---- keys and tokens -------------------------------------------------------------------

    def new_key(
        self,
        name: str = "test",
        *,
        tenant: str | None = None,
        scopes: Sequence[str] = DEFAULT_SCOPES,
        collections: Sequence[str] | None = None,
    ) -> str:
        """A stored key of `tenant` (created when new; default: the first tenant)."""

        async def create() -> str:
            async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as conn:
                tenant_id = (await create_tenant(conn, tenant))[0] if tenant else DEFAULT_TENANT_ID
                _, key = await create_key(
                    conn, name, tenant_id=tenant_id, scopes=scopes, collections=collections
                )
            return key

        return asyncio.run(create())

    def tenant(self, name: str) -> int:
        [(tenant_id,)] = self.query("SELECT id FROM tenants WHERE name = %s", name)
        return int(tenant_id)

    def revoke(self, key: str) -> None:
        async def revoke() -> None:
            async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as conn:
                await revoke_key(conn, key)

        asyncio.run(revoke())

    def post_session(self, key: str, body: dict[str, Any] | None = None) -> httpx.Response:
        return httpx.post(
            f"{self.url}/v1/sessions", headers={"Authorization": f"Bearer {key}"}, json=body, timeout=30
        )

    def token(self, key: str, session_id: str | None = None) -> str:
        response = self.post_session(key, {"session_id": session_id} if session_id else None)
        assert response.status_code == 200, response.text
        return str(response.json()["token"])

    # ---- the database ----------------------------------------------------------------------

    def query(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]

    def counts(self) -> dict[str, int]:
        return {table: self.query(f"SELECT count(*) FROM {table}")[0][0] for table in TABLES}  # noqa: S608

    def half_written(self) -> list[tuple[Any, ...]]:
        """Turns with an answer they should not have (or lack), and sessions without turns."""
        return self.query(
            "SELECT session_id, turn, outcome FROM turns WHERE (outcome = 'ok') <> (answer <> '')"
            " UNION ALL SELECT id, 0, 'no turns' FROM sessions s"
            " WHERE NOT EXISTS (SELECT 1 FROM turns t WHERE t.session_id = s.id)"
        )


class Voice:
    """One conversation on the voice WebSocket."""

    def __init__(self, gateway: SecuredGateway, ws: ClientConnection) -> None:
        self.gateway = gateway
        self.ws = ws
        self.session_id = ""

    async def send(self, message: dict[str, Any] | str | bytes) -> None:
        await self.ws.send(json.dumps(message) if isinstance(message, dict) else message)

    async def event(self, timeout_s: float = EVENT_TIMEOUT_S) -> dict[str, Any]:
        """The next JSON event (answer audio is skipped)."""
        deadline = time.monotonic() + timeout_s
        while True:
            message = await asyncio.wait_for(self.ws.recv(), timeout=max(0.1, deadline - time.monotonic()))
            if isinstance(message, bytes):
                AudioHeader.unpack(message)
                continue
            data: dict[str, Any] = json.loads(message)
            return data

    async def until(
        self, type_: str, timeout_s: float = ANSWER_TIMEOUT_S, **match: Any
    ) -> list[dict[str, Any]]:
        """Events up to and including the first `type_` whose fields match `match`."""
        events = []
        deadline = time.monotonic() + timeout_s
        while True:
            event = await self.event(max(0.1, deadline - time.monotonic()))
            events.append(event)
            if event["type"] == type_ and all(event.get(k) == v for k, v in match.items()):
                return events

    async def error(self, code: str) -> dict[str, Any]:
        """The next event, which must be an error with `code` that leaves the session open."""
        event = await self.event()
        assert event["type"] == "error", event
        assert event["code"] == code, event
        assert event["fatal"] is False, event
        return event

    async def start(self, **fields: Any) -> dict[str, Any]:
        await self.send({"type": "session.start", **fields})
        ready = (await self.until("session.ready", EVENT_TIMEOUT_S))[-1]
        self.session_id = ready["session_id"]
        return ready

    async def ask(self, text: str = "What does the gateway do?") -> dict[str, Any]:
        """A typed question that must be answered; checks that its turn was stored whole."""
        await self.send({"type": "text", "text": text, "speak": False})
        started = (await self.until("turn.started", EVENT_TIMEOUT_S))[-1]
        events = await self.until("turn.done", turn=started["turn"])
        errors = [e for e in events if e["type"] == "error"]
        assert not errors, errors
        done = events[-1]
        assert done["outcome"] == "ok", done
        answer = next(e for e in events if e["type"] == "answer.done")["text"]
        assert answer
        stored = self.gateway.query(
            "SELECT question, answer, outcome FROM turns WHERE session_id = %s AND turn = %s",
            self.session_id,
            done["turn"],
        )
        assert stored == [(text, answer, "ok")]
        self.gateway.answered += 1
        return done

    async def closed(
        self, timeout_s: float = EVENT_TIMEOUT_S
    ) -> tuple[int | None, str, list[dict[str, Any]]]:
        """Reads until the server closes: (close code, reason, the events before it)."""
        events = []
        try:
            while True:
                events.append(await self.event(timeout_s))
        except websockets.ConnectionClosed as e:
            return (e.rcvd.code if e.rcvd else None), (e.rcvd.reason if e.rcvd else ""), events


@asynccontextmanager
async def voice(
    gateway: SecuredGateway,
    key: str | None = None,
    *,
    token: str | None = None,
    in_header: bool = False,
    origin: str | None = None,
) -> AsyncIterator[Voice]:
    """A WebSocket with a fresh token of `key` (or the given `token`), in the URL (`?token=`, as
    older clients do) or with `in_header` in the Sec-WebSocket-Protocol header (as the UI does)."""
    if token is None:
        assert key is not None
        token = gateway.token(key)
    url, subprotocols = f"{gateway.ws_url}?token={token}", None
    if in_header:
        url, subprotocols = gateway.ws_url, ["voicebot.v1", f"voicebot.token.{token}"]
    async with websockets.connect(
        url,
        max_size=None,
        subprotocols=subprotocols,  # type: ignore[arg-type]  # plain strings are valid subprotocols
        origin=origin,  # type: ignore[arg-type]
    ) as ws:
        yield Voice(gateway, ws)
