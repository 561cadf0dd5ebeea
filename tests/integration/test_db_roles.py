"""Least-privilege database roles on the real embedded Postgres (docs/security.md, "Database roles").

The local stack, like the chart, has the schema's owner migrate and the application log in as
`voicebot_gateway`, a member of `voicebot_service` only. These tests connect as that login and
try what a compromised gateway would: read or change another tenant's rows, switch to a role
that bypasses row-level security, change the schema. Every other integration test's gateway and
ingest also run as that login (tests/integration/conftest.py), so it is enough to work.
"""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from ingest.errors import MigrationError
from ingest.migrate import discover, migrate
from ingest.tenancy import DEFAULT_TENANT_ID
from orchestrator.stack.postgres import APP_USER, OWNER_USER, SUPERUSER, EmbeddedPostgres
from tests.conftest import REPO_ROOT

SWITCH = "SET LOCAL ROLE voicebot_app"


def _as_app(
    postgres: EmbeddedPostgres, statement: str, *params: object, before: tuple[str, ...] = ()
) -> list[tuple[object, ...]]:
    """`statement` as the application's login: alone (autocommit), or in one transaction after `before`."""
    with psycopg.connect(postgres.app_dsn, autocommit=not before) as conn:
        for first in before:
            conn.execute(first)
        cur = conn.execute(statement, params or None)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else [(cur.rowcount,)]


def _as_superuser(postgres: EmbeddedPostgres, statement: str, *params: object) -> list[tuple[object, ...]]:
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        return conn.execute(statement, params or None).fetchall()  # type: ignore[arg-type]


# ---- the server asks for passwords --------------------------------------------------------------


def test_every_login_needs_its_password(postgres: EmbeddedPostgres) -> None:
    hba = (postgres.data_dir / "pg_hba.conf").read_text()
    rules = [line.split() for line in hba.splitlines() if line.strip() and not line.startswith("#")]
    assert rules
    assert {rule[-1] for rule in rules} == {"scram-sha-256"}
    for user in (SUPERUSER, OWNER_USER, APP_USER):
        without = make_conninfo(postgres.dsn_of(user), password="")
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(without, connect_timeout=5)
        wrong = make_conninfo(
            postgres.dsn_of(user), password="not-" + str(conninfo_to_dict(postgres.dsn_of(user))["password"])
        )
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(wrong, connect_timeout=5)
    mode = stat.S_IMODE(os.stat(postgres.credentials_path).st_mode)
    assert mode == 0o600
    assert stat.S_IMODE(os.stat(postgres.credentials_path.parent).st_mode) == 0o700
    [(verifier,)] = _as_superuser(postgres, "SELECT rolpassword FROM pg_authid WHERE rolname = %s", APP_USER)
    assert str(verifier).startswith("SCRAM-SHA-256$")


# ---- who the application is -----------------------------------------------------------------------


def test_the_application_login_holds_no_power(postgres: EmbeddedPostgres, ingested: str) -> None:
    [(superuser, bypass, createrole, createdb, replication)] = _as_superuser(
        postgres,
        "SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb, rolreplication FROM pg_roles WHERE rolname = %s",
        APP_USER,
    )
    assert (superuser, bypass, createrole, createdb, replication) == (False, False, False, False, False)
    memberships = _as_superuser(
        postgres,
        "SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid"
        " JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = %s",
        APP_USER,
    )
    assert memberships == [("voicebot_service",)]
    owned = _as_superuser(
        postgres,
        "SELECT relname FROM pg_class WHERE relowner = (SELECT oid FROM pg_roles WHERE rolname = %s)",
        APP_USER,
    )
    assert owned == []
    [(owner,)] = _as_superuser(
        postgres, "SELECT relowner::regrole::text FROM pg_class WHERE relname = 'documents'"
    )
    assert owner == OWNER_USER


def test_the_application_works_as_that_login(postgres: EmbeddedPostgres, ingested: str) -> None:
    """What the gateway and the CLI do: keys, tenants, conversations; documents inside a tenant."""
    name = f"roles-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres.app_dsn) as conn:
        conn.execute("INSERT INTO tenants (name) VALUES (%s)", (name,))
        conn.execute("INSERT INTO sessions (id, subject) VALUES (%s, 'anonymous')", (name,))
        conn.execute(
            "INSERT INTO turns (session_id, turn, question, outcome) VALUES (%s, 1, 'q', 'cancelled')",
            (name,),
        )
        assert conn.execute("DELETE FROM sessions WHERE id = %s", (name,)).rowcount == 1
        assert conn.execute("SELECT count(*) FROM api_keys").fetchone() is not None
        conn.execute("SET LOCAL ROLE voicebot_app")
        conn.execute("SELECT set_config('app.tenant', %s, true)", (str(DEFAULT_TENANT_ID),))
        [(documents,)] = conn.execute("SELECT count(*) FROM documents").fetchall()
        assert documents > 0
        conn.rollback()


