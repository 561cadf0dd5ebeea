"""`voicebot ingest PATH... [--tenant NAME] [--collection NAME] [--prune]` and `voicebot db migrate`.

The DSN and the Triton URL come from `orchestrator.settings.get_client_settings()`
(VOICEBOT_DATABASE_URL, VOICEBOT_TRITON_URL; unset: the local stack's), which does not ask for the
gateway's secrets, so `voicebot ingest DIR` works in a second terminal beside `make up`. Exit status: 0 when every file was ingested or
skipped, 1 when any file failed, 2 when the store or the embedding model is unreachable.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from ingest.errors import IngestError, MigrationError, StoreUnavailable

if TYPE_CHECKING:
    from ingest.limits import ParseLimits
    from ingest.pipeline import FileResult

COLLECTION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
EXIT_FILES_FAILED = 1
EXIT_UNAVAILABLE = 2


def collection_name(value: str) -> str:
    """argparse type: the names the documents table accepts."""
    if not COLLECTION_PATTERN.match(value):
        raise argparse.ArgumentTypeError(
            f"invalid collection {value!r}: letters, digits, '_', '.', '-', at most 64, starting alphanumeric"
        )
    return value


def tenant_arg(value: str) -> str:
    """argparse type: the names the tenants table accepts."""
    from ingest.tenancy import tenant_name

    try:
        return tenant_name(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Adds the `ingest` and `db` commands to the `voicebot` parser."""
    ingest = subparsers.add_parser(
        "ingest",
        help="ingest .md/.txt/.html/.pdf files or folders into the document store",
        description="Ingest documents: unchanged files are skipped, changed ones replaced, one transaction each.",
    )
    ingest.add_argument(
        "paths", nargs="+", type=Path, metavar="PATH", help="files or folders (walked recursively)"
    )
    ingest.add_argument(
        "--tenant",
        type=tenant_arg,
        default="default",
        help="tenant that owns the collection, created when new (default: %(default)s, the first tenant)",
    )
    ingest.add_argument(
        "--collection",
        type=collection_name,
        default="default",
        help="the tenant's collection to ingest into, created when new (default: %(default)s)",
    )
    ingest.add_argument(
        "--prune", action="store_true", help="delete documents whose file under the given folders is gone"
    )
    ingest.add_argument(
        "--concurrency", type=int, default=4, help="files prepared at once (default: %(default)s)"
    )
    ingest.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    ingest.set_defaults(func=cmd_ingest)

    db = subparsers.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    migrate = db_sub.add_parser("migrate", help="apply the schema migrations not yet applied")
    migrate.set_defaults(func=cmd_db_migrate)


def _database_url() -> str:
    from orchestrator.settings import get_client_settings

    settings = get_client_settings()
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    # The local stack's embedded PostgreSQL (orchestrator/stack/postgres.py) when nothing is set:
    # the application's login, its password from the stack's state folder.
    from orchestrator.stack.postgres import local_dsn

    return local_dsn(settings.state_dir, settings.postgres_port)


def _migration_urls() -> tuple[str, str]:
    """(the DSN that migrates: the schema's owner; the application's DSN, whose login it grants
    the application's privileges). VOICEBOT_MIGRATION_DATABASE_URL unset: VOICEBOT_DATABASE_URL
    migrates (one login for both, as before least-privilege roles); neither: the local stack's."""
    from orchestrator.settings import get_client_settings

    settings = get_client_settings()
    app = _database_url()
    if settings.migration_database_url is not None:
        return settings.migration_database_url.get_secret_value(), app
    if settings.database_url is not None:
        return app, app
    from orchestrator.stack.postgres import OWNER_USER, local_dsn

    return local_dsn(settings.state_dir, settings.postgres_port, user=OWNER_USER), app


def _parse_limits() -> ParseLimits:
    """The same parsing limits as the gateway's uploads (VOICEBOT_PARSE_*)."""
    from ingest.limits import limits_from_settings
    from orchestrator.settings import get_client_settings

    # Client settings: the ingest Job is not given the gateway's signing secret (it signs nothing).
    return limits_from_settings(get_client_settings())


def _triton_url() -> tuple[str, float]:
    from orchestrator.settings import get_client_settings

    settings = get_client_settings()
    return settings.triton_url, settings.triton_timeout_s


