import { describe, expect, it } from "vitest";

import { encodeAudioFrame, type ServerEvent, type SessionMode } from "@/lib/protocol";
import { backoffDelay, VoiceClient, voiceSocketProtocols, voiceSocketUrl, type ConnectionInfo, type SocketLike } from "@/lib/voice-client";

class FakeSocket implements SocketLike {
  binaryType: BinaryType = "blob";
  readyState = 0;
  sent: Array<string | ArrayBuffer> = [];
  onopen: ((ev: Event) => void) | null = null;
  onmessage: ((ev: MessageEvent) => void) | null = null;
  onclose: ((ev: CloseEvent) => void) | null = null;
  onerror: ((ev: Event) => void) | null = null;
  constructor(
    readonly url: string,
    readonly protocols: string[] = [],
  ) {}
  send(data: string | ArrayBufferLike | ArrayBufferView) {
    this.sent.push(data as string | ArrayBuffer);
  }
  close() {
    this.readyState = 3;
  }
  // server side
  open() {
    this.readyState = 1;
    this.onopen?.(new Event("open"));
  }
  receive(data: string | ArrayBuffer) {
    this.onmessage?.({ data } as MessageEvent);
  }
  drop(code = 1006) {
    this.readyState = 3;
    this.onclose?.({ code } as CloseEvent);
  }
  messages(): Array<Record<string, unknown>> {
    return this.sent.filter((m): m is string => typeof m === "string").map((m) => JSON.parse(m) as Record<string, unknown>);
  }
}

function harness(fetchResult: () => Promise<Response>, sessionId: string | null = null, mode?: SessionMode) {
  const sockets: FakeSocket[] = [];
  const timers: Array<{ fn: () => void; ms: number }> = [];
  const states: ConnectionInfo[] = [];
  const events: ServerEvent[] = [];
  const audio: number[] = [];
  const requests: Array<{ url: string; init?: RequestInit }> = [];
  let key: string | null = null;
  const client = new VoiceClient({
    baseUrl: "",
    apiKey: () => key,
    language: "en",
    mode,
    sessionId,
    onEvent: (e) => events.push(e),
    onAudio: (c) => audio.push(c.turn),
    onConnection: (i) => states.push(i),
    fetch: (async (url: string, init?: RequestInit) => {
      requests.push({ url, init });
      return fetchResult();
    }) as typeof fetch,
    createSocket: (url, protocols) => {
      const s = new FakeSocket(url, protocols);
      sockets.push(s);
      return s;
    },
    random: () => 0.5,
    setTimer: (fn, ms) => timers.push({ fn, ms }),
    clearTimer: () => {},
    now: () => 0,
    location: { protocol: "http:", host: "127.0.0.1:8080" },
  });
  return {
    client,
    sockets,
    timers,
    states,
    events,
    audio,
    requests,
    setKey: (k: string | null) => (key = k),
  };
}

const token = () => Promise.resolve(new Response(JSON.stringify({ session_id: "s1", token: "t0k", expires_at: 1 }), { status: 200 }));
const flush = () => new Promise((r) => setTimeout(r, 0));
const ready = (id: string, mode: SessionMode = "push_to_talk") => JSON.stringify({ type: "session.ready", session_id: id, protocol: 1, input_sample_rate: 16000, mode });

describe("backoffDelay", () => {
  it("doubles from half a second up to ten, with jitter", () => {
    expect([1, 2, 3, 4, 5, 6, 10].map((a) => backoffDelay(a, () => 0.5))).toEqual([500, 1000, 2000, 4000, 8000, 10000, 10000]);
    expect(backoffDelay(1, () => 0)).toBe(400);
    expect(backoffDelay(1, () => 1)).toBe(600);
  });
});

describe("voiceSocketUrl", () => {
  it("uses the page's origin and ws/wss, and never carries the token", () => {
    expect(voiceSocketUrl("", { protocol: "http:", host: "127.0.0.1:8080" })).toBe("ws://127.0.0.1:8080/v1/voice");
    expect(voiceSocketUrl("https://vb.example.com", { protocol: "http:", host: "ignored" })).toBe("wss://vb.example.com/v1/voice");
  });
  it("puts the token in the subprotocol header, beside the protocol's name", () => {
    expect(voiceSocketProtocols("eyJ.x.y")).toEqual(["voicebot.v1", "voicebot.token.eyJ.x.y"]);
  });
});

