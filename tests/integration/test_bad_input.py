"""Bad input against the real stack: each case gets its documented error (docs/protocol.md),
the session goes on where that is safe (a later typed question is still answered and stored
whole), the gateway stays up, and nothing is half-written in Postgres.

The gateway runs outside dev mode (`secured_gateway`): every socket presents a session token of a
stored API key, each test its own key, so rate limits and session counts do not leak between tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import jwt
import pytest
import websockets

from orchestrator.auth import TOKEN_AUDIENCE
from orchestrator.protocol import MAX_FRAME_BYTES, MAX_TEXT_FRAME_BYTES
from tests.integration.voice_client import AUTH_SECRET, BOOTSTRAP_KEY, SecuredGateway, voice

FRAME = b"\x00\x00" * 1600  # 100 ms of silence
SQL_ISH = "'; DROP TABLE chunks; --"
REVOCATION_WAIT_S = 10.0  # the gateway's key cache lives 5 s


@pytest.fixture(autouse=True)
def nothing_half_written(secured_gateway: SecuredGateway) -> Iterator[None]:
    """Around every case: the gateway survives, documents are untouched, and the only turns
    written are the answered ones, whole."""
    before = secured_gateway.counts()
    answered = secured_gateway.answered
    yield
    assert secured_gateway.alive(), "the gateway process died"
    after = secured_gateway.counts()
    assert after["documents"] == before["documents"]
    assert after["chunks"] == before["chunks"]
    assert after["turns"] - before["turns"] == secured_gateway.answered - answered
    assert secured_gateway.half_written() == []


@pytest.fixture
def key(secured_gateway: SecuredGateway) -> str:
    return secured_gateway.new_key("bad-input")


def test_malformed_json(secured_gateway: SecuredGateway, key: str) -> None:
    async def scenario() -> None:
        async with voice(secured_gateway, key) as v:
            await v.start()
            for raw in ("{not json", '{"type": "text", "text": "unterminated', "{}}", "", "\ufeff{}"):
                await v.send(raw)
                assert "not valid JSON" in (await v.error("bad_request"))["message"]
            await v.ask()

    asyncio.run(scenario())


def test_json_that_is_not_an_object(secured_gateway: SecuredGateway, key: str) -> None:
    async def scenario() -> None:
        async with voice(secured_gateway, key) as v:
            await v.start()
            for raw in ("[1, 2]", '"text"', "42", "null", "true", '{"type": 7}', '{"kind": "text"}'):
                await v.send(raw)
                assert "JSON object with a string 'type'" in (await v.error("bad_request"))["message"]
            await v.ask()

    asyncio.run(scenario())


def test_a_message_before_session_start(secured_gateway: SecuredGateway, key: str) -> None:
    async def scenario() -> None:
        async with voice(secured_gateway, key) as v:
            await v.send({"type": "text", "text": "too early"})
            assert "session.start first" in (await v.error("bad_request"))["message"]
            await v.start()
            await v.ask()

    asyncio.run(scenario())


def test_binary_before_turn_start_and_empty_frames(secured_gateway: SecuredGateway, key: str) -> None:
    async def scenario() -> None:
        async with voice(secured_gateway, key) as v:
            await v.start()
            await v.send(FRAME)
            assert "turn.start first" in (await v.error("bad_audio"))["message"]
            await v.send({"type": "turn.start"})
            await v.until("turn.started")
            await v.send(b"")
            assert "empty" in (await v.error("bad_audio"))["message"]
            await v.send({"type": "turn.cancel"})
            await v.ask()

    asyncio.run(scenario())


def test_odd_length_pcm(secured_gateway: SecuredGateway, key: str) -> None:
    async def scenario() -> None:
        async with voice(secured_gateway, key) as v:
            await v.start()
            await v.send({"type": "turn.start"})
            await v.until("turn.started")
            await v.send(FRAME + b"\x01")
            assert "odd number of bytes" in (await v.error("bad_audio"))["message"]
            await v.send({"type": "turn.cancel"})
            await v.ask()

    asyncio.run(scenario())


def test_an_oversize_audio_frame(secured_gateway: SecuredGateway, key: str) -> None:
    async def scenario() -> None:
        async with voice(secured_gateway, key) as v:
            await v.start()
            await v.send({"type": "turn.start"})
            await v.until("turn.started")
            await v.send(b"\x00" * (MAX_FRAME_BYTES + 2))
            assert f"over {MAX_FRAME_BYTES}" in (await v.error("bad_audio"))["message"]
            await v.send({"type": "turn.cancel"})
            await v.ask()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "frame",
    [b"\x00" * (MAX_FRAME_BYTES * 4 + 2), b"\x00" * (2 << 20), "x" * (MAX_TEXT_FRAME_BYTES * 4 + 1)],
    ids=["audio-4x", "audio-2MiB", "text-4x"],
)
def test_a_frame_far_over_the_limit_closes_with_1009(
    secured_gateway: SecuredGateway, key: str, frame: bytes | str
) -> None:
    async def scenario() -> tuple[int | None, list[dict[str, object]]]:
        async with voice(secured_gateway, key) as v:
            await v.start()
            await v.send({"type": "turn.start"})
            await v.until("turn.started")
            await v.send(frame)
            code, _, events = await v.closed()
            return code, events

    code, events = asyncio.run(scenario())
    assert code == 1009
    if len(frame) < 1 << 20:  # over 1 MiB the server's WebSocket layer closes first, without a word
        assert [(e["code"], e["fatal"]) for e in events if e["type"] == "error"] == [("too_large", True)]

    async def afterwards() -> None:  # the gateway goes on
        async with voice(secured_gateway, key) as v:
            await v.start()
            await v.ask()

    asyncio.run(afterwards())


def test_ten_minutes_of_audio_in_one_turn(secured_gateway: SecuredGateway, key: str) -> None:
    async def scenario() -> list[dict[str, object]]:
        async with voice(secured_gateway, key) as v:
            await v.start()
            await v.send({"type": "turn.start"})
            await v.until("turn.started")
            for _ in range(6000):  # 10 minutes in 100 ms frames, as fast as the socket takes them
                await v.send(FRAME)
            await v.send({"type": "turn.end"})  # the release of a dropped turn is quiet
            events = await v.until("turn.done", turn=1)
            done = await v.ask()
            assert done["turn"] == 2
            return events

    events = asyncio.run(scenario())
    errors = [e for e in events if e["type"] == "error"]
    assert [(e["code"], e["turn"], e["fatal"]) for e in errors] == [("too_large", 1, False)]
    assert "dropped" in str(errors[0]["message"])
    assert events[-1]["outcome"] == "error"
    assert not [e for e in events if e["type"] in ("transcript.final", "answer.done")]


def test_unknown_message_type(secured_gateway: SecuredGateway, key: str) -> None:
    async def scenario() -> None:
        async with voice(secured_gateway, key) as v:
            await v.start()
            for type_ in ("turn.jump", "TEXT", "session.stop", ""):
                await v.send({"type": type_})
                assert "unknown message type" in (await v.error("bad_request"))["message"]
            await v.ask()

    asyncio.run(scenario())


def test_missing_and_wrongly_typed_fields(secured_gateway: SecuredGateway, key: str) -> None:
    async def scenario() -> None:
        async with voice(secured_gateway, key) as v:
            await v.start()
            for message, where in [
                ({"type": "text"}, "text"),
                ({"type": "text", "text": ""}, "text"),
                ({"type": "text", "text": 5}, "text"),
                ({"type": "text", "text": "hi", "speak": "loudly"}, "speak"),
            ]:
                await v.send(message)
                assert f"text: {where}:" in (await v.error("bad_request"))["message"]
            await v.ask()

    asyncio.run(scenario())


def test_extra_fields_are_refused(secured_gateway: SecuredGateway, key: str) -> None:
    async def scenario() -> None:
        async with voice(secured_gateway, key) as v:
            await v.send({"type": "session.start", "langauge": "en"})
            assert "langauge" in (await v.error("bad_request"))["message"]
            await v.start()
            await v.send({"type": "turn.start", "now": True})
            assert "now" in (await v.error("bad_request"))["message"]
            await v.ask()

    asyncio.run(scenario())


def test_session_start_twice(secured_gateway: SecuredGateway, key: str) -> None:
    async def scenario() -> None:
        async with voice(secured_gateway, key) as v:
            ready = await v.start()
            await v.send({"type": "session.start"})
            assert "already started" in (await v.error("bad_request"))["message"]
            await v.ask()
            assert v.session_id == ready["session_id"]

    asyncio.run(scenario())


def test_turn_end_without_turn_start(secured_gateway: SecuredGateway, key: str) -> None:
    async def scenario() -> None:
        async with voice(secured_gateway, key) as v:
            await v.start()
            await v.send({"type": "turn.end"})
            assert "without turn.start" in (await v.error("bad_request"))["message"]
            await v.send({"type": "turn.cancel"})  # nothing to cancel: no answer, no error
            await v.ask()

    asyncio.run(scenario())


def _http_error(response: httpx.Response, status: int) -> str:
    """The code of a plain HTTP error: /v1/chat refuses a bad question before any stream starts."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    return str(response.json()["error"]["code"])


