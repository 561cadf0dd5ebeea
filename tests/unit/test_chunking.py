"""Chunking follows structure, stays inside the token budget, and carries heading paths."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from ingest.chunking import (
    DEFAULT_MAX_TOKENS,
    MAX_PREFIX_CHARS,
    MAX_PREFIX_TOKENS,
    Chunk,
    Chunker,
    ChunkingConfig,
    embedding_input,
)
from ingest.loaders import Block, ParsedDocument, parse_bytes
from ingest.tokens import MODEL_MAX_TOKENS, EstimateCounter, TokenCounter, WordPieceCounter, default_counter

COUNTERS: list[TokenCounter] = [EstimateCounter()]
if isinstance(default_counter(), WordPieceCounter):
    COUNTERS.append(default_counter())


@pytest.fixture(params=COUNTERS, ids=lambda c: c.name)
def counter(request: pytest.FixtureRequest) -> TokenCounter:
    param: TokenCounter = request.param
    return param


def md(text: str) -> ParsedDocument:
    return parse_bytes(text.encode(), Path("doc.md"))


def chunk(text: str, counter: TokenCounter, **config: int) -> list[Chunk]:
    return Chunker(ChunkingConfig(**config), counter).chunk(md(text))


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text)


def test_sections_carry_heading_paths_and_empty_sections_vanish(counter: TokenCounter) -> None:
    chunks = chunk(
        "# Title\n\nIntro.\n\n## Install\n\n### Linux\n\nRun apt.\n\n### Windows\n\n## Empty\n\n## Use\n\nTalk.\n",
        counter,
    )
    assert [(c.heading_path, c.text) for c in chunks] == [
        ((), "Intro."),
        (("Install", "Linux"), "Run apt."),
        (("Use",), "Talk."),
    ]
    assert [c.position for c in chunks] == [0, 1, 2]


def test_small_blocks_of_a_section_share_a_chunk(counter: TokenCounter) -> None:
    chunks = chunk("## A\n\nOne.\n\n- item\n- item two\n\nTwo.\n", counter)
    assert len(chunks) == 1
    assert chunks[0].text == "One.\n\n- item\n- item two\n\nTwo."


def test_every_chunk_fits_the_budget_and_nothing_is_lost(counter: TokenCounter) -> None:
    sentences = [f"Sentence number {i} talks about topic {i % 7} in some detail." for i in range(300)]
    text = "# Big\n\n## Huge paragraph\n\n" + " ".join(sentences) + "\n"
    chunks = chunk(text, counter, max_tokens=120, overlap_tokens=30)
    assert len(chunks) > 5
    assert all(c.token_count <= 120 for c in chunks)
    assert all(counter.count(c.text) == c.token_count for c in chunks)
    # every sentence is in some chunk, in order
    joined = " ".join(c.text for c in chunks)
    for s in sentences:
        assert s in joined
    # chunks start on sentence boundaries
    assert all(c.text.startswith("Sentence number") for c in chunks)


def test_consecutive_chunks_of_prose_overlap(counter: TokenCounter) -> None:
    sentences = [f"Fact {i} is stated here plainly." for i in range(80)]
    chunks = chunk("## S\n\n" + " ".join(sentences), counter, max_tokens=80, overlap_tokens=20)
    assert len(chunks) >= 3
    for previous, current in itertools.pairwise(chunks):
        first_sentence = current.text.split(". ")[0] + "."
        assert first_sentence in previous.text, "the next chunk starts with the end of the previous one"
        assert current.text != previous.text


def test_no_overlap_when_disabled(counter: TokenCounter) -> None:
    sentences = [f"Fact {i} is stated here plainly." for i in range(80)]
    chunks = chunk("## S\n\n" + " ".join(sentences), counter, max_tokens=80, overlap_tokens=0)
    assert sum(len(words(c.text)) for c in chunks) == len(words(" ".join(sentences)))


def test_a_sentence_longer_than_the_budget_is_cut_at_whitespace(counter: TokenCounter) -> None:
    long_sentence = " ".join(f"word{i}" for i in range(1000))
    chunks = chunk(f"## Run-on\n\n{long_sentence}\n", counter, max_tokens=64, overlap_tokens=0)
    assert all(c.token_count <= 64 for c in chunks)
    assert " ".join(c.text for c in chunks) == long_sentence


def test_a_word_longer_than_the_budget_still_makes_progress(counter: TokenCounter) -> None:
    blob = "x" * 5000
    chunks = chunk(f"## Blob\n\n{blob}\n", counter, max_tokens=32, overlap_tokens=0)
    assert "".join(c.text for c in chunks).replace(" ", "") == blob
    assert all(c.token_count <= 32 for c in chunks)


def test_large_table_is_split_by_rows_with_the_header_repeated(counter: TokenCounter) -> None:
    rows = "\n".join(f"| setting_{i} | value {i} | what setting {i} does |" for i in range(120))
    text = f"## Settings\n\n| name | default | description |\n|---|---|---|\n{rows}\n"
    chunks = chunk(text, counter, max_tokens=100, overlap_tokens=20)
    assert len(chunks) > 3
    for c in chunks:
        lines = c.text.split("\n")
        assert lines[:2] == ["| name | default | description |", "|---|---|---|"]
        assert c.token_count <= 100
    body = [line for c in chunks for line in c.text.split("\n")[2:]]
    assert body == rows.split("\n"), "every row exactly once, in order (no overlap inside tables)"


def test_large_code_block_is_split_by_lines_inside_fences(counter: TokenCounter) -> None:
    code = "\n".join(f"    step_{i} = run(step_{i - 1})" for i in range(200))
    chunks = chunk(f"## Code\n\n```python\n{code}\n```\n", counter, max_tokens=90, overlap_tokens=20)
    assert len(chunks) > 2
    for c in chunks:
        assert c.text.startswith("```python\n")
        assert c.text.endswith("\n```")
        assert c.token_count <= 90
    body = [line for c in chunks for line in c.text.split("\n")[1:-1]]
    assert body == code.split("\n")


def test_long_list_is_split_between_items(counter: TokenCounter) -> None:
    items = "\n".join(f"- item {i}: do the thing number {i} carefully" for i in range(100))
    chunks = chunk(f"## Steps\n\n{items}\n", counter, max_tokens=80, overlap_tokens=0)
    assert len(chunks) > 2
    for c in chunks:
        assert all(line.startswith("- item") for line in c.text.split("\n"))


def test_non_ascii_text(counter: TokenCounter) -> None:
    text = "## 東京\n\n" + "東京は日本の首都です。" * 200 + "\n\n## Ünïcödé\n\nÇa marche — très bien ✓.\n"
    chunks = chunk(text, counter, max_tokens=100, overlap_tokens=10)
    assert chunks[0].heading_path == ("東京",)
    assert chunks[-1].heading_path == ("Ünïcödé",)
    assert chunks[-1].text == "Ça marche — très bien ✓."
    assert all(c.token_count <= 100 for c in chunks)


def test_document_with_no_content_has_no_chunks(counter: TokenCounter) -> None:
    assert chunk("# Only a title\n\n## Empty\n\n### Also empty\n", counter) == []
    assert chunk("", counter) == []


def test_default_budget_leaves_room_for_the_prefix() -> None:
    assert DEFAULT_MAX_TOKENS + MAX_PREFIX_TOKENS + 2 <= MODEL_MAX_TOKENS


def test_embedding_input_prefix_is_capped(counter: TokenCounter) -> None:
    text = "Body text."
    assert (
        embedding_input("Guide", ["Install", "Linux"], text, counter) == "Guide > Install > Linux\nBody text."
    )
    long_path = ["very long heading " * 20] * 3
    out = embedding_input("Guide", long_path, text, counter)
    prefix, body = out.split("\n")
    assert body == text
    assert counter.count(prefix) <= MAX_PREFIX_TOKENS


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="max_tokens"):
        ChunkingConfig(max_tokens=4)
    with pytest.raises(ValueError, match="overlap"):
        ChunkingConfig(max_tokens=100, overlap_tokens=60)


def test_estimate_counts_close_to_wordpiece() -> None:
    wordpiece = default_counter()
    if not isinstance(wordpiece, WordPieceCounter):
        pytest.skip("the MiniLM tokenizer is not installed")
    text = Path(__file__).read_text()
    ratio = EstimateCounter().count(text) / wordpiece.count(text)
    assert 0.9 <= ratio <= 1.3


def _chunk_doc(blocks: list[Block], counter: TokenCounter, **config: int) -> list[Chunk]:
    return Chunker(ChunkingConfig(**config), counter).chunk(ParsedDocument("T", tuple(blocks), "html"))


def test_a_chunk_that_starts_inside_an_explanation_starts_with_its_term(counter: TokenCounter) -> None:
    explanation = " ".join(f"Sentence {i} explains what amending does." for i in range(60))
    blocks = [
        Block("heading", "OPTIONS", 2),
        Block("definition", f"--amend: {explanation}", term="--amend"),
        Block("code", "```\n$ git commit --amend\n```", term="--amend"),
        Block("definition", "--all: Stage everything.", term="--all"),
    ]
    chunks = _chunk_doc(blocks, counter, max_tokens=80, overlap_tokens=10)
    assert len(chunks) > 3
    amend = [c for c in chunks if "amend" in c.text and "--all" not in c.text]
    assert all(c.text.startswith("--amend:") for c in amend), [c.text[:30] for c in amend]
    assert all(c.token_count <= 80 for c in chunks)
    assert chunks[-1].text.endswith("--all: Stage everything.")


def test_overlap_stays_within_one_block(counter: TokenCounter) -> None:
    first = " ".join(f"Alpha fact {i} is here." for i in range(30))
    second = " ".join(f"Beta fact {i} is here." for i in range(30))
    chunks = chunk(f"## S\n\n{first}\n\n{second}\n", counter, max_tokens=60, overlap_tokens=15)
    # Within a paragraph the next chunk repeats the previous one's end; a new paragraph does not
    # start with the end of the one before (that repeated text, not context).
    assert sum("Alpha fact 27 is here." in c.text for c in chunks) == 2
    assert sum("Alpha fact 29 is here." in c.text for c in chunks) == 1
    assert next(c for c in chunks if "Beta fact 0 " in c.text).text.startswith("Beta fact 0 ")


def test_chunks_carry_the_page_they_start_on(counter: TokenCounter) -> None:
    blocks = [
        Block("heading", "Page 1", 1, page=1),
        Block("paragraph", "First page text.", page=1),
        Block("heading", "Page 2", 1, page=2),
        Block("paragraph", "Second page text.", page=2),
    ]
    chunks = _chunk_doc(blocks, counter)
    assert [(c.heading_path, c.page) for c in chunks] == [(("Page 1",), 1), (("Page 2",), 2)]


def test_readable_table_rows_are_split_without_a_header(counter: TokenCounter) -> None:
    rows = "\n".join(f"Setting: s{i}; Default: {i}; Meaning: what s{i} does" for i in range(60))
    chunks = _chunk_doc([Block("table", rows)], counter, max_tokens=60, overlap_tokens=0)
    assert len(chunks) > 2
    assert [line for c in chunks for line in c.text.split("\n")] == rows.split("\n")


def test_cutting_a_long_seamless_run_is_linear_and_complete(counter: TokenCounter) -> None:
    run = " ".join(["word"] * 20_000)  # no sentence end: cut at whitespace by token count
    chunks = chunk(f"## Run\n\n{run}\n", counter, max_tokens=64, overlap_tokens=0)
    assert " ".join(c.text for c in chunks) == run
    assert all(c.token_count <= 64 for c in chunks)


def test_chunks_are_bounded_in_characters_too(counter: TokenCounter) -> None:
    # Words past WordPiece's 100 characters are one [UNK] token each: tokens alone do not bound
    # a chunk's length, and the embed model refuses inputs over 8,192 characters.
    text = " ".join(f"{i:03d}" + "z" * 150 for i in range(200))
    chunks = chunk(f"## Long words\n\n{text}\n", counter, max_chars=1000)
    assert len(chunks) > 20
    assert all(len(c.text) <= 1000 for c in chunks)
    assert " ".join(c.text for c in chunks) == text


def test_max_chars_shortens_passages(counter: TokenCounter) -> None:
    sentences = " ".join(f"Sentence {i} says something useful about the topic." for i in range(100))
    chunks = chunk(f"## S\n\n{sentences}\n", counter, max_chars=700, overlap_tokens=0)
    assert all(len(c.text) <= 700 for c in chunks)
    assert max(len(c.text) for c in chunks) > 500


def test_embedding_input_prefix_is_capped_in_characters() -> None:
    title = "a" + " " * 30_000 + "b"
    text = embedding_input(title, ["Section"], "body")
    assert text == "a b > Section\nbody"
    assert len(embedding_input("t" * 5000, [], "body")) <= MAX_PREFIX_CHARS + len("\nbody")
