"""WAV in and out for the HTTP audio APIs, in numpy.

In: a RIFF/WAVE file with PCM (8-, 16-, 24- or 32-bit integer) or IEEE float (32- or 64-bit)
samples, any rate, any channel count, becomes the 16 kHz mono PCM16 the `asr` model takes:
channels averaged, then resampled with a windowed-sinc (Kaiser) low-pass filter. Anything else
is refused with a message that says what we accept; other containers are named when we
recognise them (MP3, Ogg, FLAC, MP4, WebM).

Out: a WAV header for a stream whose length is not known yet (sizes 0xFFFFFFFF, as streaming
encoders write them), followed by the PCM16 chunks as the `tts` model produces them.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from orchestrator.errors import BadAudio, TooLarge, UnsupportedAudio

TARGET_RATE = 16_000
ACCEPTED = (
    "WAV (RIFF) with PCM 8/16/24/32-bit or float 32/64-bit samples, mono or multi-channel, any sample rate"
)

_PCM, _FLOAT, _EXTENSIBLE = 0x0001, 0x0003, 0xFFFE
# WAVE format tags people meet, so the refusal can name what was sent.
_KNOWN_TAGS = {
    0x0002: "MS ADPCM",
    0x0006: "A-law",
    0x0007: "µ-law",
    0x0011: "IMA ADPCM",
    0x0031: "GSM 6.10",
    0x0055: "MP3",
}
_STREAMING_SIZE = 0xFFFFFFFF
_MIN_RATE, _MAX_RATE = 1_000, 768_000
_MAX_CHANNELS = 32

# Resampling filter: zero crossings of the sinc on each side (at the lower rate), the pass band
# as a fraction of the lower Nyquist frequency, the Kaiser window's beta, and at most this many
# precomputed fractional phases (beyond it, positions are rounded to 1/_MAX_PHASES of a sample).
_ZERO_CROSSINGS = 16
_ROLLOFF = 0.95
_KAISER_BETA = 8.6
_MAX_PHASES = 1024
_BLOCK_ELEMENTS = 1 << 21  # bound on the temporary gather per block (outputs x taps)


@dataclass(frozen=True)
class WavFormat:
    """What a WAV file holds: its sample encoding, layout and length in frames."""

    encoding: Literal["pcm", "float"]
    bits: int
    channels: int
    sample_rate: int
    frames: int

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate


@dataclass(frozen=True)
class Wav:
    format: WavFormat
    data: bytes  # the sample bytes, whole frames only


def sniff_container(data: bytes) -> str | None:
    """A readable name for the container of `data`, when its first bytes say; None if unknown."""
    head = data[:16]
    if head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
        return "WAV"
    if head[:3] == b"ID3" or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "MP3 (or AAC/ADTS)"
    if head[:4] == b"OggS":
        return "Ogg (Vorbis/Opus)"
    if head[:4] == b"fLaC":
        return "FLAC"
    if head[4:8] == b"ftyp":
        return "MP4/M4A"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "WebM/Matroska"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "AIFF"
    return None


def read_wav(data: bytes) -> Wav:
    """Parse a WAV container; raises UnsupportedAudio (not WAV, or an encoding we do not decode)
    or BadAudio (a damaged WAV)."""
    container = sniff_container(data)
    if container != "WAV":
        what = f"{container} audio" if container else "this file (not a WAV file)"
        raise UnsupportedAudio(f"cannot decode {what}; accepted: {ACCEPTED}")
    fmt_body: bytes | None = None
    sample_bytes: bytes | None = None
    offset = 12
    while offset + 8 <= len(data):
        chunk_id = data[offset : offset + 4]
        (size,) = struct.unpack_from("<I", data, offset + 4)
        body_start = offset + 8
        if chunk_id == b"data":
            # Streaming writers leave the size at 0 or 0xFFFFFFFF; a truncated file is short:
            # either way the samples run to the end of the file.
            if size in (0, _STREAMING_SIZE) or body_start + size > len(data):
                size = len(data) - body_start
            sample_bytes = data[body_start : body_start + size]
            break
        if chunk_id == b"fmt ":
            fmt_body = data[body_start : body_start + size]
        offset = body_start + size + (size & 1)  # chunks are padded to an even length
    if fmt_body is None or len(fmt_body) < 16:
        raise BadAudio("damaged WAV: no valid 'fmt ' chunk before the samples")
    if sample_bytes is None:
        raise BadAudio("damaged WAV: no 'data' chunk")
    tag, channels, rate, _, block_align, bits = struct.unpack_from("<HHIIHH", fmt_body)
    if tag == _EXTENSIBLE:
        if len(fmt_body) < 40:
            raise BadAudio("damaged WAV: WAVE_FORMAT_EXTENSIBLE header is too short")
        (tag,) = struct.unpack_from("<H", fmt_body, 24)  # the sub-format GUID starts with the tag
    if tag not in (_PCM, _FLOAT):
        name = _KNOWN_TAGS.get(tag, f"format tag 0x{tag:04x}")
        raise UnsupportedAudio(f"cannot decode {name} samples in a WAV file; accepted: {ACCEPTED}")
    encoding: Literal["pcm", "float"] = "pcm" if tag == _PCM else "float"
    if not 1 <= channels <= _MAX_CHANNELS:
        raise BadAudio(f"damaged WAV: {channels} channels")
    if not _MIN_RATE <= rate <= _MAX_RATE:
        raise BadAudio(f"unusable WAV sample rate {rate} Hz (accepted {_MIN_RATE}-{_MAX_RATE} Hz)")
    width = block_align // channels if block_align % channels == 0 else 0
    allowed = (1, 2, 3, 4) if encoding == "pcm" else (4, 8)
    if width not in allowed or bits > width * 8 or bits == 0:
        raise UnsupportedAudio(
            f"cannot decode {bits}-bit {encoding} samples in {block_align}-byte frames; accepted: {ACCEPTED}"
        )
    frames = len(sample_bytes) // block_align
    return Wav(WavFormat(encoding, width * 8, channels, rate, frames), sample_bytes[: frames * block_align])


def samples(wav: Wav) -> npt.NDArray[np.float32]:
    """The samples as float32 in [-1, 1], shape (frames, channels)."""
    fmt = wav.format
    raw = wav.data
    if fmt.encoding == "float":
        values = np.frombuffer(raw, dtype="<f4" if fmt.bits == 32 else "<f8")
        values = np.clip(np.nan_to_num(values, nan=0.0, posinf=1.0, neginf=-1.0), -1.0, 1.0)
        out = values.astype(np.float32)
    elif fmt.bits == 8:  # 8-bit WAV is unsigned, centred on 128
        out = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif fmt.bits == 16:
        out = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    elif fmt.bits == 24:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        packed = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        signed = np.where(packed >= 1 << 23, packed - (1 << 24), packed)
        out = signed.astype(np.float32) / float(1 << 23)
    else:
        out = (np.frombuffer(raw, dtype="<i4").astype(np.float64) / float(1 << 31)).astype(np.float32)
    return out.reshape(-1, fmt.channels)


def downmix(frames: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Mono: the mean of the channels."""
    if frames.ndim == 1:
        return frames
    if frames.shape[1] == 1:
        return frames[:, 0]
    mono: npt.NDArray[np.float32] = frames.mean(axis=1, dtype=np.float32)
    return mono


