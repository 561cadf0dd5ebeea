"""Async clients for the Triton models the gateway calls: `asr`, `llm`, `tts` (tensor contracts in
docs/models.md). `embed` is called through `ingest.embedding.TritonEmbedder`.

Streams are async generators over one gRPC `ModelStreamInfer` call per request: we send the
request and half-close, Triton ends the call after the model's FINAL response. Closing the
generator early (barge-in, client gone) cancels the call, which Triton reports to the model as
`request.is_cancelled()`, so no orphaned generation keeps a model instance busy.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
import numpy as np
import numpy.typing as npt
import tritonclient.grpc.aio as grpcclient
from tritonclient.utils import InferenceServerException

from orchestrator.errors import ModelFailed, ModelUnavailable, StageTimeout

_UNAVAILABLE = ("StatusCode.UNAVAILABLE", "StatusCode.CANCELLED")
_EMBEDDED_STATUS = re.compile(r"status = StatusCode\.(?P<status>[A-Z_]+)")
_EMBEDDED_DETAILS = re.compile(r'details = "(?P<details>[^"]*)"')
_T = TypeVar("_T")


def translate(e: InferenceServerException, model: str) -> Exception:
    """One InferenceServerException → our error tree (the caller raises it `from e`)."""
    status = str(e.status() or "")
    message = str(e.message() or e)
    # A stream broken mid-way (Triton killed) arrives with no status, the gRPC error rendered
    # into the message: "<AioRpcError … status = StatusCode.UNAVAILABLE details = "…" …>".
    embedded = _EMBEDDED_STATUS.search(message)
    if embedded:
        status = status or f"StatusCode.{embedded['status']}"
        details = _EMBEDDED_DETAILS.search(message)
        message = details["details"] if details else status
    if status in _UNAVAILABLE or "failed to connect" in message.lower() or "unknown model" in message.lower():
        return ModelUnavailable(f"model '{model}' is unavailable: {message}")
    if status == "StatusCode.DEADLINE_EXCEEDED":
        return StageTimeout(f"model '{model}' did not answer in time")
    return ModelFailed(f"model '{model}' failed: {message}")


def _string_input(name: str, value: str) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput(name, [1], "BYTES")
    tensor.set_data_from_numpy(np.array([value.encode("utf-8")], dtype=np.object_))
    return tensor


def _scalar_input(
    name: str, value: float | bool, datatype: str, dtype: type[np.generic]
) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput(name, [1], datatype)
    tensor.set_data_from_numpy(np.array([value], dtype=dtype))
    return tensor


def _first_string(result: Any, name: str) -> str:
    array = result.as_numpy(name)
    if array is None or array.size == 0:
        return ""
    value = array.reshape(-1)[0]
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class Segment:
    """A stretch of the transcript, in seconds from the start of the sequence."""

    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Transcript:
    text: str
    is_final: bool
    segments: tuple[Segment, ...] = ()


def _from_rpc_error(e: grpc.RpcError) -> InferenceServerException:
    code = e.code() if isinstance(e, grpc.Call) else None
    details = e.details() if isinstance(e, grpc.Call) else str(e)
    return InferenceServerException(msg=str(details or e), status=str(code) if code else None)


def _segments(raw: str) -> tuple[Segment, ...]:
    """The `segments` output of `asr` (JSON list of {start, end, text}); () when absent or unreadable."""
    try:
        items = json.loads(raw) if raw else []
        return tuple(Segment(float(s["start"]), float(s["end"]), str(s["text"])) for s in items)
    except (ValueError, TypeError, KeyError):
        return ()


@dataclass(frozen=True)
class AudioChunk:
    pcm: npt.NDArray[np.int16]
    sample_rate: int


@dataclass
class Usage:
    """Token counts of one generation, from the model's last response (0 when it sent none)."""

    prompt_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0


def _first_int(result: Any, name: str) -> int | None:
    array = result.as_numpy(name)
    return int(array.reshape(-1)[0]) if array is not None and array.size else None


@dataclass(eq=False)  # by identity: kept in a set while in flight
class _Speculative:
    prompt: str
    task: asyncio.Task[Any] | None = field(default=None)
    yielded: bool = False  # cancelled to make way for a real generation


