"""The voice protocol spoken on WebSocket `/v1/voice` (version 1), specified in docs/protocol.md.

Text frames carry JSON messages with a `type`; binary frames carry audio. Client audio is raw
PCM16 little-endian, 16 kHz, mono, at most 200 ms a frame. Server audio frames start with a
16-byte header (`AudioHeader`) naming the turn and the chunk's sequence, so a client can drop
audio of an interrupted turn even if it was already in flight.
"""

from __future__ import annotations

import json
import struct
import typing
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


SessionMode = Literal["push_to_talk", "hands_free"]
"""push_to_talk: the client says when a turn starts and ends (`turn.start`, `turn.end`).
hands_free: the client streams the microphone all the time; the gateway's voice activity
detection starts and ends turns, and speech over an answer interrupts it (docs/handsfree.md)."""


class SessionStart(_ClientMessage):
    type: Literal["session.start"]
    mode: SessionMode = Field(default="push_to_talk", description="How turns start and end.")
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


class SessionUpdate(_ClientMessage):
    """Change how the session takes turns; answered by `session.updated`. A turn in flight
    goes on; a hands-free recording not yet ended is dropped when the mode changes."""

    type: Literal["session.update"]
    mode: SessionMode


class TextQuestion(_ClientMessage):
    """A typed question, answered like a spoken one (with speech unless `speak` is false)."""

    type: Literal["text"]
    text: str = Field(min_length=1)
    speak: bool = True


