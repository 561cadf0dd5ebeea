"""A regression slice of `make eval-answers` on the real stack: documents nobody here wrote.

A few pages of the eval's two foreign corpora (git's and SQLite's HTML manuals, from Debian's
git-doc and sqlite3-doc, installed by `make tools-integration`) are ingested into a store of
their own, and a few of the eval's questions are typed to the gateway: each answerable one must
be answered with its facts (the eval's keyword groups) from a cited passage that holds its
needle, and each unanswerable one must be declined. Decoding is greedy, so the same documents
and question give the same answer: a failure here means an answer stopped being right (or a
question stopped being declined), and `make eval-answers` gives the full picture.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ingest.embedding import TritonEmbedder
from ingest.migrate import migrate
from ingest.pipeline import ingest_paths
from orchestrator.stack.ports import free_port
from orchestrator.stack.postgres import EmbeddedPostgres
from orchestrator.stack.triton import TritonServer
from tests.bench.eval_answers import (
    CORPORA_DIR,
    check_citations,
    install_corpora,
    is_decline,
    load_questions,
    matches_keywords,
)
from tests.integration.conftest import LOG_DIR, running_gateway

# Answerable questions of the tuning half that the default profile answers right (measured with
# this test on 2026-12-01: git-35, "make git pull rebase", is declined, its passage not retrieved),
# from both corpora, and unanswerable ones of each kind (general knowledge, near misses).
ANSWERABLE = ("git-41", "git-43", "sqlite-31", "sqlite-33", "sqlite-43")
UNANSWERABLE = ("general-none-01", "general-none-09", "git-none-01", "sqlite-none-01")
# The pages those questions come from, and a few more the retrieval must not be fooled by.
PAGES = {
    "git": ("git-gc.html", "git-archive.html", "git-pull.html", "git-commit.html", "git-branch.html"),
    "sqlite": ("withoutrowid.html", "lang_altertable.html", "lang_corefunc.html", "lang_transaction.html"),
}
QUESTIONS = {q.id: q for q in load_questions()}


@pytest.fixture(scope="module")
def foreign_gateway(stack_dir: Path, triton: TritonServer) -> Iterator[str]:
    install_corpora(CORPORA_DIR)
    pages = stack_dir / "quality-pages"
    for corpus, names in PAGES.items():
        (pages / corpus).mkdir(parents=True, exist_ok=True)
        for name in names:
            shutil.copy(CORPORA_DIR / corpus / name, pages / corpus / name)
    postgres = EmbeddedPostgres(
        stack_dir / "quality-postgres", free_port(), log_dir=LOG_DIR, database="voicebot_quality"
    )
    postgres.start()
    try:
        postgres.wait_ready(120)

        async def prepare() -> None:
            await migrate(postgres.dsn)
            embedder = TritonEmbedder(triton.grpc_url)
            try:
                report = await ingest_paths(postgres.dsn, embedder, [pages])
            finally:
                await embedder.close()
            assert not report.failed, report

        asyncio.run(prepare())
        with running_gateway(postgres, triton, log_name="gateway-quality") as (url, _):
            yield url
    finally:
        postgres.stop()


def _ask(url: str, question: str) -> dict[str, Any]:
    """POST /v1/chat (SSE): the sources event and the done event of one typed question."""
    response = httpx.post(f"{url}/v1/chat", json={"message": question}, timeout=600)
    assert response.status_code == 200, response.text
    events: dict[str, Any] = {}
    for block in response.text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in lines:
            events[lines["event"]] = json.loads(lines["data"])
    assert "error" not in events, events["error"]
    return events


@pytest.mark.parametrize("qid", ANSWERABLE)
def test_an_answerable_question_is_answered_from_a_cited_passage(foreign_gateway: str, qid: str) -> None:
    question = QUESTIONS[qid]
    events = _ask(foreign_gateway, question.question)
    done = events["done"]
    assert not is_decline(done["text"], done.get("declined")), f"{qid} declined: {done}"
    assert matches_keywords(done["text"], question.keywords), (
        f"{qid}: {done['text']!r} lacks {question.keywords}"
    )
    passages = {s["n"]: s.get("text") for s in events["sources"]["sources"]}
    ordered = [passages.get(n) for n in range(1, max(passages, default=0) + 1)]
    citations = check_citations(done["text"], ordered, question.needle)
    assert citations.correct, f"{qid}: no cited passage holds {question.needle!r}: {done['text']!r}"


@pytest.mark.parametrize("qid", UNANSWERABLE)
def test_a_question_the_documents_do_not_answer_is_declined(foreign_gateway: str, qid: str) -> None:
    done = _ask(foreign_gateway, QUESTIONS[qid].question)["done"]
    assert is_decline(done["text"], done.get("declined")), f"{qid} was answered: {done['text']!r}"
    assert done["citations"] == []
