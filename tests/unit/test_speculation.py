"""Speculative retrieval and prefill on partial transcripts, with fakes at the retrieval and model seams."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from orchestrator.metrics import Metrics
from orchestrator.pipeline import Source
from orchestrator.speculation import Speculator
from tests.unit.fakes import FakeModels


def _source(n: int, name: str) -> Source:
    return Source(n=n, title=name, source=f"{name}.html", heading_path=[], snippet="", text=f"text of {name}")


A, B, C = _source(1, "a"), _source(2, "b"), _source(1, "c")


def _prefix(sources: Sequence[Source]) -> str:
    return "|".join(s.title for s in sources)


def _speculator(models: FakeModels, found: dict[str, list[Source]], **kwargs: float) -> Speculator:
    async def retrieve(question: str) -> list[Source]:
        return found[question]

    return Speculator(retrieve, models, _prefix, Metrics(), **kwargs)  # type: ignore[arg-type]  # kwargs: floats


async def _settle(speculator: Speculator) -> None:
    if speculator._task is not None:
        await asyncio.wait_for(asyncio.shield(speculator._task), timeout=10)


def test_a_final_transcript_finding_the_warmed_passages_uses_the_warmed_prompt() -> None:
    async def scenario() -> tuple[Speculator, FakeModels, list[Source]]:
        models = FakeModels()
        spec = _speculator(
            models, {"how do I amend a commit": [A, B], "how do I amend a commit message": [B, A]}
        )
        spec.on_partial("how do I amend a commit")
        await _settle(spec)
        used = await spec.retriever()("how do I amend a commit message")
        return spec, models, used

    spec, models, used = asyncio.run(scenario())
    assert models.prefilled == ["a|b"]
    assert used == [A, B]  # the warmed order, so the prompt starts with the cached prefix
    assert (spec.stats.outcome, spec.stats.prefill_tokens, spec.stats.wasted_tokens) == ("hit", 100, 0)


def test_a_final_transcript_finding_other_passages_takes_the_normal_path() -> None:
    async def scenario() -> tuple[Speculator, list[Source]]:
        spec = _speculator(
            FakeModels(), {"how do I amend a commit": [A, B], "how do I vacuum the database": [C]}
        )
        spec.on_partial("how do I amend a commit")
        await _settle(spec)
        return spec, await spec.retriever()("how do I vacuum the database")

    spec, used = asyncio.run(scenario())
    assert used == [C]
    assert (spec.stats.outcome, spec.stats.wasted_tokens) == ("miss", 100)


def test_speculation_is_debounced_bounded_and_skips_empty_partials() -> None:
    async def scenario() -> tuple[Speculator, FakeModels]:
        models = FakeModels()
        found = {f"question number {i} words": [_source(1, str(i))] for i in range(10)}
        spec = _speculator(models, found, debounce_s=0.0, max_per_turn=3)
        spec.on_partial("um")  # too few content words
        for i in range(10):
            spec.on_partial(f"question number {i} words")
            spec.on_partial(f"question number {i} words")  # nothing new
            await _settle(spec)
        return spec, models

    spec, models = asyncio.run(scenario())
    assert spec.stats.searches == 3
    assert models.prefilled == ["0", "1", "2"]


def test_closing_cancels_a_prefill_in_flight() -> None:
    async def scenario() -> tuple[FakeModels, Speculator]:
        models = FakeModels(block_prefill=True)
        spec = _speculator(models, {"how do I amend a commit": [A]})
        spec.on_partial("how do I amend a commit")
        for _ in range(100):  # a few loop iterations: retrieval, then the prefill starts
            if models.prefilled:
                break
            await asyncio.sleep(0)
        await spec.aclose()
        spec.on_partial("how do I amend a commit now")  # closed: nothing more starts
        return models, spec

    models, spec = asyncio.run(scenario())
    assert models.prefill_cancelled
    assert spec.stats.searches == 1


def test_a_final_transcript_saying_what_the_partial_said_needs_no_new_search() -> None:
    searched: list[str] = []

    async def scenario() -> tuple[Speculator, list[Source]]:
        async def retrieve(question: str) -> list[Source]:
            searched.append(question)
            return [A]

        spec = Speculator(retrieve, FakeModels(), _prefix, Metrics())  # type: ignore[arg-type]
        spec.on_partial("how do I amend a commit")
        await _settle(spec)
        return spec, await spec.retriever()("How do I amend a commit?")

    spec, used = asyncio.run(scenario())
    assert used == [A]
    assert searched == ["how do I amend a commit"]  # the partial's search only
    assert spec.stats.outcome == "hit"
