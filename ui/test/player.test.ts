import { describe, expect, it } from "vitest";

import { AudioPlayer, type PlaybackContext, type PlaybackStats } from "@/lib/player";
import type { AudioChunk } from "@/lib/protocol";

/** A clock you move by hand, and sources that record when they start and stop. */
class FakeContext implements PlaybackContext {
  currentTime = 0;
  state = "running";
  destination = {} as AudioNode;
  sources: FakeSource[] = [];

  createBuffer(_channels: number, length: number, sampleRate: number): AudioBuffer {
    return { duration: length / sampleRate, copyToChannel: () => {} } as unknown as AudioBuffer;
  }

  createBufferSource(): AudioBufferSourceNode {
    const source = new FakeSource();
    this.sources.push(source);
    return source as unknown as AudioBufferSourceNode;
  }

  async resume(): Promise<void> {
    this.state = "running";
  }

  /** Advance the clock; sources that reach their end fire `onended`. */
  advance(seconds: number): void {
    this.currentTime += seconds;
    for (const s of this.sources) {
      if (s.startAt !== null && !s.stopped && !s.ended && s.startAt + s.buffer.duration <= this.currentTime + 1e-9) {
        s.ended = true;
        s.onended?.();
      }
    }
  }
}

class FakeSource {
  buffer = { duration: 0 };
  startAt: number | null = null;
  stopped = false;
  ended = false;
  onended: (() => void) | null = null;
  connect() {}
  disconnect() {}
  start(when: number) {
    this.startAt = when;
  }
  stop() {
    this.stopped = true;
    this.onended?.(); // browsers fire ended after stop() too
  }
}

function chunk(turn: number, seq: number, ms = 100, rate = 22_050): AudioChunk {
  return { turn, seq, sampleRate: rate, samples: new Float32Array((rate * ms) / 1000).fill(0.1) };
}

function setup() {
  const ctx = new FakeContext();
  const seen: PlaybackStats[] = [];
  const player = new AudioPlayer(() => ctx, (s) => seen.push(s));
  return { ctx, player, seen };
}

describe("AudioPlayer", () => {
  it("schedules chunks back to back with no gap", () => {
    const { ctx, player } = setup();
    player.enqueue(chunk(1, 0, 200));
    player.enqueue(chunk(1, 1, 300));
    player.enqueue(chunk(1, 2, 100));
    const [a, b, c] = ctx.sources;
    expect(b.startAt).toBeCloseTo((a.startAt ?? 0) + 0.2, 9);
    expect(c.startAt).toBeCloseTo((b.startAt ?? 0) + 0.3, 9);
  });

  it("counts chunks and milliseconds that played to the end", () => {
    const { ctx, player } = setup();
    player.enqueue(chunk(1, 0, 200));
    player.enqueue(chunk(1, 1, 300));
    expect(player.snapshot.playing).toBe(true);
    ctx.advance(1);
    expect(player.snapshot).toMatchObject({ chunksPlayed: 2, playing: false, turn: 1 });
    expect(player.snapshot.playedMs).toBeCloseTo(500, 6);
  });

  it("starts after the last chunk ended without scheduling in the past", () => {
    const { ctx, player } = setup();
    player.enqueue(chunk(1, 0, 100));
    ctx.advance(5);
    player.enqueue(chunk(1, 1, 100));
    expect(ctx.sources[1].startAt).toBeGreaterThan(5);
  });

  it("drops a cleared turn at once, and its audio that arrives later", () => {
    const { ctx, player } = setup();
    player.enqueue(chunk(1, 0));
    player.enqueue(chunk(1, 1));
    player.clearTurn(1);
    expect(ctx.sources.every((s) => s.stopped)).toBe(true);
    player.enqueue(chunk(1, 2)); // late, already on the wire
    expect(ctx.sources).toHaveLength(2);
    expect(player.snapshot).toMatchObject({ chunksPlayed: 0, chunksDropped: 3, playing: false });
  });

  it("stops everything on stopAll (barge-in) and plays the next turn", () => {
    const { ctx, player } = setup();
    player.enqueue(chunk(1, 0));
    player.stopAll();
    player.beginTurn(2);
    player.enqueue(chunk(1, 1)); // late audio of the interrupted turn
    player.enqueue(chunk(2, 0));
    expect(ctx.sources).toHaveLength(2);
    ctx.advance(1);
    expect(player.snapshot).toMatchObject({ chunksPlayed: 1, turn: 2, playedByTurn: { 2: 1 } });
  });

  it("drops older turns when a new one begins", () => {
    const { ctx, player } = setup();
    player.enqueue(chunk(3, 0));
    player.beginTurn(4);
    expect(ctx.sources[0].stopped).toBe(true);
    player.enqueue(chunk(3, 1));
    expect(ctx.sources).toHaveLength(1);
  });

  it("ignores a repeated sequence number", () => {
    const { ctx, player } = setup();
    player.enqueue(chunk(1, 0));
    player.enqueue(chunk(1, 0));
    expect(ctx.sources).toHaveLength(1);
  });

  it("forgets dropped turns on a new socket, where numbering restarts", () => {
    const { ctx, player } = setup();
    player.enqueue(chunk(1, 0));
    player.clearTurn(1);
    player.reset();
    player.enqueue(chunk(1, 0));
    expect(ctx.sources).toHaveLength(2);
    expect(ctx.sources[1].stopped).toBe(false);
  });
});
