"""The limits a document is parsed under: what one file may cost before it is refused.

Two kinds, enforced in two places:
- caps on what a parser produces or walks (`text_chars`, `pages`, `pdf_content_bytes`,
  `nesting_depth`, `line_chars`), checked by the loaders as they go, so a file is refused at
  the first sign (ingest.loaders);
- limits on the process that parses (`cpu_time`, `memory`, `wall_time`), enforced by the
  operating system and the parent (ingest.parsing): they catch what the caps do not foresee.

A file past any of them raises `ParseLimitExceeded` whose `limit` is the field's stable name.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ingest.errors import ParseLimitExceeded

MiB = 1024 * 1024


@dataclass(frozen=True)
class ParseLimits:
    # Characters of text extracted from one file (about 500 pages of prose): beyond it an upload
    # is a corpus, not a document, and would take the embedding model minutes.
    max_text_chars: int = 2_000_000
    # PDF pages; the many-pages attack is one tiny page repeated.
    max_pages: int = 2_000
    # Decoded content-stream bytes a PDF's pages make the extractor walk, counted per page: a
    # stream shared by every page (5.9 KB that cost 13 s of CPU) counts once per page.
    max_pdf_content_bytes: int = 64 * MiB
    # Open HTML elements at once; real pages stay under about 40.
    max_nesting_depth: int = 100
    # One line of a text, Markdown or PDF file, or of an HTML <pre> block.
    max_line_chars: int = 100_000
    # Process limits of the parsing worker (ingest.parsing), per file.
    cpu_time_s: float = 30.0
    wall_time_s: float = 60.0
    memory_bytes: int = 1024 * MiB

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if value <= 0:
                raise ValueError(f"parse limit {name} must be positive")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    # ---- checks the loaders call -----------------------------------------------------------
    def check_text(self, chars: int, what: str = "the extracted text") -> None:
        if chars > self.max_text_chars:
            raise ParseLimitExceeded(
                "text_chars", f"{what} is over {self.max_text_chars:,} characters (the limit per file)"
            )

    def check_lines(self, text: str, what: str = "a line") -> None:
        """Refuses `text` when one of its lines is longer than `max_line_chars` (linear)."""
        start = 0
        limit = self.max_line_chars
        n = len(text)
        if n <= limit:
            return
        while start < n:
            end = text.find("\n", start)
            if end == -1:
                end = n
            if end - start > limit:
                raise ParseLimitExceeded(
                    "line_chars", f"{what} is {end - start:,} characters long; the limit is {limit:,}"
                )
            start = end + 1


DEFAULT_LIMITS = ParseLimits()


def limits_from_settings(settings: Any) -> ParseLimits:
    """The limits `VOICEBOT_PARSE_*` set (orchestrator.settings.Settings), for the gateway and the CLI."""
    return ParseLimits(
        max_text_chars=settings.parse_max_text_chars,
        max_pages=settings.parse_max_pages,
        cpu_time_s=settings.parse_cpu_s,
        wall_time_s=settings.parse_wall_s,
        memory_bytes=settings.parse_memory_mb * MiB,
    )