describe("VoiceClient", () => {
  it("gets a token, opens the socket, starts the session and reports connected", async () => {
    const h = harness(token);
    h.client.start();
    await flush();
    expect(h.requests[0].url).toBe("/v1/sessions");
    expect(h.requests[0].init?.method).toBe("POST");
    expect(h.requests[0].init?.headers).toEqual({}); // dev mode: no Authorization header
    expect(h.sockets[0].url).toBe("ws://127.0.0.1:8080/v1/voice");
    expect(h.sockets[0].protocols).toEqual(["voicebot.v1", "voicebot.token.t0k"]);
    expect(h.sockets[0].binaryType).toBe("arraybuffer");
    h.sockets[0].open();
    expect(h.sockets[0].messages()).toEqual([{ type: "session.start", mode: "push_to_talk", language: "en" }]);
    h.sockets[0].receive(ready("s1"));
    expect(h.client.connection.state).toBe("connected");
    expect(h.client.ready).toBe(true);
    expect(h.events[0].type).toBe("session.ready");
  });

  it("sends the API key as a bearer token when one is set", async () => {
    const h = harness(token);
    h.setKey("vb_secret");
    h.client.start();
    await flush();
    expect(h.requests[0].init?.headers).toEqual({ Authorization: "Bearer vb_secret" });
  });

  it("hands audio frames over and ignores what is not v1 audio", async () => {
    const h = harness(token);
    h.client.start();
    await flush();
    h.sockets[0].open();
    h.sockets[0].receive(ready("s1"));
    h.sockets[0].receive(encodeAudioFrame(4, 0, 22050, new Int16Array(10)));
    h.sockets[0].receive(new ArrayBuffer(3));
    expect(h.audio).toEqual([4]);
  });

  it("sends nothing while not connected", () => {
    const h = harness(token);
    expect(h.client.send({ type: "turn.start" })).toBe(false);
    expect(h.client.sendAudio(new ArrayBuffer(2))).toBe(false);
  });

  it("reconnects with back-off and resumes the session id", async () => {
    const h = harness(token);
    h.client.start();
    await flush();
    h.sockets[0].open();
    h.sockets[0].receive(ready("s1"));
    h.sockets[0].drop(1006);
    expect(h.client.connection).toMatchObject({ state: "reconnecting", attempt: 1 });
    expect(h.client.connection.problem).toMatch(/lost/);
    expect(h.timers.map((t) => t.ms)).toEqual([500]);
    h.timers[0].fn();
    await flush();
    h.sockets[1].drop(1006); // still down: not opened
    expect(h.timers.map((t) => t.ms)).toEqual([500, 1000]);
    h.timers[1].fn();
    await flush();
    h.sockets[2].open();
    expect(h.sockets[2].messages()[0]).toEqual({ type: "session.start", mode: "push_to_talk", session_id: "s1", language: "en" });
    // The server could not resume (nothing stored): it says not_found, then starts a new session.
    h.sockets[2].receive(JSON.stringify({ type: "error", code: "not_found", message: "no such session", turn: null, fatal: false }));
    h.sockets[2].receive(ready("s2"));
    expect(h.client.connection).toMatchObject({ state: "connected", attempt: 0, sessionId: "s2" });
    expect(h.events.filter((e) => e.type === "error")).toEqual([]);
  });

  it("resumes a given session on the first connect (a reloaded tab)", async () => {
    const h = harness(token, "s0");
    h.client.start();
    await flush();
    expect(h.client.connection.state).toBe("connecting");
    h.sockets[0].open();
    expect(h.sockets[0].messages()[0]).toEqual({ type: "session.start", mode: "push_to_talk", session_id: "s0", language: "en" });
  });

  it("retries when POST /v1/sessions cannot be reached, and says so", async () => {
    let up = false;
    const h = harness(() => (up ? token() : Promise.reject(new TypeError("Failed to fetch"))));
    h.client.start();
    await flush();
    expect(h.client.connection.state).toBe("reconnecting");
    expect(h.client.connection.problem).toMatch(/Cannot reach the Voicebot server/);
    expect(h.sockets).toHaveLength(0);
    up = true;
    h.timers[0].fn();
    await flush();
    expect(h.sockets).toHaveLength(1);
  });

  it("stops and asks for a key when the key is refused", async () => {
    const h = harness(() =>
      Promise.resolve(new Response(JSON.stringify({ error: { code: "unauthorized", message: "the API key is not valid" } }), { status: 401 })),
    );
    h.client.start();
    await flush();
    expect(h.client.connection.state).toBe("unauthorized");
    expect(h.client.connection.problem).toMatch(/API key/);
    expect(h.timers).toHaveLength(0);
  });

  it("gets a fresh token when the socket closes with 4401", async () => {
    const h = harness(token);
    h.client.start();
    await flush();
    h.sockets[0].open();
    h.sockets[0].receive(ready("s1"));
    h.sockets[0].drop(4401);
    h.timers[0].fn();
    await flush();
    expect(h.requests).toHaveLength(2);
  });

  it("does not reconnect after close()", async () => {
    const h = harness(token);
    h.client.start();
    await flush();
    h.sockets[0].open();
    h.client.close();
    h.sockets[0].drop(1000);
    expect(h.timers).toHaveLength(0);
    expect(h.client.connection.state).toBe("closed");
  });
});

