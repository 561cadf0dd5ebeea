import { describe, expect, it } from "vitest";

import {
  conversationReducer,
  emptyConversation,
  splitCitations,
  timingEntries,
  type Conversation,
  type ConversationAction,
} from "@/lib/conversation";
import type { ServerEvent } from "@/lib/protocol";

function run(actions: Array<ConversationAction | ServerEvent>, from: Conversation = emptyConversation): Conversation {
  return actions.reduce(
    (state, a) => conversationReducer(state, "event" in a || a.type.startsWith("local.") ? (a as ConversationAction) : { type: "server", event: a as ServerEvent }),
    from,
  );
}

const ready: Extract<ServerEvent, { type: "session.ready" }> = { type: "session.ready", session_id: "s1", protocol: 1, input_sample_rate: 16000, mode: "push_to_talk" };

describe("conversation", () => {
  it("follows a spoken turn from partial transcript to a cited answer", () => {
    const state = run([
      ready,
      { type: "local.voice" },
      { type: "turn.started", turn: 1, trigger: "client" },
      { type: "transcript.partial", turn: 1, text: "Where does" },
      { type: "local.released" },
      { type: "transcript.final", turn: 1, text: "Where does the stack keep logs?" },
      { type: "sources", turn: 1, available: true, sources: [{ n: 1, title: "Architecture", source: "docs/architecture.md", heading_path: ["The local stack"], snippet: "Logs go to .voicebot/logs" }] },
      { type: "answer.delta", turn: 1, text: "In .voicebot/logs" },
      { type: "answer.delta", turn: 1, text: " [1]." },
      { type: "answer.done", turn: 1, text: "In .voicebot/logs [1]." },
      { type: "turn.done", turn: 1, outcome: "ok", timings: { asr_final: 400, total: 3000 } },
    ]);
    const turn = state.turns[0];
    expect(turn).toMatchObject({
      n: 1,
      kind: "voice",
      question: "Where does the stack keep logs?",
      questionFinal: true,
      answer: "In .voicebot/logs [1].",
      status: "done",
    });
    expect(turn.sources).toHaveLength(1);
    expect(turn.timings?.total).toBe(3000);
  });

  it("keeps which sources the answer cites, and a declined answer", () => {
    const sources = [
      { n: 1, title: "A", source: "a.md", heading_path: [], snippet: "a" },
      { n: 2, title: "B", source: "b.md", heading_path: [], snippet: "b" },
    ];
    const cited = run([
      ready,
      { type: "local.text", text: "Where are the logs?" },
      { type: "turn.started", turn: 1, trigger: "client" },
      { type: "sources", turn: 1, available: true, sources },
      { type: "answer.done", turn: 1, text: "In .voicebot/logs [2].", citations: [2], declined: false },
    ]).turns[0];
    expect(cited).toMatchObject({ cited: [2], declined: false });
    const declined = run([
      ready,
      { type: "local.text", text: "What is the capital of France?" },
      { type: "turn.started", turn: 1, trigger: "client" },
      { type: "sources", turn: 1, available: true, sources },
      {
        type: "answer.done",
        turn: 1,
        text: "I could not find that in the documents.",
        citations: [],
        declined: true,
        decline_reason: "not_in_documents",
      },
    ]).turns[0];
    expect(declined).toMatchObject({ cited: [], declined: true });
  });

  it("shows a typed question at once", () => {
    const state = run([ready, { type: "local.text", text: "What is it?" }, { type: "turn.started", turn: 1, trigger: "client" }]);
    expect(state.turns[0]).toMatchObject({ kind: "text", question: "What is it?", questionFinal: true, status: "thinking" });
  });

  it("marks a barged-in turn cancelled and ignores its late deltas", () => {
    const state = run([
      ready,
      { type: "local.text", text: "Tell me everything" },
      { type: "turn.started", turn: 1, trigger: "client" },
      { type: "answer.delta", turn: 1, text: "Well" },
      { type: "local.voice" },
      { type: "audio.clear", turn: 1 },
      { type: "turn.done", turn: 1, outcome: "cancelled", timings: {} },
      { type: "turn.started", turn: 2, trigger: "client" },
      { type: "answer.delta", turn: 1, text: " more" },
    ]);
    expect(state.turns.map((t) => [t.n, t.status])).toEqual([
      [1, "cancelled"],
      [2, "recording"],
    ]);
    expect(state.turns[0].answer).toBe("Well");
  });

  it("keeps a too-short press as a cancelled turn with a note", () => {
    const state = run([ready, { type: "local.voice" }, { type: "turn.started", turn: 1, trigger: "client" }, { type: "local.cancelled", note: "Too short" }]);
    expect(state.turns[0]).toMatchObject({ status: "cancelled", note: "Too short" });
  });

  it("attaches a turn's error to the turn and other errors to the page", () => {
    const state = run([
      ready,
      { type: "local.text", text: "q" },
      { type: "turn.started", turn: 1, trigger: "client" },
      { type: "error", code: "timeout", message: "llm took too long", turn: 1, fatal: false },
      { type: "turn.done", turn: 1, outcome: "error", timings: {} },
      { type: "error", code: "rate_limited", message: "slow down", turn: null, fatal: false },
    ]);
    expect(state.turns[0].status).toBe("error");
    expect(state.turns[0].error).toMatch(/too long/);
    expect(state.error?.code).toBe("rate_limited");
  });

  it("marks open turns lost when the connection drops, and keeps new turns apart after reconnecting", () => {
    const state = run([
      ready,
      { type: "local.text", text: "first" },
      { type: "turn.started", turn: 1, trigger: "client" },
      { type: "local.lost" },
      ready,
      { type: "local.text", text: "second" },
      { type: "turn.started", turn: 1, trigger: "client" },
      { type: "answer.delta", turn: 1, text: "new" },
    ]);
    expect(state.turns.map((t) => [t.question, t.status, t.answer])).toEqual([
      ["first", "lost", ""],
      ["second", "answering", "new"],
    ]);
    expect(new Set(state.turns.map((t) => t.key)).size).toBe(2);
  });
});

