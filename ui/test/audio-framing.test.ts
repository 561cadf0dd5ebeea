import { describe, expect, it } from "vitest";

import { CaptureEncoder, floatToPcm16, PcmFramer, StreamingResampler } from "@/lib/audio-framing";
import { FRAME_MS, INPUT_SAMPLE_RATE } from "@/lib/protocol";

function sine(freq: number, rate: number, seconds: number, amplitude = 0.5): Float32Array {
  const out = new Float32Array(Math.round(rate * seconds));
  for (let i = 0; i < out.length; i++) out[i] = amplitude * Math.sin((2 * Math.PI * freq * i) / rate);
  return out;
}

function rms(x: ArrayLike<number>, from = 0, to = x.length): number {
  let sum = 0;
  for (let i = from; i < to; i++) sum += x[i] * x[i];
  return Math.sqrt(sum / (to - from));
}

/** Magnitude of one frequency component (a single DFT bin), normalised to the sine amplitude. */
function tone(x: Float32Array, freq: number, rate: number): number {
  let re = 0;
  let im = 0;
  for (let i = 0; i < x.length; i++) {
    re += x[i] * Math.cos((2 * Math.PI * freq * i) / rate);
    im -= x[i] * Math.sin((2 * Math.PI * freq * i) / rate);
  }
  return (2 * Math.hypot(re, im)) / x.length;
}

function concat(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function resampleAll(input: Float32Array, inRate: number, chunk: number): Float32Array {
  const r = new StreamingResampler(inRate, INPUT_SAMPLE_RATE);
  const parts: Float32Array[] = [];
  for (let i = 0; i < input.length; i += chunk) parts.push(r.process(input.subarray(i, i + chunk)));
  parts.push(r.flush());
  return concat(parts);
}

describe("StreamingResampler", () => {
  it.each([48_000, 44_100, 32_000, 22_050, 96_000])("keeps a 440 Hz tone from %i Hz at 16 kHz", (rate) => {
    const out = resampleAll(sine(440, rate, 1), rate, 128);
    expect(Math.abs(out.length - INPUT_SAMPLE_RATE)).toBeLessThanOrEqual(2);
    // Skip the edges, where the filter sees the silence before and after.
    const middle = out.subarray(200, out.length - 200);
    expect(tone(middle, 440, INPUT_SAMPLE_RATE)).toBeCloseTo(0.5, 2);
  });

  it("removes what would alias: a 12 kHz tone at 48 kHz is almost gone at 16 kHz", () => {
    const out = resampleAll(sine(12_000, 48_000, 1), 48_000, 128);
    // Without a low-pass it would fold onto 4 kHz at full strength.
    expect(rms(out, 200, out.length - 200)).toBeLessThan(0.01);
  });

  it("gives the same samples whatever the chunk sizes", () => {
    const input = sine(1000, 44_100, 0.5);
    const a = resampleAll(input, 44_100, 128);
    const b = resampleAll(input, 44_100, 4410);
    const c = resampleAll(input, 44_100, 1);
    expect(b.length).toBe(a.length);
    expect(c.length).toBe(a.length);
    for (let i = 0; i < a.length; i++) {
      expect(b[i]).toBeCloseTo(a[i], 6);
      expect(c[i]).toBeCloseTo(a[i], 6);
    }
  });

  it("passes 16 kHz through untouched", () => {
    const input = sine(300, 16_000, 0.1);
    const r = new StreamingResampler(16_000, 16_000);
    expect(Array.from(r.process(input))).toEqual(Array.from(input));
    expect(r.flush().length).toBe(0);
  });

  it("keeps DC at unity gain", () => {
    const out = resampleAll(new Float32Array(48_000).fill(0.25), 48_000, 512);
    for (let i = 100; i < out.length - 100; i++) expect(out[i]).toBeCloseTo(0.25, 4);
  });

  it("refuses nonsense rates", () => {
    expect(() => new StreamingResampler(0, 16_000)).toThrow(RangeError);
  });
});

describe("floatToPcm16", () => {
  it("maps [-1, 1] to the PCM16 range and clips beyond", () => {
    expect(Array.from(floatToPcm16(Float32Array.from([0, 1, -1, 0.5, 2, -2])))).toEqual([
      0, 32767, -32768, 16384, 32767, -32768,
    ]);
  });
});

describe("PcmFramer", () => {
  it("cuts exact frames, little-endian, and flushes the rest", () => {
    const framer = new PcmFramer(4);
    const frames = framer.push(Int16Array.from([1, 2, 3, 4, 5, 6, 256, -2, 9]));
    expect(frames.map((f) => f.byteLength)).toEqual([8, 8]);
    const second = new DataView(frames[1]);
    expect(second.getUint8(4)).toBe(0); // 256 little-endian: 00 01
    expect(second.getUint8(5)).toBe(1);
    expect(second.getInt16(6, true)).toBe(-2);
    const rest = framer.flush();
    expect(rest?.byteLength).toBe(2);
    expect(framer.flush()).toBeNull();
  });
});

describe("CaptureEncoder", () => {
  it(`frames 48 kHz microphone audio as ${FRAME_MS} ms of 16 kHz PCM16, never over the limit`, () => {
    const encoder = new CaptureEncoder(48_000);
    const input = sine(440, 48_000, 1.23);
    const frames: ArrayBuffer[] = [];
    for (let i = 0; i < input.length; i += 960) frames.push(...encoder.push(input.subarray(i, i + 960)));
    frames.push(...encoder.flush());
    const frameBytes = (INPUT_SAMPLE_RATE * FRAME_MS * 2) / 1000;
    expect(frameBytes).toBeLessThanOrEqual(6400);
    frames.slice(0, -1).forEach((f) => expect(f.byteLength).toBe(frameBytes));
    const last = frames[frames.length - 1].byteLength;
    expect(last).toBeGreaterThan(0);
    expect(last % 2).toBe(0);
    const total = frames.reduce((n, f) => n + f.byteLength, 0) / 2;
    expect(Math.abs(total - 1.23 * INPUT_SAMPLE_RATE)).toBeLessThanOrEqual(2);
    expect(encoder.durationMs).toBeCloseTo(1230, -1);
    expect(encoder.rms).toBeGreaterThan(10_000); // a 0.5 sine: ~11585
  });

  it("reports silence as silence", () => {
    const encoder = new CaptureEncoder(44_100);
    encoder.push(new Float32Array(44_100));
    encoder.flush();
    expect(encoder.rms).toBe(0);
  });
});
