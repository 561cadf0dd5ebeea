"""Prometheus metrics of the gateway. The names are a contract with the chart's alerts and
dashboards (charts/voicebot) and docs/operations.md: rename only together with them."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Stages of a voice turn, as timed in `turn.done` and in traces.
STAGES = ("asr_final", "retrieval", "llm_first_token", "tts_first_audio", "turn_first_audio", "turn_total")
_STAGE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 2.5, 4.0, 6.0, 10.0, 20.0)
_HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """One registry per app, so tests can build several apps in one process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.stage_duration = Histogram(
            "voicebot_stage_duration_seconds",
            "Duration of each stage of a turn.",
            ["stage"],
            buckets=_STAGE_BUCKETS,
            registry=r,
        )
        self.turns = Counter("voicebot_turns", "Turns finished, by outcome.", ["outcome"], registry=r)
        self.errors = Counter(
            "voicebot_errors", "Errors sent to clients, by stable code.", ["code"], registry=r
        )
        self.barge_ins = Counter("voicebot_barge_ins", "Answers interrupted by the user.", registry=r)
        self.speculations = Counter(
            "voicebot_speculations",
            "Speculative prefills while the user speaks (prefill), and turns that used one (hit) or not (miss).",
            ["event"],
            registry=r,
        )
        self.declines = Counter(
            "voicebot_declines",
            "Answers declined: the documents do not answer, by reason.",
            ["reason"],
            registry=r,
        )
        self.turn_write_failures = Counter(
            "voicebot_turn_write_failures",
            "Finished turns that could not be recorded in Postgres.",
            registry=r,
        )
        self.open_sessions = Gauge("voicebot_open_sessions", "Voice sessions currently open.", registry=r)
        self.dependency_up = Gauge(
            "voicebot_dependency_up",
            "Whether a dependency answered its last check.",
            ["dependency"],
            registry=r,
        )
        self.http_requests = Counter(
            "voicebot_http_requests", "HTTP requests served.", ["route", "method", "status"], registry=r
        )
        self.http_duration = Histogram(
            "voicebot_http_request_duration_seconds",
            "HTTP request latency.",
            ["route", "method", "status"],
            buckets=_HTTP_BUCKETS,
            registry=r,
        )
