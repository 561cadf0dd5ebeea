"""The voice protocol spoken on WebSocket `/v1/voice` (version 1), specified in docs/protocol.md.

Text frames carry JSON messages with a `type`; binary frames carry audio. Client audio is raw
PCM16 little-endian, 16 kHz, mono, at most 200 ms a frame. Server audio frames start with a
16-byte header (`AudioHeader`) naming the turn and the chunk's sequence, so a client can drop
audio of an interrupted turn even if it was already in flight.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

PROTOCOL_VERSION = 1
INPUT_SAMPLE_RATE = 16_000
INPUT_SAMPLE_WIDTH = 2  # PCM16
MAX_FRAME_MS = 200
MAX_FRAME_BYTES = INPUT_SAMPLE_RATE * INPUT_SAMPLE_WIDTH * MAX_FRAME_MS // 1000  # 6400
MAX_TEXT_FRAME_BYTES = 16 * 1024


class ErrorCode(StrEnum):
    """Stable error codes: clients switch on these, so never rename one."""

    BAD_REQUEST = "bad_request"  # malformed JSON, unknown type, missing field
    BAD_AUDIO = "bad_audio"  # odd-length PCM, frame too large, audio outside a turn
    TOO_LARGE = "too_large"  # message, text or turn audio over its limit
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"  # HTTP: a page of another site, or (dev mode) a host name not loopback
    INSUFFICIENT_SCOPE = "insufficient_scope"  # the API key lacks the scope the route needs (403)
    COLLECTION_FORBIDDEN = "collection_forbidden"  # the API key may not use that collection (403)
    RATE_LIMITED = "rate_limited"
    NOT_FOUND = "not_found"  # unknown session or document
    MODEL_UNAVAILABLE = "model_unavailable"  # Triton down or a model failing
    STORE_UNAVAILABLE = "store_unavailable"  # Postgres down
    TIMEOUT = "timeout"
    SHUTTING_DOWN = "shutting_down"  # the gateway is draining for a restart: reconnect
    INTERNAL = "internal"


# ---- client → server -------------------------------------------------------------------


def plain_text(value: str) -> bool:
    """Text the models and Postgres accept: no NUL character and no lone surrogate (which JSON's
    `\\ud800` escapes can carry)."""
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class _ClientMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*")
    @classmethod
    def _plain_text(cls, value: object) -> object:
        if isinstance(value, str) and not plain_text(value):
            raise ValueError("must be Unicode text without NUL characters or lone surrogates")
        return value


class SessionStart(_ClientMessage):
    type: Literal["session.start"]
    session_id: str | None = Field(default=None, max_length=64, description="Resume this session.")
    language: str | None = Field(default=None, max_length=8, description="ASR language, e.g. 'en'.")
    voice: str | None = Field(default=None, max_length=64, description="TTS voice.")


class TurnStart(_ClientMessage):
    """Push-to-talk pressed. During an answer this is also a barge-in."""

    type: Literal["turn.start"]


class TurnEnd(_ClientMessage):
    """Push-to-talk released: transcribe what was said and answer it."""

    type: Literal["turn.end"]


class TurnCancel(_ClientMessage):
    """Abandon the current turn (recording or answering) without a new one."""

    type: Literal["turn.cancel"]


class TextQuestion(_ClientMessage):
    """A typed question, answered like a spoken one (with speech unless `speak` is false)."""

    type: Literal["text"]
    text: str = Field(min_length=1)
    speak: bool = True


ClientMessage = Annotated[
    SessionStart | TurnStart | TurnEnd | TurnCancel | TextQuestion, Field(discriminator="type")
]
_client_adapter: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)  # type: ignore[arg-type, unused-ignore]


class ProtocolError(Exception):
    """A client message we refuse; the session goes on."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def parse_client_message(raw: str | bytes) -> ClientMessage:
    """Parse one JSON text frame, or raise ProtocolError with a message a developer can act on."""
    if len(raw) > MAX_TEXT_FRAME_BYTES:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"message is larger than {MAX_TEXT_FRAME_BYTES} bytes")
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"message is not valid JSON: {e}") from e
    except RecursionError as e:  # `[[[[…` a few thousand deep: no message of ours nests like that
        raise ProtocolError(ErrorCode.BAD_REQUEST, "message is nested too deeply") from e
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "message must be a JSON object with a string 'type'")
    try:
        return _client_adapter.validate_python(data)
    except ValidationError as e:
        first = e.errors()[0]
        if first["type"] == "union_tag_invalid":
            raise ProtocolError(ErrorCode.BAD_REQUEST, f"unknown message type {data['type']!r}") from e
        where = ".".join(str(p) for p in first["loc"][1:]) or "message"
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"{data['type']}: {where}: {first['msg']}") from e


def validate_audio_frame(frame: bytes) -> None:
    if len(frame) == 0:
        raise ProtocolError(ErrorCode.BAD_AUDIO, "empty audio frame")
    if len(frame) % INPUT_SAMPLE_WIDTH:
        raise ProtocolError(ErrorCode.BAD_AUDIO, "audio frame has an odd number of bytes; expected PCM16")
    if len(frame) > MAX_FRAME_BYTES:
        raise ProtocolError(
            ErrorCode.BAD_AUDIO,
            f"audio frame of {len(frame)} bytes is over {MAX_FRAME_BYTES} ({MAX_FRAME_MS} ms of 16 kHz PCM16)",
        )


# ---- server → client -------------------------------------------------------------------


def public_source(source: str) -> str:
    """A document's stored source as clients see it (citations, the documents API): uploads as
    stored (`upload://<collection>/<name>`), a file ingested from the server's disk by its name
    alone (`file:///srv/docs/guide.md` → `guide.md`), so neither maps the server's folders."""
    if source.startswith("file:"):
        name = unquote(urlsplit(source).path.rstrip("/").rsplit("/", 1)[-1])
        return name or "document"
    return source


def event(type_: str, **fields: Any) -> str:
    """A server event as a JSON text frame."""
    return json.dumps({"type": type_, **fields}, ensure_ascii=False, separators=(",", ":"))


def error_event(code: ErrorCode, message: str, *, turn: int | None = None, fatal: bool = False) -> str:
    return event("error", code=code.value, message=message, turn=turn, fatal=fatal)


@dataclass(frozen=True)
class AudioHeader:
    """16 bytes before each server audio chunk: kind, version, reserved, turn, sequence, sample rate."""

    turn: int
    seq: int
    sample_rate: int

    KIND_AUDIO = 1
    FORMAT = "<BBHIII"
    SIZE = struct.calcsize(FORMAT)

    def pack(self) -> bytes:
        return struct.pack(
            self.FORMAT, self.KIND_AUDIO, PROTOCOL_VERSION, 0, self.turn, self.seq, self.sample_rate
        )

    @classmethod
    def unpack(cls, frame: bytes) -> tuple[AudioHeader, bytes]:
        kind, version, _, turn, seq, rate = struct.unpack_from(cls.FORMAT, frame)
        if kind != cls.KIND_AUDIO or version != PROTOCOL_VERSION:
            raise ValueError(f"not a v{PROTOCOL_VERSION} audio frame")
        return cls(turn, seq, rate), frame[cls.SIZE :]
