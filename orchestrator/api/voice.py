"""WebSocket `/v1/voice`, `POST /v1/sessions` (the token a browser presents on the socket),
`GET /v1/sessions/{id}` (a stored conversation, to restore it after a reconnect) and
`DELETE /v1/sessions/{id}` (forget it).

The token travels in the `Sec-WebSocket-Protocol` header (`voicebot.v1, voicebot.token.<token>`),
which access logs do not record, or, for older clients, as `?token=` (redacted from our logs:
orchestrator/observability.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Response, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, ConfigDict, Field
from starlette.websockets import WebSocketState

from orchestrator.api.deps import AskerDep, CallerDep, State
from orchestrator.auth import (
    Caller,
    TokenClaims,
    client_host,
    issue_token,
    loopback_host_header,
    origin_allowed,
)
from orchestrator.errors import NotFound, RateLimited, Unauthorized, VoicebotError
from orchestrator.keys import SCOPE_ASK
from orchestrator.protocol import MAX_FRAME_BYTES, MAX_TEXT_FRAME_BYTES, ErrorCode, ErrorEvent, ServerEvent
from orchestrator.session import VoiceSession
from orchestrator.state import AppState, corpus_of

log = logging.getLogger(__name__)
router = APIRouter(tags=["voice"])

CLOSE_UNAUTHORIZED = 4401  # missing, forged or expired token; the key revoked (also mid-session)
CLOSE_RATE_LIMITED = 4429  # too many concurrent sessions or requests for the key
CLOSE_TOO_LARGE = 1009  # a frame far over its limit
CLOSE_TRY_AGAIN_LATER = 1013  # the token's key could not be checked (database down)
# Also: the key lacks the `ask` scope, or may not use the token's collection.
CLOSE_FORBIDDEN_ORIGIN = (
    4403  # a page of another site (not VOICEBOT_CORS_ORIGINS); dev mode: a host not loopback
)
SUBPROTOCOL = "voicebot.v1"
TOKEN_SUBPROTOCOL_PREFIX = "voicebot.token."  # noqa: S105 - a prefix, not a secret
ABUSE_FACTOR = 4
# An open socket's token and key are re-checked this often even while it is idle, so a revoked
# key's or an expired token's socket closes within this (plus the key cache's 5 s) without
# waiting for its next message. A cached lookup: one query per key and process every 5 s at most.
AUTHORITY_CHECK_S = 5.0
_SESSION_NOT_FOUND = "no such session"
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "no valid API key"},
    429: {"description": "rate limited"},
}


class SessionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    session_id: str | None = Field(
        default=None, max_length=64, description="A stored session of the same key, to resume."
    )
    collection: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        description="The collection of the key's tenant to answer from (default: the key's default).",
    )


class SessionToken(BaseModel):
    session_id: str
    token: str
    expires_at: int


class Citation(BaseModel):
    n: int
    title: str
    source: str
    heading_path: list[str]
    snippet: str


class StoredTurn(BaseModel):
    turn: int
    question: str
    answer: str = Field(description="Empty unless the turn was answered (outcome ok).")
    citations: list[Citation]
    timings: dict[str, float | str | None] = Field(description="Stage timings in ms, as in turn.done.")
    outcome: Literal["ok", "error", "cancelled"]
    created_at: datetime


class SessionTurns(BaseModel):
    session_id: str
    turns: list[StoredTurn]


@router.post(
    "/v1/sessions",
    summary="Get a short-lived token for the voice WebSocket (optionally to resume a session)",
    responses={
        **_ERRORS,
        403: {"description": "the key lacks the `ask` scope, or may not use the collection"},
        404: {"description": "the session to resume is unknown"},
        503: {},
    },
)
async def create_session(state: State, caller: AskerDep, body: SessionRequest | None = None) -> SessionToken:
    collection = corpus_of(caller, body.collection if body else None).collection
    session_id, resume = uuid.uuid4().hex, False
    if body is not None and body.session_id:
        if not await state.session_store.exists(body.session_id, caller.subject):
            raise NotFound(_SESSION_NOT_FOUND)
        session_id, resume = body.session_id, True
    token, expires = issue_token(
        state.settings, caller.subject, session_id, resume=resume, collection=collection
    )
    return SessionToken(session_id=session_id, token=token, expires_at=expires)


@router.delete(
    "/v1/sessions/{session_id}",
    summary="Delete a stored session of this key, with all its turns",
    status_code=204,
    response_class=Response,
    responses={**_ERRORS, 404: {"description": "unknown, or another key's"}, 503: {}},
)
async def delete_session(session_id: str, state: State, caller: CallerDep) -> Response:
    if not await state.session_store.delete(session_id, caller.subject):
        raise NotFound(_SESSION_NOT_FOUND)
    log.info("session deleted", extra={"session": session_id})
    return Response(status_code=204)


@router.get(
    "/v1/sessions/{session_id}",
    summary="The turns of a stored session (to restore a conversation after a reconnect)",
    responses={**_ERRORS, 404: {"description": "unknown, or another key's"}, 503: {}},
)
async def get_session(session_id: str, state: State, caller: CallerDep) -> SessionTurns:
    turns = await state.session_store.turns(session_id, caller.subject)
    if turns is None:
        raise NotFound(_SESSION_NOT_FOUND)
    return SessionTurns(session_id=session_id, turns=[StoredTurn(**t.public()) for t in turns])


class _WebSocketSink:
    """The edge: events leave as JSON text frames, audio as binary frames."""

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket

    async def send_event(self, event: ServerEvent) -> None:
        if self.websocket.application_state == WebSocketState.CONNECTED:
            await self.websocket.send_text(event.to_json())

    async def send_audio(self, frame: bytes) -> None:
        if self.websocket.application_state == WebSocketState.CONNECTED:
            await self.websocket.send_bytes(frame)


def _subprotocol(websocket: WebSocket) -> tuple[str | None, str | None]:
    """(the subprotocol to accept with, the token it carried). A browser fails the handshake
    unless the server picks one of the subprotocols it offered, so offering tokens needs
    `voicebot.v1` beside them."""
    offered: list[str] = list(websocket.scope.get("subprotocols") or [])
    token = next(
        (p.removeprefix(TOKEN_SUBPROTOCOL_PREFIX) for p in offered if p.startswith(TOKEN_SUBPROTOCOL_PREFIX)),
        None,
    )
    return (SUBPROTOCOL if SUBPROTOCOL in offered else None), token or None


async def _refuse(
    websocket: WebSocket, state: AppState, error: VoicebotError, code: int, *, accepted: bool = False
) -> None:
    """Accept (unless `accepted`) only to say why (an `error` event, fatal), then close with
    `code`. (Closing before the accept would make the server answer the handshake with a bare
    HTTP 403, and a browser would see neither the code nor the reason.)"""
    state.metrics.errors.labels(error.code.value).inc()
    if not accepted:
        await websocket.accept(subprotocol=_subprotocol(websocket)[0])
    await websocket.send_text(ErrorEvent(code=error.code, message=error.message, fatal=True).to_json())
    await websocket.close(code=code, reason=error.message[:120])


def _forbidden(websocket: WebSocket, state: AppState) -> Unauthorized | None:
    """Why the handshake's Host or Origin is refused (see orchestrator/edge.py), or None."""
    settings = state.settings
    host = websocket.headers.get("host")
    if settings.dev_mode and not loopback_host_header(host):
        return Unauthorized("dev mode serves only loopback host names (localhost, 127.0.0.1, [::1])")
    origin = websocket.headers.get("origin")
    if not origin_allowed(origin, host, settings.cors_origins, dev_mode=settings.dev_mode):
        return Unauthorized(
            f"pages from {str(origin)[:100]} may not open voice sessions here (VOICEBOT_CORS_ORIGINS)"
        )
    return None


