"""Hostile documents: files built to make a parser slow, huge or confused (issue 16).

Each case says what must happen to it: refused with a stable code (and, for `limit_exceeded`, the
limit's name), or parsed within the limits. They are generated here, small in the repository
and deterministic; the largest is a few MB in memory.
"""

from __future__ import annotations

import io
import random
import zipfile
import zlib
from dataclasses import dataclass

from pypdf import PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject, StreamObject

from tests.data.pdfgen import make_pdf


@dataclass(frozen=True)
class Hostile:
    name: str  # the file name uploaded (its extension chooses the parser)
    data: bytes
    why: str
    code: str | None  # expected error code; None: parsed (within the limits)
    limit: str | None = None  # expected limit for code "limit_exceeded"
    # Other limits that may stop it first: on a loaded machine a CPU-bound parse (at a lower
    # priority) can reach the wall-clock limit before its CPU-time limit; both are the backstop.
    or_limit: str | None = None

    @property
    def limits(self) -> tuple[str | None, ...]:
        return (self.limit, self.or_limit) if self.or_limit else (self.limit,)


def _font(writer: PdfWriter) -> object:
    return writer._add_object(
        DictionaryObject(
            {
                NameObject("/Type"): NameObject("/Font"),
                NameObject("/Subtype"): NameObject("/Type1"),
                NameObject("/BaseFont"): NameObject("/Helvetica"),
            }
        )
    )


def _flate_stream(raw: bytes) -> StreamObject:
    stream = StreamObject()
    stream._data = zlib.compress(raw, 9)
    stream[NameObject("/Filter")] = NameObject("/FlateDecode")
    return stream


def shared_stream_pdf(pages: int = 1500, ops: int = 20_000) -> bytes:
    """Every page's /Contents is the same compressed stream: small on disk, walked once per page."""
    writer = PdfWriter()
    font = _font(writer)
    raw = ("BT /F1 9 Tf 72 720 Td " + "(ab) Tj " * ops + "ET").encode()
    shared = writer._add_object(_flate_stream(raw))
    for _ in range(pages):
        page = writer.add_blank_page(612, 792)
        page[NameObject("/Contents")] = shared
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})}
        )
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def deflate_bomb_pdf(decoded_bytes: int = 70 * 1024 * 1024) -> bytes:
    """One page whose content stream inflates about 1000 times (spaces compress to nothing)."""
    writer = PdfWriter()
    page = writer.add_blank_page(612, 792)
    raw = b"BT (bomb) Tj ET\n" + b" " * decoded_bytes
    page[NameObject("/Contents")] = writer._add_object(_flate_stream(raw))
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def many_pages_pdf(pages: int = 2500) -> bytes:
    writer = PdfWriter()
    blank = DecodedStreamObject()
    blank.set_data(b"")
    contents = writer._add_object(blank)
    for _ in range(pages):
        writer.add_blank_page(612, 792)[NameObject("/Contents")] = contents
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _binary(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def _zip() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("notes.txt", "compressed notes " * 1000)
    return out.getvalue()


def _late_binary() -> bytes:
    # Text for the first 10 KB, then bytes with NULs: the old check looked at the first 8 KB only.
    text = b"Readable notes about the project.\n\n" * 300
    tail = bytes(b for b in _binary(4096, 7) if b not in (0x81, 0x8D, 0x8F, 0x90, 0x9D))
    return text + b"\x00" + tail


def cases() -> list[Hostile]:
    nested_lists = b"<html><body>" + b"<ul><li>item" * 3000 + b"</li></ul>" * 3000 + b"</body></html>"
    return [
        Hostile(
            "heading-spaces.md",
            b"# x" + b" " * 30_000 + b"x\n\nBody under a spacious heading.\n",
            "the ATX-heading regex backtracked quadratically over 30,000 spaces",
            None,
        ),
        Hostile(
            "heading-brackets.md",
            b"# " + b"[" * 30_000 + b"\n\nBody.\n",
            "the inline-link regex rescanned the rest of the heading from every `[`",
            None,
        ),
        Hostile(
            "comment-openers.md",
            b"Intro.\n\n" + b"<!--" * 20_000 + b"\n",
            "the HTML-comment regex scanned to the end from every unclosed `<!--`",
            None,
        ),
        Hostile(
            "front-matter-title.md",
            b"---\ntitle: a" + b" " * 30_000 + b"b\n---\n\nBody.\n",
            "the front-matter title regex backtracked quadratically",
            None,
        ),
        Hostile(
            "no-seams.md",
            b"word\n" * 20_000,
            "one 100 KB paragraph with no sentence end: the chunker re-tokenised the rest at every cut",
            None,
        ),
        Hostile(
            "nested-lists.html",
            nested_lists,
            "3,000 nested list items: indentation expanded 57 KB to millions of characters",
            "limit_exceeded",
            "nesting_depth",
        ),
        Hostile(
            "nested-divs.html",
            b"<div>" * 100_000 + b"deep",
            "100,000 open elements",
            "limit_exceeded",
            "nesting_depth",
        ),
        Hostile(
            "billion-laughs.html",
            b'<!DOCTYPE html [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
            b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
            b"<html><body><p>&lol3;&lol3;&lol3; entities are not expanded</p></body></html>",
            "XML entity expansion: HTML has none, the declarations stay inert",
            None,
        ),
        Hostile(
            "unclosed-tags.html",
            b"<p>start</p>" + b"<a" * 200_000,
            "200,000 unterminated tags: html.parser rescans its buffer (the CPU limit is the backstop)",
            "limit_exceeded",
            "cpu_time",
            or_limit="wall_time",
        ),
        Hostile(
            "huge-text.txt",
            b"All work and no play makes a dull document. " * 60_000,
            "2.6 MB of text, over the extracted-text cap",
            "limit_exceeded",
            "text_chars",
        ),
        Hostile(
            "huge-line.txt",
            b"Title\n\n" + b"x" * 300_000 + b"\n",
            "one 300,000-character line",
            "limit_exceeded",
            "line_chars",
        ),
        Hostile(
            "shared-stream.pdf",
            shared_stream_pdf(),
            "1,500 pages sharing one compressed content stream (each walked again)",
            "limit_exceeded",
            "pdf_content_bytes",
        ),
        Hostile(
            "deflate-bomb.pdf",
            deflate_bomb_pdf(),
            "a 70 KB stream that inflates to 70 MB",
            "limit_exceeded",
            "pdf_content_bytes",
        ),
        Hostile("many-pages.pdf", many_pages_pdf(), "2,500 empty pages", "limit_exceeded", "pages"),
        Hostile("binary.md", _binary(64 * 1024, 1), "random bytes named .md", "unreadable"),
        Hostile("late-binary.md", _late_binary(), "text, then binary after the first 8 KB", "unreadable"),
        Hostile("archive.txt", _zip(), "a zip archive named .txt", "unreadable"),
        Hostile(
            "page.pdf",
            b"<html><body><p>not a PDF</p></body></html>",
            "HTML named .pdf (wrong content type)",
            "unreadable",
        ),
        Hostile(
            "manual.html",
            make_pdf([["A PDF named .html"]]),
            "a PDF named .html: parsed as (odd) HTML text, within limits",
            None,
        ),
    ]
