"""The gateway's edge (orchestrator/edge.py): host and origin rules, body limits, security headers,
what is served outside dev mode, and tokens kept out of logs. Triton and Postgres unreachable."""

from __future__ import annotations

import io
import logging

import pytest
from fastapi.testclient import TestClient

from orchestrator.app import create_app
from orchestrator.auth import loopback_host_header, origin_allowed
from orchestrator.observability import REDACTED, RedactTokens
from orchestrator.settings import Settings

SECRET = "k" * 40
KEY = "e" * 40
AUTH = {"Authorization": f"Bearer {KEY}"}


def _client(base_url: str = "http://localhost:8080", **overrides: object) -> TestClient:
    settings = Settings(  # type: ignore[arg-type]
        **{
            "auth_secret": SECRET,
            "bootstrap_api_key": KEY,
            "triton_url": "127.0.0.1:1",
            "ui_dir": None,
            **overrides,
        }
    )
    return TestClient(create_app(settings), base_url=base_url)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("localhost:8080", True),
        ("LOCALHOST.:8080", True),
        ("127.0.0.1:8080", True),
        ("127.8.9.10", True),
        ("[::1]:8080", True),
        ("app.localhost:3000", True),
        ("evil.example:8080", False),
        ("localhost.evil.example", False),
        ("127.0.0.1.nip.io", False),
        ("0.0.0.0:8080", False),
        ("192.168.1.5:8080", False),
        ("[::1", False),
        ("", False),
        (None, False),
    ],
)
def test_loopback_host_names(host: str | None, loopback: bool) -> None:
    assert loopback_host_header(host) is loopback


@pytest.mark.parametrize(
    ("origin", "dev_mode", "allowed"),
    [
        (None, True, True),  # not a browser
        ("http://localhost:3000", True, True),
        ("http://127.0.0.1:8080", True, True),
        ("https://evil.example", True, False),
        ("null", True, False),
        ("http://voice.example.com", True, False),  # the Host says so, but dev mode is loopback only
        ("http://voice.example.com", False, True),  # outside dev mode: the gateway's own pages
        ("http://localhost:3000", False, False),
        ("https://ui.example.com", False, True),  # VOICEBOT_CORS_ORIGINS
    ],
)
def test_origin_rules(origin: str | None, dev_mode: bool, allowed: bool) -> None:
    assert (
        origin_allowed(origin, "voice.example.com", ["https://ui.example.com"], dev_mode=dev_mode) is allowed
    )


def test_dev_mode_refuses_host_names_that_are_not_loopback() -> None:
    with _client(dev_mode=True) as client:
        ok = client.get("/healthz")
        rebound = client.get("/healthz", headers={"Host": "evil.example:8080"})
        socket_refused = client.post("/v1/sessions", headers={"Host": "evil.example:8080"})
    assert ok.status_code == 200
    assert (rebound.status_code, rebound.json()["error"]["code"]) == (403, "forbidden")
    assert socket_refused.status_code == 403


def test_dev_mode_voice_socket_from_another_host_name_closes_with_4403() -> None:
    with (
        _client(dev_mode=True) as client,
        client.websocket_connect("ws://evil.example:8080/v1/voice") as ws,
    ):
        error = ws.receive_json()
        closing = ws.receive()
    assert (error["code"], error["fatal"]) == ("unauthorized", True)
    assert closing["code"] == 4403


@pytest.mark.parametrize("dev_mode", [True, False])
def test_a_cross_site_upload_is_refused_before_anything_is_read(dev_mode: bool) -> None:
    files = {"files": ("planted.md", b"# Planted\n\nText from another site.\n", "text/markdown")}
    base = "http://localhost:8080" if dev_mode else "http://voice.example.com"
    with _client(base_url=base, dev_mode=dev_mode) as client:
        refused = client.post(
            "/v1/documents", files=files, headers={"Origin": "https://evil.example", **AUTH}
        )
        own = client.post("/v1/documents", files=files, headers={"Origin": base, **AUTH})
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "forbidden")
    assert own.status_code == 503  # on to the route: no database here