def _filter_bank(phases: int, half: int, cutoff: float) -> npt.NDArray[np.float32]:
    """Windowed-sinc taps for each fractional position p/phases, rows normalised to unit DC gain."""
    offsets = np.arange(-half + 1, half + 1)
    dist: npt.NDArray[np.float64] = np.arange(phases)[:, None] / phases - offsets[None, :]
    window = np.i0(_KAISER_BETA * np.sqrt(np.clip(1.0 - (dist / half) ** 2, 0.0, 1.0))) / np.i0(_KAISER_BETA)
    taps = np.asarray(np.sinc(cutoff * dist), dtype=np.float64) * window
    bank: npt.NDArray[np.float32] = (taps / taps.sum(axis=1, keepdims=True)).astype(np.float32)
    return bank


def resample(x: npt.NDArray[np.float32], from_rate: int, to_rate: int) -> npt.NDArray[np.float32]:
    """Band-limited resampling of a mono signal from `from_rate` to `to_rate` (Hz).

    Each output sample is the input convolved with a Kaiser-windowed sinc centred on its exact
    position; the filter's cut-off sits just under the lower of the two Nyquist frequencies, so
    downsampling does not fold high frequencies into the speech band.
    """
    x = np.asarray(x, dtype=np.float32)
    if from_rate == to_rate or x.size == 0:
        return x
    g = math.gcd(from_rate, to_rate)
    up, down = to_rate // g, from_rate // g
    cutoff = _ROLLOFF * min(1.0, to_rate / from_rate)
    half = math.ceil(_ZERO_CROSSINGS / cutoff)
    phases = min(up, _MAX_PHASES)
    bank = _filter_bank(phases, half, cutoff)
    offsets = np.arange(-half + 1, half + 1, dtype=np.int64)
    padded = np.concatenate([np.zeros(half, np.float32), x, np.zeros(half + 1, np.float32)])
    n_out = -(-x.size * up // down)  # ceil
    out = np.empty(n_out, dtype=np.float32)
    block = max(1, _BLOCK_ELEMENTS // offsets.size)
    for start in range(0, n_out, block):
        n = np.arange(start, min(n_out, start + block), dtype=np.int64)
        position = n * down  # in units of 1/up input samples
        base, remainder = position // up, position % up
        if phases == up:
            phase = remainder
        else:  # round to the nearest of the precomputed phases
            phase = (remainder * phases + up // 2) // up
            carry = phase == phases
            base = base + carry
            phase = np.where(carry, 0, phase)
        window = padded[base[:, None] + offsets[None, :] + half]
        out[start : start + n.size] = np.einsum("ij,ij->i", bank[phase], window)
    return out


def to_pcm16(x: npt.NDArray[np.float32]) -> npt.NDArray[np.int16]:
    pcm: npt.NDArray[np.int16] = np.round(np.clip(x, -1.0, 32767 / 32768) * 32768.0).astype(np.int16)
    return pcm


def decode_pcm16(
    data: bytes, *, rate: int = TARGET_RATE, max_duration_s: float | None = None
) -> tuple[npt.NDArray[np.int16], WavFormat]:
    """A WAV file as mono PCM16 at `rate`, and the format it came in.

    Raises UnsupportedAudio, BadAudio (damaged or empty) or TooLarge (longer than
    `max_duration_s`, checked from the header before anything is decoded)."""
    wav = read_wav(data)
    fmt = wav.format
    if fmt.frames == 0:
        raise BadAudio("the WAV file has no samples")
    if max_duration_s is not None and fmt.duration_s > max_duration_s:
        raise TooLarge(f"the audio is {fmt.duration_s:.1f} s long; the limit is {max_duration_s:g} s")
    mono = downmix(samples(wav))
    return to_pcm16(resample(mono, fmt.sample_rate, rate)), fmt


def streaming_wav_header(sample_rate: int, *, channels: int = 1, bits: int = 16) -> bytes:
    """A 44-byte PCM WAV header for a stream of unknown length (RIFF and data sizes 0xFFFFFFFF)."""
    block_align = channels * bits // 8
    return (
        b"RIFF"
        + struct.pack("<I", _STREAMING_SIZE)
        + b"WAVE"
        + b"fmt "
        + struct.pack(
            "<IHHIIHH", 16, _PCM, channels, sample_rate, sample_rate * block_align, block_align, bits
        )
        + b"data"
        + struct.pack("<I", _STREAMING_SIZE)
    )
