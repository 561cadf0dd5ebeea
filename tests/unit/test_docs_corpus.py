"""docs/ is also the corpus the local stack ingests and the e2e tests ask questions about."""

from __future__ import annotations

from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"
# What Whisper tiny.en makes of the e2e's spoken questions (tests/e2e/test_talk.py). Quoted in the
# docs, they turn a misheard question into a search hit on the page about mishearing, and the
# answer is that page's sentence (CI failed so once): describe mishearings, never quote them.
MISHEARD = ("locals tack", "it slugs", "get way loose")
# The e2e's questions themselves, quoted, make the page that quotes them their best match, and
# the answer a sentence about the question instead of its answer (CI failed so too).
from tests.e2e.conftest import QUESTION  # noqa: E402


def test_the_docs_do_not_quote_the_e2e_questions_as_misheard() -> None:
    quoted = [
        f"{page.name}: {phrase!r}"
        for page in sorted(DOCS.rglob("*.md"))
        for phrase in MISHEARD
        if phrase in page.read_text(encoding="utf-8").lower()
    ]
    assert not quoted, quoted


def test_the_docs_do_not_quote_the_e2e_question() -> None:
    quoted = [
        page.name for page in sorted(DOCS.rglob("*.md")) if QUESTION.lower() in page.read_text().lower()
    ]
    assert not quoted, quoted
