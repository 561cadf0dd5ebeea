"""The document store: reads and writes of `documents` and `chunks`.

The gateway's documents API uses `list_documents`, `get_document` and `delete_document`; the
ingest pipeline writes through `write_document`, which replaces a document and all its chunks in
one transaction, so readers see either the old version or the new one, never a mix.

Every function takes a psycopg `AsyncConnection` in either autocommit or transaction mode and
the tenant it works for, filters on that tenant, and runs its statements inside
`tenant_scope` (ingest/tenancy.py): a transaction (a savepoint if one is already open) in which
row-level security hides every other tenant's rows, should a filter here be missing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from ingest.tenancy import ensure_collection, tenant_scope

# The text search configuration used both to index chunks and to parse queries; they must match.
TS_CONFIG = "english"

WriteStatus = Literal["ingested", "replaced", "unchanged", "duplicate"]


@dataclass(frozen=True)
class DocumentInfo:
    id: int
    tenant_id: int
    collection: str
    source: str
    title: str
    content_hash: str
    format: str
    chunk_count: int
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class ChunkRow:
    """A chunk ready to be stored: its place, text and embedding."""

    position: int
    heading_path: Sequence[str]
    text: str
    token_count: int
    embedding: npt.NDArray[np.float32]
    page: int | None = None  # the PDF page the chunk starts on


@dataclass(frozen=True)
class WriteResult:
    status: WriteStatus
    document_id: int
    duplicate_of: str | None = None


_SELECT_DOCUMENTS = sql.SQL(
    "SELECT id, tenant_id, collection, source_uri AS source, title, content_hash, format, chunk_count, metadata,"
    " created_at, updated_at FROM documents"
)


def vector_literal(vector: npt.NDArray[np.float32]) -> str:
    """pgvector's text form, so no type registration is needed on the caller's connection."""
    return "[" + ",".join(f"{x:.8g}" for x in vector.tolist()) + "]"


def _info(row: Mapping[str, Any]) -> DocumentInfo:
    return DocumentInfo(**row)


async def list_documents(
    conn: psycopg.AsyncConnection[Any], collection: str | None = None, *, tenant: int
) -> list[DocumentInfo]:
    """Every document of `tenant`, or those of one collection, ordered by collection then source."""
    async with tenant_scope(conn, tenant), conn.cursor(row_factory=dict_row) as cur:
        if collection is None:
            await cur.execute(
                _SELECT_DOCUMENTS + sql.SQL(" WHERE tenant_id = %s ORDER BY collection, source_uri"),
                (tenant,),
            )
        else:
            await cur.execute(
                _SELECT_DOCUMENTS + sql.SQL(" WHERE tenant_id = %s AND collection = %s ORDER BY source_uri"),
                (tenant, collection),
            )
        return [_info(row) for row in await cur.fetchall()]


async def get_document(
    conn: psycopg.AsyncConnection[Any], document_id: int, *, tenant: int
) -> DocumentInfo | None:
    """The document with this id, if it is `tenant`'s."""
    async with tenant_scope(conn, tenant), conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            _SELECT_DOCUMENTS + sql.SQL(" WHERE id = %s AND tenant_id = %s"), (document_id, tenant)
        )
        row = await cur.fetchone()
        return _info(row) if row else None


async def find_document(
    conn: psycopg.AsyncConnection[Any], collection: str, source: str, *, tenant: int
) -> DocumentInfo | None:
    async with tenant_scope(conn, tenant), conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            _SELECT_DOCUMENTS + sql.SQL(" WHERE tenant_id = %s AND collection = %s AND source_uri = %s"),
            (tenant, collection, source),
        )
        row = await cur.fetchone()
        return _info(row) if row else None


async def find_by_hash(
    conn: psycopg.AsyncConnection[Any], collection: str, content_hash: str, *, tenant: int
) -> DocumentInfo | None:
    """The oldest document of `tenant`'s `collection` with this content, if any."""
    async with tenant_scope(conn, tenant), conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            _SELECT_DOCUMENTS
            + sql.SQL(" WHERE tenant_id = %s AND collection = %s AND content_hash = %s ORDER BY id LIMIT 1"),
            (tenant, collection, content_hash),
        )
        row = await cur.fetchone()
        return _info(row) if row else None


async def delete_document(
    conn: psycopg.AsyncConnection[Any],
    document_id: int,
    *,
    tenant: int,
    collections: Sequence[str] | None = None,
) -> bool:
    """Deletes a document of `tenant` (in one of `collections`, when given) and its chunks;
    False when there was no such document."""
    allowed = list(collections) if collections is not None else None
    async with tenant_scope(conn, tenant):
        cur = await conn.execute(
            "DELETE FROM documents WHERE id = %s AND tenant_id = %s"
            " AND (%s::text[] IS NULL OR collection = ANY(%s::text[]))",
            (document_id, tenant, allowed, allowed),
        )
        return cur.rowcount > 0


