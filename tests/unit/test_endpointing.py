"""Hands-free turn taking (orchestrator/endpointing.py): every rule with scripted VAD
probabilities and a fake clock; the echo guard on real espeak-ng speech."""

from __future__ import annotations

import shutil
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pytest

from orchestrator.endpointing import (
    BargeIn,
    EchoGuard,
    EndpointingSettings,
    Phase,
    SpeechStarted,
    TurnDetector,
    TurnEnded,
    TurnEvent,
    is_backchannel,
    looks_unfinished,
)
from orchestrator.vad import WINDOW_S, VadStream
from tests.speech import speak_pcm16

SPEECH, SILENCE, UNSURE = 0.95, 0.02, 0.42  # UNSURE: between the silence and speech thresholds


@dataclass
class FakeClock:
    t: float = 0.0

    def __call__(self) -> float:
        return self.t


def _detector(**settings: float) -> tuple[TurnDetector, FakeClock]:
    clock = FakeClock()
    return TurnDetector(EndpointingSettings(**settings), clock=clock), clock


def _play(
    det: TurnDetector, clock: FakeClock, p: float, seconds: float, *, echo: bool = False
) -> list[TurnEvent]:
    """`seconds` of windows of probability `p`, the clock at each window's end."""
    events: list[TurnEvent] = []
    for _ in range(round(seconds / WINDOW_S)):
        clock.t += WINDOW_S
        events += det.push(p, echo=echo)
    return events


def test_a_short_burst_starts_no_turn_and_longer_speech_does() -> None:
    det, clock = _detector()
    assert _play(det, clock, SPEECH, 0.2) == []
    assert _play(det, clock, SILENCE, 0.5) == []
    assert det.phase is Phase.WAITING
    start = clock.t
    (event,) = _play(det, clock, SPEECH, 0.3)
    assert isinstance(event, SpeechStarted)
    assert event.speech_start == pytest.approx(start)
    assert event.at - event.speech_start == pytest.approx(0.256)  # 8 windows >= min_speech_s 0.25
    assert det.phase is Phase.SPEAKING


def test_unsure_windows_neither_break_a_run_nor_count_for_it() -> None:
    det, clock = _detector()
    assert _play(det, clock, SPEECH, 0.16) + _play(det, clock, UNSURE, 0.1) == []
    (event,) = _play(det, clock, SPEECH, 0.1)
    assert isinstance(event, SpeechStarted)  # the run began 0.36 s ago and was never broken


@pytest.mark.parametrize(
    ("heard", "expected_s"),
    [
        ("Which port does the gateway use?", 0.45),  # the whole turn, finished: the short hangover
        ("Which port does the", 0.7 + 0.6),  # unfinished: the base hangover and the extension
    ],
)
def test_what_was_heard_up_to_a_pause_sets_the_hangover(heard: str, expected_s: float) -> None:
    det, clock = _detector(finished_hangover_s=0.45)
    _play(det, clock, SPEECH, 1.0)
    det.partial("Which port does")  # the last partial lags behind the speech
    _play(det, clock, SILENCE, 0.25)
    det.heard_so_far(heard)  # the early final of the turn up to the pause
    (ended,) = _play(det, clock, SILENCE, 2.0)
    assert isinstance(ended, TurnEnded)
    assert ended.hangover_s == pytest.approx(expected_s)
    assert ended.at - ended.speech_end == pytest.approx(expected_s, abs=WINDOW_S)


def test_speech_after_an_early_final_makes_it_a_partial_again() -> None:
    det, clock = _detector(finished_hangover_s=0.45)
    _play(det, clock, SPEECH, 1.0)
    _play(det, clock, SILENCE, 0.3)
    det.heard_so_far("How do I install the chart?")
    assert _play(det, clock, SPEECH, 0.5) == []  # the speaker goes on
    _play(det, clock, SILENCE, 0.5)  # past the short hangover: no end, it was only a partial now
    assert det.phase is Phase.PAUSED
    (ended,) = _play(det, clock, SILENCE, 1.0)
    assert isinstance(ended, TurnEnded)
    assert ended.hangover_s == pytest.approx(0.7)


