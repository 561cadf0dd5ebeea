"""Who may talk to the gateway, and how much.

- API keys (`Authorization: Bearer <key>`) for servers and automation: keys stored hashed in
  Postgres (`voicebot keys create|list|revoke`, orchestrator/keys.py) and the configured
  `VOICEBOT_BOOTSTRAP_API_KEY`.
- Browsers exchange a key (or, in dev mode, nothing) for a short-lived signed session token at
  `POST /v1/sessions` and present it on the WebSocket as `?token=…`. The token carries the key's
  subject, so a key revoked since refuses its tokens too.
- Dev mode (`make up`) admits anonymous clients, but only from loopback addresses.
- Every caller acts for one tenant, with scopes and the collections it may use (`Caller`): a
  stored key's own; the bootstrap key and dev mode's anonymous callers act as the first tenant
  with every scope.

Stored-key lookups are cached for KEY_CACHE_TTL_S per process, so a revocation takes effect
within that many seconds on every replica, on open voice sockets too (`check_socket`, at each
message a client sends). Every authenticated request (and every WebSocket) is counted against the
caller's rate limit (orchestrator/limits.py), and failed authentications against the client
address's (`VOICEBOT_AUTH_FAILURES_PER_MINUTE`), so keys and tokens cannot be guessed at speed.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

import jwt
import psycopg
import psycopg_pool
from psycopg_pool import AsyncConnectionPool
from starlette.requests import HTTPConnection

from ingest.tenancy import DEFAULT_COLLECTION, DEFAULT_TENANT_ID
from orchestrator import keys
from orchestrator.errors import (
    CollectionForbidden,
    InsufficientScope,
    RateLimited,
    StoreUnavailable,
    Unauthorized,
)
from orchestrator.keys import SCOPE_ADMIN, SCOPES, ApiKey
from orchestrator.limits import RateLimiter, SessionLimiter, retry_after
from orchestrator.settings import Settings

TOKEN_AUDIENCE = "voicebot/v1/voice"  # noqa: S105 - an audience name, not a secret
_ALGORITHM = "HS256"
_DEV_SECRET = secrets.token_urlsafe(48)  # dev mode only: tokens die with the process
KEY_CACHE_TTL_S = 5.0  # a revoked key stops working within this many seconds
KEY_CACHE_SIZE = 1024
KEY_LOOKUP_TIMEOUT_S = 2.0
BOOTSTRAP = "bootstrap"
ANONYMOUS = "anonymous"
TOKEN_EXPIRED = "the session token has expired; request a new one"  # noqa: S105 - a message


@dataclass(frozen=True)
class Caller:
    """Who made a request: `subject` names the key ('bootstrap', 'anonymous' or 'key:<id>' of a
    stored key); `client` is the client's address, which tells anonymous callers apart. The rest
    is what the key may do: for which tenant, with which scopes, in which of its collections
    (None: all of them), and the collection used when a request names none."""

    subject: str
    client: str | None = None
    tenant_id: int = DEFAULT_TENANT_ID
    scopes: frozenset[str] = frozenset(SCOPES)
    collections: tuple[str, ...] | None = None
    default_collection: str = DEFAULT_COLLECTION

    @classmethod
    def of_key(cls, key: ApiKey, client: str | None) -> Caller:
        return cls(
            key.subject,
            client,
            tenant_id=key.tenant_id,
            scopes=frozenset(key.scopes),
            collections=key.collections,
            default_collection=key.default_collection,
        )

    def require(self, scope: str) -> None:
        """Raises InsufficientScope (403) unless the key has `scope` (or `admin`)."""
        if scope not in self.scopes and SCOPE_ADMIN not in self.scopes:
            raise InsufficientScope(f"this API key lacks the {scope!r} scope")

    def collection(self, requested: str | None = None) -> str:
        """The collection a request uses: `requested`, or the key's default. Raises
        CollectionForbidden (403) for one the key may not use."""
        name = requested or self.default_collection
        if self.collections is not None and name not in self.collections and SCOPE_ADMIN not in self.scopes:
            raise CollectionForbidden(
                f"this API key may not use collection {name!r}; it may use {', '.join(self.collections)}"
            )
        return name

    def may_use(self, collection: str) -> bool:
        try:
            self.collection(collection)
        except CollectionForbidden:
            return False
        return True

    @property
    def anonymous(self) -> bool:
        return self.subject == ANONYMOUS

    @property
    def bucket(self) -> str:
        """What limits count against: the key, or for anonymous callers their address."""
        return f"{ANONYMOUS}@{self.client}" if self.anonymous else self.subject


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    host = host.lower().rstrip(".")
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost" or host.endswith(".localhost")  # RFC 6761: always loopback


def _hostname(netloc: str) -> str | None:
    """The host name of `host[:port]` (IPv6 in brackets), or None when it is not one."""
    try:
        return urlsplit(f"//{netloc}").hostname
    except ValueError:
        return None


def loopback_host_header(host: str | None) -> bool:
    """Whether a Host header names this machine's loopback interface (`localhost:8080`,
    `127.0.0.1`, `[::1]:8080`). Dev mode serves nothing else: a page of another site that
    re-points its own name at 127.0.0.1 (DNS rebinding) still sends its own name as Host."""
    return bool(host) and is_loopback(_hostname(str(host)))


def loopback_origin(origin: str) -> bool:
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and is_loopback(_hostname(parts.netloc))


def origin_allowed(origin: str | None, host: str | None, allowed: Sequence[str], *, dev_mode: bool) -> bool:
    """May a page from `origin` open a voice socket or change state (POST, PUT, PATCH, DELETE)?

    Browsers send Origin on WebSocket upgrades and no CORS rule guards them, and a cross-site form
    POST needs no CORS preflight; so without this check any website a developer visits could talk
    to, or upload into, a dev-mode gateway on loopback. VOICEBOT_CORS_ORIGINS may; in dev mode also
    loopback pages (and nothing else: the Host is loopback there, so same-origin means loopback);
    outside dev mode the gateway's own pages (same origin). Clients that send no Origin (servers,
    scripts) are judged by their credentials alone. `null` (sandboxed frames, file://) is foreign."""
    if not origin:
        return True
    if origin.rstrip("/") in {a.rstrip("/") for a in allowed}:
        return True
    if dev_mode:
        return loopback_origin(origin)
    return bool(host) and urlsplit(origin).netloc.lower() == str(host).lower()


def client_host(connection: HTTPConnection) -> str | None:
    return connection.client.host if connection.client else None


def _signing_key(settings: Settings) -> str:
    if settings.auth_secret is not None:
        return settings.auth_secret.get_secret_value()
    return _DEV_SECRET


@dataclass(frozen=True)
class TokenClaims:
    """What a session token says: whose it is, for which session, whether to resume it, and until
    when (seconds since the epoch)."""

    subject: str
    session_id: str
    resume: bool = False
    expires_at: float = float("inf")
    collection: str | None = None  # what the session answers from (None: the key's default)


def issue_token(
    settings: Settings,
    subject: str,
    session_id: str,
    *,
    resume: bool = False,
    collection: str | None = None,
) -> tuple[str, int]:
    expires = int(time.time()) + settings.session_token_ttl_s
    claims: dict[str, object] = {"sub": subject, "sid": session_id, "aud": TOKEN_AUDIENCE, "exp": expires}
    if resume:
        claims["resume"] = True
    if collection is not None:
        claims["col"] = collection
    return jwt.encode(claims, _signing_key(settings), algorithm=_ALGORITHM), expires


def verify_token(settings: Settings, token: str) -> TokenClaims:
    try:
        # A token without an expiry would be good forever, and one without an audience could be
        # another service's: all four claims are required, not merely checked when present.
        claims = jwt.decode(
            token,
            _signing_key(settings),
            algorithms=[_ALGORITHM],
            audience=TOKEN_AUDIENCE,
            options={"require": ["exp", "aud", "sub", "sid"]},
        )
    except jwt.ExpiredSignatureError as e:
        raise Unauthorized(TOKEN_EXPIRED) from e
    except jwt.PyJWTError as e:
        raise Unauthorized("the session token is not valid") from e
    if not isinstance(claims.get("sub"), str) or not isinstance(claims.get("sid"), str):
        raise Unauthorized("the session token is not valid")
    collection = claims.get("col")
    return TokenClaims(
        claims["sub"],
        claims["sid"],
        claims.get("resume") is True,
        float(claims["exp"]),
        collection if isinstance(collection, str) else None,
    )


def bearer_token(authorization: str | None) -> str | None:
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip() or None
    return None


K = TypeVar("K")
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """A small map whose entries expire `ttl_s` after they were stored; the oldest go first when full."""

    def __init__(self, ttl_s: float, size: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.size = size
        self.clock = clock
        self._items: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K) -> tuple[bool, V | None]:
        """(found, value); an expired entry is not found."""
        item = self._items.get(key)
        if item is None:
            return False, None
        stored, value = item
        if self.clock() - stored >= self.ttl_s:
            del self._items[key]
            return False, None
        return True, value

    def put(self, key: K, value: V) -> None:
        self._items[key] = (self.clock(), value)
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)


