"""WAV decoding, downmixing and resampling (orchestrator/audio_io.py), on files made here."""

from __future__ import annotations

import io
import struct
import wave

import numpy as np
import numpy.typing as npt
import pytest

from orchestrator.audio_io import (
    decode_pcm16,
    read_wav,
    resample,
    sniff_container,
    streaming_wav_header,
)
from orchestrator.errors import BadAudio, TooLarge, UnsupportedAudio


def tone(freq: float, rate: int, seconds: float, amplitude: float = 0.5) -> npt.NDArray[np.float64]:
    t = np.arange(int(rate * seconds)) / rate
    return amplitude * np.sin(2 * np.pi * freq * t)


def wav_bytes(
    frames: npt.NDArray[np.float64],
    rate: int,
    *,
    encoding: str = "pcm16",
    extensible: bool = False,
    data_size: int | None = None,
    extra_chunk: bool = False,
) -> bytes:
    """A WAV file of `frames` (shape (n,) or (n, channels), floats in [-1, 1])."""
    frames = frames.reshape(len(frames), -1) if frames.ndim == 2 else frames.reshape(-1, 1)
    channels = frames.shape[1]
    if encoding == "pcm8":
        tag, bits, data = 1, 8, np.round(frames * 127 + 128).astype(np.uint8).tobytes()
    elif encoding == "pcm16":
        tag, bits, data = 1, 16, np.round(frames * 32767).astype("<i2").tobytes()
    elif encoding == "pcm24":
        ints = np.round(frames * (2**23 - 1)).astype("<i4").reshape(-1)
        tag, bits = 1, 24
        data = b"".join(int(v).to_bytes(3, "little", signed=True) for v in ints)
    elif encoding == "pcm32":
        tag, bits, data = 1, 32, np.round(frames * (2**31 - 1)).astype("<i4").tobytes()
    elif encoding == "float32":
        tag, bits, data = 3, 32, frames.astype("<f4").tobytes()
    elif encoding == "float64":
        tag, bits, data = 3, 64, frames.astype("<f8").tobytes()
    elif encoding == "mulaw":
        tag, bits, data = 7, 8, bytes(len(frames) * channels)
    else:
        raise AssertionError(encoding)
    block_align = channels * bits // 8
    fmt = struct.pack(
        "<HHIIHH", 0xFFFE if extensible else tag, channels, rate, rate * block_align, block_align, bits
    )
    if extensible:
        guid_tail = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
        fmt += struct.pack("<HHI", 22, bits, 0) + struct.pack("<H", tag) + guid_tail
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt
    if extra_chunk:  # an odd-sized LIST chunk, padded, before the samples
        chunks += b"LIST" + struct.pack("<I", 5) + b"INFOx\x00"
    size = len(data) if data_size is None else data_size
    chunks += b"data" + struct.pack("<I", size) + data
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


def dominant_hz(pcm: npt.NDArray[np.int16], rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64)))
    return float(np.argmax(spectrum) * rate / pcm.size)


@pytest.mark.parametrize("encoding", ["pcm8", "pcm16", "pcm24", "pcm32", "float32", "float64"])
def test_every_sample_encoding_decodes_to_the_same_tone(encoding: str) -> None:
    pcm, fmt = decode_pcm16(wav_bytes(tone(440, 16000, 1.0), 16000, encoding=encoding))
    assert fmt.sample_rate == 16000
    assert pcm.dtype == np.int16
    assert pcm.size == 16000
    assert dominant_hz(pcm, 16000) == pytest.approx(440, abs=1)
    peak = np.abs(pcm.astype(np.int32)).max()
    assert 0.49 * 32768 < peak < 0.51 * 32768


