"""Where the time of a voice turn goes: a waterfall picture (SVG) drawn from build/bench/voice.json.

Run as ``python -m tests.bench.waterfall [voice.json] [out.svg]`` (``make bench-voice`` runs it).
One row per stage, p50 of the N = 1 turns, on one time axis that starts at the release of the
button: the physical limit's parts as the benchmark measured them directly (ASR tail, the LLM
reading the question with its prefix cached up to the first sentence, the first TTS chunk), then
the gateway's own timings of the same turns and the client's time to first audio. Plain SVG, no
plotting library: the picture must build wherever the benchmark runs.
"""

from __future__ import annotations

import json
import sys
from html import escape
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "build" / "bench" / "voice.json"
OUT = REPO / "build" / "bench" / "voice-waterfall.svg"

ROW_H, LABEL_W, PLOT_W, PAD = 26, 290, 560, 16
COLOURS = {"limit": "#4c78a8", "gateway": "#f58518", "client": "#54a24b"}


def _p50(summary: dict[str, Any] | None) -> float | None:
    return None if not summary else summary.get("p50")


def rows(report: dict[str, Any]) -> list[tuple[str, float, float, str]]:
    """(label, start ms, end ms, kind) for each bar, from the release of the button."""
    direct = (report.get("direct_at_n1") or {}).get("direct_ms") or {}
    limit = (report.get("direct_at_n1") or {}).get("physical_limit_ms") or {}
    n1 = (report.get("results") or {}).get("1") or {}
    gateway = n1.get("gateway_timings_ms") or {}
    client = (n1.get("client_ms") or {}).get("time_to_first_audio")
    out: list[tuple[str, float, float, str]] = []
    asr = _p50(direct.get("asr_final"))
    llm = _p50(limit.get("llm_cached_first_sentence"))
    tts = _p50(direct.get("tts_first_chunk"))
    if asr is not None and llm is not None and tts is not None:
        out += [
            ("limit: ASR tail (release → final transcript)", 0.0, asr, "limit"),
            ("limit: question tokens → first sentence (prefix cached)", asr, asr + llm, "limit"),
            ("limit: first TTS chunk", asr + llm, asr + llm + tts, "limit"),
        ]
    asr_g = _p50(gateway.get("asr_final"))
    first_token = _p50(gateway.get("llm_first_token"))
    first_audio = _p50(gateway.get("tts_first_audio"))
    if asr_g is not None:
        out.append(("gateway: final transcript", 0.0, asr_g, "gateway"))
    if asr_g is not None and first_token is not None:
        out.append(("gateway: retrieval + LLM to first token", asr_g, first_token, "gateway"))
    if first_token is not None and first_audio is not None:
        out.append(("gateway: first sentence + first TTS chunk", first_token, first_audio, "gateway"))
    ttfa = _p50(client)
    if ttfa is not None:
        out.append(("client: time to first audio", 0.0, ttfa, "client"))
    return out


def svg(bars: list[tuple[str, float, float, str]], title: str) -> str:
    span = max((end for _, _, end, _ in bars), default=1.0) or 1.0
    height = PAD * 3 + ROW_H * (len(bars) + 1)
    width = LABEL_W + PLOT_W + PAD * 2
    scale = PLOT_W / span
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{PAD}" y="{PAD + 4}" font-weight="bold">{escape(title)}</text>',
    ]
    for i, (label, start, end, kind) in enumerate(bars):
        y = PAD * 2 + ROW_H * i
        x = LABEL_W + start * scale
        w = max(1.0, (end - start) * scale)
        parts += [
            f'<text x="{PAD}" y="{y + 16}">{escape(label)}</text>',
            f'<rect x="{x:.1f}" y="{y + 4}" width="{w:.1f}" height="{ROW_H - 8}" fill="{COLOURS[kind]}"/>',
            f'<text x="{x + w + 4:.1f}" y="{y + 16}">{end - start:.0f} ms</text>',
        ]
    axis_y = PAD * 2 + ROW_H * len(bars) + 6
    parts.append(f'<line x1="{LABEL_W}" y1="{axis_y}" x2="{LABEL_W + PLOT_W}" y2="{axis_y}" stroke="black"/>')
    for k in range(5):
        ms = span * k / 4
        x = LABEL_W + ms * scale
        parts.append(f'<text x="{x:.1f}" y="{axis_y + 14}" text-anchor="middle">{ms:.0f}</text>')
    parts.append(
        f'<text x="{LABEL_W + PLOT_W}" y="{axis_y + 28}" text-anchor="end">ms after the release</text>'
    )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    source = Path(args[0]) if args else SOURCE
    out = Path(args[1]) if len(args) > 1 else OUT
    report = json.loads(source.read_text())
    bars = rows(report)
    if not bars:
        print(f"{source} has no N = 1 figures to draw", file=sys.stderr)
        return 1
    profile = (report.get("profile") or {}).get("name", "?")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(svg(bars, f"A voice turn, N = 1, p50 (profile {profile}, {report.get('started_at', '')})"))
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
