"use client";

import { useEffect, useState } from "react";

import type { ConnectionInfo } from "@/lib/voice-client";

const LABEL: Record<ConnectionInfo["state"], string> = {
  idle: "Starting…",
  connecting: "Connecting…",
  connected: "Connected",
  reconnecting: "Reconnecting…",
  unauthorized: "Not signed in",
  closed: "Disconnected",
};

/** The connection in a word, and while reconnecting why and when the next try is. */
export function ConnectionStatus({ info, onRetry }: { info: ConnectionInfo; onRetry: () => void }) {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    if (info.retryAt === null) return;
    const timer = setInterval(() => setNow(Date.now()), 500);
    return () => clearInterval(timer);
  }, [info.retryAt]);
  const seconds = info.retryAt !== null ? Math.max(0, Math.ceil((info.retryAt - now) / 1000)) : null;

  return (
    <div className="connection" data-testid="connection" data-state={info.state} role="status" aria-live="polite">
      <span className={`dot dot-${info.state}`} aria-hidden="true" />
      <span className="connection-label">{LABEL[info.state]}</span>
      {info.state === "reconnecting" && seconds !== null && seconds > 0 ? (
        <span className="connection-retry"> in {seconds} s</span>
      ) : null}
      {info.state === "reconnecting" || info.state === "unauthorized" ? (
        <button type="button" className="link-button" onClick={onRetry}>
          Retry now
        </button>
      ) : null}
    </div>
  );
}

/** A banner for connection problems, in plain words (shown below the header). */
export function ConnectionProblem({ info }: { info: ConnectionInfo }) {
  if (info.state !== "reconnecting" && info.state !== "unauthorized") return null;
  if (!info.problem) return null;
  return (
    <div className="banner banner-warning" role="alert" data-testid="connection-problem" data-state={info.state}>
      {info.problem}
      {info.state === "reconnecting" ? " Voicebot keeps trying and resumes the session when the server is back." : null}
    </div>
  );
}
