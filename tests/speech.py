"""Speech made at test time with espeak-ng (installed by `make tools-integration`), as 16 kHz PCM16."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import numpy as np


def _raw_pcm16(rate: int) -> list[str]:
    """sox's description of raw PCM16 little-endian mono at `rate` (before a file name or `-`)."""
    return ["-t", "raw", "-r", str(rate), "-e", "signed", "-b", "16", "-c", "1", "-L"]


def speak_pcm16(text: str, *, rate_wpm: int = 150, voice: str = "en-us") -> bytes:
    """`text` spoken by espeak-ng in `voice` (e.g. en-us, en-gb, en-us+f3), resampled by sox to
    16 kHz mono PCM16 (raw, little-endian).

    `-D`: no dither, so the same text always gives the same samples (and the same transcript)."""
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(rate_wpm), "-w", str(wav), text], check=True)
        return subprocess.run(
            ["sox", "-D", str(wav), *_raw_pcm16(16000), "-"], check=True, capture_output=True
        ).stdout


def resample_pcm16(pcm: bytes, rate: int) -> bytes:
    """Raw PCM16 mono at `rate` → 16 kHz, by sox: a resampler independent of the code under test."""
    return subprocess.run(
        ["sox", *_raw_pcm16(rate), "-", *_raw_pcm16(16000), "-"], input=pcm, capture_output=True, check=True
    ).stdout


def with_noise(pcm: bytes, snr_db: float, *, kind: str = "pinknoise") -> bytes:
    """16 kHz PCM16 `pcm` with sox-made background noise mixed in at `snr_db` (speech RMS over
    noise RMS, whole clip). sox `-R` seeds its generator the same way every run, so the same
    clip always gets the same noise and the figures stay reproducible."""
    seconds = len(pcm) / (2 * 16000)
    noise = subprocess.run(
        ["sox", "-R", "-n", *_raw_pcm16(16000), "-", "synth", f"{seconds:.4f}", kind, "vol", "0.5"],
        check=True,
        capture_output=True,
    ).stdout[: len(pcm)]
    gain = rms(pcm) / (max(rms(noise), 1e-9) * 10 ** (snr_db / 20))
    with tempfile.TemporaryDirectory() as tmp:
        speech_path, noise_path = Path(tmp) / "speech.raw", Path(tmp) / "noise.raw"
        speech_path.write_bytes(pcm)
        noise_path.write_bytes(noise)
        # -m mixes without sox's default 1/n scaling of each input (-v 1 / -v gain), -D: no dither.
        return subprocess.run(
            ["sox", "-R", "-D", "-m", *_raw_pcm16(16000), "-v", "1", str(speech_path),
             *_raw_pcm16(16000), "-v", f"{gain:.6f}", str(noise_path), *_raw_pcm16(16000), "-"],
            check=True,
            capture_output=True,
        ).stdout  # fmt: skip


def rms(pcm: bytes) -> float:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    return float(np.sqrt(np.mean(samples**2))) if samples.size else 0.0
