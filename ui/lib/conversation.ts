/**
 * The conversation as the page shows it, built from server events and the page's own actions
 * by one pure reducer (unit-tested; the React hook only dispatches). Push-to-talk and typed
 * turns are asked for by the page (`pending`) and numbered by `turn.started`; hands-free turns
 * are started by the gateway (`turn.started` with `trigger: "speech"`), and one that holds no
 * question (`turn.done` `ignored`) leaves the conversation again.
 */

import type { StoredTurn } from "./api";
import { describeError, type ServerEvent, type Source, type Timings } from "./protocol";

export type TurnStatus =
  | "recording" // the button is held, or (hands-free) the gateway hears speech
  | "thinking" // released or typed: transcribing, searching, waiting for the first token
  | "answering" // answer text is streaming
  | "done"
  | "cancelled"
  | "error"
  | "lost"; // the connection dropped before the turn finished

export interface Turn {
  /** Unique in the page: turn numbers restart when a session is resumed on a new socket. */
  key: string;
  epoch: number;
  n: number;
  kind: "voice" | "text";
  question: string;
  questionFinal: boolean;
  sources: Source[] | null;
  sourcesAvailable: boolean;
  answer: string;
  /** The sources the finished answer cites (null until it is done, or for a stored turn). */
  cited: number[] | null;
  /** The documents do not answer: the answer is the stable decline sentence. */
  declined: boolean;
  status: TurnStatus;
  timings: Timings | null;
  error: string | null;
  note: string | null;
}

export interface Conversation {
  turns: Turn[];
  /** Counts `session.ready`: the server numbers turns from 1 on every socket. */
  epoch: number;
  /** What the page asked for and the server has not yet numbered with `turn.started`. */
  pending: { kind: "voice" } | { kind: "text"; text: string } | null;
  /** An error that belongs to no turn. */
  error: { code: string; message: string } | null;
}

export type ConversationAction =
  | { type: "local.voice" } // turn.start sent
  | { type: "local.text"; text: string } // text sent
  | { type: "local.released" } // turn.end sent
  | { type: "local.cancelled"; note?: string } // turn.cancel sent
  | { type: "local.lost" } // the socket dropped
  | { type: "local.dismiss-error" }
  | { type: "local.restore"; turns: StoredTurn[] } // a resumed session's stored turns, after a reload
  | { type: "server"; event: ServerEvent };

export const emptyConversation: Conversation = { turns: [], epoch: 0, pending: null, error: null };

const OPEN: ReadonlySet<TurnStatus> = new Set(["recording", "thinking", "answering"]);

export function isOpen(turn: Turn): boolean {
  return OPEN.has(turn.status);
}

function newTurn(epoch: number, n: number, pending: Conversation["pending"]): Turn {
  const text = pending?.kind === "text" ? pending.text : "";
  return {
    key: `${epoch}.${n}`,
    epoch,
    n,
    kind: pending?.kind ?? "voice",
    question: text,
    questionFinal: pending?.kind === "text",
    sources: null,
    sourcesAvailable: true,
    answer: "",
    cited: null,
    declined: false,
    status: pending?.kind === "text" ? "thinking" : "recording",
    timings: null,
    error: null,
    note: null,
  };
}

function patchTurn(state: Conversation, n: number, patch: (turn: Turn) => Partial<Turn>): Conversation {
  const index = state.turns.findIndex((t) => t.n === n && t.epoch === state.epoch);
  if (index < 0) return state;
  const turns = state.turns.slice();
  turns[index] = { ...turns[index], ...patch(turns[index]) };
  return { ...state, turns };
}

function patchLast(state: Conversation, patch: (turn: Turn) => Partial<Turn> | null): Conversation {
  const last = state.turns[state.turns.length - 1];
  if (!last) return state;
  const change = patch(last);
  return change && last.epoch === state.epoch ? patchTurn(state, last.n, () => change) : state;
}

export function conversationReducer(state: Conversation, action: ConversationAction): Conversation {
  switch (action.type) {
    case "local.voice":
      return { ...state, pending: { kind: "voice" }, error: null };
    case "local.text":
      return { ...state, pending: { kind: "text", text: action.text }, error: null };
    case "local.released":
      return patchLast(state, (t) => (t.status === "recording" ? { status: "thinking" } : null));
    case "local.cancelled":
      // The server answers a cancelled recording with nothing; an answer in flight gets turn.done.
      return {
        ...patchLast(state, (t) => (t.status === "recording" ? { status: "cancelled", note: action.note ?? null } : null)),
        pending: null,
      };
    case "local.lost":
      return {
        ...state,
        pending: null,
        turns: state.turns.map((t) =>
          isOpen(t) ? { ...t, status: "lost", note: "The connection dropped before this turn finished." } : t,
        ),
      };
    case "local.dismiss-error":
      return { ...state, error: null };
    case "local.restore": {
      if (state.turns.length) return state; // only into an empty page
      const restored: Turn[] = action.turns.map((t) => ({
        key: `restored.${t.turn}`,
        epoch: -1, // never matched by live events
        n: t.turn,
        kind: "voice",
        question: t.question,
        questionFinal: true,
        sources: t.citations,
        sourcesAvailable: true,
        answer: t.answer,
        cited: null,
        declined: false,
        status: t.outcome === "ok" ? "done" : t.outcome === "cancelled" ? "cancelled" : "error",
        timings: t.timings,
        error: null,
        note: null,
      }));
      return { ...state, turns: restored };
    }
    case "server":
      return onServerEvent(state, action.event);
  }
}

