"""The FastAPI application: `create_app()` wires settings, shared clients and routers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import start_http_server

from orchestrator import __version__
from orchestrator.api import audio, chat, documents, health, openai_compat, voice
from orchestrator.edge import EdgeMiddleware
from orchestrator.errors import VoicebotError
from orchestrator.observability import add_http_metrics, configure_tracing
from orchestrator.retention import purge_periodically
from orchestrator.settings import Settings, get_settings
from orchestrator.state import AppState


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    state = AppState(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await state.open()
        # Metrics on their own port, for Prometheus inside the cluster; the public port serves
        # them only to API keys outside dev mode (orchestrator/api/health.py).
        metrics_server = (
            start_http_server(settings.metrics_port, settings.host, state.metrics.registry)
            if settings.metrics_port
            else None
        )
        purging = (
            asyncio.create_task(purge_periodically(state.pool, settings.retention_days), name="retention")
            if state.pool is not None and settings.retention_days
            else None
        )
        try:
            yield
        finally:
            if purging is not None:
                purging.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await purging
            if metrics_server is not None:
                metrics_server[0].shutdown()
                metrics_server[0].server_close()
            await state.close()

    # The OpenAPI pages map every route for whoever asks: off outside dev mode unless asked for.
    docs = settings.docs_served
    app = FastAPI(
        title="Voicebot",
        version=__version__,
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    app.state.voicebot = state
    app.add_middleware(EdgeMiddleware, settings=settings, on_refusal=state.metrics.errors)
    if settings.cors_origins:  # a UI served from another origin (e.g. `next dev`)
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],  # DELETE: documents, sessions
            allow_headers=["Authorization", "Content-Type"],
            expose_headers=["Retry-After", "X-Sample-Rate"],
            max_age=600,
        )
    add_http_metrics(app, state.metrics)
    configure_tracing(app, settings)
    app.include_router(health.router)
    app.include_router(voice.router)
    app.include_router(chat.router)
    app.include_router(openai_compat.router)
    app.include_router(audio.router)
    app.include_router(documents.router)

    @app.exception_handler(VoicebotError)
    async def voicebot_error(request: Request, exc: VoicebotError) -> JSONResponse:
        state.metrics.errors.labels(exc.code.value).inc()
        return JSONResponse(
            {"error": {"code": exc.code.value, "message": exc.message}},
            status_code=exc.http_status,
            headers=exc.headers or None,
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        # The project's error shape (as every other error), status 422 as FastAPI's, the fields at
        # fault in `details`; never the rejected input: it may be huge, or not encodable at all (a
        # lone surrogate from a JSON escape), which would turn the 422 into a 500.
        details = [
            {"type": e["type"], "loc": [_encodable(p) for p in e["loc"]], "msg": _encodable(e["msg"])}
            for e in exc.errors()
        ]
        first = details[0] if details else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"])
        message = f"{where}: {first['msg']}" if where else str(first["msg"])
        state.metrics.errors.labels("bad_request").inc()
        return JSONResponse(
            {"error": {"code": "bad_request", "message": message, "details": details}}, status_code=422
        )

    ui_dir = settings.ui_dir or Path(__file__).resolve().parent.parent / "ui" / "out"
    if ui_dir.is_dir():
        app.mount("/", StaticFiles(directory=ui_dir, html=True), name="ui")
    return app


def _encodable(value: object) -> object:
    """`value` with what UTF-8 cannot carry replaced (strings only)."""
    return value.encode("utf-8", "replace").decode("utf-8") if isinstance(value, str) else value
