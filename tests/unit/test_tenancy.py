"""Tenancy's pure parts: what a caller may do (scopes, collections), the grants a key is created
with, tenant names, the collection a session token carries, and the `voicebot keys` and
`voicebot ingest` arguments. The store and row-level security are in
tests/integration/test_tenancy.py."""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime

import pytest

from ingest import commands as ingest_commands
from ingest.tenancy import DEFAULT_TENANT_ID, tenant_name, tenant_scope
from orchestrator import key_commands
from orchestrator.auth import Caller, issue_token, verify_token
from orchestrator.errors import CollectionForbidden, InsufficientScope
from orchestrator.keys import DEFAULT_SCOPES, SCOPES, ApiKey, check_grant
from orchestrator.protocol import ErrorCode
from orchestrator.settings import Settings
from orchestrator.state import Corpus, corpus_of


def _caller(scopes: tuple[str, ...] = DEFAULT_SCOPES, collections: tuple[str, ...] | None = None) -> Caller:
    key = ApiKey(
        id=7,
        name="k",
        prefix="abcdefgh",
        created_at=datetime.now(UTC),
        last_used_at=None,
        revoked_at=None,
        tenant_id=3,
        scopes=scopes,
        collections=collections,
        default_collection=collections[0] if collections else "default",
    )
    return Caller.of_key(key, "10.0.0.5")


def test_a_caller_acts_for_its_keys_tenant() -> None:
    caller = _caller()
    assert (caller.subject, caller.tenant_id, caller.scopes) == ("key:7", 3, frozenset(DEFAULT_SCOPES))
    assert corpus_of(caller) == Corpus(3, "default")
    assert corpus_of(caller, "handbook") == Corpus(3, "handbook")  # any collection of its tenant


def test_the_bootstrap_key_and_dev_mode_act_as_the_first_tenant_with_every_scope() -> None:
    for caller in (Caller("bootstrap"), Caller("anonymous", "127.0.0.1")):
        assert caller.tenant_id == DEFAULT_TENANT_ID
        assert caller.scopes == frozenset(SCOPES)
        for scope in SCOPES:
            caller.require(scope)
        assert corpus_of(caller, "anything") == Corpus(DEFAULT_TENANT_ID, "anything")


def test_a_missing_scope_is_403_insufficient_scope() -> None:
    with pytest.raises(InsufficientScope, match="lacks the 'documents' scope") as refused:
        _caller(scopes=("ask",)).require("documents")
    assert (refused.value.http_status, refused.value.code) == (403, ErrorCode.INSUFFICIENT_SCOPE)
    with pytest.raises(InsufficientScope, match="'ask'"):
        _caller(scopes=("documents",)).require("ask")
    _caller(scopes=("admin",)).require("documents")  # admin holds every scope


def test_a_collection_outside_the_keys_list_is_403_collection_forbidden() -> None:
    caller = _caller(collections=("handbook", "faq"))
    assert caller.collection() == "handbook"
    assert caller.collection("faq") == "faq"
    with pytest.raises(
        CollectionForbidden, match="may not use collection 'default'; it may use handbook, faq"
    ) as e:
        caller.collection("default")
    assert (e.value.http_status, e.value.code) == (403, ErrorCode.COLLECTION_FORBIDDEN)
    assert not caller.may_use("default")
    assert caller.may_use("faq")
    assert _caller(scopes=("admin",), collections=("handbook",)).collection("default") == "default"


def test_grants_are_checked_and_normalised() -> None:
    assert check_grant(["ask", " documents", "ask"], None, None) == (("ask", "documents"), None, "default")
    assert check_grant(["ask"], ["faq", "handbook"], None) == (("ask",), ("faq", "handbook"), "faq")
    assert check_grant(["ask"], ["faq", "handbook"], "handbook")[2] == "handbook"
    for scopes, collections, default, message in [
        (["ask", "root"], None, None, "root"),
        ([], None, None, "none"),
        (["ask"], ["faq"], "default", "not one of the key's collections"),
        (["ask"], ["../etc"], None, "invalid collection"),
        (["ask"], [], None, "at least one collection"),
    ]:
        with pytest.raises(ValueError, match=message):
            check_grant(scopes, collections, default)


@pytest.mark.parametrize("name", ["", "Acme", "-acme", "a" * 64, "acme corp", "ac/me"])
def test_tenant_names_are_checked(name: str) -> None:
    with pytest.raises(ValueError, match="invalid tenant"):
        tenant_name(name)


def test_tenant_scope_refuses_what_is_not_a_tenant_id_before_any_sql() -> None:
    class NoConnection:
        def transaction(self) -> None:
            raise AssertionError("no SQL for a bad tenant id")

    async def enter(tenant: object) -> None:
        async with tenant_scope(NoConnection(), tenant):  # type: ignore[arg-type]
            pass

    for bad in (0, -1, True, "1", None):
        with pytest.raises(ValueError, match="not a tenant id"):
            asyncio.run(enter(bad))


def test_a_session_token_carries_its_collection() -> None:
    settings = Settings(auth_secret="k" * 40, dev_mode=False)
    token, _ = issue_token(settings, "key:7", "s1", collection="handbook")
    assert verify_token(settings, token).collection == "handbook"
    plain, _ = issue_token(settings, "key:7", "s1")
    assert verify_token(settings, plain).collection is None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voicebot")
    sub = parser.add_subparsers(dest="command", required=True)
    key_commands.register(sub)
    ingest_commands.register(sub)
    return parser


def test_keys_create_takes_a_tenant_scopes_and_collections() -> None:
    args = _parser().parse_args(
        ["keys", "create", "portal", "--tenant", "acme", "--scopes", "ask", "--collections", "faq, handbook"]
    )
    assert (args.tenant, args.scopes, args.collections, args.default_collection) == (
        "acme",
        ["ask"],
        ["faq", "handbook"],
        None,
    )
    plain = _parser().parse_args(["keys", "create", "portal"])
    assert (plain.tenant, plain.scopes, plain.collections) == ("default", list(DEFAULT_SCOPES), None)


def test_keys_create_refuses_a_bad_grant_before_the_database(capsys: pytest.CaptureFixture[str]) -> None:
    args = _parser().parse_args(["keys", "create", "portal", "--scopes", "ask,superuser"])
    assert args.func(args) == key_commands.EXIT_USAGE
    assert "superuser" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _parser().parse_args(["keys", "create", "portal", "--tenant", "Not A Tenant"])


def test_ingest_takes_a_tenant() -> None:
    args = _parser().parse_args(["ingest", "docs", "--tenant", "acme", "--collection", "faq"])
    assert (args.tenant, args.collection) == ("acme", "faq")
    assert _parser().parse_args(["ingest", "docs"]).tenant == "default"
