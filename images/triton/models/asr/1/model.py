"""Triton Python model `asr`: faster-whisper with streaming partial transcripts.

Tensor contract (docs/models.md#asr): `audio` TYPE_INT16 [-1] (PCM16, 16 kHz, mono; may be empty
on the END request), optional `language` TYPE_STRING [1], optional `prompt` TYPE_STRING [1] (read
at START: words the speech is likely to contain, e.g. the document collection's vocabulary; the
decoder is biased towards them, `vocabulary_mode`) -> `transcript` TYPE_STRING [1],
`is_final` TYPE_BOOL [1], `segments` TYPE_STRING [1] (JSON list of {start, end, text}).
Triton's sequence batcher supplies START, END and CORRID; the model keeps one
`voicebot_models.asr_stream.AsrStream` per CORRID (see that module for what is re-decoded).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils
from faster_whisper import WhisperModel

from voicebot_models.asr_stream import AsrStream, Segment, StreamOptions
from voicebot_models.resolve import resolve_model
from voicebot_models.serving import InputError, ModelParameters, single_text

STATE_IDLE_FACTOR = 10
MAX_LANGUAGE_CHARS = 16
MAX_PROMPT_CHARS = 1000


def _flag(request: Any, name: str) -> bool:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return bool(tensor.as_numpy().reshape(-1)[0]) if tensor is not None else False


class TritonPythonModel:
    """Whisper transcription with per-sequence streaming state."""

    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        params = ModelParameters(config)
        weights = resolve_model("asr")[0]
        on_gpu = args.get("model_instance_kind") == "GPU"
        threads = params.get_int("cpu_threads", 0) or min(4, os.cpu_count() or 1)
        self.model = WhisperModel(
            str(weights.dir),
            device="cuda" if on_gpu else "cpu",
            device_index=int(args.get("model_instance_device_id", 0)) if on_gpu else 0,
            compute_type=params.get_str("compute_type", "float16" if on_gpu else "int8"),
            cpu_threads=threads,
            local_files_only=True,
        )
        self.languages = set(self.model.supported_languages)
        self.default_language = params.get_str("default_language", "") or (
            None if self.model.model.is_multilingual else "en"
        )
        self.beam_size = params.get_int("beam_size", 1)
        # How a sequence's `prompt` biases decoding: faster-whisper's `hotwords`, its
        # `initial_prompt` (previous-text conditioning), or not at all.
        self.vocabulary_mode = params.get_str("vocabulary_mode", "hotwords")
        if self.vocabulary_mode not in ("hotwords", "initial_prompt", "off"):
            raise ValueError(f"vocabulary_mode {self.vocabulary_mode!r}: use hotwords, initial_prompt or off")
        self.prompts: dict[int, str] = {}
        self.options = StreamOptions(
            partial_interval_s=params.get_float("partial_interval_s", 1.0),
            commit_after_s=params.get_float("commit_after_s", 20.0),
            max_audio_s=params.get_float("max_audio_s", 120.0),
            silence_peak=params.get_int("silence_peak", 64),
        )
        idle_us = int(config.get("sequence_batching", {}).get("max_sequence_idle_microseconds", 60_000_000))
        # Triton times idleness from when a chunk *arrives*; this model only sees a chunk when it
        # runs, after any time in the queue. Under load (100 turns on a CPU) consecutive chunks of
        # a live turn can run minutes apart, so the model keeps state STATE_IDLE_FACTOR times longer
        # before it forgets an abandoned stream.
        self.idle_s = idle_us / 1e6 * STATE_IDLE_FACTOR
        self.streams: dict[int, AsrStream] = {}
        pb_utils.Logger.log_info(f"asr: {weights.entry.id} from {weights.source} ({weights.dir})")

    def decode(self, audio: np.ndarray, language: str | None, prompt: str = "") -> list[Segment]:
        """Transcribe audio (float32, 16 kHz); times are relative to the audio given."""
        bias: dict[str, str] = {}
        if prompt and self.vocabulary_mode != "off":
            bias[self.vocabulary_mode] = prompt
        segments, _ = self.model.transcribe(
            audio,
            language=language,
            beam_size=self.beam_size,
            vad_filter=False,
            condition_on_previous_text=False,
            **bias,
        )
        return [Segment(s.start, s.end, s.text.strip()) for s in segments]

    def _prompt(self, request: Any) -> str:
        tensor = pb_utils.get_input_tensor_by_name(request, "prompt")
        if tensor is None:
            return ""
        return single_text(tensor.as_numpy(), "prompt", MAX_PROMPT_CHARS, allow_empty=True).strip()

    def _language(self, request: Any) -> str | None:
        tensor = pb_utils.get_input_tensor_by_name(request, "language")
        code = single_text(
            tensor.as_numpy() if tensor is not None else None,
            "language",
            MAX_LANGUAGE_CHARS,
            allow_empty=True,
        ).strip()
        if not code:
            return self.default_language
        if code not in self.languages:
            if len(self.languages) == 1:
                raise InputError(f"language {code!r} is not supported: this ASR model is English-only")
            raise InputError(f"language {code!r} is not a Whisper language code")
        return code

    def _evict_idle(self) -> None:
        now = time.monotonic()
        for corrid in [c for c, s in self.streams.items() if now - s.last_seen > self.idle_s]:
            del self.streams[corrid]
            self.prompts.pop(corrid, None)

    def _respond(self, transcript: str, segments: list[Segment], final: bool) -> Any:
        payload = json.dumps([s.as_dict() for s in segments], ensure_ascii=False)
        return pb_utils.InferenceResponse(
            output_tensors=[
                pb_utils.Tensor("transcript", np.array([transcript.encode("utf-8")], dtype=np.object_)),
                pb_utils.Tensor("is_final", np.array([final], dtype=np.bool_)),
                pb_utils.Tensor("segments", np.array([payload.encode("utf-8")], dtype=np.object_)),
            ]
        )

    def _handle(self, request: Any) -> Any:
        corrid = int(pb_utils.get_input_tensor_by_name(request, "CORRID").as_numpy().reshape(-1)[0])
        start, end = _flag(request, "START"), _flag(request, "END")
        audio = pb_utils.get_input_tensor_by_name(request, "audio").as_numpy().reshape(-1)
        if audio.size == 0 and not end:
            raise InputError("input 'audio' is empty; only the END request may carry no audio")
        if start:
            self.streams[corrid] = AsrStream(self.options, language=self._language(request))
            self.prompts[corrid] = self._prompt(request)
        stream = self.streams.get(corrid)
        if stream is None:
            raise InputError(f"sequence {corrid} is unknown or expired; start it again with START")
        prompt = self.prompts.get(corrid, "")

        def decode(audio: np.ndarray, language: str | None) -> list[Segment]:
            return self.decode(audio, language, prompt)

        try:
            stream.append(audio)
            if not end:
                text, segments = stream.partial(decode)
                return self._respond(text, segments, final=False)
            text, segments = stream.final(decode)
        except ValueError as e:
            if end:
                self.streams.pop(corrid, None)
                self.prompts.pop(corrid, None)
            raise InputError(str(e)) from None
        self.streams.pop(corrid, None)
        self.prompts.pop(corrid, None)
        return self._respond(text, segments, final=True)

    def execute(self, requests: list[Any]) -> list[Any]:
        """One response per request; an invalid request fails alone and its sequence continues."""
        self._evict_idle()
        responses = []
        for request in requests:
            try:
                responses.append(self._handle(request))
            except InputError as e:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(e))))
            except Exception as e:  # an engine failure fails this request, never the server
                pb_utils.Logger.log_error(f"asr: transcription failed: {type(e).__name__}: {e}")
                responses.append(
                    pb_utils.InferenceResponse(error=pb_utils.TritonError(f"transcription failed: {e}"))
                )
        return responses

    def finalize(self) -> None:
        self.streams.clear()
        self.prompts.clear()
