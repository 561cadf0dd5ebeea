"""The grounding gate: declining, citing and stopping, decided from the passages' own words."""

from __future__ import annotations

import pytest

from orchestrator.grounding import (
    DeclineReason,
    Evidence,
    cited_numbers,
    is_model_decline,
    strip_citations,
    support,
    terms,
    without_copied_markup,
)

AMEND = (
    "--amend: Replace the tip of the current branch by creating a new commit. The recorded tree is "
    "prepared as usual, and the message from the original commit is used as the starting point."
)
PRUNE = (
    "-p, --prune: Before fetching, remove any remote-tracking references that no longer exist on the remote."
)
CRLF = "core.autocrlf: Setting this variable to true converts CRLF line endings in the working tree."


def test_terms_split_identifiers_drop_stop_words_and_match_inflections() -> None:
    assert terms("How do I use --amend with the VOICEBOT_DEV_MODE setting?") == [
        "amend",
        "voicebot",
        "dev",
        "mode",
        "set",
    ]
    assert set(terms("commits committed committing")) == {"commit"}
    assert set(terms("changes changed change")) == {"chang"}
    assert terms("core.autocrlf") == ["core", "autocrlf"]
    assert terms("It cites [1] and [2, 3].") == ["cit"]


def test_support_is_the_share_of_words_found() -> None:
    assert support(["a", "b"], {"a"}) == 0.5
    assert support([], set()) == 1.0


@pytest.mark.parametrize(
    "question",
    ["What is the capital of France?", "How do I configure a VPN on Windows?", "Who won the world cup?"],
)
def test_questions_the_passages_do_not_touch_are_declined_before_the_llm(question: str) -> None:
    assert Evidence(question, [AMEND, PRUNE]).before_generation() is DeclineReason.NOT_IN_DOCUMENTS


def test_a_question_the_passages_answer_goes_to_the_llm() -> None:
    evidence = Evidence("How do I replace the tip of my branch with a new commit?", [PRUNE, AMEND])
    assert evidence.before_generation() is None


def test_nothing_retrieved_is_declined() -> None:
    assert Evidence("How do I amend a commit?", []).before_generation() is DeclineReason.NO_PASSAGES


def test_an_answer_from_memory_is_refused() -> None:
    evidence = Evidence("What does amend do?", [AMEND])
    verdict = evidence.check("Paris is the capital and largest city of France.")
    assert not verdict.keep
    assert verdict.reason is DeclineReason.UNSUPPORTED


def test_a_supported_sentence_gets_the_citation_of_the_passage_behind_it() -> None:
    evidence = Evidence("How do I drop stale remote branches when fetching?", [AMEND, PRUNE])
    verdict = evidence.check("Use --prune to remove remote-tracking references that no longer exist.")
    assert verdict.keep
    assert verdict.citations == (2,)
    assert verdict.text == "Use --prune to remove remote-tracking references that no longer exist [2]."


def test_an_invented_or_wrong_citation_is_replaced() -> None:
    for cited in ("[7]", "[1]", "[2]", ""):
        evidence = Evidence("How do I drop stale remote branches?", [AMEND, PRUNE])
        verdict = evidence.check(f"Fetch with --prune to remove stale references {cited}.")
        assert verdict.citations == (2,), cited


def test_a_repeated_sentence_ends_the_answer() -> None:
    evidence = Evidence("What does amend do?", [AMEND])
    assert evidence.check("The amend option replaces the tip of the current branch.").keep
    again = evidence.check("The amend option replaces the tip of the current branch [1].")
    assert (again.keep, again.repeated) == (False, True)


@pytest.mark.parametrize(
    "sentence",
    [
        "The passages do not mention that.",
        "I couldn't find that in the documents.",
        "The documents don't say what the capital of France is.",
        "There is no information about VPNs in the passages.",
    ],
)
def test_a_model_saying_it_cannot_answer_is_recognised(sentence: str) -> None:
    assert is_model_decline(sentence)


def test_an_answer_is_not_mistaken_for_a_decline() -> None:
    assert not is_model_decline("Use --amend to replace the tip of the current branch [1].")


