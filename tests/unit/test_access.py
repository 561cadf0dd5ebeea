"""Authentication and limits at the gateway's edge, with Triton and Postgres unreachable.

The stored-key paths that need Postgres are exercised against the real database in
tests/integration/test_bad_input.py; here: the Gatekeeper's rules and the HTTP/WebSocket answers."""

from __future__ import annotations

import asyncio

import jwt
import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from orchestrator.app import create_app
from orchestrator.auth import TOKEN_AUDIENCE, Caller, Gatekeeper, TokenClaims, TtlCache, issue_token
from orchestrator.errors import RateLimited, StoreUnavailable, Unauthorized
from orchestrator.keys import generate_key
from orchestrator.settings import Settings

SECRET = "k" * 40
BOOTSTRAP = "b" * 40


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def _settings(**overrides: object) -> Settings:
    return Settings(auth_secret=SECRET, triton_url="127.0.0.1:1", ui_dir=None, **overrides)  # type: ignore[arg-type]


def _identify(gate: Gatekeeper, authorization: str | None, host: str = "10.0.0.5") -> Caller:
    return asyncio.run(gate.authenticate(None, authorization, host))


def test_bootstrap_key_and_refusals_outside_dev_mode() -> None:
    gate = Gatekeeper(_settings(bootstrap_api_key=BOOTSTRAP))
    assert _identify(gate, f"Bearer {BOOTSTRAP}") == Caller("bootstrap", "10.0.0.5")
    assert _identify(gate, f"bearer {BOOTSTRAP}").subject == "bootstrap"
    for header, message in [
        (None, "an API key is required"),
        ("Bearer ", "an API key is required"),
        ("Basic Zm9vOmJhcg==", "an API key is required"),
        ("Bearer " + "b" * 39, "not valid"),
    ]:
        with pytest.raises(Unauthorized, match=message):
            _identify(gate, header)
    with pytest.raises(Unauthorized):  # loopback is nothing special outside dev mode
        _identify(gate, None, "127.0.0.1")


def test_dev_mode_admits_anonymous_loopback_callers_only() -> None:
    gate = Gatekeeper(_settings(dev_mode=True))
    assert _identify(gate, None, "127.0.0.1") == Caller("anonymous", "127.0.0.1")
    assert _identify(gate, "Bearer sk-anything", "::1").anonymous
    with pytest.raises(Unauthorized):
        _identify(gate, None, "192.168.1.20")


def test_a_stored_key_needs_the_database_but_the_bootstrap_key_does_not() -> None:
    gate = Gatekeeper(_settings(dev_mode=True, bootstrap_api_key=BOOTSTRAP))
    with pytest.raises(StoreUnavailable):
        _identify(gate, f"Bearer {generate_key()}", "127.0.0.1")
    assert _identify(gate, f"Bearer {BOOTSTRAP}", "127.0.0.1").subject == "bootstrap"
    assert _identify(gate, None, "127.0.0.1").anonymous


def test_rate_limit_per_caller_with_anonymous_callers_bucketed_by_address() -> None:
    clock = Clock()
    gate = Gatekeeper(_settings(dev_mode=True, rate_limit_per_minute=2), clock=clock)
    _identify(gate, None, "127.0.0.1")
    _identify(gate, None, "127.0.0.1")
    with pytest.raises(RateLimited) as refused:
        _identify(gate, None, "127.0.0.1")
    assert refused.value.http_status == 429
    assert refused.value.headers == {"Retry-After": "30"}
    assert _identify(gate, None, "127.0.0.2").anonymous  # another address, another bucket
    clock.now += 30
    assert _identify(gate, None, "127.0.0.1").anonymous


def test_session_tokens_carry_the_subject_and_expire() -> None:
    settings = _settings()
    gate = Gatekeeper(settings)
    token, _ = issue_token(settings, "bootstrap", "s1")
    caller, claims = asyncio.run(gate.authenticate_socket(None, token, "10.0.0.5"))
    assert caller.subject == "bootstrap"
    assert claims == TokenClaims("bootstrap", "s1", resume=False)
    resuming, _ = issue_token(settings, "bootstrap", "s1", resume=True)
    assert asyncio.run(gate.authenticate_socket(None, resuming, "10.0.0.5"))[1] == TokenClaims(
        "bootstrap", "s1", resume=True
    )
    expired = jwt.encode(
        {"sub": "bootstrap", "sid": "s1", "aud": TOKEN_AUDIENCE, "exp": 1}, SECRET, algorithm="HS256"
    )
    with pytest.raises(Unauthorized, match="expired"):
        asyncio.run(gate.authenticate_socket(None, expired, "10.0.0.5"))
    # A stored key's token is checked against the store: no database, no decision.
    key_token, _ = issue_token(settings, "key:3", "s2")
    with pytest.raises(StoreUnavailable):
        asyncio.run(gate.authenticate_socket(None, key_token, "10.0.0.5"))


