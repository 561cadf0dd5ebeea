"""Hands-free turn taking, replayed offline: the VAD (orchestrator/vad.py) and the turn detector
and echo guard (orchestrator/endpointing.py) on real-time audio, with no gateway yet.

Run as ``python -m tests.bench.bench_handsfree`` (``make bench-handsfree``); writes
``build/bench/handsfree.json``. Nothing here asserts: it reports, goals included.

Audio is fed as 100 ms frames, as clients send it; a decision counts from the end of the frame
that brought it (what a gateway would see), the detector's clock being the audio clock.

1. **Utterances with inner pauses**: questions spoken by espeak-ng in pieces, with 0.4-0.8 s of
   silence inserted between them (the pieces trimmed so each pause is exactly that long), in a
   quiet room (noise at -60 dBFS). A turn that ends before the last piece is over is *cut off*.
   Two variants: ``transcript`` gives the detector the text spoken so far as its partial
   transcript 0.3 s after each piece (an ideal streaming ASR: Whisper's own partials are not
   replayed here), ``vad_only`` gives none.
   End-of-speech -> end-of-turn latency: from the end of the last piece to the turn's end.
2. **Not turns**: white and pink noise bursts, synthetic coughs and clicks, and backchannels
   spoken by espeak-ng ("mm-hmm", "yeah", "uh", "okay", ...). Every turn the detector starts is
   transcribed by faster-whisper (the local profile's Whisper tiny.en, int8) and dropped when
   `is_backchannel` says so; a turn left is a *false turn*.
3. **Echo**: the bot's answer (espeak-ng, another voice) played and heard back through the
   microphone, delayed 0.05-0.6 s and attenuated 6-30 dB, over room noise: any barge-in is a
   *false barge-in*. Then the user asking over the same playback: how often, and how fast after
   the user starts, a barge-in comes.
4. CPU: process time of the VAD (and separately the echo guard) per second of audio.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from orchestrator.endpointing import (
    BargeIn,
    EchoGuard,
    EndpointingSettings,
    SpeechStarted,
    TurnDetector,
    TurnEnded,
    TurnEvent,
    is_backchannel,
)
from orchestrator.vad import SileroVad, VadStream
from tests.bench.report import machine
from tests.speech import speak_pcm16

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "build" / "bench" / "handsfree.json"
RATE = 16_000
FRAME = 1600  # 100 ms
ASR_DELAY_S = 0.3  # a partial transcript arrives this long after the words it covers
PAUSES_S = (0.4, 0.5, 0.6, 0.7, 0.8)

# Questions cut where people pause: after a function word (the partial looks unfinished), and
# after a content word with no punctuation yet.
UTTERANCES: tuple[tuple[str, ...], ...] = (
    ("Which port does the", "gateway use when it runs in the cluster?"),
    ("How do I install the chart", "with my own values file?"),
    ("Where does the local stack keep its logs", "while it runs?"),
    ("Which model turns the speech into", "text in the local stack?"),
    ("How does the hybrid search rank the passages and", "which index serves the vectors?"),
    ("What does the gateway do when", "the model server is down in the middle of an answer?"),
    ("Can I upload a document", "and ask about it right away?"),
    ("Tell me about the", "alerts that page the person on call."),
    ("How many users can one", "gateway replica serve at the same time?"),
    ("Is there a way to", "resume a session after", "the connection drops?"),
    ("Which settings control", "the rate limits for an API key?"),
    ("What happens to the audio of", "an answer when I interrupt it?"),
)
BACKCHANNELS = ("mm-hmm", "yeah", "uh", "okay", "uh-huh", "hmm", "right", "um", "yeah yeah", "oh okay")
BOT_ANSWERS = (
    "The gateway listens on port eight thousand and eighty. In the cluster it sits behind the ingress, "
    "which terminates TLS and forwards the WebSocket.",
    "Install the chart with helm install, and pass your own values file with the minus f option. "
    "The schema checks every value before anything is deployed.",
    "When the model server is down, the turn ends with an error, and the gateway tells the client "
    "that the model is unavailable.",
)
USER_INTERRUPTIONS = (
    "Stop, I meant the other question.",
    "Wait, how do I change the port?",
    "No, tell me about the chart instead.",
)
ECHO_PATHS = ((0.05, -6.0), (0.15, -12.0), (0.3, -20.0), (0.45, -26.0), (0.6, -30.0), (0.2, -10.0))


def _speak(text: str, voice: str = "en-us") -> npt.NDArray[np.float64]:
    return np.frombuffer(speak_pcm16(text, voice=voice), "<i2").astype(np.float64)


def _trim(x: npt.NDArray[np.float64], threshold: float = 100.0) -> npt.NDArray[np.float64]:
    """espeak-ng's own leading and trailing silence removed, so inserted pauses are exact."""
    loud = np.flatnonzero(np.abs(x) > threshold)
    return x[loud[0] : loud[-1] + 1] if loud.size else x[:0]


