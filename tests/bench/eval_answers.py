"""Answer quality of the whole product on documents nobody here wrote: `make eval-answers`.

Run as ``python -m tests.bench.eval_answers``; writes ``build/bench/answers.json`` and prints a
table. docs/quality.md explains the method and every figure; nothing here asserts.

1. Installs the corpora (scripts/install-eval-corpora.sh: the pages pinned in
   tests/data/answers/corpora.json, from Debian packages) and starts the local stack as
   bench_voice does: embedded Postgres, Triton with the models of the active profile
   (VOICEBOT_MODEL_PROFILE), the gateway as its own process in dev mode; the corpora are
   ingested into a fresh database by the real ingest pipeline through the real `embed` model.
2. For each question of tests/data/answers/questions.json (filtered by --split/--corpus/--limit):
   - retrieval: the typed question through the product's own search (ingest.search, the
     gateway's collection and depth 5): the rank of the first hit from the question's page that
     holds its needle;
   - text path: POST /v1/chat/completions (not streamed), one question per conversation;
   - voice path: the question spoken by espeak-ng (voice, rate and background noise chosen
     per question, deterministically), played as real-time 100 ms PCM16 frames over the
     WebSocket /v1/voice exactly as bench_voice plays them, one session per question.
   All text turns run before all voice turns: llama.cpp reuses the prompt prefix of the request
   before, so a voice turn right after the same question typed would get a head start no user gets.
3. Each answer gets a verdict: right (every keyword group matched, not a decline), wrong,
   declined, or for a question the corpora do not answer, declined (right) or answered (wrong);
   its `[n]` citations are checked against the passages the gateway reported.

`--keep-stack` leaves Postgres (with the corpora ingested) and Triton running after the run and
reuses them on the next `--keep-stack` run while the models, the ingest code and the corpora are
unchanged (a fingerprint of them is recorded); the gateway is started anew every run, so gateway
changes are always measured. `--stop-stack` stops a kept stack.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.bench.bench_voice import (
    TurnRecord,
    Utterance,
    VoiceClient,
    gateway_turn,
    local_stack,
    percentile,
    store_and_models,
)
from tests.bench.report import machine, profile_models

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "answers"
CORPORA_LIST = DATA / "corpora.json"
QUESTIONS = DATA / "questions.json"
CORPORA_DIR = REPO / "build" / "eval-corpora"
OUT = REPO / "build" / "bench" / "answers.json"
WORK_DIR = REPO / "build" / "eval-answers"
STACK_FILE = WORK_DIR / "stack.json"
MODELS = REPO / "images" / "triton" / "models"

# Speech: three espeak-ng voices, five rates, a third of the questions with pink noise.
VOICES = ("en-us", "en-gb", "en-us+f3")
RATES_WPM = (140, 150, 160, 170, 180)
NOISE_SNR_DB = 15.0
HIT_DEPTH = 5  # retrieval hit@1 and hit@5
TURN_TIMEOUT_S = 300.0
CHAT_TIMEOUT_S = 300.0
PATHS = ("text", "voice")
SPLITS = ("tune", "heldout")
# Gateway settings changed for the eval (recorded in the JSON). The answers come from the
# product's defaults; only limits that would turn a slow shared machine into errors are raised.
GATEWAY_ENV = {
    # A long answer from a larger model on 2 busy cores may pass the default 30 s; that is a
    # latency figure (reported), not a wrong answer.
    "VOICEBOT_TRITON_TIMEOUT_S": "300",
    # Every request of the eval is the same anonymous loopback caller.
    "VOICEBOT_RATE_LIMIT_PER_MINUTE": "100000",
}


# ---- pure parts (tests/unit/test_eval_answers.py) -----------------------------------------------

_NUMBER_WORDS = {
    word: str(i)
    for i, word in enumerate(
        [
            "zero",
            "one",
            "two",
            "three",
            "four",
            "five",
            "six",
            "seven",
            "eight",
            "nine",
            "ten",
            "eleven",
            "twelve",
            "thirteen",
            "fourteen",
            "fifteen",
            "sixteen",
            "seventeen",
            "eighteen",
            "nineteen",
            "twenty",
        ]
    )
}
_CITATION = re.compile(r"\[\s*(\d+(?:\s*[,;]\s*\d+)*)\s*\]")


def normalise(text: str) -> str:
    """Lower case; quotes and backticks dropped; every other run of punctuation (`-`, `_`, `.`,
    `/`, ...) a space, so "--soft" reads "soft" and "VOICEBOT_DEV_MODE" "voicebot dev mode";
    thousands separators dropped and the number words zero to twenty written as digits, so
    "two weeks" and "2 weeks", "1,000" and "1000" are the same."""
    text = text.casefold()
    text = re.sub(r"['\u2018\u2019`\"\u201c\u201d]", "", text)
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)
    words = re.sub(r"[^0-9a-z]+", " ", text).split()
    return " ".join(_NUMBER_WORDS.get(w, w) for w in words)


def without_citations(text: str) -> str:
    """`text` without its `[n]` markers, so that a "[1]" never counts as the number 1."""
    return _CITATION.sub(" ", text)


def _phrase(keyword: str) -> re.Pattern[str]:
    # Whole words, with a plain inflection allowed at the end ("abort" matches "aborts", "aborted").
    return re.compile(rf"(?<![0-9a-z]){re.escape(normalise(keyword))}(?:s|es|d|ed|ing)?(?![0-9a-z])")


def missed_groups(answer: str, groups: Sequence[Sequence[str]]) -> list[int]:
    """Indices of the keyword groups none of whose alternatives is in the answer."""
    text = normalise(without_citations(answer))
    return [
        i for i, group in enumerate(groups) if not any(_phrase(k).search(text) for k in group if k.strip())
    ]


def matches_keywords(answer: str, groups: Sequence[Sequence[str]]) -> bool:
    """Every group matched by at least one of its alternatives (no groups: never right)."""
    return bool(groups) and not missed_groups(answer, groups)


def is_decline(answer: str, declined: object = None, no_answer: str | None = None) -> bool:
    """The product declined: a `declined: true` field when the API gives one, else its stable
    sentence (orchestrator.prompt.NO_ANSWER) anywhere in the answer."""
    if declined is True:
        return True
    if no_answer is None:
        from orchestrator.prompt import NO_ANSWER

        no_answer = NO_ANSWER
    sentence = normalise(no_answer)
    return bool(sentence) and sentence in normalise(answer)


def cited_numbers(answer: str) -> list[int]:
    """The passage numbers cited as [n] (also [1, 2]), in order of first appearance."""
    seen: list[int] = []
    for match in _CITATION.finditer(answer):
        for n in re.split(r"[,;]", match.group(1)):
            if int(n) not in seen:
                seen.append(int(n))
    return seen


def holds(text: str | None, needle: str) -> bool:
    """The needle is in the text, both normalised (markup and spacing ignored)."""
    return text is not None and normalise(needle) in normalise(text)


@dataclass(frozen=True)
class CitationCheck:
    cited: list[int]
    correct: bool | None  # None: no citation, or no passages to check against

    @property
    def any(self) -> bool:
        return bool(self.cited)


def check_citations(answer: str, passages: Sequence[str | None] | None, needle: str) -> CitationCheck:
    """Correct when every [n] names a passage the answer was given (1..len) and at least one
    cited passage holds the needle. `passages[n-1]` is passage n's text (None: not resolved)."""
    cited = cited_numbers(answer)
    if not cited or passages is None:
        return CitationCheck(cited, None)
    if any(n < 1 or n > len(passages) for n in cited):
        return CitationCheck(cited, False)
    return CitationCheck(cited, any(holds(passages[n - 1], needle) for n in cited))


