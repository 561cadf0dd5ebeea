"""Long-lived clients the gateway shares between requests: the Postgres pool and the Triton client."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import tritonclient.grpc.aio as grpcclient
from psycopg_pool import AsyncConnectionPool

from orchestrator.metrics import Metrics
from orchestrator.settings import Settings

READINESS_TIMEOUT_S = 2.0


@dataclass
class AppState:
    settings: Settings
    metrics: Metrics = field(default_factory=Metrics)
    pool: AsyncConnectionPool | None = None
    triton: grpcclient.InferenceServerClient | None = None

    async def open(self) -> None:
        self.triton = grpcclient.InferenceServerClient(self.settings.triton_url)
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

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()
        if self.triton is not None:
            await self.triton.close()

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