# ---- row-level security cannot be got round ------------------------------------------------------


def test_tenant_tables_only_through_the_confined_role(postgres: EmbeddedPostgres, ingested: str) -> None:
    for table in ("documents", "chunks", "collections"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            _as_app(postgres, f"SELECT count(*) FROM {table}")  # noqa: S608 - constant names
    # Switched, but no tenant named: no row.
    assert _as_app(postgres, "SELECT count(*) FROM documents", before=(SWITCH,)) == [(0,)]


@pytest.mark.parametrize(
    "attempt",
    [
        "SET LOCAL ROLE voicebot",
        "SET LOCAL ROLE postgres",
        "SET SESSION AUTHORIZATION voicebot",
        "SET SESSION AUTHORIZATION postgres",
        "ALTER ROLE voicebot_gateway BYPASSRLS",
        "ALTER ROLE voicebot_app BYPASSRLS",
        "ALTER ROLE voicebot_gateway SUPERUSER",
        "GRANT voicebot TO voicebot_gateway",
        "ALTER TABLE documents DISABLE ROW LEVEL SECURITY",
        "ALTER TABLE chunks NO FORCE ROW LEVEL SECURITY",
        "DROP POLICY tenant_isolation ON documents",
        "CREATE POLICY everything ON documents USING (true)",
        "ALTER POLICY tenant_isolation ON chunks USING (true)",
        "GRANT SELECT ON documents TO voicebot_gateway",
        "ALTER TABLE documents OWNER TO voicebot_gateway",
    ],
)
def test_row_level_security_cannot_be_bypassed(postgres: EmbeddedPostgres, attempt: str) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        _as_app(postgres, attempt)


def test_turning_row_security_off_is_refused(postgres: EmbeddedPostgres, ingested: str) -> None:
    """row_security = off does not turn policies off for a role they apply to: it makes the query fail."""
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
        _as_app(
            postgres,
            "SET LOCAL ROLE voicebot_app; SET LOCAL row_security = off; SELECT count(*) FROM documents",
        )


def test_another_tenants_rows_stay_out_of_reach(postgres: EmbeddedPostgres, ingested: str) -> None:
    other = f"other-{uuid.uuid4().hex[:8]}"
    _as_app(postgres, "INSERT INTO tenants (name) VALUES (%s)", other)
    [(other_id,)] = _as_superuser(postgres, "SELECT id FROM tenants WHERE name = %s", other)
    scope = ("SET LOCAL ROLE voicebot_app", f"SELECT set_config('app.tenant', '{other_id}', true)")
    with psycopg.connect(postgres.app_dsn) as conn:
        for statement in scope:
            conn.execute(statement)
        assert conn.execute("SELECT count(*) FROM documents").fetchall() == [(0,)]
        assert conn.execute("SELECT count(*) FROM chunks").fetchall() == [(0,)]
        assert conn.execute("UPDATE documents SET title = 'taken'").rowcount == 0
        assert conn.execute("DELETE FROM chunks").rowcount == 0
        # Switching back to its own login and reading again: no privilege there.
        conn.execute("RESET ROLE")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT count(*) FROM documents")
    with psycopg.connect(postgres.app_dsn) as conn:
        for statement in scope:
            conn.execute(statement)
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
            conn.execute(
                "INSERT INTO collections (tenant_id, name) VALUES (%s, 'planted')", (DEFAULT_TENANT_ID,)
            )
    [(first_tenant_docs,)] = _as_superuser(
        postgres, "SELECT count(*) FROM documents WHERE tenant_id = %s AND title = 'taken'", DEFAULT_TENANT_ID
    )
    assert first_tenant_docs == 0


# ---- no DDL ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ddl",
    [
        "CREATE TABLE planted (id int)",
        "CREATE TEMP TABLE planted (id int)",
        "CREATE SCHEMA planted",
        "CREATE FUNCTION planted() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "CREATE VIEW planted AS SELECT 1",
        "CREATE INDEX planted ON api_keys (name)",
        "ALTER TABLE api_keys ADD COLUMN planted text",
        "ALTER TABLE sessions DROP CONSTRAINT sessions_id_check",
        "DROP TABLE turns",
        "TRUNCATE api_keys",
        "DELETE FROM schema_migrations",
        "DELETE FROM api_keys",
        "DELETE FROM tenants",
        "CREATE EXTENSION IF NOT EXISTS pg_trgm",
        "CREATE ROLE planted LOGIN",
        "CREATE DATABASE planted",
    ],
)
def test_the_application_login_cannot_change_the_schema(
    postgres: EmbeddedPostgres, ingested: str, ddl: str
) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        _as_app(postgres, ddl)