async def delete_sources(
    conn: psycopg.AsyncConnection[Any], collection: str, sources: Sequence[str], *, tenant: int
) -> list[str]:
    """Deletes the documents of `tenant`'s `collection` with these sources; returns the sources deleted."""
    if not sources:
        return []
    async with tenant_scope(conn, tenant):
        cur = await conn.execute(
            "DELETE FROM documents WHERE tenant_id = %s AND collection = %s AND source_uri = ANY(%s)"
            " RETURNING source_uri",
            (tenant, collection, list(sources)),
        )
        return sorted(row[0] for row in await cur.fetchall())


async def list_sources(conn: psycopg.AsyncConnection[Any], collection: str, *, tenant: int) -> list[str]:
    async with tenant_scope(conn, tenant):
        cur = await conn.execute(
            "SELECT source_uri FROM documents WHERE tenant_id = %s AND collection = %s", (tenant, collection)
        )
        return [row[0] for row in await cur.fetchall()]


_INSERT_CHUNK = """
INSERT INTO chunks (document_id, tenant_id, collection, position, heading_path, text, token_count, page, embedding, tsv)
VALUES (
    %(document_id)s, %(tenant_id)s, %(collection)s, %(position)s, %(heading_path)s, %(text)s, %(token_count)s, %(page)s,
    %(embedding)s::vector,
    setweight(to_tsvector(%(ts_config)s::regconfig, %(headings)s), 'A')
    || setweight(to_tsvector(%(ts_config)s::regconfig, %(title)s), 'B')
    || to_tsvector(%(ts_config)s::regconfig, %(text)s)
)
"""


async def write_document(
    conn: psycopg.AsyncConnection[Any],
    *,
    tenant: int,
    collection: str,
    source: str,
    title: str,
    content_hash: str,
    format: str,
    metadata: Mapping[str, Any],
    chunks: Sequence[ChunkRow],
) -> WriteResult:
    """Stores a document of `tenant` with its chunks in one transaction, replacing any previous
    version; the collection is created on its first document.

    Serialised per (tenant, collection, source) and per (tenant, collection, content) with transaction-scoped
    advisory locks, so concurrent ingests of the same files end with one copy of each: the loser
    finds the winner's row and reports `unchanged` (same source) or `duplicate` (same content
    already stored under another source, for a source not stored yet).
    """
    pipeline = str(metadata.get("pipeline", ""))
    async with tenant_scope(conn, tenant):
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 1)), pg_advisory_xact_lock(hashtextextended(%s, 2))",
            (f"{tenant}\x1f{collection}\x1f{source}", f"{tenant}\x1f{collection}\x1f{content_hash}"),
        )
        cur = await conn.execute(
            "SELECT id, content_hash, metadata->>'pipeline' FROM documents"
            " WHERE tenant_id = %s AND collection = %s AND source_uri = %s FOR UPDATE",
            (tenant, collection, source),
        )
        existing = await cur.fetchone()
        if existing is not None and existing[1] == content_hash and existing[2] == pipeline:
            return WriteResult("unchanged", existing[0])
        if existing is None:
            cur = await conn.execute(
                "SELECT id, source_uri FROM documents WHERE tenant_id = %s AND collection = %s"
                " AND content_hash = %s ORDER BY id LIMIT 1",
                (tenant, collection, content_hash),
            )
            twin = await cur.fetchone()
            if twin is not None:
                return WriteResult("duplicate", twin[0], duplicate_of=twin[1])
            await ensure_collection(conn, tenant, collection)
            cur = await conn.execute(
                "INSERT INTO documents (tenant_id, collection, source_uri, title, content_hash, format, metadata,"
                " chunk_count) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
                (tenant, collection, source, title, content_hash, format, json.dumps(metadata), len(chunks)),
            )
            row = await cur.fetchone()
            assert row is not None
            document_id: int = row[0]
            status: WriteStatus = "ingested"
        else:
            document_id = existing[0]
            status = "replaced"
            await conn.execute(
                "DELETE FROM chunks WHERE document_id = %s AND tenant_id = %s", (document_id, tenant)
            )
            await conn.execute(
                "UPDATE documents SET title = %s, content_hash = %s, format = %s, metadata = %s,"
                " chunk_count = %s, updated_at = now() WHERE id = %s AND tenant_id = %s",
                (title, content_hash, format, json.dumps(metadata), len(chunks), document_id, tenant),
            )
        if chunks:
            async with conn.cursor() as cur:
                await cur.executemany(
                    _INSERT_CHUNK,
                    [
                        {
                            "document_id": document_id,
                            "tenant_id": tenant,
                            "collection": collection,
                            "position": chunk.position,
                            "heading_path": list(chunk.heading_path),
                            "text": chunk.text,
                            "token_count": chunk.token_count,
                            "page": chunk.page,
                            "embedding": vector_literal(chunk.embedding),
                            "headings": " ".join(chunk.heading_path),
                            "title": title,
                            "ts_config": TS_CONFIG,
                        }
                        for chunk in chunks
                    ],
                )
        return WriteResult(status, document_id)