function onServerEvent(state: Conversation, event: ServerEvent): Conversation {
  switch (event.type) {
    case "session.ready":
      return {
        ...state,
        epoch: state.epoch + 1,
        turns: state.turns.map((t) =>
          isOpen(t) ? { ...t, status: "lost", note: "The connection dropped before this turn finished." } : t,
        ),
      };
    case "session.updated":
      return state;
    case "turn.started": {
      if (state.turns.some((t) => t.n === event.turn && t.epoch === state.epoch)) return state;
      if (event.trigger === "speech") {
        // Hands-free: the gateway heard speech. What the page asked for (a typed question) is
        // still waiting for its own turn.started, and a barge-in's interrupted turn gets its
        // turn.done from the gateway: speech that is only a cough interrupts nothing.
        return { ...state, turns: [...state.turns, newTurn(state.epoch, event.turn, { kind: "voice" })] };
      }
      // Whatever was still open was interrupted by this turn (barge-in).
      const turns = state.turns.map((t) => (isOpen(t) ? { ...t, status: "cancelled" as const } : t));
      return { ...state, pending: null, turns: [...turns, newTurn(state.epoch, event.turn, state.pending)] };
    }
    case "transcript.partial":
      return patchTurn(state, event.turn, (t) => (t.questionFinal ? {} : { question: event.text }));
    case "transcript.final":
      return patchTurn(state, event.turn, (t) => ({
        question: event.text,
        questionFinal: true,
        status: t.status === "recording" ? "thinking" : t.status,
      }));
    case "sources":
      return patchTurn(state, event.turn, () => ({ sources: event.sources, sourcesAvailable: event.available }));
    case "answer.delta":
      return patchTurn(state, event.turn, (t) =>
        isOpen(t) ? { answer: t.answer + event.text, status: "answering" } : {},
      );
    case "answer.done":
      return patchTurn(state, event.turn, (t) =>
        isOpen(t) || t.status === "done"
          ? { answer: event.text, cited: event.citations ?? null, declined: event.declined ?? false }
          : {},
      );
    case "audio.clear":
      // Only the audio stops (the player drops it); the answer's text stays, whether the turn
      // is still answering (its turn.done says cancelled) or already done.
      return state;
    case "turn.done":
      if (event.outcome === "ignored") {
        // A hands-free turn with no question in it (a cough, "mm-hmm"): not part of the conversation.
        return { ...state, turns: state.turns.filter((t) => !(t.n === event.turn && t.epoch === state.epoch)) };
      }
      return patchTurn(state, event.turn, (t) => ({
        status: event.outcome === "ok" ? "done" : event.outcome === "cancelled" ? "cancelled" : "error",
        timings: event.outcome === "cancelled" ? t.timings : event.timings,
        note: event.note ?? t.note,
      }));
    case "error": {
      const during =
        event.turn !== null ? state.turns.find((t) => t.n === event.turn && t.epoch === state.epoch) : undefined;
      const message = describeError(event.code, event.message, {
        fatal: event.fatal,
        duringAnswer: during?.status === "answering" || during?.status === "thinking",
      });
      if (event.code === "shutting_down") {
        // Not about any one turn: the server is going away and the page will reconnect.
        return { ...state, pending: null, error: { code: event.code, message } };
      }
      if (during && !event.fatal) {
        return patchTurn(state, during.n, () => ({ error: message }));
      }
      return { ...state, error: { code: event.code, message } };
    }
  }
}

/** Splits answer text into plain runs and `[n]` citation markers. */
export function splitCitations(text: string): Array<{ text: string } | { cite: number }> {
  const parts: Array<{ text: string } | { cite: number }> = [];
  const re = /\[(\d{1,2})\]/g;
  let last = 0;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    if (m.index > last) parts.push({ text: text.slice(last, m.index) });
    parts.push({ cite: Number(m[1]) });
    last = m.index + m[0].length;
  }
  if (last < text.length) parts.push({ text: text.slice(last) });
  return parts;
}

/** `turn.done.timings` for display: label and milliseconds, stages that ran only. */
export function timingEntries(timings: Timings | null): Array<{ label: string; ms: number }> {
  if (!timings) return [];
  const order: Array<[keyof Timings, string]> = [
    ["asr_final", "transcript"],
    ["retrieval", "sources"],
    ["llm_first_token", "first token"],
    ["first_audio", "first audio"],
    ["total", "total"],
  ];
  return order.flatMap(([key, label]) => {
    const ms = timings[key];
    return typeof ms === "number" ? [{ label, ms }] : [];
  });
}

export function formatMs(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
}
