/**
 * The microphone: permission, an AudioWorklet tapping the stream, and per-turn encoding into
 * protocol frames (CaptureEncoder). The stream stays open after the first press so the start
 * of the next question is not clipped; it is released when the page is hidden or closed.
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

type Listener = (audio: TurnAudio) => void;

export class MicCapture {
  private stream: MediaStream | null = null;
  private context: AudioContext | null = null;
  private node: AudioWorkletNode | null = null;
  private opening: Promise<void> | null = null;
  private encoder: CaptureEncoder | null = null;
  private onFrame: ((frame: ArrayBuffer) => void) | null = null;
  private stopWaiters = new Map<number, () => void>();
  private nextStopId = 1;

  constructor(
    private readonly workletUrl: string,
    private readonly onProgress: Listener = () => {},
  ) {}

  get open(): boolean {
    return this.node !== null;
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
      stream.getAudioTracks()[0]?.addEventListener("ended", () => this.release());
    } catch (e) {
      stream.getTracks().forEach((t) => t.stop());
      throw new MicError("failed", `${describeMicProblem("failed")} (${e instanceof Error ? e.message : String(e)})`);
    }
  }

  /** Start sending this turn's audio, framed, to `onFrame`. */
  begin(onFrame: (frame: ArrayBuffer) => void): void {
    if (!this.node || !this.context) throw new MicError("failed", describeMicProblem("failed"));
    this.encoder = new CaptureEncoder(this.context.sampleRate);
    this.onFrame = onFrame;
    this.node.port.postMessage({ type: "start" });
    this.onProgress({ durationMs: 0, rms: 0 });
  }

  /** Stop recording; the audio still in the worklet is sent before this resolves. */
  async end(): Promise<TurnAudio> {
    const encoder = this.encoder;
    if (!encoder || !this.node) return { durationMs: 0, rms: 0 };
    const id = this.nextStopId++;
    const stopped = new Promise<void>((resolve) => {
      this.stopWaiters.set(id, resolve);
      setTimeout(resolve, 500); // a worklet that never answers must not hang the turn
    });
    this.node.port.postMessage({ type: "stop", id });
    await stopped;
    this.stopWaiters.delete(id);
    for (const frame of encoder.flush()) this.onFrame?.(frame);
    const result = { durationMs: encoder.durationMs, rms: encoder.rms };
    this.onProgress(result);
    this.encoder = null;
    this.onFrame = null;
    return result;
  }

  /** Stop recording and throw the rest away. */
  abort(): void {
    this.encoder = null;
    this.onFrame = null;
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
      if (!this.encoder) return;
      const frames = this.encoder.push(message.samples);
      for (const frame of frames) this.onFrame?.(frame);
      // Once per frame sent (≤ 10 a second), not per worklet batch.
      if (frames.length) this.onProgress({ durationMs: this.encoder.durationMs, rms: this.encoder.rms });
    } else if (message.type === "stopped") {
      this.stopWaiters.get(message.id)?.();
    }
  }
}

type WorkletMessage = { type: "audio"; samples: Float32Array } | { type: "stopped"; id: number };
