"""Calls spread over Triton replicas; each ASR sequence stays on one (orchestrator.inference)."""

from __future__ import annotations

import asyncio
from typing import Any

from orchestrator.inference import SequenceRouter, balancing_channel_args


class FakeClient:
    """Stands in for tritonclient's InferenceServerClient: only its target and close()."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.closed = False

    async def close(self) -> None:
        self.closed = True


def _router(addresses: list[list[str]], refresh_s: float = 0.0) -> tuple[SequenceRouter, list[str]]:
    lookups: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        lookups.append(f"{host}:{port}")
        return addresses[min(len(lookups), len(addresses)) - 1]

    factory: Any = FakeClient
    return SequenceRouter(
        "dns:///vb-voicebot-triton-headless.voicebot.svc:8001",
        client_factory=factory,
        resolver=resolve,
        refresh_s=refresh_s,
    ), lookups


def test_only_dns_targets_are_balanced() -> None:
    assert ("grpc.lb_policy_name", "round_robin") in balancing_channel_args("dns:///triton:8001")
    assert balancing_channel_args("127.0.0.1:8001") == []


def test_a_sequence_stays_on_one_replica_and_sequences_spread() -> None:
    replicas = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    router, lookups = _router([replicas])

    async def targets(sequence_id: int, times: int) -> set[str]:
        return {(await router.client_for(sequence_id)).target for _ in range(times)}  # type: ignore[union-attr]

    for sequence_id in range(1, 50):
        assert len(asyncio.run(targets(sequence_id, 3))) == 1
    used = {asyncio.run(router.client_for(i)).target for i in range(1, 200)}  # type: ignore[union-attr]
    assert used == {f"{r}:8001" for r in replicas}
    assert lookups[0] == "vb-voicebot-triton-headless.voicebot.svc:8001"


def test_a_replica_leaving_moves_only_its_own_sequences() -> None:
    before = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    after = ["10.0.0.1", "10.0.0.3"]
    moved = [i for i in range(500) if SequenceRouter.pick(i, before) != SequenceRouter.pick(i, after)]
    assert moved
    assert all(SequenceRouter.pick(i, before) == "10.0.0.2" for i in moved)


def test_one_replica_uses_the_shared_channel_and_close_closes_the_pinned_ones() -> None:
    router, _ = _router([["10.0.0.1"], ["10.0.0.1", "10.0.0.2"]])
    assert asyncio.run(router.client_for(7)) is None
    client = asyncio.run(router.client_for(7))  # re-resolved: two replicas now
    assert isinstance(client, FakeClient)
    asyncio.run(router.close())
    assert client.closed
