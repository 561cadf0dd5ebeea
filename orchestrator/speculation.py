"""Speculative retrieval and prefill while the user is still speaking.

Nearly everything the LLM reads is known before the button is released: the instructions, the
conversation so far and, usually, the passages — those a partial transcript retrieves are most
often those the final one retrieves. So while a turn is being recorded, `Speculator`:

1. warms the **conversation prefix** at once (`start`): instructions, earlier exchanges and the
   last message up to its first passage (orchestrator/prompt.py `conversation_prefix`), which
   every prompt of the turn starts with, whatever is said;
2. retrieves on the partial transcripts (debounced, a bounded number of times per turn) and
   warms the prompt's question-free prefix with the passages found (`ModelClients.prefill`: a
   one-token request; llama.cpp saves the prefix's key/value state, vLLM keeps it with automatic
   prefix caching). A newer partial that finds other passages **supersedes** the prefill in
   flight (the model keeps what it had evaluated), and its passages are **arranged** to keep the
   warmed prompt's start: the passages already warmed that are still found come first, in their
   order, so only the new ones are left to evaluate.

At the release, the final transcript is retrieved as always. If the passages it ranks first
(HIT_TOP of them) are in a warmed prompt, the answer uses that prompt's passages, in its order, so
only the question's tokens are left to evaluate: a **hit**. The lower ranks may differ: the last
words of a question ("…by default?") reshuffle them, while the passages that answer it were found
by the partial that lacked them. Otherwise the answer gets the final passages, arranged to start
like the warmed prompt that shares the most of them: a **partial** hit when at least its first
passage is kept (the model evaluates only the rest), a **miss** when none is.

Speculation never delays a real turn: `ModelClients` skips prefills while a real generation runs
and cancels those in flight when one starts, unless that generation starts with the prefill's own
prefix (then the prefill is the first half of its work). Barge-in, a cancelled turn and a closed
socket cancel the turn's speculation at once (`aclose`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from orchestrator.errors import VoicebotError
from orchestrator.grounding import terms
from orchestrator.inference import Models
from orchestrator.metrics import Metrics
from orchestrator.pipeline import Retriever, Source

DEBOUNCE_S = 0.4  # least time between two searches of one turn (partials come every ~0.5 s)
MAX_PER_TURN = 8  # most speculative searches one turn may start (each ~15 ms; prefills are bounded by them)
MIN_TERMS = 2  # a partial transcript needs this many content words to be worth a search
HIT_TOP = 2  # the final search's first passages a warmed prompt must hold to be used as it is


def _key(source: Source) -> tuple[str, str]:
    return (source.source, source.text)


def arrange(found: Sequence[Source], before: Sequence[Source]) -> tuple[list[Source], int]:
    """`found`'s passages ordered to start like `before` (a warmed prompt's passages): those of
    `before` up to the first that `found` lacks, in their order, then the rest of `found` by
    rank; numbered as the prompt will give them. Also how many of `before` were kept.

    Only when both start with the same passage: the passage ranked first stays first, as without
    speculation (a small model leans on it most)."""
    by_key = {_key(s): s for s in found}
    kept: list[Source] = []
    if not found or not before or _key(before[0]) != _key(found[0]):
        before = []
    for source in before:
        match = by_key.get(_key(source))
        if match is None:
            break
        kept.append(match)
    rest = [s for s in found if all(s is not k for k in kept)]
    return [replace(s, n=n) for n, s in enumerate(kept + rest, start=1)], len(kept)


def _holds(warm: _Warm, found: Sequence[Source]) -> bool:
    """Whether the warmed prompt holds the passages a search ranks first (then it is used as is)."""
    return {_key(s) for s in found[:HIT_TOP]} <= {_key(s) for s in warm.sources}


@dataclass
class SpeculationStats:
    """Per turn; also what the turn's timings report."""

    searches: int = 0
    prefills: int = 0
    superseded: int = 0  # prefills cut short by a newer partial's (the model keeps their work)
    prefill_tokens: int = 0  # prompt tokens the model evaluated for prefills that ran to the end
    outcome: str = "none"  # none (nothing warmed), hit, partial, miss
    kept_passages: int = 0  # warmed passages the answer's prompt starts with
    # Evaluated for speculation but not the start of the answer's prompt; None when the answer's
    # token counts are unknown (no generation, or one closed before its last response).
    wasted_tokens: int | None = 0

    def settle(self, answer_cached_tokens: int | None, cached_before: int) -> None:
        """The answer's prompt is known: what of the speculative work it did not reuse.
        `cached_before`: what the model already held before this turn's first prefill."""
        if answer_cached_tokens is None:
            self.wasted_tokens = None if self.prefill_tokens else 0
            return
        reused = max(0, answer_cached_tokens - cached_before)
        self.wasted_tokens = max(0, self.prefill_tokens - reused)

    def as_timings(self) -> dict[str, float | str | None]:
        return {
            "speculation": self.outcome,
            "speculative_prefills": self.prefills,
            "speculative_superseded": self.superseded,
            "speculative_tokens": self.prefill_tokens,
            "speculative_wasted_tokens": self.wasted_tokens,
            "speculative_kept_passages": self.kept_passages,
        }


@dataclass
class _Warm:
    text: str  # the partial transcript it was retrieved for
    sources: list[Source]
    prefix: str


