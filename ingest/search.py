"""Hybrid retrieval: HNSW vector search and full-text search, fused with reciprocal rank fusion.

- vector: the query's embedding against `chunks.embedding` by cosine distance through the HNSW
  index, with `hnsw.ef_search` set per query (EF_SEARCH, chosen by `make bench-retrieval`) and
  pgvector's iterative scan, so a collection filter still yields enough candidates.
- text: `websearch_to_tsquery` parses the query (quotes, stemming, stop words); its terms are
  then OR-ed, because a spoken question rarely has every one of its words in the passage, and
  ranked with `ts_rank_cd` (cover density: terms close together rank higher) over a tsvector in
  which heading words weigh most, then the title, then the text. The work is bounded: at most
  TEXT_MATCH_LIMIT matches are read, and `ts_rank` shortlists TEXT_RERANK of them for ts_rank_cd.
- hybrid: each list contributes 1 / (RRF_K + rank) for the chunks it found; the sum orders the
  result (Cormack et al., 2009). RRF needs no score calibration between the two retrievers.

Scores: hybrid = the RRF sum; vector = cosine similarity (1 - distance); text = ts_rank_cd.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import psycopg

from ingest.embedding import Embedder
from ingest.store import TS_CONFIG, vector_literal
from ingest.tenancy import tenant_scope

SearchMode = Literal["hybrid", "vector", "text"]

# hnsw.ef_search used at query time: the smallest measured value that gave recall@10 >= 0.95
# against exact search at both 10k and 100k chunks in `make bench-retrieval` (docs/retrieval.md).
EF_SEARCH = 64
# Candidates each retriever contributes to the fusion.
CANDIDATES = 40
# The RRF constant from the original paper; it damps the weight of the very first ranks.
RRF_K = 60
# Most matching chunks the text side looks at. A question whose words are common matches a large
# share of a big collection; past this many the terms barely discriminate and the vector side
# carries the fusion. Reading them is most of the text side's cost at 100k chunks (docs/retrieval.md).
TEXT_MATCH_LIMIT = 1000
# Of those, how many the cheap `ts_rank` shortlists for `ts_rank_cd`, which costs about 15 times
# as much per row (cover density over every match position). `ts_rank` alone orders the eval set
# worse (hybrid hit@5 0.89 against 0.95), so it only shortlists; when no more chunks than this
# match, as for every question of the eval set, the result is ts_rank_cd over all of them.
TEXT_RERANK = 200
MAX_K = 100


@dataclass(frozen=True)
class SearchHit:
    chunk_id: int
    document_id: int
    title: str
    source: str
    heading_path: list[str]
    text: str
    score: float


# The text side's tsquery: the query's terms OR-ed (bound parameters: ts_config, query).
QUERY_TSQUERY = (
    "replace(websearch_to_tsquery(%(ts_config)s::regconfig, %(query)s)::text, ' & ', ' | ')::tsquery"
)

_VECTOR_SQL = """
SELECT c.id, c.document_id, d.title, d.source_uri, c.heading_path, c.text,
       1 - (c.embedding <=> %(embedding)s::vector) AS score
