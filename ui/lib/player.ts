/**
 * Gapless playback of the answer audio with Web Audio: each chunk is scheduled to start exactly
 * where the previous one ends. Chunks of a turn that was interrupted are dropped, whether they
 * are queued, playing or still arriving (`audio.clear`, barge-in, a new turn).
 */

import type { AudioChunk } from "./protocol";

/** The part of an AudioContext the player uses (a fake implements it in unit tests). */
export interface PlaybackContext {
  readonly currentTime: number;
  readonly destination: AudioNode;
  readonly state: string;
  createBuffer(channels: number, length: number, sampleRate: number): AudioBuffer;
  createBufferSource(): AudioBufferSourceNode;
  resume(): Promise<void>;
}

export interface PlaybackStats {
  /** Chunks that played to their end. */
  chunksPlayed: number;
  /** Milliseconds of audio that played to the end of their chunk. */
  playedMs: number;
  /** Chunks thrown away: late audio of an interrupted turn, or queued audio dropped by a stop. */
  chunksDropped: number;
  /** Audio is scheduled or sounding now. */
  playing: boolean;
  /** The turn whose audio is playing (or last played). */
  turn: number | null;
  /** Chunks played to the end, per turn. */
  playedByTurn: Record<number, number>;
}

/** Seconds of lead before the first chunk, so its start is never already in the past. */
const START_LEAD_S = 0.05;

interface Scheduled {
  source: AudioBufferSourceNode;
  turn: number;
  durationS: number;
}

export class AudioPlayer {
  private nextStart = 0;
  private scheduled = new Set<Scheduled>();
  private dropped = new Set<number>(); // turns whose audio must never play
  private lastSeq = new Map<number, number>();
  private stats: PlaybackStats = {
    chunksPlayed: 0,
    playedMs: 0,
    chunksDropped: 0,
    playing: false,
    turn: null,
    playedByTurn: {},
  };

  constructor(
    private readonly context: () => PlaybackContext,
    private readonly onChange: (stats: PlaybackStats) => void = () => {},
  ) {}

  get snapshot(): PlaybackStats {
    return { ...this.stats, playedByTurn: { ...this.stats.playedByTurn } };
  }

  /** Resume the output context; call it from a user gesture (autoplay rules). */
  unlock(): void {
    const ctx = this.context();
    if (ctx.state === "suspended") void ctx.resume().catch(() => {});
  }

  /** Queue one chunk right after what is already scheduled. */
  enqueue(chunk: AudioChunk): void {
    if (this.dropped.has(chunk.turn) || chunk.samples.length === 0) {
      if (chunk.samples.length) this.update({ chunksDropped: this.stats.chunksDropped + 1 });
      return;
    }
    const last = this.lastSeq.get(chunk.turn);
    if (last !== undefined && chunk.seq <= last) return; // a duplicate; the socket keeps order
    this.lastSeq.set(chunk.turn, chunk.seq);

    const ctx = this.context();
    const buffer = ctx.createBuffer(1, chunk.samples.length, chunk.sampleRate);
    buffer.copyToChannel(chunk.samples as Float32Array<ArrayBuffer>, 0);
    const source = ctx.createBufferSource();
    source.buffer = buffer;
    source.connect(ctx.destination);
    const start = Math.max(this.nextStart, ctx.currentTime + (this.scheduled.size ? 0 : START_LEAD_S));
    const entry: Scheduled = { source, turn: chunk.turn, durationS: chunk.samples.length / chunk.sampleRate };
    source.onended = () => {
      if (!this.scheduled.delete(entry)) return; // stopped: already accounted as dropped
      this.update({
        chunksPlayed: this.stats.chunksPlayed + 1,
        playedMs: this.stats.playedMs + entry.durationS * 1000,
        playing: this.scheduled.size > 0,
        playedByTurn: { ...this.stats.playedByTurn, [entry.turn]: (this.stats.playedByTurn[entry.turn] ?? 0) + 1 },
      });
    };
    source.start(start);
    this.nextStart = start + entry.durationS;
    this.scheduled.add(entry);
    this.update({ playing: true, turn: chunk.turn });
  }

  /** Drop every chunk of `turn`, now and when more arrive later. */
  clearTurn(turn: number): void {
    this.dropped.add(turn);
    this.stopWhere((entry) => entry.turn === turn);
  }

  /** Stop everything at once (barge-in, stop button, a new question). */
  stopAll(): void {
    for (const entry of this.scheduled) this.dropped.add(entry.turn);
    this.stopWhere(() => true);
  }

  /** A new socket: the server numbers turns from 1 again, so forget what was dropped. */
  reset(): void {
    this.stopAll();
    this.dropped.clear();
    this.lastSeq.clear();
  }

  /** A new turn began: older turns never play again. */
  beginTurn(turn: number): void {
    for (const entry of this.scheduled) if (entry.turn < turn) this.dropped.add(entry.turn);
    for (const t of this.lastSeq.keys()) if (t < turn) this.dropped.add(t);
    this.stopWhere((entry) => entry.turn < turn);
  }

  private stopWhere(match: (entry: Scheduled) => boolean): void {
    let stopped = 0;
    for (const entry of [...this.scheduled]) {
      if (!match(entry)) continue;
      this.scheduled.delete(entry);
      try {
        entry.source.stop();
      } catch {
        // not started yet in some engines; disconnecting is enough
      }
      entry.source.disconnect();
      stopped++;
    }
    if (this.scheduled.size === 0) this.nextStart = 0;
    if (stopped) this.update({ chunksDropped: this.stats.chunksDropped + stopped, playing: this.scheduled.size > 0 });
  }

  private update(patch: Partial<PlaybackStats>): void {
    this.stats = { ...this.stats, ...patch };
    this.onChange(this.snapshot);
  }
}
