"""Conversations kept in Postgres: the `sessions` and `turns` tables (ingest/migrations/0002).

A session row is written with its first recorded turn, so a socket that never asked anything
leaves no trace. Each turn is one statement (session upsert and turn insert together), written
when the turn is over: an answer is stored whole or not at all, and a failed or cancelled turn is
stored with its outcome and no answer. Sessions belong to the subject that created them (a
stored key, the bootstrap key, or 'anonymous' in dev mode); another subject cannot see or resume
them. History given back to the LLM is bounded to the last HISTORY_TURNS answered exchanges.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

import psycopg
import psycopg_pool
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from orchestrator.errors import StoreUnavailable
from orchestrator.prompt import HISTORY_TURNS, Exchange

log = logging.getLogger(__name__)

STORE_TIMEOUT_S = 2.0
# The session ids the gateway hands out are 32 hex characters; clients may only name ones like them.
SESSION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")

Outcome = Literal["ok", "error", "cancelled"]


@dataclass(frozen=True)
class TurnRecord:
    """A finished turn as stored. `answer` is empty unless the answer finished (`outcome` ok)."""

    turn: int
    question: str
    outcome: Outcome
    answer: str = ""
    citations: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float | str | None] = field(default_factory=dict)
    created_at: datetime | None = None

    def public(self) -> dict[str, Any]:
        return {
            "turn": self.turn,
            "question": self.question,
            "answer": self.answer,
            "citations": self.citations,
            "timings": self.timings,
            "outcome": self.outcome,
            "created_at": self.created_at.isoformat() if self.created_at else None,
        }


@dataclass(frozen=True)
class Resumed:
    """What a resumed session continues from: its last turn number and its recent exchanges."""

    last_turn: int
    history: list[Exchange]


def recent_exchanges(turns: Sequence[TurnRecord], limit: int = HISTORY_TURNS) -> list[Exchange]:
    """The last `limit` answered exchanges of `turns` (in turn order), oldest first.

    Failed and cancelled turns have no answer and are left out."""
    answered = [t for t in sorted(turns, key=lambda t: t.turn) if t.outcome == "ok" and t.answer]
    return [Exchange(t.question, t.answer) for t in answered[-limit:]] if limit > 0 else []


def valid_session_id(session_id: str) -> bool:
    return SESSION_ID.fullmatch(session_id) is not None


def clean_text(text: str) -> str:
    """Text Postgres stores: no NUL characters, no lone surrogates."""
    return text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


class SessionHistory(Protocol):
    """What a voice session needs to resume and record itself (SessionStore implements it)."""

    async def resume(self, session_id: str, subject: str) -> Resumed | None:
        """The session to continue, or None when it is unknown or belongs to another subject."""
        ...

    async def record(
        self, session_id: str, subject: str, turn: TurnRecord, *, language: str | None, voice: str
    ) -> None:
        """Stores one finished turn; raises StoreUnavailable."""
        ...


_SELECT_TURNS = (
    "SELECT t.turn, t.question, t.answer, t.citations, t.timings, t.outcome, t.created_at"
    " FROM turns t JOIN sessions s ON s.id = t.session_id"
    " WHERE s.id = %(sid)s AND s.subject = %(subject)s"
)

# One statement: the session row (created, or touched when the subject owns it) and the turn.
# A session owned by another subject yields no row in `s`, so no turn is written.
_RECORD = """
WITH s AS (
    INSERT INTO sessions AS x (id, subject, language, voice)
    VALUES (%(sid)s, %(subject)s, %(language)s, %(voice)s)
    ON CONFLICT (id) DO UPDATE
        SET updated_at = now(), language = EXCLUDED.language, voice = EXCLUDED.voice
        WHERE x.subject = EXCLUDED.subject
    RETURNING id
)
INSERT INTO turns (session_id, turn, question, answer, citations, timings, outcome)
SELECT id, %(turn)s, %(question)s, %(answer)s, %(citations)s, %(timings)s, %(outcome)s FROM s
ON CONFLICT (session_id, turn) DO UPDATE
    SET question = EXCLUDED.question, answer = EXCLUDED.answer, citations = EXCLUDED.citations,
        timings = EXCLUDED.timings, outcome = EXCLUDED.outcome
