/**
 * The microphone: permission, an AudioWorklet tapping the stream, and encoding into protocol
 * frames (CaptureStream). Push-to-talk sends one stream per turn (`begin` … `end`); hands-free
 * sends one stream until the mode changes (`begin` … `abort`). Muting keeps the stream going
 * with silence, so the gateway sees the speech end. The microphone stays open after the first
 * press so the start of the next question is not clipped; it is released when the page is
 * hidden or closed.
 */

import { CaptureEncoder } from "./audio-framing";

export type MicProblem = "denied" | "absent" | "busy" | "insecure" | "unsupported" | "failed";

export class MicError extends Error {
  constructor(
    readonly reason: MicProblem,
    message: string,
  ) {
    super(message);
    this.name = "MicError";
  }
}

const MIC_MESSAGES: Record<MicProblem, string> = {
  denied:
    "Microphone access is blocked. Allow the microphone for this site in the browser's address bar (the camera/microphone icon), then press the button again. You can also type your question below.",
  absent: "No microphone was found. Connect one (or check that it is enabled), then press the button again. You can also type your question below.",
  busy: "The microphone is in use by another application or could not be started. Close the other app, then try again.",
  insecure:
    "The browser only allows the microphone on secure pages. Open Voicebot over https, or on this computer at http://127.0.0.1. You can still type your question below.",
  unsupported: "This browser cannot record audio here. Try a recent Chrome, Edge, Firefox or Safari, or type your question below.",
  failed: "The microphone could not be started. Try again, or type your question below.",
};

export function describeMicProblem(reason: MicProblem): string {
  return MIC_MESSAGES[reason];
}

/** getUserMedia's DOMException names → what the person can do about it. */
export function classifyMicError(error: unknown): MicProblem {
  const name = error instanceof Error || (typeof error === "object" && error !== null && "name" in error) ? String((error as { name: unknown }).name) : "";
  switch (name) {
    case "NotAllowedError":
    case "PermissionDeniedError":
    case "SecurityError":
      return "denied";
    case "NotFoundError":
    case "DevicesNotFoundError":
    case "OverconstrainedError":
      return "absent";
    case "NotReadableError":
    case "TrackStartError":
    case "AbortError":
      return "busy";
    default:
      return "failed";
  }
}

export interface TurnAudio {
  /** Milliseconds of 16 kHz audio sent in this turn. */
  durationMs: number;
  /** RMS level of what was sent, in PCM16 units. */
  rms: number;
}

/** The microphone's level, for a meter: what is being sent (silence while muted). */
export interface MicLevel {
  /** RMS of the loudest frame since the last update, in dB below full scale (−Infinity: silence). */
  dbfs: number;
  /** The same on a 0..1 scale: LEVEL_FLOOR_DBFS and below are 0, full scale is 1. */
  level: number;
}

/** Levels at or below this show as an empty meter (room noise with noise suppression on). */
export const LEVEL_FLOOR_DBFS = -60;
/** The meter is updated at most this often (a frame is 100 ms, so about 10 a second). */
export const LEVEL_INTERVAL_MS = 100;

/** RMS level of one PCM16 little-endian frame, in dBFS; −Infinity for digital silence. */
export function frameDbfs(frame: ArrayBuffer): number {
  const count = Math.floor(frame.byteLength / 2);
  if (count === 0) return -Infinity;
  const view = new DataView(frame);
  let sum = 0;
  for (let i = 0; i < count; i++) {
    const s = view.getInt16(2 * i, true);
    sum += s * s;
  }
  const rms = Math.sqrt(sum / count);
  return rms > 0 ? 20 * Math.log10(rms / 32768) : -Infinity;
}

/** dBFS → 0..1 for a meter, linear in dB between the floor and full scale. */
export function meterLevel(dbfs: number): number {
  if (!(dbfs > LEVEL_FLOOR_DBFS)) return 0;
  return Math.min(1, (dbfs - LEVEL_FLOOR_DBFS) / -LEVEL_FLOOR_DBFS);
}

