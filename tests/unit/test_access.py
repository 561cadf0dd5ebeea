"""Authentication and limits at the gateway's edge, with Triton and Postgres unreachable.

The stored-key paths that need Postgres are exercised against the real database in
tests/integration/test_bad_input.py; here: the Gatekeeper's rules and the HTTP/WebSocket answers."""

from __future__ import annotations

import asyncio
import time
import warnings

import jwt
import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from orchestrator.api import voice as voice_api
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
    token, expires = issue_token(settings, "bootstrap", "s1")
    caller, claims = asyncio.run(gate.authenticate_socket(None, token, "10.0.0.5"))
    assert caller.subject == "bootstrap"
    assert claims == TokenClaims("bootstrap", "s1", resume=False, expires_at=expires)
    resuming, expires = issue_token(settings, "bootstrap", "s1", resume=True)
    assert asyncio.run(gate.authenticate_socket(None, resuming, "10.0.0.5"))[1] == TokenClaims(
        "bootstrap", "s1", resume=True, expires_at=expires
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


# ---- issue 16: tokens must carry exp/aud/sub, failed authentications are limited per address,
# open sockets are re-checked, and the token may travel in a header --------------------------


@pytest.mark.parametrize(
    ("claims", "algorithm"),
    [
        ({"sub": "bootstrap", "sid": "s1", "aud": TOKEN_AUDIENCE}, "HS256"),  # no exp: good forever
        ({"sub": "bootstrap", "sid": "s1", "exp": 4102444800}, "HS256"),  # no aud: anyone's token
        ({"sid": "s1", "aud": TOKEN_AUDIENCE, "exp": 4102444800}, "HS256"),  # no sub
        ({"sub": "bootstrap", "aud": TOKEN_AUDIENCE, "exp": 4102444800}, "HS256"),  # no sid
        ({"sub": "bootstrap", "sid": "s1", "aud": TOKEN_AUDIENCE, "exp": 4102444800}, "HS512"),
    ],
    ids=["no-exp", "no-aud", "no-sub", "no-sid", "hs512"],
)
def test_a_token_missing_a_required_claim_or_signed_otherwise_is_refused(
    claims: dict[str, object], algorithm: str
) -> None:
    gate = Gatekeeper(_settings())
    with warnings.catch_warnings():  # PyJWT warns that the key is short for HS512: beside the point
        warnings.simplefilter("ignore")
        token = jwt.encode(claims, SECRET, algorithm=algorithm)
    with pytest.raises(Unauthorized, match="not valid"):
        asyncio.run(gate.authenticate_socket(None, token, "10.0.0.5"))


def test_failed_authentications_are_limited_per_address_then_recover() -> None:
    clock = Clock()
    gate = Gatekeeper(_settings(bootstrap_api_key=BOOTSTRAP, auth_failures_per_minute=3), clock=clock)
    for _ in range(3):
        with pytest.raises(Unauthorized):
            _identify(gate, "Bearer wrong", "10.0.0.5")
    with pytest.raises(RateLimited, match="failed authentications") as refused:
        _identify(gate, f"Bearer {BOOTSTRAP}", "10.0.0.5")  # even the right key, from there
    assert refused.value.headers == {"Retry-After": "20"}  # one failure's worth: 60 s / 3
    with pytest.raises(RateLimited):  # forged tokens count against the same address
        asyncio.run(gate.authenticate_socket(None, "forged", "10.0.0.5"))
    assert _identify(gate, f"Bearer {BOOTSTRAP}", "10.0.0.6").subject == "bootstrap"  # others not
    clock.now += 20
    assert _identify(gate, f"Bearer {BOOTSTRAP}", "10.0.0.5").subject == "bootstrap"


def test_http_failed_authentications_get_429_with_retry_after() -> None:
    with _client(bootstrap_api_key=BOOTSTRAP, auth_failures_per_minute=2) as client:
        statuses = [
            client.post("/v1/sessions", headers={"Authorization": "Bearer guess"}).status_code
            for _ in range(3)
        ]
        good = client.post("/v1/sessions", headers={"Authorization": f"Bearer {BOOTSTRAP}"})
    assert statuses == [401, 401, 429]
    assert (good.status_code, good.json()["error"]["code"]) == (429, "rate_limited")
    assert int(good.headers["Retry-After"]) >= 1


def test_an_open_socket_is_rechecked_for_expiry() -> None:
    now = [1000.0]
    gate = Gatekeeper(_settings(), wall_clock=lambda: now[0])
    caller = Caller("bootstrap", "10.0.0.5")
    claims = TokenClaims("bootstrap", "s1", expires_at=1010.0)
    asyncio.run(gate.check_socket(None, caller, claims))
    asyncio.run(gate.check_socket(None, Caller("anonymous", "127.0.0.1"), None))  # dev mode: no token
    now[0] = 1010.0
    with pytest.raises(Unauthorized, match="expired"):
        asyncio.run(gate.check_socket(None, caller, claims))
    # A stored key that cannot be checked now does not end a conversation already authenticated.
    asyncio.run(gate.check_socket(None, Caller("key:3", None), TokenClaims("key:3", "s", expires_at=2000.0)))


def test_the_token_may_travel_in_the_websocket_subprotocol_header() -> None:
    with _client(bootstrap_api_key=BOOTSTRAP) as client:
        token = client.post("/v1/sessions", headers={"Authorization": f"Bearer {BOOTSTRAP}"}).json()["token"]
        with client.websocket_connect(
            "/v1/voice", subprotocols=["voicebot.v1", f"voicebot.token.{token}"]
        ) as ws:
            assert ws.accepted_subprotocol == "voicebot.v1"
            ws.send_json({"type": "session.start"})
            assert ws.receive_json()["type"] == "session.ready"
        with client.websocket_connect(
            "/v1/voice", subprotocols=["voicebot.v1", "voicebot.token.forged"]
        ) as ws:
            assert ws.accepted_subprotocol == "voicebot.v1"  # accepted, so a browser sees why
            error = ws.receive_json()
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json()
    assert (error["code"], closed.value.code) == ("unauthorized", 4401)


def test_an_idle_socket_whose_token_expires_is_closed_without_a_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The watch on an open socket's authority: no message is sent after session.ready, yet the
    socket closes 4401 with an `unauthorized` event once the token has expired."""
    monkeypatch.setattr(voice_api, "AUTHORITY_CHECK_S", 0.05)
    app = create_app(_settings(bootstrap_api_key=BOOTSTRAP))
    with TestClient(app) as client:
        token, _ = issue_token(app.state.voicebot.settings, "bootstrap", "s1")
        with client.websocket_connect(f"/v1/voice?token={token}") as ws:
            ws.send_json({"type": "session.start"})
            assert ws.receive_json()["type"] == "session.ready"
            app.state.voicebot.gatekeeper.wall_clock = lambda: 4102444800.0  # long after expiry
            error = ws.receive_json()  # nothing sent: the watch noticed
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json()
    assert (error["type"], error["code"], error["fatal"]) == ("error", "unauthorized", True)
    assert "expired" in error["message"]
    assert closed.value.code == 4401


def test_an_idle_socket_in_date_stays_open(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(voice_api, "AUTHORITY_CHECK_S", 0.02)
    app = create_app(_settings(bootstrap_api_key=BOOTSTRAP))
    with TestClient(app) as client:
        token, _ = issue_token(app.state.voicebot.settings, "bootstrap", "s1")
        with client.websocket_connect(f"/v1/voice?token={token}") as ws:
            ws.send_json({"type": "session.start"})
            assert ws.receive_json()["type"] == "session.ready"
            time.sleep(0.3)  # many checks, all good
            ws.send_json({"type": "no.such.message"})
            reply = ws.receive_json()  # still served: a message is answered, not refused
    assert reply["type"] == "error"
    assert reply["code"] != "unauthorized"


def test_a_socket_whose_token_expires_is_closed_at_its_next_message() -> None:
    app = create_app(_settings(bootstrap_api_key=BOOTSTRAP))
    with TestClient(app) as client:
        token, _ = issue_token(app.state.voicebot.settings, "bootstrap", "s1")
        with client.websocket_connect(f"/v1/voice?token={token}") as ws:
            ws.send_json({"type": "session.start"})
            assert ws.receive_json()["type"] == "session.ready"
            app.state.voicebot.gatekeeper.wall_clock = lambda: 4102444800.0  # long after expiry
            ws.send_json({"type": "turn.start"})
            error = ws.receive_json()
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json()
    assert (error["code"], error["fatal"]) == ("unauthorized", True)
    assert "expired" in error["message"]
    assert closed.value.code == 4401
