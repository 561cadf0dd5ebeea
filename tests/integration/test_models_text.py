"""The `llm` and `embed` Triton models, served for real by the session's tritonserver.

`llm` is decoupled: it is driven through the gRPC streaming API, as the gateway drives it.
"""

from __future__ import annotations

import json
import queue
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from orchestrator.stack.triton import TritonServer


def chatml(question: str, system: str = "You are a helpful assistant. Answer briefly.") -> str:
    """The prompt format the gateway applies (Settings.llm_prompt_format = chatml)."""
    return (
        f"<|im_start|>system\n{system}<|im_end|>\n"
        f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"
    )


@dataclass
class Generation:
    deltas: list[str] = field(default_factory=list)
    num_input_tokens: int | None = None
    num_output_tokens: int | None = None
    finish_reason: str | None = None
    error: str | None = None
    responses: int = 0

    @property
    def text(self) -> str:
        return "".join(self.deltas)


def _string(name: str, value: str | bytes) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput(name, [1], "BYTES")
    tensor.set_data_from_numpy(
        np.array([value.encode() if isinstance(value, str) else value], dtype=np.object_)
    )
    return tensor


def generate(
    url: str,
    prompt: str | bytes,
    sampling: dict[str, Any] | str | None = None,
    *,
    stream: bool = True,
    cancel_after: int | None = None,
) -> Generation:
    """One `llm` request over the streaming API; `cancel_after` responses, cancel the stream."""
    inputs = [_string("text_input", prompt)]
    if sampling is not None:
        inputs.append(
            _string("sampling_parameters", sampling if isinstance(sampling, str) else json.dumps(sampling))
        )
    stream_in = grpcclient.InferInput("stream", [1], "BOOL")
    stream_in.set_data_from_numpy(np.array([stream]))
    inputs.append(stream_in)
    got: queue.Queue[tuple[Any, Any]] = queue.Queue()
    gen = Generation()
    with grpcclient.InferenceServerClient(url) as c:
        c.start_stream(callback=lambda result, error: got.put((result, error)))
        c.async_stream_infer("llm", inputs, enable_empty_final_response=True)
        try:
            while True:
                result, error = got.get(timeout=300)
                if error is not None:
                    gen.error = str(error)
                    return gen
                gen.responses += 1
                text = result.as_numpy("text_output")
                if text is not None:
                    gen.deltas.extend(t.decode("utf-8") for t in text.reshape(-1))
                for name in ("num_input_tokens", "num_output_tokens"):
                    value = result.as_numpy(name)
                    if value is not None:
                        setattr(gen, name, int(value[0]))
                reason = result.as_numpy("finish_reason")
                if reason is not None:
                    gen.finish_reason = reason[0].decode()
                if cancel_after is not None and gen.responses >= cancel_after:
                    c.stop_stream(cancel_requests=True)
                    return gen
                if result.get_response().parameters["triton_final_response"].bool_param:
                    return gen
        finally:
            c.stop_stream()


GREEDY = {"temperature": 0.0, "top_p": 1.0}


@pytest.fixture(scope="module")
def client(triton: TritonServer) -> Iterator[grpcclient.InferenceServerClient]:
    with grpcclient.InferenceServerClient(triton.grpc_url) as c:
        yield c


# ---- llm ----------------------------------------------------------------------------------------


def test_llm_streams_deltas_and_reports_token_counts(triton: TritonServer) -> None:
    prompt = chatml("Name three colours of the rainbow.")
    gen = generate(triton.grpc_url, prompt, {**GREEDY, "max_tokens": 24})
    assert gen.error is None
    assert len([d for d in gen.deltas if d]) > 1  # more than one response carried text
    assert gen.text.strip()
    assert prompt not in gen.text  # deltas only, never the prompt
    assert gen.num_input_tokens is not None
    assert gen.num_input_tokens > 10
    assert gen.num_output_tokens is not None
    assert 1 <= gen.num_output_tokens <= 24 + 2


