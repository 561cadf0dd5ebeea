import { describe, expect, it } from "vitest";

import { conversationReducer, emptyConversation, type Conversation } from "@/lib/conversation";
import { handsFreeState } from "@/lib/handsfree";
import type { ServerEvent } from "@/lib/protocol";

function after(events: ServerEvent[], from: Conversation = emptyConversation): Conversation {
  return events.reduce((state, event) => conversationReducer(state, { type: "server", event }), from);
}

const ready: ServerEvent = { type: "session.ready", session_id: "s1", protocol: 1, input_sample_rate: 16000, mode: "hands_free" };

describe("handsFreeState", () => {
  const idle = after([ready]);
  const heard = after([{ type: "turn.started", turn: 1, trigger: "speech" }], idle);
  const final = after([{ type: "transcript.final", turn: 1, text: "Where are the logs?" }], heard);
  const done = after([{ type: "turn.done", turn: 1, outcome: "ok", timings: {} }], final);
  const state = (conversation: Conversation, over: Partial<{ live: boolean; muted: boolean; playing: boolean }> = {}) =>
    handsFreeState({ live: true, muted: false, playing: false, conversation, ...over });

  it("follows a spoken turn: listening, hearing, thinking, speaking, listening", () => {
    expect(state(idle)).toBe("listening");
    expect(state(heard)).toBe("hearing");
    expect(state(final)).toBe("thinking");
    expect(state(final, { playing: true })).toBe("speaking");
    expect(state(done, { playing: true })).toBe("speaking"); // the answer is done, its audio still plays
    expect(state(done)).toBe("listening");
  });

  it("is hearing as soon as speech starts over the answer (barge-in)", () => {
    const barge = after([{ type: "turn.started", turn: 2, trigger: "speech" }], done);
    expect(state(barge, { playing: true })).toBe("hearing");
  });

  it("is off while nothing reaches the gateway, and muted while it gets silence", () => {
    expect(state(heard, { live: false })).toBe("off");
    expect(state(final, { muted: true, playing: true })).toBe("muted");
  });

  it("ignores turns of an earlier socket left open", () => {
    const reconnected = after([ready], heard); // the open turn is marked lost
    expect(state(reconnected)).toBe("listening");
  });
});
