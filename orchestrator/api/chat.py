"""`POST /v1/chat`: a typed question answered as Server-Sent Events (sources, deltas, done)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from orchestrator.api.deps import AskerDep, State
from orchestrator.api.responses import error_responses
from orchestrator.api.streaming import drain
from orchestrator.errors import VoicebotError
from orchestrator.protocol import AnswerDelta, AnswerDone, ErrorEvent, ServerEvent, Sources
from orchestrator.state import corpus_of

router = APIRouter(prefix="/v1", tags=["chat"])

# The events this API carries, by their SSE event name; `data:` is the event's WebSocket JSON.
_SSE_NAMES: dict[type[ServerEvent], str] = {
    Sources: "sources",
    AnswerDelta: "delta",
    AnswerDone: "done",
    ErrorEvent: "error",
}


class ChatRequest(BaseModel):
    message: str = Field(min_length=1, description="The question.")
    collection: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        description="The collection of the key's tenant to answer from (default: the key's default).",
    )


class _SseSink:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=256)

    async def send_event(self, event: ServerEvent) -> None:
        name = _SSE_NAMES.get(type(event))
        if name:
            await self.queue.put(f"event: {name}\ndata: {event.to_json()}\n\n")

    async def send_audio(self, frame: bytes) -> None:  # text only: no audio on this API
        return None


@router.post(
    "/chat",
    summary="Answer a typed question (SSE: sources, delta…, done | error)",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}, **error_responses(400, 401, 403, 413, 429)},
)
async def chat(body: ChatRequest, state: State, caller: AskerDep) -> StreamingResponse:
    corpus = corpus_of(caller, body.collection)  # 403 before the stream starts
    state.check_question(body.message)  # 413 / 400 before the stream starts
    sink = _SseSink()

    async def produce() -> None:
        try:
            await state.answer_text(body.message, sink, corpus=corpus)
        except VoicebotError as e:
            state.metrics.errors.labels(e.code.value).inc()
            await sink.send_event(ErrorEvent(code=e.code, message=e.message, turn=1))
        finally:
            await sink.queue.put(None)

    return StreamingResponse(
        drain(produce(), sink.queue), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )
