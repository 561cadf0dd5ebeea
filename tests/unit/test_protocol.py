from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from orchestrator.protocol import (
    MAX_FRAME_BYTES,
    MAX_TEXT_FRAME_BYTES,
    SERVER_EVENTS,
    AnswerDelta,
    AnswerDone,
    AudioClear,
    AudioHeader,
    Citation,
    ErrorCode,
    ErrorEvent,
    ProtocolError,
    ServerEvent,
    SessionReady,
    SessionStart,
    SessionUpdated,
    Sources,
    TextQuestion,
    TranscriptFinal,
    TranscriptPartial,
    TurnDone,
    TurnStart,
    TurnStarted,
    parse_client_message,
    parse_server_event,
    public_source,
    validate_audio_frame,
)


def test_parses_each_client_message() -> None:
    assert parse_client_message('{"type":"turn.start"}') == TurnStart(type="turn.start")
    start = parse_client_message('{"type":"session.start","session_id":"abc","voice":"joe"}')
    assert isinstance(start, SessionStart)
    assert (start.session_id, start.voice, start.language) == ("abc", "joe", None)
    text = parse_client_message('{"type":"text","text":"What is Voicebot?"}')
    assert isinstance(text, TextQuestion)
    assert text.speak is True


@pytest.mark.parametrize(
    ("raw", "code", "fragment"),
    [
        ("{not json", ErrorCode.BAD_REQUEST, "not valid JSON"),
        ("[1,2]", ErrorCode.BAD_REQUEST, "JSON object"),
        ('{"type": 3}', ErrorCode.BAD_REQUEST, "string 'type'"),
        ('{"type":"turn.jump"}', ErrorCode.BAD_REQUEST, "unknown message type 'turn.jump'"),
        ('{"type":"text"}', ErrorCode.BAD_REQUEST, "text: text: Field required"),
        ('{"type":"text","text":""}', ErrorCode.BAD_REQUEST, "text: text"),
        ('{"type":"turn.start","extra":1}', ErrorCode.BAD_REQUEST, "extra"),
        (b"\xff\xfe{", ErrorCode.BAD_REQUEST, "not valid JSON"),
        ("x" * (MAX_TEXT_FRAME_BYTES + 1), ErrorCode.TOO_LARGE, "larger than"),
        ("[" * 10_000, ErrorCode.BAD_REQUEST, "nested too deeply"),  # was an unhandled RecursionError
        ('{"a":' * 3000, ErrorCode.BAD_REQUEST, "nested too deeply"),
    ],
)
def test_bad_messages_get_a_stable_code(raw: str | bytes, code: ErrorCode, fragment: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_client_message(raw)
    assert info.value.code is code
    assert fragment in info.value.message


@pytest.mark.parametrize(
    ("frame", "fragment"),
    [(b"", "empty"), (b"\x00\x01\x02", "odd number"), (b"\x00" * (MAX_FRAME_BYTES + 2), "over 6400")],
)
def test_bad_audio_frames(frame: bytes, fragment: str) -> None:
    with pytest.raises(ProtocolError) as info:
        validate_audio_frame(frame)
    assert info.value.code is ErrorCode.BAD_AUDIO
    assert fragment in info.value.message


def test_a_full_frame_is_accepted() -> None:
    validate_audio_frame(b"\x00" * MAX_FRAME_BYTES)


def test_audio_header_round_trip() -> None:
    frame = AudioHeader(turn=7, seq=3, sample_rate=22050).pack() + b"\x01\x02"
    header, pcm = AudioHeader.unpack(frame)
    assert (header.turn, header.seq, header.sample_rate, pcm) == (7, 3, 22050, b"\x01\x02")
    assert AudioHeader.SIZE == 16


def test_error_event_shape() -> None:
    assert json.loads(ErrorEvent(code=ErrorCode.BAD_AUDIO, message="odd", turn=2).to_json()) == {
        "type": "error",
        "code": "bad_audio",
        "message": "odd",
        "turn": 2,
        "fatal": False,
    }


@pytest.mark.parametrize(
    ("stored", "shown"),
    [
        ("file:///srv/voicebot/docs/architecture.md", "architecture.md"),
        ("file:///home/dev/My%20Notes/plan%20b.md", "plan b.md"),
        ("upload://default/runbook.md", "upload://default/runbook.md"),
        ("file:///", "document"),
    ],
)
def test_sources_never_show_server_paths(stored: str, shown: str) -> None:
    assert public_source(stored) == shown


# ---- server events -------------------------------------------------------------------------

CITATION = Citation(
    n=1, title="Voicebot", source="README.md", heading_path=["On a laptop"], snippet="make up"
)
# Each event as built inside the gateway, and the JSON object clients have always received for it.
WIRE: list[tuple[ServerEvent, dict[str, object]]] = [
    (
        SessionReady(
            session_id="5b0c",
            protocol=1,
            input_sample_rate=16000,
            resumed=False,
            turns=0,
            mode="push_to_talk",
        ),
        {
            "session_id": "5b0c",
            "protocol": 1,
            "input_sample_rate": 16000,
            "resumed": False,
            "turns": 0,
            "mode": "push_to_talk",
        },
    ),
    (SessionUpdated(mode="hands_free"), {"mode": "hands_free"}),
    (TurnStarted(turn=1), {"turn": 1, "trigger": "client"}),
    (TurnStarted(turn=2, trigger="speech"), {"turn": 2, "trigger": "speech"}),
    (TranscriptPartial(turn=1, text="How do I"), {"turn": 1, "text": "How do I"}),
    (TranscriptFinal(turn=1, text="Ça démarre ?"), {"turn": 1, "text": "Ça démarre ?"}),
    (
        Sources(
            turn=1, available=True, sources=[CITATION.model_copy(update={"text": "make up creates .venv"})]
        ),
        {
            "turn": 1,
            "available": True,
            "sources": [
                {
                    "n": 1,
                    "title": "Voicebot",
                    "source": "README.md",
                    "heading_path": ["On a laptop"],
                    "snippet": "make up",
                    "text": "make up creates .venv",
                }
            ],
        },
    ),
    (Sources(turn=2, available=False, sources=[]), {"turn": 2, "available": False, "sources": []}),
    (AnswerDelta(turn=1, text=" make up"), {"turn": 1, "text": " make up"}),
    (
        AnswerDone(turn=1, text="Run make up [1].", citations=[1], declined=False, decline_reason=None),
        {"turn": 1, "text": "Run make up [1].", "citations": [1], "declined": False, "decline_reason": None},
    ),
    (AudioClear(turn=3), {"turn": 3}),
    (
        TurnDone(
            turn=1, outcome="ok", timings={"asr_final": 410.2, "llm_prompt_tokens": 230, "speculation": "hit"}
        ),
        {
            "turn": 1,
            "outcome": "ok",
            "timings": {"asr_final": 410.2, "llm_prompt_tokens": 230, "speculation": "hit"},
        },
    ),
    (
        TurnDone(turn=2, outcome="ok", timings={"total": None}, note="no speech heard"),
        {"turn": 2, "outcome": "ok", "timings": {"total": None}, "note": "no speech heard"},
    ),
    (
        ErrorEvent(code=ErrorCode.SHUTTING_DOWN, message="restarting", fatal=True),
        {"code": "shutting_down", "message": "restarting", "turn": None, "fatal": True},
    ),
]


@pytest.mark.parametrize(("event", "fields"), WIRE, ids=[f"{e.type}-{i}" for i, (e, _) in enumerate(WIRE)])
def test_each_server_event_keeps_its_wire_format(event: ServerEvent, fields: dict[str, object]) -> None:
    # Byte for byte what the gateway sent before events were typed: `type` first, compact, UTF-8.
    assert event.to_json() == json.dumps(
        {"type": event.type, **fields}, ensure_ascii=False, separators=(",", ":")
    )
    assert parse_server_event(event.to_json()) == event


def test_every_server_event_has_a_wire_example() -> None:
    assert {type(e) for e, _ in WIRE} == set(SERVER_EVENTS)


def test_server_events_are_frozen_and_strict() -> None:
    with pytest.raises(ValidationError):
        TurnStarted(turn=1).turn = 2  # type: ignore[misc]
    with pytest.raises(ValidationError):
        parse_server_event('{"type":"turn.started","turn":1,"extra":true}')
    with pytest.raises(ValidationError):
        parse_server_event('{"type":"turn.done","turn":1,"outcome":"maybe","timings":{}}')
    with pytest.raises(ValidationError):
        parse_server_event('{"type":"turn.jump","turn":1}')
