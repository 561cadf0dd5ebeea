"""TritonEmbedder: batches of at most 64 as [N, 1] BYTES, retries on transient gRPC errors only."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from ingest.embedding import EMBEDDING_DIM, MAX_BATCH, TritonEmbedder
from ingest.errors import EmbeddingUnavailable


class FakeResult:
    def __init__(self, rows: int, shape: tuple[int, ...] | None = None) -> None:
        self._array = np.full(shape or (rows, EMBEDDING_DIM), 0.5, dtype=np.float32)

    def as_numpy(self, name: str) -> Any:
        assert name == "embedding"
        return self._array


class FakeClient:
    """Stands in for tritonclient.grpc.aio.InferenceServerClient at the seam."""

    def __init__(self, failures: list[str] | None = None, shape: tuple[int, ...] | None = None) -> None:
        self.failures = list(failures or [])
        self.calls: list[dict[str, Any]] = []
        self.shape = shape
        self.closed = False

    async def infer(
        self, model: str, inputs: list[Any], outputs: list[Any], client_timeout: float
    ) -> FakeResult:
        (text,) = inputs
        self.calls.append(
            {
                "model": model,
                "name": text.name(),
                "shape": text.shape(),
                "type": text.datatype(),
                "timeout": client_timeout,
            }
        )
        if self.failures:
            raise InferenceServerException("boom", status=self.failures.pop(0))
        return FakeResult(text.shape()[0], self.shape)

    async def close(self) -> None:
        self.closed = True


def embedder_with(client: FakeClient, **kwargs: Any) -> TritonEmbedder:
    embedder = TritonEmbedder("triton:8001", timeout_s=7.0, backoff_s=0.0, **kwargs)
    embedder._client = client
    return embedder


def test_batches_of_at_most_64_with_shape_n_1() -> None:
    client = FakeClient()
    out = asyncio.run(embedder_with(client).embed([f"text {i}" for i in range(150)]))
    assert out.shape == (150, EMBEDDING_DIM)
    assert out.dtype == np.float32
    assert [c["shape"] for c in client.calls] == [[MAX_BATCH, 1], [MAX_BATCH, 1], [22, 1]]
    assert {(c["model"], c["name"], c["type"], c["timeout"]) for c in client.calls} == {
        ("embed", "text", "BYTES", 7.0)
    }


def test_results_come_back_in_input_order() -> None:
    """Batches are formed by text length; each vector must still land on its own text's row."""

    class EchoClient(FakeClient):
        async def infer(
            self, model: str, inputs: list[Any], outputs: list[Any], client_timeout: float
        ) -> Any:
            raw: bytes = inputs[0]._raw_content  # BYTES tensors: 4-byte little-endian length, then the bytes
            lengths = []
            while raw:
                size = int.from_bytes(raw[:4], "little")
                lengths.append(size)
                raw = raw[4 + size :]
            result = FakeResult(len(lengths))
            result._array[:, 0] = lengths
            return result

    texts = [("x" * (i * 37 % 101)) for i in range(150)]
    out = asyncio.run(embedder_with(EchoClient()).embed(texts))
    assert out[:, 0].tolist() == [float(len(t)) for t in texts]


def test_empty_input_makes_no_call() -> None:
    client = FakeClient()
    out = asyncio.run(embedder_with(client).embed([]))
    assert out.shape == (0, EMBEDDING_DIM)
    assert client.calls == []


@pytest.mark.parametrize("status", ["StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED"])
def test_transient_errors_are_retried(status: str) -> None:
    client = FakeClient(failures=[status, status])
    out = asyncio.run(embedder_with(client, max_attempts=3).embed(["a", "b"]))
    assert out.shape == (2, EMBEDDING_DIM)
    assert len(client.calls) == 3


def test_persistent_unavailability_raises_embedding_unavailable() -> None:
    client = FakeClient(failures=["StatusCode.UNAVAILABLE"] * 10)
    with pytest.raises(EmbeddingUnavailable, match="after 4 attempt") as info:
        asyncio.run(embedder_with(client, max_attempts=4).embed(["a"]))
    assert isinstance(info.value.__cause__, InferenceServerException)
    assert info.value.retryable
    assert len(client.calls) == 4


def test_other_errors_are_not_retried() -> None:
    client = FakeClient(failures=["StatusCode.INVALID_ARGUMENT"])
    with pytest.raises(EmbeddingUnavailable, match="INVALID_ARGUMENT"):
        asyncio.run(embedder_with(client).embed(["a"]))
    assert len(client.calls) == 1


def test_wrong_output_shape_is_refused() -> None:
    client = FakeClient(shape=(1, 128))
    with pytest.raises(EmbeddingUnavailable, match="shape"):
        asyncio.run(embedder_with(client).embed(["a"]))


def test_close_closes_the_client_once() -> None:
    client = FakeClient()
    embedder = embedder_with(client)
    asyncio.run(embedder.close())
    asyncio.run(embedder.close())
    assert client.closed


def test_unreachable_server_raises_after_retries() -> None:
    """A real gRPC client against a port nobody listens on: UNAVAILABLE, retried, then typed."""

    async def run() -> None:
        embedder = TritonEmbedder("127.0.0.1:9", timeout_s=2.0, max_attempts=2, backoff_s=0.0)
        try:
            await embedder.embed(["hello"])
        finally:
            await embedder.close()

    with pytest.raises(EmbeddingUnavailable, match="UNAVAILABLE"):
        asyncio.run(run())
