"""A child process the local stack owns: its own process group, its log file, and a clean stop."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from orchestrator.stack.errors import StackError


class ManagedProcess:
    """Starts `argv` in a new session so that stopping it also stops every process it spawned
    (tritonserver's Python-backend stubs, postgres' backends)."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        user: int | None = None,
        group: int | None = None,
        stop_signal: signal.Signals = signal.SIGTERM,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.user = user
        self.group = group
        self.stop_signal = stop_signal
        self._popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen else None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            try:
                self._popen = subprocess.Popen(
                    self.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=self.env,
                    cwd=self.cwd,
                    user=self.user,
                    group=self.group,
                    start_new_session=True,
                )
            except OSError as e:
                raise StackError(self.name, f"could not start {self.argv[0]}: {e.strerror or e}") from e

    def exit_code(self) -> int | None:
        """None while running; the exit status once it ended."""
        return self._popen.poll() if self._popen else None

    def wait_until(
        self, check: Callable[[], bool], *, timeout_s: float, what: str, interval_s: float = 0.25
    ) -> None:
        """Poll `check` until it is true; fail early if the process dies, or at the deadline."""
        deadline = time.monotonic() + timeout_s
        while True:
            code = self.exit_code()
            if code is not None:
                raise StackError(
                    self.name, f"exited with status {code} before it was {what}", log=self.log_tail()
                )
            if check():
                return
            if time.monotonic() >= deadline:
                raise StackError(self.name, f"was not {what} within {timeout_s:.0f} s", log=self.log_tail())
            time.sleep(interval_s)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Signal the whole process group, wait, then kill what is left. Safe to call twice."""
        if self._popen is None or self._popen.poll() is not None:
            self._reap_group()
            return
        self._signal_group(self.stop_signal)
        try:
            self._popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            self._popen.wait(timeout=10)
        self._reap_group()

    def kill(self) -> None:
        """SIGKILL the whole group and reap the leader: no clean-up runs, as in a crash."""
        if self._popen is None or self._popen.poll() is not None:
            return
        self._signal_group(signal.SIGKILL)
        self._popen.wait(timeout=10)

    def _signal_group(self, sig: signal.Signals) -> None:
        assert self._popen is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._popen.pid, sig)

    def _reap_group(self) -> None:
        # Children that outlived their leader (e.g. a stub still unloading) must not linger.
        if self._popen is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._popen.pid, signal.SIGKILL)

    def log_tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])
