"""OpenAI-compatible audio: `POST /v1/audio/transcriptions` (a WAV file → text, through `asr`)
and `POST /v1/audio/speech` (text → WAV or raw PCM, streamed as `tts` produces it).

The official `openai` client works unchanged (`client.audio.transcriptions.create`,
`client.audio.speech.create` and its streaming-response variant). What differs from OpenAI's
service is documented in docs/api.md: WAV only in and out (no MP3), our own voices.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Annotated, Literal

import numpy as np
import numpy.typing as npt
from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from orchestrator.api.deps import AskerDep, State
from orchestrator.api.responses import error_responses
from orchestrator.api.uploads import LimitedUploadRoute
from orchestrator.audio_io import ACCEPTED, TARGET_RATE, decode_pcm16, streaming_wav_header
from orchestrator.errors import BadRequest, ModelFailed, TooLarge, VoicebotError
from orchestrator.inference import AudioChunk, Models, Transcript
from orchestrator.state import AppState

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/audio", tags=["audio"], route_class=LimitedUploadRoute)

TRANSCRIPTION_FORMATS = ("json", "text", "verbose_json")
SPEECH_FORMATS = ("wav", "pcm")
COMPRESSED_FORMATS = ("mp3", "opus", "aac", "flac")
# OpenAI's voice names: clients send them by default; they all mean our default voice.
OPENAI_VOICES = frozenset(
    {
        "alloy",
        "ash",
        "ballad",
        "coral",
        "echo",
        "fable",
        "onyx",
        "nova",
        "sage",
        "shimmer",
        "verse",
        "marin",
        "cedar",
    }
)
# Audio per `asr` request. A file up to this long is one START+END request, which gives exactly
# the model's one-shot transcript (it commits text only past 20 s); longer files are a sequence.
ASR_REQUEST_S = 20.0
# Below this int16 peak a file is silence: its transcript is empty (the `asr` model's own
# `silence_peak` would refuse it as a microphone problem, which fits a live turn, not a file).
SILENCE_PEAK = 64
SAMPLE_RATE_HEADER = "X-Sample-Rate"
UNDETERMINED_LANGUAGE = "und"  # ISO 639-2: the language was not given and is not reported by the model


class Transcription(BaseModel):
    """`response_format=json` (the default)."""

    text: str


class TranscriptionSegment(BaseModel):
    id: int
    start: float = Field(description="Seconds from the start of the audio.")
    end: float
    text: str


class VerboseTranscription(BaseModel):
    """`response_format=verbose_json`."""

    task: Literal["transcribe"] = "transcribe"
    language: str = Field(description="The language requested, or `und` when none was.")
    duration: float = Field(description="Length of the audio in seconds.")
    text: str
    segments: list[TranscriptionSegment]


class SpeechRequest(BaseModel):
    model: str = Field(default="tts-1", description="Accepted and ignored: the server has one TTS model.")
    input: str = Field(
        min_length=1, description="Text to speak; at most `VOICEBOT_MAX_TEXT_CHARS` characters."
    )
    voice: str = Field(
        default="",
        max_length=64,
        description="A voice of the TTS model (e.g. `en_US-joe-medium`); OpenAI names (`alloy`, …) "
        "and empty mean the default voice (`VOICEBOT_TTS_VOICE`).",
    )
    response_format: str = Field(
        default="wav",
        description="`wav` (default here; OpenAI's default is mp3) or `pcm` (raw 16-bit little-endian "
        "mono at the rate in the `X-Sample-Rate` header). mp3, opus, aac and flac are refused with 400.",
    )
    speed: float = Field(default=1.0, ge=0.5, le=2.0, description="1.0 normal; > 1 faster.")
    instructions: str | None = Field(default=None, description="Accepted and ignored.")
    stream_format: Literal["audio"] | None = Field(
        default=None, description="Only `audio`: the bytes are streamed as they are synthesised."
    )


def _client_error(e: ModelFailed, engine_failure: str) -> VoicebotError:
    """A model's refusal of this request's input is the client's error (400); an engine failure
    (prefixed `transcription failed` / `synthesis failed`, docs/models.md#errors) stays a 502."""
    return e if engine_failure in e.message else BadRequest(e.message)


async def transcribe_pcm(models: Models, pcm: npt.NDArray[np.int16], language: str | None) -> Transcript:
    """One file through `asr` as a sequence of ASR_REQUEST_S requests: START on the first, END on the last."""
    if pcm.size == 0 or int(np.abs(pcm.astype(np.int32)).max()) < SILENCE_PEAK:
        return Transcript("", True)
    sequence_id = secrets.randbits(63) or 1
    step = int(ASR_REQUEST_S * TARGET_RATE)
    result = Transcript("", False)
    for first in range(0, pcm.size, step):
        try:
            result = await models.transcribe_chunk(
                pcm[first : first + step],
                sequence_id=sequence_id,
                start=first == 0,
                end=first + step >= pcm.size,
                language=language,
            )
        except ModelFailed as e:
            raise _client_error(e, "transcription failed") from e
    return result


@router.post(
    "/transcriptions",
    summary="Transcribe a WAV file (OpenAI-compatible)",
    description=f"Multipart form: `file` ({ACCEPTED}; at most `VOICEBOT_MAX_TURN_AUDIO_S` of audio and "
    "`VOICEBOT_MAX_UPLOAD_BYTES`), `model` (ignored), `language`, `response_format` "
    "(`json`, `text` or `verbose_json`), `prompt` and `temperature` (accepted, ignored).",
    response_model=Transcription | VerboseTranscription,
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
        **error_responses(400, 401, 403, 413, 415, 429, 502, 503, 504),
    },
)
async def create_transcription(
    state: State,
    caller: AskerDep,
    file: Annotated[UploadFile, File(description="The audio: a WAV file.")],
    model: Annotated[str, Form(description="Accepted and ignored.")] = "whisper-1",
    language: Annotated[
        str | None, Form(max_length=16, description="Language of the audio, e.g. `en`.")
    ] = None,
    prompt: Annotated[str | None, Form(description="Accepted and ignored.")] = None,
    response_format: Annotated[str, Form(description="`json` (default), `text` or `verbose_json`.")] = "json",
    temperature: Annotated[float | None, Form(description="Accepted and ignored.")] = None,
) -> Transcription | VerboseTranscription | Response:
    assert state.models is not None, "open() first"
    fmt = response_format.strip().lower()
    if fmt not in TRANSCRIPTION_FORMATS:
        raise BadRequest(
            f"response_format {response_format!r} is not supported; use json, text or verbose_json"
        )
    data = await file.read()
    pcm, source = await asyncio.to_thread(decode_pcm16, data, max_duration_s=state.settings.max_turn_audio_s)
    result = await transcribe_pcm(state.models, pcm, language.strip() if language else None)
    log.info(
        "transcribed %.1f s of audio (%d Hz, %d ch)", source.duration_s, source.sample_rate, source.channels
    )
    if fmt == "text":
        return PlainTextResponse(result.text)
    if fmt == "verbose_json":
        return VerboseTranscription(
            language=language or UNDETERMINED_LANGUAGE,
            duration=round(source.duration_s, 3),
            text=result.text,
            segments=[
                TranscriptionSegment(id=i, start=s.start, end=s.end, text=s.text)
                for i, s in enumerate(result.segments)
            ],
        )
    return Transcription(text=result.text)


