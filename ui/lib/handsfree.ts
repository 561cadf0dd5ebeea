/**
 * Hands-free on the page: the mode this browser keeps (localStorage), and the one word the
 * hands-free panel shows for where the conversation stands (pure, unit-tested).
 */

import { isOpen, type Conversation } from "./conversation";
import type { SessionMode } from "./protocol";

const MODE_STORAGE = "voicebot.mode";
let chosen: SessionMode | null = null; // this page's choice, whether or not storage works

export function loadMode(): SessionMode {
  if (chosen) return chosen;
  try {
    return window.localStorage.getItem(MODE_STORAGE) === "hands_free" ? "hands_free" : "push_to_talk";
  } catch {
    return "push_to_talk";
  }
}

export function saveMode(mode: SessionMode): void {
  chosen = mode;
  try {
    window.localStorage.setItem(MODE_STORAGE, mode);
  } catch {
    // storage disabled: the mode lasts for this page only
  }
}

export type HandsFreeState =
  | "off" // not streaming to the gateway: connecting, the microphone not open, or the switch not yet confirmed
  | "listening" // the microphone streams, nobody speaks
  | "hearing" // the gateway heard speech: a turn is open, before its final transcript
  | "thinking" // the question is final; no answer audio plays yet
  | "speaking" // the answer's audio plays
  | "muted"; // streaming silence

export interface HandsFreeInputs {
  /** Microphone audio reaches the gateway in hands-free mode. */
  live: boolean;
  muted: boolean;
  /** Answer audio plays. */
  playing: boolean;
  conversation: Conversation;
}

export function handsFreeState({ live, muted, playing, conversation }: HandsFreeInputs): HandsFreeState {
  if (!live) return "off";
  if (muted) return "muted";
  const open = conversation.turns.filter((t) => t.epoch === conversation.epoch && isOpen(t));
  // Speech over the answer (a barge-in) is hearing at once, even while the old audio fades.
  if (open.some((t) => t.status === "recording")) return "hearing";
  if (playing) return "speaking";
  if (open.length) return "thinking";
  return "listening";
}
