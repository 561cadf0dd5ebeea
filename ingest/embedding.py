"""Sentence embeddings through the Triton `embed` model (all-MiniLM-L6-v2, 384 dimensions).

The model's contract: input `text` (TYPE_STRING, dims [1], dynamic batching up to 64, so a
request has shape [N, 1] with N <= 64), output `embedding` (TYPE_FP32, [384], L2-normalised).
`Embedder` is the seam: unit tests use a fake that implements it.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from ingest.errors import EmbeddingUnavailable

log = logging.getLogger(__name__)

EMBEDDING_DIM = 384
MAX_BATCH = 64
_RETRYABLE = {"StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED", "StatusCode.RESOURCE_EXHAUSTED"}


class Embedder(Protocol):
    async def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Embeddings of `texts`, shape [len(texts), 384], float32, L2-normalised."""
        ...


def triton_channel_args() -> list[tuple[str, int]]:
    """gRPC options for every Triton client: tritonclient's defaults (message sizes, keepalive)
    plus a short reconnect back-off. gRPC's default back-off grows to 120 s, so after a Triton
    restart a client could sit failing for two minutes; capped at 2 s it recovers at once."""
    from tritonclient.grpc import KeepAliveOptions
    from tritonclient.grpc.aio import MAX_GRPC_MESSAGE_SIZE

    keepalive = KeepAliveOptions()
    return [
        ("grpc.max_send_message_length", MAX_GRPC_MESSAGE_SIZE),
        ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_SIZE),
        ("grpc.keepalive_time_ms", keepalive.keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", keepalive.keepalive_timeout_ms),
        ("grpc.keepalive_permit_without_calls", int(keepalive.keepalive_permit_without_calls)),
        ("grpc.http2.max_pings_without_data", keepalive.http2_max_pings_without_data),
        ("grpc.initial_reconnect_backoff_ms", 250),
        ("grpc.min_reconnect_backoff_ms", 250),
        ("grpc.max_reconnect_backoff_ms", 2000),
    ]


class TritonEmbedder:
    """Calls Triton's `embed` model over gRPC in batches of at most 64 texts.

    Transient failures (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED) are retried with
    exponential backoff and jitter; when they persist, or on any other error, the call raises
    `EmbeddingUnavailable` with the gRPC error chained. The gRPC channel is opened on first use,
    on the running event loop; call `close()` when done.
    """

    def __init__(
        self,
        url: str,
        model: str = "embed",
        timeout_s: float = 30.0,
        *,
        max_attempts: int = 5,
        backoff_s: float = 0.2,
        max_backoff_s: float = 5.0,
    ) -> None:
        self.url = url
        self.model = model
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._client: Any = None

    def _get_client(self) -> Any:
        if self._client is None:
            import tritonclient.grpc.aio as grpcclient

            self._client = grpcclient.InferenceServerClient(url=self.url, channel_args=triton_channel_args())
        return self._client

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        if not texts:
            return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        # Batches of similar lengths: the model pads each batch to its longest text, so mixing a
        # heading-sized chunk with a 220-token one wastes most of the former's compute.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), EMBEDDING_DIM), dtype=np.float32)
        for start in range(0, len(order), MAX_BATCH):
            batch = order[start : start + MAX_BATCH]
            out[batch] = await self._embed_batch([texts[i] for i in batch])
        return out

    async def _embed_batch(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        import tritonclient.grpc.aio as grpcclient
        from tritonclient.utils import InferenceServerException

        data = np.array([[t.encode("utf-8")] for t in texts], dtype=np.object_)
        attempt = 0
        while True:
            attempt += 1
            text_input = grpcclient.InferInput("text", list(data.shape), "BYTES")
            text_input.set_data_from_numpy(data)
            try:
                result = await self._get_client().infer(
                    self.model,
                    [text_input],
                    outputs=[grpcclient.InferRequestedOutput("embedding")],
                    client_timeout=self.timeout_s,
                )
            except InferenceServerException as e:
                status = str(e.status() or "")
                if status in _RETRYABLE and attempt < self.max_attempts:
                    delay = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
                    delay *= 0.5 + random.random() / 2  # noqa: S311 - jitter, not cryptography
                    log.warning(
                        "embed call failed (%s), retry %d/%d in %.2fs",
                        status,
                        attempt,
                        self.max_attempts - 1,
                        delay,
                    )
                    await asyncio.sleep(delay)
                    continue
                raise EmbeddingUnavailable(
                    f"Triton model {self.model!r} at {self.url} failed after {attempt} attempt(s): "
                    f"{status or 'error'}: {e.message()}"
                ) from e
            return _check(result.as_numpy("embedding"), len(texts))


def _check(array: Any, rows: int) -> npt.NDArray[np.float32]:
    if array is None:
        raise EmbeddingUnavailable("the embed model returned no `embedding` output")
    out = np.asarray(array, dtype=np.float32)
    if out.size != rows * EMBEDDING_DIM:
        raise EmbeddingUnavailable(
            f"the embed model returned shape {tuple(out.shape)}, expected ({rows}, {EMBEDDING_DIM})"
        )
    return out.reshape(rows, EMBEDDING_DIM)
