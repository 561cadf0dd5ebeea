"""The app's HTTP surface without external services (Triton and Postgres unreachable)."""

from __future__ import annotations

import json
import logging

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from orchestrator.app import create_app
from orchestrator.observability import JsonFormatter
from orchestrator.settings import Settings

SECRET = "k" * 40


def _client(**overrides: object) -> TestClient:
    settings = Settings(auth_secret=SECRET, triton_url="127.0.0.1:1", ui_dir=None, **overrides)  # type: ignore[arg-type]
    # Dev mode serves loopback host names only.
    return TestClient(
        create_app(settings), base_url="http://localhost" if settings.dev_mode else "http://testserver"
    )


METRICS_KEY = "m" * 40


def test_health_ready_and_metrics() -> None:
    with _client(bootstrap_api_key=METRICS_KEY) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        # Triton and Postgres down: degraded, yet ready (turns report model_unavailable)
        assert ready.status_code == 200
        assert ready.json() == {
            "status": "degraded",
            "checks": {"triton": False, "postgres": False, "accepting": True},
        }
        metrics = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_KEY}"}).text
    assert 'voicebot_dependency_up{dependency="triton"} 0.0' in metrics
    assert 'voicebot_http_requests_total{method="GET",route="/healthz",status="200"} 1.0' in metrics
    assert 'voicebot_http_requests_total{method="GET",route="/readyz",status="200"} 1.0' in metrics


def test_unknown_paths_share_one_metric_label() -> None:
    with _client(dev_mode=True) as client:  # dev mode: /metrics without a key
        client.get("/no/such/page/1")
        client.get("/no/such/page/2")
        metrics = client.get("/metrics").text
    assert 'route="unmatched",status="404"} 2.0' in metrics


def test_chat_without_a_key_is_refused_with_a_stable_error() -> None:
    with _client() as client:
        response = client.post("/v1/chat", json={"message": "hi"})
    assert response.status_code == 401
    assert response.json() == {
        "error": {"code": "unauthorized", "message": "an API key is required: Authorization: Bearer <key>"}
    }


def test_bootstrap_key_gets_a_session_token() -> None:
    with _client(bootstrap_api_key="b" * 40) as client:
        refused = client.post("/v1/sessions", headers={"Authorization": "Bearer wrong"})
        granted = client.post("/v1/sessions", headers={"Authorization": "Bearer " + "b" * 40})
    assert refused.status_code == 401
    assert granted.status_code == 200
    assert set(granted.json()) == {"session_id", "token", "expires_at"}


def test_websocket_without_a_token_is_closed_with_4401() -> None:
    # Accepted, told why, then closed: a handshake refused before the accept reaches a browser
    # as a bare HTTP 403, with neither the code nor the reason.
    with _client() as client, client.websocket_connect("/v1/voice") as ws:
        error = ws.receive_json()
        with pytest.raises(WebSocketDisconnect) as info:
            ws.receive_json()
    assert (error["code"], error["fatal"]) == ("unauthorized", True)
    assert info.value.code == 4401
    assert "POST /v1/sessions" in info.value.reason


@pytest.mark.parametrize(
    ("origin", "allowed", "code"),
    [
        ("https://evil.example", [], 4403),  # another site's page: refused before any credential check
        ("https://voice.example.com", ["https://voice.example.com"], 4401),  # allowed: on to the token check
        ("http://testserver", [], 4401),  # the gateway's own pages
    ],
)
def test_websocket_origin_is_checked_before_credentials(origin: str, allowed: list[str], code: int) -> None:
    with (
        _client(cors_origins=allowed) as client,
        client.websocket_connect("/v1/voice", headers={"Origin": origin}) as ws,
    ):
        error = ws.receive_json()
        with pytest.raises(WebSocketDisconnect) as info:
            ws.receive_json()
    assert error["fatal"] is True
    assert info.value.code == code


def test_cors_answers_configured_origins_only() -> None:
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
    with _client(cors_origins=["https://voice.example.com"]) as client:
        ok = client.options("/v1/sessions", headers={"Origin": "https://voice.example.com", **preflight})
        other = client.options("/v1/sessions", headers={"Origin": "https://evil.example", **preflight})
    assert ok.headers["access-control-allow-origin"] == "https://voice.example.com"
    assert "access-control-allow-origin" not in other.headers


@pytest.mark.parametrize("path", ["/v1/chat", "/v1/chat/completions"])
def test_a_refused_question_is_a_plain_http_error_not_a_stream(path: str) -> None:
    key = "c" * 40
    body = (
        {"message": "why " * 600}
        if path == "/v1/chat"
        else {"messages": [{"role": "user", "content": "why " * 600}], "stream": True}
    )
    with _client(bootstrap_api_key=key) as client:
        response = client.post(path, json=body, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"


def test_json_log_lines_carry_ids_not_free_text() -> None:
    record = logging.LogRecord("voicebot", logging.INFO, __file__, 1, "turn failed", (), None)
    record.session = "abc"
    record.turn = 2
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "turn failed"
    assert (line["session"], line["turn"], line["level"]) == ("abc", 2, "info")


def test_a_frame_far_over_the_limit_closes_the_socket_with_1009() -> None:
    key = "b" * 40
    with _client(bootstrap_api_key=key) as client:
        token = client.post("/v1/sessions", headers={"Authorization": f"Bearer {key}"}).json()["token"]
        with client.websocket_connect(f"/v1/voice?token={token}") as ws:
            ws.send_bytes(b"\x00" * (6400 * 4 + 2))
            error = ws.receive_json()
            closing = ws.receive()
    assert (error["code"], error["fatal"]) == ("too_large", True)
    assert closing == {"type": "websocket.close", "code": 1009, "reason": ""}