/**
 * One stream of worklet samples → protocol frames, with what the page shows of it: silenced
 * while muted (frames keep coming, all zeros), and a level per frame, throttled to one update
 * per `intervalMs` holding the loudest frame in between. Pure: unit-tested without a browser.
 */
export class CaptureStream {
  muted = false;
  private readonly encoder: CaptureEncoder;
  private peak = -Infinity;
  private lastLevelAt = -Infinity;

  constructor(
    inputRate: number,
    private readonly send: (frame: ArrayBuffer) => void,
    private readonly onLevel: (level: MicLevel) => void = () => {},
    private readonly now: () => number = () => performance.now(),
    private readonly intervalMs: number = LEVEL_INTERVAL_MS,
  ) {
    this.encoder = new CaptureEncoder(inputRate);
  }

  /** Frames sent for these samples (0 while the framer fills up). */
  push(samples: Float32Array): number {
    const frames = this.encoder.push(this.muted ? new Float32Array(samples.length) : samples);
    for (const frame of frames) {
      this.send(frame);
      this.peak = Math.max(this.peak, frameDbfs(frame));
    }
    if (frames.length) this.reportLevel();
    return frames.length;
  }

  /** The end of a push-to-talk turn: the resampler's tail and the last short frame. */
  flush(): number {
    const frames = this.encoder.flush();
    for (const frame of frames) this.send(frame);
    return frames.length;
  }

  /** Milliseconds of 16 kHz audio produced so far. */
  get durationMs(): number {
    return this.encoder.durationMs;
  }

  /** RMS level of everything produced, in PCM16 units. */
  get rms(): number {
    return this.encoder.rms;
  }

  private reportLevel(): void {
    const now = this.now();
    if (now - this.lastLevelAt < this.intervalMs) return;
    this.lastLevelAt = now;
    const dbfs = this.peak;
    this.peak = -Infinity;
    this.onLevel({ dbfs, level: meterLevel(dbfs) });
  }
}

export interface MicCaptureListeners {
  /** Once per frame sent (≤ 10 a second) and at the end of a turn. */
  onProgress?: (audio: TurnAudio) => void;
  /** The level of what is sent, at most every LEVEL_INTERVAL_MS. */
  onLevel?: (level: MicLevel) => void;
  /** The microphone went away by itself (unplugged, or revoked in the browser). */
  onLost?: () => void;
}

export class MicCapture {
  private stream: MediaStream | null = null;
  private context: AudioContext | null = null;
  private node: AudioWorkletNode | null = null;
  private opening: Promise<void> | null = null;
  private current: CaptureStream | null = null;
  private stopWaiters = new Map<number, () => void>();
  private nextStopId = 1;
  private mute = false;

  constructor(
    private readonly workletUrl: string,
    private readonly listeners: MicCaptureListeners = {},
  ) {}

  get open(): boolean {
    return this.node !== null;
  }

  /** Audio is being sent (between `begin` and `end`/`abort`). */
  get streaming(): boolean {
    return this.current !== null;
  }

  get muted(): boolean {
    return this.mute;
  }

  /**
   * Muted: the track is disabled (the browser delivers silence) and the samples are zeroed
   * here as well, so what is sent is silence whatever the browser does; the stream goes on.
   */
  setMuted(muted: boolean): void {
    this.mute = muted;
    this.stream?.getAudioTracks().forEach((track) => (track.enabled = !muted));
    if (this.current) this.current.muted = muted;
  }

  /** Ask for the microphone (once) and set up the worklet. Throws MicError. */
  ensure(): Promise<void> {
    if (this.node) return Promise.resolve();
    this.opening ??= this.openMic().finally(() => {
      this.opening = null;
    });
    return this.opening;
  }

