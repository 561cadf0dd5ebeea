from __future__ import annotations

import json

import pytest

from orchestrator.protocol import (
    MAX_FRAME_BYTES,
    MAX_TEXT_FRAME_BYTES,
    AudioHeader,
    ErrorCode,
    ErrorEvent,
    ProtocolError,
    SessionStart,
    TextQuestion,
    TurnStart,
    parse_client_message,
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