def test_the_turn_ends_after_the_hangover() -> None:
    det, clock = _detector()
    _play(det, clock, SPEECH, 1.0)
    speech_end = clock.t
    events = _play(det, clock, SILENCE, 1.0)
    (ended,) = events
    assert isinstance(ended, TurnEnded)
    assert ended.speech_end == pytest.approx(speech_end)
    assert ended.hangover_s == 0.7
    assert ended.at - ended.speech_end == pytest.approx(0.7, abs=WINDOW_S)
    assert det.phase is Phase.WAITING


@pytest.mark.parametrize("partial", ["", "Which port does the", "which port does the gateway use"])
def test_a_0_6_s_inner_pause_does_not_end_the_turn(partial: str) -> None:
    det, clock = _detector()
    _play(det, clock, SPEECH, 1.0)
    det.partial(partial)
    assert _play(det, clock, SILENCE, 0.6) == []
    assert det.phase is Phase.PAUSED
    assert _play(det, clock, SPEECH, 0.8) == []
    assert det.phase is Phase.SPEAKING
    (ended,) = _play(det, clock, SILENCE, 2.0)
    assert isinstance(ended, TurnEnded)


def test_an_unfinished_partial_lengthens_the_hangover() -> None:
    finished, clock_a = _detector()
    unfinished, clock_b = _detector()
    for det, clock, text in (
        (finished, clock_a, "Which port does it use?"),
        (unfinished, clock_b, "Which port and"),
    ):
        _play(det, clock, SPEECH, 1.0)
        det.partial(text)
    assert unfinished.hangover_s == pytest.approx(1.3)
    assert finished.hangover_s == pytest.approx(0.7)
    assert isinstance(_play(finished, clock_a, SILENCE, 0.9)[0], TurnEnded)
    assert _play(unfinished, clock_b, SILENCE, 0.9) == []  # 0.9 s after "and": still going
    (ended,) = _play(unfinished, clock_b, SILENCE, 0.5)
    assert isinstance(ended, TurnEnded)
    assert ended.hangover_s == pytest.approx(1.3)


def test_the_hook_is_injected_and_poll_ends_a_turn_without_audio() -> None:
    clock = FakeClock()
    det = TurnDetector(clock=clock, unfinished=lambda text: text == "wait")
    _play(det, clock, SPEECH, 0.5)
    det.partial("wait")
    _play(det, clock, SILENCE, 0.1)
    clock.t += 1.0
    assert det.poll() == []  # 1.1 s < 0.7 + 0.6
    clock.t += 0.3
    (ended,) = det.poll()
    assert isinstance(ended, TurnEnded)
    assert det.poll() == []


def test_a_partial_outside_a_turn_is_ignored_and_reset_abandons_the_turn() -> None:
    det, clock = _detector()
    det.partial("and")
    _play(det, clock, SPEECH, 0.5)
    assert det.hangover_s == pytest.approx(0.7)
    det.reset()
    assert det.phase is Phase.WAITING
    assert _play(det, clock, SILENCE, 2.0) == []


@pytest.mark.parametrize(
    ("text", "unfinished"),
    [
        ("Which port does the gateway use?", False),
        ("Tell me about the chart.", False),
        ("Which port does the", True),
        ("how do I install it and", True),
        ("What happens when", True),
        ("I want to know about", True),
        ("the logs, um", True),
        ("the logs,", True),
        ("Which port does the gateway, the public one", True),  # punctuated, but no full stop
        # An ASR that punctuates nothing (the vocabulary prompt's style): only the last word tells.
        ("which port does the gateway use", False),
        ("which port does the gateway use when it runs in the", True),
        ("Is it of.", True),  # Whisper puts a full stop after a dangling preposition too
        ("", False),
    ],
)
def test_looks_unfinished(text: str, unfinished: bool) -> None:
    assert looks_unfinished(text) is unfinished


