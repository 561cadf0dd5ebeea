"""Tenants: who owns a collection, and the transactions that see one tenant's rows only.

A tenant owns collections; documents and chunks carry their tenant (ingest/migrations/0004).
Every store function names the tenant it works for and filters on it; `tenant_scope` adds a
second wall under that filter: it runs the transaction as the role `voicebot_app`, which
row-level security confines to the tenant in `app.tenant`. A query that forgot its filter still
sees (and can change) one tenant's rows, whatever role the connection logged in as.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg

# The first tenant (0004 made it, and gave it everything stored before tenancy).
DEFAULT_TENANT_ID = 1
DEFAULT_TENANT = "default"
DEFAULT_COLLECTION = "default"
# The role the policies confine; the migration creates it and lets the migrating user switch to it.
APP_ROLE = "voicebot_app"
TENANT_SETTING = "app.tenant"
TENANT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")  # as tenants_name_check


class TenantNotFound(LookupError):
    """No tenant has that name."""


@asynccontextmanager
async def tenant_scope(conn: psycopg.AsyncConnection[Any], tenant_id: int) -> AsyncIterator[None]:
    """A transaction (a savepoint inside one) that sees only `tenant_id`'s rows.

    SET LOCAL and set_config(..., true) end with the transaction, so a pooled connection goes
    back with its own role and no tenant (which matches no row)."""
    if isinstance(tenant_id, bool) or not isinstance(tenant_id, int) or tenant_id < 1:
        raise ValueError(f"not a tenant id: {tenant_id!r}")
    async with conn.transaction():
        await conn.execute(f"SET LOCAL ROLE {APP_ROLE}")
        await conn.execute("SELECT set_config(%s, %s, true)", (TENANT_SETTING, str(tenant_id)))
        yield


async def tenant_id(conn: psycopg.AsyncConnection[Any], name: str) -> int:
    """The id of the tenant named `name`. Raises TenantNotFound."""
    cur = await conn.execute("SELECT id FROM tenants WHERE name = %s", (name,))
    row = await cur.fetchone()
    if row is None:
        raise TenantNotFound(f"no tenant is named {name!r}")
    return int(row[0])


def tenant_name(value: str) -> str:
    """`value` if it is a valid tenant name; raises ValueError."""
    if not TENANT_NAME.fullmatch(value):
        raise ValueError(
            f"invalid tenant {value!r}: lowercase letters, digits, '_', '-', at most 63, starting alphanumeric"
        )
    return value


async def create_tenant(conn: psycopg.AsyncConnection[Any], name: str) -> tuple[int, bool]:
    """Creates tenant `name` with its `default` collection, or finds it; returns (its id, whether
    it was created now)."""
    tenant_name(name)
    async with conn.transaction():
        cur = await conn.execute(
            "INSERT INTO tenants (name) VALUES (%s) ON CONFLICT (name) DO NOTHING RETURNING id", (name,)
        )
        row = await cur.fetchone()
        found = int(row[0]) if row else await tenant_id(conn, name)
        await ensure_collection(conn, found, DEFAULT_COLLECTION)
    return found, row is not None


async def ensure_collection(conn: psycopg.AsyncConnection[Any], tenant: int, name: str) -> None:
    """Makes sure `tenant` has collection `name` (writers call it before their first document)."""
    async with tenant_scope(conn, tenant):
        await conn.execute(
            "INSERT INTO collections (tenant_id, name) VALUES (%s, %s) ON CONFLICT DO NOTHING", (tenant, name)
        )


async def tenant_names(conn: psycopg.AsyncConnection[Any]) -> dict[int, str]:
    """Every tenant's name by id (for `voicebot keys list`)."""
    cur = await conn.execute("SELECT id, name FROM tenants ORDER BY id")
    return {int(row[0]): str(row[1]) for row in await cur.fetchall()}
