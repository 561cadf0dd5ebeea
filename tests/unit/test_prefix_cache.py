"""The `llm` model's prefix cache: longest-prefix lookup, redundancy and the byte bound."""

from __future__ import annotations

from voicebot_models.prefix_cache import PrefixCache, common_prefix


def test_common_prefix() -> None:
    assert common_prefix([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix([], [1]) == 0


def test_the_state_sharing_the_longest_prefix_is_found() -> None:
    cache = PrefixCache(10_000, min_tokens=2)
    cache.put([1, 2, 3], b"abc")
    cache.put([1, 5, 6, 7], b"d")
    saved, shared = cache.best([1, 2, 3, 9])
    assert saved is not None
    assert (saved.tokens, saved.state, shared) == ((1, 2, 3), b"abc", 3)
    assert cache.best([8, 8]) == (None, 0)


def test_a_longer_state_replaces_the_prefixes_it_contains() -> None:
    cache = PrefixCache(10_000, min_tokens=2)
    cache.put([1, 2], b"aa")
    cache.put([1, 2, 3], b"bbb")
    assert len(cache) == 1
    assert cache.size_bytes == 3


def test_the_byte_bound_evicts_the_least_recently_used() -> None:
    cache = PrefixCache(10, min_tokens=1)
    cache.put([1], b"x" * 4)
    cache.put([2], b"x" * 4)
    cache.best([1])  # touched: [2] is now the oldest
    cache.put([3], b"x" * 4)
    assert cache.best([2]) == (None, 0)
    assert cache.best([1])[1] == 1
    assert cache.size_bytes == 8


def test_short_prompts_and_oversized_states_are_not_kept() -> None:
    cache = PrefixCache(4, min_tokens=3)
    cache.put([1, 2], b"x")
    cache.put([1, 2, 3], b"x" * 5)
    assert len(cache) == 0
    assert not cache.wants([1, 2])
