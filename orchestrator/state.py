"""Long-lived clients the gateway shares between requests: the Postgres pool and the Triton client."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import psycopg
import psycopg_pool
import tritonclient.grpc.aio as grpcclient
from psycopg_pool import AsyncConnectionPool

from ingest.embedding import TritonEmbedder
from ingest.errors import EmbeddingUnavailable, IngestError
from ingest.migrate import migrate
from ingest.search import search
from orchestrator.auth import Caller, check_api_key
from orchestrator.errors import ModelUnavailable, StoreUnavailable, TooLarge
from orchestrator.inference import ModelClients
from orchestrator.metrics import Metrics
from orchestrator.pipeline import (
    AnswerOptions,
    AnswerResult,
    Sink,
    Source,
    Timings,
    answer,
    sources_from_hits,
)
from orchestrator.prompt import Exchange
from orchestrator.session import SessionConfig, VoiceSession
from orchestrator.settings import Settings

log = logging.getLogger(__name__)

READINESS_TIMEOUT_S = 2.0
RETRIEVAL_K = 4
COLLECTION = "default"


@dataclass
class AppState:
    settings: Settings
    metrics: Metrics = field(default_factory=Metrics)
    pool: AsyncConnectionPool | None = None
    triton: grpcclient.InferenceServerClient | None = None
    models: ModelClients | None = None
    embedder: TritonEmbedder | None = None

    async def open(self) -> None:
        self.triton = grpcclient.InferenceServerClient(self.settings.triton_url)
        self.models = ModelClients(self.triton, timeout_s=self.settings.triton_timeout_s)
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
            )
            await self.pool.open(wait=False)
            await self._migrate(self.settings.database_url.get_secret_value())

    async def _migrate(self, dsn: str) -> None:
        """Apply schema migrations at start-up; with Postgres down, start anyway (not ready)."""
        try:
            applied = await migrate(dsn)
        except IngestError as e:
            log.warning("schema migrations not applied at start-up: %s", e)
            return
        if applied:
            log.info("applied schema migrations %s", ", ".join(applied))

    async def close(self) -> None:
        if self.embedder is not None:
            await self.embedder.close()
        if self.pool is not None:
            await self.pool.close()
        if self.triton is not None:
            await self.triton.close()

    async def authenticate(self, authorization: str | None, client_host: str | None) -> Caller:
        """The caller behind an `Authorization` header, or `Unauthorized`."""
        return Caller(check_api_key(self.settings, authorization, client_host))

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
        checks = {"triton": triton, "postgres": postgres}
        for name, ok in checks.items():
            self.metrics.dependency_up.labels(name).set(1 if ok else 0)
        return checks

    async def retrieve(self, question: str) -> list[Source]:
        """The passages that answer `question`, as numbered citations (the pipeline's Retriever)."""
        if self.pool is None or self.embedder is None:
            raise StoreUnavailable("no database is configured")
        try:
            async with self.pool.connection(timeout=READINESS_TIMEOUT_S * 2) as conn:
                hits = await search(conn, self.embedder, question, collection=COLLECTION, k=RETRIEVAL_K)
        except EmbeddingUnavailable as e:
            raise ModelUnavailable(f"the embedding model is unavailable: {e}") from e
        except (psycopg.Error, psycopg_pool.PoolTimeout) as e:
            raise StoreUnavailable("the document store is unavailable") from e
        return sources_from_hits(hits)

    def answer_options(self) -> AnswerOptions:
        return AnswerOptions(
            prompt_format=self.settings.llm_prompt_format,
            max_tokens=self.settings.llm_max_tokens,
            voice=self.settings.tts_voice,
        )

    async def answer_text(
        self, question: str, sink: Sink, *, history: Sequence[Exchange] = (), max_tokens: int | None = None
    ) -> AnswerResult:
        """A text-only answer (the HTTP APIs): sources and deltas go to `sink`, no speech."""
        assert self.models is not None, "open() first"
        if len(question) > self.settings.max_text_chars:
            raise TooLarge(f"the question is over {self.settings.max_text_chars} characters")
        options = replace(self.answer_options(), speak=False)
        if max_tokens:
            options = replace(options, max_tokens=min(max_tokens, options.max_tokens))
        return await answer(
            question,
            turn=1,
            t0=time.monotonic(),
            sink=sink,
            models=self.models,
            retrieve=self.retrieve,
            history=history,
            options=options,
            timings=Timings(),
            metrics=self.metrics,
        )

    def new_session(self, sink: Sink) -> VoiceSession:
        assert self.models is not None, "open() first"
        config = SessionConfig(
            max_turn_audio_s=self.settings.max_turn_audio_s,
            max_text_chars=self.settings.max_text_chars,
            asr_timeout_s=self.settings.triton_timeout_s,
            options=self.answer_options(),
        )
        return VoiceSession(
            sink=sink, models=self.models, retrieve=self.retrieve, metrics=self.metrics, config=config
        )
