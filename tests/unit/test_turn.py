"""The turn state machine (orchestrator/turn.py): every allowed transition, every refused one."""

from __future__ import annotations

import itertools

import pytest

from orchestrator.turn import FOLLOWABLE, TRANSITIONS, Phase, Timings, TransitionError, Turn

ALLOWED = [(a, b) for a, targets in TRANSITIONS.items() for b in sorted(targets)]
REFUSED = [(a, b) for a, b in itertools.product(Phase, Phase) if b not in TRANSITIONS[a]]


def test_the_table_covers_every_phase_and_the_documented_path() -> None:
    assert set(TRANSITIONS) == set(Phase)
    spoken = ["new", "idle", "listening", "transcribing", "answering", "speaking", "done"]
    turn = Turn(1, Phase.NEW)
    for phase in spoken[1:]:
        turn.to(Phase(phase))
    assert turn.path == [Phase(p) for p in spoken]
    assert turn.outcome == "ok"


@pytest.mark.parametrize(("current", "wanted"), ALLOWED, ids=[f"{a}->{b}" for a, b in ALLOWED])
def test_every_allowed_transition(current: Phase, wanted: Phase) -> None:
    turn = Turn(4, current)
    turn.to(wanted)
    assert turn.phase is wanted
    assert turn.path == [current, wanted]


@pytest.mark.parametrize(("current", "wanted"), REFUSED, ids=[f"{a}->{b}" for a, b in REFUSED])
def test_every_refused_transition_raises_a_clear_error(current: Phase, wanted: Phase) -> None:
    turn = Turn(4, current)
    with pytest.raises(TransitionError) as info:
        turn.to(wanted)
    assert (info.value.turn, info.value.current, info.value.wanted) == (4, current, wanted)
    assert f"turn 4: {current} → {wanted} is not allowed" in str(info.value)
    assert turn.phase is current  # nothing moved
    assert turn.path == [current]


def test_a_refusal_says_what_is_allowed() -> None:
    with pytest.raises(TransitionError, match=r"\(from listening: cancelled, discarding, transcribing\)"):
        Turn(1, Phase.LISTENING).to(Phase.DONE)
    with pytest.raises(TransitionError, match=r"\(from done: nothing\)"):
        Turn(1, Phase.DONE).to(Phase.IDLE)


def test_the_phases_ends_and_outcomes() -> None:
    assert {p for p in Phase if p.live} == {
        Phase.LISTENING,
        Phase.TRANSCRIBING,
        Phase.ANSWERING,
        Phase.SPEAKING,
    }
    assert {p for p in Phase if p.over} == {
        Phase.DISCARDING,
        Phase.DONE,
        Phase.CANCELLED,
        Phase.FAILED,
        Phase.IGNORED,
    }
    assert {p: p.outcome for p in Phase if p.outcome} == {
        Phase.DONE: "ok",
        Phase.DISCARDING: "error",
        Phase.FAILED: "error",
        Phase.CANCELLED: "cancelled",
        Phase.IGNORED: "ignored",
    }
    # Terminal phases have no way out; a new turn follows them instead.
    assert [p for p, targets in TRANSITIONS.items() if not targets] == [
        Phase.DONE,
        Phase.CANCELLED,
        Phase.FAILED,
        Phase.IGNORED,
    ]


@pytest.mark.parametrize("phase", list(Phase))
def test_a_new_turn_may_follow_only_an_idle_or_finished_one(phase: Phase) -> None:
    turn = Turn(2, phase)
    if phase in FOLLOWABLE:
        turn.check_followable()
        assert phase is Phase.IDLE or phase.over
    else:
        with pytest.raises(TransitionError, match="turn 2"):
            turn.check_followable()


def test_a_turn_begins_listening_or_answering_only() -> None:
    assert Turn.begin(3, Phase.LISTENING).path == [Phase.IDLE, Phase.LISTENING]
    assert Turn.begin(3, Phase.ANSWERING).phase is Phase.ANSWERING
    with pytest.raises(TransitionError, match="idle → speaking"):
        Turn.begin(3, Phase.SPEAKING)


def test_the_clock_and_timings() -> None:
    turn = Turn(1)
    turn.t0 -= 1.0
    assert turn.elapsed_ms() >= 1000
    turn.restart_clock()
    assert turn.elapsed_ms() < 1000
    timings = Timings(asr_final=410.24, llm_prompt_tokens=12, extra={"speculation": "hit"})
    assert timings.as_dict() == {
        "asr_final": 410.2,
        "retrieval": None,
        "llm_first_token": None,
        "llm_first_sentence": None,
        "tts_first_audio": None,
        "first_audio": None,
        "total": None,
        "llm_prompt_tokens": 12,
        "llm_cached_tokens": None,
        "speculation": "hit",
    }
