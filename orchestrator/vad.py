"""Streaming voice activity detection on the session's 16 kHz mono PCM16, with Silero VAD.

The model is the ONNX export that the faster-whisper package ships
(`faster_whisper/assets/silero_vad_v6.onnx`), so nothing is downloaded: it is there wherever
the ASR model server's Python dependencies are. Its graph, read with onnxruntime:

- `input` float32 `[n, 576]`: n windows of 512 new samples (32 ms at 16 kHz), each preceded by
  the last 64 samples of the window before it (zeros before the first);
- `h`, `c` float32 `[1, 1, 128]`: the LSTM state, carried from one call to the next;
- outputs `speech_probs` `[n]` and the next `hn`, `cn`.

The first axis is time, not a batch: the LSTM runs across the n windows, so n windows in one
call give exactly the probabilities of n calls of one window (checked in the unit tests), and a
frame of any size costs one call. The state is what makes the model work (without it the
probabilities are nonsense), so each stream of audio owns one `VadStream`; the loaded model is
shared by all of them (onnxruntime sessions may run concurrently).

Cost: one thread, about 0.1 ms per window on this machine's CPU, i.e. a few ms of CPU per
second of audio (`make bench-handsfree` measures it), cheap enough to run on the event loop
rather than pay a thread hop per frame.
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 16_000
WINDOW_SAMPLES = 512  # the model's window at 16 kHz
CONTEXT_SAMPLES = 64  # samples of the previous window the model sees before each one
WINDOW_S = WINDOW_SAMPLES / SAMPLE_RATE  # 0.032 s
_STATE_SHAPE = (1, 1, 128)
_MODEL_FILE = "silero_vad_v6.onnx"


class VadUnavailable(RuntimeError):
    """The Silero model or onnxruntime is not installed where the gateway runs."""


def model_path() -> Path:
    """Where faster-whisper keeps Silero's ONNX file.

    Found from the package's location without importing it: importing faster_whisper loads
    CTranslate2 and PyAV, which a gateway that only wants the VAD does not need."""
    spec = importlib.util.find_spec("faster_whisper")
    if spec is None or not spec.submodule_search_locations:
        raise VadUnavailable("faster-whisper is not installed: it carries the Silero VAD model")
    for location in spec.submodule_search_locations:
        path = Path(location) / "assets" / _MODEL_FILE
        if path.is_file():
            return path
    raise VadUnavailable(f"faster-whisper is installed but has no assets/{_MODEL_FILE}")


class VadModel(Protocol):
    """What a `VadStream` needs of the model (`SileroVad`; unit tests fake it at this seam)."""

    def run(
        self, windows: npt.NDArray[np.float32], h: npt.NDArray[np.float32], c: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]]: ...


class SileroVad:
    """The loaded model; thread-safe, load once per process and share."""

    def __init__(self, path: Path | None = None) -> None:
        try:
            import onnxruntime
        except ImportError as e:
            raise VadUnavailable("onnxruntime is not installed: the VAD runs on it") from e
        options = onnxruntime.SessionOptions()
        # One window is a tiny graph: threads would cost more in wake-ups than they save, and the
        # gateway's cores belong to the event loop.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self._session = onnxruntime.InferenceSession(
            str(path or model_path()), sess_options=options, providers=["CPUExecutionProvider"]
        )

    def run(
        self, windows: npt.NDArray[np.float32], h: npt.NDArray[np.float32], c: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """Probabilities of `windows` ([n, 576], in time order) and the LSTM state after them."""
        probs, hn, cn = self._session.run(None, {"input": windows, "h": h, "c": c})
        return (
            np.asarray(probs, dtype=np.float32).reshape(-1),
            np.asarray(hn, dtype=np.float32),
            np.asarray(cn, dtype=np.float32),
        )


_shared: SileroVad | None = None
_shared_lock = threading.Lock()


def shared_model() -> SileroVad:
    """The process's one loaded model (about 2 MB), loaded at first use."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = SileroVad()
        return _shared


@dataclass(frozen=True, slots=True)
class VadWindow:
    """One 32 ms window of the stream: where it ends (seconds of stream audio), the model's
    speech probability and the window's RMS level (dBFS, floored at -100; for meters and the
    echo guard's envelope)."""

    index: int
    end_s: float
    probability: float
    level_db: float


class VadStream:
    """Speech probabilities of one continuous audio stream, fed frames of any size.

    Samples are buffered until a whole window is there; `feed` returns the windows completed by
    this frame (none for a frame shorter than what completes the next window)."""

    def __init__(self, model: VadModel | None = None) -> None:
        self._model = model or shared_model()
        self.reset()

    def reset(self) -> None:
        """Forget the stream (state, context, buffered samples): a new, unrelated stream starts."""
        self._h = np.zeros(_STATE_SHAPE, dtype=np.float32)
        self._c = np.zeros(_STATE_SHAPE, dtype=np.float32)
        self._context = np.zeros(CONTEXT_SAMPLES, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)
        self._windows = 0

    @property
    def windows(self) -> int:
        """Windows computed so far."""
        return self._windows

    @property
    def position_s(self) -> float:
        """Seconds of audio fed so far, buffered samples included."""
        return (self._windows * WINDOW_SAMPLES + self._pending.size) / SAMPLE_RATE

    def feed(self, pcm: bytes | npt.NDArray[np.int16]) -> list[VadWindow]:
        """Feed PCM16 little-endian mono 16 kHz samples (bytes of even length, or int16)."""
        if isinstance(pcm, bytes | bytearray | memoryview):
            if len(pcm) % 2:
                raise ValueError("PCM16 audio must have an even number of bytes")
            samples = np.frombuffer(pcm, dtype="<i2")
        else:
            samples = np.asarray(pcm, dtype=np.int16)
        audio = np.concatenate([self._pending, samples.astype(np.float32) / 32768.0])
        n = audio.size // WINDOW_SAMPLES
        self._pending = audio[n * WINDOW_SAMPLES :]
        if n == 0:
            return []
        new = audio[: n * WINDOW_SAMPLES].reshape(n, WINDOW_SAMPLES)
        # Each window's context is the tail of the one before it; the first one's is the stream's.
        context = np.concatenate([self._context[None, :], new[:-1, -CONTEXT_SAMPLES:]])
        probs, self._h, self._c = self._model.run(
            np.ascontiguousarray(np.concatenate([context, new], axis=1)), self._h, self._c
        )
        self._context = new[-1, -CONTEXT_SAMPLES:].copy()
        levels = 10.0 * np.log10(np.maximum(np.mean(new.astype(np.float64) ** 2, axis=1), 1e-10))
        first = self._windows
        self._windows += n
        return [
            VadWindow(first + i, (first + i + 1) * WINDOW_S, float(probs[i]), float(levels[i]))
            for i in range(n)
        ]