@pytest.mark.parametrize(
    "text",
    ["", " ", "...", "Mm-hmm.", "mmhmm", "Mhm", "Yeah.", "yeah yeah", "Uh", "Um...", "Okay.", "OK", "uh-huh",
     "Right.", "I see.", "Oh, okay.", "Hmm?", "you", "Them.", "And mm", "And then them."],
)  # fmt: skip
def test_backchannels_and_empty_transcripts_are_not_turns(text: str) -> None:
    assert is_backchannel(text)


@pytest.mark.parametrize(
    "text",
    ["Yeah, which port does it use?", "Okay so how do I install the chart", "no", "Stop.", "yes please"],
)
def test_questions_are_turns(text: str) -> None:
    assert not is_backchannel(text)


def test_barge_in_needs_more_speech_than_a_turn_at_idle() -> None:
    det, clock = _detector()
    det.bot_speaking = True
    assert _play(det, clock, SPEECH, 0.3) == []  # would have started a turn at idle
    _play(det, clock, SILENCE, 0.3)
    (event,) = _play(det, clock, SPEECH, 0.45)
    assert isinstance(event, BargeIn)
    assert event.at - event.speech_start >= 0.4


def test_echo_windows_are_no_speech_whatever_their_probability() -> None:
    det, clock = _detector()
    det.bot_speaking = True
    assert _play(det, clock, SPEECH, 3.0, echo=True) == []
    (event,) = _play(det, clock, SPEECH, 0.5)
    assert isinstance(event, BargeIn)
    # in a turn, echo counts as silence: the turn ends once only the bot is heard
    (ended,) = _play(det, clock, SPEECH, 1.0, echo=True)
    assert isinstance(ended, TurnEnded)


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="threshold"):
        EndpointingSettings(silence_threshold=0.6)
    with pytest.raises(ValueError, match="hangover_s"):
        EndpointingSettings(hangover_s=0)
    with pytest.raises(ValueError, match="correlation"):
        EndpointingSettings(echo_correlation=2)


# ---- the echo guard on real speech ---------------------------------------------------------

needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None or shutil.which("sox") is None,
    reason="espeak-ng and sox make the test speech: make tools-integration",
)
RATE = 16_000
FRAME = 1600  # 100 ms, as clients send


def _pcm(text: str, voice: str = "en-us") -> npt.NDArray[np.float64]:
    return np.frombuffer(speak_pcm16(text, voice=voice), "<i2").astype(np.float64)


def _mic(
    bot: npt.NDArray[np.float64],
    *,
    delay_s: float,
    gain_db: float,
    user: npt.NDArray[np.float64] | None = None,
) -> npt.NDArray[np.int16]:
    """What the microphone hears: the bot's audio delayed and attenuated, a quiet room, and the
    user's speech (at full level) from 1 s on."""
    n = bot.size + RATE
    x = np.random.default_rng(15).normal(0, 20, n)
    d = round(delay_s * RATE)
    x[d : d + bot.size] += bot * 10 ** (gain_db / 20)
    if user is not None:
        m = min(user.size, n - RATE)
        x[RATE : RATE + m] += user[:m]
    return np.clip(x, -32768, 32767).astype(np.int16)


def _listen(bot: npt.NDArray[np.float64], mic: npt.NDArray[np.int16]) -> list[TurnEvent]:
    """The whole chain: the bot plays `bot` from t = 0; the microphone frames go through the VAD,
    the echo guard and the detector, as the session will wire them."""
    clock = FakeClock()
    det, guard, vad = TurnDetector(clock=clock), EchoGuard(), VadStream()
    guard.played(bot.astype(np.int16), RATE, at=0.0)
    det.bot_speaking = True
    events: list[TurnEvent] = []
    for i in range(0, mic.size, FRAME):
        guard.heard(mic[i : i + FRAME], at=i / RATE)
        for window in vad.feed(mic[i : i + FRAME]):
            clock.t = window.end_s
            events += det.push(window.probability, echo=guard.is_echo(window.end_s))
    return events


