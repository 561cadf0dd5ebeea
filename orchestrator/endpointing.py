"""Hands-free turn taking: when a turn starts, when it ends, when speech interrupts the bot.

Pure code over the VAD's per-window speech probabilities (orchestrator/vad.py): no model, no
I/O, and time only from an injected clock, so every rule is tested with scripted probabilities.

- **Start**: a turn starts once speech has lasted `min_speech_s` (a click, a cough or a door is
  shorter, and Silero gives most of them low probabilities anyway). `SpeechStarted.speech_start`
  says where the speech began, so the session can hand the ASR the audio it kept from before.
- **End**: a turn ends after `hangover_s` of silence; when the latest partial transcript looks
  unfinished (`looks_unfinished`: it ends on a conjunction, preposition, article, auxiliary or
  filler, or without terminal punctuation) the silence needed grows by `unfinished_extension_s`,
  so a speaker who pauses 0.4-0.8 s inside a sentence is not cut off.
- **Not a turn**: a turn whose final transcript is empty or only a backchannel ("mm-hmm",
  "yeah", "uh", "okay", ...) is dropped by the session (`is_backchannel`).
- **Barge-in**: while the bot's audio plays, speech must last `barge_in_min_speech_s` (longer
  than at idle) and must not be the bot's own voice coming back through the microphone:
  `EchoGuard` marks input whose level envelope follows the envelope of the played audio.

Times are seconds on one timeline: the clock the detector reads and the `at` the echo guard is
given must agree (the input stream's audio clock, or `time.monotonic()` for both).
"""

from __future__ import annotations

