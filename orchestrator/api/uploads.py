"""Uploads: the request body limit (`VOICEBOT_MAX_UPLOAD_BYTES`) and safe file names.

The limit is checked before FastAPI parses a multipart body, so an oversized upload is refused
with 413 `too_large` without being spooled to disk: from `Content-Length` when the client sends
one, else while the body is read.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import quote

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.types import Message

from orchestrator.errors import TooLarge

MAX_FILENAME_BYTES = 200  # UTF-8; file systems allow 255, and the name also goes into a URI
_MAX_SUFFIX_CHARS = 16
FALLBACK_FILENAME = "upload"


async def read_body(request: Request, limit: int) -> bytes:
    """The whole request body, or TooLarge as soon as it is known to exceed `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"the upload is {int(declared)} bytes; the limit is {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"the upload is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


class LimitedUploadRoute(APIRoute):
    """A route whose request body may not exceed the app's `max_upload_bytes`.

    The body is read (within the limit) before FastAPI parses it, then replayed to the usual
    handler through a fresh `Request`, so form parsing, validation and OpenAPI stay FastAPI's."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def limited(request: Request) -> Response:
            body = await read_body(request, request.app.state.voicebot.settings.max_upload_bytes)
            replayed = False

            async def receive() -> Message:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await request.receive()  # after the body: wait for the disconnect

            return await handler(Request(request.scope, receive))

        return limited


def sanitize_filename(name: str | None) -> str:
    """A flat, printable file name for an upload: no directories (`../`, `C:\\`), no NUL or other
    control characters, no leading dots, at most MAX_FILENAME_BYTES of UTF-8 (the extension kept).
    Never empty: `upload` when nothing usable is left."""
    text = unicodedata.normalize("NFC", name or "")
    text = text.replace("\\", "/").rsplit("/", 1)[-1]
    # Control (NUL, newlines), format (bidi overrides), surrogates, private use, unassigned.
    text = "".join(ch for ch in text if not unicodedata.category(ch).startswith("C"))
    text = re.sub(r"\s+", " ", text).strip(" .")
    if not text:
        return FALLBACK_FILENAME
    if len(text.encode("utf-8")) <= MAX_FILENAME_BYTES:
        return text
    stem, dot, suffix = text.rpartition(".")
    if not dot or not 0 < len(suffix) <= _MAX_SUFFIX_CHARS:
        stem, suffix = text, ""
    budget = MAX_FILENAME_BYTES - len(suffix.encode("utf-8")) - (1 if suffix else 0)
    stem = stem.encode("utf-8")[:budget].decode("utf-8", errors="ignore").rstrip(" .")
    if not stem:
        return FALLBACK_FILENAME
    return f"{stem}.{suffix}" if suffix else stem


def upload_source(collection: str, filename: str) -> str:
    """The source URI an upload is stored under: stable, so uploading the same name again replaces it
    (or is `unchanged`)."""
    return f"upload://{collection}/{quote(filename, safe='')}"