def resolve_passage(source: Mapping[str, Any], chunks_by_source: Mapping[str, Sequence[str]]) -> str | None:
    """The full text of a passage the gateway cited. Its events carry a snippet (the passage's
    first characters), not the passage; the eval owns the database, so the passage is the chunk
    of that document that starts with (or else contains) the snippet. A `text` field wins."""
    if isinstance(source.get("text"), str):
        return str(source["text"])
    snippet = normalise(str(source.get("snippet") or ""))
    candidates = chunks_by_source.get(str(source.get("source")), ())
    if not snippet:
        return None
    for text in candidates:
        if normalise(text).startswith(snippet):
            return text
    return next((text for text in candidates if snippet in normalise(text)), None)


def word_error_rate(references: Sequence[str], hypotheses: Sequence[str]) -> float | None:
    """Corpus WER (jiwer: all edits over all reference words), both sides normalised."""
    import jiwer

    pairs = [(normalise(r), normalise(h)) for r, h in zip(references, hypotheses, strict=True)]
    pairs = [(r, h) for r, h in pairs if r]
    if not pairs:
        return None
    return float(jiwer.wer([r for r, _ in pairs], [h for _, h in pairs]))


def parse_sse(text: str) -> list[tuple[str, dict[str, Any]]]:
    """Server-Sent Events as (event name, JSON data), in order; `message` when unnamed."""
    events: list[tuple[str, dict[str, Any]]] = []
    for block in re.split(r"\r?\n\r?\n", text):
        name, data = "message", []
        for line in block.splitlines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
        if data:
            events.append((name, json.loads("\n".join(data))))
    return events


@dataclass(frozen=True)
class SpeechPlan:
    voice: str
    rate_wpm: int
    noise_snr_db: float | None