class ModelClients:
    """The gateway's view of Triton. One gRPC channel, shared by every session."""

    def __init__(
        self,
        client: grpcclient.InferenceServerClient,
        *,
        timeout_s: float,
        asr_model: str = "asr",
        llm_model: str = "llm",
        tts_model: str = "tts",
    ) -> None:
        self.client = client
        self.timeout_s = timeout_s
        self.asr_model = asr_model
        self.llm_model = llm_model
        self.tts_model = tts_model
        # Speculative prefills in flight, and real generations in flight: real turns come first.
        self._speculative: set[_Speculative] = set()
        self._real = 0

    # ---- asr -------------------------------------------------------------------------

    async def transcribe_chunk(
        self,
        pcm: npt.NDArray[np.int16],
        *,
        sequence_id: int,
        start: bool,
        end: bool,
        language: str | None = None,
        prompt: str = "",
    ) -> Transcript:
        """Send one chunk of a turn's audio; the reply is the partial (or, at `end`, final) text.
        `prompt` (read at `start`): words the speech likely contains, to bias recognition."""
        audio = grpcclient.InferInput("audio", [int(pcm.size)], "INT16")
        audio.set_data_from_numpy(pcm.astype(np.int16, copy=False))
        inputs = [audio]
        if language:
            inputs.append(_string_input("language", language))
        if prompt and start:
            inputs.append(_string_input("prompt", prompt))
        try:
            result = await self.client.infer(
                self.asr_model,
                inputs,
                sequence_id=sequence_id,
                sequence_start=start,
                sequence_end=end,
                client_timeout=self.timeout_s,
            )
        except InferenceServerException as e:
            raise translate(e, self.asr_model) from e
        is_final = result.as_numpy("is_final")
        return Transcript(
            _first_string(result, "transcript"),
            bool(is_final is not None and is_final.reshape(-1)[0]),
            _segments(_first_string(result, "segments")),
        )

    # ---- streams ---------------------------------------------------------------------

    async def _stream(
        self, model: str, inputs: list[grpcclient.InferInput], convert: Callable[[Any], _T | None]
    ) -> AsyncGenerator[_T, None]:
        async def requests() -> AsyncIterator[dict[str, Any]]:
            yield {"model_name": model, "inputs": inputs}

        try:
            call = self.client.stream_infer(requests(), stream_timeout=self.timeout_s * 4)
        except InferenceServerException as e:
            raise translate(e, model) from e
        try:
            async for result, error in call:
                if error is not None:
                    raise translate(error, model) from error
                item = convert(result)
                if item is not None:
                    yield item
        except InferenceServerException as e:
            raise translate(e, model) from e
        except grpc.RpcError as e:  # the aio stream raises gRPC's own error (e.g. Triton down)
            raise translate(_from_rpc_error(e), model) from e
        finally:
            call.cancel()  # no-op when the call already ended; frees the model on early close

    def _generation_inputs(
        self, prompt: str, sampling: dict[str, Any], *, stream: bool
    ) -> list[grpcclient.InferInput]:
        return [
            _string_input("text_input", prompt),
            _scalar_input("stream", stream, "BOOL", np.bool_),
            _string_input("sampling_parameters", json.dumps(sampling)),
            _scalar_input("exclude_input_in_output", True, "BOOL", np.bool_),
        ]

    async def generate(
        self,
        prompt: str,
        *,
        max_tokens: int,
        stop: list[str],
        temperature: float = 0.0,
        top_p: float = 0.9,
        usage: Usage | None = None,
    ) -> AsyncGenerator[str, None]:
        """Text deltas of the answer, as the model produces them; `usage` gets the token counts.
        Greedy by default: a grounded answer wants the passages' own words, and the same question
        on the same documents gets the same answer (which the answer-quality tests rely on).

        A real generation: speculative prefills in flight are cancelled first (they would hold
        the model), except one whose prompt this one starts with, which is this one's first half."""
        self._real += 1
        try:
            for spec in list(self._speculative):
                if spec.task is not None and not prompt.startswith(spec.prompt):
                    spec.yielded = True
                    spec.task.cancel()
            sampling = {
                "temperature": temperature,
                "top_p": top_p,
                "max_tokens": max_tokens,
                "stop": stop,
                # Small models loop ("The option is the option. The option…"); this damps it.
                "repetition_penalty": 1.1,
            }
            inputs = self._generation_inputs(prompt, sampling, stream=True)

            def convert(result: Any) -> str | None:
                if usage is not None:
                    usage.prompt_tokens = _first_int(result, "num_input_tokens") or usage.prompt_tokens
                    usage.cached_tokens = _first_int(result, "num_cached_tokens") or usage.cached_tokens
                    usage.output_tokens = _first_int(result, "num_output_tokens") or usage.output_tokens
                return _first_string(result, "text_output") or None

            stream = self._stream(self.llm_model, inputs, convert)
            async with contextlib.aclosing(stream):
                async for delta in stream:
                    yield delta
        finally:
            self._real -= 1

    def real_in_flight(self) -> bool:
        return self._real > 0

    async def prefill(self, prompt: str) -> int | None:
        """Speculative: have the model evaluate `prompt` (a prompt prefix) so its state is cached.

        Skipped (None) while a real generation is in flight, and cancelled (None) when one
        starts; otherwise the prompt's token count. Errors are not raised: speculation is optional."""
        if self.real_in_flight():
            return None
        spec = _Speculative(prompt, asyncio.current_task())
        self._speculative.add(spec)
        usage = Usage()
        inputs = self._generation_inputs(prompt, {"max_tokens": 1, "temperature": 0.0}, stream=True)

        def convert(result: Any) -> None:
            usage.prompt_tokens = _first_int(result, "num_input_tokens") or usage.prompt_tokens
            return None

        try:
            async for _ in self._stream(self.llm_model, inputs, convert):
                pass
        except asyncio.CancelledError:
            if spec.yielded:  # cancelled for a real turn: by design, not our caller's cancel
                current = asyncio.current_task()
                if current is not None:
                    current.uncancel()
                return None
            raise
        except (ModelUnavailable, ModelFailed, StageTimeout):
            return None
        finally:
            self._speculative.discard(spec)
        return usage.prompt_tokens

    def synthesize(
        self, text: str, *, voice: str = "", speaking_rate: float = 1.0
    ) -> AsyncGenerator[AudioChunk, None]:
        """PCM16 chunks of `text` spoken, as they are synthesised."""
        inputs = [
            _string_input("text", text),
            _scalar_input("speaking_rate", speaking_rate, "FP32", np.float32),
        ]
        if voice:
            inputs.append(_string_input("voice", voice))

        def convert(result: Any) -> AudioChunk | None:
            pcm = result.as_numpy("audio")
            rate = result.as_numpy("sample_rate")
            if pcm is None or pcm.size == 0 or rate is None:
                return None
            return AudioChunk(pcm.astype(np.int16, copy=False).reshape(-1), int(rate.reshape(-1)[0]))

        return self._stream(self.tts_model, inputs, convert)
