"""The documents API against the real stack: uploads parsed, embedded by Triton and stored in
PostgreSQL, listed, read, searched by the chat API, replaced, deleted."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.data.pdfgen import make_pdf

COLLECTION = "it-uploads"

NOTES_MD = b"""# Quokkaberry festival

The Quokkaberry festival takes place every year on the second Tuesday of March in Lower Wickham.
Visitors bring jars of marmalade made from quokkaberries, and the best jar wins a copper kettle.

## Travel

The festival shuttle leaves from platform nine at seven in the morning.
"""
CHANGED_MD = NOTES_MD.replace(b"copper kettle", b"silver teapot")
PLAIN_TXT = b"Maintenance notes\n\nThe backup generator is tested on the first Monday of every month.\n"


@pytest.fixture(scope="module")
def api(gateway: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway, timeout=180) as client:
        yield client


def _upload(
    api: httpx.Client, files: list[tuple[str, bytes]], collection: str = COLLECTION
) -> list[dict[str, Any]]:
    response = api.post(
        "/v1/documents",
        data={"collection": collection},
        files=[("files", (name, data)) for name, data in files],
    )
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()["results"]
    return results


def _delete_all(api: httpx.Client, collection: str) -> None:
    for document in api.get("/v1/documents", params={"collection": collection}).json()["documents"]:
        api.delete(f"/v1/documents/{document['id']}")


def test_uploads_are_reported_per_file_listed_replaced_and_deleted(api: httpx.Client) -> None:
    _delete_all(api, COLLECTION)
    broken_pdf = make_pdf([["Some text"]])[:200]  # cut short: pypdf cannot read it
    results = _upload(
        api,
        [
            ("notes.md", NOTES_MD),
            ("plain.txt", PLAIN_TXT),
            ("broken.pdf", broken_pdf),
            ("setup.exe", b"MZ\x90\x00"),
        ],
    )
    assert [(r["filename"], r["status"]) for r in results] == [
        ("notes.md", "ingested"),
        ("plain.txt", "ingested"),
        ("broken.pdf", "failed"),
        ("setup.exe", "failed"),
    ]
    notes, plain, pdf, exe = results
    assert notes["chunks"] >= 1
    assert plain["chunks"] >= 1
    assert notes["error"] is None
    assert isinstance(notes["document_id"], int)
    assert pdf["error"]["code"] == "unreadable"
    assert "PDF" in pdf["error"]["message"]
    assert pdf["document_id"] is None
    assert pdf["chunks"] == 0
    assert exe["error"]["code"] == "unsupported_format"
    assert ".exe" in exe["error"]["message"]
    assert ".md" in exe["error"]["message"]

    listed = api.get("/v1/documents", params={"collection": COLLECTION}).json()["documents"]
    by_id = {d["id"]: d for d in listed}
    assert set(by_id) == {notes["document_id"], plain["document_id"]}
    first = by_id[notes["document_id"]]
    assert first == {
        "id": notes["document_id"],
        "title": "Quokkaberry festival",
        "source": f"upload://{COLLECTION}/notes.md",
        "collection": COLLECTION,
        "format": "md",
        "chunks": notes["chunks"],
        "updated_at": first["updated_at"],
    }
    assert by_id[plain["document_id"]]["title"] == "Maintenance notes"
    assert by_id[plain["document_id"]]["format"] == "txt"
    stored_at = datetime.fromisoformat(first["updated_at"])
    assert stored_at.tzinfo is not None
    assert api.get(f"/v1/documents/{notes['document_id']}").json() == first

    # The same file again: unchanged. A changed file under the same name: replaces it in place.
    again = _upload(api, [("notes.md", NOTES_MD)])
    assert again == [
        {
            "filename": "notes.md",
            "status": "unchanged",
            "document_id": notes["document_id"],
            "chunks": notes["chunks"],
            "error": None,
        }
    ]
    changed = _upload(api, [("notes.md", CHANGED_MD)])[0]
    assert (changed["status"], changed["document_id"]) == ("ingested", notes["document_id"])
    replaced = api.get(f"/v1/documents/{notes['document_id']}").json()
    assert datetime.fromisoformat(replaced["updated_at"]) > stored_at

    assert api.delete(f"/v1/documents/{notes['document_id']}").status_code == 204
    gone = api.get(f"/v1/documents/{notes['document_id']}")
    assert gone.status_code == 404
    assert gone.json()["error"]["code"] == "not_found"
    assert api.delete(f"/v1/documents/{notes['document_id']}").status_code == 404
    remaining = api.get("/v1/documents", params={"collection": COLLECTION}).json()["documents"]
    assert [d["id"] for d in remaining] == [plain["document_id"]]
    _delete_all(api, COLLECTION)


def test_an_uploaded_document_is_searchable_and_cited(api: httpx.Client) -> None:
    result = _upload(api, [("quokkaberry.md", NOTES_MD)], collection="default")[0]
    assert result["status"] == "ingested"
    try:
        response = api.post("/v1/chat", json={"message": "When does the Quokkaberry festival take place?"})
        assert response.status_code == 200
        events = [
            json.loads(line[len("data: ") :])
            for line in response.text.splitlines()
            if line.startswith("data: ")
        ]
        sources = next(e for e in events if e["type"] == "sources")
        cited = [s["source"] for s in sources["sources"]]
        assert "upload://default/quokkaberry.md" in cited
        assert any(e["type"] == "answer.done" for e in events)
    finally:
        api.delete(f"/v1/documents/{result['document_id']}")


def test_uploaded_file_names_are_sanitised(api: httpx.Client) -> None:
    _delete_all(api, COLLECTION)
    # Written by hand: client libraries escape what we want to send raw (a NUL, a newline).
    names = [b"../../etc/cron.d/evil.md", b"lawn\x00care.txt", b"." * 3 + b"x" * 400 + b".md"]
    contents = [
        b"# Evil\n\nNothing to see here.\n",
        b"Lawn care\n\nThe lawn is mowed on Fridays.\n",
        b"# Long\n\nA file with a very long name.\n",
    ]
    body = b"".join(
        b'--XyZ\r\nContent-Disposition: form-data; name="files"; filename="' + name + b'"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n" + content + b"\r\n"
        for name, content in zip(names, contents, strict=True)
    )
    body += b'--XyZ\r\nContent-Disposition: form-data; name="collection"\r\n\r\n' + COLLECTION.encode()
    body += b"\r\n--XyZ--\r\n"
    response = api.post(
        "/v1/documents", content=body, headers={"Content-Type": "multipart/form-data; boundary=XyZ"}
    )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["ingested"] * 3
    assert [r["filename"] for r in results[:2]] == ["evil.md", "lawncare.txt"]
    long_name = results[2]["filename"]
    assert long_name.startswith("xxx")
    assert long_name.endswith(".md")
    assert len(long_name.encode()) <= 200
    sources = {
        d["source"] for d in api.get("/v1/documents", params={"collection": COLLECTION}).json()["documents"]
    }
    assert sources == {f"upload://{COLLECTION}/{name}" for name in ("evil.md", "lawncare.txt", long_name)}
    _delete_all(api, COLLECTION)


def test_an_upload_over_the_limit_is_413(api: httpx.Client) -> None:
    response = api.post("/v1/documents", files={"files": ("big.txt", b"a" * (20 * 1024 * 1024 + 1))})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"
    assert api.get("/v1/documents", params={"collection": "default"}).status_code == 200  # still serving


def test_unknown_documents_are_404(api: httpx.Client) -> None:
    for method in ("GET", "DELETE"):
        response = api.request(method, "/v1/documents/987654321")
        assert response.status_code == 404
        assert response.json() == {"error": {"code": "not_found", "message": "no document with id 987654321"}}