@pytest.mark.parametrize(
    ("origin", "code"),
    [
        # On to the credential check (the test client is not on loopback, so no anonymous access).
        ("http://localhost:3000", 4401),
        ("https://evil.example", 4403),
        ("http://localhost.evil.example", 4403),
    ],
)
def test_dev_mode_voice_sockets_from_loopback_pages_only(origin: str, code: int) -> None:
    with (
        _client(dev_mode=True) as client,
        client.websocket_connect("ws://localhost:8080/v1/voice", headers={"Origin": origin}) as ws,
    ):
        ws.receive_json()
        assert ws.receive()["code"] == code


@pytest.mark.parametrize("chunked", [False, True])
def test_json_bodies_over_the_limit_get_413_before_the_route(chunked: bool) -> None:
    history = [{"role": "user", "content": "x" * 1000}, {"role": "assistant", "content": "y" * 1000}] * 4000
    body = {"messages": [*history, {"role": "user", "content": "hi"}]}
    with _client(max_json_bytes=64 * 1024) as client:
        if chunked:
            import json

            raw = json.dumps(body).encode()
            chunks = (raw[i : i + 65536] for i in range(0, len(raw), 65536))
            response = client.post(
                "/v1/chat/completions", content=chunks, headers={**AUTH, "Content-Type": "application/json"}
            )
        else:
            response = client.post("/v1/chat/completions", json=body, headers=AUTH)
        small = client.post("/v1/chat", json={"message": "x" * 3000}, headers=AUTH)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"
    assert "limit is 65536 bytes" in response.json()["error"]["message"] or "limit of 65536" in response.text
    assert small.json()["error"]["code"] == "too_large"  # under the body limit: the question's own 413


def test_security_headers_on_api_and_ui_responses(tmp_path: object) -> None:
    from pathlib import Path

    ui = Path(str(tmp_path))
    (ui / "index.html").write_text("<!doctype html><title>ui</title>")
    with _client(ui_dir=ui) as client:
        api = client.get("/healthz")
        page = client.get("/")
        error = client.post("/v1/chat", json={"message": "hi"})
    for response in (api, page, error):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert api.headers["content-security-policy"].startswith("default-src 'none'")
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp
    assert "object-src 'none'" in csp
    assert "connect-src 'self' ws://localhost:8080 wss://localhost:8080" in csp


def test_outside_dev_mode_docs_are_off_and_metrics_need_a_key() -> None:
    with _client(base_url="http://voice.example.com") as client:
        paths = {p: client.get(p).status_code for p in ("/docs", "/redoc", "/openapi.json")}
        metrics = client.get("/metrics")
        keyed = client.get("/metrics", headers=AUTH)
    assert paths == {"/docs": 404, "/redoc": 404, "/openapi.json": 404}
    assert (metrics.status_code, metrics.json()["error"]["code"]) == (401, "unauthorized")
    assert keyed.status_code == 200
    assert "voicebot_http_requests_total" in keyed.text
    with _client(dev_mode=True) as client:
        assert client.get("/openapi.json").status_code == 200
        assert client.get("/metrics").status_code == 200
    with _client(base_url="http://voice.example.com", api_docs=True) as client:
        assert client.get("/openapi.json").status_code == 200


def test_metrics_on_their_own_port() -> None:
    import httpx

    from orchestrator.stack.ports import free_port

    port = free_port()
    with _client(base_url="http://voice.example.com", metrics_port=port):
        scraped = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    assert scraped.status_code == 200
    assert "voicebot_open_sessions" in scraped.text


@pytest.mark.parametrize(
    "line",
    [
        '127.0.0.1:5555 - "WebSocket /v1/voice?token=eyJhbGciOi.eyJzdWIi.c2ln" [accepted]',
        '127.0.0.1:5555 - "GET /v1/voice?lang=en&token=eyJhbGciOi.eyJzdWIi.c2ln HTTP/1.1" 101',
        '"GET /x?access_token=eyJhbGciOi.eyJzdWIi.c2ln&y=1 HTTP/1.1" 200',
    ],
)
def test_tokens_in_urls_never_reach_the_log(line: str) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactTokens())
    logger = logging.getLogger("test.redaction")
    logger.addHandler(handler)
    try:
        # uvicorn's way: the URL is an argument, formatted late.
        head, _, rest = line.partition("/")
        logger.warning("%s/%s", head, rest)
    finally:
        logger.removeHandler(handler)
    written = stream.getvalue()
    assert "eyJ" not in written
    assert REDACTED in written
