"""Triton client errors → the gateway's error tree (stable protocol codes)."""

from __future__ import annotations

import pytest
from tritonclient.utils import InferenceServerException

from orchestrator.errors import ModelFailed, ModelUnavailable, StageTimeout
from orchestrator.inference import translate

# What tritonclient's aio stream hands over when Triton is killed mid-answer: no status, the
# gRPC error rendered into the message.
BROKEN_STREAM = (
    "<AioRpcError of RPC that terminated with:\n\tstatus = StatusCode.UNAVAILABLE\n"
    '\tdetails = "Stream removed (Socket closed)"\n\tdebug_error_string = "UNAVAILABLE:Stream removed"\n>'
)


@pytest.mark.parametrize(
    ("status", "message", "expected", "text"),
    [
        ("StatusCode.UNAVAILABLE", "failed to connect to all addresses", ModelUnavailable, "unavailable"),
        (None, "failed to connect to all addresses", ModelUnavailable, "unavailable"),
        ("StatusCode.CANCELLED", "cancelled", ModelUnavailable, "unavailable"),
        (None, "Request for unknown model: 'llm' is not found", ModelUnavailable, "unavailable"),
        (None, BROKEN_STREAM, ModelUnavailable, "Stream removed (Socket closed)"),
        ("StatusCode.INTERNAL", "Received RST_STREAM with error code 2", ModelUnavailable, "RST_STREAM"),
        ("StatusCode.UNKNOWN", "Connection reset by peer", ModelUnavailable, "unavailable"),
        ("StatusCode.DEADLINE_EXCEEDED", "Deadline Exceeded", StageTimeout, "in time"),
        ("StatusCode.INVALID_ARGUMENT", "unexpected input 'x'", ModelFailed, "unexpected input 'x'"),
        (None, "synthesis failed: voice missing", ModelFailed, "voice missing"),
    ],
)
def test_translate(status: str | None, message: str, expected: type[Exception], text: str) -> None:
    error = translate(InferenceServerException(msg=message, status=status), "llm")
    assert type(error) is expected
    assert text in str(error)
    assert "AioRpcError" not in str(error)  # people read these messages
