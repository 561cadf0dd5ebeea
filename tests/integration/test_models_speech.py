"""The `asr` and `tts` Triton models, served for real by the session's tritonserver.

Speech is made at test time: espeak-ng (tests/speech.py) and the Piper voice (in-process), both
at 16 kHz PCM16. Word error rates are computed with jiwer over the whole set.
"""

from __future__ import annotations

import json
import queue
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import jiwer
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from orchestrator.stack.triton import TritonServer
from tests.speech import resample_pcm16, speak_pcm16
from voicebot_models.resolve import resolve_model

SENTENCES = [
    "Please hold the button while you ask your question.",
    "The assistant reads your documents and answers with a short summary.",
    "Open the settings page and choose a different voice.",
    "Every answer cites the passages it was built from.",
]
ASR_WER_LIMIT = 0.15
ROUND_TRIP_WER_LIMIT = 0.2
CHUNK_SAMPLES = 8000  # 0.5 s at 16 kHz, as a push-to-talk client would send


def normalise(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split())


def wer(references: list[str], hypotheses: list[str]) -> float:
    return float(jiwer.wer([normalise(r) for r in references], [normalise(h) for h in hypotheses]))


def resample_to_16k(pcm: np.ndarray, rate: int) -> np.ndarray:
    return np.frombuffer(resample_pcm16(pcm.astype("<i2").tobytes(), rate), dtype="<i2").astype(np.int16)


@dataclass(frozen=True)
class Clip:
    text: str
    voice: str
    pcm: np.ndarray  # int16, 16 kHz


@pytest.fixture(scope="module")
def clips() -> list[Clip]:
    """Each sentence spoken by espeak-ng and by the Piper voice, made once per module."""
    from piper import PiperVoice

    voice = PiperVoice.load(resolve_model("tts")[0].file)
    made = []
    for text in SENTENCES:
        made.append(Clip(text, "espeak-ng", np.frombuffer(speak_pcm16(text, rate_wpm=140), dtype="<i2")))
        piper = np.concatenate([chunk.audio_int16_array for chunk in voice.synthesize(text)])
        made.append(Clip(text, "piper", resample_to_16k(piper, voice.config.sample_rate)))
    return made


@pytest.fixture(scope="module")
def client(triton: TritonServer) -> Iterator[grpcclient.InferenceServerClient]:
    with grpcclient.InferenceServerClient(triton.grpc_url) as c:
        yield c


_sequence_ids = iter(range(1000, 1_000_000))


def asr_call(
    client: grpcclient.InferenceServerClient,
    pcm: np.ndarray,
    sequence_id: int,
    *,
    start: bool,
    end: bool,
    language: str | None = None,
    dtype: str = "INT16",
) -> tuple[str, bool, list[dict[str, Any]]]:
    audio = grpcclient.InferInput("audio", list(pcm.shape), dtype)
    audio.set_data_from_numpy(pcm)
    inputs = [audio]
    if language is not None:
        lang = grpcclient.InferInput("language", [1], "BYTES")
        lang.set_data_from_numpy(np.array([language.encode()], dtype=np.object_))
        inputs.append(lang)
    result = client.infer("asr", inputs, sequence_id=sequence_id, sequence_start=start, sequence_end=end)
    transcript = result.as_numpy("transcript")[0].decode("utf-8")
    segments = json.loads(result.as_numpy("segments")[0].decode("utf-8"))
    return transcript, bool(result.as_numpy("is_final")[0]), segments


def transcribe(client: grpcclient.InferenceServerClient, pcm: np.ndarray) -> str:
    text, final, _ = asr_call(client, pcm, next(_sequence_ids), start=True, end=True)
    assert final
    return text


@pytest.fixture(scope="module")
def one_shot(client: grpcclient.InferenceServerClient, clips: list[Clip]) -> list[str]:
    return [transcribe(client, clip.pcm) for clip in clips]


# ---- asr ----------------------------------------------------------------------------------------


def test_asr_transcribes_generated_speech_within_the_wer_limit(
    clips: list[Clip], one_shot: list[str]
) -> None:
    error = wer([c.text for c in clips], one_shot)
    assert error <= ASR_WER_LIMIT, (
        f"WER {error:.3f}: {list(zip([c.text for c in clips], one_shot, strict=True))}"
    )


def test_asr_segments_cover_the_audio_with_text(
    client: grpcclient.InferenceServerClient, clips: list[Clip]
) -> None:
    _, final, segments = asr_call(client, clips[0].pcm, next(_sequence_ids), start=True, end=True)
    assert final
    assert segments
    assert all(set(s) == {"start", "end", "text"} for s in segments)
    assert all(0 <= s["start"] <= s["end"] <= clips[0].pcm.size / 16000 + 1.0 for s in segments)
    assert normalise(" ".join(s["text"] for s in segments))