  private async openMic(): Promise<void> {
    if (typeof navigator === "undefined" || !navigator.mediaDevices?.getUserMedia) {
      const secure = typeof window !== "undefined" && window.isSecureContext;
      throw new MicError(secure ? "unsupported" : "insecure", describeMicProblem(secure ? "unsupported" : "insecure"));
    }
    let stream: MediaStream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
      });
    } catch (e) {
      const reason = classifyMicError(e);
      throw new MicError(reason, describeMicProblem(reason));
    }
    try {
      const context = new AudioContext({ latencyHint: "interactive" });
      await context.audioWorklet.addModule(this.workletUrl);
      const source = context.createMediaStreamSource(stream);
      const node = new AudioWorkletNode(context, "pcm-capture", { numberOfInputs: 1, numberOfOutputs: 1, outputChannelCount: [1] });
      // A silent route to the destination keeps the node pulled by the audio graph everywhere.
      const mute = context.createGain();
      mute.gain.value = 0;
      source.connect(node).connect(mute).connect(context.destination);
      node.port.onmessage = (event: MessageEvent) => this.onWorkletMessage(event.data as WorkletMessage);
      if (context.state === "suspended") await context.resume();
      this.stream = stream;
      this.context = context;
      this.node = node;
      stream.getAudioTracks().forEach((track) => (track.enabled = !this.mute));
      stream.getAudioTracks()[0]?.addEventListener("ended", () => {
        this.release();
        this.listeners.onLost?.();
      });
    } catch (e) {
      stream.getTracks().forEach((t) => t.stop());
      throw new MicError("failed", `${describeMicProblem("failed")} (${e instanceof Error ? e.message : String(e)})`);
    }
  }

  /** Start sending audio, framed, to `onFrame`: until `end` (a turn) or `abort` (hands-free). */
  begin(onFrame: (frame: ArrayBuffer) => void): void {
    if (!this.node || !this.context) throw new MicError("failed", describeMicProblem("failed"));
    const stream = new CaptureStream(this.context.sampleRate, onFrame, this.listeners.onLevel);
    stream.muted = this.mute;
    this.current = stream;
    this.node.port.postMessage({ type: "start" });
    this.listeners.onProgress?.({ durationMs: 0, rms: 0 });
  }

  /** Stop recording; the audio still in the worklet is sent before this resolves. */
  async end(): Promise<TurnAudio> {
    const stream = this.current;
    if (!stream || !this.node) return { durationMs: 0, rms: 0 };
    const id = this.nextStopId++;
    const stopped = new Promise<void>((resolve) => {
      this.stopWaiters.set(id, resolve);
      setTimeout(resolve, 500); // a worklet that never answers must not hang the turn
    });
    this.node.port.postMessage({ type: "stop", id });
    await stopped;
    this.stopWaiters.delete(id);
    if (this.current !== stream) return { durationMs: stream.durationMs, rms: stream.rms }; // aborted meanwhile
    stream.flush();
    const result = { durationMs: stream.durationMs, rms: stream.rms };
    this.listeners.onProgress?.(result);
    this.current = null;
    return result;
  }

  /** Stop recording and throw the rest away. */
  abort(): void {
    this.current = null;
    this.node?.port.postMessage({ type: "stop", id: 0 });
  }

  /** Close the microphone (the browser's recording indicator goes off). */
  release(): void {
    this.abort();
    this.stream?.getTracks().forEach((t) => t.stop());
    void this.context?.close().catch(() => {});
    this.stream = null;
    this.context = null;
    this.node = null;
  }

  private onWorkletMessage(message: WorkletMessage): void {
    if (message.type === "audio") {
      const stream = this.current;
      if (!stream) return;
      // Once per frame sent (≤ 10 a second), not per worklet batch.
      if (stream.push(message.samples)) this.listeners.onProgress?.({ durationMs: stream.durationMs, rms: stream.rms });
    } else if (message.type === "stopped") {
      this.stopWaiters.get(message.id)?.();
    }
  }
}

type WorkletMessage = { type: "audio"; samples: Float32Array } | { type: "stopped"; id: number };
