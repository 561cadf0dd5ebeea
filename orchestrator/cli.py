"""The `voicebot` command: `up` (local stack), `serve` (gateway only), `doctor`, and the command
groups other packages register (`ingest`, `db`, `models`, `keys`, `sessions`)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from ingest import commands as ingest_commands
from orchestrator import key_commands, retention
from orchestrator.settings import Settings


def settings_error(e: ValidationError) -> str:
    """One line for a settings error: which VOICEBOT_ variable, and what is wrong with it."""
    parts = []
    for err in e.errors():
        where = ".".join(str(p) for p in err["loc"])
        name = f"VOICEBOT_{where.upper()}: " if where else ""
        parts.append(name + str(err["msg"]).removeprefix("Value error, "))
    return "error: invalid settings: " + "; ".join(parts)


def _load_settings(**overrides: object) -> Settings:
    try:
        return Settings(**overrides)  # type: ignore[arg-type]  # overrides are field names
    except ValidationError as e:
        raise SystemExit(settings_error(e)) from None


def cmd_up(args: argparse.Namespace) -> int:
    from orchestrator.stack.errors import StackError
    from orchestrator.stack.local import build_components, ingest_docs
    from orchestrator.stack.runner import ShutdownRequested, StackRunner, shutdown_signals

    overrides: dict[str, object] = {}
    if args.dev:
        overrides["dev_mode"] = True
    if args.port:
        overrides["port"] = args.port
    settings = _load_settings(**overrides)
    if settings.dev_mode:
        print("==> dev mode: anonymous access is allowed from loopback only; never expose this port")
    components = build_components(settings)
    try:
        with (
            shutdown_signals(),
            StackRunner(components, startup_timeout_s=settings.startup_timeout_s) as stack,
        ):
            if not args.no_ingest:
                ingest_docs(settings, components)
            print()
            print(f"Voicebot is running: http://{settings.host}:{settings.port}")
            for component in components:
                print(f"  - {component.describe()}")
            print(f"  logs in {settings.state_dir.resolve() / 'logs'}; Ctrl-C stops everything")
            stack.watch()
    except ShutdownRequested as s:
        print(f"==> stopped ({s})")
        return 0
    except StackError as e:
        print(e.render(), file=sys.stderr)
        return 1
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from orchestrator.app import create_app
    from orchestrator.observability import configure_logging
    from orchestrator.server import DrainingServer

    settings = _load_settings()
    configure_logging(settings)
    if settings.dev_mode:
        logging.getLogger("voicebot").warning("dev mode: anonymous access is allowed from loopback only")
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=None,  # keep our handlers (JSON lines)
        ws_max_size=1 << 20,
        # Client addresses (anonymous dev-mode callers, failed-authentication limits) come from
        # X-Forwarded-For only when the connection is from one of these (the ingress).
        forwarded_allow_ips=settings.trusted_proxies,
        # After the drain, what is left (an SSE answer, an upload) gets this long.
        timeout_graceful_shutdown=10,
    )
    DrainingServer(config, app.state.voicebot, settings.drain_timeout_s).run()
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from orchestrator.doctor import report, run_checks

    settings = _load_settings(dev_mode=True)  # doctor checks the local stack, which runs in dev mode
    return 0 if report(run_checks(settings)) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voicebot", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="run the local stack: Postgres, Triton, the gateway; ingest docs/")
    up.add_argument("--dev", action="store_true", help="dev mode: anonymous access from loopback only")
    up.add_argument("--port", type=int, default=0, help="gateway port (default: VOICEBOT_PORT or 8080)")
    up.add_argument("--no-ingest", action="store_true", help="do not ingest VOICEBOT_DOCS_DIR at start")
    up.set_defaults(func=cmd_up)

    serve = sub.add_parser("serve", help="run the gateway only (the container entrypoint)")
    serve.set_defaults(func=cmd_serve)

    doctor = sub.add_parser("doctor", help="check what the local stack needs")
    doctor.set_defaults(func=cmd_doctor)

    # Command groups owned by other packages: `ingest`, `db migrate` (ingest/), `models` (weights),
    # and `keys` (stored API keys, orchestrator/key_commands.py).
    ingest_commands.register(sub)
    try:  # the model-server package (images/triton): in the local stack, not in the gateway image
        from voicebot_models import commands as model_commands
    except ImportError:
        pass
    else:
        model_commands.register(sub)
    key_commands.register(sub)
    retention.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except ValidationError as e:  # settings read by a command group: one line, never a traceback
        if e.title not in ("Settings", "ClientSettings"):
            raise
        print(settings_error(e), file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