@pytest.mark.parametrize("rate", [8000, 11025, 22050, 44100, 48000, 96000])
def test_any_rate_is_resampled_to_16k_keeping_pitch_and_length(rate: int) -> None:
    pcm, fmt = decode_pcm16(wav_bytes(tone(1000, rate, 2.0), rate))
    assert fmt.duration_s == pytest.approx(2.0)
    assert abs(pcm.size - 32000) <= 1
    assert dominant_hz(pcm, 16000) == pytest.approx(1000, abs=1)
    middle = pcm[2000:-2000].astype(np.float64) / 32768
    assert np.sqrt(np.mean(middle**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)


def test_downsampling_filters_out_what_16k_cannot_carry() -> None:
    # An 11 kHz tone is above the 8 kHz Nyquist frequency of 16 kHz audio: naive decimation
    # would fold it to 5 kHz; the low-pass filter removes it.
    pcm, _ = decode_pcm16(wav_bytes(tone(11000, 48000, 1.0), 48000, encoding="float32"))
    assert np.abs(pcm[500:-500].astype(np.int32)).max() < 40


def test_stereo_and_extensible_wavs_are_downmixed() -> None:
    left, right = tone(300, 44100, 1.0, 0.4), tone(300, 44100, 1.0, 0.2)
    data = wav_bytes(np.stack([left, right], axis=1), 44100, encoding="float32", extensible=True)
    pcm, fmt = decode_pcm16(data)
    assert (fmt.channels, fmt.encoding, fmt.bits) == (2, "float", 32)
    rms = np.sqrt(np.mean((pcm[1000:-1000].astype(np.float64) / 32768) ** 2))
    assert rms == pytest.approx(0.3 / np.sqrt(2), rel=0.01)  # the mean of the channels


def test_opposite_channels_cancel_in_the_mix() -> None:
    left = tone(300, 16000, 0.5)
    pcm, _ = decode_pcm16(wav_bytes(np.stack([left, -left], axis=1), 16000))
    assert np.abs(pcm.astype(np.int32)).max() <= 1


def test_streaming_and_truncated_wavs_read_to_the_end() -> None:
    frames = tone(500, 16000, 0.5)
    for size in (0xFFFFFFFF, 0, 10**9):
        pcm, _ = decode_pcm16(wav_bytes(frames, 16000, data_size=size, extra_chunk=True))
        assert pcm.size == frames.size
    cut = wav_bytes(frames, 16000)[:-1]  # half a frame at the end is dropped
    assert decode_pcm16(cut)[0].size == frames.size - 1


def test_our_streaming_header_is_a_wav_others_can_read() -> None:
    pcm = (tone(500, 22050, 0.2) * 32767).astype("<i2")
    data = streaming_wav_header(22050) + pcm.tobytes()
    with wave.open(io.BytesIO(data)) as reader:
        assert (reader.getframerate(), reader.getnchannels(), reader.getsampwidth()) == (22050, 1, 2)
        assert reader.readframes(10**6) == pcm.tobytes()
    assert read_wav(data).format.frames == pcm.size


@pytest.mark.parametrize(
    ("head", "name"),
    [
        (b"ID3\x04\x00\x00\x00\x00\x00\x00", "MP3"),
        (b"\xff\xfb\x90\x00", "MP3"),
        (b"OggS\x00\x02", "Ogg"),
        (b"fLaC\x00\x00\x00\x22", "FLAC"),
        (b"\x00\x00\x00\x20ftypM4A ", "MP4"),
        (b"\x1a\x45\xdf\xa3\x01", "WebM"),
    ],
)
def test_other_containers_are_refused_by_name(head: bytes, name: str) -> None:
    with pytest.raises(UnsupportedAudio, match=name) as info:
        decode_pcm16(head + bytes(100))
    assert info.value.http_status == 415
    assert "accepted: WAV" in info.value.message
    assert (sniff_container(head + bytes(100)) or "").startswith(name)


def test_unknown_bytes_and_compressed_wavs_are_unsupported() -> None:
    with pytest.raises(UnsupportedAudio, match="not a WAV file"):
        decode_pcm16(b"hello, this is text")
    with pytest.raises(UnsupportedAudio, match="µ-law"):
        decode_pcm16(wav_bytes(tone(100, 8000, 0.1), 8000, encoding="mulaw"))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"RIFF\x00\x00\x00\x00WAVE", "no valid 'fmt '"),
        (b"RIFF\x00\x00\x00\x00WAVEfmt \x10\x00\x00\x00" + bytes(16), "no 'data' chunk"),
    ],
)
def test_damaged_wavs_are_bad_audio(data: bytes, message: str) -> None:
    with pytest.raises(BadAudio, match=message) as info:
        decode_pcm16(data)
    assert info.value.http_status == 400


def test_a_wav_without_samples_is_bad_audio() -> None:
    with pytest.raises(BadAudio, match="no samples"):
        decode_pcm16(wav_bytes(np.zeros(0), 16000))


def test_length_limit_is_checked_from_the_header() -> None:
    data = wav_bytes(np.zeros(8000 * 3), 8000, encoding="pcm8")
    with pytest.raises(TooLarge, match=r"3\.0 s long; the limit is 2 s"):
        decode_pcm16(data, max_duration_s=2)
    assert decode_pcm16(data, max_duration_s=3)[0].size == 16000 * 3


def test_resampling_nothing_or_the_same_rate_is_a_no_op() -> None:
    x = np.linspace(-1, 1, 100, dtype=np.float32)
    assert resample(x, 16000, 16000) is x
    assert resample(np.zeros(0, np.float32), 44100, 16000).size == 0