describe("splitCitations", () => {
  it("finds [n] markers", () => {
    expect(splitCitations("Run make up [1] and see [2].")).toEqual([
      { text: "Run make up " },
      { cite: 1 },
      { text: " and see " },
      { cite: 2 },
      { text: "." },
    ]);
  });
});

describe("timingEntries", () => {
  it("lists the stages that ran, in order", () => {
    expect(timingEntries({ asr_final: 410, retrieval: 35, llm_first_token: 980, tts_first_audio: 1400, first_audio: 1420, total: 3000 }).map((e) => e.label)).toEqual([
      "transcript",
      "sources",
      "first token",
      "first audio",
      "total",
    ]);
    expect(timingEntries({ asr_final: null, total: 12 })).toEqual([{ label: "total", ms: 12 }]);
  });
});

describe("restoring a reloaded tab's conversation", () => {
  const stored = [
    {
      turn: 1,
      question: "How do I start it?",
      answer: "Run make up [1].",
      citations: [{ n: 1, title: "Voicebot", source: "README.md", heading_path: ["On a laptop"], snippet: "make up" }],
      timings: { total: 2000 },
      outcome: "ok" as const,
      created_at: null,
    },
  ];

  it("shows the stored turns, and live turns after them never collide", () => {
    const state = run([
      { ...ready, resumed: true, turns: 1 },
      { type: "local.restore", turns: stored },
      { type: "local.text", text: "And stop it?" },
      { type: "turn.started", turn: 2, trigger: "client" },
      { type: "answer.delta", turn: 1, text: "late" }, // not for the restored turn
    ]);
    expect(state.turns.map((t) => [t.n, t.status, t.answer])).toEqual([
      [1, "done", "Run make up [1]."],
      [2, "thinking", ""],
    ]);
    expect(state.turns[0].sources?.[0].title).toBe("Voicebot");
  });

  it("never replaces a conversation the page already shows", () => {
    const state = run([ready, { type: "local.text", text: "q" }, { type: "turn.started", turn: 1, trigger: "client" }, { type: "local.restore", turns: stored }]);
    expect(state.turns.map((t) => t.question)).toEqual(["q"]);
  });
});

describe("a server that is shutting down", () => {
  it("is a page-level message, never a turn's error", () => {
    const state = run([
      ready,
      { type: "local.text", text: "q" },
      { type: "turn.started", turn: 1, trigger: "client" },
      { type: "turn.done", turn: 1, outcome: "ok", timings: {} },
      { type: "local.voice" },
      { type: "error", code: "shutting_down", message: "the server is restarting", turn: 1, fatal: false },
    ]);
    expect(state.turns[0].error).toBeNull();
    expect(state.error?.code).toBe("shutting_down");
    expect(state.pending).toBeNull();
  });
});

