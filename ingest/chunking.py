"""Structure-aware chunking: sections by heading, blocks kept whole when they fit, bounded by tokens.

How a document becomes chunks:
1. The blocks are grouped into sections by heading; each chunk carries its section's heading path
   (the document title is not repeated in it). Sections with no content produce no chunk.
2. Within a section, blocks are packed greedily into chunks of at most `max_tokens`. A block that
   alone is too large is split at its natural seams: a paragraph by sentences, a list by items, a
   table by rows (the header row repeated in every part), a code block by lines (fences repeated);
   a single seam-less run longer than the budget (a huge sentence, a minified line) is cut at
   whitespace by token count.
3. When a section continues into a new chunk after prose, the new chunk starts with the last
   sentences of the previous one, up to `overlap_tokens`, so an answer that straddles the cut is
   whole in at least one chunk.

Token budgets are in the embedding model's word pieces (see ingest.tokens): all-MiniLM-L6-v2
reads 256, of which 2 are [CLS]/[SEP] and up to `MAX_PREFIX_TOKENS` go to the title and heading
path prepended at embedding time, which leaves 220 for the text by default.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ingest.loaders import Block, ParsedDocument
from ingest.tokens import MODEL_MAX_TOKENS, TokenCounter, default_counter

# Bump when chunking or embedding input changes: documents ingested by an older version are
# re-ingested even if their files did not change.
CHUNKER_VERSION = 1

MAX_PREFIX_TOKENS = 32
DEFAULT_MAX_TOKENS = MODEL_MAX_TOKENS - 2 - MAX_PREFIX_TOKENS - 2  # 220
DEFAULT_OVERLAP_TOKENS = 40

_SENTENCE_END = re.compile(r"(?<=[.!?…。！？])\s+|\n+")
_LIST_ITEM_START = re.compile(r"^[ \t]{0,3}(?:[-*+]|\d{1,9}[.)])[ \t]+")
_TABLE_SEPARATOR = re.compile(r"^\|?[\s:|-]+\|?$")


@dataclass(frozen=True)
class ChunkingConfig:
    max_tokens: int = DEFAULT_MAX_TOKENS
    overlap_tokens: int = DEFAULT_OVERLAP_TOKENS

    def __post_init__(self) -> None:
        if self.max_tokens < 16:
            raise ValueError("max_tokens must be at least 16")
        if not 0 <= self.overlap_tokens <= self.max_tokens // 2:
            raise ValueError("overlap_tokens must be between 0 and max_tokens / 2")


@dataclass(frozen=True)
class Chunk:
    position: int
    heading_path: tuple[str, ...]
    text: str
    token_count: int


@dataclass
class _Unit:
    text: str
    tokens: int
    block: int  # index of the block it came from, to choose the separator when joining
    kind: str


class Chunker:
    def __init__(self, config: ChunkingConfig | None = None, counter: TokenCounter | None = None) -> None:
        self.config = config or ChunkingConfig()
        self.counter = counter or default_counter()

    # ---- public ----------------------------------------------------------------------
    def chunk(self, doc: ParsedDocument) -> list[Chunk]:
        chunks: list[Chunk] = []
        for path, blocks in _sections(doc.blocks):
            for text in self._chunk_section(blocks):
                chunks.append(Chunk(len(chunks), path, text, self.counter.count(text)))
        return chunks

    # ---- sections --------------------------------------------------------------------
    def _chunk_section(self, blocks: Sequence[tuple[int, Block]]) -> list[str]:
        limit = self.config.max_tokens
        units = [unit for index, block in blocks for unit in self._units(index, block)]
        out: list[str] = []
        current: list[_Unit] = []
        used = 0
        for unit in units:
            if current and used + unit.tokens > limit:
                out.append(_join(current))
                last = current[-1]
                current, used = [], 0
                if last.kind in ("paragraph", "list") and self.config.overlap_tokens:
                    tail = self._tail(last.text, self.config.overlap_tokens)
                    if tail and tail.strip() != unit.text.strip():
                        tail_tokens = self.counter.count(tail)
                        if tail_tokens + unit.tokens <= limit:
                            current, used = [_Unit(tail, tail_tokens, last.block, last.kind)], tail_tokens
            current.append(unit)
            used += unit.tokens
        if current:
            out.append(_join(current))
        return out

    def _units(self, index: int, block: Block) -> list[_Unit]:
        text = block.text.strip()
        if not text:
            return []
        tokens = self.counter.count(text)
        if tokens <= self.config.max_tokens:
            return [_Unit(text, tokens, index, block.kind)]
        if block.kind == "table":
            pieces = self._split_table(text)
        elif block.kind == "code":
            pieces = self._split_code(text)
        else:
            # Prose pieces leave room for the overlap the next chunk starts with.
            budget = self.config.max_tokens - self.config.overlap_tokens
            if block.kind == "list":
                pieces = self._pack(_list_items(text), "\n", budget=budget)
            else:
                pieces = self._pack(_sentences(text), " ", budget=budget)
        return [_Unit(p, self.counter.count(p), index, block.kind) for p in pieces if p.strip()]

    # ---- splitting -------------------------------------------------------------------
    def _pack(self, parts: Iterable[str], sep: str, *, budget: int | None = None) -> list[str]:
        """Greedily joins `parts` with `sep` into pieces of at most `budget` tokens."""
        limit = budget if budget is not None else self.config.max_tokens
        pieces: list[str] = []
        current: list[str] = []
        used = 0
        for part in parts:
            part = part.strip("\n")
            if not part.strip():
                continue
            tokens = self.counter.count(part)
            if tokens > limit:
                if current:
                    pieces.append(sep.join(current))
                    current, used = [], 0
                sentences = _sentences(part)
                if len(sentences) > 1:
                    pieces.extend(self._pack(sentences, " ", budget=limit))
                else:
                    pieces.extend(self._hard_split(part, limit))
                continue
            if current and used + tokens > limit:
                pieces.append(sep.join(current))
                current, used = [], 0
            current.append(part)
            used += tokens
        if current:
            pieces.append(sep.join(current))
        return pieces

    def _hard_split(self, text: str, limit: int) -> list[str]:
        """Cuts a run with no natural seam into pieces of at most `limit` tokens, at whitespace when possible."""
        pieces: list[str] = []
        rest = text.strip()
        while rest:
            end = self.counter.cut(rest, limit)
            if end < len(rest):
                space = max(rest.rfind(" ", 0, end + 1), rest.rfind("\n", 0, end + 1))
                if space > end // 2:
                    end = space
            piece, rest = rest[:end].strip(), rest[end:].strip()
            if piece:
                pieces.append(piece)
        return pieces

    def _split_table(self, text: str) -> list[str]:
        rows = text.split("\n")
        header = rows[:1]
        if len(rows) > 1 and _TABLE_SEPARATOR.match(rows[1].strip()):
            header = rows[:2]
        body = rows[len(header) :]
        header_text = "\n".join(header)
        header_tokens = self.counter.count(header_text)
        if header_tokens > self.config.max_tokens // 2 or not body:
            return self._pack(rows, "\n")
        parts = self._pack(body, "\n", budget=self.config.max_tokens - header_tokens)
        return [header_text + "\n" + part for part in parts]

    def _split_code(self, text: str) -> list[str]:
        lines = text.split("\n")
        opening, closing = "", ""
        if lines and lines[0].lstrip().startswith(("```", "~~~")):
            opening = lines.pop(0)
            if lines and lines[-1].strip() and set(lines[-1].strip()) <= {"`", "~"}:
                closing = lines.pop()
        fences = self.counter.count(opening + "\n" + closing)
        parts = self._pack(lines, "\n", budget=self.config.max_tokens - fences)
        if not opening:
            return parts
        return [f"{opening}\n{part}\n{closing}".rstrip("\n") for part in parts]

    def _tail(self, text: str, budget: int) -> str:
        """The last sentences of `text` that fit in `budget` tokens (or its last words when none does)."""
        sentences = [s for s in _sentences(text) if s.strip()]
        taken: list[str] = []
        used = 0
        for sentence in reversed(sentences):
            tokens = self.counter.count(sentence)
            if used + tokens > budget:
                break
            taken.insert(0, sentence)
            used += tokens
        if taken:
            if len(taken) == len(sentences):
                return ""  # the whole unit would be repeated: no overlap rather than a duplicate
            return " ".join(taken)
        last = sentences[-1] if sentences else text
        total = self.counter.count(last)
        start = self.counter.cut(last, max(0, total - budget))
        space = last.find(" ", start)
        return last[space + 1 :].strip() if space != -1 else ""


def _sections(blocks: Sequence[Block]) -> list[tuple[tuple[str, ...], list[tuple[int, Block]]]]:
    """Groups blocks under their headings; returns (heading path, blocks) for non-empty sections."""
    sections: list[tuple[tuple[str, ...], list[tuple[int, Block]]]] = []
    stack: list[tuple[int, str]] = []
    current: list[tuple[int, Block]] = []

    def close() -> None:
        if current:
            sections.append((tuple(title for _, title in stack), list(current)))
            current.clear()

    for index, block in enumerate(blocks):
        if block.kind == "heading":
            close()
            while stack and stack[-1][0] >= block.level:
                stack.pop()
            stack.append((block.level, block.text))
        elif block.text.strip():
            current.append((index, block))
    close()
    return sections


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def _list_items(text: str) -> list[str]:
    items: list[str] = []
    for line in text.split("\n"):
        if _LIST_ITEM_START.match(line) or not items:
            items.append(line)
        else:
            items[-1] += "\n" + line
    return items


def _join(units: Sequence[_Unit]) -> str:
    out = units[0].text
    for previous, unit in itertools.pairwise(units):
        if unit.block != previous.block:
            sep = "\n\n"
        elif unit.kind == "paragraph":
            sep = " "
        else:
            sep = "\n"
        out += sep + unit.text
    return out


def chunk_document(doc: ParsedDocument, config: ChunkingConfig | None = None) -> list[Chunk]:
    """Chunks `doc` with the default token counter (see ingest.tokens)."""
    return Chunker(config).chunk(doc)


def embedding_input(
    title: str, heading_path: Sequence[str], text: str, counter: TokenCounter | None = None
) -> str:
    """What is sent to the embedding model for a chunk: its title and heading path, then its text.

    The prefix gives a short chunk the context its words lack ("Install > Windows: run the
    installer"); it is cut to MAX_PREFIX_TOKENS so the chunk text is never pushed past the model's
    256 word pieces.
    """
    counter = counter or default_counter()
    prefix = " > ".join([title, *heading_path]).strip(" >")
    if prefix and counter.count(prefix) > MAX_PREFIX_TOKENS:
        prefix = prefix[: counter.cut(prefix, MAX_PREFIX_TOKENS)].rstrip()
    return f"{prefix}\n{text}" if prefix else text
