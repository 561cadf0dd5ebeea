"""Push-to-talk in a real Chromium against the real stack (Triton models, Postgres, docs ingested).

The fake microphone plays `speech.wav` (espeak-ng, made at test time) from the moment the page
opens the microphone. A missing or unreadable WAV gives silence without any error, so every
spoken test checks the audio the page sent over the socket is not silent, and that the gateway
heard the words in it.
"""

from __future__ import annotations

import re

import httpx
from playwright.sync_api import expect

from orchestrator.prompt import NO_ANSWER
from orchestrator.stack.gateway import GatewayProcess
from tests.e2e.conftest import ARTIFACTS, Contexts, Speech
from tests.e2e.pages import (
    ANSWER_TIMEOUT_MS,
    TalkPage,
    answered_right,
    heard_the_question,
    right_or_declined,
)
from tests.speech import rms

MIN_SPEECH_RMS = 300.0  # espeak-ng speech is in the thousands; digital silence is 0


def _counter(url: str, name: str) -> float:
    body = httpx.get(f"{url}/metrics", timeout=10).text
    match = re.search(rf"^{name}(?:\{{[^}}]*\}})? ([0-9.e+]+)$", body, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_hold_speak_release_gives_transcript_cited_answer_and_audio(
    live_gateway: GatewayProcess, contexts: Contexts, speech: Speech
) -> None:
    talk = TalkPage(contexts.page("desktop"), live_gateway.url).open()

    talk.hold_while_speaking(speech.duration_ms)

    turn = talk.turn(1)
    transcript = turn.get_by_test_id("transcript")
    expect(transcript).to_have_attribute("data-final", "true", timeout=ANSWER_TIMEOUT_MS)
    talk.wait_done(turn)
    assert heard_the_question(transcript.inner_text()), transcript.inner_text()
    expect(turn.get_by_test_id("answer")).not_to_be_empty()
    if talk.tap.events("answer.done")[-1]["declined"]:
        expect(turn.get_by_test_id("declined")).to_be_visible()
    else:
        citations = turn.get_by_test_id("citation")
        assert citations.count() >= 1
        # A citation expands to the passage it points to.
        citations.first.locator("summary").click()
        expect(citations.first.get_by_test_id("snippet")).to_be_visible()
    expect(turn.get_by_test_id("latency")).to_contain_text("first audio")
    talk.wait_audio_played()
    chunks, played_ms = talk.played()
    assert chunks >= 1
    assert played_ms > 500

    # What went over the wire: the socket carried this turn's audio, and it was not silence.
    audio = b"".join(talk.tap.sent_audio)
    assert talk.tap.messages("turn.start")
    assert talk.tap.messages("turn.end")
    assert len(audio) >= 2 * 16_000 * 1.0, f"only {len(audio)} bytes of audio were sent"
    assert max(len(f) for f in talk.tap.sent_audio) <= 3200, "frames are at most 100 ms"
    assert rms(audio) > MIN_SPEECH_RMS, "the microphone audio was silent: is the fake-mic WAV readable?"
    # ... and the gateway heard words in it (silence would have given an empty transcript).
    final = talk.tap.events("transcript.final")[-1]["text"]
    assert heard_the_question(final), final
    # ... and answered it right: the logs are in .voicebot/logs (docs/architecture.md), cited.
    answered_right(talk.tap, final)

    talk.page.screenshot(path=str(ARTIFACTS / "turn-desktop.png"), full_page=False)


def test_barge_in_stops_the_answer_at_once(
    live_gateway: GatewayProcess, contexts: Contexts, speech: Speech
) -> None:
    talk = TalkPage(contexts.page("desktop"), live_gateway.url).open()
    barge_ins = _counter(live_gateway.url, "voicebot_barge_ins_total")
    talk.ask("Describe every component of the architecture in detail.")
    first = talk.turn(1)
    # Wait until the answer is being spoken while the turn is still streaming.
    talk.page.wait_for_function(
        """([status, turn]) => status.dataset.playing === 'true' && turn.dataset.status === 'answering'""",
        arg=[talk.audio_status.element_handle(), first.element_handle()],
        timeout=ANSWER_TIMEOUT_MS,
    )

    talk.press_space()  # barge-in, from the keyboard this time
    expect(talk.audio_status).to_have_attribute("data-playing", "false")
    played_at_barge_in = talk.played_by_turn().get(1, 0)
    expect(first).to_have_attribute("data-status", "cancelled")
    expect(talk.ptt).to_have_attribute("data-phase", "recording", timeout=60_000)
    talk.page.wait_for_function(
        "([el, ms]) => Number(el.dataset.sentMs) >= ms",
        arg=[talk.ptt.element_handle(), speech.duration_ms],
        timeout=60_000,
    )
    talk.release_space()

    second = talk.turn(2)
    talk.wait_done(second)
    assert heard_the_question(second.get_by_test_id("transcript").inner_text())
    talk.wait_audio_played()
    by_turn = talk.played_by_turn()
    assert by_turn.get(1, 0) == played_at_barge_in, "audio of the interrupted turn played after the barge-in"
    assert by_turn.get(2, 0) >= 1
    # The gateway cancelled turn 1 and told the page to drop its audio.
    assert any(e["turn"] == 1 for e in talk.tap.events("audio.clear"))
    assert any(e["turn"] == 1 and e["outcome"] == "cancelled" for e in talk.tap.events("turn.done"))
    assert _counter(live_gateway.url, "voicebot_barge_ins_total") >= barge_ins + 1
    assert rms(b"".join(talk.tap.sent_audio)) > MIN_SPEECH_RMS


def test_typed_question_on_a_phone(live_gateway: GatewayProcess, contexts: Contexts) -> None:
    talk = TalkPage(contexts.page("phone"), live_gateway.url).open()
    question = "What does make up do?"
    talk.ask(question)

    turn = talk.turn(1)
    expect(turn.get_by_test_id("transcript")).to_have_text(question)
    talk.wait_done(turn)
    expect(turn.get_by_test_id("answer")).not_to_be_empty()
    right_or_declined(talk.tap, "make up", "make up")
    if not talk.tap.events("answer.done")[-1]["declined"]:
        assert turn.get_by_test_id("citation").count() >= 1
    talk.wait_audio_played()
    assert talk.tap.messages("text") == [{"type": "text", "text": question}]
    # The phone layout: the button and the text box fit the width, no horizontal scrolling.
    width = talk.page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390
    talk.page.screenshot(path=str(ARTIFACTS / "turn-phone.png"), full_page=False)

    # A reload resumes this tab's session and shows its stored conversation again.
    answer = turn.get_by_test_id("answer").inner_text()
    talk.page.reload()
    talk.expect_connected()
    restored = talk.turn(1)
    expect(restored.get_by_test_id("transcript")).to_have_text(question)
    expect(restored.get_by_test_id("answer")).to_have_text(answer)
    assert (
        talk.tap.messages("session.start")[-1].get("session_id")
        == talk.tap.events("session.ready")[0]["session_id"]
    )


def test_a_question_the_documents_do_not_answer_is_declined(
    live_gateway: GatewayProcess, contexts: Contexts
) -> None:
    talk = TalkPage(contexts.page("desktop"), live_gateway.url).open()
    talk.ask("What is the capital of France?")
    turn = talk.turn(1)
    talk.wait_done(turn)
    expect(turn.get_by_test_id("answer")).to_have_text(NO_ANSWER)
    expect(turn.get_by_test_id("declined")).to_be_visible()
    done = talk.tap.events("answer.done")[-1]
    assert (done["declined"], done["citations"]) == (True, [])


def test_microphone_permission_denied_is_explained(live_gateway: GatewayProcess, contexts: Contexts) -> None:
    # No --use-fake-ui-for-media-stream: the permission decision is ours, and we deny it.
    context = contexts.new("desktop", browser=contexts.launch("--use-fake-device-for-media-stream"))
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send(
        "Browser.setPermission",
        {"permission": {"name": "microphone"}, "setting": "denied", "origin": live_gateway.url},
    )
    talk = TalkPage(page, live_gateway.url).open()
    talk.press()
    talk.release()
    expect(talk.mic_error).to_have_attribute("data-reason", "denied")
    expect(talk.mic_error).to_contain_text("Microphone access is blocked")
    expect(talk.ptt).to_have_attribute("data-phase", "idle")
    assert talk.tap.sent_audio == []
    # Typing stays possible.
    expect(talk.text_input).to_be_enabled()


def test_no_microphone_is_explained(live_gateway: GatewayProcess, contexts: Contexts) -> None:
    # The permission is granted, but there is no capture device (no fake device either).
    browser = contexts.launch("--use-fake-ui-for-media-stream")
    talk = TalkPage(contexts.new("desktop", browser=browser).new_page(), live_gateway.url).open()
    talk.press()
    talk.release()
    expect(talk.mic_error).to_have_attribute("data-reason", "absent")
    expect(talk.mic_error).to_contain_text("No microphone was found")


def test_gateway_stopped_is_shown_and_the_session_resumes_when_it_returns(
    live_gateway: GatewayProcess, contexts: Contexts
) -> None:
    talk = TalkPage(contexts.page("desktop"), live_gateway.url).open()
    session_id = talk.tap.events("session.ready")[0]["session_id"]

    live_gateway.stop()
    expect(talk.connection).to_have_attribute("data-state", "reconnecting")
    problem = talk.page.get_by_test_id("connection-problem")
    expect(problem).to_be_visible()
    expect(problem).to_contain_text(re.compile("lost|Cannot reach|restarting"))
    expect(talk.ptt).to_be_disabled()

    live_gateway.start()
    live_gateway.wait_ready(120)
    talk.expect_connected(timeout_ms=60_000)
    expect(problem).to_be_hidden()
    starts = talk.tap.messages("session.start")
    assert len(starts) >= 2
    assert starts[-1].get("session_id") == session_id, "the reconnect did not resume the session"

    talk.ask("What does the gateway do?")
    talk.wait_done(talk.last_turn())