def _refused(
    secured_gateway: SecuredGateway, token: str | None
) -> tuple[int | None, str, list[dict[str, object]]]:
    async def scenario() -> tuple[int | None, str, list[dict[str, object]]]:
        async with voice(secured_gateway, token=token or "") as v:
            return await v.closed()

    return asyncio.run(scenario())


@pytest.mark.parametrize(
    "token",
    [
        None,
        "forged",
        "a.b.c",
        jwt.encode({"sub": "bootstrap", "sid": "s1", "aud": TOKEN_AUDIENCE, "exp": 4102444800}, "k" * 40),
        jwt.encode({"sub": "bootstrap", "sid": "s1", "aud": "elsewhere", "exp": 4102444800}, AUTH_SECRET),
        jwt.encode({"sub": "key:999999", "sid": "s1", "aud": TOKEN_AUDIENCE, "exp": 4102444800}, AUTH_SECRET),
    ],
    ids=["none", "forged", "garbage-jwt", "other-secret", "other-audience", "unknown-key"],
)
def test_a_bad_token_closes_with_4401(secured_gateway: SecuredGateway, token: str | None) -> None:
    code, reason, events = _refused(secured_gateway, token)
    assert code == 4401
    assert [(e["code"], e["fatal"]) for e in events] == [("unauthorized", True)]
    assert reason