FROM chunks c JOIN documents d ON d.id = c.document_id
WHERE c.tenant_id = %(tenant)s AND c.collection = %(collection)s
ORDER BY c.embedding <=> %(embedding)s::vector
LIMIT %(k)s
"""


def _ranked_text_matches(limit_param: str) -> str:
    """(id, score) of chunks matching the query's terms, best first, `limit_param` rows.

    Bounded work whatever the query: only the first %(text_limit)s matches are considered, the
    cheap `ts_rank` keeps the best %(rerank)s of them, and only those are ranked by `ts_rank_cd`,
    which costs about 15 times as much per row (docs/retrieval.md)."""
    return f"""
    SELECT r.id, ts_rank_cd(r.tsv, q.tsq) AS score
    FROM (
        SELECT m.id, m.tsv
        FROM (
            SELECT c.id, c.tsv FROM chunks c, (SELECT {QUERY_TSQUERY} AS tsq) q
            WHERE c.tenant_id = %(tenant)s AND c.collection = %(collection)s AND c.tsv @@ q.tsq
            LIMIT %(text_limit)s
        ) m, (SELECT {QUERY_TSQUERY} AS tsq) q
        ORDER BY ts_rank(m.tsv, q.tsq) DESC, m.id
        LIMIT %(rerank)s
    ) r, (SELECT {QUERY_TSQUERY} AS tsq) q
    ORDER BY score DESC, r.id
    LIMIT %({limit_param})s"""  # noqa: S608 - constant fragments; every value is a bound parameter


_TEXT_SQL = f"""
SELECT c.id, c.document_id, d.title, d.source_uri, c.heading_path, c.text, m.score
FROM ({_ranked_text_matches("k")}
) m JOIN chunks c ON c.id = m.id JOIN documents d ON d.id = c.document_id
ORDER BY m.score DESC, m.id
"""  # noqa: S608 - a constant fragment; every value is a bound parameter

_HYBRID_SQL = f"""
WITH vec AS (
    SELECT id, row_number() OVER (ORDER BY distance, id) AS rank
    FROM (
        SELECT id, embedding <=> %(embedding)s::vector AS distance
        FROM chunks
        WHERE tenant_id = %(tenant)s AND collection = %(collection)s
        ORDER BY embedding <=> %(embedding)s::vector
        LIMIT %(candidates)s
    ) nearest
),
txt AS (
    SELECT id, row_number() OVER (ORDER BY score DESC, id) AS rank
    FROM ({_ranked_text_matches("candidates")}
    ) matched
),
fused AS (
    SELECT COALESCE(vec.id, txt.id) AS id,
           COALESCE(1.0 / (%(rrf_k)s + vec.rank), 0) + COALESCE(1.0 / (%(rrf_k)s + txt.rank), 0) AS score,
           LEAST(vec.rank, txt.rank) AS best_rank
    FROM vec FULL OUTER JOIN txt ON vec.id = txt.id
    ORDER BY score DESC, best_rank, id
    LIMIT %(k)s
)
SELECT c.id, c.document_id, d.title, d.source_uri, c.heading_path, c.text, f.score
FROM fused f JOIN chunks c ON c.id = f.id JOIN documents d ON d.id = c.document_id
ORDER BY f.score DESC, f.best_rank, c.id
"""  # noqa: S608 - a constant fragment; every value is a bound parameter


async def search(
    conn: psycopg.AsyncConnection[Any],
    embedder: Embedder,
    query: str,
    *,
    tenant: int,
    collection: str = "default",
    k: int = 5,
    mode: Literal["hybrid", "vector", "text"] = "hybrid",
) -> list[SearchHit]:
    """The `k` chunks of `tenant`'s `collection` that best answer `query`, best first.

    Raises EmbeddingUnavailable (vector and hybrid modes) when the embed model cannot be reached;
    psycopg errors from the store propagate unchanged (the caller owns the connection).
    """
    query = query.strip()
    if not query or k <= 0:
        return []
    if mode not in ("hybrid", "vector", "text"):
        raise ValueError(f"unknown search mode {mode!r}")
    embedding = (await embedder.embed([query]))[0] if mode != "text" else None
    return await search_embedding(
        conn, embedding, query, tenant=tenant, collection=collection, k=k, mode=mode
    )


async def search_embedding(
    conn: psycopg.AsyncConnection[Any],
    embedding: npt.NDArray[np.float32] | None,
    query: str,
    *,
    tenant: int,
    collection: str = "default",
    k: int = 5,
    mode: SearchMode = "hybrid",
    ef_search: int | None = None,
) -> list[SearchHit]:
    """`search` with the query's embedding already computed (None for mode="text").

    `ef_search` overrides EF_SEARCH (the benchmark measures recall with it).
    """
    k = min(k, MAX_K)
    params: dict[str, Any] = {
        "tenant": tenant,
        "collection": collection,
        "k": k,
        "query": query,
        "ts_config": TS_CONFIG,
        "candidates": max(CANDIDATES, k),
        "rrf_k": RRF_K,
        "text_limit": TEXT_MATCH_LIMIT,
        "rerank": max(TEXT_RERANK, CANDIDATES, k),
    }
    if mode == "text":
        statement = _TEXT_SQL
    else:
        if embedding is None:
            raise ValueError(f"mode {mode!r} needs the query embedding")
        params["embedding"] = vector_literal(embedding)
        statement = _VECTOR_SQL if mode == "vector" else _HYBRID_SQL
    async with tenant_scope(conn, tenant):
        if mode != "text":
            # Transaction-local: the caller's connection keeps its own settings afterwards. The
            # HNSW scan returns at most ef_search rows, so it is never below what we ask for.
            ef = max(ef_search or EF_SEARCH, k if ef_search else params["candidates"])
            await conn.execute(
                "SELECT set_config('hnsw.ef_search', %s, true),"
                " set_config('hnsw.iterative_scan', 'relaxed_order', true)",
                (str(ef),),
            )
        # Never a prepared statement: its generic plan cannot see the query's terms and reads
        # the GIN index for words that match most chunks (text mode: 60 ms instead of 4 ms at
        # 100k chunks); planned with the values, the plan suits each query (about 0.4 ms).
        cur = await conn.execute(statement, params, prepare=False)
        rows = await cur.fetchall()
    hits = [
        SearchHit(
            chunk_id=row[0],
            document_id=row[1],
            title=row[2],
            source=row[3],
            heading_path=list(row[4]),
            text=row[5],
            score=float(row[6]),
        )
        for row in rows
    ]
    if mode == "vector":
        # relaxed_order may return neighbours slightly out of order; restore it.
        hits.sort(key=lambda h: (-h.score, h.chunk_id))
    return hits
