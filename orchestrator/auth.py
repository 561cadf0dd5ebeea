"""Who may talk to the gateway.

- API keys (`Authorization: Bearer <key>`) for servers and automation. This release accepts the
  configured `VOICEBOT_BOOTSTRAP_API_KEY`; stored, hashed keys (`voicebot keys`) come next.
- Browsers exchange a key (or, in dev mode, nothing) for a short-lived signed session token at
  `POST /v1/sessions` and present it on the WebSocket as `?token=…`.
- Dev mode (`make up`) admits anonymous clients, but only from loopback addresses.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import time
from dataclasses import dataclass

import jwt
from starlette.requests import HTTPConnection

from orchestrator.errors import Unauthorized
from orchestrator.settings import Settings

TOKEN_AUDIENCE = "voicebot/v1/voice"  # noqa: S105 - an audience name, not a secret
_ALGORITHM = "HS256"
_DEV_SECRET = secrets.token_urlsafe(48)  # dev mode only: tokens die with the process


@dataclass(frozen=True)
class Caller:
    """Who made a request: `subject` names the key ('bootstrap', 'anonymous' or a stored key's id)."""

    subject: str

    @property
    def anonymous(self) -> bool:
        return self.subject == "anonymous"


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def client_host(connection: HTTPConnection) -> str | None:
    return connection.client.host if connection.client else None


def _signing_key(settings: Settings) -> str:
    if settings.auth_secret is not None:
        return settings.auth_secret.get_secret_value()
    return _DEV_SECRET


def check_api_key(settings: Settings, authorization: str | None, client_host: str | None) -> str:
    """The caller's identity ('anonymous' in dev mode from loopback), or Unauthorized."""
    # Dev mode on loopback admits anyone, whatever key a client library insists on sending.
    anonymous_ok = settings.dev_mode and is_loopback(client_host)
    if authorization and authorization.lower().startswith("bearer "):
        key = authorization[7:].strip()
        expected = settings.bootstrap_api_key.get_secret_value() if settings.bootstrap_api_key else ""
        if expected and hmac.compare_digest(key.encode(), expected.encode()):
            return "bootstrap"
        if not anonymous_ok:
            raise Unauthorized("the API key is not valid")
    if anonymous_ok:
        return "anonymous"
    raise Unauthorized("an API key is required: Authorization: Bearer <key>")


def issue_token(settings: Settings, subject: str, session_id: str) -> tuple[str, int]:
    expires = int(time.time()) + settings.session_token_ttl_s
    claims = {"sub": subject, "sid": session_id, "aud": TOKEN_AUDIENCE, "exp": expires}
    return jwt.encode(claims, _signing_key(settings), algorithm=_ALGORITHM), expires


def verify_token(settings: Settings, token: str) -> dict[str, str]:
    try:
        claims = jwt.decode(token, _signing_key(settings), algorithms=[_ALGORITHM], audience=TOKEN_AUDIENCE)
    except jwt.ExpiredSignatureError as e:
        raise Unauthorized("the session token has expired; request a new one") from e
    except jwt.PyJWTError as e:
        raise Unauthorized("the session token is not valid") from e
    return {"sub": str(claims["sub"]), "sid": str(claims["sid"])}


def authorize_websocket(
    settings: Settings, token: str | None, client_host: str | None
) -> dict[str, str] | None:
    """Claims of a valid token; None for an anonymous dev-mode loopback client; else Unauthorized."""
    if token:
        return verify_token(settings, token)
    if settings.dev_mode and is_loopback(client_host):
        return None
    raise Unauthorized("a session token is required (POST /v1/sessions)")
