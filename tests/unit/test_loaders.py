"""Loaders: each format keeps its title and heading structure; broken files fail with a reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.errors import ParseError, UnsupportedFormat
from ingest.loaders import Block, is_supported, load, parse_bytes
from tests.data.pdfgen import make_pdf


def kinds(blocks: tuple[Block, ...]) -> list[tuple[str, str]]:
    return [(b.kind, b.text if b.kind == "heading" else b.text[:20]) for b in blocks]


def test_markdown_title_headings_and_blocks() -> None:
    text = """# Voicebot manual

Intro paragraph that wraps
onto a second line.

## Install

- first item
- second item
  continued here
1. numbered

```bash
make up
# not a heading
```

| key | value |
|-----|-------|
| a   | 1     |

Setext heading
--------------

Text under setext.
"""
    doc = parse_bytes(text.encode(), Path("manual.md"))
    assert doc.title == "Voicebot manual"
    assert doc.format == "md"
    assert [(b.kind, b.level) for b in doc.blocks] == [
        ("paragraph", 0),
        ("heading", 2),
        ("list", 0),
        ("code", 0),
        ("table", 0),
        ("heading", 2),
        ("paragraph", 0),
    ]
    assert doc.blocks[0].text == "Intro paragraph that wraps onto a second line."
    assert doc.blocks[2].text == "- first item\n- second item continued here\n1. numbered"
    assert "# not a heading" in doc.blocks[3].text
    assert doc.blocks[5].text == "Setext heading"


def test_markdown_front_matter_title_links_and_comments() -> None:
    text = '---\ntitle: "From front matter"\ntags: [a]\n---\n# [Linked](http://x) **heading**\n<!-- hidden -->\nBody.\n'
    doc = parse_bytes(text.encode(), Path("x.md"))
    assert doc.title == "From front matter"
    assert doc.blocks[0] == Block("heading", "Linked heading", 1)
    assert all("hidden" not in b.text for b in doc.blocks)


def test_markdown_without_h1_takes_title_from_file_name() -> None:
    doc = parse_bytes(b"## Only a section\n\ntext\n", Path("getting-started_guide.md"))
    assert doc.title == "Getting started guide"
    assert doc.blocks[0] == Block("heading", "Only a section", 2)


def test_markdown_unclosed_fence_runs_to_end() -> None:
    doc = parse_bytes(b"# T\n\n```\ncode line\n\n## not a heading\n", Path("x.md"))
    assert [b.kind for b in doc.blocks] == ["code"]
    assert "## not a heading" in doc.blocks[0].text


def test_text_file_title_and_paragraphs() -> None:
    doc = parse_bytes(b"Release notes\n\nFirst paragraph.\n\n- a\n- b\n", Path("notes.txt"))
    assert doc.title == "Release notes"
    assert kinds(doc.blocks) == [("paragraph", "First paragraph."), ("list", "- a\n- b")]


def test_text_file_non_ascii_and_windows_1252() -> None:
    doc = parse_bytes("Café résumé\n\nNaïve façade — 東京 ✓\n".encode(), Path("u.txt"))
    assert doc.title == "Café résumé"
    assert doc.blocks[0].text == "Naïve façade — 東京 ✓"
    legacy = parse_bytes("Titre\n\ncafé crème".encode("cp1252"), Path("legacy.txt"))
    assert legacy.blocks[0].text == "café crème"


def test_binary_text_file_is_a_parse_error() -> None:
    with pytest.raises(ParseError, match="binary"):
        parse_bytes(b"\x00\x01\x02abc", Path("x.txt"))


def test_html_structure() -> None:
    html = """<!doctype html><html><head><title>Ops guide</title><style>p{color:red}</style></head>
<body><nav>Home | About</nav><h1>Ops guide</h1><p>Welcome &amp; hello.</p>
<h2>Alerts</h2><ul><li>Page the on-call</li><li>Open the runbook<ul><li>nested</li></ul></li></ul>
<pre>kubectl get pods
  -n voicebot</pre>
<table><tr><th>alert</th><th>severity</th></tr><tr><td>HighLatency</td><td>page</td></tr></table>
<script>var secret = 1;</script><div>Trailing <b>bold</b> text</div></body></html>"""
    doc = parse_bytes(html.encode(), Path("ops.html"))
    assert doc.title == "Ops guide"
    assert doc.format == "html"
    assert [b.kind for b in doc.blocks] == ["paragraph", "heading", "list", "code", "table", "paragraph"]
    assert doc.blocks[0].text == "Welcome & hello."
    assert doc.blocks[2].text == "- Page the on-call\n- Open the runbook\n  - nested"
    assert doc.blocks[3].text == "kubectl get pods\n  -n voicebot"
    assert doc.blocks[4].text == "| alert | severity |\n| HighLatency | page |"
    assert doc.blocks[5].text == "Trailing bold text"
    assert all("secret" not in b.text and "About" not in b.text for b in doc.blocks)


def test_pdf_with_outline_and_metadata_title() -> None:
    data = make_pdf(
        [
            ["Installation", "Install the package with pip. Then run it.", "Configuration", "Set the port."],
            ["Troubleshooting", "Read the log when the server does not start."],
        ],
        title="Voicebot manual",
        outline=[("Installation", 0), ("Configuration", 0), ("Troubleshooting", 1)],
    )
    doc = parse_bytes(data, Path("manual.pdf"))
    assert doc.title == "Voicebot manual"
    assert doc.metadata["pages"] == 2
    assert kinds(doc.blocks) == [
        ("heading", "Installation"),
        ("paragraph", "Install the package "),
        ("heading", "Configuration"),
        ("paragraph", "Set the port."),
        ("heading", "Troubleshooting"),
        ("paragraph", "Read the log when th"),
    ]


def test_pdf_without_outline_cites_pages() -> None:
    doc = parse_bytes(make_pdf([["A plain title", "Body text."], ["Second page."]]), Path("plain.pdf"))
    assert doc.title == "A plain title"
    headings = [b.text for b in doc.blocks if b.kind == "heading"]
    assert headings == ["Page 1", "Page 2"]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"%PDF-1.4\n1 0 obj << /Type /Catalog >>\ngarbage", "unreadable PDF"),
        (b"this is not a pdf at all", "unreadable PDF"),
        (make_pdf([[]]), "no extractable text"),
    ],
)
def test_broken_pdf_is_a_parse_error(data: bytes, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        parse_bytes(data, Path("broken.pdf"))


def test_truncated_pdf_is_a_parse_error() -> None:
    data = make_pdf([["Some text here."]])
    with pytest.raises(ParseError):
        parse_bytes(data[: len(data) // 3], Path("cut.pdf"))


def test_unsupported_and_missing(tmp_path: Path) -> None:
    assert is_supported(Path("a.MD"))
    assert is_supported(Path("b.htm"))
    assert not is_supported(Path("c.docx"))
    with pytest.raises(UnsupportedFormat):
        parse_bytes(b"x", Path("c.docx"))
    with pytest.raises(UnsupportedFormat):
        load(tmp_path / "c.docx")
    with pytest.raises(ParseError, match="cannot read"):
        load(tmp_path / "missing.md")
