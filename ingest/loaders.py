"""Loaders: turn a .md, .txt, .html or .pdf file into a title and a list of structural blocks.

Every loader returns a `ParsedDocument` whose blocks (headings, paragraphs, lists, code, tables)
keep the structure the chunker follows. A file that cannot be read raises `ParseError` (or
`UnsupportedFormat` for an extension we do not read) with a reason a person can act on.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Literal

from ingest.errors import ParseError, UnsupportedFormat

BlockKind = Literal["heading", "paragraph", "list", "code", "table"]


@dataclass(frozen=True)
class Block:
    """One structural element. `level` is 1-6 for headings and 0 otherwise."""

    kind: BlockKind
    text: str
    level: int = 0


@dataclass(frozen=True)
class ParsedDocument:
    title: str
    blocks: tuple[Block, ...]
    format: str
    metadata: Mapping[str, Any] = field(default_factory=dict)


def _decode_text(data: bytes, path: Path) -> str:
    if b"\x00" in data[:8192]:
        raise ParseError(f"{path.name}: binary content (NUL bytes) in a text file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError as e:
        raise ParseError(f"{path.name}: neither UTF-8 nor Windows-1252 text") from e


def _title_from_name(path: Path) -> str:
    stem = re.sub(r"[-_]+", " ", path.stem).strip()
    return stem[:1].upper() + stem[1:] if stem else path.name


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


# ---- Markdown ------------------------------------------------------------------------------

_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_LIST_ITEM = re.compile(r"^[ \t]*(?:[-*+]|\d{1,9}[.)])[ \t]+\S")
_TABLE_ROW = re.compile(r"^ {0,3}\|")
_THEMATIC = re.compile(r"^ {0,3}(?:(?:-[ \t]*){3,}|(?:\*[ \t]*){3,}|(?:_[ \t]*){3,})$")
_HTML_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_MD_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_FRONT_MATTER_TITLE = re.compile(r"^title:\s*(.+?)\s*$", re.MULTILINE)


def clean_inline(text: str) -> str:
    """Heading text without link targets and emphasis markers, for heading paths and titles."""
    text = _MD_LINK.sub(r"\1", text)
    text = re.sub(r"(\*\*|__)(.+?)\1", r"\2", text)
    return _squash(text)


def parse_markdown(text: str, *, fallback_title: str) -> ParsedDocument:
    text = _HTML_COMMENT.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    lines = text.split("\n")
    title: str | None = None
    i = 0
    # YAML front matter: only its title is used.
    if lines and lines[0].strip() == "---":
        for j in range(1, len(lines)):
            if lines[j].strip() in ("---", "..."):
                match = _FRONT_MATTER_TITLE.search("\n".join(lines[1:j]))
                if match:
                    title = match.group(1).strip("\"'")
                i = j + 1
                break
    blocks: list[Block] = []
    paragraph: list[str] = []

    def flush_paragraph() -> None:
        if paragraph:
            body = " ".join(line.strip() for line in paragraph).strip()  # soft line breaks
            if body:
                blocks.append(Block("paragraph", body))
            paragraph.clear()

    n = len(lines)
    while i < n:
        line = lines[i]
        stripped = line.strip()
        if not stripped:
            flush_paragraph()
            i += 1
            continue
        fence = _FENCE.match(line)
        if fence:
            flush_paragraph()
            marker = fence.group(1)
            body = [line.rstrip()]
            i += 1
            while i < n and not lines[i].strip().startswith(marker):
                body.append(lines[i].rstrip())
                i += 1
            body.append(marker)  # an unclosed fence runs to the end of the file, as in CommonMark
            i += 1
            blocks.append(Block("code", "\n".join(body)))
            continue
        atx = _ATX.match(line)
        if atx:
            flush_paragraph()
            heading = clean_inline(atx.group(2) or "")
            if heading:
                blocks.append(Block("heading", heading, len(atx.group(1))))
            i += 1
            continue
        setext = _SETEXT.match(line)
        if setext and len(paragraph) == 1:
            heading = clean_inline(paragraph[0])
            paragraph.clear()
            blocks.append(Block("heading", heading, 1 if setext.group(1)[0] == "=" else 2))
            i += 1
            continue
        if _THEMATIC.match(line):
            flush_paragraph()
            i += 1
            continue
        if _TABLE_ROW.match(line):
            flush_paragraph()
            rows = []
            while i < n and _TABLE_ROW.match(lines[i]):
                rows.append(lines[i].strip())
                i += 1
            blocks.append(Block("table", "\n".join(rows)))
            continue
        if _LIST_ITEM.match(line) and not paragraph:
            items = [line.rstrip()]
            i += 1
            while i < n:
                nxt = lines[i]
                if _LIST_ITEM.match(nxt):
                    items.append(nxt.rstrip())
                    i += 1
                elif nxt.strip() and nxt[:1] in (" ", "\t"):
                    items[-1] += " " + nxt.strip()  # a continuation line of the item
                    i += 1
                elif (
                    not nxt.strip()
                    and i + 1 < n
                    and (_LIST_ITEM.match(lines[i + 1]) or lines[i + 1][:1] in (" ", "\t"))
                ):
                    i += 1  # a loose list: blank lines between items
                else:
                    break
            blocks.append(Block("list", "\n".join(items)))
            continue
        paragraph.append(line)
        i += 1
    flush_paragraph()

    if title is None:
        first = next((b for b in blocks if b.kind == "heading"), None)
        if first is not None and first.level == 1 and blocks.index(first) <= 1:
            title = first.text
            blocks.remove(first)  # the title is not repeated in every heading path
    return ParsedDocument(title or fallback_title, tuple(blocks), "md")


def parse_text(text: str, *, fallback_title: str) -> ParsedDocument:
    """Plain text: paragraphs separated by blank lines; the first line is the title when it looks like one."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    paragraphs = [p.strip() for p in re.split(r"\n[ \t]*\n", text) if p.strip()]
    title = fallback_title
    if paragraphs:
        first_lines = paragraphs[0].split("\n")
        candidate = first_lines[0].strip()
        if len(candidate) <= 120 and not candidate.endswith((".", ",", ";", ":")):
            title = candidate
            rest = "\n".join(first_lines[1:]).strip()
            paragraphs = ([rest] if rest else []) + paragraphs[1:]
    blocks = []
    for p in paragraphs:
        kind: BlockKind = "list" if all(_LIST_ITEM.match(line) for line in p.split("\n")) else "paragraph"
        blocks.append(Block(kind, p))
    return ParsedDocument(title, tuple(blocks), "txt")


