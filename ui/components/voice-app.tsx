"use client";

import { useId, useLayoutEffect, useRef, useState } from "react";

import { ApiKeySettings } from "@/components/api-key-settings";
import { AppHeader } from "@/components/app-header";
import { ConnectionProblem, ConnectionStatus } from "@/components/connection-status";
import { HandsFree } from "@/components/hands-free";
import { ModeSwitch } from "@/components/mode-switch";
import { PushToTalk } from "@/components/push-to-talk";
import { TurnView } from "@/components/turn-view";
import { useVoiceSession } from "@/hooks/use-voice-session";
import { describeError } from "@/lib/protocol";

const EXAMPLES = ["How do I start the local stack?", "Where does the local stack keep its logs?", "What does the gateway do?"];

export function VoiceApp() {
  const session = useVoiceSession();
  const { conversation, connection, playback, mic, busy, recording, mode } = session;
  const handsFree = mode === "hands_free";
  const scroller = useRef<HTMLElement>(null);
  const pinned = useRef(true);

  // Follow the conversation while the person is at the bottom; leave them be when they scroll up.
  useLayoutEffect(() => {
    const el = scroller.current;
    if (el && pinned.current) el.scrollTop = el.scrollHeight;
  }, [conversation]);

  const last = conversation.turns[conversation.turns.length - 1];
  const canStop = recording || busy || playback.playing;

  return (
    <div className="app" data-testid="voice-app">
      <AppHeader current="talk">
        <ConnectionStatus info={connection} onRetry={session.retryNow} />
        <ApiKeySettings apiKey={session.apiKey} onSave={session.setApiKey} open={connection.state === "unauthorized"} />
      </AppHeader>
      <ConnectionProblem info={connection} />
      {conversation.error ? (
        <div className="banner banner-error" role="alert" data-testid="error" data-code={conversation.error.code}>
          <span>{conversation.error.message}</span>
          <button type="button" className="link-button" onClick={session.dismissError} aria-label="Dismiss the error">
            Dismiss
          </button>
        </div>
      ) : null}

      <main
        className="conversation"
        ref={scroller}
        onScroll={(e) => {
          const el = e.currentTarget;
          pinned.current = el.scrollHeight - el.scrollTop - el.clientHeight < 48;
        }}
      >
        <h1 className="sr-only">Ask Voicebot about your documents</h1>
        {conversation.turns.length === 0 ? (
          <div className="empty">
            <p className="empty-lead">
              {handsFree ? "Just speak: ask a question about your documents." : "Hold the button and ask a question about your documents."}
            </p>
            <ul className="examples" aria-label="Example questions">
              {EXAMPLES.map((q) => (
                <li key={q}>“{q}”</li>
              ))}
            </ul>
          </div>
        ) : (
          <div className="turns" role="log" aria-label="Conversation">
            {conversation.turns.map((turn) => (
              <TurnView key={turn.key} turn={turn} speaking={playback.playing && playback.turn === turn.n && turn === last} />
            ))}
          </div>
        )}
      </main>

      <footer className="dock">
        {mic ? (
          <div className="banner banner-error mic-error" role="alert" data-testid="mic-error" data-reason={mic.reason}>
            {mic.message}
          </div>
        ) : null}
        <ModeSwitch mode={mode} serverMode={session.serverMode} disabled={session.phase !== "idle"} onChange={session.setMode} />
        <div className="dock-row">
          {handsFree ? <HandsFree session={session} /> : <PushToTalk session={session} />}
          <button
            type="button"
            className="stop"
            data-testid="stop"
            onClick={session.stop}
            disabled={!canStop}
            aria-label="Stop: cancel the recording or the answer"
          >
            <span aria-hidden="true">■</span> Stop
          </button>
        </div>
        <TextQuestion onAsk={session.ask} disabled={connection.state !== "connected" || recording} />
        <p
          className="sr-only"
          data-testid="audio-status"
          data-chunks-played={playback.chunksPlayed}
          data-played-ms={Math.round(playback.playedMs)}
          data-chunks-dropped={playback.chunksDropped}
          data-playing={playback.playing}
          data-played-turns={Object.entries(playback.playedByTurn)
            .map(([turn, n]) => `${turn}:${n}`)
            .join(" ")}
          aria-live="off"
        >
          {playback.playing ? "Speaking" : "Not speaking"}
        </p>
      </footer>
    </div>
  );
}

function TextQuestion({ onAsk, disabled }: { onAsk: (text: string) => boolean; disabled: boolean }) {
  const [text, setText] = useState("");
  const id = useId();
  const [hint, setHint] = useState<string | null>(null);
  return (
    <form
      className="text-question"
      onSubmit={(e) => {
        e.preventDefault();
        if (onAsk(text)) setText("");
        else if (!text.trim()) setHint("Type a question first.");
        else setHint(describeError("not_connected"));
      }}
    >
      <label htmlFor={`${id}-q`} className="sr-only">
        Type a question
      </label>
      <input
        id={`${id}-q`}
        data-testid="text-input"
        type="text"
        enterKeyHint="send"
        autoComplete="off"
        placeholder="…or type a question"
        value={text}
        maxLength={2000}
        onChange={(e) => {
          setText(e.target.value);
          setHint(null);
        }}
      />
      <button type="submit" data-testid="text-send" disabled={disabled}>
        Ask
      </button>
      {hint ? <p className="hint">{hint}</p> : null}
    </form>
  );
}
