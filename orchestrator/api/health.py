"""Liveness, readiness and metrics endpoints (probed by Kubernetes and Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from orchestrator.auth import client_host
from orchestrator.state import AppState

router = APIRouter(tags=["health"])


def _state(request: Request) -> AppState:
    state: AppState = request.app.state.voicebot
    return state


@router.get("/healthz", summary="Liveness: the process serves requests")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: the gateway takes traffic (503 only while draining); Triton and Postgres are reported",
    responses={503: {}},
)
async def readyz(request: Request) -> JSONResponse:
    # Triton and Postgres are shared by every gateway pod: failing readiness on them would take all
    # pods out of the Service at once, so clients would get connection errors instead of the
    # protocol's `model_unavailable` / `store_unavailable`, and traffic would return only after
    # the next probes. The pod stays ready, says it is degraded, and each turn reports the outage.
    checks = await _state(request).readiness()
    accepting = checks["accepting"]
    degraded = not (checks["triton"] and checks["postgres"])
    status = "not ready" if not accepting else "degraded" if degraded else "ready"
    return JSONResponse({"status": status, "checks": checks}, 200 if accepting else 503)


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Outside dev mode only for an API key (Prometheus: `authorization.credentials_file`); a
    scraper inside the cluster uses VOICEBOT_METRICS_PORT instead, which the ingress never routes."""
    state = _state(request)
    if not state.settings.dev_mode:
        await state.authenticate(request.headers.get("authorization"), client_host(request))
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
