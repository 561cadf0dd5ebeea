// AudioWorklet processor: forwards the microphone's samples (mixed to mono, at the context's
// rate) to the page in ~20 ms batches while recording. Resampling to 16 kHz and PCM16 framing
// happen on the page (ui/lib/audio-framing.ts), where they are unit-tested.
class PcmCapture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.recording = false;
    this.batch = new Float32Array(Math.ceil(sampleRate / 50) + 128);
    this.filled = 0;
    this.port.onmessage = (event) => {
      const message = event.data;
      if (message.type === "start") {
        this.filled = 0;
        this.recording = true;
      } else if (message.type === "stop") {
        this.send();
        this.recording = false;
        this.port.postMessage({ type: "stopped", id: message.id });
      }
    };
  }

  send() {
    if (this.filled === 0) return;
    const samples = this.batch.slice(0, this.filled);
    this.filled = 0;
    this.port.postMessage({ type: "audio", samples }, [samples.buffer]);
  }

  process(inputs) {
    const channels = inputs[0];
    if (this.recording && channels && channels.length > 0) {
      const frames = channels[0].length;
      if (this.filled + frames > this.batch.length) this.send();
      for (let i = 0; i < frames; i++) {
        let sum = 0;
        for (let c = 0; c < channels.length; c++) sum += channels[c][i];
        this.batch[this.filled + i] = sum / channels.length;
      }
      this.filled += frames;
      if (this.filled >= this.batch.length - 128) this.send();
    }
    return true;
  }
}

registerProcessor("pcm-capture", PcmCapture);
