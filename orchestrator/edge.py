"""What every HTTP request passes at the gateway's edge, before any route sees it.

- Dev mode serves loopback host names only (`localhost`, `127.0.0.0/8`, `[::1]`, with a port):
  a website that re-points its own name at 127.0.0.1 (DNS rebinding) sends its own name as Host
  and is refused with 403 `forbidden`.
- State-changing requests (POST, PUT, PATCH, DELETE) that carry an `Origin` must come from an
  allowed page (`auth.origin_allowed`): a cross-site form can POST multipart without any CORS
  preflight, so without this a page on another site could upload into a dev-mode gateway.
- Request bodies are bounded: VOICEBOT_MAX_JSON_BYTES for every body but multipart uploads,
  read within the limit before the route runs (so an 8 MB chat history is a 413 `too_large`, never
  a model call); multipart bodies by VOICEBOT_MAX_UPLOAD_BYTES, counted as they stream (the upload
  routes also check it themselves and answer 413: orchestrator/api/uploads.py).
- Security headers on every response: `X-Content-Type-Options`, `X-Frame-Options`,
  `Referrer-Policy`, `Permissions-Policy`, and a Content-Security-Policy: none at all for the API
  (JSON is never a page), one suited to the UI's static export for everything else.

The voice WebSocket applies the same host and origin rules itself (orchestrator/api/voice.py), so
that it can say why in the protocol's own terms before closing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from prometheus_client import Counter
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator.auth import loopback_host_header, origin_allowed
from orchestrator.errors import Forbidden, TooLarge, VoicebotError
from orchestrator.settings import Settings

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
API_PREFIXES = ("/v1/", "/healthz", "/readyz", "/metrics", "/openapi.json")
DOCS_PATHS = ("/docs", "/redoc")  # Swagger UI / ReDoc load their scripts from a CDN
API_CSP = "default-src 'none'; frame-ancestors 'none'"
DOCS_CSP = "frame-ancestors 'none'"
# The Next.js static export bootstraps each page with inline <script> tags (the RSC payload), so
# scripts need 'unsafe-inline'; what the UI renders is text React escapes, never server HTML.
# Everything else comes from this origin; audio plays from blob: URLs; nothing may frame it.
UI_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; media-src 'self' blob:; font-src 'self' data:; worker-src 'self' blob:; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'; connect-src 'self'"
)
COMMON_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"permissions-policy", b"microphone=(self), camera=(), geolocation=()"),
)
_SAFE_HOST = re.compile(r"[A-Za-z0-9.\-\[\]:]{1,255}")


def ui_csp(host: str | None, extra_origins: Sequence[str]) -> str:
    """The UI's policy; `connect-src` names the voice socket's ws:/wss: URL explicitly (older
    Safari does not count them as 'self') and the extra origins the UI may call."""
    sources = ["'self'"]
    if host and _SAFE_HOST.fullmatch(host):
        sources += [f"ws://{host}", f"wss://{host}"]
    for origin in extra_origins:
        if _SAFE_HOST.fullmatch(origin.split("://", 1)[-1].rstrip("/")):
            sources.append(origin.rstrip("/"))
    return UI_CSP.removesuffix("'self'") + " ".join(sources)


class EdgeMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings, on_refusal: Counter) -> None:
        self.app = app
        self.settings = settings
        self.on_refusal = on_refusal  # voicebot_errors_total, by code

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        path: str = scope["path"]
        send = self._with_headers(send, path, headers.get("host"))
        try:
            self._check_host_and_origin(scope["method"], headers)
            if headers.get("content-type", "").lower().startswith("multipart/form-data"):
                receive = _counted_body(receive, headers, self.settings.max_upload_bytes)
            elif scope["method"] in STATE_CHANGING:
                receive = await _bounded_body(receive, headers, self.settings.max_json_bytes)
        except VoicebotError as e:
            self.on_refusal.labels(e.code.value).inc()
            await _error_response(send, e)
            return
        await self.app(scope, receive, send)

    def _check_host_and_origin(self, method: str, headers: Headers) -> None:
        host = headers.get("host")
        if self.settings.dev_mode and not loopback_host_header(host):
            raise Forbidden(
                "dev mode serves only loopback host names (localhost, 127.0.0.1, [::1]); "
                "outside dev mode, use API keys"
            )
        origin = headers.get("origin")
        if method in STATE_CHANGING and not origin_allowed(
            origin, host, self.settings.cors_origins, dev_mode=self.settings.dev_mode
        ):
            raise Forbidden(
                f"requests from pages of {str(origin)[:100]} are refused here (VOICEBOT_CORS_ORIGINS)"
            )

    def _with_headers(self, send: Send, path: str, host: str | None) -> Send:
        if path.startswith(API_PREFIXES):
            csp = API_CSP
        elif path.startswith(DOCS_PATHS):
            csp = DOCS_CSP
        else:
            csp = ui_csp(host, self.settings.cors_origins)
        added = (*COMMON_HEADERS, (b"content-security-policy", csp.encode()))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(n, v) for n, v in added if n not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        return send_with_headers


async def _bounded_body(receive: Receive, headers: Headers, limit: int) -> Receive:
    """Reads the whole body (at most `limit` bytes, else TooLarge) and returns a `receive`
    that replays it, then waits for the disconnect as the original would."""
    _declared_over(headers, limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away: let the route see it
            return _replay(message, receive)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"the request body is over the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return _replay({"type": "http.request", "body": b"".join(chunks), "more_body": False}, receive)


def _replay(first: Message, receive: Receive) -> Receive:
    """A `receive` that returns `first`, then whatever `receive` does (the disconnect)."""
    pending: list[Message] = [first]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed


def _declared_over(headers: Headers, limit: int) -> None:
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"the request body is {int(declared)} bytes; the limit is {limit} bytes")


def _counted_body(receive: Receive, headers: Headers, limit: int) -> Receive:
    """`receive`, raising TooLarge once more than `limit` bytes arrived (nothing buffered here: an
    upload route reads it within the same limit, and answers 413 itself)."""
    _declared_over(headers, limit)
    size = 0

    async def counted() -> Message:
        nonlocal size
        message = await receive()
        size += len(message.get("body", b""))
        if size > limit:
            raise TooLarge(f"the request body is over the limit of {limit} bytes")
        return message

    return counted


async def _error_response(send: Send, error: VoicebotError) -> None:
    """The gateway's error body, sent before any route ran (so no exception handler applies)."""
    body = json.dumps({"error": {"code": error.code.value, "message": error.message}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    # The client may still be sending a body we will not read: close the connection after this.
    headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": error.http_status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
