"""Loaders: turn a .md, .txt, .html or .pdf file into a title and a list of structural blocks.

Every loader returns a `ParsedDocument` whose blocks (headings, paragraphs, lists, code, tables,
definitions) keep the structure the chunker follows. A file that cannot be read raises
`ParseError` (or `UnsupportedFormat` for an extension we do not read) with a reason a person can
act on; a file past one of the `ParseLimits` caps raises `ParseLimitExceeded`.

The loaders read untrusted files: every pattern here runs in linear time on any input (no
pattern with two unbounded quantifiers that can match the same characters), and every structure
they build is bounded by the caps. They are still run in a worker process with CPU and memory
limits (ingest.parsing), never in the gateway's event loop.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Literal

from ingest.errors import ParseError, ParseLimitExceeded, UnsupportedFormat
from ingest.limits import DEFAULT_LIMITS, ParseLimits

BlockKind = Literal["heading", "paragraph", "list", "code", "table", "definition"]

# Code blocks are fenced like Markdown's in every format, so chunk text marks code the same way
# whatever the source: the answer side can leave fenced code out of what it speaks.
CODE_FENCE = "```"


@dataclass(frozen=True)
class Block:
    """One structural element. `level` is 1-6 for headings and 0 otherwise.

    `term` is the defined term (an option, a setting) that a `definition` block explains, and
    that the blocks continuing its explanation belong to: the chunker repeats it at the head of
    a chunk that starts inside the explanation, so the term stays next to what it means.
    `page` is the 1-based PDF page the block starts on (None for other formats)."""

    kind: BlockKind
    text: str
    level: int = 0
    term: str = ""
    page: int | None = None


@dataclass(frozen=True)
class ParsedDocument:
    title: str
    blocks: tuple[Block, ...]
    format: str
    metadata: Mapping[str, Any] = field(default_factory=dict)


def _decode_text(data: bytes, path: Path) -> str:
    # Anywhere, not only at the start: text with a binary tail would be stored as garbage.
    if b"\x00" in data:
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

_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_LIST_ITEM = re.compile(r"^[ \t]*(?:[-*+]|\d{1,9}[.)])[ \t]+\S")
_TABLE_ROW = re.compile(r"^ {0,3}\|")
_THEMATIC = re.compile(r"^ {0,3}(?:(?:-[ \t]*){3,}|(?:\*[ \t]*){3,}|(?:_[ \t]*){3,})$")
# Link text may not contain brackets and a target no parentheses: each character is then scanned
# by at most one attempt (with `[^\]]*` every `[` rescanned the rest of the line: quadratic).
_MD_LINK = re.compile(r"!?\[([^\[\]]*)\]\([^()]*\)")


def _atx_heading(line: str) -> tuple[int, str] | None:
    """(level, text) of an ATX heading line, else None (CommonMark's rules, without a regex:
    the pattern it replaces took quadratic time on a heading of 30,000 spaces)."""
    body = line.lstrip(" ")
    if len(line) - len(body) > 3 or not body.startswith("#"):
        return None
    hashes = len(body) - len(body.lstrip("#"))
    if hashes > 6:
        return None
    rest = body[hashes:]
    if rest and rest[0] not in " \t":
        return None  # "#tag" is not a heading
    rest = rest.strip(" \t")
    closing = rest.rstrip("#")
    if not closing:
        rest = ""  # "## ##": an empty heading
    elif closing != rest and closing[-1] in " \t":
        rest = closing.rstrip(" \t")  # "## Title ##": the closing sequence is not part of it
    return hashes, rest


def _drop_html_comments(text: str) -> str:
    """Text without `<!-- ... -->` (an unclosed comment runs to the end), in one pass."""
    out: list[str] = []
    pos = 0
    while True:
        start = text.find("<!--", pos)
        if start == -1:
            out.append(text[pos:])
            return "".join(out)
        out.append(text[pos:start])
        end = text.find("-->", start + 4)
        if end == -1:
            return "".join(out)
        pos = end + 3


def _front_matter_title(lines: list[str]) -> str | None:
    for line in lines:
        if line.startswith("title:"):
            value = line[len("title:") :].strip()
            return value.strip("\"'") or None
    return None


def clean_inline(text: str) -> str:
    """Heading text without link targets and emphasis markers, for heading paths and titles."""
    text = _MD_LINK.sub(r"\1", text)
    text = re.sub(r"(\*\*|__)(.+?)\1", r"\2", text)
    return _squash(text)


def parse_markdown(text: str, *, fallback_title: str, limits: ParseLimits = DEFAULT_LIMITS) -> ParsedDocument:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    limits.check_text(len(text))
    limits.check_lines(text)
    text = _drop_html_comments(text)
    lines = text.split("\n")
    title: str | None = None
    i = 0
    # YAML front matter: only its title is used.
    if lines and lines[0].strip() == "---":
        for j in range(1, len(lines)):
            if lines[j].strip() in ("---", "..."):
                title = _front_matter_title(lines[1:j])
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
        atx = _atx_heading(line)
        if atx:
            flush_paragraph()
            heading = clean_inline(atx[1])
            if heading:
                blocks.append(Block("heading", heading, atx[0]))
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


def parse_text(text: str, *, fallback_title: str, limits: ParseLimits = DEFAULT_LIMITS) -> ParsedDocument:
    """Plain text: paragraphs separated by blank lines; the first line is the title when it looks like one."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    limits.check_text(len(text))
    limits.check_lines(text)
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