def test_an_expired_token_closes_with_4401(secured_gateway: SecuredGateway, key: str) -> None:
    subject = jwt.decode(
        secured_gateway.token(key), AUTH_SECRET, algorithms=["HS256"], audience=TOKEN_AUDIENCE
    )["sub"]
    expired = jwt.encode(
        {"sub": subject, "sid": "s1", "aud": TOKEN_AUDIENCE, "exp": int(time.time()) - 5}, AUTH_SECRET
    )
    code, reason, _ = _refused(secured_gateway, expired)
    assert code == 4401
    assert "expired" in reason


def test_bad_api_keys_get_401(secured_gateway: SecuredGateway, key: str) -> None:
    wrong_secret = key[:-1] + ("x" if key[-1] != "x" else "y")
    for header in [None, "Bearer", "Bearer sk-not-a-key", f"Bearer {wrong_secret}", f"Basic {key}", key]:
        headers = {"Authorization": header} if header else {}
        response = httpx.post(f"{secured_gateway.url}/v1/sessions", headers=headers, timeout=30)
        assert response.status_code == 401, header
        assert response.json()["error"]["code"] == "unauthorized"
    assert secured_gateway.post_session(BOOTSTRAP_KEY).status_code == 200
    assert secured_gateway.post_session(key).status_code == 200


def test_a_revoked_key_gets_401_and_its_tokens_4401(secured_gateway: SecuredGateway, key: str) -> None:
    token = secured_gateway.token(key)

    async def opens() -> None:
        async with voice(secured_gateway, token=token) as v:
            await v.start()

    asyncio.run(opens())  # the token works (and its key is now in the gateway's cache)
    secured_gateway.revoke(key)
    deadline = time.monotonic() + REVOCATION_WAIT_S
    while (response := secured_gateway.post_session(key)).status_code == 200:
        assert time.monotonic() < deadline, "the revocation never took effect"
        time.sleep(0.5)
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "the API key has been revoked"
    while (refused := _refused(secured_gateway, token))[0] != 4401:
        assert time.monotonic() < deadline, f"the revoked key's token still opens a socket: {refused}"
        time.sleep(0.5)
    assert refused[1] == "the API key has been revoked"