import math
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from orchestrator.vad import WINDOW_S

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class EndpointingSettings:
    """Thresholds of hands-free turn taking (to become VOICEBOT_VAD_* / VOICEBOT_TURN_* settings).

    Defaults are tuned by `make bench-handsfree` (docs/handsfree.md gives the figures)."""

    speech_threshold: float = 0.5
    """A window is speech at this Silero probability or above (Silero's own default)."""
    silence_threshold: float = 0.35
    """A window is silence below this; in between, the current state holds (hysteresis, as
    faster-whisper's `neg_threshold`), so a probability wobbling around 0.5 does not flicker."""
    min_speech_s: float = 0.25
    """Speech needed to start a turn when the bot is silent: shorter bursts (clicks, coughs,
    a bump of the microphone) start nothing."""
    barge_in_min_speech_s: float = 0.4
    """Speech needed to interrupt the bot while its audio plays: longer than at idle, because a
    false barge-in cuts off an answer, and a backchannel should not."""
    hangover_s: float = 0.7
    """Silence that ends a turn."""
    unfinished_extension_s: float = 0.6
    """Silence added to `hangover_s` when the latest partial transcript looks unfinished."""
    finished_hangover_s: float = 0.7
    """Silence that ends a turn once the whole turn up to the pause has been decoded (an early
    final, `early_final_s`) and reads as a finished sentence (`looks_unfinished` is false):
    at most `hangover_s`. Shorter answers sooner; a speaker who pauses after a phrase that
    happens to read as finished is cut off sooner too."""
    early_final_s: float = 0.25
    """Silence after which the session asks the ASR for the turn's final transcript, while the
    hangover still runs: if the turn ends, its transcript is (nearly) ready; if the speaker goes
    on, it is thrown away and the ASR is fed the turn again. 0: only when the turn has ended."""
    echo_correlation: float = 0.6
    """Input whose log-level envelope correlates with the played audio's this well or better (at
    the best lag) is taken for the bot's echo."""
    echo_window_s: float = 1.0
    """How much recent input the echo guard correlates with the played audio to find the echo's
    lag and gain (shorter windows correlate by chance at some lag)."""
    echo_recent_s: float = 0.2
    """The latest part of that window checked for sound louder than the predicted echo."""
    echo_excess_db: float = 3.0
    """Input louder than the predicted echo by this much (mean over `echo_recent_s`) is someone
    else speaking over the bot, not its echo."""
    echo_max_lag_s: float = 0.8
    """The longest delay from "played" to "heard" searched: the client's playback buffer, the
    audio device and the network, both ways."""

    def __post_init__(self) -> None:
        if not 0.0 < self.silence_threshold <= self.speech_threshold < 1.0:
            raise ValueError("need 0 < silence_threshold <= speech_threshold < 1")
        for name in (
            "min_speech_s",
            "barge_in_min_speech_s",
            "hangover_s",
            "finished_hangover_s",
            "echo_window_s",
            "echo_recent_s",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.unfinished_extension_s < 0 or self.echo_max_lag_s < 0 or self.early_final_s < 0:
            raise ValueError("unfinished_extension_s, early_final_s and echo_max_lag_s must not be negative")
        if not -1.0 <= self.echo_correlation <= 1.0:
            raise ValueError("echo_correlation is a correlation coefficient, in [-1, 1]")


# ---- events -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """A user turn starts (the bot was silent). `speech_start`: where the speech began."""

    at: float
    speech_start: float


@dataclass(frozen=True, slots=True)
class BargeIn:
    """The user speaks over the bot's audio: stop it (`audio.clear`) and take a new turn."""

    at: float
    speech_start: float


@dataclass(frozen=True, slots=True)
class TurnEnded:
    """The user's turn is over: transcribe and answer. `speech_end`: where the silence began;
    `hangover_s`: the silence that was required."""

    at: float
    speech_end: float
    hangover_s: float


TurnEvent = SpeechStarted | BargeIn | TurnEnded


class Phase(StrEnum):
    WAITING = "waiting"  # no turn: watching for speech long enough to start one
    SPEAKING = "speaking"  # in a turn, speech now
    PAUSED = "paused"  # in a turn, silent, counting the hangover


# ---- the partial-transcript hook and the backchannel rule -----------------------------------


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Words after which an English sentence cannot end: a speaker who pauses here is still going.
_UNFINISHED_WORDS = _words(
    # conjunctions and relatives
    "and or but so because if when while although though unless until whether that which who "
    "whom whose where than as "
    # prepositions
    "of to in on at for with from about into onto by over under between through after before "
    "during without within like per via "
    # articles, determiners, possessives
    "a an the this these those my your our their its his her some any every each no "
    # auxiliaries and modals that need a verb after them
    "is are was were be been am do does did can could should would will shall may might must "
    "have has had "
    # fillers: the speaker is thinking
    "um umm uh uhm er erm"
)
_TERMINAL = (".", "?", "!")
_PUNCTUATION = ".?!,;:"
ECHO_BREAK_S = 0.3  # echo this long ends a run of speech that has not started a turn yet
_CONTINUING = (",", ";", ":", "-", "\u2013", "\u2014", "\u2026", "...")
_WORD = re.compile(r"[a-z']+")


def looks_unfinished(partial: str) -> bool:
    """Whether a partial transcript reads as a sentence still going: it ends on a word after
    which English does not stop (`_UNFINISHED_WORDS`), on a comma or dash, or without terminal
    punctuation. An empty partial says nothing, so it is not "unfinished".

    A transcript with no punctuation at all comes from an ASR that is not punctuating (Whisper
    follows its prompt's style, and the collection's vocabulary prompt is a bare list of terms):
    its missing full stop says nothing, so only its last word decides."""
    text = partial.strip()
    if not text:
        return False
    if text.endswith(_CONTINUING):
        return True
    words = _WORD.findall(text.lower())
    if words and words[-1] in _UNFINISHED_WORDS:
        return True
    if not any(mark in text for mark in _PUNCTUATION):
        return False
    return not text.endswith(_TERMINAL)


# Squeezed forms (repeated letters collapsed, hyphens and punctuation dropped): "mm-hmm" -> "mhm".
_BACKCHANNEL_WORDS = _words(
    "m hm mhm mh hmh uhuh uh um uhm er erm em ah oh eh yeah yea yep yup ya okay ok kay right alright sure"
)
_BACKCHANNEL_PHRASES = frozenset({"i se", "got it", "al right", "oh i se"})
# Words that make no question on their own: what Whisper hears in a hum, a breath or a noise
# ("you", "them.", "And mm."). With a question word ("What about them?") it is a turn again.
_EMPTY_WORDS = _words("and or but so then the a an it them they you he she him her this that thes those")
_QUESTION_WORDS = _words("what why how when where who which whose whom")
_MAX_BACKCHANNEL_WORDS = 3


def _squeeze(word: str) -> str:
    return re.sub(r"(.)\1+", r"\1", word)


def is_backchannel(final: str) -> bool:
    """Whether a turn's final transcript is no question at all: empty (or punctuation only), or
    at most three words that are all backchannels ("mm-hmm", "yeah", "uh", "okay", "right",
    "I see") or words that ask nothing alone ("and", "them", "you"), with no question word."""
    words = [_squeeze(w) for w in re.findall(r"[a-z]+", final.lower().replace("-", ""))]
    if not words:
        return True
    if len(words) > _MAX_BACKCHANNEL_WORDS or any(w in _QUESTION_WORDS for w in words):
        return False
    if " ".join(words) in _BACKCHANNEL_PHRASES:
        return True
    return all(w in _BACKCHANNEL_WORDS or w in _EMPTY_WORDS for w in words)


# ---- the turn detector --------------------------------------------------------------------


class TurnDetector:
    """Turn taking over one stream of VAD windows; one per session.

    Feed every window's probability with `push` (the clock read then is the window's end), tell
    it when the bot's audio plays (`bot_speaking`) and what the ASR heard so far (`partial`);
    it returns the events each window causes. `poll` checks the hangover when no audio comes."""

    def __init__(
        self,
        settings: EndpointingSettings | None = None,
        *,
        clock: Clock = time.monotonic,
        window_s: float = WINDOW_S,
        unfinished: Callable[[str], bool] = looks_unfinished,
    ) -> None:
        self.settings = settings or EndpointingSettings()
        self._clock = clock
        self._window_s = window_s
        self._unfinished = unfinished
        self.bot_speaking = False
        self.phase = Phase.WAITING
        self._run_start: float | None = None  # WAITING: start of the current speech run
        self._run_echo_s = 0.0  # ...and the echo in it (which does not count as speech)
        self._echo_streak_s = 0.0  # ...and how long the echo has gone on without a break
        self._silence_start: float | None = None  # PAUSED: where the silence began
        self._partial = ""
        self._heard_all = False  # `_partial` is the whole turn up to the current pause

    def partial(self, text: str) -> None:
        """The ASR's latest partial transcript of the current turn (ignored outside a turn)."""
        if self.phase is not Phase.WAITING:
            self._partial = text
            self._heard_all = False

    def heard_so_far(self, text: str) -> None:
        """The whole turn decoded up to now (the session's early final), during a pause: it
        replaces the partial, and a finished-looking one ends the turn after
        `finished_hangover_s`. Speech after it makes it a partial again."""
        if self.phase is not Phase.WAITING:
            self._partial = text
            self._heard_all = self.phase is Phase.PAUSED

    @property
    def hangover_s(self) -> float:
        """The silence the current turn needs to end, given its latest partial transcript."""
        s = self.settings
        if self._unfinished(self._partial):
            return s.hangover_s + s.unfinished_extension_s
        return min(s.hangover_s, s.finished_hangover_s) if self._heard_all else s.hangover_s

    @property
    def silence_s(self) -> float:
        """How long the turn in progress has been silent (0 while speech goes on, or no turn)."""
        if self.phase is not Phase.PAUSED or self._silence_start is None:
            return 0.0
        return self._clock() - self._silence_start

    def reset(self) -> None:
        """Abandon any turn in progress (the session cancelled it); keeps `bot_speaking`."""
        self.phase = Phase.WAITING
        self._run_start = self._silence_start = None
        self._partial = ""
        self._heard_all = False

    def push(self, probability: float, *, echo: bool = False) -> list[TurnEvent]:
        """One VAD window, ending now. `echo`: the echo guard took this window for the bot's
        own audio; it then counts as no speech, whatever its probability."""
        now = self._clock()
        s = self.settings
        speech = probability >= s.speech_threshold and not echo
        silence = probability < s.silence_threshold or echo
        if self.phase is Phase.WAITING:
            return self._waiting(now, probability, echo)
        if speech:
            self.phase, self._silence_start, self._heard_all = Phase.SPEAKING, None, False
            return []
        if silence and self.phase is Phase.SPEAKING:
            self.phase, self._silence_start = Phase.PAUSED, now - self._window_s
        return self.poll()

    def poll(self) -> list[TurnEvent]:
        """End the turn if its silence has lasted the hangover (also with no window arriving)."""
        if self.phase is not Phase.PAUSED or self._silence_start is None:
            return []
        now = self._clock()
        hangover = self.hangover_s
        # A hair of tolerance: times are sums of float window lengths.
        if now - self._silence_start + 1e-9 < hangover:
            return []
        ended = TurnEnded(now, self._silence_start, hangover)
        self.reset()
        return [ended]

    def _waiting(self, now: float, probability: float, echo: bool) -> list[TurnEvent]:
        """A run of speech starts a turn once it has lasted long enough, not counting the
        windows in it that the echo guard took for the bot. Silence ends the run; so does a
        stretch of echo (`ECHO_BREAK_S`): a user's syllable gaps over the bot's audio can look
        like echo for a moment, the bot talking alone looks like it for longer."""
        s = self.settings
        if probability < s.silence_threshold:
            self._run_start = None
            return []
        if echo:
            if self._run_start is not None:
                self._run_echo_s += self._window_s
                self._echo_streak_s += self._window_s
                if self._echo_streak_s + 1e-9 >= ECHO_BREAK_S:
                    self._run_start = None
            return []
        self._echo_streak_s = 0.0
        if probability < s.speech_threshold:
            return []  # the hysteresis band holds a run; only speech starts one or a turn
        if self._run_start is None:
            self._run_start, self._run_echo_s = now - self._window_s, 0.0
        needed = s.barge_in_min_speech_s if self.bot_speaking else s.min_speech_s
        if now - self._run_start - self._run_echo_s + 1e-9 >= needed:
            start = self._run_start
            self.phase, self._run_start, self._partial = Phase.SPEAKING, None, ""
            return [BargeIn(now, start) if self.bot_speaking else SpeechStarted(now, start)]
        return []


# ---- the echo guard -----------------------------------------------------------------------

_HOP_S = 0.01  # envelope resolution: 10 ms, finer than a syllable, coarse enough to be cheap
_FLOOR_DB = -70.0  # levels below this are silence (and are clipped to it)
_MIN_SPREAD_DB = 3.0  # an envelope flatter than this (std) carries no shape to correlate
_CLEAR_ECHO_R = 0.85  # echo this certain teaches the guard the echo path's gain...
_CLEAR_ECHO_EXCESS_DB = 1.0  # ...when nothing louder than it is heard
_GAIN_SLACK_DB = 6.0  # how far above the learnt gain a fit may go (speaker volume, AGC)
_GAIN_MIN_FITS = 30  # clear echo windows (about 1 s) before the learnt gain is trusted
_GAIN_HISTORY = 300  # the fits it is the median of (the last 10 s of clear echo or so)


def envelope_db(
    pcm: npt.NDArray[np.int16], sample_rate: int, hop_s: float = _HOP_S
) -> npt.NDArray[np.float64]:
    """RMS level per hop (dBFS, floored at -70), at any sample rate; a partial last hop is dropped."""
    x = np.asarray(pcm, dtype=np.float64) / 32768.0
    hops = int(x.size / (sample_rate * hop_s))
    if hops == 0:
        return np.zeros(0)
    edges = np.round(np.arange(hops + 1) * sample_rate * hop_s).astype(np.int64)
    power = np.add.reduceat(x[: edges[-1]] ** 2, edges[:-1]) / np.diff(edges)
    levels: npt.NDArray[np.float64] = np.maximum(10.0 * np.log10(np.maximum(power, 1e-12)), _FLOOR_DB)
    return levels


class _Timeline:
    """Envelope hops on the shared timeline: hop k covers [k, k+1) x hop."""

    def __init__(self) -> None:
        self._first = 0
        self._values = np.zeros(0)

    @property
    def end(self) -> int:
        return self._first + self._values.size

    def put(self, first: int, values: npt.NDArray[np.float64]) -> None:
        if self._values.size == 0:
            self._first = first
        if first < self._first:  # older than what is kept
            values, first = values[self._first - first :], self._first
        if first > self.end:  # a gap: nothing played (or heard) there
            self._values = np.concatenate([self._values, np.full(first - self.end, _FLOOR_DB)])
        tail = first + values.size - self.end
        if tail > 0:
            self._values = np.concatenate([self._values, np.full(tail, _FLOOR_DB)])
        i = first - self._first
        # Overlapping chunks add up in the air; the louder one dominates the level.
        self._values[i : i + values.size] = np.maximum(self._values[i : i + values.size], values)

    def drop_before(self, index: int) -> None:
        cut = min(max(0, index - self._first), self._values.size)
        self._values, self._first = self._values[cut:], self._first + cut

    def get(self, first: int, count: int) -> npt.NDArray[np.float64]:
        """Hops [first, first + count), silence where nothing is known."""
        out = np.full(count, _FLOOR_DB)
        lo, hi = max(first, self._first), min(first + count, self.end)
        if hi > lo:
            out[lo - first : hi - first] = self._values[lo - self._first : hi - self._first]
        return out


class EchoGuard:
    """Tells the user's voice from the bot's own audio coming back through the microphone.

    The session reports what it plays (`played`, with when it starts playing) and what it hears
    (`heard`); `is_echo(now)` compares the level envelope of the last `echo_window_s` of input
    with the played audio's envelope at every lag up to `echo_max_lag_s` (10 ms steps), and says
    "echo" when the best Pearson correlation reaches `echo_correlation`. Log levels make it blind
    to the echo's attenuation; the lag search to the unknown playback delay.
    The echo's gain, fitted per window, is also learnt from clear echo; a fit far above what was
    learnt (the user speaking over the very start of the playback) is capped to it.

    Limits: it sees levels, not spectra. A user speaking much more quietly than the echo is masked
    by it (no barge-in until the bot pauses); a user whose speech happens to follow the bot's
    rhythm over the whole window could be taken for echo; heavy reverberation smears the
    envelope and lowers the correlation of true echo (then the barge-in duration is the only
    guard). The browser's echo cancellation stays on: this is the second line, not the first.
    """

    def __init__(self, settings: EndpointingSettings | None = None, *, hop_s: float = _HOP_S) -> None:
        self.settings = s = settings or EndpointingSettings()
        self._hop_s = hop_s
        self._window = max(2, round(s.echo_window_s / hop_s))
        self._max_lag = round(s.echo_max_lag_s / hop_s)
        self._recent = max(1, min(self._window, round(s.echo_recent_s / hop_s)))
        self._played = _Timeline()
        self._heard = _Timeline()
        self._played_end_s: float | None = None
        self._heard_end_s: float | None = None
        self._heard_rest = np.zeros(0, dtype=np.int16)
        self._gains: deque[float] = deque(maxlen=_GAIN_HISTORY)  # fits of clear echo windows

    def played(self, pcm: npt.NDArray[np.int16], sample_rate: int, at: float | None = None) -> None:
        """Bot audio that starts playing at `at` (default: right after the previous chunk)."""
        start = self._played_end_s if at is None else at
        if start is None:
            raise ValueError("the first played chunk needs `at`")
        env = envelope_db(pcm, sample_rate, self._hop_s)
        self._played.put(round(start / self._hop_s), env)
        self._played_end_s = start + len(pcm) / sample_rate

    def heard(
        self, pcm: npt.NDArray[np.int16], at: float | None = None, *, sample_rate: int = 16_000
    ) -> None:
        """Microphone audio that started at `at` (default: right after the previous frame)."""
        if at is not None and (self._heard_end_s is None or abs(at - self._heard_end_s) > self._hop_s):
            self._heard_rest = np.zeros(0, dtype=np.int16)  # a jump: start a new run of hops
            self._heard_end_s = at
        if self._heard_end_s is None:
            raise ValueError("the first heard frame needs `at`")
        samples = np.concatenate([self._heard_rest, np.asarray(pcm, dtype=np.int16)])
        per_hop = sample_rate * self._hop_s
        hops = int(samples.size / per_hop)
        used = round(hops * per_hop)
        start_s = self._heard_end_s - self._heard_rest.size / sample_rate
        self._heard.put(round(start_s / self._hop_s), envelope_db(samples[:used], sample_rate, self._hop_s))
        self._heard_rest = samples[used:]
        self._heard_end_s = start_s + samples.size / sample_rate
        # What a later `correlation` can still look at; older hops are dropped (bounded memory).
        oldest = self._heard.end - 2 * (self._window + self._max_lag)
        self._heard.drop_before(oldest)
        self._played.drop_before(oldest)

    def correlation(self, now: float) -> float:
        """The best correlation of the last `echo_window_s` of input with the played envelope over
        the lags searched; -1 when there is nothing to compare (silence in or out)."""
        return self._match(now)[0]

    def excess_db(self, now: float) -> float:
        """How far the last `echo_recent_s` of input is louder than the echo predicted from the
        played audio (best lag, fitted gain), mean dB over its hops; 0 when nothing is played."""
        return self._match(now)[1]

    def _match(self, now: float) -> tuple[float, float, float]:
        end = math.floor(now / self._hop_s + 1e-6)
        w, lags = self._window, self._max_lag
        heard = self._heard.get(end - w, w)
        if heard.std() < _MIN_SPREAD_DB:
            return -1.0, 0.0, 0.0
        played = self._played.get(end - w - lags, w + lags)
        # Every lag's window of the played envelope at once: row i is a lag of (lags - i) hops.
        views = np.lib.stride_tricks.sliding_window_view(played, w)
        spread = views.std(axis=1)
        usable = np.flatnonzero(spread >= _MIN_SPREAD_DB)
        if usable.size == 0:
            return -1.0, 0.0, 0.0
        h = (heard - heard.mean()) / heard.std()
        p = views[usable] - views[usable].mean(axis=1, keepdims=True)
        r = (p @ h) / (w * spread[usable])
        best = int(np.argmax(r))
        echo = views[usable[best]]
        # The echo's gain: the median level difference where the bot is clearly audible, so a
        # user speaking in part of the window does not move it much.
        loud = echo > _FLOOR_DB + 10.0
        gain = float(np.median(heard[loud] - echo[loud])) if loud.any() else 0.0
        # The echo path does not get louder within a session: once its gain is known from clear
        # echo, a fit far above it means the user is speaking over the start of the playback
        # (their voice, not the echo, set the fit), so the known gain is used.
        learnt = self.echo_gain_db
        if learnt is not None:
            gain = min(gain, learnt + _GAIN_SLACK_DB)
        # Nothing is predicted below the room's own noise (the input's quietest tenth).
        floor = float(np.percentile(heard, 10))
        recent = self._recent
        excess = heard[-recent:] - np.maximum(echo[-recent:] + gain, floor)
        return float(r[best]), float(np.maximum(excess, 0.0).mean()), gain

    @property
    def echo_gain_db(self) -> float | None:
        """The echo path's gain learnt so far (median fit of clear echo), once there is enough."""
        return float(np.median(self._gains)) if len(self._gains) >= _GAIN_MIN_FITS else None

    def is_echo(self, now: float) -> bool:
        """The input follows the played audio (correlation) and holds nothing louder than its
        echo (excess): what the microphone hears now is the bot."""
        r, excess, gain = self._match(now)
        echo = r >= self.settings.echo_correlation and excess < self.settings.echo_excess_db
        if echo and r >= _CLEAR_ECHO_R and excess < _CLEAR_ECHO_EXCESS_DB:  # clear echo: learn its gain
            self._gains.append(gain)
        return echo