class ProgressBar:
    """A one-line progress bar on a terminal; silent when the stream is not one."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.enabled = stream.isatty()

    def __call__(self, result: FileResult, done: int, total: int) -> None:
        if not self.enabled or total == 0:
            return
        width = max(10, min(40, shutil.get_terminal_size((80, 20)).columns - 50))
        filled = int(width * done / total)
        name = (result.path.name if result.path is not None else result.source)[-30:]
        self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {name:<30}")
        if done == total:
            self.stream.write("\r" + " " * (width + 45) + "\r")
        self.stream.flush()


def _of_tenant(name: str) -> str:
    return "" if name == "default" else f" of tenant {name!r}"


async def _tenant(dsn: str, name: str) -> int:
    """The id of tenant `name`, created (with its `default` collection) when new."""
    import psycopg

    from ingest.tenancy import create_tenant

    try:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            tenant, created = await create_tenant(conn, name)
    except psycopg.OperationalError as e:
        raise StoreUnavailable(f"cannot connect to PostgreSQL: {e}") from e
    if created:
        print(f"created tenant {name!r}", file=sys.stderr)
    return tenant


def cmd_ingest(args: argparse.Namespace) -> int:
    from ingest.embedding import TritonEmbedder
    from ingest.migrate import migrate
    from ingest.pipeline import ingest_paths

    dsn = _database_url()
    triton_url, timeout_s = _triton_url()
    limits = _parse_limits()

    async def run() -> int:
        await migrate(dsn)
        tenant = await _tenant(dsn, args.tenant)
        embedder = TritonEmbedder(triton_url, timeout_s=timeout_s)
        try:
            report = await ingest_paths(
                dsn,
                embedder,
                args.paths,
                tenant=tenant,
                collection=args.collection,
                prune=args.prune,
                progress=ProgressBar(sys.stderr),
                concurrency=args.concurrency,
                limits=limits,
            )
        finally:
            await embedder.close()
        summary = report.summary()
        if args.json:
            summary["failures"] = [
                {"source": r.source, "error": r.error, "code": r.error_code, "limit": r.error_limit}
                for r in report.failed
            ]
            summary["pruned_sources"] = report.pruned
            print(json.dumps(summary, indent=2))
        else:
            print(
                f"ingest into {report.collection!r}{_of_tenant(args.tenant)}: {report.files} files, {report.ingested} new, "
                f"{report.replaced} replaced, {report.skipped} skipped, {len(report.failed)} failed, "
                f"{len(report.pruned)} pruned, {report.chunks} chunks written in {report.elapsed_s:.1f} s"
            )
        for failure in report.failed:
            print(f"  failed: {failure.path or failure.source}: {failure.error}", file=sys.stderr)
        return 0 if report.ok else EXIT_FILES_FAILED

    try:
        return asyncio.run(run())
    except (StoreUnavailable, MigrationError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except IngestError as e:  # EmbeddingUnavailable: the run stopped; what was committed is consistent
        print(
            f"error: {e}\n  (documents committed so far are complete; run the command again)", file=sys.stderr
        )
        return EXIT_UNAVAILABLE


def cmd_db_migrate(args: argparse.Namespace) -> int:
    """Applies the migrations as the owner, then makes the application's login (the user of
    VOICEBOT_DATABASE_URL, when another than the owner) a member of `voicebot_service`: created
    with the URL's password when missing, its password set to it when the migrator may."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    from ingest.migrate import migrate
    from ingest.roles import LoginRefused, grant_login

    migrator_dsn, app_dsn = _migration_urls()
    migrator, app = conninfo_to_dict(migrator_dsn), conninfo_to_dict(app_dsn)
    login = str(app.get("user") or "")
    password = str(app["password"]) if app.get("password") else None

    async def run() -> tuple[list[str], str | None]:
        applied = await migrate(migrator_dsn)
        if not login or login == migrator.get("user"):
            return applied, None
        try:
            async with await psycopg.AsyncConnection.connect(migrator_dsn, autocommit=True) as conn:
                await grant_login(conn, login, password)
        except psycopg.OperationalError as e:
            raise StoreUnavailable(f"cannot connect to PostgreSQL: {e}") from e
        except psycopg.Error as e:
            raise MigrationError(f"cannot grant the application's privileges to {login!r}: {e}") from e
        return applied, login

    try:
        applied, granted = asyncio.run(run())
    except LoginRefused as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FILES_FAILED
    except IngestError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    print(f"applied migrations: {', '.join(applied)}" if applied else "database schema is up to date")
    if granted:
        print(f"{granted} may use the application's tables (voicebot_service)")
    return 0
