"""Issue 16, tenancy, on the real stack: a key sees, changes and retrieves from its own tenant's
collections only; scopes and collection grants are refused with stable codes; row-level security
hides other tenants' rows from the gateway's own queries even without their tenant filter; the
migration gives everything stored before tenancy to the first tenant.

Every refusal is checked to have changed nothing in Postgres (read as the superuser, which
row-level security does not confine).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
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
from tests.integration.voice_client import SecuredGateway, voice

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


# ---- the gateway: keys of two tenants -----------------------------------------------------------------


@dataclass
class Keys:
    a: str  # tenant A: ask + documents
    b: str  # tenant B: ask + documents
    ask_only: str  # tenant A: ask
    documents_only: str  # tenant A: documents
    handbook_only: str  # tenant A: ask + documents, collection `handbook` only
    tenant_a: int
    tenant_b: int


MARKER_A = "The quorvex relay of tenant A rotates its signing keys every nine days."
MARKER_B = "The plimsoll gauge of tenant B is calibrated every spring."


@pytest.fixture(scope="module")
def keys(secured_gateway: SecuredGateway) -> Keys:
    suffix = uuid.uuid4().hex[:8]
    a, b = f"gw-a-{suffix}", f"gw-b-{suffix}"
    return Keys(
        a=secured_gateway.new_key("tenant a", tenant=a),
        b=secured_gateway.new_key("tenant b", tenant=b),
        ask_only=secured_gateway.new_key("asks", tenant=a, scopes=["ask"]),
        documents_only=secured_gateway.new_key("librarian", tenant=a, scopes=["documents"]),
        handbook_only=secured_gateway.new_key("handbook", tenant=a, collections=["handbook"]),
        tenant_a=secured_gateway.tenant(a),
        tenant_b=secured_gateway.tenant(b),
    )


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _upload(gateway: SecuredGateway, key: str, name: str, text: str, **data: str) -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/v1/documents",
        headers=_auth(key),
        files={"files": (name, text.encode(), "text/markdown")},
        data=data,
        timeout=240,
    )


@pytest.fixture(scope="module")
def uploaded(secured_gateway: SecuredGateway, keys: Keys) -> dict[str, int]:
    """One document per tenant, under the same name in each tenant's `default` collection."""
    ids = {}
    for tenant, key, marker in (("a", keys.a, MARKER_A), ("b", keys.b, MARKER_B)):
        response = _upload(secured_gateway, key, "notes.md", f"# Notes\n\n{marker}\n")
        assert response.status_code == 200, response.text
        [result] = response.json()["results"]
        assert result["status"] == "ingested", result
        ids[tenant] = result["document_id"]
    return ids


