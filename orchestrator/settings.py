"""One settings object for every Voicebot command: the gateway, the local stack, ingest and the CLI.

Values come from `VOICEBOT_*` environment variables, a `.env` file, or files in a secrets
directory (a mounted Kubernetes Secret: one file per setting, named like the field). Every
setting is documented in docs/configuration.md; keep the two in step.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
)

from orchestrator.endpointing import EndpointingSettings

_DEFAULT_SECRETS_DIR = Path("/run/secrets/voicebot")
# Values that people copy from examples; never accepted as a real secret.
_PLACEHOLDER_SECRETS = {"", "change-me", "changeme", "secret", "password", "voicebot", "dev", "test"}
MIN_SECRET_LENGTH = 32


def _secrets_dir() -> Path | None:
    # pydantic-settings warns about a missing secrets_dir; only pass one that exists.
    configured = os.environ.get("VOICEBOT_SECRETS_DIR")
    path = Path(configured) if configured else _DEFAULT_SECRETS_DIR
    return path if path.is_dir() else None


class Settings(BaseSettings):
    """Voicebot configuration. Field names map to `VOICEBOT_<NAME>` environment variables."""

    model_config = SettingsConfigDict(
        env_prefix="VOICEBOT_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Secret files are named by field alone (`auth_secret`, `database_url`), as Secret keys are,
        # and the folder is looked up when settings are built, not when this module is imported.
        secrets = SecretsSettingsSource(settings_cls, secrets_dir=_secrets_dir(), env_prefix="")
        return init_settings, env_settings, dotenv_settings, secrets

    # --- mode -------------------------------------------------------------------------
    dev_mode: bool = Field(
        default=False,
        description="Local development: anonymous access from loopback, generated secrets. Never in a cluster.",
    )

    # --- gateway ----------------------------------------------------------------------
    host: str = Field(default="127.0.0.1", description="Address the gateway listens on.")
    port: int = Field(default=8080, ge=1, le=65535, description="Port the gateway listens on.")
    ui_dir: Path | None = Field(
        default=None, description="Static UI export to serve at /; default ui/out when it exists."
    )
    drain_timeout_s: float = Field(
        default=25.0,
        ge=0,
        description="On shutdown, how long turns in flight may take to finish before sockets close.",
    )
    cors_origins: list[str] = Field(default_factory=list, description="Extra allowed browser origins.")
    trusted_proxies: list[str] = Field(
        default_factory=lambda: ["127.0.0.1"],
        description="Addresses whose X-Forwarded-For is believed (the ingress), or ['*'].",
    )
    api_docs: bool | None = Field(
        default=None, description="Serve /docs, /redoc and /openapi.json; default: only in dev mode."
    )
    metrics_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="Serve /metrics on this port too, without auth (0: none); else /metrics needs a key outside dev mode.",
    )

    # --- model server (Triton) ------------------------------------------------------------
    triton_url: str = Field(
        default="127.0.0.1:8001",
        description="Triton gRPC endpoint host:port, or dns:///host:port to balance over every address of the name (a headless Service).",
    )
    triton_timeout_s: float = Field(default=30.0, gt=0, description="Per-call timeout for model requests.")
    llm_prompt_format: Literal["chatml", "llama3"] = Field(
        default="chatml", description="Chat template the gateway applies before calling the `llm` model."
    )
    llm_max_tokens: int = Field(default=160, ge=1, le=8192, description="Answer length limit in tokens.")
    passage_chars: int = Field(
        default=800, ge=100, le=8000, description="Characters of each retrieved passage given to the LLM."
    )
    speculation: bool = Field(
        default=True,
        description="Retrieve and prefill the LLM on partial transcripts while the user speaks.",
    )
    tts_voice: str = Field(default="", description="Default TTS voice; empty means the model's default.")

    # --- database ---------------------------------------------------------------------
    database_url: SecretStr | None = Field(
        default=None,
        description="PostgreSQL DSN of the application's login (postgresql://user:pass@host:5432/db). Set by the local stack when unset.",
    )
    migration_database_url: SecretStr | None = Field(
        default=None,
        description="DSN of the schema's owner, used by `voicebot db migrate` only; unset: database_url migrates.",
    )
    db_pool_max: int = Field(
        default=10, ge=1, le=200, description="Connection pool size per gateway process."
    )

    # --- security ---------------------------------------------------------------------
    auth_secret: SecretStr | None = Field(
        default=None,
        description=f"Key that signs browser session tokens; at least {MIN_SECRET_LENGTH} characters.",
    )
    session_token_ttl_s: int = Field(default=900, ge=30, le=86400, description="Lifetime of a session token.")
    bootstrap_api_key: SecretStr | None = Field(
        default=None,
        description="An API key accepted besides the stored ones, for automation (the chart's helm test).",
    )
    auth_failures_per_minute: int = Field(
        default=30, ge=1, description="Failed authentications per client address a minute before 429."
    )
    retention_days: int = Field(
        default=30,
        ge=0,
        description="Stored conversations are deleted this many days after their last turn (0: kept).",
    )

    # --- limits -----------------------------------------------------------------------
    max_turn_audio_s: float = Field(default=60.0, gt=0, description="Longest audio accepted for one turn.")
    max_text_chars: int = Field(default=2000, ge=1, description="Longest typed question accepted.")
    max_upload_bytes: int = Field(
        default=20 * 1024 * 1024,
        ge=1024,
        description="Largest request body of an upload (documents, audio transcription), in bytes.",
    )
    max_json_bytes: int = Field(
        default=256 * 1024, ge=1024, description="Largest request body of every other route, in bytes."
    )
    rate_limit_per_minute: int = Field(default=60, ge=1, description="Requests per API key per minute.")
    max_sessions_per_key: int = Field(default=4, ge=1, description="Concurrent voice sessions per API key.")

    # --- hands-free turn taking (orchestrator/endpointing.py; docs/handsfree.md) -------------------
    handsfree: bool = Field(
        default=True, description="Offer hands-free sessions: the gateway's VAD takes the turns."
    )
    vad_speech_threshold: float = Field(
        default=0.5, gt=0, lt=1, description="Silero probability at or above which a window is speech."
    )
    vad_silence_threshold: float = Field(
        default=0.35, gt=0, lt=1, description="Probability below which a window is silence (hysteresis)."
    )
    turn_min_speech_s: float = Field(
        default=0.25, gt=0, le=5, description="Speech that starts a turn while the bot is silent."
    )
    turn_hangover_s: float = Field(default=0.7, gt=0, le=5, description="Silence that ends a turn.")
    turn_unfinished_extension_s: float = Field(
        default=0.6, ge=0, le=5, description="Silence added when the partial transcript sounds unfinished."
    )
    turn_finished_hangover_s: float = Field(
        default=0.7, gt=0, le=5, description="Silence that ends a turn whose words so far read as finished."
    )
    turn_early_final_s: float = Field(
        default=0.25, ge=0, le=5, description="Silence after which the final transcript is started early."
    )
    barge_in_min_speech_s: float = Field(
        default=0.4, gt=0, le=5, description="Speech that interrupts the answer's audio."
    )
    echo_correlation: float = Field(
        default=0.6, ge=-1, le=1, description="Envelope correlation at which input may be the bot's echo."
    )
    echo_excess_db: float = Field(
        default=3.0, ge=0, description="Input this much louder than the predicted echo is someone speaking."
    )
    echo_max_lag_s: float = Field(
        default=0.8, ge=0, le=3, description="Longest played-to-heard delay the echo guard searches."
    )

    # --- document parsing (ingest.parsing: worker processes, per-file limits) -----------------
    parse_workers: int = Field(default=1, ge=1, le=64, description="Parsing worker processes per gateway.")
    parse_cpu_s: float = Field(default=30.0, gt=0, description="CPU time one file may take to parse.")
    parse_wall_s: float = Field(default=60.0, gt=0, description="Wall-clock time one file may take to parse.")
    parse_memory_mb: int = Field(default=1024, ge=256, description="Address space of a parsing worker, MiB.")
    parse_max_text_chars: int = Field(default=2_000_000, ge=1000, description="Text extracted from one file.")
    parse_max_pages: int = Field(default=2000, ge=1, description="Pages of one PDF.")

    # --- local stack ------------------------------------------------------------------
    state_dir: Path = Field(
        default=Path(".voicebot"), description="Local stack state: Postgres data, Triton backends, logs."
    )
    postgres_port: int = Field(default=54329, ge=1, le=65535, description="Local embedded Postgres port.")
    triton_http_port: int = Field(default=8000, ge=1, le=65535, description="Local Triton HTTP port.")
    triton_grpc_port: int = Field(default=8001, ge=1, le=65535, description="Local Triton gRPC port.")
    triton_metrics_port: int = Field(default=8002, ge=1, le=65535, description="Local Triton metrics port.")
    model_repository: Path = Field(
        default=Path("images/triton/models"), description="Triton model repository served locally."
    )
    model_profile: str = Field(
        default="", description="Local model profile (docs/models.md); empty means the manifest's default."
    )
    startup_timeout_s: float = Field(
        default=300.0, gt=0, description="How long a component may take to be ready."
    )
    docs_dir: Path = Field(
        default=Path("docs"), description="Folder `make up` ingests as the default corpus."
    )

    # --- observability ------------------------------------------------------------------
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Log threshold."
    )
    log_format: Literal["json", "text"] = Field(
        default="json", description="json for machines, text for people."
    )
    otel_exporter: Literal["none", "console", "otlp"] = Field(default="none", description="Trace exporter.")
    otel_endpoint: str = Field(default="", description="OTLP endpoint when otel_exporter=otlp.")

    # The gateway signs tokens; clients that only reach the store and Triton do not (ClientSettings).
    requires_secrets: ClassVar[bool] = True

    @model_validator(mode="after")
    def _refuse_weak_secrets(self) -> Settings:
        # A secret that is set is checked in dev mode too: a weak bootstrap key on a laptop is
        # still a key anyone can guess. Outside dev mode the signing secret is required.
        # An empty bootstrap key means none. Clients that sign nothing are not asked (ClientSettings).
        if not self.requires_secrets:
            return self
        for name, value in (("AUTH_SECRET", self.auth_secret), ("BOOTSTRAP_API_KEY", self.bootstrap_api_key)):
            secret = value.get_secret_value() if value is not None else ""
            if not secret and (self.dev_mode or name == "BOOTSTRAP_API_KEY"):
                continue
            if weak_secret(secret):
                raise ValueError(
                    f"VOICEBOT_{name} must be set to a random value of at least "
                    f"{MIN_SECRET_LENGTH} characters (or run with VOICEBOT_DEV_MODE=true on a laptop)"
                )
        return self

    @model_validator(mode="after")
    def _check_endpointing(self) -> Settings:
        self.endpointing()  # raises ValueError on thresholds that contradict each other
        return self

    def endpointing(self) -> EndpointingSettings:
        """The hands-free thresholds as the turn detector and echo guard take them."""
        return EndpointingSettings(
            speech_threshold=self.vad_speech_threshold,
            silence_threshold=self.vad_silence_threshold,
            min_speech_s=self.turn_min_speech_s,
            barge_in_min_speech_s=self.barge_in_min_speech_s,
            hangover_s=self.turn_hangover_s,
            unfinished_extension_s=self.turn_unfinished_extension_s,
            early_final_s=self.turn_early_final_s,
            finished_hangover_s=self.turn_finished_hangover_s,
            echo_correlation=self.echo_correlation,
            echo_excess_db=self.echo_excess_db,
            echo_max_lag_s=self.echo_max_lag_s,
        )

    @property
    def docs_served(self) -> bool:
        """Whether the OpenAPI pages are served: they map every route for a visitor, so only
        where asked for, or in dev mode."""
        return self.dev_mode if self.api_docs is None else self.api_docs


def weak_secret(secret: str) -> bool:
    """Too short, or a placeholder people copy from examples."""
    return secret.lower() in _PLACEHOLDER_SECRETS or len(secret) < MIN_SECRET_LENGTH


class ClientSettings(Settings):
    """The settings of the command-line clients (`voicebot ingest`, `voicebot db migrate`): they
    reach the store and Triton like the gateway, but issue no tokens, so the gateway's secrets
    are not required of them. Unset, every address is the local stack's (`make up`)."""

    requires_secrets: ClassVar[bool] = False


def get_client_settings() -> Settings:
    return ClientSettings()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings; tests build their own `Settings(...)` instead."""
    return Settings()