class Gatekeeper:
    """Authenticates callers and applies the per-caller limits (one per gateway process)."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.wall_clock = wall_clock  # token expiry is in seconds since the epoch
        self.requests = RateLimiter(settings.rate_limit_per_minute, clock=clock)
        # Failed authentications per client address: a key or token guessed at speed gets 429s.
        self.failures = RateLimiter(settings.auth_failures_per_minute, clock=clock)
        self.sessions = SessionLimiter(settings.max_sessions_per_key)
        # digest of a presented key → its stored key (None: no such key); key id → stored key.
        self._by_digest: TtlCache[str, ApiKey | None] = TtlCache(KEY_CACHE_TTL_S, KEY_CACHE_SIZE, clock)
        self._by_id: TtlCache[int, ApiKey | None] = TtlCache(KEY_CACHE_TTL_S, KEY_CACHE_SIZE, clock)

    # ---- HTTP ----------------------------------------------------------------------------

    async def authenticate(
        self, pool: AsyncConnectionPool | None, authorization: str | None, client_host: str | None
    ) -> Caller:
        """The caller behind an `Authorization` header, counted against its rate limit.

        Raises Unauthorized (401), RateLimited (429: over the caller's rate, or too many failed
        attempts from this address) or StoreUnavailable (503: a stored key could not be checked)."""
        async with self._counting_failures(client_host):
            caller = await self.identify(pool, authorization, client_host)
        self.count_request(caller)
        return caller

    async def identify(
        self, pool: AsyncConnectionPool | None, authorization: str | None, client_host: str | None
    ) -> Caller:
        # Dev mode on loopback admits anyone, whatever key a client library insists on sending;
        # but a stored key is still checked, so its callers keep their identity (and a revoked
        # key is refused).
        anonymous_ok = self.settings.dev_mode and is_loopback(client_host)
        key = bearer_token(authorization)
        if key is not None:
            if self._is_bootstrap(key):
                return Caller(BOOTSTRAP, client_host)
            if keys.key_prefix(key) is not None:
                stored = await self._stored_key(pool, key)
                return Caller.of_key(stored, client_host)
            if not anonymous_ok:
                raise Unauthorized("the API key is not valid")
        if anonymous_ok:
            return Caller(ANONYMOUS, client_host)
        raise Unauthorized("an API key is required: Authorization: Bearer <key>")

    def count_request(self, caller: Caller) -> None:
        wait_s = self.requests.acquire(caller.bucket)
        if wait_s > 0:
            raise RateLimited(
                f"over {self.settings.rate_limit_per_minute} requests a minute; retry in "
                f"{retry_after(wait_s)} s",
                retry_after_s=retry_after(wait_s),
            )

    # ---- WebSocket -----------------------------------------------------------------------

    async def authenticate_socket(
        self, pool: AsyncConnectionPool | None, token: str | None, client_host: str | None
    ) -> tuple[Caller, TokenClaims | None]:
        """The caller of a WebSocket and what its token says (None without one).

        A token's key must still be valid: a key revoked since refuses its tokens. Raises
        Unauthorized, RateLimited or StoreUnavailable."""
        if token:
            async with self._counting_failures(client_host):
                claims = verify_token(self.settings, token)
                caller = Caller(claims.subject, client_host)
                key_id = keys.key_id_of(caller.subject)
                if key_id is not None:
                    caller = Caller.of_key(await self._stored_key_by_id(pool, key_id), client_host)
            self.count_request(caller)
            return caller, claims
        if self.settings.dev_mode and is_loopback(client_host):
            caller = Caller(ANONYMOUS, client_host)
            self.count_request(caller)
            return caller, None
        raise Unauthorized("a session token is required (POST /v1/sessions)")

    async def check_socket(
        self, pool: AsyncConnectionPool | None, caller: Caller, claims: TokenClaims | None
    ) -> None:
        """Is an open socket's authority still good? Its token must not have expired and its key
        must not have been revoked since the socket opened (a cached lookup: cheap to call at every
        turn). Raises Unauthorized. When the key cannot be checked now (Postgres down) the socket
        goes on: it was authenticated, and the next turn checks again."""
        if claims is None:
            return  # dev mode's anonymous loopback callers carry no token
        if self.wall_clock() >= claims.expires_at:
            raise Unauthorized(TOKEN_EXPIRED)
        key_id = keys.key_id_of(caller.subject)
        if key_id is not None:
            try:
                await self._stored_key_by_id(pool, key_id)
            except StoreUnavailable:
                return

    @asynccontextmanager
    async def _counting_failures(self, client_host: str | None) -> AsyncIterator[None]:
        """Refuses an address over its failed-authentication limit (429), and counts a failure
        (Unauthorized) raised inside against it."""
        address = client_host or "unknown"
        wait_s = self.failures.wait(address)
        if wait_s > 0:
            raise self._too_many_failures(wait_s)
        try:
            yield
        except Unauthorized:
            self.failures.acquire(address)
            raise

    def _too_many_failures(self, wait_s: float) -> RateLimited:
        return RateLimited(
            f"too many failed authentications from this address; retry in {retry_after(wait_s)} s",
            retry_after_s=retry_after(wait_s),
        )

    # ---- stored keys -----------------------------------------------------------------------

    def _is_bootstrap(self, key: str) -> bool:
        expected = self.settings.bootstrap_api_key
        if expected is None or not expected.get_secret_value():
            return False
        return hmac.compare_digest(key.encode(), expected.get_secret_value().encode())

    async def _stored_key(self, pool: AsyncConnectionPool | None, key: str) -> ApiKey:
        digest = keys.hash_key(key)
        found, stored = self._by_digest.get(digest)
        if not found:
            async with _key_store(pool) as conn:
                stored = await keys.find_key(conn, key)
                if stored is not None and not stored.revoked:
                    await keys.mark_used(conn, stored.id)
            self._by_digest.put(digest, stored)
        return _usable(stored)

    async def _stored_key_by_id(self, pool: AsyncConnectionPool | None, key_id: int) -> ApiKey:
        found, stored = self._by_id.get(key_id)
        if not found:
            async with _key_store(pool) as conn:
                stored = await keys.get_key(conn, key_id)
            self._by_id.put(key_id, stored)
        return _usable(stored)


def _usable(stored: ApiKey | None) -> ApiKey:
    if stored is None:
        raise Unauthorized("the API key is not valid")
    if stored.revoked:
        raise Unauthorized("the API key has been revoked")
    return stored


@asynccontextmanager
async def _key_store(pool: AsyncConnectionPool | None) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """A pooled connection for key lookups; Postgres trouble becomes StoreUnavailable (503)."""
    if pool is None:
        raise StoreUnavailable("API keys cannot be checked: no database is configured")
    try:
        async with pool.connection(timeout=KEY_LOOKUP_TIMEOUT_S) as conn:
            yield conn
    except (psycopg.Error, psycopg_pool.PoolTimeout) as e:
        raise StoreUnavailable("API keys cannot be checked: the database is unavailable") from e
