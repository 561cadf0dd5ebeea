"""The pure parts of `make eval-answers` (tests/bench/eval_answers.py): normalisation, keyword
matching, decline detection, citations and their check, WER, the speech plan, the figures; and
the pinned question and page lists being what docs/quality.md says they are."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from orchestrator.prompt import NO_ANSWER
from tests.bench.eval_answers import (
    CORPORA_LIST,
    NOISE_SNR_DB,
    RATES_WPM,
    VOICES,
    PathResult,
    QuestionRecord,
    all_figures,
    check_citations,
    cited_numbers,
    holds,
    interleave,
    is_decline,
    load_questions,
    matches_keywords,
    missed_groups,
    normalise,
    parse_sse,
    resolve_passage,
    select,
    speech_plan,
    summarize,
    table,
    verdict,
    word_error_rate,
)

# ---- normalisation and keywords -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Use `git reset --soft`", "use git reset soft"),
        ("VOICEBOT_DEV_MODE=true", "voicebot dev mode true"),
        ('"Quoted" and \u2018curly\u2019 text', "quoted and curly text"),
        ("someone else's commits", "someone elses commits"),
        ("1,000,000,000 bytes", "1000000000 bytes"),
        ("two weeks, ten databases", "2 weeks 10 databases"),
        ("  spaced\n\tout  ", "spaced out"),
        ("journal_mode=WAL", "journal mode wal"),
    ],
)
def test_normalise(text: str, expected: str) -> None:
    assert normalise(text) == expected


def test_keywords_need_every_group_and_take_any_alternative() -> None:
    groups = [["reset"], ["soft", "keep the changes"]]
    assert matches_keywords("Run git reset --soft HEAD~1 [1].", groups)
    assert matches_keywords("git reset, which will keep the changes staged", groups)
    assert not matches_keywords("Use git reset --hard.", groups)
    assert missed_groups("Use git reset --hard.", groups) == [1]
    assert missed_groups("Nothing relevant.", groups) == [0, 1]


def test_keywords_match_whole_words_with_plain_inflections() -> None:
    assert matches_keywords("The merge strategy is ort.", [["ort"]])
    assert not matches_keywords("Sort the report.", [["ort"]])
    assert matches_keywords("It aborts the merge.", [["abort"]])
    assert matches_keywords("The rebase is aborted.", [["abort"]])
    assert not matches_keywords("Use the abortive option.", [["abort"]])


def test_keywords_compare_identifiers_and_numbers_normalised() -> None:
    assert matches_keywords("Pass `--force-with-lease`.", [["force with lease"]])
    assert matches_keywords("Set PRAGMA foreign_keys = ON", [["pragma"], ["foreign keys"]])
    assert matches_keywords("The limit is 1,000,000,000 bytes.", [["1000000000", "1 billion"]])
    assert matches_keywords("It is set to ten by default.", [["10"]])
    assert matches_keywords("Loose objects older than 2 weeks go.", [["two weeks"]])


def test_a_citation_marker_is_not_a_number() -> None:
    groups = [["integer"], ["0", "zero"], ["1", "one"]]
    assert not matches_keywords("They are stored as integers [1].", groups)
    assert matches_keywords("They are stored as integers 0 and 1 [1].", groups)


def test_no_groups_is_never_right() -> None:
    assert not matches_keywords("anything", [])


# ---- declines -----------------------------------------------------------------------------------


def test_the_stable_sentence_is_a_decline_wherever_it_is() -> None:
    assert is_decline(NO_ANSWER)
    assert is_decline(f"Sorry. {NO_ANSWER.upper()}")
    assert is_decline(NO_ANSWER.rstrip(".") + " [1]")
    assert not is_decline("Paris is the capital of France.")
    assert not is_decline("")


def test_a_declined_field_wins_and_the_sentence_can_be_given() -> None:
    assert is_decline("Something else entirely.", declined=True)
    assert not is_decline("Paris.", declined=False)
    assert is_decline(NO_ANSWER, declined=False)  # the field says no but the product said its sentence
    assert is_decline("The documents do not say.", no_answer="The documents do not say.")
    assert not is_decline(NO_ANSWER, no_answer="The documents do not say.")


# ---- citations ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("Use reset [1].", [1]),
        ("Use reset [2][1], see also [2].", [2, 1]),
        ("Both work [1, 3] and [ 2 ].", [1, 3, 2]),
        ("No citation here.", []),
        ("An [n] placeholder and a [link] are not citations.", []),
    ],
)
def test_cited_numbers(answer: str, expected: list[int]) -> None:
    assert cited_numbers(answer) == expected


def test_citation_check() -> None:
    passages = ["git reset --soft does not touch the index file", "unrelated text", None]
    needle = "does not touch the index file"
    assert check_citations("Use --soft [1].", passages, needle).correct is True
    assert check_citations("Use --soft [2].", passages, needle).correct is False
    assert check_citations("Use --soft [2][1].", passages, needle).correct is True  # one cited holds it
    assert check_citations("Use --soft [4].", passages, needle).correct is False  # no such passage
    assert check_citations("Use --soft [0].", passages, needle).correct is False
    assert check_citations("Use --soft [3].", passages, needle).correct is False  # not resolved
    no_citation = check_citations("Use --soft.", passages, needle)
    assert no_citation.correct is None
    assert not no_citation.any
    unknown = check_citations("Use --soft [1].", None, needle)  # the API gave no sources
    assert unknown.correct is None
    assert unknown.any


def test_holds_ignores_markup_and_spacing() -> None:
    assert holds("Does *not* touch the\n index `file`", "does not touch the index file")
    assert not holds(None, "x")
    assert not holds("something else", "does not touch")


def test_resolve_passage_from_the_snippet() -> None:
    chunks = {
        "file:///c/git/git-reset.html": [
            "--soft\n\nDoes not touch the index file or the working tree at all."
        ],
        "file:///c/git/git-stash.html": ["Use git stash when you want to record the current state."],
    }
    source = {"source": "file:///c/git/git-reset.html", "snippet": "--soft Does not touch the index"}
    assert resolve_passage(source, chunks) == chunks["file:///c/git/git-reset.html"][0]
    inside = {"source": "file:///c/git/git-stash.html", "snippet": "record the current state"}
    assert resolve_passage(inside, chunks) == chunks["file:///c/git/git-stash.html"][0]
    elsewhere = {"source": "file:///c/git/git-stash.html", "snippet": "Does not touch the index"}
    assert resolve_passage(elsewhere, chunks) is None
    assert resolve_passage({"source": "file:///c/git/git-reset.html", "snippet": ""}, chunks) is None
    assert resolve_passage({"text": "the whole passage", "snippet": "x"}, chunks) == "the whole passage"


def test_parse_sse_reads_the_chat_stream() -> None:
    stream = (
        'event: sources\ndata: {"type": "sources", "available": true, "sources": [{"n": 1}]}\n\n'
        'event: delta\ndata: {"type": "answer.delta", "text": "Use"}\n\n'
        'event: done\r\ndata: {"type": "answer.done", "text": "Use reset [1]."}\r\n\r\n'
        'data: {"unnamed": 1}\n\n'
    )
    events = parse_sse(stream)
    assert [name for name, _ in events] == ["sources", "delta", "done", "message"]
    assert events[0][1]["sources"] == [{"n": 1}]
    assert events[2][1]["text"] == "Use reset [1]."


# ---- WER, speech, verdicts ----------------------------------------------------------------------


def test_word_error_rate() -> None:
    assert word_error_rate(["How do I undo my last commit?"], ["how do i undo my last commit"]) == 0.0
    assert word_error_rate(["one two three four"], ["one two three five"]) == pytest.approx(0.25)
    # Corpus WER: all edits over all reference words, not the mean of per-utterance rates.
    assert word_error_rate(["a b c d", "e f"], ["a b c d", "x"]) == pytest.approx(2 / 6)
    assert word_error_rate([], []) is None


def test_speech_plan_is_deterministic_and_varied() -> None:
    questions = load_questions()
    plans = [speech_plan(q.id) for q in questions]
    assert plans == [speech_plan(q.id) for q in questions]
    assert {p.voice for p in plans} == set(VOICES)
    assert {p.rate_wpm for p in plans} == set(RATES_WPM)
    noisy = sum(1 for p in plans if p.noise_snr_db == NOISE_SNR_DB)
    assert 0.25 <= noisy / len(plans) <= 0.42  # about a third of the questions with noise


@pytest.mark.parametrize(
    ("answerable", "answer", "declined", "error", "expected"),
    [
        (True, "Use git reset --soft [1].", False, None, "right"),
        (True, "Use git revert.", False, None, "wrong"),
        (True, NO_ANSWER, True, None, "declined"),
        (False, NO_ANSWER, True, None, "declined"),
        (False, "Paris.", False, None, "answered"),
        (True, "", False, "client_timeout", "error"),
        (True, "Use git reset --soft.", False, "timeout after the answer", "right"),
    ],
)
def test_verdict(answerable: bool, answer: str, declined: bool, error: str | None, expected: str) -> None:
    assert verdict(answerable, answer, declined, [["reset"], ["soft"]], error) == expected


# ---- figures ------------------------------------------------------------------------------------


def _record(
    i: int, *, corpus: str = "git", split: str = "tune", answerable: bool = True, rank: int | None = 1
) -> QuestionRecord:
    return QuestionRecord(
        id=f"{corpus}-{i}",
        corpus=corpus,
        split=split,
        answerable=answerable,
        question="how do I undo my last commit",
        page="git-reset.html" if answerable else None,
        needle="does not touch" if answerable else None,
        needle_in_corpus=True if answerable else None,
        retrieval_rank=rank if answerable else None,
    )


def test_summarize_counts_each_figure_over_its_own_questions() -> None:
    records = [_record(i) for i in range(4)] + [_record(9, answerable=False), _record(8, answerable=False)]
    records[0].retrieval_rank = 1
    records[1].retrieval_rank = 3
    records[2].retrieval_rank = None
    records[3].retrieval_rank = 1
    records[2].retrieval_page_rank = 2  # the page came back, not the passage with the needle
    for r in (records[0], records[1], records[3]):
        r.retrieval_page_rank = 1
    records[0].text = PathResult(
        answer="a [1]", verdict="right", cited=[1], citation_correct=True, chat_ms=100
    )
    records[1].text = PathResult(
        answer="b [2]", verdict="wrong", cited=[2], citation_correct=False, chat_ms=300
    )
    records[2].text = PathResult(answer="c", verdict="right", chat_ms=200)
    records[3].text = PathResult(answer=NO_ANSWER, verdict="declined", declined=True, chat_ms=400)
    records[4].text = PathResult(answer=NO_ANSWER, verdict="declined", declined=True, chat_ms=50)
    records[5].text = PathResult(answer="Paris", verdict="answered", chat_ms=60)
    f = summarize(records, "text")
    assert f["questions"] == 6
    assert f["answer_accuracy"] == 0.5  # 2 right of 4 answerable
    assert f["abstention_accuracy"] == 0.5  # 1 declined of 2 unanswerable
    assert f["false_declines"] == 0.25
    assert f["cited_share"] == round(2 / 3, 3)  # of the 3 answered (not declined) answerable
    assert f["citation_correctness"] == 0.5
    assert f["retrieval_hit@1"] == 0.5
    assert f["retrieval_hit@5"] == 0.75
    assert f["retrieval_page_hit@5"] == 1.0
    assert f["chat_ms_p50"] == 150.0
    assert "wer" not in f


def test_voice_figures_have_wer_and_time_to_first_audio() -> None:
    records = [_record(i) for i in range(2)]
    records[0].voice = PathResult(verdict="right", transcript="how do I undo my last commit", ttfa_ms=1000)
    records[1].voice = PathResult(verdict="wrong", transcript="how do I undo my lost commit", ttfa_ms=3000)
    f = summarize(records, "voice")
    assert f["wer"] == round(1 / 14, 3)
    assert f["ttfa_ms_p50"] == 2000.0
    assert f["ttfa_ms_p95"] == 2900.0


def test_figures_by_path_split_and_corpus_and_the_table() -> None:
    records = [_record(1), _record(2, split="heldout"), _record(3, corpus="sqlite")]
    for r in records:
        r.text = PathResult(answer="x", verdict="right")
    figures = all_figures(records, ["text"])
    assert set(figures["text"]) == {"tune", "heldout", "all"}
    assert set(figures["text"]["tune"]) == {"git", "sqlite", "all"}
    assert figures["text"]["heldout"]["all"]["questions"] == 1
    assert figures["text"]["all"]["all"]["questions"] == 3
    printed = table(figures)
    assert re.search(r"^text\s+heldout\s+git\s+1\s+1\.00", printed, re.MULTILINE)
    voice = [_record(1)]
    voice[0].voice = PathResult(
        verdict="wrong", transcript="completely different words here and more of them now too", ttfa_ms=1234.5
    )
    row = table(all_figures(voice, ["voice"])).splitlines()[2]
    assert "1.43" in row  # 7 substitutions and 3 insertions over 7 words: a WER over 1 keeps its decimals
    assert " 1234 " in row or " 1235 " in row  # milliseconds as whole numbers


def test_a_question_without_a_path_result_is_left_out_of_that_path() -> None:
    record = _record(1)
    assert summarize([record], "voice")["questions"] == 0
    assert summarize([record], "voice")["answer_accuracy"] is None


# ---- the pinned question and page lists ---------------------------------------------------------


def test_selection_interleaves_corpora_and_keeps_general_questions() -> None:
    questions = load_questions()
    first = select(questions, "tune", None, 6)
    assert [q.corpus for q in first[:3]] == ["git", "sqlite", "general"]
    assert all(q.split == "tune" for q in first)
    git_only = select(questions, "all", ["git"], None)
    assert {q.corpus for q in git_only} == {"git", "general"}
    assert len(interleave(questions)) == len(questions)


def test_the_question_file_is_what_the_eval_needs() -> None:
    questions = load_questions()
    corpora = {c["name"]: set(c["pages"]) for c in json.loads(CORPORA_LIST.read_text())["corpora"]}
    assert len({q.id for q in questions}) == len(questions)
    answerable = [q for q in questions if q.answerable]
    assert len(answerable) >= 80
    assert len(questions) - len(answerable) >= 20
    for q in answerable:
        assert q.page in corpora[q.corpus], q.id
        assert q.needle, q.id
        assert q.keywords, q.id
        assert all(group for group in q.keywords), q.id
    # Half tune, half held out, for each corpus and answerability.
    by = Counter((q.corpus, q.answerable, q.split) for q in questions)
    for corpus in {q.corpus for q in questions}:
        for answerable_ in (True, False):
            assert by[(corpus, answerable_, "tune")] == by[(corpus, answerable_, "heldout")], corpus
    # Many pages, both corpora.
    assert len({q.page for q in answerable}) >= 40
    assert {q.corpus for q in answerable} == set(corpora)


def test_no_keyword_is_given_away_by_the_question() -> None:
    """An answer that only repeats the question must not pass: no group may match the question."""
    for q in load_questions():
        if q.answerable:
            assert missed_groups(q.question, q.keywords) == list(range(len(q.keywords))), q.id


def test_questions_are_speakable() -> None:
    """Only what espeak-ng reads as a person would: words, digits, plain punctuation."""
    for q in load_questions():
        assert re.fullmatch(r"[A-Za-z0-9 ,.?']+", q.question), q.id


def test_the_page_list_is_pinned_and_small() -> None:
    corpora = json.loads(CORPORA_LIST.read_text())["corpora"]
    assert len(corpora) >= 2
    for c in corpora:
        assert 20 <= len(c["pages"]) <= 40, c["name"]
        assert len(set(c["pages"])) == len(c["pages"])
        assert c["package"]
        assert c["root"].startswith("/usr/share/doc/")
