"""The document store: reads and writes of `documents` and `chunks`.

The gateway's documents API uses `list_documents`, `get_document` and `delete_document`; the
ingest pipeline writes through `write_document`, which replaces a document and all its chunks in
one transaction, so readers see either the old version or the new one, never a mix.

Every function takes a psycopg `AsyncConnection` in either autocommit or transaction mode and
runs its statements inside `conn.transaction()` (a savepoint if a transaction is already open).
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

# The text search configuration used both to index chunks and to parse queries; they must match.
TS_CONFIG = "english"

WriteStatus = Literal["ingested", "replaced", "unchanged", "duplicate"]


@dataclass(frozen=True)
class DocumentInfo:
    id: int
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
    "SELECT id, collection, source_uri AS source, title, content_hash, format, chunk_count, metadata,"
    " created_at, updated_at FROM documents"
)


def vector_literal(vector: npt.NDArray[np.float32]) -> str:
    """pgvector's text form, so no type registration is needed on the caller's connection."""
    return "[" + ",".join(f"{x:.8g}" for x in vector.tolist()) + "]"


def _info(row: Mapping[str, Any]) -> DocumentInfo:
    return DocumentInfo(**row)


async def list_documents(
    conn: psycopg.AsyncConnection[Any], collection: str | None = None
) -> list[DocumentInfo]:
    """Every document, or those of one collection, ordered by collection then source."""
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        if collection is None:
            await cur.execute(_SELECT_DOCUMENTS + sql.SQL(" ORDER BY collection, source_uri"))
        else:
            await cur.execute(
                _SELECT_DOCUMENTS + sql.SQL(" WHERE collection = %s ORDER BY source_uri"),
                (collection,),
            )
        return [_info(row) for row in await cur.fetchall()]


async def get_document(conn: psycopg.AsyncConnection[Any], document_id: int) -> DocumentInfo | None:
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_SELECT_DOCUMENTS + sql.SQL(" WHERE id = %s"), (document_id,))
        row = await cur.fetchone()
        return _info(row) if row else None


async def find_document(
    conn: psycopg.AsyncConnection[Any], collection: str, source: str
) -> DocumentInfo | None:
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            _SELECT_DOCUMENTS + sql.SQL(" WHERE collection = %s AND source_uri = %s"),
            (collection, source),
        )
        row = await cur.fetchone()
        return _info(row) if row else None


async def find_by_hash(
    conn: psycopg.AsyncConnection[Any], collection: str, content_hash: str
) -> DocumentInfo | None:
    """The oldest document of `collection` with this content, if any."""
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            _SELECT_DOCUMENTS + sql.SQL(" WHERE collection = %s AND content_hash = %s ORDER BY id LIMIT 1"),
            (collection, content_hash),
        )
        row = await cur.fetchone()
        return _info(row) if row else None


async def delete_document(conn: psycopg.AsyncConnection[Any], document_id: int) -> bool:
    """Deletes a document and its chunks; False when there was no such document."""
    async with conn.transaction():
        cur = await conn.execute("DELETE FROM documents WHERE id = %s", (document_id,))
        return cur.rowcount > 0


async def delete_sources(
    conn: psycopg.AsyncConnection[Any], collection: str, sources: Sequence[str]
) -> list[str]:
    """Deletes the documents of `collection` with these sources; returns the sources deleted."""
    if not sources:
        return []
    async with conn.transaction():
        cur = await conn.execute(
            "DELETE FROM documents WHERE collection = %s AND source_uri = ANY(%s) RETURNING source_uri",
            (collection, list(sources)),
        )
        return sorted(row[0] for row in await cur.fetchall())


async def list_sources(conn: psycopg.AsyncConnection[Any], collection: str) -> list[str]:
    async with conn.transaction():
        cur = await conn.execute("SELECT source_uri FROM documents WHERE collection = %s", (collection,))
        return [row[0] for row in await cur.fetchall()]


_INSERT_CHUNK = """
INSERT INTO chunks (document_id, collection, position, heading_path, text, token_count, page, embedding, tsv)
VALUES (
    %(document_id)s, %(collection)s, %(position)s, %(heading_path)s, %(text)s, %(token_count)s, %(page)s,
    %(embedding)s::vector,
    setweight(to_tsvector(%(ts_config)s::regconfig, %(headings)s), 'A')
    || setweight(to_tsvector(%(ts_config)s::regconfig, %(title)s), 'B')
    || to_tsvector(%(ts_config)s::regconfig, %(text)s)
)
"""


async def write_document(
    conn: psycopg.AsyncConnection[Any],
    *,
    collection: str,
    source: str,
    title: str,
    content_hash: str,
    format: str,
    metadata: Mapping[str, Any],
    chunks: Sequence[ChunkRow],
) -> WriteResult:
    """Stores a document with its chunks in one transaction, replacing any previous version.

    Serialised per (collection, source) and per (collection, content) with transaction-scoped
    advisory locks, so concurrent ingests of the same files end with one copy of each: the loser
    finds the winner's row and reports `unchanged` (same source) or `duplicate` (same content
    already stored under another source, for a source not stored yet).
    """
    pipeline = str(metadata.get("pipeline", ""))
    async with conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 1)), pg_advisory_xact_lock(hashtextextended(%s, 2))",
            (f"{collection}\x1f{source}", f"{collection}\x1f{content_hash}"),
        )
        cur = await conn.execute(
            "SELECT id, content_hash, metadata->>'pipeline' FROM documents"
            " WHERE collection = %s AND source_uri = %s FOR UPDATE",
            (collection, source),
        )
        existing = await cur.fetchone()
        if existing is not None and existing[1] == content_hash and existing[2] == pipeline:
            return WriteResult("unchanged", existing[0])
        if existing is None:
            cur = await conn.execute(
                "SELECT id, source_uri FROM documents WHERE collection = %s AND content_hash = %s"
                " ORDER BY id LIMIT 1",
                (collection, content_hash),
            )
            twin = await cur.fetchone()
            if twin is not None:
                return WriteResult("duplicate", twin[0], duplicate_of=twin[1])
            cur = await conn.execute(
                "INSERT INTO documents (collection, source_uri, title, content_hash, format, metadata, chunk_count)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
                (collection, source, title, content_hash, format, json.dumps(metadata), len(chunks)),
            )
            row = await cur.fetchone()
            assert row is not None
            document_id: int = row[0]
            status: WriteStatus = "ingested"
        else:
            document_id = existing[0]
            status = "replaced"
            await conn.execute("DELETE FROM chunks WHERE document_id = %s", (document_id,))
            await conn.execute(
                "UPDATE documents SET title = %s, content_hash = %s, format = %s, metadata = %s,"
                " chunk_count = %s, updated_at = now() WHERE id = %s",
                (title, content_hash, format, json.dumps(metadata), len(chunks), document_id),
            )
        if chunks:
            async with conn.cursor() as cur:
                await cur.executemany(
                    _INSERT_CHUNK,
                    [
                        {
                            "document_id": document_id,
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
