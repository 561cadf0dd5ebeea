"""Issue 16, tenancy, on the real stack: the store finds nothing of another tenant; row-level
security hides other tenants' rows from the gateway's own queries even without their tenant
filter; the migration gives everything stored before tenancy to the first tenant.

Every refusal is checked to have changed nothing in Postgres (read as the superuser, which
row-level security does not confine).
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from ingest import search as search_module
from ingest import store
from ingest.migrate import MIGRATIONS_DIR, discover, migrate
from ingest.search import search_embedding
from ingest.tenancy import APP_ROLE, DEFAULT_TENANT_ID, create_tenant, tenant_scope
from orchestrator.stack.postgres import EmbeddedPostgres

DIM = 384


def _vector(seed: int) -> np.ndarray[Any, np.dtype[np.float32]]:
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def _chunks(seed: int, words: str) -> list[store.ChunkRow]:
    return [
        store.ChunkRow(
            position=i,
            heading_path=["Notes"],
            text=f"{words} part {i}",
            token_count=8,
            embedding=_vector(seed + i),
        )
        for i in range(3)
    ]


# ---- the store, and row-level security under it ------------------------------------------------


@dataclass
class TwoTenants:
    dsn: str
    a: int
    b: int
    doc_a: int
    doc_b: int


@pytest.fixture(scope="module")
def two_tenants(postgres: EmbeddedPostgres) -> TwoTenants:
    """Tenants A and B, each with one document of three chunks in its own `default` collection."""

    async def make() -> TwoTenants:
        await migrate(postgres.dsn)
        suffix = uuid.uuid4().hex[:8]
        async with await psycopg.AsyncConnection.connect(postgres.dsn, autocommit=True) as conn:
            a, _ = await create_tenant(conn, f"store-a-{suffix}")
            b, _ = await create_tenant(conn, f"store-b-{suffix}")
            ids = []
            for tenant, seed, words in ((a, 100, "alpha plans"), (b, 200, "bravo secrets")):
                written = await store.write_document(
                    conn,
                    tenant=tenant,
                    collection="default",
                    source="synthetic://notes",  # the same source and collection in both tenants
                    title=f"Notes of {words}",
                    content_hash=uuid.uuid4().hex,
                    format="txt",
                    metadata={},
                    chunks=_chunks(seed, words),
                )
                ids.append(written.document_id)
        return TwoTenants(postgres.dsn, a, b, ids[0], ids[1])

    return asyncio.run(make())


def _in_scope(dsn: str, tenant: int, statement: str, *params: object) -> list[tuple[Any, ...]]:
    """`statement` run as the gateway runs its queries for `tenant`: inside tenant_scope."""

    async def run() -> list[tuple[Any, ...]]:
        async with (
            await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn,
            tenant_scope(conn, tenant),
        ):
            cur = await conn.execute(statement, params)
            return await cur.fetchall() if cur.description else [(cur.rowcount,)]

    return asyncio.run(run())


def _superuser(dsn: str, statement: str, *params: object) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(statement, params).fetchall()


def test_the_store_finds_nothing_of_another_tenant(two_tenants: TwoTenants) -> None:
    t = two_tenants

    async def run() -> None:
        async with await psycopg.AsyncConnection.connect(t.dsn, autocommit=True) as conn:
            listed = await store.list_documents(conn, tenant=t.a)
            assert [d.id for d in listed] == [t.doc_a]
            assert await store.get_document(conn, t.doc_b, tenant=t.a) is None
            assert await store.find_document(conn, "default", "synthetic://notes", tenant=t.a) == listed[0]
            assert await store.list_sources(conn, "default", tenant=t.a) == ["synthetic://notes"]
            assert not await store.delete_document(conn, t.doc_b, tenant=t.a)
            # B's own chunk embedding, searched for by A: only A's chunks come back.
            hits = await search_embedding(
                conn, _vector(200), "bravo secrets", tenant=t.a, collection="default", k=10, mode="hybrid"
            )
            assert hits
            assert {h.document_id for h in hits} == {t.doc_a}

    asyncio.run(run())
    assert _superuser(t.dsn, "SELECT count(*) FROM chunks WHERE document_id = %s", t.doc_b) == [(3,)]


def test_row_level_security_hides_other_tenants_from_unfiltered_queries(two_tenants: TwoTenants) -> None:
    t = two_tenants
    # Queries without any tenant filter, as a forgetful store function would write them.
    assert {r[0] for r in _in_scope(t.dsn, t.a, "SELECT tenant_id FROM documents")} == {t.a}
    assert {r[0] for r in _in_scope(t.dsn, t.a, "SELECT tenant_id FROM chunks")} == {t.a}
    assert {r[0] for r in _in_scope(t.dsn, t.a, "SELECT tenant_id FROM collections")} == {t.a}
    assert _in_scope(t.dsn, t.a, "SELECT id FROM documents WHERE id = %s", t.doc_b) == []
    assert _in_scope(t.dsn, t.a, "UPDATE documents SET title = 'taken' WHERE id = %s", t.doc_b) == [(0,)]
    assert _in_scope(t.dsn, t.a, "DELETE FROM chunks WHERE document_id = %s", t.doc_b) == [(0,)]
    assert _in_scope(t.dsn, t.a, "DELETE FROM documents WHERE id = %s", t.doc_b) == [(0,)]
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
        _in_scope(
            t.dsn,
            t.a,
            "INSERT INTO documents (tenant_id, collection, source_uri, title, content_hash, format)"
            " VALUES (%s, 'default', 'planted://x', 'planted', 'x', 'txt')",
            t.b,
        )
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
        _in_scope(t.dsn, t.a, "UPDATE documents SET tenant_id = %s WHERE id = %s", t.b, t.doc_a)
    assert _superuser(t.dsn, "SELECT title, chunk_count FROM documents WHERE id = %s", t.doc_b) == [
        ("Notes of bravo secrets", 3)
    ]
    assert _superuser(t.dsn, "SELECT count(*) FROM documents WHERE source_uri = 'planted://x'") == [(0,)]


def test_the_retrieval_sql_without_its_tenant_filter_still_sees_one_tenant(
    two_tenants: TwoTenants, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = two_tenants
    for name in ("_VECTOR_SQL", "_TEXT_SQL", "_HYBRID_SQL"):
        statement = getattr(search_module, name)
        stripped = statement.replace("c.tenant_id = %(tenant)s AND ", "").replace(
            "tenant_id = %(tenant)s AND ", ""
        )
        assert "tenant_id" not in stripped
        monkeypatch.setattr(search_module, name, stripped)

    async def run() -> dict[str, set[int]]:
        found = {}
        async with await psycopg.AsyncConnection.connect(t.dsn, autocommit=True) as conn:
            for mode in ("vector", "text", "hybrid"):
                hits = await search_module.search_embedding(
                    conn,
                    _vector(200),
                    "bravo secrets alpha plans",
                    tenant=t.a,
                    collection="default",
                    k=20,
                    mode=mode,
                )
                found[mode] = {h.document_id for h in hits}
        return found

    assert asyncio.run(run()) == {"vector": {t.doc_a}, "text": {t.doc_a}, "hybrid": {t.doc_a}}


def test_the_application_role_is_confined(two_tenants: TwoTenants) -> None:
    t = two_tenants
    [(user, superuser, bypass)] = _in_scope(
        t.dsn,
        t.a,
        "SELECT current_user, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user",
    )
    assert (user, superuser, bypass) == (APP_ROLE, False, False)
    owners = _superuser(
        t.dsn,
        "SELECT tablename, tableowner, rowsecurity, c.relforcerowsecurity FROM pg_tables p"
        " JOIN pg_class c ON c.relname = p.tablename AND c.relnamespace = p.schemaname::regnamespace"
        " WHERE tablename IN ('collections', 'documents', 'chunks')",
    )
    assert len(owners) == 3
    assert all(owner != APP_ROLE and rls and forced for _, owner, rls, forced in owners)
    # No tenant set (a connection outside tenant_scope that switched role): no row at all.
    with psycopg.connect(t.dsn, autocommit=True) as conn, conn.transaction():
        conn.execute(f"SET LOCAL ROLE {APP_ROLE}")
        assert conn.execute("SELECT count(*) FROM documents").fetchone() == (0,)


# ---- the migration keeps what was stored -----------------------------------------------------------


@pytest.fixture
def fresh_dsn(postgres: EmbeddedPostgres) -> Iterator[str]:
    name = f"tenancy_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_conninfo(postgres.dsn, dbname=name)
    finally:
        with psycopg.connect(postgres.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def test_the_migration_gives_existing_data_and_keys_to_the_first_tenant(
    fresh_dsn: str, tmp_path: Path
) -> None:
    before = tmp_path / "before"
    before.mkdir()
    for m in discover():
        if m.version < "0004":
            shutil.copy(MIGRATIONS_DIR / m.filename, before / m.filename)
    asyncio.run(migrate(fresh_dsn, directory=before))
    vector = "[" + ",".join(["0.05"] * DIM) + "]"
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        for collection in ("default", "handbook"):
            [(doc,)] = conn.execute(
                "INSERT INTO documents (collection, source_uri, title, content_hash, format, chunk_count)"
                " VALUES (%s, 'file:///old.md', 'Old', 'h', 'md', 1) RETURNING id",
                (collection,),
            ).fetchall()
            conn.execute(
                "INSERT INTO chunks (document_id, collection, position, text, token_count, embedding, tsv)"
                " VALUES (%s, %s, 0, 'old text', 2, %s::vector, to_tsvector('old text'))",
                (doc, collection, vector),
            )
        conn.execute(
            "INSERT INTO api_keys (name, prefix, key_hash) VALUES ('old', 'abcdefgh', %s)", ("0" * 64,)
        )

    asyncio.run(migrate(fresh_dsn))
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        assert conn.execute("SELECT id, name FROM tenants").fetchall() == [(DEFAULT_TENANT_ID, "default")]
        assert conn.execute("SELECT DISTINCT tenant_id FROM documents").fetchall() == [(DEFAULT_TENANT_ID,)]
        assert conn.execute("SELECT DISTINCT tenant_id FROM chunks").fetchall() == [(DEFAULT_TENANT_ID,)]
        assert conn.execute("SELECT count(*) FROM chunks").fetchone() == (2,)
        assert conn.execute("SELECT tenant_id, name FROM collections ORDER BY name").fetchall() == [
            (DEFAULT_TENANT_ID, "default"),
            (DEFAULT_TENANT_ID, "handbook"),
        ]
        assert conn.execute(
            "SELECT tenant_id, scopes, collections, default_collection FROM api_keys"
        ).fetchall() == [(DEFAULT_TENANT_ID, ["ask", "documents", "admin"], None, "default")]

    async def first_tenant_sees_them() -> list[str]:
        async with await psycopg.AsyncConnection.connect(fresh_dsn, autocommit=True) as conn:
            return [d.collection for d in await store.list_documents(conn, tenant=DEFAULT_TENANT_ID)]

    assert asyncio.run(first_tenant_sees_them()) == ["default", "handbook"]
