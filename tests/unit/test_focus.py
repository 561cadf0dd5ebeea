"""A passage given from the part the question is about (orchestrator/focus.py)."""

from __future__ import annotations

from orchestrator.focus import focus, lead, units
from orchestrator.grounding import only_citations
from orchestrator.pipeline import sources_from_hits

SECTION = (
    "Every part is a `Component` (`orchestrator/stack/component.py`): its ports, `start`,\n"
    "`wait_ready`, `check_alive`, `stop`. The runner (`orchestrator/stack/runner.py`) checks every\n"
    "port before it starts anything. Logs go to `.voicebot/logs/<component>.log`, and a failure\n"
    "prints the last lines of the guilty component's log with a hint. Adding a part is one\n"
    "`ProcessComponent` subclass and one line in `orchestrator/stack/local.py`."
)

TABLE = (
    "Settings of the gateway:\n\n"
    "| variable | type | default | meaning |\n"
    "|---|---|---|---|\n"
    "| `VOICEBOT_HOST` | str | `127.0.0.1` | Address the gateway binds. |\n"
    "| `VOICEBOT_PORT` | int | `8080` | Port the gateway listens on. |\n"
    "| `VOICEBOT_UI_DIR` | path | — | Static UI export to serve. |\n"
)


def test_a_section_is_given_from_the_sentence_the_question_is_about() -> None:
    shown = focus(
        SECTION, "Where does the local stack keep its logs?", 800, heading="Architecture The local stack"
    )
    assert shown.startswith("Logs go to `.voicebot/logs/<component>.log`")
    # ... on to the end of the passage, then what came before, so nothing is lost.
    logs, before = shown.split("\n\n")
    assert logs.endswith("`orchestrator/stack/local.py`.")
    assert before.startswith("Every part is a `Component`")
    assert before.endswith("checks every port before it starts anything.")


def test_the_words_of_the_heading_do_not_pick_the_part() -> None:
    # "local" and "stack" are in the last sentence's path too, but they are why the section was
    # found (its heading), so "logs" decides.
    shown = focus(SECTION, "local stack logs", 800, heading="The local stack")
    assert shown.startswith("Logs go to")


def test_a_passage_whose_start_is_as_good_as_any_part_is_left_alone() -> None:
    assert focus(SECTION, "What is a component?", 800) == SECTION
    assert focus(SECTION, "What is the capital of France?", 800) == SECTION
    assert focus(SECTION, "", 800) == SECTION


def test_a_table_row_keeps_its_header() -> None:
    shown = focus(TABLE, "Which port does it listen on?", 800, heading="Configuration Gateway")
    lines = shown.splitlines()
    assert lines[0] == "| variable | type | default | meaning |"
    assert lines[1] == "|---|---|---|---|"
    assert lines[2].startswith("| `VOICEBOT_PORT`")
    assert lines[3].startswith("| `VOICEBOT_UI_DIR`")
    assert lines[4:] == [
        "",
        "Settings of the gateway:",
        "| `VOICEBOT_HOST` | str | `127.0.0.1` | Address the gateway binds. |",
    ]


def test_the_focused_text_stays_within_its_budget() -> None:
    shown = focus(SECTION, "Where are the logs?", 200)
    assert shown.startswith("Logs go to")
    assert len(shown) <= 200
    # A first unit longer than the budget is cut, as the prompt would cut it.
    assert (
        focus(SECTION, "Where are the logs?", 60)
        == "Logs go to `.voicebot/logs/<component>.log`, and a failure p"
    )


def test_units_join_wrapped_lines_and_keep_lists_and_code_whole() -> None:
    text = "First sentence wraps\nonto a second line. Second one.\n\n- an item\n  that wraps\n- another\n\n```\ncode\n\nmore\n```"
    got = [u.text for u in units(text)]
    assert got == [
        "First sentence wraps onto a second line.",
        "Second one.",
        "- an item that wraps",
        "- another",
        "```\ncode\n\nmore\n```",
    ]


class _Hit:
    title = "Architecture"
    heading_path = ("The local stack",)
    source = "docs/architecture.md"
    text = SECTION


def test_citations_show_what_the_llm_read() -> None:
    (source,) = sources_from_hits([_Hit()], "Where does the local stack keep its logs?")
    assert source.text.startswith("Logs go to")
    assert source.snippet.startswith("Logs go to")
    (whole,) = sources_from_hits([_Hit()])
    assert whole.text == SECTION


def test_the_lead_of_a_passage_is_its_first_thing_worth_saying() -> None:
    table = focus(TABLE, "Which port does it listen on?", 800, heading="Configuration Gateway")
    assert lead(table) == "`VOICEBOT_PORT`, int, `8080`, Port the gateway listens on."
    assert lead("## Heading\n\n- an item that says it\n- another") == "an item that says it"
    assert lead("```\ncode only\n```") == ""
    assert lead(SECTION).startswith("Every part is a `Component`")


def test_only_citations() -> None:
    for said in ("[1]", " [2] [3].", "[1, 2]"):
        assert only_citations(said), said
    for said in ("Run make up [1].", "no citation"):
        assert not only_citations(said), said


def test_a_start_that_already_speaks_of_the_question_is_kept() -> None:
    # git-archive's OPTIONS: the definition comes first and answers "Which formats…?" best, although
    # a later sentence holds more of the question's words.
    options = (
        "--format=<fmt>: Format of the resulting archive. Possible values are tar, zip, tar.gz.\n"
        "If --format is not given, and the output file is specified, the format is inferred from the "
        "filename if possible (e.g. writing to foo.zip makes the output to be in the zip format)."
    )
    assert (
        focus(options, "Which formats can git archive write?", 800, heading="git-archive OPTIONS") == options
    )
