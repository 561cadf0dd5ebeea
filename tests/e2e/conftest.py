"""The whole stack for the browser tier: the integration tier's embedded Postgres and Triton (same
fixtures), docs/ ingested through the real `embed` model, the gateway serving ui/out in dev mode,
and Debian's Chromium driven by Playwright with a fake microphone that plays a WAV made at test
time. Screenshots go to build/e2e/; on failure the test's trace and a screenshot are kept there.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import wave
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from ingest.embedding import TritonEmbedder
from ingest.migrate import migrate
from ingest.pipeline import ingest_paths
from orchestrator.stack.gateway import GatewayProcess
from orchestrator.stack.ports import free_port
from orchestrator.stack.postgres import EmbeddedPostgres
from orchestrator.stack.triton import TritonServer
from tests.conftest import REPO_ROOT
from tests.integration.conftest import LOG_DIR, postgres, stack_dir, triton
from tests.speech import speak_pcm16

__all__ = ["postgres", "stack_dir", "triton"]  # the integration tier's fixtures, reused as they are

ARTIFACTS = REPO_ROOT / "build" / "e2e"
UI_OUT = REPO_ROOT / "ui" / "out"
CHROMIUM = os.environ.get("VOICEBOT_E2E_CHROMIUM", "/usr/bin/chromium")
QUESTION = "Where does the local stack keep its logs?"
SAMPLE_RATE = 16_000
LEAD_SILENCE_S = 0.8  # the file starts playing when the page opens the microphone
TAIL_SILENCE_S = 0.6
GATEWAY_READY_S = 120.0
# Short answers keep the suite's run time down on CPU; still long enough to barge in mid-answer.
ANSWER_MAX_TOKENS = 80
BASE_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP: dict[str, Any] = {"viewport": {"width": 1280, "height": 800}}
PHONE: dict[str, Any] = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
}


@dataclass(frozen=True)
class Speech:
    wav: Path
    duration_ms: float
    text: str


@pytest.fixture(scope="session")
def artifacts() -> Path:
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def ui_out() -> Path:
    """The static export, built (incrementally) so a test never runs a stale UI."""
    if shutil.which("node") is None and (UI_OUT / "index.html").is_file():
        return UI_OUT
    subprocess.run([str(REPO_ROOT / "scripts" / "build-ui.sh"), "build"], check=True)
    assert (UI_OUT / "index.html").is_file(), "scripts/build-ui.sh did not produce ui/out/index.html"
    return UI_OUT


@pytest.fixture(scope="session")
def speech(artifacts: Path) -> Speech:
    """The question as a WAV for Chromium's fake microphone: silence, espeak-ng, silence."""
    pcm = speak_pcm16(QUESTION)
    lead = b"\x00\x00" * int(LEAD_SILENCE_S * SAMPLE_RATE)
    tail = b"\x00\x00" * int(TAIL_SILENCE_S * SAMPLE_RATE)
    audio = lead + pcm + tail
    path = artifacts / "question.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(audio)
    return Speech(path, len(audio) / 2 / SAMPLE_RATE * 1000, QUESTION)


@pytest.fixture(scope="session")
def gateway(postgres: EmbeddedPostgres, triton: TritonServer, ui_out: Path) -> Iterator[GatewayProcess]:
    """The gateway in dev mode serving ui/out, with docs/ ingested. Tests may stop and restart it."""

    async def prepare() -> None:
        await migrate(postgres.dsn)
        embedder = TritonEmbedder(triton.grpc_url)
        try:
            await ingest_paths(postgres.dsn, embedder, [REPO_ROOT / "docs"])
        finally:
            await embedder.close()

    asyncio.run(prepare())
    server = GatewayProcess(
        host="127.0.0.1",
        port=free_port(),
        env={
            "VOICEBOT_DEV_MODE": "true",
            "VOICEBOT_DATABASE_URL": postgres.dsn,
            "VOICEBOT_TRITON_URL": triton.grpc_url,
            "VOICEBOT_UI_DIR": str(ui_out),
            "VOICEBOT_LOG_FORMAT": "text",
            "VOICEBOT_LLM_MAX_TOKENS": str(ANSWER_MAX_TOKENS),
            # Other work may share these two cores: a slow first token is not what is tested here.
            "VOICEBOT_TRITON_TIMEOUT_S": "180",
        },
        log_dir=LOG_DIR,
    )
    server.start()
    try:
        server.wait_ready(GATEWAY_READY_S)
        yield server
    finally:
        server.stop()


@pytest.fixture
def live_gateway(gateway: GatewayProcess) -> GatewayProcess:
    """The gateway, started again if an earlier test stopped it and failed before restarting it."""
    if not gateway.is_ready():
        try:
            gateway.check_alive()
        except Exception:
            gateway.start()
        gateway.wait_ready(GATEWAY_READY_S)
    return gateway


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


def launch(playwright: Playwright, *extra: str) -> Browser:
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=[*BASE_FLAGS, *extra])


def fake_microphone(wav: Path) -> list[str]:
    """Auto-accept the permission prompt and feed the microphone from `wav`, once (`%noloop`)."""
    return [
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}%noloop",
    ]


@pytest.fixture(scope="session")
def browser(playwright: Playwright, speech: Speech) -> Iterator[Browser]:
    browser = launch(playwright, *fake_microphone(speech.wav))
    yield browser
    browser.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def _failed(request: pytest.FixtureRequest) -> bool:
    return any(
        getattr(request.node, f"report_{when}", None) is not None
        and getattr(request.node, f"report_{when}").failed
        for when in ("setup", "call")
    )


@dataclass
class Contexts:
    """Opens browser contexts for one test; traces every one, keeps traces only on failure."""

    browser: Browser
    playwright: Playwright
    artifacts: Path
    name: str
    opened: list[tuple[str, BrowserContext]] = field(default_factory=list)
    launched: list[Browser] = field(default_factory=list)

    def launch(self, *flags: str) -> Browser:
        """Another Chromium with other flags (closed after the test, after its contexts)."""
        browser = launch(self.playwright, *flags)
        self.launched.append(browser)
        return browser

    def new(self, label: str = "desktop", *, browser: Browser | None = None) -> BrowserContext:
        settings: dict[str, Any] = PHONE if label == "phone" else DESKTOP
        context = (browser or self.browser).new_context(**settings)
        context.set_default_timeout(30_000)
        context.tracing.start(screenshots=True, snapshots=True, sources=False)
        self.opened.append((label, context))
        return context

    def page(self, label: str = "desktop") -> Page:
        return self.new(label).new_page()

    def close(self, failed: bool) -> None:
        for i, (label, context) in enumerate(self.opened):
            stem = f"{self.name}-{label}-{i}"
            if failed:
                for j, page in enumerate(context.pages):
                    try:
                        page.screenshot(
                            path=str(self.artifacts / "failures" / f"{stem}-{j}.png"), full_page=True
                        )
                    except Exception as e:  # a crashed page: the trace still tells
                        print(f"no failure screenshot for {stem}: {e}")
                context.tracing.stop(path=str(self.artifacts / "traces" / f"{stem}.zip"))
            else:
                context.tracing.stop()
            context.close()
        for browser in self.launched:
            browser.close()


@pytest.fixture
def contexts(
    browser: Browser, playwright: Playwright, artifacts: Path, request: pytest.FixtureRequest
) -> Iterator[Contexts]:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    opened = Contexts(browser, playwright, artifacts, name)
    yield opened
    opened.close(_failed(request))
