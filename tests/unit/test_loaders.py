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
    assert doc.blocks[3].text == "```\nkubectl get pods\n  -n voicebot\n```"  # code is fenced in every format
    assert doc.blocks[4].text == "alert: HighLatency; severity: page"  # each row readable on its own
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


# ---- linear-time Markdown patterns (issue 16) ---------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("# Title", (1, "Title")),
        ("###   Spaced   ", (3, "Spaced")),
        ("## Closed ##", (2, "Closed")),
        ("## Hash#", (2, "Hash#")),
        ("# #", (1, "")),
        ("   # three spaces", (1, "three spaces")),
        ("    # four spaces", None),
        ("#tag", None),
        ("####### seven", None),
        ("#", (1, "")),
        ("# x" + " " * 30_000 + "x", (1, "x" + " " * 30_000 + "x")),
    ],
)
def test_atx_headings_follow_commonmark_without_a_regex(line: str, expected: tuple[int, str] | None) -> None:
    from ingest.loaders import _atx_heading

    assert _atx_heading(line) == expected


def test_heading_with_30000_spaces_and_brackets_is_an_ordinary_heading() -> None:
    doc = parse_bytes(b"## a" + b" " * 30_000 + b"b [link](x) " + b"[" * 20_000 + b"\n\ntext\n", Path("x.md"))
    assert doc.blocks[0].kind == "heading"
    assert doc.blocks[0].text.startswith("a b link [[[")


def test_unclosed_html_comment_runs_to_the_end() -> None:
    doc = parse_bytes(b"Kept.\n\n<!-- hidden -->Shown.\n\n" + b"<!--" * 1000 + b"gone\n", Path("x.md"))
    assert [b.text for b in doc.blocks] == ["Kept.", "Shown."]


def test_nul_anywhere_is_binary() -> None:
    with pytest.raises(ParseError, match="binary"):
        parse_bytes(b"text\n" * 5000 + b"\x00", Path("x.md"))


def test_caps_on_text_and_line_length() -> None:
    from ingest.errors import ParseLimitExceeded
    from ingest.limits import ParseLimits

    limits = ParseLimits(max_text_chars=1000, max_line_chars=100)
    with pytest.raises(ParseLimitExceeded) as caught:
        parse_bytes(b"word " * 300, Path("x.txt"), limits)
    assert caught.value.limit == "text_chars"
    with pytest.raises(ParseLimitExceeded) as caught:
        parse_bytes(b"short\n" + b"y" * 101 + b"\n", Path("x.md"), limits)
    assert caught.value.limit == "line_chars"
    assert parse_bytes(b"short\n" + b"y" * 100 + b"\n", Path("x.md"), limits).blocks


def test_html_nesting_is_capped() -> None:
    from ingest.errors import ParseLimitExceeded
    from ingest.limits import ParseLimits

    limits = ParseLimits(max_nesting_depth=20)
    assert parse_bytes(b"<div>" * 19 + b"ok", Path("x.html"), limits).blocks
    with pytest.raises(ParseLimitExceeded) as caught:
        parse_bytes(b"<ul><li>" * 11, Path("x.html"), limits)
    assert caught.value.limit == "nesting_depth"
    # Unclosed <p> and <li> end where HTML ends them, so they do not count as nesting.
    assert parse_bytes(
        b"<ul>" + b"<li>item" * 500 + b"</ul>" + b"<p>para" * 500, Path("x.html"), limits
    ).blocks


def test_pdf_page_count_and_shared_content_are_capped() -> None:
    from ingest.errors import ParseLimitExceeded
    from ingest.limits import ParseLimits

    pdf = make_pdf([["one"], ["two"], ["three"]])
    with pytest.raises(ParseLimitExceeded) as caught:
        parse_bytes(pdf, Path("x.pdf"), ParseLimits(max_pages=2))
    assert caught.value.limit == "pages"
    with pytest.raises(ParseLimitExceeded) as caught:
        parse_bytes(pdf, Path("x.pdf"), ParseLimits(max_pdf_content_bytes=50))
    assert caught.value.limit == "pdf_content_bytes"


def test_pdf_blocks_carry_their_page() -> None:
    doc = parse_bytes(make_pdf([["A plain title", "Body text."], ["Second page."]]), Path("plain.pdf"))
    assert [(b.kind, b.page) for b in doc.blocks] == [
        ("heading", 1),
        ("paragraph", 1),
        ("heading", 2),
        ("paragraph", 2),
    ]


# ---- HTML that keeps structure (issue 12, item 5) ------------------------------------------

MANPAGE = """<html><head><title>git-commit(1)</title></head><body class="manpage">
<div id="header"><h1>git-commit(1) Manual Page</h1><h2>NAME</h2>
<div class="sectionbody"><p>git-commit - Record changes to the repository</p></div></div>
<div id="toc">Table of contents: NAME SYNOPSIS OPTIONS</div>
<div class="sect1"><h2 id="_options">OPTIONS</h2><div class="sectionbody"><div class="dlist"><dl>
<dt class="hdlist1">-a</dt><dt class="hdlist1">--all</dt>
<dd><p>Tell the command to automatically stage files.</p></dd>
<dt class="hdlist1">--amend</dt>
<dd><p>Replace the tip of the current branch by creating a new commit.</p>
<div class="listingblock"><div class="content"><pre><code>$ git reset --soft HEAD^
$ git commit -c ORIG_HEAD</code></pre></div></div>
<div class="admonitionblock"><table><tr><td class="icon"><div class="title">Note</div></td>
<td class="content">You should understand the implications of rewriting history.</td></tr></table></div>
</dd>
<dt>--cleanup=&lt;mode&gt;</dt>
<dd><p>How to clean up the message. The <em>&lt;mode&gt;</em> can be one of:</p>
<div class="dlist"><dl><dt>strip</dt><dd><p>Strip leading and trailing empty lines.</p></dd>
<dt>verbatim<dd>Do not change the message at all.</dl></div>
</dd></dl></div></div></div>
<div id="footer"><div id="footer-text">Last updated 2024-05-31</div></div>
</body></html>"""


def test_definition_lists_keep_each_term_with_its_explanation() -> None:
    doc = parse_bytes(MANPAGE.encode(), Path("git-commit.html"))
    assert doc.title == "git-commit(1)"
    texts = [b.text for b in doc.blocks]
    assert "-a, --all: Tell the command to automatically stage files." in texts
    assert "--amend: Replace the tip of the current branch by creating a new commit." in texts
    amend = [b for b in doc.blocks if b.term == "--amend"]
    assert [b.kind for b in amend] == ["definition", "code", "table"]
    assert amend[1].text == "```\n$ git reset --soft HEAD^\n$ git commit -c ORIG_HEAD\n```"
    assert amend[2].text == "Note: You should understand the implications of rewriting history."
    nested = [b for b in doc.blocks if b.term == "--cleanup=<mode>"]
    assert nested[0].text == "--cleanup=<mode>: How to clean up the message. The <mode> can be one of:"
    assert [b.text for b in nested[1:]] == [
        "strip: Strip leading and trailing empty lines.",
        "verbatim: Do not change the message at all.",
    ]


def test_navigation_toc_and_footer_are_dropped_and_the_page_heading_is_the_title() -> None:
    doc = parse_bytes(MANPAGE.encode(), Path("git-commit.html"))
    text = "\n".join(b.text for b in doc.blocks)
    assert "Table of contents" not in text
    assert "Last updated" not in text
    assert [b.text for b in doc.blocks if b.kind == "heading"] == ["NAME", "OPTIONS"]


def test_tables_become_readable_rows() -> None:
    html = b"""<table><thead><tr><th>Setting</th><th>Default</th><th>Meaning</th></tr></thead>
<tbody><tr><td>port</td><td>8080</td><td>where it listens</td></tr>
<tr><td>workers</td><td>1</td><td>parsing processes</td></tr></tbody></table>
<table><tr><td>key</td><td>value</td></tr><tr><td>a</td><td>1</td></tr></table>"""
    doc = parse_bytes(html, Path("t.html"))
    assert [b.text for b in doc.blocks] == [
        "Setting: port; Default: 8080; Meaning: where it listens\n"
        "Setting: workers; Default: 1; Meaning: parsing processes",
        "key: value\na: 1",
    ]


def test_sphinx_permalinks_and_sidebars_are_dropped() -> None:
    html = b"""<html><head><title>Intro &#8212; Python 3.11 documentation</title></head><body>
<div class="related" role="navigation"><ul><li>index</li><li>modules</li></ul></div>
<div class="body"><h1>Intro<a class="headerlink" href="#intro">\xc2\xb6</a></h1>
<h2>Numbers<a class="headerlink" href="#numbers">\xc2\xb6</a></h2><p>The interpreter acts as a calculator.</p></div>
<div class="sphinxsidebar"><h3>Navigation</h3><p>Quick search</p></div></body></html>"""
    doc = parse_bytes(html, Path("intro.html"))
    assert doc.title == "Intro"
    assert [(b.kind, b.text) for b in doc.blocks] == [
        ("heading", "Numbers"),
        ("paragraph", "The interpreter acts as a calculator."),
    ]


def test_a_page_wrapped_in_a_form_keeps_its_content() -> None:
    html = b'<html><body><form id="aspnetForm"><h2>Setup</h2><p>Install it.</p><button>Go</button></form></body></html>'
    doc = parse_bytes(html, Path("x.html"))
    assert [b.text for b in doc.blocks] == ["Setup", "Install it."]
