"use client";

import type { CSSProperties } from "react";

import type { VoiceSession } from "@/hooks/use-voice-session";
import type { HandsFreeState } from "@/lib/handsfree";

const LABEL: Record<Exclude<HandsFreeState, "off">, string> = {
  listening: "Listening…",
  hearing: "Hearing you…",
  thinking: "Thinking…",
  speaking: "Speaking…",
  muted: "Muted",
};

/**
 * Hands-free, in place of the push-to-talk button: where the conversation stands (in a word and
 * a colour), the microphone's level, and mute. While nothing reaches the gateway the circle says
 * why, and is a button when a press would start listening.
 */
export function HandsFree({ session }: { session: VoiceSession }) {
  const { handsFree, listening, connection, serverMode, muted, level, sent, listen, setMuted } = session;
  const state: HandsFreeState = handsFree ?? "off";
  const connected = connection.state === "connected";
  const startable = state === "off" && listening === "off";
  const label =
    state !== "off"
      ? LABEL[state]
      : listening === "off"
        ? "Start listening"
        : listening === "opening"
          ? "Starting the microphone…"
          : !connected
            ? "Connecting…"
            : serverMode !== "hands_free"
              ? "Switching to hands-free…"
              : "Starting…";
  const percent = Math.round(level.level * 100);
  const orbStyle = { "--level": level.level.toFixed(2) } as CSSProperties;

  return (
    <div
      className="handsfree"
      data-testid="handsfree"
      data-state={state}
      data-listening={listening}
      data-sent-ms={Math.round(sent.durationMs)}
      data-sent-frames={sent.frames}
    >
      {startable ? (
        <button type="button" className="hf-orb hf-off hf-start" data-testid="listen" onClick={listen} aria-describedby="hf-help">
          <MicIcon muted={false} />
          <span className="hf-label">{label}</span>
        </button>
      ) : (
        <div className={`hf-orb hf-${state}`} style={orbStyle}>
          <MicIcon muted={state === "muted"} />
          <span className="hf-label" role="status" aria-live="polite" data-testid="handsfree-label">
            {label}
          </span>
        </div>
      )}
      <div className="hf-controls">
        <div
          className="level-meter"
          data-testid="level-meter"
          role="meter"
          aria-label="Microphone level"
          aria-valuemin={0}
          aria-valuemax={100}
          aria-valuenow={percent}
          aria-valuetext={`${percent} %`}
          data-level={level.level.toFixed(2)}
          data-dbfs={Number.isFinite(level.dbfs) ? Math.round(level.dbfs) : "-inf"}
        >
          <span className="level-fill" style={{ transform: `scaleX(${level.level})` }} />
        </div>
        <button
          type="button"
          className={muted ? "mute mute-on" : "mute"}
          data-testid="mute"
          aria-pressed={muted}
          disabled={listening !== "on"}
          onClick={() => setMuted(!muted)}
          title={muted ? "The microphone sends silence. Press to be heard again." : "Send silence instead of your voice."}
        >
          <MicIcon muted={true} small />
          Mute
        </button>
      </div>
      <p id="hf-help" className="hint hf-help">
        Just speak; a pause sends the question. Talk over an answer to interrupt it.
      </p>
    </div>
  );
}

/** Drawn, not an emoji (see push-to-talk.tsx); crossed out when muted. */
function MicIcon({ muted, small = false }: { muted: boolean; small?: boolean }) {
  const size = small ? 18 : 32;
  return (
    <svg className={small ? "mute-icon" : "hf-icon"} viewBox="0 0 24 24" width={size} height={size} aria-hidden="true" focusable="false">
      <rect x="9" y="3" width="6" height="11" rx="3" fill="currentColor" />
      <path d="M6 11a6 6 0 0 0 12 0M12 17v4M8.5 21h7" fill="none" stroke="currentColor" strokeWidth="2" strokeLinecap="round" />
      {muted ? <path d="M4 4l16 16" stroke="currentColor" strokeWidth="2.2" strokeLinecap="round" /> : null}
    </svg>
  );
}
