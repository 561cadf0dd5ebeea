"""The FastAPI gateway as a child process of the local stack (`voicebot serve`)."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from orchestrator.stack.component import ProcessComponent, http_ok
from orchestrator.stack.process import ManagedProcess


class GatewayProcess(ProcessComponent):
    name = "gateway"
    ready_what = "ready (/readyz)"

    def __init__(self, *, host: str, port: int, env: Mapping[str, str], log_dir: Path) -> None:
        self.host = host
        self.port = port
        self.env = dict(env)
        self.log_dir = log_dir

    @property
    def ports(self) -> dict[str, int]:
        return {self.name: self.port}

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def describe(self) -> str:
        return f"gateway on {self.url}"

    def start(self) -> None:
        env = dict(os.environ)
        env.update(self.env)
        env.update({"VOICEBOT_HOST": self.host, "VOICEBOT_PORT": str(self.port)})
        argv = [sys.executable, "-m", "orchestrator.cli", "serve"]
        self._process = ManagedProcess(self.name, argv, log_path=self.log_dir / "gateway.log", env=env)
        self._process.start()

    def is_ready(self) -> bool:
        return http_ok(f"{self.url}/readyz")