def test_llm_obeys_max_tokens(triton: TritonServer) -> None:
    gen = generate(
        triton.grpc_url, chatml("Write a long story about a lighthouse keeper."), {**GREEDY, "max_tokens": 5}
    )
    assert gen.error is None
    assert 1 <= len([d for d in gen.deltas if d]) <= 5
    assert gen.num_output_tokens is not None
    assert gen.num_output_tokens <= 6
    assert gen.finish_reason == "length"


def test_llm_stops_at_a_stop_string(triton: TritonServer) -> None:
    prompt = chatml("Describe a lighthouse in two sentences.")
    free = generate(triton.grpc_url, prompt, {**GREEDY, "max_tokens": 40})
    assert free.error is None
    words = free.text.split()
    assert len(words) >= 6, free.text
    stop = words[len(words) // 2]  # a word the model says half-way; greedy decoding repeats itself
    stopped = generate(triton.grpc_url, prompt, {**GREEDY, "max_tokens": 40, "stop": [stop]})
    assert stopped.error is None
    assert stop not in stopped.text
    assert stopped.text == free.text[: free.text.index(stop)]
    assert stopped.finish_reason == "stop"


def test_llm_answers_from_a_given_passage(triton: TritonServer) -> None:
    passage = (
        "The Voicebot gateway listens on port 8080. Documents are stored in Postgres with pgvector. "
        "The default voice is called Joe."
    )
    prompt = chatml(
        f"Passage: {passage}\n\nQuestion: Which port does the gateway listen on?",
        system="Answer the question using only the passage. Be brief.",
    )
    gen = generate(triton.grpc_url, prompt, {**GREEDY, "max_tokens": 32})
    assert gen.error is None
    assert "8080" in gen.text, gen.text


def test_llm_non_streaming_returns_one_response_like_vllm(triton: TritonServer) -> None:
    prompt = chatml("Say hello.")
    gen = generate(triton.grpc_url, prompt, {**GREEDY, "max_tokens": 8}, stream=False)
    assert gen.error is None
    assert gen.responses == 1
    assert gen.text.startswith(prompt)  # vLLM's backend prefixes the prompt unless exclude_input_in_output
    assert len(gen.text) > len(prompt)


def test_llm_cancelled_stream_frees_the_model(triton: TritonServer) -> None:
    log = triton.log_dir / "triton.log"
    seen = log.read_text(errors="replace").count("llm: request cancelled after")
    long = {"temperature": 0.8, "max_tokens": 1500, "seed": 7}
    cancelled = generate(
        triton.grpc_url, chatml("Write a very long essay about the history of maps."), long, cancel_after=2
    )
    assert cancelled.error is None
    assert cancelled.responses == 2
    # The model runs one request at a time, so this one starts only once the cancelled one let go.
    after = generate(triton.grpc_url, chatml("Say yes."), {**GREEDY, "max_tokens": 4})
    assert after.error is None
    assert after.text.strip()
    # The model noticed the cancellation and stopped well short of max_tokens.
    lines = [
        line
        for line in log.read_text(errors="replace").splitlines()
        if "llm: request cancelled after" in line
    ]
    assert len(lines) == seen + 1
    pieces = int(lines[-1].split("llm: request cancelled after ")[1].split()[0])
    assert pieces < 1500


@pytest.mark.parametrize(
    ("prompt", "sampling", "message"),
    [
        (b"\xc3\x28 broken", None, "not valid UTF-8"),
        ("x" * 20000, None, "limit is"),
        ("", None, "is empty"),
        ("Hello", "{not json", "not valid JSON"),
        ("Hello", {"max_tokens": 0}, "max_tokens"),
        ("Hello", {"temperature": "hot"}, "temperature"),
        ("Hello", {"stop": [1, 2]}, "stop"),
    ],
    ids=["non-utf8", "too-long", "empty", "bad-json", "zero-max-tokens", "bad-temperature", "bad-stop"],
)
def test_llm_rejects_bad_input_and_keeps_serving(
    triton: TritonServer,
    client: grpcclient.InferenceServerClient,
    prompt: str | bytes,
    sampling: Any,
    message: str,
) -> None:
    gen = generate(triton.grpc_url, prompt, sampling)
    assert gen.error is not None
    assert message in gen.error
    assert client.is_server_ready()
    assert client.is_model_ready("llm")
    assert generate(triton.grpc_url, chatml("Say yes."), {**GREEDY, "max_tokens": 2}).error is None


def test_llm_refuses_plain_infer(client: grpcclient.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException, match=r"(?i)decoupled|stream"):
        client.infer("llm", [_string("text_input", "Hello")])


# ---- embed --------------------------------------------------------------------------------------


def embed(client: grpcclient.InferenceServerClient, texts: list[str | bytes]) -> np.ndarray:
    data = np.array([[t.encode() if isinstance(t, str) else t] for t in texts], dtype=np.object_)
    tensor = grpcclient.InferInput("text", list(data.shape), "BYTES")
    tensor.set_data_from_numpy(data)
    return np.asarray(client.infer("embed", [tensor]).as_numpy("embedding"))


def test_embed_returns_unit_norm_384d_vectors(client: grpcclient.InferenceServerClient) -> None:
    vectors = embed(client, ["How do I reset my password?", "The cat sat on the mat."])
    assert vectors.shape == (2, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_embed_scores_a_paraphrase_above_an_unrelated_sentence(
    client: grpcclient.InferenceServerClient,
) -> None:
    query, paraphrase, unrelated = embed(
        client,
        [
            "How do I reset my password?",
            "What are the steps to change a forgotten password?",
            "The weather in Lisbon is sunny in July.",
        ],
    )
    assert float(query @ paraphrase) > float(query @ unrelated) + 0.2


def test_embed_batch_of_64_equals_64_single_calls(client: grpcclient.InferenceServerClient) -> None:
    texts = [
        f"Sentence {i}: {'voice assistants answer questions ' * (1 + i % 5)}about document {i}."
        for i in range(64)
    ]
    batched = embed(client, texts)
    singles = np.vstack([embed(client, [t]) for t in texts])
    assert batched.shape == (64, 384)
    np.testing.assert_allclose(batched, singles, atol=1e-4)


@pytest.mark.parametrize(
    ("texts", "message"),
    [([b"\xff bad"], "not valid UTF-8"), (["y" * 9000], "limit is"), ([""], "is empty")],
    ids=["non-utf8", "too-long", "empty"],
)
def test_embed_rejects_bad_input_and_keeps_serving(
    client: grpcclient.InferenceServerClient, texts: list[str | bytes], message: str
) -> None:
    with pytest.raises(InferenceServerException, match=message):
        embed(client, texts)
    assert client.is_server_ready()
    assert client.is_model_ready("embed")
    assert embed(client, ["still serving"]).shape == (1, 384)


def test_embed_rejects_wrong_dtype_and_shape(client: grpcclient.InferenceServerClient) -> None:
    wrong_dtype = grpcclient.InferInput("text", [1, 1], "FP32")
    wrong_dtype.set_data_from_numpy(np.zeros((1, 1), np.float32))
    with pytest.raises(InferenceServerException, match=r"(?i)data-type|datatype"):
        client.infer("embed", [wrong_dtype])
    too_many = np.array([[f"t{i}".encode()] for i in range(65)], dtype=np.object_)
    over_batch = grpcclient.InferInput("text", list(too_many.shape), "BYTES")
    over_batch.set_data_from_numpy(too_many)
    with pytest.raises(InferenceServerException, match=r"(?i)batch"):
        client.infer("embed", [over_batch])
    assert client.is_server_ready()
    assert embed(client, ["ok"]).shape == (1, 384)
