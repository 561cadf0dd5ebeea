"""The documents API on the ingest package: list, upload, read and delete documents.

Every route needs a key with the `documents` scope (403 `insufficient_scope`) and works only in
the caller's tenant, in the collections its key may use (403 `collection_forbidden` for one it
names; a document elsewhere is 404, as if it did not exist). The store enforces the tenant too,
under row-level security (ingest/tenancy.py).

Uploads go through the same pipeline as `voicebot ingest` (parse and chunk in a worker process
under the parsing limits, embed, one transaction per file) and are stored under `upload://<collection>/<filename>`, so uploading a file again is
`unchanged`, and a changed file under the same name replaces the previous version.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import psycopg
import psycopg_pool
from fastapi import APIRouter, File, Form, Query, Response, UploadFile
from fastapi import Path as PathParam
from pydantic import BaseModel, Field

from ingest import store
from ingest.embedding import Embedder
from ingest.errors import EmbeddingUnavailable
from ingest.errors import StoreUnavailable as IngestStoreUnavailable
from ingest.loaders import SUPPORTED_SUFFIXES, is_supported
from ingest.parsing import ParsePool
from ingest.pipeline import ingest_file
from orchestrator.api.deps import LibrarianDep, State
from orchestrator.api.responses import error_responses
from orchestrator.api.uploads import LimitedUploadRoute, sanitize_filename, upload_source
from orchestrator.auth import Caller
from orchestrator.errors import ModelUnavailable, NotFound, StoreUnavailable
from orchestrator.protocol import public_source
from orchestrator.state import AppState, Corpus, corpus_of

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/documents", tags=["documents"], route_class=LimitedUploadRoute)

# As the `documents_collection_check` constraint of the schema.
COLLECTION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
MAX_ID = 2**63 - 1  # bigint
STORE_TIMEOUT_S = 5.0
ACCEPTED_SUFFIXES = ", ".join(sorted(SUPPORTED_SUFFIXES))

UploadStatus = Literal["ingested", "unchanged", "failed"]
FileErrorCode = Literal["unsupported_format", "unreadable", "limit_exceeded", "parser_crashed", "rejected"]
ParseLimit = Literal[
    "cpu_time",
    "wall_time",
    "memory",
    "text_chars",
    "pages",
    "pdf_content_bytes",
    "nesting_depth",
    "line_chars",
]


class Document(BaseModel):
    id: int
    title: str
    source: str = Field(
        description="Where it came from: `upload://<collection>/<name>`, or the file's name (ingested from disk)."
    )
    collection: str
    format: str = Field(description="`md`, `txt`, `html` or `pdf`.")
    chunks: int = Field(description="Chunks stored (the units search retrieves).")
    updated_at: datetime = Field(description="When this version was stored (ISO 8601).")


class DocumentList(BaseModel):
    documents: list[Document]


class FileError(BaseModel):
    code: FileErrorCode = Field(
        description="`unsupported_format` (extension not read), `unreadable` (the content could not be "
        "parsed: broken PDF, binary data, no text), `limit_exceeded` (parsing it went past a limit: see "
        "`limit`), `parser_crashed` (the parsing worker died on it), `rejected` (the store refused the "
        "content)."
    )
    message: str
    limit: ParseLimit | None = Field(
        default=None,
        description="For `limit_exceeded`: which limit (`cpu_time`, `wall_time`, `memory`, `text_chars`, "
        "`pages`, `pdf_content_bytes`, `nesting_depth`, `line_chars`; docs/retrieval.md).",
    )


class UploadResult(BaseModel):
    filename: str = Field(description="The file name as stored (sanitised).")
    status: UploadStatus = Field(
        description="`ingested` (new, or a changed version replacing the previous one), `unchanged` "
        "(this content is already stored: under this name, or under another name that `document_id` "
        "points to), `failed` (see `error`)."
    )
    document_id: int | None
    chunks: int
    error: FileError | None = None


class UploadResults(BaseModel):
    results: list[UploadResult]


def _document(info: store.DocumentInfo) -> Document:
    return Document(
        id=info.id,
        title=info.title,
        source=public_source(info.source),  # never the server's paths
        collection=info.collection,
        format=info.format,
        chunks=info.chunk_count,
        updated_at=info.updated_at,
    )


@asynccontextmanager
async def _connection(state: AppState) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """A pooled connection; PostgreSQL down (or the embedding model, during an upload) becomes a 503."""
    if state.pool is None:
        raise StoreUnavailable("no database is configured")
    try:
        async with state.pool.connection(timeout=STORE_TIMEOUT_S) as conn:
            yield conn
    except (psycopg.Error, psycopg_pool.PoolTimeout, IngestStoreUnavailable) as e:
        raise StoreUnavailable("the document store is unavailable") from e
    except EmbeddingUnavailable as e:
        raise ModelUnavailable(f"the embedding model is unavailable: {e}") from e


Collection = Annotated[
    str, Query(pattern=COLLECTION_PATTERN, description="Collection name (letters, digits, `_`, `.`, `-`).")
]
DocumentId = Annotated[int, PathParam(ge=1, le=MAX_ID, description="The document's id.")]


@router.get(
    "",
    summary="List the documents of a collection",
    response_model=DocumentList,
    responses=error_responses(401, 403, 429, 503),
)
async def list_documents(
    state: State, caller: LibrarianDep, collection: Collection | None = None
) -> DocumentList:
    corpus = corpus_of(caller, collection)
    async with _connection(state) as conn:
        documents = await store.list_documents(conn, corpus.collection, tenant=corpus.tenant_id)
    return DocumentList(documents=[_document(d) for d in documents])


async def _ingest_upload(
    conn: psycopg.AsyncConnection[Any],
    embedder: Embedder,
    parser: ParsePool,
    upload: UploadFile,
    folder: Path,
    corpus: Corpus,
) -> UploadResult:
    collection = corpus.collection
    name = sanitize_filename(upload.filename)
    path = folder / name
    if not is_supported(path):
        message = f"{name}: unsupported file type {path.suffix or '(none)'!r}; accepted: {ACCEPTED_SUFFIXES}"
        return UploadResult(
            filename=name, status="failed", document_id=None, chunks=0,
            error=FileError(code="unsupported_format", message=message),
        )  # fmt: skip
    data = await upload.read()
    await asyncio.to_thread(_write, path, data)
    try:
        result = await ingest_file(
            conn,
            embedder,
            path,
            source=upload_source(collection, name),
            collection=collection,
            tenant=corpus.tenant_id,
            parser=parser,
        )
    except psycopg.DataError as e:  # content PostgreSQL refuses: the file's fault, not the store's
        return UploadResult(
            filename=name, status="failed", document_id=None, chunks=0,
            error=FileError(code="rejected", message=f"{name}: rejected by the store: {e}"),
        )  # fmt: skip
    if result.status == "failed":
        code = result.error_code if result.error_code in get_args(FileErrorCode) else "unreadable"
        limit = result.error_limit if result.error_limit in get_args(ParseLimit) else None
        error = FileError(
            code=code,  # type: ignore[arg-type]
            message=result.error or f"{name}: cannot be read",
            limit=limit,  # type: ignore[arg-type]
        )
        return UploadResult(filename=name, status="failed", document_id=None, chunks=0, error=error)
    if result.status in ("ingested", "replaced"):
        return UploadResult(
            filename=name, status="ingested", document_id=result.document_id, chunks=result.chunks
        )
    # unchanged, or a duplicate of a document stored under another source: report what is stored.
    stored = (
        await store.get_document(conn, result.document_id, tenant=corpus.tenant_id)
        if result.document_id
        else None
    )
    return UploadResult(
        filename=name,
        status="unchanged",
        document_id=result.document_id,
        chunks=stored.chunk_count if stored else 0,
    )


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@router.post(
    "",
    summary="Upload documents (multipart `files`) into a collection",
    description=f"Each file is parsed, chunked, embedded and stored under `upload://<collection>/<filename>`; "
    f"accepted extensions: {ACCEPTED_SUFFIXES}. Every file gets a result; a file that fails (unreadable, or "
    "past a parsing limit: `limit_exceeded`) does not stop the others, and nothing of it is stored. The whole request may be at most `VOICEBOT_MAX_UPLOAD_BYTES`.",
    response_model=UploadResults,
    responses=error_responses(401, 403, 413, 429, 503),
)
async def upload_documents(
    state: State,
    caller: LibrarianDep,
    files: Annotated[list[UploadFile], File(description="One or more files (repeat the `files` field).")],
    collection: Annotated[
        str | None,
        Form(pattern=COLLECTION_PATTERN, description="Target collection (default: the key's default)."),
    ] = None,
) -> UploadResults:
    corpus = corpus_of(caller, collection)  # created in the tenant with its first document
    if state.embedder is None:
        raise ModelUnavailable("the embedding model is not configured")
    folder = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="voicebot-upload-"))
    results: list[UploadResult] = []
    try:
        async with _connection(state) as conn:
            for index, upload in enumerate(files):
                # One folder per file: two uploads may carry the same name.
                results.append(
                    await _ingest_upload(
                        conn, state.embedder, state.parser, upload, folder / str(index), corpus
                    )
                )
    finally:
        await asyncio.to_thread(shutil.rmtree, folder, True)
    log.info(
        "upload into tenant %d collection %s: %d files, %d ingested, %d unchanged, %d failed",
        corpus.tenant_id,
        corpus.collection,
        len(results),
        sum(r.status == "ingested" for r in results),
        sum(r.status == "unchanged" for r in results),
        sum(r.status == "failed" for r in results),
    )
    if any(r.status == "ingested" for r in results):
        state.forget_vocabulary(corpus)  # the speech recognition hint reads the new words at the next turn
    return UploadResults(results=results)


@router.get(
    "/{document_id}",
    summary="One document",
    response_model=Document,
    responses=error_responses(401, 403, 404, 429, 503),
)
async def get_document(document_id: DocumentId, state: State, caller: LibrarianDep) -> Document:
    async with _connection(state) as conn:
        info = await _visible(conn, caller, document_id)
    return _document(info)


async def _visible(
    conn: psycopg.AsyncConnection[Any], caller: Caller, document_id: int
) -> store.DocumentInfo:
    """The caller's document `document_id`; another tenant's, or one in a collection the key may
    not use, is NotFound like a missing one (its existence is not the caller's to learn)."""
    info = await store.get_document(conn, document_id, tenant=caller.tenant_id)
    if info is None or not caller.may_use(info.collection):
        raise NotFound(f"no document with id {document_id}")
    return info


@router.delete(
    "/{document_id}",
    summary="Delete a document and its chunks",
    status_code=204,
    response_class=Response,
    responses=error_responses(401, 403, 404, 429, 503),
)
async def delete_document(document_id: DocumentId, state: State, caller: LibrarianDep) -> Response:
    async with _connection(state) as conn:
        info = await _visible(conn, caller, document_id)
        deleted = await store.delete_document(
            conn, document_id, tenant=caller.tenant_id, collections=(info.collection,)
        )
    if not deleted:
        raise NotFound(f"no document with id {document_id}")
    log.info("deleted document %d", document_id)
    state.forget_vocabulary(Corpus(caller.tenant_id, info.collection))
    return Response(status_code=204)
