"""The OpenAI-compatible audio endpoints against the real stack, through the official `openai` client:
speech generated at test time (espeak-ng, sox) is transcribed by the `asr` model, and the `tts`
model's speech is transcribed back to the sentence it was asked to say."""

from __future__ import annotations

import io
import re
import subprocess
import tempfile
import wave
from collections.abc import Iterator
from pathlib import Path

import httpx
import jiwer
import numpy as np
import openai
import pytest
from openai import OpenAI

from tests.speech import rms, speak_pcm16

# Whisper tiny.en hears this espeak-ng rendering word for word, at any of the rates used here.
QUESTION = "Open the settings page and choose a different voice."
# And this one, spoken by the Piper voice.
SENTENCE = "Please hold the button while you ask your question."


def normalise(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split())


def wer(reference: str, hypothesis: str) -> float:
    return float(jiwer.wer(normalise(reference), normalise(hypothesis)))


def spoken_file(text: str, *sox_output: str, suffix: str = ".wav") -> bytes:
    """`text` spoken by espeak-ng (22050 Hz mono PCM16), converted by sox with `sox_output` options
    (`-r 44100 -c 2 -e floating-point -b 32`, …); -D: no dither, reproducible."""
    with tempfile.TemporaryDirectory() as tmp:
        source, target = Path(tmp) / "espeak.wav", Path(tmp) / f"out{suffix}"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "140", "-w", str(source), text], check=True)
        subprocess.run(["sox", "-D", str(source), *sox_output, str(target)], check=True)
        return target.read_bytes()


@pytest.fixture(scope="module")
def client(gateway: str) -> Iterator[OpenAI]:
    # Dev mode admits loopback clients whatever key they send; the client insists on one.
    with OpenAI(base_url=f"{gateway}/v1", api_key="sk-local-dev", timeout=180, max_retries=0) as c:
        yield c


def test_the_openai_client_transcribes_a_16k_wav(client: OpenAI) -> None:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(16000)
        writer.writeframes(speak_pcm16(QUESTION))
    transcription = client.audio.transcriptions.create(
        model="whisper-1", file=("question.wav", buffer.getvalue(), "audio/wav")
    )
    assert normalise(transcription.text) == normalise(QUESTION)


def test_stereo_44k_float_audio_is_downmixed_and_resampled(client: OpenAI) -> None:
    wav = spoken_file(QUESTION, "-r", "44100", "-c", "2", "-e", "floating-point", "-b", "32")
    verbose = client.audio.transcriptions.create(
        model="whisper-1", file=("question.wav", wav), response_format="verbose_json", language="en"
    )
    assert normalise(verbose.text) == normalise(QUESTION)
    with wave.open(io.BytesIO(spoken_file(QUESTION))) as reader:  # the same speech, 22050 Hz PCM16
        expected_s = reader.getnframes() / reader.getframerate()
    assert verbose.duration == pytest.approx(expected_s, abs=0.01)
    assert verbose.language == "en"
    assert verbose.segments
    assert all(0 <= s.start <= s.end <= verbose.duration + 1 for s in verbose.segments)


def test_8_bit_audio_as_plain_text(client: OpenAI) -> None:
    wav = spoken_file(QUESTION, "-e", "unsigned-integer", "-b", "8")  # espeak-ng's 22050 Hz
    text = client.audio.transcriptions.create(model="whisper-1", file=("q.wav", wav), response_format="text")
    assert isinstance(text, str)
    assert wer(QUESTION, text) <= 0.25, text  # 8-bit samples are noisier


def test_speech_streams_a_wav_that_the_asr_model_hears_back(client: OpenAI) -> None:
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input=SENTENCE
    ) as response:
        assert response.headers["content-type"] == "audio/wav"
        rate = int(response.headers["x-sample-rate"])
        pieces = list(response.iter_bytes())
    audio = b"".join(pieces)
    with wave.open(io.BytesIO(audio)) as reader:
        assert (reader.getframerate(), reader.getnchannels(), reader.getsampwidth()) == (rate, 1, 2)
        pcm = reader.readframes(10**9)
    assert len(pcm) / 2 / rate > 1.0
    assert rms(pcm) > 100, "the speech is silent"
    heard = client.audio.transcriptions.create(model="whisper-1", file=("speech.wav", audio))
    assert normalise(heard.text) == normalise(SENTENCE)


def test_speech_as_raw_pcm_with_its_rate_in_a_header(client: OpenAI) -> None:
    response = client.audio.speech.create(
        model="tts-1", voice="nova", input="Hello there.", response_format="pcm"
    )
    pcm = response.content
    assert response.response.headers["content-type"] == "audio/pcm"
    rate = int(response.response.headers["x-sample-rate"])
    assert len(pcm) % 2 == 0
    assert 0.3 < len(pcm) / 2 / rate < 5
    assert rms(pcm) > 100


def test_compressed_speech_formats_and_unknown_voices_are_400(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as mp3:
        client.audio.speech.create(model="tts-1", voice="alloy", input="Hello.", response_format="mp3")
    assert "'wav'" in str(mp3.value)
    with pytest.raises(openai.BadRequestError) as voice:
        client.audio.speech.create(model="tts-1", voice="no-such-voice", input="Hello.")
    assert "unknown voice 'no-such-voice'" in str(voice.value)


@pytest.mark.parametrize(
    ("sox_output", "suffix", "status", "words"),
    [
        (("-C", "5"), ".flac", 415, "FLAC"),
        ((), ".ogg", 415, "Ogg"),
        ((), ".aiff", 415, "AIFF"),
        (("-e", "u-law"), ".wav", 415, "µ-law"),
    ],
)
def test_audio_we_do_not_decode_is_refused_naming_what_is_accepted(
    gateway: str, sox_output: tuple[str, ...], suffix: str, status: int, words: str
) -> None:
    data = spoken_file("Hello.", *sox_output, suffix=suffix)
    response = httpx.post(
        f"{gateway}/v1/audio/transcriptions", files={"file": (f"a{suffix}", data)}, timeout=60
    )
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == "bad_audio"
    assert words in error["message"]
    assert "accepted: WAV" in error["message"]


def test_damaged_and_overlong_audio_get_stable_errors(gateway: str) -> None:
    url = f"{gateway}/v1/audio/transcriptions"
    damaged = httpx.post(url, files={"file": ("a.wav", b"RIFF\x24\x00\x00\x00WAVEfmt ")}, timeout=60)
    assert damaged.status_code == 400
    assert damaged.json()["error"]["code"] == "bad_audio"
    # 61 s at 8 kHz, 8 bits: small to send, over the 60 s default of VOICEBOT_MAX_TURN_AUDIO_S.
    with tempfile.TemporaryDirectory() as tmp:
        long_wav = Path(tmp) / "long.wav"
        subprocess.run(
            [
                "sox",
                "-n",
                "-r",
                "8000",
                "-e",
                "unsigned-integer",
                "-b",
                "8",
                str(long_wav),
                "synth",
                "61",
                "sine",
                "440",
            ],
            check=True,
        )
        overlong = httpx.post(url, files={"file": ("long.wav", long_wav.read_bytes())}, timeout=60)
    assert overlong.status_code == 413
    assert overlong.json()["error"]["code"] == "too_large"


def test_silence_is_an_empty_transcript(client: OpenAI) -> None:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(16000)
        writer.writeframes(np.zeros(16000, dtype="<i2").tobytes())
    transcription = client.audio.transcriptions.create(
        model="whisper-1", file=("silence.wav", buffer.getvalue())
    )
    assert transcription.text == ""