def test_asr_streams_partials_and_the_final_matches_one_shot(
    client: grpcclient.InferenceServerClient, clips: list[Clip], one_shot: list[str]
) -> None:
    # Two sentences back to back, sent in 0.5 s chunks while "the user is still speaking".
    pcm = np.concatenate([clips[1].pcm, clips[3].pcm])
    expected = transcribe(client, pcm)
    sequence_id = next(_sequence_ids)
    partials = []
    for i, first in enumerate(range(0, pcm.size, CHUNK_SAMPLES)):
        text, final, _ = asr_call(
            client, pcm[first : first + CHUNK_SAMPLES], sequence_id, start=i == 0, end=False
        )
        assert not final
        partials.append(text)
    final_text, final, segments = asr_call(client, np.zeros(0, np.int16), sequence_id, start=False, end=True)

    assert final
    non_empty = [p for p in partials if p.strip()]
    assert len(set(non_empty)) >= 2, f"partial transcripts did not grow before END: {partials}"
    assert normalise(non_empty[0]) != normalise(final_text)  # an early partial covers only the start
    assert final_text == expected
    assert " ".join(s["text"] for s in segments) == final_text


def test_asr_keeps_concurrent_sequences_apart(
    client: grpcclient.InferenceServerClient, clips: list[Clip], one_shot: list[str]
) -> None:
    a, b = next(_sequence_ids), next(_sequence_ids)
    pcm_a, pcm_b = clips[0].pcm, clips[2].pcm
    asr_call(client, pcm_a[: pcm_a.size // 2], a, start=True, end=False)
    asr_call(client, pcm_b[: pcm_b.size // 2], b, start=True, end=False)
    text_b, _, _ = asr_call(client, pcm_b[pcm_b.size // 2 :], b, start=False, end=True)
    text_a, _, _ = asr_call(client, pcm_a[pcm_a.size // 2 :], a, start=False, end=True)
    assert (text_a, text_b) == (one_shot[0], one_shot[2])


# ---- tts ----------------------------------------------------------------------------------------


def tts_stream(
    url: str, text: str | bytes, voice: str | None = None, rate: float | None = None
) -> tuple[list[tuple[np.ndarray, int]], str | None]:
    """All responses of one `tts` request: ([(audio, sample_rate)], error message or None)."""
    inputs = []
    raw = text.encode("utf-8") if isinstance(text, str) else text
    text_in = grpcclient.InferInput("text", [1], "BYTES")
    text_in.set_data_from_numpy(np.array([raw], dtype=np.object_))
    inputs.append(text_in)
    if voice is not None:
        voice_in = grpcclient.InferInput("voice", [1], "BYTES")
        voice_in.set_data_from_numpy(np.array([voice.encode()], dtype=np.object_))
        inputs.append(voice_in)
    if rate is not None:
        rate_in = grpcclient.InferInput("speaking_rate", [1], "FP32")
        rate_in.set_data_from_numpy(np.array([rate], dtype=np.float32))
        inputs.append(rate_in)
    responses: queue.Queue[tuple[Any, Any]] = queue.Queue()
    chunks: list[tuple[np.ndarray, int]] = []
    with grpcclient.InferenceServerClient(url) as c:
        c.start_stream(callback=lambda result, error: responses.put((result, error)))
        c.async_stream_infer("tts", inputs, enable_empty_final_response=True)
        try:
            while True:
                result, error = responses.get(timeout=120)
                if error is not None:
                    return chunks, str(error)
                audio = result.as_numpy("audio")
                if audio is not None:
                    chunks.append((audio, int(result.as_numpy("sample_rate")[0])))
                if result.get_response().parameters["triton_final_response"].bool_param:
                    return chunks, None
        finally:
            c.stop_stream()


MULTI_SENTENCE = " ".join(SENTENCES[:3])


@pytest.fixture(scope="module")
def spoken(triton: TritonServer) -> list[tuple[np.ndarray, int]]:
    chunks, error = tts_stream(triton.grpc_url, MULTI_SENTENCE)
    assert error is None
    return chunks


def test_tts_streams_non_silent_audio_in_chunks_at_the_declared_rate(
    spoken: list[tuple[np.ndarray, int]],
) -> None:
    from piper import PiperVoice

    declared = PiperVoice.load(resolve_model("tts")[0].file).config.sample_rate
    assert len(spoken) > 1
    assert {rate for _, rate in spoken} == {declared}
    audio = np.concatenate([a for a, _ in spoken])
    assert audio.dtype == np.int16
    assert np.sqrt(np.mean(audio.astype(np.float64) ** 2)) > 300  # speech, not silence
    assert 3.0 < audio.size / declared < 30.0  # three sentences of speech


def test_tts_audio_transcribes_back_to_the_text(
    client: grpcclient.InferenceServerClient, spoken: list[tuple[np.ndarray, int]]
) -> None:
    audio = np.concatenate([a for a, _ in spoken])
    heard = transcribe(client, resample_to_16k(audio, spoken[0][1]))
    error = wer([MULTI_SENTENCE], [heard])
    assert error <= ROUND_TRIP_WER_LIMIT, f"WER {error:.3f}: {heard!r}"


def test_tts_speaking_rate_changes_the_duration(triton: TritonServer) -> None:
    text = SENTENCES[0]
    normal, error_normal = tts_stream(triton.grpc_url, text, rate=1.0)
    fast, error_fast = tts_stream(triton.grpc_url, text, rate=1.5)
    assert error_normal is None
    assert error_fast is None
    normal_len = sum(a.size for a, _ in normal)
    fast_len = sum(a.size for a, _ in fast)
    assert fast_len < 0.85 * normal_len


def test_tts_named_voice_is_the_default_voice(triton: TritonServer) -> None:
    name = resolve_model("tts")[0].file.name.removesuffix(".onnx")
    chunks, error = tts_stream(triton.grpc_url, "Hello.", voice=name)
    assert error is None
    assert chunks


# ---- bad input: a clear error, and the server keeps serving ------------------------------------


def _assert_ready(triton: TritonServer, client: grpcclient.InferenceServerClient) -> None:
    assert client.is_server_ready()
    assert client.is_model_ready("asr")
    assert client.is_model_ready("tts")


def test_asr_rejects_empty_audio(triton: TritonServer, client: grpcclient.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException, match="audio is empty"):
        asr_call(client, np.zeros(0, np.int16), next(_sequence_ids), start=True, end=True)
    _assert_ready(triton, client)


def test_asr_rejects_silent_audio(triton: TritonServer, client: grpcclient.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException, match="silent"):
        asr_call(client, np.zeros(32000, np.int16), next(_sequence_ids), start=True, end=True)
    _assert_ready(triton, client)


def test_asr_rejects_wrong_dtype_and_shape(
    triton: TritonServer, client: grpcclient.InferenceServerClient
) -> None:
    with pytest.raises(InferenceServerException, match=r"(?i)data-type|datatype|FP32"):
        asr_call(client, np.zeros(16000, np.float32), next(_sequence_ids), start=True, end=True, dtype="FP32")
    with pytest.raises(InferenceServerException, match=r"(?i)shape"):
        asr_call(client, np.zeros((2, 8000), np.int16), next(_sequence_ids), start=True, end=True)
    _assert_ready(triton, client)


def test_asr_rejects_unsupported_language(
    triton: TritonServer, client: grpcclient.InferenceServerClient, clips: list[Clip]
) -> None:
    with pytest.raises(InferenceServerException, match="language 'xx'"):
        asr_call(client, clips[0].pcm, next(_sequence_ids), start=True, end=True, language="xx")
    assert normalise(transcribe(client, clips[0].pcm))  # the next request succeeds


def test_asr_rejects_a_chunk_of_an_unknown_sequence(
    triton: TritonServer, client: grpcclient.InferenceServerClient, clips: list[Clip]
) -> None:
    with pytest.raises(InferenceServerException, match=r"(?i)start"):
        asr_call(client, clips[0].pcm, next(_sequence_ids), start=False, end=True)
    _assert_ready(triton, client)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"text": b"\xff\xfe not utf-8"}, "not valid UTF-8"),
        ({"text": "word " * 1000}, "limit is"),
        ({"text": "   "}, "is empty"),
        ({"text": "Hello.", "voice": "no-such-voice"}, "unknown voice 'no-such-voice'"),
        ({"text": "Hello.", "rate": 50.0}, "speaking_rate"),
    ],
    ids=["non-utf8", "too-long", "blank", "unknown-voice", "bad-rate"],
)
def test_tts_rejects_bad_input_and_keeps_serving(
    triton: TritonServer, client: grpcclient.InferenceServerClient, kwargs: dict[str, Any], message: str
) -> None:
    chunks, error = tts_stream(triton.grpc_url, **kwargs)
    assert error is not None
    assert message in error
    assert not chunks
    _assert_ready(triton, client)
    after, error_after = tts_stream(triton.grpc_url, "Still here.")
    assert error_after is None
    assert after
