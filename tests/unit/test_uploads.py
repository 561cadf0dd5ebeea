"""Upload file names and sources (orchestrator/api/uploads.py); the body limit is tested through
the routes in test_documents_api.py and test_audio_api.py."""

from __future__ import annotations

import pytest

from orchestrator.api.uploads import MAX_FILENAME_BYTES, sanitize_filename, upload_source


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("notes.md", "notes.md"),
        ("../../etc/passwd", "passwd"),
        ("..", "upload"),
        ("/abs/path/report.pdf", "report.pdf"),
        ("C:\\Users\\me\\report.pdf", "report.pdf"),
        ("..\\..\\boot.ini", "boot.ini"),
        ("evil\x00.md", "evil.md"),
        ("line\nbreak\t.txt", "linebreak.txt"),
        (".hidden.md", "hidden.md"),
        ("  spaced   name .md  ", "spaced name .md"),
        ("trailing dots...", "trailing dots"),
        ("invoice\u202egnp.exe", "invoicegnp.exe"),  # a right-to-left override hides the real extension
        ("Cafe\u0301.md", "Café.md"),  # NFC
        ("", "upload"),
        (None, "upload"),
        ("\x00\x01", "upload"),
        ("日本語の文書.md", "日本語の文書.md"),
    ],
)
def test_file_names_are_flat_printable_and_never_empty(given: str | None, expected: str) -> None:
    assert sanitize_filename(given) == expected


def test_long_names_are_cut_to_the_byte_limit_keeping_the_extension() -> None:
    for name in ("a" * 1000 + ".md", "é" * 400 + ".pdf", "文" * 300 + ".txt"):
        cut = sanitize_filename(name)
        assert len(cut.encode("utf-8")) <= MAX_FILENAME_BYTES
        assert cut.rsplit(".", 1)[1] == name.rsplit(".", 1)[1]
        assert cut.startswith(name[:10])
    no_extension = sanitize_filename("x" * 500)
    assert no_extension == "x" * MAX_FILENAME_BYTES
    odd_extension = sanitize_filename("y" * 300 + "." + "z" * 40)  # not an extension: cut as a whole
    assert len(odd_extension) == MAX_FILENAME_BYTES


def test_upload_sources_are_stable_uris() -> None:
    assert upload_source("default", "notes.md") == "upload://default/notes.md"
    assert upload_source("team-a", "my notes?.md") == "upload://team-a/my%20notes%3F.md"
