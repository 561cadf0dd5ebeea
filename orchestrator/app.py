"""The FastAPI application: `create_app()` wires settings, shared clients and routers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from orchestrator import __version__
from orchestrator.api import chat, health, openai_compat, voice
from orchestrator.errors import VoicebotError
from orchestrator.observability import add_http_metrics, configure_tracing
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
    add_http_metrics(app, state.metrics)
    configure_tracing(app, settings)
    app.include_router(health.router)
    app.include_router(voice.router)
    app.include_router(chat.router)
    app.include_router(openai_compat.router)

    @app.exception_handler(VoicebotError)
    async def voicebot_error(request: Request, exc: VoicebotError) -> JSONResponse:
        state.metrics.errors.labels(exc.code.value).inc()
        return JSONResponse(
            {"error": {"code": exc.code.value, "message": exc.message}}, status_code=exc.http_status
        )

    ui_dir = settings.ui_dir or Path(__file__).resolve().parent.parent / "ui" / "out"
    if ui_dir.is_dir():
        app.mount("/", StaticFiles(directory=ui_dir, html=True), name="ui")
    return app
