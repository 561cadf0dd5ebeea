"""Parsing and chunking in worker processes, under CPU-time, memory and wall-clock limits.

Documents come from people we do not control, and parsers are where crafted input hurts: a
pattern that goes quadratic, markup nested thousands deep, PDF pages that share one compressed
stream. Run in the gateway, even in a thread, such a file holds the GIL and every voice session
of the replica stalls. So files are parsed and chunked here, in separate processes:

- each worker is `python -m ingest.parsing`, started with a minimal environment (no database
  DSN or signing secret), with `RLIMIT_AS` (memory) set once at start and `RLIMIT_CPU` set before
  every file to the CPU it has used plus `cpu_time_s`: past it the kernel ends the worker with
  SIGXCPU;
- the parent kills a worker that has not answered within `wall_time_s` (a worker waiting on
  nothing still holds a slot);
- the loaders' own caps (ingest.limits) refuse most hostile files early with a precise reason;
- a worker that dies is reported as `ParserCrashed`, never as a hang; the next file gets a
  fresh worker.

Workers are reused (starting one costs about half a second of CPU on 2 cores: the interpreter,
the tokenizer, pypdf): a pool keeps up to `workers` of them, each replaced after
`max_jobs_per_worker` files or after any file that hit a limit. Results come back as one
length-prefixed JSON frame per chunk (never pickle: the worker handles hostile input and the
parent must not execute what it sends), read frame by frame so the parent's event loop keeps
turning while a large document arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from ingest.errors import DocumentError, ParseError, ParseLimitExceeded, ParserCrashed, UnsupportedFormat
from ingest.limits import DEFAULT_LIMITS, ParseLimits

log = logging.getLogger(__name__)

_FRAME = struct.Struct(">I")
MAX_FRAME_BYTES = 64 * 1024 * 1024
START_TIMEOUT_S = 60.0  # a cold start on a busy 2-core machine, imports included
DEFAULT_MAX_JOBS_PER_WORKER = 200
MAX_TITLE_CHARS = 200  # a document title or one heading of a heading path
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)
# Passed to workers; nothing else of the parent's environment is (it holds the DSN and secrets).
_ENV_KEEP = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "PYTHONPATH", "TMPDIR", "HOME")
_WORKER_ENV = {
    # One thread each: the limits are per process, and 2 cores are shared with the gateway.
    "TOKENIZERS_PARALLELISM": "false",
    "RAYON_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    # glibc reserves 64 MiB of address space per malloc arena; RLIMIT_AS counts reservations.
    "MALLOC_ARENA_MAX": "2",
    "PYTHONDONTWRITEBYTECODE": "1",
}


@dataclass(frozen=True)
class PreparedChunk:
    """A chunk as the worker made it, with the text to embed for it."""

    position: int
    heading_path: tuple[str, ...]
    text: str
    token_count: int
    page: int | None
    embedding_input: str


@dataclass(frozen=True)
class PreparedDocument:
    title: str
    format: str
    metadata: dict[str, Any]
    chunks: list[PreparedChunk] = field(default_factory=list)


# ---- the worker side -----------------------------------------------------------------------


def prepare_document(
    data: bytes, path: Path, limits: ParseLimits, chunking: dict[str, int] | None = None
) -> PreparedDocument:
    """Parses and chunks one file in this process (what a worker does for each file)."""
    from ingest.chunking import Chunker, ChunkingConfig, embedding_input
    from ingest.loaders import parse_bytes

    doc = parse_bytes(data, path, limits)
    # Titles and headings are shown in citations and embedded with every chunk: one line, bounded.
    title = " ".join(doc.title.replace("\x00", "").split())[:MAX_TITLE_CHARS] or path.name
    config = ChunkingConfig(**(chunking or {}))
    chunks = [c for c in Chunker(config).chunk(doc) if c.text.replace("\x00", "").strip()]
    prepared = []
    for position, chunk in enumerate(chunks):
        text = chunk.text.replace("\x00", "")
        path_ = tuple(" ".join(h.replace("\x00", "").split())[:MAX_TITLE_CHARS] for h in chunk.heading_path)
        prepared.append(
            PreparedChunk(
                position, path_, text, chunk.token_count, chunk.page, embedding_input(title, path_, text)
            )
        )
    return PreparedDocument(title, doc.format, dict(doc.metadata), prepared)


def _write_frame(out: BinaryIO, payload: dict[str, Any]) -> None:
    body = json.dumps(payload, ensure_ascii=False).encode()
    out.write(_FRAME.pack(len(body)) + body)


def _read_exactly(stream: BinaryIO, n: int) -> bytes:
    parts = []
    while n:
        part = stream.read(n)
        if not part:
            raise EOFError
        parts.append(part)
        n -= len(part)
    return b"".join(parts)


def _cpu_used_s() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _set_cpu_limit(seconds: float) -> None:
    import math
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = math.ceil(_cpu_used_s() + seconds)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def _worker_main(memory_bytes: int) -> int:
    import resource

    # Below the gateway: on a busy machine the voice sessions get the CPU first.
    os.nice(10)
    # Imports and the tokenizer before the memory limit: they are the same for every file.
    import pypdf  # noqa: F401

    from ingest.chunking import Chunker
    from ingest.tokens import default_counter

    default_counter().count("warm up")
    Chunker()
    # pypdf logs every oddity of a damaged file; the refusal says what matters.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    # The protocol gets its own copy of stdout; fd 1 then points at stderr, so a library that
    # prints cannot corrupt the frames.
    stdin = sys.stdin.buffer
    stdout = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    _write_frame(stdout, {"ready": True})
    stdout.flush()
    while True:
        try:
            (size,) = _FRAME.unpack(_read_exactly(stdin, _FRAME.size))
            header = json.loads(_read_exactly(stdin, size))
            data = _read_exactly(stdin, header["size"])
        except EOFError:
            return 0  # the parent closed the pipe (or died): nothing more to do
        limits = ParseLimits(**header["limits"])
        _set_cpu_limit(limits.cpu_time_s)
        recycle = False
        try:
            doc = prepare_document(data, Path(header["name"]), limits, header.get("chunking"))
        except UnsupportedFormat as e:
            reply: dict[str, Any] = {"ok": False, "code": "unsupported_format", "message": str(e)}
        except ParseLimitExceeded as e:
            reply = {"ok": False, "code": e.code, "limit": e.limit, "message": str(e)}
            recycle = True
        except ParseError as e:
            reply = {"ok": False, "code": e.code, "message": str(e)}
        except MemoryError:
            reply = {
                "ok": False,
                "code": "limit_exceeded",
                "limit": "memory",
                "message": f"parsing needed more than {limits.memory_bytes // (1024 * 1024)} MiB of memory",
            }
            recycle = True
        except RecursionError:
            reply = {
                "ok": False,
                "code": "unreadable",
                "message": "the file's structure is nested too deeply",
            }
            recycle = True
        except Exception as e:
            # A parser bug on strange input: the file is refused, the worker replaced, the cause logged.
            import traceback

            traceback.print_exc(file=sys.stderr)
            reply = {"ok": False, "code": "unreadable", "message": f"cannot parse: {type(e).__name__}"}
            recycle = True
        else:
            reply = {
                "ok": True,
                "title": doc.title,
                "format": doc.format,
                "metadata": doc.metadata,
                "chunks": len(doc.chunks),
            }
        try:
            reply["recycle"] = recycle
            _write_frame(stdout, reply)
            if reply["ok"]:
                for c in doc.chunks:
                    _write_frame(
                        stdout,
                        {
                            "position": c.position,
                            "heading_path": list(c.heading_path),
                            "text": c.text,
                            "token_count": c.token_count,
                            "page": c.page,
                            "input": c.embedding_input,
                        },
                    )
            stdout.flush()
        except MemoryError:
            return 3  # the parent sees a dead worker: ParserCrashed
        if recycle:
            return 0


# ---- the parent side -----------------------------------------------------------------------


class _Worker:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.jobs = 0

    @classmethod
    async def start(cls, memory_bytes: int) -> _Worker:
        env = {k: os.environ[k] for k in _ENV_KEEP if k in os.environ}
        env.update(_WORKER_ENV)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "ingest.parsing",
            str(memory_bytes),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=env,
            cwd=_PACKAGE_ROOT,  # so `-m ingest.parsing` resolves without an installed package
        )
        worker = cls(proc)
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                ready = await worker.read_frame()
        except (TimeoutError, EOFError, asyncio.IncompleteReadError) as e:
            await worker.kill()
            raise ParserCrashed("the parsing worker did not start") from e
        if not ready.get("ready"):
            await worker.kill()
            raise ParserCrashed("the parsing worker did not start")
        return worker

    async def read_frame(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        (size,) = _FRAME.unpack(await self.proc.stdout.readexactly(_FRAME.size))
        if size > MAX_FRAME_BYTES:
            raise ParserCrashed("the parsing worker sent an oversized reply")
        frame: dict[str, Any] = json.loads(await self.proc.stdout.readexactly(size))
        return frame

    async def send(self, header: dict[str, Any], data: bytes) -> None:
        assert self.proc.stdin is not None
        body = json.dumps(header).encode()
        self.proc.stdin.write(_FRAME.pack(len(body)) + body)
        self.proc.stdin.write(data)
        await self.proc.stdin.drain()

    async def kill(self) -> int:
        if self.proc.returncode is None:
            # os.kill, not Process.kill: Popen.send_signal polls first, and a poll that reaps a
            # worker which just died (SIGXCPU) steals its status from asyncio's child watcher
            # (reported as 255). Signalling an unreaped, exited process is harmless.
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)
        return await self.proc.wait()

    async def exited(self, timeout_s: float = 5.0) -> int:
        """The status of a worker whose pipe closed (it is exiting): its own, if it ends soon."""
        try:
            async with asyncio.timeout(timeout_s):
                return await self.proc.wait()
        except TimeoutError:
            return await self.kill()

    async def close(self) -> None:
        """Ends an idle worker: EOF on its stdin makes it exit; killed if it does not."""
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.close()
        try:
            async with asyncio.timeout(2.0):
                await self.proc.wait()
        except TimeoutError:
            await self.kill()


class ParsePool:
    """Up to `workers` parsing processes, started on demand and reused.

    `await pool.prepare(data, path)` parses and chunks one file and returns a PreparedDocument,
    or raises UnsupportedFormat, ParseError, ParseLimitExceeded or ParserCrashed (all
    DocumentError: the file is refused, the caller goes on with the next). Close it with
    `await pool.aclose()` (or `async with`) from the loop that used it."""

    def __init__(
        self,
        limits: ParseLimits = DEFAULT_LIMITS,
        *,
        workers: int = 1,
        max_jobs_per_worker: int = DEFAULT_MAX_JOBS_PER_WORKER,
        chunking: dict[str, int] | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.limits = limits
        self.max_jobs_per_worker = max_jobs_per_worker
        # ChunkingConfig fields (max_tokens, overlap_tokens, max_chars) for the workers' chunker;
        # None: its defaults. A change should also change the stored pipeline version.
        self.chunking = chunking
        self.workers = workers
        self._slots: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()

    async def __aenter__(self) -> ParsePool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _bind(self) -> asyncio.Semaphore:
        """The slots of the running loop: workers' pipes belong to the loop that started them, so
        a pool used from a new loop (after the app restarted) starts afresh."""
        loop = asyncio.get_running_loop()
        if self._slots is None or self._loop is not loop:
            self._loop, self._slots = loop, asyncio.Semaphore(self.workers)
            self._idle, self._busy = [], set()
        return self._slots

    async def prepare(self, data: bytes, path: Path) -> PreparedDocument:
        async with self._bind():
            worker = self._idle.pop() if self._idle else await _Worker.start(self.limits.memory_bytes)
            self._busy.add(worker)
            alive = False  # whether the worker may take another file
            try:
                outcome, alive = await self._run(worker, data, path)
            finally:
                self._busy.discard(worker)
                worker.jobs += 1
                if alive and worker.jobs < self.max_jobs_per_worker:
                    self._idle.append(worker)
                else:
                    await (worker.close() if alive else worker.kill())
        if isinstance(outcome, DocumentError):
            raise outcome
        return outcome

    async def _run(
        self, worker: _Worker, data: bytes, path: Path
    ) -> tuple[PreparedDocument | DocumentError, bool]:
        """The document or the file's error, and whether the worker is still fit for reuse."""
        header = {
            "name": path.name,
            "size": len(data),
            "limits": self.limits.to_json(),
            "chunking": self.chunking,
        }
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.limits.wall_time_s):
                await worker.send(header, data)
                reply = await worker.read_frame()
                if not reply.get("ok"):
                    return _refusal(reply), not reply.get("recycle", True)
                chunks = []
                for i in range(int(reply["chunks"])):
                    frame = await worker.read_frame()
                    chunks.append(
                        PreparedChunk(
                            int(frame["position"]),
                            tuple(str(h) for h in frame["heading_path"]),
                            str(frame["text"]),
                            int(frame["token_count"]),
                            None if frame["page"] is None else int(frame["page"]),
                            str(frame["input"]),
                        )
                    )
                    if i % 64 == 63:
                        await asyncio.sleep(0)  # buffered frames do not yield by themselves
        except TimeoutError:
            await worker.kill()
            error = ParseLimitExceeded(
                "wall_time", f"parsing took longer than {self.limits.wall_time_s:g} s (the limit per file)"
            )
            return error, False
        except (asyncio.IncompleteReadError, ConnectionError, EOFError):
            return _death(await worker.exited(), self.limits), False
        log.debug("parsed %s in %.3f s: %d chunks", path.name, time.monotonic() - started, len(chunks))
        document = PreparedDocument(
            str(reply["title"]), str(reply["format"]), dict(reply["metadata"]), chunks
        )
        return document, not reply.get("recycle", False)

    async def aclose(self) -> None:
        """Ends the workers; a later `prepare` starts new ones."""
        idle, self._idle = self._idle, []
        for worker in idle:
            await worker.close()
        for worker in list(self._busy):
            await worker.kill()


def _refusal(reply: dict[str, Any]) -> DocumentError:
    code = reply.get("code")
    message = str(reply.get("message") or "cannot parse the file")
    if code == "unsupported_format":
        return UnsupportedFormat(message)
    if code == "limit_exceeded":
        return ParseLimitExceeded(str(reply.get("limit") or "unknown"), message)
    return ParseError(message)


def _death(returncode: int, limits: ParseLimits) -> ParseError:
    if returncode == -signal.SIGXCPU:
        return ParseLimitExceeded(
            "cpu_time", f"parsing used more than {limits.cpu_time_s:g} s of CPU time (the limit per file)"
        )
    if returncode == -signal.SIGKILL:
        return ParserCrashed("the parsing worker was killed (by the system: out of memory?)")
    if returncode < 0:
        return ParserCrashed(f"the parsing worker died of signal {signal.Signals(-returncode).name}")
    return ParserCrashed(f"the parsing worker exited with status {returncode}")


if __name__ == "__main__":
    sys.exit(_worker_main(int(sys.argv[1])))