ClientMessage = Annotated[
    SessionStart | SessionUpdate | TurnStart | TurnEnd | TurnCancel | TextQuestion,
    Field(discriminator="type"),
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


class _Event(BaseModel):
    """A server event. Built typed inside the gateway; only a sink at the edge serialises it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def wire(self) -> dict[str, Any]:
        """The event as the JSON object clients receive (`type` first)."""
        return self.model_dump(mode="json")

    def to_json(self) -> str:
        return json.dumps(self.wire(), ensure_ascii=False, separators=(",", ":"))


def _absent_when_none(value: object) -> bool:
    return value is None


def _omitted(description: str) -> Any:
    """An optional field the server leaves out (rather than sending null) when it has no value.
    Every other field of a server event is always sent, so the schema lists it as required."""
    return Field(default=None, exclude_if=_absent_when_none, description=description)


class Citation(BaseModel):
    """A passage given to the LLM, as clients see it; `[n]` in the answer cites the n-th."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n: int
    title: str
    source: str = Field(description="`upload://<collection>/<name>`, or a file's name (never its path).")
    heading_path: list[str]
    snippet: str
    text: str | None = _omitted("The passage as the LLM read it (live events only).")


class SessionReady(_Event):
    type: Literal["session.ready"] = "session.ready"
    session_id: str
    protocol: int = Field(description="The protocol version, PROTOCOL_VERSION.")
    input_sample_rate: int
    resumed: bool = Field(description="A stored session continues: history and turn numbering go on.")
    turns: int = Field(description="The last turn number so far (0 for a new session).")
    mode: SessionMode


class SessionUpdated(_Event):
    type: Literal["session.updated"] = "session.updated"
    mode: SessionMode


TurnTrigger = Literal["client", "speech"]


class TurnStarted(_Event):
    type: Literal["turn.started"] = "turn.started"
    turn: int
    trigger: TurnTrigger = Field(
        default="client",
        description="client: turn.start or a typed question; speech: hands-free, the gateway heard speech begin.",
    )


class TranscriptPartial(_Event):
    """While the user speaks (about every 0.5 s of audio)."""

    type: Literal["transcript.partial"] = "transcript.partial"
    turn: int
    text: str


class TranscriptFinal(_Event):
    type: Literal["transcript.final"] = "transcript.final"
    turn: int
    text: str


class Sources(_Event):
    """Before the answer: the passages given to the LLM; `available: false` when search failed."""

    type: Literal["sources"] = "sources"
    turn: int
    available: bool
    sources: list[Citation]


class AnswerDelta(_Event):
    """The next checked sentence of the answer (the first one without a leading space)."""

    type: Literal["answer.delta"] = "answer.delta"
    turn: int
    text: str


DeclineReasonName = Literal["no_passages", "not_in_documents", "model_declined", "unsupported"]


class AnswerDone(_Event):
    type: Literal["answer.done"] = "answer.done"
    turn: int
    text: str
    citations: list[int] = Field(description="The `n` of the sources the answer cites, in order.")
    declined: bool
    decline_reason: DeclineReasonName | None


class AudioClear(_Event):
    """Barge-in or cancel: drop every queued audio chunk of `turn` now."""

    type: Literal["audio.clear"] = "audio.clear"
    turn: int


TurnOutcome = Literal["ok", "error", "cancelled", "ignored"]
"""ignored: a hands-free turn that held no question (a backchannel, a cough, noise): it is not
part of the conversation, and a client removes it."""


class TurnDone(_Event):
    type: Literal["turn.done"] = "turn.done"
    turn: int
    outcome: TurnOutcome
    timings: dict[str, float | int | str | None] = Field(
        description="Milliseconds per stage (null: it did not run), token counts, what speculation did."
    )
    note: str | None = _omitted("Why an ok turn has no answer, e.g. no speech heard.")


class ErrorEvent(_Event):
    """`fatal: true`: the server closes the socket next."""

    type: Literal["error"] = "error"
    code: ErrorCode
    message: str
    turn: int | None = None
    fatal: bool = False


ServerEvent = (
    SessionReady
    | SessionUpdated
    | TurnStarted
    | TranscriptPartial
    | TranscriptFinal
    | Sources
    | AnswerDelta
    | AnswerDone
    | AudioClear
    | TurnDone
    | ErrorEvent
)
SERVER_EVENTS: tuple[type[_Event], ...] = typing.get_args(ServerEvent)
_ServerEventField = Annotated[ServerEvent, Field(discriminator="type")]
_server_adapter: TypeAdapter[ServerEvent] = TypeAdapter(_ServerEventField)  # type: ignore[arg-type, unused-ignore]


def parse_server_event(raw: str | bytes) -> ServerEvent:
    """A server event from its JSON (clients and tests; the gateway never parses its own)."""
    return _server_adapter.validate_json(raw)


def json_schema() -> dict[str, Any]:
    """The protocol's JSON Schema (docs/protocol.schema.json): every client message and server
    event, as `ClientMessage` and `ServerEvent` (discriminated on `type`) under `$defs`."""
    defs: dict[str, Any] = {}
    tops: dict[str, Any] = {}
    for name, adapter in (("ClientMessage", _client_adapter), ("ServerEvent", _server_adapter)):
        schema = adapter.json_schema(ref_template="#/$defs/{model}")
        defs.update(schema.pop("$defs"))
        tops[name] = schema
    # Defaults make server events easy to build; on the wire every field but the omitted ones is there.
    always_sent: tuple[type[BaseModel], ...] = (*SERVER_EVENTS, Citation)
    for model in always_sent:
        definition = defs[model.__name__]
        definition["required"] = [n for n, f in model.model_fields.items() if f.exclude_if is None]
        for name in definition["required"]:
            definition["properties"][name].pop("default", None)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://voicebot.dev/protocol/v{PROTOCOL_VERSION}.schema.json",
        "title": f"Voicebot voice protocol v{PROTOCOL_VERSION}",
        "description": "Text frames of WebSocket /v1/voice (docs/protocol.md); binary frames are audio.",
        "anyOf": [{"$ref": "#/$defs/ClientMessage"}, {"$ref": "#/$defs/ServerEvent"}],
        "$defs": {**tops, **dict(sorted(defs.items()))},
    }


SCHEMA_PATH = "docs/protocol.schema.json"  # relative to the repository root


def schema_text() -> str:
    """The schema as docs/protocol.schema.json holds it (`python -m orchestrator.protocol`)."""
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"


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


if __name__ == "__main__":  # `make protocol-schema`
    print(schema_text(), end="")
