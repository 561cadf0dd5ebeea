"""The documents routes (orchestrator/api/documents.py) without PostgreSQL: limits, errors, OpenAPI.
Uploads, listing and deletion against the real store are in tests/integration/test_documents_api.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from orchestrator.app import create_app
from orchestrator.settings import Settings

KEY = "b" * 40
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
def client() -> Iterator[TestClient]:
    settings = Settings(
        auth_secret="k" * 40,
        bootstrap_api_key=KEY,
        triton_url="127.0.0.1:1",
        ui_dir=None,
        max_upload_bytes=4096,
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_every_route_needs_a_key(client: TestClient) -> None:
    for method, path in [("GET", "/v1/documents"), ("GET", "/v1/documents/1"), ("DELETE", "/v1/documents/1")]:
        response = client.request(method, path)
        assert response.status_code == 401, path
        assert response.json()["error"]["code"] == "unauthorized"
    assert client.post("/v1/documents", files={"files": ("a.md", b"# A")}).status_code == 401


def test_without_a_database_the_store_is_unavailable(client: TestClient) -> None:
    for method, path in [("GET", "/v1/documents"), ("GET", "/v1/documents/7"), ("DELETE", "/v1/documents/7")]:
        response = client.request(method, path, headers=AUTH)
        assert response.status_code == 503, path
        assert response.json()["error"]["code"] == "store_unavailable"
    upload = client.post("/v1/documents", headers=AUTH, files={"files": ("a.md", b"# A\n\ntext")})
    assert upload.status_code == 503


def test_an_upload_over_the_limit_is_413(client: TestClient) -> None:
    response = client.post(
        "/v1/documents",
        headers=AUTH,
        files=[("files", ("a.md", b"a" * 3000)), ("files", ("b.md", b"b" * 3000))],
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"
    assert "4096" in response.json()["error"]["message"]


@pytest.mark.parametrize("collection", ["../etc", "a b", "-x", "x" * 65, ""])
def test_collection_names_are_validated(client: TestClient, collection: str) -> None:
    listed = client.get("/v1/documents", params={"collection": collection}, headers=AUTH)
    assert listed.status_code == 422
    if not collection:
        return  # an empty form field counts as absent (FastAPI): the default collection
    uploaded = client.post(
        "/v1/documents", headers=AUTH, data={"collection": collection}, files={"files": ("a.md", b"# A")}
    )
    assert uploaded.status_code == 422


@pytest.mark.parametrize("document_id", ["0", "-1", "abc", str(2**63)])
def test_ids_out_of_range_are_refused_before_the_store(client: TestClient, document_id: str) -> None:
    assert client.get(f"/v1/documents/{document_id}", headers=AUTH).status_code == 422


def test_openapi_documents_the_contract() -> None:
    schema = create_app(Settings(auth_secret="k" * 40, ui_dir=None)).openapi()
    paths = schema["paths"]
    assert set(paths["/v1/documents"]) == {"get", "post"}
    assert set(paths["/v1/documents/{document_id}"]) == {"get", "delete"}
    expected = {
        ("/v1/documents", "get"): {"200", "401", "503"},
        ("/v1/documents", "post"): {"200", "401", "413", "503"},
        ("/v1/documents/{document_id}", "get"): {"200", "401", "404", "503"},
        ("/v1/documents/{document_id}", "delete"): {"204", "401", "404", "503"},
    }
    for (path, method), statuses in expected.items():
        operation = paths[path][method]
        assert statuses <= set(operation["responses"]), (path, method)
        assert operation["tags"] == ["documents"]
        assert operation["summary"]
    components = schema["components"]["schemas"]
    assert set(components["Document"]["properties"]) == {
        "id", "title", "source", "collection", "format", "chunks", "updated_at"
    }  # fmt: skip
    assert set(components["UploadResult"]["properties"]) == {
        "filename",
        "status",
        "document_id",
        "chunks",
        "error",
    }
    assert components["UploadResult"]["properties"]["status"]["enum"] == ["ingested", "unchanged", "failed"]
    assert paths["/v1/documents/{document_id}"]["get"]["responses"]["404"]["content"]["application/json"][
        "schema"
    ] == {"$ref": "#/components/schemas/ErrorResponse"}
    upload_body = paths["/v1/documents"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in upload_body