def speech_plan(question_id: str) -> SpeechPlan:
    """Voice, rate and noise of a question, from a digest of its id: the same every run and on
    every machine (unlike hash()), and independent of the order of the question file."""
    h = int(hashlib.sha256(question_id.encode()).hexdigest(), 16)
    return SpeechPlan(
        voice=VOICES[h % len(VOICES)],
        rate_wpm=RATES_WPM[(h // len(VOICES)) % len(RATES_WPM)],
        noise_snr_db=NOISE_SNR_DB if (h // (len(VOICES) * len(RATES_WPM))) % 3 == 0 else None,
    )


def verdict(
    answerable: bool, answer: str, declined: bool, keywords: Sequence[Sequence[str]], error: str | None
) -> str:
    if error and not answer:
        return "error"
    if not answerable:
        return "declined" if declined else "answered"
    if declined:
        return "declined"
    return "right" if matches_keywords(answer, keywords) else "wrong"


@dataclass(frozen=True)
class Question:
    id: str
    corpus: str
    question: str
    answerable: bool
    split: str
    page: str | None = None
    keywords: tuple[tuple[str, ...], ...] = ()
    needle: str | None = None
    kind: str | None = None


def load_questions(path: Path = QUESTIONS) -> list[Question]:
    data = json.loads(path.read_text())
    return [
        Question(
            id=q["id"],
            corpus=q["corpus"],
            question=q["question"],
            answerable=bool(q["answerable"]),
            split=q["split"],
            page=q.get("page"),
            keywords=tuple(tuple(group) for group in q.get("keywords", ())),
            needle=q.get("needle"),
            kind=q.get("kind"),
        )
        for q in data["questions"]
    ]


def interleave(questions: Sequence[Question]) -> list[Question]:
    """Round robin over the corpora (file order within each), so that `--limit 6` still asks
    both corpora and some questions they do not answer."""
    groups: dict[str, list[Question]] = {}
    for q in questions:
        groups.setdefault(q.corpus, []).append(q)
    ordered: list[Question] = []
    for i in range(max((len(g) for g in groups.values()), default=0)):
        ordered.extend(g[i] for g in groups.values() if i < len(g))
    return ordered


@dataclass
class PathResult:
    """One question through one path (text or voice)."""

    answer: str = ""
    declined: bool = False
    verdict: str = ""
    missed_groups: list[int] = field(default_factory=list)
    cited: list[int] = field(default_factory=list)
    citation_correct: bool | None = None
    sources: list[dict[str, Any]] | None = None  # as the API reported them; None: it reports none
    sources_hold_needle: bool | None = None
    transcript: str | None = None
    wer: float | None = None
    ttfa_ms: float | None = None
    chat_ms: float | None = None  # text: the request; voice: release to turn.done
    timings: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass
class QuestionRecord:
    id: str
    corpus: str
    split: str
    answerable: bool
    question: str
    page: str | None
    needle: str | None
    needle_in_corpus: bool | None = None  # False: the chunker no longer keeps the needle whole
    retrieval_rank: int | None = None
    retrieval_page_rank: int | None = None  # the first hit from the question's page, needle or not
    speech: dict[str, Any] | None = None
    text: PathResult | None = None
    voice: PathResult | None = None


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 3) if whole else None


def _p(values: Sequence[float], q: float) -> float | None:
    return round(percentile(values, q), 1) if values else None


def summarize(records: Sequence[QuestionRecord], path: str) -> dict[str, Any]:
    """The figures of one path over some questions (docs/quality.md defines each)."""
    results = [(r, getattr(r, path)) for r in records if getattr(r, path) is not None]
    answerable = [(r, p) for r, p in results if r.answerable]
    unanswerable = [(r, p) for r, p in results if not r.answerable]
    answered = [(r, p) for r, p in answerable if p.verdict in ("right", "wrong")]
    with_citation = [(r, p) for r, p in answered if p.cited]
    checked = [(r, p) for r, p in with_citation if p.citation_correct is not None]
    ranks = [r.retrieval_rank for r in records if r.answerable and r.needle_in_corpus is not False]
    page_ranks = [r.retrieval_page_rank for r in records if r.answerable]
    in_sources = [p.sources_hold_needle for _, p in answerable if p.sources_hold_needle is not None]
    figures: dict[str, Any] = {
        "questions": len(results),
        "answerable": len(answerable),
        "right": sum(1 for _, p in answerable if p.verdict == "right"),
        "answer_accuracy": _ratio(sum(1 for _, p in answerable if p.verdict == "right"), len(answerable)),
        "unanswerable": len(unanswerable),
        "abstention_accuracy": _ratio(
            sum(1 for _, p in unanswerable if p.verdict == "declined"), len(unanswerable)
        ),
        "false_declines": _ratio(sum(1 for _, p in answerable if p.verdict == "declined"), len(answerable)),
        "cited_share": _ratio(len(with_citation), len(answered)),
        "citation_correctness": _ratio(sum(1 for _, p in checked if p.citation_correct), len(checked)),
        "citations_checked": len(checked),
        "retrieval_hit@1": _ratio(sum(1 for k in ranks if k == 1), len(ranks)),
        "retrieval_hit@5": _ratio(sum(1 for k in ranks if k is not None and k <= HIT_DEPTH), len(ranks)),
        "retrieval_page_hit@5": _ratio(
            sum(1 for k in page_ranks if k is not None and k <= HIT_DEPTH), len(page_ranks)
        ),
        "sources_hold_needle": _ratio(sum(1 for v in in_sources if v), len(in_sources)),
        "errors": sum(1 for _, p in results if p.error),
        "chat_ms_p50": _p([p.chat_ms for _, p in results if p.chat_ms is not None], 50),
    }
    if path == "voice":
        spoken = [(r, p) for r, p in results if p.transcript is not None]
        wer = word_error_rate([r.question for r, _ in spoken], [p.transcript or "" for _, p in spoken])
        ttfa = [p.ttfa_ms for _, p in results if p.ttfa_ms is not None]
        figures.update(
            wer=None if wer is None else round(wer, 3),
            ttfa_ms_p50=_p(ttfa, 50),
            ttfa_ms_p95=_p(ttfa, 95),
        )
    return figures


def all_figures(records: Sequence[QuestionRecord], paths: Sequence[str]) -> dict[str, Any]:
    """figures[path][split][corpus], with "all" for every split and every corpus."""
    corpora = sorted({r.corpus for r in records})
    out: dict[str, Any] = {}
    for path in paths:
        out[path] = {}
        for split in (*SPLITS, "all"):
            chosen = [r for r in records if split in ("all", r.split)]
            if not chosen:
                continue
            out[path][split] = {c: summarize([r for r in chosen if r.corpus == c], path) for c in corpora}
            out[path][split]["all"] = summarize(chosen, path)
    return out


def _cell(value: Any, width: int, key: str) -> str:
    """Milliseconds as whole numbers, every other figure (ratios, WER, which may pass 1) with two decimals."""
    if value is None:
        text = "-"
    elif isinstance(value, float):
        text = f"{value:.0f}" if "_ms_" in key else f"{value:.2f}"
    else:
        text = str(value)
    return text.rjust(width)


def table(figures: Mapping[str, Any]) -> str:
    """A compact text table: one row per path, split and corpus that has questions."""
    columns = [
        ("n", "questions", 4),
        ("acc", "answer_accuracy", 5),
        ("abst", "abstention_accuracy", 5),
        ("fdecl", "false_declines", 6),
        ("cited", "cited_share", 6),
        ("cite ok", "citation_correctness", 8),
        ("hit@1", "retrieval_hit@1", 6),
        ("hit@5", "retrieval_hit@5", 6),
        ("page@5", "retrieval_page_hit@5", 7),
        ("in src", "sources_hold_needle", 7),
        ("WER", "wer", 6),
        ("ttfa50", "ttfa_ms_p50", 7),
        ("ttfa95", "ttfa_ms_p95", 7),
        ("chat50", "chat_ms_p50", 7),
        ("err", "errors", 4),
    ]
    head = f"{'path':<6}{'split':<8}{'corpus':<8}" + "".join(name.rjust(w) for name, _, w in columns)
    lines = [head, "-" * len(head)]
    for path, by_split in figures.items():
        for split, by_corpus in by_split.items():
            for corpus, f in by_corpus.items():
                if not f["questions"]:
                    continue
                cells = "".join(_cell(f.get(key), w, key) for _, key, w in columns)
                lines.append(f"{path:<6}{split:<8}{corpus:<8}{cells}")
    return "\n".join(lines)


# ---- corpora ------------------------------------------------------------------------------------


def load_corpora(path: Path = CORPORA_LIST) -> list[dict[str, Any]]:
    return list(json.loads(path.read_text())["corpora"])


def install_corpora(dest: Path) -> None:
    """scripts/install-eval-corpora.sh: the packages (when missing) and the pinned pages."""
    subprocess.run([str(REPO / "scripts" / "install-eval-corpora.sh"), str(dest)], check=True)


# ---- the stack ----------------------------------------------------------------------------------


@dataclass
class EvalStack:
    gateway_url: str
    triton_url: str
    dsn: str
    chunks: int
    reused: bool = False


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def fingerprint(profile: str, docs: Sequence[Path]) -> str:
    """What a kept Postgres + Triton depend on: the profile, the Triton models and the weights
    manifest (Triton), the ingest code and the pages (the ingested chunks). The gateway is not
    in it: it is started anew every run."""
    digest = hashlib.sha256(profile.encode())
    files: list[Path] = []
    for folder in (MODELS, REPO / "ingest", REPO / "images" / "triton" / "voicebot_models", *docs):
        files.extend(p for p in sorted(folder.rglob("*")) if p.is_file() and "__pycache__" not in p.parts)
    for p in files:
        digest.update(str(p.relative_to(REPO) if p.is_relative_to(REPO) else p).encode())
        digest.update(p.read_bytes())
    return digest.hexdigest()[:16]


def _process_is(pid: int, name: str) -> bool:
    """The pid is alive and runs `name` (a recorded pid may since belong to someone else)."""
    try:
        return name in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


_KEPT_NAMES = {"postgres": "postgres", "triton": "tritonserver"}


def stop_kept_stack() -> bool:
    """Stop the Postgres and Triton a --keep-stack run left (by their recorded process groups)."""
    if not STACK_FILE.exists():
        return False
    kept = json.loads(STACK_FILE.read_text())
    for component, pid in kept["pids"].items():
        if not _process_is(pid, _KEPT_NAMES[component]):
            continue
        # Postgres' fast shutdown is SIGINT; Triton stops on SIGTERM. Then the whole group goes.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGINT if component == "postgres" else signal.SIGTERM)
        deadline = time.monotonic() + 30
        while _process_is(pid, _KEPT_NAMES[component]) and time.monotonic() < deadline:
            time.sleep(0.25)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    shutil.rmtree(kept["state_dir"], ignore_errors=True)
    STACK_FILE.unlink()
    _say(f"==> stopped the kept eval stack ({kept['dsn']}, {kept['triton_url']})")
    return True


def _kept_stack(print_: str) -> dict[str, Any] | None:
    """The recorded stack, if it is alive and its fingerprint is `print_`."""
    from orchestrator.stack.component import http_ok

    if not STACK_FILE.exists():
        return None
    kept: dict[str, Any] = json.loads(STACK_FILE.read_text())
    alive = all(_process_is(pid, _KEPT_NAMES[c]) for c, pid in kept["pids"].items())
    if alive and kept["fingerprint"] == print_ and http_ok(kept["triton_http_url"] + "/v2/health/ready"):
        return kept
    _say("==> the kept eval stack is gone or out of date (models, ingest code or pages changed)")
    stop_kept_stack()
    return None


async def _ingest(dsn: str, triton_url: str, docs: Sequence[Path]) -> int:
    from ingest.embedding import TritonEmbedder
    from ingest.migrate import migrate
    from ingest.pipeline import ingest_paths

    await migrate(dsn)
    embedder = TritonEmbedder(triton_url)
    try:
        report = await ingest_paths(dsn, embedder, list(docs))
    finally:
        await embedder.close()
    return int(report.chunks)


def _start_kept(log_dir: Path, docs: Sequence[Path], print_: str) -> dict[str, Any]:
    """Postgres and Triton as local_stack starts them, but left running and recorded."""
    from orchestrator.stack.runner import StackRunner

    state = Path(tempfile.mkdtemp(prefix="voicebot-eval-answers-"))
    state.chmod(0o755)  # PostgreSQL runs as an unprivileged user when we are root
    postgres, triton = store_and_models(state, log_dir, "voicebot_eval")
    runner = StackRunner([postgres, triton], startup_timeout_s=600, say=_say)
    try:
        runner.start()
        chunks = asyncio.run(_ingest(postgres.dsn, triton.grpc_url, docs))
    except BaseException:
        runner.stop()
        shutil.rmtree(state, ignore_errors=True)
        raise
    # ProcessComponent has no public pid; its ManagedProcess has (see the report of issue 12).
    pids = {name: c._process.pid for name, c in (("postgres", postgres), ("triton", triton)) if c._process}
    kept = {
        "fingerprint": print_,
        "dsn": postgres.dsn,
        "triton_url": triton.grpc_url,
        "triton_http_url": triton.http_url,
        "pids": pids,
        "state_dir": str(state),
        "chunks": chunks,
    }
    STACK_FILE.parent.mkdir(parents=True, exist_ok=True)
    STACK_FILE.write_text(json.dumps(kept, indent=2) + "\n")
    return kept


@contextlib.contextmanager
def eval_stack(docs: Sequence[Path], keep: bool, profile: str) -> Iterator[EvalStack]:
    """The local stack with `docs` ingested: bench_voice's, or with --keep-stack a kept one."""
    log_dir = WORK_DIR / "logs"
    gateway_env = dict(GATEWAY_ENV)
    if not keep:
        with local_stack(log_dir, docs, gateway_env) as stack:
            yield EvalStack(stack.gateway_url, stack.triton_url, stack.dsn, stack.ingested_chunks)
        return

    from orchestrator.stack.gateway import GatewayProcess
    from orchestrator.stack.ports import free_port
    from orchestrator.stack.runner import StackRunner

    log_dir.mkdir(parents=True, exist_ok=True)
    print_ = fingerprint(profile, docs)
    kept = _kept_stack(print_)
    reused = kept is not None
    if kept is None:
        kept = _start_kept(log_dir, docs, print_)
    else:
        _say(f"==> reusing the kept eval stack ({kept['chunks']} chunks; --stop-stack stops it)")
    env = {
        "VOICEBOT_DEV_MODE": "true",
        "VOICEBOT_DATABASE_URL": kept["dsn"],
        "VOICEBOT_TRITON_URL": kept["triton_url"],
        "VOICEBOT_LOG_FORMAT": "text",
        **gateway_env,
    }
    gateway = GatewayProcess(host="127.0.0.1", port=free_port(), env=env, log_dir=log_dir)
    with StackRunner([gateway], startup_timeout_s=300, say=_say):
        yield EvalStack(gateway.url, kept["triton_url"], kept["dsn"], int(kept["chunks"]), reused)
    _say("==> Postgres and Triton kept running for the next --keep-stack run (--stop-stack stops them)")


# ---- asking -------------------------------------------------------------------------------------


class ListeningClient(VoiceClient):
    """bench_voice's client (same pacing, same timing), also keeping the turn's `sources`,
    `answer.done` and `turn.done` events whole: the verdict needs the cited passages and any
    `declined` field, which bench_voice's record leaves out."""

    def __init__(self, ws: Any) -> None:
        self.events: dict[str, dict[str, Any]] = {}
        super().__init__(ws)

    async def next_message(self, timeout_s: float) -> tuple[float, str | bytes]:
        at, message = await super().next_message(timeout_s)
        if isinstance(message, str):
            event = json.loads(message)
            if event.get("type") in ("sources", "answer.done", "turn.done"):
                self.events[str(event["type"])] = event
        return at, message


class Asker:
    """Asks the product, and checks its answers against the database the eval filled."""

    def __init__(self, stack: EvalStack, chunks_by_source: Mapping[str, Sequence[str]]) -> None:
        self.stack = stack
        self.chunks_by_source = chunks_by_source

    def _passages(self, sources: Sequence[Mapping[str, Any]] | None) -> list[str | None] | None:
        if sources is None:
            return None
        return [resolve_passage(s, self.chunks_by_source) for s in sources]

    def _judge(self, q: Question, result: PathResult) -> None:
        result.verdict = verdict(q.answerable, result.answer, result.declined, q.keywords, result.error)
        if q.answerable:
            result.missed_groups = missed_groups(result.answer, q.keywords)
        result.cited = cited_numbers(result.answer)
        if q.needle is not None:
            passages = self._passages(result.sources)
            result.citation_correct = check_citations(result.answer, passages, q.needle).correct
            if passages is not None:
                result.sources_hold_needle = any(holds(p, q.needle) for p in passages)

    async def text(self, client: Any, q: Question) -> PathResult:
        """POST /v1/chat/completions, not streamed; any `sources`/`citations`/`declined` field
        the response carries is used (docs/api.md documents none today)."""
        result = PathResult()
        began = time.perf_counter()
        try:
            response = await client.post(
                f"{self.stack.gateway_url}/v1/chat/completions",
                json={"model": "voicebot", "messages": [{"role": "user", "content": q.question}]},
                timeout=CHAT_TIMEOUT_S,
            )
            result.chat_ms = round((time.perf_counter() - began) * 1000, 1)
            body = response.json()
            if response.status_code != 200:
                result.error = f"http {response.status_code}: {json.dumps(body)[:200]}"
            else:
                choice = body["choices"][0]
                message = choice.get("message") or {}
                result.answer = str(message.get("content") or "")
                sources = next(
                    (
                        x.get(k)
                        for x in (message, choice, body)
                        for k in ("sources", "citations")
                        if x.get(k) is not None
                    ),
                    None,
                )
                result.sources = list(sources) if sources is not None else None
                declined = next((x["declined"] for x in (message, choice, body) if "declined" in x), None)
                result.declined = is_decline(result.answer, declined)
        except Exception as e:  # a failed request is this question's error, not the run's
            result.error = f"{type(e).__name__}: {e}"
        self._judge(q, result)
        return result

    async def text_sse(self, client: Any, q: Question) -> PathResult:
        """POST /v1/chat (`--text-api chat`): the product's own typed API, whose `sources` event
        lets typed answers' citations be checked while the completions response has none."""
        result = PathResult()
        began = time.perf_counter()
        try:
            response = await client.post(
                f"{self.stack.gateway_url}/v1/chat", json={"message": q.question}, timeout=CHAT_TIMEOUT_S
            )
            result.chat_ms = round((time.perf_counter() - began) * 1000, 1)
            if response.status_code != 200:
                result.error = f"http {response.status_code}: {response.text[:200]}"
            declined = None
            for name, data in parse_sse(response.text) if not result.error else []:
                if name == "sources" and data.get("available"):
                    result.sources = list(data.get("sources") or [])
                elif name == "done":
                    result.answer = str(data.get("text") or "")
                    declined = data.get("declined")
                elif name == "error":
                    result.error = f"{data.get('code')}: {data.get('message')}"
            result.declined = is_decline(result.answer, declined)
        except Exception as e:  # a failed request is this question's error, not the run's
            result.error = f"{type(e).__name__}: {e}"
        self._judge(q, result)
        return result

    async def voice(self, q: Question, utterance: Utterance) -> PathResult:
        """One push-to-talk turn in a new session (no history from other questions)."""
        result = PathResult()
        record = TurnRecord(concurrency=1, session=0, turn=1, utterance=0)
        ws_url = self.stack.gateway_url.replace("http://", "ws://", 1) + "/v1/voice"
        events: dict[str, dict[str, Any]] = {}
        try:
            async with ListeningClient.connect(ws_url) as client:
                await gateway_turn(client, record, utterance, TURN_TIMEOUT_S)
                events = client.events  # type: ignore[attr-defined]
        except Exception as e:  # the session could not open
            record.errors.append(f"connect:{type(e).__name__}")
        if record.errors:
            result.error = ",".join(record.errors)
        result.transcript = record.transcript if record.transcript_ms is not None else None
        result.answer = record.answer
        result.ttfa_ms = None if record.ttfa_ms is None else round(record.ttfa_ms, 1)
        result.chat_ms = None if record.total_ms is None else round(record.total_ms, 1)
        result.timings = dict(record.timings)
        sources_event = events.get("sources")
        if sources_event is not None and sources_event.get("available"):
            result.sources = list(sources_event.get("sources") or [])
        declined = next(
            (
                e["declined"]
                for e in (events.get("answer.done"), events.get("turn.done"))
                if e and "declined" in e
            ),
            None,
        )
        result.declined = is_decline(result.answer, declined)
        if result.transcript is not None:
            result.wer = word_error_rate([q.question], [result.transcript])
        self._judge(q, result)
        return result


def speak(q: Question) -> tuple[Utterance, SpeechPlan]:
    from tests.speech import speak_pcm16, with_noise

    plan = speech_plan(q.id)
    pcm = speak_pcm16(q.question, rate_wpm=plan.rate_wpm, voice=plan.voice)
    if plan.noise_snr_db is not None:
        pcm = with_noise(pcm, plan.noise_snr_db)
    return Utterance(q.question, pcm), plan


async def _chunks(dsn: str) -> dict[str, list[str]]:
    """Every chunk of the gateway's collection, by document source."""
    import psycopg

    from ingest.tenancy import DEFAULT_COLLECTION as COLLECTION

    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT d.source_uri, c.text FROM chunks c JOIN documents d ON d.id = c.document_id"
            " WHERE c.collection = %s ORDER BY c.id",
            (COLLECTION,),
        )
        by_source: dict[str, list[str]] = {}
        for source, text in await cur.fetchall():
            by_source.setdefault(source, []).append(text)
    return by_source


def _on_page(source: str, page: str | None) -> bool:
    return page is not None and source.rsplit("/", 1)[-1] == page


def chunks_per_corpus(
    chunks_by_source: Mapping[str, Sequence[str]], corpora: Sequence[str]
) -> dict[str, int]:
    """Chunks stored per corpus: the corpus is the folder its pages were copied to."""
    return {c: sum(len(t) for s, t in chunks_by_source.items() if f"/{c}/" in s) for c in corpora}


async def run(
    stack: EvalStack,
    questions: Sequence[Question],
    paths: Sequence[str],
    corpora: Sequence[str],
    text_api: str = "completions",
) -> tuple[list[QuestionRecord], dict[str, int]]:
    import httpx
    import psycopg

    from ingest.embedding import TritonEmbedder
    from ingest.search import search
    from ingest.tenancy import DEFAULT_COLLECTION as COLLECTION
    from ingest.tenancy import DEFAULT_TENANT_ID

    chunks_by_source = await _chunks(stack.dsn)
    asker = Asker(stack, chunks_by_source)
    records = [
        QuestionRecord(q.id, q.corpus, q.split, q.answerable, q.question, q.page, q.needle) for q in questions
    ]
    embedder = TritonEmbedder(stack.triton_url)
    try:
        async with await psycopg.AsyncConnection.connect(stack.dsn, autocommit=True) as conn:
            for q, r in zip(questions, records, strict=True):
                if q.needle is None:
                    continue
                r.needle_in_corpus = any(
                    holds(t, q.needle)
                    for s, texts in chunks_by_source.items()
                    if _on_page(s, q.page)
                    for t in texts
                )
                hits = await search(
                    conn, embedder, q.question, tenant=DEFAULT_TENANT_ID, collection=COLLECTION, k=HIT_DEPTH
                )
                r.retrieval_page_rank = next(
                    (i for i, h in enumerate(hits, 1) if _on_page(h.source, q.page)), None
                )
                r.retrieval_rank = next(
                    (
                        i
                        for i, h in enumerate(hits, 1)
                        if _on_page(h.source, q.page) and holds(h.text, q.needle)
                    ),
                    None,
                )
    finally:
        await embedder.close()

    def progress(path: str, i: int, r: QuestionRecord, p: PathResult) -> None:
        extra = f" heard={p.transcript!r}" if p.transcript is not None else ""
        error = f" error={p.error}" if p.error else ""
        _say(
            f"    {path} {i + 1}/{len(records)} {r.id}: {p.verdict} in {p.chat_ms or 0:.0f} ms{extra}{error}"
        )

    if "text" in paths:
        _say(f"==> text path: {len(questions)} questions")
        async with httpx.AsyncClient() as client:
            for i, (q, r) in enumerate(zip(questions, records, strict=True)):
                ask = asker.text if text_api == "completions" else asker.text_sse
                r.text = await ask(client, q)
                progress("text", i, r, r.text)
    if "voice" in paths:
        _say(f"==> voice path: {len(questions)} questions")
        for i, (q, r) in enumerate(zip(questions, records, strict=True)):
            utterance, plan = await asyncio.to_thread(speak, q)
            r.speech = {**asdict(plan), "audio_s": round(utterance.audio_s, 2)}
            r.voice = await asker.voice(q, utterance)
            progress("voice", i, r, r.voice)
    return records, chunks_per_corpus(chunks_by_source, corpora)


# ---- main ---------------------------------------------------------------------------------------


def _git_commit() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, check=False
        ).stdout.strip()

    return {
        "commit": git("rev-parse", "HEAD"),
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
    }


