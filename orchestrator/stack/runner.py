"""Start components in order, watch them, and stop them all (in reverse) whatever happens."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import FrameType

from orchestrator.stack.component import Component
from orchestrator.stack.errors import StackError
from orchestrator.stack.ports import ensure_ports_free


class ShutdownRequested(BaseException):
    """Raised in the main thread by SIGINT/SIGTERM so a start in progress unwinds too."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextmanager
def shutdown_signals() -> Iterator[None]:
    """Turn SIGINT and SIGTERM into ShutdownRequested while the block runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: FrameType | None) -> None:
        # Ignore further signals while we stop: a second Ctrl-C must not leave orphans.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise ShutdownRequested(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class StackRunner:
    """Owns a list of components. Use as a context manager; `__exit__` always stops what started."""

    def __init__(
        self,
        components: Sequence[Component],
        *,
        startup_timeout_s: float,
        say: Callable[[str], None] = print,
    ) -> None:
        self.components = list(components)
        self.startup_timeout_s = startup_timeout_s
        self.say = say
        self._started: list[Component] = []

    def __enter__(self) -> StackRunner:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        ports: dict[str, int] = {}
        for component in self.components:
            ports.update(component.ports)
        ensure_ports_free(ports)
        for component in self.components:
            self.say(f"==> starting {component.name}")
            began = time.monotonic()
            self._started.append(component)
            component.start()
            component.wait_ready(self.startup_timeout_s)
            self.say(f"    {component.describe()} — ready in {time.monotonic() - began:.1f} s")

    def watch(self, interval_s: float = 1.0) -> None:
        """Block until a component dies (raises StackError) or a signal arrives."""
        while True:
            for component in self._started:
                component.check_alive()
            time.sleep(interval_s)

    def stop(self) -> None:
        errors: list[str] = []
        while self._started:
            component = self._started.pop()
            self.say(f"==> stopping {component.name}")
            try:
                component.stop()
            except Exception as e:  # keep stopping the others; report at the end
                errors.append(f"{component.name}: {e}")
        if errors:
            raise StackError("stack", "did not stop cleanly: " + "; ".join(errors))
