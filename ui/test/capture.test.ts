import { describe, expect, it } from "vitest";

import { CaptureStream, frameDbfs, LEVEL_FLOOR_DBFS, meterLevel, type MicLevel } from "@/lib/capture";

const RATE = 48_000;

/** `ms` of a sine at `amplitude` (of full scale), as the worklet hands it over. */
function tone(ms: number, amplitude: number, rate = RATE): Float32Array {
  const out = new Float32Array(Math.round((rate * ms) / 1000));
  for (let i = 0; i < out.length; i++) out[i] = amplitude * Math.sin((2 * Math.PI * 440 * i) / rate);
  return out;
}

function pcm(values: number[]): ArrayBuffer {
  const view = new DataView(new ArrayBuffer(values.length * 2));
  values.forEach((v, i) => view.setInt16(2 * i, v, true));
  return view.buffer;
}

function harness(intervalMs = 100) {
  const frames: ArrayBuffer[] = [];
  const levels: MicLevel[] = [];
  let clock = 0;
  const stream = new CaptureStream(RATE, (f) => frames.push(f), (l) => levels.push(l), () => clock, intervalMs);
  return {
    stream,
    frames,
    levels,
    tick: (ms: number) => (clock += ms),
  };
}

const silent = (frame: ArrayBuffer) => new Int16Array(frame).every((s) => s === 0);

describe("frameDbfs and meterLevel", () => {
  it("measures a frame's RMS below full scale", () => {
    expect(frameDbfs(pcm([32767, -32768, 32767, -32768]))).toBeCloseTo(0, 3);
    expect(frameDbfs(pcm([3277, -3277]))).toBeCloseTo(-20, 1);
    expect(frameDbfs(pcm([0, 0, 0]))).toBe(-Infinity);
    expect(frameDbfs(new ArrayBuffer(0))).toBe(-Infinity);
  });

  it("maps the floor to 0 and full scale to 1, linear in dB", () => {
    expect(meterLevel(-Infinity)).toBe(0);
    expect(meterLevel(LEVEL_FLOOR_DBFS - 10)).toBe(0);
    expect(meterLevel(LEVEL_FLOOR_DBFS / 2)).toBeCloseTo(0.5);
    expect(meterLevel(0)).toBe(1);
    expect(meterLevel(3)).toBe(1); // clipped
    expect(meterLevel(Number.NaN)).toBe(0);
  });
});

describe("CaptureStream", () => {
  it("sends 100 ms frames and reports the level of what it sent", () => {
    const h = harness();
    // a sine at 0.1 of full scale: RMS 0.0707, about -23 dBFS
    expect(h.stream.push(tone(100, 0.1))).toBe(0); // the resampler's look-ahead holds the last samples back
    h.tick(100);
    expect(h.stream.push(tone(100, 0.1))).toBe(1);
    expect(h.frames[0].byteLength).toBe(3200);
    expect(h.levels).toHaveLength(1);
    expect(h.levels[0].dbfs).toBeGreaterThan(-25);
    expect(h.levels[0].dbfs).toBeLessThan(-21);
    expect(h.levels[0].level).toBeCloseTo(meterLevel(h.levels[0].dbfs));
  });

  it("updates the level at most once per interval, keeping the loudest frame in between", () => {
    const h = harness(100);
    h.stream.push(tone(150, 0.01)); // frame 1: reported
    expect(h.levels).toHaveLength(1);
    h.tick(40);
    h.stream.push(tone(100, 0.5)); // frame 2, 40 ms later: held back
    h.tick(40);
    h.stream.push(tone(100, 0.01)); // frame 3: still held back
    expect(h.frames.length).toBeGreaterThanOrEqual(3);
    expect(h.levels).toHaveLength(1);
    h.tick(40);
    h.stream.push(tone(100, 0.01)); // 120 ms after the last update: the loud frame 2 is what shows
    expect(h.levels).toHaveLength(2);
    expect(h.levels[1].dbfs).toBeGreaterThan(-20); // the quiet frames are about -43 dBFS
    // Over a second of real-time audio, never more than 10 updates.
    const steady = harness(100);
    for (let i = 0; i < 50; i++) {
      steady.tick(20);
      steady.stream.push(tone(20, 0.1));
    }
    expect(steady.frames.length).toBeGreaterThanOrEqual(9);
    expect(steady.levels.length).toBeLessThanOrEqual(10);
  });

  it("sends silence while muted, without stopping the stream", () => {
    const live = harness();
    const muted = harness();
    muted.stream.muted = true;
    for (let i = 0; i < 5; i++) {
      live.tick(100);
      muted.tick(100);
      live.stream.push(tone(100, 0.3));
      muted.stream.push(tone(100, 0.3));
    }
    expect(muted.frames.length).toBe(live.frames.length); // the gateway still gets its 10 frames a second
    expect(muted.frames.every(silent)).toBe(true);
    expect(live.frames.some(silent)).toBe(false);
    expect(muted.levels.every((l) => l.level === 0 && l.dbfs === -Infinity)).toBe(true);

    // unmuted again: the voice is back in the next frames
    muted.stream.muted = false;
    muted.tick(100);
    muted.stream.push(tone(100, 0.3));
    muted.tick(100);
    muted.stream.push(tone(100, 0.3));
    expect(silent(muted.frames[muted.frames.length - 1])).toBe(false);
    expect(muted.levels[muted.levels.length - 1].level).toBeGreaterThan(0.5);
  });

  it("flushes the tail of a push-to-talk turn as a last short frame", () => {
    const h = harness();
    h.stream.push(tone(250, 0.1));
    const before = h.frames.length;
    expect(h.stream.flush()).toBeGreaterThan(0);
    expect(h.frames.length).toBeGreaterThan(before);
    expect(h.stream.durationMs).toBeCloseTo(250, 0);
  });
});
