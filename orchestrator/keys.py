"""Stored API keys: their format, their digest, and the `api_keys` table (ingest/migrations/0002).

A key looks like `vb_<prefix>_<secret>`: `prefix` (8 lowercase letters or digits) names the key in
listings and finds its row; `secret` (43 letters or digits, about 256 bits) is what makes it
valid. Keys are high-entropy random tokens, so a SHA-256 digest of the whole key is stored (a slow
password hash buys nothing here) and compared in constant time. The key itself is shown once,
by `voicebot keys create`, and never stored.

A key belongs to a tenant (ingest/tenancy.py) and carries scopes: `ask` (voice sessions, chat,
transcription and speech), `documents` (the documents API), `admin` (every scope, and every
collection of its tenant whatever `collections` says). `collections` lists the tenant's
collections the key may use (None: all of them); `default_collection` is the one used when a
request names none (ingest/migrations/0004).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from ingest.tenancy import DEFAULT_COLLECTION, DEFAULT_TENANT_ID

KEY_SCHEME = "vb"
PREFIX_LENGTH = 8
SECRET_LENGTH = 43  # 43 characters of 62: about 256 bits
MAX_NAME_LENGTH = 100
_PREFIX_ALPHABET = string.ascii_lowercase + string.digits
_SECRET_ALPHABET = string.ascii_letters + string.digits
_KEY = re.compile(rf"{KEY_SCHEME}_([a-z0-9]{{{PREFIX_LENGTH}}})_([A-Za-z0-9]{{{SECRET_LENGTH}}})")
SUBJECT_PREFIX = "key:"
SCOPE_ASK = "ask"
SCOPE_DOCUMENTS = "documents"
SCOPE_ADMIN = "admin"
SCOPES = (SCOPE_ASK, SCOPE_DOCUMENTS, SCOPE_ADMIN)  # as api_keys_scopes_check
DEFAULT_SCOPES = (SCOPE_ASK, SCOPE_DOCUMENTS)
COLLECTION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # as documents_collection_check


class KeyNotFound(LookupError):
    """No key (or more than one) matches what `voicebot keys revoke` was given."""


def generate_key() -> str:
    """A new random key, `vb_<prefix>_<secret>`."""
    prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(PREFIX_LENGTH))
    secret = "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(SECRET_LENGTH))
    return f"{KEY_SCHEME}_{prefix}_{secret}"


def key_prefix(key: str) -> str | None:
    """The prefix of a well-formed key; None for anything else (a bootstrap key, a typo)."""
    match = _KEY.fullmatch(key)
    return match.group(1) if match else None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_matches(key: str, key_hash: str) -> bool:
    """Whether `key` is the key whose digest is `key_hash`, in constant time."""
    return hmac.compare_digest(hash_key(key).encode(), key_hash.encode())


def subject_of(key_id: int) -> str:
    """The subject that a stored key's callers, sessions and tokens carry."""
    return f"{SUBJECT_PREFIX}{key_id}"


def key_id_of(subject: str) -> int | None:
    """The stored key behind a subject; None for 'bootstrap' and 'anonymous'."""
    if subject.startswith(SUBJECT_PREFIX) and subject[len(SUBJECT_PREFIX) :].isdigit():
        return int(subject[len(SUBJECT_PREFIX) :])
    return None


@dataclass(frozen=True)
class ApiKey:
    id: int
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    tenant_id: int = DEFAULT_TENANT_ID
    scopes: tuple[str, ...] = SCOPES
    collections: tuple[str, ...] | None = None  # None: every collection of the tenant
    default_collection: str = DEFAULT_COLLECTION

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def subject(self) -> str:
        return subject_of(self.id)

    @property
    def display(self) -> str:
        return f"{KEY_SCHEME}_{self.prefix}_…"


_COLUMNS = "id, name, prefix, created_at, last_used_at, revoked_at, tenant_id, scopes, collections, default_collection"


def _key(row: dict[str, Any]) -> ApiKey:
    return ApiKey(
        **{
            k: row[k]
            for k in ("id", "name", "prefix", "created_at", "last_used_at", "revoked_at", "tenant_id")
        },
        scopes=tuple(row["scopes"]),
        collections=tuple(row["collections"]) if row["collections"] is not None else None,
        default_collection=row["default_collection"],
    )