@dataclass(eq=False)
class _Prefill:
    prompt: str
    task: asyncio.Task[None]


@dataclass(eq=False)
class Speculator:
    """One recording's speculation: `start` when it begins, `on_partial` for each partial
    transcript; at the release, `retriever()` is the pipeline's Retriever."""

    retrieve: Retriever
    models: Models  # only `prefill`: evaluate a prefix so its state is cached (None: yielded)
    prefix_for: Callable[[Sequence[Source]], str]
    metrics: Metrics
    conversation: str = ""  # the prefix every prompt of the turn starts with (warmed by `start`)
    debounce_s: float = DEBOUNCE_S
    max_per_turn: int = MAX_PER_TURN
    stats: SpeculationStats = field(default_factory=SpeculationStats)
    cached_before: int | None = None  # the model's cached tokens at this turn's first prefill
    _last_terms: frozenset[str] = frozenset()
    _last_at: float = float("-inf")
    _task: asyncio.Task[None] | None = None  # the search in flight
    _prefills: list[_Prefill] = field(default_factory=list)  # in flight
    _warm: list[_Warm] = field(default_factory=list)
    _closed: bool = False

    def start(self) -> None:
        """The recording began: warm what every prompt of this turn starts with."""
        if self.conversation and not self._closed:
            self._prefill(self.conversation)

    def on_partial(self, text: str) -> None:
        """A partial transcript arrived: search on it if it says something new, and no search of
        this turn is running or was started too recently."""
        words = frozenset(terms(text))
        now = time.monotonic()
        if (
            self._closed
            or len(words) < MIN_TERMS
            or words == self._last_terms
            or self.stats.searches >= self.max_per_turn
            or now - self._last_at < self.debounce_s
            or (self._task is not None and not self._task.done())
        ):
            return
        self._last_terms, self._last_at = words, now
        self.stats.searches += 1
        self._task = asyncio.create_task(self._speculate(text), name="speculate")

    async def _speculate(self, text: str) -> None:
        try:
            found = await self.retrieve(text)
        except VoicebotError:
            return  # the real turn will report it
        if not found or self._closed:
            return
        # Arranged to start like the prompt being warmed: only what differs is left to evaluate.
        sources, _ = arrange(found, self._warm[-1].sources if self._warm else [])
        prefix = self.prefix_for(sources)
        if any(w.prefix == prefix for w in self._warm):
            return
        self._warm.append(_Warm(text, sources, prefix))
        self.metrics.speculations.labels("prefill").inc()
        self._prefill(prefix)

    def _prefill(self, prompt: str) -> None:
        """Warm `prompt`; a prefill in flight that it does not extend is superseded."""
        for running in self._prefills:
            if not prompt.startswith(running.prompt) and not running.task.done():
                running.task.cancel()
                self.stats.superseded += 1
        self.stats.prefills += 1
        task = asyncio.create_task(self._run_prefill(prompt), name="prefill")
        self._prefills.append(_Prefill(prompt, task))

    def settle(self, answer_cached_tokens: int | None) -> None:
        """The answer's prompt is known: count what of the speculative work it did not reuse."""
        self.stats.settle(answer_cached_tokens, self.cached_before or 0)

    async def _run_prefill(self, prompt: str) -> None:
        usage = await self.models.prefill(prompt)
        if usage is not None:
            if self.cached_before is None:
                self.cached_before = usage.cached_tokens
            self.stats.prefill_tokens += max(0, usage.prompt_tokens - usage.cached_tokens)

    def retriever(self) -> Retriever:
        """The Retriever for the final transcript: the real search, then the warmed passages when
        they hold the passages it ranks first, else the final passages arranged to keep as much
        of a warmed prompt as they can."""

        async def final(question: str) -> list[Source]:
            said = frozenset(terms(question))
            same = [w for w in self._warm if frozenset(terms(w.text)) == said]
            if same:  # the last partial already said it all: its search is the final one
                return self._hit(same[-1])
            found = await self.retrieve(question)
            chosen = self._match(found)
            if chosen is not None:
                return self._hit(chosen)
            if not self._warm:
                self.stats.outcome = "none"
                return found
            best, kept = max(
                (arrange(found, w.sources) for w in reversed(self._warm)), key=lambda pair: pair[1]
            )
            self.stats.outcome, self.stats.kept_passages = ("partial" if kept else "miss"), kept
            self.metrics.speculations.labels(self.stats.outcome).inc()
            return best

        return final

    def _hit(self, chosen: _Warm) -> list[Source]:
        # A prefill of this prefix still running is left alone: the answer's request starts with
        # its work (ModelClients spares it), and the session closes us after the turn.
        self.stats.outcome, self.stats.kept_passages = "hit", len(chosen.sources)
        self.metrics.speculations.labels("hit").inc()
        return list(chosen.sources)

    def _match(self, found: Sequence[Source]) -> _Warm | None:
        for warm in reversed(self._warm):  # the latest warmed prompt first
            if _holds(warm, found):
                return warm
        return None

    async def aclose(self) -> None:
        """Cancel what is running (barge-in, cancel, close, or the turn is over)."""
        self._closed = True
        tasks = [t for t in [self._task, *(p.task for p in self._prefills)] if t is not None]
        self._task, self._prefills = None, []
        for task in tasks:
            if not task.done():
                task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
