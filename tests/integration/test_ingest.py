"""Ingestion against the real embedded Postgres and the real Triton `embed` model.

Each test works in its own collection, so tests share the session database without seeing each
other's documents.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

from ingest import search as search_module
from ingest import store
from ingest.chunking import Chunker
from ingest.embedding import TritonEmbedder
from ingest.loaders import load
from ingest.migrate import migrate
from ingest.pipeline import ingest_file, ingest_paths
from ingest.search import search, search_embedding
from ingest.tenancy import DEFAULT_TENANT_ID
from tests.conftest import REPO_ROOT
from tests.data.pdfgen import make_pdf

GUIDE = """# Deployment guide

How to put the platform into production.

## Install the chart

Run helm install with your values file. The chart deploys the gateway, Triton and Postgres.

## Rotate the signing key

Generate a new random secret of at least 32 characters and restart the gateway pods.
"""

NOTES_V1 = """Release notes

Version one adds the push-to-talk button and the lighthouse calibration procedure.
"""

NOTES_V2 = """Release notes

Version two replaces the old calibration with the harbour beacon alignment.

Version two also adds barge-in: pressing the button again interrupts the answer.
"""

PAGE = """<html><head><title>Operations handbook</title></head><body>
<h1>Operations handbook</h1>
<h2>Paging</h2><p>When the latency alert fires, open the runbook linked in the alert.</p>
<h2>Scaling</h2><ul><li>kubectl scale the gateway deployment</li><li>KEDA scales Triton on queue depth</li></ul>
</body></html>"""

DOOMED = "# Temporary page\n\nThis page about the zeppelin hangar will be deleted.\n"


def manual_pdf() -> bytes:
    return make_pdf(
        [
            ["Microphone setup", "Allow microphone access in the browser, then hold the button to speak."],
            ["Speaker setup", "Answers are spoken with the Piper voice while they are generated."],
        ],
        title="Audio manual",
        outline=[("Microphone setup", 0), ("Speaker setup", 1)],
    )


def write_corpus(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "guide.md").write_text(GUIDE)
    (root / "twin-of-guide.md").write_text(GUIDE)  # same content, another name: a duplicate
    (root / "notes.txt").write_text(NOTES_V1)
    (root / "handbook.html").write_text(PAGE)
    (root / "manual.pdf").write_bytes(manual_pdf())
    (root / "broken.pdf").write_bytes(manual_pdf()[:300])
    (root / "sub").mkdir(exist_ok=True)
    (root / "sub" / "doomed.md").write_text(DOOMED)
    (root / "ignored.png").write_bytes(b"\x89PNG")


@pytest.fixture(scope="module")
def dsn(postgres: Any) -> str:
    asyncio.run(migrate(postgres.dsn))
    value: str = postgres.dsn
    return value


@pytest.fixture
def collection() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def embedder(triton: Any) -> TritonEmbedder:
    """Its gRPC channel belongs to the event loop that opens it: each asyncio.run below closes it."""
    return TritonEmbedder(triton.grpc_url)


async def connect(dsn: str) -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(dsn, autocommit=True)


async def store_state(dsn: str, collection: str) -> dict[str, Any]:
    """Documents by file name, and the invariants every consistent store satisfies."""
    async with await connect(dsn) as conn:
        docs = await (
            await conn.execute(
                "SELECT d.id, d.source_uri, d.title, d.chunk_count, count(c.id),"
                " coalesce(array_agg(c.position ORDER BY c.position) FILTER (WHERE c.id IS NOT NULL), '{}')"
                " FROM documents d LEFT JOIN chunks c ON c.document_id = d.id"
                " WHERE d.collection = %s GROUP BY d.id",
                (collection,),
            )
        ).fetchall()
        orphans = await (
            await conn.execute(
                "SELECT count(*) FROM chunks c WHERE c.collection = %s"
                " AND NOT EXISTS (SELECT 1 FROM documents d WHERE d.id = c.document_id)",
                (collection,),
            )
        ).fetchone()
        duplicates = await (
            await conn.execute(
                "SELECT count(*) FROM (SELECT d.source_uri, c.position FROM chunks c JOIN documents d"
                " ON d.id = c.document_id WHERE c.collection = %s GROUP BY 1, 2 HAVING count(*) > 1) x",
                (collection,),
            )
        ).fetchone()
    by_name = {Path(row[1]).name: row for row in docs}
    for _, source, _, chunk_count, actual, positions in docs:
        assert chunk_count == actual, f"{source}: chunk_count {chunk_count} but {actual} chunks"
        assert list(positions) == list(range(actual)), f"{source}: positions {positions}"
    assert orphans == (0,)
    assert duplicates == (0,)
    return by_name


def expected_chunks(path: Path) -> int:
    return len(Chunker().chunk(load(path)))


def test_ingest_every_format_skip_replace_fail_and_prune(
    dsn: str, embedder: TritonEmbedder, collection: str, tmp_path: Path
) -> None:
    root = tmp_path / "corpus"
    write_corpus(root)

    async def run(prune: bool) -> Any:
        try:
            return await ingest_paths(dsn, embedder, [root], collection=collection, prune=prune)
        finally:
            await embedder.close()

    first = asyncio.run(run(prune=False))
    statuses = {Path(r.source).name: r.status for r in first.results}
    assert statuses == {
        "broken.pdf": "failed",
        "twin-of-guide.md": "duplicate",
        "doomed.md": "ingested",
        "guide.md": "ingested",
        "handbook.html": "ingested",
        "manual.pdf": "ingested",
        "notes.txt": "ingested",
    }
    assert (first.files, first.ingested, first.skipped, len(first.failed)) == (7, 5, 1, 1)
    (failure,) = first.failed
    assert failure.error is not None
    assert "unreadable PDF" in failure.error
    names = ["guide.md", "notes.txt", "handbook.html", "manual.pdf", "sub/doomed.md"]
    assert first.chunks == sum(expected_chunks(root / n) for n in names)

    state = asyncio.run(store_state(dsn, collection))
    assert set(state) == {"guide.md", "notes.txt", "handbook.html", "manual.pdf", "doomed.md"}
    assert state["guide.md"][2] == "Deployment guide"
    assert state["handbook.html"][2] == "Operations handbook"
    assert state["manual.pdf"][2] == "Audio manual"
    assert state["notes.txt"][2] == "Release notes"
    notes_id = state["notes.txt"][0]

    # Change one file, delete another, run again with --prune.
    (root / "notes.txt").write_text(NOTES_V2)
    (root / "sub" / "doomed.md").unlink()
    second = asyncio.run(run(prune=True))
    statuses = {Path(r.source).name: r.status for r in second.results}
    assert statuses == {
        "broken.pdf": "failed",
        "twin-of-guide.md": "duplicate",
        "guide.md": "unchanged",
        "handbook.html": "unchanged",
        "manual.pdf": "unchanged",
        "notes.txt": "replaced",
    }
    assert [Path(s).name for s in second.pruned] == ["doomed.md"]
    assert second.chunks == expected_chunks(root / "notes.txt")

    state = asyncio.run(store_state(dsn, collection))
    assert set(state) == {"guide.md", "notes.txt", "handbook.html", "manual.pdf"}
    assert state["notes.txt"][0] == notes_id, "a changed file keeps its document id"

    async def texts() -> str:
        async with await connect(dsn) as conn:
            rows = await (
                await conn.execute(
                    "SELECT string_agg(text, ' ') FROM chunks WHERE collection = %s", (collection,)
                )
            ).fetchone()
            assert rows is not None
            return str(rows[0])

    all_text = asyncio.run(texts())
    assert "harbour beacon" in all_text
    assert "lighthouse" not in all_text
    assert "zeppelin" not in all_text


def test_search_finds_the_passage_with_citations(
    dsn: str, embedder: TritonEmbedder, collection: str, tmp_path: Path
) -> None:
    root = tmp_path / "corpus"
    write_corpus(root)
    other = f"{collection}-other"

    async def run() -> dict[str, list[Any]]:
        try:
            await ingest_paths(dsn, embedder, [root], collection=collection)
            (tmp_path / "elsewhere").mkdir()
            (tmp_path / "elsewhere" / "secret.md").write_text(
                "# Other tenant\n\nThe rotate signing key answer of another tenant.\n"
            )
            await ingest_paths(dsn, embedder, [tmp_path / "elsewhere"], collection=other)
            results: dict[str, list[Any]] = {}
            async with await connect(dsn) as conn:
                for mode in ("hybrid", "vector", "text"):
                    results[mode] = await search(
                        conn,
                        embedder,
                        "how do I rotate the signing key?",
                        tenant=DEFAULT_TENANT_ID,
                        collection=collection,
                        mode=mode,
                    )
                ef = await (await conn.execute("SHOW hnsw.ef_search")).fetchone()
                results["ef"] = [ef]
            return results
        finally:
            await embedder.close()

    results = asyncio.run(run())
    for mode in ("hybrid", "vector", "text"):
        hits = results[mode]
        assert hits, mode
        top = hits[0]
        assert "32 characters" in top.text, mode
        assert top.title == "Deployment guide"
        assert top.heading_path == ["Rotate the signing key"]
        assert top.source == (root / "guide.md").resolve().as_uri()
        assert all(Path(h.source).parent.name in ("corpus", "sub") for h in hits), "another collection leaked"
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert results["ef"] == [("40",)], "ef_search is set per transaction, not left on the connection"


def write_beacon_notes(dsn: str, collection: str, notes: int, dense: list[int]) -> None:
    """`notes` chunks that each mention "beacon" once; those at `dense` positions are all about
    the harbour beacon alignment. Synthetic embeddings: only the text side is under test."""
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((notes, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    chunks = [
        store.ChunkRow(
            position=i,
            heading_path=["Notes"],
            text=(
                f"Harbour beacon alignment, number {i}: the harbour beacon alignment keeps the harbour beacon aligned."
                if i in dense
                else f"Note {i} mentions the beacon once among routine words."
            ),
            token_count=20,
            embedding=vectors[i],
        )
        for i in range(notes)
    ]

    async def run() -> None:
        async with await connect(dsn) as conn:
            await store.write_document(
                conn,
                tenant=DEFAULT_TENANT_ID,
                collection=collection,
                source="synthetic://notes",
                title="Notes",
                content_hash=uuid.uuid4().hex,
                format="txt",
                metadata={},
                chunks=chunks,
            )

    asyncio.run(run())


def text_search(dsn: str, collection: str, query: str, k: int) -> list[Any]:
    async def run() -> list[Any]:
        async with await connect(dsn) as conn:
            return await search_embedding(
                conn, None, query, tenant=DEFAULT_TENANT_ID, collection=collection, k=k, mode="text"
            )

    return asyncio.run(run())


def test_text_search_shortlist_ranks_like_ranking_every_match(
    dsn: str, collection: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    notes = search_module.TEXT_RERANK * 3
    assert notes < search_module.TEXT_MATCH_LIMIT
    dense = [notes - 9, notes - 5, notes - 1]  # stored last: found however the matches are read
    write_beacon_notes(dsn, collection, notes, dense)

    shortlisted = text_search(dsn, collection, "harbour beacon alignment", k=10)
    monkeypatch.setattr(search_module, "TEXT_RERANK", notes)  # ts_rank_cd over every match
    every = text_search(dsn, collection, "harbour beacon alignment", k=10)

    assert [h.text.split(":")[0] for h in shortlisted[:3]] == [
        f"Harbour beacon alignment, number {i}" for i in dense
    ]
    assert [(h.chunk_id, h.score) for h in shortlisted] == [(h.chunk_id, h.score) for h in every]
    assert [h.score for h in shortlisted] == sorted((h.score for h in shortlisted), reverse=True)


def test_text_search_reads_at_most_the_match_limit(
    dsn: str, collection: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_beacon_notes(dsn, collection, 120, dense=[])
    monkeypatch.setattr(search_module, "TEXT_MATCH_LIMIT", 50)
    monkeypatch.setattr(search_module, "TEXT_RERANK", 10)
    hits = text_search(dsn, collection, "beacon", k=60)
    # Every match scores alike; ranked among the first 50 read, shortlisted to max(10, 40, k).
    assert len(hits) == 50
    assert len({h.chunk_id for h in hits}) == 50


def test_documents_api_and_upload(
    dsn: str, embedder: TritonEmbedder, collection: str, tmp_path: Path
) -> None:
    upload = tmp_path / "upload-7f3a.md"
    upload.write_text(GUIDE)

    async def run() -> None:
        try:
            async with await connect(dsn) as conn:
                result = await ingest_file(
                    conn, embedder, upload, source="upload://guide.md", collection=collection
                )
                assert result.status == "ingested"
                assert result.document_id is not None
                again = await ingest_file(
                    conn, embedder, upload, source="upload://guide.md", collection=collection
                )
                assert (again.status, again.document_id) == ("unchanged", result.document_id)
                docs = await store.list_documents(conn, collection, tenant=DEFAULT_TENANT_ID)
                assert [(d.source, d.title, d.format) for d in docs] == [
                    ("upload://guide.md", "Deployment guide", "md")
                ]
                assert docs[0].chunk_count == result.chunks > 0
                info = await store.get_document(conn, result.document_id, tenant=DEFAULT_TENANT_ID)
                assert info == docs[0]
                assert await store.delete_document(conn, result.document_id, tenant=DEFAULT_TENANT_ID)
                assert not await store.delete_document(conn, result.document_id, tenant=DEFAULT_TENANT_ID)
                assert await store.get_document(conn, result.document_id, tenant=DEFAULT_TENANT_ID) is None
                count = await (
                    await conn.execute("SELECT count(*) FROM chunks WHERE collection = %s", (collection,))
                ).fetchone()
                assert count == (0,)
        finally:
            await embedder.close()

    asyncio.run(run())


def test_readers_never_see_a_half_replaced_document(
    dsn: str, embedder: TritonEmbedder, collection: str, tmp_path: Path
) -> None:
    path = tmp_path / "big.md"
    path.write_text(
        "# Big\n\n" + "\n\n".join(f"## Part {i}\n\nParagraph {i} of version one." for i in range(60))
    )

    async def run() -> list[tuple[int, int]]:
        seen: list[tuple[int, int]] = []
        try:
            await ingest_paths(dsn, embedder, [path], collection=collection)
            path.write_text(
                "# Big\n\n" + "\n\n".join(f"## Part {i}\n\nParagraph {i} of version two." for i in range(90))
            )
            done = asyncio.Event()

            async def reader() -> None:
                async with await connect(dsn) as conn:
                    while not done.is_set():
                        row = await (
                            await conn.execute(
                                "SELECT d.chunk_count, (SELECT count(*) FROM chunks c WHERE c.document_id = d.id)"
                                " FROM documents d WHERE d.collection = %s",
                                (collection,),
                            )
                        ).fetchone()
                        assert row is not None
                        seen.append((row[0], row[1]))
                        await asyncio.sleep(0)

            task = asyncio.create_task(reader())
            try:
                await ingest_paths(dsn, embedder, [path], collection=collection)
            finally:
                done.set()
                await task
        finally:
            await embedder.close()
        return seen

    seen = asyncio.run(run())
    assert seen
    assert set(seen) <= {(60, 60), (90, 90)}, "every snapshot is all old or all new"


def run_cli(*args: str, dsn: str, triton_url: str) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env.update({"VOICEBOT_DATABASE_URL": dsn, "VOICEBOT_TRITON_URL": triton_url, "VOICEBOT_DEV_MODE": "true"})
    return subprocess.Popen(
        [sys.executable, "-m", "ingest", *args],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def many_files(root: Path, count: int) -> list[Path]:
    root.mkdir(parents=True)
    paths = []
    for i in range(count):
        path = root / f"doc-{i:03d}.md"
        sections = "\n\n".join(
            f"## Section {j}\n\n"
            + " ".join(f"Document {i} section {j} sentence {k} says something." for k in range(12))
            for j in range(4)
        )
        path.write_text(f"# Document {i}\n\n{sections}\n")
        paths.append(path)
    return paths


async def count_documents(dsn: str, collection: str) -> int:
    async with await connect(dsn) as conn:
        row = await (
            await conn.execute("SELECT count(*) FROM documents WHERE collection = %s", (collection,))
        ).fetchone()
        assert row is not None
        return int(row[0])


def test_killed_ingest_leaves_a_consistent_store_and_the_next_run_completes(
    dsn: str, triton: Any, embedder: TritonEmbedder, collection: str, tmp_path: Path
) -> None:
    files = many_files(tmp_path / "many", 80)
    process = run_cli(
        "ingest", str(tmp_path / "many"), "--collection", collection, dsn=dsn, triton_url=triton.grpc_url
    )
    try:
        # Kill it as soon as the first documents are committed (polling, not timing).
        while process.poll() is None and asyncio.run(count_documents(dsn, collection)) < 3:
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
    finally:
        process.communicate()
    assert process.returncode == -signal.SIGKILL, "the ingest finished before it could be killed"
    partial = asyncio.run(store_state(dsn, collection))
    assert 0 < len(partial) < len(files)

    async def rerun() -> Any:
        try:
            return await ingest_paths(dsn, embedder, [tmp_path / "many"], collection=collection)
        finally:
            await embedder.close()

    report = asyncio.run(rerun())
    assert report.ok
    assert report.ingested == len(files) - len(partial)
    assert report.skipped == len(partial)
    state = asyncio.run(store_state(dsn, collection))
    assert set(state) == {f.name for f in files}
    assert all(row[3] == expected_chunks(tmp_path / "many" / name) for name, row in state.items())


def test_two_processes_ingesting_the_same_folder_store_one_copy(
    dsn: str, triton: Any, collection: str, tmp_path: Path
) -> None:
    files = many_files(tmp_path / "shared", 24)
    shutil.copy(files[0], tmp_path / "shared" / "twin.md")  # the race also covers duplicate detection
    processes = [
        run_cli(
            "ingest",
            str(tmp_path / "shared"),
            "--collection",
            collection,
            "--json",
            dsn=dsn,
            triton_url=triton.grpc_url,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=600) for p in processes]
    for process, (_, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stderr
    state = asyncio.run(store_state(dsn, collection))
    # One document per source; of the twin and its original, whichever was written first is stored.
    assert len(state) == len(files)
    assert set(state) - {"twin.md", files[0].name} == {f.name for f in files[1:]}
    assert sum(row[4] for row in state.values()) == sum(expected_chunks(f) for f in files)
