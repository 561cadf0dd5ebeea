"""Hands-free turn taking through the whole product: real-time audio over the WebSocket.

Run as ``python -m tests.bench.bench_handsfree_live`` (``make bench-handsfree`` runs it after the
offline replay); adds a ``live`` section to ``build/bench/handsfree.json``. It starts the local
stack on free ports (Postgres, Triton with the real models, a gateway with docs/ ingested and
short answers), and talks to it as a hands-free client does (tests/live_mic.py): a microphone
streamed in real time, silence between utterances, the answers' audio "played" from arrival
and, with echo on, mixed back into the microphone 150 ms late and 12 dB down.

1. **Inner pauses, real ASR partials**: questions of the offline bench spoken in two pieces with
   0.4, 0.6 or 0.8 s between them. *Cut off*: a turn ended (its final transcript came) before
   the utterance did. End of speech → final transcript: from the end of the audio to its
   `transcript.final`.
2. **Not turns**: noise, a cough-like burst and backchannels; a turn that is not `ignored` is a
   *false turn*.
3. **Echo and barge-in**: a question is answered with echo on; its echo alone must not interrupt
   it (a *false barge-in*). Then, over the next answer, the user asks something: user speech →
   `audio.clear` latency. Then "mm-hmm" over an answer (does it interrupt? today it does).

Nothing here asserts. Figures depend on the machine and its load: compare runs on the same one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import websockets

from tests.bench.bench_handsfree import OUT, UTTERANCES, _percentile, _silence, _speak, _trim
from tests.bench.bench_voice import REPO, local_stack
from tests.bench.report import machine
from tests.live_mic import RATE, LiveMic

PAUSES = (0.4, 0.6, 0.8)
LIVE_UTTERANCES = UTTERANCES[:6]
NOT_TURNS = ("mm-hmm", "yeah", "okay", "uh-huh")
ECHO = (0.15, -12.0)
QUESTION = "Where does the local stack keep its logs?"
INTERRUPTIONS = (
    "Wait, how do I change the port?",
    "No, tell me about the chart instead.",
    "How do I stop it?",
)
LLM_MAX_TOKENS = 40  # short answers: the bench measures turn taking, not generation
LOG_DIR = REPO / "build" / "bench" / "handsfree-live-logs"
HANGOVER_MARGIN_S = 2.0  # the longest hangover (0.7 + 0.6 s) and an ASR decode


def _pcm(x: np.ndarray[Any, Any]) -> bytes:
    return np.clip(np.round(x), -32768, 32767).astype("<i2").tobytes()


def _utterance(pieces: Sequence[str], pause_s: float) -> bytes:
    parts: list[np.ndarray[Any, Any]] = []
    for k, text in enumerate(pieces):
        if k:
            parts.append(_silence(pause_s))
        parts.append(_trim(_speak(text)))
    return _pcm(np.concatenate(parts))


class Conversation:
    """One hands-free session and what it measured."""

    def __init__(self, mic: LiveMic) -> None:
        self.mic = mic
        self.seen = 0  # turn.started events handled so far

    def new_turns(self) -> list[int]:
        started = [e["turn"] for e in self.mic.of("turn.started")]
        fresh, self.seen = started[self.seen :], len(started)
        return fresh

    async def quiet(self, timeout_s: float = 240.0) -> None:
        """Until everything queued has been said, every turn started has ended (a turn starts
        a moment after its speech does, so first the longest hangover goes by), and its audio
        has played out."""
        deadline = time.monotonic() + timeout_s
        await self.mic.said()
        await asyncio.sleep(HANGOVER_MARGIN_S)

        def all_done() -> bool:
            started = {e["turn"] for e in self.mic.of("turn.started")}
            return started <= {e["turn"] for e in self.mic.of("turn.done")}

        await self.mic.until(all_done, "every turn done", max(1.0, deadline - time.monotonic()))
        await self.mic.silent_speakers()
        await asyncio.sleep(1.0)  # the detector's hangover for anything left


async def pauses(mic: LiveMic, convo: Conversation) -> dict[str, Any]:
    cut, cases, latencies = 0, 0, []
    for pieces in LIVE_UTTERANCES:
        for pause in PAUSES:
            convo.new_turns()
            _, end = mic.say(_utterance(pieces, pause))
            await mic.said()
            await convo.quiet()
            turns = convo.new_turns()
            finals = [
                (at, e) for at, e in mic.events if e["type"] == "transcript.final" and e["turn"] in turns
            ]
            cases += 1
            if not finals:
                continue
            if finals[0][0] < end or len(turns) > 1:
                cut += 1
                continue
            latencies.append((finals[0][0] - end) * 1000)
    return {
        "utterances": cases,
        "pauses_s": list(PAUSES),
        "cut_off": cut,
        "cut_off_rate": round(cut / cases, 3),
        "end_of_speech_to_final_ms": {"p50": _percentile(latencies, 50), "p95": _percentile(latencies, 95)},
    }


async def not_turns(mic: LiveMic, convo: Conversation) -> dict[str, Any]:
    rng = np.random.default_rng(7)
    clips = [("pink-ish noise 1 s", np.cumsum(rng.normal(0, 40, RATE)) % 2000 - 1000)]
    t = np.arange(round(0.35 * RATE)) / RATE
    clips.append(("cough-like burst", 20000 * rng.normal(0, 1, t.size) * np.exp(-t / 0.1)))
    clips += [(f'"{text}"', _trim(_speak(text))) for text in NOT_TURNS]
    false_turns, started = [], 0
    for name, clip in clips:
        convo.new_turns()
        mic.say(_pcm(clip) + _pcm(_silence(0.5)))
        await mic.said()
        await convo.quiet()
        for turn in convo.new_turns():
            started += 1
            outcome = next(e["outcome"] for e in mic.of("turn.done") if e["turn"] == turn)
            if outcome != "ignored":
                false_turns.append(name)
    return {
        "clips": len(clips),
        "turns_started_by_vad": started,
        "false_turns": len(false_turns),
        "false_turn_rate": round(len(false_turns) / len(clips), 3),
        "false_turn_clips": false_turns,
    }


async def echo_and_barge_in(mic: LiveMic, convo: Conversation) -> dict[str, Any]:
    question = _pcm(_trim(_speak(QUESTION)))
    false_barge_ins, latencies, detected, hum_barge_ins, unanswered = 0, [], 0, 0, 0
    for interruption in INTERRUPTIONS:
        # An answer that plays and echoes to its end: no audio.clear may come.
        convo.new_turns()
        mic.say(question)
        await mic.said()
        await convo.quiet()
        turns = convo.new_turns()
        false_barge_ins += sum(1 for e in mic.of("audio.clear") if e["turn"] in turns)
        # The next answer, spoken over as soon as it starts playing.
        mic.say(question)
        first = await _next_answer(mic, convo)
        if first < 0:
            unanswered += 1
            continue
        spoken_at, _ = mic.say(_pcm(_trim(_speak(interruption, "en-us+f3"))))
        try:
            at, _ = await mic.wait_for("audio.clear", 30.0, where=lambda e, t=first: e["turn"] == t)
            detected += 1
            latencies.append((at - spoken_at) * 1000)
        except AssertionError:
            pass
        await convo.quiet()
        convo.new_turns()
        # A backchannel over an answer.
        mic.say(question)
        first = await _next_answer(mic, convo)
        if first < 0:
            unanswered += 1
            continue
        mic.say(_pcm(_trim(_speak("mm-hmm", "en-us+f3"))))
        await convo.quiet()
        hum_barge_ins += any(e["turn"] == first for e in mic.of("audio.clear"))
        convo.new_turns()
    return {
        "echo": {"delay_s": ECHO[0], "gain_db": ECHO[1]},
        "answers_echoed": len(INTERRUPTIONS),
        "false_barge_ins_from_echo": false_barge_ins,
        "user_barge_ins": len(INTERRUPTIONS),
        "user_barge_ins_detected": detected,
        "user_speech_to_audio_clear_ms": {
            "p50": _percentile(latencies, 50),
            "p95": _percentile(latencies, 95),
        },
        "backchannels_over_answers": len(INTERRUPTIONS),
        "barge_ins_from_backchannel": hum_barge_ins,
        "questions_with_no_answer_audio": unanswered,  # within 120 s: a turn never started, or failed
    }


async def _next_answer(mic: LiveMic, convo: Conversation) -> int:
    """The turn of the question just asked, once its answer's audio has started arriving (-1:
    none came; the conversation is then let go quiet)."""
    turn = -1

    def speaking() -> bool:
        nonlocal turn
        started = [e["turn"] for e in mic.of("turn.started")][convo.seen :]
        playing = [t for t in started if t in mic.playback]
        turn = playing[0] if playing else -1
        return turn > 0

    try:
        await mic.until(speaking, "an answer's audio", timeout_s=120.0)
    except AssertionError as e:
        print(f"no answer audio: {e}", file=sys.stderr)
        await convo.quiet()
        convo.new_turns()
        return -1
    return turn


async def _session(
    url: str, echo: tuple[float, float] | None = None
) -> AsyncIterator[tuple[LiveMic, Conversation]]:
    ws_url = url.replace("http://", "ws://") + "/v1/voice"
    async with websockets.connect(ws_url, max_size=None) as ws:
        await ws.send(json.dumps({"type": "session.start", "mode": "hands_free"}))
        ready = json.loads(await ws.recv())
        assert ready.get("mode") == "hands_free", ready
        async with LiveMic(ws, echo=echo) as mic:
            await asyncio.sleep(1.0)
            yield mic, Conversation(mic)


async def run(url: str, sections: Sequence[str], sweep: dict[str, str]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    if "pauses" in sections or "not_turns" in sections:
        async with _session(url) as (mic, convo):
            if "pauses" in sections:
                result["pauses"] = await pauses(mic, convo)
            if "not_turns" in sections:
                result["not_turns"] = await not_turns(mic, convo)
    if "echo" in sections:
        async with _session(url, ECHO) as (mic, convo):
            result["echo"] = await echo_and_barge_in(mic, convo)
    for name, variant_url in sweep.items():  # the pauses again on a gateway with other settings
        async with _session(variant_url) as (mic, convo):
            result.setdefault("pauses_sweep", {})[name] = await pauses(mic, convo)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--sections", default="pauses,not_turns,echo", help="which parts to run")
    parser.add_argument(
        "--finished-hangover",
        default="",
        help="also run the pauses with these VOICEBOT_TURN_FINISHED_HANGOVER_S values (comma-separated)",
    )
    args = parser.parse_args(argv)
    load = os.getloadavg()
    started = time.monotonic()
    env = {"VOICEBOT_LLM_MAX_TOKENS": str(LLM_MAX_TOKENS), "VOICEBOT_TRITON_TIMEOUT_S": "120"}
    values = [v for v in args.finished_hangover.split(",") if v]
    variants = {f"finished_hangover_s={v}": {"VOICEBOT_TURN_FINISHED_HANGOVER_S": v} for v in values}
    with local_stack(LOG_DIR, [REPO / "docs"], env, variants) as stack:
        sweep = {name: stack.variant_urls[name] for name in variants}
        live = asyncio.run(run(stack.gateway_url, args.sections.split(","), sweep))
    live |= {
        "command": "make bench-handsfree (python -m tests.bench.bench_handsfree_live)",
        "sections": args.sections,
        "wall_s": round(time.monotonic() - started, 1),
        "machine": machine(load),
    }
    report: dict[str, Any] = json.loads(args.out.read_text()) if args.out.is_file() else {}
    report["live"] = live
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(live, indent=2))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
