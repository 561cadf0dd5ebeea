/**
 * The voice protocol v1 (docs/protocol.md; models in orchestrator/protocol.py), as the browser
 * speaks it: typed client messages and server events, the 16-byte header of server audio
 * frames, and plain-words messages for the stable error codes. tests/unit/test_protocol_schema.py
 * checks these types against the protocol's JSON Schema (docs/protocol.schema.json).
 */

export const PROTOCOL_VERSION = 1;
/** Client audio: PCM16 little-endian, 16 kHz, mono. */
export const INPUT_SAMPLE_RATE = 16_000;
/** Frames we send are at most this long (the server accepts up to 200 ms). */
export const FRAME_MS = 100;
export const AUDIO_HEADER_BYTES = 16;
const KIND_AUDIO = 1;

// ---- client → server ---------------------------------------------------------------------

/** push_to_talk: the client says when a turn starts and ends; hands_free: it streams the
 * microphone all the time and the gateway takes the turns (docs/protocol.md, Hands-free). */
export type SessionMode = "push_to_talk" | "hands_free";

export type ClientMessage =
  | { type: "session.start"; mode?: SessionMode; session_id?: string; language?: string; voice?: string }
  | { type: "session.update"; mode: SessionMode }
  | { type: "turn.start" }
  | { type: "turn.end" }
  | { type: "turn.cancel" }
  | { type: "text"; text: string; speak?: boolean };

// ---- server → client ---------------------------------------------------------------------

export interface Source {
  n: number;
  title: string;
  source: string;
  heading_path: string[];
  snippet: string;
  /** The passage as the LLM read it (live `sources` events; stored turns keep only the snippet). */
  text?: string;
}

/** Why an answer was declined: the documents do not answer the question. */
export type DeclineReason = "no_passages" | "not_in_documents" | "model_declined" | "unsupported";

/**
 * Milliseconds; `retrieval` is how long the search took, every other figure counts from the
 * release of the button (or the typed question). null: the stage did not run.
 */
export interface Timings {
  asr_final?: number | null;
  retrieval?: number | null;
  llm_first_token?: number | null;
  tts_first_audio?: number | null;
  first_audio?: number | null;
  total?: number | null;
}

/** ignored: a hands-free turn with no question in it (a cough, "mm-hmm"): not part of the conversation. */
export type TurnOutcome = "ok" | "error" | "cancelled" | "ignored";

export type ErrorCode =
  | "bad_request"
  | "bad_audio"
  | "too_large"
  | "unauthorized"
  | "insufficient_scope"
  | "collection_forbidden"
  | "rate_limited"
  | "not_found"
  | "model_unavailable"
  | "store_unavailable"
  | "timeout"
  | "shutting_down"
  | "internal";

export type ServerEvent =
  | {
      type: "session.ready";
      session_id: string;
      protocol: number;
      input_sample_rate: number;
      /** A stored session was resumed: history and turn numbering continue. */
      resumed?: boolean;
      /** The last turn number of the session so far. */
      turns?: number;
      mode: SessionMode;
    }
  | { type: "session.updated"; mode: SessionMode }
  | {
      type: "turn.started";
      turn: number;
      /** "speech": hands-free, the gateway heard speech begin (no local turn exists for it yet). */
      trigger: "client" | "speech";
    }
  | { type: "transcript.partial"; turn: number; text: string }
  | { type: "transcript.final"; turn: number; text: string }
  | { type: "sources"; turn: number; available: boolean; sources: Source[] }
  | { type: "answer.delta"; turn: number; text: string }
  | {
      type: "answer.done";
      turn: number;
      text: string;
      /** The `n` of the sources the answer cites. */
      citations?: number[];
      declined?: boolean;
      decline_reason?: DeclineReason | null;
    }
  | { type: "audio.clear"; turn: number }
  | { type: "turn.done"; turn: number; outcome: TurnOutcome; timings: Timings; note?: string }
  | { type: "error"; code: ErrorCode | string; message: string; turn: number | null; fatal: boolean };

const SERVER_TYPES = new Set<string>([
  "session.ready",
  "session.updated",
  "turn.started",
  "transcript.partial",
  "transcript.final",
  "sources",
  "answer.delta",
  "answer.done",
  "audio.clear",
  "turn.done",
  "error",
]);