def _error(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


def test_key_b_cannot_list_read_or_delete_tenant_a_documents(
    secured_gateway: SecuredGateway, keys: Keys, uploaded: dict[str, int]
) -> None:
    first = secured_gateway.new_key("first tenant")
    before = secured_gateway.counts()
    url, doc_a = secured_gateway.url, uploaded["a"]
    listed_b = httpx.get(f"{url}/v1/documents", headers=_auth(keys.b), timeout=30).json()["documents"]
    assert [d["id"] for d in listed_b] == [uploaded["b"]]
    listed_a = httpx.get(f"{url}/v1/documents", headers=_auth(keys.a), timeout=30).json()["documents"]
    assert [d["id"] for d in listed_a] == [doc_a]
    assert _error(httpx.get(f"{url}/v1/documents/{doc_a}", headers=_auth(keys.b), timeout=30)) == (
        404,
        "not_found",
    )
    assert _error(httpx.delete(f"{url}/v1/documents/{doc_a}", headers=_auth(keys.b), timeout=30)) == (
        404,
        "not_found",
    )
    # The first tenant's keys do not reach tenant A either.
    assert doc_a not in [
        d["id"]
        for d in httpx.get(f"{url}/v1/documents", headers=_auth(first), timeout=30).json()["documents"]
    ]
    assert _error(httpx.get(f"{url}/v1/documents/{doc_a}", headers=_auth(first), timeout=30))[0] == 404
    assert secured_gateway.counts() == before
    assert secured_gateway.query("SELECT tenant_id FROM documents WHERE id = %s", doc_a) == [(keys.tenant_a,)]
    assert httpx.get(f"{url}/v1/documents/{doc_a}", headers=_auth(keys.a), timeout=30).status_code == 200


def test_an_upload_by_key_b_never_replaces_tenant_a_document(
    secured_gateway: SecuredGateway, keys: Keys, uploaded: dict[str, int]
) -> None:
    # Same name, same collection name: B's own document changes, A's stays as it was.
    response = _upload(secured_gateway, keys.b, "notes.md", f"# Notes\n\n{MARKER_B} Twice a year.\n")
    [result] = response.json()["results"]
    assert result["status"] == "ingested"
    assert result["document_id"] == uploaded["b"]
    assert (
        secured_gateway.query(
            "SELECT string_agg(text, ' ') FROM chunks WHERE document_id = %s", uploaded["a"]
        )[0][0].count("quorvex")
        == 1
    )


def test_a_key_without_the_documents_scope_gets_403_insufficient_scope(
    secured_gateway: SecuredGateway, keys: Keys, uploaded: dict[str, int]
) -> None:
    before = secured_gateway.counts()
    url, key = secured_gateway.url, keys.ask_only
    refused = [
        httpx.get(f"{url}/v1/documents", headers=_auth(key), timeout=30),
        httpx.get(f"{url}/v1/documents/{uploaded['a']}", headers=_auth(key), timeout=30),
        httpx.delete(f"{url}/v1/documents/{uploaded['a']}", headers=_auth(key), timeout=30),
        _upload(secured_gateway, key, "planted.md", "# Planted\n\nPlanted text.\n"),
    ]
    for response in refused:
        assert _error(response) == (403, "insufficient_scope"), response.text
        assert "'documents' scope" in response.json()["error"]["message"]
    assert secured_gateway.counts() == before


def test_a_key_without_the_ask_scope_cannot_ask(secured_gateway: SecuredGateway, keys: Keys) -> None:
    url, key = secured_gateway.url, keys.documents_only
    assert _error(secured_gateway.post_session(key)) == (403, "insufficient_scope")
    chat = httpx.post(
        f"{url}/v1/chat", headers=_auth(key), json={"message": "What is the relay?"}, timeout=30
    )
    assert _error(chat) == (403, "insufficient_scope")
    completion = httpx.post(
        f"{url}/v1/chat/completions",
        headers=_auth(key),
        json={"messages": [{"role": "user", "content": "What is the relay?"}]},
        timeout=30,
    )
    assert _error(completion) == (403, "insufficient_scope")
    assert httpx.get(f"{url}/v1/documents", headers=_auth(key), timeout=30).status_code == 200


def test_a_collection_the_key_may_not_use_is_refused_with_collection_forbidden(
    secured_gateway: SecuredGateway, keys: Keys
) -> None:
    before = secured_gateway.counts()
    url, key = secured_gateway.url, keys.handbook_only
    refused = [
        httpx.get(f"{url}/v1/documents", headers=_auth(key), params={"collection": "default"}, timeout=30),
        _upload(secured_gateway, key, "planted.md", "# Planted\n\nPlanted.\n", collection="default"),
        secured_gateway.post_session(key, {"collection": "default"}),
        httpx.post(
            f"{url}/v1/chat",
            headers=_auth(key),
            json={"message": "What?", "collection": "default"},
            timeout=30,
        ),
        httpx.post(
            f"{url}/v1/chat/completions",
            headers=_auth(key),
            json={"messages": [{"role": "user", "content": "What?"}], "collection": "default"},
            timeout=30,
        ),
    ]
    for response in refused:
        assert _error(response) == (403, "collection_forbidden"), response.text
        assert "may not use collection 'default'" in response.json()["error"]["message"]
    assert secured_gateway.counts() == before
    # Its own collection is its default: listing it works, and is empty.
    listed = httpx.get(f"{url}/v1/documents", headers=_auth(key), timeout=30)
    assert listed.status_code == 200
    assert listed.json()["documents"] == []


def _chat_sources(gateway: SecuredGateway, key: str, question: str) -> list[dict[str, Any]]:
    """The sources event of a chat answer (read before the answer is generated)."""
    with httpx.stream(
        "POST", f"{gateway.url}/v1/chat", headers=_auth(key), json={"message": question}, timeout=240
    ) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: ") and '"type":"sources"' in line.replace(" ", ""):
                sources: list[dict[str, Any]] = json.loads(line[6:])["sources"]
                return sources
    raise AssertionError("no sources event")


def test_chat_retrieves_only_from_the_callers_tenant(
    secured_gateway: SecuredGateway, keys: Keys, uploaded: dict[str, int]
) -> None:
    question = "How often does the quorvex relay rotate its signing keys?"
    mine = _chat_sources(secured_gateway, keys.a, question)
    assert any("quorvex" in s["snippet"] for s in mine), mine
    theirs = _chat_sources(secured_gateway, keys.b, question)
    assert theirs, "B's own document is still found"
    assert not any("quorvex" in s["snippet"] for s in theirs), theirs
    assert not any(
        "quorvex" in s["snippet"]
        for s in _chat_sources(secured_gateway, secured_gateway.new_key("first"), question)
    )


def test_a_voice_session_retrieves_only_from_its_tenant(
    secured_gateway: SecuredGateway, keys: Keys, uploaded: dict[str, int]
) -> None:
    async def sources_of(key: str) -> list[dict[str, Any]]:
        async with voice(secured_gateway, key) as v:
            await v.start()
            await v.send(
                {
                    "type": "text",
                    "text": "How often does the quorvex relay rotate its signing keys?",
                    "speak": False,
                }
            )
            events = await v.until("turn.done")
            return [s for e in events if e["type"] == "sources" for s in e["sources"]]

    mine, theirs = asyncio.run(sources_of(keys.a)), asyncio.run(sources_of(keys.b))
    assert any("quorvex" in s["snippet"] for s in mine), mine
    assert theirs
    assert not any("quorvex" in s["snippet"] for s in theirs), theirs


# ---- `voicebot keys` ------------------------------------------------------------------------------


def _keys_cli(gateway: SecuredGateway, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, VOICEBOT_DATABASE_URL=gateway.dsn)
    env.pop("VOICEBOT_AUTH_SECRET", None)
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "keys", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_voicebot_keys_creates_a_tenants_key_with_scopes_and_lists_them(
    secured_gateway: SecuredGateway,
) -> None:
    tenant = f"cli-{uuid.uuid4().hex[:8]}"
    created = _keys_cli(
        secured_gateway, "create", "kiosk", "--tenant", tenant, "--scopes", "ask", "--collections", "faq"
    )
    assert created.returncode == 0, created.stderr
    assert f"created tenant '{tenant}'" in created.stderr
    assert "with scopes ask" in created.stderr
    key = created.stdout.strip()
    assert secured_gateway.query(
        "SELECT t.name, k.scopes, k.collections, k.default_collection FROM api_keys k"
        " JOIN tenants t ON t.id = k.tenant_id WHERE k.prefix = %s",
        key.split("_")[1],
    ) == [(tenant, ["ask"], ["faq"], "faq")]
    assert secured_gateway.post_session(key).status_code == 200
    assert _error(httpx.get(f"{secured_gateway.url}/v1/documents", headers=_auth(key), timeout=30)) == (
        403,
        "insufficient_scope",
    )

    listed = _keys_cli(secured_gateway, "list")
    assert listed.returncode == 0, listed.stderr
    [line] = [line for line in listed.stdout.splitlines() if f"vb_{key.split('_')[1]}_" in line]
    assert tenant in line.split()
    assert "ask" in line.split()
    assert "faq" in line.split()
    assert "TENANT" in listed.stdout.splitlines()[0]
    assert "SCOPES" in listed.stdout.splitlines()[0]
    rows = json.loads(_keys_cli(secured_gateway, "list", "--json").stdout)
    [row] = [r for r in rows if r["prefix"].startswith(f"vb_{key.split('_')[1]}_")]
    assert (row["tenant"], row["scopes"], row["collections"], row["default_collection"]) == (
        tenant,
        "ask",
        "faq",
        "faq",
    )

    # A second key for the same tenant finds it; a bad grant is refused before anything is stored.
    again = _keys_cli(secured_gateway, "create", "docs", "--tenant", tenant, "--scopes", "documents")
    assert again.returncode == 0, again.stderr
    assert "created tenant" not in again.stderr
    before = secured_gateway.counts()
    refused = _keys_cli(secured_gateway, "create", "bad", "--tenant", tenant, "--scopes", "ask,root")
    assert refused.returncode == 2
    assert "root" in refused.stderr
    assert secured_gateway.counts() == before