# ---- HTML ----------------------------------------------------------------------------------

_SKIP_TAGS = {"script", "style", "noscript", "template", "svg", "nav", "iframe", "object", "button"}
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_BLOCK_TAGS = {
    "p", "div", "section", "article", "main", "header", "footer", "aside", "blockquote", "hr",
    "figure", "figcaption", "dl", "dt", "dd", "form", "address", "details", "summary",
}  # fmt: skip


class _HTMLBlocks(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[Block] = []
        self.title_parts: list[str] = []
        self._text: list[str] = []
        self._skip = 0
        self._in_title = False
        self._heading: int = 0
        self._pre = 0
        self._lists: list[list[str]] = []  # open <ul>/<ol>, each collecting item lines
        self._table: list[list[str]] | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    # text accumulation
    def _flush(self) -> None:
        raw = "".join(self._text)
        self._text.clear()
        if self._pre:
            return
        body = _squash(raw)
        if not body:
            return
        if self._lists:
            self._lists[-1].append(("  " * (len(self._lists) - 1)) + "- " + body)
        else:
            self.blocks.append(Block("paragraph", body))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            self._skip += 1
            return
        if self._skip:
            return
        if tag == "title":
            self._in_title = True
        elif tag in _HEADINGS:
            self._flush()
            self._heading = _HEADINGS[tag]
        elif tag == "pre":
            self._flush()
            self._pre += 1
        elif tag in ("ul", "ol"):
            self._flush()
            self._lists.append([])
        elif tag == "li":
            self._flush()
        elif tag == "table":
            self._flush()
            self._table = []
        elif tag == "tr" and self._table is not None:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag in _BLOCK_TAGS and self._cell is None:
            self._flush()

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self._skip = max(0, self._skip - 1)
            return
        if self._skip:
            return
        if tag == "title":
            self._in_title = False
        elif tag in _HEADINGS and self._heading:
            heading = _squash("".join(self._text))
            self._text.clear()
            if heading:
                self.blocks.append(Block("heading", heading, self._heading))
            self._heading = 0
        elif tag == "pre" and self._pre:
            self._pre -= 1
            code = "".join(self._text).strip("\n")
            self._text.clear()
            if code.strip():
                self.blocks.append(Block("code", code))
        elif tag in ("ul", "ol") and self._lists:
            self._flush()
            items = self._lists.pop()
            if self._lists:
                self._lists[-1].extend(items)
            elif items:
                self.blocks.append(Block("list", "\n".join(items)))
        elif tag == "li":
            self._flush()
        elif tag in ("td", "th") and self._row is not None and self._cell is not None:
            self._row.append(_squash("".join(self._cell)).replace("|", "\\|"))
            self._cell = None
        elif tag == "tr" and self._table is not None and self._row is not None:
            if any(self._row):
                self._table.append(self._row)
            self._row = None
        elif tag == "table" and self._table is not None:
            rows = self._table
            self._table = None
            if rows:
                lines = ["| " + " | ".join(r) + " |" for r in rows]
                self.blocks.append(Block("table", "\n".join(lines)))
        elif tag in _BLOCK_TAGS and self._cell is None:
            self._flush()

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if self._in_title:
            self.title_parts.append(data)
        elif self._cell is not None:
            self._cell.append(data)
        elif self._table is not None:
            return  # whitespace between rows
        else:
            self._text.append(data)

    def close(self) -> None:
        super().close()
        self._flush()


def parse_html(text: str, *, fallback_title: str) -> ParsedDocument:
    parser = _HTMLBlocks()
    try:
        parser.feed(text)
        parser.close()
    except (AssertionError, ValueError) as e:  # html.parser raises these on hopeless markup
        raise ParseError(f"malformed HTML: {e}") from e
    blocks = parser.blocks
    title = _squash("".join(parser.title_parts))
    first = next((b for b in blocks if b.kind == "heading"), None)
    if first is not None and first.level == 1 and (not title or title == first.text):
        title = first.text
        blocks.remove(first)
    return ParsedDocument(title or fallback_title, tuple(blocks), "html")


# ---- PDF -----------------------------------------------------------------------------------


def _outline_headings(reader: Any) -> dict[int, list[tuple[int, str]]]:
    """Outline (bookmark) entries by page index: [(level, title)], in outline order."""
    found: dict[int, list[tuple[int, str]]] = {}

    def walk(items: list[Any], level: int) -> None:
        for item in items:
            if isinstance(item, list):
                walk(item, level + 1)
                continue
            try:
                page = reader.get_destination_page_number(item)
            except Exception:  # noqa: S112 - a dangling bookmark is not worth failing the file
                continue
            title = _squash(str(getattr(item, "title", "") or ""))
            if title and page is not None and page >= 0:
                found.setdefault(page, []).append((min(level, 6), title))

    try:
        walk(reader.outline, 1)
    except Exception:  # a broken outline only loses headings, not the text
        return {}
    return found


def _norm(text: str) -> str:
    return _squash(text).casefold()


def _pdf_page_blocks(page_text: str, headings: list[tuple[int, str]]) -> list[Block]:
    """Paragraphs of one page's text, with the page's outline titles turned into headings.

    Extracted PDF text has no blank lines between paragraphs; a paragraph ends at a line that
    closes a sentence and is clearly shorter than the page's longest lines.
    """
    text = re.sub(r"(\w)-\n(\w)", r"\1\2", page_text)  # words hyphenated across lines
    lines = [line.strip() for line in text.split("\n")]
    width = max((len(line) for line in lines), default=0)
    blocks: list[Block] = []
    paragraph: list[str] = []

    def flush() -> None:
        if paragraph:
            blocks.append(Block("paragraph", _squash(" ".join(paragraph))))
            paragraph.clear()

    pending = list(headings)
    for line in lines:
        if not line:
            flush()
            continue
        match = next((h for h in pending if _norm(line).startswith(_norm(h[1]))), None)
        if match is not None:
            flush()
            pending.remove(match)
            blocks.append(Block("heading", match[1], match[0]))
            line = line[len(match[1]) :].strip()
            if not line:
                continue
        paragraph.append(line)
        if line.endswith((".", "!", "?", ":")) and len(line) < 0.7 * width:
            flush()
    flush()
    # Bookmarks whose text is not on the page still mark a section there.
    blocks.extend(Block("heading", title, level) for level, title in pending)
    return blocks


def parse_pdf(data: bytes, *, fallback_title: str) -> ParsedDocument:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError, PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            raise ParseError("the PDF is encrypted with a password")
        pages = [page.extract_text() or "" for page in reader.pages]
        meta_title = _squash(str(reader.metadata.title or "")) if reader.metadata else ""
    except ParseError:
        raise
    except (PdfReadError, PyPdfError) as e:
        raise ParseError(f"unreadable PDF: {e}") from e
    except Exception as e:  # a parser fed a damaged file can fail in many ways; it is the file's fault
        raise ParseError(f"unreadable PDF: {type(e).__name__}: {e}") from e
    if not any(p.strip() for p in pages):
        raise ParseError("the PDF has no extractable text (a scan without OCR?)")
    outline = _outline_headings(reader)
    blocks: list[Block] = []
    for index, page_text in enumerate(pages):
        if not outline:
            # Without bookmarks the page number is the most useful citation we can give.
            blocks.append(Block("heading", f"Page {index + 1}", 1))
        blocks.extend(_pdf_page_blocks(page_text, outline.get(index, [])))
    title = meta_title if meta_title.lower() not in ("", "untitled", "unknown") else ""
    if not title:
        first_line = next((line.strip() for p in pages for line in p.split("\n") if line.strip()), "")
        title = first_line if len(first_line) <= 100 else fallback_title
    return ParsedDocument(title, tuple(blocks), "pdf", {"pages": len(pages)})


# ---- dispatch ------------------------------------------------------------------------------

_TEXT_PARSERS: dict[str, Callable[..., ParsedDocument]] = {
    ".md": parse_markdown,
    ".markdown": parse_markdown,
    ".txt": parse_text,
    ".text": parse_text,
    ".html": parse_html,
    ".htm": parse_html,
}
SUPPORTED_SUFFIXES = frozenset([*_TEXT_PARSERS, ".pdf"])


def is_supported(path: Path) -> bool:
    return path.suffix.lower() in SUPPORTED_SUFFIXES


def parse_bytes(data: bytes, path: Path) -> ParsedDocument:
    """Parse `data` as the format `path`'s extension names. Raises UnsupportedFormat or ParseError."""
    suffix = path.suffix.lower()
    fallback_title = _title_from_name(path)
    if suffix == ".pdf":
        return parse_pdf(data, fallback_title=fallback_title)
    parser = _TEXT_PARSERS.get(suffix)
    if parser is None:
        raise UnsupportedFormat(f"{path.name}: unsupported file type {suffix or '(none)'!r}")
    return parser(_decode_text(data, path), fallback_title=fallback_title)


def load(path: Path) -> ParsedDocument:
    """Read and parse one file."""
    if not is_supported(path):
        raise UnsupportedFormat(f"{path.name}: unsupported file type {path.suffix or '(none)'!r}")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ParseError(f"{path.name}: cannot read: {e.strerror or e}") from e
    return parse_bytes(data, path)
