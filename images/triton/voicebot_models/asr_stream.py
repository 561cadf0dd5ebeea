"""Per-sequence state for streaming ASR: partial transcripts while audio arrives, a fast final.

Whisper encodes a fixed 30-second window whatever the audio length, so the cost of a decode is set
by the number of windows, not by how much audio they hold. The stream therefore keeps one
*uncommitted tail*: every decode covers only the audio after the committed point. While an
utterance fits in ``commit_after_s`` the tail is the whole utterance, and the final transcript is
exactly the one-shot transcript. When the tail grows past it, every segment but the last is
committed (its text is fixed and its audio dropped from later decodes), so the work after END is
at most one window however long the person talks.

Partial decodes are rate-limited (``partial_interval_s`` of new audio) so a stream of small
chunks does not queue a decode per chunk; a chunk between decodes gets the latest partial. When
END arrives and no audio came since the last decode, that decode *is* the final: nothing runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 16_000
Audio = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Segment:
    """A transcribed span, in seconds from the start of the stream."""

    start: float
    end: float
    text: str

    def as_dict(self) -> dict[str, float | str]:
        """The JSON form of the contract: {start, end, text}."""
        return {"start": round(self.start, 3), "end": round(self.end, 3), "text": self.text}


#: decode(audio, language) -> segments with times relative to the audio given.
Decoder = Callable[[Audio, str | None], Sequence[Segment]]


@dataclass(frozen=True)
class StreamOptions:
    """Tuning of the streaming behaviour (the asr model's config parameters)."""

    partial_interval_s: float = 1.0
    commit_after_s: float = 20.0
    max_audio_s: float = 120.0
    silence_peak: int = 64  # int16 peak below which audio counts as silent


def join_text(segments: Sequence[Segment]) -> str:
    """The transcript of a list of segments."""
    return " ".join(s.text.strip() for s in segments if s.text.strip())


@dataclass
class AsrStream:
    """The state of one sequence (one push-to-talk turn)."""

    options: StreamOptions
    language: str | None = None
    audio: Audio = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    peak: int = 0
    offset: int = 0  # samples before this are committed
    committed: list[Segment] = field(default_factory=list)
    tail: list[Segment] = field(default_factory=list)  # last decode of audio[offset:decoded_until]
    decoded_until: int = 0
    last_seen: float = field(default_factory=time.monotonic)
    decodes: int = 0

    @property
    def samples(self) -> int:
        """Samples received so far."""
        return int(self.audio.shape[0])

    def append(self, pcm16: npt.NDArray[np.int16]) -> None:
        """Add a chunk of PCM16 audio; refuses audio past ``max_audio_s`` without keeping it."""
        limit = int(self.options.max_audio_s * SAMPLE_RATE)
        if self.samples + pcm16.shape[0] > limit:
            raise ValueError(f"audio is longer than the limit of {self.options.max_audio_s:g} s")
        if pcm16.size:
            self.peak = max(self.peak, int(np.abs(pcm16.astype(np.int32)).max()))
            self.audio = np.concatenate([self.audio, pcm16.astype(np.float32) / 32768.0])
        self.last_seen = time.monotonic()

    def _decode_tail(self, decode: Decoder) -> None:
        tail_audio = self.audio[self.offset :]
        offset_s = self.offset / SAMPLE_RATE
        self.tail = [
            Segment(s.start + offset_s, s.end + offset_s, s.text) for s in decode(tail_audio, self.language)
        ]
        self.decoded_until = self.samples
        self.decodes += 1

    def _commit(self) -> None:
        """Fix every tail segment but the last once the tail is longer than ``commit_after_s``."""
        if (self.samples - self.offset) / SAMPLE_RATE < self.options.commit_after_s or len(self.tail) < 2:
            return
        keep = self.tail[-1]
        self.committed.extend(self.tail[:-1])
        self.offset = min(self.samples, max(self.offset, int(keep.start * SAMPLE_RATE)))
        self.tail = [keep]

    def partial(self, decode: Decoder) -> tuple[str, list[Segment]]:
        """The transcript so far, decoding again only when enough new audio arrived."""
        new_audio = self.samples - self.decoded_until
        tail_is_sound = self.samples > self.offset and self.peak >= self.options.silence_peak
        if tail_is_sound and new_audio >= self.options.partial_interval_s * SAMPLE_RATE:
            self._decode_tail(decode)
            self._commit()
        segments = self.committed + self.tail
        return join_text(segments), segments

    def final(self, decode: Decoder) -> tuple[str, list[Segment]]:
        """The final transcript; raises ``ValueError`` for empty or silent audio."""
        if self.samples == 0:
            raise ValueError("audio is empty: no samples were received for this sequence")
        if self.peak < self.options.silence_peak:
            raise ValueError(
                f"audio is silent (peak {self.peak} of 32767, below {self.options.silence_peak}); "
                "check the microphone"
            )
        if self.decoded_until != self.samples:
            self._decode_tail(decode)
        segments = self.committed + self.tail
        return join_text(segments), segments
