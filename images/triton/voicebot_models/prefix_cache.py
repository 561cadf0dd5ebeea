"""Saved key/value states of prompt prefixes, so a prompt that starts like an earlier one only
evaluates what is new (the `llm` model's llama.cpp engine; vLLM does the same by itself with
automatic prefix caching).

llama.cpp keeps one context: the tokens it last evaluated. With several voice sessions, the
prefix one session warmed while its user was speaking (instructions, history, passages) is
overwritten by the next request of another session. So the model saves the state of each
prompt it evaluates here, keyed by its tokens, and before a request restores the saved state
that shares the longest prefix with the new prompt, when that beats what the context holds.

Bounded by bytes (least recently used first out); pure Python, so it is tested without a model.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """The number of leading tokens `a` and `b` share."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


@dataclass(frozen=True)
class SavedState:
    tokens: tuple[int, ...]
    state: bytes  # the engine's opaque sequence state (key/value cache of `tokens`)


class PrefixCache:
    def __init__(self, max_bytes: int, *, min_tokens: int = 32) -> None:
        self.max_bytes = max_bytes
        self.min_tokens = min_tokens  # shorter prompts are cheaper to evaluate than to save
        self._entries: OrderedDict[tuple[int, ...], SavedState] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def best(self, tokens: Sequence[int]) -> tuple[SavedState | None, int]:
        """The saved state sharing the longest prefix with `tokens`, and that length."""
        best: SavedState | None = None
        best_len = 0
        for entry in self._entries.values():
            n = common_prefix(entry.tokens, tokens)
            if n > best_len:
                best, best_len = entry, n
        if best is not None:
            self._entries.move_to_end(best.tokens)
        return best, best_len

    def wants(self, tokens: Sequence[int]) -> bool:
        return len(tokens) >= self.min_tokens and tuple(tokens) not in self._entries

    def put(self, tokens: Sequence[int], state: bytes) -> None:
        key = tuple(tokens)
        if len(key) < self.min_tokens or len(state) > self.max_bytes:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= len(old.state)
        # A saved state that is a prefix of this one is now redundant: this one serves it too.
        for other in [k for k in self._entries if len(k) < len(key) and key[: len(k)] == k]:
            self._bytes -= len(self._entries.pop(other).state)
        self._entries[key] = SavedState(key, state)
        self._bytes += len(state)
        while self._bytes > self.max_bytes and self._entries:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= len(evicted.state)