"""


class SessionStore:
    """Sessions and turns in Postgres, through the gateway's pool. Failures raise StoreUnavailable."""

    def __init__(self, pool: AsyncConnectionPool | None, *, timeout_s: float = STORE_TIMEOUT_S) -> None:
        self.pool = pool
        self.timeout_s = timeout_s

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        if self.pool is None:
            raise StoreUnavailable("no database is configured")
        try:
            async with self.pool.connection(timeout=self.timeout_s) as conn:
                yield conn
        except (psycopg.Error, psycopg_pool.PoolTimeout) as e:
            raise StoreUnavailable("the session store is unavailable") from e

    async def exists(self, session_id: str, subject: str) -> bool:
        if not valid_session_id(session_id):
            return False
        async with self._connection() as conn:
            cur = await conn.execute(
                "SELECT 1 FROM sessions WHERE id = %s AND subject = %s", (session_id, subject)
            )
            return await cur.fetchone() is not None

    async def turns(self, session_id: str, subject: str) -> list[TurnRecord] | None:
        """Every turn of the session, in order; None when it is unknown or not `subject`'s."""
        if not valid_session_id(session_id) or not await self.exists(session_id, subject):
            return None
        async with self._connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(_SELECT_TURNS + " ORDER BY t.turn", {"sid": session_id, "subject": subject})
            return [TurnRecord(**row) for row in await cur.fetchall()]

    async def resume(self, session_id: str, subject: str) -> Resumed | None:
        if not valid_session_id(session_id):
            return None
        async with self._connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                "SELECT coalesce((SELECT max(turn) FROM turns WHERE session_id = id), 0) AS last_turn"
                " FROM sessions WHERE id = %(sid)s AND subject = %(subject)s",
                {"sid": session_id, "subject": subject},
            )
            found = await cur.fetchone()
            if found is None:
                return None
            # Only the recent answered turns: history stays bounded however long the session is.
            await cur.execute(
                _SELECT_TURNS + " AND t.outcome = 'ok' AND t.answer <> '' ORDER BY t.turn DESC LIMIT %(n)s",
                {"sid": session_id, "subject": subject, "n": HISTORY_TURNS},
            )
            recent = [TurnRecord(**row) for row in await cur.fetchall()]
        return Resumed(int(found["last_turn"]), recent_exchanges(recent))

    async def delete(self, session_id: str, subject: str) -> bool:
        """Deletes the session and its turns (ON DELETE CASCADE); False when it is unknown or not
        `subject`'s. A socket still open on it goes on, and records its next turn afresh."""
        if not valid_session_id(session_id):
            return False
        async with self._connection() as conn:
            cur = await conn.execute(
                "DELETE FROM sessions WHERE id = %s AND subject = %s", (session_id, subject)
            )
            return cur.rowcount == 1

    async def record(
        self, session_id: str, subject: str, turn: TurnRecord, *, language: str | None, voice: str
    ) -> None:
        params = {
            "sid": session_id,
            "subject": subject,
            "language": language,
            "voice": clean_text(voice),
            "turn": turn.turn,
            "question": clean_text(turn.question),
            "answer": clean_text(turn.answer) if turn.outcome == "ok" else "",
            "citations": Jsonb(turn.citations),
            "timings": Jsonb(turn.timings),
            "outcome": turn.outcome,
        }
        async with self._connection() as conn:
            cur = await conn.execute(_RECORD, params)
            if cur.rowcount != 1:
                log.warning(
                    "turn not recorded: the session belongs to another subject",
                    extra={"session": session_id, "turn": turn.turn},
                )
