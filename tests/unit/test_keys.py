"""API keys: their format, digest and subjects, and the `voicebot keys` arguments."""

from __future__ import annotations

import argparse
import hashlib
import re

import pytest

from orchestrator import key_commands
from orchestrator.keys import (
    generate_key,
    hash_key,
    key_id_of,
    key_matches,
    key_prefix,
    subject_of,
)


def test_generated_keys_have_the_documented_format_and_differ() -> None:
    keys = {generate_key() for _ in range(200)}
    assert len(keys) == 200
    for key in keys:
        assert re.fullmatch(r"vb_[a-z0-9]{8}_[A-Za-z0-9]{43}", key), key
        assert key_prefix(key) == key.split("_")[1]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "sk-local-dev",
        "vb_abc_def",
        "vb_ABCDEFGH_" + "a" * 43,  # prefixes are lowercase
        "vb_abcdefgh_" + "a" * 42,
        "vb_abcdefgh_" + "a" * 44,
        "vb_abcdefgh_" + "a" * 42 + "-",
        "xx_abcdefgh_" + "a" * 43,
        " vb_abcdefgh_" + "a" * 43,
        "vb_abcdefgh_" + "a" * 43 + "\n",
    ],
)
def test_anything_else_is_not_a_key(text: str) -> None:
    assert key_prefix(text) is None


def test_the_digest_is_sha256_of_the_whole_key_and_compares_exactly() -> None:
    key = generate_key()
    digest = hash_key(key)
    assert digest == hashlib.sha256(key.encode()).hexdigest()
    assert len(digest) == 64
    assert key_matches(key, digest)
    assert not key_matches(key[:-1] + ("A" if key[-1] != "A" else "B"), digest)
    assert not key_matches(key, digest.upper())


def test_subjects_name_stored_keys_only() -> None:
    assert subject_of(42) == "key:42"
    assert key_id_of("key:42") == 42
    for other in ("bootstrap", "anonymous", "key:", "key:x", "key:-1", "keys:1"):
        assert key_id_of(other) is None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voicebot")
    key_commands.register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_keys_command_arguments() -> None:
    create = _parser().parse_args(["keys", "create", "  support portal "])
    assert (create.func, create.name) == (key_commands.cmd_keys_create, "support portal")
    assert _parser().parse_args(["keys", "list", "--json"]).json is True
    revoke = _parser().parse_args(["keys", "revoke", "vb_abcdefgh"])
    assert (revoke.func, revoke.ref) == (key_commands.cmd_keys_revoke, "vb_abcdefgh")


@pytest.mark.parametrize("name", ["", "   ", "a" * 101, "tab\there"])
def test_key_names_are_checked(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args(["keys", "create", name])
    assert "printable characters" in capsys.readouterr().err
