"""A microphone the test speaks into when it decides, for hands-free tests in a real Chromium.

Chromium's own fake microphone (`--use-file-for-fake-audio-capture`) plays one WAV from the
moment the page opens the microphone, on its own clock. Hands-free tests must speak *over* an
answer that starts when the gateway is done thinking, which no fixed file can time. So this
init script gives the page, in place of the device, a MediaStream from a Web Audio graph: silence
until `window.__voicebotMic.say(...)` queues speech into it. Everything after getUserMedia is
the page's real code: its AudioWorklet, resampler, framing, socket and player.
"""

from __future__ import annotations

import base64

from playwright.sync_api import Page

AUTOPLAY_FLAG = "--autoplay-policy=no-user-gesture-required"  # the mic's graph runs without a click

INIT_SCRIPT = """
(() => {
  const ctx = new AudioContext();
  const out = ctx.createMediaStreamDestination();
  let queuedUntil = 0;
  window.__voicebotMic = {
    /** Queue PCM16 mono 16 kHz (base64) after what is queued; seconds until it has all been said. */
    say(b64) {
      const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const samples = new Int16Array(bytes.buffer, 0, bytes.length >> 1);
      const buffer = ctx.createBuffer(1, samples.length, 16000);
      const channel = buffer.getChannelData(0);
      for (let i = 0; i < samples.length; i++) channel[i] = samples[i] / 32768;
      const source = ctx.createBufferSource();
      source.buffer = buffer;
      source.connect(out);
      const start = Math.max(ctx.currentTime + 0.05, queuedUntil);
      source.start(start);
      queuedUntil = start + buffer.duration;
      return queuedUntil - ctx.currentTime;
    },
    /** Seconds of queued speech still to be said. */
    pending() {
      return Math.max(0, queuedUntil - ctx.currentTime);
    },
  };
  navigator.mediaDevices.getUserMedia = async (constraints) => {
    if (!constraints || !constraints.audio) throw new DOMException("no camera here", "NotFoundError");
    await ctx.resume();
    return out.stream;
  };
})();
"""


class ScriptedMic:
    def __init__(self, page: Page) -> None:
        self.page = page
        page.add_init_script(INIT_SCRIPT)

    def say(self, pcm: bytes) -> float:
        """Speak `pcm` (PCM16 mono 16 kHz) after what is queued; seconds until all is said."""
        return float(
            self.page.evaluate("b64 => window.__voicebotMic.say(b64)", base64.b64encode(pcm).decode())
        )

    def wait_said(self, timeout_ms: float = 60_000) -> None:
        self.page.wait_for_function("() => window.__voicebotMic.pending() === 0", timeout=timeout_ms)
