"""The documents page against the real documents API: the ingested docs/ listed, uploads with
progress and a per-file result, and a per-file error for a file the API refuses."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import expect

from orchestrator.stack.gateway import GatewayProcess
from tests.e2e.conftest import ARTIFACTS, Contexts
from tests.e2e.pages import DocumentsPage

UPLOAD_TIMEOUT_MS = 120_000


def test_documents_are_listed_and_uploaded_with_per_file_results(
    live_gateway: GatewayProcess, contexts: Contexts, tmp_path: Path
) -> None:
    docs = DocumentsPage(contexts.page("desktop"), live_gateway.url).open()
    expect(docs.table).to_be_visible()
    expect(docs.rows.filter(has_text="architecture.md")).to_have_count(1)

    note = tmp_path / "e2e-upload-note.md"
    note.write_text(
        "# Quarterly e2e note\n\nThe browser tests uploaded this page to check the upload flow.\n"
    )
    junk = tmp_path / "e2e-junk.xyz"
    junk.write_bytes(b"\x00\x01 not a document")
    docs.upload_input.set_input_files([str(note), str(junk)])

    ok = docs.upload("e2e-upload-note.md")
    expect(ok).to_have_attribute("data-state", "ingested", timeout=UPLOAD_TIMEOUT_MS)
    expect(ok.locator("progress")).to_have_attribute("value", "1")
    failed = docs.upload("e2e-junk.xyz")
    expect(failed).to_have_attribute("data-state", "failed", timeout=UPLOAD_TIMEOUT_MS)
    expect(failed.get_by_test_id("upload-error")).to_contain_text(".xyz")
    # The list now holds the new document.
    expect(docs.rows.filter(has_text="Quarterly e2e note")).to_have_count(1, timeout=UPLOAD_TIMEOUT_MS)
    docs.page.screenshot(path=str(ARTIFACTS / "documents-desktop.png"), full_page=True)
