/**
 * The protocol client: gets a session token, opens `/v1/voice`, starts (or resumes) the
 * session in the mode the page wants, hands events and audio to its owner, and reconnects with
 * back-off when the socket drops, resuming with `session.start` and the previous `session_id`.
 */

import { ApiError, requestSessionToken } from "./api";
import {
  parseAudioFrame,
  parseServerEvent,
  type AudioChunk,
  type ClientMessage,
  type ServerEvent,
  type SessionMode,
} from "./protocol";

export type ConnectionState =
  | "idle" // not started
  | "connecting" // first attempt
  | "connected" // session.ready received
  | "reconnecting" // lost; a retry is scheduled or running
  | "unauthorized" // the API key was refused: waits for a new key
  | "closed"; // closed by the page

export interface ConnectionInfo {
  state: ConnectionState;
  /** Consecutive failed attempts since the last success. */
  attempt: number;
  /** When the next retry starts (ms since epoch), while reconnecting. */
  retryAt: number | null;
  /** Why the last attempt failed, in plain words. */
  problem: string | null;
  sessionId: string | null;
}

/** The parts of the browser's WebSocket the client uses (a fake implements it in unit tests). */
export interface SocketLike {
  binaryType: BinaryType;
  readonly readyState: number;
  onopen: ((ev: Event) => void) | null;
  onmessage: ((ev: MessageEvent) => void) | null;
  onclose: ((ev: CloseEvent) => void) | null;
  onerror: ((ev: Event) => void) | null;
  send(data: string | ArrayBufferLike | ArrayBufferView): void;
  close(code?: number, reason?: string): void;
}

export interface VoiceClientOptions {
  /** Gateway base URL; "" means the origin that served the page. */
  baseUrl: string;
  apiKey: () => string | null;
  language?: string;
  /** How turns are taken (default push_to_talk); `setMode` changes it later. */
  mode?: SessionMode;
  /** A session to resume on the first connect (e.g. this tab's, before a reload). */
  sessionId?: string | null;
  onEvent: (event: ServerEvent) => void;
  onAudio: (chunk: AudioChunk) => void;
  onConnection: (info: ConnectionInfo) => void;
  // seams for tests
  fetch?: typeof fetch;
  createSocket?: (url: string, protocols: string[]) => SocketLike;
  random?: () => number;
  setTimer?: (fn: () => void, ms: number) => unknown;
  clearTimer?: (handle: unknown) => void;
  now?: () => number;
  location?: { protocol: string; host: string };
}

const OPEN = 1;
const CLOSE_UNAUTHORIZED = 4401; // missing, forged or expired token
const CLOSE_RATE_LIMITED = 4429;
const CLOSE_SERVICE_RESTART = 1012;
const CLOSE_TRY_AGAIN_LATER = 1013; // the key could not be checked (the database is down)
const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 10_000;

/** Delay before retry number `attempt` (1-based): doubling from 0.5 s up to 10 s, ±20 % jitter. */
export function backoffDelay(attempt: number, random: () => number = Math.random): number {
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** Math.max(0, attempt - 1));
  return Math.round(base * (0.8 + 0.4 * random()));
}

/** The WebSocket URL of the voice endpoint for a gateway base ("" = this page's origin). */
export function voiceSocketUrl(base: string, location: { protocol: string; host: string }): string {
  const url = base ? new URL("/v1/voice", base) : new URL("/v1/voice", `${location.protocol}//${location.host}`);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.toString();
}

/** The session token travels in the Sec-WebSocket-Protocol header, beside the protocol's name,
 * never in the URL (which proxies and access logs record); docs/protocol.md. */
export function voiceSocketProtocols(token: string): string[] {
  return ["voicebot.v1", `voicebot.token.${token}`];
}

export class VoiceClient {
  private socket: SocketLike | null = null;
  private timer: unknown = null;
  private info: ConnectionInfo = { state: "idle", attempt: 0, retryAt: null, problem: null, sessionId: null };
  private stopped = false;
  private generation = 0; // bumps on every attempt, so callbacks of an old socket are ignored
  private connectedOnce = false;
  private wanted: SessionMode; // what the page asked for, sent with every session.start
  private inForce: SessionMode | null = null; // what the server said, on this socket

  constructor(private readonly options: VoiceClientOptions) {
    this.info.sessionId = options.sessionId ?? null;
    this.wanted = options.mode ?? "push_to_talk";
  }

  /** The mode the page asked for (sent at every connect). */
  get mode(): SessionMode {
    return this.wanted;
  }

  /** The mode the server has confirmed on the open session (`session.ready`, `session.updated`);
   * null while not connected. Hands-free audio may only be sent once this is `hands_free`. */
  get serverMode(): SessionMode | null {
    return this.ready ? this.inForce : null;
  }

  /** Switch modes: `session.update` now when connected, and at every later connect. */
  setMode(mode: SessionMode): void {
    if (mode === this.wanted) return;
    this.wanted = mode;
    this.send({ type: "session.update", mode });
  }

  get connection(): ConnectionInfo {
    return { ...this.info };
  }

  get ready(): boolean {
    return this.info.state === "connected" && this.socket?.readyState === OPEN;
  }

  start(): void {
    this.stopped = false;
    if (this.info.state === "idle" || this.info.state === "closed" || this.info.state === "unauthorized") {
      void this.attempt();
    }
  }