describe("hands-free turns", () => {
  const handsFree: ServerEvent = { ...ready, mode: "hands_free" };

  it("creates a voice turn when the gateway hears speech, and follows it to the answer", () => {
    const state = run([
      handsFree,
      { type: "turn.started", turn: 1, trigger: "speech" },
      { type: "transcript.partial", turn: 1, text: "Where are" },
      { type: "transcript.final", turn: 1, text: "Where are the logs?" },
      { type: "answer.delta", turn: 1, text: "In .voicebot/logs." },
      { type: "answer.done", turn: 1, text: "In .voicebot/logs.", citations: [] },
      { type: "turn.done", turn: 1, outcome: "ok", timings: { total: 2000 } },
    ]);
    expect(state.turns).toHaveLength(1);
    expect(state.turns[0]).toMatchObject({ n: 1, kind: "voice", question: "Where are the logs?", questionFinal: true, status: "done" });
  });

  it("shows the speech turn as heard until the final transcript", () => {
    const heard = run([handsFree, { type: "turn.started", turn: 1, trigger: "speech" }, { type: "transcript.partial", turn: 1, text: "How do" }]);
    expect(heard.turns[0]).toMatchObject({ status: "recording", question: "How do", questionFinal: false });
    const final = conversationReducer(heard, { type: "server", event: { type: "transcript.final", turn: 1, text: "How do I stop it?" } });
    expect(final.turns[0]).toMatchObject({ status: "thinking", questionFinal: true });
  });

  it("removes a turn that held no question, and keeps the others", () => {
    const state = run([
      handsFree,
      { type: "turn.started", turn: 1, trigger: "speech" },
      { type: "transcript.final", turn: 1, text: "What is it?" },
      { type: "turn.done", turn: 1, outcome: "ok", timings: {} },
      { type: "turn.started", turn: 2, trigger: "speech" },
      { type: "transcript.partial", turn: 2, text: "Mm-hmm" },
      { type: "turn.done", turn: 2, outcome: "ignored", timings: {} },
    ]);
    expect(state.turns.map((t) => [t.n, t.status])).toEqual([[1, "done"]]);
    // a late event for the removed turn brings nothing back
    const late = conversationReducer(state, { type: "server", event: { type: "transcript.partial", turn: 2, text: "Mm" } });
    expect(late.turns).toHaveLength(1);
  });

  it("leaves a typed question waiting for its own number when speech starts a turn first", () => {
    const state = run([
      handsFree,
      { type: "local.text", text: "Typed?" },
      { type: "turn.started", turn: 1, trigger: "speech" },
      { type: "turn.started", turn: 2, trigger: "client" },
    ]);
    expect(state.turns.map((t) => [t.n, t.kind, t.question])).toEqual([
      [1, "voice", ""],
      [2, "text", "Typed?"],
    ]);
    expect(state.pending).toBeNull();
  });

  it("barge-in by voice over an answer still streaming: cancelled, its text kept, the new turn heard", () => {
    const state = run([
      handsFree,
      { type: "turn.started", turn: 1, trigger: "speech" },
      { type: "transcript.final", turn: 1, text: "Tell me everything" },
      { type: "answer.delta", turn: 1, text: "Well," },
      { type: "audio.clear", turn: 1 },
      { type: "turn.done", turn: 1, outcome: "cancelled", timings: {} },
      { type: "turn.started", turn: 2, trigger: "speech" },
      { type: "answer.delta", turn: 1, text: " more" }, // late: dropped
      { type: "transcript.partial", turn: 2, text: "Stop" },
    ]);
    expect(state.turns.map((t) => [t.n, t.status, t.answer, t.question])).toEqual([
      [1, "cancelled", "Well,", "Tell me everything"],
      [2, "recording", "", "Stop"],
    ]);
  });

  it("barge-in by voice over an answer already done: only its audio stops, the answer stays", () => {
    const done = run([
      handsFree,
      { type: "turn.started", turn: 1, trigger: "speech" },
      { type: "transcript.final", turn: 1, text: "Where are the logs?" },
      { type: "answer.done", turn: 1, text: "In .voicebot/logs.", citations: [] },
      { type: "turn.done", turn: 1, outcome: "ok", timings: { total: 900 } },
    ]);
    const state = run([{ type: "audio.clear", turn: 1 }, { type: "turn.started", turn: 2, trigger: "speech" }], done);
    expect(state.turns[0]).toEqual(done.turns[0]);
    expect(state.turns[1]).toMatchObject({ n: 2, status: "recording" });
    // ... and when the new turn was only a cough, the conversation is as it was
    const after = conversationReducer(state, { type: "server", event: { type: "turn.done", turn: 2, outcome: "ignored", timings: {} } });
    expect(after.turns).toEqual(done.turns);
  });
});
