"""The answer pipeline with fakes at the model and retrieval seams."""

from __future__ import annotations

import asyncio

import pytest

from orchestrator.errors import StoreUnavailable
from orchestrator.metrics import Metrics
from orchestrator.pipeline import AnswerOptions, Retriever, Source, answer
from orchestrator.prompt import NO_ANSWER
from orchestrator.turn import Phase, Timings, Turn
from tests.unit.fakes import FakeModels, ListSink

SOURCE = Source(
    n=1,
    title="Guide",
    source="docs/guide.md",
    heading_path=["Start"],
    snippet="Run make up.",
    text="To start the local stack, run make up. Then open the URL it prints: a first sentence, "
    "then a second, then a third.",
)


async def _retrieve_ok(question: str) -> list[Source]:
    return [SOURCE]


async def _retrieve_down(question: str) -> list[Source]:
    raise StoreUnavailable("database is down")


async def _run(models: FakeModels, retrieve=_retrieve_ok, **opts: object) -> tuple[ListSink, Timings, object]:  # type: ignore[no-untyped-def]
    sink = ListSink()
    turn = Turn.begin(3, Phase.ANSWERING)
    result = await answer(
        "How do I start it?",
        turn,
        sink=sink,
        models=models,
        retrieve=retrieve,
        history=[],
        options=AnswerOptions(**opts),  # type: ignore[arg-type]
        metrics=Metrics(),
    )
    return sink, turn.timings, result


def test_streams_sources_deltas_audio_and_done() -> None:
    models = FakeModels(["Run make", " up [1]. Then", " open the URL."])
    sink, timings, result = asyncio.run(_run(models))
    kinds = sink.kinds()
    assert kinds[0] == "sources"
    assert sink.of("sources")[0]["sources"][0]["title"] == "Guide"  # type: ignore[index]
    assert "".join(e["text"] for e in sink.of("answer.delta")) == "Run make up [1]. Then open the URL [1]."  # type: ignore[misc]
    assert sink.of("answer.done")[0]["text"] == "Run make up [1]. Then open the URL [1]."
    assert models.spoken == ["Run make up.", "Then open the URL."]  # citations are not read aloud
    assert kinds.count("audio") == 4
    assert [h.seq for h in sink.audio_headers()] == [0, 1, 2, 3]
    assert {h.turn for h in sink.audio_headers()} == {3}
    assert result.spoken  # type: ignore[attr-defined]
    assert None not in (
        timings.retrieval,
        timings.llm_first_token,
        timings.tts_first_audio,
        timings.first_audio,
    )
    assert "run make up." in models.prompts[0]  # the passage is in the prompt


def test_first_sentence_is_spoken_before_generation_ends() -> None:
    models = FakeModels(["First sentence. ", "Second", " sentence", " here", "."], delay=0.01)
    sink, _, _ = asyncio.run(_run(models))
    kinds = sink.kinds()
    first_audio = kinds.index("audio")
    last_delta = len(kinds) - 1 - kinds[::-1].index("answer.delta")
    assert first_audio < last_delta


def test_speech_failure_still_delivers_the_text() -> None:
    sink, _, result = asyncio.run(_run(FakeModels(["A first sentence. ", "Then a second."], tts_fails=True)))
    errors = sink.of("error")
    assert len(errors) == 1
    assert errors[0]["code"] == "model_unavailable"
    assert errors[0]["fatal"] is False
    assert sink.of("answer.done")[0]["text"] == "A first sentence [1]. Then a second [1]."
    assert "audio" not in sink.kinds()
    assert not result.spoken  # type: ignore[attr-defined]


def test_retrieval_failure_answers_flagged_without_sources() -> None:
    models = FakeModels(["I have no documents right now."])
    sink, _, result = asyncio.run(_run(models, retrieve=_retrieve_down))
    sources = sink.of("sources")[0]
    assert sources["available"] is False
    assert sources["sources"] == []
    error = sink.of("error")[0]
    assert (error["code"], error["fatal"], error["turn"]) == ("store_unavailable", False, 3)
    assert sink.kinds().index("error") < sink.kinds().index("sources")
    assert "search is unavailable" in models.prompts[0]
    assert sink.of("answer.done")[0]["text"] == "I have no documents right now."
    assert result.sources_available is False  # type: ignore[attr-defined]


def test_text_only_answers_skip_speech() -> None:
    # More sentences than the speech queue holds: nothing may wait for a speaker that is not there.
    models = FakeModels([f"Sentence {i}. " for i in range(40)])
    sink, _, _ = asyncio.run(_run(models, speak=False))
    assert models.spoken == []
    assert "audio" not in sink.kinds()