  /** Reconnect now (a new API key, or the person pressed "retry"). */
  reconnectNow(): void {
    this.stopped = false;
    this.clearTimer();
    this.dropSocket();
    void this.attempt();
  }

  close(): void {
    this.stopped = true;
    this.clearTimer();
    this.dropSocket();
    this.setInfo({ state: "closed", retryAt: null });
  }

  send(message: ClientMessage): boolean {
    if (!this.ready || !this.socket) return false;
    this.socket.send(JSON.stringify(message));
    return true;
  }

  sendAudio(frame: ArrayBuffer): boolean {
    if (!this.ready || !this.socket) return false;
    this.socket.send(frame);
    return true;
  }

  private async attempt(): Promise<void> {
    const generation = ++this.generation;
    this.timer = null;
    this.setInfo({ state: this.info.attempt ? "reconnecting" : this.connectedOnce ? "reconnecting" : "connecting", retryAt: null });
    let token: string;
    try {
      token = (await requestSessionToken(this.options.baseUrl, this.options.apiKey(), this.options.fetch)).token;
    } catch (e) {
      if (generation !== this.generation || this.stopped) return;
      if (e instanceof ApiError && e.code === "unauthorized") {
        this.setInfo({ state: "unauthorized", problem: e.message, retryAt: null });
        return;
      }
      this.scheduleRetry(e instanceof ApiError ? e.message : "Cannot reach the Voicebot server.");
      return;
    }
    if (generation !== this.generation || this.stopped) return;

    const location = this.options.location ?? window.location;
    const socket = (this.options.createSocket ?? ((url: string, protocols: string[]) => new WebSocket(url, protocols)))(
      voiceSocketUrl(this.options.baseUrl, location),
      voiceSocketProtocols(token),
    );
    socket.binaryType = "arraybuffer";
    this.socket = socket;
    let opened = false;
    let ready = false;
    socket.onopen = () => {
      if (generation !== this.generation) return;
      opened = true;
      const start: ClientMessage = { type: "session.start", mode: this.wanted };
      if (this.info.sessionId) start.session_id = this.info.sessionId;
      if (this.options.language) start.language = this.options.language;
      socket.send(JSON.stringify(start));
    };
    socket.onmessage = (message: MessageEvent) => {
      if (generation !== this.generation) return;
      if (typeof message.data === "string") {
        const event = parseServerEvent(message.data);
        if (!event) return;
        if (!ready && event.type === "error" && event.code === "not_found") {
          // The previous session could not be resumed (nothing stored yet): a new one starts.
          return;
        }
        if (event.type === "session.ready") {
          ready = true;
          this.connectedOnce = true;
          this.inForce = event.mode ?? "push_to_talk";
          this.setInfo({ state: "connected", attempt: 0, problem: null, retryAt: null, sessionId: event.session_id });
        } else if (event.type === "session.updated") {
          this.inForce = event.mode;
        }
        this.options.onEvent(event);
        if (event.type === "session.ready" && this.inForce !== this.wanted) {
          // setMode() was called between session.start and session.ready.
          this.send({ type: "session.update", mode: this.wanted });
        }
      } else if (message.data instanceof ArrayBuffer) {
        const chunk = parseAudioFrame(message.data);
        if (chunk) this.options.onAudio(chunk);
      }
    };
    socket.onerror = () => {
      // onclose follows with the code; nothing to do here
    };
    socket.onclose = (ev: CloseEvent) => {
      if (generation !== this.generation) return;
      this.socket = null;
      this.inForce = null;
      if (this.stopped) return;
      if (ev.code === CLOSE_UNAUTHORIZED) {
        this.scheduleRetry("The session token was refused; getting a new one.");
      } else if (ev.code === CLOSE_RATE_LIMITED) {
        this.scheduleRetry("Too many open voice sessions or requests for this key; waiting before trying again.");
      } else if (ev.code === CLOSE_SERVICE_RESTART) {
        this.scheduleRetry("The server is restarting.");
      } else if (ev.code === CLOSE_TRY_AGAIN_LATER) {
        this.scheduleRetry("The server cannot check the API key right now (its database is unavailable).");
      } else if (!opened) {
        this.scheduleRetry("Cannot open the voice connection to the server.");
      } else {
        this.scheduleRetry("The connection to the server was lost.");
      }
    };
  }

  private scheduleRetry(problem: string): void {
    const attempt = this.info.attempt + 1;
    const delay = backoffDelay(attempt, this.options.random);
    const now = this.options.now ?? Date.now;
    this.setInfo({ state: "reconnecting", attempt, problem, retryAt: now() + delay });
    const set = this.options.setTimer ?? ((fn: () => void, ms: number) => setTimeout(fn, ms));
    this.timer = set(() => void this.attempt(), delay);
  }

  private clearTimer(): void {
    if (this.timer !== null) {
      const clear = this.options.clearTimer ?? ((h: unknown) => clearTimeout(h as ReturnType<typeof setTimeout>));
      clear(this.timer);
      this.timer = null;
    }
  }

  private dropSocket(): void {
    this.generation++;
    this.inForce = null;
    const socket = this.socket;
    this.socket = null;
    if (socket) {
      socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
      try {
        socket.close(1000, "closed by the page");
      } catch {
        // already closing
      }
    }
  }

  private setInfo(patch: Partial<ConnectionInfo>): void {
    this.info = { ...this.info, ...patch };
    this.options.onConnection(this.connection);
  }
}
