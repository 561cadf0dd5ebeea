"""Structure-aware chunking: sections by heading, blocks kept whole when they fit, bounded by tokens.

How a document becomes chunks:
1. The blocks are grouped into sections by heading; each chunk carries its section's heading path
   (the document title is not repeated in it). Sections with no content produce no chunk.
2. Within a section, blocks are packed greedily into chunks of at most `max_tokens`. A block that
   alone is too large is split at its natural seams: a paragraph by sentences, a list by items, a
   table by rows (the header row repeated in every part), a code block by lines (fences repeated);
   a single seam-less run longer than the budget (a huge sentence, a minified line) is cut at
   whitespace by token count.
3. When a block of prose continues into a new chunk, the new chunk starts with the last
   sentences of the previous one, up to `overlap_tokens`, so an answer that straddles the cut is
   whole in at least one chunk.
4. A chunk that starts inside the explanation of a defined term (an option of an HTML manual's
   definition list) starts with that term (`--amend: ...`), so no chunk holds an explanation
   without saying what it explains.

Each chunk records the PDF page it starts on (`page`, None for other formats). Code keeps the
fences the loaders put around it, in every part of a split code block.

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
CHUNKER_VERSION = 2  # 2: definitions, readable table rows, fenced HTML code, pages, term prefixes

MAX_PREFIX_TOKENS = 32
DEFAULT_MAX_TOKENS = MODEL_MAX_TOKENS - 2 - MAX_PREFIX_TOKENS - 2  # 220
DEFAULT_OVERLAP_TOKENS = 40
DEFAULT_MAX_CHARS = 4000  # about 4 times what 220 tokens of prose take: only odd text reaches it
MAX_CHUNK_CHARS = 7000  # with the prefix (at most MAX_PREFIX_CHARS) under the embed model's 8,192
MAX_PREFIX_CHARS = 300

_SENTENCE_END = re.compile(r"(?<=[.!?…。！？])\s+|\n+")
_LIST_ITEM_START = re.compile(r"^[ \t]{0,3}(?:[-*+]|\d{1,9}[.)])[ \t]+")
_TABLE_SEPARATOR = re.compile(r"^\|?[\s:|-]+\|?$")
# At most this many characters are tokenised to find one cut: a word piece is rarely more than
# a few characters, so a window this wide holds the budget, and cutting a long run stays linear.
_CUT_WINDOW_CHARS_PER_TOKEN = 32
# A term longer than this is shortened when it is repeated at the head of a chunk.
_MAX_TERM_TOKENS = 24
_MAX_TERM_CHARS = 120


@dataclass(frozen=True)
class ChunkingConfig:
    max_tokens: int = DEFAULT_MAX_TOKENS
    overlap_tokens: int = DEFAULT_OVERLAP_TOKENS
    # Characters, besides tokens: a word piece can stand for a hundred characters ([UNK] for an
    # overlong word), and the `embed` model refuses inputs over 8,192. Also the knob for shorter
    # passages (a small LLM's prompt): 800 gives passages of about 800 characters.
    max_chars: int = DEFAULT_MAX_CHARS

    def __post_init__(self) -> None:
        if self.max_tokens < 16:
            raise ValueError("max_tokens must be at least 16")
        if not 0 <= self.overlap_tokens <= self.max_tokens // 2:
            raise ValueError("overlap_tokens must be between 0 and max_tokens / 2")
        if not 200 <= self.max_chars <= MAX_CHUNK_CHARS:
            raise ValueError(f"max_chars must be between 200 and {MAX_CHUNK_CHARS}")


@dataclass(frozen=True)
class Chunk:
    position: int
    heading_path: tuple[str, ...]
    text: str
    token_count: int
    page: int | None = None  # PDF page the chunk starts on


@dataclass
class _Unit:
    text: str
    tokens: int
    block: int  # index of the block it came from, to choose the separator when joining
    kind: str
    term: str = ""
    page: int | None = None


class Chunker:
    def __init__(self, config: ChunkingConfig | None = None, counter: TokenCounter | None = None) -> None:
        self.config = config or ChunkingConfig()
        self.counter = counter or default_counter()

    # ---- public ----------------------------------------------------------------------
    def chunk(self, doc: ParsedDocument) -> list[Chunk]:
        chunks: list[Chunk] = []
        for path, blocks in _sections(doc.blocks):
            for text, page in self._chunk_section(blocks):
                chunks.append(Chunk(len(chunks), path, text, self.counter.count(text), page))
        return chunks

    # ---- sections --------------------------------------------------------------------
    def _chunk_section(self, blocks: Sequence[tuple[int, Block]]) -> list[tuple[str, int | None]]:
        limit = self.config.max_tokens
        max_chars = self.config.max_chars
        units = [unit for index, block in blocks for unit in self._units(index, block)]
        out: list[tuple[str, int | None]] = []
        current: list[_Unit] = []
        used = 0
        for unit in units:
            chars = sum(len(u.text) + 2 for u in current)
            if current and (used + unit.tokens > limit or chars + len(unit.text) > max_chars):
                out.append((_join(current), current[0].page))
                last = current[-1]
                current, used = [], 0
                if (
                    last.kind in ("paragraph", "list", "definition")
                    and self.config.overlap_tokens
                    and (last.block == unit.block or (last.term and last.term == unit.term))
                ):
                    # The same block (or explanation) goes on: repeat its end for context.
                    tail = self._tail(last.text, self.config.overlap_tokens)
                    if tail and tail.strip() != unit.text.strip():
                        tail_tokens = self.counter.count(tail)
                        if tail_tokens + unit.tokens <= limit:
                            tail_unit = self._with_term(
                                _Unit(tail, tail_tokens, last.block, last.kind, last.term, last.page), limit
                            )
                            fits = len(tail_unit.text) + 2 + len(unit.text) <= max_chars
                            if tail_unit.tokens + unit.tokens <= limit and fits:
                                current, used = [tail_unit], tail_unit.tokens
            if not current:
                unit = self._with_term(unit, limit)
            current.append(unit)
            used += unit.tokens
        if current:
            out.append((_join(current), current[0].page))
        return out

    def _term_prefix(self, term: str) -> str:
        term = term[:_MAX_TERM_CHARS]
        if self.counter.count(term) > _MAX_TERM_TOKENS:
            term = term[: self.counter.cut(term, _MAX_TERM_TOKENS)].rstrip() + "…"
        return term

    def _with_term(self, unit: _Unit, limit: int) -> _Unit:
        """`unit` with its term at its head, when it starts a chunk inside an explanation (and
        the term still fits: the split left room for it)."""
        if not unit.term or unit.text.startswith(unit.term):
            return unit
        prefix = self._term_prefix(unit.term)
        sep = ": " if unit.kind in ("paragraph", "definition") else ":\n"
        text = f"{prefix}{sep}{unit.text}"
        tokens = self.counter.count(text)
        if tokens > limit or len(text) > self.config.max_chars:
            return unit
        return _Unit(text, tokens, unit.block, unit.kind, unit.term, unit.page)

    def _units(self, index: int, block: Block) -> list[_Unit]:
        text = block.text.strip()
        if not text:
            return []
        tokens = self.counter.count(text)
        # A part of an explanation may start a chunk, and then carries its term: leave room.
        prefix = self._term_prefix(block.term) if block.term else ""
        reserve = self.counter.count(prefix) + 2 if prefix else 0
        reserve_chars = len(prefix) + 2 if prefix else 0
        if tokens + reserve <= self.config.max_tokens and len(text) + reserve_chars <= self.config.max_chars:
            return [_Unit(text, tokens, index, block.kind, block.term, block.page)]
        if block.kind == "table":
            pieces = self._split_table(text, reserve, reserve_chars)
        elif block.kind == "code":
            pieces = self._split_code(text, reserve, reserve_chars)
        else:
            # Prose pieces leave room for the overlap the next chunk starts with.
            budget = self.config.max_tokens - self.config.overlap_tokens - reserve
            chars = self.config.max_chars * 4 // 5 - reserve_chars
            if block.kind == "list":
                pieces = self._pack(_list_items(text), "\n", budget=budget, chars=chars)
            else:
                pieces = self._pack(_sentences(text), " ", budget=budget, chars=chars)
        return [
            _Unit(p, self.counter.count(p), index, block.kind, block.term, block.page)
            for p in pieces
            if p.strip()
        ]

    # ---- splitting -------------------------------------------------------------------
    def _pack(
        self, parts: Iterable[str], sep: str, *, budget: int | None = None, chars: int | None = None
    ) -> list[str]:
        """Greedily joins `parts` with `sep` into pieces of at most `budget` tokens and `chars`
        characters."""
        limit = budget if budget is not None else self.config.max_tokens
        char_limit = chars if chars is not None else self.config.max_chars
        used_chars = 0
        pieces: list[str] = []
        current: list[str] = []
        used = 0
        for part in parts:
            part = part.strip("\n")
            if not part.strip():
                continue
            tokens = self.counter.count(part)
            if tokens > limit or len(part) > char_limit:
                if current:
                    pieces.append(sep.join(current))
                    current, used, used_chars = [], 0, 0
                sentences = _sentences(part)
                if len(sentences) > 1:
                    pieces.extend(self._pack(sentences, " ", budget=limit, chars=char_limit))
                else:
                    pieces.extend(self._hard_split(part, limit, char_limit))
                continue
            if current and (used + tokens > limit or used_chars + len(sep) + len(part) > char_limit):
                pieces.append(sep.join(current))
                current, used, used_chars = [], 0, 0
            current.append(part)
            used += tokens
            used_chars += len(part) + len(sep)
        if current:
            pieces.append(sep.join(current))
        return pieces

    def _hard_split(self, text: str, limit: int, char_limit: int | None = None) -> list[str]:
        """Cuts a run with no natural seam into pieces of at most `limit` tokens and `char_limit`
        characters, at whitespace when possible."""
        pieces: list[str] = []
        rest = text.strip()
        char_limit = max(1, char_limit if char_limit is not None else self.config.max_chars)
        window = min(max(1, limit) * _CUT_WINDOW_CHARS_PER_TOKEN, char_limit)
        while rest:
            # Only a window is tokenised: cutting the whole rest each time was quadratic.
            end = self.counter.cut(rest[:window], limit)
            if end < len(rest):
                space = max(rest.rfind(" ", 0, end + 1), rest.rfind("\n", 0, end + 1))
                if space > end // 2:
                    end = space
            piece, rest = rest[:end].strip(), rest[end:].strip()
            if piece:
                pieces.append(piece)
        return pieces

    def _split_table(self, text: str, reserve: int = 0, reserve_chars: int = 0) -> list[str]:
        rows = text.split("\n")
        if not rows[0].lstrip().startswith("|"):
            # Readable rows (HTML tables) stand on their own: split between them, no header.
            return self._pack(
                rows,
                "\n",
                budget=self.config.max_tokens - reserve,
                chars=self.config.max_chars - reserve_chars,
            )
        header = rows[:1]
        if len(rows) > 1 and _TABLE_SEPARATOR.match(rows[1].strip()):
            header = rows[:2]
        body = rows[len(header) :]
        header_text = "\n".join(header)
        header_tokens = self.counter.count(header_text)
        if (
            header_tokens > self.config.max_tokens // 2
            or len(header_text) > self.config.max_chars // 2
            or not body
        ):
            return self._pack(rows, "\n")
        parts = self._pack(
            body,
            "\n",
            budget=self.config.max_tokens - header_tokens,
            chars=self.config.max_chars - len(header_text) - 1,
        )
        return [header_text + "\n" + part for part in parts]

    def _split_code(self, text: str, reserve: int = 0, reserve_chars: int = 0) -> list[str]:
        lines = text.split("\n")
        opening, closing = "", ""
        if lines and lines[0].lstrip().startswith(("```", "~~~")):
            opening = lines.pop(0)
            if lines and lines[-1].strip() and set(lines[-1].strip()) <= {"`", "~"}:
                closing = lines.pop()
        fences = self.counter.count(opening + "\n" + closing)
        parts = self._pack(
            lines,
            "\n",
            budget=self.config.max_tokens - fences - reserve,
            chars=self.config.max_chars - len(opening) - len(closing) - 2 - reserve_chars,
        )
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
    # Squashed and cut in characters too: whitespace costs no tokens, and a crafted title of
    # 30,000 spaces fitted the token budget while the model refuses inputs over 8,192 characters.
    prefix = " ".join(" > ".join([title, *heading_path]).split()).strip(" >")[:MAX_PREFIX_CHARS]
    if prefix and counter.count(prefix) > MAX_PREFIX_TOKENS:
        prefix = prefix[: counter.cut(prefix, MAX_PREFIX_TOKENS)].rstrip()
    return f"{prefix}\n{text}" if prefix else text
