from __future__ import annotations

import pytest

from orchestrator.sentences import SentenceSplitter, speakable


def _split_stream(text: str, step: int) -> list[str]:
    splitter = SentenceSplitter()
    out: list[str] = []
    for i in range(0, len(text), step):
        out.extend(splitter.feed(text[i : i + step]))
    return out + splitter.flush()


@pytest.mark.parametrize("step", [1, 3, 7, 1000])
def test_sentences_come_out_whole_whatever_the_delta_size(step: int) -> None:
    text = "Voicebot answers questions. It cites its sources! Does it speak? Yes… while it writes."
    assert _split_stream(text, step) == [
        "Voicebot answers questions.",
        "It cites its sources!",
        "Does it speak?",
        "Yes…",
        "while it writes.",
    ]


def test_a_sentence_is_released_as_soon_as_it_ends() -> None:
    splitter = SentenceSplitter()
    assert splitter.feed("The gateway streams") == []
    assert splitter.feed(" audio. The") == ["The gateway streams audio."]
    assert splitter.flush() == ["The"]


def test_abbreviations_initials_and_list_numbers_do_not_cut() -> None:
    text = "Use a GPU, e.g. an H100 from J. Smith's lab. Steps:\n1. install it. Done."
    assert _split_stream(text, 5) == [
        "Use a GPU, e.g. an H100 from J. Smith's lab.",
        "Steps:\n1. install it.",
        "Done.",
    ]


def test_decimals_and_versions_do_not_cut() -> None:
    assert _split_stream("Version 2.5 is out. Python 3.11 works.", 4) == [
        "Version 2.5 is out.",
        "Python 3.11 works.",
    ]


def test_long_unpunctuated_text_is_cut_at_a_soft_boundary() -> None:
    splitter = SentenceSplitter(soft_limit=40)
    out = splitter.feed("this clause runs on and on without a stop, and then another clause keeps going")
    assert out == ["this clause runs on and on without a stop,"]


def test_a_soft_cut_never_splits_a_bracket_or_inline_code() -> None:
    # As the e2e phone screenshot once showed: "(not `npm ci`; [3] only when …)" cut at its ";"
    # put the citation in the middle of the spoken text.
    splitter = SentenceSplitter(soft_limit=40)
    text = "it runs the build, then `npm install` (not `npm ci`; only when the lock changed) and more"
    assert splitter.feed(text) == ["it runs the build,"]
    assert splitter.feed(" words, still") == [
        "then `npm install` (not `npm ci`; only when the lock changed) and more words,"
    ]


def test_flush_of_nothing_is_empty() -> None:
    assert SentenceSplitter().flush() == []


def test_speakable_drops_citations_and_markdown() -> None:
    assert speakable("Run **make up** [1] to start it [2, 3].") == "Run make up to start it."


@pytest.mark.parametrize(
    ("written", "spoken"),
    [
        ("Set VOICEBOT_DEV_MODE to true [1].", "Set voicebot dev mode to true."),
        ("Use git fetch --prune to drop them.", "Use git fetch prune to drop them."),
        ("Set core.autocrlf in config.toml.", "Set core dot autocrlf in config dot toml."),
        ("Python 3.11 works.", "Python 3.11 works."),
        ("Set `max_tokens` lower.", "Set max tokens lower."),
        ("See https://example.com/x for more.", "See the link for more."),
        ("- First, call TritonPythonModel.", "First, call Triton Python Model."),
        ("## Start\nRun it.", "Start Run it."),
        (
            "It keeps them in the `.voicebot/logs/<component>.log` file [1].",
            "It keeps them in the dot voicebot slash logs slash component dot log file.",
        ),
        ("The chart is in `charts/voicebot/`.", "The chart is in charts slash voicebot."),
    ],
)
def test_speakable_says_identifiers_the_way_a_person_does(written: str, spoken: str) -> None:
    assert speakable(written) == spoken


def test_code_blocks_are_not_spoken_and_not_cut_inside() -> None:
    text = "Run this:\n```sh\nmake up. make test.\n```\nThen open the page. Done."
    sentences = _split_stream(text, 4)
    assert sentences == ["Run this:\n```sh\nmake up. make test.\n```\nThen open the page.", "Done."]
    assert speakable(sentences[0]) == "Run this: Then open the page."
