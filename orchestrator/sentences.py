"""Cut streamed LLM text into sentences as soon as each one is complete, so speech can start early,
and say each one the way a person would read it aloud (`speakable`)."""

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
FENCE = "```"


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
            if candidate.count(FENCE) % 2:
                continue  # inside a code block: its full stops end nothing
            if candidate.strip():
                sentences.append(candidate.strip())
            start = match.end()
        self._buffer = self._buffer[start:]
        if len(self._buffer) > self._soft_limit and not self._buffer.count(FENCE) % 2:
            cut = None
            for soft in _SOFT_BOUNDARY.finditer(self._buffer):
                if _closed(self._buffer[: soft.start()]):
                    cut = soft.end()
            if cut:
                sentences.append(self._buffer[:cut].strip())
                self._buffer = self._buffer[cut:]
        return sentences

    def flush(self) -> list[str]:
        rest = self._buffer.strip()
        self._buffer = ""
        return [rest] if rest else []


def _closed(text: str) -> bool:
    """No bracket or inline code left open: a soft cut there would split "(a; b)" or `x, y` in two,
    and put the citation that follows the bracket in the middle of what is spoken."""
    return (
        text.count("(") <= text.count(")") and text.count("[") <= text.count("]") and not text.count("`") % 2
    )


_CODE_BLOCK = re.compile(r"```.*?(?:```|$)", re.DOTALL)
_URL = re.compile(r"\bhttps?://\S+")
# A list or heading marker at the start of a line: "- ", "* ", "1. ", "## ".
_LINE_MARKER = re.compile(r"(?m)^\s*(?:[-*+]\s+|\d{1,2}[.)]\s+|#{1,6}\s+)")
# An option: -x, --amend, --no-verify (a leading dash after a space or at the start).
_OPTION = re.compile(r"(?<![\w-])--?([A-Za-z][\w-]*)")
# A dotted name: core.autocrlf, config.toml, orchestrator.settings (not 3.11, not a sentence end).
_DOTTED = re.compile(r"\b([A-Za-z_][\w-]*(?:\.[A-Za-z_][\w-]*)+)\b")
# A file path: `.voicebot/logs/<component>.log`, `charts/voicebot/` (said with its slashes).
_PATH = re.compile(r"(?<!\S)[.\w<>-]*\w[.\w<>-]*/(?:[\w./<>-]*[\w/<>-])?")
# A leading dot that starts a name: `.voicebot`.
_LEADING_DOT = re.compile(r"(?<!\S)\.(?=[A-Za-z_])")
# snake_case and SCREAMING_SNAKE names: VOICEBOT_DEV_MODE, max_tokens.
_SNAKE = re.compile(r"\b[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)+\b")
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z][a-z])")
_CAMEL_WORD = re.compile(r"\b[A-Z]?[a-z]+(?:[A-Z][a-z0-9]+)+\b")


def _words(name: str) -> str:
    """An identifier's parts as words: hyphens and underscores are not said aloud."""
    spoken = re.sub(r"[-_]+", " ", name).strip()
    return spoken.lower() if spoken.isupper() else spoken


def _path_words(match: re.Match[str]) -> str:
    """A path said with its slashes; "and/or", "TCP/IP" and "1/2" stay as they are written."""
    path = match.group(0)
    if path.count("/") == 1 and not path.endswith("/") and not any(c in path for c in ".<>"):
        return path
    return " slash ".join(part for part in path.strip("/").split("/") if part)


def speakable(sentence: str) -> str:
    """The text to synthesise, said the way a person reads it out: no citation markers, markdown
    or code blocks; identifiers as words (`VOICEBOT_DEV_MODE` → "voicebot dev mode", `--prune` →
    "prune", `core.autocrlf` → "core dot autocrlf"); a link as "the link"."""
    text = _CODE_BLOCK.sub(" ", sentence)
    text = _CITATION.sub("", text)
    text = _URL.sub("the link", text)
    text = _LINE_MARKER.sub("", text)
    text = text.replace("`", "")
    text = re.sub(r"\*\*|__|[*#]", "", text)
    text = _PATH.sub(_path_words, text)
    text = text.replace("<", "").replace(">", "")
    text = _LEADING_DOT.sub("dot ", text)
    text = _OPTION.sub(lambda m: _words(m.group(1)), text)
    text = _DOTTED.sub(lambda m: " dot ".join(_words(p) for p in m.group(1).split(".")), text)
    text = _SNAKE.sub(lambda m: _words(m.group(0)), text)
    text = _CAMEL_WORD.sub(lambda m: _CAMEL_BOUNDARY.sub(" ", m.group(0)), text)
    text = re.sub(r"\s+([.!?,;:])(?=\s|$)", r"\1", text)  # not the dot that starts a name
    return re.sub(r"\s+", " ", text).strip()
