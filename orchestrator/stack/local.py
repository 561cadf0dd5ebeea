"""The local stack of `make up`: which components run, in which order, wired by Settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from orchestrator.settings import Settings
from orchestrator.stack.component import Component
from orchestrator.stack.errors import StackError
from orchestrator.stack.gateway import GatewayProcess
from orchestrator.stack.postgres import EmbeddedPostgres
from orchestrator.stack.triton import TritonServer


def build_components(settings: Settings) -> list[Component]:
    """Postgres and Triton first (independent), then the gateway that needs both."""
    state = settings.state_dir.resolve()
    logs = state / "logs"
    postgres = EmbeddedPostgres(state / "postgres", settings.postgres_port, log_dir=logs)
    triton = TritonServer(
        settings.model_repository,
        http_port=settings.triton_http_port,
        grpc_port=settings.triton_grpc_port,
        metrics_port=settings.triton_metrics_port,
        state_dir=state,
        log_dir=logs,
        env={"VOICEBOT_MODEL_PROFILE": settings.model_profile} if settings.model_profile else {},
    )
    gateway_env = {
        "VOICEBOT_DATABASE_URL": postgres.app_dsn,
        "VOICEBOT_TRITON_URL": triton.grpc_url,
        "VOICEBOT_DEV_MODE": "true" if settings.dev_mode else "false",
    }
    gateway = GatewayProcess(host=settings.host, port=settings.port, env=gateway_env, log_dir=logs)
    return [postgres, triton, gateway]


def ingest_docs(settings: Settings, components: list[Component]) -> None:
    """Ingest the default corpus with the gateway's own settings; unchanged files are skipped."""
    docs = Path(settings.docs_dir)
    if not docs.is_dir():
        print(f"==> no {docs} folder to ingest")
        return
    gateway = next(c for c in components if isinstance(c, GatewayProcess))
    env = dict(os.environ)
    env.update(gateway.env)
    print(f"==> ingesting {docs}")
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "ingest", str(docs), "--prune"], env=env, check=False
    )
    if result.returncode != 0:
        raise StackError(
            "ingest",
            f"ingesting {docs} failed (exit status {result.returncode})",
            hint="see the report above",
        )
