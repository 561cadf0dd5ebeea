"""Speculative retrieval and prefill on partial transcripts, with fakes at the retrieval and model seams."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from orchestrator.metrics import Metrics
from orchestrator.pipeline import Source
from orchestrator.speculation import Speculator, arrange
from tests.unit.fakes import FakeModels


def _source(n: int, name: str) -> Source:
    return Source(n=n, title=name, source=f"{name}.html", heading_path=[], snippet="", text=f"text of {name}")


A, B, C, D = _source(1, "a"), _source(2, "b"), _source(1, "c"), _source(3, "d")
CONVERSATION = "system|"


def _prefix(sources: Sequence[Source]) -> str:
    return CONVERSATION + "|".join(s.title for s in sources)


def _speculator(models: FakeModels, found: dict[str, list[Source]], **kwargs: float) -> Speculator:
    async def retrieve(question: str) -> list[Source]:
        return found[question]

    return Speculator(retrieve, models, _prefix, Metrics(), **kwargs)  # type: ignore[arg-type]  # kwargs: floats


async def _settle(speculator: Speculator) -> None:
    """Until the search and the prefills in flight are done (a blocked prefill: started)."""
    if speculator._task is not None:
        await asyncio.wait_for(asyncio.shield(speculator._task), timeout=10)
    for _ in range(100):
        await asyncio.sleep(0)


def _numbers(sources: Sequence[Source]) -> list[tuple[str, int]]:
    return [(s.title, s.n) for s in sources]


def test_arranging_keeps_the_warmed_start_and_numbers_passages_as_the_prompt_gives_them() -> None:
    assert _numbers(arrange([A, C, B], [A, B])[0]) == [("a", 1), ("b", 2), ("c", 3)]
    assert arrange([A, C, B], [A, B])[1] == 2
    # The warmed prompt's second passage is gone: only its first is kept, the rest by rank.
    assert _numbers(arrange([A, C, D], [A, B, D])[0]) == [("a", 1), ("c", 2), ("d", 3)]
    # The passage ranked first is not the warmed first: the final ranking as it is.
    assert _numbers(arrange([B, A, C], [A, B])[0]) == [("b", 1), ("a", 2), ("c", 3)]
    assert arrange([C, D], [A, B]) == ([C, _source(2, "d")], 0)


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
    assert models.prefilled == ["system|a|b"]
    assert used == [A, B]  # the warmed order, so the prompt starts with the cached prefix
    spec.stats.settle(answer_cached_tokens=100, cached_before=0)
    assert (spec.stats.outcome, spec.stats.prefill_tokens, spec.stats.wasted_tokens) == ("hit", 100, 0)
    assert spec.stats.as_timings()["speculative_kept_passages"] == 2


def test_a_final_transcript_sharing_the_first_warmed_passage_keeps_it_first() -> None:
    async def scenario() -> tuple[Speculator, list[Source]]:
        spec = _speculator(
            FakeModels(),
            {
                "where does the gateway keep logs": [A, B, D],
                "where does the gateway keep logs by default": [A, C],
            },
        )
        spec.on_partial("where does the gateway keep logs")
        await _settle(spec)
        return spec, await spec.retriever()("where does the gateway keep logs by default")

    spec, used = asyncio.run(scenario())
    # The final top two are {A, C}, not both warmed: not a hit, but A's tokens are reused.
    assert _numbers(used) == [("a", 1), ("c", 2)]
    assert (spec.stats.outcome, spec.stats.kept_passages) == ("partial", 1)


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
    spec.stats.settle(answer_cached_tokens=0, cached_before=0)
    assert (spec.stats.outcome, spec.stats.wasted_tokens) == ("miss", 100)


def test_the_conversation_is_warmed_at_once_and_passages_extend_it_without_cancelling_it() -> None:
    async def scenario() -> FakeModels:
        models = FakeModels(block_prefill=True)
        spec = _speculator(models, {"how do I amend a commit": [A]})
        spec.conversation = CONVERSATION
        spec.start()
        await _settle(spec)
        spec.on_partial("how do I amend a commit")
        await _settle(spec)
        prefilled = list(models.prefilled)
        cancelled = list(models.prefills_cancelled)
        await spec.aclose()
        assert (prefilled, cancelled) == (["system|", "system|a"], [])
        return models

    models = asyncio.run(scenario())
    assert sorted(models.prefills_cancelled) == ["system|", "system|a"]  # closing cancels both


def test_a_partial_finding_other_passages_supersedes_the_prefill_in_flight() -> None:
    async def scenario() -> tuple[Speculator, FakeModels, list[Source]]:
        models = FakeModels(block_prefill=True)
        found = {
            "amend the commit": [A, B],
            "amend the commit message": [B, C],
            "amend the commit message text": [C, B],
        }
        spec = _speculator(models, found, debounce_s=0.0)
        spec.on_partial("amend the commit")
        await _settle(spec)
        spec.on_partial("amend the commit message")
        await _settle(spec)
        cancelled = list(models.prefills_cancelled)
        used = await spec.retriever()("amend the commit message text")
        await spec.aclose()
        assert cancelled == ["system|a|b"]
        return spec, models, used

    spec, models, used = asyncio.run(scenario())
    assert models.prefilled == ["system|a|b", "system|b|c"]
    assert spec.stats.superseded == 1
    assert (spec.stats.outcome, _numbers(used)) == ("hit", [("b", 1), ("c", 2)])


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
    assert models.prefilled == ["system|0", "system|1", "system|2"]


def test_closing_cancels_a_prefill_in_flight() -> None:
    async def scenario() -> tuple[FakeModels, Speculator]:
        models = FakeModels(block_prefill=True)
        spec = _speculator(models, {"how do I amend a commit": [A]})
        spec.on_partial("how do I amend a commit")
        await _settle(spec)
        await spec.aclose()
        spec.on_partial("how do I amend a commit now")  # closed: nothing more starts
        return models, spec

    models, spec = asyncio.run(scenario())
    assert models.prefills_cancelled == ["system|a"]
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
