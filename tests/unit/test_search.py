"""Search: argument handling that needs no database (ranking is tested against the real store)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from ingest.search import SearchHit, search
from ingest.store import vector_literal


class CountingEmbedder:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    async def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        self.calls.append(list(texts))
        return np.full((len(texts), 384), 1 / np.sqrt(384), dtype=np.float32)


class NoConnection:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError("the store must not be queried")


@pytest.mark.parametrize("query", ["", "   \n"])
def test_blank_query_returns_nothing_without_work(query: str) -> None:
    embedder = CountingEmbedder()
    assert asyncio.run(search(NoConnection(), embedder, query, tenant=1)) == []  # type: ignore[arg-type]
    assert embedder.calls == []


def test_zero_k_returns_nothing() -> None:
    assert asyncio.run(search(NoConnection(), CountingEmbedder(), "hello", tenant=1, k=0)) == []  # type: ignore[arg-type]


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown search mode"):
        asyncio.run(search(NoConnection(), CountingEmbedder(), "hello", tenant=1, mode="fuzzy"))  # type: ignore[arg-type]


def test_vector_literal_round_trips() -> None:
    vector = np.array([0.1, -2.5, 3e-7, 1.0], dtype=np.float32)
    text = vector_literal(vector)
    assert text.startswith("[")
    assert text.endswith("]")
    parsed = np.array([float(x) for x in text[1:-1].split(",")], dtype=np.float32)
    assert np.array_equal(parsed, vector)


def test_search_hit_is_immutable() -> None:
    hit = SearchHit(1, 2, "Title", "file:///a.md", ["A", "B"], "text", 0.5)
    with pytest.raises(AttributeError):
        hit.score = 1.0  # type: ignore[misc]


def test_text_bounds_leave_room_for_the_fusion() -> None:
    from ingest.search import CANDIDATES, TEXT_MATCH_LIMIT, TEXT_RERANK

    # The shortlist feeds ts_rank_cd, which must still yield every candidate the fusion takes.
    assert CANDIDATES <= TEXT_RERANK <= TEXT_MATCH_LIMIT
