"""Voicebot gateway: voice sessions, the turn pipeline, APIs, the local stack and the CLI."""

__version__ = "0.1.0"
