"""Streaming an answer over HTTP: the answer runs as a task that fills a queue, the response
drains it, and a client that goes away cancels the answer (and with it the model streams)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from typing import Any


async def drain(work: Coroutine[Any, Any, Any], queue: asyncio.Queue[str | None]) -> AsyncIterator[str]:
    """Run `work`; yield what it puts on `queue` until it puts None, then re-raise its error if any.
    `work` must put None when it ends, whatever the outcome."""
    task = asyncio.create_task(work)
    try:
        while (item := await queue.get()) is not None:
            yield item
        await task
    finally:
        task.cancel()  # no-op when done; stops generating when the client left early
        await asyncio.gather(task, return_exceptions=True)
