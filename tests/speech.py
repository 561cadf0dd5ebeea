"""Speech made at test time with espeak-ng (installed by `make tools-integration`), as 16 kHz PCM16."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import numpy as np


def _raw_pcm16(rate: int) -> list[str]:
    """sox's description of raw PCM16 little-endian mono at `rate` (before a file name or `-`)."""
    return ["-t", "raw", "-r", str(rate), "-e", "signed", "-b", "16", "-c", "1", "-L"]


def speak_pcm16(text: str, *, rate_wpm: int = 150) -> bytes:
    """`text` spoken by espeak-ng, resampled by sox to 16 kHz mono PCM16 (raw, little-endian).

    `-D`: no dither, so the same text always gives the same samples (and the same transcript)."""
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", str(rate_wpm), "-w", str(wav), text], check=True)
        return subprocess.run(
            ["sox", "-D", str(wav), *_raw_pcm16(16000), "-"], check=True, capture_output=True
        ).stdout


def resample_pcm16(pcm: bytes, rate: int) -> bytes:
    """Raw PCM16 mono at `rate` → 16 kHz, by sox: a resampler independent of the code under test."""
    return subprocess.run(
        ["sox", *_raw_pcm16(rate), "-", *_raw_pcm16(16000), "-"], input=pcm, capture_output=True, check=True
    ).stdout


def rms(pcm: bytes) -> float:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    return float(np.sqrt(np.mean(samples**2))) if samples.size else 0.0