# ---- migrations ----------------------------------------------------------------------------------------


@pytest.fixture
def owned_database(postgres: EmbeddedPostgres) -> Iterator[str]:
    """A new, empty database owned by the schema's owner, which the application's login may reach."""
    name = f"roles_{uuid.uuid4().hex[:10]}"
    db = sql.Identifier(name)
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(db, sql.Identifier(OWNER_USER)))
        conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(db))
    with psycopg.connect(postgres.dsn_of(SUPERUSER, name), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION vector")  # as the stack does: only a superuser may
    try:
        yield name
    finally:
        with psycopg.connect(postgres.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(db))


def test_migrations_are_the_owners_and_grant_the_login(
    postgres: EmbeddedPostgres, owned_database: str
) -> None:
    """`voicebot db migrate` as the owner, on a fresh database: every migration, then a new
    login (the user of VOICEBOT_DATABASE_URL) created with its password and the application's
    privileges. Before that, the application's login could not migrate it; after, it finds
    nothing to do."""
    login = f"vb_login_{uuid.uuid4().hex[:8]}"
    password = uuid.uuid4().hex * 2
    owner_dsn = postgres.dsn_of(OWNER_USER, owned_database)
    app_dsn = make_conninfo(postgres.dsn_of(APP_USER, owned_database), user=login, password=password)

    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                sql.Identifier(owned_database), sql.Identifier(APP_USER)
            )
        )
    with pytest.raises(MigrationError, match="voicebot db migrate"):
        asyncio.run(migrate(postgres.dsn_of(APP_USER, owned_database)))
    assert _tables(postgres, owned_database) == []

    env = dict(os.environ, VOICEBOT_MIGRATION_DATABASE_URL=owner_dsn, VOICEBOT_DATABASE_URL=app_dsn)
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "db", "migrate"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    try:
        assert done.returncode == 0, done.stderr
        assert f"{login} may use the application's tables" in done.stdout
        assert password not in done.stdout + done.stderr
        assert "schema_migrations" in _tables(postgres, owned_database)

        assert asyncio.run(migrate(app_dsn)) == []  # as the gateway does at start-up: nothing pending
        with psycopg.connect(app_dsn) as conn:
            versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]
            assert versions == [m.version for m in discover()]
            conn.execute("INSERT INTO tenants (name) VALUES ('second')")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("CREATE TABLE planted (id int)")
        # Run again (every upgrade does): nothing applied, the login kept, its password still works.
        again = subprocess.run(
            [sys.executable, "-m", "orchestrator.cli", "db", "migrate"],
            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert again.returncode == 0, again.stderr
        assert "database schema is up to date" in again.stdout
        psycopg.connect(app_dsn).close()
    finally:
        with psycopg.connect(postgres.dsn, autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (login,)).fetchone():
                conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(login)))  # its CONNECT grant
                conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(login)))


def test_migrate_refuses_a_superuser_as_the_applications_login(
    postgres: EmbeddedPostgres, owned_database: str
) -> None:
    env = dict(
        os.environ,
        VOICEBOT_MIGRATION_DATABASE_URL=postgres.dsn_of(OWNER_USER, owned_database),
        VOICEBOT_DATABASE_URL=postgres.dsn_of(SUPERUSER, owned_database),
    )
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "db", "migrate"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode != 0
    assert "superuser" in done.stderr


def _tables(postgres: EmbeddedPostgres, database: str) -> list[str]:
    with psycopg.connect(postgres.dsn_of(SUPERUSER, database)) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
        ).fetchall()
    return [str(r[0]) for r in rows]
