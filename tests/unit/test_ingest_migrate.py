"""Migration discovery: ordered by version, any new file picked up, bad names refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.errors import MigrationError
from ingest.migrate import MIGRATIONS_DIR, discover


def test_shipped_migrations_start_with_the_document_store() -> None:
    migrations = discover()
    assert migrations[0].version == "0001"
    assert migrations[0].name == "documents"
    assert [m.version for m in migrations] == sorted(m.version for m in migrations)
    sql = (MIGRATIONS_DIR / "0001_documents.sql").read_text()
    for needle in ("vector(384)", "USING hnsw (embedding vector_cosine_ops)", "USING gin (tsv)", "UNIQUE"):
        assert needle in sql


def test_new_files_are_picked_up_in_order(tmp_path: Path) -> None:
    (tmp_path / "0002_sessions.sql").write_text("SELECT 2;")
    (tmp_path / "0001_documents.sql").write_text("SELECT 1;")
    (tmp_path / "0010_later.sql").write_text("SELECT 10;")
    (tmp_path / "README.md").write_text("not a migration")
    assert [m.filename for m in discover(tmp_path)] == [
        "0001_documents.sql",
        "0002_sessions.sql",
        "0010_later.sql",
    ]


def test_checksum_changes_with_content(tmp_path: Path) -> None:
    path = tmp_path / "0001_a.sql"
    path.write_text("SELECT 1;")
    before = discover(tmp_path)[0].checksum
    path.write_text("SELECT 2;")
    assert discover(tmp_path)[0].checksum != before


@pytest.mark.parametrize("name", ["1_short.sql", "0001-dash.sql", "0001_Upper.sql", "abcd_x.sql"])
def test_bad_names_are_refused(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=r"NNNN_lowercase_name\.sql"):
        discover(tmp_path)


def test_duplicate_versions_are_refused(tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_text("SELECT 1;")
    (tmp_path / "0001_b.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="two migrations with version 0001"):
        discover(tmp_path)
