from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from orchestrator.settings import MIN_SECRET_LENGTH, Settings

STRONG = "s" * MIN_SECRET_LENGTH


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VOICEBOT_AUTH_SECRET", raising=False)
    monkeypatch.delenv("VOICEBOT_DEV_MODE", raising=False)
    monkeypatch.delenv("VOICEBOT_SECRETS_DIR", raising=False)


def test_production_refuses_a_missing_secret() -> None:
    with pytest.raises(ValidationError, match="VOICEBOT_AUTH_SECRET"):
        Settings()


@pytest.mark.parametrize("secret", ["change-me", "secret", "short-but-random-x"])
def test_production_refuses_placeholders_and_short_secrets(secret: str) -> None:
    with pytest.raises(ValidationError, match="at least"):
        Settings(auth_secret=secret)  # type: ignore[arg-type]


def test_production_accepts_a_long_secret_and_hides_it() -> None:
    settings = Settings(auth_secret=STRONG)  # type: ignore[arg-type]
    assert settings.auth_secret is not None
    assert STRONG not in repr(settings)


def test_dev_mode_needs_no_secret() -> None:
    assert Settings(dev_mode=True).auth_secret is None


def test_environment_variables_use_the_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICEBOT_DEV_MODE", "true")
    monkeypatch.setenv("VOICEBOT_PORT", "9123")
    monkeypatch.setenv("VOICEBOT_TRITON_URL", "triton:8001")
    settings = Settings()
    assert (settings.port, settings.triton_url, settings.dev_mode) == (9123, "triton:8001", True)


def test_invalid_port_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICEBOT_PORT", "70000")
    with pytest.raises(ValidationError):
        Settings(dev_mode=True)


def test_secrets_dir_files_are_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "auth_secret").write_text(STRONG)
    monkeypatch.setenv("VOICEBOT_SECRETS_DIR", str(tmp_path))
    settings = Settings()
    assert settings.auth_secret is not None
    assert settings.auth_secret.get_secret_value() == STRONG


def test_environment_wins_over_secret_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "port").write_text("9000")
    monkeypatch.setenv("VOICEBOT_SECRETS_DIR", str(tmp_path))
    monkeypatch.setenv("VOICEBOT_PORT", "9001")
    assert Settings(dev_mode=True).port == 9001


def test_command_line_clients_need_no_gateway_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    # `voicebot ingest DIR` beside a running `make up`: no VOICEBOT_DEV_MODE, no secret exported.
    for name in ("VOICEBOT_DEV_MODE", "VOICEBOT_AUTH_SECRET"):
        monkeypatch.delenv(name, raising=False)
    from orchestrator.settings import ClientSettings

    settings = ClientSettings()
    assert (settings.postgres_port, settings.triton_url) == (54329, "127.0.0.1:8001")  # the local stack


def test_a_settings_error_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from orchestrator.cli import main

    monkeypatch.setenv("VOICEBOT_TRITON_TIMEOUT_S", "soon")
    assert main(["ingest", "/nonexistent"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert err.startswith("error: invalid settings: VOICEBOT_TRITON_TIMEOUT_S: ")


@pytest.mark.parametrize("dev_mode", [False, True])
@pytest.mark.parametrize("key", ["a", "changeme", "x" * (MIN_SECRET_LENGTH - 1)])
def test_a_weak_bootstrap_key_is_refused_in_every_mode(dev_mode: bool, key: str) -> None:
    with pytest.raises(ValidationError, match="VOICEBOT_BOOTSTRAP_API_KEY") as refused:
        Settings(dev_mode=dev_mode, auth_secret=STRONG, bootstrap_api_key=key)  # type: ignore[arg-type]
    if len(key) > 1:  # the message the CLI prints (`voicebot serve`) never echoes the key
        assert all(key not in str(e["msg"]) for e in refused.value.errors())


def test_an_empty_bootstrap_key_means_none_and_a_weak_dev_secret_is_refused() -> None:
    assert Settings(auth_secret=STRONG, bootstrap_api_key="").bootstrap_api_key is not None  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="VOICEBOT_AUTH_SECRET"):
        Settings(dev_mode=True, auth_secret="a")  # type: ignore[arg-type]


def test_api_docs_follow_dev_mode_unless_set() -> None:
    assert Settings(dev_mode=True).docs_served
    assert not Settings(auth_secret=STRONG).docs_served  # type: ignore[arg-type]
    assert Settings(auth_secret=STRONG, api_docs=True).docs_served  # type: ignore[arg-type]