describe("VoiceClient modes", () => {
  async function connected(mode?: SessionMode) {
    const h = harness(token, null, mode);
    h.client.start();
    await flush();
    h.sockets[0].open();
    return h;
  }

  it("starts the session in the mode it was given, and knows the mode in force", async () => {
    const h = await connected("hands_free");
    expect(h.sockets[0].messages()).toEqual([{ type: "session.start", mode: "hands_free", language: "en" }]);
    expect(h.client.serverMode).toBeNull(); // not ready yet
    h.sockets[0].receive(ready("s1", "hands_free"));
    expect(h.client.serverMode).toBe("hands_free");
  });

  it("switches with session.update, and follows session.updated", async () => {
    const h = await connected();
    h.sockets[0].receive(ready("s1"));
    h.client.setMode("hands_free");
    h.client.setMode("hands_free"); // no change: nothing sent
    expect(h.sockets[0].messages().slice(1)).toEqual([{ type: "session.update", mode: "hands_free" }]);
    expect(h.client.mode).toBe("hands_free");
    expect(h.client.serverMode).toBe("push_to_talk"); // until the server says so
    h.sockets[0].receive(JSON.stringify({ type: "session.updated", mode: "hands_free" }));
    expect(h.client.serverMode).toBe("hands_free");
    expect(h.events.map((e) => e.type)).toEqual(["session.ready", "session.updated"]);
  });

  it("remembers a mode set while disconnected, and starts the next session in it", async () => {
    const h = await connected();
    h.sockets[0].receive(ready("s1"));
    h.sockets[0].drop(1006);
    h.client.setMode("hands_free");
    expect(h.client.serverMode).toBeNull();
    h.timers[0].fn();
    await flush();
    h.sockets[1].open();
    expect(h.sockets[1].messages()).toEqual([{ type: "session.start", mode: "hands_free", session_id: "s1", language: "en" }]);
    h.sockets[1].receive(ready("s1", "hands_free"));
    expect(h.sockets[1].messages()).toHaveLength(1); // already in force: no update
  });

  it("asks again when the mode changed between session.start and session.ready", async () => {
    const h = await connected();
    h.client.setMode("hands_free"); // not ready: nothing sent yet
    expect(h.sockets[0].messages()).toHaveLength(1);
    h.sockets[0].receive(ready("s1", "push_to_talk"));
    expect(h.sockets[0].messages().slice(1)).toEqual([{ type: "session.update", mode: "hands_free" }]);
    expect(h.client.serverMode).toBe("push_to_talk");
  });
});