def select(
    questions: Iterable[Question], split: str, corpora: Sequence[str] | None, limit: int | None
) -> list[Question]:
    chosen = [
        q
        for q in questions
        if split in ("all", q.split) and (not corpora or q.corpus in corpora or q.corpus == "general")
    ]
    ordered = interleave(chosen)
    return ordered[:limit] if limit else ordered


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--split", choices=[*SPLITS, "all"], default="all")
    parser.add_argument("--paths", default="text,voice", help="comma-separated: text, voice")
    parser.add_argument(
        "--corpus",
        action="append",
        help="only this corpus (repeatable); its pages alone are ingested. The general questions "
        "the corpora do not answer are always asked",
    )
    parser.add_argument(
        "--text-api",
        choices=["completions", "chat"],
        default="completions",
        help="the text path's API: POST /v1/chat/completions (default) or the SSE POST /v1/chat, "
        "whose sources event makes typed answers' citations checkable",
    )
    parser.add_argument("--limit", type=int, help="at most N questions, taken round robin over the corpora")
    parser.add_argument("--questions", type=Path, default=QUESTIONS)
    parser.add_argument(
        "--corpora-dir", type=Path, default=CORPORA_DIR, help="where the pinned pages are copied"
    )
    parser.add_argument("--keep-stack", action="store_true", help="keep Postgres and Triton for the next run")
    parser.add_argument("--stop-stack", action="store_true", help="stop a kept stack and exit")
    parser.add_argument("--note", default="", help="recorded as is, e.g. 'machine shared with other runs'")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if args.stop_stack:
        if not stop_kept_stack():
            _say("no kept eval stack")
        return 0
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    if not paths or any(p not in PATHS for p in paths):
        parser.error(f"--paths takes a comma-separated list of {', '.join(PATHS)}")
    corpora = load_corpora()
    names = [c["name"] for c in corpora]
    if args.corpus and any(c not in names for c in args.corpus):
        parser.error(f"--corpus takes one of {', '.join(names)}")
    chosen_corpora = [c for c in names if not args.corpus or c in args.corpus]
    questions = select(load_questions(args.questions), args.split, args.corpus, args.limit)
    if not questions:
        parser.error("no question is left after --split/--corpus/--limit")

    from voicebot_models.manifest import PROFILE_ENV, load_manifest

    profile = load_manifest().profile(None)
    os.environ[PROFILE_ENV] = profile.name
    install_corpora(args.corpora_dir)
    docs = [args.corpora_dir.resolve() / name for name in chosen_corpora]

    started = time.time()
    load_start = os.getloadavg()
    commit = _git_commit()  # now: the tree may change while a long run goes on
    with eval_stack(docs, args.keep_stack, profile.name) as stack:
        _say(f"    {stack.chunks} chunks of {', '.join(chosen_corpora)} in the store")
        records, chunks = asyncio.run(run(stack, questions, paths, chosen_corpora, args.text_api))
    figures = all_figures(records, paths)
    report: dict[str, Any] = {
        "eval": "answer quality of the product on foreign corpora (docs/quality.md)",
        "command": " ".join(
            ["python -m tests.bench.eval_answers", *(argv if argv is not None else sys.argv[1:])]
        ),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "duration_s": round(time.time() - started, 1),
        "note": args.note,
        "git": commit,
        "machine": machine(load_start),
        "profile": profile_models(profile),
        "gateway": {"mode": "dev, its own process (voicebot serve)", "settings_overridden": GATEWAY_ENV},
        "method": {
            "questions_file": str(
                args.questions.relative_to(REPO) if args.questions.is_relative_to(REPO) else args.questions
            ),
            "split": args.split,
            "paths": paths,
            "text_api": "/v1/chat/completions" if args.text_api == "completions" else "/v1/chat (SSE)",
            "corpora": [
                {k: c[k] for k in ("name", "package", "written_against")} | {"pages": len(c["pages"])}
                for c in corpora
                if c["name"] in chosen_corpora
            ],
            "chunks": chunks,
            "stack_reused": stack.reused,
            "limit": args.limit,
            "speech": {
                "voices": list(VOICES),
                "rates_wpm": list(RATES_WPM),
                "noise": f"sox pink noise at {NOISE_SNR_DB:g} dB SNR on about a third of the questions",
                "frames": "100 ms PCM16 16 kHz, paced at real time (bench_voice)",
            },
            "decline": "orchestrator.prompt.NO_ANSWER in the answer, or a declined: true field",
            "retrieval": f"ingest.search, typed question, collection of the gateway, depth {HIT_DEPTH}",
        },
        "stale_needles": [r.id for r in records if r.needle_in_corpus is False],
        "figures": figures,
        "questions": [asdict(r) for r in records],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(figures))
    if report["stale_needles"]:
        print(f"stale needles (not whole in any chunk of their page): {', '.join(report['stale_needles'])}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
