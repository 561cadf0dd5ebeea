"""Real services for the integration tier: one embedded Postgres and one Triton per test session.

Both run on ports picked at random so a developer's `make up` can keep running beside the tests.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.stack.ports import free_port
from orchestrator.stack.postgres import EmbeddedPostgres
from orchestrator.stack.triton import TritonServer
from tests.conftest import REPO_ROOT

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
