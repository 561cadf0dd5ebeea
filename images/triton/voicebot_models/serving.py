"""Helpers shared by the Triton ``model.py`` files: config parameters and input validation.

Pure Python (no ``triton_python_backend_utils``), so unit tests exercise them directly. Each
validator raises :class:`InputError` with a message meant for the client; the models turn it into
a ``pb_utils.TritonError`` in the response.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt


class InputError(ValueError):
    """A request input is invalid; the message is returned to the client as the Triton error."""


class ModelParameters:
    """The ``parameters {}`` of a model config, with typed getters and defaults."""

    def __init__(self, model_config: Mapping[str, Any]) -> None:
        raw = model_config.get("parameters", {}) or {}
        self._values: dict[str, str] = {
            str(k): str(v.get("string_value", "")) if isinstance(v, Mapping) else str(v)
            for k, v in raw.items()
        }

    def get_str(self, key: str, default: str) -> str:
        """A string parameter; empty or absent gives ``default``."""
        value = self._values.get(key, "")
        return value if value != "" else default

    def get_int(self, key: str, default: int) -> int:
        """An integer parameter."""
        value = self._values.get(key, "")
        try:
            return int(value) if value != "" else default
        except ValueError:
            raise ValueError(f"model parameter {key!r} must be an integer, got {value!r}") from None

    def get_float(self, key: str, default: float) -> float:
        """A float parameter."""
        value = self._values.get(key, "")
        try:
            return float(value) if value != "" else default
        except ValueError:
            raise ValueError(f"model parameter {key!r} must be a number, got {value!r}") from None

    def get_bool(self, key: str, default: bool) -> bool:
        """A boolean parameter (true/false, 1/0, yes/no)."""
        value = self._values.get(key, "").strip().lower()
        if value == "":
            return default
        if value in ("1", "true", "yes", "on"):
            return True
        if value in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"model parameter {key!r} must be a boolean, got {value!r}")


def decode_text(value: object, name: str, max_chars: int, *, allow_empty: bool = False) -> str:
    """A TYPE_STRING element as text: UTF-8, within ``max_chars``, and (unless allowed) not blank."""
    if isinstance(value, bytes | bytearray | np.bytes_):
        try:
            text = bytes(value).decode("utf-8")
        except UnicodeDecodeError as e:
            raise InputError(f"input '{name}' is not valid UTF-8 (byte {e.start})") from None
    elif isinstance(value, str):
        text = value
    else:
        raise InputError(f"input '{name}' must be a string")
    if len(text) > max_chars:
        raise InputError(f"input '{name}' is {len(text)} characters long; the limit is {max_chars}")
    if not allow_empty and not text.strip():
        raise InputError(f"input '{name}' is empty")
    return text


def single_text(
    array: npt.NDArray[Any] | None, name: str, max_chars: int, *, allow_empty: bool = False
) -> str:
    """The one string of a ``[1]`` TYPE_STRING input; ``None`` (absent) reads as empty."""
    if array is None:
        if allow_empty:
            return ""
        raise InputError(f"input '{name}' is required")
    flat = array.reshape(-1)
    if flat.size != 1:
        raise InputError(f"input '{name}' must hold exactly one string, got {flat.size}")
    return decode_text(flat[0], name, max_chars, allow_empty=allow_empty)


def single_scalar(array: npt.NDArray[Any] | None, name: str, default: float) -> float:
    """The one number of a ``[1]`` numeric input; ``None`` gives ``default``."""
    if array is None:
        return default
    flat = array.reshape(-1)
    if flat.size != 1:
        raise InputError(f"input '{name}' must hold exactly one value, got {flat.size}")
    value = float(flat[0])
    if not np.isfinite(value):
        raise InputError(f"input '{name}' must be a finite number")
    return value


def single_bool(array: npt.NDArray[Any] | None, name: str, default: bool) -> bool:
    """The one value of a ``[1]`` TYPE_BOOL input; ``None`` gives ``default``."""
    if array is None:
        return default
    flat = array.reshape(-1)
    if flat.size != 1:
        raise InputError(f"input '{name}' must hold exactly one value, got {flat.size}")
    return bool(flat[0])


def parse_sampling_parameters(raw: str, *, max_tokens_limit: int, default_max_tokens: int) -> dict[str, Any]:
    """Validate the vLLM-style ``sampling_parameters`` JSON.

    Accepts ``temperature``, ``top_p``, ``max_tokens``, ``stop`` (a string or a list of strings),
    ``top_k``, ``seed``, ``repetition_penalty``, ``presence_penalty`` and ``frequency_penalty``; other
    vLLM keys are ignored so a gateway written for vLLM works unchanged. Returns normalised values.
    """
    params: dict[str, Any] = {}
    if raw.strip():
        try:
            params = json.loads(raw)
        except json.JSONDecodeError as e:
            raise InputError(f"sampling_parameters is not valid JSON: {e.msg}") from None
        if not isinstance(params, dict):
            raise InputError("sampling_parameters must be a JSON object")

    def number(key: str, default: float, low: float, high: float) -> float:
        value = params.get(key, default)
        if isinstance(value, str):  # vLLM's backend accepts numbers sent as strings
            try:
                value = float(value)
            except ValueError:
                raise InputError(f"sampling_parameters.{key} must be a number") from None
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= float(value) <= high:
            raise InputError(f"sampling_parameters.{key} must be a number in [{low}, {high}]")
        return float(value)

    max_tokens = number("max_tokens", default_max_tokens, 1, max_tokens_limit)
    stop = params.get("stop") or []
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop) or len(stop) > 16:
        raise InputError("sampling_parameters.stop must be a string or a list of up to 16 non-empty strings")
    seed = params.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise InputError("sampling_parameters.seed must be an integer")
    return {
        "temperature": number("temperature", 0.7, 0.0, 2.0),
        "top_p": number("top_p", 1.0, 0.0, 1.0) or 1.0,
        "top_k": int(number("top_k", 0, -1, 1000)),
        "max_tokens": int(max_tokens),
        "stop": stop,
        "seed": seed,
        "repeat_penalty": number("repetition_penalty", 1.0, 0.0, 10.0),
        "presence_penalty": number("presence_penalty", 0.0, -2.0, 2.0),
        "frequency_penalty": number("frequency_penalty", 0.0, -2.0, 2.0),
    }
