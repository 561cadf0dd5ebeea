"""ManagedProcess stops the whole process group, including grandchildren."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import psutil
import pytest

from orchestrator.stack.errors import StackError
from orchestrator.stack.process import ManagedProcess

# A parent that spawns a child and both ignore nothing; the child would outlive a plain kill of the parent.
SPAWNER = "import subprocess,sys,time; subprocess.Popen([sys.executable,'-c','import time; time.sleep(600)']); time.sleep(600)"


def test_stop_leaves_no_grandchild(tmp_path: Path) -> None:
    proc = ManagedProcess("spawner", [sys.executable, "-c", SPAWNER], log_path=tmp_path / "log")
    proc.start()
    assert proc.pid is not None
    parent = psutil.Process(proc.pid)
    deadline = time.monotonic() + 10
    while not parent.children() and time.monotonic() < deadline:
        time.sleep(0.05)
    children = parent.children()
    assert children, "the spawner never started its child"
    proc.stop(timeout_s=5)
    _gone, alive = psutil.wait_procs(children, timeout=5)
    assert alive == []
    assert proc.exit_code() is not None


def test_kill_ends_the_group_at_once_even_when_terminate_is_ignored(tmp_path: Path) -> None:
    ignores_term = "import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
    proc = ManagedProcess("stubborn", [sys.executable, "-c", ignores_term], log_path=tmp_path / "log")
    proc.start()
    proc.kill()
    assert proc.exit_code() == -9
    proc.kill()  # safe to call twice


def test_wait_until_reports_an_early_exit_with_the_log(tmp_path: Path) -> None:
    proc = ManagedProcess(
        "crasher",
        [sys.executable, "-c", "print('boom: config missing'); raise SystemExit(3)"],
        log_path=tmp_path / "log",
    )
    proc.start()
    with pytest.raises(StackError) as info:
        proc.wait_until(lambda: False, timeout_s=10, what="ready")
    assert "exited with status 3" in str(info.value)
    assert "boom: config missing" in info.value.log


def test_wait_until_times_out(tmp_path: Path) -> None:
    proc = ManagedProcess(
        "sleeper", [sys.executable, "-c", "import time; time.sleep(30)"], log_path=tmp_path / "log"
    )
    proc.start()
    try:
        with pytest.raises(StackError, match="was not ready within 0 s"):
            proc.wait_until(lambda: False, timeout_s=0.2, what="ready")
    finally:
        proc.stop(timeout_s=5)


def test_missing_binary_is_a_stack_error(tmp_path: Path) -> None:
    proc = ManagedProcess("ghost", [str(tmp_path / "no-such-binary")], log_path=tmp_path / "log")
    with pytest.raises(StackError, match="could not start"):
        proc.start()
