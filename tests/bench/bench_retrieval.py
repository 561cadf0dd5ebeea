"""pgvector at scale: `make bench-retrieval` -> build/bench/retrieval-scale.json.

In a throwaway embedded Postgres with the real schema (migrations) and the real query path
(`ingest.search.search_embedding`):
- loads 10k, then 100k synthetic chunks: unit vectors drawn around 1,000 random centroids (so
  neighbourhoods look like those of sentence embeddings rather than uniform noise, which is
  the worst case for any ANN index) with Zipf-distributed words as text; HNSW built with the
  migration's parameters;
- measures query latency p50/p99 (vector and hybrid, query embedding excluded: it is a model
  call, measured by bench-models) at the chosen ef_search;
- measures HNSW recall@10 against exact search (numpy, brute force) for several ef_search values;
- measures end-to-end ingest throughput, files -> Triton `embed` -> Postgres, in chunks/s, on a
  generated Markdown corpus (through VOICEBOT_TRITON_URL or a Triton it starts).
Nothing here asserts: it reports.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg

from tests.bench.eval_retrieval import REPO_ROOT, embedder_for

OUT = REPO_ROOT / "build" / "bench" / "retrieval-scale.json"
DIM = 384
SIZES = (10_000, 100_000)
EF_VALUES = (10, 20, 40, 64, 100, 200)
QUERIES = 200
LATENCY_QUERIES = 300
COLLECTION = "scale"
SEED = 20240601

_HNSW_DDL = (
    "CREATE INDEX chunks_embedding_hnsw ON chunks USING hnsw (embedding vector_cosine_ops)"
    " WITH (m = 16, ef_construction = 64)"
)


def clustered_vectors(
    rng: np.random.Generator, n: int, centroids: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    """Unit vectors around random centroids; cosine to their centroid is about 0.6-0.7."""
    which = rng.integers(0, len(centroids), size=n)
    noise = rng.standard_normal((n, DIM)).astype(np.float32) * 0.06
    points = centroids[which] + noise
    out: npt.NDArray[np.float32] = (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)
    return out


def zipf_texts(rng: np.random.Generator, n: int, vocabulary: list[str]) -> list[str]:
    ranks = np.minimum(rng.zipf(1.2, size=(n, 40)), len(vocabulary)) - 1
    return [" ".join(vocabulary[r] for r in row) for row in ranks]


def make_vocabulary(rng: np.random.Generator, size: int = 20_000) -> list[str]:
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    return ["".join(rng.choice(letters, size=int(rng.integers(3, 10)))) for _ in range(size)]


async def load_chunks(
    conn: psycopg.AsyncConnection[Any],
    document_id: int,
    start: int,
    vectors: npt.NDArray[np.float32],
    texts: list[str],
) -> None:
    """Binary COPY into a staging table, then one INSERT ... SELECT that computes the tsvector."""
    from pgvector.psycopg import register_vector_async

    await register_vector_async(conn)
    await conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS staging (position int, text text, embedding vector(384))"
    )
    await conn.execute("TRUNCATE staging")
    async with (
        conn.cursor() as cur,
        cur.copy("COPY staging (position, text, embedding) FROM STDIN WITH (FORMAT BINARY)") as copy,
    ):
        copy.set_types(["int4", "text", "vector"])
        for i, (vector, text) in enumerate(zip(vectors, texts, strict=True)):
            await copy.write_row((start + i, text, vector))
    await conn.execute(
        "INSERT INTO chunks (document_id, collection, position, heading_path, text, token_count, embedding, tsv)"
        " SELECT %s, %s, position, '{}', text, 40, embedding, to_tsvector('english', text) FROM staging",
        (document_id, COLLECTION),
    )


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


async def measure(
    conn: psycopg.AsyncConnection[Any],
    base: npt.NDArray[np.float32],
    queries: npt.NDArray[np.float32],
    query_texts: list[str],
    ef_chosen: int,
) -> dict[str, Any]:
    from ingest.search import SearchMode, search_embedding
    from ingest.tenancy import DEFAULT_TENANT_ID

    # Exact top-10 by cosine similarity (unit vectors: dot product), position = row index.
    exact = np.argsort(-(queries @ base.T), axis=1)[:, :10]
    recall: dict[str, float] = {}
    for ef in EF_VALUES:
        found = 0
        for qi, query in enumerate(queries):
            hits = await search_embedding(
                conn,
                query,
                "",
                tenant=DEFAULT_TENANT_ID,
                collection=COLLECTION,
                k=10,
                mode="vector",
                ef_search=ef,
            )
            positions = await _positions(conn, [h.chunk_id for h in hits])
            found += len(set(positions) & set(exact[qi].tolist()))
        recall[str(ef)] = round(found / (10 * len(queries)), 4)
    # The modes take turns query by query, so a noisy neighbour on the machine weighs on each alike
    # and their ratios compare within the run.
    modes: tuple[SearchMode, ...] = ("vector", "text", "hybrid")
    times: dict[str, list[float]] = {mode: [] for mode in modes}
    for i in range(LATENCY_QUERIES):
        query = queries[i % len(queries)]
        text = query_texts[i % len(query_texts)]
        for mode in modes:
            t0 = time.perf_counter()
            await search_embedding(
                conn, query, text, tenant=DEFAULT_TENANT_ID, collection=COLLECTION, k=5, mode=mode
            )
            times[mode].append((time.perf_counter() - t0) * 1000)
    latency = {
        mode: {
            "p50_ms": round(statistics.median(times[mode]), 2),
            "p99_ms": round(percentile(times[mode], 99), 2),
            "queries": len(times[mode]),
        }
        for mode in modes
    }
    return {"recall@10_by_ef_search": recall, "latency_at_chosen_ef": latency, "ef_search": ef_chosen}


async def _positions(conn: psycopg.AsyncConnection[Any], chunk_ids: list[int]) -> list[int]:
    cur = await conn.execute("SELECT position FROM chunks WHERE id = ANY(%s)", (chunk_ids,))
    return [row[0] for row in await cur.fetchall()]


async def scale_bench(dsn: str) -> dict[str, Any]:
    from ingest.migrate import migrate
    from ingest.search import CANDIDATES, EF_SEARCH

    await migrate(dsn)
    rng = np.random.default_rng(SEED)
    centroids = rng.standard_normal((1000, DIM)).astype(np.float32)
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    vocabulary = make_vocabulary(rng)
    all_vectors = clustered_vectors(rng, max(SIZES), centroids)
    all_texts = zipf_texts(rng, max(SIZES), vocabulary)
    queries = clustered_vectors(rng, QUERIES, centroids)
    query_texts = [" ".join(t.split()[:6]) for t in zipf_texts(rng, QUERIES, vocabulary)]
    chosen = max(EF_SEARCH, CANDIDATES)
    results: dict[str, Any] = {}
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute("SET maintenance_work_mem = '1GB'")
        await conn.execute("SET max_parallel_maintenance_workers = 1")
        cur = await conn.execute(
            "INSERT INTO documents (collection, source_uri, title, content_hash, format)"
            " VALUES (%s, 'synthetic://scale', 'synthetic', 'none', 'txt') RETURNING id",
            (COLLECTION,),
        )
        row = await cur.fetchone()
        assert row is not None
        document_id = row[0]
        loaded = 0
        for size in SIZES:
            await conn.execute("DROP INDEX IF EXISTS chunks_embedding_hnsw")
            t0 = time.perf_counter()
            await load_chunks(conn, document_id, loaded, all_vectors[loaded:size], all_texts[loaded:size])
            load_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            await conn.execute(_HNSW_DDL)
            build_s = time.perf_counter() - t0
            await conn.execute("VACUUM ANALYZE chunks")
            loaded = size
            figures = await measure(conn, all_vectors[:size], queries, query_texts, chosen)
            figures["load_s"] = round(load_s, 1)
            figures["hnsw_build_s"] = round(build_s, 1)
            results[str(size)] = figures
            print(f"{size:>7} chunks: {json.dumps(figures)}", flush=True)
    return results


def write_corpus(root: Path, files: int) -> None:
    rng = np.random.default_rng(SEED)
    words = make_vocabulary(rng, 3000)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        sections = []
        for j in range(6):
            paragraphs = [
                ". ".join(" ".join(rng.choice(words, size=12)) for _ in range(5)) + "." for _ in range(3)
            ]
            sections.append(f"## Section {j}\n\n" + "\n\n".join(paragraphs))
        (root / f"doc-{i:04d}.md").write_text(f"# Document {i}\n\n" + "\n\n".join(sections) + "\n")


async def throughput_bench(dsn: str, files: int, embedder_kind: str) -> dict[str, Any]:
    from ingest.pipeline import ingest_paths

    corpus = Path(tempfile.mkdtemp(prefix="voicebot-corpus-"))
    try:
        write_corpus(corpus, files)
        async with embedder_for(embedder_kind) as embedder:
            await embedder.embed(["warm-up"])
            t0 = time.perf_counter()
            report = await ingest_paths(dsn, embedder, [corpus], collection="throughput")
            elapsed = time.perf_counter() - t0
    finally:
        shutil.rmtree(corpus, ignore_errors=True)
    return {
        "files": report.files,
        "chunks": report.chunks,
        "failed": len(report.failed),
        "elapsed_s": round(elapsed, 2),
        "chunks_per_s": round(report.chunks / elapsed, 1),
        "embedder": "triton-embed" if embedder_kind == "triton" else "onnx-in-process",
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    from tests.bench.eval_retrieval import local_postgres

    os.environ.pop(
        "VOICEBOT_DATABASE_URL", None
    )  # always a throwaway server: this drops and rebuilds indexes
    result: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "vectors": "synthetic: 1000 random centroids in 384-d, gaussian noise 0.06 per dimension, L2-normalised",
        "hnsw": {"m": 16, "ef_construction": 64},
    }
    async with local_postgres() as dsn:
        if not args.skip_scale:
            result["scale"] = await scale_bench(dsn)
        if not args.skip_throughput:
            result["ingest_throughput"] = await throughput_bench(dsn, args.files, args.embedder)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=120, help="Markdown files for the throughput run")
    parser.add_argument("--embedder", choices=["triton", "onnx"], default="triton")
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    os.environ.setdefault("VOICEBOT_DEV_MODE", "true")
    result = asyncio.run(main_async(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
