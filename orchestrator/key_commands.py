"""`voicebot keys create NAME [--tenant T] [--scopes S,...] [--collections C,...] | list | revoke
ID-or-PREFIX`: the stored API keys (orchestrator/keys.py), each for one tenant, with scopes.

The database comes from VOICEBOT_DATABASE_URL (the local stack's embedded Postgres when unset);
the schema is migrated first, so the commands work on a fresh database. A tenant named for a new
key is created (with its `default` collection) when it does not exist yet. Exit status: 0 done,
1 no such key, 2 the database is unreachable.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

import psycopg

from orchestrator.auth import KEY_CACHE_TTL_S
from orchestrator.keys import (
    DEFAULT_SCOPES,
    MAX_NAME_LENGTH,
    SCOPES,
    ApiKey,
    KeyNotFound,
    check_grant,
    create_key,
    list_keys,
    revoke_key,
)

EXIT_NOT_FOUND = 1
EXIT_UNAVAILABLE = 2
EXIT_USAGE = 2  # as argparse's own
T = TypeVar("T")


def key_name(value: str) -> str:
    """argparse type: the names the api_keys table accepts."""
    name = value.strip()
    if not 1 <= len(name) <= MAX_NAME_LENGTH or not name.isprintable():
        raise argparse.ArgumentTypeError(f"a key name is 1 to {MAX_NAME_LENGTH} printable characters")
    return name


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Adds the `keys` command group to the `voicebot` parser."""
    group = subparsers.add_parser(
        "keys",
        help="API keys: create, list, revoke",
        description="Stored API keys. A key is shown once, when it is created; only its digest is kept.",
    )
    sub = group.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")
    create = sub.add_parser("create", help="create a key and print it (once)")
    create.add_argument("name", type=key_name, help="what the key is for, e.g. 'support-portal'")
    create.add_argument(
        "--tenant",
        type=tenant_arg,
        default="default",
        help="the tenant the key acts for, created when new (default: %(default)s, the first tenant)",
    )
    create.add_argument(
        "--scopes",
        type=_list,
        default=list(DEFAULT_SCOPES),
        help=f"comma-separated, of {', '.join(SCOPES)} (default: {','.join(DEFAULT_SCOPES)})",
    )
    create.add_argument(
        "--collections",
        type=_list,
        default=None,
        help="comma-separated collections of the tenant the key may use (default: all of them)",
    )
    create.add_argument(
        "--default-collection",
        default=None,
        help="the collection used when a request names none (default: the first of --collections, or 'default')",
    )
    create.set_defaults(func=cmd_keys_create)
    listing = sub.add_parser("list", help="list keys (never their secrets)")
    listing.add_argument("--json", action="store_true", help="print JSON on stdout")
    listing.set_defaults(func=cmd_keys_list)
    revoke = sub.add_parser("revoke", help="revoke a key by id or prefix (within a few seconds)")
    revoke.add_argument("ref", metavar="ID-or-PREFIX", help="the key's id or its prefix (vb_<prefix>)")
    revoke.set_defaults(func=cmd_keys_revoke)


def _list(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def tenant_arg(value: str) -> str:
    from ingest.commands import tenant_arg as check

    return check(value)


def database_url() -> str:
    """The DSN the CLI commands use (`keys`, `sessions`)."""
    from orchestrator.settings import Settings

    # Key management needs only the database; the gateway's own secrets are not required here.
    settings = Settings(dev_mode=True)
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    from orchestrator.stack.postgres import local_dsn

    return local_dsn(settings.state_dir, settings.postgres_port)


def _run(work: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]) -> T:
    from ingest.migrate import migrate

    dsn = database_url()

    async def run() -> T:
        await migrate(dsn)
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            return await work(conn)

    return asyncio.run(run())


def _when(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment else "-"


def _row(key: ApiKey, tenants: dict[int, str]) -> dict[str, Any]:
    return {
        "id": key.id,
        "prefix": key.display,
        "name": key.name,
        "tenant": tenants.get(key.tenant_id, str(key.tenant_id)),
        "scopes": ",".join(key.scopes),
        "collections": ",".join(key.collections) if key.collections is not None else "*",
        "default_collection": key.default_collection,
        "created_at": _when(key.created_at),
        "last_used_at": _when(key.last_used_at),
        "revoked_at": _when(key.revoked_at),
        "status": "revoked" if key.revoked else "active",
    }


def cmd_keys_create(args: argparse.Namespace) -> int:
    from ingest.tenancy import create_tenant

    try:  # before the database: a bad grant is the caller's typo
        check_grant(args.scopes, args.collections, args.default_collection)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE

    async def work(conn: psycopg.AsyncConnection[Any]) -> tuple[ApiKey, str, bool]:
        tenant_id, created = await create_tenant(conn, args.tenant)
        key, secret = await create_key(
            conn,
            args.name,
            tenant_id=tenant_id,
            scopes=args.scopes,
            collections=args.collections,
            default_collection=args.default_collection,
        )
        return key, secret, created

    try:
        key, secret, new_tenant = _guarded(lambda: _run(work))
    except _Unavailable as e:
        return e.report()
    print(secret)
    if new_tenant:
        print(f"created tenant {args.tenant!r}", file=sys.stderr)
    print(
        f"created key {key.id} ({key.name!r}, {key.display}) for tenant {args.tenant!r} with scopes "
        f"{','.join(key.scopes)}; it is shown only now: store it securely",
        file=sys.stderr,
    )
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    from ingest.tenancy import tenant_names

    async def work(conn: psycopg.AsyncConnection[Any]) -> list[dict[str, Any]]:
        tenants = await tenant_names(conn)
        return [_row(k, tenants) for k in await list_keys(conn)]

    try:
        rows = _guarded(lambda: _run(work))
    except _Unavailable as e:
        return e.report()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    columns = (
        "id",
        "prefix",
        "name",
        "tenant",
        "scopes",
        "collections",
        "status",
        "created_at",
        "last_used_at",
    )
    widths = {c: max([len(c), *(len(str(r[c])) for r in rows)]) for c in columns}
    print("  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip())
    for r in rows:
        print("  ".join(str(r[c]).ljust(widths[c]) for c in columns).rstrip())
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    async def work(conn: psycopg.AsyncConnection[Any]) -> ApiKey:
        return await revoke_key(conn, args.ref)

    try:
        key = _guarded(lambda: _run(work))
    except KeyNotFound as e:
        print(f"error: {e.args[0]}", file=sys.stderr)
        return EXIT_NOT_FOUND
    except _Unavailable as e:
        return e.report()
    print(f"revoked key {key.id} ({key.name!r}, {key.display}) at {_when(key.revoked_at)}")
    print(f"gateways refuse it within {KEY_CACHE_TTL_S:.0f} s (their key cache)", file=sys.stderr)
    return 0


class _Unavailable(Exception):
    def report(self) -> int:
        print(f"error: {self.args[0]}", file=sys.stderr)
        return EXIT_UNAVAILABLE


def _guarded(call: Callable[[], T]) -> T:
    """Runs `call`; an unreachable database or a failed migration becomes _Unavailable."""
    from ingest.errors import MigrationError, StoreUnavailable

    try:
        return call()
    except (StoreUnavailable, MigrationError) as e:
        raise _Unavailable(str(e)) from e
    except psycopg.OperationalError as e:
        raise _Unavailable(f"cannot reach PostgreSQL: {e}") from e
