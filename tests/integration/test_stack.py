"""The local stack's parts really start, answer, and stop without leaving processes behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import psycopg
import pytest
import tritonclient.grpc as grpcclient

from orchestrator.stack.component import http_ok
from orchestrator.stack.ports import free_port
from orchestrator.stack.postgres import EmbeddedPostgres
from orchestrator.stack.triton import TritonServer
from tests.conftest import REPO_ROOT


def test_postgres_answers_with_pgvector(postgres: EmbeddedPostgres) -> None:
    with psycopg.connect(postgres.dsn) as conn:
        version = conn.execute("SHOW server_version_num").fetchone()
        extension = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
        distance = conn.execute("SELECT '[1,0,0]'::vector <=> '[0,1,0]'::vector").fetchone()
    assert version is not None
    assert int(version[0]) >= 180000
    assert extension is not None
    assert distance is not None
    assert distance[0] == pytest.approx(1.0)


def test_triton_answers_over_grpc(triton: TritonServer) -> None:
    client = grpcclient.InferenceServerClient(triton.grpc_url)
    try:
        assert client.is_server_live()
        assert client.is_server_ready()
        metadata = client.get_server_metadata()
    finally:
        client.close()
    assert metadata.name == "triton"


def _descendants_of_stack(marker: str) -> list[psutil.Process]:
    """Processes whose command line mentions our private state folder (postgres, tritonserver, stubs)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if marker in cmdline:
            found.append(proc)
    return found


def _wait_gone(marker: str, timeout_s: float = 30.0) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout_s
    left = _descendants_of_stack(marker)
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = _descendants_of_stack(marker)
    return left


def _stack_env(state: Path, **ports: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "VOICEBOT_STATE_DIR": str(state),
            "VOICEBOT_PORT": str(ports["gateway"]),
            "VOICEBOT_POSTGRES_PORT": str(ports["postgres"]),
            "VOICEBOT_TRITON_HTTP_PORT": str(ports["http"]),
            "VOICEBOT_TRITON_GRPC_PORT": str(ports["grpc"]),
            "VOICEBOT_TRITON_METRICS_PORT": str(ports["metrics"]),
            "VOICEBOT_MODEL_REPOSITORY": str(REPO_ROOT / "images" / "triton" / "models"),
            "VOICEBOT_DOCS_DIR": str(state / "docs"),
        }
    )
    return env


def _ports() -> dict[str, int]:
    return {name: free_port() for name in ("gateway", "postgres", "http", "grpc", "metrics")}


def test_up_serves_ready_and_sigint_leaves_nothing_behind(stack_dir: Path) -> None:
    state = stack_dir / "up-run"
    (state / "docs").mkdir(parents=True)
    (state / "docs" / "faq.md").write_text(
        "# FAQ\n\n## Hours\n\nThe help desk opens at nine in the morning.\n"
    )
    ports = _ports()
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", "up", "--dev"],
        cwd=REPO_ROOT,
        env=_stack_env(state, **ports),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        deadline = time.monotonic() + 300
        while not any("Voicebot is running" in line for line in lines):
            assert proc.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "stack never said it was running:\n" + "".join(lines)
            time.sleep(0.5)
        assert http_ok(f"http://127.0.0.1:{ports['gateway']}/readyz")
        assert _descendants_of_stack(str(state)), "expected postgres/triton processes under the state dir"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
        reader.join(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
    output = "".join(lines)
    assert proc.returncode == 0, output
    assert "Voicebot is running: http://127.0.0.1:" in output
    assert "ingest into 'default': 1 files, 1 new" in output
    assert "stopping postgres" in output
    assert _wait_gone(str(state)) == []


def test_port_conflict_is_reported_and_nothing_is_left_running(stack_dir: Path) -> None:
    state = stack_dir / "conflict-run"
    ports = _ports()
    # Something else already listens where Triton's gRPC port should be.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as blocker:
        blocker.bind(("127.0.0.1", ports["grpc"]))
        blocker.listen(1)
        result = subprocess.run(
            [sys.executable, "-m", "orchestrator.cli", "up", "--dev"],
            cwd=REPO_ROOT,
            env=_stack_env(state, **ports),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert result.returncode == 1
    assert (
        f"triton (grpc) cannot listen on 127.0.0.1:{ports['grpc']}: the port is already in use"
        in result.stderr
    )
    assert "hint:" in result.stderr
    assert _wait_gone(str(state), timeout_s=5) == []


def test_component_that_dies_at_start_stops_the_ones_before_it(stack_dir: Path) -> None:
    """Triton pointed at a missing model repository fails; the Postgres started before it is stopped."""
    state = stack_dir / "dies-run"
    ports = _ports()
    env = _stack_env(state, **ports)
    env["VOICEBOT_MODEL_REPOSITORY"] = str(state / "missing-models")
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "up", "--dev"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 1
    assert "error: triton model repository" in result.stderr
    assert "stopping postgres" in result.stdout
    assert _wait_gone(str(state), timeout_s=10) == []


def test_doctor_reports_a_busy_port_and_exits_non_zero() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        port = blocker.getsockname()[1]
        env = dict(os.environ, VOICEBOT_PORT=str(port))
        result = subprocess.run(
            [sys.executable, "-m", "orchestrator.cli", "doctor"],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    assert f"gateway {port}" in result.stdout
    assert "fix:" in result.stdout