def _pcm_bytes(chunk: AudioChunk) -> bytes:
    return chunk.pcm.astype("<i2", copy=False).tobytes()


@router.post(
    "/speech",
    summary="Speak a text (OpenAI-compatible), streamed as WAV or raw PCM",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The audio, streamed while it is synthesised. A WAV stream's header gives "
            "its sizes as 0xFFFFFFFF (length unknown when it starts).",
            "content": {
                "audio/wav": {"schema": {"type": "string", "format": "binary"}},
                "audio/pcm": {"schema": {"type": "string", "format": "binary"}},
            },
            "headers": {
                SAMPLE_RATE_HEADER: {
                    "description": "Sample rate of the audio in Hz.",
                    "schema": {"type": "integer"},
                }
            },
        },
        **error_responses(400, 401, 403, 413, 429, 502, 503, 504),
    },
)
async def create_speech(body: SpeechRequest, state: State, caller: AskerDep) -> StreamingResponse:
    assert state.models is not None, "open() first"
    fmt = body.response_format.strip().lower()
    if fmt in COMPRESSED_FORMATS:
        raise BadRequest(
            f"response_format {fmt!r} is not supported: this server does not encode compressed audio; "
            "ask for 'wav' (the default) or 'pcm'"
        )
    if fmt not in SPEECH_FORMATS:
        raise BadRequest(f"response_format {body.response_format!r} is not supported; use 'wav' or 'pcm'")
    if len(body.input) > state.settings.max_text_chars:
        raise TooLarge(f"the input is over {state.settings.max_text_chars} characters")
    voice = body.voice.strip()
    if not voice or voice.lower() in OPENAI_VOICES:
        voice = state.settings.tts_voice
    stream = state.models.synthesize(body.input, voice=voice, speaking_rate=body.speed)
    # The first chunk comes before the response starts: its rate goes into the headers, and a
    # refusal (unknown voice, Triton down) is still an HTTP error rather than an empty stream.
    try:
        first = await anext(stream)
    except ModelFailed as e:
        await stream.aclose()
        raise _client_error(e, "synthesis failed") from e
    except StopAsyncIteration as e:
        raise BadRequest("the input produced no audio (nothing pronounceable)") from e
    except BaseException:
        await stream.aclose()
        raise
    return StreamingResponse(
        _audio_stream(state, stream, first, wav=fmt == "wav"),
        media_type="audio/wav" if fmt == "wav" else "audio/pcm",
        headers={SAMPLE_RATE_HEADER: str(first.sample_rate), "Cache-Control": "no-cache"},
    )


async def _audio_stream(
    state: AppState, stream: AsyncGenerator[AudioChunk, None], first: AudioChunk, *, wav: bool
) -> AsyncIterator[bytes]:
    """The response body. A client that goes away closes `stream`, which cancels synthesis on Triton."""
    try:
        if wav:
            yield streaming_wav_header(first.sample_rate)
        yield _pcm_bytes(first)
        async for chunk in stream:
            yield _pcm_bytes(chunk)
    except VoicebotError as e:
        # The status line is gone: the stream ends early, and the failure is counted and logged.
        state.metrics.errors.labels(e.code.value).inc()
        log.warning("speech stream ended early: %s", e.code.value)
    finally:
        await stream.aclose()
