"""Real services for the integration tier: one embedded Postgres and one Triton per test session.

Both run on ports picked at random so a developer's `make up` can keep running beside the tests.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ingest.embedding import TritonEmbedder
from ingest.migrate import migrate
from ingest.pipeline import ingest_paths
from orchestrator.stack.component import http_ok
from orchestrator.stack.ports import free_port
from orchestrator.stack.postgres import EmbeddedPostgres
from orchestrator.stack.triton import TritonServer
from tests.conftest import REPO_ROOT
from tests.integration.voice_client import AUTH_SECRET, BOOTSTRAP_KEY, SecuredGateway

MODEL_REPOSITORY = REPO_ROOT / "images" / "triton" / "models"
STARTUP_TIMEOUT_S = 300.0
# Logs outlive the run (the state folder does not), so a failure in CI can be read afterwards.
# VOICEBOT_TEST_LOG_DIR keeps two runs side by side (a developer's and an editor's) apart.
LOG_DIR = Path(os.environ.get("VOICEBOT_TEST_LOG_DIR") or REPO_ROOT / "build" / "test-logs")


@pytest.fixture(scope="session")
def stack_dir() -> Iterator[Path]:
    """A state folder other users can traverse: PostgreSQL runs as an unprivileged user when we are root
    (pytest's own tmp folders are private to root)."""
    path = Path(tempfile.mkdtemp(prefix="voicebot-test-"))
    path.chmod(0o755)
    shutil.rmtree(LOG_DIR, ignore_errors=True)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres(stack_dir: Path) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(stack_dir / "postgres", free_port(), log_dir=LOG_DIR, database="voicebot_test")
    server.start()
    try:
        server.wait_ready(STARTUP_TIMEOUT_S)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def triton(stack_dir: Path) -> Iterator[TritonServer]:
    env = {}
    if "VOICEBOT_MODEL_PROFILE" in os.environ:
        env["VOICEBOT_MODEL_PROFILE"] = os.environ["VOICEBOT_MODEL_PROFILE"]
    server = TritonServer(
        MODEL_REPOSITORY,
        http_port=free_port(),
        grpc_port=free_port(),
        metrics_port=free_port(),
        state_dir=stack_dir,
        log_dir=LOG_DIR,
        env=env,
    )
    server.start()
    try:
        server.wait_ready(STARTUP_TIMEOUT_S)
        yield server
    finally:
        server.stop()


def prepare_store(postgres: EmbeddedPostgres, triton: TritonServer) -> None:
    """Migrate `postgres` (as the schema's owner) and ingest docs/architecture.md through
    `triton`'s embed model (as the application's login, like `voicebot ingest`)."""

    async def prepare() -> None:
        await migrate(postgres.owner_dsn)
        embedder = TritonEmbedder(triton.grpc_url)
        try:
            await ingest_paths(postgres.app_dsn, embedder, [REPO_ROOT / "docs" / "architecture.md"])
        finally:
            await embedder.close()

    asyncio.run(prepare())


@pytest.fixture(scope="session")
def ingested(postgres: EmbeddedPostgres, triton: TritonServer) -> str:
    """The session's database, migrated, with docs/architecture.md ingested; its DSN."""
    prepare_store(postgres, triton)
    return postgres.dsn


@contextmanager
def running_gateway(
    postgres: EmbeddedPostgres, triton: TritonServer, *, log_name: str = "gateway", **env: str
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`voicebot serve` on a free port against the session's Postgres (as the application's
    login, as `make up` and the chart run it) and Triton, in dev mode unless `env` says otherwise
    (`VOICEBOT_*` variables); yields its URL and process."""
    port = free_port()
    full_env = dict(
        os.environ,
        VOICEBOT_DEV_MODE="true",
        VOICEBOT_PORT=str(port),
        VOICEBOT_DATABASE_URL=postgres.app_dsn,
        VOICEBOT_TRITON_URL=triton.grpc_url,
        VOICEBOT_LOG_FORMAT="text",
    )
    full_env.update(env)
    log = (LOG_DIR / f"{log_name}.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", "serve"], env=full_env, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not http_ok(f"{url}/readyz"):
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.fail(f"the gateway never became ready (see {log.name})")
            time.sleep(0.3)
        yield url, proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def gateway(ingested: str, postgres: EmbeddedPostgres, triton: TritonServer) -> Iterator[str]:
    """The gateway in dev mode (anonymous from loopback), documents ingested; its URL."""
    with running_gateway(postgres, triton) as (url, _):
        yield url


@pytest.fixture(scope="module")
def secured_gateway(
    ingested: str, postgres: EmbeddedPostgres, triton: TritonServer
) -> Iterator[SecuredGateway]:
    """The gateway outside dev mode: stored keys or the bootstrap key required, small limits
    (2 voice sessions per key, 10 s of audio per turn), short answers. Failed authentications are
    not limited here (every test runs from 127.0.0.1 and many fail on purpose); that limit has
    its own gateway in tests/integration/test_security.py."""
    with running_gateway(
        postgres,
        triton,
        log_name="gateway-secured",
        VOICEBOT_DEV_MODE="false",
        VOICEBOT_AUTH_SECRET=AUTH_SECRET,
        VOICEBOT_BOOTSTRAP_API_KEY=BOOTSTRAP_KEY,
        VOICEBOT_MAX_SESSIONS_PER_KEY="2",
        VOICEBOT_MAX_TURN_AUDIO_S="10",
        VOICEBOT_LLM_MAX_TOKENS="40",
        VOICEBOT_AUTH_FAILURES_PER_MINUTE="100000",
    ) as (url, proc):
        yield SecuredGateway(url, proc, ingested)
