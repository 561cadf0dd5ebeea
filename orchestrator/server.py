"""The gateway's HTTP server: uvicorn, with a drain step before its own shutdown.

Uvicorn closes every WebSocket (code 1012) as soon as it is told to stop, which would cut a
spoken answer mid-sentence at each rolling update. `DrainingServer` first stops accepting
connections and lets the turns in flight finish (`AppState.drain`, bounded by
`drain_timeout_s`), then tells each client to reconnect, and only then hands over to uvicorn.
"""

from __future__ import annotations

import socket

import uvicorn

from orchestrator.state import AppState


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, state: AppState, drain_timeout_s: float) -> None:
        super().__init__(config)
        self.state = state
        self.drain_timeout_s = drain_timeout_s

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()  # no new connections; a load balancer retries them on another replica
        if not self.force_exit:  # a second Ctrl-C skips the drain
            await self.state.drain(self.drain_timeout_s)
        await super().shutdown(sockets)
