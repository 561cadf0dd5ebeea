"""Errors of the local stack: one message a person can act on, naming the component at fault."""

from __future__ import annotations


class StackError(Exception):
    """A component could not start, did not become ready, or died."""

    def __init__(self, component: str, message: str, *, log: str = "", hint: str = "") -> None:
        self.component = component
        self.message = message
        self.log = log
        self.hint = hint
        super().__init__(f"{component}: {message}")

    def render(self) -> str:
        parts = [f"error: {self.component} {self.message}"]
        if self.hint:
            parts.append(f"hint: {self.hint}")
        if self.log:
            parts.append(f"last lines of its log:\n{self.log}")
        return "\n".join(parts)


class PortInUse(StackError):
    def __init__(self, component: str, port: int, holder: str) -> None:
        super().__init__(
            component,
            f"cannot listen on 127.0.0.1:{port}: the port is already in use{holder}",
            hint=f"stop that process, or choose another port (see docs/configuration.md) for {component}",
        )
        self.port = port
