"""Hostile documents through the real documents API: each is refused clearly (or parsed within
the limits), nothing of a refused file is stored, and the gateway keeps answering meanwhile.

The bound is on the event loop's stall, not on how long a parse takes: `/healthz` is sampled
in a loop while the files are uploaded, and its slowest answer must stay under a generous
ceiling. Before parsing moved to worker processes, a 30 KB Markdown heading stalled it ~10 s.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
import pytest

from orchestrator.stack.postgres import EmbeddedPostgres
from orchestrator.stack.triton import TritonServer
from tests.data.hostile import Hostile, cases
from tests.integration.conftest import LOG_DIR, running_gateway

COLLECTION = "it-hostile"
STALL_CEILING_S = 1.0  # generous: /healthz answers in milliseconds when the loop is free
HOSTILE = cases()
# Far above what any case takes within the limits (the slowest is stopped at VOICEBOT_PARSE_WALL_S).
UPLOAD_TIMEOUT_S = 150


@dataclass
class Sampler:
    """Calls /healthz back to back in a thread, keeping every latency (and any failure)."""

    url: str
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    status = client.get("/healthz").status_code
                    if status != 200:
                        self.failures.append(f"HTTP {status}")
                except httpx.HTTPError as e:
                    self.failures.append(repr(e))
                self.latencies.append(time.monotonic() - started)
                time.sleep(0.02)

    def stop(self) -> None:
        self._stop.set()


@dataclass
class Run:
    results: dict[str, dict[str, Any]]
    sampler: Sampler
    dsn: str


@pytest.fixture(scope="module")
def run(ingested: str, postgres: EmbeddedPostgres, triton: TritonServer) -> Iterator[Run]:
    with running_gateway(
        postgres,
        triton,
        log_name="gateway-hostile",
        # The CPU backstop case stops sooner; the other limits are the defaults.
        VOICEBOT_PARSE_CPU_S="5",
        VOICEBOT_PARSE_WALL_S="60",
    ) as (url, _proc):
        sampler = Sampler(url)
        thread = threading.Thread(target=sampler.run, daemon=True)
        results: dict[str, dict[str, Any]] = {}
        with httpx.Client(base_url=url, timeout=UPLOAD_TIMEOUT_S) as api:
            # A first, ordinary upload starts the parsing worker outside the sampled window.
            assert (
                api.post(
                    "/v1/documents",
                    data={"collection": COLLECTION},
                    files=[("files", ("warm.md", b"# Warm\n\nup."))],
                ).status_code
                == 200
            )
            thread.start()
            try:
                for case in HOSTILE:
                    try:
                        response = api.post(
                            "/v1/documents",
                            data={"collection": COLLECTION},
                            files=[("files", (case.name, case.data))],
                        )
                    except httpx.TimeoutException:
                        results[case.name] = {
                            "http_status": "timeout",
                            "body": f"no answer in {UPLOAD_TIMEOUT_S} s",
                        }
                        continue
                    if response.status_code == 200:
                        (results[case.name],) = response.json()["results"]
                    else:  # the whole request failed: that case's test says so
                        results[case.name] = {"http_status": response.status_code, "body": response.text}
                time.sleep(0.5)  # a few samples after the last upload
            finally:
                sampler.stop()
                thread.join(timeout=90)
            yield Run(results, sampler, postgres.dsn)
            for document in api.get("/v1/documents", params={"collection": COLLECTION}).json()["documents"]:
                api.delete(f"/v1/documents/{document['id']}")


@pytest.mark.parametrize("case", HOSTILE, ids=[c.name for c in HOSTILE])
def test_hostile_upload_is_refused_clearly_or_parsed(case: Hostile, run: Run) -> None:
    result = run.results[case.name]
    assert "http_status" not in result, f"{case.why}: the upload request failed: {result}"
    if case.code is None:
        assert result["status"] == "ingested", f"{case.why}: {result}"
        assert result["error"] is None
        return
    assert result["status"] == "failed", f"{case.why}: expected a refusal, got {result}"
    assert result["document_id"] is None
    assert result["chunks"] == 0
    assert result["error"]["code"] == case.code, result["error"]
    assert result["error"]["limit"] in case.limits, result["error"]
    assert result["error"]["message"]


def test_the_gateway_stays_responsive_while_hostile_files_are_parsed(run: Run) -> None:
    latencies = run.sampler.latencies
    assert len(latencies) > 20, "the sampler ran throughout the uploads"
    assert run.sampler.failures == []
    worst = max(latencies)
    # Kept for the record (docs/retrieval.md quotes it); the assertion is the bound.
    (LOG_DIR / "hostile-stall.json").write_text(
        json.dumps({"samples": len(latencies), "max_s": round(worst, 4), "ceiling_s": STALL_CEILING_S})
    )
    assert worst < STALL_CEILING_S, f"/healthz stalled {worst:.2f} s (ceiling {STALL_CEILING_S} s)"


def test_nothing_of_a_refused_file_is_stored(run: Run) -> None:
    refused = {c.name for c in HOSTILE if c.code is not None}
    with psycopg.connect(run.dsn, autocommit=True) as conn:
        sources = {
            row[0]
            for row in conn.execute("SELECT source_uri FROM documents WHERE collection = %s", (COLLECTION,))
        }
        names = {s.rsplit("/", 1)[-1] for s in sources}
        assert names & refused == set()
        # Every stored document is whole: its chunk count matches its chunks, no orphans.
        mismatched = conn.execute(
            "SELECT d.source_uri FROM documents d LEFT JOIN chunks c ON c.document_id = d.id"
            " WHERE d.collection = %s GROUP BY d.id HAVING count(c.id) <> d.chunk_count",
            (COLLECTION,),
        ).fetchall()
        assert mismatched == []
        orphans = conn.execute(
            "SELECT count(*) FROM chunks c WHERE c.collection = %s"
            " AND NOT EXISTS (SELECT 1 FROM documents d WHERE d.id = c.document_id)",
            (COLLECTION,),
        ).fetchone()
        assert orphans == (0,)
