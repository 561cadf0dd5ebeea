"""Real turns first: a real generation cancels speculative prefills in flight, except the one its
prompt continues. A fake at the Triton client seam (`stream_infer`, as tritonclient.grpc.aio has it)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import numpy as np

from orchestrator.inference import ModelClients, Usage


class _Result:
    def __init__(self, outputs: dict[str, Any]) -> None:
        self.outputs = outputs

    def as_numpy(self, name: str) -> Any:
        return self.outputs.get(name)


class _Call:
    """One ModelStreamInfer call: a prefill (max_tokens 1) waits until cancelled; a generation
    answers at once."""

    def __init__(self, client: FakeTriton, prompt: str, prefill: bool) -> None:
        self.client, self.prompt, self.prefill = client, prompt, prefill

    def cancel(self) -> None:
        if self.prefill and self.prompt not in self.client.finished:
            self.client.cancelled.append(self.prompt)

    def __aiter__(self) -> AsyncIterator[tuple[Any, Any]]:
        return self._responses()

    async def _responses(self) -> AsyncIterator[tuple[Any, Any]]:
        if self.prefill:
            self.client.prefilling.set()
            await self.client.release_prefill.wait()
            self.client.finished.append(self.prompt)
            counts = {"num_input_tokens": 120, "num_cached_tokens": 30}
            yield _Result({k: np.array([v], dtype=np.uint32) for k, v in counts.items()}), None
            return
        text = np.array([b"Port 8080."], dtype=np.object_)
        yield _Result({"text_output": text}), None


class FakeTriton:
    def __init__(self) -> None:
        self.prefilling = asyncio.Event()
        self.release_prefill = asyncio.Event()
        self.cancelled: list[str] = []
        self.finished: list[str] = []

    def stream_infer(self, requests: Any, stream_timeout: float) -> _Call:
        # The request generator holds one request; read it the way the real client would.
        request = _first(requests)
        inputs = {i.name(): i for i in request["inputs"]}
        prompt = _text(inputs["text_input"])
        sampling = json.loads(_text(inputs["sampling_parameters"]))
        return _Call(self, prompt, prefill=sampling["max_tokens"] == 1)


def _first(requests: Any) -> dict[str, Any]:
    # `stream_infer` is called without awaiting; the request generator yields at once, so it is
    # driven by hand.
    step = requests.__anext__()
    try:
        step.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    raise AssertionError("the request generator did not yield at once")


def _text(tensor: Any) -> str:
    """A one-element BYTES input as the client serialised it: a 4-byte length, then the bytes."""
    raw: bytes = tensor._get_content()
    return raw[4 : 4 + int.from_bytes(raw[:4], "little")].decode("utf-8")


async def _generate(models: ModelClients, prompt: str) -> str:
    return "".join([d async for d in models.generate(prompt, max_tokens=20, stop=[])])


def test_a_real_generation_cancels_another_sessions_prefill() -> None:
    async def scenario() -> tuple[FakeTriton, Usage | None, str]:
        triton = FakeTriton()
        models = ModelClients(triton, timeout_s=5)  # type: ignore[arg-type]
        prefill = asyncio.create_task(models.prefill("session A: passages about the chart"))
        await triton.prefilling.wait()
        answer = await _generate(models, "session B: which port?")
        return triton, await prefill, answer

    triton, prefilled, answer = asyncio.run(scenario())
    assert answer == "Port 8080."
    assert prefilled is None  # yielded to the real turn
    assert triton.cancelled == ["session A: passages about the chart"]


def test_the_prefill_a_generation_continues_is_left_to_finish() -> None:
    async def scenario() -> tuple[FakeTriton, Usage | None]:
        triton = FakeTriton()
        models = ModelClients(triton, timeout_s=5)  # type: ignore[arg-type]
        prefill = asyncio.create_task(models.prefill("session A: passages; Question: "))
        await triton.prefilling.wait()
        generation = asyncio.create_task(_generate(models, "session A: passages; Question: which port?"))
        await asyncio.sleep(0)
        triton.release_prefill.set()
        await generation
        return triton, await prefill

    triton, prefilled = asyncio.run(scenario())
    assert triton.cancelled == []
    assert prefilled is not None
    assert (prefilled.prompt_tokens, prefilled.cached_tokens) == (120, 30)


def test_no_prefill_starts_while_a_real_generation_runs() -> None:
    async def scenario() -> Usage | None:
        triton = FakeTriton()
        models = ModelClients(triton, timeout_s=5)  # type: ignore[arg-type]
        models._real = 1  # a real generation in flight
        return await models.prefill("anything")

    assert asyncio.run(scenario()) is None


def test_no_prefill_starts_while_several_sessions_keep_the_model_busy() -> None:
    async def scenario() -> tuple[Usage | None, bool]:
        triton = FakeTriton()
        models = ModelClients(triton, timeout_s=5)  # type: ignore[arg-type]
        await _generate(models, "which port?")
        one_session = models.saturated()
        for question in ("which model?", "which index?"):  # two more sessions' turns right after
            await _generate(models, question)
        return await models.prefill("session D: passages; Question: "), one_session

    prefilled, one_session = asyncio.run(scenario())
    assert not one_session
    assert prefilled is None
