"""Long-lived clients the gateway shares between requests: the Postgres pool and the Triton client."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import psycopg
import psycopg_pool
import tritonclient.grpc.aio as grpcclient
from psycopg_pool import AsyncConnectionPool

from ingest.embedding import TritonEmbedder, triton_channel_args
from ingest.errors import EmbeddingUnavailable, IngestError
from ingest.limits import limits_from_settings
from ingest.migrate import migrate
from ingest.parsing import ParsePool
from ingest.search import search
from ingest.tenancy import DEFAULT_COLLECTION, DEFAULT_TENANT_ID
from ingest.vocabulary import collection_vocabulary
from orchestrator.auth import Caller, Gatekeeper
from orchestrator.errors import BadRequest, ModelUnavailable, StoreUnavailable, TooLarge
from orchestrator.history import SessionHistory, SessionStore
from orchestrator.inference import DNS_SCHEME, ModelClients, Models, SequenceRouter, balancing_channel_args
from orchestrator.metrics import Metrics
from orchestrator.pipeline import (
    AnswerOptions,
    AnswerResult,
    Retriever,
    Sink,
    Source,
    answer,
    sources_from_hits,
)
from orchestrator.prompt import Exchange
from orchestrator.protocol import plain_text
from orchestrator.session import SessionConfig, SessionContext, VoiceSession
from orchestrator.settings import Settings
from orchestrator.turn import Phase, Turn
from orchestrator.vad import VadModel, shared_model

log = logging.getLogger(__name__)

READINESS_TIMEOUT_S = 2.0
VOCABULARY_TTL_S = 60.0  # documents change rarely; a new upload reaches the ASR hint within this
DRAIN_POLL_S = 0.1
RETRIEVAL_K = 4


@dataclass(frozen=True)
class Corpus:
    """What a caller's questions are answered from: one collection of one tenant (the routes
    build it from the caller: `Caller.tenant_id`, `Caller.collection(...)`)."""

    tenant_id: int = DEFAULT_TENANT_ID
    collection: str = DEFAULT_COLLECTION


def corpus_of(caller: Caller, collection: str | None = None) -> Corpus:
    """The corpus a caller's request answers from: its tenant's `collection` (default: the key's).
    Raises CollectionForbidden for a collection the key may not use."""
    return Corpus(caller.tenant_id, caller.collection(collection))


@dataclass
class AppState:
    settings: Settings
    metrics: Metrics = field(default_factory=Metrics)
    pool: AsyncConnectionPool | None = None
    triton: grpcclient.InferenceServerClient | None = None
    models: Models | None = None  # ModelClients once open(); one seam for every model call
    vad: Callable[[], VadModel] = shared_model  # hands-free sessions' VAD (loaded at first use)
    triton_router: SequenceRouter | None = None  # with a dns:/// Triton URL (several replicas)
    embedder: TritonEmbedder | None = None
    sessions: set[VoiceSession] = field(default_factory=set)
    draining: bool = False
    migrated: bool = False
    # Authentication and per-caller limits; stored conversations (given the pool in open()).
    gatekeeper: Gatekeeper = field(init=False)
    session_store: SessionStore = field(init=False)
    # Uploads are parsed in these worker processes, never in the event loop (started on demand).
    parser: ParsePool = field(init=False)
    # Per corpus: (when read, the ASR hint); the task reading one.
    _vocabulary: dict[Corpus, tuple[float, str]] = field(default_factory=dict)
    _vocabulary_tasks: dict[Corpus, asyncio.Task[None]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.gatekeeper = Gatekeeper(self.settings)
        self.session_store = SessionStore(None)
        self.parser = ParsePool(limits_from_settings(self.settings), workers=self.settings.parse_workers)

    async def open(self) -> None:
        url = self.settings.triton_url
        self.triton = grpcclient.InferenceServerClient(
            url, channel_args=[*triton_channel_args(), *balancing_channel_args(url)]
        )
        if url.startswith(DNS_SCHEME):  # several replicas: asr sequences stay on one of them
            self.triton_router = SequenceRouter(
                url,
                client_factory=lambda target: grpcclient.InferenceServerClient(
                    target, channel_args=triton_channel_args()
                ),
            )
        self.models = ModelClients(
            self.triton, timeout_s=self.settings.triton_timeout_s, router=self.triton_router
        )
        self.embedder = TritonEmbedder(
            self.settings.triton_url, timeout_s=self.settings.triton_timeout_s, max_attempts=2
        )
        if self.settings.database_url is not None:
            # open(wait=False): the gateway starts (and reports not ready) while Postgres is down,
            # and the pool reconnects by itself when it returns.
            self.pool = AsyncConnectionPool(
                self.settings.database_url.get_secret_value(),
                min_size=1,
                max_size=self.settings.db_pool_max,
                open=False,
                kwargs={"autocommit": True},
                # After a Postgres restart the pooled connections are dead: test each on checkout
                # (one round trip) so the first request after recovery does not fail on a stale one.
                check=AsyncConnectionPool.check_connection,
            )
            await self.pool.open(wait=False)
            self.session_store = SessionStore(self.pool)
            await self._migrate(self.settings.database_url.get_secret_value())

    async def _migrate(self, dsn: str) -> None:
        """Apply schema migrations at start-up; with Postgres down, start anyway (not ready): the
        next readiness check that reaches Postgres applies them."""
        try:
            applied = await migrate(dsn)
        except IngestError as e:
            log.warning("schema migrations not applied yet: %s", e)
            return
        self.migrated = True
        if applied:
            log.info("applied schema migrations %s", ", ".join(applied))

    async def close(self) -> None:
        for task in self._vocabulary_tasks.values():
            task.cancel()
        await asyncio.gather(*self._vocabulary_tasks.values(), return_exceptions=True)
        await self.parser.aclose()
        if self.embedder is not None:
            await self.embedder.close()
        if self.pool is not None:
            await self.pool.close()
        if self.triton is not None:
            await self.triton.close()
        if self.triton_router is not None:
            await self.triton_router.close()

    async def authenticate(self, authorization: str | None, client_host: str | None) -> Caller:
        """The caller behind an `Authorization` header, counted against its rate limit.

        Raises Unauthorized (401), RateLimited (429), or StoreUnavailable (503) when a stored key
        cannot be checked; the bootstrap key and dev-mode anonymous callers need no database."""
        return await self.gatekeeper.authenticate(self.pool, authorization, client_host)

    async def triton_ready(self) -> bool:
        if self.triton is None:
            return False
        try:
            return bool(await asyncio.wait_for(self.triton.is_server_ready(), READINESS_TIMEOUT_S))
        except Exception:  # any transport failure means "not ready"; the reason is in Triton's logs
            return False

    async def postgres_ready(self) -> bool:
        if self.pool is None:
            return False
        try:
            async with self.pool.connection(timeout=READINESS_TIMEOUT_S) as conn:
                await conn.execute("SELECT 1")
            return True
        except Exception:  # pool timeout or connection error: not ready
            return False

    async def readiness(self) -> dict[str, bool]:
        triton, postgres = await asyncio.gather(self.triton_ready(), self.postgres_ready())
        if postgres and not self.migrated and self.settings.database_url is not None:
            await self._migrate(self.settings.database_url.get_secret_value())
            postgres = self.migrated
        checks = {"triton": triton, "postgres": postgres}
        for name, ok in checks.items():
            self.metrics.dependency_up.labels(name).set(1 if ok else 0)
        checks["accepting"] = not self.draining
        return checks

    async def drain(self, timeout_s: float) -> None:
        """Graceful shutdown: refuse new turns, let those in flight finish (up to `timeout_s`),
        then tell every client to reconnect. The server closes the sockets afterwards."""
        self.draining = True
        deadline = time.monotonic() + timeout_s
        busy = [s for s in self.sessions if s.busy]
        log.info("draining: %d open sessions, %d with a turn in flight", len(self.sessions), len(busy))
        # Polled: a held button becomes an answer only when the client releases it, so there is
        # no single task to wait on.
        while any(s.busy for s in self.sessions) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(DRAIN_POLL_S)
        left = sum(1 for s in self.sessions if s.busy)
        if left:
            log.warning("drain timeout: %d turns still in flight are cut off", left)
        await asyncio.gather(*(s.end_for_shutdown() for s in list(self.sessions)), return_exceptions=True)

    async def retrieve(self, question: str, corpus: Corpus) -> list[Source]:
        """The passages of `corpus` that answer `question`, as numbered citations."""
        if self.pool is None or self.embedder is None:
            raise StoreUnavailable("no database is configured")
        try:
            async with self.pool.connection(timeout=READINESS_TIMEOUT_S * 2) as conn:
                hits = await search(
                    conn,
                    self.embedder,
                    question,
                    tenant=corpus.tenant_id,
                    collection=corpus.collection,
                    k=RETRIEVAL_K,
                )
        except EmbeddingUnavailable as e:
            raise ModelUnavailable(f"the embedding model is unavailable: {e}") from e
        except (psycopg.Error, psycopg_pool.PoolTimeout) as e:
            raise StoreUnavailable("the document store is unavailable") from e
        return sources_from_hits(hits, question, self.settings.passage_chars)

    def retriever(self, corpus: Corpus) -> Retriever:
        """The pipeline's Retriever for one corpus: every turn it serves searches only there."""

        async def retrieve(question: str) -> list[Source]:
            return await self.retrieve(question, corpus)

        return retrieve

    def vocabulary(self, corpus: Corpus) -> str:
        """The corpus's vocabulary for the ASR (ingest/vocabulary.py), as last read; when older
        than VOCABULARY_TTL_S it is read again in the background. A turn never waits on the store
        for it: with Postgres down, recognition goes on with the last hint (or none)."""
        read_at, hint = self._vocabulary.get(corpus, (float("-inf"), ""))
        stale = time.monotonic() - read_at >= VOCABULARY_TTL_S
        task = self._vocabulary_tasks.get(corpus)
        if stale and self.pool is not None and (task is None or task.done()):
            self._vocabulary_tasks[corpus] = asyncio.create_task(
                self._read_vocabulary(corpus), name="vocabulary"
            )
        return hint

    async def _read_vocabulary(self, corpus: Corpus) -> None:
        assert self.pool is not None
        hint = self._vocabulary.get(corpus, (0.0, ""))[1]
        try:
            async with self.pool.connection(timeout=READINESS_TIMEOUT_S) as conn:
                hint = await collection_vocabulary(conn, corpus.collection, tenant=corpus.tenant_id)
        except (psycopg.Error, psycopg_pool.PoolTimeout) as e:
            log.warning("collection vocabulary not read: %s", type(e).__name__)
        self._vocabulary[corpus] = (time.monotonic(), hint)

    def forget_vocabulary(self, corpus: Corpus) -> None:
        """The corpus's documents changed: read its vocabulary again at the next turn."""
        if corpus in self._vocabulary:
            self._vocabulary[corpus] = (float("-inf"), self._vocabulary[corpus][1])

    def answer_options(self) -> AnswerOptions:
        return AnswerOptions(
            prompt_format=self.settings.llm_prompt_format,
            max_tokens=self.settings.llm_max_tokens,
            voice=self.settings.tts_voice,
            passage_chars=self.settings.passage_chars,
        )

    def check_question(self, question: str) -> None:
        """Refuse a typed question the pipeline must not see (`TooLarge`, `BadRequest`). Streaming
        routes call it before their response starts, so the refusal is a plain HTTP error."""
        if len(question) > self.settings.max_text_chars:
            raise TooLarge(f"the question is over {self.settings.max_text_chars} characters")
        if not plain_text(question):
            raise BadRequest("the question must be Unicode text without NUL characters")

    async def answer_text(
        self,
        question: str,
        sink: Sink,
        *,
        corpus: Corpus,
        history: Sequence[Exchange] = (),
        max_tokens: int | None = None,
    ) -> AnswerResult:
        """A text-only answer from `corpus` (the HTTP APIs): sources and deltas go to `sink`, no speech."""
        assert self.models is not None, "open() first"
        self.check_question(question)
        options = replace(self.answer_options(), speak=False)
        if max_tokens:
            options = replace(options, max_tokens=min(max_tokens, options.max_tokens))
        return await answer(
            question,
            Turn.begin(1, Phase.ANSWERING),
            sink=sink,
            models=self.models,
            retrieve=self.retriever(corpus),
            history=history,
            options=options,
            metrics=self.metrics,
        )

    def new_session(
        self,
        sink: Sink,
        corpus: Corpus,
        *,
        subject: str = "anonymous",
        store: SessionHistory | None = None,
        session_id: str | None = None,
        resume: bool = False,
    ) -> VoiceSession:
        """A voice session for `subject` whose turns are answered from `corpus` only, recorded in
        `store` (None: kept in memory only); a session token may name the session and ask to
        resume it."""
        assert self.models is not None, "open() first"
        config = SessionConfig(
            max_turn_audio_s=self.settings.max_turn_audio_s,
            max_text_chars=self.settings.max_text_chars,
            asr_timeout_s=self.settings.triton_timeout_s,
            options=self.answer_options(),
            speculation=self.settings.speculation,
            endpointing=self.settings.endpointing() if self.settings.handsfree else None,
        )
        context = SessionContext(
            models=self.models,
            retrieve=self.retriever(corpus),
            metrics=self.metrics,
            config=config,
            subject=subject,
            store=store,
            session_id=session_id,
            resume=resume,
            draining=lambda: self.draining,
            on_close=self.sessions.discard,
            vocabulary=lambda: self.vocabulary(corpus),
            vad=self.vad,
        )
        session = VoiceSession(sink, context)
        self.sessions.add(session)
        return session
