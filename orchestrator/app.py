"""The FastAPI application: `create_app()` wires settings, shared clients and routers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from orchestrator import __version__
from orchestrator.api import health
from orchestrator.settings import Settings, get_settings
from orchestrator.state import AppState


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    state = AppState(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await state.open()
        try:
            yield
        finally:
            await state.close()

    app = FastAPI(title="Voicebot", version=__version__, lifespan=lifespan)
    app.state.voicebot = state
    app.include_router(health.router)
    return app
