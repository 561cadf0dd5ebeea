"""Model latency and throughput through Triton versus the same library called in-process.

Run as ``python -m tests.bench.bench_models [--profile P] [--out FILE] [--reps N]`` (``make
bench-models``); writes ``build/bench/models.json``. Each figure is measured twice in the same
run, alternating call by call so that load from elsewhere on the machine falls on both alike:
through the real tritonserver (gRPC, the streaming API for decoupled models) and by calling
faster-whisper, Piper, llama-cpp-python and onnxruntime directly with the settings of the
model's ``config.pbtxt``. ``ratio`` is Triton's cost over the direct cost (latency / latency, or
direct throughput / Triton throughput): 1.0 means no serving overhead; the goal is <= 1.10.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient

from orchestrator.stack.ports import free_port
from orchestrator.stack.triton import TritonServer
from tests.speech import speak_pcm16
from voicebot_models.asr_stream import AsrStream, Segment, StreamOptions
from voicebot_models.manifest import PROFILE_ENV, load_manifest
from voicebot_models.resolve import resolve_model

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "images" / "triton" / "models"
SPEECH = (
    "Please hold the button while you ask your question. The assistant reads your documents and "
    "answers with a short summary. Every answer cites the passages it was built from."
)
TTS_TEXT = (
    "Voicebot answers spoken questions about your documents. It retrieves the relevant passages, "
    "writes a short answer, and reads it back to you while the rest is still being written."
)
LLM_PROMPT = (
    "<|im_start|>system\nAnswer the question using only the passage. Be brief.<|im_end|>\n"
    "<|im_start|>user\nPassage: The Voicebot gateway listens on port 8080. Documents are stored in "
    "Postgres with pgvector, and the default voice is called Joe.\n\nQuestion: Where are documents "
    "stored, and which voice is the default? Explain in two sentences.<|im_end|>\n<|im_start|>assistant\n"
)
LLM_MAX_TOKENS = 48
CHUNK_S = 0.5
PARAM_RE = re.compile(r'key:\s*"([^"]+)",\s*value:\s*\{\s*string_value:\s*"([^"]*)"')


def config_parameters(model: str) -> dict[str, str]:
    """The ``parameters {}`` of a model's config.pbtxt (the in-process runs use the same values)."""
    return dict(PARAM_RE.findall((MODELS / model / "config.pbtxt").read_text()))


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"p50": round(statistics.median(ordered), 4), "p95": round(p95, 4), "n": len(ordered)}


def compare(triton: list[float], direct: list[float], *, higher_is_better: bool = False) -> dict[str, Any]:
    t, d = summary(triton), summary(direct)
    ratio = d["p50"] / t["p50"] if higher_is_better else t["p50"] / d["p50"]
    return {"triton": t, "direct": d, "ratio": round(ratio, 3)}


def alternate(
    reps: int, via_triton: Callable[[], float], direct: Callable[[], float]
) -> tuple[list[float], list[float]]:
    """Run both ``reps`` times, alternating (one warm-up each, not counted)."""
    via_triton(), direct()
    t, d = [], []
    for _ in range(reps):
        t.append(via_triton())
        d.append(direct())
    return t, d


def strings(*values: str) -> np.ndarray:
    return np.array([v.encode() for v in values], dtype=np.object_)


class Streams:
    """One gRPC stream kept open for a whole benchmark, as the gateway keeps its channel open."""

    def __init__(self, url: str) -> None:
        self.client = grpcclient.InferenceServerClient(url)
        self.got: queue.Queue[tuple[Any, Any]] = queue.Queue()
        self.client.start_stream(callback=lambda result, error: self.got.put((result, error)))

    def responses(self, model: str, inputs: list[grpcclient.InferInput]) -> Iterator[tuple[float, Any]]:
        """(seconds since the request, result) for each response of one decoupled request."""
        start = time.perf_counter()
        self.client.async_stream_infer(model, inputs, enable_empty_final_response=True)
        while True:
            result, error = self.got.get(timeout=600)
            if error is not None:
                raise RuntimeError(f"{model}: {error}")
            yield time.perf_counter() - start, result
            if result.get_response().parameters["triton_final_response"].bool_param:
                return

    def close(self) -> None:
        self.client.stop_stream()
        self.client.close()