def _silence(seconds: float) -> npt.NDArray[np.float64]:
    return np.zeros(round(seconds * RATE))


def _room(n: int, seed: int, level_dbfs: float = -60.0) -> npt.NDArray[np.float64]:
    return np.random.default_rng(seed).normal(0, 32768 * 10 ** (level_dbfs / 20), n)


def _pcm16(x: npt.NDArray[np.float64]) -> npt.NDArray[np.int16]:
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


@dataclass
class Cpu:
    vad_s: float = 0.0
    guard_s: float = 0.0
    audio_s: float = 0.0


@dataclass
class Replay:
    """Events with the time (end of the frame that brought them) and the audio heard."""

    events: list[tuple[float, TurnEvent]] = field(default_factory=list)


def replay(
    mic: npt.NDArray[np.int16],
    settings: EndpointingSettings,
    model: SileroVad,
    cpu: Cpu,
    *,
    partials: Sequence[tuple[float, str]] = (),
    played: npt.NDArray[np.int16] | None = None,
    playing_until: float = 0.0,
) -> Replay:
    """Feed `mic` frame by frame through VAD -> (echo guard) -> detector, as a session would."""
    clock = [0.0]
    det = TurnDetector(settings, clock=lambda: clock[0])
    guard = EchoGuard(settings) if played is not None else None
    if guard is not None and played is not None:
        guard.played(played, RATE, at=0.0)
    vad = VadStream(model)
    pending = sorted(partials)
    out = Replay()
    for i in range(0, mic.size, FRAME):
        frame = mic[i : i + FRAME]
        frame_end = (i + frame.size) / RATE
        t0 = time.process_time()
        windows = vad.feed(frame)
        t1 = time.process_time()
        if guard is not None:
            guard.heard(frame, at=i / RATE)
        cpu.vad_s += t1 - t0
        for w in windows:
            clock[0] = w.end_s
            while pending and pending[0][0] <= w.end_s:
                det.partial(pending.pop(0)[1])
            det.bot_speaking = w.end_s < playing_until
            t2 = time.process_time()
            echo = guard.is_echo(w.end_s) if guard is not None and det.bot_speaking else False
            cpu.guard_s += time.process_time() - t2
            out.events += [(frame_end, e) for e in det.push(w.probability, echo=echo)]
    cpu.audio_s += mic.size / RATE
    return out


def _percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    return round(float(np.percentile(values, q)), 1)


# ---- 1. utterances with inner pauses ---------------------------------------------------------


def bench_pauses(settings: EndpointingSettings, model: SileroVad, cpu: Cpu) -> dict[str, Any]:
    pieces = {text: _trim(_speak(text)) for utt in UTTERANCES for text in utt}
    results: dict[str, Any] = {}
    for variant in ("transcript", "vad_only"):
        cut, missed, latencies, cases = 0, 0, [], 0
        for u, utt in enumerate(UTTERANCES):
            for pause in PAUSES_S:
                parts, partials, t, said = [_silence(1.0)], [], 1.0, ""
                for k, text in enumerate(utt):
                    if k:
                        parts.append(_silence(pause))
                        t += pause
                    parts.append(pieces[text])
                    t += pieces[text].size / RATE
                    said = f"{said} {text}".strip()
                    partials.append((t + ASR_DELAY_S, said))
                speech_end = t
                parts.append(_silence(3.0))
                audio = np.concatenate(parts)
                mic = _pcm16(audio + _room(audio.size, seed=u))
                run = replay(mic, settings, model, cpu, partials=partials if variant == "transcript" else ())
                cases += 1
                ends = [(at, e) for at, e in run.events if isinstance(e, TurnEnded)]
                starts = [e for _, e in run.events if isinstance(e, SpeechStarted)]
                if not starts:
                    missed += 1
                    continue
                if any(at < speech_end for at, _ in ends):
                    cut += 1
                    continue
                if ends:
                    latencies.append((ends[0][0] - speech_end) * 1000)
        results[variant] = {
            "utterances": cases,
            "cut_off": cut,
            "cut_off_rate": round(cut / cases, 3),
            "missed": missed,
            "end_of_turn_latency_ms": {"p50": _percentile(latencies, 50), "p95": _percentile(latencies, 95)},
        }
    return results


# ---- 2. noise, coughs, clicks, backchannels ------------------------------------------------


