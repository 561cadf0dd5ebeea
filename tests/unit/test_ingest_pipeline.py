"""Pipeline pieces that need no database: file discovery, reports, the upload entry point's failures."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from ingest.pipeline import (
    FileResult,
    IngestReport,
    discover_files,
    ingest_file,
    pipeline_version,
    source_for,
)


def touch(path: Path, text: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_discovery_walks_folders_skips_hidden_and_unsupported(tmp_path: Path) -> None:
    a = touch(tmp_path / "docs" / "a.md")
    b = touch(tmp_path / "docs" / "sub" / "b.PDF")
    c = touch(tmp_path / "docs" / "c.html")
    touch(tmp_path / "docs" / "image.png")
    touch(tmp_path / "docs" / ".hidden.md")
    touch(tmp_path / "docs" / ".git" / "x.md")
    single = touch(tmp_path / "single.txt")
    files, failures, roots = discover_files([tmp_path / "docs", single, tmp_path / "docs" / "a.md"])
    assert files == sorted([a, b, c, single])
    assert failures == []
    assert roots == [(tmp_path / "docs").resolve()]


def test_discovery_reports_missing_and_unsupported_paths(tmp_path: Path) -> None:
    unsupported = touch(tmp_path / "report.docx")
    files, failures, roots = discover_files([tmp_path / "nope", unsupported])
    assert files == []
    assert roots == []
    assert [(f.status, f.error) for f in failures] == [
        ("failed", "no such file or directory"),
        ("failed", "report.docx: unsupported file type '.docx'"),
    ]


def test_source_is_the_absolute_file_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    touch(tmp_path / "my doc.md")
    assert source_for(Path("my doc.md")) == (tmp_path / "my doc.md").as_uri()
    assert source_for(Path("my doc.md")).startswith("file:///")


def test_report_counts() -> None:
    report = IngestReport(
        "default",
        [
            FileResult("file:///a", "ingested", 1, 3),
            FileResult("file:///b", "replaced", 2, 4),
            FileResult("file:///c", "unchanged", 3),
            FileResult("file:///d", "duplicate", 1, duplicate_of="file:///a"),
            FileResult("file:///e", "failed", error="unreadable PDF"),
        ],
        pruned=["file:///gone"],
        elapsed_s=1.23456,
    )
    assert report.summary() == {
        "collection": "default",
        "files": 5,
        "ingested": 1,
        "replaced": 1,
        "skipped": 2,
        "failed": 1,
        "pruned": 1,
        "chunks": 7,
        "elapsed_s": 1.235,
    }
    assert not report.ok
    assert IngestReport("default", [FileResult("file:///a", "unchanged")]).ok


def test_pipeline_version_names_chunker_and_tokenizer() -> None:
    version, tokenizer = pipeline_version().split("/")
    assert version.isdigit()
    assert tokenizer in ("minilm-wordpiece", "estimate")


def test_ingest_file_reports_an_unreadable_upload(tmp_path: Path) -> None:
    class NoConnection:
        def __getattr__(self, name: str) -> Any:
            raise AssertionError("the store must not be touched for an unreadable file")

    result = asyncio.run(
        ingest_file(NoConnection(), None, tmp_path / "missing.pdf", source="upload://x.pdf")  # type: ignore[arg-type]
    )
    assert (result.status, result.source) == ("failed", "upload://x.pdf")
    assert result.error is not None
    assert "cannot read" in result.error
    assert result.error_code == "unreadable"


def test_failed_results_carry_a_stable_code_and_the_limit() -> None:
    from ingest.errors import ParseError, ParseLimitExceeded, ParserCrashed, UnsupportedFormat
    from ingest.pipeline import failed

    cases = [
        (ParseLimitExceeded("pages", "too many pages"), "limit_exceeded", "pages"),
        (ParserCrashed("the worker died"), "parser_crashed", None),
        (ParseError("broken"), "unreadable", None),
        (UnsupportedFormat("x.exe"), "unsupported_format", None),
    ]
    for error, code, limit in cases:
        result = failed("upload://x", error)
        assert (result.status, result.error_code, result.error_limit) == ("failed", code, limit)
        assert result.error == str(error)
