"""A collection's own vocabulary, to bias speech recognition towards the words of its documents.

Whisper hears "git rebase" or "PRAGMA" badly unless it expects them. faster-whisper takes
`hotwords` (and `initial_prompt`): a short text the decoder is conditioned on. We derive it from
what is ingested: the words of titles and headings, identifiers from the text (`core.autocrlf`,
`VACUUM`, `--amend`), said the way a person says them, ranked by how many chunks use them.
Stop words and plain short words are left out: the hint must stay short (Whisper conditions on
at most about 200 tokens), so it spends them on the rare words Whisper would not guess.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

import psycopg

from ingest.tenancy import tenant_scope

MAX_CHARS = 400  # of the hint: ~100 Whisper tokens, leaving room for the transcript's own
SAMPLE_CHUNKS = 5000  # chunks read to count terms; enough to rank a big collection's words

# Common words of five letters or more: they say nothing about a collection.
STOPWORDS = frozenset(
    [
        "about",
        "above",
        "after",
        "again",
        "along",
        "already",
        "also",
        "always",
        "among",
        "another",
        "around",
        "because",
        "before",
        "being",
        "below",
        "between",
        "cannot",
        "could",
        "doing",
        "during",
        "either",
        "every",
        "first",
        "following",
        "further",
        "given",
        "having",
        "however",
        "itself",
        "later",
        "least",
        "might",
        "other",
        "others",
        "otherwise",
        "perhaps",
        "rather",
        "really",
        "shall",
        "should",
        "since",
        "still",
        "their",
        "theirs",
        "there",
        "these",
        "things",
        "those",
        "though",
        "through",
        "today",
        "under",
        "until",
        "used",
        "using",
        "usually",
        "value",
        "where",
        "whether",
        "which",
        "while",
        "whose",
        "within",
        "without",
        "would",
        "yours",
        "yourself",
    ]
)

_IDENTIFIER = re.compile(r"(?<![\w-])-{0,2}([A-Za-z][A-Za-z0-9]*(?:[._-][A-Za-z0-9]+)+|[A-Z]{3,}[0-9]*)\b")
_WORD = re.compile(r"\b[A-Za-z][a-z]{4,}\b")


def _spoken(identifier: str) -> str:
    """`core.autocrlf` → "core autocrlf", `git-commit` → "git commit", `VACUUM` → "VACUUM"."""
    return re.sub(r"[._-]+", " ", identifier.strip("-")).strip()


def terms_of(text: str) -> set[str]:
    """The candidate terms of one chunk: identifiers (spoken form) and longer words."""
    found = {_spoken(m.group(1)) for m in _IDENTIFIER.finditer(text)}
    found |= {w.lower() for w in _WORD.findall(text) if w.lower() not in STOPWORDS}
    return {t for t in found if 3 <= len(t) <= 40}


def rank(chunks: Iterable[str], headings: Iterable[str], *, max_chars: int = MAX_CHARS) -> str:
    """The hint: terms by the number of chunks using them (heading terms count thrice), joined
    with commas, cut at `max_chars`."""
    counts: Counter[str] = Counter()
    for text in chunks:
        counts.update(terms_of(text))
    for heading in headings:
        for term in terms_of(heading):
            counts[term] += 3
    # Seen once is noise; words seen everywhere ("option", "command") still help the decoder.
    ranked = [t for t, n in counts.most_common() if n >= 2]
    hint: list[str] = []
    size = 0
    for term in ranked:
        if size + len(term) + 2 > max_chars:
            break
        hint.append(term)
        size += len(term) + 2
    return ", ".join(hint)


async def collection_vocabulary(conn: psycopg.AsyncConnection, collection: str, *, tenant: int) -> str:
    """The ASR hint for `tenant`'s `collection` ("" when it holds nothing)."""
    async with tenant_scope(conn, tenant):
        rows = await (
            await conn.execute(
                "SELECT c.text, d.title, c.heading_path FROM chunks c JOIN documents d ON d.id = c.document_id"
                " WHERE c.tenant_id = %s AND c.collection = %s ORDER BY c.id LIMIT %s",
                (tenant, collection, SAMPLE_CHUNKS),
            )
        ).fetchall()
    texts = [row[0] for row in rows]
    headings = {row[1] for row in rows} | {h for row in rows for h in (row[2] or [])}
    return rank(texts, headings)
