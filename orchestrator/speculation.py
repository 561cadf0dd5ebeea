"""Speculative retrieval and prefill while the user is still speaking.

Nearly everything the LLM reads is known before the button is released: the instructions, the
conversation so far and, usually, the passages — those a partial transcript retrieves are most
often those the final one retrieves. So while a turn is being recorded, `Speculator` retrieves on
the partial transcripts (debounced, a bounded number of times per turn), renders the prompt's
question-free prefix with those passages (orchestrator/prompt.py puts the question last), and
asks the model server to evaluate it (`ModelClients.prefill`: a one-token request; llama.cpp
saves the prefix's key/value state, vLLM keeps it with automatic prefix caching).

At the release, the final transcript is retrieved as always. If the passages it ranks first
(HIT_TOP of them) are in a warmed prompt, the answer uses that prompt's passages, in its order, so
the prompt starts with the cached prefix and only the question's tokens are left to evaluate: a
**hit**. The lower ranks may differ: the last words of a question ("…by default?") reshuffle them,
while the passages that answer it were found by the partial that lacked them.
Otherwise the turn takes the normal path with the final passages: a **miss**, counted, and the
prefill was compute thrown away (`wasted_tokens`).

Speculation never delays a real turn: `ModelClients` cancels every speculative prefill when a
real generation starts, unless that generation starts with the prefill's own prefix (then the
prefill is the first half of its work). Barge-in, a cancelled turn and a closed socket cancel the
turn's speculation at once (`aclose`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from orchestrator.errors import VoicebotError
from orchestrator.grounding import terms
from orchestrator.inference import Models
from orchestrator.metrics import Metrics
from orchestrator.pipeline import Retriever, Source

log = logging.getLogger(__name__)

DEBOUNCE_S = 0.6  # least time between two speculations of one turn
MAX_PER_TURN = 4  # most speculative retrievals (and so prefills) one turn may start
MIN_TERMS = 2  # a partial transcript needs this many content words to be worth a search
HIT_TOP = 2  # the final search's first passages a warmed prompt must hold to be used


def _key(source: Source) -> tuple[str, str]:
    return (source.source, source.text)


@dataclass
class SpeculationStats:
    """Per turn; also what the turn's timings report."""

    searches: int = 0
    prefills: int = 0
    prefill_tokens: int = 0
    outcome: str = "none"  # none (nothing warmed), hit, miss
    wasted_tokens: int = 0  # prefill tokens of prefixes the answer did not use

    def as_timings(self) -> dict[str, float | str | None]:
        return {
            "speculation": self.outcome,
            "speculative_prefills": self.prefills,
            "speculative_tokens": self.prefill_tokens,
            "speculative_wasted_tokens": self.wasted_tokens,
        }


@dataclass
class _Warm:
    text: str  # the partial transcript it was retrieved for
    sources: list[Source]
    prefix: str
    tokens: int = 0  # evaluated by the model (0 while running, or when it yielded)


@dataclass(eq=False)
class Speculator:
    """One recording's speculation. `on_partial` for each partial transcript; at the release,
    `retriever()` is the pipeline's Retriever (hit → the warmed passages)."""

    retrieve: Retriever
    models: Models  # only `prefill`: evaluate a prefix so its state is cached (None: cancelled)
    prefix_for: Callable[[Sequence[Source]], str]
    metrics: Metrics
    debounce_s: float = DEBOUNCE_S
    max_per_turn: int = MAX_PER_TURN
    stats: SpeculationStats = field(default_factory=SpeculationStats)
    _last_terms: frozenset[str] = frozenset()
    _last_at: float = float("-inf")
    _task: asyncio.Task[None] | None = None
    _warm: list[_Warm] = field(default_factory=list)
    _closed: bool = False

    def on_partial(self, text: str) -> None:
        """A partial transcript arrived: speculate on it if it says something new, and no
        speculation of this turn is running or was started too recently."""
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
            sources = await self.retrieve(text)
        except VoicebotError:
            return  # the real turn will report it
        if not sources:
            return
        prefix = self.prefix_for(sources)
        if any(w.prefix == prefix for w in self._warm):
            return
        warm = _Warm(text, sources, prefix)
        self._warm.append(warm)
        self.stats.prefills += 1
        self.metrics.speculations.labels("prefill").inc()
        tokens = await self.models.prefill(prefix)
        if tokens is not None:
            warm.tokens = tokens
            self.stats.prefill_tokens += tokens

    def retriever(self) -> Retriever:
        """The Retriever for the final transcript: the real search, then the warmed passages when
        they hold the passages it ranks first."""

        async def final(question: str) -> list[Source]:
            said = frozenset(terms(question))
            same = [w for w in self._warm if frozenset(terms(w.text)) == said]
            found: list[Source] = []
            if same:  # the last partial already said it all: its search is the final one
                chosen: _Warm | None = same[-1]
            else:
                found = await self.retrieve(question)
                chosen = self._match(found)
            used = chosen.prefix if chosen else None
            self.stats.wasted_tokens = sum(w.tokens for w in self._warm if w.prefix != used)
            if chosen is None:
                self.stats.outcome = "miss" if self._warm else "none"
                await self.aclose()
                if self._warm:
                    self.metrics.speculations.labels("miss").inc()
                return found
            self.stats.outcome = "hit"
            self.metrics.speculations.labels("hit").inc()
            # A prefill of this prefix still running is left alone: the answer's request starts
            # with its work (ModelClients spares it), and the session closes us after the turn.
            return list(chosen.sources)

        return final

    def _match(self, found: Sequence[Source]) -> _Warm | None:
        wanted = {_key(s) for s in found[:HIT_TOP]}
        for warm in reversed(self._warm):  # the latest warmed prompt first
            if wanted <= {_key(s) for s in warm.sources}:
                return warm
        return None

    async def aclose(self) -> None:
        """Cancel what is running (barge-in, cancel, close)."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