@router.websocket("/v1/voice")
async def voice(websocket: WebSocket, token: str | None = None) -> None:
    state: AppState = websocket.app.state.voicebot
    gatekeeper = state.gatekeeper
    refused = _forbidden(websocket, state)
    if refused is not None:
        await _refuse(websocket, state, refused, CLOSE_FORBIDDEN_ORIGIN)
        return
    # The header form wins over the URL form (kept for older clients).
    token = _subprotocol(websocket)[1] or token
    try:
        caller, claims = await gatekeeper.authenticate_socket(state.pool, token, client_host(websocket))
    except Unauthorized as e:
        await _refuse(websocket, state, e, CLOSE_UNAUTHORIZED)
        return
    except RateLimited as e:
        await _refuse(websocket, state, e, CLOSE_RATE_LIMITED)
        return
    except VoicebotError as e:  # StoreUnavailable: the token's key cannot be checked now
        await _refuse(websocket, state, e, CLOSE_TRY_AGAIN_LATER)
        return
    try:  # the token's collection was checked when it was issued; a token is not trusted further
        caller.require(SCOPE_ASK)
        corpus_of(caller, claims.collection if claims else None)
    except VoicebotError as e:
        await _refuse(websocket, state, e, CLOSE_FORBIDDEN_ORIGIN)
        return
    if not gatekeeper.sessions.try_open(caller.bucket):
        limit = gatekeeper.sessions.max_per_key
        await _refuse(
            websocket,
            state,
            RateLimited(f"this key already has {limit} open voice sessions; close one first"),
            CLOSE_RATE_LIMITED,
        )
        return
    try:
        await _converse(websocket, state, caller, claims)
    finally:
        gatekeeper.sessions.close(caller.bucket)


