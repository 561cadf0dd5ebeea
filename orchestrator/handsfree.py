"""The ears of a hands-free session: what it hears, what it plays, and the turns that follow.

`Listener` puts the pure parts together for one session (docs/handsfree.md): the microphone's
frames go through Silero VAD (orchestrator/vad.py), the echo guard and the turn detector
(orchestrator/endpointing.py); it keeps the last `PREROLL_S` of input, so a turn's audio
starts before the moment the detector was sure it is speech; and it follows the client's
playback from the audio the session sends (`PlaybackTap`), because "the bot is speaking" is
what the client plays, not what the server generates: the answer's text is done long before
its audio has played.

One timeline for all of it: seconds of microphone audio heard (the input's own clock). The
client streams in real time, so audio the session sends now starts playing at about the
input clock's now (the lag search of the echo guard absorbs the playback buffer and network).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from orchestrator.endpointing import (
    BargeIn,
    EchoGuard,
    EndpointingSettings,
    SpeechStarted,
    TurnDetector,
    TurnEvent,
)
from orchestrator.pipeline import Sink
from orchestrator.protocol import INPUT_SAMPLE_RATE, INPUT_SAMPLE_WIDTH, AudioClear, AudioHeader, ServerEvent
from orchestrator.vad import WINDOW_S, VadModel, VadStream, shared_model

PREROLL_S = 2.0  # input kept from before a turn starts (≥ BARGE_IN_LOOKBACK_S plus the decision)
PREROLL_PAD_S = 0.2  # audio given to the ASR from before the speech began: soft onsets
# Over the bot's audio, the user's first words may be taken for echo until their voice stands
# out; the ASR gets up to this much of the speech that came before the barge-in's own start.
BARGE_IN_LOOKBACK_S = 1.0
_BYTES_PER_S = INPUT_SAMPLE_RATE * INPUT_SAMPLE_WIDTH


class Listener:
    """Turn taking over one session's continuous microphone stream."""

    def __init__(self, settings: EndpointingSettings, *, model: VadModel | None = None) -> None:
        self.settings = settings
        self._vad = VadStream(model or shared_model())
        self._now = 0.0  # end of the last VAD window: the detector's clock
        self._detector = TurnDetector(settings, clock=lambda: self._now)
        self._echo = EchoGuard(settings)
        self._heard_s = 0.0  # seconds of input so far (also partial windows)
        self._kept = bytearray()  # the last PREROLL_S of input
        self._playing_until = -math.inf  # when the audio sent so far ends playing (input clock)
        self.playing_turn: int | None = None  # the turn whose audio the client plays (or last played)
        self._voiced_since: float | None = None  # start of the current run of VAD speech, echo or not

    @property
    def now(self) -> float:
        """Seconds of input heard so far."""
        return self._heard_s

    @property
    def playing_until(self) -> float:
        """When the audio sent so far ends playing, on the input clock (-inf: none sent)."""
        return self._playing_until

    @property
    def bot_speaking(self) -> bool:
        """The client is (by the audio sent to it) still playing an answer."""
        return self._heard_s < self._playing_until

    def hear(self, frame: bytes, *, answering: bool = False) -> list[TurnEvent]:
        """One microphone frame (PCM16 mono 16 kHz): the turn events it causes, in order.

        `answering`: an answer is being prepared or spoken, so speech that starts now is an
        interruption and must last `barge_in_min_speech_s`, whether or not its audio plays yet."""
        pcm = np.frombuffer(frame, dtype="<i2")
        self._echo.heard(pcm, at=self._heard_s)
        self._heard_s += pcm.size / INPUT_SAMPLE_RATE
        self._kept += frame
        del self._kept[: max(0, len(self._kept) - int(PREROLL_S * _BYTES_PER_S))]
        events: list[TurnEvent] = []
        for window in self._vad.feed(pcm):
            self._now = window.end_s
            if window.probability >= self.settings.speech_threshold:
                if self._voiced_since is None:
                    self._voiced_since = window.end_s - WINDOW_S
            elif window.probability < self.settings.silence_threshold:
                self._voiced_since = None
            playing = self._now < self._playing_until
            self._detector.bot_speaking = playing or answering
            echo = playing and self._echo.is_echo(self._now)
            events += self._detector.push(window.probability, echo=echo)
        return events

    def turn_audio(self, event: SpeechStarted | BargeIn) -> bytes:
        """The audio a new turn starts with: from just before its speech began; for a barge-in,
        from where the voice began even if that part was taken for echo (up to the lookback)."""
        start = event.speech_start
        if isinstance(event, BargeIn) and self._voiced_since is not None:
            start = min(start, max(self._voiced_since, start - BARGE_IN_LOOKBACK_S))
        return self.kept_since(start - PREROLL_PAD_S)

    def kept_since(self, start_s: float) -> bytes:
        """The input from `start_s` (input clock) to now, as far back as it is kept."""
        available = len(self._kept)
        wanted = int(max(0.0, self._heard_s - start_s) * INPUT_SAMPLE_RATE) * INPUT_SAMPLE_WIDTH
        return bytes(self._kept[available - min(wanted, available) :])

    @property
    def silence_s(self) -> float:
        """How long the turn in progress has been silent (0 while its speaker speaks)."""
        return self._detector.silence_s

    def partial(self, text: str) -> None:
        """The ASR's latest partial transcript of the turn in progress."""
        self._detector.partial(text)

    def heard_so_far(self, text: str) -> None:
        """The whole turn decoded up to its current pause (an early final transcript)."""
        self._detector.heard_so_far(text)

    def drop_turn(self) -> None:
        """The session ended or cancelled the turn in progress: watch for a new one."""
        self._detector.reset()

    def played(self, turn: int, pcm: npt.NDArray[np.int16], sample_rate: int) -> None:
        """Audio of `turn` sent to the client: it plays right after what was sent before it,
        or now if the client's queue has run dry."""
        start = max(self._heard_s, self._playing_until)
        self._echo.played(pcm, sample_rate, at=start)
        self._playing_until = start + pcm.size / sample_rate
        self.playing_turn = turn

    def cleared(self, turn: int) -> None:
        """The client was told to drop `turn`'s audio (`audio.clear`): it is silent from now."""
        if turn == self.playing_turn:
            self._playing_until = min(self._playing_until, self._heard_s)


class PlaybackTap:
    """A sink in front of the session's sink that tells the listener what the client will play.

    Every answer's audio and every `audio.clear` go through it; without a listener (push-to-talk)
    it only forwards."""

    def __init__(self, sink: Sink) -> None:
        self.inner = sink
        self.listener: Listener | None = None

    async def send_event(self, event: ServerEvent) -> None:
        if self.listener is not None and isinstance(event, AudioClear):
            self.listener.cleared(event.turn)
        await self.inner.send_event(event)

    async def send_audio(self, frame: bytes) -> None:
        if self.listener is not None:
            header, payload = AudioHeader.unpack(frame)
            self.listener.played(header.turn, np.frombuffer(payload, dtype="<i2"), header.sample_rate)
        await self.inner.send_audio(frame)