def test_huge_text(secured_gateway: SecuredGateway, key: str) -> None:
    async def scenario() -> None:
        async with voice(secured_gateway, key) as v:
            await v.start()
            await v.send({"type": "text", "text": "why " * 600})  # 2400 characters, over 2000
            assert "over 2000 characters" in (await v.error("too_large"))["message"]
            await v.send({"type": "text", "text": "x" * (MAX_TEXT_FRAME_BYTES + 10)})
            assert "larger than" in (await v.error("too_large"))["message"]
            await v.send({"type": "session.start", "voice": "v" * 65})
            await v.error("bad_request")
            await v.ask()

    asyncio.run(scenario())
    response = httpx.post(
        f"{secured_gateway.url}/v1/chat",
        headers={"Authorization": f"Bearer {key}"},
        json={"message": "why " * 600},
        timeout=60,
    )
    assert _http_error(response, 413) == "too_large"


@pytest.mark.parametrize(
    "question",
    [
        "What does the gateway do? 🎙️👩‍💻🚀",
        "מה עושה ה-gateway? What does the gateway do?",
        "Wha\u0301t does the gatew\u0308ay do\u0327?",  # combining marks
        "What does the\u200b gateway\u00a0do?",  # zero-width and no-break spaces
    ],
    ids=["emoji", "rtl", "combining", "invisible"],
)
def test_unicode_questions_are_answered_and_stored_exactly(
    secured_gateway: SecuredGateway, key: str, question: str
) -> None:
    async def scenario() -> None:
        async with voice(secured_gateway, key) as v:
            await v.start()
            await v.ask(question)  # checks the stored question is exactly this text

    asyncio.run(scenario())


def test_lone_surrogates_and_nul_are_refused(secured_gateway: SecuredGateway, key: str) -> None:
    async def scenario() -> None:
        async with voice(secured_gateway, key) as v:
            await v.start()
            for raw in (
                '{"type": "text", "text": "what \\ud800 is this"}',
                '{"type": "text", "text": "\\udfff"}',
                '{"type": "text", "text": "nul \\u0000 here"}',
                '{"type": "session.start", "voice": "\\u0000"}',
            ):
                await v.send(raw)
                await v.error("bad_request")
            await v.ask()

    asyncio.run(scenario())
    response = httpx.post(
        f"{secured_gateway.url}/v1/chat",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        content=b'{"message": "nul \\u0000 here"}',
        timeout=60,
    )
    assert _http_error(response, 400) == "bad_request"
    surrogate = httpx.post(
        f"{secured_gateway.url}/v1/chat",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        content=b'{"message": "\\ud800"}',
        timeout=60,
    )
    assert surrogate.status_code == 422


def test_sql_ish_strings_are_only_text(secured_gateway: SecuredGateway, key: str) -> None:
    async def scenario() -> None:
        async with voice(secured_gateway, key) as v:
            await v.send({"type": "session.start", "session_id": SQL_ISH})
            error = await v.error("not_found")
            assert "new session" in error["message"]
            ready = (await v.until("session.ready"))[-1]
            assert ready["session_id"] != SQL_ISH
            assert ready["resumed"] is False
            v.session_id = ready["session_id"]
            await v.ask(SQL_ISH)
            await v.ask(f"What does the gateway do?{SQL_ISH}")

    asyncio.run(scenario())
    headers = {"Authorization": f"Bearer {key}"}
    lookup = httpx.get(f"{secured_gateway.url}/v1/sessions/{quote(SQL_ISH, safe='')}", headers=headers)
    assert (lookup.status_code, lookup.json()["error"]["code"]) == (404, "not_found")
    resume = secured_gateway.post_session(key, {"session_id": SQL_ISH})
    assert (resume.status_code, resume.json()["error"]["code"]) == (404, "not_found")
    assert secured_gateway.query("SELECT count(*) FROM chunks")[0][0] > 0