# Elements whose content is never document text.
_SKIP_TAGS = {
    "script",
    "style",
    "noscript",
    "template",
    "svg",
    "math",
    "nav",
    "iframe",
    "object",
    "button",
    "select",
    "footer",
    "aside",
}  # fmt: skip  (not <form>: some sites wrap a whole page in one)
# Site chrome that pages mark with a role, an id or a class rather than an element: navigation
# bars, sidebars, tables of contents, footers (asciidoc's id="footer" and id="toc", Sphinx's
# class="related" and "sphinxsidebar" and the "¶" of its "headerlink" anchors, skip links...).
_SKIP_ROLES = {"navigation", "banner", "contentinfo", "search", "complementary"}
_SKIP_MARKERS = {
    "nav", "navbar", "navigation", "menu", "breadcrumb", "breadcrumbs", "sidebar", "toc", "footer",
    "footnotes", "related", "sphinxsidebar", "skip-link", "skiplink", "header-nav", "site-header",
    "site-footer", "cookie-banner", "headerlink",
}  # fmt: skip
_VOID_TAGS = {
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source",
    "track", "wbr", "keygen",
}  # fmt: skip
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_BLOCK_TAGS = {
    "p", "div", "section", "article", "main", "header", "blockquote", "hr", "figure", "figcaption",
    "address", "details", "summary", "br", "center",
}  # fmt: skip
# Elements an unclosed one of the same family ends (`<li>a<li>b`, `<dt>x<dd>y<dt>z`), as HTML does.
_IMPLIED_END = {
    "li": ({"li"}, {"ul", "ol", "menu"}),
    "dt": ({"dt", "dd"}, {"dl"}),
    "dd": ({"dt", "dd"}, {"dl"}),
    "tr": ({"tr", "td", "th"}, {"table", "thead", "tbody", "tfoot"}),
    "td": ({"td", "th"}, {"tr", "table"}),
    "th": ({"td", "th"}, {"tr", "table"}),
    "option": ({"option"}, {"select", "datalist"}),
}
_P_CLOSERS = _BLOCK_TAGS | set(_HEADINGS) | {"ul", "ol", "dl", "pre", "table", "li", "dt", "dd"}
_MAX_LIST_INDENT = 8  # deeper levels are drawn at this indentation
_MAX_TITLE_CHARS = 1_000


def _skipped(tag: str, attrs: list[tuple[str, str | None]]) -> bool:
    if tag in _SKIP_TAGS:
        return True
    for name, value in attrs:
        if not value:
            continue
        if name == "role" and value.strip().lower() in _SKIP_ROLES:
            return True
        if name == "id" and value.strip().lower() in _SKIP_MARKERS:
            return True
        if name == "class" and not _SKIP_MARKERS.isdisjoint(value.lower().split()):
            return True
        if name == "aria-hidden" and value == "true":
            return True
    return False


@dataclass
class _Sink:
    """Where finished blocks go: the document, or the explanation of an open <dd>, each with its
    own open lists (a list inside a <dd> belongs to that explanation)."""

    blocks: list[Block] = field(default_factory=list)
    lists: list[list[str]] = field(default_factory=list)


@dataclass
class _Definitions:
    """An open <dl>: the terms of the entry being read and the blocks explaining them."""

    terms: list[str] = field(default_factory=list)
    explanation: list[Block] = field(default_factory=list)
    in_dd: bool = False


