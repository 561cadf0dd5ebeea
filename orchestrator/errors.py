"""The gateway's small error tree. Failures of Triton, Postgres or the client are translated into
these at the boundary (cause chained with `from`), and each maps to one stable protocol code."""

from __future__ import annotations

from orchestrator.protocol import ErrorCode


class VoicebotError(Exception):
    code: ErrorCode = ErrorCode.INTERNAL
    retryable = False
    http_status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(VoicebotError):
    code = ErrorCode.BAD_REQUEST
    http_status = 400


class TooLarge(VoicebotError):
    code = ErrorCode.TOO_LARGE
    http_status = 413


class NotFound(VoicebotError):
    code = ErrorCode.NOT_FOUND
    http_status = 404


class Unauthorized(VoicebotError):
    code = ErrorCode.UNAUTHORIZED
    http_status = 401


class RateLimited(VoicebotError):
    code = ErrorCode.RATE_LIMITED
    retryable = True
    http_status = 429


class ModelUnavailable(VoicebotError):
    """Triton cannot be reached, or a model is not ready."""

    code = ErrorCode.MODEL_UNAVAILABLE
    retryable = True
    http_status = 503


class ModelFailed(VoicebotError):
    """A model refused or failed one request; the server is up."""

    code = ErrorCode.INTERNAL
    http_status = 502


class StageTimeout(VoicebotError):
    code = ErrorCode.TIMEOUT
    retryable = True
    http_status = 504


class StoreUnavailable(VoicebotError):
    code = ErrorCode.STORE_UNAVAILABLE
    retryable = True
    http_status = 503
