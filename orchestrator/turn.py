"""A turn and the phases a voice session goes through: the one place that says which phase may
follow which (`TRANSITIONS`).

A session starts NEW and becomes IDLE at `session.start`. Each turn is a new `Turn`, made IDLE
and begun at once: LISTENING (push-to-talk held) or ANSWERING (a typed question). A spoken turn
goes on to TRANSCRIBING at the release, then ANSWERING, and SPEAKING once its first audio is
sent. It ends DONE, CANCELLED (barge-in, cancel, the socket closed) or FAILED; a hands-free
turn whose final transcript holds no question (a cough, "mm-hmm") ends IGNORED. A recording over
its size limit is DISCARDING: its turn is over (outcome `error`), but the rest of its audio and
its `turn.end` are still to come and are ignored; the release makes it FAILED.

A transition the table does not list raises `TransitionError`: the session checks what a client
may do before it moves, so this error means a bug in the gateway, never a client's mistake.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Self

from orchestrator.protocol import TurnOutcome


class Phase(StrEnum):
    NEW = "new"  # the socket is open; no session.start yet
    IDLE = "idle"  # ready: nothing in flight
    LISTENING = "listening"  # the button is held: audio streams to the ASR, partials come back
    TRANSCRIBING = "transcribing"  # released: the final transcript is being decoded
    ANSWERING = "answering"  # retrieval and generation
    SPEAKING = "speaking"  # the answer's first audio has been sent
    DISCARDING = "discarding"  # the recording went over its limit; its rest is ignored
    DONE = "done"
    CANCELLED = "cancelled"
    FAILED = "failed"
    IGNORED = "ignored"  # hands-free: no question in it; not part of the conversation

    @property
    def live(self) -> bool:
        """Work of this turn is in flight (a drain waits for it; a barge-in cancels it)."""
        return self in _LIVE

    @property
    def over(self) -> bool:
        """The turn has ended (`turn.done` sent): a new turn may begin."""
        return self in _OVER

    @property
    def outcome(self) -> TurnOutcome | None:
        return _OUTCOMES.get(self)


P = Phase
TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    P.NEW: frozenset({P.IDLE}),
    P.IDLE: frozenset({P.LISTENING, P.ANSWERING}),
    P.LISTENING: frozenset({P.TRANSCRIBING, P.DISCARDING, P.CANCELLED}),
    P.DISCARDING: frozenset({P.FAILED}),
    P.TRANSCRIBING: frozenset({P.ANSWERING, P.DONE, P.FAILED, P.CANCELLED, P.IGNORED}),
    P.ANSWERING: frozenset({P.SPEAKING, P.DONE, P.FAILED, P.CANCELLED}),
    P.SPEAKING: frozenset({P.DONE, P.FAILED, P.CANCELLED}),
    P.DONE: frozenset(),
    P.CANCELLED: frozenset(),
    P.FAILED: frozenset(),
    P.IGNORED: frozenset(),
}
# The phases a turn may be followed from: a new turn replaces the session's current one.
FOLLOWABLE = frozenset({P.IDLE, P.DISCARDING, P.DONE, P.CANCELLED, P.FAILED, P.IGNORED})
_LIVE = frozenset({P.LISTENING, P.TRANSCRIBING, P.ANSWERING, P.SPEAKING})
_OVER = frozenset({P.DISCARDING, P.DONE, P.CANCELLED, P.FAILED, P.IGNORED})
_OUTCOMES: dict[Phase, TurnOutcome] = {
    P.DONE: "ok",
    P.DISCARDING: "error",
    P.FAILED: "error",
    P.CANCELLED: "cancelled",
    P.IGNORED: "ignored",
}


class TransitionError(RuntimeError):
    """A phase change the table does not allow."""

    def __init__(self, turn: int, current: Phase, wanted: Phase) -> None:
        allowed = ", ".join(sorted(TRANSITIONS[current])) or "nothing"
        super().__init__(f"turn {turn}: {current} → {wanted} is not allowed (from {current}: {allowed})")
        self.turn = turn
        self.current = current
        self.wanted = wanted


@dataclass
class Timings:
    """Milliseconds: `retrieval` is the search's duration; the others count from the turn's
    clock (the release of the button, or the typed question). Token counts of the answer's
    generation (`llm_cached_tokens`: prompt tokens the model did not evaluate again) and, for a
    spoken turn, what speculation did (`extra`, orchestrator/speculation.py) ride along."""

    asr_final: float | None = None
    retrieval: float | None = None
    llm_first_token: float | None = None
    llm_first_sentence: float | None = None
    tts_first_audio: float | None = None
    first_audio: float | None = None
    total: float | None = None
    llm_prompt_tokens: int | None = None
    llm_cached_tokens: int | None = None
    extra: dict[str, float | str | None] = field(default_factory=dict)

    def as_dict(self) -> dict[str, float | str | None]:
        out: dict[str, float | str | None] = {
            k: (round(v, 1) if isinstance(v, float) else v) for k, v in self.__dict__.items() if k != "extra"
        }
        return out | self.extra


@dataclass(eq=False)
class Turn:
    """One question and its answer: its number in the session, its phase, its clock and timings."""

    number: int
    phase: Phase = Phase.IDLE
    t0: float = field(default_factory=time.monotonic)  # the clock the timings count from
    timings: Timings = field(default_factory=Timings)
    question: str | None = None  # once known
    path: list[Phase] = field(default_factory=list)  # the phases it went through, in order (logs, tests)

    def __post_init__(self) -> None:
        self.path.append(self.phase)

    @classmethod
    def begin(cls, number: int, phase: Phase) -> Self:
        """A new turn, begun at once (IDLE → LISTENING or ANSWERING)."""
        turn = cls(number)
        turn.to(phase)
        return turn

    def to(self, phase: Phase) -> None:
        if phase not in TRANSITIONS[self.phase]:
            raise TransitionError(self.number, self.phase, phase)
        self.phase = phase
        self.path.append(phase)

    def check_followable(self) -> None:
        """Raise unless a new turn may replace this one (the session cancels a live one first)."""
        if self.phase not in FOLLOWABLE:
            raise TransitionError(self.number, self.phase, Phase.IDLE)

    def restart_clock(self) -> None:
        """Timings count from now (the release of the button)."""
        self.t0 = time.monotonic()

    def elapsed_ms(self) -> float:
        return (time.monotonic() - self.t0) * 1000

    @property
    def outcome(self) -> TurnOutcome | None:
        return self.phase.outcome