def test_rate_limit_gives_429_with_retry_after_then_recovers(
    secured_gateway: SecuredGateway, key: str
) -> None:
    statuses = []
    with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {key}"}) as client:
        for _ in range(200):
            response = client.get(f"{secured_gateway.url}/v1/sessions/nothing-here")
            statuses.append(response.status_code)
            if response.status_code == 429:
                break
        assert statuses[-1] == 429, "never rate limited"
        assert set(statuses[:-1]) == {404}
        assert len(statuses) > 60  # the default 60 a minute were all allowed
        assert response.json()["error"]["code"] == "rate_limited"
        wait_s = int(response.headers["Retry-After"])
        assert 1 <= wait_s <= 2
        # Another key is not affected; the limited one recovers after Retry-After.
        other = client.get(
            f"{secured_gateway.url}/v1/sessions/x", headers={"Authorization": f"Bearer {BOOTSTRAP_KEY}"}
        )
        assert other.status_code == 404
        time.sleep(wait_s)
        assert client.get(f"{secured_gateway.url}/v1/sessions/nothing-here").status_code == 404


def test_too_many_concurrent_sessions_close_with_4429(secured_gateway: SecuredGateway, key: str) -> None:
    async def scenario() -> tuple[int | None, list[dict[str, object]]]:
        async with voice(secured_gateway, key) as first, voice(secured_gateway, key) as second:
            await first.start()
            await second.start()
            async with voice(secured_gateway, key) as third:
                code, _, events = await third.closed()
            await second.ask()  # the open ones are unaffected
        async with voice(secured_gateway, key) as again:  # room again once they closed
            await again.start()
            await again.ask()
        return code, events

    code, events = asyncio.run(scenario())
    assert code == 4429
    assert [(e["code"], e["fatal"]) for e in events] == [("rate_limited", True)]
    assert "2 open voice sessions" in str(events[0]["message"])


# ---- issue 16: more bad input, each refused with its stable code, nothing stored -----------

FAR_FUTURE = 4102444800


@pytest.mark.parametrize(
    "raw", ["[" * 10_000, '{"type": "text", "text": "hi", "x": ' + "[" * 8000 + "]" * 8000 + "}"]
)
def test_deeply_nested_json_frames_are_bad_requests(
    secured_gateway: SecuredGateway, key: str, raw: str
) -> None:
    # was an unhandled RecursionError in the receive loop
    async def scenario() -> None:
        async with voice(secured_gateway, key) as v:
            await v.start()
            await v.send(raw[:MAX_TEXT_FRAME_BYTES])
            assert (await v.error("bad_request"))["message"]
            await v.ask()

    asyncio.run(scenario())


def _token_of(secured_gateway: SecuredGateway, key: str) -> dict[str, object]:
    claims: dict[str, object] = jwt.decode(
        secured_gateway.token(key), AUTH_SECRET, algorithms=["HS256"], audience=TOKEN_AUDIENCE
    )
    return claims


@pytest.mark.parametrize(
    ("drop", "change"),
    [
        ("exp", {}),  # a token good forever
        ("aud", {}),
        ("sub", {}),
        ("sid", {}),
        (None, {"sid": 7}),
        (None, {"sub": ["key:1"]}),
        (None, {"nbf": FAR_FUTURE}),  # not yet valid
    ],
    ids=["no-exp", "no-aud", "no-sub", "no-sid", "sid-not-a-string", "sub-not-a-string", "not-yet-valid"],
)
def test_a_signed_token_without_its_required_claims_closes_with_4401(
    secured_gateway: SecuredGateway, key: str, drop: str | None, change: dict[str, object]
) -> None:
    claims = {**_token_of(secured_gateway, key), **change}
    if drop:
        del claims[drop]
    code, reason, events = _refused(secured_gateway, jwt.encode(claims, AUTH_SECRET))
    assert code == 4401
    assert [(e["code"], e["fatal"]) for e in events] == [("unauthorized", True)]
    assert "not valid" in reason


def test_an_unsigned_token_closes_with_4401(secured_gateway: SecuredGateway, key: str) -> None:
    claims = _token_of(secured_gateway, key)
    unsigned = jwt.encode(claims, None, algorithm="none")  # type: ignore[arg-type]
    code, _, events = _refused(secured_gateway, unsigned)
    assert code == 4401
    assert [e["code"] for e in events] == ["unauthorized"]


