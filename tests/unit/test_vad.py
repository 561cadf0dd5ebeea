"""Silero VAD through orchestrator/vad.py: the real ONNX model on real (espeak-ng) speech and on
sounds that are not speech."""

from __future__ import annotations

import shutil

import numpy as np
import numpy.typing as npt
import onnxruntime
import pytest

from orchestrator.vad import CONTEXT_SAMPLES, SAMPLE_RATE, WINDOW_S, WINDOW_SAMPLES, VadStream, model_path
from tests.speech import speak_pcm16

needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None or shutil.which("sox") is None,
    reason="espeak-ng and sox make the test speech: make tools-integration",
)
RNG_SEED = 15


def _probabilities(pcm: bytes | npt.NDArray[np.int16], frame: int = 1600) -> npt.NDArray[np.float64]:
    stream = VadStream()
    samples = np.frombuffer(pcm, dtype="<i2") if isinstance(pcm, bytes) else pcm
    out = []
    for i in range(0, samples.size, frame):
        out += [w.probability for w in stream.feed(samples[i : i + frame])]
    return np.array(out)


def _silence(seconds: float) -> npt.NDArray[np.int16]:
    return np.zeros(round(seconds * SAMPLE_RATE), dtype=np.int16)


def test_the_model_has_the_interface_the_stream_relies_on() -> None:
    session = onnxruntime.InferenceSession(str(model_path()), providers=["CPUExecutionProvider"])
    inputs = {i.name: i.shape for i in session.get_inputs()}
    assert inputs["input"][1] == CONTEXT_SAMPLES + WINDOW_SAMPLES
    assert inputs["h"] == inputs["c"] == [1, 1, 128]
    assert [o.name for o in session.get_outputs()] == ["speech_probs", "hn", "cn"]


@needs_espeak
def test_speech_is_speech_and_the_silence_around_it_is_not() -> None:
    speech = np.frombuffer(speak_pcm16("Which port does the gateway use when it runs in the cluster?"), "<i2")
    pcm = np.concatenate([_silence(1.0), speech, _silence(1.0)])
    p = _probabilities(pcm)
    windows_per_s = 1 / WINDOW_S
    lead, body = p[: int(0.9 * windows_per_s)], p[int(1.2 * windows_per_s) : -int(1.5 * windows_per_s)]
    assert lead.max() < 0.1
    assert (body >= 0.5).mean() > 0.8
    assert p[-int(0.5 * windows_per_s) :].max() < 0.2


def test_silence_white_noise_and_a_cough_are_not_speech() -> None:
    rng = np.random.default_rng(RNG_SEED)
    assert _probabilities(_silence(2.0)).max() < 0.1
    noise = np.clip(rng.normal(0, 0.1 * 32768, 5 * SAMPLE_RATE), -32768, 32767).astype(np.int16)  # -20 dBFS
    assert (_probabilities(noise) >= 0.5).mean() == 0.0
    # A cough: a loud noise burst, 10 ms attack and a fast decay over 0.3 s.
    t = np.arange(round(0.3 * SAMPLE_RATE)) / SAMPLE_RATE
    burst = rng.normal(0, 1, t.size) * np.minimum(t / 0.01, 1) * np.exp(-t / 0.1)
    cough = (0.5 * 32767 * burst / np.abs(burst).max()).astype(np.int16)
    assert (_probabilities(np.concatenate([_silence(0.5), cough, _silence(0.5)])) >= 0.5).sum() == 0


@needs_espeak
def test_frame_sizes_do_not_change_the_probabilities() -> None:
    pcm = np.frombuffer(speak_pcm16("Hands-free mode streams the microphone."), "<i2")
    whole = VadStream().feed(pcm)
    stream, rng, pieces, i = VadStream(), np.random.default_rng(RNG_SEED), [], 0
    while i < pcm.size:
        n = int(rng.integers(1, 4000))
        pieces += stream.feed(pcm[i : i + n].tobytes())
        i += n
    assert [w.index for w in pieces] == [w.index for w in whole] == list(range(pcm.size // WINDOW_SAMPLES))
    np.testing.assert_allclose([w.probability for w in pieces], [w.probability for w in whole], atol=1e-5)
    assert pieces[-1].end_s == pytest.approx(len(pieces) * WINDOW_S)
    assert stream.position_s == pytest.approx(pcm.size / SAMPLE_RATE)


@needs_espeak
def test_streams_keep_their_own_state_and_reset_forgets_it() -> None:
    a = np.frombuffer(speak_pcm16("The first speaker asks about ports."), "<i2")
    b = np.frombuffer(speak_pcm16("Another one asks about charts.", voice="en-us+f3"), "<i2")
    alone_a, alone_b = VadStream().feed(a), VadStream().feed(b)
    sa, sb, mixed_a, mixed_b = VadStream(), VadStream(), [], []
    for i in range(0, max(a.size, b.size), 1600):  # interleaved, as two sessions on one gateway
        mixed_a += sa.feed(a[i : i + 1600])
        mixed_b += sb.feed(b[i : i + 1600])
    np.testing.assert_allclose([w.probability for w in mixed_a], [w.probability for w in alone_a], atol=1e-5)
    np.testing.assert_allclose([w.probability for w in mixed_b], [w.probability for w in alone_b], atol=1e-5)
    sa.reset()
    again = sa.feed(b)
    assert again[0].index == 0
    np.testing.assert_allclose([w.probability for w in again], [w.probability for w in alone_b], atol=1e-5)


def test_levels_and_refusals() -> None:
    stream = VadStream()
    assert stream.feed(b"\x00\x00" * 100) == []  # less than a window: buffered
    full_scale = np.full(WINDOW_SAMPLES, 16384, dtype=np.int16)  # -6 dBFS
    (window,) = VadStream().feed(full_scale)
    assert window.level_db == pytest.approx(-6.02, abs=0.05)
    with pytest.raises(ValueError, match="even"):
        stream.feed(b"\x00\x00\x00")