def test_cancelling_closes_both_model_streams() -> None:
    models = FakeModels(["A sentence. "] + ["then "] * 200, delay=0.005)

    async def scenario() -> None:
        task = asyncio.create_task(_run(models))
        await asyncio.wait_for(models.speaking.wait(), timeout=10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert "llm" in models.closed


def test_speech_behind_a_full_queue_still_finishes_every_sentence() -> None:
    # Generation outruns speech until the sentence queue is full; the end of the answer must
    # still reach the speaker, and every sentence must be spoken.
    models = FakeModels([f"Sentence {i}. " for i in range(30)], tts_delay=0.002)
    # Search down: no gate, so the answer may be as long as max_sentences allows.
    run = _run(models, retrieve=_retrieve_down, max_sentences=30)
    sink, _, result = asyncio.run(asyncio.wait_for(run, timeout=60))
    assert len(models.spoken) == 30
    assert sink.kinds().count("audio") == 60
    assert result.spoken  # type: ignore[attr-defined]


GIT = Source(
    n=1,
    title="git-commit",
    source="git-commit.html",
    heading_path=["OPTIONS"],
    snippet="--amend",
    text="--amend: Replace the tip of the current branch by creating a new commit.",
)


async def _retrieve_git(question: str) -> list[Source]:
    return [GIT]


async def _ask(
    question: str, models: FakeModels, retrieve: Retriever = _retrieve_git
) -> tuple[ListSink, object]:
    sink = ListSink()
    result = await answer(
        question,
        Turn.begin(1, Phase.ANSWERING),
        sink=sink,
        models=models,
        retrieve=retrieve,
        history=[],
        options=AnswerOptions(),
        metrics=Metrics(),
    )
    return sink, result


def test_a_question_the_documents_do_not_touch_is_declined_without_the_llm() -> None:
    models = FakeModels(["Paris [1]."])
    sink, result = asyncio.run(_ask("What is the capital of France?", models))
    assert models.prompts == []  # the LLM was not asked
    done = sink.of("answer.done")[0]
    assert (done["text"], done["declined"], done["decline_reason"], done["citations"]) == (
        NO_ANSWER,
        True,
        "not_in_documents",
        [],
    )
    assert models.spoken == [NO_ANSWER]
    assert result.declined  # type: ignore[attr-defined]


def test_an_answer_the_passages_do_not_back_is_never_shown_or_spoken() -> None:
    models = FakeModels(["The current branch ", "is called main in Paris, France. ", "It is old."])
    sink, _ = asyncio.run(_ask("What is the current branch called?", models))
    assert [e["text"] for e in sink.of("answer.delta")] == [NO_ANSWER]
    assert sink.of("answer.done")[0]["decline_reason"] == "unsupported"
    assert "Paris" not in " ".join(models.spoken)
    assert "llm" in models.closed  # generation was stopped, not drained


def test_the_model_saying_it_cannot_answer_becomes_the_stable_sentence() -> None:
    models = FakeModels(["The passages do not mention the branch name."])
    sink, _ = asyncio.run(_ask("What is the current branch called?", models))
    done = sink.of("answer.done")[0]
    assert (done["text"], done["decline_reason"]) == (NO_ANSWER, "model_declined")


def test_answers_are_cited_and_a_repetition_ends_them() -> None:
    sentence = "Amend replaces the tip of the current branch with a new commit. "
    models = FakeModels([sentence, sentence, sentence, "And more."])
    sink, _ = asyncio.run(_ask("What does amend do?", models))
    done = sink.of("answer.done")[0]
    assert done["text"] == "Amend replaces the tip of the current branch with a new commit [1]."
    assert (done["citations"], done["declined"]) == ([1], False)
    assert models.spoken == ["Amend replaces the tip of the current branch with a new commit."]
    assert "llm" in models.closed


def test_a_model_that_only_points_at_a_passage_is_answered_from_that_passage() -> None:
    # Qwen2.5-Coder-0.5B often replies "[1]" and nothing else: that passage's first sentence (the
    # passage is given from the part the question is about) is the answer, cited.
    models = FakeModels(["[1]"])
    sink, _ = asyncio.run(_ask("What does amend do?", models))
    done = sink.of("answer.done")[0]
    assert done["text"] == "--amend: Replace the tip of the current branch by creating a new commit [1]."
    assert (done["citations"], done["declined"]) == ([1], False)
    assert models.spoken == ["amend: Replace the tip of the current branch by creating a new commit."]


def test_pointing_at_a_passage_that_does_not_exist_is_a_decline() -> None:
    models = FakeModels(["[7]"])
    sink, _ = asyncio.run(_ask("What does amend do?", models))
    done = sink.of("answer.done")[0]
    assert (done["text"], done["declined"], done["decline_reason"]) == (NO_ANSWER, True, "unsupported")


def test_a_pointed_passage_whose_lead_only_shares_the_heading_words_is_a_decline() -> None:
    models = FakeModels(["[1]"])
    profiles = Source(
        n=1,
        title="Models",
        source="docs/models.md",
        heading_path=["Profiles"],
        snippet="",
        text="The 135M model answers nothing right, so it is no longer a profile's model.",
    )

    async def retrieve(question: str) -> list[Source]:
        return [profiles]

    sink, _ = asyncio.run(_ask("What is the default model profile?", models, retrieve))
    done = sink.of("answer.done")[0]
    assert (done["text"], done["decline_reason"]) == (NO_ANSWER, "unsupported")
