"""Async clients for the Triton models the gateway calls: `asr`, `llm`, `tts` (tensor contracts in
docs/models.md). `embed` is called through `ingest.embedding.TritonEmbedder`.

Streams are async generators over one gRPC `ModelStreamInfer` call per request: we send the
request and half-close, Triton ends the call after the model's FINAL response. Closing the
generator early (barge-in, client gone) cancels the call, which Triton reports to the model as
`request.is_cancelled()`, so no orphaned generation keeps a model instance busy.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import json
import re
import socket
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import grpc
import numpy as np
import numpy.typing as npt
import tritonclient.grpc.aio as grpcclient
from tritonclient.utils import InferenceServerException

from orchestrator.errors import ModelFailed, ModelUnavailable, StageTimeout

_UNAVAILABLE = ("StatusCode.UNAVAILABLE", "StatusCode.CANCELLED")
# What a connection to a server that went away looks like, whatever status it is reported with
# (a Triton killed while a stream opens can surface as INTERNAL/UNKNOWN "RST_STREAM", "GOAWAY").
_TRANSPORT_GONE = (
    "failed to connect",
    "unknown model",
    "rst_stream",
    "goaway",
    "socket closed",
    "connection reset",
    "connection refused",
    "broken pipe",
    "stream removed",
    "end of tcp stream",
)
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
    if status in _UNAVAILABLE or any(gone in message.lower() for gone in _TRANSPORT_GONE):
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


class Models(Protocol):
    """Every model call the gateway makes in a conversation, in one seam: `ModelClients`
    implements it over Triton; unit tests use one fake (tests/unit/fakes.py `FakeModels`)."""

    async def transcribe_chunk(
        self,
        pcm: npt.NDArray[np.int16],
        *,
        sequence_id: int,
        start: bool,
        end: bool,
        language: str | None = None,
        prompt: str = "",
    ) -> Transcript: ...

    def generate(
        self, prompt: str, *, max_tokens: int, stop: list[str], usage: Usage | None = None
    ) -> AsyncGenerator[str, None]: ...

    async def prefill(self, prompt: str) -> Usage | None: ...

    def synthesize(
        self, text: str, *, voice: str = "", speaking_rate: float = 1.0
    ) -> AsyncGenerator[AudioChunk, None]: ...


# Speculation stops while SATURATED_STARTS real generations started within SATURATION_WINDOW_S:
# one session asks a question every few seconds at most, several sessions sharing the LLM do more.
SATURATED_STARTS = 3
SATURATION_WINDOW_S = 10.0


@dataclass(eq=False)  # by identity: kept in a set while in flight
class _Speculative:
    prompt: str
    task: asyncio.Task[Any] | None = field(default=None)
    yielded: bool = False  # cancelled to make way for a real generation


DNS_SCHEME = "dns:///"


def balancing_channel_args(url: str) -> list[tuple[str, Any]]:
    """gRPC options that spread calls over every Triton replica behind a `dns:///` target (the
    chart's headless Service lists one address per pod): round robin per call, and a re-resolve
    at least every 30 s so replicas added by the autoscaler get traffic. Nothing for host:port."""
    if not url.startswith(DNS_SCHEME):
        return []
    return [("grpc.lb_policy_name", "round_robin"), ("grpc.dns_min_time_between_resolutions_ms", 30_000)]


Resolver = Callable[[str, int], Awaitable[list[str]]]


async def resolve_addresses(host: str, port: int) -> list[str]:
    """The IP addresses behind a name (one per Triton pod of a headless Service), sorted."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


class SequenceRouter:
    """Keeps every chunk of one ASR sequence on one Triton replica.

    `asr` keeps per-sequence state (Triton's sequence batcher, CORRID) inside one server, so the
    round-robin channel that serves every other call would scatter a turn's chunks across
    replicas. Each sequence id is mapped to one replica address by rendezvous hashing: stable while
    the replica set is, and when a replica leaves only its own sequences move. Addresses come from
    DNS (the headless Service), re-resolved every `refresh_s`.
    """

    def __init__(
        self,
        url: str,
        *,
        client_factory: Callable[[str], grpcclient.InferenceServerClient],
        resolver: Resolver = resolve_addresses,
        refresh_s: float = 30.0,
    ) -> None:
        host, _, port = url.removeprefix(DNS_SCHEME).rpartition(":")
        self.host, self.port = host, int(port)
        self.client_factory = client_factory
        self.resolver = resolver
        self.refresh_s = refresh_s
        self._addresses: list[str] = []
        self._resolved_at = float("-inf")
        self._clients: dict[str, grpcclient.InferenceServerClient] = {}

    async def addresses(self) -> list[str]:
        if time.monotonic() - self._resolved_at >= self.refresh_s:
            # On a failed lookup keep the last known replicas; the call itself reports an outage.
            with contextlib.suppress(OSError):
                self._addresses = await self.resolver(self.host, self.port)
            self._resolved_at = time.monotonic()
        return self._addresses

    @staticmethod
    def pick(sequence_id: int, addresses: list[str]) -> str:
        def weight(address: str) -> bytes:
            return hashlib.blake2b(f"{sequence_id}|{address}".encode(), digest_size=8).digest()

        return max(addresses, key=weight)

    async def client_for(self, sequence_id: int) -> grpcclient.InferenceServerClient | None:
        """The client of the sequence's replica; None when there is at most one (use the shared one)."""
        addresses = await self.addresses()
        if len(addresses) <= 1:
            return None
        address = self.pick(sequence_id, addresses)
        if address not in self._clients:
            self._clients[address] = self.client_factory(f"{address}:{self.port}")
        return self._clients[address]

    async def close(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


class ModelClients:
    """The gateway's view of Triton: one gRPC channel shared by every session (balanced over the
    replicas when the URL is a `dns:///` target), and ASR sequences pinned by `router`."""

    def __init__(
        self,
        client: grpcclient.InferenceServerClient,
        *,
        timeout_s: float,
        asr_model: str = "asr",
        llm_model: str = "llm",
        tts_model: str = "tts",
        router: SequenceRouter | None = None,
    ) -> None:
        self.client = client
        self.router = router
        self.timeout_s = timeout_s
        self.asr_model = asr_model
        self.llm_model = llm_model
        self.tts_model = tts_model
        # Speculative prefills in flight, and real generations in flight: real turns come first.
        self._speculative: set[_Speculative] = set()
        self._real = 0
        self._real_starts: collections.deque[float] = collections.deque(maxlen=SATURATED_STARTS)

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
        client = (await self.router.client_for(sequence_id) if self.router else None) or self.client
        try:
            result = await client.infer(
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
        self._real_starts.append(time.monotonic())
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

    def saturated(self) -> bool:
        """Several sessions' real generations came in quick succession: the model is busy with
        real work, and speculation could only delay it (each real generation waits for a prefill
        to notice its cancellation), so none is sent."""
        starts = self._real_starts
        return len(starts) == SATURATED_STARTS and time.monotonic() - starts[0] < SATURATION_WINDOW_S

    async def prefill(self, prompt: str) -> Usage | None:
        """Speculative: have the model evaluate `prompt` (a prompt prefix) so its state is cached.

        Skipped (None) while a real generation is in flight or several came in quick succession
        (`saturated`), and cancelled (None) when one starts; otherwise the prompt's token counts
        (`cached_tokens`: those it held already).
        Errors are not raised: speculation is optional."""
        if self.real_in_flight() or self.saturated():
            return None
        spec = _Speculative(prompt, asyncio.current_task())
        self._speculative.add(spec)
        usage = Usage()
        inputs = self._generation_inputs(prompt, {"max_tokens": 1, "temperature": 0.0}, stream=True)

        def convert(result: Any) -> None:
            usage.prompt_tokens = _first_int(result, "num_input_tokens") or usage.prompt_tokens
            usage.cached_tokens = _first_int(result, "num_cached_tokens") or usage.cached_tokens
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
        return usage

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
