"""Port checks done before anything starts, so a conflict is reported before we spawn anything."""

from __future__ import annotations

import contextlib
import socket

import psutil

from orchestrator.stack.errors import PortInUse


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # No SO_REUSEADDR: we want to see a port in TIME_WAIT-free use exactly as the server will.
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _holder(port: int) -> str:
    """' (held by pid N, name)' when we can tell, else ''."""
    with contextlib.suppress(psutil.Error, OSError):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
                try:
                    name = psutil.Process(conn.pid).name()
                except psutil.Error:
                    name = "?"
                return f" (held by pid {conn.pid}, {name})"
    return ""


def ensure_ports_free(ports: dict[str, int], host: str = "127.0.0.1") -> None:
    """Raise PortInUse for the first busy port; keys name what would use the port."""
    for component, port in ports.items():
        if not port_is_free(port, host):
            raise PortInUse(component, port, _holder(port))


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free right now (for tests and ephemeral stacks)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