def test_citation_helpers() -> None:
    assert cited_numbers("One [1]. Two [2, 3].") == [1, 2, 3]
    assert strip_citations("Set it to true [1].") == "Set it to true."


def test_a_sentence_merely_saying_does_not_is_no_decline() -> None:
    assert not is_model_decline("A soft reset does not touch the index file or the working tree [1].")


def test_a_copied_passage_header_alone_is_skipped() -> None:
    evidence = Evidence(
        "Which tier runs ruff?", ["Architecture › Tests tier folder runs against lint types ruff mypy"]
    )
    verdict = evidence.check("[1] Architecture › Tests")
    assert (verdict.keep, verdict.skip) == (False, True)


def test_a_copied_table_row_is_said_as_its_cells() -> None:
    table = "| variable | default | meaning |\n|---|---|---|\n| `VOICEBOT_PORT` | `8080` | Port the gateway listens on. |"
    verdict = Evidence("Which port does the gateway use?", [table]).check(table)
    assert verdict.keep
    assert verdict.text == "`VOICEBOT_PORT`, `8080`, Port the gateway listens on [1]."


def test_a_piece_of_a_row_cut_inside_a_cell_loses_its_bars_too() -> None:
    # The sentence splitter cuts a row at a full stop inside a cell: no "|" may be shown or spoken.
    piece = "LLM streams get 4 × this | | `VOICEBOT_LLM_MAX_TOKENS` | 64 (default 256) | a spoken answer [1]"
    assert without_copied_markup(piece) == (
        "LLM streams get 4 × this, `VOICEBOT_LLM_MAX_TOKENS`, 64 (default 256), a spoken answer [1]"
    )


def test_a_copied_header_is_dropped_and_the_answer_after_it_kept() -> None:
    evidence = Evidence("What does amend do?", [AMEND])
    verdict = evidence.check(
        "[1] git-commit › OPTIONS\n## Amend\nAmend replaces the tip of the current branch."
    )
    assert verdict.keep
    assert verdict.text == "Amend replaces the tip of the current branch [1]."


def test_a_first_sentence_that_shares_nothing_with_the_question_is_refused() -> None:
    # What CI saw: Whisper heard "where does the locals tack keep it slugs", and the model copied the
    # opening of the "local stack" section, about components. Backed by the passage, but no answer.
    section = (
        "Every part is a Component (orchestrator/stack/component.py): its ports, start, wait_ready, "
        "check_alive, stop. Logs go to .voicebot/logs/<component>.log."
    )
    evidence = Evidence("where does the locals tack keep it slugs", [section])
    verdict = evidence.check("Every part is a Component (orchestrator/stack/component.py): its ports [1].")
    assert (verdict.keep, verdict.reason) == (False, DeclineReason.UNSUPPORTED)
    heard = Evidence("Where does the local stack keep its logs?", [section])
    assert heard.check("Logs go to .voicebot/logs/<component>.log [1].").keep
    # A question that says little may be answered in other words.
    assert Evidence("How do I start it?", ["To start it, run make up."]).check("Run make up [1].").keep


def test_a_first_sentence_that_only_says_the_question_back_is_refused() -> None:
    # From the voice benchmark: Whisper heard the question garbled, and the model echoed it.
    search = (
        "Hybrid search: the passages found by the vector index (HNSW) and by the full-text index are "
        "ranked by reciprocal rank fusion."
    )
    heard = "how does the hybrid search rank the passage of it, finds, and which index serves the vectors?"
    evidence = Evidence(heard, [search])
    echo = evidence.check(
        "The hybrid search rank the passage of it, finds, and which index serves the vectors [1]."
    )
    assert (echo.keep, echo.reason) == (False, DeclineReason.UNSUPPORTED)
    # An answer adds what the question did not say; a yes or no may repeat it.
    answer = Evidence(heard, [search]).check("It ranks them by reciprocal rank fusion [1].")
    assert answer.keep
    available = "Hands-free mode is available in the browser."
    assert (
        Evidence("Is hands-free mode available?", [available])
        .check("Yes, hands-free mode is available [1].")
        .keep
    )
