"""Triton Python model `tts`: Piper text to speech, decoupled (streamed) audio.

Tensor contract (docs/models.md#tts): `text` TYPE_STRING [1], optional `voice` TYPE_STRING [1]
(empty: the profile's first voice) and `speaking_rate` TYPE_FP32 [1] (1.0 normal, >1 faster) ->
a stream of responses, each `audio` TYPE_INT16 [-1] (PCM16 mono) and `sample_rate` TYPE_INT32 [1].
Each sentence is synthesised and sent as soon as it is ready (split into chunks of at most
`max_chunk_s`); the last chunk carries TRITONSERVER_RESPONSE_COMPLETE_FINAL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils
from piper import PiperVoice, SynthesisConfig
from piper.config import PiperConfig

from voicebot_models.resolve import resolve_model
from voicebot_models.serving import InputError, ModelParameters, single_scalar, single_text

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
MAX_VOICE_CHARS = 128


class Cancelled(Exception):
    """The client cancelled the request."""


def _load_voice(model_file: Path, threads: int, on_gpu: bool) -> PiperVoice:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if on_gpu else ["CPUExecutionProvider"]
    config = json.loads(Path(f"{model_file}.json").read_text(encoding="utf-8"))
    return PiperVoice(
        session=ort.InferenceSession(str(model_file), options, providers=providers),
        config=PiperConfig.from_dict(config),
    )


class TritonPythonModel:
    """Piper voices, synthesising sentence by sentence."""

    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        params = ModelParameters(config)
        self.max_chars = params.get_int("max_text_chars", 2000)
        self.max_chunk_s = params.get_float("max_chunk_s", 2.0)
        self.rate_range = (
            params.get_float("min_speaking_rate", 0.5),
            params.get_float("max_speaking_rate", 2.0),
        )
        on_gpu = args.get("model_instance_kind") == "GPU"
        threads = params.get_int("intra_op_threads", 0)
        self.voices: dict[str, PiperVoice] = {}
        for weights in resolve_model("tts"):
            name = weights.file.name.removesuffix(".onnx")
            self.voices[name] = _load_voice(weights.file, threads, on_gpu)
        self.default_voice = next(iter(self.voices))
        pb_utils.Logger.log_info(f"tts: voices {', '.join(self.voices)} (default {self.default_voice})")

    def _inputs(self, request: Any) -> tuple[str, PiperVoice, float]:
        def array(name: str) -> np.ndarray | None:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            return tensor.as_numpy() if tensor is not None else None

        text = single_text(array("text"), "text", self.max_chars)
        name = single_text(array("voice"), "voice", MAX_VOICE_CHARS, allow_empty=True).strip()
        voice = self.voices.get(name or self.default_voice)
        if voice is None:
            raise InputError(f"unknown voice {name!r}; available voices: {', '.join(self.voices)}")
        rate = single_scalar(array("speaking_rate"), "speaking_rate", 1.0)
        low, high = self.rate_range
        if not low <= rate <= high:
            raise InputError(f"speaking_rate {rate:g} is outside [{low:g}, {high:g}]")
        return text, voice, rate

    def synthesize(
        self, text: str, voice: PiperVoice, rate: float, request: Any
    ) -> Iterator[tuple[np.ndarray, bool]]:
        """(PCM16 chunk, is_last) pairs, sentence by sentence, each at most ``max_chunk_s`` long.

        The text is phonemised first (cheap), so the last chunk is known when it is made and can
        carry the FINAL flag without holding any audio back. Each sentence is synthesised and
        normalised as ``PiperVoice.synthesize`` does.
        """
        syn_config = SynthesisConfig(length_scale=(voice.config.length_scale or 1.0) / rate)
        chunk = max(1, int(self.max_chunk_s * voice.config.sample_rate))
        sentences = [p for p in voice.phonemize(text) if p]
        for index, phonemes in enumerate(sentences):
            if request.is_cancelled():
                raise Cancelled
            audio = np.asarray(voice.phoneme_ids_to_audio(voice.phonemes_to_ids(phonemes), syn_config))
            peak = float(np.max(np.abs(audio))) if audio.size else 0.0
            audio = audio / peak if peak >= 1e-8 else np.zeros_like(audio)
            pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).astype(np.int16)
            starts = range(0, pcm.shape[0], chunk)
            for start in starts:
                last = index == len(sentences) - 1 and start == starts[-1]
                yield pcm[start : start + chunk], last

    def _response(self, pcm: np.ndarray, sample_rate: int) -> Any:
        return pb_utils.InferenceResponse(
            output_tensors=[
                pb_utils.Tensor("audio", np.ascontiguousarray(pcm, dtype=np.int16)),
                pb_utils.Tensor("sample_rate", np.array([sample_rate], dtype=np.int32)),
            ]
        )

    def _stream(self, request: Any) -> None:
        sender = request.get_response_sender()
        try:
            text, voice, rate = self._inputs(request)
            sample_rate = int(voice.config.sample_rate)
            sent = final_sent = False
            for pcm, last in self.synthesize(text, voice, rate, request):
                sender.send(self._response(pcm, sample_rate), flags=FINAL if last else 0)
                sent, final_sent = True, last
            if not sent:
                raise InputError("the text produced no audio (nothing pronounceable)")
            if not final_sent:
                sender.send(flags=FINAL)
        except InputError as e:
            sender.send(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(e))), flags=FINAL)
        except Cancelled:
            sender.send(
                pb_utils.InferenceResponse(
                    error=pb_utils.TritonError("request cancelled", pb_utils.TritonError.CANCELLED)
                ),
                flags=FINAL,
            )
        except Exception as e:  # an engine failure fails this request, never the server
            pb_utils.Logger.log_error(f"tts: synthesis failed: {type(e).__name__}: {e}")
            sender.send(
                pb_utils.InferenceResponse(error=pb_utils.TritonError(f"synthesis failed: {e}")), flags=FINAL
            )

    def execute(self, requests: list[Any]) -> None:
        """Decoupled: every request gets its responses through its own response sender."""
        for request in requests:
            self._stream(request)
        return None
