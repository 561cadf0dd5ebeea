"""Input validation and the streaming-ASR state the Triton models use (a fake decoder at the seam)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from voicebot_models.asr_stream import SAMPLE_RATE, AsrStream, Segment, StreamOptions
from voicebot_models.serving import (
    InputError,
    ModelParameters,
    decode_text,
    parse_sampling_parameters,
    single_bool,
    single_scalar,
    single_text,
)

# ---- parameters and inputs ------------------------------------------------------------------------


def test_model_parameters_are_typed_with_defaults() -> None:
    params = ModelParameters(
        {
            "parameters": {
                "n": {"string_value": "4"},
                "x": {"string_value": "0.5"},
                "b": {"string_value": "yes"},
            }
        }
    )
    assert params.get_int("n", 1) == 4
    assert params.get_float("x", 1.0) == 0.5
    assert params.get_bool("b", False) is True
    assert params.get_str("missing", "d") == "d"
    assert ModelParameters({}).get_int("n", 7) == 7
    with pytest.raises(ValueError, match="'n' must be a number"):
        ModelParameters({"parameters": {"n": {"string_value": "four"}}}).get_float("n", 1.0)


def test_decode_text_rejects_bad_utf8_overlong_and_blank() -> None:
    assert decode_text("héllo".encode(), "text", 10) == "héllo"
    with pytest.raises(InputError, match="'text' is not valid UTF-8"):
        decode_text(b"\xff\xfe", "text", 10)
    with pytest.raises(InputError, match="11 characters long; the limit is 10"):
        decode_text(b"x" * 11, "text", 10)
    with pytest.raises(InputError, match="'text' is empty"):
        decode_text(b"  ", "text", 10)
    assert decode_text(b"", "voice", 10, allow_empty=True) == ""


def test_single_value_inputs() -> None:
    assert single_text(np.array([b"a"], dtype=object), "t", 5) == "a"
    assert single_text(None, "t", 5, allow_empty=True) == ""
    with pytest.raises(InputError, match="exactly one string"):
        single_text(np.array([b"a", b"b"], dtype=object), "t", 5)
    with pytest.raises(InputError, match="required"):
        single_text(None, "t", 5)
    assert single_scalar(None, "r", 1.0) == 1.0
    with pytest.raises(InputError, match="finite"):
        single_scalar(np.array([np.nan], np.float32), "r", 1.0)
    assert single_bool(np.array([False]), "s", True) is False


def test_sampling_parameters_follow_vllm_names() -> None:
    params = parse_sampling_parameters(
        '{"temperature": 0, "top_p": 0.9, "max_tokens": "12", "stop": "\\n", "ignore_eos": true}',
        max_tokens_limit=100,
        default_max_tokens=10,
    )
    assert params["temperature"] == 0.0
    assert params["top_p"] == 0.9
    assert params["max_tokens"] == 12  # vLLM's backend also accepts numbers as strings
    assert params["stop"] == ["\n"]
    assert parse_sampling_parameters("", max_tokens_limit=100, default_max_tokens=10)["max_tokens"] == 10


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("{nope", "not valid JSON"),
        ("[1]", "JSON object"),
        ('{"max_tokens": 0}', "max_tokens"),
        ('{"max_tokens": 101}', "max_tokens"),
        ('{"temperature": true}', "temperature"),
        ('{"top_p": 2}', "top_p"),
        ('{"stop": [""]}', "stop"),
        ('{"seed": 1.5}', "seed"),
    ],
)
def test_sampling_parameters_refuse_bad_values(raw: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_sampling_parameters(raw, max_tokens_limit=100, default_max_tokens=10)


# ---- streaming ASR --------------------------------------------------------------------------------


class FakeDecoder:
    """One segment per started second of audio, text 'wN' with N the absolute second (via offset)."""

    def __init__(self) -> None:
        self.calls: list[int] = []  # samples decoded per call

    def __call__(self, audio: np.ndarray, language: str | None) -> Sequence[Segment]:
        self.calls.append(int(audio.shape[0]))
        seconds = int(np.ceil(audio.shape[0] / SAMPLE_RATE))
        return [
            Segment(float(i), float(min(i + 1, audio.shape[0] / SAMPLE_RATE)), f"w{i}")
            for i in range(seconds)
        ]


def speech(seconds: float) -> np.ndarray:
    n = int(seconds * SAMPLE_RATE)
    return (np.sin(np.arange(n) / 5.0) * 8000).astype(np.int16)


def test_one_shot_decodes_once() -> None:
    decoder = FakeDecoder()
    stream = AsrStream(StreamOptions())
    stream.append(speech(3))
    text, _segments = stream.final(decoder)
    assert text == "w0 w1 w2"
    assert decoder.calls == [3 * SAMPLE_RATE]


def test_partials_are_rate_limited_and_final_reuses_the_last_decode() -> None:
    decoder = FakeDecoder()
    stream = AsrStream(StreamOptions(partial_interval_s=1.0))
    texts = []
    for _ in range(6):  # 6 x 0.5 s
        stream.append(speech(0.5))
        texts.append(stream.partial(decoder)[0])
    assert len(decoder.calls) == 3  # one decode per second of new audio, not per chunk
    assert texts[0] == ""
    assert texts[1] == "w0"
    assert texts[-1] == "w0 w1 w2"
    text, _ = stream.final(decoder)
    assert text == "w0 w1 w2"
    assert len(decoder.calls) == 3  # nothing arrived since the last partial: no decode at END


def test_long_turns_commit_and_final_decodes_only_the_tail() -> None:
    decoder = FakeDecoder()
    stream = AsrStream(StreamOptions(partial_interval_s=1.0, commit_after_s=5.0))
    for _ in range(12):
        stream.append(speech(1.0))
        stream.partial(decoder)
    assert stream.offset > 0
    stream.append(speech(0.5))
    text, segments = stream.final(decoder)
    assert max(decoder.calls) <= 6 * SAMPLE_RATE  # never more than the tail, however long the turn
    assert decoder.calls[-1] < 6 * SAMPLE_RATE
    assert [s.start for s in segments] == sorted(s.start for s in segments)
    assert segments[-1].end == pytest.approx(12.5)
    assert text.split()[:3] == ["w0", "w1", "w2"]


def test_empty_and_silent_turns_are_errors() -> None:
    decoder = FakeDecoder()
    with pytest.raises(ValueError, match="audio is empty"):
        AsrStream(StreamOptions()).final(decoder)
    silent = AsrStream(StreamOptions(silence_peak=64))
    silent.append(np.zeros(SAMPLE_RATE, np.int16))
    assert silent.partial(decoder) == ("", [])
    with pytest.raises(ValueError, match="silent"):
        silent.final(decoder)
    assert decoder.calls == []  # silence is never decoded


def test_audio_past_the_limit_is_refused_and_not_kept() -> None:
    stream = AsrStream(StreamOptions(max_audio_s=2.0))
    stream.append(speech(1.5))
    with pytest.raises(ValueError, match="longer than the limit of 2 s"):
        stream.append(speech(1.0))
    assert stream.samples == int(1.5 * SAMPLE_RATE)
