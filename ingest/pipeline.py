"""Ingestion: files -> parsed documents -> chunks -> embeddings -> the store, idempotently.

Per file: read and hash it; if the store already holds this content for this source (and the
same chunker version) it is skipped without parsing. Otherwise it is parsed and chunked in a
worker process under the parsing limits (ingest.parsing: the caller's event loop never parses),
embedded through the `Embedder`, and written by `store.write_document` in one transaction. A run killed at any point leaves every document either fully old or fully new; the
next run redoes what was not committed. Files that cannot be parsed are reported and skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlparse

import psycopg
from psycopg_pool import AsyncConnectionPool

from ingest import store
from ingest.chunking import CHUNKER_VERSION
from ingest.embedding import Embedder
from ingest.errors import DocumentError, IngestError, StoreUnavailable, UnsupportedFormat
from ingest.limits import DEFAULT_LIMITS, ParseLimits
from ingest.loaders import is_supported
from ingest.parsing import ParsePool
from ingest.tenancy import DEFAULT_COLLECTION, DEFAULT_TENANT_ID
from ingest.tokens import default_counter

log = logging.getLogger(__name__)

FileStatus = Literal["ingested", "replaced", "unchanged", "duplicate", "failed"]
ProgressCallback = Callable[["FileResult", int, int], None]
DEFAULT_CONCURRENCY = 4


@dataclass(frozen=True)
class FileResult:
    """What happened to one file. `error` is set when status is "failed", with `error_code`
    (`unsupported_format`, `unreadable`, `limit_exceeded`, `parser_crashed`, `rejected`) and,
    for `limit_exceeded`, `error_limit` (which limit: ingest.errors.ParseLimitExceeded)."""

    source: str
    status: FileStatus
    document_id: int | None = None
    chunks: int = 0
    title: str | None = None
    error: str | None = None
    duplicate_of: str | None = None
    path: Path | None = None
    error_code: str | None = None
    error_limit: str | None = None


def failed(source: str, error: DocumentError, path: Path | None = None) -> FileResult:
    """The result of a file refused with `error`."""
    return FileResult(
        source,
        "failed",
        error=str(error),
        path=path,
        error_code=error.code,
        error_limit=getattr(error, "limit", None),
    )


@dataclass
class IngestReport:
    collection: str
    results: list[FileResult] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    def _count(self, *statuses: FileStatus) -> int:
        return sum(1 for r in self.results if r.status in statuses)

    @property
    def files(self) -> int:
        return len(self.results)

    @property
    def ingested(self) -> int:
        """New documents written."""
        return self._count("ingested")

    @property
    def replaced(self) -> int:
        """Changed documents rewritten."""
        return self._count("replaced")

    @property
    def skipped(self) -> int:
        """Unchanged files and duplicates of content already stored."""
        return self._count("unchanged", "duplicate")

    @property
    def failed(self) -> list[FileResult]:
        return [r for r in self.results if r.status == "failed"]

    @property
    def chunks(self) -> int:
        """Chunks written by this run."""
        return sum(r.chunks for r in self.results if r.status in ("ingested", "replaced"))

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> dict[str, Any]:
        return {
            "collection": self.collection,
            "files": self.files,
            "ingested": self.ingested,
            "replaced": self.replaced,
            "skipped": self.skipped,
            "failed": len(self.failed),
            "pruned": len(self.pruned),
            "chunks": self.chunks,
            "elapsed_s": round(self.elapsed_s, 3),
        }


def source_for(path: Path) -> str:
    """The source URI a file is stored under: its absolute file:// URI."""
    return path.resolve().as_uri()


def pipeline_version() -> str:
    """Stored with each document: a change (chunker, tokenizer) re-ingests unchanged files."""
    return f"{CHUNKER_VERSION}/{default_counter().name}"


@dataclass(frozen=True)
class _Prepared:
    title: str
    format: str
    metadata: dict[str, Any]
    chunks: list[store.ChunkRow]


async def _prepare(data: bytes, path: Path, embedder: Embedder, parser: ParsePool) -> _Prepared:
    doc = await parser.prepare(data, path)
    metadata = {**doc.metadata, "bytes": len(data), "pipeline": pipeline_version()}
    if not doc.chunks:
        return _Prepared(doc.title, doc.format, metadata, [])
    vectors = await embedder.embed([c.embedding_input for c in doc.chunks])
    rows = [
        store.ChunkRow(
            position=i,
            heading_path=list(chunk.heading_path),
            text=chunk.text,
            token_count=chunk.token_count,
            embedding=vectors[i],
            page=chunk.page,
        )
        for i, chunk in enumerate(doc.chunks)
    ]
    return _Prepared(doc.title, doc.format, metadata, rows)