# ---- asr ------------------------------------------------------------------------------------------


def bench_asr(url: str, reps: int) -> dict[str, Any]:
    from faster_whisper import WhisperModel

    params = config_parameters("asr")
    weights = resolve_model("asr")[0]
    threads = int(params.get("cpu_threads", "0")) or min(4, os.cpu_count() or 1)
    model = WhisperModel(
        str(weights.dir), device="cpu", compute_type=params.get("compute_type", "int8"), cpu_threads=threads
    )
    beam = int(params.get("beam_size", "1"))
    language = params.get("default_language") or ("en" if not model.model.is_multilingual else None)
    options = StreamOptions(
        partial_interval_s=float(params.get("partial_interval_s", "1.0")),
        commit_after_s=float(params.get("commit_after_s", "20")),
        max_audio_s=float(params.get("max_audio_s", "120")),
        silence_peak=int(params.get("silence_peak", "64")),
    )
    pcm = np.frombuffer(speak_pcm16(SPEECH, rate_wpm=150), dtype="<i2").astype(np.int16)
    audio_s = pcm.size / 16000
    chunk = int(CHUNK_S * 16000)
    client = grpcclient.InferenceServerClient(url)
    ids = iter(range(10_000, 10_000_000))

    def decode(audio: np.ndarray, lang: str | None) -> list[Segment]:
        segments, _ = model.transcribe(
            audio, language=lang, beam_size=beam, vad_filter=False, condition_on_previous_text=False
        )
        return [Segment(s.start, s.end, s.text.strip()) for s in segments]

    def infer(part: np.ndarray, sid: int, start: bool, end: bool) -> None:
        tensor = grpcclient.InferInput("audio", [part.size], "INT16")
        tensor.set_data_from_numpy(part)
        client.infer("asr", [tensor], sequence_id=sid, sequence_start=start, sequence_end=end)

    def triton_one_shot() -> float:
        t = time.perf_counter()
        infer(pcm, next(ids), True, True)
        return time.perf_counter() - t

    def direct_one_shot() -> float:
        t = time.perf_counter()
        stream = AsrStream(options, language=language)
        stream.append(pcm)
        stream.final(decode)
        return time.perf_counter() - t

    def triton_final_after_end() -> float:
        sid = next(ids)
        for i, first in enumerate(range(0, pcm.size, chunk)):
            infer(pcm[first : first + chunk], sid, i == 0, False)
        t = time.perf_counter()
        infer(np.zeros(0, np.int16), sid, False, True)
        return time.perf_counter() - t

    def direct_final_after_end() -> float:
        stream = AsrStream(options, language=language)
        for first in range(0, pcm.size, chunk):
            stream.append(pcm[first : first + chunk])
            stream.partial(decode)
        t = time.perf_counter()
        stream.final(decode)
        return time.perf_counter() - t

    one_t, one_d = alternate(reps, triton_one_shot, direct_one_shot)
    end_t, end_d = alternate(max(2, reps // 2), triton_final_after_end, direct_final_after_end)
    client.close()
    return {
        "weights": weights.entry.id,
        "audio_s": round(audio_s, 2),
        "one_shot_latency_s": compare(one_t, one_d),
        "real_time_factor": compare([x / audio_s for x in one_t], [x / audio_s for x in one_d]),
        "final_latency_after_end_s": compare(end_t, end_d),
    }


# ---- tts ------------------------------------------------------------------------------------------


def bench_tts(url: str, reps: int) -> dict[str, Any]:
    import onnxruntime as ort
    from piper import PiperVoice
    from piper.config import PiperConfig

    params = config_parameters("tts")
    weights = resolve_model("tts")[0]
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(params.get("intra_op_threads", "0"))
    voice = PiperVoice(
        session=ort.InferenceSession(str(weights.file), options, providers=["CPUExecutionProvider"]),
        config=PiperConfig.from_dict(json.loads(Path(f"{weights.file}.json").read_text())),
    )
    rate = voice.config.sample_rate
    first: dict[str, list[float]] = {"triton": [], "direct": []}
    rtf: dict[str, list[float]] = {"triton": [], "direct": []}
    chunks_seen: list[int] = []
    streams = Streams(url)

    def via_triton() -> float:
        text = grpcclient.InferInput("text", [1], "BYTES")
        text.set_data_from_numpy(strings(TTS_TEXT))
        samples, first_at, total, count = 0, None, 0.0, 0
        for at, result in streams.responses("tts", [text]):
            audio = result.as_numpy("audio")
            if audio is not None:
                first_at = at if first_at is None else first_at
                samples += audio.size
                count += 1
            total = at
        first["triton"].append(first_at or total)
        rtf["triton"].append(total / (samples / rate))
        chunks_seen.append(count)
        return total

    def direct() -> float:
        t = time.perf_counter()
        samples, first_at = 0, None
        for chunk in voice.synthesize(TTS_TEXT):
            first_at = time.perf_counter() - t if first_at is None else first_at
            samples += chunk.audio_int16_array.size
        total = time.perf_counter() - t
        first["direct"].append(first_at or total)
        rtf["direct"].append(total / (samples / rate))
        return total

    alternate(reps, via_triton, direct)
    streams.close()
    for key in ("triton", "direct"):  # drop the warm-up
        first[key], rtf[key] = first[key][1:], rtf[key][1:]
    return {
        "weights": weights.entry.id,
        "sample_rate": rate,
        "chunks_per_request": chunks_seen[-1],
        "real_time_factor": compare(rtf["triton"], rtf["direct"]),
        "first_chunk_latency_s": compare(first["triton"], first["direct"]),
    }


# ---- llm ------------------------------------------------------------------------------------------


def bench_llm(url: str, reps: int) -> dict[str, Any]:
    from llama_cpp import Llama

    params = config_parameters("llm")
    weights = resolve_model("llm")[0]
    llm = Llama(
        model_path=str(weights.file),
        n_ctx=int(params.get("n_ctx", "4096")),
        n_batch=int(params.get("n_batch", "512")),
        n_threads=int(params.get("n_threads", "1")) or os.cpu_count() or 1,
        n_threads_batch=int(params.get("n_threads_batch", "0")) or os.cpu_count() or 1,
        verbose=False,
    )
    sampling = {"temperature": 0.0, "top_p": 1.0, "max_tokens": LLM_MAX_TOKENS}
    ttft: dict[str, list[float]] = {"triton": [], "direct": []}
    rate: dict[str, list[float]] = {"triton": [], "direct": []}
    # A different first token each time defeats llama.cpp's prompt-prefix cache in both paths alike.
    counter = iter(range(1_000_000))
    streams = Streams(url)

    def prompt() -> str:
        return f"<!-- request {next(counter)} -->\n" + LLM_PROMPT

    def record(key: str, times: list[float], tokens: int) -> float:
        ttft[key].append(times[0])
        if tokens > 1 and times[-1] > times[0]:
            rate[key].append((tokens - 1) / (times[-1] - times[0]))
        return times[-1]

    def via_triton() -> float:
        text = grpcclient.InferInput("text_input", [1], "BYTES")
        text.set_data_from_numpy(strings(prompt()))
        samp = grpcclient.InferInput("sampling_parameters", [1], "BYTES")
        samp.set_data_from_numpy(strings(json.dumps(sampling)))
        times, tokens = [], 0
        for at, result in streams.responses("llm", [text, samp]):
            out = result.as_numpy("text_output")
            if out is not None and out.size and out[0]:
                times.append(at)
            n = result.as_numpy("num_output_tokens")
            tokens = int(n[0]) if n is not None else tokens
        return record("triton", times, len(times))

    def direct() -> float:
        t = time.perf_counter()
        times = []
        for chunk in llm.create_completion(prompt(), stream=True, **sampling):
            if chunk["choices"][0]["text"]:
                times.append(time.perf_counter() - t)
        return record("direct", times, len(times))

    alternate(reps, via_triton, direct)
    streams.close()
    for key in ("triton", "direct"):
        ttft[key], rate[key] = ttft[key][1:], rate[key][1:]
    return {
        "weights": weights.entry.id,
        "max_tokens": LLM_MAX_TOKENS,
        "time_to_first_token_s": compare(ttft["triton"], ttft["direct"]),
        "tokens_per_s": compare(rate["triton"], rate["direct"], higher_is_better=True),
    }


# ---- embed ----------------------------------------------------------------------------------------


def bench_embed(url: str, reps: int) -> dict[str, Any]:
    import onnxruntime as ort
    from tokenizers import Tokenizer

    params = config_parameters("embed")
    weights = resolve_model("embed")[0]
    tokenizer = Tokenizer.from_file(str(weights.dir / "tokenizer.json"))
    tokenizer.enable_truncation(int(params.get("max_tokens", "256")))
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(params.get("intra_op_threads", "0"))
    session = ort.InferenceSession(str(weights.file), options, providers=["CPUExecutionProvider"])
    texts = [
        f"Passage {i}: the gateway streams answers to the browser while the model writes them."
        for i in range(64)
    ]
    client = grpcclient.InferenceServerClient(url)

    def direct_embed(batch: list[str]) -> np.ndarray:
        enc = tokenizer.encode_batch(batch)
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
        hidden = session.run(
            None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        )[0]
        pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
        return np.asarray(pooled / np.linalg.norm(pooled, axis=1, keepdims=True))

    def triton_embed(batch: list[str]) -> None:
        tensor = grpcclient.InferInput("text", [len(batch), 1], "BYTES")
        tensor.set_data_from_numpy(np.array([[t.encode()] for t in batch], dtype=np.object_))
        client.infer("embed", [tensor])

    def timed(fn: Callable[[list[str]], Any], batch: list[str]) -> Callable[[], float]:
        def run() -> float:
            t = time.perf_counter()
            fn(batch)
            return time.perf_counter() - t

        return run

    batch_t, batch_d = alternate(reps, timed(triton_embed, texts), timed(direct_embed, texts))
    one_t, one_d = alternate(reps * 3, timed(triton_embed, texts[:1]), timed(direct_embed, texts[:1]))
    client.close()
    return {
        "weights": weights.entry.id,
        "batch": len(texts),
        "embeddings_per_s": compare(
            [len(texts) / x for x in batch_t], [len(texts) / x for x in batch_d], higher_is_better=True
        ),
        "single_text_latency_s": compare(one_t, one_d),
    }


# ---- main -----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--profile", help="model profile (default: VOICEBOT_MODEL_PROFILE or the manifest default)"
    )
    parser.add_argument("--out", type=Path, default=REPO / "build" / "bench" / "models.json")
    parser.add_argument("--reps", type=int, default=6, help="measured calls per path and figure")
    parser.add_argument("--models", default="asr,tts,llm,embed", help="comma-separated subset")
    args = parser.parse_args(argv)
    profile = load_manifest().profile(args.profile).name
    os.environ[PROFILE_ENV] = profile  # the in-process runs and the server resolve the same weights

    log_dir = args.out.parent / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    benches = {"asr": bench_asr, "tts": bench_tts, "llm": bench_llm, "embed": bench_embed}
    chosen = [m.strip() for m in args.models.split(",") if m.strip()]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="voicebot-bench-") as state:
        server = TritonServer(
            MODELS,
            http_port=free_port(),
            grpc_port=free_port(),
            metrics_port=free_port(),
            state_dir=Path(state),
            log_dir=log_dir,
            env={PROFILE_ENV: profile},
        )
        server.start()
        try:
            server.wait_ready(600)
            for name in chosen:
                print(f"==> {name}", file=sys.stderr, flush=True)
                results[name] = benches[name](server.grpc_url, args.reps)
                print(json.dumps(results[name], indent=2), file=sys.stderr, flush=True)
        finally:
            server.stop()

    ratios = {
        f"{model}.{figure}": value["ratio"]
        for model, figures in results.items()
        for figure, value in figures.items()
        if isinstance(value, dict) and "ratio" in value
    }
    report = {
        "profile": profile,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "load_average_at_end": list(os.getloadavg()),
        "goal": "Triton/direct overhead ratio <= 1.10 for every figure",
        "ratios": ratios,
        "max_ratio": max(ratios.values()) if ratios else None,
        "models": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out} (max ratio {report['max_ratio']})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