def test_a_bad_token_in_the_subprotocol_header_closes_with_4401(secured_gateway: SecuredGateway) -> None:
    async def scenario() -> tuple[int | None, str, list[dict[str, object]], str | None]:
        async with voice(secured_gateway, token="forged", in_header=True) as v:
            protocol = v.ws.subprotocol
            return (*await v.closed(), protocol)

    code, _, events, protocol = asyncio.run(scenario())
    assert protocol == "voicebot.v1"  # accepted, so that a browser hears why
    assert code == 4401
    assert [(e["code"], e["fatal"]) for e in events] == [("unauthorized", True)]


def test_a_socket_from_another_sites_page_closes_with_4403(secured_gateway: SecuredGateway, key: str) -> None:
    async def scenario() -> tuple[int | None, str, list[dict[str, object]]]:
        async with voice(secured_gateway, key, origin="https://evil.example") as v:
            return await v.closed()

    code, _, events = asyncio.run(scenario())
    assert code == 4403
    assert [(e["code"], e["fatal"]) for e in events] == [("unauthorized", True)]


def test_a_key_revoked_during_a_conversation_closes_it_before_another_turn(
    secured_gateway: SecuredGateway, key: str
) -> None:
    """Whichever sees the revocation first, the next message's check or the periodic one (the
    socket may be closed before the question is sent): no turn after it."""

    async def scenario() -> tuple[int | None, str, list[dict[str, object]]]:
        async with voice(secured_gateway, key, in_header=True) as v:
            await v.start()
            await v.ask()  # answered and stored while the key is good
            await asyncio.to_thread(secured_gateway.revoke, key)
            await asyncio.sleep(REVOCATION_WAIT_S - 4)  # past the gateway's key cache (5 s)
            with contextlib.suppress(websockets.ConnectionClosed):
                await v.send({"type": "text", "text": "What does the gateway do?", "speak": False})
            return await v.closed()

    code, reason, events = asyncio.run(scenario())
    assert code == 4401
    assert reason == "the API key has been revoked"
    assert [(e["type"], e["code"], e["fatal"]) for e in events] == [("error", "unauthorized", True)]
    # no turn.started: the question after the revocation was never taken (and not stored: the fixture)


def test_a_token_that_expires_during_a_conversation_closes_it_before_another_turn(
    secured_gateway: SecuredGateway, key: str
) -> None:
    claims = {**_token_of(secured_gateway, key), "exp": int(time.time()) + 3}
    token = jwt.encode(claims, AUTH_SECRET)

    async def scenario() -> tuple[int | None, str, list[dict[str, object]]]:
        async with voice(secured_gateway, token=token) as v:
            await v.start()
            await asyncio.sleep(4)
            with contextlib.suppress(websockets.ConnectionClosed):
                await v.send({"type": "turn.start"})
            return await v.closed()

    code, reason, events = asyncio.run(scenario())
    assert code == 4401
    assert "expired" in reason
    assert [(e["code"], e["fatal"]) for e in events] == [("unauthorized", True)]


def test_an_idle_socket_of_a_revoked_key_is_closed_without_another_message(
    secured_gateway: SecuredGateway, key: str
) -> None:
    """The gateway re-checks an open socket's key every few seconds: after `keys revoke` an idle
    socket closes (4401, `unauthorized`) although the client sends nothing more."""

    async def scenario() -> tuple[int | None, str, list[dict[str, object]], float]:
        async with voice(secured_gateway, key, in_header=True) as v:
            await v.start()
            await asyncio.to_thread(secured_gateway.revoke, key)
            revoked = time.monotonic()
            # the check's period (5 s) plus the gateway's key cache (5 s), with room to spare
            code, reason, events = await v.closed(timeout_s=REVOCATION_WAIT_S + 10)
            return code, reason, events, time.monotonic() - revoked

    code, reason, events, after_s = asyncio.run(scenario())
    assert code == 4401
    assert reason == "the API key has been revoked"
    assert [(e["type"], e["code"], e["fatal"]) for e in events] == [("error", "unauthorized", True)]
    assert after_s < REVOCATION_WAIT_S + 10


def test_an_idle_socket_whose_token_expires_is_closed_at_its_expiry(
    secured_gateway: SecuredGateway, key: str
) -> None:
    claims = {**_token_of(secured_gateway, key), "exp": int(time.time()) + 3}
    token = jwt.encode(claims, AUTH_SECRET)

    async def scenario() -> tuple[int | None, str, list[dict[str, object]]]:
        async with voice(secured_gateway, token=token) as v:
            await v.start()
            return await v.closed(timeout_s=20)  # nothing sent after session.start

    code, reason, events = asyncio.run(scenario())
    assert code == 4401
    assert "expired" in reason
    assert [(e["code"], e["fatal"]) for e in events] == [("unauthorized", True)]


