"""The runner's ordering and clean-up, with fake components at the Component seam."""

from __future__ import annotations

import socket

import pytest

from orchestrator.stack.errors import PortInUse, StackError
from orchestrator.stack.runner import StackRunner


class FakeComponent:
    def __init__(self, name: str, log: list[str], *, fail_ready: bool = False, port: int = 0) -> None:
        self.name = name
        self.log = log
        self.fail_ready = fail_ready
        self.port = port
        self.alive = True

    @property
    def ports(self) -> dict[str, int]:
        return {self.name: self.port} if self.port else {}

    def describe(self) -> str:
        return self.name

    def start(self) -> None:
        self.log.append(f"start {self.name}")

    def wait_ready(self, timeout_s: float) -> None:
        if self.fail_ready:
            raise StackError(self.name, "was not ready")
        self.log.append(f"ready {self.name}")

    def check_alive(self) -> None:
        if not self.alive:
            raise StackError(self.name, "stopped unexpectedly")

    def stop(self) -> None:
        self.log.append(f"stop {self.name}")


def test_starts_in_order_and_stops_in_reverse() -> None:
    log: list[str] = []
    parts = [FakeComponent("a", log), FakeComponent("b", log)]
    with StackRunner(parts, startup_timeout_s=1, say=lambda _: None):
        pass
    assert log == ["start a", "ready a", "start b", "ready b", "stop b", "stop a"]


def test_failure_stops_what_already_started() -> None:
    log: list[str] = []
    parts = [FakeComponent("a", log), FakeComponent("b", log, fail_ready=True), FakeComponent("c", log)]
    with (
        pytest.raises(StackError, match="b: was not ready"),
        StackRunner(parts, startup_timeout_s=1, say=print),
    ):
        pass
    assert log == ["start a", "ready a", "start b", "stop b", "stop a"]


def test_busy_port_is_refused_before_anything_starts() -> None:
    log: list[str] = []
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        busy = sock.getsockname()[1]
        parts = [FakeComponent("a", log), FakeComponent("b", log, port=busy)]
        with pytest.raises(PortInUse) as info, StackRunner(parts, startup_timeout_s=1, say=print):
            pass
    assert info.value.port == busy
    assert log == []


def test_watch_raises_when_a_component_dies() -> None:
    log: list[str] = []
    part = FakeComponent("a", log)
    runner = StackRunner([part], startup_timeout_s=1, say=print)
    runner.start()
    part.alive = False
    with pytest.raises(StackError, match="stopped unexpectedly"):
        runner.watch(interval_s=0.01)
    runner.stop()
    assert log[-1] == "stop a"
