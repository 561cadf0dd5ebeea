"""How long conversations are kept: `VOICEBOT_RETENTION_DAYS` after their last turn.

Transcripts are personal data, so they are not kept forever. The gateway purges expired sessions
(their turns go with them: ON DELETE CASCADE) at start-up and every PURGE_INTERVAL_S after, and
`voicebot sessions purge` does the same once (for a CronJob, or with `--days` to purge sooner).
Each purge is one statement per table, so a session is either wholly kept or wholly gone. Two
replicas purging at once delete the same rows; the second finds nothing left.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Any

import psycopg
import psycopg_pool
from psycopg_pool import AsyncConnectionPool

log = logging.getLogger(__name__)

PURGE_INTERVAL_S = 3600.0
PURGE_TIMEOUT_S = 30.0
EXIT_UNAVAILABLE = 2

# Turns older than the cut-off go, and the sessions whose last activity is older go with all their
# turns; a long-running session thus loses its oldest turns first and is gone once idle that long.
_PURGE_TURNS = "DELETE FROM turns WHERE created_at < now() - make_interval(days => %(days)s)"
_PURGE_SESSIONS = (
    "DELETE FROM sessions s WHERE s.updated_at < now() - make_interval(days => %(days)s)"
    " OR NOT EXISTS (SELECT 1 FROM turns t WHERE t.session_id = s.id)"
)


async def purge(conn: psycopg.AsyncConnection[Any], days: int) -> tuple[int, int]:
    """Deletes what is older than `days` days: (turns, sessions) deleted. `days` must be ≥ 1."""
    if days < 1:
        raise ValueError("days must be at least 1")
    async with conn.transaction():
        turns = await conn.execute(_PURGE_TURNS, {"days": days})
        sessions = await conn.execute(_PURGE_SESSIONS, {"days": days})
    return turns.rowcount, sessions.rowcount


async def purge_periodically(
    pool: AsyncConnectionPool, days: int, interval_s: float = PURGE_INTERVAL_S
) -> None:
    """The gateway's purge loop (a task its lifespan owns and cancels); a failed purge is logged and
    tried again at the next interval."""
    while True:
        try:
            async with pool.connection(timeout=PURGE_TIMEOUT_S) as conn:
                turns, sessions = await purge(conn, days)
            if turns or sessions:
                log.info(
                    "retention: purged conversations older than %d days",
                    days,
                    extra={"turns": turns, "sessions": sessions},
                )
        except (psycopg.Error, psycopg_pool.PoolTimeout) as e:
            log.warning(
                "retention: purge failed; retrying in %.0f s", interval_s, extra={"code": type(e).__name__}
            )
        await asyncio.sleep(interval_s)


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Adds `voicebot sessions purge` to the `voicebot` parser."""
    group = subparsers.add_parser("sessions", help="stored conversations: purge expired ones")
    sub = group.add_subparsers(dest="sessions_command", required=True, metavar="COMMAND")
    cmd = sub.add_parser("purge", help="delete conversations older than VOICEBOT_RETENTION_DAYS (or --days)")
    cmd.add_argument("--days", type=_days, default=None, help="purge what is older than this many days")
    cmd.set_defaults(func=cmd_sessions_purge)


def _days(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError("--days is a whole number of days, at least 1")
    return int(value)


def cmd_sessions_purge(args: argparse.Namespace) -> int:
    from ingest.errors import IngestError
    from ingest.migrate import migrate
    from orchestrator.key_commands import database_url
    from orchestrator.settings import Settings

    days = args.days or Settings(dev_mode=True).retention_days
    if days == 0:
        print("VOICEBOT_RETENTION_DAYS is 0 (keep forever): nothing purged; give --days", file=sys.stderr)
        return 0
    dsn = database_url()

    async def run() -> tuple[int, int]:
        await migrate(dsn)
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            return await purge(conn, days)

    try:
        turns, sessions = asyncio.run(run())
    except (psycopg.OperationalError, OSError, IngestError) as e:
        print(f"error: cannot reach PostgreSQL: {e}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    print(f"purged {turns} turns and {sessions} sessions older than {days} days")
    return 0
