"use client";

import { useEffect, useRef } from "react";

import type { VoiceSession } from "@/hooks/use-voice-session";

/** Space belongs to text fields and to other focused controls (it activates them). */
function spaceBelongsTo(target: EventTarget | null): boolean {
  if (!(target instanceof HTMLElement) || target.dataset.ptt !== undefined) return false;
  return target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT", "BUTTON", "A", "SUMMARY"].includes(target.tagName);
}

/**
 * The big button: hold it (mouse, touch or pen), or hold Space while no other control has the
 * focus, to talk; release to send. Pressing while the answer plays interrupts it (barge-in).
 */
export function PushToTalk({ session }: { session: VoiceSession }) {
  const { press, release, recording, phase, sent, busy, playback, connection } = session;
  const spaceHeld = useRef(false);

  useEffect(() => {
    const down = (e: KeyboardEvent) => {
      if (e.code !== "Space" || spaceBelongsTo(e.target)) return;
      e.preventDefault(); // no page scroll, no button click
      if (e.repeat || spaceHeld.current) return;
      spaceHeld.current = true;
      void press();
    };
    const up = (e: KeyboardEvent) => {
      if (e.code !== "Space" || !spaceHeld.current) return;
      e.preventDefault();
      spaceHeld.current = false;
      void release();
    };
    const blur = () => {
      if (spaceHeld.current) {
        spaceHeld.current = false;
        void release();
      }
    };
    window.addEventListener("keydown", down);
    window.addEventListener("keyup", up);
    window.addEventListener("blur", blur);
    return () => {
      window.removeEventListener("keydown", down);
      window.removeEventListener("keyup", up);
      window.removeEventListener("blur", blur);
    };
  }, [press, release]);

  const connected = connection.state === "connected";
  const state = recording ? "recording" : playback.playing ? "speaking" : busy ? "busy" : "idle";
  const label = recording
    ? "Listening… release to send"
    : state === "speaking"
      ? "Hold to interrupt and talk"
      : "Hold to talk";

  return (
    <div className="ptt-wrap">
      <button
        type="button"
        className={`ptt ptt-${state}`}
        data-testid="ptt"
        data-ptt=""
        data-state={state}
        data-phase={phase}
        data-sent-ms={Math.round(sent.durationMs)}
        data-sent-frames={sent.frames}
        data-sent-rms={Math.round(sent.rms)}
        aria-pressed={recording}
        aria-describedby="ptt-help"
        disabled={!connected && !recording}
        onPointerDown={(e) => {
          if (e.button !== 0) return;
          e.currentTarget.setPointerCapture(e.pointerId);
          void press();
        }}
        onPointerUp={() => void release()}
        onPointerCancel={() => void release()}
        onLostPointerCapture={() => void release()}
        onKeyDown={(e) => {
          // Enter toggles for people who cannot hold a key; Space is handled on the window.
          if (e.key !== "Enter" || e.repeat) return;
          e.preventDefault();
          void (recording ? release() : press());
        }}
        onContextMenu={(e) => e.preventDefault()}
      >
        <MicIcon recording={recording} />
        <span className="ptt-label">{label}</span>
      </button>
      <p id="ptt-help" className="hint ptt-help">
        Hold the button while you speak, release to send.{" "}
        <span className="keys-hint">
          Or hold <kbd>Space</kbd>; <kbd>Enter</kbd> on the button starts and stops.
        </span>
      </p>
    </div>
  );
}

/** Drawn, not an emoji: phones and Linux desktops without an emoji font render emoji as boxes. */
function MicIcon({ recording }: { recording: boolean }) {
  return (
    <svg className="ptt-icon" viewBox="0 0 24 24" width="32" height="32" aria-hidden="true" focusable="false">
      {recording ? <circle cx="12" cy="12" r="7" fill="currentColor" /> : null}
      {recording ? null : (
        <>
          <rect x="9" y="3" width="6" height="11" rx="3" fill="currentColor" />
          <path d="M6 11a6 6 0 0 0 12 0M12 17v4M8.5 21h7" fill="none" stroke="currentColor" strokeWidth="2" strokeLinecap="round" />
        </>
      )}
    </svg>
  );
}
