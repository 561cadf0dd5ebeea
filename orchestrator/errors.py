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

    @property
    def headers(self) -> dict[str, str]:
        """HTTP headers that go with the error response."""
        return {}


class BadRequest(VoicebotError):
    code = ErrorCode.BAD_REQUEST
    http_status = 400


class TooLarge(VoicebotError):
    code = ErrorCode.TOO_LARGE
    http_status = 413


class BadAudio(VoicebotError):
    """Audio we can read the container of but not use: a damaged WAV, no samples."""

    code = ErrorCode.BAD_AUDIO
    http_status = 400


class UnsupportedAudio(BadAudio):
    """Audio in a container or encoding we do not decode (MP3, Ogg, µ-law WAV…)."""

    http_status = 415


class NotFound(VoicebotError):
    code = ErrorCode.NOT_FOUND
    http_status = 404


class Unauthorized(VoicebotError):
    code = ErrorCode.UNAUTHORIZED
    http_status = 401


class Forbidden(VoicebotError):
    """A request the gateway refuses whoever sends it: from a page of another site, or (dev mode)
    addressed to a host name that is not loopback."""

    code = ErrorCode.FORBIDDEN
    http_status = 403


class InsufficientScope(VoicebotError):
    """The caller's API key lacks the scope this route needs (`ask`, `documents`)."""

    code = ErrorCode.INSUFFICIENT_SCOPE
    http_status = 403


class CollectionForbidden(VoicebotError):
    """The caller's API key may not use the collection it named."""

    code = ErrorCode.COLLECTION_FORBIDDEN
    http_status = 403


class RateLimited(VoicebotError):
    code = ErrorCode.RATE_LIMITED
    retryable = True
    http_status = 429

    def __init__(self, message: str, *, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


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
