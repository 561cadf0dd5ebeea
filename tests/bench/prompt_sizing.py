"""How big must the prompt be? The share of questions whose answer reaches the LLM, by passages
given (k) and characters kept per passage, on the eval's corpora: `build/bench/prompt-sizing.json`.

Run ``python -m tests.bench.prompt_sizing [--split tune|heldout|all]`` after
``make eval-answers EVAL_ARGS=--keep-stack`` (it reads the kept stack: the corpora ingested into
Postgres, Triton's `embed`). For each answerable question it runs the product's own search
(`ingest.search`, hybrid) once with the largest k, and counts, for every (k, characters) pair,
whether the question's needle is in the first `characters` of one of the first k passages: the
ceiling of answer accuracy for that prompt size, without an LLM, in seconds. Both ways of cutting
a passage are counted: its start (`needle_reaches_the_llm`) and, as the gateway gives it, from the
part the question is about (`..._focused`, orchestrator/focus.py). A smaller prompt is
evaluated faster (and prefilled sooner while the user speaks, docs/performance.md); this says what
it costs in answers that can no longer be right.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from tests.bench.eval_answers import OUT as ANSWERS_OUT
from tests.bench.eval_answers import STACK_FILE, holds, load_questions

OUT = ANSWERS_OUT.parent / "prompt-sizing.json"
KS = (1, 2, 3, 4, 5, 6)
CHARS = (400, 600, 800, 1200, 0)  # 0: the whole passage


async def measure(split: str) -> dict[str, object]:
    import psycopg

    from ingest.embedding import TritonEmbedder
    from ingest.search import search
    from ingest.tenancy import DEFAULT_COLLECTION as COLLECTION
    from ingest.tenancy import DEFAULT_TENANT_ID
    from orchestrator.focus import focus

    if not STACK_FILE.exists():
        raise SystemExit(
            f"error: no kept eval stack ({STACK_FILE}); run make eval-answers EVAL_ARGS=--keep-stack"
        )
    stack = json.loads(STACK_FILE.read_text())
    questions = [q for q in load_questions() if q.answerable and q.needle and split in ("all", q.split)]
    embedder = TritonEmbedder(stack["triton_url"])
    conn = await psycopg.AsyncConnection.connect(stack["dsn"], autocommit=True)
    found = {(k, c): 0 for k in KS for c in CHARS}
    focused = dict(found)
    try:
        for q in questions:
            assert q.needle is not None
            hits = await search(
                conn, embedder, q.question, tenant=DEFAULT_TENANT_ID, collection=COLLECTION, k=max(KS)
            )
            for k, c in found:
                if any(holds(h.text[:c] if c else h.text, q.needle) for h in hits[:k]):
                    found[(k, c)] += 1
                headings = [" ".join([h.title, *h.heading_path]) for h in hits[:k]]
                if any(
                    holds(focus(h.text, q.question, c or 1_000_000, heading=where), q.needle)
                    for h, where in zip(hits[:k], headings, strict=True)
                ):
                    focused[(k, c)] += 1
    finally:
        await conn.close()
        await embedder.close()
    n = len(questions)

    def table(counts: dict[tuple[int, int], int]) -> dict[str, dict[str, float]]:
        return {
            f"k={k}": {("whole" if c == 0 else f"{c}_chars"): round(counts[(k, c)] / n, 3) for c in CHARS}
            for k in KS
        }

    return {
        "split": split,
        "questions": n,
        "needle_reaches_the_llm": table(found),
        "needle_reaches_the_llm_focused": table(focused),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=["tune", "heldout", "all"], default="tune")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    report = asyncio.run(measure(args.split))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for key in ("needle_reaches_the_llm", "needle_reaches_the_llm_focused"):
        print(key, json.dumps(report[key], indent=1), file=sys.stderr)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
