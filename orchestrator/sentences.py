"""Cut streamed LLM text into sentences as soon as each one is complete, so speech can start early."""

from __future__ import annotations

import re

# A sentence ends at . ! ? … (optionally followed by closing quotes/brackets) and then whitespace.
_BOUNDARY = re.compile(r"""[.!?…]+["')\]]*\s+""")
# Abbreviations and initials whose full stop does not end a sentence.
_NOT_AN_END = re.compile(
    r"(?:\b(?:e\.g|i\.e|etc|vs|Mr|Mrs|Ms|Dr|St|No|Fig|approx)\.|\b[A-Z]\.|(?:^|\n)\s*\d{1,2}\.)$"
)
# Very long runs without punctuation are cut at a comma or similar so TTS does not wait forever.
SOFT_LIMIT_CHARS = 220
_SOFT_BOUNDARY = re.compile(r"[,;:—]\s+")
# Citation markers such as [1] or [2, 3] are for the screen, not for the ear.
_CITATION = re.compile(r"\s*\[\d+(?:\s*,\s*\d+)*\]")


class SentenceSplitter:
    """Feed text deltas; get back the sentences they complete. `flush()` returns the rest."""

    def __init__(self, soft_limit: int = SOFT_LIMIT_CHARS) -> None:
        self._buffer = ""
        self._soft_limit = soft_limit

    def feed(self, delta: str) -> list[str]:
        self._buffer += delta
        sentences: list[str] = []
        start = 0
        for match in _BOUNDARY.finditer(self._buffer):
            candidate = self._buffer[start : match.end()]
            if _NOT_AN_END.search(self._buffer[start : match.start() + 1]):
                continue
            if candidate.strip():
                sentences.append(candidate.strip())
            start = match.end()
        self._buffer = self._buffer[start:]
        if len(self._buffer) > self._soft_limit:
            cut = None
            for soft in _SOFT_BOUNDARY.finditer(self._buffer):
                cut = soft.end()
            if cut:
                sentences.append(self._buffer[:cut].strip())
                self._buffer = self._buffer[cut:]
        return sentences

    def flush(self) -> list[str]:
        rest = self._buffer.strip()
        self._buffer = ""
        return [rest] if rest else []


def speakable(sentence: str) -> str:
    """The text to synthesise: citation markers and markdown emphasis removed."""
    text = _CITATION.sub("", sentence)
    text = re.sub(r"[*_`#]+", "", text)
    return re.sub(r"\s+", " ", text).strip()
