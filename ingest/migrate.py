"""Versioned SQL migrations: `ingest/migrations/NNNN_name.sql`, applied in order, each once.

Applied versions are recorded in `schema_migrations`. The whole run holds a PostgreSQL advisory
lock, so two processes starting at once (the gateway's replicas, `voicebot db migrate`) apply
each migration exactly once; the second waits, then finds nothing left to do. Each migration runs
in its own transaction together with its record, so a failed one leaves no trace and is retried
by the next run. Any file matching the pattern is picked up: other packages add theirs (the
gateway's 0002_gateway.sql) to the same folder.

Migrations are applied by the schema's owner (ingest/roles.py). The application's login may run
`migrate` too (the gateway does at start-up, the CLI commands before their work): with nothing
pending it changes nothing, and with something pending it fails with a message that says who
must apply it, before trying any DDL it may not run.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from ingest.errors import MigrationError, StoreUnavailable

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# pg_advisory_lock key shared by every process that migrates this database ("vbmigrat").
MIGRATION_LOCK_KEY = 0x76626D6967726174
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: str  # "0001"
    name: str  # "documents"
    sql: str
    checksum: str  # sha256 of the file, to notice an applied migration edited afterwards

    @property
    def filename(self) -> str:
        return f"{self.version}_{self.name}.sql"


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migrations in `directory`, in version order. Raises MigrationError on a bad name or a duplicate."""
    found: dict[str, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: migration files are named NNNN_lowercase_name.sql")
        version, name = match.groups()
        if version in found:
            raise MigrationError(
                f"two migrations with version {version}: {found[version].filename}, {path.name}"
            )
        sql = path.read_text(encoding="utf-8")
        found[version] = Migration(version, name, sql, hashlib.sha256(sql.encode()).hexdigest())
    return [found[v] for v in sorted(found)]


_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    text PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


async def migrate(conninfo: str, *, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Applies the migrations not yet recorded; returns the versions applied by this call ("0001", ...)."""
    migrations = discover(directory)
    try:
        conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
    except psycopg.OperationalError as e:
        raise StoreUnavailable(f"cannot connect to PostgreSQL: {e}") from e
    applied_now: list[str] = []
    async with conn:
        await conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        try:
            cur = await conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
            exists = await cur.fetchone()
            if not (exists and exists[0]):
                await _refuse_unless_owner(conn, len(migrations))
                await conn.execute(_CREATE_TABLE)
            cur = await conn.execute("SELECT version, checksum FROM schema_migrations")
            applied = {version: checksum for version, checksum in await cur.fetchall()}
            pending = [m for m in migrations if m.version not in applied]
            if pending:
                await _refuse_unless_owner(conn, len(pending))
            for migration in migrations:
                if migration.version in applied:
                    if applied[migration.version] != migration.checksum:
                        log.warning(
                            "migration %s was edited after it was applied; the database keeps the old version",
                            migration.filename,
                        )
                    continue
                try:
                    async with conn.transaction():
                        await conn.execute(migration.sql.encode())  # several statements, no parameters
                        await conn.execute(
                            "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                            (migration.version, migration.name, migration.checksum),
                        )
                except psycopg.Error as e:
                    raise MigrationError(f"migration {migration.filename} failed: {e}") from e
                log.info("applied migration %s", migration.filename)
                applied_now.append(migration.version)
        finally:
            if not conn.closed:
                await conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
    return applied_now


async def _refuse_unless_owner(conn: psycopg.AsyncConnection[Any], pending: int) -> None:
    """MigrationError when the connected role may not create tables here: the application's
    login, which has to wait for the owner to migrate (`voicebot db migrate`)."""
    cur = await conn.execute("SELECT current_user, has_schema_privilege(current_schema(), 'CREATE')")
    row = await cur.fetchone()
    if row is not None and not row[1]:
        raise MigrationError(
            f"{pending} schema migration(s) pending, and {row[0]} may not apply them: run "
            "`voicebot db migrate` as the schema's owner (VOICEBOT_MIGRATION_DATABASE_URL)"
        )
