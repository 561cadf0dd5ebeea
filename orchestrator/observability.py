"""Logs, HTTP metrics and traces for the gateway.

- JSON log lines (VOICEBOT_LOG_FORMAT=json) carrying any `extra={...}` ids (session, turn, code).
  Transcripts, prompts and document text are never logged at info level.
- `voicebot_http_requests_total` / `voicebot_http_request_duration_seconds` per route template
  (not per raw path, so label cardinality stays bounded): the availability SLO reads them.
- OpenTelemetry: FastAPI instrumentation with the exporter named by VOICEBOT_OTEL_EXPORTER.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response

from orchestrator.metrics import Metrics
from orchestrator.settings import Settings

# Session tokens in URLs (`/v1/voice?token=eyJ…`, old clients) would land in every access log.
_TOKEN_IN_URL = re.compile(r"([?&](?:token|access_token)=)[^&\s\"']+", re.IGNORECASE)
REDACTED = "[redacted]"
_STANDARD_ATTRS = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        line.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRS})
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class RedactTokens(logging.Filter):
    """Replaces token query values in a record's message (uvicorn's access and WebSocket lines
    among them) by REDACTED. A handler filter, so it sees every record the handler writes,
    propagated from any logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _TOKEN_IN_URL.sub(rf"\1{REDACTED}", message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactTokens())
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())


def _route_template(request: Request) -> str:
    """The matched route's path template; the router records the route in the scope."""
    route = request.scope.get("route")
    return str(getattr(route, "path", "unmatched")) if route is not None else "unmatched"


def add_http_metrics(app: FastAPI, metrics: Metrics) -> None:
    @app.middleware("http")
    async def record(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        began = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            labels = (_route_template(request), request.method, str(status))
            metrics.http_requests.labels(*labels).inc()
            metrics.http_duration.labels(*labels).observe(time.perf_counter() - began)


def configure_tracing(app: FastAPI, settings: Settings) -> None:
    if settings.otel_exporter == "none":
        return
    from opentelemetry import trace
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    exporter: SpanExporter
    if settings.otel_exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=settings.otel_endpoint or None)
    else:
        exporter = ConsoleSpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "voicebot-gateway"}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider, excluded_urls="healthz,readyz,metrics")
