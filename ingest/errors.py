"""The errors ingest raises, as a small typed tree.

`retryable` says whether the same call may succeed later unchanged (a server that was down),
as opposed to a file or request that will fail again. Causes are chained with `raise ... from e`.
"""

from __future__ import annotations


class IngestError(Exception):
    """Base class of every error raised by the ingest package."""

    retryable: bool = False


class StoreUnavailable(IngestError):
    """PostgreSQL could not be reached or refused the connection."""

    retryable = True


class EmbeddingUnavailable(IngestError):
    """The Triton `embed` model could not be reached after retries, or answered with an error."""

    retryable = True


class DocumentError(IngestError):
    """A single file could not be ingested; the run reports it and carries on with the others.

    `code` is the stable word the documents API and `voicebot ingest --json` report for it."""

    code = "unreadable"


class UnsupportedFormat(DocumentError):
    """The file's extension is not one the loaders read (.md, .markdown, .txt, .html, .htm, .pdf)."""

    code = "unsupported_format"


class ParseError(DocumentError):
    """The file has a supported extension but its content could not be read (broken PDF, binary data...)."""


class ParseLimitExceeded(ParseError):
    """The file went past one of the parsing limits (ingest.parsing.ParseLimits) and was refused.

    `limit` names which one, a stable word clients may branch on: `cpu_time`, `wall_time`,
    `memory`, `text_chars`, `pages`, `pdf_content_bytes`, `nesting_depth`, `line_chars`.
    """

    code = "limit_exceeded"

    def __init__(self, limit: str, message: str) -> None:
        super().__init__(message)
        self.limit = limit


class ParserCrashed(ParseError):
    """The parsing worker process died on this file (a crash in a native parser, killed by the
    system) without saying why; the file is refused, the next file gets a fresh worker."""

    code = "parser_crashed"


class MigrationError(IngestError):
    """A schema migration failed or the recorded migrations disagree with the files shipped."""
