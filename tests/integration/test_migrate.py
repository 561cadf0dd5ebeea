"""Migrations against the real embedded Postgres: twice, and from two processes at once."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from ingest.migrate import discover, migrate
from tests.conftest import REPO_ROOT


@pytest.fixture
def fresh_dsn(postgres: Any) -> Iterator[str]:
    """A new, empty database on the session's server (the session database is already migrated)."""
    name = f"migrate_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_conninfo(postgres.dsn, dbname=name)
    finally:
        with psycopg.connect(postgres.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def schema(dsn: str) -> dict[str, Any]:
    with psycopg.connect(dsn) as conn:
        versions = [
            r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
        ]
        indexes = {
            r[0]: r[1]
            for r in conn.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'chunks'"
            ).fetchall()
        }
        column = conn.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
            " WHERE attrelid = 'chunks'::regclass AND attname = 'embedding'"
        ).fetchone()
    return {"versions": versions, "indexes": indexes, "embedding": column[0] if column else None}


def test_migrate_applies_everything_once_and_is_idempotent(fresh_dsn: str) -> None:
    every = [m.version for m in discover()]
    assert asyncio.run(migrate(fresh_dsn)) == every
    assert asyncio.run(migrate(fresh_dsn)) == []
    state = schema(fresh_dsn)
    assert state["versions"] == every
    assert state["embedding"] == "vector(384)"
    assert "USING hnsw (embedding vector_cosine_ops)" in state["indexes"]["chunks_embedding_hnsw"]
    assert "USING gin (tsv)" in state["indexes"]["chunks_tsv_gin"]


def test_two_processes_migrating_at_once(fresh_dsn: str) -> None:
    env = dict(os.environ, VOICEBOT_DATABASE_URL=fresh_dsn, VOICEBOT_DEV_MODE="true")
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "ingest", "db", "migrate"],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120) for p in processes]
    for process, (_, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stderr
    stdout = sorted(out for out, _ in outputs)
    assert stdout[0].startswith("applied migrations: 0001")
    assert stdout[1].strip() == "database schema is up to date"
    assert schema(fresh_dsn)["versions"] == [m.version for m in discover()]


def test_a_failing_migration_leaves_no_trace(fresh_dsn: str, tmp_path: Any) -> None:
    from ingest.errors import MigrationError

    (tmp_path / "0001_ok.sql").write_text("CREATE TABLE probe_ok (id int);")
    (tmp_path / "0002_bad.sql").write_text("CREATE TABLE probe_bad (id int); SELECT no_such_function();")
    with pytest.raises(MigrationError, match=r"0002_bad\.sql"):
        asyncio.run(migrate(fresh_dsn, directory=tmp_path))
    with psycopg.connect(fresh_dsn) as conn:
        assert conn.execute("SELECT version FROM schema_migrations").fetchall() == [("0001",)]
        assert conn.execute("SELECT to_regclass('probe_bad')").fetchone() == (None,)
    (tmp_path / "0002_bad.sql").write_text("CREATE TABLE probe_bad (id int);")
    assert asyncio.run(migrate(fresh_dsn, directory=tmp_path)) == ["0002"]
