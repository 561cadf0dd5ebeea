"""The error body every HTTP route answers with, for the OpenAPI description of the routes."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from orchestrator.protocol import ErrorCode

_DESCRIPTIONS = {
    400: "Bad request (`bad_request`, or `bad_audio` for damaged audio)",
    401: "No valid API key (`unauthorized`)",
    403: "The API key lacks the scope this route needs (`insufficient_scope`), or may not use the collection it names (`collection_forbidden`); a page of another site (`forbidden`)",
    404: "No such resource (`not_found`)",
    413: "Over a size limit (`too_large`)",
    415: "Audio in a format we do not decode (`bad_audio`)",
    429: "Too many requests for this key (`rate_limited`)",
    502: "A model refused or failed the request (`internal`)",
    503: "Triton (`model_unavailable`) or PostgreSQL (`store_unavailable`, also when a stored API key cannot be checked) is unavailable; retry later",
    504: "A model did not answer in time (`timeout`)",
}


class ErrorDetail(BaseModel):
    code: ErrorCode = Field(description="Stable error code; clients switch on it.")
    message: str = Field(description="What went wrong, for a person.")


class ErrorResponse(BaseModel):
    """`{"error": {"code": …, "message": …}}`: never a stack trace."""

    error: ErrorDetail


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: each status documented with the error body."""
    documented: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        documented[status] = {"model": ErrorResponse, "description": _DESCRIPTIONS[status]}
        if status == 429:
            documented[status]["headers"] = {
                "Retry-After": {
                    "description": "Seconds to wait before retrying.",
                    "schema": {"type": "integer"},
                }
            }
    return documented
