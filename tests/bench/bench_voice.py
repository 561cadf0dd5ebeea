"""Voice turns through the gateway at N concurrent sessions, against the same stages called directly.

Run as ``python -m tests.bench.bench_voice`` (``make bench-voice``); writes ``build/bench/voice.json``.
Nothing here asserts: it reports, goals included (docs/performance.md explains every figure).

1. Starts the local stack on free ports: embedded Postgres, Triton with the real models of the
   active profile, the gateway as its own process in dev mode (``voicebot serve``); applies the
   migrations and ingests docs/ through the real ``embed`` model.
2. Speaks a few questions about the docs with espeak-ng (tests/speech.py) and replays them as
   100 ms PCM16 frames **paced at real time**, as a browser sends them while the button is held:
   the gateway streams audio to ``asr`` during the turn, so what is left after the release is
   the last chunk; sending faster than real time would pile all the ASR work after the release
   and measure a turn no person can produce.
3. For each N (``--concurrency 1,10,100``), opens N WebSocket sessions (started over
   ``--ramp-s``) that each play ``--turns`` turns back to back, and times each turn at the client
   from the instant it sends ``turn.end``: first audio frame (TTFA), ``transcript.final``, first
   ``answer.delta``, ``turn.done``; with the stage timings of ``turn.done`` and every error.
4. At N = 1, between the gateway's turns, the same utterance is run **directly** (no gateway):
   the ``asr`` sequence fed exactly as the gateway feeds it (``orchestrator.session.AsrStream``,
   real-time frames), embed + hybrid search (``ingest.search``), the same prompt
   (``orchestrator.prompt``, with the gateway turn's history) to the first sentence cut by
   ``orchestrator.sentences``, and the first TTS chunk of that sentence, requested while the LLM
   goes on as in the gateway. Direct turn k runs after gateway turn k+1, so two consecutive
   LLM prompts are never the same (llama.cpp reuses the prompt prefix of the previous request,
   which would favour whichever of a pair ran second), and machine noise falls on both.
5. The **physical limit** of each turn (docs/performance.md): what cannot start before the
   release, measured directly on the same models in the same run: the ASR tail (release → final
   transcript), the LLM reading the question's own tokens with the prompt's prefix already cached
   (the direct path warms it first, untimed, as speculation does during speech) up to the first
   sentence, and the first TTS chunk of that sentence. TTFA / limit per pair shows how near a turn
   comes to it; the speculation outcome of every gateway turn (hit, miss, none) and the prefill
   tokens it spent, kept or thrown away, come from `turn.done.timings`.
6. `--variants on,off`: the same run against a second gateway with VOICEBOT_SPECULATION=false
   (same Triton, same Postgres, alternating), so speculation is compared with its absence under
   the same machine noise; at N = 10 speculation must not make TTFA or errors worse.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import struct
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.sentences import SentenceSplitter, speakable
from tests.bench.report import machine, profile_models

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "build" / "bench" / "voice.json"
LOG_DIR = REPO / "build" / "bench-voice-logs"
MODELS = REPO / "images" / "triton" / "models"

SAMPLE_RATE = 16_000
FRAME_MS = 100
FRAME_BYTES = SAMPLE_RATE * 2 * FRAME_MS // 1000  # 3200: 100 ms of PCM16 mono
# Questions about docs/, on different topics so that their retrieved passages (and so the LLM
# prompts) differ. Whisper tiny.en mishears some espeak-ng words; the retrieval still finds a page.
QUESTIONS = (
    # about 2 s spoken
    "Which port does the gateway use?",
    "How do I install the chart?",
    # about 4 s
    "Where does the local stack keep its logs while it runs?",
    "Which model turns the speech into text in the local stack?",
    # about 6 s
    "How does the hybrid search rank the passages it finds, and which index serves the vectors?",
    "What does the gateway do when the model server is down in the middle of an answer?",
)
DEFAULT_CONCURRENCY = "1,10,100"
DEFAULT_TURNS = "6,1,1"
LLM_MAX_TOKENS = 64
# The client's patience for one turn: it bounds the N = 100 phase on a slow or shared machine.
# A turn not done by then is recorded as a miss, never dropped from the figures.
TURN_TIMEOUT_S = 600.0  # per session, for each N in order; the N = 1 turns also give the direct pairs
# Gateway settings changed for the benchmark (recorded in the JSON). 100 sessions queue on one
# instance of each model on 2 cores, so a turn waits minutes; the default 30 s per call would
# turn that queueing into `timeout` errors instead of measuring it.
TRITON_TIMEOUT_S = 600.0
GOALS = {
    "ttfa_over_direct_sum_at_n1": "<= 1.05 (p50 TTFA / p50 direct sum)",
    "errors_at_n100": "0",
    "gateway_added_p99_ms_at_n100": "<= 25",
    "ttfa_p50_ms_at_n1_4s": "<= 1200 (4 s utterances)",
    "ttfa_over_physical_limit_p50": "<= 1.15",
    "speculation_hit_rate": ">= 0.8",
    "n10_speculation_no_worse": "TTFA p50 and errors at N = 10 no worse than with speculation off",
}

AUDIO_KIND = 1
AUDIO_HEADER = struct.Struct("<BBHIII")  # docs/protocol.md, "Audio frames from the server"


# ---- pure parts (tests/unit/test_bench_voice.py) ------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear between the closest ranks (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(values: Sequence[float | None]) -> dict[str, float | int | None]:
    """n, p50, p95, p99, max of the values that are present (None = not measured)."""
    present = [v for v in values if v is not None]
    if not present:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "max": None}
    return {
        "n": len(present),
        "p50": round(percentile(present, 50), 1),
        "p95": round(percentile(present, 95), 1),
        "p99": round(percentile(present, 99), 1),
        "max": round(max(present), 1),
    }


@dataclass(frozen=True)
class AudioFrame:
    turn: int
    seq: int
    sample_rate: int
    pcm: bytes


def read_audio_frame(frame: bytes) -> AudioFrame:
    """A server audio frame as docs/protocol.md specifies it (read independently of the server's
    own packer, so the benchmark's client also checks the documented format)."""
    if len(frame) < AUDIO_HEADER.size:
        raise ValueError(
            f"audio frame of {len(frame)} bytes is shorter than its {AUDIO_HEADER.size}-byte header"
        )
    kind, version, _reserved, turn, seq, rate = AUDIO_HEADER.unpack_from(frame)
    if kind != AUDIO_KIND or version != 1:
        raise ValueError(f"not a protocol v1 audio frame (kind {kind}, version {version})")
    pcm = frame[AUDIO_HEADER.size :]
    if len(pcm) % 2:
        raise ValueError("audio payload has an odd number of bytes; expected PCM16")
    return AudioFrame(turn, seq, rate, pcm)


def gateway_added_ms(ttfa_ms: float | None, timings: Mapping[str, float | None]) -> float | None:
    """Time to first audio that the gateway's own turn clock does not cover.

    The gateway times a turn from the moment it has read `turn.end` to the moment it holds the
    first synthesised chunk (`turn.done.timings.tts_first_audio`, ms); every model and database
    call of the turn lies inside that span. The client times the same turn from sending
    `turn.end` to receiving the first audio frame. The difference is what the gateway adds on
    either side of its model/db work: reading and dispatching `turn.end` (WebSocket, JSON,
    event-loop wait) and framing, pacing and sending the first audio chunk, plus the loopback
    wire and the client's own loop. None when the turn produced no audio.
    """
    first = timings.get("tts_first_audio")
    if first is None:
        first = timings.get("first_audio")
    if ttfa_ms is None or first is None:
        return None
    return ttfa_ms - first


def llm_ttft_from_timings(timings: Mapping[str, float | None]) -> float | None:
    """The LLM's time to first token inside the gateway: `llm_first_token` counts from the
    release, `asr_final` too, and `retrieval` is the retrieval's own duration."""
    first, asr, retrieval = (timings.get(k) for k in ("llm_first_token", "asr_final", "retrieval"))
    if first is None or asr is None or retrieval is None:
        return None
    return first - asr - retrieval


@dataclass
class TurnRecord:
    """One gateway turn as the client saw it; times in ms from sending `turn.end`."""

    concurrency: int
    session: int
    turn: int
    utterance: int
    ttfa_ms: float | None = None
    transcript_ms: float | None = None
    first_delta_ms: float | None = None
    total_ms: float | None = None
    outcome: str = ""
    errors: list[str] = field(default_factory=list)
    error_messages: list[str] = field(default_factory=list)
    timings: dict[str, Any] = field(default_factory=dict)
    sources_available: bool | None = None
    audio_bytes: int = 0
    transcript: str = ""
    answer: str = ""
    first_sentence_chars: int | None = None  # of the first sentence the gateway spoke

    @property
    def failed(self) -> bool:
        return bool(self.errors) or self.outcome != "ok"


@dataclass
class DirectRecord:
    """The same utterance through the stages called directly; ms."""

    turn: int  # the gateway turn (N = 1) whose utterance and history it mirrors
    utterance: int
    asr_ms: float
    retrieval_ms: float
    llm_first_token_ms: float
    llm_first_sentence_ms: float
    tts_first_chunk_ms: float
    wall_ms: float  # release → first chunk as the direct path lived it (includes its own glue)
    first_sentence_chars: int
    # The LLM to the first sentence with the prompt's prefix cached (only the question's tokens
    # left to read), and how many tokens that was: the LLM's part of the physical limit.
    llm_cached_first_sentence_ms: float | None = None
    question_tokens: int | None = None

    @property
    def stage_sum_ms(self) -> float:
        return self.asr_ms + self.retrieval_ms + self.llm_first_sentence_ms + self.tts_first_chunk_ms

    @property
    def physical_limit_ms(self) -> float | None:
        """What no speculation can move before the release: ASR tail + question tokens and the
        first sentence with the prefix cached + first TTS chunk."""
        if self.llm_cached_first_sentence_ms is None:
            return None
        return self.asr_ms + self.llm_cached_first_sentence_ms + self.tts_first_chunk_ms


def summarize_turns(records: Sequence[TurnRecord], planned: int) -> dict[str, Any]:
    """Per-N figures: the client timings, the gateway's stage timings, gateway-added, errors."""
    errors: Counter[str] = Counter()
    examples: dict[str, str] = {}
    for r in records:
        errors.update(r.errors)
        for code, message in zip(r.errors, r.error_messages, strict=False):
            examples.setdefault(code, message)
        if r.outcome != "ok" and not r.errors:
            errors[f"turn_{r.outcome or 'unfinished'}"] += 1
    errors["turn_missing"] += planned - len(records)  # sessions that never got to play a turn
    return {
        "turns_planned": planned,
        "turns_finished": sum(1 for r in records if r.outcome),
        "turns_failed": sum(1 for r in records if r.failed) + planned - len(records),
        "errors_by_code": {code: n for code, n in sorted(errors.items()) if n},
        "error_examples": examples,  # the first message seen for each code
        "turns_without_audio": sum(1 for r in records if r.outcome == "ok" and not r.audio_bytes),
        "turns_without_sources": sum(1 for r in records if r.sources_available is False),
        "client_ms": {
            "time_to_first_audio": summary([r.ttfa_ms for r in records]),
            "transcript_final": summary([r.transcript_ms for r in records]),
            "llm_first_token": summary([r.first_delta_ms for r in records]),
            "turn_total": summary([r.total_ms for r in records]),
        },
        "gateway_timings_ms": {
            stage: summary([r.timings.get(stage) for r in records])
            for stage in ("asr_final", "retrieval", "llm_first_token", "tts_first_audio", "total")
        },
        "llm_ttft_in_gateway_ms": summary([llm_ttft_from_timings(r.timings) for r in records]),
        "gateway_added_ms": summary([gateway_added_ms(r.ttfa_ms, r.timings) for r in records]),
        "speculation": speculation_summary(records),
    }


def speculation_summary(records: Sequence[TurnRecord]) -> dict[str, Any]:
    """Hit rate over the spoken turns that finished, and the prefill compute kept or thrown away
    (prompt tokens the model evaluated for prefixes the answer did not use)."""
    outcomes: Counter[str] = Counter(str(r.timings.get("speculation") or "off") for r in records if r.outcome)
    decided = outcomes["hit"] + outcomes["partial"] + outcomes["miss"] + outcomes["none"]
    spent = sum(int(r.timings.get("speculative_tokens") or 0) for r in records)
    wasted = sum(int(r.timings.get("speculative_wasted_tokens") or 0) for r in records)
    after_release = [
        float(prompt) - float(cached)
        for r in records
        if isinstance(prompt := r.timings.get("llm_prompt_tokens"), int | float)
        and isinstance(cached := r.timings.get("llm_cached_tokens"), int | float)
    ]
    return {
        "outcomes": dict(sorted(outcomes.items())),
        "hit_rate": round(outcomes["hit"] / decided, 3) if decided else None,
        # a partial hit reuses the warmed prompt's first passages; it is not counted as a hit
        "partial_rate": round(outcomes["partial"] / decided, 3) if decided else None,
        # the answer's prompt tokens the model still had to evaluate after the release
        "tokens_after_release": summary(after_release),
        "prefill_tokens": spent,
        "wasted_tokens": wasted,
        "wasted_share": round(wasted / spent, 3) if spent else None,
        "llm_cached_tokens": summary([_number(r.timings.get("llm_cached_tokens")) for r in records]),
        "llm_prompt_tokens": summary([_number(r.timings.get("llm_prompt_tokens")) for r in records]),
    }


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def ttfa_by_length(records: Sequence[TurnRecord], utterances: Sequence[Utterance]) -> dict[str, Any]:
    """TTFA by utterance length, rounded to the nearest 2 s (the issue's 2, 4 and 6 s)."""
    buckets: dict[str, list[float | None]] = {}
    for r in records:
        label = f"{max(2, round(utterances[r.utterance].audio_s / 2) * 2)}s"
        buckets.setdefault(label, []).append(r.ttfa_ms)
    return {label: summary(values) for label, values in sorted(buckets.items())}


def _median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def compare_direct(turns: Sequence[TurnRecord], direct: Sequence[DirectRecord]) -> dict[str, Any]:
    """TTFA through the gateway against the direct stage sum, for the same utterances (N = 1)."""
    ttfa = [t.ttfa_ms for t in turns if t.ttfa_ms is not None]
    sums = [d.stage_sum_ms for d in direct]
    result: dict[str, Any] = {
        "pairs": min(len(ttfa), len(sums)),
        "direct_ms": {
            "asr_final": summary([d.asr_ms for d in direct]),
            "retrieval": summary([d.retrieval_ms for d in direct]),
            "llm_first_token": summary([d.llm_first_token_ms for d in direct]),
            "llm_first_sentence": summary([d.llm_first_sentence_ms for d in direct]),
            "tts_first_chunk": summary([d.tts_first_chunk_ms for d in direct]),
            "stage_sum": summary(sums),
            "wall_release_to_first_chunk": summary([d.wall_ms for d in direct]),
        },
        "gateway_ttfa_ms": summary(ttfa),
        # The same stages as the gateway timed them in the same turns (turn.done timings).
        "gateway_stages_ms": {
            "asr_final": summary([t.timings.get("asr_final") for t in turns]),
            "retrieval": summary([t.timings.get("retrieval") for t in turns]),
            "llm_first_token": summary([llm_ttft_from_timings(t.timings) for t in turns]),
        },
        # The LLM samples (temperature 0.2): the first sentence differs run to run, and its
        # length moves "LLM to first sentence" most. Similar medians mean a fair comparison.
        "first_sentence_chars": {
            "gateway": summary([t.first_sentence_chars for t in turns]),
            "direct": summary([d.first_sentence_chars for d in direct]),
        },
    }
    if ttfa and sums:
        result["ratio_ttfa_over_direct_sum"] = round(_median(ttfa) / _median(sums), 3)
        result["ttfa_minus_direct_sum_p50_ms"] = round(_median(ttfa) - _median(sums), 1)
    by_turn = {t.turn: t.ttfa_ms for t in turns if t.ttfa_ms is not None}
    limits = [d.physical_limit_ms for d in direct]
    result["physical_limit_ms"] = {
        "limit": summary(limits),
        "llm_cached_first_sentence": summary([d.llm_cached_first_sentence_ms for d in direct]),
        "question_tokens": summary([float(d.question_tokens) for d in direct if d.question_tokens]),
    }
    over_limit = [
        by_turn[d.turn] / limit
        for d, limit in zip(direct, limits, strict=True)
        if d.turn in by_turn and limit is not None
    ]
    if over_limit:  # TTFA of gateway turn k / the physical limit of the same utterance and history
        result["ratio_ttfa_over_limit"] = {
            "n": len(over_limit),
            **{f"p{q}": round(percentile(over_limit, q), 3) for q in (50, 95, 99)},
        }
    paired = [by_turn[d.turn] / d.stage_sum_ms for d in direct if d.turn in by_turn]
    if paired:  # TTFA of gateway turn k / the direct stage sum of the same utterance and history
        result["ratio_per_pair"] = {
            "n": len(paired),
            **{f"p{q}": round(percentile(paired, q), 3) for q in (50, 95, 99)},
        }
    return result


def parse_per_n(text: str, concurrency: Sequence[int], what: str) -> list[int]:
    """`--turns 3` (every N) or `--turns 6,1,1` (one per N, in order)."""
    values = [int(v) for v in text.split(",") if v.strip()]
    if len(values) == 1:
        return values * len(concurrency)
    if len(values) != len(concurrency):
        raise SystemExit(
            f"error: --{what} has {len(values)} values for {len(concurrency)} concurrency levels"
        )
    return values


# ---- the stack ----------------------------------------------------------------------------------


@dataclass
class Stack:
    gateway_url: str
    triton_url: str
    dsn: str
    ingested_chunks: int
    variant_urls: dict[str, str] = field(default_factory=dict)  # more gateways, by name
    triton_http_url: str = ""  # set: each phase starts with the llm model reloaded


def store_and_models(
    state: Path, log_dir: Path, database: str, *, model_control: bool = False
) -> tuple[Any, Any]:
    """An embedded Postgres and a Triton on the model repository (active profile), on free ports
    under `state`: the parts every benchmark starts before its own gateway. `model_control`: the
    models can be reloaded (`reload_llm`)."""
    from orchestrator.stack.ports import free_port
    from orchestrator.stack.postgres import EmbeddedPostgres
    from orchestrator.stack.triton import TritonServer

    postgres = EmbeddedPostgres(state / "postgres", free_port(), log_dir=log_dir, database=database)
    profile = os.environ.get("VOICEBOT_MODEL_PROFILE")
    triton = TritonServer(
        MODELS,
        http_port=free_port(),
        grpc_port=free_port(),
        metrics_port=free_port(),
        state_dir=state,
        log_dir=log_dir,
        env={"VOICEBOT_MODEL_PROFILE": profile} if profile else {},
        model_control=model_control,
    )
    return postgres, triton


def reload_llm(triton_http_url: str, timeout_s: float = 300.0) -> None:
    """Load the `llm` model again, so a phase starts with its prefix cache empty: otherwise the
    second of two gateways asking the same questions would find every prompt already evaluated."""
    import httpx

    # Unloaded first: Triton takes a load of an unchanged, loaded model for a no-op.
    models = f"{triton_http_url}/v2/repository/models/llm"
    httpx.post(f"{models}/unload", timeout=timeout_s).raise_for_status()
    deadline = time.monotonic() + timeout_s
    while httpx.get(f"{triton_http_url}/v2/models/llm/ready", timeout=10).status_code == 200:
        if time.monotonic() > deadline:
            raise TimeoutError("the llm model was not unloaded")
        time.sleep(0.2)
    httpx.post(f"{models}/load", timeout=timeout_s).raise_for_status()


@contextlib.contextmanager
def local_stack(
    log_dir: Path,
    docs: Sequence[Path],
    gateway_env: Mapping[str, str],
    variants: Mapping[str, Mapping[str, str]] | None = None,
) -> Iterator[Stack]:
    """Postgres, Triton and the gateway on free ports (orchestrator.stack), docs ingested;
    `variants`: more gateways on the same Triton and Postgres, each with its own extra settings."""
    from ingest.embedding import TritonEmbedder
    from ingest.migrate import migrate
    from ingest.pipeline import ingest_paths
    from orchestrator.stack.gateway import GatewayProcess
    from orchestrator.stack.ports import free_port
    from orchestrator.stack.runner import StackRunner

    state = Path(tempfile.mkdtemp(prefix="voicebot-bench-voice-"))
    state.chmod(0o755)  # PostgreSQL runs as an unprivileged user when we are root
    shutil.rmtree(log_dir, ignore_errors=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    postgres, triton = store_and_models(state, log_dir, "voicebot_bench", model_control=True)
    env = {
        "VOICEBOT_DEV_MODE": "true",
        "VOICEBOT_DATABASE_URL": postgres.dsn,
        "VOICEBOT_TRITON_URL": triton.grpc_url,
        "VOICEBOT_LOG_FORMAT": "text",
        **gateway_env,
    }
    gateway = GatewayProcess(host="127.0.0.1", port=free_port(), env=env, log_dir=log_dir)
    others = {
        name: GatewayProcess(
            host="127.0.0.1",
            port=free_port(),
            env={**env, **extra},
            log_dir=log_dir / f"gateway-{name}",
        )
        for name, extra in (variants or {}).items()
    }

    async def prepare() -> int:
        await migrate(postgres.dsn)
        embedder = TritonEmbedder(triton.grpc_url)
        try:
            report = await ingest_paths(postgres.dsn, embedder, list(docs))
        finally:
            await embedder.close()
        return int(report.chunks)

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        with StackRunner([postgres, triton, gateway, *others.values()], startup_timeout_s=600, say=say):
            chunks = asyncio.run(prepare())
            say(f"    ingested {chunks} chunks from {', '.join(str(d.relative_to(REPO)) for d in docs)}")
            urls = {name: g.url for name, g in others.items()}
            yield Stack(gateway.url, triton.grpc_url, postgres.dsn, chunks, urls, triton.http_url)
    finally:
        shutil.rmtree(state, ignore_errors=True)


# ---- the gateway path ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Utterance:
    text: str
    pcm: bytes

    @property
    def audio_s(self) -> float:
        return len(self.pcm) / (SAMPLE_RATE * 2)

    def frames(self) -> list[bytes]:
        return [self.pcm[i : i + FRAME_BYTES] for i in range(0, len(self.pcm), FRAME_BYTES)]


async def paced(frames: Sequence[bytes]) -> AsyncIterator[bytes]:
    """Each frame once it has been 'recorded': frame k at (k + 1) x its duration from the start."""
    start = time.perf_counter()
    elapsed = 0.0
    for frame in frames:
        elapsed += len(frame) / (SAMPLE_RATE * 2)
        delay = start + elapsed - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        yield frame


class VoiceClient:
    """One WebSocket session; a reader task stamps every message on arrival."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.inbox: asyncio.Queue[tuple[float, str | bytes] | None] = asyncio.Queue()
        self.closed_by: Exception | None = None
        self._reader = asyncio.create_task(self._read())

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(cls, url: str) -> AsyncIterator[VoiceClient]:
        import websockets

        # No client pings: browsers send none, and a busy client loop must not close the socket.
        async with websockets.connect(url, max_size=None, open_timeout=120, ping_interval=None) as ws:
            client = cls(ws)
            try:
                await ws.send(json.dumps({"type": "session.start"}))
                _, ready = await client.next_event(120)
                if ready.get("type") != "session.ready":
                    raise RuntimeError(f"expected session.ready, got {ready}")
                yield client
            finally:
                client._reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await client._reader

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                self.inbox.put_nowait((time.perf_counter(), message))
        except Exception as e:  # closed with an error (websockets.ConnectionClosedError): a failed turn
            self.closed_by = e
        finally:
            self.inbox.put_nowait(None)

    async def next_message(self, timeout_s: float) -> tuple[float, str | bytes]:
        item = await asyncio.wait_for(self.inbox.get(), timeout=timeout_s)
        if item is None:
            self.inbox.put_nowait(None)  # every later read sees the end too
            raise ConnectionError(f"the gateway closed the session ({self.closed_by or 'normal close'})")
        return item

    async def next_event(self, timeout_s: float) -> tuple[float, dict[str, Any]]:
        while True:
            at, message = await self.next_message(timeout_s)
            if isinstance(message, str):
                return at, json.loads(message)

    async def turn(self, record: TurnRecord, utterance: Utterance, timeout_s: float) -> None:
        """Play one push-to-talk turn and fill `record` with what the client saw."""
        await self.ws.send(json.dumps({"type": "turn.start"}))
        async for frame in paced(utterance.frames()):
            await self.ws.send(frame)
        released = time.perf_counter()
        await self.ws.send(json.dumps({"type": "turn.end"}))

        def ms(at: float) -> float:
            return (at - released) * 1000

        turn: int | None = None
        deadline = released + timeout_s
        splitter = SentenceSplitter()
        while True:
            at, message = await self.next_message(max(0.0, deadline - time.perf_counter()))
            if isinstance(message, bytes):
                frame = read_audio_frame(message)
                if frame.turn == turn and at >= released:
                    if record.ttfa_ms is None:
                        record.ttfa_ms = ms(at)
                    record.audio_bytes += len(frame.pcm)
                continue
            data = json.loads(message)
            kind = data.get("type")
            if kind == "turn.started":
                turn = record.turn = int(data["turn"])
            elif kind == "error":
                record.errors.append(str(data.get("code")))
                record.error_messages.append(str(data.get("message", "")))
            elif data.get("turn") != turn:
                continue
            elif kind == "transcript.final":
                record.transcript_ms = ms(at)
                record.transcript = str(data.get("text", ""))
            elif kind == "sources":
                record.sources_available = bool(data.get("available"))
            elif kind == "answer.delta":
                if record.first_delta_ms is None:
                    record.first_delta_ms = ms(at)
                if record.first_sentence_chars is None:
                    spoken = [speakable(s) for s in splitter.feed(str(data.get("text", "")))]
                    record.first_sentence_chars = next((len(s) for s in spoken if s), None)
            elif kind == "answer.done":
                record.answer = str(data.get("text", ""))
                if record.first_sentence_chars is None:
                    spoken = [speakable(s) for s in splitter.flush()]
                    record.first_sentence_chars = next((len(s) for s in spoken if s), None)
            elif kind == "turn.done":
                record.total_ms = ms(at)
                record.outcome = str(data.get("outcome"))
                record.timings = dict(data.get("timings") or {})
                return


async def gateway_turn(
    client: VoiceClient, record: TurnRecord, utterance: Utterance, timeout_s: float
) -> TurnRecord:
    try:
        await client.turn(record, utterance, timeout_s)
    except TimeoutError:
        record.errors.append("client_timeout")
    except (ConnectionError, OSError) as e:
        record.errors.append(f"connection:{type(e).__name__}")
    except Exception as e:  # websockets.ConnectionClosed and friends: a failed turn, by kind
        record.errors.append(f"client:{type(e).__name__}")
    return record


# ---- the direct path ----------------------------------------------------------------------------


class Direct:
    """The turn's stages called on Triton and Postgres from here, as the gateway calls them."""

    def __init__(self, stack: Stack, llm_max_tokens: int) -> None:
        self.stack = stack
        self.llm_max_tokens = llm_max_tokens

    async def __aenter__(self) -> Direct:
        import psycopg
        import tritonclient.grpc.aio as grpcclient

        from ingest.embedding import TritonEmbedder
        from orchestrator.inference import ModelClients
        from orchestrator.settings import Settings

        # The gateway's settings for the prompt format and the voice; its max_tokens for the run.
        from orchestrator.state import AppState

        settings = Settings(dev_mode=True, llm_max_tokens=self.llm_max_tokens)
        self.options = AppState(settings).answer_options()  # the gateway's prompt and passage sizes
        self.prompt_format = settings.llm_prompt_format
        self.max_tokens = settings.llm_max_tokens
        self.voice = settings.tts_voice
        self.triton = grpcclient.InferenceServerClient(self.stack.triton_url)
        self.models = ModelClients(self.triton, timeout_s=TRITON_TIMEOUT_S)
        self.embedder = TritonEmbedder(self.stack.triton_url, timeout_s=TRITON_TIMEOUT_S, max_attempts=2)
        self.conn = await psycopg.AsyncConnection.connect(self.stack.dsn, autocommit=True)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.conn.close()
        await self.embedder.close()
        await self.triton.close()

    async def turn(self, turn: int, utterance: int, audio: Utterance, history: Sequence[Any]) -> DirectRecord:
        from ingest.search import search
        from ingest.tenancy import DEFAULT_COLLECTION as COLLECTION
        from ingest.tenancy import DEFAULT_TENANT_ID
        from orchestrator.pipeline import prompt_for, sources_from_hits
        from orchestrator.session import AsrStream
        from orchestrator.state import RETRIEVAL_K

        async def ignore(_partial: str) -> None:
            return None

        asr = AsrStream(self.models, None, ignore)
        try:
            async for frame in paced(audio.frames()):
                asr.feed(frame)
            released = time.perf_counter()
            question = await asr.finish()
        finally:
            await asr.aclose()
        asr_done = time.perf_counter()
        hits = await search(
            self.conn, self.embedder, question, tenant=DEFAULT_TENANT_ID, collection=COLLECTION, k=RETRIEVAL_K
        )
        sources = sources_from_hits(hits, question, self.options.passage_chars)  # as the gateway does
        retrieval_done = time.perf_counter()
        prompt = prompt_for(question, sources, history, self.options)
        # The prefix is evaluated before the clock runs, as speculation does while the user speaks:
        # what is timed is the question's own tokens, the first sentence and its first audio.
        await self.models.prefill(prompt.prefix)
        spoken = await self._first_sentence_spoken(prompt.text)
        return DirectRecord(
            turn=turn,
            utterance=utterance,
            asr_ms=(asr_done - released) * 1000,
            retrieval_ms=(retrieval_done - asr_done) * 1000,
            llm_first_token_ms=spoken.first_token_ms,
            llm_first_sentence_ms=spoken.first_sentence_ms,
            tts_first_chunk_ms=spoken.tts_first_chunk_ms,
            wall_ms=(time.perf_counter() - released) * 1000,
            first_sentence_chars=spoken.sentence_chars,
            llm_cached_first_sentence_ms=spoken.first_sentence_ms,
            question_tokens=spoken.uncached_tokens,
        )

    async def _first_sentence_spoken(self, prompt: str) -> _Spoken:
        """LLM request → first token and → first speakable sentence, TTS request → first chunk.
        The LLM keeps generating while the sentence is synthesised, as in the gateway; both
        streams are closed (cancelled on Triton) once the first chunk is in."""
        from orchestrator.inference import Usage
        from orchestrator.prompt import stop_strings

        sentences: asyncio.Queue[str | None] = asyncio.Queue()
        first_token: list[float] = []
        usage = Usage()

        async def generate() -> None:
            splitter = SentenceSplitter()
            stream = self.models.generate(
                prompt, max_tokens=self.max_tokens, stop=stop_strings(self.prompt_format), usage=usage
            )
            try:
                async with contextlib.aclosing(stream):
                    async for delta in stream:
                        if not first_token:
                            first_token.append(time.perf_counter())
                        for sentence in splitter.feed(delta):
                            sentences.put_nowait(sentence)
                for rest in splitter.flush():
                    sentences.put_nowait(rest)
            finally:
                sentences.put_nowait(None)  # also on failure: the reader must not wait forever

        began = time.perf_counter()
        llm = asyncio.create_task(generate())
        try:
            while True:
                sentence = await sentences.get()
                if sentence is None:
                    raise RuntimeError("the answer had no speakable sentence")
                text = speakable(sentence)
                if text:
                    break
            cut = time.perf_counter()
            stream = self.models.synthesize(text, voice=self.voice)
            async with contextlib.aclosing(stream):
                await anext(stream)
            spoken = time.perf_counter()
        finally:
            llm.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await llm
        return _Spoken(
            first_token_ms=(first_token[0] - began) * 1000,
            first_sentence_ms=(cut - began) * 1000,
            tts_first_chunk_ms=(spoken - cut) * 1000,
            sentence_chars=len(text),
            # Counts arrive with the model's last response; the stream may be closed before it.
            uncached_tokens=(usage.prompt_tokens - usage.cached_tokens) if usage.prompt_tokens else None,
        )


@dataclass(frozen=True)
class _Spoken:
    first_token_ms: float
    first_sentence_ms: float
    tts_first_chunk_ms: float
    sentence_chars: int
    uncached_tokens: int | None = None


# ---- runs ---------------------------------------------------------------------------------------


def _ws_url(http_url: str) -> str:
    return http_url.replace("http://", "ws://", 1) + "/v1/voice"


async def run_paired(
    stack: Stack, utterances: Sequence[Utterance], turns: int, timeout_s: float, llm_max_tokens: int
) -> tuple[list[TurnRecord], list[DirectRecord]]:
    """N = 1: gateway turns in one session, direct turns in between (G1 G2 D1 G3 D2 … D_T)."""
    from orchestrator.prompt import HISTORY_TURNS, Exchange

    records: list[TurnRecord] = []
    direct: list[DirectRecord] = []
    history: list[Exchange] = []  # the gateway session's history, exchange by exchange
    histories: list[list[Exchange]] = []  # the history gateway turn k was answered with

    async with Direct(stack, llm_max_tokens) as d, VoiceClient.connect(_ws_url(stack.gateway_url)) as client:

        async def direct_turn(k: int) -> None:
            u = k % len(utterances)
            try:
                direct.append(await d.turn(k + 1, u, utterances[u], histories[k][-HISTORY_TURNS:]))
            except Exception as e:  # a failed direct turn is reported, not fatal
                print(f"    direct turn {k + 1} failed: {e!r}", file=sys.stderr, flush=True)

        for k in range(turns):
            u = k % len(utterances)
            histories.append(list(history))
            record = TurnRecord(concurrency=1, session=0, turn=k + 1, utterance=u)
            await gateway_turn(client, record, utterances[u], timeout_s)
            records.append(record)
            if record.outcome == "ok" and record.transcript:
                history.append(Exchange(record.transcript, record.answer))
            _progress(1, record)
            if k >= 1:
                await direct_turn(k - 1)
        if turns:
            await direct_turn(turns - 1)
    return records, direct


async def run_concurrent(
    stack: Stack, utterances: Sequence[Utterance], n: int, turns: int, ramp_s: float, timeout_s: float
) -> list[TurnRecord]:
    """N sessions, started evenly over `ramp_s`, each playing `turns` turns back to back."""
    records: list[TurnRecord] = []

    async def session(i: int) -> None:
        await asyncio.sleep(ramp_s * i / n)
        try:
            async with VoiceClient.connect(_ws_url(stack.gateway_url)) as client:
                for k in range(turns):
                    u = (i + k) % len(utterances)
                    record = TurnRecord(concurrency=n, session=i, turn=k + 1, utterance=u)
                    records.append(await gateway_turn(client, record, utterances[u], timeout_s))
                    _progress(n, record)
                    if any(e == "client_timeout" or ":" in e for e in record.errors):
                        break  # the session's stream is out of step or gone; do not play on
        except Exception as e:  # the session could not open: its turns count as missing
            print(f"    session {i} failed: {e!r}", file=sys.stderr, flush=True)

    async with asyncio.TaskGroup() as group:
        for i in range(n):
            group.create_task(session(i))
    return records


def _progress(n: int, r: TurnRecord) -> None:
    ttfa = f"{r.ttfa_ms:.0f}" if r.ttfa_ms is not None else "-"
    total = f"{r.total_ms:.0f}" if r.total_ms is not None else "-"
    errors = f" errors={','.join(r.errors)}" if r.errors else ""
    print(
        f"    N={n} session {r.session} turn {r.turn}: {r.outcome or 'unfinished'} ttfa={ttfa} ms total={total} ms{errors}",
        file=sys.stderr,
        flush=True,
    )


async def bench(
    stack: Stack, utterances: Sequence[Utterance], args: argparse.Namespace, turns: Sequence[int]
) -> dict[str, Any]:
    """Each N in turn; within one N the gateway variants alternate (the main one first, with the
    direct path at N = 1), so they share the machine's noise."""
    results: dict[str, Any] = {}
    variants: dict[str, dict[str, Any]] = {name: {} for name in stack.variant_urls}
    comparison: dict[str, Any] | None = None
    transcripts: dict[int, str] = {}

    def figures_of(records: list[TurnRecord], n: int, t: int, began: float, load: Any) -> dict[str, Any]:
        for r in records:
            if r.transcript:
                transcripts.setdefault(r.utterance, r.transcript)
        figures = summarize_turns(records, planned=n * t)
        figures.update(
            sessions=n,
            turns_per_session=t,
            wall_s=round(time.perf_counter() - began, 1),
            load_average_before=[round(v, 2) for v in load],
            load_average_after=[round(v, 2) for v in os.getloadavg()],
            ttfa_ms_by_utterance_length=ttfa_by_length(records, utterances),
        )
        if args.keep_turns:
            figures["turns"] = [asdict(r) for r in records]
        print(
            json.dumps({k: figures[k] for k in ("errors_by_code", "client_ms", "speculation")}),
            file=sys.stderr,
            flush=True,
        )
        return figures

    for n, t in zip(args.concurrency, turns, strict=True):
        print(f"==> N={n}: {n} session(s) x {t} turn(s)", file=sys.stderr, flush=True)
        if stack.triton_http_url:
            await asyncio.to_thread(reload_llm, stack.triton_http_url)
        began, load = time.perf_counter(), os.getloadavg()
        if n == 1:
            records, direct = await run_paired(stack, utterances, t, args.turn_timeout_s, args.llm_max_tokens)
            comparison = compare_direct(records, direct)
        else:
            records = await run_concurrent(stack, utterances, n, t, args.ramp_s, args.turn_timeout_s)
        results[str(n)] = figures_of(records, n, t, began, load)
        for name, url in stack.variant_urls.items():
            print(f"==> N={n}, gateway '{name}'", file=sys.stderr, flush=True)
            if stack.triton_http_url:
                await asyncio.to_thread(reload_llm, stack.triton_http_url)
            began, load = time.perf_counter(), os.getloadavg()
            other = Stack(url, stack.triton_url, stack.dsn, stack.ingested_chunks)
            records = await run_concurrent(other, utterances, n, t, args.ramp_s, args.turn_timeout_s)
            variants[name][str(n)] = figures_of(records, n, t, began, load)
    return {"results": results, "variants": variants, "direct_at_n1": comparison, "transcripts": transcripts}


def goals(report: dict[str, Any]) -> dict[str, Any]:
    """Each goal with the measured value and whether it was met (None: not measured)."""
    direct = report.get("direct_at_n1") or {}
    ratio = direct.get("ratio_ttfa_over_direct_sum")
    n100 = report["results"].get("100")
    errors = sum(n100["errors_by_code"].values()) if n100 else None
    added = n100["gateway_added_ms"]["p99"] if n100 else None
    return {
        "ttfa_over_direct_sum_at_n1": {
            "goal": GOALS["ttfa_over_direct_sum_at_n1"],
            "measured": ratio,
            "met": None if ratio is None else ratio <= 1.05,
        },
        "errors_at_n100": {
            "goal": GOALS["errors_at_n100"],
            "measured": errors,
            "met": None if errors is None else errors == 0,
        },
        "gateway_added_p99_ms_at_n100": {
            "goal": GOALS["gateway_added_p99_ms_at_n100"],
            "measured": added,
            "met": None if added is None else added <= 25,
        },
        **speculation_goals(report),
    }


# Machine noise between two runs of N = 10 on 2 cores is a few percent: "no worse" allows that much.
NO_WORSE_TOLERANCE = 1.05


def speculation_goals(report: dict[str, Any]) -> dict[str, Any]:
    """The goals of speculation (issue 13): TTFA at N = 1 for 4 s utterances, TTFA over the
    physical limit, the hit rate, and N = 10 against the gateway with speculation off."""
    n1 = report["results"].get("1") or {}
    ttfa_4s = ((n1.get("ttfa_ms_by_utterance_length") or {}).get("4s") or {}).get("p50")
    over = ((report.get("direct_at_n1") or {}).get("ratio_ttfa_over_limit") or {}).get("p50")
    hit_rate = (n1.get("speculation") or {}).get("hit_rate")
    on = report["results"].get("10")
    off = (report.get("variants") or {}).get("off", {}).get("10")
    n10: dict[str, Any] = {"goal": GOALS["n10_speculation_no_worse"], "measured": None, "met": None}
    if on and off:
        on_p50 = on["client_ms"]["time_to_first_audio"]["p50"]
        off_p50 = off["client_ms"]["time_to_first_audio"]["p50"]
        on_errors, off_errors = sum(on["errors_by_code"].values()), sum(off["errors_by_code"].values())
        n10["measured"] = {
            "ttfa_p50_on": on_p50,
            "ttfa_p50_off": off_p50,
            "errors_on": on_errors,
            "errors_off": off_errors,
        }
        if on_p50 is not None and off_p50 is not None:
            n10["met"] = on_p50 <= off_p50 * NO_WORSE_TOLERANCE and on_errors <= off_errors
    return {
        "ttfa_p50_ms_at_n1_4s": {
            "goal": GOALS["ttfa_p50_ms_at_n1_4s"],
            "measured": ttfa_4s,
            "met": None if ttfa_4s is None else ttfa_4s <= 1200,
        },
        "ttfa_over_physical_limit_p50": {
            "goal": GOALS["ttfa_over_physical_limit_p50"],
            "measured": over,
            "met": None if over is None else over <= 1.15,
        },
        "speculation_hit_rate": {
            "goal": GOALS["speculation_hit_rate"],
            "measured": hit_rate,
            "met": None if hit_rate is None else hit_rate >= 0.8,
        },
        "n10_speculation_no_worse": n10,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--concurrency", default=DEFAULT_CONCURRENCY, help="comma-separated N values")
    parser.add_argument(
        "--turns", default=DEFAULT_TURNS, help="turns per session: one value, or one per N (default 6,1,1)"
    )
    parser.add_argument("--ramp-s", type=float, default=1.0, help="sessions of one N start evenly over this")
    parser.add_argument(
        "--turn-timeout-s",
        type=float,
        default=TURN_TIMEOUT_S,
        help="client wait for turn.done; a turn not done by then is a miss (client_timeout)",
    )
    parser.add_argument(
        "--triton-timeout-s",
        type=float,
        default=TRITON_TIMEOUT_S,
        help="the gateway's VOICEBOT_TRITON_TIMEOUT_S for the run",
    )
    parser.add_argument(
        "--llm-max-tokens",
        type=int,
        default=LLM_MAX_TOKENS,
        help="the gateway's VOICEBOT_LLM_MAX_TOKENS for the run (the direct path uses the same)",
    )
    parser.add_argument(
        "--variants",
        default="off",
        help="more gateways to run alongside, comma-separated: 'off' (VOICEBOT_SPECULATION=false); '' for none",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: N=1,5, 2+1 turns, two docs")
    parser.add_argument("--keep-turns", action="store_true", help="write every turn to the JSON")
    parser.add_argument("--note", default="", help="recorded as is, e.g. 'machine shared with other runs'")
    parser.add_argument("--log-dir", type=Path, default=LOG_DIR, help="Postgres, Triton and gateway logs")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if args.quick:
        args.concurrency, args.turns = "1,5", "2,1"
    args.concurrency = [int(v) for v in args.concurrency.split(",") if v.strip()]
    turns = parse_per_n(args.turns, args.concurrency, "turns")
    docs = [REPO / "docs" / "architecture.md", REPO / "docs" / "models.md"] if args.quick else [REPO / "docs"]

    from tests.speech import speak_pcm16
    from voicebot_models.manifest import PROFILE_ENV, load_manifest

    profile = load_manifest().profile(None)
    os.environ[PROFILE_ENV] = profile.name
    questions = QUESTIONS[:3] if args.quick else QUESTIONS
    utterances = [Utterance(q, speak_pcm16(q)) for q in questions]
    gateway_env = {
        "VOICEBOT_TRITON_TIMEOUT_S": f"{args.triton_timeout_s:g}",
        "VOICEBOT_LLM_MAX_TOKENS": str(args.llm_max_tokens),
        # Every session of the benchmark is the same anonymous loopback caller.
        "VOICEBOT_MAX_SESSIONS_PER_KEY": str(max(args.concurrency) * 2),
        "VOICEBOT_RATE_LIMIT_PER_MINUTE": "100000",
    }

    known_variants = {"off": {"VOICEBOT_SPECULATION": "false"}}
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(names) - set(known_variants))
    if unknown:
        raise SystemExit(
            f"error: unknown --variants {', '.join(unknown)}; known: {', '.join(known_variants)}"
        )
    variants = {name: known_variants[name] for name in names}

    started = time.time()
    load_start = os.getloadavg()
    with local_stack(args.log_dir, docs, gateway_env, variants) as stack:
        measured = asyncio.run(bench(stack, utterances, args, turns))
    report: dict[str, Any] = {
        "benchmark": "voice turns through the gateway (WebSocket /v1/voice) vs the stages called directly",
        "command": " ".join(
            ["python -m tests.bench.bench_voice", *(argv if argv is not None else sys.argv[1:])]
        ),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "duration_s": round(time.time() - started, 1),
        "note": args.note,
        "machine": machine(load_start),
        "profile": profile_models(profile),
        "gateway": {
            "mode": "dev (anonymous loopback), its own process (voicebot serve), default settings except:",
            "settings_overridden": gateway_env,
            "why": {
                "VOICEBOT_TRITON_TIMEOUT_S": "N sessions queue on one instance of each model, so a call "
                "may wait minutes; the default 30 s would report that queueing as `timeout` errors "
                "instead of measuring it",
                "VOICEBOT_LLM_MAX_TOKENS": "a spoken answer of one to three short sentences fits; the "
                "small local model often repeats itself up to the default 256 tokens, and each "
                "turn holds the single LLM instance that long, so N = 100 would take most of an hour",
                "VOICEBOT_MAX_SESSIONS_PER_KEY, VOICEBOT_RATE_LIMIT_PER_MINUTE": "all N sessions are "
                "one anonymous loopback caller, whom the per-caller limits would otherwise refuse",
            },
        },
        "method": {
            "frame_ms": FRAME_MS,
            "pacing": "real time (frame k sent (k+1) x 100 ms after the first), turn.end right after the last frame",
            "ramp_s": args.ramp_s,
            "concurrency": args.concurrency,
            "turns_per_session": turns,
            "turn_timeout_s": args.turn_timeout_s,
            "docs_ingested": [str(d.relative_to(REPO)) for d in docs],
            "chunks_ingested": stack.ingested_chunks,
            "utterances": [
                {"text": u.text, "audio_s": round(u.audio_s, 2), "transcript": measured["transcripts"].get(i)}
                for i, u in enumerate(utterances)
            ],
            "times": "ms at the client from sending turn.end: time_to_first_audio = first binary "
            "audio frame of the turn, transcript_final, llm_first_token = first answer.delta, turn_total = turn.done",
            "gateway_added": "client TTFA - turn.done.timings.tts_first_audio (see docs/performance.md)",
            "direct": "asr sequence fed as the gateway feeds it + embed/hybrid search + LLM to the first "
            "sentence (same prompt, its question-free prefix evaluated first, untimed) + TTS first chunk "
            "of it, called from the benchmark process; direct turn k runs after gateway turn k+1",
            "physical_limit": "direct ASR tail + LLM question tokens to the first sentence with the prefix "
            "cached + TTS first chunk (retrieval excluded: speculation moves it before the release)",
            "variants": {name: dict(extra) for name, extra in variants.items()},
        },
        "goals": {},
        "results": measured["results"],
        "variants": measured["variants"],
        "direct_at_n1": measured["direct_at_n1"],
    }
    report["goals"] = goals(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    print(json.dumps(report["goals"], indent=2), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