async def _ingest_bytes(
    conn_source: _Connections,
    embedder: Embedder,
    parser: ParsePool,
    data: bytes,
    path: Path,
    source: str,
    collection: str,
    tenant: int,
) -> FileResult:
    content_hash = hashlib.sha256(data).hexdigest()
    # Cheap checks first, without parsing or embedding; write_document repeats them under a lock.
    async with conn_source.connection() as conn:
        existing = await store.find_document(conn, collection, source, tenant=tenant)
        if existing is not None:
            if (
                existing.content_hash == content_hash
                and existing.metadata.get("pipeline") == pipeline_version()
            ):
                return FileResult(source, "unchanged", existing.id, title=existing.title, path=path)
        else:
            twin = await store.find_by_hash(conn, collection, content_hash, tenant=tenant)
            if twin is not None:
                return FileResult(
                    source, "duplicate", twin.id, title=twin.title, duplicate_of=twin.source, path=path
                )
    prepared = await _prepare(data, path, embedder, parser)
    async with conn_source.connection() as conn:
        written = await store.write_document(
            conn,
            tenant=tenant,
            collection=collection,
            source=source,
            title=prepared.title,
            content_hash=content_hash,
            format=prepared.format,
            metadata=prepared.metadata,
            chunks=prepared.chunks,
        )
    written_chunks = len(prepared.chunks) if written.status in ("ingested", "replaced") else 0
    return FileResult(
        source,
        written.status,
        written.document_id,
        written_chunks,
        prepared.title,
        duplicate_of=written.duplicate_of,
        path=path,
    )


class _Connections:
    """One connection shared under a lock, or a pool: `connection()` yields a conn for one unit of work."""

    def __init__(
        self, conn: psycopg.AsyncConnection[Any] | None, pool: AsyncConnectionPool[Any] | None
    ) -> None:
        self._conn = conn
        self._pool = pool
        self._lock = asyncio.Lock()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        try:
            if self._pool is not None:
                async with self._pool.connection() as conn:
                    yield conn
            else:
                assert self._conn is not None
                async with self._lock:
                    yield self._conn
        except psycopg.OperationalError as e:
            raise StoreUnavailable(f"PostgreSQL connection failed: {e}") from e


async def ingest_file(
    conn: psycopg.AsyncConnection[Any],
    embedder: Embedder,
    path: Path,
    *,
    source: str | None = None,
    collection: str = DEFAULT_COLLECTION,
    tenant: int = DEFAULT_TENANT_ID,
    parser: ParsePool | None = None,
) -> FileResult:
    """Ingests one file (an upload) into `tenant`'s `collection` under `source` (default: its file:// URI).

    It is parsed by `parser` (the gateway keeps one pool; without one, a worker is started for
    this file). Parse failures and refusals come back as a FileResult with status "failed", the
    reason and its code; an unreachable store or embedding model raises StoreUnavailable /
    EmbeddingUnavailable. Nothing is stored for a failed file.
    """
    source = source or source_for(path)
    try:
        data = await asyncio.to_thread(path.read_bytes)
    except OSError as e:
        return FileResult(
            source, "failed", error=f"cannot read: {e.strerror or e}", path=path, error_code="unreadable"
        )
    async with contextlib.AsyncExitStack() as stack:
        if parser is None:
            parser = await stack.enter_async_context(ParsePool())
        try:
            return await _ingest_bytes(
                _Connections(conn, None), embedder, parser, data, path, source, collection, tenant
            )
        except DocumentError as e:
            return failed(source, e, path)


def discover_files(paths: Sequence[Path]) -> tuple[list[Path], list[FileResult], list[Path]]:
    """Files to ingest under `paths` (sorted, each once), failures for paths that cannot be used,
    and the directory roots that were walked (the scope of --prune)."""
    files: dict[Path, None] = {}
    failures: list[FileResult] = []
    roots: list[Path] = []
    for given in paths:
        path = given.resolve()
        if path.is_dir():
            roots.append(path)
            for dirpath, dirnames, filenames in os.walk(path):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for name in sorted(filenames):
                    candidate = Path(dirpath) / name
                    if not name.startswith(".") and is_supported(candidate) and candidate.is_file():
                        files.setdefault(candidate, None)
        elif path.is_file():
            if is_supported(path):
                files.setdefault(path, None)
            else:
                reason = str(
                    UnsupportedFormat(f"{path.name}: unsupported file type {path.suffix or '(none)'!r}")
                )
                failures.append(FileResult(path.as_uri(), "failed", error=reason, path=path))
        else:
            failures.append(FileResult(path.as_uri(), "failed", error="no such file or directory", path=path))
    return sorted(files), failures, roots