@needs_espeak
@pytest.mark.parametrize(("delay_s", "gain_db"), [(0.1, -20.0), (0.35, -10.0), (0.7, -26.0), (0.2, -3.0)])
def test_the_bots_own_echo_does_not_barge_in(delay_s: float, gain_db: float) -> None:
    bot = _pcm("The gateway listens on port eight thousand and eighty, behind the ingress of the cluster.")
    events = _listen(bot, _mic(bot, delay_s=delay_s, gain_db=gain_db))
    assert not [e for e in events if isinstance(e, BargeIn)]


@needs_espeak
def test_without_the_guard_the_echo_would_barge_in() -> None:
    bot = _pcm("The gateway listens on port eight thousand and eighty, behind the ingress of the cluster.")
    clock, vad = FakeClock(), VadStream()
    det = TurnDetector(clock=clock)
    det.bot_speaking = True
    events = []
    for window in vad.feed(_mic(bot, delay_s=0.2, gain_db=-10.0)):
        clock.t = window.end_s
        events += det.push(window.probability)
    assert any(isinstance(e, BargeIn) for e in events)


@needs_espeak
def test_the_user_speaking_over_the_bot_barges_in() -> None:
    bot = _pcm("The gateway listens on port eight thousand and eighty, behind the ingress of the cluster.")
    user = _pcm("Stop, I meant the other question about the chart.", voice="en-us+f3")
    events = _listen(bot, _mic(bot, delay_s=0.2, gain_db=-15.0, user=user))
    barge_ins = [e for e in events if isinstance(e, BargeIn)]
    assert barge_ins
    assert 1.0 <= barge_ins[0].at <= 2.0  # the user starts at 1 s


def test_the_guard_needs_a_start_time_and_sees_nothing_in_silence() -> None:
    guard = EchoGuard()
    with pytest.raises(ValueError, match="at"):
        guard.played(np.zeros(100, np.int16), RATE)
    with pytest.raises(ValueError, match="at"):
        guard.heard(np.zeros(100, np.int16))
    guard.heard(np.zeros(RATE, np.int16), at=0.0)
    assert guard.correlation(1.0) == -1.0
    assert not guard.is_echo(1.0)


@needs_espeak
def test_speech_that_starts_with_the_playback_barges_in_once_the_echo_gain_is_known() -> None:
    # The first answer plays and echoes back alone (the guard learns the echo path's gain); the
    # user then speaks right as the second answer starts playing. Fitted on that window alone,
    # the "echo" would be the user's own voice; capped by the learnt gain, it is not.
    first = _pcm("The gateway listens on port eight thousand and eighty, behind the ingress.")
    second = _pcm("Each replica keeps its own limits and its own sessions.")
    user = _pcm("Stop, I meant the other question about the chart.", voice="en-us+f3")
    gap = RATE // 2
    start2 = first.size + gap
    bot = np.concatenate([first, np.zeros(gap), second])
    mic = _mic(bot, delay_s=0.12, gain_db=-14.0)[: bot.size].astype(np.float64)
    m = min(user.size, mic.size - start2)
    mic[start2 : start2 + m] += user[:m]
    mic_pcm = np.clip(mic, -32768, 32767).astype(np.int16)

    clock, guard, vad = FakeClock(), EchoGuard(), VadStream()
    det = TurnDetector(clock=clock)
    guard.played(first.astype(np.int16), RATE, at=0.0)
    guard.played(second.astype(np.int16), RATE, at=start2 / RATE)
    det.bot_speaking = True
    events: list[TurnEvent] = []
    for i in range(0, mic_pcm.size, FRAME):
        guard.heard(mic_pcm[i : i + FRAME], at=i / RATE)
        for window in vad.feed(mic_pcm[i : i + FRAME]):
            clock.t = window.end_s
            events += det.push(window.probability, echo=guard.is_echo(window.end_s))
    barge_ins = [e for e in events if isinstance(e, BargeIn)]
    assert barge_ins
    assert start2 / RATE <= barge_ins[0].at <= start2 / RATE + 1.0