async def _converse(
    websocket: WebSocket, state: AppState, caller: Caller, claims: TokenClaims | None
) -> None:
    await websocket.accept(subprotocol=_subprotocol(websocket)[0])
    sink = _WebSocketSink(websocket)
    session = state.new_session(
        sink,
        corpus_of(caller, claims.collection if claims else None),
        subject=caller.subject,
        store=state.session_store,
        session_id=claims.session_id if claims is not None else None,
        resume=claims.resume if claims is not None else False,
    )
    # While the reader takes the client's messages (each checked as it comes), a watch checks the
    # socket's authority (token expiry, key revocation) when none comes, and closes it: the
    # client's answer to the close ends the reader.
    watch = asyncio.create_task(_watch_authority(websocket, state, caller, claims, session.session_id))
    try:
        await _read(websocket, sink, state, caller, claims, session)
    finally:
        watch.cancel()
        await asyncio.wait((watch,))  # its end, not its CancelledError (ours, if cancelled, goes on)
        await session.close()


async def _read(
    websocket: WebSocket,
    sink: _WebSocketSink,
    state: AppState,
    caller: Caller,
    claims: TokenClaims | None,
    session: VoiceSession,
) -> None:
    """Until the client leaves or the socket is closed: each frame to the session."""
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            data = message.get("bytes")
            text = message.get("text")
            # A frame far over its limit is abuse, not a mistake: refuse it and close. (Merely
            # oversized frames get an error from the session, which goes on.)
            size, limit = (
                (len(data), MAX_FRAME_BYTES) if data is not None else (len(text or ""), MAX_TEXT_FRAME_BYTES)
            )
            if size > limit * ABUSE_FACTOR:
                state.metrics.errors.labels(ErrorCode.TOO_LARGE.value).inc()
                await sink.send_event(
                    ErrorEvent(code=ErrorCode.TOO_LARGE, message="frame far over the limit", fatal=True)
                )
                await websocket.close(code=CLOSE_TOO_LARGE)
                break
            if data is not None:
                await session.on_audio(data)
            elif text is not None:
                # Every message may start a turn: the token must still be in date and its key not
                # revoked since the socket opened, else the socket closes (4401) before it is read.
                try:
                    await state.gatekeeper.check_socket(state.pool, caller, claims)
                except Unauthorized as e:
                    await _close_unauthorized(websocket, state, e, session.session_id)
                    break
                await session.on_text(text)
    except WebSocketDisconnect:
        pass


async def _watch_authority(
    websocket: WebSocket, state: AppState, caller: Caller, claims: TokenClaims | None, session_id: str
) -> None:
    """Returns (the socket closed with 4401) once the token has expired or its key is revoked,
    checked every AUTHORITY_CHECK_S and at the token's expiry; never for dev mode's anonymous
    callers, who carry no token."""
    if claims is None:
        await asyncio.Event().wait()  # nothing to watch: only the reader ends the conversation
        return
    gatekeeper = state.gatekeeper
    while True:
        await asyncio.sleep(max(0.0, min(AUTHORITY_CHECK_S, claims.expires_at - gatekeeper.wall_clock())))
        try:
            await gatekeeper.check_socket(state.pool, caller, claims)
        except Unauthorized as e:
            await _close_unauthorized(websocket, state, e, session_id)
            return


async def _close_unauthorized(
    websocket: WebSocket, state: AppState, error: Unauthorized, session_id: str
) -> None:
    """The `unauthorized` error event, then close 4401; once, whichever half sees it first."""
    if websocket.application_state != WebSocketState.CONNECTED:
        return
    log.info("voice socket closed: %s", error.message, extra={"session": session_id})
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):  # the client left meanwhile
        await _refuse(websocket, state, error, CLOSE_UNAUTHORIZED, accepted=True)