def check_grant(
    scopes: Sequence[str], collections: Sequence[str] | None, default_collection: str | None
) -> tuple[tuple[str, ...], tuple[str, ...] | None, str]:
    """What a new key may do, checked and normalised: (scopes, collections, default collection).

    The default collection is the first listed collection unless given, and must be one of them.
    Raises ValueError with a message for the person who asked."""
    wanted = tuple(dict.fromkeys(s.strip() for s in scopes if s.strip()))
    unknown = [s for s in wanted if s not in SCOPES]
    if unknown or not wanted:
        raise ValueError(f"scopes are one or more of {', '.join(SCOPES)}; got {', '.join(unknown) or 'none'}")
    listed = (
        tuple(dict.fromkeys(c.strip() for c in collections if c.strip())) if collections is not None else None
    )
    for name in (*(listed or ()), *([default_collection] if default_collection else [])):
        if not COLLECTION_NAME.fullmatch(name):
            raise ValueError(
                f"invalid collection {name!r}: letters, digits, '_', '.', '-', at most 64, starting alphanumeric"
            )
    if listed is not None and not listed:
        raise ValueError("a key's collections list needs at least one collection")
    default = default_collection or (listed[0] if listed else DEFAULT_COLLECTION)
    if listed is not None and default not in listed:
        raise ValueError(f"the default collection {default!r} is not one of the key's collections")
    return wanted, listed, default


async def create_key(
    conn: psycopg.AsyncConnection[Any],
    name: str,
    *,
    tenant_id: int = DEFAULT_TENANT_ID,
    scopes: Sequence[str] = DEFAULT_SCOPES,
    collections: Sequence[str] | None = None,
    default_collection: str | None = None,
) -> tuple[ApiKey, str]:
    """Stores a new key named `name` for tenant `tenant_id`, with `scopes`, limited to
    `collections` (None: all of the tenant's); returns it and the key itself (shown once, never
    stored). Raises ValueError for a bad name or grant."""
    name = name.strip()
    if not 1 <= len(name) <= MAX_NAME_LENGTH or not name.isprintable():
        raise ValueError(f"a key name is 1 to {MAX_NAME_LENGTH} printable characters")
    granted, listed, default = check_grant(scopes, collections, default_collection)
    while True:
        key = generate_key()
        prefix = key_prefix(key)
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                "INSERT INTO api_keys (name, prefix, key_hash, tenant_id, scopes, collections, default_collection)"  # noqa: S608 - constant
                " VALUES (%s, %s, %s, %s, %s, %s, %s)"
                f" ON CONFLICT (prefix) DO NOTHING RETURNING {_COLUMNS}",
                (
                    name,
                    prefix,
                    hash_key(key),
                    tenant_id,
                    list(granted),
                    list(listed) if listed is not None else None,
                    default,
                ),
            )
            row = await cur.fetchone()
        if row is not None:  # else the prefix was taken (36^8 prefixes: rare): draw again
            return _key(row), key


async def list_keys(conn: psycopg.AsyncConnection[Any]) -> list[ApiKey]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"SELECT {_COLUMNS} FROM api_keys ORDER BY id")  # noqa: S608 - constant
        return [_key(row) for row in await cur.fetchall()]


async def revoke_key(conn: psycopg.AsyncConnection[Any], ref: str) -> ApiKey:
    """Revokes the key with id or prefix `ref` (a whole key or `vb_<prefix>` works too).

    Revoking a revoked key changes nothing and returns it. Raises KeyNotFound."""
    ref = ref.strip()
    prefix = key_prefix(ref) or ref.removeprefix(f"{KEY_SCHEME}_").rstrip("_…")
    key_id = int(ref) if ref.isdigit() and len(ref) < 19 else None
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        await cur.execute("SELECT id FROM api_keys WHERE id = %s OR prefix = %s FOR UPDATE", (key_id, prefix))
        rows = await cur.fetchall()
        if not rows:
            raise KeyNotFound(f"no API key has the id or prefix {ref!r}")
        if len(rows) > 1:
            raise KeyNotFound(f"{ref!r} is both an id and a prefix; give the other one")
        await cur.execute(
            "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = %s"  # noqa: S608 - constant
            f" RETURNING {_COLUMNS}",
            (rows[0]["id"],),
        )
        row = await cur.fetchone()
    assert row is not None
    return _key(row)


async def find_key(conn: psycopg.AsyncConnection[Any], key: str) -> ApiKey | None:
    """The stored key that `key` is, revoked or not; None when it is not one."""
    prefix = key_prefix(key)
    if prefix is None:
        return None
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {_COLUMNS}, key_hash FROM api_keys WHERE prefix = %s",  # noqa: S608 - constant
            (prefix,),
        )
        row = await cur.fetchone()
    if row is None or not key_matches(key, row["key_hash"]):
        return None
    return _key(row)


async def get_key(conn: psycopg.AsyncConnection[Any], key_id: int) -> ApiKey | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {_COLUMNS} FROM api_keys WHERE id = %s",  # noqa: S608 - constant
            (key_id,),
        )
        row = await cur.fetchone()
    return _key(row) if row is not None else None


async def mark_used(conn: psycopg.AsyncConnection[Any], key_id: int) -> None:
    """Sets `last_used_at`, at most once a minute per key (a write per request would be waste)."""
    await conn.execute(
        "UPDATE api_keys SET last_used_at = now() WHERE id = %s"
        " AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')",
        (key_id,),
    )
