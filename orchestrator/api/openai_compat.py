"""OpenAI-compatible `POST /v1/chat/completions` (streaming and not) and `GET /v1/models`,
grounded in the documents.

The last user message is the question; earlier user/assistant pairs are the history. Answers
come from the same pipeline as voice turns (retrieval, citations, declining), without speech, so
the official `openai` client and tools built on it work unchanged. What OpenAI's schema has no
field for travels in a `voicebot` object beside `choices` (the passages, which of them the answer
cites, whether it declined); clients that do not know it ignore it.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from orchestrator.api.deps import AskerDep, CallerDep, State
from orchestrator.api.streaming import drain
from orchestrator.errors import BadRequest, NotFound, VoicebotError
from orchestrator.pipeline import AnswerResult
from orchestrator.prompt import HISTORY_TURNS, Exchange
from orchestrator.protocol import AnswerDelta, ServerEvent
from orchestrator.state import corpus_of

router = APIRouter(prefix="/v1", tags=["openai"])
MODEL_NAME = "voicebot"
MODEL_CREATED = 1_767_225_600  # 2026-01-01: a fixed date, so listings are stable


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(str(part.get("text", "")) for part in self.content if part.get("type") == "text")
        return self.content or ""


class ChatCompletionRequest(BaseModel):
    model: str = MODEL_NAME
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    max_tokens: int | None = Field(default=None, ge=1, le=4096)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=4096)
    temperature: float | None = None
    # Not OpenAI's: the openai client sends it with `extra_body={"collection": ...}`.
    collection: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class _Collector:
    """A pipeline sink that keeps only the answer's text deltas."""

    def __init__(self) -> None:
        self.deltas: asyncio.Queue[str | None] = asyncio.Queue()

    async def send_event(self, event: ServerEvent) -> None:
        if isinstance(event, AnswerDelta):
            await self.deltas.put(event.text)

    async def send_audio(self, frame: bytes) -> None:
        return None


def _model_card() -> dict[str, Any]:
    return {"id": MODEL_NAME, "object": "model", "created": MODEL_CREATED, "owned_by": "voicebot"}


@router.get("/models", summary="OpenAI-compatible model list (one model: the grounded assistant)")
async def list_models(caller: CallerDep) -> dict[str, Any]:
    return {"object": "list", "data": [_model_card()]}


@router.get("/models/{model_id}", summary="OpenAI-compatible model card")
async def get_model(model_id: str, caller: CallerDep) -> dict[str, Any]:
    if model_id != MODEL_NAME:
        raise NotFound(f"no model '{model_id}'; this server has '{MODEL_NAME}'")
    return _model_card()


def _extension(result: AnswerResult, passage_chars: int) -> dict[str, Any]:
    """The `voicebot` object: every passage given to the model (as it read them), and what the
    answer did with them."""
    return {
        "sources": [s.public(passage_chars) for s in result.sources],
        "sources_available": result.sources_available,
        **result.done_fields(),
    }


def _question_and_history(messages: list[ChatMessage]) -> tuple[str, list[Exchange]]:
    turns = [m for m in messages if m.role in ("user", "assistant")]
    if not turns or turns[-1].role != "user" or not turns[-1].text().strip():
        raise BadRequest("the last message must be a non-empty user message")
    history: list[Exchange] = []
    pending: str | None = None
    for message in turns[:-1]:
        if message.role == "user":
            pending = message.text()
        elif pending is not None:
            history.append(Exchange(pending, message.text()))
            pending = None
    return turns[-1].text(), history


def _chunk(
    completion_id: str,
    created: int,
    delta: dict[str, str],
    finish: str | None,
    extension: dict[str, Any] | None = None,
) -> str:
    body: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": MODEL_NAME,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if extension is not None:
        body["voicebot"] = extension
    return f"data: {json.dumps(body)}\n\n"


@router.post("/chat/completions", summary="OpenAI-compatible chat completions", response_model=None)
async def chat_completions(
    body: ChatCompletionRequest, state: State, caller: AskerDep
) -> StreamingResponse | dict[str, Any]:
    corpus = corpus_of(caller, body.collection)  # 403 before a stream starts
    question, history = _question_and_history(body.messages)
    state.check_question(question)  # 413 / 400 before a stream starts
    sink = _Collector()

    results: list[AnswerResult] = []

    async def run() -> AnswerResult:
        try:
            result = await state.answer_text(
                question,
                sink,
                corpus=corpus,
                history=history[-HISTORY_TURNS:],
                max_tokens=body.max_completion_tokens or body.max_tokens,
            )
            results.append(result)
            return result
        finally:
            await sink.deltas.put(None)

    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    if not body.stream:
        result = await run()
        return {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": MODEL_NAME,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": result.text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            "voicebot": _extension(result, state.settings.passage_chars),
        }

    async def stream() -> AsyncIterator[str]:
        yield _chunk(completion_id, created, {"role": "assistant", "content": ""}, None)
        try:
            async for delta in drain(run(), sink.deltas):
                yield _chunk(completion_id, created, {"content": delta}, None)
        except VoicebotError as e:
            yield f"data: {json.dumps({'error': {'code': e.code.value, 'message': e.message}})}\n\n"
            return
        yield _chunk(
            completion_id,
            created,
            {},
            "stop",
            _extension(results[0], state.settings.passage_chars) if results else None,
        )
        yield "data: [DONE]\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
