"""Hands-free in a real Chromium against the real stack: no button is pressed. The page streams
its microphone (tests/e2e/scripted_mic.py: the test decides when it speaks), the gateway's VAD
takes the turns, and speaking over an answer interrupts it.

Each spoken turn must be heard right (the words retrieval needs are in its transcript) and
answered right or declined (never invented), as in push-to-talk (tests/e2e/test_talk.py)."""

from __future__ import annotations

import subprocess
import time

from playwright.sync_api import expect

from orchestrator.stack.gateway import GatewayProcess
from tests.e2e.conftest import ARTIFACTS, QUESTION, Contexts
from tests.e2e.pages import (
    ANSWER_TIMEOUT_MS,
    CONNECT_TIMEOUT_MS,
    TalkPage,
    answered_right,
    heard_the_question,
)
from tests.e2e.scripted_mic import AUTOPLAY_FLAG, ScriptedMic
from tests.speech import speak_pcm16

START = "How do I start the local stack?"
SILENCE_1S = b"\x00\x00" * 16_000


def _noise(seconds: float, volume: float) -> bytes:
    """sox pink noise (seeded: the same every run), 16 kHz PCM16."""
    return subprocess.run(
        ["sox", "-R", "-n", "-t", "raw", "-r", "16000", "-e", "signed", "-b", "16", "-c", "1", "-L", "-",
         "synth", f"{seconds}", "pinknoise", "vol", f"{volume}"],
        check=True,
        capture_output=True,
    ).stdout  # fmt: skip


class HandsFree:
    """The talk page switched to hands-free, with the scripted microphone."""

    def __init__(self, talk: TalkPage, mic: ScriptedMic) -> None:
        self.talk, self.mic = talk, mic
        self.panel = talk.page.get_by_test_id("handsfree")

    def switch_on(self) -> None:
        self.talk.page.get_by_label("Hands-free").check()
        expect(self.talk.page.get_by_test_id("mode-switch")).to_have_attribute(
            "data-server-mode", "hands_free", timeout=CONNECT_TIMEOUT_MS
        )
        expect(self.panel).to_have_attribute("data-state", "listening", timeout=CONNECT_TIMEOUT_MS)

    def started(self) -> list[int]:
        """Turns the gateway started on hearing speech, in order."""
        return [e["turn"] for e in self.talk.tap.events("turn.started") if e["trigger"] == "speech"]

    def next_turn(self, after: int, timeout_s: float = 60) -> int:
        """The first speech turn numbered after `after` (waits for the gateway to start it)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            later = [n for n in self.started() if n > after]
            if later:
                return later[0]
            self.talk.page.wait_for_timeout(100)
        raise AssertionError(f"no turn after {after} within {timeout_s} s: {self.talk.tap.received[-5:]}")

    def outcome(self, turn: int, timeout_s: float = ANSWER_TIMEOUT_MS / 1000) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            done = [e for e in self.talk.tap.events("turn.done") if e["turn"] == turn]
            if done:
                return str(done[0]["outcome"])
            self.talk.page.wait_for_timeout(100)
        raise AssertionError(f"turn {turn} never ended")

    def final(self, turn: int) -> str:
        return str(next(e["text"] for e in self.talk.tap.events("transcript.final") if e["turn"] == turn))


def test_hands_free_two_questions_a_hum_and_a_barge_in_with_no_button(
    live_gateway: GatewayProcess, contexts: Contexts
) -> None:
    browser = contexts.launch(AUTOPLAY_FLAG)
    page = contexts.new("desktop", browser=browser).new_page()
    mic = ScriptedMic(page)
    talk = TalkPage(page, live_gateway.url).open()
    hands_free = HandsFree(talk, mic)
    hands_free.switch_on()
    expect(talk.ptt).to_have_count(0)  # no button to press: the panel took its place

    # A question, then silence: the gateway ends the turn and answers it.
    mic.say(speak_pcm16(QUESTION) + SILENCE_1S)
    first = hands_free.next_turn(0)
    expect(hands_free.panel).to_have_attribute("data-state", "hearing", timeout=30_000)
    assert hands_free.outcome(first) == "ok"
    assert heard_the_question(hands_free.final(first)), hands_free.final(first)
    answered_right(talk.tap, hands_free.final(first), turn=first)
    talk.wait_done(talk.turn(first))
    talk.wait_audio_played()
    level = float(page.get_by_test_id("level-meter").get_attribute("data-level") or 0)
    assert 0.0 <= level <= 1.0

    # Noise and a hum: no turn in the conversation (the VAD may start one; it ends ignored).
    mic.say(_noise(1.5, 0.05) + SILENCE_1S + speak_pcm16("Mm-hmm.", rate_wpm=120) + SILENCE_1S * 2)
    mic.wait_said()
    page.wait_for_timeout(1500)  # the hangover, and the ASR of whatever started a turn
    for turn in [n for n in hands_free.started() if n > first]:
        assert hands_free.outcome(turn) == "ignored", talk.tap.events("turn.done")
    expect(page.get_by_test_id("turn")).to_have_count(1)
    assert [e["turn"] for e in talk.tap.events("transcript.final")] == [first]

    # A second question; while its answer speaks, a third spoken over it interrupts it.
    last = max(hands_free.started())
    mic.say(speak_pcm16(START) + SILENCE_1S)
    second = hands_free.next_turn(last)
    # Its answer speaks (the previous one played out before the hum, which has no audio).
    page.wait_for_function(
        "el => el.dataset.playing === 'true' && window.__voicebotMic.pending() === 0",
        arg=talk.audio_status.element_handle(),
        timeout=ANSWER_TIMEOUT_MS,
    )
    expect(hands_free.panel).to_have_attribute("data-state", "speaking")
    page.screenshot(path=str(ARTIFACTS / "handsfree-speaking-desktop.png"), full_page=False)
    mic.say(speak_pcm16(QUESTION) + SILENCE_1S)
    third = hands_free.next_turn(second)
    assert any(e["turn"] == second for e in talk.tap.events("audio.clear")), "the answer was not stopped"
    expect(talk.audio_status).to_have_attribute("data-playing", "false", timeout=10_000)
    assert hands_free.outcome(third) == "ok"
    assert heard_the_question(hands_free.final(third)), hands_free.final(third)
    answered_right(talk.tap, hands_free.final(third), turn=third)
    talk.wait_done(talk.turn(third))
    assert "start" in hands_free.final(second).lower(), hands_free.final(second)
    # The conversation holds the three questions, the interrupted one included; no hum.
    expect(page.get_by_test_id("turn")).to_have_count(3)
    assert not talk.tap.messages("turn.start"), "a button message was sent in hands-free mode"
    page.screenshot(path=str(ARTIFACTS / "handsfree-desktop.png"), full_page=False)


def test_hands_free_on_a_phone(live_gateway: GatewayProcess, contexts: Contexts) -> None:
    browser = contexts.launch(AUTOPLAY_FLAG)
    page = contexts.new("phone", browser=browser).new_page()
    mic = ScriptedMic(page)
    talk = TalkPage(page, live_gateway.url).open()
    hands_free = HandsFree(talk, mic)
    hands_free.switch_on()
    mic.say(speak_pcm16(QUESTION) + SILENCE_1S)
    turn = hands_free.next_turn(0)
    assert hands_free.outcome(turn) == "ok"
    assert heard_the_question(hands_free.final(turn)), hands_free.final(turn)
    talk.wait_done(talk.turn(turn))
    # Mute: the page keeps streaming, silence; the panel says so.
    page.get_by_test_id("mute").click()
    expect(hands_free.panel).to_have_attribute("data-state", "muted")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the hands-free page scrolls sideways on a phone ({width} px)"
    page.screenshot(path=str(ARTIFACTS / "handsfree-phone.png"), full_page=False)