/** One JSON text frame from the server, or null when it is not a v1 event we know. */
export function parseServerEvent(text: string): ServerEvent | null {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof data !== "object" || data === null) return null;
  const type = (data as { type?: unknown }).type;
  if (typeof type !== "string" || !SERVER_TYPES.has(type)) return null;
  return data as ServerEvent;
}

export interface AudioChunk {
  turn: number;
  seq: number;
  sampleRate: number;
  /** Samples as floats in [-1, 1). */
  samples: Float32Array;
}

/** A binary server frame: the 16-byte header, then PCM16 little-endian mono. Null if malformed. */
export function parseAudioFrame(frame: ArrayBuffer): AudioChunk | null {
  if (frame.byteLength < AUDIO_HEADER_BYTES) return null;
  const view = new DataView(frame);
  if (view.getUint8(0) !== KIND_AUDIO || view.getUint8(1) !== PROTOCOL_VERSION) return null;
  const turn = view.getUint32(4, true);
  const seq = view.getUint32(8, true);
  const sampleRate = view.getUint32(12, true);
  if (sampleRate < 3000 || sampleRate > 768_000) return null;
  const count = Math.floor((frame.byteLength - AUDIO_HEADER_BYTES) / 2);
  const samples = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    samples[i] = view.getInt16(AUDIO_HEADER_BYTES + 2 * i, true) / 32768;
  }
  return { turn, seq, sampleRate, samples };
}

/** The header as the server writes it (used by tests and tools). */
export function encodeAudioFrame(turn: number, seq: number, sampleRate: number, pcm: Int16Array): ArrayBuffer {
  const buffer = new ArrayBuffer(AUDIO_HEADER_BYTES + pcm.length * 2);
  const view = new DataView(buffer);
  view.setUint8(0, KIND_AUDIO);
  view.setUint8(1, PROTOCOL_VERSION);
  view.setUint16(2, 0, true);
  view.setUint32(4, turn, true);
  view.setUint32(8, seq, true);
  view.setUint32(12, sampleRate, true);
  pcm.forEach((s, i) => view.setInt16(AUDIO_HEADER_BYTES + 2 * i, s, true));
  return buffer;
}

// ---- errors in plain words -----------------------------------------------------------------

const PLAIN: Record<string, string> = {
  bad_request: "The app sent something the server did not understand. Reload the page; if it happens again, please report it.",
  bad_audio: "Some of your microphone audio could not be used. Please try again.",
  too_large: "That was too long for one question. Keep spoken questions under a minute and typed ones short.",
  unauthorized: "The server did not accept the API key. Enter a valid key under Settings.",
  insufficient_scope: "This API key may not do that. Ask for a key with the right scope, or enter another under Settings.",
  collection_forbidden: "This API key may not use that collection. Pick another, or enter another key under Settings.",
  rate_limited: "Too many requests right now. Wait a moment, then try again.",
  not_found: "That item no longer exists.",
  model_unavailable: "The speech and language models are not available right now. Try again in a moment.",
  store_unavailable: "The document store cannot be reached, so nothing can be looked up. Try again in a moment.",
  timeout: "The server took too long to answer. Please try again.",
  shutting_down: "The server is restarting. Voicebot reconnects by itself in a moment; then ask again.",
  internal: "Something went wrong on the server. Please try again.",
  // raised by the page itself
  not_connected: "Not connected to the server yet. Wait until the status says Connected, then try again.",
};

/**
 * A sentence a person can act on for a stable error code. The server's own message is kept as
 * detail (it never carries stack traces) for codes where it helps, e.g. which limit was hit.
 */
export function describeError(code: string, serverMessage?: string, opts: { fatal?: boolean; duringAnswer?: boolean } = {}): string {
  if (code === "model_unavailable" && opts.duringAnswer && !opts.fatal) {
    return "Speech is unavailable right now, so the answer is shown as text only.";
  }
  const plain = PLAIN[code] ?? "Something went wrong. Please try again.";
  if ((code === "too_large" || code === "bad_request") && serverMessage) {
    return `${plain} (${serverMessage})`;
  }
  return plain;
}
