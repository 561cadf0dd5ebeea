/**
 * Microphone audio → protocol frames: resample from the capture context's rate (often 48 kHz or
 * 44.1 kHz) to 16 kHz with a windowed-sinc low-pass, convert to PCM16 little-endian, and cut
 * into frames of at most FRAME_MS. Pure code, so it is unit-tested without a browser.
 */

import { FRAME_MS, INPUT_SAMPLE_RATE } from "./protocol";

const PHASES = 256; // fractional positions tabulated per input sample
const ZERO_CROSSINGS = 8; // sinc lobes on each side of the centre tap
const CUTOFF_MARGIN = 0.9; // keep the pass band a little below the output Nyquist frequency

/**
 * A streaming sample-rate converter. Feeding the same signal in any chunking gives the same
 * output; `flush()` returns the tail held back for look-ahead.
 */
export class StreamingResampler {
  readonly inRate: number;
  readonly outRate: number;
  private readonly step: number; // input samples per output sample
  private readonly half: number; // taps each side of the centre
  private readonly table: Float32Array; // (PHASES + 1) rows of (2 * half + 1) taps
  private buffer = new Float32Array(0); // input samples from absolute index `base`
  private base = 0;
  private received = 0; // input samples seen so far
  private pos = 0; // absolute input position of the next output sample

  constructor(inRate: number, outRate: number = INPUT_SAMPLE_RATE) {
    if (!(inRate > 0 && outRate > 0)) throw new RangeError("sample rates must be positive");
    this.inRate = inRate;
    this.outRate = outRate;
    this.step = inRate / outRate;
    // Cut-off in cycles per input sample: below both Nyquist frequencies.
    const cutoff = 0.5 * Math.min(1, outRate / inRate) * CUTOFF_MARGIN;
    this.half = Math.ceil(ZERO_CROSSINGS / (2 * cutoff));
    const width = 2 * this.half + 1;
    this.table = new Float32Array((PHASES + 1) * width);
    for (let p = 0; p <= PHASES; p++) {
      const frac = p / PHASES;
      let sum = 0;
      for (let k = 0; k < width; k++) {
        const d = k - this.half - frac; // distance from the output position, in input samples
        const x = 2 * cutoff * d;
        const sinc = x === 0 ? 1 : Math.sin(Math.PI * x) / (Math.PI * x);
        const w = Math.abs(d) >= this.half + 1 ? 0 : 0.5 + 0.5 * Math.cos((Math.PI * d) / (this.half + 1)); // Hann
        const h = sinc * w;
        this.table[p * width + k] = h;
        sum += h;
      }
      for (let k = 0; k < width; k++) this.table[p * width + k] /= sum; // unity gain at DC
    }
  }

  get passthrough(): boolean {
    return this.inRate === this.outRate;
  }

  process(input: Float32Array): Float32Array {
    if (this.passthrough) return input.slice();
    this.append(input);
    return this.drain(this.received);
  }

  /** The remaining output, as if the input were followed by silence. */
  flush(): Float32Array {
    if (this.passthrough) return new Float32Array(0);
    const end = this.received;
    this.append(new Float32Array(this.half + 1));
    const out = this.drain(this.received, end);
    return out;
  }

  private append(input: Float32Array): void {
    const next = new Float32Array(this.buffer.length + input.length);
    next.set(this.buffer);
    next.set(input, this.buffer.length);
    this.buffer = next;
    this.received += input.length;
  }

  /** Output samples whose taps lie below `available`, stopping at input position `end`. */
  private drain(available: number, end: number = Infinity): Float32Array {
    const width = 2 * this.half + 1;
    const out: number[] = [];
    while (this.pos < end && Math.floor(this.pos) + this.half + 1 < available) {
      const whole = Math.floor(this.pos);
      let phase = Math.round((this.pos - whole) * PHASES);
      let centre = whole;
      if (phase === PHASES) {
        phase = 0;
        centre += 1;
      }
      const row = phase * width;
      let acc = 0;
      for (let k = 0; k < width; k++) {
        const index = centre - this.half + k - this.base;
        if (index >= 0 && index < this.buffer.length) acc += this.buffer[index] * this.table[row + k];
      }
      out.push(acc);
      this.pos += this.step;
    }
    // Forget input no future output needs.
    const keepFrom = Math.max(this.base, Math.floor(this.pos) - this.half - 1);
    if (keepFrom > this.base) {
      this.buffer = this.buffer.slice(keepFrom - this.base);
      this.base = keepFrom;
    }
    return Float32Array.from(out);
  }
}

/** Floats in [-1, 1] → PCM16, clipping what is outside. */
export function floatToPcm16(samples: Float32Array): Int16Array {
  const out = new Int16Array(samples.length);
  for (let i = 0; i < samples.length; i++) {
    const s = Math.max(-1, Math.min(1, samples[i]));
    out[i] = Math.round(s < 0 ? s * 32768 : s * 32767);
  }
  return out;
}

/** Cuts a PCM16 stream into frames of exactly `frameSamples` (the last one may be shorter). */
export class PcmFramer {
  private pending: number[] = [];

  constructor(readonly frameSamples: number) {
    if (!Number.isInteger(frameSamples) || frameSamples <= 0) throw new RangeError("frameSamples must be a positive integer");
  }

  push(pcm: Int16Array): ArrayBuffer[] {
    for (let i = 0; i < pcm.length; i++) this.pending.push(pcm[i]);
    const frames: ArrayBuffer[] = [];
    while (this.pending.length >= this.frameSamples) {
      frames.push(toLittleEndian(this.pending.splice(0, this.frameSamples)));
    }
    return frames;
  }

  flush(): ArrayBuffer | null {
    if (this.pending.length === 0) return null;
    const frame = toLittleEndian(this.pending);
    this.pending = [];
    return frame;
  }
}

function toLittleEndian(samples: number[]): ArrayBuffer {
  const buffer = new ArrayBuffer(samples.length * 2);
  const view = new DataView(buffer);
  samples.forEach((s, i) => view.setInt16(2 * i, s, true));
  return buffer;
}

/** One turn's microphone audio → ready-to-send frames, counting what was produced. */
export class CaptureEncoder {
  private readonly resampler: StreamingResampler;
  private readonly framer: PcmFramer;
  private samples = 0;
  private sumSquares = 0;

  constructor(inputRate: number, frameMs: number = FRAME_MS) {
    this.resampler = new StreamingResampler(inputRate, INPUT_SAMPLE_RATE);
    this.framer = new PcmFramer(Math.round((INPUT_SAMPLE_RATE * frameMs) / 1000));
  }

  push(input: Float32Array): ArrayBuffer[] {
    return this.frame(this.resampler.process(input));
  }

  flush(): ArrayBuffer[] {
    const frames = this.frame(this.resampler.flush());
    const last = this.framer.flush();
    if (last) frames.push(last);
    return frames;
  }

  /** Milliseconds of 16 kHz audio produced so far. */
  get durationMs(): number {
    return (this.samples * 1000) / INPUT_SAMPLE_RATE;
  }

  /** Root-mean-square level of everything produced, in PCM16 units (0 for silence). */
  get rms(): number {
    return this.samples ? Math.sqrt(this.sumSquares / this.samples) : 0;
  }

  private frame(resampled: Float32Array): ArrayBuffer[] {
    const pcm = floatToPcm16(resampled);
    this.samples += pcm.length;
    for (let i = 0; i < pcm.length; i++) this.sumSquares += pcm[i] * pcm[i];
    return this.framer.push(pcm);
  }
}
