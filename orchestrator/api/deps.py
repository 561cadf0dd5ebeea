"""FastAPI dependencies shared by the HTTP routes: the app state and the authenticated caller,
with the scope each group of routes needs (orchestrator/keys.py: `ask`, `documents`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from orchestrator.auth import Caller, client_host
from orchestrator.keys import SCOPE_ASK, SCOPE_DOCUMENTS
from orchestrator.state import AppState


def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.voicebot
    return state


async def require_caller(request: Request, authorization: Annotated[str | None, Header()] = None) -> Caller:
    """The authenticated caller of an HTTP request, counted against its rate limit.

    Refusals: 401 (`Unauthorized`: no key, a wrong or revoked one), 429 (`RateLimited`, with
    Retry-After), 503 (`StoreUnavailable`: a stored key cannot be checked while Postgres is down)."""
    return await app_state(request).authenticate(authorization, client_host(request))


State = Annotated[AppState, Depends(app_state)]
CallerDep = Annotated[Caller, Depends(require_caller)]


async def require_asker(caller: CallerDep) -> Caller:
    """A caller whose key may ask (voice, chat, transcription, speech): else 403 `insufficient_scope`."""
    caller.require(SCOPE_ASK)
    return caller


async def require_librarian(caller: CallerDep) -> Caller:
    """A caller whose key may manage documents: else 403 `insufficient_scope`."""
    caller.require(SCOPE_DOCUMENTS)
    return caller


AskerDep = Annotated[Caller, Depends(require_asker)]
LibrarianDep = Annotated[Caller, Depends(require_librarian)]