async def ingest_paths(
    conninfo_or_pool: str | AsyncConnectionPool[Any],
    embedder: Embedder,
    paths: Sequence[Path],
    *,
    collection: str = DEFAULT_COLLECTION,
    tenant: int = DEFAULT_TENANT_ID,
    prune: bool = False,
    progress: ProgressCallback | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    limits: ParseLimits = DEFAULT_LIMITS,
) -> IngestReport:
    """Ingests every supported file under `paths` into `tenant`'s `collection` (default: the first tenant's).

    With `prune`, documents of the collection whose source lies under one of the given
    directories (or is one of the given files) and no longer exists are deleted first.
    Up to `concurrency` files are prepared and embedded at once (Triton batches their requests),
    parsed by worker processes under `limits` (at most one per CPU); writes are one transaction
    per file. Raises StoreUnavailable or EmbeddingUnavailable when a
    service is down (what was committed stays, consistent); per-file problems are in the report.
    """
    started = time.perf_counter()
    report = IngestReport(collection)
    files, failures, roots = discover_files(paths)
    total = len(files) + len(failures)
    done = 0

    def record(result: FileResult) -> None:
        nonlocal done
        done += 1
        report.results.append(result)
        if result.status == "failed":
            log.warning("ingest failed for %s: %s", result.source, result.error)
        else:
            log.debug("ingest %s: %s (%d chunks)", result.status, result.source, result.chunks)
        if progress is not None:
            progress(result, done, total)

    workers = max(1, min(concurrency, os.cpu_count() or 1))
    async with _open(conninfo_or_pool) as connections, ParsePool(limits, workers=workers) as parser:
        if prune:
            report.pruned = await _prune(connections, tenant, collection, roots, files)
        for failure in failures:
            record(failure)
        semaphore = asyncio.Semaphore(max(1, concurrency))

        async def one(path: Path) -> None:
            async with semaphore:
                source = source_for(path)
                try:
                    data = await asyncio.to_thread(path.read_bytes)
                    result = await _ingest_bytes(
                        connections, embedder, parser, data, path, source, collection, tenant
                    )
                except OSError as e:
                    result = FileResult(
                        source,
                        "failed",
                        error=f"cannot read: {e.strerror or e}",
                        path=path,
                        error_code="unreadable",
                    )
                except DocumentError as e:
                    result = failed(source, e, path)
                except psycopg.DataError as e:  # content PostgreSQL refuses; the file, not the store
                    result = FileResult(
                        source,
                        "failed",
                        error=f"rejected by the store: {e}",
                        path=path,
                        error_code="rejected",
                    )
                record(result)

        # Files whose content repeats an earlier file's (in path order) go second, so the first
        # copy is the one stored and the others are reported as its duplicates, deterministically.
        originals, repeats = await asyncio.to_thread(_split_repeats, files)
        for batch in (originals, repeats):
            try:
                async with asyncio.TaskGroup() as group:
                    for path in batch:
                        group.create_task(one(path))
            except ExceptionGroup as eg:
                # A service went away (the others were cancelled): raise the first typed error.
                first = next((e for e in eg.exceptions if isinstance(e, IngestError)), None)
                if first is not None:
                    raise first from eg
                raise
    report.results.sort(key=lambda r: r.source)
    report.elapsed_s = time.perf_counter() - started
    return report


def _split_repeats(files: Sequence[Path]) -> tuple[list[Path], list[Path]]:
    seen: set[str] = set()
    originals: list[Path] = []
    repeats: list[Path] = []
    for path in files:
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            originals.append(path)  # reported when it is read again
            continue
        (repeats if digest in seen else originals).append(path)
        seen.add(digest)
    return originals, repeats


@asynccontextmanager
async def _open(conninfo_or_pool: str | AsyncConnectionPool[Any]) -> AsyncIterator[_Connections]:
    if isinstance(conninfo_or_pool, AsyncConnectionPool):
        yield _Connections(None, conninfo_or_pool)
        return
    try:
        conn = await psycopg.AsyncConnection.connect(conninfo_or_pool, autocommit=True)
    except psycopg.OperationalError as e:
        raise StoreUnavailable(f"cannot connect to PostgreSQL: {e}") from e
    async with conn:
        yield _Connections(conn, None)


def _uri_path(uri: str) -> Path:
    return Path(unquote(urlparse(uri).path))


async def _prune(
    connections: _Connections, tenant: int, collection: str, roots: Sequence[Path], files: Sequence[Path]
) -> list[str]:
    """Deletes the documents stored from files under the walked directories that no longer exist.

    A path given on the command line that does not exist is reported as failed and prunes
    nothing: a typo must not empty a collection."""
    present = {source_for(f) for f in files}
    scopes = [root.as_uri().rstrip("/") + "/" for root in roots]
    async with connections.connection() as conn:
        stored = await store.list_sources(conn, collection, tenant=tenant)
        gone = [
            s
            for s in stored
            if s not in present and any(s.startswith(scope) for scope in scopes) and not _uri_path(s).exists()
        ]
        pruned = await store.delete_sources(conn, collection, gone, tenant=tenant)
    for source in pruned:
        log.info("pruned %s", source)
    return pruned


__all__ = [
    "FileResult",
    "IngestError",
    "IngestReport",
    "discover_files",
    "ingest_file",
    "ingest_paths",
    "source_for",
]
