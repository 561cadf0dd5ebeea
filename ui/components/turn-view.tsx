"use client";

import { memo, useId } from "react";

import { formatMs, splitCitations, timingEntries, type Turn } from "@/lib/conversation";
import type { Source } from "@/lib/protocol";

const STATUS_TEXT: Record<Turn["status"], string> = {
  recording: "Listening…",
  thinking: "Thinking…",
  answering: "Answering…",
  done: "",
  cancelled: "Interrupted",
  error: "Failed",
  lost: "Connection lost",
};

/** One question and its answer, sources and timings. Memoised: the dock re-renders the page
 * about ten times a second in hands-free (the level meter), and a turn changes far less often. */
export const TurnView = memo(function TurnView({ turn, speaking }: { turn: Turn; speaking: boolean }) {
  const id = useId();
  const open = turn.status === "recording" || turn.status === "thinking" || turn.status === "answering";
  return (
    <article
      className={`turn turn-${turn.status}`}
      data-testid="turn"
      data-turn={turn.n}
      data-status={turn.status}
      aria-busy={open}
      aria-labelledby={`${id}-q`}
    >
      <div className="bubble bubble-question" id={`${id}-q`}>
        <span className="sr-only">{turn.kind === "text" ? "You typed:" : "You said:"} </span>
        <p
          className={turn.questionFinal ? "question" : "question question-partial"}
          data-testid="transcript"
          data-final={turn.questionFinal}
        >
          {turn.question || (turn.status === "recording" ? "Listening…" : turn.questionFinal ? "(nothing heard)" : "…")}
        </p>
      </div>

      <div className="bubble bubble-answer">
        <p className="status-line" data-testid="turn-status">
          <span className="speaker">Voicebot</span>
          {STATUS_TEXT[turn.status] ? <span> · {STATUS_TEXT[turn.status]}</span> : null}
          {speaking ? <span className="speaking"> · Speaking…</span> : null}
        </p>
        {turn.answer ? (
          <p className="answer" data-testid="answer" data-done={!open}>
            <AnswerText text={turn.answer} sources={turn.sources} turnId={id} />
          </p>
        ) : null}
        {turn.error ? (
          <p className="turn-error" role="alert" data-testid="turn-error">
            {turn.error}
          </p>
        ) : null}
        {turn.note ? (
          <p className="note" data-testid="turn-note">
            {turn.note}
          </p>
        ) : null}
        <Sources turn={turn} turnId={id} />
        <Latency turn={turn} />
      </div>
    </article>
  );
});

function AnswerText({ text, sources, turnId }: { text: string; sources: Source[] | null; turnId: string }) {
  return (
    <>
      {splitCitations(text).map((part, i) =>
        "text" in part ? (
          <span key={i}>
            {part.text.split("`").map((run, j) => (j % 2 ? <code key={j}>{run}</code> : run))}
          </span>
        ) : sources && sources.some((s) => s.n === part.cite) ? (
          <a key={i} className="cite" href={`#${turnId}-src-${part.cite}`} aria-label={`source ${part.cite}`}>
            [{part.cite}]
          </a>
        ) : (
          <span key={i}>[{part.cite}]</span>
        ),
      )}
    </>
  );
}

function Sources({ turn, turnId }: { turn: Turn; turnId: string }) {
  if (turn.sources === null) return null;
  if (!turn.sourcesAvailable) {
    return (
      <p className="note" data-testid="sources-unavailable">
        Search was unavailable, so this answer has no sources.
      </p>
    );
  }
  if (turn.declined) {
    return (
      <p className="note" data-testid="declined">
        The documents do not answer this question, so the answer cites nothing.
      </p>
    );
  }
  if (turn.sources.length === 0) {
    return (
      <p className="note" data-testid="sources-none">
        No matching passages were found in the documents.
      </p>
    );
  }
  return (
    <section className="sources" aria-label="Sources">
      <h3 className="sources-title">Sources</h3>
      <ol className="source-list">
        {turn.sources.map((s) => (
          <li
            key={s.n}
            id={`${turnId}-src-${s.n}`}
            data-testid="citation"
            data-n={s.n}
            data-cited={turn.cited ? String(turn.cited.includes(s.n)) : undefined}
            className={turn.cited?.includes(s.n) ? "cited" : undefined}
          >
            <details>
              <summary>
                <span className="source-n">[{s.n}]</span> <span className="source-title">{s.title || s.source}</span>
                {s.heading_path.length ? (
                  <span className="source-path"> — {s.heading_path.join(" › ")}</span>
                ) : null}
              </summary>
              <blockquote className="snippet" data-testid="snippet">
                {s.text || s.snippet}
              </blockquote>
              <p className="source-file">{s.source}</p>
            </details>
          </li>
        ))}
      </ol>
    </section>
  );
}

function Latency({ turn }: { turn: Turn }) {
  const entries = timingEntries(turn.timings);
  return (
    <p className="latency" data-testid="latency" aria-label={entries.length ? "Timings of this turn" : undefined}>
      {entries.map((e, i) => (
        <span key={e.label} data-stage={e.label}>
          {i ? " · " : ""}
          {e.label} {formatMs(e.ms)}
        </span>
      ))}
    </p>
  );
}