def test_the_key_cache_forgets_after_its_ttl_and_when_full() -> None:
    clock = Clock()
    cache: TtlCache[str, int | None] = TtlCache(5.0, 2, clock)
    cache.put("a", 1)
    cache.put("none", None)
    assert cache.get("a") == (True, 1)
    assert cache.get("none") == (True, None)  # a known miss is cached too
    clock.now += 5
    assert cache.get("a") == (False, None)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("c", 3)
    assert cache.get("a") == (False, None)
    assert cache.get("c") == (True, 3)


def _client(**overrides: object) -> TestClient:
    return TestClient(create_app(_settings(**overrides)))


def test_http_429_carries_retry_after() -> None:
    headers = {"Authorization": f"Bearer {BOOTSTRAP}"}
    with _client(bootstrap_api_key=BOOTSTRAP, rate_limit_per_minute=3) as client:
        statuses = [client.post("/v1/sessions", headers=headers).status_code for _ in range(4)]
        refused = client.post("/v1/sessions", headers=headers)
    assert statuses == [200, 200, 200, 429]
    assert refused.json()["error"]["code"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) >= 1


def test_a_stored_key_while_the_database_is_unavailable_gets_503() -> None:
    with _client(bootstrap_api_key=BOOTSTRAP) as client:
        stored = client.post("/v1/sessions", headers={"Authorization": f"Bearer {generate_key()}"})
        bootstrap = client.post("/v1/sessions", headers={"Authorization": f"Bearer {BOOTSTRAP}"})
    assert stored.status_code == 503
    assert stored.json()["error"]["code"] == "store_unavailable"
    assert bootstrap.status_code == 200


def test_too_many_voice_sessions_get_an_error_then_4429() -> None:
    with _client(bootstrap_api_key=BOOTSTRAP, max_sessions_per_key=1) as client:
        tokens = [
            client.post("/v1/sessions", headers={"Authorization": f"Bearer {BOOTSTRAP}"}).json()["token"]
            for _ in range(2)
        ]
        with (
            client.websocket_connect(f"/v1/voice?token={tokens[0]}"),
            client.websocket_connect(f"/v1/voice?token={tokens[1]}") as second,
        ):
            error = second.receive_json()
            with pytest.raises(WebSocketDisconnect) as closed:
                second.receive_json()
        # The first one closed: there is room again.
        with client.websocket_connect(f"/v1/voice?token={tokens[1]}") as third:
            third.send_json({"type": "session.start", "session_id": "nope"})
            events = [third.receive_json(), third.receive_json()]
    assert (error["type"], error["code"], error["fatal"]) == ("error", "rate_limited", True)
    assert closed.value.code == 4429
    # No database: the session to resume cannot be loaded, and the session starts anew.
    assert [e["type"] for e in events] == ["error", "session.ready"]
    assert events[0]["code"] == "store_unavailable"


def test_session_routes_without_a_database() -> None:
    headers = {"Authorization": f"Bearer {BOOTSTRAP}"}
    with _client(bootstrap_api_key=BOOTSTRAP) as client:
        lookup = client.get("/v1/sessions/abc", headers=headers)
        resume = client.post("/v1/sessions", headers=headers, json={"session_id": "abc"})
        extra = client.post("/v1/sessions", headers=headers, json={"session": "abc"})
        unauthenticated = client.get("/v1/sessions/abc")
    assert (lookup.status_code, lookup.json()["error"]["code"]) == (503, "store_unavailable")
    assert resume.status_code == 503
    assert extra.status_code == 422
    assert unauthenticated.status_code == 401


def test_a_request_body_that_cannot_be_echoed_still_gets_422() -> None:
    headers = {"Authorization": f"Bearer {BOOTSTRAP}", "Content-Type": "application/json"}
    with _client(bootstrap_api_key=BOOTSTRAP) as client:
        response = client.post("/v1/chat", headers=headers, content=b'{"message": "\\ud800"}')
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "bad_request"
    assert error["message"].startswith("body.message: ")
    assert error["details"][0]["loc"] == ["body", "message"]
    assert "input" not in error["details"][0]