def _history(size_bytes: int) -> list[dict[str, str]]:
    pair = [{"role": "user", "content": "q" * 1000}, {"role": "assistant", "content": "a" * 1000}]
    return pair * (size_bytes // 2000 + 1)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        # An 8 MB history went to Triton and came back as a 502 `internal`.
        ("/v1/chat/completions", {"messages": [*_history(8 << 20), {"role": "user", "content": "hi"}]}),
        ("/v1/chat", {"message": "hi", "padding": "x" * (1 << 20)}),
        ("/v1/sessions", {"session_id": "x" * (1 << 20)}),
        ("/v1/audio/speech", {"model": "tts-1", "input": "hi", "voice": "x" * (1 << 20)}),
    ],
    ids=["completions-8MB-history", "chat-1MB", "sessions-1MB", "speech-1MB"],
)
def test_json_bodies_over_the_limit_are_413_before_any_model_call(
    secured_gateway: SecuredGateway, key: str, path: str, body: dict[str, object]
) -> None:
    response = httpx.post(
        f"{secured_gateway.url}{path}", headers={"Authorization": f"Bearer {key}"}, json=body, timeout=60
    )
    assert _http_error(response, 413) == "too_large"
    assert "limit" in response.json()["error"]["message"]


def test_a_chunked_json_body_over_the_limit_is_413(secured_gateway: SecuredGateway, key: str) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds while the body streams
        yield b'{"messages": ['
        for _ in range(4096):
            yield b'{"role": "user", "content": "' + b"q" * 2000 + b'"},'
        yield b'{"role": "user", "content": "hi"}]}'

    response = httpx.post(
        f"{secured_gateway.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        content=chunks(),
        timeout=60,
    )
    assert _http_error(response, 413) == "too_large"


def test_a_cross_site_upload_with_a_good_key_is_forbidden(secured_gateway: SecuredGateway, key: str) -> None:
    response = httpx.post(
        f"{secured_gateway.url}/v1/documents",
        headers={"Authorization": f"Bearer {key}", "Origin": "https://evil.example"},
        files={
            "files": ("planted.md", b"# Planted\n\nThe gateway is run by evil.example.\n", "text/markdown")
        },
        timeout=60,
    )
    assert _http_error(response, 403) == "forbidden"  # and the fixture: no document stored


@pytest.mark.parametrize("session_id", ["0" * 32, SQL_ISH, "x" * 65], ids=["unknown", "sql-ish", "too-long"])
def test_deleting_a_session_that_is_not_yours_is_404_and_deletes_nothing(
    secured_gateway: SecuredGateway, key: str, session_id: str
) -> None:
    if session_id == "0" * 32:  # someone else's real session
        other_key = secured_gateway.new_key("other")

        async def other() -> str:
            async with voice(secured_gateway, other_key) as v:
                await v.start()
                await v.ask()
                return v.session_id

        session_id = asyncio.run(other())
    before = secured_gateway.query("SELECT count(*) FROM turns")[0][0]
    response = httpx.delete(
        f"{secured_gateway.url}/v1/sessions/{quote(session_id, safe='')}",
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert _http_error(response, 404) == "not_found"
    assert secured_gateway.query("SELECT count(*) FROM turns")[0][0] == before


@pytest.mark.parametrize("path", ["/metrics", "/docs", "/redoc", "/openapi.json"])
def test_outside_dev_mode_metrics_and_docs_are_not_public(secured_gateway: SecuredGateway, path: str) -> None:
    response = httpx.get(f"{secured_gateway.url}{path}", timeout=30)
    if path == "/metrics":
        assert _http_error(response, 401) == "unauthorized"
        keyed = httpx.get(
            f"{secured_gateway.url}{path}", headers={"Authorization": f"Bearer {BOOTSTRAP_KEY}"}, timeout=30
        )
        assert "voicebot_open_sessions" in keyed.text
    else:
        assert response.status_code == 404
        assert "swagger" not in response.text.lower()
        assert "openapi" not in response.text.lower()