@dataclass
class _Table:
    rows: list[list[str]] = field(default_factory=list)
    header: list[bool] = field(default_factory=list)  # per row: all its cells were <th>
    row: list[str] | None = None
    row_th: bool = True
    cell: list[str] | None = None


def _table_text(table: _Table) -> str:
    """A table as readable lines, one per row, each standing on its own in a chunk: with a header
    row, `Column: value; Column: value`; a single row (a layout or admonition table: "Note" |
    text) or two columns, `first: rest`; otherwise the cells joined with `; `."""
    rows = [r for r in table.rows if any(r)]
    if not rows:
        return ""
    header: list[str] | None = None
    body = rows
    if len(rows) > 1 and table.header and table.header[0]:
        header, body = rows[0], rows[1:]
    lines: list[str] = []
    for row in body:
        if header is not None:
            pairs = [f"{h}: {v}" if h else v for h, v in zip(header, row, strict=False) if v]
            pairs.extend(v for v in row[len(header) :] if v)
            lines.append("; ".join(pairs))
        elif len(row) == 2 and row[0] and row[1]:
            lines.append(f"{row[0]}: {row[1]}")
        else:
            lines.append("; ".join(v for v in row if v))
    return "\n".join(line for line in lines if line)


class _HTMLBlocks(HTMLParser):
    """Blocks from HTML in one pass, with an explicit stack of open elements: it bounds the
    nesting depth, ends elements whose end tag is omitted, and drops whole skipped subtrees."""

    def __init__(self, limits: ParseLimits) -> None:
        super().__init__(convert_charrefs=True)
        self.limits = limits
        self.title_parts: list[str] = []
        self._stack: list[str] = []
        self._skip_at: int | None = None  # stack depth at which a skipped subtree started
        self._text: list[str] = []
        self._buffered = 0  # characters in the text, <pre> or cell being read
        self._emitted_chars = 0
        self._title_chars = 0
        self._in_title = False
        self._heading = 0
        self._pre: list[str] | None = None
        self._sinks: list[_Sink] = [_Sink()]
        self._dls: list[_Definitions] = []
        self._tables: list[_Table] = []
        self._in_dt = False

    @property
    def blocks(self) -> list[Block]:
        return self._sinks[0].blocks

    # ---- output ------------------------------------------------------------------------
    def _count(self, chars: int) -> None:
        """Counts text that reaches the document (explanations are counted when their entry
        does), refusing the file as soon as it is over the cap."""
        if len(self._sinks) == 1:
            self._emitted_chars += chars
            self.limits.check_text(self._emitted_chars)

    def _emit(self, block: Block) -> None:
        self._count(len(block.text))
        sink = self._sinks[-1]
        if sink.lists:
            # A block inside a list item (a table, code, a definition list): kept in the item.
            indent = "  " * min(len(sink.lists), _MAX_LIST_INDENT)
            sink.lists[-1].extend(indent + line for line in block.text.split("\n"))
        else:
            sink.blocks.append(block)

    def _flush(self) -> None:
        """Ends the running text: a paragraph, or a list item when a list is open."""
        if not self._text:
            return
        raw = "".join(self._text)
        self._text.clear()
        if self._in_dt or self._heading:
            self._text.append(raw)  # a term or heading's inline text continues
            return
        self._buffered = 0
        body = _squash(raw)
        if not body:
            return
        sink = self._sinks[-1]
        if sink.lists:
            depth = min(len(sink.lists), _MAX_LIST_INDENT)
            line = "  " * (depth - 1) + "- " + body
            self._count(len(line))
            sink.lists[-1].append(line)
        else:
            self._emit(Block("paragraph", body))

    def _take_text(self) -> str:
        raw = "".join(self._text)
        self._text.clear()
        self._buffered = 0
        return _squash(raw)

    # ---- the element stack ---------------------------------------------------------------
    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _VOID_TAGS:
            if self._skip_at is None and tag in ("br", "hr"):
                if self._pre is not None and tag == "br":
                    self._pre.append("\n")
                elif tag == "hr":
                    self._flush()
            return
        if tag in _IMPLIED_END:
            closes, scope = _IMPLIED_END[tag]
            for i in range(len(self._stack) - 1, -1, -1):
                if self._stack[i] in scope:
                    break
                if self._stack[i] in closes:
                    self._pop_to(i)
                    break
        if self._stack and self._stack[-1] == "p" and tag in _P_CLOSERS:
            self._pop_to(len(self._stack) - 1)
        self._stack.append(tag)
        if len(self._stack) > self.limits.max_nesting_depth:
            raise ParseLimitExceeded(
                "nesting_depth",
                f"HTML elements nested more than {self.limits.max_nesting_depth} deep (the limit)",
            )
        if self._skip_at is not None:
            return
        if _skipped(tag, attrs):
            self._skip_at = len(self._stack)
            return
        self._open(tag)

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self._stack) - 1, -1, -1):
            if self._stack[i] == tag:
                self._pop_to(i)
                return
        # An end tag with no open element: ignored, as browsers do.

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID_TAGS:
            self.handle_endtag(tag)

    def _pop_to(self, index: int) -> None:
        """Closes the elements from the top of the stack down to `index`, innermost first."""
        while len(self._stack) > index:
            tag = self._stack.pop()
            if self._skip_at is not None:
                if len(self._stack) + 1 == self._skip_at:
                    self._skip_at = None
                continue
            self._close(tag)

    # ---- what elements mean -------------------------------------------------------------
    def _open(self, tag: str) -> None:
        if tag == "title":
            self._in_title = True
        elif tag in _HEADINGS:
            self._flush()
            self._heading = _HEADINGS[tag]
        elif tag == "pre":
            self._flush()
            self._pre = []
        elif self._tables and self._tables[-1].cell is not None and tag != "table":
            if tag in _BLOCK_TAGS or tag in ("li", "dt", "dd"):
                self._tables[-1].cell.append(" ")
        elif tag in ("ul", "ol", "menu"):
            self._flush()
            self._sinks[-1].lists.append([])
        elif tag == "li":
            self._flush()
        elif tag == "dl":
            self._flush()
            self._dls.append(_Definitions())
        elif tag == "dt" and self._dls:
            self._flush()
            dl = self._dls[-1]
            if dl.explanation:  # a <dt> after a <dd> starts the next entry; after a <dt>, adds a term
                self._end_entry(dl)
            self._in_dt = True
        elif tag == "dd" and self._dls:
            self._flush()
            self._dls[-1].in_dd = True
            self._sinks.append(_Sink())
        elif tag == "table":
            self._flush()
            self._tables.append(_Table())
        elif tag == "tr" and self._tables:
            table = self._tables[-1]
            table.row, table.row_th = [], True
        elif tag in ("td", "th") and self._tables and self._tables[-1].row is not None:
            table = self._tables[-1]
            table.cell = []
            if tag == "td":
                table.row_th = False
        elif tag in _BLOCK_TAGS:
            self._flush()

    def _close(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in _HEADINGS and self._heading:
            self._heading = 0
            heading = self._take_text()
            if heading:
                self._emit(Block("heading", heading, _HEADINGS[tag]))
        elif tag == "pre" and self._pre is not None:
            code = "".join(self._pre).strip("\n")
            self._pre = None
            self._buffered = 0
            if code.strip():
                self.limits.check_lines(code, "a line of a <pre> block")
                self._emit(Block("code", f"{CODE_FENCE}\n{code}\n{CODE_FENCE}"))
        elif tag in ("td", "th") and self._tables and self._tables[-1].cell is not None:
            table = self._tables[-1]
            if table.row is not None and table.cell is not None:
                table.row.append(_squash("".join(table.cell)))
            table.cell = None
            self._buffered = 0
        elif tag == "tr" and self._tables and self._tables[-1].row is not None:
            table = self._tables[-1]
            assert table.row is not None
            if table.cell is not None:
                self._close("td")
            table.rows.append(table.row)
            table.header.append(table.row_th and bool(table.row))
            table.row = None
        elif tag == "table" and self._tables:
            table = self._tables.pop()
            if table.row is not None:
                table.rows.append(table.row)
                table.header.append(False)
            text = _table_text(table)
            if not text:
                return
            if self._tables and self._tables[-1].cell is not None:
                self._tables[-1].cell.append(" " + text.replace("\n", " ") + " ")  # a table in a cell
            else:
                self._emit(Block("table", text))
        elif self._tables and self._tables[-1].cell is not None:
            return  # inside a cell everything is the cell's text
        elif tag in ("ul", "ol", "menu") and self._sinks[-1].lists:
            self._flush()
            sink = self._sinks[-1]
            items = sink.lists.pop()
            if sink.lists:
                sink.lists[-1].extend(items)
            elif items:
                self._emit(Block("list", "\n".join(items)))
        elif tag == "li":
            self._flush()
        elif tag == "dt" and self._dls and self._in_dt:
            self._in_dt = False
            term = self._take_text().rstrip(":").strip()
            if term:
                self._dls[-1].terms.append(term)
        elif tag == "dd" and self._dls and self._dls[-1].in_dd:
            self._flush()
            sink = self._sinks.pop()
            while sink.lists:  # lists left open inside the <dd>
                items = sink.lists.pop()
                if sink.lists:
                    sink.lists[-1].extend(items)
                elif items:
                    sink.blocks.append(Block("list", "\n".join(items)))
            dl = self._dls[-1]
            dl.explanation.extend(sink.blocks)
            dl.in_dd = False
            if not dl.explanation:
                dl.explanation.append(Block("paragraph", ""))  # an empty <dd> still ends the entry
        elif tag == "dl" and self._dls:
            self._flush()
            self._end_entry(self._dls[-1])
            self._dls.pop()
        elif tag in _BLOCK_TAGS:
            self._flush()

    def _end_entry(self, dl: _Definitions) -> None:
        """Emits the entry read so far: `term: explanation`, then the rest of its explanation."""
        terms, explanation = dl.terms, [b for b in dl.explanation if b.text]
        dl.terms, dl.explanation = [], []
        term = ", ".join(terms)
        if not term:
            for block in explanation:
                self._emit(block)
            return
        if explanation and explanation[0].kind == "paragraph":
            first, rest = explanation[0].text, explanation[1:]
            self._emit(Block("definition", f"{term}: {first}", term=term))
        else:
            rest = explanation
            self._emit(Block("definition", f"{term}:" if rest else term, term=term))
        for block in rest:
            # Nested definitions keep their own term in their text; the outer one is the context.
            self._emit(Block(block.kind, block.text, block.level, term=term))

    # ---- text ----------------------------------------------------------------------------
    def handle_data(self, data: str) -> None:
        if self._skip_at is not None:
            return
        if self._in_title:
            if self._title_chars < _MAX_TITLE_CHARS:  # an unclosed <title> is not a title
                self.title_parts.append(data[:_MAX_TITLE_CHARS])
                self._title_chars += len(data)
            return
        # One paragraph, <pre> or cell that never ends is refused while it is read, not after.
        self._buffered += len(data)
        if self._buffered > self.limits.max_text_chars:
            self.limits.check_text(self._buffered)
        if self._pre is not None:
            self._pre.append(data)
        elif self._tables and self._tables[-1].cell is not None:
            self._tables[-1].cell.append(data)
        elif self._tables and self._tables[-1].row is not None:
            return  # whitespace between cells
        elif self._tables and not self._text and not data.strip():
            return  # whitespace between rows
        else:
            self._text.append(data)

    def close(self) -> None:
        super().close()
        self._pop_to(0)
        self._in_dt = False
        self._heading = 0
        self._flush()
        while self._dls:
            self._end_entry(self._dls.pop())
        while len(self._sinks) > 1:
            sink = self._sinks.pop()
            self._sinks[-1].blocks.extend(sink.blocks)
        sink = self._sinks[0]
        while sink.lists:
            items = sink.lists.pop()
            if sink.lists:
                sink.lists[-1].extend(items)
            elif items:
                sink.blocks.append(Block("list", "\n".join(items)))


def parse_html(text: str, *, fallback_title: str, limits: ParseLimits = DEFAULT_LIMITS) -> ParsedDocument:
    parser = _HTMLBlocks(limits)
    try:
        parser.feed(text)
        parser.close()
    except (AssertionError, ValueError) as e:  # html.parser raises these on hopeless markup
        raise ParseError(f"malformed HTML: {e}") from e
    blocks = parser.blocks
    title = _squash("".join(parser.title_parts))[:200]
    first = next((b for b in blocks if b.kind == "heading"), None)
    if first is not None and first.level == 1 and blocks.index(first) <= 1:
        # The page heading is the title; a <title> that adds a site name ("Intro — Python 3.11
        # documentation") gives way to it, one that shortens it ("git-commit(1)") is kept.
        if not title or title == first.text or title.startswith(first.text):
            title = first.text
            blocks.remove(first)
        elif first.text.startswith(title):
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


_MAX_OUTLINE_PER_PAGE = 50  # bookmarks looked for on one page (each is compared with every line)


def _pdf_page_blocks(page_text: str, headings: list[tuple[int, str]], page: int) -> list[Block]:
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
            blocks.append(Block("paragraph", _squash(" ".join(paragraph)), page=page))
            paragraph.clear()

    pending = [(level, title, _norm(title)) for level, title in headings[:_MAX_OUTLINE_PER_PAGE]]
    for line in lines:
        if not line:
            flush()
            continue
        if pending:
            normalized = _norm(line)
            match = next((h for h in pending if normalized.startswith(h[2])), None)
            if match is not None:
                flush()
                pending.remove(match)
                blocks.append(Block("heading", match[1], match[0], page=page))
                line = line[len(match[1]) :].strip()
                if not line:
                    continue
        paragraph.append(line)
        if line.endswith((".", "!", "?", ":")) and len(line) < 0.7 * width:
            flush()
    flush()
    # Bookmarks whose text is not on the page still mark a section there.
    blocks.extend(Block("heading", title, level, page=page) for level, title, _ in pending)
    return blocks


def _content_bytes(page: Any) -> int:
    """Decoded bytes of a page's content streams: what its text extraction walks."""
    contents = page.get_contents()
    return 0 if contents is None else len(contents.get_data())


def parse_pdf(data: bytes, *, fallback_title: str, limits: ParseLimits = DEFAULT_LIMITS) -> ParsedDocument:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError, PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            raise ParseError("the PDF is encrypted with a password")
        count = len(reader.pages)
        if count > limits.max_pages:
            raise ParseLimitExceeded(
                "pages", f"the PDF has {count:,} pages; the limit is {limits.max_pages:,}"
            )
        # Counted for every page before any text is extracted: pages that share one big content
        # stream (or inflate a small one) are refused before the extractor walks it again and
        # again. Decoding is cached per stream object, so a shared stream is inflated once here.
        walked = 0
        for page in reader.pages:
            walked += _content_bytes(page)
            if walked > limits.max_pdf_content_bytes:
                raise ParseLimitExceeded(
                    "pdf_content_bytes",
                    f"the PDF's pages hold over {limits.max_pdf_content_bytes:,} bytes of content "
                    "streams (shared or compressed streams count once per page)",
                )
        pages: list[str] = []
        chars = 0
        for page in reader.pages:
            text = page.extract_text() or ""
            chars += len(text)
            limits.check_text(chars)
            limits.check_lines(text, "a line of the PDF's text")
            pages.append(text)
        meta_title = _squash(str(reader.metadata.title or ""))[:200] if reader.metadata else ""
    except ParseError:
        raise
    except MemoryError:
        raise ParseLimitExceeded("memory", "parsing the PDF needed more memory than the limit") from None
    except (PdfReadError, PyPdfError) as e:
        raise ParseError(f"unreadable PDF: {e}") from e
    except RecursionError as e:
        raise ParseError("unreadable PDF: its objects are nested too deeply") from e
    except Exception as e:  # a parser fed a damaged file can fail in many ways; it is the file's fault
        raise ParseError(f"unreadable PDF: {type(e).__name__}: {e}") from e
    if not any(p.strip() for p in pages):
        raise ParseError("the PDF has no extractable text (a scan without OCR?)")
    outline = _outline_headings(reader)
    blocks: list[Block] = []
    for index, page_text in enumerate(pages):
        if not outline:
            # Without bookmarks the page number is the most useful section we can give.
            blocks.append(Block("heading", f"Page {index + 1}", 1, page=index + 1))
        blocks.extend(_pdf_page_blocks(page_text, outline.get(index, []), index + 1))
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


def parse_bytes(data: bytes, path: Path, limits: ParseLimits = DEFAULT_LIMITS) -> ParsedDocument:
    """Parse `data` as the format `path`'s extension names, within `limits`' caps.

    Raises UnsupportedFormat, ParseError or ParseLimitExceeded. In-process: callers that parse
    files they did not write go through ingest.parsing, which also bounds CPU time and memory."""
    suffix = path.suffix.lower()
    fallback_title = _title_from_name(path)
    if suffix == ".pdf":
        return parse_pdf(data, fallback_title=fallback_title, limits=limits)
    parser = _TEXT_PARSERS.get(suffix)
    if parser is None:
        raise UnsupportedFormat(f"{path.name}: unsupported file type {suffix or '(none)'!r}")
    return parser(_decode_text(data, path), fallback_title=fallback_title, limits=limits)


def load(path: Path) -> ParsedDocument:
    """Read and parse one file in this process (trusted files, tests: see ingest.parsing)."""
    if not is_supported(path):
        raise UnsupportedFormat(f"{path.name}: unsupported file type {path.suffix or '(none)'!r}")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ParseError(f"{path.name}: cannot read: {e.strerror or e}") from e
    return parse_bytes(data, path)