def _not_turn_clips(rng: np.random.Generator) -> list[tuple[str, npt.NDArray[np.float64]]]:
    clips: list[tuple[str, npt.NDArray[np.float64]]] = []
    for dur in (0.3, 0.6, 1.0):
        for db in (-30.0, -20.0, -12.0):
            white = rng.normal(0, 32768 * 10 ** (db / 20), round(dur * RATE))
            pink = np.cumsum(rng.normal(0, 1, round(dur * RATE)))
            pink = (pink - np.convolve(pink, np.ones(64) / 64, "same")) * 32768 * 10 ** (db / 20) / 8
            clips += [(f"white {dur}s {db:g}dB", white), (f"brown-ish {dur}s {db:g}dB", pink)]
    for dur in (0.15, 0.25, 0.35, 0.5):
        for gain in (0.3, 0.8):
            t = np.arange(round(dur * RATE)) / RATE
            burst = rng.normal(0, 1, t.size) * np.minimum(t / 0.01, 1) * np.exp(-t / (dur / 3))
            burst = np.convolve(burst, np.ones(3) / 3, "same")
            clips.append((f"cough {dur}s x{gain}", gain * 32767 * burst / np.abs(burst).max()))
    for n in (1, 3):
        click = np.zeros(round(0.4 * RATE))
        for k in range(n):
            click[k * 2000 : k * 2000 + 40] = 20000 * np.hanning(40)
        clips.append((f"{n} click(s)", click))
    for text in BACKCHANNELS:
        for voice in ("en-us", "en-gb", "en-us+f3"):
            clips.append((f'"{text}" {voice}', _trim(_speak(text, voice))))
    return clips


def _whisper() -> Any:
    """The local profile's ASR (Whisper tiny.en, CTranslate2 int8), in process."""
    from faster_whisper import WhisperModel

    from voicebot_models.resolve import resolve_model

    weights = resolve_model("asr")[0]
    return WhisperModel(
        str(weights.dir), device="cpu", compute_type="int8", cpu_threads=2, local_files_only=True
    )


def bench_not_turns(settings: EndpointingSettings, model: SileroVad, cpu: Cpu, asr: Any) -> dict[str, Any]:
    rng = np.random.default_rng(15)
    vad_turns, false_turns, details = 0, 0, []
    clips = _not_turn_clips(rng)
    for n, (name, clip) in enumerate(clips):
        audio = np.concatenate([_silence(1.0), clip, _silence(2.0)])
        mic = _pcm16(audio + _room(audio.size, seed=100 + n))
        run = replay(mic, settings, model, cpu)
        starts = [e for _, e in run.events if isinstance(e, SpeechStarted)]
        ends = [e for _, e in run.events if isinstance(e, TurnEnded)]
        if not starts:
            continue
        vad_turns += 1
        begin = max(0, round((starts[0].speech_start - 0.3) * RATE))
        finish = round((ends[0].at if ends else mic.size / RATE) * RATE)
        text = ""
        if asr is not None:
            segments, _ = asr.transcribe(
                mic[begin:finish].astype(np.float32) / 32768,
                language="en",
                beam_size=1,
                vad_filter=False,
                temperature=0.0,
            )
            text = " ".join(s.text.strip() for s in segments).strip()
        dropped = is_backchannel(text)
        false_turns += not dropped
        details.append({"clip": name, "transcript": text, "dropped": dropped})
    return {
        "clips": len(clips),
        "turns_started_by_vad": vad_turns,
        "false_turns": false_turns,
        "false_turn_rate": round(false_turns / len(clips), 3),
        "transcribed_with": "faster-whisper, the local ASR weights" if asr is not None else None,
        "turns": details,
    }


# ---- 3. echo and barge-in ------------------------------------------------------------------


