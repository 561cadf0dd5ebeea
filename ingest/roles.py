"""Database roles: who migrates, who the application logs in as, and what each may do.

Three kinds of role (docs/security.md, "Database roles"):
- the **owner** (the migrator): owns the schema and its tables, applies the migrations
  (`voicebot db migrate`, connecting with VOICEBOT_MIGRATION_DATABASE_URL). It needs CREATEROLE
  (or to be a superuser) because the migrations create the two roles below.
- `voicebot_service` (0005) and `voicebot_app` (0004): NOLOGIN roles holding the application's
  privileges; `voicebot_app` is the one row-level security confines to a tenant.
- the application's **login** (the gateway, `voicebot ingest`, `keys`, `sessions`: the user of
  VOICEBOT_DATABASE_URL): a member of `voicebot_service` and nothing else. It cannot change the
  schema, own a table, or read a tenant's rows without switching to `voicebot_app`.

`grant_login` makes a login the application's, creating it when the migrator may.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from psycopg import sql

from ingest.tenancy import APP_ROLE

log = logging.getLogger(__name__)

SERVICE_ROLE = "voicebot_service"


class LoginRefused(ValueError):
    """The login named for the application cannot be one (a superuser, the owner itself)."""


async def grant_login(conn: psycopg.AsyncConnection[Any], login: str, password: str | None = None) -> None:
    """Makes `login` the application's login on this database: created (with `password`) when
    missing, its password set to `password` when one is given and the migrator may, a member
    of `voicebot_service`, allowed to connect. Run by the owner after the migrations.

    The password is sent as a SCRAM verifier computed here, never as text a server log could
    keep. Raises LoginRefused for a login that would bypass the roles (superuser, BYPASSRLS, the
    connected owner); psycopg.Error when the migrator lacks the privilege to do it."""
    cur = await conn.execute("SELECT current_user, current_database()")
    row = await cur.fetchone()
    assert row is not None
    owner, database = str(row[0]), str(row[1])
    if login == owner:
        raise LoginRefused(
            f"the application's login {login!r} is the schema's owner: give the gateway its own login"
        )
    cur = await conn.execute("SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = %s", (login,))
    found = await cur.fetchone()
    if found is not None and found[0]:
        raise LoginRefused(f"the application's login {login!r} is a superuser or bypasses row-level security")
    ident = sql.Identifier(login)
    verifier = _verifier(conn, login, password) if password else None
    async with conn.transaction():
        if found is None:
            create = sql.SQL(
                "CREATE ROLE {} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE INHERIT"
            ).format(ident)
            if verifier is not None:
                create = sql.SQL("{} PASSWORD {}").format(create, sql.Literal(verifier))
            await conn.execute(create)
            log.info("created the application's login %s", login)
    if found is not None and verifier is not None:
        try:
            async with conn.transaction():
                await conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(ident, sql.Literal(verifier)))
        except psycopg.errors.InsufficientPrivilege:
            # Made by someone else (a DBA): its password is theirs to manage.
            log.info("the login %s exists and is not the migrator's to change: its password is kept", login)
    async with conn.transaction():
        await conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(SERVICE_ROLE), ident))
        await conn.execute(
            sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(database), ident)
        )


def _verifier(conn: psycopg.AsyncConnection[Any], login: str, password: str) -> str:
    encrypted = conn.pgconn.encrypt_password(password.encode(), login.encode(), b"scram-sha-256")
    return encrypted.decode()


__all__ = ["APP_ROLE", "SERVICE_ROLE", "LoginRefused", "grant_login"]
