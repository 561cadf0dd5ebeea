"""WebSocket `/v1/voice` and `POST /v1/sessions` (the token a browser presents on the socket)."""

from __future__ import annotations

import logging
import uuid

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import BaseModel
from starlette.websockets import WebSocketState

from orchestrator.api.deps import CallerDep, State
from orchestrator.auth import authorize_websocket, client_host, issue_token
from orchestrator.errors import Unauthorized
from orchestrator.protocol import MAX_FRAME_BYTES, MAX_TEXT_FRAME_BYTES, ErrorCode, error_event
from orchestrator.state import AppState

log = logging.getLogger(__name__)
router = APIRouter(tags=["voice"])

CLOSE_UNAUTHORIZED = 4401
CLOSE_TOO_LARGE = 1009
ABUSE_FACTOR = 4


class SessionToken(BaseModel):
    session_id: str
    token: str
    expires_at: int


@router.post("/v1/sessions", summary="Get a short-lived token for the voice WebSocket", responses={401: {}})
async def create_session(state: State, caller: CallerDep) -> SessionToken:
    session_id = uuid.uuid4().hex
    token, expires = issue_token(state.settings, caller.subject, session_id)
    return SessionToken(session_id=session_id, token=token, expires_at=expires)


class _WebSocketSink:
    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket

    async def send_text(self, data: str) -> None:
        if self.websocket.application_state == WebSocketState.CONNECTED:
            await self.websocket.send_text(data)

    async def send_bytes(self, data: bytes) -> None:
        if self.websocket.application_state == WebSocketState.CONNECTED:
            await self.websocket.send_bytes(data)


@router.websocket("/v1/voice")
async def voice(websocket: WebSocket, token: str | None = None) -> None:
    state: AppState = websocket.app.state.voicebot
    try:
        claims = authorize_websocket(state.settings, token, client_host(websocket))
    except Unauthorized as e:
        await websocket.close(code=CLOSE_UNAUTHORIZED, reason=e.message)
        return
    await websocket.accept()
    sink = _WebSocketSink(websocket)
    session = state.new_session(sink)
    if claims is not None:
        session.session_id = claims["sid"]
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
                await sink.send_text(error_event(ErrorCode.TOO_LARGE, "frame far over the limit", fatal=True))
                await websocket.close(code=CLOSE_TOO_LARGE)
                break
            if data is not None:
                await session.on_audio(data)
            elif text is not None:
                await session.on_text(text)
    except WebSocketDisconnect:
        pass
    finally:
        await session.close()