def bench_echo(settings: EndpointingSettings, model: SileroVad, cpu: Cpu) -> dict[str, Any]:
    bots = [_trim(_speak(text, "en-gb")) for text in BOT_ANSWERS]
    users = [_trim(_speak(text, "en-us+f3")) for text in USER_INTERRUPTIONS]
    false_barge_ins, echo_cases, hits, latencies, barge_cases = 0, 0, 0, [], 0
    backchannel_barge_ins, backchannel_cases = 0, 0
    mhm = _trim(_speak("mm-hmm", "en-us+f3"))
    for b, bot in enumerate(bots):
        played = _pcm16(bot)
        for p, (delay, gain) in enumerate(ECHO_PATHS):
            tail = _silence(2.0)
            echo = np.concatenate([_silence(delay), bot * 10 ** (gain / 20), tail])
            until = bot.size / RATE + delay + 0.2
            seed = 200 + 10 * b + p
            run = replay(
                _pcm16(echo + _room(echo.size, seed)),
                settings,
                model,
                cpu,
                played=played,
                playing_until=until,
            )
            echo_cases += 1
            false_barge_ins += any(isinstance(e, BargeIn) for _, e in run.events)
            # the user asks over the playback, at full level, from 1.5 s on
            user = users[(b + p) % len(users)]
            at = 1.5
            mix = echo.copy()
            u = round(at * RATE)
            m = min(user.size, mix.size - u)
            mix[u : u + m] += user[:m]
            run = replay(
                _pcm16(mix + _room(mix.size, seed)), settings, model, cpu, played=played, playing_until=until
            )
            barge_cases += 1
            ins = [t for t, e in run.events if isinstance(e, BargeIn) and t >= at]
            if ins:
                hits += 1
                latencies.append((ins[0] - at) * 1000)
            # a backchannel over the playback should not interrupt it either
            mix = echo.copy()
            mix[u : u + mhm.size] += mhm
            run = replay(
                _pcm16(mix + _room(mix.size, seed)), settings, model, cpu, played=played, playing_until=until
            )
            backchannel_cases += 1
            backchannel_barge_ins += any(isinstance(e, BargeIn) for _, e in run.events)
    return {
        "echo_paths": [{"delay_s": d, "gain_db": g} for d, g in ECHO_PATHS],
        "echo_scenarios": echo_cases,
        "false_barge_ins_from_echo": false_barge_ins,
        "user_barge_in_scenarios": barge_cases,
        "user_barge_ins_detected": hits,
        "user_speech_to_barge_in_ms": {"p50": _percentile(latencies, 50), "p95": _percentile(latencies, 95)},
        "backchannel_over_playback_scenarios": backchannel_cases,
        "barge_ins_from_backchannel": backchannel_barge_ins,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--no-asr", action="store_true", help="do not transcribe the non-turn clips")
    args = parser.parse_args(argv)
    load = os.getloadavg()
    settings = EndpointingSettings()
    model = SileroVad()
    cpu = Cpu()
    started = time.monotonic()
    asr = None if args.no_asr else _whisper()
    pauses = bench_pauses(settings, model, cpu)
    not_turns = bench_not_turns(settings, model, cpu, asr)
    echo = bench_echo(settings, model, cpu)
    # The trade-offs around the defaults: each setting moved alone.
    sweep_cpu = Cpu()
    sweeps = {
        "hangover_s": {
            str(v): {
                variant: {k: fig[k] for k in ("cut_off_rate", "end_of_turn_latency_ms")}
                for variant, fig in bench_pauses(replace(settings, hangover_s=v), model, sweep_cpu).items()
            }
            for v in (0.5, 0.9)
        },
        "barge_in_min_speech_s": {
            str(v): {
                k: fig[k]
                for k in (
                    "false_barge_ins_from_echo",
                    "user_barge_ins_detected",
                    "user_speech_to_barge_in_ms",
                    "barge_ins_from_backchannel",
                )
            }
            for v in (0.6, 0.8)
            for fig in [bench_echo(replace(settings, barge_in_min_speech_s=v), model, sweep_cpu)]
        },
    }
    vad_ms = 1000 * cpu.vad_s / cpu.audio_s
    chosen = pauses["transcript"]
    goals = {
        "cut_off_rate": {
            "goal": "<= 0.05",
            "measured": chosen["cut_off_rate"],
            "met": chosen["cut_off_rate"] <= 0.05,
        },
        "false_turn_rate": {
            "goal": "<= 0.05",
            "measured": not_turns["false_turn_rate"],
            "met": not_turns["false_turn_rate"] <= 0.05,
        },
        "false_barge_ins_from_echo": {
            "goal": "0",
            "measured": echo["false_barge_ins_from_echo"],
            "met": echo["false_barge_ins_from_echo"] == 0,
        },
    }
    report = {
        "command": "make bench-handsfree",
        "settings": asdict(settings),
        "frame_ms": FRAME * 1000 // RATE,
        "pauses_s": list(PAUSES_S),
        "goals": goals,
        "pauses": pauses,
        "not_turns": not_turns,
        "echo": echo,
        "sweeps": sweeps,
        "cpu": {
            "audio_s": round(cpu.audio_s, 1),
            "vad_ms_per_audio_s": round(vad_ms, 2),
            "echo_guard_ms_per_audio_s": round(1000 * cpu.guard_s / cpu.audio_s, 2),
        },
        "wall_s": round(time.monotonic() - started, 1),
        "machine": machine(load),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.out.is_file():  # the live run's section (bench_handsfree_live) stays until it runs again
        live = json.loads(args.out.read_text()).get("live")
        if live is not None:
            report["live"] = live
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    summary = {k: report[k] for k in ("goals", "cpu")}
    summary["latency"] = {v: pauses[v]["end_of_turn_latency_ms"] for v in pauses}
    summary["barge_in"] = {k: echo[k] for k in ("user_barge_ins_detected", "user_speech_to_barge_in_ms")}
    print(json.dumps(summary, indent=2), file=sys.stderr)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
