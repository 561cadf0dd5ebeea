"""The real NVIDIA Triton server shipped inside the `nvidia-pytriton` wheel, run on our model repository.

The recipe (see docs/architecture.md): a backends folder whose `python/` holds links to the
wheel's Python backend library, its utils module and the stub built for this interpreter;
LD_LIBRARY_PATH pointing at this interpreter's libpython (a mismatched one half-works); PATH
starting with the venv's bin, because the stub runs `python3` from PATH.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from collections.abc import Mapping
from pathlib import Path

from orchestrator.stack.component import ProcessComponent, http_ok, package_dir
from orchestrator.stack.errors import StackError
from orchestrator.stack.process import ManagedProcess


def pytriton_dir() -> Path:
    return package_dir("pytriton", "triton", "nvidia-pytriton") / "tritonserver"


def python_tag() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def libpython_dir() -> Path:
    """The folder holding this interpreter's shared libpython, which the backend stub links to."""
    return Path(str(sysconfig.get_config_var("LIBDIR")))


def libpython_path() -> Path | None:
    name = sysconfig.get_config_var("LDLIBRARY") or f"libpython{python_tag()}.so"
    candidate = libpython_dir() / str(name)
    if candidate.suffix == ".so" and candidate.exists():
        return candidate
    return None


def prepare_backends(target: Path) -> Path:
    """Create `target/python/` with links into the wheel; idempotent, repaired if stale."""
    root = pytriton_dir()
    links = {
        "libtriton_python.so": root / "backends" / "python" / "libtriton_python.so",
        "triton_python_backend_utils.py": root / "backends" / "python" / "triton_python_backend_utils.py",
        "triton_python_backend_stub": root
        / "python_backend_stubs"
        / python_tag()
        / "triton_python_backend_stub",
    }
    python_dir = target / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    for name, source in links.items():
        if not source.exists():
            raise StackError("triton", f"{source} is missing from nvidia-pytriton (Python {python_tag()})")
        link = python_dir / name
        if link.is_symlink() or link.exists():
            if link.resolve() == source.resolve():
                continue
            link.unlink()
        link.symlink_to(source)
    return target


class TritonServer(ProcessComponent):
    """tritonserver on 127.0.0.1 with the given ports, serving `model_repository`."""

    name = "triton"
    ready_what = "ready (all models loaded)"

    def __init__(
        self,
        model_repository: Path,
        *,
        http_port: int,
        grpc_port: int,
        metrics_port: int,
        state_dir: Path,
        log_dir: Path,
        env: Mapping[str, str] | None = None,
        model_control: bool = False,
    ) -> None:
        self.model_repository = model_repository.resolve()
        # Explicit model control (every model loaded at start): a benchmark reloads a model over
        # the HTTP API to start a phase with its caches empty.
        self.model_control = model_control
        self.http_port = http_port
        self.grpc_port = grpc_port
        self.metrics_port = metrics_port
        self.state_dir = state_dir
        self.log_dir = log_dir
        self.extra_env = dict(env or {})

    @property
    def ports(self) -> dict[str, int]:
        return {
            "triton (http)": self.http_port,
            "triton (grpc)": self.grpc_port,
            "triton (metrics)": self.metrics_port,
        }

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def describe(self) -> str:
        return (
            f"Triton on {self.grpc_url} (gRPC), {self.http_url} (HTTP), models from {self.model_repository}"
        )

    def start(self) -> None:
        if not self.model_repository.is_dir():
            raise StackError(self.name, f"model repository {self.model_repository} does not exist")
        if libpython_path() is None:
            raise StackError(
                self.name,
                f"no shared libpython found in {libpython_dir()}; the Python backend stub needs one",
                hint="use a Python built with --enable-shared (pyenv: PYTHON_CONFIGURE_OPTS=--enable-shared)",
            )
        binary = pytriton_dir() / "bin" / "tritonserver"
        backends = prepare_backends(self.state_dir / "triton-backends")
        venv_bin = str(Path(sys.executable).parent)
        env = dict(os.environ)
        env.update(self.extra_env)
        env["PATH"] = os.pathsep.join([venv_bin, env.get("PATH", "")])
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in [str(libpython_dir()), env.get("LD_LIBRARY_PATH")] if p
        )
        argv = [
            str(binary),
            f"--model-repository={self.model_repository}",
            f"--backend-directory={backends}",
            f"--http-port={self.http_port}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-port={self.metrics_port}",
            "--http-address=127.0.0.1",
            "--grpc-address=127.0.0.1",
            "--pinned-memory-pool-byte-size=0",
            "--allow-gpu-metrics=false",
            "--exit-on-error=true",
            "--strict-readiness=true",
            "--exit-timeout-secs=20",
        ]
        if self.model_control:
            argv += ["--model-control-mode=explicit", "--load-model=*"]
        self._process = ManagedProcess(self.name, argv, log_path=self.log_dir / "triton.log", env=env)
        self._process.start()

    def is_ready(self) -> bool:
        return http_ok(f"{self.http_url}/v2/health/ready")
