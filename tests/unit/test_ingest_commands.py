"""The `ingest` and `db` commands' arguments."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import pytest

from ingest.commands import ProgressBar, cmd_db_migrate, cmd_ingest, register
from ingest.pipeline import FileResult


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="voicebot")
    register(p.add_subparsers(dest="command", required=True))
    return p


def test_ingest_arguments() -> None:
    args = parser().parse_args(["ingest", "docs", "notes.md", "--collection", "tenant-a.v2", "--prune"])
    assert args.func is cmd_ingest
    assert args.paths == [Path("docs"), Path("notes.md")]
    assert (args.collection, args.prune, args.json) == ("tenant-a.v2", True, False)


def test_ingest_defaults() -> None:
    args = parser().parse_args(["ingest", "docs"])
    assert (args.collection, args.prune) == ("default", False)


@pytest.mark.parametrize("name", ["", "_x", "with space", "a" * 65, "ü"])
def test_invalid_collection_is_refused(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parser().parse_args(["ingest", "docs", f"--collection={name}"])
    assert "invalid collection" in capsys.readouterr().err


def test_ingest_needs_a_path(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parser().parse_args(["ingest"])


def test_db_migrate() -> None:
    assert parser().parse_args(["db", "migrate"]).func is cmd_db_migrate


def test_progress_bar_is_silent_off_a_terminal() -> None:
    stream = io.StringIO()
    ProgressBar(stream)(FileResult("file:///a.md", "ingested"), 1, 2)
    assert stream.getvalue() == ""


def test_progress_bar_on_a_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    bar = ProgressBar(stream)
    bar(FileResult("file:///a.md", "ingested", path=Path("a.md")), 1, 4)
    assert "1/4" in stream.getvalue()
    assert "a.md" in stream.getvalue()


def test_ingest_loads_its_settings_without_the_gateways_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    # The chart's ingest Job (and test-images' ingest container) gets no signing secret: the
    # parsing limits must come from the client settings, which do not ask for one.
    from ingest.commands import _parse_limits

    monkeypatch.setenv("VOICEBOT_DEV_MODE", "false")
    monkeypatch.delenv("VOICEBOT_AUTH_SECRET", raising=False)
    monkeypatch.setenv("VOICEBOT_PARSE_MAX_PAGES", "7")
    assert _parse_limits().max_pages == 7
