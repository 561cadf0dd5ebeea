"""The audio routes (orchestrator/api/audio.py) with a fake `ModelClients` at the Triton seam."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pytest
from fastapi.testclient import TestClient

from orchestrator.app import create_app
from orchestrator.audio_io import read_wav
from orchestrator.errors import ModelFailed
from orchestrator.inference import AudioChunk, Segment, Transcript
from orchestrator.settings import Settings
from tests.unit.test_audio_io import tone, wav_bytes

KEY = "b" * 40
AUTH = {"Authorization": f"Bearer {KEY}"}


@dataclass
class FakeModels:
    """Records `asr` requests and answers with their sizes; speaks fixed chunks or fails."""

    calls: list[tuple[int, bool, bool, str | None]] = field(default_factory=list)
    speech: list[AudioChunk] = field(default_factory=list)
    tts_error: Exception | None = None
    voices: list[str] = field(default_factory=list)
    closed: bool = False

    async def transcribe_chunk(
        self,
        pcm: npt.NDArray[np.int16],
        *,
        sequence_id: int,
        start: bool,
        end: bool,
        language: str | None = None,
    ) -> Transcript:
        self.calls.append((int(pcm.size), start, end, language))
        if language == "xx":
            raise ModelFailed("model 'asr' failed: language 'xx' is not supported")
        first = max(i for i, c in enumerate(self.calls) if c[1])  # this sequence's START
        total = sum(c[0] for c in self.calls[first:])
        return Transcript(f"{total} samples", end, (Segment(0.0, total / 16000, f"{total} samples"),))

    async def synthesize(
        self, text: str, *, voice: str = "", speaking_rate: float = 1.0
    ) -> AsyncGenerator[AudioChunk, None]:
        self.voices.append(voice)
        try:
            if self.tts_error is not None:
                raise self.tts_error
            for chunk in self.speech:
                yield chunk
        finally:
            self.closed = True


@pytest.fixture
def models() -> FakeModels:
    return FakeModels()


@pytest.fixture
def client(models: FakeModels) -> Iterator[TestClient]:
    settings = Settings(
        auth_secret="k" * 40,
        bootstrap_api_key=KEY,
        triton_url="127.0.0.1:1",
        ui_dir=None,
        max_turn_audio_s=60,
        max_upload_bytes=8 * 1024 * 1024,
        max_text_chars=100,
        tts_voice="en_US-joe-medium",
    )
    with TestClient(create_app(settings)) as test_client:
        test_client.app.state.voicebot.models = models  # type: ignore[attr-defined]
        yield test_client


def _transcribe(client: TestClient, data: bytes, **form: str) -> tuple[int, object]:
    response = client.post(
        "/v1/audio/transcriptions",
        headers=AUTH,
        files={"file": ("speech.wav", data, "audio/wav")},
        data={"model": "whisper-1", **form},
    )
    if response.headers["content-type"].startswith("application/json"):
        return response.status_code, response.json()
    return response.status_code, response.text


def test_a_short_stereo_44k_file_is_one_asr_request_at_16k(client: TestClient, models: FakeModels) -> None:
    frames = np.stack([tone(300, 44100, 2.0), tone(300, 44100, 2.0)], axis=1)
    status, body = _transcribe(client, wav_bytes(frames, 44100, encoding="float32"), language="en")
    assert status == 200
    assert body == {"text": "32000 samples"}
    assert models.calls == [(32000, True, True, "en")]


def test_a_long_file_is_one_sequence_of_chunks(client: TestClient, models: FakeModels) -> None:
    status, body = _transcribe(client, wav_bytes(tone(200, 16000, 50.0, 0.3), 16000))
    assert status == 200
    assert [(size, start, end) for size, start, end, _ in models.calls] == [
        (320000, True, False),
        (320000, False, False),
        (160000, False, True),
    ]
    assert body == {"text": "800000 samples"}


def test_text_and_verbose_json_formats(client: TestClient) -> None:
    data = wav_bytes(tone(300, 8000, 1.5), 8000, encoding="pcm8")
    assert _transcribe(client, data, response_format="text") == (200, "24000 samples")
    status, verbose = _transcribe(client, data, response_format="verbose_json")
    assert status == 200
    assert verbose == {
        "task": "transcribe",
        "language": "und",
        "duration": 1.5,
        "text": "24000 samples",
        "segments": [{"id": 0, "start": 0.0, "end": 1.5, "text": "24000 samples"}],
    }


def test_silence_is_an_empty_transcript_without_a_model_call(client: TestClient, models: FakeModels) -> None:
    assert _transcribe(client, wav_bytes(np.zeros(16000), 16000)) == (200, {"text": ""})
    assert models.calls == []


@pytest.mark.parametrize(
    ("data", "form", "status", "code", "words"),
    [
        (b"ID3\x04" + bytes(2000), {}, 415, "bad_audio", "MP3"),
        (b"OggS" + bytes(2000), {}, 415, "bad_audio", "accepted: WAV"),
        (b"RIFF\x00\x00\x00\x00WAVE", {}, 400, "bad_audio", "damaged WAV"),
        (wav_bytes(np.zeros(8000 * 61), 8000, encoding="pcm8"), {}, 413, "too_large", "61.0 s long"),
        (wav_bytes(tone(300, 16000, 0.5), 16000), {"response_format": "srt"}, 400, "bad_request", "srt"),
        (wav_bytes(tone(300, 16000, 0.5), 16000), {"language": "xx"}, 400, "bad_request", "'xx'"),
    ],
)
def test_bad_transcription_requests_get_stable_errors(
    client: TestClient, data: bytes, form: dict[str, str], status: int, code: str, words: str
) -> None:
    got_status, body = _transcribe(client, data, **form)
    assert got_status == status
    assert isinstance(body, dict)
    assert body["error"]["code"] == code
    assert words in body["error"]["message"]


def test_an_upload_over_the_byte_limit_is_413_before_decoding(client: TestClient, models: FakeModels) -> None:
    status, body = _transcribe(client, bytes(9 * 1024 * 1024))
    assert status == 413
    assert isinstance(body, dict)
    assert body["error"]["code"] == "too_large"


def test_transcription_needs_a_key(client: TestClient) -> None:
    response = client.post("/v1/audio/transcriptions", files={"file": ("a.wav", b"RIFF")})
    assert response.status_code == 401


def _speech(rate: int = 22050) -> list[AudioChunk]:
    return [
        AudioChunk(np.full(100, 1000, np.int16), rate),
        AudioChunk(np.full(50, -1000, np.int16), rate),
    ]


def test_speech_streams_a_wav_with_openai_voices_mapped_to_ours(
    client: TestClient, models: FakeModels
) -> None:
    models.speech = _speech()
    response = client.post(
        "/v1/audio/speech", headers=AUTH, json={"model": "tts-1", "input": "Hello there.", "voice": "alloy"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "audio/wav"
    assert response.headers["x-sample-rate"] == "22050"
    wav = read_wav(response.content)
    assert (wav.format.sample_rate, wav.format.channels, wav.format.bits, wav.format.frames) == (
        22050,
        1,
        16,
        150,
    )
    assert models.voices == ["en_US-joe-medium"]
    assert models.closed


def test_speech_as_raw_pcm(client: TestClient, models: FakeModels) -> None:
    models.speech = _speech(16000)
    response = client.post(
        "/v1/audio/speech",
        headers=AUTH,
        json={"input": "Hi.", "voice": "other-voice", "response_format": "pcm", "speed": 1.5},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "audio/pcm"
    assert response.headers["x-sample-rate"] == "16000"
    assert response.content == np.concatenate([c.pcm for c in models.speech]).astype("<i2").tobytes()
    assert models.voices == ["other-voice"]


@pytest.mark.parametrize(
    ("body", "status", "code", "words"),
    [
        ({"input": "Hi.", "voice": "alloy", "response_format": "mp3"}, 400, "bad_request", "'wav'"),
        ({"input": "Hi.", "voice": "alloy", "response_format": "opus"}, 400, "bad_request", "compressed"),
        ({"input": "Hi.", "voice": "alloy", "response_format": "au"}, 400, "bad_request", "'pcm'"),
        ({"input": "x" * 101, "voice": "alloy"}, 413, "too_large", "100 characters"),
    ],
)
def test_bad_speech_requests_get_stable_errors(
    client: TestClient, models: FakeModels, body: dict[str, str], status: int, code: str, words: str
) -> None:
    response = client.post("/v1/audio/speech", headers=AUTH, json=body)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert words in response.json()["error"]["message"]
    assert models.voices == []


def test_a_voice_the_model_refuses_is_a_400_and_an_engine_failure_a_502(
    client: TestClient, models: FakeModels
) -> None:
    models.tts_error = ModelFailed("model 'tts' failed: unknown voice 'nobody'; available voices: a")
    refused = client.post("/v1/audio/speech", headers=AUTH, json={"input": "Hi.", "voice": "nobody"})
    assert refused.status_code == 400
    assert "unknown voice 'nobody'" in refused.json()["error"]["message"]
    models.tts_error = ModelFailed("model 'tts' failed: synthesis failed: out of memory")
    failed = client.post("/v1/audio/speech", headers=AUTH, json={"input": "Hi.", "voice": "alloy"})
    assert failed.status_code == 502
    assert failed.json()["error"]["code"] == "internal"
    assert models.closed


def test_triton_down_is_a_503_model_unavailable() -> None:
    settings = Settings(
        auth_secret="k" * 40, bootstrap_api_key=KEY, triton_url="127.0.0.1:1", ui_dir=None, triton_timeout_s=2
    )
    with TestClient(create_app(settings)) as client:
        response = client.post("/v1/audio/speech", headers=AUTH, json={"input": "Hello.", "voice": "alloy"})
        transcription = client.post(
            "/v1/audio/transcriptions",
            headers=AUTH,
            files={"file": ("a.wav", wav_bytes(tone(300, 16000, 0.5), 16000))},
        )
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "model_unavailable"
    assert transcription.status_code == 503
    assert transcription.json()["error"]["code"] == "model_unavailable"


def test_openapi_documents_the_audio_routes() -> None:
    schema = create_app(Settings(auth_secret="k" * 40, ui_dir=None)).openapi()
    transcriptions = schema["paths"]["/v1/audio/transcriptions"]["post"]
    assert {"400", "401", "413", "415", "503"} <= set(transcriptions["responses"])
    assert set(transcriptions["responses"]["200"]["content"]) == {"application/json", "text/plain"}
    assert transcriptions["tags"] == ["audio"]
    speech = schema["paths"]["/v1/audio/speech"]["post"]
    assert {"audio/wav", "audio/pcm"} <= set(speech["responses"]["200"]["content"])
    assert "X-Sample-Rate" in speech["responses"]["200"]["headers"]
    assert speech["responses"]["400"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorResponse"
    }
